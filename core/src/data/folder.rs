//! The folder dataset: StackGAN's CUB/Oxford layout with the pickles converted to text
//! and `.npy` (layout in `docs/data.md`), and StackGAN's image pipeline (box crop,
//! bilinear resize to 76/64 of the size, random crop, random flip, [-1, 1]).

use std::collections::HashMap;
use std::fs;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use image::imageops::{self, FilterType};
use image::RgbImage;
use npyz::{DType, NpyFile, Order, TypeChar};
use rand::rngs::StdRng;
use rand::Rng;

use super::{check_sizes, Dataset, Sample};
use crate::error::{Error, Result};

const LAYOUT_HELP: &str = "a folder dataset holds images/<name>.jpg, <split>/filenames.txt and \
                           <split>/embeddings.npy under its root; see docs/data.md";

/// Image extensions tried, in order, for a name given without one.
const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];
/// The widest and tallest image a folder dataset accepts.
const MAX_IMAGE_SIDE: u32 = 16_384;

/// A bounding box in pixels: left, top, width, height.
type BBox = [f32; 4];

/// A StackGAN-style folder of images with pre-computed caption embeddings.
#[derive(Debug)]
pub struct FolderDataset {
    root: PathBuf,
    split: String,
    names: Vec<String>,
    images: Vec<PathBuf>,
    /// `[N, K, D]`, row-major.
    embeddings: Vec<f32>,
    per_image: usize,
    dim: usize,
    captions: Option<PathBuf>,
    boxes: Vec<Option<BBox>>,
    classes: Option<Vec<u32>>,
}

