//! Plugins loaded into the core host: a plugin loss gives the same values and gradients as
//! the same loss built in; the attention block's forward matches a plain reference and
//! its gradients match finite differences; samplers draw from the host's generator; a
//! whole GAN iteration runs with a plugin block, loss and samplers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfdx::prelude::*;
use rand::SeedableRng;
use stackflow_core::dsl;
use stackflow_core::error::SourceFile;
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::ir::{self, BuildOptions, Flow};
use stackflow_core::kind::attrs::{Attr, Attrs};
use stackflow_core::kind::{Loss, Outs, SamplerImpl};
use stackflow_core::ops::{Binary, Ops, Tensor as H};
use stackflow_core::plugin;
use stackflow_core::registry::Registry;
use stackflow_plugin_api as api;
use stackflow_test_util::{dll_name, hash_uniform, plugin_dir};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lib(stem: &str) -> PathBuf {
    plugin_dir().join(dll_name(stem))
}

/// The built-in kinds, those of every plugin in the workspace, and one kind written
/// against the plugin API and linked in.
pub(crate) fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    for l in ["stackflow_gan_losses", "stackflow_samplers", "stackflow_example_block", "custom_block_plugin"] {
        plugin::load(&mut r, &lib(l)).unwrap();
    }
    plugin::link(&mut r, "linked", "0.1.0", |r| r.block::<LinkedSwish>()).unwrap();
    r
}

/// A block kind `$name` written against the plugin API: x·σ(x), same shape.
macro_rules! swish_kind {
    ($t:ident, $name:literal) => {
        struct $t;

        impl api::Block for $t {
            const NAME: &'static str = $name;
            const DOC: &'static str = "x·σ(x), same shape";
            const PROBES: &'static [api::Probe] = &[("()", &[&[3, 2]])];
            fn configure(_: &mut api::Attrs) -> api::Result<Self> {
                Ok(Self)
            }
            fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<api::Inferred, String> {
                Ok(api::Inferred::outputs([inputs[0].clone()]))
            }
            fn forward<'a>(
                &self,
                _: &'a api::Ops,
                x: &[api::Tensor<'a>],
                _: &[api::Tensor<'a>],
            ) -> api::Result<Vec<api::Tensor<'a>>> {
                Ok(vec![x[0] * x[0].sigmoid()])
            }
        }
    };
}

// Linked into this test binary and checked by the registry-driven suite.
swish_kind!(LinkedSwish, "linked.swish");
// `core.` is stackflow's namespace, linked or loaded.
swish_kind!(Squatter, "core.squatter");

#[test]
fn linked_kinds_join_the_registry_under_the_loaded_rules() {
    let r = registry();
    let (_, _, source) = r.blocks().iter().find(|(n, _, _)| *n == "linked.swish").unwrap();
    assert_eq!(source.to_string(), "linked plugin `linked`");
    let mut r2 = Registry::with_builtins();
    let e = plugin::link(&mut r2, "squat", "0.1.0", |r| r.block::<Squatter>()).unwrap_err();
    assert_eq!(e.code_str(), "plugin::bad_kind", "{e:?}");
    let mut r3 = r.clone();
    let e = plugin::link(&mut r3, "again", "0.1.0", |r| r.block::<LinkedSwish>()).unwrap_err();
    assert_eq!(e.code_str(), "registry::duplicate_kind", "{e:?}");
}

/// Attributes from RON text (no source spans), as a graph file would give them to `kind`.
pub(crate) fn with_attrs<R>(kind: &str, attrs: &str, configure: impl FnOnce(&mut Attrs) -> R) -> R {
    let v: ron::Value = ron::from_str(attrs).unwrap();
    let items = dsl::entries(&v)
        .unwrap()
        .into_iter()
        .map(|(name, value)| Attr { name, value, span: (0, 0).into(), key_span: None })
        .collect();
    let vars = Default::default();
    let src = SourceFile::new("test", attrs);
    let mut a = Attrs::new(items, &vars, &src, (0, 0).into(), kind);
    let out = configure(&mut a);
    a.finish().unwrap();
    out
}

