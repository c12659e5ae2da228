//! `stackflow bench`: sampling and training speed of a stage, on random data.

use stackflow_core::exec::profile::GroupBy;
use stackflow_core::kernels::KernelDevice;
use stackflow_core::registry::Registry;
use stackflow_core::train::{bench, game};
use stackflow_core::{Error, Result};

use super::{Device, GraphArgs};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Stage of the recipe, 1-based.
    #[arg(long, default_value_t = 1)]
    pub stage: usize,
    /// Batch size (default: the recipe's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also time each net's node kinds (or, with `--profile=nodes`, each node), forward and
    /// backward, over as many further training iterations (`profile` in the JSON).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "kinds", value_name = "BY")]
    pub profile: Option<ProfileBy>,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

/// What `--profile` adds time up by.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProfileBy {
    /// Per net and node kind.
    Kinds,
    /// Per node.
    Nodes,
}

/// Run `bench`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    super::on_device!(a.device, 0, |dev| run_on(dev, &a, kinds))
}

fn run_on<D: KernelDevice>(dev: D, a: &Args, kinds: &Registry) -> Result<()> {
    let (flow, registry): (_, Registry) = a.graph.build_with_registry(kinds)?;
    let stages = flow.parsed.doc.train.len();
    if a.stage == 0 || a.stage > stages {
        return Err(Error::input(
            "cli::bad_stage",
            format!("--stage {} is not a stage of {} (it has {stages})", a.stage, flow.parsed.src.name),
        ));
    }
    let st = game::setup(&flow, &registry, a.stage - 1)?;
    let batch = a.batch.unwrap_or(flow.parsed.doc.train[a.stage - 1].batch as usize);
    if batch < 2 {
        return Err(Error::input("cli::bad_batch", "--batch must be at least 2"));
    }
    stackflow_core::ir::estimate::check_stage_memory(
        &flow,
        &flow.parsed.doc.train[a.stage - 1],
        batch as u64,
        a.graph.max_memory,
    )?;
    if a.iters == 0 {
        return Err(Error::input("cli::bad_iters", "--iters must be at least 1"));
    }
    let quiet = a.json;
    let by = a.profile.map(|p| match p {
        ProfileBy::Kinds => GroupBy::Kind,
        ProfileBy::Nodes => GroupBy::Node,
    });
    let r = bench::bench(dev, &flow, &st, batch, (a.warmup, a.iters, by), |msg| {
        if !quiet {
            eprint!("\r{msg}   ");
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| Error::other("cli::json", e.to_string()))?);
    } else {
        eprintln!();
        println!(
            "stage {} ({}), batch {}, {} timed iteration(s) after {} warm-up",
            a.stage, r.stage, r.batch, a.iters, a.warmup
        );
        println!("  sample (G forward, eval): {:>9.1} ms  {:>7.1} GFLOP/s", r.sample_ms, r.sample_gflops);
        println!(
            "  train iteration:          {:>9.1} ms  {:>7.1} GFLOP/s (estimated FLOPs)",
            r.train_ms, r.train_gflops
        );
        if let (Some(s), Some(t)) = (r.sample_peak_heap_mb, r.train_peak_heap_mb) {
            println!("  peak heap: sample {s:.0} MB, train {t:.0} MB");
        }
        if let Some(rss) = r.peak_rss_mb {
            println!("  peak resident set of the process: {rss:.0} MB");
        }
        let kb = |b: u64| b as f64 / 1e3;
        println!(
            "  host<->device per training iteration: {:.0} KB to the device, {:.0} KB back",
            kb(r.train_bytes_to_device),
            kb(r.train_bytes_to_host)
        );
        if let (Some(rows), Some(by)) = (&r.profile, by) {
            print_profile(rows, by);
        }
    }
    Ok(())
}

/// The profile as a table: per training iteration, slowest first, with each row's share.
fn print_profile(rows: &[stackflow_core::exec::profile::Row], by: GroupBy) {
    let total: f64 = rows.iter().map(|r| r.forward_ms + r.backward_ms).sum();
    let (what, column) = match by {
        GroupBy::Kind => ("node kind", "kind"),
        GroupBy::Node => ("node", "node"),
    };
    println!("  per training iteration, by net and {what} (forward + backward):");
    println!("    {:<6} {:<28} {:>6} {:>10} {:>10} {:>7}", "net", column, "calls", "fwd ms", "bwd ms", "share");
    for r in rows {
        let share = 100.0 * (r.forward_ms + r.backward_ms) / total.max(f64::MIN_POSITIVE);
        println!(
            "    {:<6} {:<28} {:>6} {:>10.2} {:>10.2} {:>6.1}%",
            r.net, r.kind, r.calls, r.forward_ms, r.backward_ms, share
        );
    }
    println!("    {:<6} {:<28} {:>6} {:>21.2}", "", "profiled total", "", total);
}