impl FolderDataset {
    /// Opens split `split` of the folder at `root`, checking the whole layout (every
    /// image exists, the embeddings are float32 `[N, K, embed_dim]` with one row per
    /// name) so that bad data fails here rather than in the middle of training.
    pub fn open(root: &Path, split: &str, embed_dim: usize) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::input(
                "data::missing_file",
                format!("dataset root `{}` is not a folder", root.display()),
            )
            .with_help(LAYOUT_HELP));
        }
        let split_dir = inside(root, split).ok_or_else(|| {
            Error::input(
                "data::outside_root",
                format!("split `{split}` is not a plain folder name inside `{}`", root.display()),
            )
            .with_help("use a split such as `train` or `test`")
        })?;

        let list = split_dir.join("filenames.txt");
        let names = read_names(&list)?;
        let images = find_images(&root.join("images"), &names, &list)?;

        let npy = split_dir.join("embeddings.npy");
        let (embeddings, per_image, dim) = read_embeddings(&npy, names.len(), &list)?;
        if dim != embed_dim {
            return Err(Error::input(
                "data::embed_dim",
                format!(
                    "`{}` holds {dim}-dimensional embeddings but the graph's embed_dim is {embed_dim}",
                    npy.display()
                ),
            )
            .with_help(format!(
                "set the graph's `embed_dim` to {dim} (e.g. `--set embed_dim={dim}`), or use embeddings of size {embed_dim}"
            )));
        }

        let captions = captions_dir(&split_dir, &names)?;
        let boxes = match Some(root.join("bounding_boxes.txt")).filter(|p| p.is_file()) {
            Some(path) => {
                let table = read_boxes(&path)?;
                names.iter().map(|n| table.get(n).copied()).collect()
            }
            None => vec![None; names.len()],
        };
        let classes = match Some(split_dir.join("class_info.txt")).filter(|p| p.is_file()) {
            Some(path) => Some(read_classes(&path, names.len(), &list)?),
            None => None,
        };

        Ok(Self {
            root: root.to_path_buf(),
            split: split.to_string(),
            names,
            images,
            embeddings,
            per_image,
            dim,
            captions,
            boxes,
            classes,
        })
    }

    /// The image names, in list order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Captions (embeddings) per image.
    pub fn captions_per_image(&self) -> usize {
        self.per_image
    }

    /// Caption `k` of image `index`: line `k` (empty lines skipped) of
    /// `<split>/captions/<name>.txt` when that folder exists, else the image's name.
    fn caption(&self, index: usize, k: usize) -> Result<String> {
        let name = &self.names[index];
        let Some(dir) = &self.captions else {
            return Ok(name.clone());
        };
        let path = dir.join(format!("{name}.txt"));
        let text = read_text(&path)?;
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines.get(k).map(|l| l.to_string()).ok_or_else(|| {
            Error::input(
                "data::captions",
                format!(
                    "`{}` has {} captions but the embeddings hold {} per image",
                    path.display(),
                    lines.len(),
                    self.per_image
                ),
            )
            .with_help("write one caption per line, in the order of the embeddings")
        })
    }

    /// The decoded image of `index`, cropped around its bounding box if it has one.
    fn load(&self, index: usize) -> Result<RgbImage> {
        let img = read_rgb(&self.images[index])?;
        match self.boxes[index] {
            Some(b) => crop_box(&img, b).ok_or_else(|| {
                Error::input(
                    "data::bad_box",
                    format!(
                        "the bounding box of `{}` in `{}` lies outside its {}×{} image",
                        self.names[index],
                        self.root.join("bounding_boxes.txt").display(),
                        img.width(),
                        img.height()
                    ),
                )
            }),
            None => Ok(img),
        }
    }
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.names.len()
    }

    fn embed_dim(&self) -> usize {
        self.dim
    }

    fn get(&self, index: usize, sizes: &[usize], rng: &mut StdRng) -> Result<Sample> {
        if index >= self.names.len() {
            return Err(Error::other(
                "data::index",
                format!("sample {index} requested from a folder of {} images", self.names.len()),
            ));
        }
        check_sizes(sizes, &self.root.display().to_string())?;
        let k = rng.gen_range(0..self.per_image);
        let start = (index * self.per_image + k) * self.dim;
        let embedding = self.embeddings[start..start + self.dim].to_vec();
        let caption = self.caption(index, k)?;
        let img = self.load(index)?;
        // One crop position and flip per sample, shared by all sizes so that every size
        // shows the same part of the picture.
        let (fx, fy): (f32, f32) = (rng.gen(), rng.gen());
        let flip = rng.gen_bool(0.5);
        let images = sizes.iter().map(|&s| augment(&img, s, fx, fy, flip)).collect();
        let tags = self.classes.as_ref().map(|c| vec![c[index]]).unwrap_or_default();
        Ok(Sample { images, embedding, caption, tags })
    }

    fn describe(&self) -> String {
        let boxes = self.boxes.iter().filter(|b| b.is_some()).count();
        format!(
            "folder `{}` ({}): {} images, {} × {}-d embeddings each, {}, {} bounding boxes{}",
            self.root.display(),
            self.split,
            self.names.len(),
            self.per_image,
            self.dim,
            if self.captions.is_some() { "captions" } else { "no caption text" },
            boxes,
            if self.classes.is_some() { ", classes" } else { "" }
        )
    }
}

/// `root/name` if `name` is a relative path that stays inside `root` (no `..`, no
/// absolute path, no drive prefix), else `None`.
fn inside(root: &Path, name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut normal = false;
    for c in path.components() {
        match c {
            Component::Normal(_) => normal = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    normal.then(|| root.join(path))
}

/// The image file of `name` under `images_dir`: the name itself if it has an image
/// extension, else the first of `name.jpg`, `name.jpeg`, `name.png` that exists.
fn find_image(images_dir: &Path, name: &str) -> Option<PathBuf> {
    let direct = images_dir.join(name);
    let has_ext = direct
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    if has_ext && direct.is_file() {
        return Some(direct);
    }
    EXTENSIONS.iter().map(|ext| images_dir.join(format!("{name}.{ext}"))).find(|p| p.is_file())
}

/// A text file, with a missing file reported as bad data.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::input("data::missing_file", format!("`{}` does not exist", path.display()))
                .with_help(LAYOUT_HELP))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Error::input("data::bad_text", format!("`{}` is not UTF-8 text", path.display())))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The names in `filenames.txt`: one per line, surrounding blanks and empty lines
