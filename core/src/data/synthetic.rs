//! `synthetic_shapes`: captioned pictures of one shape on a plain background, generated
//! from (seed, index) with no files, at any size. Also the palette and the judge the
//! evaluator uses to read the colours back from a (generated) picture.

use rand::rngs::StdRng;

use super::text::{splitmix64, TextEncoder};
use super::{check_sizes, Dataset, Sample};
use crate::error::{Error, Result};

/// The palette, RGB.
pub const PALETTE: [[u8; 3]; 8] = [
    [220, 40, 40],
    [40, 180, 60],
    [40, 80, 220],
    [235, 215, 50],
    [140, 60, 180],
    [240, 140, 30],
    [235, 235, 235],
    [128, 128, 128],
];

/// The names of the palette's colours, as captions spell them.
pub const COLOUR_NAMES: [&str; 8] = ["red", "green", "blue", "yellow", "purple", "orange", "white", "gray"];

/// Free space kept between the object and the image border, as a share of the side.
const MARGIN: f32 = 0.04;
/// Object radius (a circle's; other shapes have the same area) as a share of the side.
const SMALL_RADIUS: f32 = 0.14;
const LARGE_RADIUS: f32 = 0.26;
/// The radius varies by ±this share around the size's base.
const RADIUS_JITTER: f32 = 0.1;
/// Pixels farther than this (0–255 RGB distance) from the background count as object.
const OBJECT_THRESHOLD: f32 = 40.0;
/// Sizes above this are refused (a 4096² picture is already 200 MB of f32).
pub const MAX_SIZE: usize = 4096;

/// The object's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An equilateral triangle, apex up.
    Triangle,
}

impl Shape {
    /// All shapes, in tag order.
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

    /// The caption word.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }

    /// Half-width, extent above and extent below the centre for radius `r`.
    fn extents(self, r: f32) -> (f32, f32, f32) {
        match self {
            Shape::Circle => (r, r, r),
            Shape::Square => {
                let h = square_half(r);
                (h, h, h)
            }
            Shape::Triangle => {
                let big_r = triangle_circumradius(r);
                (big_r * 3f32.sqrt() / 2.0, big_r, big_r / 2.0)
            }
        }
    }
}

/// Half the side of the square whose area is that of a circle of radius `r`.
fn square_half(r: f32) -> f32 {
    r * std::f32::consts::PI.sqrt() / 2.0
}

/// Circumradius of the equilateral triangle whose area is that of a circle of radius `r`.
fn triangle_circumradius(r: f32) -> f32 {
    r * (4.0 * std::f32::consts::PI / (3.0 * 3f32.sqrt())).sqrt()
}

/// One picture's content, in coordinates where the image is the unit square (y down).
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// Palette index of the background.
    pub background: usize,
    /// Palette index of the object (never the background's).
    pub object: usize,
    /// The object's shape.
    pub shape: Shape,
    /// Large (true) or small.
    pub large: bool,
    /// The object's centre (for the triangle, its centroid).
    pub centre: (f32, f32),
    /// The radius of the circle of the object's area.
    pub radius: f32,
}

impl Scene {
    /// The scene of `index` under `seed`; the same pair always gives the same scene.
    pub fn generate(seed: u64, index: u64) -> Self {
        let mut state = seed;
        let mut state = splitmix64(&mut state) ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let mut next = || splitmix64(&mut state);
        let unit = |x: u64| (x >> 40) as f32 / (1u64 << 24) as f32;
        let background = (next() % 8) as usize;
        let object = (background + 1 + (next() % 7) as usize) % 8;
        let shape = Shape::ALL[(next() % 3) as usize];
        let large = next() % 2 == 1;
        let base = if large { LARGE_RADIUS } else { SMALL_RADIUS };
        let radius = base * (1.0 + RADIUS_JITTER * (2.0 * unit(next()) - 1.0));
        let (half_w, up, down) = shape.extents(radius);
        let cx = MARGIN + half_w + unit(next()) * (1.0 - 2.0 * MARGIN - 2.0 * half_w);
        let cy = MARGIN + up + unit(next()) * (1.0 - 2.0 * MARGIN - up - down);
        Scene { background, object, shape, large, centre: (cx, cy), radius }
    }

