//! `stackflow metrics` on two folders, with the reduced FID Inception of the reference
//! fixtures (`--inception-set div=16 …`): the JSON equals the library's computation,
//! identical folders are at distance zero, and bad inputs are diagnostics.

use std::path::{Path, PathBuf};

use stackflow_core::data::grid::write_png;
use stackflow_core::metrics::{self, ExtractorOptions};
use stackflow_core::registry::Registry;

use crate::support::{fresh, root, stackflow};

const TINY: [&str; 6] = ["--inception-set", "div=16", "--inception-set", "classes=10", "--inception-set", "resize=75"];

fn weights() -> PathBuf {
    root().join("tests/fixtures/inception/tiny.weights.safetensors")
}

/// `n` smooth 16×16 pictures in `dir`: colour gradients whose slopes depend on `seed`.
fn pictures(dir: &Path, n: usize, seed: f32) {
    std::fs::create_dir_all(dir).unwrap();
    let s = 16;
    for i in 0..n {
        let k = seed + i as f32 * 0.37;
        let img: Vec<f32> = (0..3 * s * s)
            .map(|j| {
                let (c, y, x) = (j / (s * s), (j / s) % s, j % s);
                ((k * (c + 1) as f32 + 0.3 * x as f32 * k.cos() + 0.2 * y as f32 * k.sin()).sin()).clamp(-1.0, 1.0)
            })
            .collect();
        write_png(&dir.join(format!("{i:03}.png")), &img, s).unwrap();
    }
}

