//! The shipped graphs check, and `info` reproduces the reference parameter counts
//! (StackGAN-Pytorch's parameter counts) at the default and COCO widths.

use crate::support::stackflow;

fn info_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["info", "graphs/stackgan256.ron", "--json"];
    all.extend_from_slice(args);
    let out = stackflow(&all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout).expect("json").as_array().expect("array").clone()
}

fn counts(nets: &[serde_json::Value], name: &str) -> (u64, u64, u64) {
    let n = nets.iter().find(|n| n["net"] == name).expect("net listed");
    (n["trainable_params"].as_u64().unwrap(), n["frozen_params"].as_u64().unwrap(), n["buffers"].as_u64().unwrap())
}

#[test]
fn shipped_graphs_check() {
    for g in ["graphs/stackgan64.ron", "graphs/stackgan256.ron", "graphs/quickstart.ron"] {
        let out = stackflow(&["check", g]);
        assert_eq!(out.code, 0, "{g}: {}", out.stderr);
        assert!(out.stdout.starts_with("ok: "), "{}", out.stdout);
    }
}

#[test]
fn info_matches_reference_parameter_counts() {
    let nets = info_json(&[]);
    assert_eq!(counts(&nets, "g1"), (10_301_248, 0, 34_688));
    assert_eq!(counts(&nets, "d1"), (5_715_713, 0, 2_816));
    assert_eq!(counts(&nets, "g2"), (26_290_080, 10_301_248, 46_400));
    assert_eq!(counts(&nets, "d2"), (71_269_122, 0, 12_032));
    let flops = |n: &str| nets.iter().find(|x| x["net"] == n).unwrap()["flops_per_sample"].as_u64().unwrap() + 50_000;
    // params.md: 2.4381 / 0.3020 / 25.5649 / 6.3188 GFLOP per sample.
    assert_eq!(flops("g1") / 100_000, 24_381);
    assert_eq!(flops("d1") / 100_000, 3_020);
    assert_eq!(flops("g2") / 100_000, 255_649);
}

#[test]
fn info_matches_reference_at_coco_widths() {
    let nets = info_json(&["--set", "gf_dim=192", "--set", "df_dim=96", "--set", "r_num=2"]);
    assert_eq!(counts(&nets, "g1"), (20_020_832, 0, 52_032));
    assert_eq!(counts(&nets, "d1"), (12_407_425, 0, 4_224));
    assert_eq!(counts(&nets, "g2"), (37_130_480, 20_020_832, 63_456));
    assert_eq!(counts(&nets, "d2"), (159_889_538, 0, 18_048));
}

#[test]
fn text_info_and_graph_render() {
    let out = stackflow(&["info", "graphs/stackgan256.ron", "--net", "g2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("26,290,080 trainable, 10,301,248 frozen"), "{}", out.stdout);
    let out = stackflow(&["graph", "graphs/stackgan64.ron", "--net", "d1", "--format", "dot"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("digraph \"d1\""), "{}", out.stdout);
    assert!(out.stdout.contains("[640, 4, 4]"), "{}", out.stdout);
    let out = stackflow(&["graph", "graphs/stackgan64.ron", "--net", "d2"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nets: g1, d1"), "{}", out.stderr);
    let out = stackflow(&["completions", "bash"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("stackflow"), "{}", out.stdout);
}
