//! What a checked net costs before anything is allocated: parameter counts, FLOPs,
//! activation memory; and the validation of the training recipe against the nets.

use super::{Flow, Net};
use crate::dsl::{Key, StageDef};
use crate::error::{did_you_mean, Result};
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

/// Check the `train` section against the nets: roles exist and have the ports the game
/// needs, and the numbers are sane.
pub fn check_recipe(flow: &Flow) -> Result<()> {
    let p = &flow.parsed;
    for (i, st) in p.doc.train.iter().enumerate() {
        let at = |field: &str| vec![Key::from("train"), Key::Index(i), Key::from(field)];
        let names: Vec<&str> = flow.nets.iter().map(|n| n.name.as_str()).collect();
        let find = |field: &str, name: &str| {
            flow.net(name).ok_or_else(|| {
                p.error("graph::unknown_net", &at(field), format!("stage `{}`: no net named `{name}`", st.name))
                    .with_help(
                        did_you_mean(name, names.iter().copied())
                            .unwrap_or_else(|| format!("nets: {}", names.join(", "))),
                    )
            })
        };
        let g = find("generator", &st.generator)?;
        let d = find("discriminator", &st.discriminator)?;
        for (j, f) in st.frozen.iter().enumerate() {
            if flow.net(f).is_none() {
                return Err(p.error(
                    "graph::unknown_net",
                    &[at("frozen"), vec![Key::Index(j)]].concat(),
                    format!("no net named `{f}`"),
                ));
            }
        }
        for out in ["fake_img", "mu", "logvar"] {
            if g.output(out).is_none() {
                return Err(p
                    .error(
                        "graph::missing_output",
                        &at("generator"),
                        format!("generator `{}` has no output `{out}`", g.name),
                    )
                    .with_help("a generator exposes `fake_img`, `mu` and `logvar` (the CA outputs for the KL term)"));
            }
        }
        check_d(flow, st, g, d, &at("discriminator"))?;
        if st.batch < 2 || st.batch > 1 << 20 {
            return Err(p.error(
                "graph::bad_value",
                &at("batch"),
                "batch must be between 2 and 1048576 (mismatched pairs need two samples)",
            ));
        }
        if let crate::dsl::DataDef::SyntheticShapes { count, .. } = st.data {
            if count == 0 || count > crate::data::MAX_SYNTHETIC_COUNT {
                return Err(p.error(
                    "graph::bad_value",
                    &at("data"),
                    format!("SyntheticShapes needs a count between 1 and {}", crate::data::MAX_SYNTHETIC_COUNT),
                ));
            }
        }
        if st.epochs == 0 {
            return Err(p.error("graph::bad_value", &at("epochs"), "epochs must be at least 1"));
        }
        if !st.kl_weight.is_finite() || st.kl_weight < 0.0 {
            return Err(p.error("graph::bad_value", &at("kl_weight"), "kl_weight must be a finite number >= 0"));
        }
        for (field, opt) in [("optimizer", Some(&st.optimizer)), ("d_optimizer", st.d_optimizer.as_ref())] {
            if let Some(crate::dsl::Optimizer::Adam { lr, betas, eps }) = opt {
                let ok = lr.is_finite()
                    && *lr > 0.0
                    && (0.0..1.0).contains(&betas.0)
                    && (0.0..1.0).contains(&betas.1)
                    && eps.is_finite()
                    && *eps > 0.0;
                if !ok {
                    return Err(p.error(
                        "graph::bad_value",
                        &at(field),
                        "Adam needs a finite lr > 0, betas in [0, 1) and a finite eps > 0",
                    ));
                }
            }
        }
        if let crate::dsl::LrDecay::Halve { every_epochs: 0 } = st.lr_decay {
            return Err(p.error("graph::bad_value", &at("lr_decay"), "every_epochs must be at least 1"));
        }
        if let Some(crate::dsl::CheckpointEvery::Steps(0) | crate::dsl::CheckpointEvery::Minutes(0)) =
            st.checkpoint_every
        {
            return Err(p.error("graph::bad_value", &at("checkpoint_every"), "checkpoint_every must be at least 1"));
        }
    }
    Ok(())
}

fn check_d(flow: &Flow, st: &StageDef, g: &Net, d: &Net, at: &[Key]) -> Result<()> {
    let p = &flow.parsed;
    let fake = &g.values[g.output("fake_img").unwrap_or(0)].shape;
    let Some(img) = d.input("img") else {
        return Err(p.error("graph::missing_input", at, format!("discriminator `{}` has no input `img`", d.name)));
    };
    if &d.values[img].shape != fake {
        return Err(p.error(
            "graph::shape",
            at,
            format!(
                "stage `{}`: generator `{}` makes {fake} images but discriminator `{}` reads {}",
                st.name, g.name, d.name, d.values[img].shape
            ),
        ));
    }
    if let Some(cond) = d.input("cond") {
        let (what, src) = match st.d_condition {
            crate::dsl::DCondition::Mu => ("the generator's `mu`", g.output("mu")),
            crate::dsl::DCondition::Embedding => ("the text embedding", g.input("emb")),
        };
        let want = &g.values[src.unwrap_or(0)].shape;
        if &d.values[cond].shape != want {
            return Err(p.error(
                "graph::shape",
                at,
                format!(
                    "discriminator `{}` reads a condition of {} but {what} is {want}",
                    d.name, d.values[cond].shape
                ),
            ));
        }
    }
    Ok(())
}
