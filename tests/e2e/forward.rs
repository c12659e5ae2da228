//! `stackflow forward` reproduces the reference fixtures (tests/fixtures) for all four
//! nets, loading StackGAN-Pytorch weights through the graph's weight map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use stackflow_core::exec::{self, weights, Val};

use stackflow_test_util::hash_uniform;

use crate::support::{fresh, root, stackflow, Scratch};

const FIXTURE_SET: [&str; 12] = [
    "--set",
    "embed_dim=64",
    "--set",
    "z_dim=16",
    "--set",
    "cond_dim=8",
    "--set",
    "gf_dim=8",
    "--set",
    "df_dim=4",
    "--set",
    "r_num=2",
];

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Subsampling strides from a fixture file's metadata.
fn strides(file: &str) -> HashMap<String, usize> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut out = HashMap::new();
    if let Some(m) = meta.metadata().as_ref().and_then(|m| m.get("fixture")) {
        let j: serde_json::Value = serde_json::from_str(m).unwrap();
        for (k, v) in j["subsampled"].as_object().into_iter().flatten() {
            out.insert(k.clone(), v["stride"].as_u64().unwrap() as usize);
        }
    }
    out
}

/// A test's scratch folder, created.
fn scratch(name: &str) -> Scratch {
    let dir = fresh(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `forward` in `mode` and compare every output with `<tag>.<output>` of the io file.
fn forward_matches(work: &Path, net: &str, prefix: &str, inputs: &Path, mode: &str, tag: &str, tol: f64) {
    let out = work.join(format!("{prefix}.{mode}.out.safetensors"));
    let weights = fixture(&format!("{prefix}.weights.safetensors"));
    let mut args = vec![
        "forward",
        "graphs/stackgan256.ron",
        "--net",
        net,
        "--weights",
        weights.to_str().unwrap(),
        "--weights-format",
        "stackgan-pytorch",
        "--inputs",
        inputs.to_str().unwrap(),
        "--mode",
        mode,
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&FIXTURE_SET);
    let run = stackflow(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("sampled"), "all noise comes from the inputs: {}", run.stderr);
    let io_file = format!("{prefix}.io.safetensors");
    let want = weights::read_all(&fixture(&io_file)).unwrap();
    let strides = strides(&io_file);
    let got = weights::read_all(&out).unwrap();
    assert!(!got.is_empty());
    for (name, (_, data)) in got {
        let key = format!("{tag}.{name}");
        let Some((_, w)) = want.get(&key) else { continue };
        let s = strides.get(&key).copied().unwrap_or(1);
        let g: Vec<f32> = data.iter().step_by(s).copied().collect();
        assert_eq!(g.len(), w.len(), "{key}");
        let scale = w.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
        let diff = g.iter().zip(w).fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        assert!(diff <= tol * scale.max(1e-12), "{net} {key}: max_rel {:.2e}", diff / scale);
    }
}

#[test]
fn forward_reproduces_generator_fixtures() {
    // The io files carry `in.emb`, `in.z` and `in.eps.<CA module>`; forward reads them as is.
    let work = scratch("forward-g");
    for (net, prefix, tol) in [("g1", "stage1_g", 2e-4), ("g2", "stage2_g", 5e-3)] {
        let inputs = fixture(&format!("{prefix}.io.safetensors"));
        forward_matches(&work, net, prefix, &inputs, "eval", "eval_init", tol);
        forward_matches(&work, net, prefix, &inputs, "train", "train", tol);
    }
}

#[test]
fn forward_reproduces_discriminator_fixtures() {
    let work = scratch("forward-d");
    for (net, prefix, tag, size, tol) in [("d1", "stage1_d", 7004, 64, 2e-4), ("d2", "stage2_d", 7014, 256, 5e-3)] {
        let io = weights::read_all(&fixture(&format!("{prefix}.io.safetensors"))).unwrap();
        let dev = exec::cpu(0);
        let img = hash_uniform(3 * 3 * size * size, tag, -23);
        let (cond_shape, cond) = io["in.cond"].clone();
        let tensors = vec![
            ("img".to_string(), Val::from_host(&dev, img, &[3, 3, size, size]).unwrap()),
            ("cond".to_string(), Val::from_host(&dev, cond, &cond_shape).unwrap()),
        ];
        let inputs = work.join(format!("{prefix}.inputs.safetensors"));
        weights::save(&inputs, &tensors, None).unwrap();
        forward_matches(&work, net, prefix, &inputs, "eval", "eval_init", tol);
        forward_matches(&work, net, prefix, &inputs, "train", "train", tol);
    }
}

#[test]
fn forward_input_errors_are_diagnostics() {
    let weights = fixture("stage1_g.weights.safetensors");
    let d_inputs = fixture("stage1_d.weights.safetensors");
    let work = scratch("forward-errors");
    let out = work.join("bad.out.safetensors");
    let mut args = vec![
        "forward",
        "graphs/stackgan256.ron",
        "--net",
        "g1",
        "--weights",
        weights.to_str().unwrap(),
        "--inputs",
        d_inputs.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&FIXTURE_SET);
    // Native naming on a reference file: every tensor is listed as missing or unexpected.
    let run = stackflow(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("missing") && run.stderr.contains("unexpected"), "{}", run.stderr);
    assert!(run.stderr.contains("--weights-format"), "{}", run.stderr);
    // Mapped naming, but the inputs file lacks the net's inputs.
    args.extend_from_slice(&["--weights-format", "stackgan-pytorch"]);
    let run = stackflow(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("no tensor `emb`"), "{}", run.stderr);
    // Wrong widths: the same weights do not fit the default graph.
    let run = stackflow(&[
        "forward",
        "graphs/stackgan256.ron",
        "--net",
        "g1",
        "--weights",
        weights.to_str().unwrap(),
        "--weights-format",
        "stackgan-pytorch",
        "--inputs",
        d_inputs.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("mis-shaped"), "{}", run.stderr);
}
