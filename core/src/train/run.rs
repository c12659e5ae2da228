//! A training run: the recipe's stages in order, with data, progress, metrics, sample
//! grids, loss plots and checkpoints in a run directory; resumable bit for bit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::checkpoint::{self, Meta, Position};
use super::game::{self, Batch, Optimizers, StageSetup};
use super::plot;
use crate::data::{self, Dataset};
use crate::dsl::LrDecay;
use crate::error::{Error, Result};
use crate::exec::ParamStore;
use crate::ir::Flow;
use crate::kernels::KernelDevice;
use crate::registry::Registry;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run directory (created).
    pub dir: PathBuf,
    /// The graph file (its folder resolves data paths).
    pub graph_path: PathBuf,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// Seed of initialisation, data order and noise.
    pub seed: u64,
    /// Stop after this many iterations in total (a checkpoint is written).
    pub max_steps: Option<u64>,
    /// Plain log lines instead of progress bars.
    pub quiet: bool,
    /// Checkpoints kept.
    pub keep: usize,
    /// Log a metrics line every this many iterations.
    pub log_every: u64,
    /// Continue from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Plugin libraries the run loaded (recorded so `sample` and `eval` load them too).
    pub plugins: Vec<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Iterations run in this invocation.
    pub steps: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Whether every stage finished.
    pub finished: bool,
}

/// Number of images in sample grids.
pub const GRID: usize = 8;

/// Hold the run directory's lock for the life of the value.
struct Lock(#[allow(dead_code)] File);

fn lock(dir: &Path) -> Result<Lock> {
    let path = dir.join(".lock");
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Lock(f)),
        Err(_) => Err(Error::input("run::locked", format!("another stackflow run is using `{}`", dir.display()))
            .with_help("wait for it to finish, or pass a different --out")),
    }
}

fn lr_scale(decay: &LrDecay, epoch: u64) -> f64 {
    match decay {
        LrDecay::Constant => 1.0,
        LrDecay::Halve { every_epochs } => 0.5f64.powi((epoch / (*every_epochs).max(1)) as i32),
    }
}

