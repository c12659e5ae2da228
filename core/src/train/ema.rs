//! An exponential moving average of the generator's weights (Polyak averaging, as
//! StudioGAN and mmgeneration keep for sampling). A stage with `ema: Some(decay)` moves
//! the average after every G step; when the stage finishes, its G takes the averaged
//! weights, so later stages, `sample` and `eval` use them.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::exec::{ParamStore, Val};
use crate::kernels::KernelDevice;

/// The averaged weights of one stage's G, by parameter path (host copies, flat).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ema {
    /// The average of each parameter.
    pub shadow: BTreeMap<String, Vec<f32>>,
}

impl Ema {
    /// Move the average of `path` toward `value`: `a ← decay·a + (1 − decay)·value`. The
    /// first call for a path starts the average at `value`.
    pub fn update(&mut self, decay: f32, path: &str, value: &[f32]) {
        match self.shadow.get_mut(path) {
            Some(avg) => {
                for (a, v) in avg.iter_mut().zip(value) {
                    *a = decay * *a + (1.0 - decay) * v;
                }
            }
            None => {
                self.shadow.insert(path.to_string(), value.to_vec());
            }
        }
    }

    /// Replace each averaged parameter in `store` by its average.
    pub fn apply<D: KernelDevice>(&self, store: &mut ParamStore<D>) -> Result<()> {
        for (path, avg) in &self.shadow {
            let dims = store.get(path).map(|e| e.value.dims()).ok_or_else(|| {
                Error::other("train::ema", format!("averaged parameter `{path}` is not in the graph"))
            })?;
            let v = Val::from_host(&store.dev, avg.clone(), &dims)?;
            store.set(path, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_starts_at_the_first_value_and_follows_the_recurrence() {
        let mut e = Ema::default();
        e.update(0.5, "g.w", &[2.0, -4.0]);
        assert_eq!(e.shadow["g.w"], [2.0, -4.0]);
        e.update(0.5, "g.w", &[4.0, 0.0]);
        assert_eq!(e.shadow["g.w"], [3.0, -2.0]);
        e.update(0.75, "g.w", &[7.0, 2.0]);
        assert_eq!(e.shadow["g.w"], [4.0, -1.0]);
    }
}
