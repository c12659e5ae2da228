//! An exponential moving average of the generator's weights (Polyak averaging, as
//! StudioGAN and mmgeneration keep for sampling). A stage with `ema: Some(decay)` moves
//! the average after every G step; when the stage finishes, its G takes the averaged
//! weights, so later stages, `sample` and `eval` use them. The weights the average
//! replaced are kept too (`sample --no-ema`, `eval --no-ema`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::exec::{ParamStore, Val};
use crate::kernels::KernelDevice;

/// The averaged weights of one stage's G, by parameter path (host copies, flat), and
/// the trained weights the averages of finished stages replaced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ema {
    /// The average of each parameter of the running stage's G.
    pub shadow: BTreeMap<String, Vec<f32>>,
    /// The trained (not averaged) weights of every finished stage that kept an average;
    /// kept from stage to stage.
    pub raw: BTreeMap<String, Vec<f32>>,
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

    /// End the stage: each averaged parameter in `store` takes its average, and the
    /// trained weights it replaces move to `raw`.
    pub fn finish<D: KernelDevice>(&mut self, store: &mut ParamStore<D>) -> Result<()> {
        for (path, avg) in std::mem::take(&mut self.shadow) {
            let trained = store.get(&path).map(|e| e.value.to_vec()).ok_or_else(|| missing(&path))?;
            set(store, &path, avg)?;
            self.raw.insert(path, trained);
        }
        Ok(())
    }

    /// The optimiser's part for the next stage: no average yet, the replaced weights kept.
    pub fn next_stage(&self) -> Ema {
        Ema { shadow: BTreeMap::new(), raw: self.raw.clone() }
    }

    /// Weights for sampling: with `averaged`, the running stage's averages too (finished
    /// stages already hold theirs); without, every finished stage's trained weights.
    /// Returns how many parameters changed.
    pub fn select<D: KernelDevice>(&self, store: &mut ParamStore<D>, averaged: bool) -> Result<usize> {
        let chosen = if averaged { &self.shadow } else { &self.raw };
        for (path, w) in chosen {
            set(store, path, w.clone())?;
        }
        Ok(chosen.len())
    }
}

fn missing(path: &str) -> Error {
    Error::other("train::ema", format!("averaged parameter `{path}` is not in the graph"))
}

fn set<D: KernelDevice>(store: &mut ParamStore<D>, path: &str, w: Vec<f32>) -> Result<()> {
    let dims = store.get(path).map(|e| e.value.dims()).ok_or_else(|| missing(path))?;
    let v = Val::from_host(&store.dev, w, &dims)?;
    store.set(path, v)
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
