//! Batch normalisation over `(batch, height, width)` per channel, as one fused op (PyTorch
//! `BatchNorm2d`; `BatchNorm1d` on `[B,F]` is the same op on `[B,F,1,1]`).
//!
//! Training mode normalises with the biased batch variance and updates the running
//! statistics with the *unbiased* one, `running = (1 − m)·running + m·batch`; evaluation mode
//! normalises with the running statistics. CPU forward is two reductions and one
//! normalising pass; backward is one reduction (`Σdy`, `Σdy·(x − μ)`) and one pass for `dx`.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::cpu::{self, add_grad, put_grad, take_grad};
use super::{KernelError, T1, T4};

const OP: &str = "batch_norm";

/// How batch norm runs: which statistics, and how running statistics move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormMode {
    /// Batch statistics (and running-stat updates) when true, running statistics otherwise.
    pub train: bool,
    /// Weight of the new batch statistics in the running average (PyTorch's `momentum`).
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
}

/// A device that can run [`batch_norm`].
pub trait BatchNormKernel: Device<f32> {
    /// Runs batch norm on shapes [`batch_norm`] has already checked.
    fn batch_norm<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        gamma: T1<Self, T>,
        beta: T1<Self, T>,
        running_mean: &mut T1<Self>,
        running_var: &mut T1<Self>,
        mode: BatchNormMode,
    ) -> Result<T4<Self, T>, KernelError>;
}

/// `y = (x − μ)/√(σ² + eps)·gamma + beta` per channel of `x [B,C,H,W]`. In training mode
/// `μ, σ²` are the batch mean and biased variance over `(B,H,W)` and the running statistics
/// are updated in place; otherwise they are `running_mean`, `running_var`. Gradients flow to
/// `x`, `gamma` and `beta` (through the batch statistics in training mode).
pub fn batch_norm<D: BatchNormKernel, T: Tape<f32, D>>(
    x: T4<D, T>,
    gamma: T1<D, T>,
    beta: T1<D, T>,
    running_mean: &mut T1<D>,
    running_var: &mut T1<D>,
    mode: BatchNormMode,
) -> Result<T4<D, T>, KernelError> {
    let shape = *x.shape();
    let (b, c, h, w) = shape;
    if shape.num_elements() == 0 {
        return Err(KernelError::shape(OP, format!("input {shape:?} has an empty dimension")));
    }
    for (name, len) in [
        ("gamma", gamma.shape().0),
        ("beta", beta.shape().0),
        ("running_mean", running_mean.shape().0),
        ("running_var", running_var.shape().0),
    ] {
        if len != c {
            return Err(KernelError::shape(
                OP,
                format!("{name} has {len} elements but input {shape:?} has {c} channels"),
            ));
        }
    }
    if mode.train && b * h * w < 2 {
        return Err(KernelError::arg(
            OP,
            format!(
                "training mode needs more than one value per channel, input is {shape:?} \
                 (batch statistics of one value are undefined)"
            ),
        ));
    }
    D::batch_norm(x, gamma, beta, running_mean, running_var, mode)
}

/// Rows of `[B, C, hw]` per parallel task, at least this many elements.
const MIN_TASK: usize = 1 << 12;

/// Per channel: `(Σ f(row), ...)` over the `B` rows of that channel, in f64.
fn per_channel<F>(b: usize, c: usize, hw: usize, f: F) -> Vec<(f64, f64)>
where
    F: Fn(usize) -> (f32, f32) + Sync,
{
    (0..c)
        .into_par_iter()
        .with_min_len((MIN_TASK / (b * hw)).max(1))
        .map(|ch| {
            (0..b).fold((0.0, 0.0), |(s0, s1), bi| {
                let (a0, a1) = f((bi * c + ch) * hw);
                (s0 + a0 as f64, s1 + a1 as f64)
            })
        })
        .collect()
}

