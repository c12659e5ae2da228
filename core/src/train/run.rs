//! A training run: the recipe's stages in order, with data, progress, metrics, sample
//! grids, loss plots and checkpoints in a run directory; resumable bit for bit, and
//! stoppable between iterations (a signal, `--max-steps`) without losing work.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::board::Board;
use super::checkpoint::{self, Meta, Position};
use super::game::{self, Batch, DeviceOptimizers, Optimizers, StageSetup};
use super::infer;
use super::plot;
use super::rundir::{self, ResumeFrom, RunInfo};
use crate::data::{self, Dataset};
use crate::dsl::{CheckpointEvery, EvalDef, EvalMetric, LrDecay};
use crate::error::{Error, Result};
use crate::exec::ParamStore;
use crate::ir::Flow;
use crate::kernels::KernelDevice;
use crate::metrics::{self, ExtractorOptions, Features, Inception};
use crate::registry::Registry;

/// How to run.
pub struct RunOptions {
    /// The run directory (created).
    pub dir: PathBuf,
    /// The graph file (its folder resolves data paths).
    pub graph_path: PathBuf,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// Seed of initialisation, data order and noise; on resume, `None` takes the
    /// checkpoint's and a different value is refused.
    pub seed: Option<u64>,
    /// Stop after this many iterations in total (a checkpoint is written).
    pub max_steps: Option<u64>,
    /// Plain log lines instead of progress bars.
    pub quiet: bool,
    /// Checkpoints kept.
    pub keep: usize,
    /// Log a metrics line every this many iterations.
    pub log_every: u64,
    /// Continue from this checkpoint.
    pub resume: Option<ResumeFrom>,
    /// Plugin libraries the run loaded (recorded in `run.json`).
    pub plugins: Vec<PathBuf>,
    /// Checkpoints within an epoch; overrides every stage's `checkpoint_every`.
    pub checkpoint_every: Option<CheckpointEvery>,
    /// Set to a signal number (non-zero) to stop after the current iteration with a checkpoint.
    pub stop: Option<Arc<AtomicUsize>>,
    /// Also write TensorBoard event files to `<dir>/tensorboard`.
    pub tensorboard: bool,
    /// The Inception feature extractor and the Inception Score's splits, for stages whose
    /// periodic evaluation is FID or KID.
    pub inception: Option<(ExtractorOptions, usize)>,
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
    /// The signal that stopped the run, if one did.
    pub signal: Option<usize>,
}

/// Number of images in sample grids.
pub const GRID: usize = 8;

