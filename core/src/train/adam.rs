//! Adam's state over named tensors: its settings, the step count and the moments of every
//! parameter, kept where the device keeps them (`M`: host vectors, the form a checkpoint
//! stores; a device's [`AdamKernel::Moment`] while training). The update itself is a
//! device kernel, evaluated in f32 as PyTorch's (non-fused) Adam does.

use std::collections::hash_map::{Entry, HashMap};

use crate::kernels::{AdamKernel, AdamStep, KernelError};

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
#[derive(Clone, Debug)]
pub struct Adam<M = Vec<f32>> {
    /// Steps taken.
    pub t: u64,
    /// First and second moments by parameter path.
    pub moments: HashMap<String, (M, M)>,
}

impl<M> Default for Adam<M> {
    fn default() -> Self {
        Self { t: 0, moments: HashMap::new() }
    }
}

impl<M> Adam<M> {
    /// Advance the step counter; call once per optimiser step, before the updates.
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// The constants of the current step at learning rate `lr`.
    pub fn step(&self, cfg: &AdamConfig, lr: f64) -> AdamStep {
        AdamStep::new(lr, cfg.betas, cfg.eps, self.t)
    }

    /// The same state with every moment converted by `f` (to the device on resume).
    pub fn try_map<N, E>(self, mut f: impl FnMut(M) -> Result<N, E>) -> Result<Adam<N>, E> {
        let moments = self.moments.into_iter().map(|(k, (m, v))| Ok((k, (f(m)?, f(v)?)))).collect::<Result<_, E>>()?;
        Ok(Adam { t: self.t, moments })
    }

    /// The moments of `path` on `dev`, zeros of length `n` at first.
    pub fn moments_on<D: AdamKernel<Moment = M>>(
        &mut self,
        dev: &D,
        path: &str,
        n: usize,
    ) -> Result<(&mut M, &mut M), KernelError> {
        let (m, v) = match self.moments.entry(path.to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert((dev.moment_zeros(n)?, dev.moment_zeros(n)?)),
        };
        Ok((m, v))
    }
}

impl Adam {
    /// Update a host copy of `param` in place from `grad` at learning rate `lr` (the
    /// arithmetic of the device kernels, for references and tests).
    pub fn update(&mut self, cfg: &AdamConfig, lr: f64, path: &str, param: &mut [f32], grad: &[f32]) {
        let step = self.step(cfg, lr);
        let n = param.len();
        let (m, v) = self.moments.entry(path.to_string()).or_insert_with(|| (vec![0.0; n], vec![0.0; n]));
        step.apply(param, m, v, grad);
    }
}
