//! `stackflow check`: the whole compile front half, nothing allocated.

use stackflow_core::ir::estimate;
use stackflow_core::registry::Registry;
use stackflow_core::Result;

use super::GraphArgs;

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Batch size for the memory check.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
}

/// Run `check`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    let (flow, registry) = a.graph.build_with_registry(kinds)?;
    // Losses and samplers are kinds too: each exists, reads its attributes, and the loss
    // finds the discriminator outputs it needs.
    for stage in 0..flow.parsed.doc.train.len() {
        stackflow_core::train::game::setup(&flow, &registry, stage)?;
    }
    for net in &flow.nets {
        estimate::check_memory(&flow, net, a.batch, false, a.graph.max_memory)?;
    }
    let nodes: usize = flow.nets.iter().map(|n| n.nodes.len()).sum();
    println!(
        "ok: {} — {} net(s) ({}), {} node(s), {} training stage(s)",
        flow.parsed.src.name,
        flow.nets.len(),
        flow.nets.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
        nodes,
        flow.parsed.doc.train.len()
    );
    Ok(())
}
