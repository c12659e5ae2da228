//! What a checked net costs before anything is allocated: parameter counts, FLOPs,
//! activation memory.

use super::{Flow, Net};
use crate::dsl::StageDef;
use crate::error::Result;
use crate::kind::Role;

/// Size and cost of one net.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetStats {
    /// Parameters the net trains.
    pub trainable: u64,
    /// Trainable parameters of frozen embedded nets.
    pub frozen: u64,
    /// Float buffers (BatchNorm running mean and variance).
    pub buffers: u64,
    /// Forward FLOPs per sample.
    pub flops: u64,
    /// Bytes of every activation of one sample (f32).
    pub activation_bytes: u64,
}

/// Count parameters, FLOPs and activation memory of `net`.
pub fn stats(net: &Net) -> NetStats {
    let count = |ids: Vec<usize>| ids.iter().map(|&p| net.params[p].spec.numel() as u64).sum();
    let buffers = net
        .params
        .iter()
        .filter(|p| p.spec.role == Role::Buffer && !p.path.ends_with("num_batches_tracked"))
        .map(|p| p.spec.numel() as u64)
        .sum();
    NetStats {
        trainable: count(net.trainable_params()),
        frozen: count(net.frozen_params()),
        buffers,
        flops: net.nodes.iter().map(|n| n.flops).fold(0u64, u64::saturating_add),
        activation_bytes: net.values.iter().map(|v| 4 * v.shape.numel() as u64).fold(0, u64::saturating_add),
    }
}

/// Bytes a net needs at `batch`: weights and activations, and when `training` also
/// gradients of both and the two Adam moments.
pub fn memory_bytes(net: &Net, batch: u64, training: bool) -> u64 {
    let s = stats(net);
    let weights = 4 * (s.trainable + s.frozen + s.buffers);
    let acts = s.activation_bytes.saturating_mul(batch);
    if training {
        weights.saturating_add(16 * s.trainable).saturating_add(acts.saturating_mul(2))
    } else {
        weights.saturating_add(acts)
    }
}

/// Refuse a net whose estimated memory at `batch` exceeds `limit` bytes.
pub fn check_memory(flow: &Flow, net: &Net, batch: u64, training: bool, limit: u64) -> Result<()> {
    let need = memory_bytes(net, batch, training);
    over_limit(flow, net, format!("net `{}`", net.name), need, batch, limit)
}

/// `graph::too_much_memory` at `net` when `need` exceeds `limit`.
fn over_limit(flow: &Flow, net: &Net, what: String, need: u64, batch: u64, limit: u64) -> Result<()> {
    if need <= limit {
        return Ok(());
    }
    let message =
        format!("{what} needs about {} at batch {batch}, over the limit of {}", human_bytes(need), human_bytes(limit));
    Err(flow
        .parsed
        .src
        .error("graph::too_much_memory", net.span, message)
        .with_help("lower the widths with `--set`, the batch size, or raise `--max-memory`"))
}

/// Refuse a training stage whose generator and discriminator together (both are held by
/// one process while the stage trains) need more than `limit` bytes at `batch`.
pub fn check_stage_memory(flow: &Flow, st: &StageDef, batch: u64, limit: u64) -> Result<()> {
    let (Some(g), Some(d)) = (flow.net(&st.generator), flow.net(&st.discriminator)) else { return Ok(()) };
    let need = memory_bytes(g, batch, true).saturating_add(memory_bytes(d, batch, true));
    let what = format!("stage `{}` (nets `{}` and `{}`)", st.name, g.name, d.name);
    over_limit(flow, g, what, need, batch, limit)
}

/// `1.5 GiB` style.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
