//! Adam's update of one parameter from its gradient, on the device that holds both.
//!
//! CPU: the gradient is read where backward left it (no copy), the parameter's values are
//! copied once into a new buffer of the device, the update is PyTorch's non-fused Adam
//! evaluated in f32 operation for operation ([`AdamStep::apply`]), spread over threads,
//! and the buffer becomes the parameter's new tensor by a move. Nothing crosses to a
//! host vector and back, so a CPU training iteration moves only its batch in and its
//! logged scalars out. CUDA: the same arithmetic in dfdx's tensor ops
//! ([`adam_by_tensor_ops`]), with the moments as device tensors; values come back to the
//! host only when an observer asks for them (a moving average, a parity test) and when a
//! checkpoint is written, and those reads are counted in [`crate::mem::transferred`].

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
/// On a device whose memory is not the host's, asking for it costs a read-back.
pub type AdamVisit<'a> = &'a mut dyn FnMut(&[f32], &[f32]);

/// A device that updates a parameter with [`AdamStep`] from its gradient in `grads`,
/// keeping the parameter's moments in its own memory.
pub trait AdamKernel: Device<f32> {
    /// One moment (first or second) of one parameter, one value per element, where this
    /// device keeps it: a host vector on the CPU, a device tensor on CUDA.
    type Moment: Clone + std::fmt::Debug;

    /// A moment of `n` zeros, allocated on the device.
    fn moment_zeros(&self, n: usize) -> Result<Self::Moment, KernelError>;

    /// A moment holding `values` (a checkpoint's, on resume).
    fn moment_from_host(&self, values: Vec<f32>) -> Result<Self::Moment, KernelError>;

    /// A moment's values on the host (for a checkpoint): borrowed where the device's
    /// memory is the host's, read back where it is not.
    fn moment_to_host(m: &Self::Moment) -> std::borrow::Cow<'_, [f32]>;

    /// The parameter `p` after one step, its moments `m`, `v` moved on the device; `None`
    /// when backward released `p`'s gradient (nothing read it). A parameter backward
    /// never reached has a zero gradient, as PyTorch's would be after `zero_grad`.
    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        moments: (&mut Self::Moment, &mut Self::Moment),
        grads: &mut Gradients<f32, Self>,
        visit: Option<AdamVisit<'_>>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError>;
}

/// Checks that the moments have the parameter's length.
fn check_len(n: usize, m: usize, v: usize) -> Result<(), KernelError> {
    if m != n || v != n {
        return Err(KernelError::shape(OP, format!("{n} values, moments of {m} and {v}")));
    }
    Ok(())
}

impl AdamKernel for Cpu {
    type Moment = Vec<f32>;

    fn moment_zeros(&self, n: usize) -> Result<Vec<f32>, KernelError> {
        Ok(vec![0.0; n])
    }

    fn moment_from_host(&self, values: Vec<f32>) -> Result<Vec<f32>, KernelError> {
        Ok(values)
    }

    fn moment_to_host(m: &Vec<f32>) -> std::borrow::Cow<'_, [f32]> {
        std::borrow::Cow::Borrowed(m)
    }

    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        (m, v): (&mut Vec<f32>, &mut Vec<f32>),
        grads: &mut Gradients<f32, Self>,
        visit: Option<AdamVisit<'_>>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let n = p.shape().num_elements();
        check_len(n, m.len(), v.len())?;
        let g: &[f32] = grads.get_or_alloc_mut(p).map_err(dev_err)?;
        if g.is_empty() && n > 0 {
            return Ok(None);
        }
        let p = p.clone().try_contiguous().map_err(dev_err)?;
        let mut data = super::cpu::read_vec(&p).map_err(dev_err)?;
        step.apply(&mut data, m, v, g);
        if let Some(visit) = visit {
            visit(g, &data);
        }
        Ok(Some(p.device().try_tensor_from_vec(data, *p.shape()).map_err(dev_err)?))
    }
}

/// A moment as a flat device tensor.
pub type FlatMoment<D> = Tensor<(usize,), f32, D>;

/// One Adam step in the device's own tensor ops, with the moments as flat tensors: the
/// arithmetic of [`AdamStep::apply`] op for op, except that the second moment's
/// `β2·v + (1 − β2)·g·g` is rounded twice where the host kernel fuses it (a difference
/// in the last bit). CUDA's kernel; tested against the host kernel on the CPU.
pub fn adam_by_tensor_ops<S: Shape, D: Device<f32>>(
    step: &AdamStep,
    p: &Tensor<S, f32, D>,
    g: Tensor<S, f32, D>,
    (m, v): (&mut FlatMoment<D>, &mut FlatMoment<D>),
) -> Result<Tensor<S, f32, D>, D::Err> {
    let AdamStep { step_size, bc2_sqrt, w1, b2, one_minus_b2, eps } = *step;
    let n = p.shape().num_elements();
    let g = g.try_contiguous()?.try_reshape_like(&(n,))?;
    // torch's lerp, as in `apply`.
    let m_new = if w1 < 0.5 {
        m.clone().try_add(g.clone().try_sub(m.clone())?.try_mul(w1)?)?
    } else {
        g.clone().try_sub(g.clone().try_sub(m.clone())?.try_mul(1.0 - w1)?)?
    };
    let v_new = g.clone().try_mul(one_minus_b2)?.try_mul(g)?.try_add(v.clone().try_mul(b2)?)?;
    let denom = v_new.clone().try_sqrt()?.try_div(bc2_sqrt)?.try_add(eps)?;
    let delta = m_new.clone().try_mul(-step_size)?.try_div(denom)?;
    let p_new = p.clone().try_contiguous()?.try_reshape_like(&(n,))?.try_add(delta)?;
    *m = m_new;
    *v = v_new;
    p_new.try_reshape_like(p.shape())
}