/// ignored; every name must stay inside the root.
/// The image file of every listed name, or which are missing.
fn find_images(images_dir: &Path, names: &[String], list: &Path) -> Result<Vec<PathBuf>> {
    let mut images = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        match find_image(images_dir, name) {
            Some(p) => images.push(p),
            None => missing.push(name.as_str()),
        }
    }
    if let Some(first) = missing.first() {
        let shown = images_dir.join(format!("{first}.jpg"));
        return Err(Error::input(
            "data::missing_file",
            format!(
                "{} of the {} images listed in `{}` are missing, the first `{}`",
                missing.len(),
                names.len(),
                list.display(),
                shown.display()
            ),
        )
        .with_help(format!(
            "each name `n` in the list must have an image `images/n` or `images/n.{{{}}}`",
            EXTENSIONS.join(",")
        )));
    }
    Ok(images)
}

/// The split's `captions` folder, if it has one, with a caption file for every name.
fn captions_dir(split_dir: &Path, names: &[String]) -> Result<Option<PathBuf>> {
    let captions = Some(split_dir.join("captions")).filter(|p| p.is_dir());
    if let Some(dir) = &captions {
        let missing: Vec<&String> = names.iter().filter(|n| !dir.join(format!("{n}.txt")).is_file()).collect();
        if let Some(first) = missing.first() {
            return Err(Error::input(
                "data::missing_file",
                format!(
                    "{} of the {} caption files are missing, the first `{}`",
                    missing.len(),
                    names.len(),
                    dir.join(format!("{first}.txt")).display()
                ),
            )
            .with_help("with a `captions` folder, every image `n` needs `captions/n.txt`; remove the folder to caption samples by name"));
        }
    }
    Ok(captions)
}

pub(crate) fn read_names(list: &Path) -> Result<Vec<String>> {
    let text = read_text(list)?;
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if inside(Path::new(""), name).is_none() {
            return Err(Error::input(
                "data::outside_root",
                format!("`{}` line {}: `{name}` points outside the dataset root", list.display(), i + 1),
            )
            .with_help("names are paths relative to `images/`, without `..` or a leading `/`"));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(Error::input("data::empty", format!("`{}` lists no images", list.display()))
            .with_help("write one image name per line"));
    }
    Ok(names)
}

/// Reads `[N, K, D]` (or `[N, D]`, K = 1) float32 embeddings; returns (data, N, K, D).
pub fn read_embeddings_any(path: &Path) -> Result<(Vec<f32>, usize, usize, usize)> {
    read_embeddings_checked(path, None, path)
}

/// Reads `[N, K, D]` (or `[N, D]`, K = 1) float32 embeddings, N = `count`.
fn read_embeddings(path: &Path, count: usize, list: &Path) -> Result<(Vec<f32>, usize, usize)> {
    read_embeddings_checked(path, Some(count), list).map(|(d, _, k, dim)| (d, k, dim))
}