/// The batch's mean and (biased) variance per channel of `xs` `[b, c, hw]`: sums in f64
/// over f32 partial sums, the variance from deviations (two passes, as PyTorch's CPU).
fn batch_stats((b, c, hw): (usize, usize, usize), xs: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = b * hw;
    let sums = per_channel(b, c, hw, |o| (cpu::sum(&xs[o..o + hw]), 0.0));
    let mean: Vec<f32> = sums.iter().map(|s| (s.0 / n as f64) as f32).collect();
    let sq = per_channel(b, c, hw, |o| (cpu::sum_sq_dev(&xs[o..o + hw], mean[o / hw % c]), 0.0));
    let var = sq.iter().map(|s| (s.0 / n as f64) as f32).collect();
    (mean, var)
}

/// `y = x·scale[c] + shift[c]` over `[b, c, hw]`: from `saved` into `out`, or in place in
/// `out` when no copy of the input is kept.
fn normalise((c, hw): (usize, usize), (scale, shift): (&[f32], &[f32]), saved: Option<&[f32]>, out: &mut [f32]) {
    let min_rows = (MIN_TASK / hw).max(1);
    match saved {
        Some(xs) => out.par_chunks_mut(hw).zip(xs.par_chunks(hw)).enumerate().with_min_len(min_rows).for_each(
            |(q, (ys, xs))| {
                let (a, s) = (scale[q % c], shift[q % c]);
                for (y, x) in ys.iter_mut().zip(xs) {
                    *y = x * a + s;
                }
            },
        ),
        None => out.par_chunks_mut(hw).enumerate().with_min_len(min_rows).for_each(|(q, ys)| {
            let (a, s) = (scale[q % c], shift[q % c]);
            for y in ys {
                *y = *y * a + s;
            }
        }),
    }
}

impl BatchNormKernel for Cpu {
    fn batch_norm<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        gamma: T1<Self, T>,
        beta: T1<Self, T>,
        running_mean: &mut T1<Self>,
        running_var: &mut T1<Self>,
        mode: BatchNormMode,
    ) -> Result<T4<Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (x, tape_x) = x.try_contiguous().map_err(dev_err)?.split_tape();
        let (gamma, tape_g) = gamma.split_tape();
        let (beta, tape_b) = beta.split_tape();
        let mut tape = tape_x.merge(tape_g).merge(tape_b);
        let shape = *x.shape();
        let (b, c, h, w) = shape;
        let hw = h * w;
        let n = b * hw;
        let gs = gamma.as_vec();
        let bs = beta.as_vec();

        // The input: a copy kept for backward, or normalised in place.
        let (saved, mut out) = if T::OWNS_TAPE {
            let out = cpu::alloc(x.device(), shape.num_elements()).map_err(dev_err)?;
            (Some(cpu::read(&x).map_err(dev_err)?), out)
        } else {
            (None, cpu::read_vec(&x).map_err(dev_err)?)
        };
        let xs: &[f32] = saved.as_deref().unwrap_or(&out);

        let (mean, var): (Vec<f32>, Vec<f32>) =
            if mode.train { batch_stats((b, c, hw), xs) } else { (running_mean.as_vec(), running_var.as_vec()) };
        let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (*v as f64 + mode.eps as f64).sqrt()) as f32).collect();
        let scale: Vec<f32> = (0..c).map(|i| gs[i] * inv_std[i]).collect();
        let shift: Vec<f32> = (0..c).map(|i| bs[i] - mean[i] * scale[i]).collect();
        normalise((c, hw), (&scale, &shift), saved.as_deref(), &mut out);
        if mode.train {
            let m = mode.momentum;
            let unbias = n as f32 / (n - 1) as f32;
            let rm: Vec<f32> = running_mean.as_vec().iter().zip(&mean).map(|(r, v)| (1.0 - m) * r + m * v).collect();
            let rv: Vec<f32> =
                running_var.as_vec().iter().zip(&var).map(|(r, v)| (1.0 - m) * r + m * v * unbias).collect();
            store(running_mean, &rm)?;
            store(running_var, &rv)?;
        }

        let out = x.device().try_tensor_from_vec(out, shape).map_err(dev_err)?;
        if let (true, Some(xs)) = (T::OWNS_TAPE, saved) {
            let x_ghost = x.ghost();
            let g_ghost = gamma.ghost();
            let b_ghost = beta.ghost();
            let out_ghost = out.ghost();
            drop((x, gamma, beta));
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, &out_ghost, b * c * hw);
                let mut gx = take_grad!(grads, &x_ghost, b * c * hw);
                let stats = Stats { dims: (b, c, hw), mean: &mean, inv_std: &inv_std, gamma: &gs, train: mode.train };
                let (dgamma, dbeta) = backward(&stats, &xs, &gy, &mut gx);
                put_grad!(grads, &x_ghost, gx);
                add_grad!(grads, &g_ghost, &dgamma);
                add_grad!(grads, &b_ghost, &dbeta);
                put_grad!(grads, &out_ghost, gy);
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