/// Configure a loss kind from RON attribute text.
fn loss(r: &Registry, kind: &str, attrs: &str) -> Arc<dyn Loss> {
    let k = r.losses().get(kind).unwrap_or_else(|| panic!("{kind} is registered"));
    with_attrs(kind, attrs, |a| k.configure(a).unwrap())
}

fn sampler(r: &Registry, kind: &str, attrs: &str) -> SamplerImpl {
    let k = r.samplers().get(kind).unwrap_or_else(|| panic!("{kind} is registered"));
    with_attrs(kind, attrs, |a| k.configure(a).unwrap())
}

/// `n` deterministic values in [0, 1).
pub(crate) fn hash(n: usize, tag: u32) -> Vec<f32> {
    hash_uniform(n, tag, -24).into_iter().map(|u| u + 0.5).collect()
}

/// D outputs as probabilities in (0.02, 0.98) for `names`, batch `b`.
#[derive(Clone)]
pub(crate) struct Probs {
    pub(crate) vals: Vec<(String, Val<Cpu>)>,
}

impl Probs {
    pub(crate) fn new(dev: &Cpu, names: &[&str], b: usize, tag: u32) -> Self {
        let vals = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let data: Vec<f32> = hash(b, tag * 10 + i as u32).into_iter().map(|u| 0.02 + 0.96 * u).collect();
                (n.to_string(), Val::from_host(dev, data, &[b, 1]).unwrap())
            })
            .collect();
        Self { vals }
    }

    /// Replace output `o`'s values.
    pub(crate) fn set(&mut self, o: usize, dev: &Cpu, data: &[f32]) {
        let dims = self.vals[o].1.dims();
        self.vals[o].1 = Val::from_host(dev, data.to_vec(), &dims).unwrap();
    }

    pub(crate) fn push(&self, r: &mut Runner<Cpu, OwnedTape<f32, Cpu>>) -> Outs {
        self.vals.iter().map(|(n, v)| (n.clone(), r.push(v.clone()))).collect()
    }
}

/// D and G loss values and the gradients of their totals w.r.t. every D output.
pub(crate) fn run_loss(l: &dyn Loss, real: &Probs, wrong: &Probs, fake: &Probs) -> (f32, f32, Vec<Vec<f32>>) {
    let dev = Cpu::default();
    let mut noise = NoiseSource::seeded(0);
    let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
    let (ro, wo, fo) = (real.push(&mut r), wrong.push(&mut r), fake.push(&mut r));
    let d = l.d_loss(&mut r, &ro, &wo, &fo).unwrap();
    let g = l.g_loss(&mut r, &ro, &fo).unwrap();
    let both = r.binary(Binary::Add, d.total, g.total).unwrap();
    let (dv, gv) = (r.read(d.total).unwrap()[0], r.read(g.total).unwrap()[0]);
    let mut grads = r.backward(both).unwrap();
    let all = real.vals.iter().chain(&wrong.vals).chain(&fake.vals);
    (dv, gv, all.map(|(_, v)| grad_of(&mut grads, v)).collect())
}

#[test]
fn plugin_bce_gives_the_builtin_losses_and_gradients() {
    let r = registry();
    let builtin = loss(&r, "stackgan.matching_aware_bce", "()");
    let plugin = loss(&r, "gan_losses.bce", "()");
    assert_eq!(plugin.needs(), builtin.needs());
    assert_eq!(plugin.optional(), builtin.optional());
    let dev = Cpu::default();
    for heads in [&["cond_prob"][..], &["cond_prob", "uncond_prob"][..]] {
        let real = Probs::new(&dev, heads, 6, 1);
        let wrong = Probs::new(&dev, &["cond_prob"], 5, 2);
        let fake = Probs::new(&dev, heads, 6, 3);
        let (bd, bg, bgrads) = run_loss(&*builtin, &real, &wrong, &fake);
        let (pd, pg, pgrads) = run_loss(&*plugin, &real, &wrong, &fake);
        assert_eq!((pd, pg), (bd, bg), "loss values with heads {heads:?}");
        assert_eq!(pgrads, bgrads, "gradients with heads {heads:?}");
        assert!(bgrads.iter().flatten().any(|g| *g != 0.0));
    }
}