    /// "a large red circle on a blue background".
    pub fn caption(&self) -> String {
        format!(
            "a {} {} {} on {} {} background",
            if self.large { "large" } else { "small" },
            COLOUR_NAMES[self.object],
            self.shape.name(),
            article(COLOUR_NAMES[self.background]),
            COLOUR_NAMES[self.background]
        )
    }

    /// `[background, object, shape, size]`: palette indices, shape in [`Shape::ALL`] order,
    /// size 0 small / 1 large.
    pub fn tags(&self) -> Vec<u32> {
        let shape = Shape::ALL.iter().position(|s| *s == self.shape).unwrap_or(0);
        vec![self.background as u32, self.object as u32, shape as u32, u32::from(self.large)]
    }

    /// Signed distance from the point to the object's outline (negative inside).
    fn distance(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        match self.shape {
            Shape::Circle => (dx * dx + dy * dy).sqrt() - self.radius,
            Shape::Square => {
                let h = square_half(self.radius);
                let (qx, qy) = (dx.abs() - h, dy.abs() - h);
                let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
                outside + qx.max(qy).min(0.0)
            }
            Shape::Triangle => {
                // Exact SDF of an equilateral triangle (after Inigo Quilez), y flipped so
                // that the apex points up in the picture.
                let half = triangle_circumradius(self.radius) * 3f32.sqrt() / 2.0;
                let k = 3f32.sqrt();
                let mut px = dx.abs() - half;
                let mut py = -dy + half / k;
                if px + k * py > 0.0 {
                    (px, py) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
                }
                px -= px.clamp(-2.0 * half, 0.0);
                -(px * px + py * py).sqrt() * py.signum()
            }
        }
    }

    /// The picture as 3×size×size CHW in [-1, 1]. With `antialias`, edge pixels blend the
    /// two colours by the share of the pixel the object covers; without, every pixel is
    /// exactly one palette colour.
    pub fn render(&self, size: usize, antialias: bool) -> Vec<f32> {
        let bg = PALETTE[self.background].map(f32::from);
        let fg = PALETTE[self.object].map(f32::from);
        let plane = size * size;
        let mut out = vec![0f32; 3 * plane];
        let s = size as f32;
        for y in 0..size {
            for x in 0..size {
                let d = self.distance((x as f32 + 0.5) / s, (y as f32 + 0.5) / s) * s;
                let cover = if antialias {
                    (0.5 - d).clamp(0.0, 1.0)
                } else if d <= 0.0 {
                    1.0
                } else {
                    0.0
                };
                for c in 0..3 {
                    let v = bg[c] + (fg[c] - bg[c]) * cover;
                    out[c * plane + y * size + x] = v / 127.5 - 1.0;
                }
            }
        }
        out
    }
}

/// "an" before a vowel, else "a".
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The palette index nearest (Euclidean RGB) to a colour given in 0–255.
pub fn nearest_colour(rgb: [f32; 3]) -> usize {
    let dist = |p: &[u8; 3]| -> f32 { (0..3).map(|c| (rgb[c] - f32::from(p[c])).powi(2)).sum() };
    (0..PALETTE.len()).min_by(|&a, &b| dist(&PALETTE[a]).total_cmp(&dist(&PALETTE[b]))).unwrap_or(0)
}

/// What [`judge`] reads off a picture: palette indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Nearest palette colour of the median border pixel.
    pub background: usize,
    /// Nearest palette colour of the median pixel that differs clearly from the
    /// background; `None` when too few pixels do.
    pub object: Option<usize>,
}

