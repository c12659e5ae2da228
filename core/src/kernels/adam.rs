//! Adam's update of one parameter from its gradient, on the device that holds both.
//!
//! CPU: the gradient is read where backward left it (no copy), the parameter's values are
//! copied once into a new buffer of the device, the update is PyTorch's non-fused Adam
//! evaluated in f32 operation for operation ([`AdamStep::apply`]), spread over threads,
//! and the buffer becomes the parameter's new tensor by a move. Nothing crosses to a
//! host vector and back, so a CPU training iteration moves only its batch in and its
//! logged scalars out. CUDA: the parameter and its gradient are read back, updated on the
//! host and copied up again (counted in [`crate::mem::transferred`]); a device kernel
//! for it is not written yet.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::KernelError;

const OP: &str = "adam";

/// Elements per parallel task.
const CHUNK: usize = 4096;

/// One Adam step's constants, from the learning rate, (β1, β2), ε and the step count t ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// lr / (1 − β1ᵗ).
    step_size: f32,
    /// √(1 − β2ᵗ).
    bc2_sqrt: f32,
    /// 1 − β1: the weight of the first moment's `lerp` toward the gradient.
    w1: f32,
    /// β2.
    b2: f32,
    /// 1 − β2.
    one_minus_b2: f32,
    /// ε.
    eps: f32,
}

impl AdamStep {
    /// The constants of step `t` (counted from 1), computed in f64 as PyTorch does.
    pub fn new(lr: f64, (b1, b2): (f64, f64), eps: f64, t: u64) -> Self {
        let t = t.max(1).min(i32::MAX as u64) as i32;
        Self {
            step_size: (lr / (1.0 - b1.powi(t))) as f32,
            bc2_sqrt: (1.0 - b2.powi(t)).sqrt() as f32,
            w1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            eps: eps as f32,
        }
    }

    /// Updates `p` and the moments `m`, `v` in place from the gradient `g` (all of one
    /// length; a shorter `g` updates that many elements).
    pub fn apply(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let Self { step_size, bc2_sqrt, w1, b2, one_minus_b2, eps } = *self;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len().min(g.len()) {
                    let gi = g[i];
                    // torch's lerp: start + w·(end − start) for w < 0.5, else end − (end − start)·(1 − w).
                    m[i] = if w1 < 0.5 { m[i] + w1 * (gi - m[i]) } else { gi - (gi - m[i]) * (1.0 - w1) };
                    v[i] = (one_minus_b2 * gi).mul_add(gi, v[i] * b2);
                    let denom = v[i].sqrt() / bc2_sqrt + eps;
                    p[i] += (-step_size * m[i]) / denom;
                }
            });
    }
}

/// What an update hands to its observer: the gradient it consumed and the parameter's new
/// values (the moving average of G's weights reads them; parity tests keep the gradients).
pub type AdamVisit<'a> = &'a mut dyn FnMut(&[f32], &[f32]);

/// A device that updates a parameter with [`AdamStep`] from its gradient in `grads`.
pub trait AdamKernel: Device<f32> {
    /// The parameter `p` after one step, with its moments `m`, `v` (host-side, one per
    /// element) moved; `None` when backward released `p`'s gradient (nothing read it).
    /// A parameter backward never reached has a zero gradient, as PyTorch's would be
    /// after `zero_grad`.
    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        moments: (&mut [f32], &mut [f32]),
        grads: &mut Gradients<f32, Self>,
        visit: AdamVisit<'_>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError>;
}

/// Checks that the moments have the parameter's length.
fn check_len(n: usize, m: &[f32], v: &[f32]) -> Result<(), KernelError> {
    if m.len() != n || v.len() != n {
        return Err(KernelError::shape(OP, format!("{n} values, moments of {} and {}", m.len(), v.len())));
    }
    Ok(())
}

