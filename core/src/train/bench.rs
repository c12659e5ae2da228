//! Timing of a stage on random data: sampling (G forward, eval) and one full training
//! iteration (G forward, D step, G step, Adam). Medians after warm-up; peak memory of each
//! phase when the binary counts heap allocations.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::game::{self, Batch, DeviceOptimizers, StageSetup};
use crate::error::Result;
use crate::exec::{profile, ParamStore};
use crate::ir::estimate;
use crate::ir::Flow;
use crate::kernels::KernelDevice;
use crate::mem;
use crate::mem::{transferred, Transfers};

/// What `bench` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    /// Stage name.
    pub stage: String,
    /// Batch size.
    pub batch: usize,
    /// Median milliseconds of one G forward in eval mode.
    pub sample_ms: f64,
    /// Median milliseconds of one training iteration.
    pub train_ms: f64,
    /// Every sampling time.
    pub sample_all_ms: Vec<f64>,
    /// Every training time.
    pub train_all_ms: Vec<f64>,
    /// Forward FLOPs of G for the batch.
    pub sample_gflop: f64,
    /// Estimated FLOPs of one training iteration (3× forward for fwd+bwd; D runs on real, fake and fake again).
    pub train_gflop: f64,
    /// Achieved GFLOP/s while sampling.
    pub sample_gflops: f64,
    /// Achieved GFLOP/s while training.
    pub train_gflops: f64,
    /// Most heap bytes live at once while sampling, in MB (10⁶ bytes), when the binary
    /// counts allocations ([`crate::mem::Counting`]).
    pub sample_peak_heap_mb: Option<f64>,
    /// Most heap bytes live at once during the training iterations, in MB.
    pub train_peak_heap_mb: Option<f64>,
    /// Peak resident set size of the process so far, in MB (Linux).
    pub peak_rss_mb: Option<f64>,
    /// Bytes copied from the host to the device per timed training iteration (the batch;
    /// see [`crate::mem::Transfers`]).
    pub train_bytes_to_device: u64,
    /// Bytes copied from the device to the host per timed training iteration (the logged
    /// scalars).
    pub train_bytes_to_host: u64,
    /// With `--profile`: milliseconds per training iteration by net and node kind, from
    /// as many further iterations as were timed (slowest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<profile::Row>>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Runs `f` for the rounds `rounds` of `total` (each reported as `label i/total`) and
/// returns each round's milliseconds.
fn timed(
    label: &str,
    (rounds, total): (std::ops::Range<usize>, usize),
    progress: &mut impl FnMut(&str),
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(rounds.len());
    for i in rounds {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        progress(&format!("{label} {}/{total}", i + 1));
    }
    Ok(ms)
}

/// Random images in [−1, 1) and embeddings for a batch of `batch`.
fn random_batch(st: &StageSetup, batch: usize, rng: &mut StdRng) -> Batch {
    let s = st.image_size;
    Batch {
        real: (0..batch * 3 * s * s).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        emb: (0..batch * st.embed_dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        tags: vec![Vec::new(); batch],
    }
}

/// Per net and node kind (or node), the milliseconds of `iters` further training
/// iterations, averaged; separate from the timed ones, which the markers would slow.
fn profiled<D: KernelDevice>(
    (flow, st): (&Flow, &StageSetup),
    (store, opt): (&mut ParamStore<D>, &mut DeviceOptimizers<D>),
    (data, rng): (&Batch, &mut StdRng),
    (by, iters): (profile::GroupBy, usize),
    progress: &mut impl FnMut(&str),
) -> Result<Vec<profile::Row>> {
    profile::start(by);
    timed("profile", (0..iters, iters), progress, || {
        game::iteration(flow, st, (&mut *store, &mut *opt), game::Step::on(data), &mut *rng).map(|_| ())
    })?;
    let mut rows = profile::finish();
    for row in &mut rows {
        row.forward_ms /= iters as f64;
        row.backward_ms /= iters as f64;
        row.calls /= iters as u64;
    }
    Ok(rows)
}

/// Benchmark `st` on `dev` with random weights and data.
pub fn bench<D: KernelDevice>(
    dev: D,
    flow: &Flow,
    st: &StageSetup,
    batch: usize,
    (warmup, iters, with_profile): (usize, usize, Option<profile::GroupBy>),
    mut progress: impl FnMut(&str),
) -> Result<BenchResult> {
    let mut store = ParamStore::new(dev);
    let (g, d) = (&flow.nets[st.g], &flow.nets[st.d]);
    store.init_net(g, 1)?;
    store.init_net(d, 2)?;
    let mut rng = StdRng::seed_from_u64(3);
    let data = random_batch(st, batch, &mut rng);
    let z: Vec<f32> = st.noise.sample(&mut rng, batch, st.z_dim)?;
    let mb = |b: Option<usize>| b.map(|b| b as f64 / 1e6);
    let total = warmup + iters;
    mem::reset_peak();
    let mut sample = || game::generate(flow, st.index, &mut store, (&data.emb, &z), false, 0).map(|_| ());
    timed("sample", (0..warmup, total), &mut progress, &mut sample)?;
    let sample_all = timed("sample", (warmup..total, total), &mut progress, &mut sample)?;
    let sample_peak_heap_mb = mb(mem::peak());
    let mut opt = DeviceOptimizers::<D>::default();
    mem::reset_peak();
    let mut train = || game::iteration(flow, st, (&mut store, &mut opt), game::Step::on(&data), &mut rng).map(|_| ());
    timed("train", (0..warmup, total), &mut progress, &mut train)?;
    let before = transferred();
    let train_all = timed("train", (warmup..total, total), &mut progress, &mut train)?;
    let train_peak_heap_mb = mb(mem::peak());
    let copied = (before, transferred());
    let per_iter = |f: fn(&Transfers) -> u64| (f(&copied.1) - f(&copied.0)) / iters.max(1) as u64;
    let rows = match with_profile {
        Some(by) => Some(profiled((flow, st), (&mut store, &mut opt), (&data, &mut rng), (by, iters), &mut progress)?),
        None => None,
    };
    let gf = estimate::stats(g).flops as f64 * batch as f64 / 1e9;
    let df = estimate::stats(d).flops as f64 * batch as f64 / 1e9;
    let train_gflop = 3.0 * gf + 3.0 * 3.0 * df;
    let (sample_ms, train_ms) = (median(&sample_all), median(&train_all));
    Ok(BenchResult {
        stage: st.name.clone(),
        batch,
        sample_ms,
        train_ms,
        sample_all_ms: sample_all,
        train_all_ms: train_all,
        sample_gflop: gf,
        train_gflop,
        sample_gflops: gf / (sample_ms / 1e3),
        train_gflops: train_gflop / (train_ms / 1e3),
        sample_peak_heap_mb,
        train_peak_heap_mb,
        peak_rss_mb: mb(mem::peak_rss()),
        train_bytes_to_device: per_iter(|t| t.to_device),
        train_bytes_to_host: per_iter(|t| t.to_host),
        profile: rows,
    })
}
