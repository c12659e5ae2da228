//! Test helpers: deterministic random tensors, a weighted-sum loss, finite differences.

use dfdx::prelude::*;

use super::{T1, T4};

/// Deterministic values in `[-1, 1)` (an LCG, so tests do not depend on dfdx's RNG).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn from_vec<S: Shape>(dev: &Cpu, v: &[f32], shape: S) -> Tensor<S, f32, Cpu> {
    dev.tensor_from_vec(v.to_vec(), shape)
}

pub fn rand_t4(dev: &Cpu, shape: (usize, usize, usize, usize), seed: u64) -> T4<Cpu> {
    from_vec(dev, &rand_vec(shape.num_elements(), seed), shape)
}

pub fn rand_t1(dev: &Cpu, n: usize, seed: u64) -> T1<Cpu> {
    from_vec(dev, &rand_vec(n, seed), (n,))
}

/// `Σ a·r` in f64.
pub fn dot(a: &[f32], r: &[f32]) -> f64 {
    assert_eq!(a.len(), r.len());
    a.iter().zip(r).map(|(a, r)| *a as f64 * *r as f64).sum()
}

/// Backpropagates `L = Σ r ⊙ y`.
pub fn weighted_sum_backward(y: T4<Cpu, OwnedTape<f32, Cpu>>, r: &[f32]) -> Gradients<f32, Cpu> {
    let dev = y.device().clone();
    let r = dev.tensor_from_vec(r.to_vec(), *y.shape());
    y.try_mul(r).unwrap().try_sum::<Rank0, _>().unwrap().backward()
}

/// Asserts `|got - want| <= tol·(1 + |want|)` elementwise.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, name: &str) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(err <= tol * (1.0 + w.abs()), "{name}: element {i}: got {g}, want {w} (err {err:e})");
    }
}

/// Central finite differences of `loss` around `x0`, compared with `analytic`.
pub fn check_fd(name: &str, analytic: &[f32], x0: &[f32], loss: impl Fn(&[f32]) -> f64) {
    check_fd_with(name, analytic, x0, 1e-2, 2e-3, loss)
}

/// [`check_fd`] with an explicit step and tolerance.
pub fn check_fd_with(name: &str, analytic: &[f32], x0: &[f32], eps: f32, tol: f64, loss: impl Fn(&[f32]) -> f64) {
    assert_eq!(analytic.len(), x0.len(), "{name}: gradient length");
    let mut x = x0.to_vec();
    let numeric: Vec<f64> = (0..x.len())
        .map(|i| {
            let (hi, lo) = (x0[i] + eps, x0[i] - eps);
            x[i] = hi;
            let up = loss(&x);
            x[i] = lo;
            let down = loss(&x);
            x[i] = x0[i];
            (up - down) / (hi as f64 - lo as f64)
        })
        .collect();
    assert_close(analytic, &numeric, tol, name);
}
