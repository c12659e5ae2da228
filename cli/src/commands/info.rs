//! `stackflow info`: per net, parameter counts, FLOPs and memory.

use stackflow_core::ir::estimate::{self, human_bytes};
use stackflow_core::registry::Registry;
use stackflow_core::Result;

use super::{pick_net, thousands, GraphArgs};

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Only this net.
    #[arg(long)]
    pub net: Option<String>,
    /// Batch size for the memory figures.
    #[arg(long, default_value_t = 64)]
    pub batch: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `info`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    let flow = a.graph.build(kinds)?;
    let nets: Vec<_> = match &a.net {
        Some(n) => vec![pick_net(&flow, n)?],
        None => flow.nets.iter().collect(),
    };
    let mut json = Vec::new();
    for net in nets {
        estimate::check_memory(&flow, net, 1, false, a.graph.max_memory)?;
        let s = estimate::stats(net);
        let train_mem = estimate::memory_bytes(net, a.batch, true);
        let written_at = flow.parsed.place(&["nets".into(), net.name.as_str().into()]);
        if a.json {
            json.push(serde_json::json!({
                "net": net.name,
                "written_at": written_at,
                "trainable_params": s.trainable,
                "frozen_params": s.frozen,
                "buffers": s.buffers,
                "flops_per_sample": s.flops,
                "activation_bytes_per_sample": s.activation_bytes,
                "train_memory_bytes": train_mem,
                "batch": a.batch,
            }));
            continue;
        }
        let io = |v: &[(String, usize)]| {
            v.iter().map(|(n, id)| format!("{n} {}", net.values[*id].shape)).collect::<Vec<_>>().join(", ")
        };
        println!("net {}", net.name);
        println!("  written at:  {written_at}");
        println!("  inputs:      {}", io(&net.inputs));
        println!("  outputs:     {}", io(&net.outputs));
        println!("  nodes:       {}", net.nodes.len());
        println!(
            "  parameters:  {} trainable, {} frozen, {} buffers",
            thousands(s.trainable),
            thousands(s.frozen),
            thousands(s.buffers)
        );
        println!("  FLOPs:       {:.4} GFLOP per sample (forward)", s.flops as f64 / 1e9);
        println!(
            "  activations: {} per sample, {} at batch {}",
            human_bytes(s.activation_bytes),
            human_bytes(s.activation_bytes * a.batch),
            a.batch
        );
        println!(
            "  training:    about {} at batch {} (weights, gradients, Adam moments, activations)",
            human_bytes(train_mem),
            a.batch
        );
    }
    if a.json {
        println!("{}", serde_json::Value::Array(json));
    } else if a.net.is_none() && !flow.parsed.doc.blocks.is_empty() {
        println!("templates");
        for name in flow.parsed.doc.blocks.keys() {
            println!("  {name:<16} {}", flow.parsed.place(&["blocks".into(), name.as_str().into()]));
        }
    }
    Ok(())
}
