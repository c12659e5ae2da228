//! Graphs that extend and include other files: the shipped variants differ from their
//! base only where they say, errors point into the file that caused them, and a run
//! keeps the resolved flow.

use std::path::Path;

use stackflow_core::dsl::{self, FlowFile, StageDef};

use crate::support::{fresh, root, stackflow, tiny_graph};

/// A stage as field name → value, to compare field by field.
fn fields(stage: &StageDef) -> Vec<(String, serde_json::Value)> {
    let serde_json::Value::Object(m) = serde_json::to_value(stage).unwrap() else { panic!("a stage is a struct") };
    m.into_iter().collect()
}

#[test]
fn each_variant_differs_from_quickstart_only_where_it_says() {
    let base = dsl::load(&root().join("graphs/quickstart.ron")).unwrap().doc;
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("graphs/variants")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue; // a docs example being checked beside the variants
        }
        let (file, _) = dsl::parse_text::<FlowFile>(&dsl::read_file(&path).unwrap()).unwrap();
        assert_eq!(file.extends.as_deref(), Some("../quickstart.ron"), "{name}");
        assert!(file.blocks.is_empty() && file.include.is_empty(), "{name}: heads live in graphs/lib");
        let v = dsl::load(&path).unwrap().doc;
        assert_eq!(v.name, format!("quickstart_{name}"));
        assert_eq!(v.vars, base.vars, "{name}");
        assert_eq!(v.blocks, base.blocks, "{name}");
        assert_eq!(v.nets.keys().collect::<Vec<_>>(), base.nets.keys().collect::<Vec<_>>(), "{name}");
        for (net, def) in &v.nets {
            if file.nets.contains_key(net) {
                assert_ne!(def, &base.nets[net], "{name} overrides `{net}` with a copy");
            } else {
                assert_eq!(def, &base.nets[net], "{name}: `{net}` is quickstart's");
            }
        }
        assert_eq!(v.train.len(), base.train.len(), "{name}");
        for (got, want) in v.train.iter().zip(&base.train) {
            let given = file.train.iter().find(|p| p.name == want.name).map(|p| p.given()).unwrap_or_default();
            for ((field, a), (_, b)) in fields(got).into_iter().zip(fields(want)) {
                if given.contains(&field.as_str()) {
                    assert_ne!(a, b, "{name}: `{}.{field}` is set to quickstart's value", want.name);
                } else {
                    assert_eq!(a, b, "{name}: `{}.{field}` is quickstart's", want.name);
                }
            }
        }
        seen += 1;
    }
    assert!(seen >= 9, "the variants: {seen}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn errors_point_into_the_file_that_caused_them() {
    let work = fresh("compose-errors");
    tiny_graph(&work, "base", |t| t.replace("(\"e1_act\", \"core.leaky_relu\"", "(\"e1_act\", \"core.leaky_relu_\""));
    let child = write(&work, "child.ron", "Flow(name: \"child\", extends: \"base.ron\")\n");
    let out = stackflow(&["check", &child]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::unknown_kind"), "{}", out.stderr);
    assert!(out.stderr.contains("base.ron:34:"), "the caret is in base.ron at the node:\n{}", out.stderr);

    // A stage name the base lacks, with too few fields to be a new stage.
    let base = tiny_graph(&work, "base", |t| t);
    assert!(base.exists());
    let child =
        write(&work, "child.ron", "Flow(extends: \"base.ron\", train: [Stage(name: \"stage_1\", epochs: 1)])\n");
    let out = stackflow(&["check", &child]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::unknown_stage"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `stage1`?"), "{}", out.stderr);
    assert!(out.stderr.contains("child.ron:1:"), "{}", out.stderr);

    // A variable spelt like an inherited one.
    let child = write(&work, "child.ron", "Flow(extends: \"base.ron\", vars: (gf_dm: 8))\n");
    let out = stackflow(&["check", &child]);
    assert!(out.code == 1 && out.stderr.contains("graph::unknown_var"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `gf_dim`?") && out.stderr.contains("child.ron:1:"), "{}", out.stderr);

    // A missing base, and a cycle.
    let child = write(&work, "child.ron", "Flow(extends: \"nowhere.ron\")\n");
    let out = stackflow(&["check", &child]);
    assert!(out.stderr.contains("graph::missing_file") && out.stderr.contains("nowhere.ron"), "{}", out.stderr);
    write(&work, "a.ron", "Flow(extends: \"b.ron\")\n");
    let b = write(&work, "b.ron", "Flow(\n    extends: \"a.ron\",\n)\n");
    let out = stackflow(&["check", &b]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::cycle"), "{}", out.stderr);
    assert!(out.stderr.contains("a.ron:1:"), "the caret is on a.ron's extends:\n{}", out.stderr);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn one_name_from_two_libraries_names_both_files() {
    let work = fresh("compose-clash");
    let block = "\"act\": Block(nodes: [(\"r\", \"core.relu\", (), [\"in\"])])";
    write(&work, "one.ron", &format!("Library(blocks: {{ {block} }})\n"));
    write(&work, "two.ron", &format!("Library(\n    blocks: {{ {block} }},\n)\n"));
    let g = tiny_graph(&work, "flow", |t| {
        t.replace("name: \"tiny\",", "name: \"tiny\", include: [\"one.ron\", \"two.ron\"],")
    });
    let out = stackflow(&["check", g.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::duplicate_name"), "{}", out.stderr);
    assert!(out.stderr.contains("two.ron:2:"), "{}", out.stderr);
    assert!(out.stderr.contains("one.ron:1:"), "the first definition is shown too:\n{}", out.stderr);
    // The same library twice is read once; the including file's own block wins.
    let g = tiny_graph(&work, "flow", |t| {
        t.replace("name: \"tiny\",", "name: \"tiny\", include: [\"one.ron\", \"./one.ron\"],")
            .replace("blocks: {", &format!("blocks: {{ {block},"))
    });
    let out = stackflow(&["check", g.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_run_keeps_the_resolved_flow_and_resumes_from_it() {
    let work = fresh("compose-run");
    tiny_graph(&work, "base", |t| t);
    let child = write(
        &work,
        "child.ron",
        "Flow(name: \"child\", extends: \"base.ron\", vars: (gf_dim: 2), train: [Stage(name: \"stage1\", epochs: 1)])\n",
    );
    let run = work.join("run");
    let out = stackflow(&["run", &child, "--quiet", "--max-steps", "3", "--out", run.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let graph = std::fs::read_to_string(run.join("graph.ron")).unwrap();
    assert!(graph.contains("extends") && graph.contains("base.ron"), "the header names the files:\n{graph}");
    assert!(!graph.contains("extends:"), "resolved:\n{graph}");
    // The resolved flow stands on its own, elsewhere, with the child's changes in it.
    let alone = write(&work.join("elsewhere"), "graph.ron", &graph);
    let out = stackflow(&["info", &alone, "--net", "g1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let info = stackflow(&["info", &child, "--net", "g1"]);
    let params = |s: &str| s.lines().find(|l| l.contains("parameters:")).map(str::to_string);
    assert_eq!(params(&out.stdout), params(&info.stdout));
    assert!(info.stdout.contains("base.ron:14"), "g1 is written in base.ron:\n{}", info.stdout);
    // Resume from the graph files as given, and from the run (sample reads graph.ron).
    let out = stackflow(&["run", &child, "--quiet", "--resume", run.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // An edit to any of the files is a different graph.
    tiny_graph(&work, "base", |t| t.replace("z_dim: 8", "z_dim: 6"));
    let out = stackflow(&["run", &child, "--quiet", "--resume", run.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("run::graph_changed"), "{}", out.stderr);
    let captions = write(&work, "captions.txt", "a red circle on a blue background\n");
    let out = stackflow(&[
        "sample",
        run.to_str().unwrap(),
        "--captions",
        &captions,
        "--out-dir",
        work.join("s").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn use_takes_a_net_from_another_file() {
    let out = stackflow(&["info", "graphs/quickstart.ron", "--use", "d2=graphs/variants/d2_patch.ron", "--net", "d2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("written at:  graphs/variants/d2_patch.ron:"), "{}", out.stdout);
    // The recipe stays quickstart's: a D that wants μ does not fit its text condition.
    let out = stackflow(&["check", "graphs/quickstart.ron", "--use", "d1=graphs/variants/d1_projection.ron"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("graph::shape") && out.stderr.contains("graphs/quickstart.ron:"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/quickstart.ron", "--use", "d3=graphs/variants/d1_patch.ron"]);
    assert!(out.stderr.contains("cli::unknown_net") && out.stderr.contains("--use:1:1"), "{}", out.stderr);
    let out = stackflow(&["check", "graphs/quickstart.ron", "--use", "graphs/variants/d1_patch.ron"]);
    assert!(out.stderr.contains("cli::bad_use"), "{}", out.stderr);
}