/// Finite-difference gradient of `f` at `x` (central, step `h`).
pub(crate) fn fd(f: &dyn Fn(&[f32]) -> f32, x: &[f32], h: f32) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

#[test]
fn hinge_and_least_squares_follow_their_formulas() {
    let r = registry();
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let dev = Cpu::default();
    let real = Probs::new(&dev, &["cond_prob"], 4, 4);
    let wrong = Probs::new(&dev, &["cond_prob"], 3, 5);
    let fake = Probs::new(&dev, &["cond_prob"], 4, 6);
    let get = |p: &Probs| p.vals[0].1.to_vec().into_iter().map(|x| logit(x as f64)).collect::<Vec<f64>>();
    let (lr, lw, lf) = (get(&real), get(&wrong), get(&fake));
    let mean = |v: &[f64], f: &dyn Fn(f64) -> f64| v.iter().map(|x| f(*x)).sum::<f64>() / v.len() as f64;
    type Terms = (fn(f64) -> f64, fn(f64) -> f64, fn(f64) -> f64);
    let cases: [(&str, Terms); 2] = [
        ("gan_losses.hinge", (|l| (1.0 - l).max(0.0), |l| (1.0 + l).max(0.0), |l| -l)),
        ("gan_losses.least_squares", (|l| (l - 1.0).powi(2), |l| l * l, |l| (l - 1.0).powi(2))),
    ];
    for (kind, (t_real, t_fake, t_gen)) in cases {
        let l = loss(&r, kind, r#"(input: "prob")"#);
        let (d, g, grads) = run_loss(&*l, &real, &wrong, &fake);
        let want_d = mean(&lr, &t_real) + 0.5 * (mean(&lf, &t_fake) + mean(&lw, &t_fake));
        let want_g = mean(&lf, &t_gen);
        assert!((d as f64 - want_d).abs() < 1e-4 * want_d.abs().max(1.0), "{kind}: D {d} vs {want_d}");
        assert!((g as f64 - want_g).abs() < 1e-4 * want_g.abs().max(1.0), "{kind}: G {g} vs {want_g}");
        // d(D + G)/d p_real by finite differences of the formula on probabilities.
        let (wv, fv) = (wrong.vals[0].1.to_vec(), fake.vals[0].1.to_vec());
        let total = |pr: &[f32]| -> f32 {
            let lr: Vec<f64> = pr.iter().map(|p| logit(*p as f64)).collect();
            let lw: Vec<f64> = wv.iter().map(|p| logit(*p as f64)).collect();
            let lf: Vec<f64> = fv.iter().map(|p| logit(*p as f64)).collect();
            (mean(&lr, &t_real) + 0.5 * (mean(&lf, &t_fake) + mean(&lw, &t_fake)) + mean(&lf, &t_gen)) as f32
        };
        let want = fd(&total, &real.vals[0].1.to_vec(), 1e-3);
        for (a, b) in grads[0].iter().zip(&want) {
            assert!((a - b).abs() < 2e-3 + 1e-2 * b.abs(), "{kind}: grad {a} vs {b}");
        }
    }
}

#[test]
fn the_relativistic_loss_judges_each_side_against_the_other() {
    let r = registry();
    let logit = |p: f32| ((p / (1.0 - p)) as f64).ln();
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let dev = Cpu::default();
    let (wrong, fake) = (Probs::new(&dev, &["cond_prob"], 3, 5), Probs::new(&dev, &["cond_prob"], 4, 6));
    let l = loss(&r, "gan_losses.relativistic", "()");
    let logits = |p: &Probs| p.vals[0].1.to_vec().into_iter().map(logit).collect::<Vec<f64>>();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // rb(x ≻ y) or rb(x ≺ y): mean softplus(∓(x − mean y)).
    let rb = |x: &[f64], y: &[f64], more: bool| {
        let my = mean(y);
        mean(&x.iter().map(|v| softplus(if more { my - v } else { v - my })).collect::<Vec<_>>())
    };
    let mut g_values = Vec::new();
    for tag in [4, 7] {
        let real = Probs::new(&dev, &["cond_prob"], 4, tag);
        let (d, g, _) = run_loss(&*l, &real, &wrong, &fake);
        let (lr, lw, lf) = (logits(&real), logits(&wrong), logits(&fake));
        let want_d = rb(&lr, &lf, true) + 0.5 * (rb(&lf, &lr, false) + rb(&lw, &lr, false));
        let want_g = rb(&lf, &lr, true) + rb(&lr, &lf, false);
        assert!((d as f64 - want_d).abs() < 1e-4, "D {d} vs {want_d}");
        assert!((g as f64 - want_g).abs() < 1e-4, "G {g} vs {want_g}");
        g_values.push(g);
    }
    assert!((g_values[0] - g_values[1]).abs() > 1e-3, "G's loss reads D's real scores: {g_values:?}");
}

fn build(text: &str, r: &Registry) -> stackflow_core::Result<Flow> {
    let parsed = dsl::parse(SourceFile::new("test.ron", text))?;
    ir::build(Arc::new(parsed), r, &BuildOptions::default())
}

const ATTN: &str = r#"Flow(
    name: "attn",
    vars: (r: 2),
    nets: {
        "n": Net(
            inputs: (x: [4, 3, 2]),
            nodes: [("a", "example.self_attention", (reduction: "r"), ["x"])],
            outputs: (y: "a", map: "a.attention"),
        ),
    },
)"#;

