//! Every registered block kind, built-in or from a plugin, driven from the registry with
//! the probes the kind declares (`BlockKind::probes`, a plugin's `Block::PROBES`): the
//! shape inference predicts the real output shape, and the gradients of every input and
//! parameter agree with central finite differences (which catches lost fan-out gradients
//! and dfdx's overwriting `slice` backward too). A kind without probes fails the test.

use std::sync::Arc;

use dfdx::prelude::{Cpu, NoneTape, OwnedTape};
use rand::{Rng, SeedableRng};
use stackflow_core::error::SourceFile;
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::ir::{self, BuildOptions, Net};
use stackflow_core::kind::{Probe, Role};
use stackflow_core::ops::{Binary, Ops};
use stackflow_core::registry::Registry;

/// A one-node net around `kind`, with the node's input read twice where it has one
/// input (fan-out: both consumers must contribute gradients).
fn one_node(reg: &Registry, kind: &str, attrs: &str, shapes: &[Vec<usize>]) -> Net {
    let inputs: Vec<String> = shapes.iter().enumerate().map(|(i, s)| format!("x{i}: {s:?}")).collect();
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("\"x{i}\"")).collect();
    let ports = {
        let text = format!(
            "Flow(name: \"probe\", nets: {{ \"n\": Net(inputs: ({}), nodes: [(\"b\", \"{kind}\", {attrs}, [{}])], outputs: (o: \"b\")) }})",
            inputs.join(", "),
            names.join(", ")
        );
        let p = stackflow_core::dsl::parse(SourceFile::new("probe", text)).unwrap();
        let flow = ir::build(Arc::new(p), reg, &BuildOptions::default()).unwrap();
        flow.nets[0].nodes[0].block.ports()
    };
    let outs: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("o{i}: \"b.{p}\"")).collect();
    let mut nodes = vec![format!("(\"b\", \"{kind}\", {attrs}, [{}])", names.join(", "))];
    let mut outs = outs;
    if shapes.len() == 1 && kind != "core.detach" {
        nodes.push("(\"echo\", \"core.tanh\", (), [\"x0\"])".into());
        outs.push("echo: \"echo\"".into());
    }
    let text = format!(
        "Flow(name: \"probe\", nets: {{ \"n\": Net(inputs: ({}), nodes: [{}], outputs: ({})) }})",
        inputs.join(", "),
        nodes.join(", "),
        outs.join(", ")
    );
    let p = stackflow_core::dsl::parse(SourceFile::new("probe", text)).unwrap();
    ir::build(Arc::new(p), reg, &BuildOptions::default()).unwrap().nets.remove(0)
}

const BATCH: usize = 3;

/// Kinds whose input is integer ids (below 5 in their case), not differentiable.
const IDS: [&str; 1] = ["core.embedding"];

struct Harness {
    net: Net,
    inputs: Vec<Vec<f32>>,
    weights: Vec<Vec<f32>>,
    eps: Vec<f32>,
}

impl Harness {
    fn feeds<T: dfdx::prelude::Tape<f32, Cpu>>(
        &self,
        r: &mut Runner<Cpu, T>,
        inputs: &[Vec<f32>],
    ) -> Vec<(usize, stackflow_core::ops::Tensor)> {
        self.net
            .inputs
            .iter()
            .zip(inputs)
            .map(|((_, v), data)| {
                let mut dims = vec![BATCH];
                dims.extend_from_slice(self.net.values[*v].shape.dims());
                (*v, r.push(Val::from_host(&Cpu::default(), data.clone(), &dims).unwrap()))
            })
            .collect()
    }

    fn noise(&self) -> NoiseSource {
        let mut n = NoiseSource::seeded(0);
        n.give("b", self.eps.clone());
        n
    }

    /// L = Σ_out Σ w·out, evaluated in f64 from a plain forward (train mode).
    fn loss(&self, store: &ParamStore<Cpu>, inputs: &[Vec<f32>]) -> f64 {
        let mut store = store.clone();
        let mut nz = self.noise();
        let mut r: Runner<Cpu, NoneTape> = Runner::new(Cpu::default(), true, &mut nz);
        let feeds = self.feeds(&mut r, inputs);
        let wanted: Vec<usize> = self.net.outputs.iter().map(|(_, v)| *v).collect();
        let outs = r.run_net(&self.net, &mut store, &feeds, &wanted).unwrap();
        outs.iter()
            .zip(&self.weights)
            .map(|(h, w)| r.read(*h).unwrap().iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>())
            .sum()
    }
}

