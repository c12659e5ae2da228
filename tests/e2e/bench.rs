//! `stackflow bench`: timings and peak memory of a stage as JSON or text; bad flags are
//! diagnostics.

use crate::support::stackflow;

#[test]
fn bench_reports_times_and_memory() {
    let out = stackflow(&["bench", "tests/graphs/tiny.ron", "--batch", "4", "--iters", "2", "--warmup", "1", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("one JSON object on stdout");
    assert_eq!(j["batch"], 4);
    for key in ["sample_all_ms", "train_all_ms"] {
        let all = j[key].as_array().unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(all.len(), 2, "{key}: one value per timed iteration");
        assert!(all.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)), "{key}: {all:?}");
    }
    for key in ["sample_ms", "train_ms", "train_gflops", "sample_peak_heap_mb", "train_peak_heap_mb", "peak_rss_mb"] {
        assert!(j[key].as_f64().is_some_and(|v| v > 0.0), "{key} = {}", j[key]);
    }
    // A training iteration holds the tape and gradients; sampling does not.
    let (s, t) = (j["sample_peak_heap_mb"].as_f64().unwrap(), j["train_peak_heap_mb"].as_f64().unwrap());
    assert!(t > s, "train peak {t} MB is not above the sample peak {s} MB");

    let text = stackflow(&["bench", "tests/graphs/tiny.ron", "--batch", "2", "--iters", "1", "--warmup", "0"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for line in ["sample (G forward, eval):", "train iteration:", "peak heap:"] {
        assert!(text.stdout.contains(line), "`{line}` missing from:\n{}", text.stdout);
    }
}

#[test]
fn bench_profile_splits_the_iteration_by_net_and_kind() {
    let args = ["bench", "tests/graphs/tiny.ron", "--batch", "4", "--iters", "2", "--warmup", "1", "--profile"];
    let out = stackflow(&[&args[..], &["--json"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let rows = j["profile"].as_array().expect("a profile");
    let row = |net: &str, kind: &str| rows.iter().find(|r| r["net"] == net && r["kind"] == kind).cloned();
    // tiny's d1 has three convolutions, each run on real, fake and the G step's fake, plus
    // the mismatched pairs' code: per iteration, forward and backward both take time.
    let conv = row("d1", "core.conv2d").expect("d1's convolutions");
    assert!(conv["calls"].as_u64().unwrap() >= 3, "{conv}");
    assert!(conv["forward_ms"].as_f64().unwrap() > 0.0 && conv["backward_ms"].as_f64().unwrap() > 0.0, "{conv}");
    assert!(row("g1", "core.batch_norm").is_some(), "{rows:?}");
    let text = stackflow(&args);
    assert!(text.stdout.contains("by net and node kind") && text.stdout.contains("core.conv2d"), "{}", text.stdout);
    // By node: one row per node, named by its path.
    let out = stackflow(&[&args[..8], &["--profile=nodes", "--json"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let rows = j["profile"].as_array().expect("a profile");
    for node in ["e1", "e2", "logit"] {
        assert!(rows.iter().any(|r| r["net"] == "d1" && r["kind"] == node), "d1 node `{node}` in {rows:?}");
    }
    // Without the flag there is no profile.
    let out = stackflow(&["bench", "tests/graphs/tiny.ron", "--batch", "2", "--iters", "1", "--warmup", "0", "--json"]);
    assert!(serde_json::from_str::<serde_json::Value>(out.stdout.trim()).unwrap().get("profile").is_none());
}

#[test]
fn bad_bench_flags_are_diagnostics() {
    for (args, says) in [
        (&["--stage", "3"][..], "is not a stage of"),
        (&["--stage", "0"][..], "is not a stage of"),
        (&["--batch", "1"][..], "--batch must be at least 2"),
        (&["--iters", "0"][..], "--iters must be at least 1"),
    ] {
        let out = stackflow(&[&["bench", "tests/graphs/tiny.ron"][..], args].concat());
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
}
