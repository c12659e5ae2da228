//! Every file in `tests/bad_graphs/` is refused by `stackflow check` with exit code 1 and
//! a diagnostic that names the file and points into it; the full text is a snapshot.

use crate::support::{root, stackflow};

#[test]
fn every_bad_graph_is_a_spanned_diagnostic() {
    let dir = root().join("tests/bad_graphs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/bad_graphs exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "expected the bad-graph corpus, found {}", files.len());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let rel = format!("tests/bad_graphs/{name}.ron");
        let out = stackflow(&["check", &rel]);
        assert_eq!(out.code, 1, "{rel}: exit code\n{}", out.stderr);
        assert!(out.stdout.is_empty(), "{rel}: nothing on stdout");
        assert!(out.stderr.contains(&format!("[{rel}:")), "{rel}: the diagnostic names the file\n{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{rel}: panic\n{}", out.stderr);
        insta::with_settings!({ snapshot_path => root().join("tests/snapshots"), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("bad_graph__{name}"), out.stderr);
        });
    }
}

#[test]
fn bad_set_flags_point_into_the_flag() {
    let out = stackflow(&["check", "graphs/stackgan64.ron", "--set", "gf_dm=16"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("did you mean `gf_dim`?"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/stackgan64.ron", "--set", "gf_dim"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not `name=value`"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/stackgan64.ron", "--set", "gf_dim=16/0"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("division by zero"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/stackgan64.ron", "--set", "gf_dim=-4"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

#[test]
fn missing_file_and_bad_flags_exit_1() {
    let out = stackflow(&["check", "graphs/nope.ron"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("graphs/nope.ron"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/stackgan64.ron", "--max-memory", "lots"]);
    assert_eq!(out.code, 1);
    let out = stackflow(&["frobnicate"]);
    assert_eq!(out.code, 1);
}

#[test]
fn memory_limit_is_adjustable() {
    let out = stackflow(&["check", "graphs/stackgan256.ron", "--batch", "64", "--max-memory", "1GiB"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("graph::too_much_memory"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/stackgan256.ron", "--batch", "64", "--max-memory", "64GiB"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
