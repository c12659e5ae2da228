//! Golden tests against StackGAN-Pytorch (tests/fixtures, see its README): the reference
//! weights load through the `stackgan-pytorch` weight map, and forward outputs in eval and
//! train mode, the io loss, every parameter and input gradient, and the BatchNorm running
//! statistics match to the manifest's tolerances, for g1, d1, g2 and d2.

use crate::common;

use common::{add_weighted_sum, check, fixtures, flow, hash_uniform, manifest, Fixture};
use dfdx::prelude::*;
use stackflow_core::exec::weights::{self, external_name, Naming};
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::kernels::KernelDevice;
use stackflow_core::kind::Role;
use stackflow_core::ops::Ops;

/// Run the io protocol of the fixture README for one net, on the CPU.
fn io_case(net_name: &str, prefix: &str, stage: &str, eps_paths: &[(&str, &str)]) {
    io_case_on(Cpu::default(), net_name, prefix, stage, eps_paths);
}

/// Run the io protocol of the fixture README for one net on `dev`.
fn io_case_on<D: KernelDevice>(dev: D, net_name: &str, prefix: &str, stage: &str, eps_paths: &[(&str, &str)]) {
    let flow = flow();
    let net = flow.net(net_name).unwrap();
    let fx = Fixture::open(&format!("{prefix}.io.safetensors"));
    let naming = Naming::Mapped("stackgan-pytorch".into());
    let mut store = ParamStore::new(dev.clone());
    weights::load(&mut store, &flow, net, &fixtures().join(format!("{prefix}.weights.safetensors")), &naming).unwrap();
    let mut failures = Vec::new();
    let noise = || {
        let mut n = NoiseSource::seeded(0);
        for (ours, theirs) in eps_paths {
            n.give(*ours, fx.get(&format!("in.eps.{theirs}")).1.clone());
        }
        n
    };
    let out_names: Vec<String> = net.outputs.iter().map(|(n, _)| n.clone()).collect();
    let wanted: Vec<usize> = net.outputs.iter().map(|(_, v)| *v).collect();

    // Eval forward, twice: with the initial running stats, and after the train forward.
    let eval = |store: &mut ParamStore<D>, tag: &str, failures: &mut Vec<String>| {
        let mut nz = noise();
        let mut r: Runner<D, NoneTape> = Runner::new(dev.clone(), false, &mut nz);
        let feeds: Vec<(usize, _)> = net
            .inputs
            .iter()
            .map(|(n, v)| {
                let (s, d) = fx.get(&format!("in.{n}"));
                (*v, r.push(Val::from_host(&dev, d.clone(), s).unwrap()))
            })
            .collect();
        let outs = r.run_net(net, store, &feeds, &wanted).unwrap();
        for (name, h) in out_names.iter().zip(&outs) {
            let key = format!("{tag}.{name}");
            if fx.has(&key) {
                check(&fx, &key, &r.read(*h).unwrap(), &format!("{stage}.io_eval_output"), failures);
            }
        }
    };
    eval(&mut store, "eval_init", &mut failures);

    // Train forward, the io loss and its gradients.
    let mut nz = noise();
    let mut r: Runner<D, OwnedTape<f32, D>> = Runner::new(dev.clone(), true, &mut nz);
    let mut input_handles = Vec::new();
    let feeds: Vec<(usize, _)> = net
        .inputs
        .iter()
        .map(|(n, v)| {
            let (s, d) = fx.get(&format!("in.{n}"));
            let h = r.push(Val::from_host(&dev, d.clone(), s).unwrap());
            input_handles.push((n.clone(), h));
            (*v, h)
        })
        .collect();
    let outs = r.run_net(net, &mut store, &feeds, &wanted).unwrap();
    let mut loss = None;
    for (name, h) in out_names.iter().zip(&outs) {
        let key = format!("train.{name}");
        if fx.has(&key) {
            check(&fx, &key, &r.read(*h).unwrap(), &format!("{stage}.io_train_output"), &mut failures);
        }
        let wkey = format!("lossw.{name}");
        if fx.has(&wkey) {
            loss = Some(add_weighted_sum(&mut r, loss, *h, &fx.get(&wkey).1));
        }
    }
    let loss = loss.expect("a loss weight");
    check(&fx, "loss", &r.read(loss).unwrap(), &format!("{stage}.io_train_output"), &mut failures);
    let param_vals: Vec<(String, Val<D>)> =
        net.params.iter().map(|p| (p.path.clone(), store.get(&p.path).unwrap().value.clone())).collect();
    let mut grads = r.backward(loss).unwrap();
    let trainable = net.trainable_params();
    for (i, p) in net.params.iter().enumerate() {
        let key = external_name(&flow, &naming, net_name, &p.path).unwrap();
        if p.spec.role == Role::Trainable && trainable.contains(&i) {
            let g = grad_of(&mut grads, &param_vals[i].1);
            check(&fx, &format!("grad.{key}"), &g, &format!("{stage}.io_grad"), &mut failures);
        } else if p.spec.role == Role::Buffer {
            let after = store.get(&p.path).unwrap().value.to_vec();
            check(&fx, &format!("after_train.{key}"), &after, &format!("{stage}.io_running_stats"), &mut failures);
        }
    }
    for (n, h) in &input_handles {
        let key = format!("grad.in.{n}");
        if fx.has(&key) {
            let v = r.val(*h).unwrap().clone();
            check(&fx, &key, &grad_of(&mut grads, &v), &format!("{stage}.io_grad"), &mut failures);
        }
    }
    drop(r);
    eval(&mut store, "eval", &mut failures);
    assert!(failures.is_empty(), "{net_name} differs from the reference:\n{}", failures.join("\n"));
}

#[test]
fn hash_inputs_match_the_manifest_vectors() {
    let v = &manifest()["hash_uniform_test_vectors"];
    let want: Vec<f32> =
        v["tag 7021 scale 2^-23 first 4"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(hash_uniform(4, 7021, -23), want);
}

#[test]
fn stage1_generator_matches_reference() {
    io_case("g1", "stage1_g", "stage1", &[("ca", "ca_net")]);
}

#[test]
fn stage1_discriminator_matches_reference() {
    io_case("d1", "stage1_d", "stage1", &[]);
}

#[test]
fn stage2_generator_matches_reference() {
    io_case("g2", "stage2_g", "stage2", &[("ca", "ca_net"), ("stage1.ca", "STAGE1_G.ca_net")]);
}

#[test]
fn stage2_discriminator_matches_reference() {
    io_case("d2", "stage2_d", "stage2", &[]);
}

/// The same protocol on a GPU: `cargo test -p stackflow-core --features cuda --test suite golden::`.
#[cfg(feature = "cuda")]
#[test]
fn all_nets_match_reference_on_cuda() {
    let dev = stackflow_core::exec::cuda(0).expect("a CUDA device");
    io_case_on(dev.clone(), "g1", "stage1_g", "stage1", &[("ca", "ca_net")]);
    io_case_on(dev.clone(), "d1", "stage1_d", "stage1", &[]);
    io_case_on(dev.clone(), "g2", "stage2_g", "stage2", &[("ca", "ca_net"), ("stage1.ca", "STAGE1_G.ca_net")]);
    io_case_on(dev, "d2", "stage2_d", "stage2", &[]);
}
