//! Golden tests against StackGAN-Pytorch (tests/fixtures, see its README): the reference
//! weights load through the `stackgan-pytorch` weight map, and forward outputs in eval and
//! train mode, the io loss, every parameter and input gradient, and the BatchNorm running
//! statistics match to the manifest's tolerances, for g1, d1, g2 and d2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfdx::prelude::*;
use stackflow_core::exec::ops::{Binary, Ops};
use stackflow_core::exec::weights::{self, external_name, Naming};
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::ir::{self, BuildOptions, Flow, Role};
use stackflow_core::registry::Registry;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap()).unwrap()
}

fn hash_uniform(n: usize, tag: u32, scale_pow2: i32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let mut x = i.wrapping_add(tag.wrapping_mul(0x9E37_79B9));
            x ^= x >> 16;
            x = x.wrapping_mul(0x7FEB_352D);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846C_A68B);
            x ^= x >> 16;
            ((x >> 8) as i32 - (1 << 23)) as f32 * 2f32.powi(scale_pow2)
        })
        .collect()
}

/// The fixture's tensors: stored ones, hash-generated ones, and subsampling strides.
struct Fixture {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    strides: HashMap<String, usize>,
}

impl Fixture {
    fn open(file: &str) -> Self {
        let path = fixtures().join(file);
        let mut tensors: HashMap<_, _> = weights::read_all(&path).unwrap().into_iter().collect();
        for g in manifest()["generated_tensors"].as_array().unwrap() {
            if g["file"] == file {
                let shape: Vec<usize> = g["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let n = shape.iter().product();
                let data = hash_uniform(n, g["tag"].as_u64().unwrap() as u32, g["scale_pow2"].as_i64().unwrap() as i32);
                tensors.insert(g["name"].as_str().unwrap().to_string(), (shape, data));
            }
        }
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut strides = HashMap::new();
        if let Some(m) = meta.metadata().as_ref().and_then(|m| m.get("fixture")) {
            let j: serde_json::Value = serde_json::from_str(m).unwrap();
            if let Some(sub) = j["subsampled"].as_object() {
                for (k, v) in sub {
                    strides.insert(k.clone(), v["stride"].as_u64().unwrap() as usize);
                }
            }
        }
        Fixture { tensors, strides }
    }

    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture has no `{name}`"))
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Compare ours (full, C order) with the fixture's `name`; return (max_rel, l2_rel).
    fn compare(&self, name: &str, ours: &[f32]) -> (f64, f64) {
        let want = &self.get(name).1;
        let stride = self.strides.get(name).copied().unwrap_or(1);
        let got: Vec<f32> = ours.iter().step_by(stride).copied().collect();
        assert_eq!(got.len(), want.len(), "{name}: length (stride {stride})");
        let max_b = want.iter().fold(0f64, |m, b| m.max((*b as f64).abs()));
        let max_d = got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        let l2_d: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
        let l2_b: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        let rel = |d: f64, b: f64| if b == 0.0 { d } else { d / b };
        (rel(max_d, max_b), rel(l2_d, l2_b))
    }
}

fn tol(category: &str) -> (f64, f64) {
    let t = &manifest()["tolerances"]["recommended"]["free_running"][category];
    (t["max_rel"].as_f64().unwrap(), t["l2_rel"].as_f64().unwrap())
}

fn check(fx: &Fixture, name: &str, ours: &[f32], category: &str, failures: &mut Vec<String>) {
    let (max_rel, l2_rel) = fx.compare(name, ours);
    let (tm, tl) = tol(category);
    if max_rel > tm && l2_rel > tl {
        failures.push(format!("{name}: max_rel {max_rel:.2e} (tol {tm:.0e}), l2_rel {l2_rel:.2e} (tol {tl:.0e})"));
    }
}

fn flow() -> Flow {
    let c = &manifest()["config"];
    let set = |k: &str, v: &str| format!("{k}={}", c[v].as_u64().unwrap());
    let overrides = vec![
        set("embed_dim", "embed_dim"),
        set("z_dim", "z_dim"),
        set("cond_dim", "cond_dim"),
        set("gf_dim", "gf_dim"),
        set("df_dim", "df_dim"),
        set("r_num", "r_num"),
    ];
    let parsed = stackflow_core::dsl::load(&root().join("graphs/stackgan256.ron")).unwrap();
    ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions { overrides }).unwrap()
}

/// Run the io protocol of the fixture README for one net.
fn io_case(net_name: &str, prefix: &str, stage: &str, eps_paths: &[(&str, &str)]) {
    let flow = flow();
    let net = flow.net(net_name).unwrap();
    let fx = Fixture::open(&format!("{prefix}.io.safetensors"));
    let naming = Naming::Mapped("stackgan-pytorch".into());
    let mut store = ParamStore::new(Cpu::default());
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
    let eval = |store: &mut ParamStore<Cpu>, tag: &str, failures: &mut Vec<String>| {
        let mut nz = noise();
        let mut r: Runner<Cpu, NoneTape> = Runner::new(Cpu::default(), false, &mut nz);
        let feeds: Vec<(usize, _)> = net
            .inputs
            .iter()
            .map(|(n, v)| {
                let (s, d) = fx.get(&format!("in.{n}"));
                (*v, r.push(Val::from_host(&Cpu::default(), d.clone(), s).unwrap()))
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
    let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(Cpu::default(), true, &mut nz);
    let mut input_handles = Vec::new();
    let feeds: Vec<(usize, _)> = net
        .inputs
        .iter()
        .map(|(n, v)| {
            let (s, d) = fx.get(&format!("in.{n}"));
            let h = r.push(Val::from_host(&Cpu::default(), d.clone(), s).unwrap());
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
            let dims = r.shape(*h).unwrap();
            let w = r.constant(&fx.get(&wkey).1, &dims).unwrap();
            let prod = r.binary(Binary::Mul, *h, w).unwrap();
            let s = r.sum(prod).unwrap();
            loss = Some(match loss {
                None => s,
                Some(l) => r.binary(Binary::Add, l, s).unwrap(),
            });
        }
    }
    let loss = loss.expect("a loss weight");
    check(&fx, "loss", &r.read(loss).unwrap(), &format!("{stage}.io_train_output"), &mut failures);
    let param_vals: Vec<(String, Val<Cpu>)> = net.params.iter().map(|p| (p.path.clone(), store.get(&p.path).unwrap().value.clone())).collect();
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
    let want: Vec<f32> = v["tag 7021 scale 2^-23 first 4"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
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
