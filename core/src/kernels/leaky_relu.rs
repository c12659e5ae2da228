//! Leaky ReLU, `y = x` for `x > 0` and `slope·x` otherwise (slope 0 is ReLU), on tensors of
//! any shape. Backward uses PyTorch's convention at 0: the slope, not 1.
//!
//! CPU: one pass that copies the input into the output buffer and rewrites it in place;
//! when recording a tape it also keeps a byte mask of `x > 0` (a quarter of the input's
//! size) for backward, instead of the input itself.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::cpu;
use super::KernelError;

const OP: &str = "leaky_relu";

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// A device that can run [`leaky_relu`].
pub trait LeakyReluKernel: Device<f32> {
    /// Runs leaky ReLU elementwise.
    fn leaky_relu<S: Shape, T: Tape<f32, Self>>(
        x: Tensor<S, f32, Self, T>,
        slope: f32,
    ) -> Result<Tensor<S, f32, Self, T>, KernelError>;
}

/// `y = x > 0 ? x : slope·x`, elementwise, for any shape (usually a `T4`).
pub fn leaky_relu<S: Shape, D: LeakyReluKernel, T: Tape<f32, D>>(
    x: Tensor<S, f32, D, T>,
    slope: f32,
) -> Result<Tensor<S, f32, D, T>, KernelError> {
    D::leaky_relu(x, slope)
}

impl LeakyReluKernel for Cpu {
    fn leaky_relu<S: Shape, T: Tape<f32, Self>>(
        x: Tensor<S, f32, Self, T>,
        slope: f32,
    ) -> Result<Tensor<S, f32, Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (x, mut tape) = x.try_contiguous().map_err(dev_err)?.split_tape();
        let shape = *x.shape();
        let n = shape.num_elements();
        let mut out = cpu::read_vec(&x).map_err(dev_err)?;

        if T::OWNS_TAPE {
            let mut mask = vec![0u8; n];
            out.par_chunks_mut(CHUNK).zip(mask.par_chunks_mut(CHUNK)).for_each(move |(ys, ms)| {
                for (y, m) in ys.iter_mut().zip(ms) {
                    let pos = *y > 0.0;
                    *m = pos as u8;
                    *y *= if pos { 1.0 } else { slope };
                }
            });
            let out = x.device().try_tensor_from_vec(out, shape).map_err(dev_err)?;
            cpu::record_backward(&mut tape, x, &out, move |gx, gy| {
                gx.par_chunks_mut(CHUNK).zip(gy.par_chunks(CHUNK).zip(mask.par_chunks(CHUNK))).for_each(
                    move |(gxs, (gys, ms))| {
                        for ((gx, gy), m) in gxs.iter_mut().zip(gys).zip(ms) {
                            *gx += *gy * if *m != 0 { 1.0 } else { slope };
                        }
                    },
                );
            });
            Ok(out.put_tape(tape))
        } else {
            // `move`: a by-value slope lets the loop vectorise (a captured reference is
            // re-loaded on one branch, which keeps it scalar).
            out.par_chunks_mut(CHUNK).for_each(move |ys| {
                for y in ys {
                    // Multiplying by a selected factor is branch-free; `x·1` is exact and NaN
                    // stays NaN.
                    *y *= if *y > 0.0 { 1.0 } else { slope };
                }
            });
            let out = x.device().try_tensor_from_vec(out, shape).map_err(dev_err)?;
            Ok(out.put_tape(tape))
        }
    }
}

#[cfg(feature = "cuda")]
impl LeakyReluKernel for Cuda {
    fn leaky_relu<S: Shape, T: Tape<f32, Self>>(
        x: Tensor<S, f32, Self, T>,
        slope: f32,
    ) -> Result<Tensor<S, f32, Self, T>, KernelError> {
        composite(x, slope).map_err(|e| KernelError::device(OP, e))
    }
}

