//! Named parameters and buffers of a flow on a dfdx device (`g1.up1.conv.weight`).

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::SeedableRng;
use rand_distr::Distribution;

use super::value::Val;
use crate::error::{Error, Result};
use crate::ir::Net;
use crate::kind::{Init, Role};

/// One stored tensor.
#[derive(Clone, Debug)]
pub struct Entry<D: Storage<f32>> {
    /// The tensor, in the parameter's own shape.
    pub value: Val<D>,
    /// Trainable or buffer.
    pub role: Role,
}

/// Every parameter and buffer of the nets that were instantiated, by dotted path.
#[derive(Clone, Debug)]
pub struct ParamStore<D: Storage<f32>> {
    /// The device.
    pub dev: D,
    entries: BTreeMap<String, Entry<D>>,
}

impl<D: Device<f32>> ParamStore<D> {
    /// An empty store on `dev`.
    pub fn new(dev: D) -> Self {
        Self { dev, entries: BTreeMap::new() }
    }

    /// Create every parameter of `net` that does not exist yet, initialised as the
    /// reference does (conv/linear N(0, 0.02), BN γ N(1, 0.02), β 0), from `seed`.
    pub fn init_net(&mut self, net: &Net, seed: u64) -> Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for p in &net.params {
            if self.entries.contains_key(&p.path) {
                continue;
            }
            let n = p.spec.numel();
            let data: Vec<f32> = match p.spec.init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::Normal { mean, std } => {
                    let d =
                        rand_distr::Normal::new(mean, std).map_err(|e| Error::other("exec::init", e.to_string()))?;
                    (0..n).map(|_| d.sample(&mut rng)).collect()
                }
                Init::Uniform { bound } => {
                    let d = rand_distr::Uniform::new_inclusive(-bound, bound);
                    (0..n).map(|_| d.sample(&mut rng)).collect()
                }
            };
            let value = Val::from_host(&self.dev, data, &p.spec.shape)?;
            self.entries.insert(p.path.clone(), Entry { value, role: p.spec.role });
        }
        Ok(())
    }

    /// A tensor by path.
    pub fn get(&self, path: &str) -> Option<&Entry<D>> {
        self.entries.get(path)
    }

    /// Replace a tensor's value (same shape required).
    pub fn set(&mut self, path: &str, value: Val<D>) -> Result<()> {
        let e = self
            .entries
            .get_mut(path)
            .ok_or_else(|| Error::input("params::missing", format!("no parameter `{path}`")))?;
        if e.value.dims() != value.dims() {
            return Err(Error::input(
                "params::shape",
                format!("`{path}` has shape {:?}, got {:?}", e.value.dims(), value.dims()),
            ));
        }
        e.value = value;
        Ok(())
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry<D>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of stored tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