/// SAGAN attention in plain f64, from the parameters and one sample x [C, N].
fn attention_ref(x: &[f64], c: usize, n: usize, p: &dyn Fn(&str) -> Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let conv = |w: &[f64], b: &[f64], out: usize| -> Vec<f64> {
        (0..out * n).map(|i| (0..c).map(|k| w[(i / n) * c + k] * x[k * n + i % n]).sum::<f64>() + b[i / n]).collect()
    };
    let cq = c / 2;
    let q = conv(&p("query.weight"), &p("query.bias"), cq);
    let k = conv(&p("key.weight"), &p("key.bias"), cq);
    let v = conv(&p("value.weight"), &p("value.bias"), c);
    let mut attn = vec![0.0; n * n];
    for i in 0..n {
        let e: Vec<f64> = (0..n).map(|j| (0..cq).map(|t| q[t * n + i] * k[t * n + j]).sum()).collect();
        let m = e.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = e.iter().map(|x| (x - m).exp()).sum();
        for j in 0..n {
            attn[i * n + j] = (e[j] - m).exp() / z;
        }
    }
    let gamma = p("gamma")[0];
    let y = (0..c * n)
        .map(|i| gamma * (0..n).map(|j| v[(i / n) * n + j] * attn[(i % n) * n + j]).sum::<f64>() + x[i])
        .collect();
    (y, attn)
}

/// One forward and backward pass of the attention test net.
struct Pass {
    /// sum(y · weights)
    total: f32,
    y: Vec<f32>,
    map: Vec<f32>,
    /// Gradients of `total` w.r.t. x and the query weight.
    gx: Vec<f32>,
    gq: Vec<f32>,
}