/// Reads the background and object colours off a 3×size×size CHW picture in [-1, 1]
/// (a real or a generated one): the background is the per-channel median of a border
/// ring (1/32 of the side, at least one pixel), the object the per-channel median of
/// the pixels farther than 40 (0–255 RGB) from it, if at least 0.5 % of the picture is.
/// A picture of the wrong length is judged as all background gray.
pub fn judge(image_chw: &[f32], size: usize) -> Judgement {
    let plane = size * size;
    if size == 0 || image_chw.len() != 3 * plane {
        return Judgement { background: 7, object: None };
    }
    let pixel = |i: usize| -> [f32; 3] { [0, 1, 2].map(|c| (image_chw[c * plane + i].clamp(-1.0, 1.0) + 1.0) * 127.5) };
    let ring = (size / 32).max(1);
    let border: Vec<[f32; 3]> = (0..plane)
        .filter(|i| {
            let (x, y) = (i % size, i / size);
            x < ring || y < ring || x + ring >= size || y + ring >= size
        })
        .map(pixel)
        .collect();
    let bg = channel_median(&border);
    let far = |p: &[f32; 3]| (0..3).map(|c| (p[c] - bg[c]).powi(2)).sum::<f32>().sqrt() > OBJECT_THRESHOLD;
    let object: Vec<[f32; 3]> = (0..plane).map(pixel).filter(far).collect();
    let min_pixels = (plane / 200).max(1);
    Judgement {
        background: nearest_colour(bg),
        object: (object.len() >= min_pixels).then(|| nearest_colour(channel_median(&object))),
    }
}

