//! Memory of a training iteration, counted by the heap-accounting allocator: the executor
//! must let go of activations after their last use and of gradients once consumed, so one
//! Stage-I iteration holds about one copy of G's activations, not a slab of every value
//! plus the gradient of every value (which is what it held before, about twice the bound).
//! Gradients of leaves (inputs, parameters) survive backward; those of computed values not.

mod common;

use std::alloc::System;

use dfdx::prelude::{Cpu, NoneTape, OwnedTape};
use rand::{Rng, SeedableRng};
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::ir::estimate;
use stackflow_core::mem::{self, Counting};
use stackflow_core::ops::Ops;
use stackflow_core::registry::Registry;
use stackflow_core::train::game::{self, Batch, Optimizers};

#[global_allocator]
static ALLOC: Counting<System> = Counting(System);

/// The counters are process-wide: one measurement at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_training_iteration_holds_at_most_one_copy_of_the_activations() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flow = common::flow();
    let st = game::setup(&flow, &Registry::with_builtins(), 0).unwrap();
    let (g, d) = (&flow.nets[st.g], &flow.nets[st.d]);
    let b = 16;
    let mut store = ParamStore::new(Cpu::default());
    store.init_net(g, 1).unwrap();
    store.init_net(d, 2).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let s = st.image_size;
    let batch = Batch {
        real: (0..b * 3 * s * s).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        emb: (0..b * st.embed_dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        tags: vec![Vec::new(); b],
    };
    let mut opt = Optimizers::default();
    // The first iteration creates the Adam moments; measure the second.
    game::iteration(&flow, &st, (&mut store, &mut opt), game::Step::on(&batch), &mut rng).unwrap();
    mem::reset_peak();
    let base = mem::live().expect("the counting allocator is installed");
    game::iteration(&flow, &st, (&mut store, &mut opt), game::Step::on(&batch), &mut rng).unwrap();
    let used = mem::peak().unwrap() - base;

    // G's activations once, and D's for its three passes (real, fake, fake again in G's step).
    let acts = |n| estimate::stats(n).activation_bytes as usize * b;
    let bound = acts(g) + 3 * acts(d);
    assert!(used <= bound, "an iteration took {used} bytes above its start, more than {bound}");
    assert!(used >= acts(g) / 4, "{used} bytes is too little to have run G at all: is the counter working?");
}

#[test]
fn sampling_keeps_only_what_the_next_node_reads() {
    // Without a tape nothing holds a value once its readers ran: the peak is a few layers
    // (holding every value, as before, is at least all of them).
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flow = common::flow();
    let gi = flow.nets.iter().position(|n| n.name == "g1").unwrap();
    let g = &flow.nets[gi];
    let b = 16;
    let mut store = ParamStore::new(Cpu::default());
    store.init_net(g, 1).unwrap();
    let (e, z) = (g.values[g.input("emb").unwrap()].shape.numel(), g.values[g.input("z").unwrap()].shape.numel());
    let dev = store.dev.clone();
    let sample = |store: &mut ParamStore<Cpu>| {
        let mut noise = NoiseSource::seeded(0);
        let mut r: Runner<Cpu, NoneTape> = Runner::new(dev.clone(), false, &mut noise);
        let eh = r.push(Val::from_host(&dev, vec![0.1; b * e], &[b, e]).unwrap());
        let zh = r.push(Val::from_host(&dev, vec![0.1; b * z], &[b, z]).unwrap());
        let feeds = [(g.input("emb").unwrap(), eh), (g.input("z").unwrap(), zh)];
        let out = r.run_net(g, store, &feeds, &[g.output("fake_img").unwrap()]).unwrap();
        assert!(r.val(out[0]).is_ok(), "the wanted output is kept");
    };
    // The first run fills the kernels' buffer pool and the GEMM's per-thread buffers.
    sample(&mut store);
    mem::reset_peak();
    let base = mem::live().unwrap();
    sample(&mut store);
    let used = mem::peak().unwrap() - base;
    let all = estimate::stats(g).activation_bytes as usize * b;
    assert!(used <= all * 3 / 4, "sampling took {used} bytes; all activations are {all}");
}

#[test]
fn backward_keeps_leaf_gradients_and_frees_the_others() {
    // Allocates, so it takes its turn with the measuring tests.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flow = common::flow();
    let g = flow.nets.iter().find(|n| n.name == "g1").unwrap();
    let b = 2;
    let mut store = ParamStore::new(Cpu::default());
    store.init_net(g, 1).unwrap();
    let (e, z) = (g.values[g.input("emb").unwrap()].shape.numel(), g.values[g.input("z").unwrap()].shape.numel());
    let dev = store.dev.clone();
    let mut noise = NoiseSource::seeded(0);
    let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
    let emb = Val::from_host(&dev, vec![0.1; b * e], &[b, e]).unwrap();
    let (eh, zh) = (r.push(emb.clone()), r.push(Val::from_host(&dev, vec![0.1; b * z], &[b, z]).unwrap()));
    let feeds = [(g.input("emb").unwrap(), eh), (g.input("z").unwrap(), zh)];
    let out = r.run_net(g, &mut store, &feeds, &[g.output("fake_img").unwrap()]).unwrap();
    let fake = r.val(out[0]).unwrap().clone();
    let loss = r.mean(out[0]).unwrap();
    let mut grads = r.backward(loss).unwrap();
    let weight = &store.get(&g.params[g.trainable_params()[0]].path).unwrap().value;
    assert_eq!(grad_of(&mut grads, &emb).len(), b * e, "an input's gradient survives");
    assert!(grad_of(&mut grads, &emb).iter().any(|v| *v != 0.0));
    assert_eq!(grad_of(&mut grads, weight).len(), weight.numel(), "a parameter's gradient survives");
    assert!(grad_of(&mut grads, &fake).is_empty(), "a computed value's gradient is freed once spent");
}