#[test]
fn attention_block_matches_a_reference_and_finite_differences() {
    let r = registry();
    let flow = build(ATTN, &r).unwrap();
    let net = flow.net("n").unwrap();
    let shapes: Vec<(String, Vec<usize>)> = net.params.iter().map(|p| (p.path.clone(), p.spec.shape.clone())).collect();
    assert!(shapes.contains(&("n.a.query.weight".into(), vec![2, 4, 1, 1])), "{shapes:?}");
    let dev = Cpu::default();
    let mut store = ParamStore::new(dev.clone());
    store.init_net(net, 7).unwrap();
    // γ = 0 at init makes the block the identity; give it a value so attention shows.
    store.set("n.a.gamma", Val::from_host(&dev, vec![0.7], &[1]).unwrap()).unwrap();
    for (i, (path, shape)) in shapes.iter().enumerate() {
        if path.ends_with("bias") {
            let n = shape.iter().product();
            store
                .set(
                    path,
                    Val::from_host(&dev, hash(n, 40 + i as u32).iter().map(|u| u - 0.5).collect(), shape).unwrap(),
                )
                .unwrap();
        } else if path.ends_with("weight") {
            let n = shape.iter().product();
            store
                .set(
                    path,
                    Val::from_host(&dev, hash(n, 50 + i as u32).iter().map(|u| (u - 0.5) * 1.5).collect(), shape)
                        .unwrap(),
                )
                .unwrap();
        }
    }
    let (b, c, n) = (2usize, 4usize, 6usize);
    let x: Vec<f32> = hash(b * c * n, 9).iter().map(|u| 2.0 * u - 1.0).collect();
    let weights: Vec<f32> = hash(b * c * n, 10);
    let (xv, yv) = (net.input("x").unwrap(), net.output("y").unwrap());
    let map_v = net.output("map").unwrap();

    // Forward and backward through the host, of sum(y · weights).
    let run = |store: &mut ParamStore<Cpu>, x: &[f32]| -> Pass {
        let mut noise = NoiseSource::seeded(0);
        let mut rn: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let xval = Val::from_host(&dev, x.to_vec(), &[b, c, 3, 2]).unwrap();
        let xh = rn.push(xval.clone());
        let outs = rn.run_net(net, store, &[(xv, xh)], &[yv, map_v]).unwrap();
        let w = rn.constant(&weights, &[b, c, 3, 2]).unwrap();
        let prod = rn.binary(Binary::Mul, outs[0], w).unwrap();
        let s: H = rn.sum(prod).unwrap();
        let (y, map, total) = (rn.read(outs[0]).unwrap(), rn.read(outs[1]).unwrap(), rn.read(s).unwrap()[0]);
        let mut grads = rn.backward(s).unwrap();
        let gx = grad_of(&mut grads, &xval);
        let gq = grad_of(&mut grads, &store.get("n.a.query.weight").unwrap().value);
        Pass { total, y, map, gx, gq }
    };
    let Pass { y, map, gx, gq, .. } = run(&mut store, &x);

    let param = |name: &str| {
        store.get(&format!("n.a.{name}")).unwrap().value.to_vec().into_iter().map(f64::from).collect::<Vec<f64>>()
    };
    for s in 0..b {
        let xs: Vec<f64> = x[s * c * n..(s + 1) * c * n].iter().map(|v| *v as f64).collect();
        let (yr, ar) = attention_ref(&xs, c, n, &param);
        for (i, want) in yr.iter().enumerate() {
            assert!((y[s * c * n + i] as f64 - want).abs() < 1e-4, "y[{s}][{i}] = {} vs {want}", y[s * c * n + i]);
        }
        for (i, want) in ar.iter().enumerate() {
            assert!((map[s * n * n + i] as f64 - want).abs() < 1e-5, "attention[{s}][{i}]");
        }
    }

    let loss_at = |store: &mut ParamStore<Cpu>, x: &[f32]| run(store, x).total;
    let want_gx = fd(&|xp: &[f32]| loss_at(&mut store.clone(), xp), &x, 1e-2);
    for (i, (a, w)) in gx.iter().zip(&want_gx).enumerate() {
        assert!((a - w).abs() < 5e-3 + 2e-2 * w.abs(), "d/dx[{i}]: {a} vs {w}");
    }
    let q0 = store.get("n.a.query.weight").unwrap().value.to_vec();
    let f_q = |qp: &[f32]| {
        let mut s = store.clone();
        s.set("n.a.query.weight", Val::from_host(&dev, qp.to_vec(), &[2, 4, 1, 1]).unwrap()).unwrap();
        loss_at(&mut s, &x)
    };
    let want_gq = fd(&f_q, &q0, 1e-2);
    for (i, (a, w)) in gq.iter().zip(&want_gq).enumerate() {
        assert!((a - w).abs() < 5e-3 + 2e-2 * w.abs(), "d/dquery.weight[{i}]: {a} vs {w}");
    }
}

