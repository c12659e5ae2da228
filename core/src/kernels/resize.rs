//! Bilinear resizing, PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
//! without antialiasing: output pixel `o` samples the input at `(o + ½)·n/m − ½`, clamped
//! at 0, between its two neighbours. Separable, so it is two products with interpolation
//! matrices (`Rh · X · Rwᵀ`), written with dfdx ops: the same on every device, and dfdx
//! differentiates it.

use dfdx::prelude::*;

use super::{KernelError, T4};

const OP: &str = "resize_bilinear";

/// The `[m, n]` matrix that resamples an axis of `n` pixels to `m`.
pub fn interpolation_matrix(n: usize, m: usize) -> Vec<f32> {
    let mut r = vec![0.0f32; m * n];
    let scale = n as f64 / m as f64;
    for o in 0..m {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        let t = (src - i0 as f64) as f32;
        r[o * n + i0] += 1.0 - t;
        r[o * n + i1] += t;
    }
    r
}

/// Resizes `[B,C,H,W]` to `[B,C,size.0,size.1]`.
pub fn resize_bilinear<D: Device<f32>, T: Tape<f32, D>>(
    x: T4<D, T>,
    (ho, wo): (usize, usize),
) -> Result<T4<D, T>, KernelError> {
    let (b, c, h, w) = *x.shape();
    if [b, c, h, w, ho, wo].contains(&0) {
        return Err(KernelError::shape(OP, format!("input {:?} to {ho}×{wo}: an empty dimension", x.shape())));
    }
    let dev = x.device().clone();
    let run = || -> Result<T4<D, T>, D::Err> {
        let rw: Tensor<(usize, usize), f32, D> = dev.try_tensor_from_vec(interpolation_matrix(w, wo), (wo, w))?;
        let rh: Tensor<(usize, usize), f32, D> = dev.try_tensor_from_vec(interpolation_matrix(h, ho), (ho, h))?;
        // Rows: [B·C·H, W] × Rwᵀ [W, Wo].
        let rows = x.try_reshape_like(&(b * c * h, w))?.try_matmul(rw.try_permute::<_, Axes2<1, 0>>()?)?;
        // Columns: each plane transposed, [B·C, Wo, H] × Rhᵀ [H, Ho], transposed back.
        let planes = rows.try_reshape_like(&(b * c, h, wo))?.try_permute::<_, Axes3<0, 2, 1>>()?;
        let out = planes.try_matmul(rh.try_permute::<_, Axes2<1, 0>>()?)?.try_permute::<_, Axes3<0, 2, 1>>()?;
        out.try_contiguous()?.try_reshape_like(&(b, c, ho, wo))
    };
    run().map_err(|e| KernelError::device(OP, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;

    /// PyTorch's formula per output pixel, in f64.
    fn naive(x: &[f32], (b, c, h, w): (usize, usize, usize, usize), (ho, wo): (usize, usize)) -> Vec<f64> {
        let src = |o: usize, n: usize, m: usize| {
            let s = ((o as f64 + 0.5) * n as f64 / m as f64 - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n - 1);
            (i0, (i0 + 1).min(n - 1), s - i0 as f64)
        };
        let mut out = Vec::new();
        for p in 0..b * c {
            for oy in 0..ho {
                let (y0, y1, ty) = src(oy, h, ho);
                for ox in 0..wo {
                    let (x0, x1, tx) = src(ox, w, wo);
                    let at = |y: usize, xx: usize| x[(p * h + y) * w + xx] as f64;
                    let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
                    let bottom = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
                    out.push(top * (1.0 - ty) + bottom * ty);
                }
            }
        }
        out
    }

    #[test]
    fn matches_pytorch_formula() {
        let dev = Cpu::default();
        for (shape, size) in
            [((2, 3, 4, 5), (9, 7)), ((1, 2, 6, 6), (3, 4)), ((1, 1, 1, 3), (2, 5)), ((1, 1, 3, 3), (3, 3))]
        {
            let x = rand_t4(&dev, shape, 7);
            let y = resize_bilinear(x.clone(), size).unwrap();
            assert_eq!(*y.shape(), (shape.0, shape.1, size.0, size.1));
            assert_close(&y.as_vec(), &naive(&x.as_vec(), shape, size), 1e-6, &format!("{shape:?} → {size:?}"));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        let (shape, size) = ((1, 2, 3, 4), (5, 7));
        let x = rand_t4(&dev, shape, 8);
        let r = rand_vec(2 * 5 * 7, 9);
        let grads = weighted_sum_backward(resize_bilinear(x.leaky_trace(), size).unwrap(), &r);
        check_fd("dx", &grads.get(&x).as_vec(), &x.as_vec(), |v| {
            dot(&resize_bilinear(from_vec(&dev, v, shape), size).unwrap().as_vec(), &r)
        });
    }

    #[test]
    fn empty_sizes_are_errors() {
        let dev = Cpu::default();
        assert!(resize_bilinear(rand_t4(&dev, (1, 1, 2, 2), 1), (0, 3)).is_err());
    }
}
