//! One forward pass of a net over named host tensors: what `stackflow forward` runs.

use dfdx::prelude::NoneTape;

use super::weights::{external_name, Naming};
use super::{NoiseSource, ParamStore, Runner, Val};
use crate::error::{Error, Result};
use crate::ir::{Flow, Net};
use crate::kernels::KernelDevice;
use crate::ops::Ops;

pub use super::weights::Named;

/// The names under which the ε of each CA node may be given: `eps.<node path>`, and with
/// a mapped naming also `in.eps.<module>` (the reference fixtures' names).
pub fn noise_names(flow: &Flow, net: &Net, naming: &Naming) -> Vec<(String, Vec<String>)> {
    net.nodes
        .iter()
        .filter(|n| n.kind == "stackgan.cond_aug")
        .map(|n| {
            let mut names = vec![format!("eps.{}", n.path)];
            if let Some(&p) = n.params.first() {
                if let Some(ext) = external_name(flow, naming, &net.name, &net.params[p].path) {
                    if let Some(module) = ext.strip_suffix(".fc.weight") {
                        names.push(format!("in.eps.{module}"));
                    }
                }
            }
            (n.path.clone(), names)
        })
        .collect()
}

/// Run `net` once on `inputs` (named like the net's inputs, optionally `in.`-prefixed).
/// Returns the outputs by name and the CA nodes whose ε was sampled (not given).
pub fn forward_named<D: KernelDevice>(
    flow: &Flow,
    net: &Net,
    store: &mut ParamStore<D>,
    inputs: &Named,
    training: bool,
    naming: &Naming,
    seed: u64,
) -> Result<(Named, Vec<String>)> {
    let mut noise = NoiseSource::seeded(seed);
    let mut sampled = Vec::new();
    for (path, names) in noise_names(flow, net, naming) {
        match names.iter().find_map(|n| inputs.get(n)) {
            Some((_, data)) => noise.give(path, data.clone()),
            None => sampled.push(path),
        }
    }
    let dev = store.dev.clone();
    let mut runner: Runner<D, NoneTape> = Runner::new(dev.clone(), training, &mut noise);
    let mut feeds = Vec::new();
    let mut batch = None;
    for (name, v) in &net.inputs {
        let found = inputs.get(name).or_else(|| inputs.get(&format!("in.{name}")));
        let want = net.values[*v].shape.dims();
        let Some((shape, data)) = found else {
            let have: Vec<&str> = inputs.keys().map(String::as_str).collect();
            return Err(Error::input(
                "forward::missing_input",
                format!(
                    "the inputs file has no tensor `{name}` (net `{}` needs it, shape [batch, {}])",
                    net.name,
                    dims(want)
                ),
            )
            .with_help(format!("the file has: {}", if have.is_empty() { "nothing".into() } else { have.join(", ") })));
        };
        if shape.len() != want.len() + 1 || shape[1..] != *want {
            return Err(Error::input(
                "forward::input_shape",
                format!("input `{name}` has shape {shape:?}; net `{}` needs [batch, {}]", net.name, dims(want)),
            ));
        }
        if *batch.get_or_insert(shape[0]) != shape[0] {
            return Err(Error::input(
                "forward::batch",
                format!("input `{name}` has batch {} but another input has {}", shape[0], batch.unwrap_or(0)),
            ));
        }
        if training && shape[0] < 2 && net.nodes.iter().any(|n| n.kind == "core.batch_norm") {
            return Err(Error::input(
                "forward::batch",
                "train mode needs a batch of at least 2 (BatchNorm statistics)",
            ));
        }
        let h = runner.push(Val::from_host(&dev, data.clone(), shape)?);
        feeds.push((*v, h));
    }
    let wanted: Vec<usize> = net.outputs.iter().map(|(_, v)| *v).collect();
    let outs = runner.run_net(net, store, &feeds, &wanted)?;
    let mut named = Named::new();
    for ((name, _), h) in net.outputs.iter().zip(outs) {
        named.insert(name.clone(), (runner.shape(h)?, runner.read(h)?));
    }
    Ok((named, sampled))
}

fn dims(d: &[usize]) -> String {
    d.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}
