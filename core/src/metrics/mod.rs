//! Image-quality metrics against real data: FID, KID, Inception Score and k-NN precision
//! and recall, over features of the FID Inception-v3 (`graphs/metrics/fid_inception.ron`,
//! run by the executor like any other graph, with weights the user provides).

pub mod inception;
pub mod stats;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use inception::{Features, Inception};
pub use stats::Samples;

use crate::error::{Error, Result};
use crate::kernels::KernelDevice;
use crate::registry::Registry;

/// Where the feature extractor comes from and how it runs.
#[derive(Clone, Debug)]
pub struct ExtractorOptions {
    /// pytorch-fid's FID Inception weights, as safetensors.
    pub weights: PathBuf,
    /// A graph file instead of the shipped `fid_inception.ron`.
    pub graph: Option<PathBuf>,
    /// `--set`-style variable overrides (`div=16`).
    pub overrides: Vec<String>,
    /// Images per forward pass.
    pub batch: usize,
}

/// Images read from disk per forward batch group (bounds the memory of a large folder).
const READ_CHUNK: usize = 256;

/// Features of the image `files` (square, one size), read a chunk at a time; `progress`
/// hears how many are done.
pub fn folder_features<D: KernelDevice>(
    dev: D,
    registry: &Registry,
    files: &[PathBuf],
    opts: &ExtractorOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Features> {
    let mut net: Option<Inception<D>> = None;
    let mut all: Option<Features> = None;
    for (k, chunk) in files.chunks(READ_CHUNK).enumerate() {
        let (images, side) = read_images(chunk, net.as_ref().map(Inception::image_size))?;
        let extractor = match &mut net {
            Some(n) => n,
            None => net.insert(Inception::open(dev.clone(), registry, opts, side)?),
        };
        let done = k * READ_CHUNK;
        let f = extractor.features(&images, &mut |n| progress(done + n))?;
        match &mut all {
            Some(a) => a.append(f),
            None => all = Some(f),
        }
    }
    all.ok_or_else(|| Error::input("metrics::no_images", "no images to compare"))
}

/// Neighbours that define the k-NN manifolds of precision and recall.
pub const KNN_K: usize = 3;

/// The metrics of generated images against real ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Real images compared.
    pub real: usize,
    /// Generated images compared.
    pub generated: usize,
    /// Fréchet Inception Distance (lower is better).
    pub fid: f64,
    /// Kernel Inception Distance, unbiased MMD² (lower is better).
    pub kid: f64,
    /// Inception Score of the generated images (higher is better).
    pub is: f64,
    /// Its standard deviation over the splits.
    pub is_std: f64,
    /// Share of generated images on the real manifold (k = 3).
    pub precision: f64,
    /// Share of real images on the generated manifold (k = 3).
    pub recall: f64,
}

/// Compares features of generated images with those of real ones; the Inception Score
/// splits the generated images into `splits` groups (10 in the original code; fewer when
/// there are fewer images).
pub fn report(real: &Features, generated: &Features, splits: usize) -> Result<Report> {
    let fail = |e: stats::StatsError| {
        Error::input("metrics::too_few", e.0)
            .with_help("compare more images (FID needs at least 2 of each, better thousands)")
    };
    let (precision, recall) = stats::precision_recall(&real.pool, &generated.pool, KNN_K).map_err(fail)?;
    let (is, is_std) =
        stats::inception_score(&generated.logits, splits.min(generated.logits.len()).max(1)).map_err(fail)?;
    Ok(Report {
        real: real.pool.len(),
        generated: generated.pool.len(),
        fid: stats::fid(&real.pool, &generated.pool).map_err(fail)?,
        kid: stats::kid(&real.pool, &generated.pool).map_err(fail)?,
        is,
        is_std,
        precision,
        recall,
    })
}

/// The image files (PNG, JPEG; any case) directly in `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if path.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::input("metrics::no_images", format!("`{}` holds no PNG or JPEG images", dir.display())));
    }
    Ok(files)
}

/// Reads images of one size as 3×S×S CHW in [-1, 1]; returns the data and `S`. Images must
/// be square and all of one size, `side` when given (the images read before these); the
/// feature extractor resizes them to 299 either way.
pub fn read_images(files: &[PathBuf], side: Option<usize>) -> Result<(Vec<f32>, usize)> {
    let mut out = Vec::new();
    let mut side = side;
    for path in files {
        let img = crate::data::folder::read_rgb(path)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let s = *side.get_or_insert(w);
        if w != h || w != s {
            let why = if w != h { "not square".to_string() } else { format!("the images before it are {s}×{s}") };
            return Err(Error::input("metrics::image_size", format!("`{}` is {w}×{h}: {why}", path.display()))
                .with_help("use square images of one size per folder"));
        }
        let n = w * h;
        let start = out.len();
        out.resize(start + 3 * n, 0.0);
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[start + c * n + i] = p.0[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Ok((out, side.unwrap_or(0)))
}
