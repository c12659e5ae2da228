//! Timing of a stage on random data: sampling (G forward, eval) and one full training
//! iteration (G forward, D step, G step, Adam). Medians after warm-up; peak memory of each
//! phase when the binary counts heap allocations.

use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::game::{self, Batch, Optimizers, StageSetup};
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
    /// Bytes copied from the host to the device per timed training iteration (the batch,
    /// and on CUDA each updated parameter; see [`crate::mem::Transfers`]).
    pub train_bytes_to_device: u64,
    /// Bytes copied from the device to the host per timed training iteration (logged
    /// scalars, and on CUDA every parameter and its gradient, which its Adam kernel reads
    /// back).
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
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let s = st.image_size;
    let data = Batch {
        real: (0..batch * 3 * s * s).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        emb: (0..batch * st.embed_dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        tags: vec![Vec::new(); batch],
    };
    let z: Vec<f32> = st.noise.sample(&mut rng, batch, st.z_dim)?;
    let mb = |b: Option<usize>| b.map(|b| b as f64 / 1e6);
    let mut sample_all = Vec::new();
    mem::reset_peak();
    for i in 0..warmup + iters {
        let t = Instant::now();
        game::generate(flow, st.index, &mut store, (&data.emb, &z), false, 0)?;
        if i >= warmup {
            sample_all.push(t.elapsed().as_secs_f64() * 1e3);
        }
        progress(&format!("sample {}/{}", i + 1, warmup + iters));
    }
    let sample_peak_heap_mb = mb(mem::peak());
    let mut opt = Optimizers::default();
    let mut train_all = Vec::new();
    mem::reset_peak();
    let mut copied = (transferred(), transferred());
    for i in 0..warmup + iters {
        if i == warmup {
            copied.0 = transferred();
        }
        let t = Instant::now();
        game::iteration(flow, st, (&mut store, &mut opt), game::Step::on(&data), &mut rng)?;
        if i >= warmup {
            train_all.push(t.elapsed().as_secs_f64() * 1e3);
        }
        progress(&format!("train {}/{}", i + 1, warmup + iters));
    }
    let train_peak_heap_mb = mb(mem::peak());
    copied.1 = transferred();
    let per_iter = |f: fn(&Transfers) -> u64| (f(&copied.1) - f(&copied.0)) / iters.max(1) as u64;
    let mut rows = None;
    if let Some(by) = with_profile {
        // Separate iterations: the markers cost a little, and the timings above stay clean.
        profile::start(by);
        for i in 0..iters {
            game::iteration(flow, st, (&mut store, &mut opt), game::Step::on(&data), &mut rng)?;
            progress(&format!("profile {}/{iters}", i + 1));
        }
        let mut r = profile::finish();
        for row in &mut r {
            row.forward_ms /= iters as f64;
            row.backward_ms /= iters as f64;
            row.calls /= iters as u64;
        }
        rows = Some(r);
    }
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
