//! Nearest-neighbour upsampling by an integer factor: `out[b][c][y][x] = in[b][c][y/s][x/s]`
//! (PyTorch `nn.Upsample(scale_factor=s, mode="nearest")`). Backward sums each `s×s` block.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::cpu;
use super::{KernelError, T4};

const OP: &str = "upsample_nearest";

/// A device that can run [`upsample_nearest`].
pub trait UpsampleKernel: Device<f32> {
    /// Upsamples a non-empty `x` by `scale >= 1`.
    fn upsample_nearest<T: Tape<f32, Self>>(x: T4<Self, T>, scale: usize) -> Result<T4<Self, T>, KernelError>;
}

/// `[B,C,H,W] → [B,C,H·scale,W·scale]`, each input pixel repeated in a `scale×scale` block.
pub fn upsample_nearest<D: UpsampleKernel, T: Tape<f32, D>>(
    x: T4<D, T>,
    scale: usize,
) -> Result<T4<D, T>, KernelError> {
    if scale == 0 {
        return Err(KernelError::arg(OP, "scale must be at least 1"));
    }
    let shape = *x.shape();
    if shape.num_elements() == 0 {
        return Err(KernelError::shape(OP, format!("input {shape:?} has an empty dimension")));
    }
    D::upsample_nearest(x, scale)
}

impl UpsampleKernel for Cpu {
    fn upsample_nearest<T: Tape<f32, Self>>(x: T4<Self, T>, s: usize) -> Result<T4<Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (x, mut tape) = x.try_contiguous().map_err(dev_err)?.split_tape();
        let (b, c, h, w) = *x.shape();
        let (ho, wo) = (h * s, w * s);
        let (hw, hwo) = (h * w, ho * wo);

        let mut out = cpu::alloc(x.device(), b * c * hwo).map_err(dev_err)?;
        {
            let xs = cpu::read(&x).map_err(dev_err)?;
            out.par_chunks_mut(hwo).zip(xs.par_chunks(hw)).for_each(|(dst, src)| {
                for iy in 0..h {
                    let block = &mut dst[iy * s * wo..(iy + 1) * s * wo];
                    let (first, rest) = block.split_at_mut(wo);
                    for (d, v) in first.chunks_exact_mut(s).zip(&src[iy * w..(iy + 1) * w]) {
                        d.fill(*v);
                    }
                    for row in rest.chunks_exact_mut(wo) {
                        row.copy_from_slice(first);
                    }
                }
            });
        }
        let out = x.device().try_tensor_from_vec(out, (b, c, ho, wo)).map_err(dev_err)?;

        if T::OWNS_TAPE {
            cpu::record_backward(&mut tape, x, &out, move |gx, gy| {
                gx.par_chunks_mut(hw).zip(gy.par_chunks(hwo)).for_each(|(dst, src)| {
                    for iy in 0..h {
                        let d = &mut dst[iy * w..(iy + 1) * w];
                        for row in src[iy * s * wo..(iy + 1) * s * wo].chunks_exact(wo) {
                            for (g, block) in d.iter_mut().zip(row.chunks_exact(s)) {
                                *g += block.iter().sum::<f32>();
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
impl UpsampleKernel for Cuda {
    fn upsample_nearest<T: Tape<f32, Self>>(x: T4<Self, T>, scale: usize) -> Result<T4<Self, T>, KernelError> {
        composite(x, scale).map_err(|e| KernelError::device(OP, e))
    }
}

/// The same op as a composite of dfdx ops: broadcast `[B,C,H,W]` to `[B,C,H,s,W,s]` and
/// reshape (a copy) to `[B,C,H·s,W·s]`; dfdx sums the broadcast in backward. The CUDA
/// implementation. (dfdx's `upscale2d` computes source pixels with a float ratio; this is
/// exact for every integer scale.)
pub fn composite<D: Device<f32>, T: Tape<f32, D>>(x: T4<D, T>, s: usize) -> Result<T4<D, T>, D::Err> {
    let (b, c, h, w) = *x.shape();
    x.try_broadcast_like::<_, Axes2<3, 5>>(&(b, c, h, s, w, s))?.try_reshape_like(&(b, c, h * s, w * s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;

    fn naive(x: &[f32], (b, c, h, w): (usize, usize, usize, usize), s: usize) -> Vec<f64> {
        let (ho, wo) = (h * s, w * s);
        let mut out = vec![0.0; b * c * ho * wo];
        for p in 0..b * c {
            for y in 0..ho {
                for xx in 0..wo {
                    out[(p * ho + y) * wo + xx] = x[(p * h + y / s) * w + xx / s] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_definition() {
        let dev = Cpu::default();
        for (shape, s) in [((2, 3, 4, 5), 2), ((1, 2, 3, 2), 3), ((1, 1, 2, 2), 1)] {
            let x = rand_t4(&dev, shape, 1);
            let want = naive(&x.as_vec(), shape, s);
            let y = upsample_nearest(x.clone(), s).unwrap();
            assert_eq!(*y.shape(), (shape.0, shape.1, shape.2 * s, shape.3 * s));
            assert_close(&y.as_vec(), &want, 0.0, "cpu");
            assert_close(&composite(x, s).unwrap().as_vec(), &want, 0.0, "composite");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        for (shape, s) in [((2, 2, 3, 4), 2), ((1, 2, 2, 3), 3)] {
            let x = rand_t4(&dev, shape, 2);
            let r = rand_vec(shape.num_elements() * s * s, 3);
            for use_composite in [false, true] {
                let y = if use_composite {
                    composite(x.leaky_trace(), s).unwrap()
                } else {
                    upsample_nearest(x.leaky_trace(), s).unwrap()
                };
                let grads = weighted_sum_backward(y, &r);
                check_fd(
                    &format!("dx {shape:?} s={s} composite={use_composite}"),
                    &grads.get(&x).as_vec(),
                    &x.as_vec(),
                    |v| dot(&upsample_nearest(from_vec(&dev, v, shape), s).unwrap().as_vec(), &r),
                );
            }
        }
    }

    #[test]
    fn fan_out_gradients_add() {
        let dev = Cpu::default();
        let shape = (1, 2, 3, 3);
        let x = rand_t4(&dev, shape, 4);
        let r = rand_vec(shape.num_elements() * 4, 5);
        let tx = x.leaky_trace();
        let a = upsample_nearest(tx.with_empty_tape(), 2).unwrap();
        let b = upsample_nearest(tx, 2).unwrap();
        let both = weighted_sum_backward(a.try_add(b).unwrap(), &r);
        let one = weighted_sum_backward(upsample_nearest(x.leaky_trace(), 2).unwrap(), &r);
        let want: Vec<f64> = one.get(&x).as_vec().iter().map(|g| 2.0 * *g as f64).collect();
        assert_close(&both.get(&x).as_vec(), &want, 1e-6, "fan-out");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let dev = Cpu::default();
        let x = rand_t4(&dev, (1, 1, 2, 2), 1);
        assert!(matches!(upsample_nearest(x, 0), Err(KernelError::Argument { .. })));
        let empty = from_vec(&dev, &[], (0, 1, 2, 2));
        assert!(matches!(upsample_nearest(empty, 2), Err(KernelError::Shape { .. })));
    }
}
