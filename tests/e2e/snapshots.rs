//! What the inspection commands print, as snapshots: a change to `info`, `graph` or
//! `plugins list` output shows up in review instead of slipping by.

use crate::support::{root, stackflow};

fn snapshot(name: &str, args: &[&str]) {
    let out = stackflow(args);
    assert_eq!(out.code, 0, "stackflow {}: {}", args.join(" "), out.stderr);
    insta::with_settings!({ snapshot_path => root().join("tests/snapshots"), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, out.stdout);
    });
}

#[test]
fn info_of_the_reference_graph() {
    snapshot("info__stackgan256", &["info", "graphs/stackgan256.ron"]);
}

#[test]
fn graph_of_a_discriminator() {
    snapshot("graph__stackgan64_d1", &["graph", "graphs/stackgan64.ron", "--net", "d1"]);
}

#[test]
fn plugins_list_of_the_built_ins() {
    snapshot("plugins_list__builtins", &["plugins", "list"]);
}
