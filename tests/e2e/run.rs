//! `stackflow run`, `sample`, `interpolate` and `eval` on a toy-sized StackGAN: training
//! writes a run directory, resuming equals an uninterrupted run, damaged checkpoints are
//! detected and skipped, NaN stops the run without saving, bad data is a diagnostic.

use std::path::Path;

use stackflow_core::exec::weights;

use crate::support::{ckpts, fresh, stackflow};

fn run(args: &[&str]) -> crate::support::Output {
    let mut all = vec!["run", "tests/graphs/tiny.ron", "--quiet"];
    all.extend_from_slice(args);
    stackflow(&all)
}

#[test]
fn train_resume_sample_eval() {
    let a = fresh("a");
    let a_s = a.to_str().unwrap();
    let out = run(&["--out", a_s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for f in [
        "graph.ron",
        "run.json",
        "metrics.jsonl",
        "losses.png",
        "samples/stage1-epoch0001.png",
        "samples/stage1-epoch0002.png",
        "samples/stage1-real.png",
    ] {
        assert!(a.join(f).exists(), "run directory lacks {f}");
    }
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for k in ["D", "D_cond_real", "D_cond_wrong", "D_cond_fake", "G", "KL", "G_total", "lr_g", "time_s"] {
        assert!(last.get(k).is_some(), "metrics lack {k}: {last}");
    }
    assert_eq!(last["step"], 16);

    // Interrupted after 5 iterations, then resumed: the same final state, bit for bit.
    let b = fresh("b");
    let b_s = b.to_str().unwrap();
    let out = run(&["--out", b_s, "--max-steps", "5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("stopped after 5"), "{}", out.stdout);
    let out = run(&["--resume", b_s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (fa, fb) = (ckpts(&a).pop().unwrap(), ckpts(&b).pop().unwrap());
    assert_eq!(fa.file_name(), fb.file_name());
    let (ta, tb) = (weights::read_all(&fa).unwrap(), weights::read_all(&fb).unwrap());
    assert_eq!(ta.len(), tb.len());
    for (name, (_, va)) in &ta {
        assert!(va == &tb[name].1, "{name} differs between the resumed and the uninterrupted run");
    }

    // Other --set values are refused, with both sets shown.
    let out = run(&["--resume", b_s, "--set", "gf_dim=8"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::set_changed") && out.stderr.contains("not --set gf_dim=8"), "{}", out.stderr);

    // Sampling and interpolation.
    let caps = a.join("captions.txt");
    std::fs::write(&caps, "a large red circle on a blue background\na small green square on a white background\n")
        .unwrap();
    let samples = a.join("samples-out");
    let out = stackflow(&[
        "sample",
        a_s,
        "--captions",
        caps.to_str().unwrap(),
        "--per-caption",
        "3",
        "--out-dir",
        samples.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for f in ["0-0.png", "0-2.png", "1-2.png", "grid.png"] {
        let img = image_size(&samples.join(f));
        assert!(img.0 >= 16 && img.1 >= 16, "{f}: {img:?}");
    }
    // The noise is the run's sampler unless named: the same sampler named gives the same
    // images, a narrower one others; the flags are checked.
    let sample_with = |dir: &str, noise: &[&str]| {
        let out_dir = a.join(dir);
        let mut args = vec!["sample", a_s, "--captions", caps.to_str().unwrap(), "--per-caption", "3"];
        args.extend_from_slice(&["--out-dir", out_dir.to_str().unwrap()]);
        args.extend_from_slice(noise);
        let out = stackflow(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        std::fs::read(out_dir.join("grid.png")).unwrap()
    };
    let default = std::fs::read(samples.join("grid.png")).unwrap();
    assert!(sample_with("named", &["--noise", "core.normal"]) == default);
    assert!(sample_with("narrow", &["--noise", "core.normal", "--noise-attr", "std=0.25"]) != default);
    let bad = |noise: &[&str], code: &str| {
        let mut args = vec!["sample", a_s, "--captions", caps.to_str().unwrap(), "--out-dir", "unused"];
        args.extend_from_slice(noise);
        let out = stackflow(&args);
        assert!(out.code == 1 && out.stderr.contains(code), "{noise:?}: {}", out.stderr);
    };
    bad(&["--noise-attr", "std=0.5"], "cli::bad_noise");
    bad(&["--noise", "core.normal", "--noise-attr", "sd=0.5"], "graph::unknown_attribute");
    bad(&["--noise", "stackgan.batch_shift"], "cli::bad_noise");
    // Every command that computes takes --device; a CPU-only build says so for CUDA.
    if !cfg!(feature = "cuda") {
        for cmd in ["eval", "interpolate", "sample"] {
            let mut args = vec![cmd, a_s, "--device", "cuda"];
            match cmd {
                "interpolate" => args.extend_from_slice(&["--from", "a", "--to", "b", "--out", "unused.png"]),
                "sample" => args.extend_from_slice(&["--captions", caps.to_str().unwrap(), "--out-dir", "unused"]),
                _ => {}
            }
            let out = stackflow(&args);
            assert!(out.code == 1 && out.stderr.contains("cli::no_cuda"), "{cmd}: {}", out.stderr);
        }
    }
    let strip = a.join("strip.png");
    let out = stackflow(&[
        "interpolate",
        a_s,
        "--from",
        "a red circle on a blue background",
        "--to",
        "a blue circle on a red background",
        "--steps",
        "5",
        "--out",
        strip.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(image_size(&strip).0 >= 5 * 16);

    // Evaluation reports fidelity for the model and the real-image ceiling.
    let out = stackflow(&["eval", a_s, "--captions", "8", "--per-caption", "2", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(j["real_images"]["background_fidelity"], 1.0, "{j}");
    assert!(j["model"]["diversity"].as_f64().unwrap() >= 0.0);

    // A damaged newest checkpoint is detected; the run falls back to the previous one.
    let newest = ckpts(&a).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    let out = stackflow(&["eval", newest.to_str().unwrap(), "--captions", "2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("checkpoint::corrupt"), "{}", out.stderr);
    // A save killed mid-write leaves only a temp file beside the good checkpoints.
    std::fs::write(a.join("checkpoints/ckpt-s0-000000024.tmp4242"), b"partial").unwrap();
    let out = stackflow(&["eval", a_s, "--captions", "2", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("000000008"), "falls back to the epoch-1 checkpoint: {}", out.stdout);
}

fn image_size(p: &Path) -> (u32, u32) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{}", p.display());
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn nan_stops_the_run_without_a_checkpoint() {
    let dir = fresh("nan");
    let out = stackflow(&["run", "tests/graphs/tiny_nan.ron", "--quiet", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("train::not_finite"), "{}", out.stderr);
    assert!(ckpts(&dir).is_empty(), "no poisoned checkpoint");
}

#[test]
fn bad_data_and_locked_runs_are_diagnostics() {
    let out =
        stackflow(&["run", "tests/graphs/tiny_folder.ron", "--quiet", "--out", fresh("folder").to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-dataset"), "{}", out.stderr);

    let dir = fresh("locked");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let out = run(&["--out", dir.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("another stackflow run"), "{}", out.stderr);
}

#[test]
fn eval_scores_every_stage_side_by_side_and_sample_picks_a_stage() {
    let dir = fresh("two-stage");
    let d = dir.to_str().unwrap();
    let out = stackflow(&["run", "tests/graphs/tiny2.ron", "--quiet", "--out", d]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(ckpts(&dir).pop().unwrap().to_string_lossy().contains("ckpt-s2-"), "stages count from 1");

    let out = stackflow(&["eval", d, "--captions", "4", "--per-caption", "2", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let stages = j["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2, "{j}");
    assert_eq!((stages[0]["stage"].as_u64(), stages[0]["side"].as_u64()), (Some(1), Some(16)));
    assert_eq!((stages[1]["stage"].as_u64(), stages[1]["side"].as_u64()), (Some(2), Some(32)));
    assert_eq!(j["stage"], 2, "the top-level scores are the final stage's");
    // A later stage below an earlier one is said in words, one sentence per measure.
    let worse = |m: &str| stages[1]["model"][m].as_f64() < stages[0]["model"][m].as_f64();
    let expected = ["background_fidelity", "object_fidelity", "both_fidelity"].iter().filter(|m| worse(m)).count();
    assert_eq!(j["below_earlier_stage"].as_array().unwrap().len(), expected, "{j}");

    let out = stackflow(&["eval", d, "--captions", "4", "--per-caption", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("stage 1 (16²)") && out.stdout.contains("stage 2 (32²)"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("warning: stage 2 scores below stage 1").count(), expected, "{}", out.stdout);

    let caps = dir.join("captions.txt");
    std::fs::write(&caps, "a large red circle on a blue background\n").unwrap();
    for (stage, side) in [(None, 32), (Some("1"), 16)] {
        let out_dir = dir.join(format!("samples-{side}"));
        let mut args = vec!["sample", d, "--captions", caps.to_str().unwrap(), "--out-dir", out_dir.to_str().unwrap()];
        if let Some(s) = stage {
            args.extend(["--stage", s]);
        }
        let out = stackflow(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(image_size(&out_dir.join("0-0.png")), (side, side));
    }
}

#[test]
fn set_reaches_recipe_fields_and_resume_keeps_them() {
    // 64 samples at batch 8: 2 epochs are 16 iterations; `--set stage1.epochs=3` makes 24.
    let d = fresh("set-recipe");
    let d_s = d.to_str().unwrap();
    let out = run(&["--out", d_s, "--set", "stage1.epochs=3", "--set", "stage1.lr=1e-4", "--max-steps", "20"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let head = std::fs::read_to_string(d.join("graph.ron")).unwrap();
    assert!(head.starts_with("// --set stage1.epochs=3"), "graph.ron records the flags: {head:.80}");
    let out = run(&["--resume", d_s, "--set", "stage1.epochs=4"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::set_changed"), "{}", out.stderr);
    assert!(out.stderr.contains("--set stage1.epochs=3 --set stage1.lr=1e-4, not"), "{}", out.stderr);
    assert!(out.stderr.contains("stage1.epochs=4"), "{}", out.stderr);
    let out = run(&["--resume", d_s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let metrics = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 24, "three epochs of 8 iterations");
    assert_eq!(last["lr_g"], 1e-4);

    // Mistakes are diagnostics that point into the flag, or into the graph for what the
    // value then breaks.
    let out = stackflow(&["check", "tests/graphs/tiny.ron", "--set", "stage1.epoch=3"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cli::unknown_field") && out.stderr.contains("did you mean `epochs`?"),
        "{}",
        out.stderr
    );
    let out = stackflow(&["check", "tests/graphs/tiny.ron", "--set", "stage2.epochs=3"]);
    assert!(out.code == 1 && out.stderr.contains("cli::unknown_stage"), "{}", out.stderr);
    let out = stackflow(&["check", "tests/graphs/tiny.ron", "--set", "stage1.discriminator=d9"]);
    assert!(out.code == 1 && out.stderr.contains("graph::unknown_net"), "{}", out.stderr);
}

#[test]
fn ema_ends_the_stage_as_the_average_keeps_the_trained_weights_and_resumes_exactly() {
    let a = fresh("ema-a");
    let a_s = a.to_str().unwrap();
    let out = run(&["--out", a_s, "--set", "stage1.ema=0.5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = ckpts(&a);
    let ta = weights::read_all(all.last().unwrap()).unwrap();
    // Before the stage ends, a checkpoint holds the running average beside the weights.
    let mid = weights::read_all(&all[all.len() - 2]).unwrap();
    let averaged: Vec<String> =
        mid.keys().filter_map(|n| n.strip_prefix("ema.g.")).map(|p| format!("param.{p}")).collect();
    assert!(averaged.iter().any(|n| n.starts_with("param.g1.")), "the checkpoint keeps G's average");
    assert!(!averaged.iter().any(|n| n.starts_with("param.d1.")), "only G is averaged");
    // The finished stage's G is the average; the weights it replaced are kept.
    assert!(!ta.keys().any(|n| n.starts_with("ema.g.")), "the finished stage's average became G");
    let trained: Vec<&String> = ta.keys().filter(|n| n.starts_with("ema.trained.")).collect();
    assert_eq!(trained.len(), averaged.len(), "every averaged parameter keeps its trained weights");
    assert!(trained.iter().any(|n| ta[*n].1 != ta[&format!("param.{}", &n["ema.trained.".len()..])].1));

    // `sample` uses the average unless told otherwise; `--no-ema` is refused for a run
    // that kept none.
    let caps = a.join("captions.txt");
    std::fs::write(&caps, "a large red circle on a blue background\n").unwrap();
    let grid = |run: &str, dir: &str, extra: &[&str]| {
        let out_dir = a.join(dir);
        let mut args =
            vec!["sample", run, "--captions", caps.to_str().unwrap(), "--out-dir", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = stackflow(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        std::fs::read(out_dir.join("grid.png")).unwrap()
    };
    assert!(grid(a_s, "with-ema", &[]) != grid(a_s, "no-ema", &["--no-ema"]));
    // Without the average, the same run ends elsewhere.
    let plain = fresh("ema-plain");
    let out = run(&["--out", plain.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tp = weights::read_all(&ckpts(&plain).pop().unwrap()).unwrap();
    assert!(averaged.iter().any(|param| tp[param].1 != ta[param].1));
    // The trained weights are the plain run's: the average never fed back into training.
    for n in &trained {
        assert!(ta[*n].1 == tp[&format!("param.{}", &n["ema.trained.".len()..])].1, "{n}");
    }
    let out = stackflow(&[
        "sample",
        plain.to_str().unwrap(),
        "--captions",
        caps.to_str().unwrap(),
        "--out-dir",
        "unused",
        "--no-ema",
    ]);
    assert!(out.code == 1 && out.stderr.contains("cli::no_ema"), "{}", out.stderr);

    // Interrupted and resumed, the average continues where it was: the same bytes.
    let b = fresh("ema-b");
    let b_s = b.to_str().unwrap();
    let out = run(&["--out", b_s, "--set", "stage1.ema=0.5", "--max-steps", "5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&["--resume", b_s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tb = weights::read_all(&ckpts(&b).pop().unwrap()).unwrap();
    assert_eq!(ta.len(), tb.len());
    for (name, (_, va)) in &ta {
        assert!(va == &tb[name].1, "{name} differs between the resumed and the uninterrupted run");
    }

    let out = stackflow(&["check", "tests/graphs/tiny.ron", "--set", "stage1.ema=1"]);
    assert!(out.code == 1 && out.stderr.contains("a decay between 0 and 1"), "{}", out.stderr);
}

#[test]
fn periodic_eval_logs_scores_and_keeps_the_best_checkpoint() {
    let work = fresh("eval");
    let graph = crate::support::tiny_graph(&work, "tiny-eval", |t| {
        t.replace(
            r#"epochs: 2, batch: 8,"#,
            r#"epochs: 2, batch: 8, eval: Some((every: 3, captions: 4, per_caption: 2, metric: Background)),"#,
        )
    });
    let dir = work.join("run");
    let args = ["run", graph.to_str().unwrap(), "--quiet", "--keep", "1", "--out", dir.to_str().unwrap()];
    let out = stackflow(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("eval_both").is_some())
        .collect();
    // 16 iterations, every 3rd scored.
    assert_eq!(evals.iter().map(|v| v["step"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 6, 9, 12, 15]);
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoints/best.json")).unwrap()).unwrap();
    assert_eq!(best["metric"], "eval_background");
    let top = evals.iter().map(|v| v["eval_background"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(best["value"].as_f64().unwrap(), top);
    let first_top = evals.iter().find(|v| v["eval_background"].as_f64() == Some(top)).unwrap();
    assert_eq!(best["step"], first_top["step"], "the first step reaching the best score is kept");
    // Pruning to --keep 1 leaves the best checkpoint alone; it loads like any checkpoint.
    let files = ckpts(&dir);
    assert!(files.iter().any(|p| p.ends_with("best.safetensors")), "{files:?}");
    assert_eq!(files.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ckpt-")).count(), 1);
    assert!(dir.join("losses.png").exists());
    // Folder data has no colour judge: `eval` there is a diagnostic at check time.
    let bad = crate::support::tiny_graph(&work, "tiny-eval-folder", |t| {
        t.replace(r#"epochs: 2, batch: 8,"#, r#"epochs: 2, batch: 8, eval: Some((every: 3)),"#)
            .replace("SyntheticShapes(count: 64, seed: 1)", r#"Folder(root: "nowhere")"#)
    });
    let out = stackflow(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("SyntheticShapes"), "{}", out.stderr);
}

#[cfg(not(feature = "tensorboard"))]
#[test]
fn tensorboard_is_refused_by_a_build_without_it() {
    let dir = fresh("tensorboard");
    let out = run(&["--out", dir.to_str().unwrap(), "--tensorboard"]);
    assert!(out.code == 1 && out.stderr.contains("run::no_tensorboard"), "{}", out.stderr);
    assert!(!dir.exists(), "a refused flag leaves no run behind");
}

#[cfg(feature = "tensorboard")]
#[test]
fn tensorboard_events_hold_the_losses_and_the_grids() {
    use stackflow_core::train::board::{read, LoggedValue};
    let dir = fresh("tensorboard");
    let out = run(&["--out", dir.to_str().unwrap(), "--tensorboard"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let logged = read(&dir.join("tensorboard")).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let d = logged.iter().find(|l| l.tag == "stage1/D").expect("D is logged");
    let want = LoggedValue::Scalar(first["D"].as_f64().unwrap() as f32);
    assert_eq!((d.step, &d.value), (first["step"].as_u64().unwrap(), &want));
    let images: Vec<(&str, u64)> =
        logged.iter().filter(|l| matches!(l.value, LoggedValue::Image(..))).map(|l| (l.tag.as_str(), l.step)).collect();
    assert_eq!(images.first(), Some(&("stage1/real", 0)));
    assert_eq!(images.iter().filter(|(t, _)| *t == "stage1/samples").count(), 2, "one grid per epoch: {images:?}");
}