fn read_embeddings_checked(path: &Path, count: Option<usize>, list: &Path) -> Result<(Vec<f32>, usize, usize, usize)> {
    let bad = |msg: String| Error::input("data::bad_array", format!("`{}` {msg}", path.display()));
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::input("data::missing_file", format!("`{}` does not exist", path.display()))
                .with_help("convert StackGAN's embedding pickle to .npy as shown in docs/data.md"))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let npy = NpyFile::new(BufReader::new(file)).map_err(|e| bad(format!("is not a readable .npy file: {e}")))?;
    let float32 = matches!(npy.dtype(), DType::Plain(ref t) if t.type_char() == TypeChar::Float && t.size_field() == 4);
    if !float32 {
        return Err(bad(format!("holds {} values; embeddings must be float32", npy.dtype().descr()))
            .with_help("save it with `np.save(path, array.astype(np.float32))`"));
    }
    if npy.order() == Order::Fortran {
        return Err(bad("is stored in Fortran order".into())
            .with_help("save it with `np.save(path, np.ascontiguousarray(array))`"));
    }
    let shape: Vec<u64> = npy.shape().to_vec();
    let (n, k, d) = match shape[..] {
        [n, d] => (n, 1, d),
        [n, k, d] => (n, k, d),
        _ => {
            return Err(bad(format!("has shape {shape:?}; expected [N, K, D] (or [N, D])"))
                .with_help("N images, K captions per image, D embedding values per caption"))
        }
    };
    if let Some(count) = count.filter(|c| n != *c as u64) {
        return Err(bad(format!("holds embeddings for {n} images but `{}` lists {count}", list.display()))
            .with_help("row i of the embeddings belongs to line i of the list"));
    }
    if k == 0 || d == 0 {
        return Err(Error::input("data::empty", format!("`{}` has shape {shape:?}", path.display()))
            .with_help("every image needs at least one non-empty embedding"));
    }
    let data: Vec<f32> = npy.into_vec().map_err(|e| bad(format!("cannot be read: {e}")))?;
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let (d_us, k_us) = (d as usize, k as usize);
        return Err(bad(format!(
            "holds a non-finite value at [{}, {}, {}]",
            i / (d_us * k_us),
            i / d_us % k_us,
            i % d_us
        )));
    }
    Ok((data, n as usize, k as usize, d as usize))
}

/// `bounding_boxes.txt`: `<name> <x> <y> <width> <height>` per line, in pixels.
fn read_boxes(path: &Path) -> Result<HashMap<String, BBox>> {
    let text = read_text(path)?;
    let mut boxes = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = (fields.len() == 5)
            .then(|| {
                let v: Vec<f32> = fields[1..].iter().filter_map(|f| f.parse().ok()).collect();
                (v.len() == 4 && v.iter().all(|x| x.is_finite()) && v[2] > 0.0 && v[3] > 0.0)
                    .then(|| [v[0], v[1], v[2], v[3]])
            })
            .flatten();
        match parsed {
            Some(b) => {
                boxes.insert(fields[0].to_string(), b);
            }
            None => {
                return Err(Error::input(
                    "data::bad_line",
                    format!("`{}` line {}: cannot read `{line}`", path.display(), i + 1),
                )
                .with_help("each line is `<name> <x> <y> <width> <height>`, width and height > 0"))
            }
        }
    }
    Ok(boxes)
}

/// `class_info.txt`: one non-negative integer per image, in list order.
fn read_classes(path: &Path, count: usize, list: &Path) -> Result<Vec<u32>> {
    let text = read_text(path)?;
    let mut classes = Vec::with_capacity(count);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        classes.push(line.parse::<u32>().map_err(|_| {
            Error::input(
                "data::bad_line",
                format!("`{}` line {}: `{line}` is not a class number", path.display(), i + 1),
            )
        })?);
    }
    if classes.len() != count {
        return Err(Error::input(
            "data::bad_line",
            format!("`{}` has {} classes but `{}` lists {count} images", path.display(), classes.len(), list.display()),
        ));
    }
    Ok(classes)
}

/// Decodes an image file to RGB as it streams in, with limits checked against the header
/// first: a huge or lying file is refused before its pixels are allocated.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(1 << 30);
    let mut reader =
        image::ImageReader::open(path).and_then(|r| r.with_guessed_format()).map_err(|e| Error::io(path, e))?;
    reader.limits(limits);
    Ok(reader
        .decode()
        .map_err(|e| {
            Error::input("data::bad_image", format!("cannot decode image `{}`", path.display()))
                .with_cause(e)
                .with_help("images must be JPEG or PNG files")
        })?
        .to_rgb8())
}