fn lr_scale(decay: &LrDecay, epoch: u64) -> f64 {
    match decay {
        LrDecay::Constant => 1.0,
        LrDecay::Halve { every_epochs } => 0.5f64.powi((epoch / (*every_epochs).max(1)).min(4096) as i32),
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
    check_inception(flow, opts)?;
    std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
    let _lock = rundir::lock(&opts.dir)?;
    let stages: Vec<StageSetup> =
        (0..flow.parsed.doc.train.len()).map(|i| game::setup(flow, registry, i)).collect::<Result<_>>()?;
    if stages.is_empty() {
        return Err(Error::input("run::no_recipe", format!("{} has no `train` stages", flow.parsed.src.name)));
    }
    let hash = checkpoint::graph_hash(&flow.parsed.resolved_text()?, &opts.overrides);
    let seed = resolve_seed(opts)?;
    let mut store = ParamStore::new(dev);
    for (i, net) in flow.nets.iter().enumerate() {
        store.init_net(net, seed.wrapping_add(1000 * i as u64 + 1))?;
    }
    let mut pos = Position { stage: 0, epoch: 0, step: 0, stage_done: false };
    let mut opt = DeviceOptimizers::<D>::default();
    if let Some(r) = &opts.resume {
        check_resumable(r, &hash, stages.len())?;
        checkpoint::restore(&mut store, &r.loaded, &r.checkpoint)?;
        pos = r.loaded.meta.position.clone();
        opt = r.loaded.opt.to_device(&store.dev)?;
    }
    let run_id = prepare_dir(flow, opts, &hash, seed)?;
    rundir::clean_temp_files(&opts.dir.join("checkpoints"));
    let metrics_path = opts.dir.join("metrics.jsonl");
    if opts.resume.is_some() {
        trim_metrics(&metrics_path, flow, &pos)?;
    }
    let metrics =
        OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    let board = opts.tensorboard.then(|| Board::open(&opts.dir.join("tensorboard"))).transpose()?;
    if pos.stage_done {
        pos = Position { stage: pos.stage + 1, epoch: 0, step: 0, stage_done: false };
        opt = opt.next_stage();
    }
    let mut t = Trainer {
        flow,
        registry,
        opts,
        seed,
        hash,
        run_id,
        metrics,
        metrics_path,
        board,
        started: Instant::now(),
        total: 0,
        last_ckpt: None,
    };
    while pos.stage < stages.len() {
        if let Some(summary) = t.stage(&stages[pos.stage], &mut store, &mut opt, &mut pos)? {
            return Ok(summary);
        }
        pos = Position { stage: pos.stage + 1, epoch: 0, step: 0, stage_done: false };
        opt = opt.next_stage();
    }
    Ok(RunSummary { steps: t.total, checkpoint: t.last_ckpt, finished: true, signal: None })
}

/// Refuse to start a run whose periodic FID or KID has no Inception weights.
fn check_inception(flow: &Flow, opts: &RunOptions) -> Result<()> {
    let scored = flow.parsed.doc.train.iter().position(|d| d.eval.is_some_and(|e| e.metric.uses_inception()));
    match scored {
        Some(i) if opts.inception.is_none() => Err(Error::input(
            "run::no_inception",
            format!("stage {} scores FID or KID during training, which needs the Inception weights", i + 1),
        )
        .with_help("pass --inception WEIGHTS (README, `stackflow metrics`: converting pytorch-fid's weights)")),
        _ => Ok(()),
    }
}

/// The run's seed: the one asked for, or on resume the checkpoint's (a contradiction is refused).
fn resolve_seed(opts: &RunOptions) -> Result<u64> {
    match (&opts.resume, opts.seed) {
        (None, s) => Ok(s.unwrap_or(0)),
        (Some(r), None) => Ok(r.loaded.meta.seed),
        (Some(r), Some(s)) if s == r.loaded.meta.seed => Ok(s),
        (Some(r), Some(s)) => Err(Error::input(
            "run::seed_mismatch",
            format!("--seed {s}, but `{}` was trained with seed {}", r.checkpoint.display(), r.loaded.meta.seed),
        )
        .with_help("leave out --seed when resuming: the run's own seed is used")),
    }
}

/// Refuse a checkpoint of another graph, or whose position the recipe cannot have produced.
fn check_resumable(r: &ResumeFrom, hash: &str, stages: usize) -> Result<()> {
    let path = &r.checkpoint;
    if r.loaded.meta.graph_hash != hash {
        return Err(Error::input(
            "run::graph_changed",
            format!("`{}` was made by a different graph or --set values", path.display()),
        )
        .with_help("resume with the same graph file and the same --set flags (see the run's graph.ron and run.json)"));
    }
    if r.loaded.meta.position.stage >= stages {
        return Err(bad_position(
            path,
            format!("stage {} of a {stages}-stage recipe", r.loaded.meta.position.stage + 1),
        ));
    }
    Ok(())
}

fn bad_position(path: &Path, why: String) -> Error {
    Error::input("checkpoint::bad_position", format!("`{}` records an impossible position: {why}", path.display()))
        .with_help("use an earlier checkpoint of the run")
}

/// The first iteration of the current epoch still to run, checked against the recipe.
fn first_in_epoch(pos: &Position, epochs: u64, ipe: u64, path: Option<&Path>) -> Result<u64> {
    let start = pos.epoch.checked_mul(ipe);
    let ok = pos.epoch <= epochs
        && start.is_some_and(|s| pos.step >= s && pos.step - s <= ipe)
        && (pos.epoch < epochs || start == Some(pos.step));
    match (ok, start) {
        (true, Some(s)) => Ok(pos.step - s),
        _ => Err(bad_position(
            path.unwrap_or(Path::new("checkpoint")),
            format!("epoch {}, iteration {} with {ipe} iterations per epoch and {epochs} epochs", pos.epoch, pos.step),
        )),
    }
}

/// Write `graph.ron` and `run.json` (fresh for a new run, so nothing stale survives a
/// failed first attempt), refusing a directory that holds another run. Returns the run id.
fn prepare_dir(flow: &Flow, opts: &RunOptions, hash: &str, seed: u64) -> Result<String> {
    let dir = &opts.dir;
    let has_checkpoints = !checkpoint::list(&dir.join("checkpoints")).is_empty();
    let info = rundir::read_info(dir).ok().flatten();
    let run_id = match &opts.resume {
        None if has_checkpoints => {
            return Err(Error::input("run::exists", format!("`{}` already holds a run", dir.display()))
                .with_help("continue it with `--resume`, or choose another `--out`"));
        }
        None => rundir::new_run_id(dir, hash, seed),
        Some(r) => {
            let id = &r.loaded.meta.run_id;
            let same = info.as_ref().is_some_and(|i| !i.run_id.is_empty() && &i.run_id == id);
            if has_checkpoints && !same {
                return Err(Error::input(
                    "run::other_run",
                    format!("`{}` holds checkpoints of another run than `{}`", dir.display(), r.checkpoint.display()),
                )
                .with_help("continue it in its own run directory, or pass `--out` with a new directory"));
            }
            if id.is_empty() {
                rundir::new_run_id(dir, hash, seed)
            } else {
                id.clone()
            }
        }
    };
    rundir::write_graph(dir, &flow.parsed.resolved_text()?, &opts.overrides)?;
    let plugins = opts.plugins.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
    let info = RunInfo {
        graph: opts.graph_path.clone(),
        overrides: opts.overrides.clone(),
        seed,
        graph_hash: hash.to_string(),
        plugins,
        run_id: run_id.clone(),
    };
    let json = serde_json::to_string(&info).map_err(|e| Error::other("run::write", e.to_string()))?;
    checkpoint::write_atomic(&dir.join("run.json"), json.as_bytes())?;
    Ok(run_id)
}

/// Drop metrics lines past the resumed position (written after the checkpoint by the
/// interrupted run) and a torn last line, so a resumed run's log has each step once.
fn trim_metrics(path: &Path, flow: &Flow, pos: &Position) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let stage_of = |name: &str| flow.parsed.doc.train.iter().position(|s| s.name == name);
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(stage), Some(step)) = (v["stage"].as_str().and_then(stage_of), v["step"].as_u64()) else {
            continue;
        };
        if (stage, step) <= (pos.stage, pos.step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.len() != text.len() {
        checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// A grid of a batch of images (flat, one per caption) with its captions beside them.
fn write_batch_grid(path: &Path, batch: &[f32], side: usize, captions: &[String]) -> Result<()> {
    let per = (batch.len() / captions.len().max(1)).max(1);
    let imgs: Vec<Vec<f32>> = batch.chunks(per).map(<[f32]>::to_vec).collect();
    data::write_grid_png(path, &imgs, side, 1, Some(captions))
}

/// What the iterations of one epoch share.
#[derive(Clone, Copy)]
struct Epoch<'a> {
    st: &'a StageSetup,
    ds: &'a dyn Dataset,
    /// Learning-rate factor of the epoch.
    scale: f64,
    pb: &'a ProgressBar,
    /// Iterations per epoch.
    ipe: u64,
}

/// The fixed inputs of a stage's per-epoch sample grids: caption embeddings, noise and
/// the captions' text.
struct FixedGrid {
    emb: Vec<f32>,
    z: Vec<f32>,
    captions: Vec<String>,
}

/// Why the iterations of an epoch ended early.
enum Halt {
    MaxSteps,
    Signal(usize),
}

/// What a stage's periodic FID or KID computes once.
struct InceptionEval<D: KernelDevice> {
    /// The feature extractor.
    net: Inception<D>,
    /// The real images' features.
    real: Features,
    /// Their captions' embeddings, from which G draws the images it is compared by.
    embeds: Vec<f32>,
    /// Inception Score splits.
    splits: usize,
}

/// The state of one `run` call shared by its stages.
struct Trainer<'a> {
    flow: &'a Flow,
    registry: &'a Registry,
    opts: &'a RunOptions,
    seed: u64,
    hash: String,
    run_id: String,
    /// `metrics.jsonl`, opened once for appending.
    metrics: std::fs::File,
    metrics_path: PathBuf,
    /// TensorBoard events, when asked for.
    board: Option<Board>,
    started: Instant,
    total: u64,
    last_ckpt: Option<PathBuf>,
}