#[test]
fn plugin_attribute_and_shape_errors_point_into_the_graph() {
    let r = registry();
    let e = build(&ATTN.replace("(reduction: \"r\")", "(reduction: \"r * q\")"), &r).unwrap_err();
    assert_eq!(e.code_str(), "graph::bad_expression", "{e:?}");
    let e = build(&ATTN.replace("(reduction: \"r\")", "(reduction: 2, heads: 4)"), &r).unwrap_err();
    assert_eq!(e.code_str(), "graph::unknown_attribute", "{e:?}");
    assert!(e.message().contains("heads"), "{e:?}");
    let e = build(&ATTN.replace("x: [4, 3, 2]", "x: [24]"), &r).unwrap_err();
    assert_eq!(e.code_str(), "graph::shape");
    assert!(e.message().contains("expects a feature map [C, H, W]") && e.message().contains("example"), "{e:?}");
    assert!(!e.spans().is_empty());
}

#[test]
fn samplers_draw_from_the_host_generator() {
    let r = registry();
    let SamplerImpl::Noise(t) = sampler(&r, "samplers.truncated_normal", "(truncation: 0.5)") else {
        panic!("a noise sampler")
    };
    let a = t.sample(&mut rand::rngs::StdRng::seed_from_u64(3), 16, 8).unwrap();
    let b = t.sample(&mut rand::rngs::StdRng::seed_from_u64(3), 16, 8).unwrap();
    assert_eq!(a.len(), 128);
    assert_eq!(a, b, "the run's seed decides plugin draws");
    assert!(a.iter().all(|x| x.abs() < 0.5));
    let SamplerImpl::Noise(p) = sampler(&r, "samplers.sphere_path", "(steps: 4)") else { panic!("a noise sampler") };
    let z = p.sample(&mut rand::rngs::StdRng::seed_from_u64(4), 8, 32).unwrap();
    assert_eq!(z.len(), 8 * 32);
    let SamplerImpl::Mismatch(m) = sampler(&r, "samplers.class_aware", "(tag: 1)") else {
        panic!("a mismatch sampler")
    };
    let tags = vec![vec![0, 1], vec![0, 1], vec![2, 3], vec![2, 5]];
    let pairs = m.pairs(&mut rand::rngs::StdRng::seed_from_u64(5), &tags).unwrap();
    assert_eq!(pairs.len(), 4);
    assert!(pairs.iter().all(|(i, j)| tags[*i][1] != tags[*j][1]), "{pairs:?}");
}

#[test]
fn a_gan_iteration_runs_with_a_plugin_block_loss_and_samplers() {
    use stackflow_core::train::game::{self, Batch, Optimizers};
    let r = registry();
    // The attention variant, with the plugins' loss and samplers laid over its stage 1.
    let stage = "Stage(name: \"stage1\", loss: \"gan_losses.hinge\", noise: \"samplers.truncated_normal\", mismatch: \"samplers.class_aware\", mismatch_params: (tag: 1))";
    let text = format!("Flow(extends: \"d1_attention.ron\", train: [{stage}])");
    let file = root().join("graphs/variants/with-plugin-recipe.ron");
    let parsed = dsl::parse(SourceFile::new(file.display().to_string(), text)).unwrap();
    assert_eq!(parsed.doc.train[0].loss, "gan_losses.hinge");
    let opts = BuildOptions { overrides: vec!["gf_dim=4".into(), "df_dim=8".into()] };
    let flow = ir::build(Arc::new(parsed), &r, &opts).unwrap();
    let st = game::setup(&flow, &r, 0).unwrap();
    let dev = Cpu::default();
    let mut store = ParamStore::new(dev);
    for net in &flow.nets {
        store.init_net(net, 1).unwrap();
    }
    let gamma0 = store.get("d1.attn.gamma").unwrap().value.to_vec();
    let b = 4;
    let batch = Batch {
        real: hash(b * 3 * 64 * 64, 11).iter().map(|u| 2.0 * u - 1.0).collect(),
        emb: hash(b * st.embed_dim, 12).iter().map(|u| u - 0.5).collect(),
        tags: vec![vec![0, 1], vec![0, 2], vec![1, 1], vec![1, 3]],
    };
    let mut opt = Optimizers::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let report = game::iteration(&flow, &st, (&mut store, &mut opt), game::Step::on(&batch), &mut rng).unwrap();
    for term in ["D", "G", "KL"] {
        assert!(report.term(term).is_some_and(f32::is_finite), "{term}: {:?}", report.terms);
    }
    // The plugin block's parameters are trained like any other.
    assert_ne!(store.get("d1.attn.gamma").unwrap().value.to_vec(), gamma0);
}

