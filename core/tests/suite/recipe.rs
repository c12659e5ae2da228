//! The recipe lowered onto the nets: a stage's `frozen` list keeps the named nets'
//! parameters out of training wherever its G or D embeds them.

use std::sync::Arc;

use dfdx::prelude::Cpu;
use rand::{Rng, SeedableRng};
use stackflow_core::error::SourceFile;
use stackflow_core::exec::ParamStore;
use stackflow_core::ir::{self, BuildOptions};
use stackflow_core::registry::Registry;
use stackflow_core::train::game::{self, Batch, Optimizers};
use stackflow_core::{dsl, Result};

/// tests/graphs/tiny2.ron with g2 embedding g1 unfrozen, and the stage's own `frozen` list
/// replaced by `frozen`.
fn flow(frozen: &str) -> Result<ir::Flow> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphs/tiny2.ron");
    let text = std::fs::read_to_string(path).expect("tests/graphs/tiny2.ron is readable");
    let text = text
        .replace(r#"("stage1", "g1", (frozen: true), ["emb", "z"])"#, r#"("stage1", "g1", (), ["emb", "z"])"#)
        .replace(r#"frozen: ["g1"]"#, &format!("frozen: {frozen}"));
    assert!(!text.contains("frozen: true"), "the embedding node changed: update this test");
    let parsed = dsl::parse(SourceFile::new("tiny2-unfrozen.ron", text))?;
    ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions::default())
}

/// One iteration of stage `st` on a random batch of 4, from fresh Adam state.
fn one_iteration(flow: &ir::Flow, st: &game::StageSetup, store: &mut ParamStore<Cpu>) -> game::Report {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (b, s) = (4, st.image_size);
    let batch = Batch {
        real: (0..b * 3 * s * s).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        emb: (0..b * st.embed_dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        tags: vec![Vec::new(); b],
    };
    let mut opt = Optimizers::default();
    game::iteration(flow, st, (store, &mut opt), game::Step::on(&batch), &mut rng).expect("one iteration")
}

/// Which of g1's parameters one stage-2 iteration changes.
fn g1_params_changed(frozen: &str) -> Vec<bool> {
    let flow = flow(frozen).expect("the variant builds");
    let st = game::setup(&flow, &Registry::with_builtins(), 1).expect("stage 2 sets up");
    let mut store = ParamStore::new(Cpu::default());
    for net in &flow.nets {
        store.init_net(net, 3).expect("parameters initialise");
    }
    let g1 = flow.net("g1").expect("g1");
    let before: Vec<Vec<f32>> =
        g1.trainable_params().iter().map(|&p| store.get(&g1.params[p].path).unwrap().value.to_vec()).collect();
    one_iteration(&flow, &st, &mut store);
    g1.trainable_params()
        .iter()
        .zip(before)
        .map(|(&p, old)| store.get(&g1.params[p].path).unwrap().value.to_vec() != old)
        .collect()
}

#[test]
fn a_stage_does_not_train_the_nets_it_freezes() {
    let changed = g1_params_changed(r#"["g1"]"#);
    assert!(!changed.is_empty());
    assert!(changed.iter().all(|c| !c), "frozen: [\"g1\"] left g1 trainable: {changed:?}");
    // Without the list, the same iteration trains g1 through g2 (the test can fail).
    let changed = g1_params_changed("[]");
    assert!(changed.iter().any(|c| *c), "g1 did not train even unfrozen");
}

#[test]
fn a_generator_without_its_ports_is_refused_when_the_flow_is_built() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphs/tiny2.ron");
    // Every generator's noise input renamed: wired fine, but not what the game feeds.
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("z: [\"z_dim\"]", "noise: [\"z_dim\"]")
        .replace("\"z\"", "\"noise\"");
    let parsed = dsl::parse(SourceFile::new("tiny2-no-z.ron", text)).unwrap();
    let err = ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions::default()).unwrap_err();
    assert_eq!(err.code_str(), "graph::missing_input", "{err:?}");
    assert!(err.message().contains("no input `z`"), "{}", err.message());
}

/// One stage-1 iteration of tests/graphs/tiny2.ron with `augment` set to `policy`: its
/// report and whether every G parameter moved.
fn stage1_with_augment(policy: &str) -> (game::Report, bool) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphs/tiny2.ron");
    let text = std::fs::read_to_string(path).unwrap().replace(
        r#"name: "stage1", generator: "g1", discriminator: "d1","#,
        &format!(r#"name: "stage1", generator: "g1", discriminator: "d1", augment: {policy},"#),
    );
    assert!(text.contains("augment:"), "stage 1 of tiny2 changed: update this test");
    let parsed = dsl::parse(SourceFile::new("tiny2-augment.ron", text)).unwrap();
    let flow = ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions::default()).unwrap();
    let st = game::setup(&flow, &Registry::with_builtins(), 0).unwrap();
    let mut store = ParamStore::new(Cpu::default());
    for net in &flow.nets {
        store.init_net(net, 3).unwrap();
    }
    let g1 = flow.net("g1").unwrap();
    let weights = |store: &ParamStore<Cpu>| {
        g1.trainable_params().iter().map(|&p| store.get(&g1.params[p].path).unwrap().value.to_vec()).collect::<Vec<_>>()
    };
    let before = weights(&store);
    let report = one_iteration(&flow, &st, &mut store);
    let moved = weights(&store).iter().zip(&before).all(|(a, b)| a != b);
    (report, moved)
}

#[test]
fn diff_augment_changes_what_d_sees_and_g_still_learns_through_it() {
    let (plain, _) = stage1_with_augment("[]");
    let (aug, g_moved) = stage1_with_augment("[Color, Translation, Cutout]");
    let d = |r: &game::Report| r.term("D").unwrap();
    assert!(d(&aug).is_finite() && aug.term("G").unwrap().is_finite());
    assert_ne!(d(&plain), d(&aug), "D saw the same images with and without DiffAugment");
    assert!(g_moved, "a G parameter got no gradient through the augmented fakes");
}
