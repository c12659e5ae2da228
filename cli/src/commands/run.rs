//! `stackflow run`: train the recipe of a graph file.

use std::path::PathBuf;

use stackflow_core::ir::estimate;
use stackflow_core::kernels::KernelDevice;
use stackflow_core::train::checkpoint;
use stackflow_core::train::run::{self, RunOptions};
use stackflow_core::{Error, Result};

use super::{Device, GraphArgs};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Run directory (default: runs/<name>/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a run: its directory (newest checkpoint) or a checkpoint file.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many iterations (a checkpoint is written).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Seed of initialisation, data order and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Write a metrics line every N iterations.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

/// Run `run`.
pub fn run(a: Args) -> Result<()> {
    super::on_device!(a.device, a.seed, |dev| run_on(dev, a))
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'T'], "-")
        .trim_end_matches('Z')
        .to_string()
}

fn run_on<D: KernelDevice>(dev: D, a: Args) -> Result<()> {
    let (flow, registry) = a.graph.build_with_registry()?;
    for st in &flow.parsed.doc.train {
        for name in [&st.generator, &st.discriminator] {
            if let Some(net) = flow.net(name) {
                estimate::check_memory(&flow, net, st.batch, true, a.graph.max_memory)?;
            }
        }
    }
    let (dir, resume) = match &a.resume {
        Some(p) if p.is_dir() => {
            let ckpt = checkpoint::list(&p.join("checkpoints")).into_iter().rev().find(|c| checkpoint::load(c).is_ok());
            let ckpt = ckpt.ok_or_else(|| {
                Error::input("run::no_checkpoint", format!("`{}` has no loadable checkpoint to resume", p.display()))
            })?;
            (a.out.clone().unwrap_or(p.clone()), Some(ckpt))
        }
        Some(p) => {
            let dir = p.parent().and_then(|c| c.parent()).map(PathBuf::from).unwrap_or_default();
            (a.out.clone().unwrap_or(dir), Some(p.clone()))
        }
        None => {
            (a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&flow.parsed.doc.name).join(timestamp())), None)
        }
    };
    if let Some(c) = &resume {
        eprintln!("resuming from {}", c.display());
    }
    let opts = RunOptions {
        dir: dir.clone(),
        graph_path: a.graph.file.clone(),
        overrides: a.graph.set.clone(),
        seed: a.seed,
        max_steps: a.max_steps,
        quiet: a.quiet,
        keep: a.keep,
        log_every: a.log_every.max(1),
        resume,
        plugins: stackflow_core::plugin::requested(Some(&a.graph.file), &flow.parsed.doc.plugins, &a.graph.plugins),
    };
    let summary = run::run(dev, &flow, &registry, &opts)?;
    let status = if summary.finished { "finished" } else { "stopped" };
    println!("{status} after {} iteration(s); run directory {}", summary.steps, dir.display());
    if let Some(c) = summary.checkpoint {
        println!("last checkpoint: {}", c.display());
    }
    Ok(())
}