#[test]
fn a_panicking_plugin_loss_is_an_error_and_the_host_carries_on() {
    let mut r = Registry::with_builtins();
    plugin::load(&mut r, &plugin_dir().join("examples").join(dll_name("panicky"))).unwrap();
    let l = loss(&r, "panicky.loss", "()");
    let dev = Cpu::default();
    let probs = Probs::new(&dev, &["cond_prob"], 3, 1);
    let mut noise = NoiseSource::seeded(0);
    let mut rn: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev, true, &mut noise);
    let outs = probs.push(&mut rn);
    let e = l.d_loss(&mut rn, &outs, &outs, &outs).unwrap_err();
    assert_eq!(e.code_str(), "plugin::panic");
    assert_eq!(e.exit_code(), 1);
    assert!(e.message().contains("d_loss blew up") && e.message().contains("`panicky.loss`"), "{e:?}");
    let g = l.g_loss(&mut rn, &outs, &outs).unwrap();
    assert!(rn.read(g.total).unwrap()[0].is_finite());
}

/// A flow of one net `n` whose node `s` of `kind` reads input `x` and gives output `y`.
fn one_node_flow(x: &str, kind: &str, attrs: &str) -> String {
    format!(
        "Flow(name: \"probe\", nets: {{ \"n\": Net(inputs: (x: {x}), nodes: [(\"s\", \"{kind}\", {attrs}, [\"x\"])], outputs: (y: \"s\")) }})"
    )
}

/// The reductions along an axis of API revision 3, through the C ABI: ProGAN's minibatch
/// standard deviation against a plain f64 computation, and its gradient against finite
/// differences.
#[test]
fn minibatch_stddev_block_matches_a_reference_and_finite_differences() {
    let r = registry();
    let flow = build(&one_node_flow("[2, 2, 3]", "example.minibatch_stddev", "()"), &r).unwrap();
    let net = flow.net("n").unwrap();
    let dev = Cpu::default();
    let (b, c, hw) = (3usize, 2usize, 6usize);
    let x: Vec<f32> = hash(b * c * hw, 21).iter().map(|u| 2.0 * u - 1.0).collect();
    let weights: Vec<f32> = hash(b * (c + 1) * hw, 22);
    let (xv, yv) = (net.input("x").unwrap(), net.output("y").unwrap());
    let run = |x: &[f32]| -> (Vec<f32>, f32, Vec<f32>) {
        let mut noise = NoiseSource::seeded(0);
        let mut rn: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let xval = Val::from_host(&dev, x.to_vec(), &[b, c, 2, 3]).unwrap();
        let xh = rn.push(xval.clone());
        let outs = rn.run_net(net, &mut ParamStore::new(dev.clone()), &[(xv, xh)], &[yv]).unwrap();
        let w = rn.constant(&weights, &[b, c + 1, 2, 3]).unwrap();
        let prod = rn.binary(Binary::Mul, outs[0], w).unwrap();
        let s: H = rn.sum(prod).unwrap();
        let (y, total) = (rn.read(outs[0]).unwrap(), rn.read(s).unwrap()[0]);
        let mut grads = rn.backward(s).unwrap();
        (y, total, grad_of(&mut grads, &xval))
    };
    let (y, _, gx) = run(&x);

    let at = |s: usize, ch: usize, p: usize| x[(s * c + ch) * hw + p] as f64;
    let mut mean_std = 0.0;
    for ch in 0..c {
        for p in 0..hw {
            let m = (0..b).map(|s| at(s, ch, p)).sum::<f64>() / b as f64;
            let var = (0..b).map(|s| (at(s, ch, p) - m).powi(2)).sum::<f64>() / b as f64;
            mean_std += (var + 1e-8).sqrt() / (c * hw) as f64;
        }
    }
    for s in 0..b {
        for ch in 0..=c {
            for p in 0..hw {
                let want = if ch < c { at(s, ch, p) } else { mean_std };
                let got = y[(s * (c + 1) + ch) * hw + p] as f64;
                assert!((got - want).abs() < 1e-5, "y[{s}][{ch}][{p}] = {got} vs {want}");
            }
        }
    }
    let want_gx = fd(&|xp: &[f32]| run(xp).1, &x, 1e-2);
    for (i, (a, w)) in gx.iter().zip(&want_gx).enumerate() {
        assert!((a - w).abs() < 5e-3 + 2e-2 * w.abs(), "d/dx[{i}]: {a} vs {w}");
    }
}

