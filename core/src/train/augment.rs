//! DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN
//! Training"): random colour, translation and cutout applied to every image batch D sees,
//! real and fake alike, with gradients flowing through to G. On a small dataset it keeps D
//! from memorising the real images.
//!
//! The policies follow the paper's reference code: brightness `x + (r − ½)`, saturation
//! `(x − mean_c)·2r + mean_c`, contrast `(x − mean_chw)·(r + ½) + mean_chw` with one `r`
//! per sample; translation by up to ⅛ of the side in each direction, zeros shifted in;
//! cutout of a square half the side, at a random centre. Every draw is fresh per call.
//!
//! Each policy is a linear map of the images built from the op table (constants, slices,
//! one gather), so the executor differentiates it like any other op.

use rand::Rng;

use crate::dsl::Augment;
use crate::error::{Error, Result};
use crate::ops::{Binary, Ops, Tensor, Unary};

/// Apply `policy`, in order, to images `x [B, C, H, W]`.
pub fn diff_augment(ops: &mut dyn Ops, x: Tensor, policy: &[Augment], rng: &mut impl Rng) -> Result<Tensor> {
    let dims = ops.shape(x)?;
    let [b, c, h, w] = dims[..] else {
        return Err(Error::other("train::augment", format!("DiffAugment needs images [B, C, H, W], got {dims:?}")));
    };
    let shape = Shape { b, c, h, w };
    let mut x = x;
    let (mut shift, mut cut) = (None, None);
    for p in policy {
        match p {
            Augment::Color => x = color(ops, x, shape, rng)?,
            Augment::Translation => {
                shift = Some(translation(shape, rng));
            }
            Augment::Cutout => {
                cut = Some(cutout(shape, rng));
            }
        }
    }
    if shift.is_some() || cut.is_some() {
        x = move_pixels(ops, x, shape, shift.as_deref(), cut.as_deref())?;
    }
    Ok(x)
}

#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Shape {
    fn per_sample(&self) -> usize {
        self.c * self.h * self.w
    }

    fn dims(&self) -> [usize; 4] {
        [self.b, self.c, self.h, self.w]
    }
}

/// A constant of the images' shape holding `v[i]` throughout sample `i`.
fn per_sample(ops: &mut dyn Ops, s: Shape, v: &[f32]) -> Result<Tensor> {
    let data: Vec<f32> = v.iter().flat_map(|&x| std::iter::repeat_n(x, s.per_sample())).collect();
    ops.constant(&data, &s.dims())
}

/// `(x − m)·k + m`, with `k` one factor per sample.
fn scale_about(ops: &mut dyn Ops, x: Tensor, m: Tensor, s: Shape, k: &[f32]) -> Result<Tensor> {
    let k = per_sample(ops, s, k)?;
    let d = ops.binary(Binary::Sub, x, m)?;
    let d = ops.binary(Binary::Mul, d, k)?;
    ops.binary(Binary::Add, d, m)
}

/// Brightness, saturation and contrast.
fn color(ops: &mut dyn Ops, x: Tensor, s: Shape, rng: &mut impl Rng) -> Result<Tensor> {
    let mut draw = |f: fn(f32) -> f32| (0..s.b).map(|_| f(rng.gen::<f32>())).collect::<Vec<f32>>();
    let (bright, sat, contrast) = (draw(|r| r - 0.5), draw(|r| 2.0 * r), draw(|r| r + 0.5));
    let add = per_sample(ops, s, &bright)?;
    let x = ops.binary(Binary::Add, x, add)?;
    // Saturation: about the mean over channels at each pixel.
    let mut sum = ops.slice(x, 1, 0, 1)?;
    for ch in 1..s.c {
        let plane = ops.slice(x, 1, ch, ch + 1)?;
        sum = ops.binary(Binary::Add, sum, plane)?;
    }
    let mean = ops.unary(Unary::Scale(1.0 / s.c as f32), sum)?;
    let mean = ops.concat(&vec![mean; s.c], 1)?;
    let x = scale_about(ops, x, mean, s, &sat)?;
    // Contrast: about each image's mean.
    let flat = ops.reshape(x, &[s.b, s.per_sample()])?;
    // y = x·Wᵀ: the mean of each row, then that mean once per channel.
    let avg = ops.constant(&vec![1.0 / s.per_sample() as f32; s.per_sample()], &[1, s.per_sample()])?;
    let m = ops.linear(flat, avg, None)?;
    let ones = ops.constant(&vec![1.0; s.c], &[s.c, 1])?;
    let m = ops.linear(m, ones, None)?;
    let m = ops.replicate(m, s.h, s.w)?;
    scale_about(ops, x, m, s, &contrast)
}

/// Per sample, the shift `(dy, dx)`: output pixel `(y, x)` reads input `(y + dy, x + dx)`.
fn translation(s: Shape, rng: &mut impl Rng) -> Vec<(isize, isize)> {
    let (sy, sx) = (((s.h as f64) * 0.125 + 0.5) as isize, ((s.w as f64) * 0.125 + 0.5) as isize);
    (0..s.b).map(|_| (rng.gen_range(-sy..=sy), rng.gen_range(-sx..=sx))).collect()
}