#[cfg(feature = "cuda")]
impl AdamKernel for Cuda {
    type Moment = FlatMoment<Cuda>;

    fn moment_zeros(&self, n: usize) -> Result<Self::Moment, KernelError> {
        self.try_zeros_like(&(n,)).map_err(|e| KernelError::device(OP, e))
    }

    fn moment_from_host(&self, values: Vec<f32>) -> Result<Self::Moment, KernelError> {
        crate::mem::count_to_device(values.len());
        let n = values.len();
        self.try_tensor_from_vec(values, (n,)).map_err(|e| KernelError::device(OP, e))
    }

    fn moment_to_host(m: &Self::Moment) -> std::borrow::Cow<'_, [f32]> {
        crate::mem::count_to_host(m.shape().0);
        std::borrow::Cow::Owned(m.as_vec())
    }

    fn adam<S: Shape>(
        step: &AdamStep,
        p: &Tensor<S, f32, Self>,
        (m, v): (&mut Self::Moment, &mut Self::Moment),
        grads: &mut Gradients<f32, Self>,
        visit: Option<AdamVisit<'_>>,
    ) -> Result<Option<Tensor<S, f32, Self>>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let n = p.shape().num_elements();
        check_len(n, m.shape().0, v.shape().0)?;
        let dev = p.device().clone();
        if Storage::<f32>::len(&dev, grads.get_or_alloc_mut(p).map_err(dev_err)?) == 0 && n > 0 {
            return Ok(None);
        }
        let g = grads.get(p);
        let out = adam_by_tensor_ops(step, p, g.clone(), (m, v)).map_err(dev_err)?;
        if let Some(visit) = visit {
            crate::mem::count_to_host(2 * n);
            visit(&g.as_vec(), &out.as_vec());
        }
        Ok(Some(out))
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
        let out = Cpu::adam(&step, &p, (&mut m, &mut v), &mut grads, Some(&mut visit)).unwrap().unwrap();
        let (mut want, mut wm, mut wv) = (xs.clone(), vec![0.01; n], vec![0.02; n]);
        let g: Vec<f32> = xs.iter().map(|x| 2.0 * x).collect();
        step.apply(&mut want, &mut wm, &mut wv, &g);
        assert_eq!(out.as_vec(), want);
        assert_eq!((m, v), (wm, wv));
        assert_eq!((seen_g, seen_p), (g, want));
        assert_eq!(p.as_vec(), xs, "the old tensor is left as it was");
    }

    #[test]
    fn tensor_ops_update_as_the_host_kernel_does() {
        let dev = Cpu::default();
        let (rows, cols) = (37, 53);
        let n = rows * cols;
        let wave = |k: usize| (0..n).map(move |i| (((i * k) % 97) as f32 - 48.0) / 40.0);
        let xs: Vec<f32> = wave(31).collect();
        let gs: Vec<f32> = wave(17).map(|x| x * 0.01).collect();
        let p: Tensor<(usize, usize), f32, Cpu> = dev.tensor_from_vec(xs.clone(), (rows, cols));
        let g = dev.tensor_from_vec(gs.clone(), (rows, cols));
        // β1 = 0.5 and 0.9 take the two branches of torch's lerp.
        for (b1, t) in [(0.5, 1), (0.9, 7)] {
            let step = AdamStep::new(2e-4, (b1, 0.999), 1e-8, t);
            let (m0, v0): (Vec<f32>, Vec<f32>) =
                (wave(7).map(|x| x * 1e-3).collect(), wave(5).map(|x| x * x * 1e-5).collect());
            let mut m = dev.tensor_from_vec(m0.clone(), (n,));
            let mut v = dev.tensor_from_vec(v0.clone(), (n,));
            let out = adam_by_tensor_ops(&step, &p, g.clone(), (&mut m, &mut v)).unwrap();
            let (mut want, mut wm, mut wv) = (xs.clone(), m0, v0);
            step.apply(&mut want, &mut wm, &mut wv, &gs);
            assert_eq!(m.as_vec(), wm, "β1 = {b1}: first moments");
            let close = |a: &[f32], b: &[f32]| {
                a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 4.0 * f32::EPSILON * y.abs().max(1e-30))
            };
            assert!(close(&v.as_vec(), &wv), "β1 = {b1}: second moments");
            assert_eq!(out.shape(), p.shape());
            let got = out.as_vec();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "β1 = {b1}: parameters differ by up to {worst}");
            assert!(got.iter().zip(&xs).any(|(a, b)| a != b), "the parameters moved");
        }
    }
}