/// A writable buffer (API revision 4, `Tensor::assign`): the spectrally normalised
/// convolution rewrites its power-iteration vector `u` in train mode only, and after a
/// few dozen training forwards (one iteration each, as PyTorch) its weight is divided by
/// the largest singular value, found here by a long power iteration in f64.
#[test]
fn spectral_norm_keeps_its_vector_in_a_buffer_and_divides_by_the_top_singular_value() {
    let r = registry();
    let flow = build(&one_node_flow("[4, 1, 1]", "example.sn_conv2d", "(out: 3, kernel: 1)"), &r).unwrap();
    let net = flow.net("n").unwrap();
    let dev = Cpu::default();
    let mut store = ParamStore::new(dev.clone());
    store.init_net(net, 3).unwrap();
    let path = |end: &str| net.params.iter().find(|p| p.path.ends_with(end)).unwrap().path.clone();
    let (wp, bp, up) = (path(".weight"), path(".bias"), path(".u"));
    let x: Vec<f32> = hash(2 * 4, 31).iter().map(|u| 2.0 * u - 1.0).collect();
    let (xv, yv) = (net.input("x").unwrap(), net.output("y").unwrap());
    let forward = |store: &mut ParamStore<Cpu>, training: bool| -> Vec<f32> {
        let mut noise = NoiseSource::seeded(0);
        let mut rn: Runner<Cpu, NoneTape> = Runner::new(dev.clone(), training, &mut noise);
        let xh = rn.push(Val::from_host(&dev, x.clone(), &[2, 4, 1, 1]).unwrap());
        let outs = rn.run_net(net, store, &[(xv, xh)], &[yv]).unwrap();
        rn.read(outs[0]).unwrap()
    };
    let u0 = store.get(&up).unwrap().value.to_vec();
    forward(&mut store, false);
    assert_eq!(store.get(&up).unwrap().value.to_vec(), u0, "an eval forward leaves u alone");
    forward(&mut store, true);
    assert_ne!(store.get(&up).unwrap().value.to_vec(), u0, "a training forward moves u");
    let mut y = Vec::new();
    for _ in 0..40 {
        y = forward(&mut store, true);
    }

    let w: Vec<f64> = store.get(&wp).unwrap().value.to_vec().iter().map(|v| *v as f64).collect();
    let b: Vec<f64> = store.get(&bp).unwrap().value.to_vec().iter().map(|v| *v as f64).collect();
    let (rows, cols) = (3, 4);
    let mut v = vec![1.0f64; cols];
    let mut sigma = 0.0;
    for _ in 0..500 {
        let u: Vec<f64> = (0..rows).map(|i| (0..cols).map(|j| w[i * cols + j] * v[j]).sum()).collect();
        sigma = u.iter().map(|a| a * a).sum::<f64>().sqrt();
        let wt_u: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| w[i * cols + j] * u[i]).sum()).collect();
        let n = wt_u.iter().map(|a| a * a).sum::<f64>().sqrt();
        v = wt_u.iter().map(|a| a / n).collect();
    }
    assert!((sigma - 1.0).abs() > 0.5, "the initial weight is far from norm 1 (σ = {sigma})");
    for s in 0..2 {
        for o in 0..rows {
            let want = (0..cols).map(|j| w[o * cols + j] * x[s * cols + j] as f64).sum::<f64>() / sigma + b[o];
            let got = y[s * rows + o] as f64;
            assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "y[{s}][{o}] = {got}, want {want}");
        }
    }
}