/// The per-channel median of a non-empty set of colours.
fn channel_median(pixels: &[[f32; 3]]) -> [f32; 3] {
    [0, 1, 2].map(|c| {
        let mut v: Vec<f32> = pixels.iter().map(|p| p[c]).collect();
        v.sort_by(f32::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    })
}

/// The `synthetic_shapes` dataset: `count` scenes under one seed.
#[derive(Clone, Debug)]
pub struct SyntheticShapes {
    count: usize,
    seed: u64,
    antialias: bool,
    encoder: TextEncoder,
}

impl SyntheticShapes {
    /// `count` anti-aliased scenes under `seed`, captions encoded to `embed_dim`.
    pub fn new(count: usize, seed: u64, embed_dim: usize) -> Self {
        Self { count, seed, antialias: true, encoder: TextEncoder::new(embed_dim) }
    }

    /// Turn anti-aliasing off (every pixel exactly a palette colour) or on.
    pub fn with_antialias(mut self, antialias: bool) -> Self {
        self.antialias = antialias;
        self
    }

    /// The scene of one index.
    pub fn scene(&self, index: usize) -> Scene {
        Scene::generate(self.seed, index as u64)
    }
}

impl Dataset for SyntheticShapes {
    fn len(&self) -> usize {
        self.count
    }

    fn embed_dim(&self) -> usize {
        self.encoder.dim()
    }

    fn get(&self, index: usize, sizes: &[usize], _rng: &mut StdRng) -> Result<Sample> {
        if index >= self.count {
            return Err(Error::other(
                "data::index",
                format!("sample {index} requested from synthetic_shapes of {} samples", self.count),
            ));
        }
        check_sizes(sizes, "synthetic_shapes")?;
        let scene = self.scene(index);
        let caption = scene.caption();
        Ok(Sample {
            images: sizes.iter().map(|&s| scene.render(s, self.antialias)).collect(),
            embedding: self.encoder.encode(&caption),
            caption,
            tags: scene.tags(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "synthetic_shapes: {} captioned shapes (seed {}), {}-d built-in text embeddings",
            self.count,
            self.seed,
            self.encoder.dim()
        )
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0)
    }

    /// A scene with the given content, its smallest radius and a position that varies.
    fn scene(background: usize, object: usize, shape: Shape, large: bool) -> Scene {
        let radius = if large { LARGE_RADIUS } else { SMALL_RADIUS } * (1.0 - RADIUS_JITTER);
        let (half_w, up, down) = shape.extents(radius);
        let (fx, fy) = (((background * 3 + object) % 8) as f32 / 7.0, (object % 5) as f32 / 4.0);
        let cx = MARGIN + half_w + fx * (1.0 - 2.0 * MARGIN - 2.0 * half_w);
        let cy = MARGIN + up + fy * (1.0 - 2.0 * MARGIN - up - down);
        Scene { background, object, shape, large, centre: (cx, cy), radius }
    }

    #[test]
    fn same_seed_and_index_same_sample() {
        let a = SyntheticShapes::new(10, 7, 32);
        let b = SyntheticShapes::new(10, 7, 32);
        for i in 0..10 {
            let sa = a.get(i, &[16], &mut rng()).unwrap();
            let sb = b.get(i, &[16], &mut StdRng::seed_from_u64(99)).unwrap();
            assert_eq!(sa.images, sb.images);
            assert_eq!(sa.caption, sb.caption);
            assert_eq!(sa.embedding, sb.embedding);
        }
        let c = SyntheticShapes::new(10, 8, 32);
        assert!((0..10).any(|i| a.scene(i) != c.scene(i)));
    }

    #[test]
    fn scenes_cover_every_choice_and_stay_inside() {
        let mut seen = [[false; 8]; 8];
        let mut shapes = [0usize; 3];
        let mut large = 0;
        for i in 0..2000 {
            let s = Scene::generate(1, i);
            assert_ne!(s.background, s.object);
            seen[s.background][s.object] = true;
            shapes[s.tags()[2] as usize] += 1;
            large += usize::from(s.large);
            let (hw, up, down) = s.shape.extents(s.radius);
            let (cx, cy) = s.centre;
            assert!(cx - hw >= MARGIN - 1e-5 && cx + hw <= 1.0 - MARGIN + 1e-5, "{s:?}");
            assert!(cy - up >= MARGIN - 1e-5 && cy + down <= 1.0 - MARGIN + 1e-5, "{s:?}");
        }
        for (b, row) in seen.iter().enumerate() {
            for (o, &hit) in row.iter().enumerate() {
                assert_eq!(hit, b != o, "pair {b} {o}");
            }
        }
        assert!(shapes.iter().all(|&n| n > 550), "{shapes:?}");
        assert!((900..1100).contains(&large), "{large}");
    }

    #[test]
    fn caption_and_tags_say_what_is_drawn() {
        let s = scene(2, 0, Shape::Circle, true);
        assert_eq!(s.caption(), "a large red circle on a blue background");
        assert_eq!(s.tags(), vec![2, 0, 0, 1]);
        let s = scene(7, 6, Shape::Triangle, false);
        assert_eq!(s.caption(), "a small white triangle on a gray background");
        assert_eq!(s.tags(), vec![7, 6, 2, 0]);
        let s = scene(5, 3, Shape::Square, true);
        assert_eq!(s.caption(), "a large yellow square on an orange background");
    }

    #[test]
    fn embedding_is_the_text_encoder_of_the_caption() {
        let d = SyntheticShapes::new(4, 0, 48);
        let s = d.get(3, &[8], &mut rng()).unwrap();
        assert_eq!(s.embedding, TextEncoder::new(48).encode(&s.caption));
        assert_eq!(d.embed_dim(), 48);
    }

    #[test]
    fn shapes_have_the_area_they_should() {
        for shape in Shape::ALL {
            let mut s = scene(0, 1, shape, true);
            s.centre = (0.5, 0.55);
            let img = s.render(256, false);
            let plane = 256 * 256;
            let obj = PALETTE[1][0] as f32 / 127.5 - 1.0;
            let covered = img[..plane].iter().filter(|&&v| (v - obj).abs() < 1e-4).count();
            let expected = std::f32::consts::PI * (s.radius * 256.0).powi(2);
            let ratio = covered as f32 / expected;
            assert!((0.97..1.03).contains(&ratio), "{shape:?}: {ratio}");
        }
    }

    #[test]
    fn triangle_points_up() {
        let mut s = scene(0, 1, Shape::Triangle, true);
        s.centre = (0.5, 0.55);
        let img = s.render(64, false);
        let obj = PALETTE[1][0] as f32 / 127.5 - 1.0;
        let width = |y: usize| (0..64).filter(|&x| (img[y * 64 + x] - obj).abs() < 1e-4).count();
        let rows: Vec<usize> = (0..64).filter(|&y| width(y) > 0).collect();
        let (top, bottom) = (rows[0], rows[rows.len() - 1]);
        assert!(width(top) < width(bottom) / 4, "{} vs {}", width(top), width(bottom));
    }

    #[test]
    fn sizes_depict_the_same_scene() {
        let d = SyntheticShapes::new(20, 5, 8);
        for i in 0..20 {
            let s = d.get(i, &[64, 256], &mut rng()).unwrap();
            assert_eq!(s.images[0].len(), 3 * 64 * 64);
            assert_eq!(s.images[1].len(), 3 * 256 * 256);
            // A 4×4 box filter of the 256 picture is close to the 64 one.
            let (small, big) = (&s.images[0], &s.images[1]);
            let mut err = 0f32;
            for c in 0..3 {
                for y in 0..64 {
                    for x in 0..64 {
                        let mut m = 0.0;
                        for dy in 0..4 {
                            for dx in 0..4 {
                                m += big[c * 65536 + (4 * y + dy) * 256 + 4 * x + dx];
                            }
                        }
                        err += (m / 16.0 - small[c * 4096 + y * 64 + x]).abs();
                    }
                }
            }
            assert!(err / (3.0 * 4096.0) < 0.02, "sample {i}: {err}");
        }
    }

    #[test]
    fn values_in_range_and_exact_without_antialias() {
        let d = SyntheticShapes::new(5, 0, 8).with_antialias(false);
        let s = d.get(0, &[32], &mut rng()).unwrap();
        let scene = d.scene(0);
        let allowed: Vec<f32> = [scene.background, scene.object]
            .iter()
            .flat_map(|&p| PALETTE[p].map(|v| f32::from(v) / 127.5 - 1.0))
            .collect();
        assert!(s.images[0].iter().all(|v| allowed.iter().any(|a| (a - v).abs() < 1e-6)));
        let aa = SyntheticShapes::new(5, 0, 8).get(0, &[32], &mut rng()).unwrap();
        assert!(aa.images[0].iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_ne!(aa.images[0], s.images[0]);
    }

    #[test]
    fn judge_recovers_every_colour_pair_at_64() {
        for bg in 0..8 {
            for obj in (0..8).filter(|&o| o != bg) {
                for shape in Shape::ALL {
                    for large in [false, true] {
                        let s = scene(bg, obj, shape, large);
                        for aa in [true, false] {
                            let j = judge(&s.render(64, aa), 64);
                            assert_eq!(j, Judgement { background: bg, object: Some(obj) }, "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn judge_on_dataset_samples_and_plain_pictures() {
        let d = SyntheticShapes::new(50, 11, 8);
        for i in 0..50 {
            let s = d.get(i, &[64], &mut rng()).unwrap();
            let j = judge(&s.images[0], 64);
            assert_eq!(j.background as u32, s.tags[0], "{}", s.caption);
            assert_eq!(j.object.map(|o| o as u32), Some(s.tags[1]), "{}", s.caption);
        }
        let mut plain = scene(3, 4, Shape::Circle, false);
        plain.object = 3;
        assert_eq!(judge(&plain.render(64, true), 64), Judgement { background: 3, object: None });
        assert_eq!(judge(&[0.0; 5], 64).object, None);
    }

    #[test]
    fn nearest_colour_of_the_palette_is_itself() {
        for (i, p) in PALETTE.iter().enumerate() {
            assert_eq!(nearest_colour(p.map(f32::from)), i);
        }
        assert_eq!(nearest_colour([250.0, 0.0, 0.0]), 0);
        assert_eq!(nearest_colour([130.0, 125.0, 131.0]), 7);
    }

    #[test]
    fn bad_requests_are_errors() {
        let d = SyntheticShapes::new(3, 0, 8);
        assert_eq!(d.get(3, &[8], &mut rng()).unwrap_err().code_str(), "data::index");
        assert_eq!(d.get(0, &[0], &mut rng()).unwrap_err().code_str(), "data::size");
        assert_eq!(d.get(0, &[MAX_SIZE + 1], &mut rng()).unwrap_err().code_str(), "data::size");
    }
}
