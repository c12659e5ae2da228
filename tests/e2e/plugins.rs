//! Plugins through the real binary: the plugin crates and the tutorial are built inside
//! the test run (a nested cargo with this run's profile and target directory), listed,
//! used by the variant graphs, and run forward; broken libraries and misbehaving plugins
//! give diagnostics with exit code 1, never a crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use stackflow_test_util::{dll_name, plugin_dir};

use crate::support::{root, stackflow, Output};

/// A plugin library of this workspace (`stackflow_gan_losses`, …), as a string path.
fn lib(stem: &str) -> String {
    plugin_dir().join(dll_name(stem)).display().to_string()
}

/// A fault-injection library from plugins/test-fixtures/examples.
fn fixture(stem: &str) -> String {
    plugin_dir().join("examples").join(dll_name(stem)).display().to_string()
}

/// Run with arguments `args`, then `--plugin` for each of `plugins`.
fn with_plugins(args: &[&str], plugins: &[String]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    for p in plugins {
        all.extend(["--plugin", p.as_str()]);
    }
    stackflow(&all)
}

/// A diagnostic's text without miette's line wrapping and frame characters.
fn flat(s: &str) -> String {
    s.replace(['│', '╭', '╰', '─', '┬', '·'], " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exit code 1, a diagnostic with `code`, and no sign of a crash.
fn refused(out: &Output, code: &str) {
    assert_eq!(out.code, 1, "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    assert!(flat(&out.stderr).contains(code), "expected {code}:\n{}", out.stderr);
    assert!(!out.stderr.contains("RUST_BACKTRACE") && !out.stderr.contains("thread '"), "a crash:\n{}", out.stderr);
}

fn temp_graph(name: &str, text: &str) -> PathBuf {
    let dir = plugin_dir().join("plugin-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}-{}.ron", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// A variant graph's text, its `extends` made absolute so that a copy works anywhere.
fn variant_text(name: &str) -> String {
    let base = root().join("graphs/quickstart.ron");
    std::fs::read_to_string(root().join(format!("graphs/variants/{name}.ron")))
        .unwrap()
        .replace("extends: \"../quickstart.ron\"", &format!("extends: {:?}", base.display().to_string()))
}

#[test]
fn plugins_list_shows_the_hinge_loss_with_its_doc_and_source() {
    let gan = lib("stackflow_gan_losses");
    let out = with_plugins(&["plugins", "list"], std::slice::from_ref(&gan));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hinge =
        out.stdout.lines().find(|l| l.trim_start().starts_with("gan_losses.hinge")).expect("the hinge loss is listed");
    assert!(hinge.contains(&gan) && hinge.contains("hinge GAN loss"), "{hinge}");
    assert!(out.stdout.contains("gan_losses 0.1.0 (ABI 3, API 4)"), "{}", out.stdout);
    for builtin in ["core.conv2d", "stackgan.matching_aware_bce", "core.normal"] {
        let line = out.stdout.lines().find(|l| l.trim_start().starts_with(builtin)).expect("built-ins are listed");
        assert!(line.contains("built-in"), "{line}");
    }
    let out = stackflow(&["plugins", "list", "--json", "--plugin", &lib("stackflow_samplers")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let kinds = j["kinds"].as_array().unwrap();
    let find = |n: &str| kinds.iter().find(|k| k["name"] == n).unwrap_or_else(|| panic!("{n} listed"));
    assert_eq!(find("samplers.class_aware")["family"], "sampler");
    assert_eq!(find("samplers.class_aware")["source"], lib("stackflow_samplers"));
    assert_eq!(j["plugins"][0]["abi_version"], 3);
}

#[test]
fn every_variant_checks_with_its_plugin_and_names_it_without() {
    let (gan, attn) = (lib("stackflow_gan_losses"), lib("stackflow_example_block"));
    let cases: [(&str, Option<&String>); 11] = [
        ("d1_concat", None),
        ("d1_projection", None),
        ("d1_uncond", None),
        ("d1_patch", None),
        ("d1_hinge", Some(&gan)),
        ("d1_relativistic", Some(&gan)),
        ("d1_attention", Some(&attn)),
        ("d1_spectral", Some(&attn)),
        ("d2_concat", None),
        ("d2_patch", None),
        ("d2_uncond", None),
    ];
    for (name, plugin) in cases {
        let file = format!("graphs/variants/{name}.ron");
        let out = with_plugins(&["check", &file], &plugin.into_iter().cloned().collect::<Vec<_>>());
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stdout.starts_with("ok: "), "{}", out.stdout);
        if plugin.is_some() {
            let out = stackflow(&["check", &file]);
            refused(&out, "graph::unknown_kind");
            assert!(flat(&out.stderr).contains("--plugin"), "the help says how to load a plugin:\n{}", out.stderr);
        }
    }
}

#[test]
fn variant_discriminators_run_forward() {
    // D reads the text embedding (64 wide) through its own projection, or G's CA mean μ
    // (16 wide) in d1_projection.
    for (name, plugin, cond) in [
        ("d1_attention", Some(lib("stackflow_example_block")), 64),
        ("d1_patch", None, 64),
        ("d1_projection", None, 16),
    ] {
        let inputs = temp_graph(&format!("{name}-inputs"), "").with_extension("safetensors");
        write_safetensors(
            &inputs,
            &[
                ("img", vec![2, 3, 64, 64], (0..2 * 3 * 64 * 64).map(|i| ((i % 17) as f32 / 8.0) - 1.0).collect()),
                ("cond", vec![2, cond], (0..2 * cond).map(|i| i as f32 / (2 * cond) as f32).collect()),
            ],
        );
        let output = inputs.with_file_name(format!("{name}-out-{}.safetensors", std::process::id()));
        let args = [
            "forward",
            &format!("graphs/variants/{name}.ron"),
            "--net",
            "d1",
            "--inputs",
            inputs.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        let out = with_plugins(&args, &plugin.into_iter().collect::<Vec<_>>());
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let t = stackflow_core::exec::weights::read_all(&output).unwrap();
        let (shape, probs) = &t["cond_prob"];
        assert_eq!(shape[0], 2, "{name}");
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{name}: {probs:?}");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&inputs);
    }
}

fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (*n, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn broken_libraries_are_diagnostics() {
    let out = stackflow(&["plugins", "list", "--plugin", "target/nowhere/libnothing.so"]);
    refused(&out, "plugin::not_found");
    assert!(flat(&out.stderr).contains("target/nowhere/libnothing.so"), "{}", out.stderr);

    let out = stackflow(&["plugins", "list", "--plugin", &fixture("not_a_plugin")]);
    refused(&out, "plugin::not_a_plugin");
    assert!(flat(&out.stderr).contains("STACKFLOW_PLUGIN_V1"), "{}", out.stderr);

    let out = stackflow(&["plugins", "list", "--plugin", &fixture("bad_abi")]);
    refused(&out, "plugin::abi_mismatch");
    assert!(
        flat(&out.stderr).contains("ABI version 999") && flat(&out.stderr).contains("ABI version 3"),
        "both versions:\n{}",
        out.stderr
    );

    let out = stackflow(&["plugins", "list", "--plugin", "Cargo.toml"]);
    refused(&out, "plugin::load_failed");

    // Issue 11: a null function pointer in the declaration is refused, not called.
    let out = stackflow(&["plugins", "list", "--plugin", &fixture("null_register")]);
    refused(&out, "plugin::bad_declaration");

    let out = stackflow(&["plugins", "list", "--plugin", &fixture("reserved")]);
    refused(&out, "plugin::bad_kind");
    assert!(flat(&out.stderr).contains("core.relu2"), "{}", out.stderr);

    let out = with_plugins(&["plugins", "list"], &[lib("stackflow_gan_losses"), fixture("duplicate")]);
    refused(&out, "registry::duplicate_kind");
    assert!(flat(&out.stderr).contains("gan_losses.hinge"), "{}", out.stderr);

    // A graph naming a missing plugin library, relative to the graph file.
    let g = temp_graph("missing", "Flow(name: \"m\", plugins: [\"libmissing.so\"], nets: {})");
    let out = stackflow(&["check", g.to_str().unwrap()]);
    refused(&out, "plugin::not_found");
    // The same library named twice is loaded once.
    let gan = lib("stackflow_gan_losses");
    let out = with_plugins(&["check", "graphs/variants/d1_hinge.ron"], &[gan.clone(), gan]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

const PANICKY: &str = r#"Flow(
    name: "panicky",
    nets: {
        "n": Net(
            inputs: (x: [4, 2, 2]),
            nodes: [("p", "panicky.block", (fail: "WHERE"), ["x"])],
            outputs: (y: "p"),
        ),
    },
)"#;

#[test]
fn misbehaving_plugins_are_diagnostics_naming_plugin_and_kind() {
    let p = fixture("panicky");
    for (fail, code, what) in [
        ("configure", "plugin::panic", "configure blew up"),
        ("infer", "graph::shape", "panicked in shape inference"),
        // Issue 11: a parameter of shape [0] panicked inside dfdx.
        ("zero_param", "graph::bad_param", "declares parameter"),
    ] {
        let g = temp_graph(&format!("panicky-{fail}"), &PANICKY.replace("WHERE", fail));
        let out = with_plugins(&["check", g.to_str().unwrap()], std::slice::from_ref(&p));
        refused(&out, code);
        assert!(flat(&out.stderr).contains(what) && flat(&out.stderr).contains("panicky"), "{fail}:\n{}", out.stderr);
        assert!(flat(&out.stderr).contains("panicky.block"), "{fail}: names the kind:\n{}", out.stderr);
        assert!(out.stderr.contains("───"), "{fail}: points into the graph:\n{}", out.stderr);
    }
    let inputs = temp_graph("panicky-inputs", "").with_extension("safetensors");
    write_safetensors(&inputs, &[("x", vec![2, 4, 2, 2], (0..32).map(|i| i as f32).collect())]);
    let output = inputs.with_extension("out.safetensors");
    let forward = |g: &Path| {
        let args = [
            "forward",
            g.to_str().unwrap(),
            "--net",
            "n",
            "--inputs",
            inputs.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        with_plugins(&args, std::slice::from_ref(&p))
    };
    for (fail, code, what) in [
        ("forward", "plugin::panic", "forward blew up"),
        ("error", "plugin::call", "forward refused politely"),
        ("host", "plugin::call", "matmul"),
        // Issue 11: `full` of 2^34 elements aborted on the allocation.
        ("huge", "plugin::call", "more than 2147483648 elements"),
    ] {
        let g = temp_graph(&format!("panicky-{fail}"), &PANICKY.replace("WHERE", fail));
        let out = forward(&g);
        refused(&out, code);
        assert!(
            flat(&out.stderr).contains(what)
                && flat(&out.stderr).contains("plugin `panicky`")
                && flat(&out.stderr).contains("panicky.block"),
            "{fail}:\n{}",
            out.stderr
        );
    }
    let g = temp_graph("panicky-none", &PANICKY.replace("WHERE", "none"));
    let out = forward(&g);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let _ = std::fs::remove_file(&output);

    // A misspelt attribute value is the plugin's own message, at the attribute.
    let g = temp_graph("panicky-attr", &PANICKY.replace("WHERE", "forwrd"));
    let out = with_plugins(&["check", g.to_str().unwrap()], std::slice::from_ref(&p));
    refused(&out, "graph::bad_attribute");
    assert!(flat(&out.stderr).contains("must be one of"), "{}", out.stderr);
}

#[test]
fn plugin_shape_errors_point_at_the_node() {
    let text = variant_text("d1_attention").replace("(reduction: 8), [\"e3\"]", "(reduction: 8), [\"cond\"]");
    let g = temp_graph("attn-shape", &text);
    let out = with_plugins(&["check", g.to_str().unwrap()], &[lib("stackflow_example_block")]);
    refused(&out, "graph::shape");
    assert!(
        flat(&out.stderr).contains("node `attn` (example.self_attention): expects a feature map [C, H, W], got [64]"),
        "{}",
        out.stderr
    );
    assert!(flat(&out.stderr).contains("(plugin `example`)"), "{}", out.stderr);
    assert!(
        out.stderr.contains("(\"attn\", \"example.self_attention\""),
        "the caret is under the node:\n{}",
        out.stderr
    );
}

#[test]
fn plugins_load_from_the_graph_file_and_the_environment() {
    // `plugins: [...]` in the graph file, relative to the file.
    let text = variant_text("d1_hinge");
    let g = temp_graph(
        "hinge-listed",
        &text.replacen("Flow(\n", &format!("Flow(\n    plugins: [\"../{}\"],\n", dll_name("stackflow_gan_losses")), 1),
    );
    let out = stackflow(&["check", g.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // STACKFLOW_PLUGIN_PATH, separated like PATH.
    let paths = std::env::join_paths([lib("stackflow_samplers"), lib("stackflow_gan_losses")]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stackflow"))
        .args(["check", "graphs/variants/d1_hinge.ron"])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("STACKFLOW_PLUGIN_PATH", paths)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plugin_samplers_are_checked_in_the_recipe() {
    let text = variant_text("d1_hinge");
    let with = |mismatch: &str| {
        text.replace(
            "loss: \"gan_losses.hinge\", loss_params: (input: \"prob\")",
            &format!("noise: \"samplers.truncated_normal\", {mismatch}"),
        )
    };
    let plugins = [lib("stackflow_samplers")];
    let g = temp_graph("samplers-ok", &with("mismatch: \"samplers.class_aware\", mismatch_params: (tag: 1),"));
    let out = with_plugins(&["check", g.to_str().unwrap()], &plugins);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let g = temp_graph("samplers-bad", &with("mismatch: \"samplers.class_aware\", mismatch_params: (tags: 1),"));
    let out = with_plugins(&["check", g.to_str().unwrap()], &plugins);
    refused(&out, "graph::unknown_attribute");
    assert!(flat(&out.stderr).contains("tags"), "{}", out.stderr);
    // The noise sampler's own attributes.
    let g = temp_graph("noise-params", &with("noise_params: (truncation: 0.5),"));
    let out = with_plugins(&["check", g.to_str().unwrap()], &plugins);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let g = temp_graph("noise-params-bad", &with("noise_params: (truncate: 0.5),"));
    let out = with_plugins(&["check", g.to_str().unwrap()], &plugins);
    refused(&out, "graph::unknown_attribute");
    assert!(flat(&out.stderr).contains("truncation"), "{}", out.stderr);
    let g = temp_graph("samplers-role", &with("mismatch: \"samplers.truncated_normal\", mismatch_params: (),"));
    let out = with_plugins(&["check", g.to_str().unwrap()], &plugins);
    refused(&out, "is not a mismatch sampler");
}

#[test]
fn the_tutorial_plugin_builds_loads_and_runs() {
    let tutorial = lib("custom_block_plugin");
    let out = with_plugins(&["plugins", "list"], std::slice::from_ref(&tutorial));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("tutorial.gated_conv"), "{}", out.stdout);
    let graph = "examples/custom-block-plugin/graph.ron";
    let out = with_plugins(&["check", graph], std::slice::from_ref(&tutorial));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let inputs = temp_graph("tutorial-inputs", "").with_extension("safetensors");
    write_safetensors(
        &inputs,
        &[("img", vec![2, 3, 16, 16], (0..2 * 3 * 256).map(|i| (i % 7) as f32 / 7.0).collect())],
    );
    let output = inputs.with_extension("out.safetensors");
    let args =
        ["forward", graph, "--net", "enc", "--inputs", inputs.to_str().unwrap(), "--output", output.to_str().unwrap()];
    let out = with_plugins(&args, std::slice::from_ref(&tutorial));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = stackflow_core::exec::weights::read_all(&output).unwrap();
    assert_eq!(t["code"].0, vec![2, 16, 8, 8]);
}

#[test]
fn every_variant_trains_a_few_steps() {
    let (gan, attn) = (lib("stackflow_gan_losses"), lib("stackflow_example_block"));
    let cases: [(&str, Vec<String>); 7] = [
        ("d1_projection", vec![]),
        ("d1_uncond", vec![]),
        ("d1_patch", vec![]),
        ("d1_hinge", vec![gan.clone()]),
        ("d1_relativistic", vec![gan]),
        ("d1_attention", vec![attn.clone()]),
        ("d1_spectral", vec![attn]),
    ];
    for (name, plugins) in cases {
        let out_dir = std::env::temp_dir().join(format!("stackflow-variant-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out_dir);
        let file = format!("graphs/variants/{name}.ron");
        let args = [
            "run",
            &file,
            "--quiet",
            "--max-steps",
            "2",
            "--set",
            "gf_dim=4",
            "--set",
            "df_dim=4",
            "--out",
            out_dir.to_str().unwrap(),
        ];
        let out = with_plugins(&args, &plugins);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stdout.contains("stopped after 2"), "{name}: {}", out.stdout);
        let _ = std::fs::remove_dir_all(&out_dir);
    }
}