impl AdamKernel for Cpu {
    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        (m, v): (&mut [f32], &mut [f32]),
        grads: &mut Gradients<f32, Self>,
        visit: AdamVisit<'_>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let n = p.shape().num_elements();
        check_len(n, m, v)?;
        let g: &[f32] = grads.get_or_alloc_mut(p).map_err(dev_err)?;
        if g.is_empty() && n > 0 {
            return Ok(None);
        }
        let p = p.clone().try_contiguous().map_err(dev_err)?;
        let mut data = super::cpu::read_vec(&p).map_err(dev_err)?;
        step.apply(&mut data, m, v, g);
        visit(g, &data);
        Ok(Some(p.device().try_tensor_from_vec(data, *p.shape()).map_err(dev_err)?))
    }
}

#[cfg(feature = "cuda")]
impl AdamKernel for Cuda {
    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        (m, v): (&mut [f32], &mut [f32]),
        grads: &mut Gradients<f32, Self>,
        visit: AdamVisit<'_>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let n = p.shape().num_elements();
        check_len(n, m, v)?;
        let dev = p.device().clone();
        if Storage::<f32>::len(&dev, grads.get_or_alloc_mut(p).map_err(dev_err)?) == 0 && n > 0 {
            return Ok(None);
        }
        let g = grads.get(p).try_contiguous().map_err(dev_err)?;
        let p = p.clone().try_contiguous().map_err(dev_err)?;
        let (mut gs, mut data) = (vec![0.0; n], vec![0.0; n]);
        g.copy_into(&mut gs);
        p.copy_into(&mut data);
        crate::mem::count_to_host(2 * n);
        step.apply(&mut data, m, v, &gs);
        visit(&gs, &data);
        crate::mem::count_to_device(n);
        Ok(Some(dev.try_tensor_from_vec(data, *p.shape()).map_err(dev_err)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_about_lr() {
        let step = AdamStep::new(2e-4, (0.5, 0.999), 1e-8, 1);
        let (mut p, mut m, mut v) = (vec![1.0f32, -1.0, 0.0], vec![0.0; 3], vec![0.0; 3]);
        step.apply(&mut p, &mut m, &mut v, &[0.5, -3.0, 0.0]);
        assert!((p[0] - (1.0 - 2e-4)).abs() < 1e-7);
        assert!((p[1] - (-1.0 + 2e-4)).abs() < 1e-7);
        assert_eq!(p[2], 0.0);
        assert_eq!(m[0], 0.25);
        assert!((v[0] - 0.001 * 0.25).abs() < 1e-9);
    }

    #[test]
    fn the_kernel_updates_as_the_host_arithmetic_does() {
        let dev = Cpu::default();
        let n = 10_000;
        let xs: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let p: Tensor<(usize,), f32, Cpu> = dev.tensor_from_vec(xs.clone(), (n,));
        let y = p.leaky_trace().square().sum();
        let mut grads = y.backward();
        let step = AdamStep::new(1e-3, (0.9, 0.999), 1e-8, 3);
        let (mut m, mut v) = (vec![0.01; n], vec![0.02; n]);
        let (mut seen_g, mut seen_p) = (Vec::new(), Vec::new());
        let mut visit = |g: &[f32], new: &[f32]| {
            seen_g = g.to_vec();
            seen_p = new.to_vec();
        };
        let out = Cpu::adam(&step, &p, (&mut m, &mut v), &mut grads, &mut visit).unwrap().unwrap();
        let (mut want, mut wm, mut wv) = (xs.clone(), vec![0.01; n], vec![0.02; n]);
        let g: Vec<f32> = xs.iter().map(|x| 2.0 * x).collect();
        step.apply(&mut want, &mut wm, &mut wv, &g);
        assert_eq!(out.as_vec(), want);
        assert_eq!((m, v), (wm, wv));
        assert_eq!((seen_g, seen_p), (g, want));
        assert_eq!(p.as_vec(), xs, "the old tensor is left as it was");
    }
}
