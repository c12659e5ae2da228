//! Weights files: safetensors in our own names (`g1.up1.conv.weight`) or in another
//! implementation's names through a graph file's `weight_maps`. A missing, unexpected or
//! mis-shaped tensor is an error that lists them all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dfdx::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype as StDtype, SafeTensors};

use super::params::ParamStore;
use super::value::Val;
use crate::dsl::WeightMapDef;
use crate::error::{Error, Result};
use crate::ir::{Flow, Net};

/// Which names a weights file uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Our parameter paths.
    Native,
    /// A `weight_maps` entry of the graph file, e.g. `stackgan-pytorch`.
    Mapped(String),
}

/// The tensor name of parameter `path` (used by `net`) under `naming`.
pub fn external_name(flow: &Flow, naming: &Naming, net: &str, path: &str) -> Option<String> {
    let Naming::Mapped(format) = naming else {
        return Some(path.to_string());
    };
    let maps = flow.parsed.doc.weight_maps.get(format)?;
    let map = maps.get(net)?;
    let owner = path.split('.').next()?;
    if owner == net {
        return apply(map, path);
    }
    let prefix = map.embedded.get(owner)?;
    let inner = apply(maps.get(owner)?, path)?;
    Some(format!("{prefix}{inner}"))
}

fn apply(map: &WeightMapDef, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('.').collect();
    'rules: for (from, to) in &map.prefixes {
        let pat: Vec<&str> = from.trim_end_matches('.').split('.').collect();
        if pat.len() > segs.len() {
            continue;
        }
        let mut caps = Vec::new();
        for (p, s) in pat.iter().zip(&segs) {
            if *p == "*" {
                caps.push(*s);
            } else if p != s {
                continue 'rules;
            }
        }
        let mut out = String::new();
        let mut caps = caps.into_iter();
        for (i, part) in to.split('*').enumerate() {
            if i > 0 {
                out.push_str(caps.next()?);
            }
            out.push_str(part);
        }
        let rest = segs[pat.len()..].join(".");
        if !out.is_empty() && !out.ends_with('.') && !rest.is_empty() {
            out.push('.');
        }
        out.push_str(&rest);
        return Some(out);
    }
    None
}

/// Whether tensor `name` matches `pattern`, segment by segment (`*` matches any one).
fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
    p.len() == n.len() && p.iter().zip(&n).all(|(p, n)| *p == "*" || p == n)
}

/// Load every parameter and buffer of `net` from the safetensors file at `file`.
pub fn load<D: Device<f32>>(
    store: &mut ParamStore<D>,
    flow: &Flow,
    net: &Net,
    file: &Path,
    naming: &Naming,
) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::input("weights::format", format!("`{}` is not a safetensors file: {e}", file.display())))?;
    check_map(flow, net, naming)?;
    let mut found = match_params(&st, flow, net, naming);
    found.unexpected = st
        .names()
        .into_iter()
        .filter(|n| !found.used.contains(*n) && !ignored(flow, net, naming, n))
        .map(str::to_string)
        .collect();
    found.unexpected.sort();
    found.check(file, net, naming)?;
    store.init_net(net, 0)?;
    for (path, (data, shape)) in found.values {
        let v = Val::from_host(&store.dev, data, &shape)?;
        store.set(&path, v)?;
    }
    Ok(())
}

/// A mapped `naming` must have a weight map for `net`.
fn check_map(flow: &Flow, net: &Net, naming: &Naming) -> Result<()> {
    if let Naming::Mapped(f) = naming {
        if !flow.parsed.doc.weight_maps.get(f).is_some_and(|m| m.contains_key(&net.name)) {
            return Err(Error::input(
                "weights::no_map",
                format!("{} has no weight map `{f}` for net `{}`", flow.parsed.src.name, net.name),
            )
            .with_help("add one under `weight_maps` in the graph file, or use the native format"));
        }
    }
    Ok(())
}

/// What matching a net's parameters with a file's tensors found.
#[derive(Default)]
struct Matched {
    /// Parameter path → data and graph shape, for each tensor that fits.
    values: BTreeMap<String, (Vec<f32>, Vec<usize>)>,
    /// File names of the tensors read.
    used: BTreeSet<String>,
    missing: Vec<String>,
    mismatched: Vec<String>,
    unexpected: Vec<String>,
}

impl Matched {
    /// One error that lists every missing, mis-shaped and unexpected tensor, if any.
    fn check(&self, file: &Path, net: &Net, naming: &Naming) -> Result<()> {
        let (missing, mismatched, unexpected) = (&self.missing, &self.mismatched, &self.unexpected);
        if missing.is_empty() && mismatched.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut msg = format!("`{}` does not fit net `{}`", file.display(), net.name);
        for (what, list) in [("missing", missing), ("mis-shaped", mismatched), ("unexpected", unexpected)] {
            if !list.is_empty() {
                msg.push_str(&format!("\n  {what} ({}): {}", list.len(), list.join(", ")));
            }
        }
        Err(Error::input("weights::mismatch", msg).with_help(match naming {
            Naming::Native => {
                "is it a file of another graph or format? try --weights-format stackgan-pytorch".to_string()
            }
            Naming::Mapped(f) => format!("check the `{f}` weight map of net `{}`", net.name),
        }))
    }
}

