//! Checkpoints restore only into the graph that wrote them (issue 11): a checkpoint of
//! another graph whose parameter names happen to fit is refused, not half-loaded.

use std::path::Path;
use std::sync::Arc;

use stackflow_core::error::SourceFile;
use stackflow_core::exec::{cpu, ParamStore};
use stackflow_core::ir::{self, BuildOptions, Flow};
use stackflow_core::registry::Registry;
use stackflow_core::train::checkpoint::{self, Meta, Position};
use stackflow_core::train::game::Optimizers;

fn flow(text: &str) -> Flow {
    let parsed = stackflow_core::dsl::parse(SourceFile::new("t.ron", text)).unwrap();
    ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions::default()).unwrap()
}

/// One net `n` of one linear node `a`.
const ONE_LINEAR: &str = r#"Flow(name: "c", nets: { "n": Net(inputs: (x: [4]), nodes: [("a", "core.linear", (out: 2), ["x"])], outputs: (y: "a")) })"#;

/// Checkpoint metadata at `step` after `t` Adam steps of each player.
fn meta(step: u64, t: u64) -> Meta {
    Meta {
        position: Position { stage: 0, epoch: 0, step, stage_done: false },
        seed: 0,
        graph_hash: String::new(),
        overrides: Vec::new(),
        adam_t: (t, t),
        run_id: String::new(),
    }
}

fn store(f: &Flow) -> ParamStore<dfdx::prelude::Cpu> {
    let mut s = ParamStore::new(cpu(0));
    for net in &f.nets {
        s.init_net(net, 1).unwrap();
    }
    s
}

#[test]
fn a_checkpoint_missing_parameters_of_the_graph_is_refused() {
    let small = ONE_LINEAR;
    let big = small
        .replace(r#"outputs: (y: "a")"#, r#"outputs: (y: "b")"#)
        .replace(r#"["x"])]"#, r#"["x"]), ("b", "core.linear", (out: 2), ["a"])]"#);
    let (fs, fb) = (flow(small), flow(&big));
    let dir = std::env::temp_dir().join(format!("stackflow-ckpt-{}", std::process::id()));
    let path = dir.join("ckpt.safetensors");
    let meta = meta(0, 0);
    checkpoint::save(&path, &store(&fs), &Optimizers::default(), &meta).unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    let mut into_small = store(&fs);
    checkpoint::restore(&mut into_small, &loaded, Path::new("ckpt")).unwrap();
    let mut into_big = store(&fb);
    let e = checkpoint::restore(&mut into_big, &loaded, Path::new("ckpt")).unwrap_err();
    assert_eq!(e.code_str(), "checkpoint::incomplete", "{e:?}");
    assert!(e.message().contains("n.b.weight"), "{}", e.message());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn adam_moments_that_do_not_fit_their_parameter_are_refused() {
    let f = flow(ONE_LINEAR);
    let dir = std::env::temp_dir().join(format!("stackflow-ckpt-moments-{}", std::process::id()));
    let meta = meta(1, 1);
    for (key, len) in [("n.a.weight", 3), ("n.gone", 8)] {
        let mut opt = Optimizers::default();
        opt.g.moments.insert(key.to_string(), (vec![0.0; len], vec![0.0; len]));
        let path = dir.join(format!("{len}.safetensors"));
        checkpoint::save(&path, &store(&f), &opt, &meta).unwrap();
        let e = checkpoint::load(&path).err().expect("refused");
        assert_eq!(e.code_str(), "checkpoint::corrupt", "{e:?}");
        assert!(e.message().contains(key), "{}", e.message());
    }
    let _ = std::fs::remove_dir_all(dir);
}