/// What backward needs from forward.
struct Stats<'a> {
    dims: (usize, usize, usize),
    mean: &'a [f32],
    inv_std: &'a [f32],
    gamma: &'a [f32],
    train: bool,
}

/// Adds `dL/dx` into `gx` and returns `(dL/dgamma, dL/dbeta)`.
///
/// With `x̂ = (x − μ)·σ⁻¹`: `dβ = Σdy`, `dγ = Σdy·x̂`, and in training mode
/// `dx = γσ⁻¹·(dy − Σdy/n − x̂·Σdy·x̂/n)` (μ and σ depend on x); in eval mode `dx = γσ⁻¹·dy`.
fn backward(st: &Stats, xs: &[f32], gy: &[f32], gx: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let (b, c, hw) = st.dims;
    let n = (b * hw) as f64;
    let sums = per_channel(b, c, hw, |o| cpu::sum_and_dot_dev(&gy[o..o + hw], &xs[o..o + hw], st.mean[o / hw % c]));
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = (0..c).map(|i| (sums[i].1 * st.inv_std[i] as f64) as f32).collect();
    // dx = a·dy + k·x + d per channel.
    let coef: Vec<(f32, f32, f32)> = (0..c)
        .map(|i| {
            let is = st.inv_std[i] as f64;
            let a = st.gamma[i] as f64 * is;
            if !st.train {
                return (a as f32, 0.0, 0.0);
            }
            let (sdy, sdyx) = sums[i];
            let k = -a * is * is * sdyx / n;
            let d = -a * sdy / n - k * st.mean[i] as f64;
            (a as f32, k as f32, d as f32)
        })
        .collect();
    gx.par_chunks_mut(hw)
        .zip(gy.par_chunks(hw).zip(xs.par_chunks(hw)))
        .enumerate()
        .with_min_len((MIN_TASK / hw).max(1))
        .for_each(|(q, (gxs, (gys, xs)))| {
            let (a, k, d) = coef[q % c];
            for ((g, dy), x) in gxs.iter_mut().zip(gys).zip(xs) {
                *g += a * dy + k * x + d;
            }
        });
    (dgamma, dbeta)
}

/// Writes `values` into a running-statistics tensor, keeping its id.
fn store(t: &mut T1<Cpu>, values: &[f32]) -> Result<(), KernelError> {
    // copy_from writes physical memory, so make sure it is laid out densely first.
    *t = t.clone().try_contiguous().map_err(|e| KernelError::device(OP, e))?;
    t.copy_from(values);
    Ok(())
}

#[cfg(feature = "cuda")]
impl BatchNormKernel for Cuda {
    fn batch_norm<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        gamma: T1<Self, T>,
        beta: T1<Self, T>,
        running_mean: &mut T1<Self>,
        running_var: &mut T1<Self>,
        mode: BatchNormMode,
    ) -> Result<T4<Self, T>, KernelError> {
        composite(x, gamma, beta, running_mean, running_var, mode).map_err(|e| KernelError::device(OP, e))
    }
}

