//! Adam over named tensors, evaluated in f32 exactly as PyTorch's (non-fused) Adam does.

use std::collections::HashMap;

use rayon::prelude::*;

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
    /// Advance the step counter; call once per optimiser step, before [`Adam::update`].
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// Update `param` in place from `grad` at learning rate `lr`.
    pub fn update(&mut self, cfg: &AdamConfig, lr: f64, path: &str, param: &mut [f32], grad: &[f32]) {
        let (m, v) =
            self.moments.entry(path.to_string()).or_insert_with(|| (vec![0.0; param.len()], vec![0.0; param.len()]));
        let t = self.t.max(1) as i32;
        let (b1, b2) = cfg.betas;
        let w1 = (1.0 - b1) as f32;
        let one_minus_b2 = (1.0 - b2) as f32;
        let b2f = b2 as f32;
        let step_size = (lr / (1.0 - b1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
        let eps = cfg.eps as f32;
        param
            .par_chunks_mut(4096)
            .zip(m.par_chunks_mut(4096))
            .zip(v.par_chunks_mut(4096))
            .zip(grad.par_chunks(4096))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i];
                    // torch's lerp: start + w·(end − start) for w < 0.5, else end − (end − start)·(1 − w).
                    m[i] = if w1 < 0.5 { m[i] + w1 * (gi - m[i]) } else { gi - (gi - m[i]) * (1.0 - w1) };
                    v[i] = (one_minus_b2 * gi).mul_add(gi, v[i] * b2f);
                    let denom = v[i].sqrt() / bc2_sqrt + eps;
                    p[i] += (-step_size * m[i]) / denom;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_about_lr() {
        let cfg = AdamConfig { lr: 2e-4, betas: (0.5, 0.999), eps: 1e-8 };
        let mut a = Adam::default();
        a.begin_step();
        let mut p = vec![1.0f32, -1.0, 0.0];
        a.update(&cfg, cfg.lr, "w", &mut p, &[0.5, -3.0, 0.0]);
        assert!((p[0] - (1.0 - 2e-4)).abs() < 1e-7);
        assert!((p[1] - (-1.0 + 2e-4)).abs() < 1e-7);
        assert_eq!(p[2], 0.0);
        let (m, v) = &a.moments["w"];
        assert_eq!(m[0], 0.25);
        assert!((v[0] - 0.001 * 0.25).abs() < 1e-9);
    }
}