impl Trainer<'_> {
    /// Train one stage from `pos`; `Some` when the run stops before the stage ends.
    fn stage<D: KernelDevice>(
        &mut self,
        st: &StageSetup,
        store: &mut ParamStore<D>,
        opt: &mut DeviceOptimizers<D>,
        pos: &mut Position,
    ) -> Result<Option<RunSummary>> {
        let def = &self.flow.parsed.doc.train[pos.stage];
        let base = self.opts.graph_path.parent().unwrap_or(Path::new("")).to_path_buf();
        let ds = data::open(&def.data, &base, st.embed_dim)?;
        let batch = def.batch as usize;
        let ipe = (ds.len() / batch) as u64;
        if ipe == 0 {
            return Err(Error::input(
                "run::small_data",
                format!("stage `{}`: {} samples are fewer than one batch of {batch}", st.name, ds.len()),
            ));
        }
        let resumed_from = self.opts.resume.as_ref().map(|r| r.checkpoint.as_path());
        first_in_epoch(pos, def.epochs, ipe, resumed_from)?;
        let total_steps = ipe.saturating_mul(def.epochs);
        let pb = self.progress(st, total_steps, pos.step);
        let grid = self.fixed_grid(st, ds.as_ref(), pos.step)?;
        let every = self.opts.checkpoint_every.or(def.checkpoint_every);
        let mut last_save = (Instant::now(), pos.step);
        let mut inception = self.inception_eval(st, &base, &store.dev)?;

        while pos.epoch < def.epochs {
            let mut order: Vec<usize> = (0..ds.len()).collect();
            let order_seed = self.seed ^ ((pos.stage as u64) << 48) ^ pos.epoch;
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(order_seed));
            let scale = lr_scale(&def.lr_decay, pos.epoch);
            let first = first_in_epoch(pos, def.epochs, ipe, None)?;
            let mut halt = None;
            for bi in first..ipe {
                if self.opts.max_steps.is_some_and(|m| self.total >= m) {
                    halt = Some(Halt::MaxSteps);
                    break;
                }
                let idx = &order[(bi as usize) * batch..(bi as usize + 1) * batch];
                let ep = Epoch { st, ds: ds.as_ref(), scale, pb: &pb, ipe };
                self.iteration(&ep, idx, store, opt, pos)?;
                if let Some(ev) = def.eval.filter(|ev| pos.step.is_multiple_of(ev.every)) {
                    self.evaluate(st, (ev, inception.as_mut()), (store, opt), pos)?;
                }
                if let Some(sig) = self.opts.stop.as_ref().map(|s| s.load(Ordering::SeqCst)).filter(|&s| s != 0) {
                    halt = Some(Halt::Signal(sig));
                    break;
                }
                if bi + 1 < ipe && due(every, last_save, pos.step) {
                    self.checkpoint(store, opt, pos)?;
                    last_save = (Instant::now(), pos.step);
                }
            }
            let halt = halt.or_else(|| {
                let at_end = pos.step == (pos.epoch + 1) * ipe;
                (!at_end && self.opts.max_steps.is_some_and(|m| self.total >= m)).then_some(Halt::MaxSteps)
            });
            if halt.is_none() {
                self.end_epoch(st, (store, opt), pos, &grid)?;
            }
            pos.stage_done = pos.epoch >= def.epochs;
            self.checkpoint(store, opt, pos)?;
            last_save = (Instant::now(), pos.step);
            let panels = plot::panels_from_metrics(&self.metrics_path, &["D", "G", "KL"])?;
            plot::write_loss_plot(&self.opts.dir.join("losses.png"), &panels)?;
            if let Some(h) = halt {
                return Ok(Some(self.halted(h, &pb)));
            }
        }
        pb.finish();
        Ok(None)
    }

    /// The fixed captions, real images and noise of the stage's sample grids; the real
    /// images' grid is written once (and shown in TensorBoard at step 0), to read the
    /// fakes' grids against.
    fn fixed_grid(&mut self, st: &StageSetup, ds: &dyn Dataset, step: u64) -> Result<FixedGrid> {
        let idx: Vec<usize> = (0..GRID.min(ds.len())).collect();
        let (batch, captions) = load_batch(ds, &idx, st.image_size, self.seed)?;
        let real_grid = self.opts.dir.join("samples").join(format!("{}-real.png", st.name));
        if !real_grid.exists() {
            write_batch_grid(&real_grid, &batch.real, st.image_size, &captions)?;
        }
        if let Some(b) = self.board.as_mut().filter(|_| step == 0) {
            b.image(0, &format!("{}/real", st.name), &real_grid)?;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0x5151);
        let z = st.noise.sample(&mut rng, captions.len(), st.z_dim)?;
        Ok(FixedGrid { emb: batch.emb, z, captions })
    }

    /// Close a completed epoch: count it, let G take its moving average when the stage
    /// ends with one (the last grid shows it), write the epoch's sample grid.
    fn end_epoch<D: KernelDevice>(
        &mut self,
        st: &StageSetup,
        (store, opt): (&mut ParamStore<D>, &mut DeviceOptimizers<D>),
        pos: &mut Position,
        grid: &FixedGrid,
    ) -> Result<()> {
        pos.epoch += 1;
        if pos.epoch >= self.flow.parsed.doc.train[pos.stage].epochs && st.ema.is_some() {
            opt.ema.finish(store)?;
        }
        let path = self.opts.dir.join("samples").join(format!("{}-epoch{:04}.png", st.name, pos.epoch));
        self.write_grid(st, store, (&grid.emb, &grid.z, &grid.captions), &path)?;
        if let Some(b) = self.board.as_mut() {
            b.image(pos.step, &format!("{}/samples", st.name), &path)?;
        }
        Ok(())
    }

    /// The summary of a run stopped early, with the progress bar left showing why.
    fn halted(&self, h: Halt, pb: &ProgressBar) -> RunSummary {
        let (msg, signal) = match h {
            Halt::MaxSteps => ("stopped at --max-steps".to_string(), None),
            Halt::Signal(s) => (format!("stopped by signal {s}"), Some(s)),
        };
        pb.abandon_with_message(msg);
        RunSummary { steps: self.total, checkpoint: self.last_ckpt.clone(), finished: false, signal }
    }

    /// The sample grid: fixed captions (embeddings, noise, text) through the stage's G.
    fn write_grid<D: KernelDevice>(
        &self,
        st: &StageSetup,
        store: &mut ParamStore<D>,
        (emb, z, captions): (&[f32], &[f32], &[String]),
        path: &Path,
    ) -> Result<()> {
        let fakes = game::generate(self.flow, st.index, store, (emb, z), false, self.seed)?;
        write_batch_grid(path, &fakes, st.image_size, captions)
    }

    /// The stage's progress bar, from iteration `at` to the stage's end or to where
    /// `--max-steps` stops this invocation (so the ETA is the wait until this command ends).
    fn progress(&self, st: &StageSetup, total_steps: u64, at: u64) -> ProgressBar {
        let end = match self.opts.max_steps {
            Some(m) => total_steps.min(at.saturating_add(m.saturating_sub(self.total))),
            None => total_steps,
        };
        let pb = if self.opts.quiet { ProgressBar::hidden() } else { ProgressBar::new(end) };
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} it {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(format!("stage {}/{} ({})", st.index + 1, self.flow.stages.len(), st.name));
        pb.set_position(at);
        pb
    }

    /// One training iteration on the samples `idx`, with its metrics line.
    fn iteration<D: KernelDevice>(
        &mut self,
        ep: &Epoch,
        idx: &[usize],
        store: &mut ParamStore<D>,
        opt: &mut DeviceOptimizers<D>,
        pos: &mut Position,
    ) -> Result<()> {
        let Epoch { st, ds, scale, pb, ipe } = *ep;
        let t0 = Instant::now();
        let (b, _) = load_batch(ds, idx, st.image_size, self.seed ^ pos.step.wrapping_mul(31))?;
        let mut rng = game::step_rng(self.seed ^ ((pos.stage as u64) << 56), pos.step);
        let report = game::iteration(
            self.flow,
            st,
            (store, opt),
            game::Step { lr_scale: scale, ..game::Step::on(&b) },
            &mut rng,
        )
        .map_err(|e| e.context(format!("stage `{}`, epoch {}, iteration {}", st.name, pos.epoch, pos.step)))?;
        pos.step += 1;
        self.total += 1;
        let get = |n: &str| report.term(n).unwrap_or(f32::NAN);
        if pos.step.is_multiple_of(self.opts.log_every) || pos.step.is_multiple_of(ipe) {
            let mut line = serde_json::json!({
                "stage": st.name, "epoch": pos.epoch, "step": pos.step,
                "lr_g": st.opt_g.lr * scale, "lr_d": st.opt_d.lr * scale,
                "iter_s": t0.elapsed().as_secs_f64(), "time_s": self.started.elapsed().as_secs_f64(),
            });
            for (n, v) in &report.terms {
                line[n] = serde_json::json!(v);
            }
            self.log(&line)?;
            if self.opts.quiet {
                eprintln!(
                    "{} epoch {} step {}: D {:.4} G {:.4} KL {:.4}",
                    st.name,
                    pos.epoch,
                    pos.step,
                    get("D"),
                    get("G"),
                    get("KL")
                );
            }
        }
        pb.set_message(format!("D {:.3} G {:.3} KL {:.3}", get("D"), get("G"), get("KL")));
        pb.inc(1);
        Ok(())
    }

    /// Append a line to `metrics.jsonl` (and its numbers to the TensorBoard events).
    fn log(&mut self, line: &serde_json::Value) -> Result<()> {
        writeln!(self.metrics, "{line}").map_err(|e| Error::io(&self.metrics_path, e))?;
        match self.board.as_mut() {
            Some(b) => b.metrics_line(line),
            None => Ok(()),
        }
    }

    /// What a checkpoint of the current position records besides the tensors.
    fn meta<M>(&self, opt: &Optimizers<M>, pos: &Position) -> Meta {
        Meta {
            position: pos.clone(),
            seed: self.seed,
            graph_hash: self.hash.clone(),
            overrides: self.opts.overrides.clone(),
            adam_t: (opt.g.t, opt.d.t),
            run_id: self.run_id.clone(),
        }
    }

    /// What the stage's periodic FID or KID computes once (the extractor, checked against
    /// its weights before training starts, and the real images' features), if it has one.
    fn inception_eval<D: KernelDevice>(
        &self,
        st: &StageSetup,
        data_dir: &Path,
        dev: &D,
    ) -> Result<Option<InceptionEval<D>>> {
        let def = &self.flow.parsed.doc.train[st.index];
        let (Some(ev), Some((extractor, splits))) =
            (def.eval.filter(|e| e.metric.uses_inception()), self.opts.inception.as_ref())
        else {
            return Ok(None);
        };
        let (embeds, reals) = infer::real_samples(self.flow, st.index, data_dir, (ev.images, None), self.seed)?;
        let mut net = Inception::open(dev.clone(), self.registry, extractor, st.image_size)?;
        let real = net.features(&reals, &mut |_| {})?;
        Ok(Some(InceptionEval { net, real, embeds, splits: *splits }))
    }

    /// Score the stage's G (caption fidelity on held-out captions, or FID and the rest
    /// against real images), log the scores, and keep the checkpoint with the best score
    /// so far in `checkpoints/best.safetensors` (a later stage's first score replaces an
    /// earlier stage's best: the later G is the run's output).
    fn evaluate<D: KernelDevice>(
        &mut self,
        st: &StageSetup,
        (ev, inception): (EvalDef, Option<&mut InceptionEval<D>>),
        (store, opt): (&mut ParamStore<D>, &DeviceOptimizers<D>),
        pos: &Position,
    ) -> Result<()> {
        let at = (st.index, st.noise.as_ref());
        let mut line = serde_json::json!({ "stage": st.name, "epoch": pos.epoch, "step": pos.step });
        let value = match inception {
            Some(ie) => {
                let (fakes, _) = infer::generate_many(self.flow, at, store, &ie.embeds, 1, self.seed)?;
                let fake = ie.net.features(&fakes.concat(), &mut |_| {})?;
                let r = metrics::report(&ie.real, &fake, ie.splits)?;
                for (k, v) in [("fid", r.fid), ("kid", r.kid), ("is", r.is), ("precision", r.precision)] {
                    line[format!("eval_{k}")] = serde_json::json!(v);
                }
                line["eval_recall"] = serde_json::json!(r.recall);
                if ev.metric == EvalMetric::Fid {
                    r.fid
                } else {
                    r.kid
                }
            }
            None => {
                let (scores, _) =
                    infer::evaluate_store(self.flow, at, store, (ev.captions, ev.per_caption), self.seed)?;
                line["eval_both"] = serde_json::json!(scores.both_fidelity);
                line["eval_object"] = serde_json::json!(scores.object_fidelity);
                line["eval_background"] = serde_json::json!(scores.background_fidelity);
                line["eval_diversity"] = serde_json::json!(scores.diversity);
                match ev.metric {
                    EvalMetric::Object => scores.object_fidelity,
                    EvalMetric::Background => scores.background_fidelity,
                    _ => scores.both_fidelity,
                }
            }
        };
        self.log(&line)?;
        if self.opts.quiet {
            eprintln!("{} step {}: {} {value:.4}", st.name, pos.step, ev.metric.key());
        }
        self.keep_best(st, ev.metric, value, (store, opt), pos)
    }

    /// Keep the checkpoint of `value` as `checkpoints/best.safetensors` if it beats the
    /// recorded best (or that is an earlier stage's).
    fn keep_best<D: KernelDevice>(
        &mut self,
        st: &StageSetup,
        metric: EvalMetric,
        value: f64,
        (store, opt): (&ParamStore<D>, &DeviceOptimizers<D>),
        pos: &Position,
    ) -> Result<()> {
        let dir = self.opts.dir.join("checkpoints");
        let record = dir.join("best.json");
        let best: Option<serde_json::Value> =
            std::fs::read_to_string(&record).ok().and_then(|t| serde_json::from_str(&t).ok());
        let beaten = best.is_none_or(|b| {
            let (stage, old) = (b["stage_index"].as_u64(), b["value"].as_f64());
            stage.is_none_or(|s| (s as usize) < st.index) || old.is_none_or(|old| metric.better(value, old))
        });
        if beaten {
            checkpoint::save(&dir.join("best.safetensors"), store, opt, &self.meta(opt, pos))?;
            let rec = serde_json::json!({
                "stage": st.name, "stage_index": st.index, "step": pos.step,
                "metric": metric.key(), "value": value,
            });
            let tmp = dir.join("best.json.tmp");
            std::fs::write(&tmp, format!("{rec}\n")).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &record).map_err(|e| Error::io(&record, e))?;
        }
        Ok(())
    }

    /// Write a checkpoint of the current position and prune to the newest `keep`.
    fn checkpoint<D: KernelDevice>(
        &mut self,
        store: &ParamStore<D>,
        opt: &DeviceOptimizers<D>,
        pos: &Position,
    ) -> Result<()> {
        let meta = self.meta(opt, pos);
        let ckpt_dir = self.opts.dir.join("checkpoints");
        let path = ckpt_dir.join(format!("ckpt-s{}-{:09}.safetensors", pos.stage + 1, pos.step));
        checkpoint::save(&path, store, opt, &meta)?;
        self.last_ckpt = Some(path);
        let all = checkpoint::list(&ckpt_dir);
        for old in all.iter().take(all.len().saturating_sub(self.opts.keep.max(1))) {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }
}