/// Looks up each parameter of `net` in the file under `naming` and reads those that fit.
fn match_params(st: &SafeTensors<'_>, flow: &Flow, net: &Net, naming: &Naming) -> Matched {
    let mut found = Matched::default();
    for p in &net.params {
        let Some(name) = external_name(flow, naming, &net.name, &p.path) else {
            found.missing.push(format!("{} (no name in the map)", p.path));
            continue;
        };
        let Ok(view) = st.tensor(&name) else {
            // PyTorch fills in a BatchNorm counter missing from older files; so do we.
            if p.path.ends_with(".num_batches_tracked") {
                found.values.insert(p.path.clone(), (vec![0.0], p.spec.shape.clone()));
                continue;
            }
            found.missing.push(if name == p.path { name } else { format!("{name} (for {})", p.path) });
            continue;
        };
        found.used.insert(name.clone());
        let shape: Vec<usize> = view.shape().to_vec();
        let numel: usize = shape.iter().product();
        let want = &p.spec.shape;
        // PyTorch stores scalars such as num_batches_tracked with shape [].
        if numel != p.spec.numel() || (shape != *want && !(shape.is_empty() && want == &[1])) {
            found.mismatched.push(format!("{name}: file {shape:?}, graph {want:?}"));
            continue;
        }
        let Some(data) = to_f32(&view) else {
            found.mismatched.push(format!("{name}: dtype {:?} (expected F32)", view.dtype()));
            continue;
        };
        found.values.insert(p.path.clone(), (data, want.clone()));
    }
    found
}

/// A tensor's values as f32, from F32, I64 or F64; `None` for another dtype.
fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    match view.dtype() {
        StDtype::F32 => {
            Some(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        StDtype::I64 => Some(
            view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
        ),
        StDtype::F64 => Some(
            view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
        ),
        _ => None,
    }
}

/// Whether the weight map of `net` under `naming` says to ignore the file's tensor `name`.
fn ignored(flow: &Flow, net: &Net, naming: &Naming, name: &str) -> bool {
    match naming {
        Naming::Mapped(f) => flow
            .parsed
            .doc
            .weight_maps
            .get(f)
            .and_then(|m| m.get(&net.name))
            .is_some_and(|m| m.ignore.iter().any(|pat| matches(pat, name))),
        Naming::Native => false,
    }
}

/// Save tensors as safetensors, named by `names` (path → file name), f32.
pub fn save<D: Device<f32>>(
    file: &Path,
    tensors: &[(String, Val<D>)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let owned: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, v)| (n.clone(), v.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect(), v.dims()))
        .collect();
    let views = owned
        .iter()
        .map(|(n, bytes, shape)| {
            safetensors::tensor::TensorView::new(StDtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::other("weights::write", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::serialize(views, metadata).map_err(|e| Error::other("weights::write", e.to_string()))?;
    std::fs::write(file, data).map_err(|e| Error::io(file, e))
}

/// Host tensors by name: shape and C-order data.
pub type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Read every tensor of a safetensors file (F32, or I64 counters as f32), by name.
pub fn read_all(file: &Path) -> Result<Named> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::input("weights::format", format!("`{}` is not a safetensors file: {e}", file.display())))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = match view.dtype() {
            StDtype::F32 => view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StDtype::I64 => {
                view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect()
            }
            other => {
                return Err(Error::input(
                    "weights::dtype",
                    format!("`{name}` in `{}` is {other:?}; stackflow reads F32 (and I64 counters)", file.display()),
                ))
            }
        };
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_prefixes_copy_segments() {
        let map = WeightMapDef {
            prefixes: vec![("g2.res.*.conv1.".into(), "residual.*.block.0.".into()), ("g2.fc.".into(), "fc.0.".into())],
            embedded: Default::default(),
            ignore: Vec::new(),
        };
        assert_eq!(apply(&map, "g2.res.3.conv1.weight").as_deref(), Some("residual.3.block.0.weight"));
        assert_eq!(apply(&map, "g2.fc.weight").as_deref(), Some("fc.0.weight"));
        assert_eq!(apply(&map, "g2.fcx.weight"), None);
    }

    #[test]
    fn ignore_patterns_match_whole_segments() {
        assert!(matches("fc.bias", "fc.bias"));
        assert!(matches("*.bn.num_batches_tracked", "Conv2d_1a_3x3.bn.num_batches_tracked"));
        assert!(!matches("fc.bias", "fc.bias.x"));
        assert!(!matches("fc.*", "fc"));
    }
}
