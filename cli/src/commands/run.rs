//! `stackflow run`: train the recipe of a graph file.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use stackflow_core::dsl::CheckpointEvery;
use stackflow_core::ir::estimate;
use stackflow_core::kernels::KernelDevice;
use stackflow_core::registry::Registry;
use stackflow_core::train::run::{self, RunOptions};
use stackflow_core::train::rundir;
use stackflow_core::{Error, Result};

use super::metrics::InceptionArgs;
use super::{Device, GraphArgs};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Run directory (default: runs/<name>/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a run: its directory (newest loadable checkpoint) or a checkpoint file in
    /// its `checkpoints/` folder; a file from elsewhere needs `--out`.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many iterations (a checkpoint is written).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Seed of initialisation, data order and noise (default 0; on resume, the run's own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Write a metrics line every N iterations.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Also checkpoint within epochs: every N iterations (`500`) or minutes (`10m`);
    /// overrides the recipe's `checkpoint_every`.
    #[arg(long, value_name = "N|Nm", value_parser = parse_every)]
    pub checkpoint_every: Option<CheckpointEvery>,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Also write TensorBoard event files (losses, scores, sample grids) to
    /// RUN/tensorboard, for `tensorboard --logdir runs/` (a build with the `tensorboard` feature).
    #[arg(long)]
    pub tensorboard: bool,
    /// For a stage with `eval: Some((metric: Fid, …))` (or `Kid`): the extractor.
    #[command(flatten)]
    pub inception: InceptionArgs,
}

fn parse_every(s: &str) -> std::result::Result<CheckpointEvery, String> {
    let (num, minutes) = match s.strip_suffix('m') {
        Some(n) => (n, true),
        None => (s, false),
    };
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a count of iterations (500) or minutes (10m)"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(if minutes { CheckpointEvery::Minutes(n) } else { CheckpointEvery::Steps(n) })
}

/// Run `run`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    if a.tensorboard {
        stackflow_core::train::board::available()?;
    }
    if a.inception.inception.is_some() {
        a.inception.options()?;
    }
    let seed = a.seed.unwrap_or(0);
    super::on_device!(a.device, seed, |dev| run_on(dev, a, kinds))
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'T'], "-")
        .trim_end_matches('Z')
        .to_string()
}

/// SIGINT and SIGTERM set `flag` to their number (the run stops after the iteration);
/// a second SIGINT or SIGTERM exits at once.
fn watch_signals(flag: &Arc<AtomicUsize>) -> Result<()> {
    #[cfg(unix)]
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let exit_code = 128 + sig;
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(sig, exit_code, Arc::clone(&armed))
            .and_then(|_| signal_hook::flag::register(sig, armed))
            .and_then(|_| signal_hook::flag::register_usize(sig, Arc::clone(flag), sig as usize))
            .map_err(|e| Error::other("run::signals", e.to_string()))?;
    }
    Ok(())
}

fn run_on<D: KernelDevice>(dev: D, a: Args, kinds: &Registry) -> Result<()> {
    let resume = a.resume.as_deref().map(|p| rundir::resume_from(p, a.out.as_deref())).transpose()?;
    // On resume, `--set` defaults to the run's own overrides; other values are refused.
    let mut graph = a.graph.clone();
    if let Some(r) = &resume {
        let recorded = &r.loaded.meta.overrides;
        if graph.set.is_empty() {
            graph.set = recorded.clone();
        } else if &graph.set != recorded {
            let show = |v: &[String]| {
                if v.is_empty() {
                    "no --set".to_string()
                } else {
                    v.iter().map(|s| format!("--set {s}")).collect::<Vec<_>>().join(" ")
                }
            };
            return Err(Error::input(
                "run::set_changed",
                format!("the run was trained with {}, not {}", show(recorded), show(&graph.set)),
            )
            .with_help("leave `--set` out to continue with the run's own values (its graph.ron records them)"));
        }
    }
    let (flow, registry) = graph.build_with_registry(kinds)?;
    for st in &flow.parsed.doc.train {
        estimate::check_stage_memory(&flow, st, st.batch, graph.max_memory)?;
    }
    let dir = match &resume {
        Some(r) => r.dir.clone(),
        None => a.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(rundir::safe_component(&flow.parsed.doc.name)).join(timestamp())
        }),
    };
    if let Some(r) = &resume {
        eprintln!("resuming from {} in {}", r.checkpoint.display(), dir.display());
    }
    let stop = Arc::new(AtomicUsize::new(0));
    watch_signals(&stop)?;
    let opts = RunOptions {
        dir: dir.clone(),
        graph_path: graph.file.clone(),
        overrides: graph.set.clone(),
        seed: a.seed,
        max_steps: a.max_steps,
        quiet: a.quiet,
        keep: a.keep,
        log_every: a.log_every.max(1),
        resume,
        plugins: stackflow_core::plugin::requested(Some(&graph.file), &flow.parsed.doc.plugins, &graph.plugins),
        checkpoint_every: a.checkpoint_every,
        stop: Some(stop),
        tensorboard: a.tensorboard,
        inception: match &a.inception.inception {
            Some(_) => Some((a.inception.options()?, a.inception.splits)),
            None => None,
        },
    };
    let summary = run::run(dev, &flow, &registry, &opts)?;
    if summary.finished && summary.steps == 0 {
        println!("the run had already finished every stage; nothing to do (run directory {})", dir.display());
        return Ok(());
    }
    let status = if summary.finished { "finished" } else { "stopped" };
    println!("{status} after {} iteration(s); run directory {}", summary.steps, dir.display());
    if let Some(c) = &summary.checkpoint {
        println!("last checkpoint: {}", c.display());
    }
    if let Some(sig) = summary.signal {
        println!("continue with: stackflow run {} --resume {}", graph.file.display(), dir.display());
        std::process::exit(128 + sig as i32);
    }
    Ok(())
}