/// The same op as a composite of dfdx ops, `slope·x + (1 − slope)·relu(x)`: the CUDA
/// implementation. (dfdx's own `leakyrelu` takes slope 1 at `x = 0`; this matches PyTorch.)
pub fn composite<S: Shape, D: Device<f32>, T: Tape<f32, D>>(
    x: Tensor<S, f32, D, T>,
    slope: f32,
) -> Result<Tensor<S, f32, D, T>, D::Err> {
    let pos = x.with_empty_tape().try_relu()?.try_mul(1.0 - slope)?;
    x.try_mul(slope)?.try_add(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;
    use crate::kernels::T4;

    /// Inputs kept at least 0.1 away from the kink, so finite differences do not cross it.
    fn away_from_zero(n: usize, seed: u64) -> Vec<f32> {
        rand_vec(n, seed).into_iter().map(|v| if v >= 0.0 { v + 0.1 } else { v - 0.1 }).collect()
    }

    #[test]
    fn forward_matches_definition() {
        let dev = Cpu::default();
        let v = vec![-2.0, -0.5, 0.0, 0.5, 3.0, -0.0];
        let x = from_vec(&dev, &v, (1, 1, 2, 3));
        for slope in [0.2, 0.0] {
            let y = leaky_relu(x.clone(), slope).unwrap().as_vec();
            let want: Vec<f32> = v.iter().map(|&x| if x > 0.0 { x } else { slope * x }).collect();
            assert_eq!(y, want);
            let c = composite(x.clone(), slope).unwrap().as_vec();
            let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            assert_close(&c, &want64, 1e-7, "composite");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        let shape = (2, 3, 4, 5);
        let v = away_from_zero(shape.num_elements(), 1);
        let r = rand_vec(v.len(), 2);
        for slope in [0.2, 0.0] {
            for use_composite in [false, true] {
                let run = |x: T4<Cpu, OwnedTape<f32, Cpu>>| {
                    if use_composite {
                        composite(x, slope).unwrap()
                    } else {
                        leaky_relu(x, slope).unwrap()
                    }
                };
                let x = from_vec(&dev, &v, shape);
                let grads = weighted_sum_backward(run(x.leaky_trace()), &r);
                check_fd(&format!("dx slope={slope} composite={use_composite}"), &grads.get(&x).as_vec(), &v, |p| {
                    dot(&leaky_relu(from_vec(&dev, p, shape), slope).unwrap().as_vec(), &r)
                });
            }
        }
    }

    #[test]
    fn gradient_at_zero_is_the_slope() {
        let dev = Cpu::default();
        let x = from_vec(&dev, &[0.0], (1, 1, 1, 1));
        let g = weighted_sum_backward(leaky_relu(x.leaky_trace(), 0.2).unwrap(), &[1.0]);
        assert_eq!(g.get(&x).as_vec(), vec![0.2]);
        let g = weighted_sum_backward(composite(x.leaky_trace(), 0.2).unwrap(), &[1.0]);
        assert!((g.get(&x).as_vec()[0] - 0.2).abs() < 1e-7);
    }

    #[test]
    fn fan_out_gradients_add() {
        // y = leaky(x) + leaky(x): dL/dx is twice that of one branch.
        let dev = Cpu::default();
        let shape = (1, 2, 3, 3);
        let v = away_from_zero(shape.num_elements(), 3);
        let r = rand_vec(v.len(), 4);
        let x = from_vec(&dev, &v, shape);
        let tx = x.leaky_trace();
        let a = leaky_relu(tx.with_empty_tape(), 0.2).unwrap();
        let b = leaky_relu(tx, 0.2).unwrap();
        let both = weighted_sum_backward(a.try_add(b).unwrap(), &r);
        let one = weighted_sum_backward(leaky_relu(x.leaky_trace(), 0.2).unwrap(), &r);
        let want: Vec<f64> = one.get(&x).as_vec().iter().map(|g| 2.0 * *g as f64).collect();
        assert_close(&both.get(&x).as_vec(), &want, 1e-7, "fan-out");
    }

    #[test]
    fn works_on_any_rank() {
        let dev = Cpu::default();
        let x = from_vec(&dev, &[-1.0, 2.0, -3.0], (3,));
        assert_eq!(leaky_relu(x, 0.5).unwrap().as_vec(), vec![-0.5, 2.0, -1.5]);
    }
}
