//! FID/KID/IS/precision/recall against the PyTorch reference (`tests/inception/`):
//! the shipped FID Inception graph at `div=16` with the reference's random weights gives
//! its pool features and logits, and the statistics over its feature sets match
//! pytorch-fid's `calculate_frechet_distance` and the reference formulas.

use std::path::PathBuf;

use dfdx::prelude::Cpu;
use safetensors::{Dtype, SafeTensors};
use stackflow_core::metrics::{inception, stats, ExtractorOptions, Inception, Samples};
use stackflow_core::registry::Registry;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inception")
}

/// Every tensor of a fixture file as f64, by name.
fn read(name: &str) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let data: Vec<f64> = match v.dtype() {
                Dtype::F32 => {
                    v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                Dtype::F64 => v.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
                d => panic!("{n}: {d:?}"),
            };
            (n, (v.shape().to_vec(), data))
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: max |difference| {worst:e} > {tol:e}");
}

#[test]
fn inception_graph_matches_pytorch_fid_network() {
    let io = read("tiny.io.safetensors");
    let weights = read("tiny.weights.safetensors");
    let images: Vec<f32> = io["images"].1.iter().map(|&v| v as f32).collect();
    let registry = Registry::with_builtins();
    for (resize, pool, logits) in [(75, "pool", "logits"), (139, "pool_r139", "logits_r139")] {
        let opts = ExtractorOptions {
            weights: fixtures().join("tiny.weights.safetensors"),
            graph: None,
            overrides: ["div=16", "classes=10", &format!("resize={resize}")].map(String::from).to_vec(),
            batch: 3,
        };
        let mut net = Inception::open(Cpu::default(), &registry, &opts, 32).unwrap();
        let mut seen = Vec::new();
        let f = net.features(&images, &mut |n| seen.push(n)).unwrap();
        assert_eq!(seen, vec![3, 4], "progress after each batch");
        assert_eq!((f.pool.len(), f.pool.dim, f.logits.dim), (4, 128, 10));
        assert_close(&f.pool.data, &io[pool].1, 1e-4, &format!("pool features at {resize}"));
        // The graph's logits leave out fc's bias (the original Inception Score's logits).
        let bias = &weights["fc.bias"].1;
        let want: Vec<f64> = io[logits].1.iter().enumerate().map(|(i, v)| v - bias[i % 10]).collect();
        assert_close(&f.logits.data, &want, 1e-4, &format!("logits at {resize}"));
    }
}

#[test]
fn wrong_weights_are_a_diagnostic() {
    let registry = Registry::with_builtins();
    let opts = ExtractorOptions {
        weights: fixtures().join("tiny.weights.safetensors"),
        graph: None,
        overrides: vec![],
        batch: 4,
    };
    // Full widths against the div=16 file: every tensor is mis-shaped.
    let err = Inception::open(Cpu::default(), &registry, &opts, 32).err().unwrap();
    assert!(err.to_string().contains("does not fit net `inception`"), "{err}");
    assert_eq!(inception::NET, "inception");
}

#[test]
fn statistics_match_the_reference() {
    let s = read("stats.safetensors");
    let set = |n: &str| Samples::new(s[n].1.clone(), s[n].0[1]);
    let (a, b, logits) = (set("feats_a"), set("feats_b"), set("logits_b"));
    let scalar = |n: &str| s[n].1[0];
    let rel = |got: f64, want: f64| (got - want).abs() / want.abs().max(1e-12);
    assert!(rel(stats::fid(&a, &b).unwrap(), scalar("fid")) < 1e-6, "fid");
    assert!(rel(stats::kid(&a, &b).unwrap(), scalar("kid")) < 1e-9, "kid");
    let (mean, std) = stats::inception_score(&logits, 5).unwrap();
    assert!(rel(mean, scalar("is_mean")) < 1e-9 && rel(std, scalar("is_std")) < 1e-9, "is {mean} ± {std}");
    assert!(rel(stats::inception_score(&logits, 1).unwrap().0, scalar("is_1")) < 1e-9, "is_1");
    let (p, r) = stats::precision_recall(&a, &b, 3).unwrap();
    assert_eq!((p, r), (scalar("precision"), scalar("recall")));
}
