//! Where sampled noise comes from: a seeded generator, or tensors given by name (a test
//! or the trainer supplying the CA's ε as the reference did).

use std::collections::HashMap;

use rand::SeedableRng;
use rand_distr::Distribution;

use crate::error::{Error, Result};
use crate::ops::Noise;

/// Noise for blocks that sample (the CA's ε).
pub struct NoiseSource {
    rng: rand::rngs::StdRng,
    given: HashMap<String, Vec<f32>>,
}

impl NoiseSource {
    /// Seeded random noise.
    pub fn seeded(seed: u64) -> Self {
        Self { rng: rand::rngs::StdRng::seed_from_u64(seed), given: HashMap::new() }
    }

    /// Use `values` whenever the node at `path` asks for noise.
    pub fn give(&mut self, path: impl Into<String>, values: Vec<f32>) {
        self.given.insert(path.into(), values);
    }

    /// Noise of `shape` for the node at `path`.
    pub fn draw(&mut self, path: &str, shape: &[usize], dist: Noise) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if let Some(v) = self.given.get(path) {
            if v.len() != n {
                return Err(Error::input(
                    "exec::noise",
                    format!("noise for `{path}` has {} values, the node needs {shape:?}", v.len()),
                ));
            }
            return Ok(v.clone());
        }
        let normal = rand_distr::StandardNormal;
        Ok(match dist {
            Noise::Normal => (0..n).map(|_| normal.sample(&mut self.rng)).collect(),
            Noise::TruncatedNormal(bound) => (0..n)
                .map(|_| loop {
                    let x: f32 = normal.sample(&mut self.rng);
                    if x.abs() < bound {
                        break x;
                    }
                })
                .collect(),
        })
    }
}