#[test]
fn every_block_infers_its_real_shape_and_passes_a_gradient_check() {
    let reg = crate::plugins::registry();
    let mut missing = Vec::new();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for (kind, k, _) in reg.blocks().iter() {
        let probes = k.probes();
        if probes.is_empty() {
            missing.push(kind.to_string());
        }
        checked.push(kind.to_string());
        for Probe { attrs, inputs: shapes } in probes {
            let attrs = attrs.as_str();
            // Each case draws from its own seed, so adding a kind leaves the others' draws.
            let seed = format!("{kind}{attrs}")
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let net = one_node(&reg, kind, attrs, &shapes);
            let mut store = ParamStore::new(Cpu::default());
            store.init_net(&net, 5).unwrap();
            // Larger weights than the N(0, 0.02) init keep pre-activations away from the
            // ReLU kinks, where finite differences mean nothing.
            for p in net.params.iter().filter(|p| p.spec.role == Role::Trainable) {
                let data: Vec<f32> = (0..p.spec.numel()).map(|_| rng.gen_range(-0.7..0.7)).collect();
                store.set(&p.path, Val::from_host(&Cpu::default(), data, &p.spec.shape).unwrap()).unwrap();
            }
            // Inputs away from 0, where ReLU-like kinks would fool finite differences.
            let ids = IDS.contains(&kind);
            let mut away = || match () {
                _ if ids => rng.gen_range(0..5) as f32,
                _ if rng.gen_bool(0.5) => rng.gen_range(0.05..1.0),
                _ => rng.gen_range(-1.0..-0.05),
            };
            let inputs: Vec<Vec<f32>> =
                shapes.iter().map(|s| (0..BATCH * s.iter().product::<usize>()).map(|_| away()).collect()).collect();
            let weights: Vec<Vec<f32>> = net
                .outputs
                .iter()
                .map(|(_, v)| (0..BATCH * net.values[*v].shape.numel()).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect();
            let node_b = net.nodes.iter().find(|n| n.path == "b").unwrap();
            let cond_out = node_b
                .block
                .infer(&shapes.iter().map(|s| stackflow_core::kind::Shape(s.clone())).collect::<Vec<_>>())
                .map(|i| i.outputs.first().map(|s| s.numel()).unwrap_or(0))
                .unwrap_or(0);
            let eps: Vec<f32> = (0..BATCH * cond_out).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let probe = Harness { net, inputs, weights, eps };

            // Analytic gradients; run_net also checks every output against the inferred shape.
            let mut nz = probe.noise();
            let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(Cpu::default(), true, &mut nz);
            let feeds = probe.feeds(&mut r, &probe.inputs);
            let wanted: Vec<usize> = probe.net.outputs.iter().map(|(_, v)| *v).collect();
            let mut st = store.clone();
            let outs = r.run_net(&probe.net, &mut st, &feeds, &wanted).unwrap();
            let mut total = None;
            for (h, w) in outs.iter().zip(&probe.weights) {
                let dims = r.shape(*h).unwrap();
                let want: Vec<usize> = std::iter::once(BATCH)
                    .chain(
                        probe.net.values[wanted[outs.iter().position(|x| x == h).unwrap()]]
                            .shape
                            .dims()
                            .iter()
                            .copied(),
                    )
                    .collect();
                assert_eq!(dims, want, "{kind} {attrs}: real output shape differs from the inferred one");
                let c = r.constant(w, &dims).unwrap();
                let m = r.binary(Binary::Mul, *h, c).unwrap();
                let s = r.sum(m).unwrap();
                total = Some(match total {
                    None => s,
                    Some(t) => r.binary(Binary::Add, t, s).unwrap(),
                });
            }
            let input_vals: Vec<Val<Cpu>> = feeds.iter().map(|(_, h)| r.val(*h).unwrap().clone()).collect();
            let param_vals: Vec<(String, Val<Cpu>)> = probe
                .net
                .params
                .iter()
                .filter(|p| p.spec.role == Role::Trainable)
                .map(|p| (p.path.clone(), store.get(&p.path).unwrap().value.clone()))
                .collect();
            let mut grads = r.backward(total.unwrap()).unwrap();

            if kind == "core.detach" {
                let g = grad_of(&mut grads, &input_vals[0]);
                assert!(g.iter().all(|v| *v == 0.0), "core.detach lets gradients through");
                continue;
            }
            // Central finite differences on a sample of elements of every input and parameter.
            let h = 2e-3f32;
            let mut check = |what: &str, analytic: &[f32], perturb: &mut dyn FnMut(usize, f32) -> f64| {
                let n = analytic.len();
                for i in (0..n).step_by((n / 12).max(1)) {
                    let fd = (perturb(i, h) - perturb(i, -h)) / (2.0 * h as f64);
                    let a = analytic[i] as f64;
                    if (fd - a).abs() > 2e-2 * (1.0 + a.abs().max(fd.abs())) {
                        failures.push(format!(
                            "{kind} {attrs}: d/d{what}[{i}] analytic {a:.5} vs finite difference {fd:.5}"
                        ));
                    }
                }
            };
            for (k, v) in input_vals.iter().enumerate().filter(|_| !ids) {
                let g = grad_of(&mut grads, v);
                check(&format!("x{k}"), &g, &mut |i, d| {
                    let mut xs = probe.inputs.clone();
                    xs[k][i] += d;
                    probe.loss(&store, &xs)
                });
            }
            for (path, v) in &param_vals {
                let g = grad_of(&mut grads, v);
                check(path, &g, &mut |i, d| {
                    let mut s2 = store.clone();
                    let mut data = v.to_vec();
                    data[i] += d;
                    s2.set(path, Val::from_host(&Cpu::default(), data, &v.dims()).unwrap()).unwrap();
                    probe.loss(&s2, &probe.inputs)
                });
            }
        }
    }
    assert!(missing.is_empty(), "kinds without probes: {missing:?}");
    for plugin_kind in [
        "example.self_attention",
        "example.minibatch_stddev",
        "example.sn_conv2d",
        "tutorial.gated_conv",
        "linked.swish",
    ] {
        assert!(checked.iter().any(|k| k == plugin_kind), "{plugin_kind} was not checked: {checked:?}");
    }
    assert!(failures.is_empty(), "gradient check failures:\n{}", failures.join("\n"));
}