/// Whether a periodic checkpoint is due.
fn due(every: Option<CheckpointEvery>, (at, step): (Instant, u64), now_step: u64) -> bool {
    match every {
        None => false,
        Some(CheckpointEvery::Steps(n)) => now_step.saturating_sub(step) >= n,
        Some(CheckpointEvery::Minutes(m)) => at.elapsed().as_secs() >= m.saturating_mul(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_outside_the_recipe_are_refused() {
        let p = |epoch, step| Position { stage: 0, epoch, step, stage_done: false };
        assert_eq!(first_in_epoch(&p(0, 0), 2, 10, None).unwrap(), 0);
        assert_eq!(first_in_epoch(&p(1, 13), 2, 10, None).unwrap(), 3);
        assert_eq!(first_in_epoch(&p(2, 20), 2, 10, None).unwrap(), 0);
        // A flipped epoch: the step lies before the epoch's start (this underflowed).
        assert!(first_in_epoch(&p(7, 13), 9, 10, None).is_err());
        assert!(first_in_epoch(&p(3, 30), 2, 10, None).is_err());
        assert!(first_in_epoch(&p(1, 25), 2, 10, None).is_err());
        assert!(first_in_epoch(&p(u64::MAX, 0), u64::MAX, 10, None).is_err());
        assert!(first_in_epoch(&p(2, 21), 2, 10, None).is_err());
    }
}