/// Load a batch of samples.
fn load_batch(ds: &dyn Dataset, idx: &[usize], size: usize, seed: u64) -> Result<(Batch, Vec<String>)> {
    use rayon::prelude::*;
    let samples = idx
        .par_iter()
        .map(|&i| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            ds.get(i, &[size], &mut rng)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut b = Batch { real: Vec::new(), emb: Vec::new(), tags: Vec::new() };
    let mut captions = Vec::new();
    for s in samples {
        b.real.extend_from_slice(&s.images[0]);
        b.emb.extend_from_slice(&s.embedding);
        b.tags.push(s.tags);
        captions.push(s.caption);
    }
    Ok((b, captions))
}

/// Train the recipe of `flow` on `dev`.
pub fn run<D: KernelDevice>(dev: D, flow: &Flow, registry: &Registry, opts: &RunOptions) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
    let _lock = lock(&opts.dir)?;
    if opts.resume.is_none() && !checkpoint::list(&opts.dir.join("checkpoints")).is_empty() {
        return Err(Error::input("run::exists", format!("`{}` already holds a run", opts.dir.display()))
            .with_help("continue it with `--resume`, or choose another `--out`"));
    }
    let text = &flow.parsed.src.text;
    let hash = checkpoint::graph_hash(text, &opts.overrides);
    let graph_copy = opts.dir.join("graph.ron");
    if !graph_copy.exists() {
        let header: String = opts.overrides.iter().map(|o| format!("// --set {o}\n")).collect();
        checkpoint::write_atomic(&graph_copy, format!("{header}{text}").as_bytes())?;
        let plugins: Vec<PathBuf> =
            opts.plugins.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
        let run_json = serde_json::json!({ "graph": opts.graph_path, "overrides": opts.overrides, "seed": opts.seed, "graph_hash": hash, "plugins": plugins });
        checkpoint::write_atomic(&opts.dir.join("run.json"), run_json.to_string().as_bytes())?;
    }
    let stages: Vec<StageSetup> =
        (0..flow.parsed.doc.train.len()).map(|i| game::setup(flow, registry, i)).collect::<Result<_>>()?;
    if stages.is_empty() {
        return Err(Error::input("run::no_recipe", format!("{} has no `train` stages", flow.parsed.src.name)));
    }
    let mut store = ParamStore::new(dev);
    for (i, net) in flow.nets.iter().enumerate() {
        store.init_net(net, opts.seed.wrapping_add(1000 * i as u64 + 1))?;
    }
    let mut pos = Position { stage: 0, epoch: 0, step: 0, stage_done: false };
    let mut opt = Optimizers::default();
    if let Some(path) = &opts.resume {
        let loaded = checkpoint::load(path)?;
        if loaded.meta.graph_hash != hash {
            return Err(Error::input(
                "run::graph_changed",
                format!("`{}` was made by a different graph or --set values", path.display()),
            )
            .with_help(
                "resume with the same graph file and the same --set flags (see the run's graph.ron and run.json)",
            ));
        }
        checkpoint::restore(&mut store, &loaded, path)?;
        pos = loaded.meta.position.clone();
        opt = loaded.opt;
        if pos.stage_done {
            pos = Position { stage: pos.stage + 1, epoch: 0, step: 0, stage_done: false };
            opt = Optimizers::default();
        }
    }
    let ckpt_dir = opts.dir.join("checkpoints");
    let samples_dir = opts.dir.join("samples");
    let metrics_path = opts.dir.join("metrics.jsonl");
    let mut metrics =
        OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    let base = opts.graph_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut total = 0u64;
    let mut last_ckpt = None;
    let started = Instant::now();
    let mut plot_series: Vec<(String, Vec<(f64, f64)>)> =
        ["D", "G", "KL"].iter().map(|n| (n.to_string(), Vec::new())).collect();

    while pos.stage < stages.len() {
        let st = &stages[pos.stage];
        let def = &flow.parsed.doc.train[pos.stage];
        let ds = data::open(&def.data, &base, st.embed_dim)?;
        let batch = def.batch as usize;
        let ipe = (ds.len() / batch) as u64;
        if ipe == 0 {
            return Err(Error::input(
                "run::small_data",
                format!("stage `{}`: {} samples are fewer than one batch of {batch}", st.name, ds.len()),
            ));
        }
        let total_steps = ipe * def.epochs;
        let pb = if opts.quiet { ProgressBar::hidden() } else { ProgressBar::new(total_steps) };
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} it {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(st.name.clone());
        pb.set_position(pos.step);
        // Fixed captions and noise for the per-epoch sample grids.
        let (grid_batch, grid_captions) =
            load_batch(ds.as_ref(), &(0..GRID.min(ds.len())).collect::<Vec<_>>(), st.image_size, opts.seed)?;
        let grid_z = st.noise.sample(
            &mut rand::rngs::StdRng::seed_from_u64(opts.seed ^ 0x5151),
            grid_captions.len(),
            st.z_dim,
        )?;

        while pos.epoch < def.epochs {
            let mut order: Vec<usize> = (0..ds.len()).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.seed ^ ((pos.stage as u64) << 48) ^ pos.epoch));
            let scale = lr_scale(&def.lr_decay, pos.epoch);
            let first = pos.step - pos.epoch * ipe;
            for bi in first..ipe {
                if opts.max_steps.is_some_and(|m| total >= m) {
                    break;
                }
                let t0 = Instant::now();
                let idx = &order[(bi as usize) * batch..(bi as usize + 1) * batch];
                let (b, _) = load_batch(ds.as_ref(), idx, st.image_size, opts.seed ^ pos.step.wrapping_mul(31))?;
                let mut rng = game::step_rng(opts.seed ^ ((pos.stage as u64) << 56), pos.step);
                let report = game::iteration(flow, st, &mut store, &mut opt, &b, scale, &mut rng, None, false)
                    .map_err(|e| {
                        e.context(format!("stage `{}`, epoch {}, iteration {}", st.name, pos.epoch, pos.step))
                    })?;
                pos.step += 1;
                total += 1;
                let get = |n: &str| report.term(n).unwrap_or(f32::NAN);
                for (name, pts) in plot_series.iter_mut() {
                    let key = if name == "G" { "G_total" } else { name.as_str() };
                    pts.push((pos.step as f64, report.term(key).unwrap_or(f32::NAN) as f64));
                }
                if pos.step.is_multiple_of(opts.log_every) || bi + 1 == ipe {
                    let mut line = serde_json::json!({
                        "stage": st.name, "epoch": pos.epoch, "step": pos.step,
                        "lr_g": st.opt_g.lr * scale, "lr_d": st.opt_d.lr * scale,
                        "iter_s": t0.elapsed().as_secs_f64(), "time_s": started.elapsed().as_secs_f64(),
                    });
                    for (n, v) in &report.terms {
                        line[n] = serde_json::json!(v);
                    }
                    writeln!(metrics, "{line}").map_err(|e| Error::io(&metrics_path, e))?;
                    if opts.quiet {
                        eprintln!(
                            "{} epoch {} step {}/{}: D {:.4} G {:.4} KL {:.4}",
                            st.name,
                            pos.epoch,
                            pos.step,
                            total_steps,
                            get("D"),
                            get("G"),
                            get("KL")
                        );
                    }
                }
                pb.set_message(format!("D {:.3} G {:.3} KL {:.3}", get("D"), get("G"), get("KL")));
                pb.inc(1);
            }
            let stopped = opts.max_steps.is_some_and(|m| total >= m) && pos.step < (pos.epoch + 1) * ipe;
            if !stopped {
                pos.epoch += 1;
                let fakes = game::generate(flow, st.g, &mut store, &grid_batch.emb, &grid_z, false, opts.seed)?;
                let n = grid_captions.len();
                let per = fakes.len() / n.max(1);
                let imgs: Vec<Vec<f32>> = (0..n).map(|i| fakes[i * per..(i + 1) * per].to_vec()).collect();
                let path = samples_dir.join(format!("{}-epoch{:04}.png", st.name, pos.epoch));
                data::write_grid_png(&path, &imgs, st.image_size, 1, Some(&grid_captions))?;
            }
            pos.stage_done = pos.epoch >= def.epochs;
            let meta = Meta {
                position: pos.clone(),
                seed: opts.seed,
                graph_hash: hash.clone(),
                overrides: opts.overrides.clone(),
                adam_t: (opt.g.t, opt.d.t),
            };
            let path = ckpt_dir.join(format!("ckpt-s{}-{:09}.safetensors", pos.stage, pos.step));
            checkpoint::save(&path, &store, &opt, &meta)?;
            last_ckpt = Some(path);
            let all = checkpoint::list(&ckpt_dir);
            for old in all.iter().take(all.len().saturating_sub(opts.keep.max(1))) {
                let _ = std::fs::remove_file(old);
            }
            plot::write_loss_plot(&opts.dir.join("losses.png"), &plot_series)?;
            if stopped {
                pb.abandon_with_message("stopped at --max-steps");
                return Ok(RunSummary { steps: total, checkpoint: last_ckpt, finished: false });
            }
        }
        pb.finish();
        pos = Position { stage: pos.stage + 1, epoch: 0, step: 0, stage_done: false };
        opt = Optimizers::default();
    }
    Ok(RunSummary { steps: total, checkpoint: last_ckpt, finished: true })
}