fn metrics_json(a: &Path, b: &Path, extra: &[&str]) -> serde_json::Value {
    let w = weights();
    let mut args =
        vec!["metrics", a.to_str().unwrap(), b.to_str().unwrap(), "--inception", w.to_str().unwrap(), "--json"];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    let out = stackflow(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn metrics_of_two_folders_match_the_library() {
    let work = fresh("metrics");
    let (a, b) = (work.join("real"), work.join("generated"));
    pictures(&a, 12, 0.0);
    pictures(&b, 10, 5.0);
    let j = metrics_json(&a, &b, &["--splits", "2", "--inception-batch", "5"]);

    let opts = ExtractorOptions {
        weights: weights(),
        graph: None,
        overrides: ["div=16", "classes=10", "resize=75"].map(String::from).to_vec(),
        batch: 4,
    };
    let reg = Registry::with_builtins();
    let feats = |d: &Path| {
        metrics::folder_features(
            stackflow_core::exec::cpu(0),
            &reg,
            &metrics::image_files(d).unwrap(),
            &opts,
            &mut |_| {},
        )
        .unwrap()
    };
    let want = metrics::report(&feats(&a), &feats(&b), 2).unwrap();
    assert_eq!((j["real"].as_u64(), j["generated"].as_u64()), (Some(12), Some(10)));
    for (key, value) in [("fid", want.fid), ("kid", want.kid), ("is", want.is), ("precision", want.precision)] {
        let got = j[key].as_f64().unwrap();
        assert!((got - value).abs() <= 1e-6 * (1.0 + value.abs()), "{key}: {got} vs {value}");
    }
    assert!(want.fid > 0.01 && want.is >= 1.0, "different folders: {want:?}");

    // A folder against itself: distance zero, every sample on the other's manifold.
    let same = metrics_json(&a, &a, &[]);
    assert!(same["fid"].as_f64().unwrap().abs() < 1e-6, "{same}");
    assert_eq!((same["precision"].as_f64(), same["recall"].as_f64()), (Some(1.0), Some(1.0)));

    // The text report names each figure.
    let w = weights();
    let mut args = vec!["metrics", a.to_str().unwrap(), b.to_str().unwrap(), "--inception", w.to_str().unwrap()];
    args.extend_from_slice(&TINY);
    let text = stackflow(&args);
    for word in ["FID", "KID", "IS", "precision", "recall", "12 images"] {
        assert!(text.stdout.contains(word), "{word} in {}", text.stdout);
    }
}

#[test]
fn metrics_inputs_are_checked() {
    let work = fresh("metrics-bad");
    let (a, empty, mixed) = (work.join("a"), work.join("empty"), work.join("mixed"));
    pictures(&a, 4, 0.0);
    std::fs::create_dir_all(&empty).unwrap();
    pictures(&mixed, 3, 1.0);
    write_png(&mixed.join("zz.png"), &vec![0.0; 3 * 8 * 8], 8).unwrap();
    let (a_s, e_s, m_s, w) = (a.to_str().unwrap(), empty.to_str().unwrap(), mixed.to_str().unwrap(), weights());
    let w_s = w.to_str().unwrap();

    let out = stackflow(&["metrics", a_s, a_s]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cli::no_inception"), "{}", out.stderr);

    let out = stackflow(&["metrics", a_s, e_s, "--inception", w_s]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("metrics::no_images") && out.stderr.contains("empty"), "{}", out.stderr);

    let mut args = vec!["metrics", a_s, m_s, "--inception", w_s];
    args.extend_from_slice(&TINY);
    let out = stackflow(&args);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("metrics::image_size") && out.stderr.contains("zz.png"), "{}", out.stderr);
    assert!(out.stderr.contains("is 8×8: the images"), "{}", out.stderr);

    // Full-width graph against the reduced weights: the weights' mismatch, not a crash.
    let out = stackflow(&["metrics", a_s, a_s, "--inception", w_s]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("weights::mismatch"), "{}", out.stderr);
}

/// A float32 `.npy` file of `shape`.
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 16 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// A 16-image folder dataset with embeddings from some other encoder, and a trained run
/// of `tests/graphs/tiny_folder.ron` on it: (dataset root, graph, run).
fn folder_run(work: &Path) -> (PathBuf, PathBuf, PathBuf) {
    folder_run_with(work, "", &[])
}

/// [`folder_run`] with `stage` added to the stage's fields and `args` to `run`.
fn folder_run_with(work: &Path, stage: &str, args: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let data = work.join("data");
    pictures(&data.join("images"), 16, 2.0);
    std::fs::create_dir_all(data.join("train/captions")).unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("{i:03}")).collect();
    std::fs::write(data.join("train/filenames.txt"), names.join("\n")).unwrap();
    for (i, n) in names.iter().enumerate() {
        let colour = ["red", "blue", "green", "yellow"][i % 4];
        std::fs::write(data.join(format!("train/captions/{n}.txt")), format!("a {colour} wave\nwaves in {colour}\n"))
            .unwrap();
    }
    let emb: Vec<f32> = (0..16 * 2 * 32).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
    write_npy(&data.join("train/embeddings.npy"), &[16, 2, 32], &emb);
    let text = std::fs::read_to_string(root().join("tests/graphs/tiny_folder.ron")).unwrap();
    let graph = work.join("folder.ron");
    let text = text.replace("no-such-dataset", data.to_str().unwrap());
    std::fs::write(&graph, text.replace("epochs: 2, batch: 8,", &format!("epochs: 2, batch: 8, {stage}"))).unwrap();
    let run = work.join("run");
    let mut all = vec!["run", graph.to_str().unwrap(), "--quiet", "--out", run.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = stackflow(&all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (data, graph, run)
}

#[test]
fn typed_captions_need_the_encoder_the_run_trained_with() {
    let work = fresh("encode");
    let (data, graph, run) = folder_run(&work);
    let captions = work.join("captions.txt");
    std::fs::write(&captions, "a red wave\n").unwrap();
    let (c, out_dir) = (captions.to_str().unwrap(), work.join("out"));
    let sample = |run: &Path| {
        stackflow(&["sample", run.to_str().unwrap(), "--captions", c, "--out-dir", out_dir.to_str().unwrap()])
    };
    let out = sample(&run);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("sample::encoder") && out.stderr.contains("stackflow encode"), "{}", out.stderr);

    // Re-encoded with `stackflow encode` and retrained: typed captions are welcome.
    let npy = data.join("train/embeddings.npy");
    let out = stackflow(&["encode", data.to_str().unwrap(), "--out", npy.to_str().unwrap(), "--dim", "32"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("[16, 2, 32]") && data.join("train/embeddings.encoder.json").is_file(),
        "{}",
        out.stdout
    );
    let run2 = work.join("run2");
    let out = stackflow(&["run", graph.to_str().unwrap(), "--quiet", "--out", run2.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = sample(&run2);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out_dir.join("grid.png").is_file());

    // A captions file encodes to [N, 1, D]; an empty one is a diagnostic.
    let one = work.join("one.npy");
    let out = stackflow(&["encode", c, "-o", one.to_str().unwrap(), "--dim", "8"]);
    assert!(out.code == 0 && out.stdout.contains("[1, 1, 8]"), "{}{}", out.stdout, out.stderr);
    std::fs::write(&captions, "\n").unwrap();
    let out = stackflow(&["encode", c, "-o", one.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("encode::empty"), "{}", out.stderr);
}

#[test]
fn a_run_trained_on_bert_embeddings_samples_from_typed_captions() {
    let work = fresh("encode-bert");
    let (data, graph, _) = folder_run(&work);
    // The tiny BERT of the fixtures (hidden size 32: the graph's embed_dim), moved later.
    let model = work.join("tiny-bert");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(root().join("tests/fixtures/bert").join(f), model.join(f)).unwrap();
    }
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let npy = data.join("train/embeddings.npy");
    let out = stackflow(&["encode", d, "--encoder", "bert", "--weights", m, "--out", npy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("[16, 2, 32]") && out.stdout.contains("stackflow.bert"), "{}", out.stdout);
    let record = std::fs::read_to_string(data.join("train/embeddings.encoder.json")).unwrap();
    assert!(record.contains("stackflow.bert") && record.contains("sha256"), "{record}");

    let run = work.join("run-bert");
    let out = stackflow(&["run", graph.to_str().unwrap(), "--quiet", "--out", run.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let captions = work.join("captions.txt");
    std::fs::write(&captions, "a red wave\nwaves in blue\n").unwrap();
    let out_dir = work.join("out");
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", run.to_str().unwrap(), "--captions", captions.to_str().unwrap()];
        args.extend_from_slice(&["--out-dir", out_dir.to_str().unwrap(), "--per-caption", "2"]);
        args.extend_from_slice(extra);
        stackflow(&args)
    };
    let out = sample(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out_dir.join("grid.png").is_file() && out_dir.join("1-1.png").is_file());

    // The model folder moved: named again with --encoder-weights; other weights are refused.
    let moved = work.join("moved-bert");
    std::fs::rename(&model, &moved).unwrap();
    let out = sample(&[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("--encoder-weights"), "{}", out.stderr);
    let out = sample(&["--encoder-weights", moved.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = moved.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text + " ").unwrap();
    let out = sample(&["--encoder-weights", moved.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("encode::weights_changed"), "{}", out.stderr);

    // Asked wrongly: a diagnostic, not a panic.
    let c = captions.to_str().unwrap();
    let one = work.join("one.npy");
    let out = stackflow(&["encode", c, "--encoder", "bert", "-o", one.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("encode::no_weights"), "{}", out.stderr);
    let out = stackflow(&["encode", c, "--encoder", "bret", "-o", one.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("stackflow.bert"), "{}", out.stderr);
    let out = stackflow(&["encode", c, "--encoder", "bert", "--weights", d, "-o", one.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("config.json"), "{}", out.stderr);
}

#[test]
fn eval_of_a_folder_run_reports_fid_kid_and_is() {
    let work = fresh("eval-folder");
    let (data, _, run) = folder_run(&work);

    let out = stackflow(&["eval", run.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("eval::dataset") && out.stderr.contains("--inception"), "{}", out.stderr);

    let w = weights();
    let mut args =
        vec!["eval", run.to_str().unwrap(), "--inception", w.to_str().unwrap(), "--images", "12", "--splits", "2"];
    args.extend_from_slice(&TINY);
    let text = stackflow(&args);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("12 real vs 12 generated") && text.stdout.contains("FID"), "{}", text.stdout);
    args.push("--json");
    let out = stackflow(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let m = &j["metrics"];
    for key in ["fid", "kid", "is", "precision", "recall"] {
        assert!(m[key].as_f64().is_some_and(f64::is_finite), "{key} in {j}");
    }
    assert!(m["fid"].as_f64().unwrap() > 0.0 && m["is"].as_f64().unwrap() >= 1.0, "{j}");
    assert!(j.get("model").is_none(), "no caption fidelity off synthetic shapes: {j}");

    // Real images of another split: a held-out `test` split of 6 images.
    std::fs::create_dir_all(data.join("test")).unwrap();
    std::fs::write(data.join("test/filenames.txt"), "010\n011\n012\n013\n014\n015\n").unwrap();
    let emb: Vec<f32> = (0..6 * 32).map(|i| (i * 13 % 29) as f32 / 14.0 - 1.0).collect();
    write_npy(&data.join("test/embeddings.npy"), &[6, 1, 32], &emb);
    let run_s = run.to_str().unwrap();
    let mut args = vec!["eval", run_s, "--inception", w.to_str().unwrap(), "--split", "test", "--splits", "2"];
    args.extend_from_slice(&TINY);
    let out = stackflow(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("6 real vs 6 generated"), "{}", out.stdout);
    let mut args = vec!["eval", run_s, "--inception", w.to_str().unwrap(), "--split", "nope"];
    args.extend_from_slice(&TINY);
    let out = stackflow(&args);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}

#[test]
fn periodic_fid_during_training_logs_scores_and_keeps_the_best_checkpoint() {
    let work = fresh("periodic-fid");
    let w = weights();
    let stage = "eval: Some((every: 2, metric: Fid, images: 8)),";
    let mut args = vec!["--inception", w.to_str().unwrap(), "--splits", "2"];
    args.extend_from_slice(&TINY);
    let (_, graph, run) = folder_run_with(&work, stage, &args);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let scored: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|j: &serde_json::Value| j.get("eval_fid").is_some())
        .collect();
    assert_eq!(scored.len(), 2, "iterations 2 and 4: {metrics}");
    for j in &scored {
        for k in ["eval_fid", "eval_kid", "eval_is", "eval_precision", "eval_recall"] {
            assert!(j[k].as_f64().is_some_and(f64::is_finite), "{k} in {j}");
        }
    }
    let fids: Vec<f64> = scored.iter().map(|j| j["eval_fid"].as_f64().unwrap()).collect();
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoints/best.json")).unwrap()).unwrap();
    assert_eq!(best["metric"], "eval_fid");
    assert_eq!(best["value"].as_f64().unwrap(), fids.iter().copied().fold(f64::INFINITY, f64::min), "lower is better");
    assert!(run.join("checkpoints/best.safetensors").is_file());

    // Without the weights the run does not start; caption fidelity needs synthetic shapes.
    let other = work.join("refused");
    let out = stackflow(&["run", graph.to_str().unwrap(), "--quiet", "--out", other.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("run::no_inception"), "{}", out.stderr);
    assert!(!other.exists(), "a refused run leaves no directory behind");
    let text = std::fs::read_to_string(&graph).unwrap().replace("metric: Fid", "metric: Both");
    std::fs::write(&graph, text).unwrap();
    let out = stackflow(&["check", graph.to_str().unwrap()]);
    assert!(
        out.code == 1 && out.stderr.contains("caption fidelity scores stages trained on SyntheticShapes"),
        "{}",
        out.stderr
    );
}
