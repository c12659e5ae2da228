//! Nothing lost, nothing crashes (issue 11): resumes never write into a directory guessed
//! from a file's path, checkpoints are verified as a whole, the run's seed and graph are
//! enforced, signals stop a run with a checkpoint, and user counts are bounded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stackflow_core::exec::weights;

use crate::support::{ckpts, fresh, root, stackflow, tiny_graph};

fn tiny(args: &[&str]) -> crate::support::Output {
    let mut all = vec!["run", "tests/graphs/tiny.ron", "--quiet"];
    all.extend_from_slice(args);
    stackflow(&all)
}

fn same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (weights::read_all(a).unwrap(), weights::read_all(b).unwrap());
    assert_eq!(ta.len(), tb.len());
    for (name, (_, va)) in &ta {
        assert!(va == &tb[name].1, "{name} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn issue11_resume_from_a_stray_file_writes_nowhere_it_guessed() {
    let (a, b) = (fresh("own-a"), fresh("own-b"));
    assert_eq!(tiny(&["--out", a.to_str().unwrap()]).code, 0);
    assert_eq!(tiny(&["--out", b.to_str().unwrap(), "--max-steps", "3"]).code, 0);
    let before = ckpts(&a);

    // B's checkpoint copied into A's checkpoints/ does not belong to A: refused, A untouched.
    let stray = a.join("checkpoints").join("ckpt-s1-000000003.safetensors");
    std::fs::copy(ckpts(&b).pop().unwrap(), &stray).unwrap();
    let out = tiny(&["--resume", stray.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::stray_checkpoint"), "{}", out.stderr);
    std::fs::remove_file(&stray).unwrap();
    assert_eq!(ckpts(&a), before, "A's checkpoints were touched");

    // A loose file (here: in a folder that is not a run's checkpoints/) is refused too…
    let loose_dir = fresh("loose");
    let loose = loose_dir.join("x").join("ckpt.safetensors");
    std::fs::create_dir_all(loose.parent().unwrap()).unwrap();
    std::fs::copy(ckpts(&b).pop().unwrap(), &loose).unwrap();
    let out = tiny(&["--resume", loose.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("--out"), "{}", out.stderr);
    assert!(!loose.parent().unwrap().parent().unwrap().join("run.json").exists());

    // …and continues where `--out` says, ending where B would have.
    let c = fresh("own-c");
    let out = tiny(&["--resume", loose.to_str().unwrap(), "--out", c.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    same_tensors(&ckpts(&a).pop().unwrap(), &ckpts(&c).pop().unwrap());

    // A checkpoint file inside its own run continues that run.
    let out = tiny(&["--resume", ckpts(&b).pop().unwrap().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    same_tensors(&ckpts(&a).pop().unwrap(), &ckpts(&b).pop().unwrap());
    let out = tiny(&["--resume", b.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("already finished"), "{}", out.stdout);

    // A directory holding another run is never pruned by a resume into it.
    let out = tiny(&["--resume", loose.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::other_run"), "{}", out.stderr);
    assert_eq!(ckpts(&a), before);
}

/// Change the first digit after `"key":` in the file's JSON header (escaped inside the
/// metadata string) by `+1`, keeping the length.
fn tamper(path: &Path, key: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let pat = format!("{key}\\\":");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + header_len]).into_owned();
    let at = 8 + header.find(&pat).unwrap_or_else(|| panic!("{pat} in {header}")) + pat.len();
    bytes[at] = if bytes[at] == b'9' { b'1' } else { bytes[at] + 1 };
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn issue11_tampered_metadata_is_refused() {
    let dir = fresh("tamper");
    assert_eq!(tiny(&["--out", dir.to_str().unwrap(), "--max-steps", "5"]).code, 0);
    let ckpt = ckpts(&dir).pop().unwrap();
    let good = std::fs::read(&ckpt).unwrap();
    for key in ["epoch", "step", "seed"] {
        std::fs::write(&ckpt, &good).unwrap();
        tamper(&ckpt, key);
        let out = tiny(&["--resume", dir.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{key}: {}", out.stderr);
        assert!(out.stderr.contains("checksum mismatch"), "{key}: {}", out.stderr);
        let out = tiny(&["--resume", ckpt.to_str().unwrap()]);
        assert!(out.stderr.contains("checkpoint::corrupt"), "{key}: {}", out.stderr);
    }
    std::fs::write(&ckpt, &good).unwrap();
    let out = tiny(&["--resume", dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The same run again in the same (emptied) directory writes the same bytes.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(tiny(&["--out", dir.to_str().unwrap(), "--max-steps", "5"]).code, 0);
    assert!(std::fs::read(&ckpt).unwrap() == good, "checkpoint bytes differ between identical runs");
}

#[test]
fn issue11_seed_and_graph_come_from_the_run() {
    let (a, b) = (fresh("seed-a"), fresh("seed-b"));
    assert_eq!(tiny(&["--out", a.to_str().unwrap(), "--seed", "3"]).code, 0);
    assert_eq!(tiny(&["--out", b.to_str().unwrap(), "--seed", "3", "--max-steps", "5"]).code, 0);
    let out = tiny(&["--resume", b.to_str().unwrap(), "--seed", "4"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::seed_mismatch"), "{}", out.stderr);
    // Without --seed the run's own seed is used: bit-identical to the uninterrupted run.
    let out = tiny(&["--resume", b.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    same_tensors(&ckpts(&a).pop().unwrap(), &ckpts(&b).pop().unwrap());

    // On resume, metrics lines past the checkpoint (left by a killed run) and a torn last
    // line are dropped: each step appears once.
    let steps = |text: &str| -> Vec<u64> {
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap()).collect()
    };
    let c = fresh("seed-c");
    assert_eq!(tiny(&["--out", c.to_str().unwrap(), "--max-steps", "8", "--log-every", "1"]).code, 0);
    let m = c.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&m).unwrap();
    text.push_str("{\"stage\":\"stage1\",\"epoch\":1,\"step\":12}\n{\"stage\":\"stage1\",\"ep");
    std::fs::write(&m, text).unwrap();
    assert_eq!(tiny(&["--resume", c.to_str().unwrap(), "--log-every", "1"]).code, 0);
    let s = steps(&std::fs::read_to_string(&m).unwrap());
    assert_eq!(s, (1..=16).collect::<Vec<_>>(), "{s:?}");

    // An edited graph.ron is not used silently.
    let g = a.join("graph.ron");
    let text = std::fs::read_to_string(&g).unwrap();
    std::fs::write(&g, text.replace("gf_dim: 4", "gf_dim: 4 ")).unwrap();
    let out = stackflow(&["eval", a.to_str().unwrap(), "--captions", "2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("run::graph_edited"), "{}", out.stderr);
    std::fs::write(&g, text).unwrap();

    // Libraries recorded in run.json are not loaded: a bogus one changes nothing.
    let info = a.join("run.json");
    let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    j["plugins"] = serde_json::json!(["/nonexistent/libevil.so"]);
    std::fs::write(&info, j.to_string()).unwrap();
    let out = stackflow(&["eval", a.to_str().unwrap(), "--captions", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("using checkpoint"), "{}", out.stderr);
}

#[test]
fn issue11_damaged_newest_checkpoint_is_named_and_temp_files_are_cleaned() {
    let dir = fresh("damaged");
    assert_eq!(tiny(&["--out", dir.to_str().unwrap(), "--max-steps", "12"]).code, 0);
    let newest = ckpts(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let out = stackflow(&["eval", dir.to_str().unwrap(), "--captions", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("warning: skipping checkpoint"), "{}", out.stderr);
    assert!(out.stderr.contains("000000008"), "{}", out.stderr);

    let tmp = dir.join("checkpoints").join("ckpt-s1-000000013.tmp4242");
    std::fs::write(&tmp, b"partial").unwrap();
    std::fs::remove_file(&newest).unwrap();
    let out = tiny(&["--resume", dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!tmp.exists(), "orphaned temp file left behind");
}

#[test]
fn issue11_flow_names_stay_inside_runs() {
    let work = fresh("names");
    let graph = tiny_graph(&work, "evil", |t| t.replace("name: \"tiny\"", "name: \"../../escaped\""));
    let out = Command::new(env!("CARGO_BIN_EXE_stackflow"))
        .args(["run", graph.to_str().unwrap(), "--quiet", "--max-steps", "1"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: Vec<_> = std::fs::read_dir(work.join("runs")).unwrap().flatten().collect();
    assert_eq!(runs.len(), 1);
    assert!(!work.parent().unwrap().join("escaped").exists());
}

#[test]
fn issue11_counts_are_bounded() {
    let dir = fresh("bounds");
    assert_eq!(tiny(&["--out", dir.to_str().unwrap(), "--max-steps", "1"]).code, 0);
    let d = dir.to_str().unwrap();
    let caps = dir.join("caps.txt");
    std::fs::write(&caps, "a red circle on a blue background\n").unwrap();
    let out = dir.join("out");
    for args in [
        vec![
            "sample",
            d,
            "--captions",
            caps.to_str().unwrap(),
            "--per-caption",
            "100000000",
            "--out-dir",
            out.to_str().unwrap(),
        ],
        vec!["eval", d, "--captions", "100000000"],
        vec!["interpolate", d, "--from", "a", "--to", "b", "--steps", "100000000", "--out", "x.png"],
    ] {
        let o = stackflow(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("cli::too_many"), "{args:?}: {}", o.stderr);
    }
}

#[test]
fn issue11_sigint_checkpoints_and_resumes_bit_identically() {
    let work = fresh("signal");
    let graph = tiny_graph(&work, "long", |t| t.replace("epochs: 2", "epochs: 500"));
    let g = graph.to_str().unwrap();
    let (a, b) = (work.join("a"), work.join("b"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackflow"))
        .args(["run", g, "--quiet", "--log-every", "1", "--out", b.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(b.join("metrics.jsonl")).is_ok_and(|m| m.lines().count() >= 11) {
        assert!(started.elapsed() < Duration::from_secs(120), "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("--resume"), "{stdout}");
    let ckpt = ckpts(&b).pop().expect("a checkpoint at the interruption");
    let name = ckpt.file_stem().unwrap().to_string_lossy().into_owned();
    let stopped_at: u64 = name.rsplit('-').next().unwrap().parse().unwrap();
    assert!(stopped_at >= 11, "{name}");

    let total = stopped_at + 7;
    let rest = (total - stopped_at).to_string();
    let out = stackflow(&["run", g, "--quiet", "--resume", b.to_str().unwrap(), "--max-steps", &rest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = stackflow(&["run", g, "--quiet", "--out", a.to_str().unwrap(), "--max-steps", &total.to_string()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    same_tensors(&ckpts(&a).pop().unwrap(), &ckpts(&b).pop().unwrap());
}

#[test]
fn issue11_hostile_graphs_are_diagnostics_not_crashes() {
    let work = fresh("hostile");
    std::fs::create_dir_all(&work).unwrap();
    let tiny = std::fs::read_to_string(root().join("tests/graphs/tiny.ron")).unwrap();
    let wide = format!("Flow(name: \"x\",{}bogus: 1)", " ".repeat(70_000));
    let cases = [
        ("wide", wide, "graph::unknown_field", "1:70016"),
        ("count_max", tiny.replace("count: 64", "count: 18446744073709551615"), "graph::bad_value", "count"),
        ("count_2_40", tiny.replace("count: 64", "count: 1099511627776"), "graph::bad_value", "count"),
        ("eps_inf", tiny.replace("betas: (0.5, 0.999)", "betas: (0.5, 0.999), eps: inf"), "graph::bad_value", "eps"),
        ("lr_nan", tiny.replace("lr: 2e-4", "lr: NaN"), "graph::bad_value", "lr"),
        ("lr_zero", tiny.replace("lr: 2e-4", "lr: 0.0"), "graph::bad_value", "lr"),
    ];
    for (name, text, code, what) in cases {
        let path = work.join(format!("{name}.ron"));
        std::fs::write(&path, text).unwrap();
        let out = stackflow(&["check", path.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(code) && out.stderr.contains(what), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
    }
    let out = stackflow(&["check", "/dev/zero"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::too_large"), "{}", out.stderr);
}

#[test]
fn issue11_one_value_twice_in_one_op_trains() {
    // `concat(x, x)`, `x + x`, `x * x` and `concat(x, reshape(x))` panicked in dfdx's
    // backward (one tensor id as both operands), although `check` accepted them.
    let work = fresh("twice");
    let graph = tiny_graph(&work, "twice", |t| {
        t.replace(
            r#"("img", "core.conv2d", (out: 3, kernel: 3, padding: 1, bias: false), ["up2"]),"#,
            r#"("twice", "core.add", (), ["up2", "up2"]),
                ("sq", "core.mul", (), ["twice", "twice"]),
                ("flat", "core.reshape", (shape: ["gf_dim * 16 * 16"]), ["sq"]),
                ("back", "core.reshape", (shape: ["gf_dim", 16, 16]), ["flat"]),
                ("cat", "core.concat", (), ["sq", "back", "sq", "up2"]),
                ("img", "core.conv2d", (out: 3, kernel: 3, padding: 1, bias: false), ["cat"]),"#,
        )
    });
    assert!(std::fs::read_to_string(&graph).unwrap().contains("\"cat\""));
    let out = stackflow(&[
        "run",
        graph.to_str().unwrap(),
        "--quiet",
        "--max-steps",
        "2",
        "--out",
        work.join("run").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