/// Per sample, the cut-out square: rows `y0..y0+size` and columns `x0..x0+size` (clipped).
fn cutout(s: Shape, rng: &mut impl Rng) -> Vec<(isize, isize, isize)> {
    let size = ((s.h.min(s.w) as f64) * 0.5 + 0.5) as isize;
    let half = size / 2;
    let mut centre = |n: usize| rng.gen_range(0..n as isize + (1 - size % 2));
    let mut squares = Vec::with_capacity(s.b);
    for _ in 0..s.b {
        let (cy, cx) = (centre(s.h), centre(s.w));
        squares.push((cy - half, cx - half, size));
    }
    squares
}

/// Translation and cutout as one gather over the flattened images plus a zero row.
fn move_pixels(
    ops: &mut dyn Ops,
    x: Tensor,
    s: Shape,
    shift: Option<&[(isize, isize)]>,
    cut: Option<&[(isize, isize, isize)]>,
) -> Result<Tensor> {
    let n = s.b * s.per_sample();
    let flat = ops.reshape(x, &[n, 1])?;
    let zero = ops.constant(&[0.0], &[1, 1])?;
    let padded = ops.concat(&[flat, zero], 0)?;
    let mut rows = Vec::with_capacity(n);
    for i in 0..s.b {
        let (dy, dx) = shift.map_or((0, 0), |t| t[i]);
        for ch in 0..s.c {
            for y in 0..s.h as isize {
                for x in 0..s.w as isize {
                    let inside = |v: isize, n: usize| (0..n as isize).contains(&v);
                    let cut_here = cut.is_some_and(|c| {
                        let (y0, x0, size) = c[i];
                        (y0..y0 + size).contains(&y) && (x0..x0 + size).contains(&x)
                    });
                    let (sy, sx) = (y + dy, x + dx);
                    rows.push(if !cut_here && inside(sy, s.h) && inside(sx, s.w) {
                        ((i * s.c + ch) * s.h + sy as usize) * s.w + sx as usize
                    } else {
                        n
                    });
                }
            }
        }
    }
    let moved = ops.select_rows(padded, &rows)?;
    ops.reshape(moved, &s.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{grad_of, NoiseSource, Runner, Val};
    use dfdx::prelude::{Cpu, NoneTape, OwnedTape};
    use rand::SeedableRng;

    const ALL: [Augment; 3] = [Augment::Color, Augment::Translation, Augment::Cutout];
    const DIMS: [usize; 4] = [2, 3, 8, 8];

    fn images(seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..DIMS.iter().product()).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// The augmented images and `Σ out·r`, with the draws of `seed`.
    fn run(x: &[f32], r: &[f32], policy: &[Augment], seed: u64) -> (Vec<f32>, f64) {
        let dev = Cpu::default();
        let mut noise = NoiseSource::seeded(0);
        let mut ops: Runner<Cpu, NoneTape> = Runner::new(dev.clone(), true, &mut noise);
        let xh = ops.push(Val::from_host(&dev, x.to_vec(), &DIMS).unwrap());
        let out = diff_augment(&mut ops, xh, policy, &mut rand::rngs::StdRng::seed_from_u64(seed)).unwrap();
        let y = ops.read(out).unwrap();
        let loss = y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum();
        (y, loss)
    }

    #[test]
    fn gradients_flow_through_every_policy() {
        let (x, r) = (images(1), images(2));
        for policy in [&ALL[..], &ALL[..1], &ALL[1..2], &ALL[2..]] {
            let dev = Cpu::default();
            let mut noise = NoiseSource::seeded(0);
            let mut ops: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
            let xv = Val::from_host(&dev, x.clone(), &DIMS).unwrap();
            let xh = ops.push(xv.clone());
            let out = diff_augment(&mut ops, xh, policy, &mut rand::rngs::StdRng::seed_from_u64(9)).unwrap();
            let rh = ops.constant(&r, &DIMS).unwrap();
            let prod = ops.binary(Binary::Mul, out, rh).unwrap();
            let loss = ops.sum(prod).unwrap();
            let mut grads = ops.backward(loss).unwrap();
            let g = grad_of(&mut grads, &xv);
            assert!(g.iter().any(|v| *v != 0.0), "{policy:?}: no gradient reached the images");
            // The map is linear in x for fixed draws: central differences are exact up to
            // rounding.
            for i in (0..x.len()).step_by(17) {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += 1e-2;
                down[i] -= 1e-2;
                let fd = (run(&up, &r, policy, 9).1 - run(&down, &r, policy, 9).1) / 2e-2;
                assert!((fd - g[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()), "{policy:?} x[{i}]: {fd} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn translation_shifts_and_cutout_zeroes_a_square() {
        let x: Vec<f32> = (0..DIMS.iter().product::<usize>()).map(|i| 1.0 + i as f32).collect();
        let r = vec![0.0; x.len()];
        let (y, _) = run(&x, &r, &[Augment::Cutout], 3);
        let zeros = y.iter().filter(|v| **v == 0.0).count();
        // A 4×4 square per sample and channel, clipped at the border.
        assert!(zeros > 0 && zeros <= 2 * 3 * 16, "{zeros}");
        assert!(y.iter().zip(&x).all(|(a, b)| *a == 0.0 || a == b));
        let (y, _) = run(&x, &r, &[Augment::Translation], 4);
        assert!(y.iter().filter(|v| **v != 0.0).all(|v| x.contains(v)));
        // With the same draws the result repeats; with others it differs.
        assert_eq!(run(&x, &r, &ALL, 5).0, run(&x, &r, &ALL, 5).0);
        assert_ne!(run(&x, &r, &ALL, 5).0, run(&x, &r, &ALL, 6).0);
        assert_eq!(run(&x, &r, &[], 5).0, x);
    }
}
