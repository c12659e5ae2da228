//! Adam's state over named tensors: its settings, the step count and the moments of every
//! parameter. The update itself is a device kernel ([`crate::kernels::AdamKernel`]),
//! evaluated in f32 exactly as PyTorch's (non-fused) Adam does.

use std::collections::HashMap;

use crate::kernels::AdamStep;

/// Hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// (β1, β2).
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
}

/// Moments of every tensor and the step count.
#[derive(Clone, Debug, Default)]
pub struct Adam {
    /// Steps taken.
    pub t: u64,
    /// First and second moments by parameter path.
    pub moments: HashMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Adam {
    /// Advance the step counter; call once per optimiser step, before the updates.
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// The constants of the current step at learning rate `lr`.
    pub fn step(&self, cfg: &AdamConfig, lr: f64) -> AdamStep {
        AdamStep::new(lr, cfg.betas, cfg.eps, self.t)
    }

    /// The moments of `path`, zeros of length `n` at first.
    pub fn moments_mut(&mut self, path: &str, n: usize) -> (&mut [f32], &mut [f32]) {
        let (m, v) = self.moments.entry(path.to_string()).or_insert_with(|| (vec![0.0; n], vec![0.0; n]));
        (m, v)
    }

    /// Update a host copy of `param` in place from `grad` at learning rate `lr` (the
    /// arithmetic of the device kernels, for references and tests).
    pub fn update(&mut self, cfg: &AdamConfig, lr: f64, path: &str, param: &mut [f32], grad: &[f32]) {
        let step = self.step(cfg, lr);
        let (m, v) = self.moments_mut(path, param.len());
        step.apply(param, m, v, grad);
    }
}