/// StackGAN's box crop: a square of side 1.5 × the box's longer side centred on the
/// box, clipped to the image (so not square near a border). Integer rounding as in
/// StackGAN-Pytorch's `get_img`. `None` if nothing of it is inside the image.
fn crop_box(img: &RgbImage, b: BBox) -> Option<RgbImage> {
    let r = (b[2].max(b[3]) * 0.75) as i64;
    let cx = ((2.0 * b[0] + b[2]) / 2.0) as i64;
    let cy = ((2.0 * b[1] + b[3]) / 2.0) as i64;
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let (x1, x2) = ((cx - r).max(0), (cx + r).min(w));
    let (y1, y2) = ((cy - r).max(0), (cy + r).min(h));
    (x2 > x1 && y2 > y1)
        .then(|| imageops::crop_imm(img, x1 as u32, y1 as u32, (x2 - x1) as u32, (y2 - y1) as u32).to_image())
}

/// The side an image is resized to before the random crop to `size`: ⌊size·76/64⌋.
pub fn load_size(size: usize) -> usize {
    size * 76 / 64
}

/// Resize to [`load_size`]² (bilinear), crop `size`² at the fractional offset
/// (`fx`, `fy`), flip if asked, and return 3×size×size CHW in [-1, 1].
fn augment(img: &RgbImage, size: usize, fx: f32, fy: f32, flip: bool) -> Vec<f32> {
    let load = load_size(size).max(size);
    let resized = imageops::resize(img, load as u32, load as u32, FilterType::Triangle);
    let slack = load - size;
    let ox = ((fx * (slack + 1) as f32) as usize).min(slack);
    let oy = ((fy * (slack + 1) as f32) as usize).min(slack);
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for y in 0..size {
        for x in 0..size {
            let sx = if flip { size - 1 - x } else { x };
            let p = resized.get_pixel((ox + sx) as u32, (oy + y) as u32);
            for c in 0..3 {
                out[c * plane + y * size + x] = f32::from(p[c]) / 127.5 - 1.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::data::test_dir::TestDir;

    /// Writes a `.npy` file by hand so that tests control every header field.
    fn write_npy(path: &Path, descr: &str, shape: &[usize], fortran: bool, data: &[u8]) {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        fs::write(path, bytes).unwrap();
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A two-image dataset: `a.jpg` (24×20, left half red, right half blue) and
    /// `sub/b.png` (16×16, green), 3 captions of 4-d embeddings each.
    fn fixture(dir: &TestDir) -> PathBuf {
        let root = dir.path().join("ds");
        fs::create_dir_all(root.join("images/sub")).unwrap();
        fs::create_dir_all(root.join("train")).unwrap();
        let a = RgbImage::from_fn(
            24,
            20,
            |x, _| {
                if x < 12 {
                    image::Rgb([220, 40, 40])
                } else {
                    image::Rgb([40, 80, 220])
                }
            },
        );
        a.save(root.join("images/a.jpg")).unwrap();
        RgbImage::from_pixel(16, 16, image::Rgb([40, 180, 60])).save(root.join("images/sub/b.png")).unwrap();
        fs::write(root.join("train/filenames.txt"), "a\n\nsub/b.png\n").unwrap();
        let emb: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        write_npy(&root.join("train/embeddings.npy"), "<f4", &[2, 3, 4], false, &f32_bytes(&emb));
        root
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(1)
    }

    fn open_err(root: &Path, dim: usize) -> Error {
        FolderDataset::open(root, "train", dim).unwrap_err()
    }

    #[test]
    fn reads_a_folder_and_yields_samples() {
        let dir = TestDir::new("folder_reads");
        let root = fixture(&dir);
        let ds = FolderDataset::open(&root, "train", 4).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.embed_dim(), 4);
        assert_eq!(ds.names(), ["a", "sub/b.png"]);
        assert!(ds.describe().contains("2 images, 3 × 4-d"), "{}", ds.describe());
        let mut r = rng();
        let mut seen_k = [false; 3];
        for _ in 0..30 {
            let s = ds.get(1, &[8, 16], &mut r).unwrap();
            assert_eq!(s.images.len(), 2);
            assert_eq!(s.images[0].len(), 3 * 8 * 8);
            assert_eq!(s.images[1].len(), 3 * 16 * 16);
            let k = (s.embedding[0] as usize - 12) / 4;
            assert_eq!(s.embedding, (0..4).map(|j| (12 + 4 * k + j) as f32).collect::<Vec<_>>());
            seen_k[k] = true;
            assert_eq!(s.caption, "sub/b.png");
            assert!(s.tags.is_empty());
            // A plain green picture stays green whatever the crop and flip.
            for v in &s.images[0][..64] {
                assert!((v - (40.0 / 127.5 - 1.0)).abs() < 0.02, "{v}");
            }
        }
        assert!(seen_k.iter().all(|&k| k), "one of K embeddings picked at random");
    }

    #[test]
    fn crops_and_flips_are_random_and_shared_across_sizes() {
        let dir = TestDir::new("folder_flip");
        let root = fixture(&dir);
        let ds = FolderDataset::open(&root, "train", 4).unwrap();
        let mut r = rng();
        let (mut flipped, mut straight) = (0, 0);
        for _ in 0..40 {
            let s = ds.get(0, &[8, 32], &mut r).unwrap();
            // Red channel of the leftmost and rightmost column, at both sizes.
            let left_red = |img: &Vec<f32>, size: usize| img[size * (size / 2)] > 0.0;
            let right_red = |img: &Vec<f32>, size: usize| img[size * (size / 2) + size - 1] > 0.0;
            assert_ne!(left_red(&s.images[0], 8), right_red(&s.images[0], 8));
            assert_eq!(left_red(&s.images[0], 8), left_red(&s.images[1], 32));
            if left_red(&s.images[0], 8) {
                straight += 1;
            } else {
                flipped += 1;
            }
            assert!(s.images.iter().flatten().all(|v| (-1.0..=1.0).contains(v)));
        }
        assert!(flipped > 5 && straight > 5, "{flipped} flipped, {straight} not");
    }

    #[test]
    fn captions_classes_and_boxes() {
        let dir = TestDir::new("folder_extras");
        let root = fixture(&dir);
        fs::create_dir_all(root.join("train/captions/sub")).unwrap();
        fs::write(root.join("train/captions/a.txt"), "one\n\ntwo\nthree\n").unwrap();
        fs::write(root.join("train/captions/sub/b.png.txt"), "x\ny\nz\n").unwrap();
        fs::write(root.join("train/class_info.txt"), "5\n9\n").unwrap();
        // A box on the blue half: the crop holds blue only.
        fs::write(root.join("bounding_boxes.txt"), "a 18 8 4 4\n").unwrap();
        let ds = FolderDataset::open(&root, "train", 4).unwrap();
        let mut r = rng();
        for _ in 0..10 {
            let s = ds.get(0, &[8], &mut r).unwrap();
            let k = s.embedding[0] as usize / 4;
            assert_eq!(s.caption, ["one", "two", "three"][k]);
            assert_eq!(s.tags, vec![5]);
            let (red, blue) = (&s.images[0][..64], &s.images[0][128..]);
            assert!(red.iter().all(|&v| v < -0.3), "{red:?}");
            assert!(blue.iter().all(|&v| v > 0.3), "{blue:?}");
        }
        assert_eq!(ds.get(1, &[8], &mut r).unwrap().tags, vec![9]);
        assert!(ds.describe().contains("1 bounding boxes"));
    }

    #[test]
    fn box_crop_follows_stackgan() {
        let img = RgbImage::new(100, 80);
        // side 1.5 × 40 = 60 around (30, 40): x 0..60, y 10..70.
        assert_eq!(crop_box(&img, [10.0, 20.0, 40.0, 40.0]).unwrap().dimensions(), (60, 60));
        // clipped at the border.
        assert_eq!(crop_box(&img, [0.0, 0.0, 20.0, 10.0]).unwrap().dimensions(), (25, 20));
        assert!(crop_box(&img, [500.0, 500.0, 10.0, 10.0]).is_none());
        assert_eq!((load_size(64), load_size(256)), (76, 304));
    }

    #[test]
    fn missing_files_name_the_file() {
        let dir = TestDir::new("folder_missing");
        let root = fixture(&dir);
        let e = FolderDataset::open(&root.join("nope"), "train", 4).unwrap_err();
        assert_eq!(e.code_str(), "data::missing_file");
        assert!(e.message().contains("nope"));

        let e = FolderDataset::open(&root, "test", 4).unwrap_err();
        assert_eq!(e.code_str(), "data::missing_file");
        assert!(e.message().contains("test/filenames.txt"), "{}", e.message());

        fs::remove_file(root.join("images/sub/b.png")).unwrap();
        let e = open_err(&root, 4);
        assert_eq!(e.code_str(), "data::missing_file");
        assert!(e.message().contains("1 of the 2 images") && e.message().contains("sub/b.png"), "{}", e.message());

        let root = fixture(&dir);
        fs::remove_file(root.join("train/embeddings.npy")).unwrap();
        let e = open_err(&root, 4);
        assert_eq!(e.code_str(), "data::missing_file");
        assert!(e.message().contains("embeddings.npy"));
        assert!(e.help_text().unwrap().contains("docs/data.md"));
    }

    #[test]
    fn bad_arrays_name_the_file() {
        let dir = TestDir::new("folder_arrays");
        let root = fixture(&dir);
        let npy = root.join("train/embeddings.npy");
        let check = |descr: &str, shape: &[usize], fortran: bool, bytes: usize, code: &str, text: &str| {
            write_npy(&npy, descr, shape, fortran, &vec![0; bytes]);
            let e = open_err(&root, 4);
            assert_eq!(e.code_str(), code, "{descr} {shape:?}: {}", e.message());
            assert!(e.message().contains("embeddings.npy"), "{}", e.message());
            assert!(e.message().contains(text), "{}", e.message());
        };
        check("<f8", &[2, 1, 4], false, 64, "data::bad_array", "float32");
        check("<f4", &[2, 2, 2, 1], false, 64, "data::bad_array", "shape");
        check("<f4", &[3, 1, 4], false, 48, "data::bad_array", "3 images");
        check("<f4", &[2, 2, 2], true, 32, "data::bad_array", "Fortran");
        check("<f4", &[2, 1, 4], false, 20, "data::bad_array", "cannot be read");
        check("<f4", &[2, 1, 3], false, 24, "data::embed_dim", "3-dimensional");
        check("<f4", &[2, 0, 4], false, 0, "data::empty", "shape");
        fs::write(&npy, b"not an npy file").unwrap();
        assert_eq!(open_err(&root, 4).code_str(), "data::bad_array");
        let mut nan = vec![0f32; 8];
        nan[6] = f32::NAN;
        write_npy(&npy, "<f4", &[2, 1, 4], false, &f32_bytes(&nan));
        let e = open_err(&root, 4);
        assert!(e.message().contains("non-finite value at [1, 0, 2]"), "{}", e.message());
        // [N, D] is K = 1; big-endian float32 is fine too.
        let be: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_be_bytes()).collect();
        write_npy(&npy, ">f4", &[2, 4], false, &be);
        let ds = FolderDataset::open(&root, "train", 4).unwrap();
        assert_eq!(ds.captions_per_image(), 1);
        assert_eq!(ds.get(1, &[8], &mut rng()).unwrap().embedding, vec![4.0, 5.0, 6.0, 7.0]);
    }

    #[test]
    fn names_outside_the_root_are_refused() {
        let dir = TestDir::new("folder_outside");
        let root = fixture(&dir);
        for bad in ["../secret", "/etc/passwd", "a/../../x", ".."] {
            fs::write(root.join("train/filenames.txt"), format!("a\n{bad}\n")).unwrap();
            let e = open_err(&root, 4);
            assert_eq!(e.code_str(), "data::outside_root", "{bad}");
            assert!(e.message().contains("filenames.txt` line 2"), "{}", e.message());
        }
        let e = FolderDataset::open(&root, "../ds/train", 4).unwrap_err();
        assert_eq!(e.code_str(), "data::outside_root");
    }

    #[test]
    fn empty_lists_and_bad_lines() {
        let dir = TestDir::new("folder_empty");
        let root = fixture(&dir);
        fs::write(root.join("train/filenames.txt"), "\n  \n").unwrap();
        let e = open_err(&root, 4);
        assert_eq!(e.code_str(), "data::empty");
        assert!(e.message().contains("filenames.txt"));

        let root = fixture(&dir);
        fs::write(root.join("bounding_boxes.txt"), "a 1 2 3 4\nb 1 2 x 4\n").unwrap();
        let e = open_err(&root, 4);
        assert_eq!(e.code_str(), "data::bad_line");
        assert!(e.message().contains("bounding_boxes.txt` line 2"), "{}", e.message());
        fs::write(root.join("bounding_boxes.txt"), "a 1 2 0 4\n").unwrap();
        assert_eq!(open_err(&root, 4).code_str(), "data::bad_line");
        fs::remove_file(root.join("bounding_boxes.txt")).unwrap();

        fs::write(root.join("train/class_info.txt"), "1\n").unwrap();
        let e = open_err(&root, 4);
        assert!(e.message().contains("class_info.txt` has 1 classes"), "{}", e.message());
        fs::write(root.join("train/class_info.txt"), "1\nbird\n").unwrap();
        assert!(open_err(&root, 4).message().contains("line 2"));
    }

    #[test]
    fn unreadable_images_captions_and_boxes_name_the_file() {
        let dir = TestDir::new("folder_bad_image");
        let root = fixture(&dir);
        fs::write(root.join("images/a.jpg"), b"\xff\xd8 truncated").unwrap();
        fs::create_dir_all(root.join("train/captions/sub")).unwrap();
        fs::write(root.join("train/captions/sub/b.png.txt"), "only one\n").unwrap();
        fs::write(root.join("bounding_boxes.txt"), "sub/b.png 100 100 5 5\n").unwrap();
        let e = open_err(&root, 4);
        assert_eq!(e.code_str(), "data::missing_file", "{}", e.message());
        assert!(e.message().contains("1 of the 2 caption files"), "{}", e.message());
        assert!(e.message().contains("captions/a.txt"), "{}", e.message());
        fs::write(root.join("train/captions/a.txt"), "1\n2\n3\n").unwrap();
        let ds = FolderDataset::open(&root, "train", 4).unwrap();
        let e = ds.get(0, &[8], &mut rng()).unwrap_err();
        assert_eq!(e.code_str(), "data::bad_image");
        assert!(e.message().contains("a.jpg"));
        let mut r = rng();
        let errors: Vec<Error> = (0..10).filter_map(|_| ds.get(1, &[8], &mut r).err()).collect();
        assert!(errors.iter().any(|e| e.code_str() == "data::captions" && e.message().contains("b.png.txt")));
        fs::write(root.join("train/captions/sub/b.png.txt"), "1\n2\n3\n").unwrap();
        let e = ds.get(1, &[8], &mut rng()).unwrap_err();
        assert_eq!(e.code_str(), "data::bad_box");
        assert!(e.message().contains("bounding_boxes.txt"));
    }
}