/// The same op as a composite of dfdx ops (sums, broadcasts, elementwise): the CUDA
/// implementation, and a cross-check for the fused CPU kernel.
pub fn composite<D: Device<f32>, T: Tape<f32, D>>(
    x: T4<D, T>,
    gamma: T1<D, T>,
    beta: T1<D, T>,
    running_mean: &mut T1<D>,
    running_var: &mut T1<D>,
    mode: BatchNormMode,
) -> Result<T4<D, T>, D::Err> {
    let shape = *x.shape();
    let (b, _, h, w) = shape;
    let n = (b * h * w) as f32;
    if mode.train {
        let mean = x.with_empty_tape().try_sum::<(usize,), Axes3<0, 2, 3>>()?.try_div(n)?;
        let mean_now = mean.retaped::<NoneTape>();
        let centred = x.try_sub(mean.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)?;
        let var = centred.with_empty_tape().try_square()?.try_sum::<(usize,), Axes3<0, 2, 3>>()?.try_div(n)?;
        let var_now = var.retaped::<NoneTape>();
        let scale = var.try_add(mode.eps)?.try_sqrt()?.try_recip()?.try_mul(gamma)?;
        let m = mode.momentum;
        *running_mean = running_mean.clone().try_mul(1.0 - m)?.try_add(mean_now.try_mul(m)?)?;
        *running_var = running_var.clone().try_mul(1.0 - m)?.try_add(var_now.try_mul(m * n / (n - 1.0))?)?;
        centred
            .try_mul(scale.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)?
            .try_add(beta.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)
    } else {
        let inv_std = running_var.clone().try_add(mode.eps)?.try_sqrt()?.try_recip()?;
        let scale = gamma.try_mul(inv_std)?;
        let mean = running_mean.clone().try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        x.try_sub(mean)?
            .try_mul(scale.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)?
            .try_add(beta.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: BatchNormMode = BatchNormMode { train: true, momentum: 0.1, eps: 1e-5 };
    const EVAL: BatchNormMode = BatchNormMode { train: false, ..TRAIN };
    use crate::kernels::testutil::*;

    type Fwd = fn(
        T4<Cpu, OwnedTape<f32, Cpu>>,
        T1<Cpu, OwnedTape<f32, Cpu>>,
        T1<Cpu, OwnedTape<f32, Cpu>>,
        &mut T1<Cpu>,
        &mut T1<Cpu>,
        BatchNormMode,
    ) -> T4<Cpu, OwnedTape<f32, Cpu>>;

    fn fast(
        x: T4<Cpu, OwnedTape<f32, Cpu>>,
        g: T1<Cpu, OwnedTape<f32, Cpu>>,
        b: T1<Cpu, OwnedTape<f32, Cpu>>,
        rm: &mut T1<Cpu>,
        rv: &mut T1<Cpu>,
        m: BatchNormMode,
    ) -> T4<Cpu, OwnedTape<f32, Cpu>> {
        batch_norm(x, g, b, rm, rv, m).unwrap()
    }

    fn slow(
        x: T4<Cpu, OwnedTape<f32, Cpu>>,
        g: T1<Cpu, OwnedTape<f32, Cpu>>,
        b: T1<Cpu, OwnedTape<f32, Cpu>>,
        rm: &mut T1<Cpu>,
        rv: &mut T1<Cpu>,
        m: BatchNormMode,
    ) -> T4<Cpu, OwnedTape<f32, Cpu>> {
        composite(x, g, b, rm, rv, m).unwrap()
    }

    const MODE_TRAIN: BatchNormMode = TRAIN;
    const MODE_EVAL: BatchNormMode = BatchNormMode { train: false, ..MODE_TRAIN };

    /// Plain f64 batch norm: `(y, batch mean, biased batch var)`.
    fn naive(
        x: &[f32],
        (b, c, h, w): (usize, usize, usize, usize),
        gamma: &[f32],
        beta: &[f32],
        stats: Option<(&[f32], &[f32])>,
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let hw = h * w;
        let n = (b * hw) as f64;
        let at = |bi: usize, ch: usize, i: usize| x[(bi * c + ch) * hw + i] as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for ch in 0..c {
            let vals: Vec<f64> =
                (0..b).flat_map(|bi| (0..hw).map(move |i| (bi, i))).map(|(bi, i)| at(bi, ch, i)).collect();
            mean[ch] = vals.iter().sum::<f64>() / n;
            var[ch] = vals.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / n;
        }
        let (m, v): (Vec<f64>, Vec<f64>) = match stats {
            Some((rm, rv)) => (rm.iter().map(|&v| v as f64).collect(), rv.iter().map(|&v| v as f64).collect()),
            None => (mean.clone(), var.clone()),
        };
        let mut y = vec![0.0; x.len()];
        for bi in 0..b {
            for ch in 0..c {
                for i in 0..hw {
                    y[(bi * c + ch) * hw + i] =
                        (at(bi, ch, i) - m[ch]) / (v[ch] + eps).sqrt() * gamma[ch] as f64 + beta[ch] as f64;
                }
            }
        }
        (y, mean, var)
    }

    #[test]
    fn train_forward_and_running_stats() {
        let dev = Cpu::default();
        for shape in [(4, 3, 2, 3), (5, 6, 1, 1)] {
            let c = shape.1;
            let x = rand_t4(&dev, shape, 1);
            let gamma = rand_t1(&dev, c, 2);
            let beta = rand_t1(&dev, c, 3);
            let rm0 = rand_vec(c, 4);
            let rv0: Vec<f32> = rand_vec(c, 5).iter().map(|v| v.abs() + 0.5).collect();
            let (want, mean, var) = naive(&x.as_vec(), shape, &gamma.as_vec(), &beta.as_vec(), None, 1e-5);
            let n = (shape.0 * shape.2 * shape.3) as f64;
            let want_rm: Vec<f64> = (0..c).map(|i| 0.9 * rm0[i] as f64 + 0.1 * mean[i]).collect();
            let want_rv: Vec<f64> = (0..c).map(|i| 0.9 * rv0[i] as f64 + 0.1 * var[i] * n / (n - 1.0)).collect();
            for use_composite in [false, true] {
                let mut rm = from_vec(&dev, &rm0, (c,));
                let mut rv = from_vec(&dev, &rv0, (c,));
                let y = if use_composite {
                    composite(x.clone(), gamma.clone(), beta.clone(), &mut rm, &mut rv, MODE_TRAIN).unwrap()
                } else {
                    batch_norm(x.clone(), gamma.clone(), beta.clone(), &mut rm, &mut rv, TRAIN).unwrap()
                };
                let name = format!("{shape:?} composite={use_composite}");
                assert_close(&y.as_vec(), &want, 1e-5, &format!("y {name}"));
                assert_close(&rm.as_vec(), &want_rm, 1e-6, &format!("running_mean {name}"));
                assert_close(&rv.as_vec(), &want_rv, 1e-6, &format!("running_var {name}"));
            }
        }
    }

    #[test]
    fn eval_uses_running_stats_and_leaves_them() {
        let dev = Cpu::default();
        let shape = (2, 3, 2, 2);
        let x = rand_t4(&dev, shape, 1);
        let gamma = rand_t1(&dev, 3, 2);
        let beta = rand_t1(&dev, 3, 3);
        let rm0 = rand_vec(3, 4);
        let rv0 = vec![0.5, 1.5, 2.0];
        let (want, _, _) = naive(&x.as_vec(), shape, &gamma.as_vec(), &beta.as_vec(), Some((&rm0, &rv0)), 1e-5);
        for use_composite in [false, true] {
            let mut rm = from_vec(&dev, &rm0, (3,));
            let mut rv = from_vec(&dev, &rv0, (3,));
            let y = if use_composite {
                composite(x.clone(), gamma.clone(), beta.clone(), &mut rm, &mut rv, MODE_EVAL).unwrap()
            } else {
                batch_norm(x.clone(), gamma.clone(), beta.clone(), &mut rm, &mut rv, EVAL).unwrap()
            };
            assert_close(&y.as_vec(), &want, 1e-5, "eval y");
            assert_eq!(rm.as_vec(), rm0);
            assert_eq!(rv.as_vec(), rv0);
        }
    }

    fn grad_check(shape: (usize, usize, usize, usize), mode: BatchNormMode, fwd: Fwd, name: &str) {
        let dev = Cpu::default();
        let c = shape.1;
        let x = rand_t4(&dev, shape, 11);
        let gamma = from_vec(&dev, &rand_vec(c, 12).iter().map(|v| v + 1.5).collect::<Vec<_>>(), (c,));
        let beta = rand_t1(&dev, c, 13);
        let rm = rand_t1(&dev, c, 14);
        let rv = from_vec(&dev, &rand_vec(c, 15).iter().map(|v| v.abs() + 0.5).collect::<Vec<_>>(), (c,));
        let r = rand_vec(shape.num_elements(), 16);

        let (mut rm1, mut rv1) = (rm.clone(), rv.clone());
        let y = fwd(x.leaky_trace(), gamma.retaped(), beta.retaped(), &mut rm1, &mut rv1, mode);
        let grads = weighted_sum_backward(y, &r);

        let loss = |x: T4<Cpu>, g: T1<Cpu>, b: T1<Cpu>| {
            let (mut rm, mut rv) = (rm.clone(), rv.clone());
            let y = batch_norm(x, g, b, &mut rm, &mut rv, mode);
            dot(&y.unwrap().as_vec(), &r)
        };
        let t1 = |v: &[f32]| from_vec(&dev, v, (c,));
        check_fd_with(&format!("dx {name}"), &grads.get(&x).as_vec(), &x.as_vec(), 1e-2, 5e-3, |v| {
            loss(from_vec(&dev, v, shape), gamma.clone(), beta.clone())
        });
        check_fd(&format!("dgamma {name}"), &grads.get(&gamma).as_vec(), &gamma.as_vec(), |v| {
            loss(x.clone(), t1(v), beta.clone())
        });
        check_fd(&format!("dbeta {name}"), &grads.get(&beta).as_vec(), &beta.as_vec(), |v| {
            loss(x.clone(), gamma.clone(), t1(v))
        });
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (shape, mode) in [((3, 2, 2, 3), MODE_TRAIN), ((4, 5, 1, 1), MODE_TRAIN), ((3, 2, 2, 3), MODE_EVAL)] {
            grad_check(shape, mode, fast, &format!("{shape:?} train={}", mode.train));
            grad_check(shape, mode, slow, &format!("composite {shape:?} train={}", mode.train));
        }
    }

    #[test]
    fn fan_out_gradients_add() {
        // x feeds batch norm and, directly, the loss: dL/dx = r + BN's contribution.
        let dev = Cpu::default();
        let shape = (3, 2, 2, 2);
        let x = rand_t4(&dev, shape, 1);
        let gamma = rand_t1(&dev, 2, 2);
        let beta = rand_t1(&dev, 2, 3);
        let r = rand_vec(shape.num_elements(), 4);
        let (mut rm, mut rv) = (rand_t1(&dev, 2, 5), from_vec(&dev, &[1.0, 1.0], (2,)));
        let tx = x.leaky_trace();
        let y = batch_norm(tx.with_empty_tape(), gamma.retaped(), beta.retaped(), &mut rm, &mut rv, TRAIN).unwrap();
        let both = weighted_sum_backward(y.try_add(tx).unwrap(), &r);
        let y = batch_norm(x.leaky_trace(), gamma.retaped(), beta.retaped(), &mut rm, &mut rv, TRAIN).unwrap();
        let one = weighted_sum_backward(y, &r);
        let want: Vec<f64> = one.get(&x).as_vec().iter().zip(&r).map(|(g, r)| (*g + *r) as f64).collect();
        assert_close(&both.get(&x).as_vec(), &want, 1e-6, "fan-out");
    }

    #[test]
    fn shape_errors_are_reported() {
        let dev = Cpu::default();
        let x = rand_t4(&dev, (2, 3, 2, 2), 1);
        let ok = rand_t1(&dev, 3, 2);
        let bad = rand_t1(&dev, 4, 3);
        let mut rm = rand_t1(&dev, 3, 4);
        let mut rv = rand_t1(&dev, 3, 5);
        let e = batch_norm(x.clone(), bad, ok.clone(), &mut rm, &mut rv, TRAIN);
        assert!(matches!(e, Err(KernelError::Shape { .. })));
        let mut rv_bad = rand_t1(&dev, 2, 5);
        let e = batch_norm(x, ok.clone(), ok.clone(), &mut rm, &mut rv_bad, EVAL);
        assert!(matches!(e, Err(KernelError::Shape { .. })));
        let single = rand_t4(&dev, (1, 3, 1, 1), 6);
        let e = batch_norm(single.clone(), ok.clone(), ok.clone(), &mut rm, &mut rv, TRAIN);
        assert!(matches!(e, Err(KernelError::Argument { .. })));
        assert!(batch_norm(single, ok.clone(), ok, &mut rm, &mut rv, EVAL).is_ok());
    }
}
