//! Training data: the [`Dataset`] trait, the built-in datasets (`synthetic_shapes` and
//! the StackGAN folder layout), the built-in caption encoder and PNG grids of samples.
//! Layouts, pipelines and the encoder's limits are documented in `docs/data.md`.

pub mod folder;
pub mod grid;
pub mod synthetic;
pub mod text;

use std::path::Path;

use rand::rngs::StdRng;

use crate::dsl::DataDef;
use crate::error::{Error, Result};

pub use folder::FolderDataset;
pub use grid::{write_grid_png, write_png};
pub use synthetic::{judge, nearest_colour, Judgement, SyntheticShapes, COLOUR_NAMES, PALETTE};
pub use text::TextEncoder;

/// One training example.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// One picture per requested size, in request order: 3×s×s CHW in [-1, 1].
    pub images: Vec<Vec<f32>>,
    /// The caption's embedding (`embed_dim` values).
    pub embedding: Vec<f32>,
    /// The caption text (for a folder without caption files: the image's name).
    pub caption: String,
    /// Dataset-specific labels: synthetic `[background, object, shape, size]`, folder
    /// `[class]` when `class_info.txt` exists, else empty.
    pub tags: Vec<u32>,
}

/// A source of captioned pictures, indexable and shareable across loader threads.
pub trait Dataset: Send + Sync {
    /// Number of samples in one epoch.
    fn len(&self) -> usize;

    /// Whether the dataset has no samples (never true for an opened dataset).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the caption embeddings.
    fn embed_dim(&self) -> usize;

    /// Sample `index` (< `len()`) with one picture per entry of `sizes`. Random choices
    /// (caption, crop, flip) come from `rng`, drawn once per sample so that every size
    /// shows the same scene.
    fn get(&self, index: usize, sizes: &[usize], rng: &mut StdRng) -> Result<Sample>;

    /// One line for logs: what the data is and how much of it there is.
    fn describe(&self) -> String;
}

/// The most samples a synthetic dataset may have (its epoch order is held in memory).
pub const MAX_SYNTHETIC_COUNT: u64 = 10_000_000;

/// Opens the dataset a recipe names; `base_dir` resolves a folder's relative root (the
/// graph file's folder) and `embed_dim` is the graph's embedding size, which a folder's
/// embeddings must match.
pub fn open(def: &DataDef, base_dir: &Path, embed_dim: usize) -> Result<Box<dyn Dataset>> {
    if embed_dim == 0 {
        return Err(Error::input("data::embed_dim", "the graph's embed_dim is 0")
            .with_help("set `embed_dim` in the graph's vars to the text embedding size"));
    }
    match def {
        DataDef::SyntheticShapes { count, seed } => {
            let count = usize::try_from(*count).ok().filter(|&c| c > 0 && c as u64 <= MAX_SYNTHETIC_COUNT).ok_or_else(
                || {
                    Error::input(
                        "data::bad_count",
                        format!("synthetic_shapes needs between 1 and {MAX_SYNTHETIC_COUNT} samples, not {count}"),
                    )
                    .with_help("set `count` to the number of samples per epoch, e.g. 2048")
                },
            )?;
            Ok(Box::new(SyntheticShapes::new(count, *seed, embed_dim)))
        }
        DataDef::Folder { root, split } => {
            let root = base_dir.join(root);
            Ok(Box::new(FolderDataset::open(&root, split, embed_dim)?))
        }
    }
}

/// Checks requested picture sizes: each in 1..=[`synthetic::MAX_SIZE`].
pub(crate) fn check_sizes(sizes: &[usize], what: &str) -> Result<()> {
    match sizes.iter().find(|&&s| s == 0 || s > synthetic::MAX_SIZE) {
        Some(s) => Err(Error::other(
            "data::size",
            format!("{what}: pictures of size {s} requested; sizes run from 1 to {}", synthetic::MAX_SIZE),
        )),
        None => Ok(()),
    }
}

/// A fresh folder under the system temp dir for one test, removed when dropped.
#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("stackflow-data-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn open_synthetic_from_a_recipe() {
        let def = DataDef::SyntheticShapes { count: 12, seed: 3 };
        let ds = open(&def, Path::new("."), 32).unwrap();
        assert_eq!((ds.len(), ds.embed_dim(), ds.is_empty()), (12, 32, false));
        assert!(ds.describe().contains("12 captioned shapes"));
        let s = ds.get(0, &[64, 256], &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(s.images.iter().map(Vec::len).collect::<Vec<_>>(), [3 * 64 * 64, 3 * 256 * 256]);
        assert_eq!(s.tags.len(), 4);
    }

    #[test]
    fn open_refuses_empty_sets_and_zero_dims() {
        let def = DataDef::SyntheticShapes { count: 0, seed: 0 };
        assert_eq!(open(&def, Path::new("."), 8).err().unwrap().code_str(), "data::bad_count");
        let def = DataDef::SyntheticShapes { count: 5, seed: 0 };
        assert_eq!(open(&def, Path::new("."), 0).err().unwrap().code_str(), "data::embed_dim");
    }

    #[test]
    fn open_resolves_a_folder_against_the_graph_dir() {
        let dir = test_dir::TestDir::new("open_folder");
        let def = DataDef::Folder { root: "data/birds".into(), split: "train".into() };
        let e = open(&def, dir.path(), 8).err().unwrap();
        assert_eq!(e.code_str(), "data::missing_file");
        let expected = dir.path().join("data/birds");
        assert!(e.message().contains(&expected.display().to_string()), "{}", e.message());
    }
}
