//! Max and average pooling over square windows, PyTorch semantics (`F.max_pool2d`,
//! `F.avg_pool2d` with `count_include_pad` either way, no ceil mode or dilation): the max
//! ignores the padding, the average divides by the whole window or by the input pixels in
//! it. Backward sends a max's gradient to the first maximal input of each window and an
//! average's to every input of the window.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::cpu;
use super::{KernelError, T4};

const OP: &str = "pool2d";

/// How a pooling window is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The largest input in the window (the padding never wins).
    Max,
    /// The mean: over the whole window when `count_padding`, else over its input pixels.
    Avg {
        /// PyTorch's `count_include_pad`.
        count_padding: bool,
    },
}

/// The shape arithmetic of one pooling, checked once by [`PoolGeom::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    /// Max, or average with or without the padding counted.
    pub kind: PoolKind,
    /// Images × channels: the planes pooled independently.
    pub planes: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window size (both axes).
    pub kernel: usize,
    /// Step between windows (both axes).
    pub stride: usize,
    /// Padding on every side.
    pub padding: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
}

impl PoolGeom {
    /// Checks `x [B,C,H,W]` against the window and computes the output size. Like
    /// PyTorch, the padding may be at most half the window, so every window holds an
    /// input pixel.
    pub fn new(
        kind: PoolKind,
        x: (usize, usize, usize, usize),
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, KernelError> {
        let (b, c, h, w) = x;
        if kernel == 0 || stride == 0 {
            return Err(KernelError::arg(OP, "kernel and stride must be at least 1"));
        }
        if 2 * padding > kernel {
            return Err(KernelError::arg(OP, format!("padding {padding} exceeds half the window {kernel}")));
        }
        if [b, c, h, w].contains(&0) {
            return Err(KernelError::shape(OP, format!("input {x:?} has an empty dimension")));
        }
        if kernel > h + 2 * padding || kernel > w + 2 * padding {
            return Err(KernelError::shape(OP, format!("window {kernel} is larger than the padded input {x:?}")));
        }
        let out = |n: usize| (n + 2 * padding - kernel) / stride + 1;
        Ok(Self { kind, planes: b * c, h, w, kernel, stride, padding, h_out: out(h), w_out: out(w) })
    }

    /// Input indices `lo..hi` that output index `o` reads along an axis of `n`.
    fn window(&self, o: usize, n: usize) -> (usize, usize) {
        let start = o * self.stride;
        (start.saturating_sub(self.padding), (start + self.kernel).saturating_sub(self.padding).min(n))
    }

    /// What an average divides the window's sum by at output `(oy, ox)`.
    fn divisor(&self, oy: usize, ox: usize) -> f32 {
        match self.kind {
            PoolKind::Avg { count_padding: false } => {
                let ((y0, y1), (x0, x1)) = (self.window(oy, self.h), self.window(ox, self.w));
                ((y1 - y0) * (x1 - x0)) as f32
            }
            _ => (self.kernel * self.kernel) as f32,
        }
    }
}

/// A device that can run [`pool2d`].
pub trait PoolKernel: Device<f32> {
    /// Pools `x` as `geom` (already checked against `x`) says.
    fn pool2d<T: Tape<f32, Self>>(x: T4<Self, T>, geom: PoolGeom) -> Result<T4<Self, T>, KernelError>;
}

/// Pools `[B,C,H,W]` with a `kernel×kernel` window moved by `stride`, `padding` on every
/// side: `[B, C, (H+2p−k)/s+1, (W+2p−k)/s+1]`.
pub fn pool2d<D: PoolKernel, T: Tape<f32, D>>(
    x: T4<D, T>,
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<T4<D, T>, KernelError> {
    let geom = PoolGeom::new(kind, *x.shape(), kernel, stride, padding)?;
    D::pool2d(x, geom)
}

impl PoolKernel for Cpu {
    fn pool2d<T: Tape<f32, Self>>(x: T4<Self, T>, g: PoolGeom) -> Result<T4<Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (x, mut tape) = x.try_contiguous().map_err(dev_err)?.split_tape();
        let (b, c, _, _) = *x.shape();
        let (hw, l) = (g.h * g.w, g.h_out * g.w_out);
        let mut out = cpu::alloc(x.device(), g.planes * l).map_err(dev_err)?;
        // For a max: the input pixel each output took, for backward.
        let mut argmax = vec![0u32; if g.kind == PoolKind::Max { g.planes * l } else { 0 }];
        {
            let xs = cpu::read(&x).map_err(dev_err)?;
            let forward = |plane: &[f32], dst: &mut [f32], arg: &mut [u32]| {
                for oy in 0..g.h_out {
                    let (y0, y1) = g.window(oy, g.h);
                    for ox in 0..g.w_out {
                        let (x0, x1) = g.window(ox, g.w);
                        let o = oy * g.w_out + ox;
                        if g.kind == PoolKind::Max {
                            let (mut best, mut at) = (f32::NEG_INFINITY, y0 * g.w + x0);
                            for iy in y0..y1 {
                                for ix in x0..x1 {
                                    let v = plane[iy * g.w + ix];
                                    if v > best || v.is_nan() {
                                        (best, at) = (v, iy * g.w + ix);
                                    }
                                }
                            }
                            (dst[o], arg[o]) = (best, at as u32);
                        } else {
                            let sum: f32 =
                                (y0..y1).map(|iy| plane[iy * g.w + x0..iy * g.w + x1].iter().sum::<f32>()).sum();
                            dst[o] = sum / g.divisor(oy, ox);
                        }
                    }
                }
            };
            if argmax.is_empty() {
                out.par_chunks_mut(l).zip(xs.par_chunks(hw)).for_each(|(dst, plane)| forward(plane, dst, &mut []));
            } else {
                out.par_chunks_mut(l)
                    .zip(argmax.par_chunks_mut(l))
                    .zip(xs.par_chunks(hw))
                    .for_each(|((dst, arg), plane)| forward(plane, dst, arg));
            }
        }
        let out = x.device().try_tensor_from_vec(out, (b, c, g.h_out, g.w_out)).map_err(dev_err)?;

        if T::OWNS_TAPE {
            cpu::record_backward(&mut tape, x, &out, move |gx, gy| {
                gx.par_chunks_mut(hw).zip(gy.par_chunks(l)).enumerate().for_each(|(p, (dst, src))| {
                    if g.kind == PoolKind::Max {
                        for (&at, &v) in argmax[p * l..(p + 1) * l].iter().zip(src) {
                            dst[at as usize] += v;
                        }
                        return;
                    }
                    for oy in 0..g.h_out {
                        let (y0, y1) = g.window(oy, g.h);
                        for ox in 0..g.w_out {
                            let (x0, x1) = g.window(ox, g.w);
                            let v = src[oy * g.w_out + ox] / g.divisor(oy, ox);
                            for iy in y0..y1 {
                                dst[iy * g.w + x0..iy * g.w + x1].iter_mut().for_each(|d| *d += v);
                            }
                        }
                    }
                });
            });
        }
        Ok(out.put_tape(tape))
    }
}

#[cfg(feature = "cuda")]
impl PoolKernel for Cuda {
    fn pool2d<T: Tape<f32, Self>>(x: T4<Self, T>, geom: PoolGeom) -> Result<T4<Self, T>, KernelError> {
        composite(x, geom).map_err(|e| KernelError::device(OP, e))
    }
}

/// The same pooling as a composite of dfdx ops: one gather lays every window out as a row
/// (padding taps read an extra element, −∞ for a max, 0 for an average), then a max or a
/// sum along the row, and for an average a multiplication by each window's `1/divisor`.
/// The CUDA implementation, and a cross-check for the CPU kernel.
pub fn composite<D: Device<f32>, T: Tape<f32, D>>(x: T4<D, T>, g: PoolGeom) -> Result<T4<D, T>, D::Err> {
    let dev = x.device().clone();
    let (b, c, _, _) = *x.shape();
    let (hw, l, taps) = (g.h * g.w, g.h_out * g.w_out, g.kernel * g.kernel);
    let pad_value = if g.kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
    let flat = x.try_reshape_like(&(g.planes * hw,))?;
    let pad: Tensor<(usize,), f32, D> = dev.try_tensor_from_vec(vec![pad_value], (1,))?;
    let flat = (flat, pad).try_concat_along(Axis::<0>)?;
    let mut idx = Vec::with_capacity(g.planes * l * taps);
    for p in 0..g.planes {
        for oy in 0..g.h_out {
            for ox in 0..g.w_out {
                for ky in 0..g.kernel {
                    for kx in 0..g.kernel {
                        let iy = (oy * g.stride + ky).checked_sub(g.padding).filter(|&v| v < g.h);
                        let ix = (ox * g.stride + kx).checked_sub(g.padding).filter(|&v| v < g.w);
                        idx.push(match (iy, ix) {
                            (Some(iy), Some(ix)) => p * hw + iy * g.w + ix,
                            _ => g.planes * hw,
                        });
                    }
                }
            }
        }
    }
    let idx = dev.try_tensor_from_vec(idx, (g.planes * l * taps,))?;
    let windows = flat.try_gather(idx)?.try_reshape_like(&(g.planes * l, taps))?;
    let pooled = if g.kind == PoolKind::Max {
        windows.try_max::<(usize,), Axis<1>>()?
    } else {
        let inv: Vec<f32> =
            (0..g.planes).flat_map(|_| (0..l).map(|o| 1.0 / g.divisor(o / g.w_out, o % g.w_out))).collect();
        let inv = dev.try_tensor_from_vec(inv, (g.planes * l,))?;
        windows.try_sum::<(usize,), Axis<1>>()?.try_mul(inv)?
    };
    pooled.try_reshape_like(&(b, c, g.h_out, g.w_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;

    const AVG_PAD: PoolKind = PoolKind::Avg { count_padding: true };
    const AVG: PoolKind = PoolKind::Avg { count_padding: false };

    /// The definition, in f64.
    fn naive(x: &[f32], (b, c, h, w): (usize, usize, usize, usize), g: &PoolGeom) -> Vec<f64> {
        let mut out = Vec::new();
        for p in 0..b * c {
            for oy in 0..g.h_out {
                for ox in 0..g.w_out {
                    let (mut best, mut sum, mut n) = (f64::NEG_INFINITY, 0.0, 0);
                    for ky in 0..g.kernel {
                        for kx in 0..g.kernel {
                            let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                            let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = x[(p * h + iy as usize) * w + ix as usize] as f64;
                            (best, sum, n) = (best.max(v), sum + v, n + 1);
                        }
                    }
                    out.push(match g.kind {
                        PoolKind::Max => best,
                        PoolKind::Avg { count_padding: true } => sum / (g.kernel * g.kernel) as f64,
                        PoolKind::Avg { count_padding: false } => sum / n as f64,
                    });
                }
            }
        }
        out
    }

    /// (kind, input, kernel, stride, padding): Inception's pools and odd sizes.
    type Case = (PoolKind, (usize, usize, usize, usize), usize, usize, usize);
    const CASES: &[Case] = &[
        (PoolKind::Max, (2, 3, 7, 7), 3, 2, 0),
        (PoolKind::Max, (1, 2, 5, 6), 3, 1, 1),
        (AVG, (2, 2, 5, 5), 3, 1, 1),
        (AVG_PAD, (2, 2, 5, 4), 3, 1, 1),
        (AVG, (1, 3, 8, 9), 2, 2, 1),
        (PoolKind::Max, (1, 1, 4, 4), 4, 4, 0),
    ];

    #[test]
    fn forward_matches_definition() {
        let dev = Cpu::default();
        for (i, &(kind, shape, k, s, p)) in CASES.iter().enumerate() {
            let x = rand_t4(&dev, shape, 40 + i as u64);
            let g = PoolGeom::new(kind, shape, k, s, p).unwrap();
            let want = naive(&x.as_vec(), shape, &g);
            let y = pool2d(x.clone(), kind, k, s, p).unwrap();
            assert_eq!(*y.shape(), (shape.0, shape.1, g.h_out, g.w_out), "case {i}");
            assert_close(&y.as_vec(), &want, 1e-6, &format!("case {i}"));
            assert_close(&composite(x, g).unwrap().as_vec(), &want, 1e-6, &format!("composite case {i}"));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        for (i, &(kind, shape, k, s, p)) in CASES.iter().enumerate() {
            // Distinct values spaced wider than the step, so no max changes hands.
            let n = shape.num_elements();
            let v: Vec<f32> = (0..n).map(|j| ((j * 7919) % n) as f32 * 0.1).collect();
            let x = from_vec(&dev, &v, shape);
            let g = PoolGeom::new(kind, shape, k, s, p).unwrap();
            let r = rand_vec(shape.0 * shape.1 * g.h_out * g.w_out, 50 + i as u64);
            for use_composite in [false, true] {
                let y = if use_composite {
                    composite(x.leaky_trace(), g).unwrap()
                } else {
                    pool2d(x.leaky_trace(), kind, k, s, p).unwrap()
                };
                let grads = weighted_sum_backward(y, &r);
                check_fd_with(
                    &format!("dx case {i} composite={use_composite}"),
                    &grads.get(&x).as_vec(),
                    &v,
                    1e-2,
                    2e-3,
                    |v| dot(&pool2d(from_vec(&dev, v, shape), kind, k, s, p).unwrap().as_vec(), &r),
                );
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let dev = Cpu::default();
        let x = rand_t4(&dev, (1, 1, 4, 4), 1);
        assert!(matches!(pool2d(x.clone(), PoolKind::Max, 0, 1, 0), Err(KernelError::Argument { .. })));
        assert!(matches!(pool2d(x.clone(), PoolKind::Max, 3, 1, 2), Err(KernelError::Argument { .. })));
        assert!(matches!(pool2d(x, PoolKind::Max, 5, 1, 0), Err(KernelError::Shape { .. })));
    }
}
