//! One iteration of the StackGAN game, in the reference's order: one G forward; the D step
//! on (real, text), (real, mismatched text) and (fake, text) with separate D calls for real
//! and fake batches and G's detached CA mean as the condition; Adam on D; the G step
//! through the updated D with the KL term; Adam on G.

use std::sync::Arc;

use dfdx::prelude::{NoneTape, OwnedTape};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::adam::{Adam, AdamConfig};
use crate::dsl::{entries, Key, Optimizer};
use crate::error::{Error, Result};
use crate::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use crate::ir::{Flow, Net, Producer, ValueId};
use crate::kernels::KernelDevice;
use crate::kind::attrs::{Attr, Attrs};
use crate::kind::{Loss, MismatchSampler, NoiseSampler, Outs, SamplerImpl};
use crate::ops::{Binary, Ops, Tensor, Unary};
use crate::registry::Registry;

/// A stage of the recipe, resolved against the nets and the registry.
#[derive(Clone)]
pub struct StageSetup {
    /// Position in the recipe.
    pub index: usize,
    /// Stage name.
    pub name: String,
    /// Generator net (index into `flow.nets`).
    pub g: usize,
    /// Discriminator net.
    pub d: usize,
    /// The GAN loss.
    pub loss: Arc<dyn Loss>,
    /// Noise sampler for z.
    pub noise: Arc<dyn NoiseSampler>,
    /// Mismatched-pair sampler.
    pub mismatch: Arc<dyn MismatchSampler>,
    /// Weight of the KL term.
    pub kl_weight: f32,
    /// What D's condition is.
    pub d_condition: crate::dsl::DCondition,
    /// G's optimiser.
    pub opt_g: AdamConfig,
    /// D's optimiser.
    pub opt_d: AdamConfig,
    /// D outputs the loss reads.
    pub d_outputs: Vec<String>,
    /// Those of them that depend on the condition (computed for mismatched pairs).
    pub d_cond_outputs: Vec<String>,
    /// Noise width.
    pub z_dim: usize,
    /// Text embedding width.
    pub embed_dim: usize,
    /// Image side of this stage.
    pub image_size: usize,
}

fn adam_of(o: &Optimizer) -> AdamConfig {
    let Optimizer::Adam { lr, betas, eps } = o;
    AdamConfig { lr: *lr, betas: *betas, eps: *eps }
}

/// Resolve stage `index` of the recipe: kinds, attributes and the ports the game needs.
pub fn setup(flow: &Flow, registry: &Registry, index: usize) -> Result<StageSetup> {
    let p = &flow.parsed;
    let st = &p.doc.train[index];
    let at = |field: &str| vec![Key::from("train"), Key::Index(index), Key::from(field)];
    let attrs_of = |field: &str, v: &ron::Value| -> Result<Vec<Attr>> {
        let items = entries(v).ok_or_else(|| {
            p.error("graph::bad_value", &at(field), format!("`{field}` must be a map such as `(share: 0.5)`"))
        })?;
        Ok(items
            .into_iter()
            .map(|(name, value)| {
                let path = [at(field), vec![Key::from(name.as_str())]].concat();
                Attr { span: p.span(&path), key_span: p.spans.key_span(&path), name, value }
            })
            .collect())
    };
    let loss_kind = registry.losses().get(&st.loss).ok_or_else(|| {
        p.error("graph::unknown_kind", &at("loss"), format!("unknown loss `{}`", st.loss))
            .with_help(registry.losses().suggest(&st.loss))
    })?;
    let mut a =
        Attrs::new(attrs_of("loss_params", &st.loss_params)?, &flow.vars, &p.src, p.span(&at("loss")), &st.loss);
    let loss = loss_kind.configure(&mut a)?;
    a.finish()?;
    let sampler = |field: &str, kind: &str, params: &ron::Value, params_field: &str| -> Result<SamplerImpl> {
        let k = registry.samplers().get(kind).ok_or_else(|| {
            p.error("graph::unknown_kind", &at(field), format!("unknown sampler `{kind}`"))
                .with_help(registry.samplers().suggest(kind))
        })?;
        let mut a = Attrs::new(attrs_of(params_field, params)?, &flow.vars, &p.src, p.span(&at(field)), kind);
        let s = k.configure(&mut a)?;
        a.finish()?;
        Ok(s)
    };
    let SamplerImpl::Noise(noise) = sampler("noise", &st.noise, &ron::Value::Unit, "noise")? else {
        return Err(p.error("graph::bad_value", &at("noise"), format!("`{}` is not a noise sampler", st.noise)));
    };
    let SamplerImpl::Mismatch(mismatch) = sampler("mismatch", &st.mismatch, &st.mismatch_params, "mismatch_params")?
    else {
        return Err(p.error(
            "graph::bad_value",
            &at("mismatch"),
            format!("`{}` is not a mismatch sampler", st.mismatch),
        ));
    };
    let g = flow
        .nets
        .iter()
        .position(|n| n.name == st.generator)
        .ok_or_else(|| p.error("graph::unknown_net", &at("generator"), "no such net"))?;
    let d = flow
        .nets
        .iter()
        .position(|n| n.name == st.discriminator)
        .ok_or_else(|| p.error("graph::unknown_net", &at("discriminator"), "no such net"))?;
    let (gn, dn) = (&flow.nets[g], &flow.nets[d]);
    for input in ["emb", "z"] {
        if gn.input(input).is_none() {
            return Err(p.error(
                "graph::missing_input",
                &at("generator"),
                format!("generator `{}` has no input `{input}`", gn.name),
            ));
        }
    }
    let mut d_outputs = Vec::new();
    for o in loss.needs() {
        if dn.output(&o).is_none() {
            return Err(p
                .error(
                    "graph::missing_output",
                    &at("discriminator"),
                    format!("loss `{}` needs discriminator output `{o}`, which `{}` does not have", st.loss, dn.name),
                )
                .with_help(format!(
                    "`{}` outputs: {}",
                    dn.name,
                    dn.outputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )));
        }
        d_outputs.push(o);
    }
    d_outputs.extend(loss.optional().into_iter().filter(|o| dn.output(o).is_some()));
    let d_cond_outputs = match dn.input("cond") {
        Some(cond) => d_outputs.iter().filter(|o| depends_on(dn, dn.output(o).unwrap_or(0), cond)).cloned().collect(),
        None => d_outputs.clone(),
    };
    let shape_of = |n: &Net, v: ValueId| n.values[v].shape.dims().to_vec();
    let img = shape_of(gn, gn.output("fake_img").unwrap_or(0));
    Ok(StageSetup {
        index,
        name: st.name.clone(),
        g,
        d,
        loss,
        noise,
        mismatch,
        kl_weight: st.kl_weight as f32,
        d_condition: st.d_condition,
        opt_g: adam_of(&st.optimizer),
        opt_d: adam_of(st.d_optimizer.as_ref().unwrap_or(&st.optimizer)),
        d_outputs,
        d_cond_outputs,
        z_dim: shape_of(gn, gn.input("z").unwrap_or(0)).iter().product(),
        embed_dim: shape_of(gn, gn.input("emb").unwrap_or(0)).iter().product(),
        image_size: img.last().copied().unwrap_or(0),
    })
}

/// Whether value `v` of `net` depends on value `src`.
fn depends_on(net: &Net, v: ValueId, src: ValueId) -> bool {
    let mut stack = vec![v];
    let mut seen = vec![false; net.values.len()];
    while let Some(x) = stack.pop() {
        if x == src {
            return true;
        }
        if std::mem::replace(&mut seen[x], true) {
            continue;
        }
        if let Producer::Node { node, .. } = net.values[x].producer {
            stack.extend(net.nodes[node].inputs.iter().copied());
        }
    }
    false
}

/// One training batch on the host.
pub struct Batch {
    /// Real images `[B, 3, S, S]` in [-1, 1].
    pub real: Vec<f32>,
    /// Text embeddings `[B, E]`.
    pub emb: Vec<f32>,
    /// Dataset labels per sample (for mismatch samplers).
    pub tags: Vec<Vec<u32>>,
}

impl Batch {
    /// Batch size.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// Noise given from outside (parity tests): z and the ε of CA nodes by node path.
#[derive(Default)]
pub struct Injected {
    /// G's noise.
    pub z: Option<Vec<f32>>,
    /// ε per CA node path.
    pub eps: Vec<(String, Vec<f32>)>,
}

/// A gradient Adam consumed: (`'D'` or `'G'`, parameter path, values).
pub type KeptGrad = (char, String, Vec<f32>);

/// What one iteration produced.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Loss terms by name (`D`, `D_cond_real`, …, `G`, `KL`, `G_total`).
    pub terms: Vec<(String, f32)>,
    /// D's probabilities per pair kind (`cond_real`, …), for logs and tests.
    pub probs: Vec<(String, Vec<f32>)>,
    /// Gradients Adam consumed, when asked for.
    pub grads: Vec<KeptGrad>,
}

impl Report {
    /// A term by name.
    pub fn term(&self, name: &str) -> Option<f32> {
        self.terms.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// The optimiser state of a stage.
#[derive(Clone, Debug, Default)]
pub struct Optimizers {
    /// G's Adam.
    pub g: Adam,
    /// D's Adam.
    pub d: Adam,
}

fn read_scalar(ops: &mut dyn Ops, t: Tensor) -> Result<f32> {
    Ok(ops.read(t)?.first().copied().unwrap_or(f32::NAN))
}

fn named(net: &Net, names: &[String]) -> Result<Vec<ValueId>> {
    names
        .iter()
        .map(|n| {
            net.output(n)
                .ok_or_else(|| Error::other("train::output", format!("net `{}` has no output `{n}`", net.name)))
        })
        .collect()
}

/// Run the D heads for one pair kind; uses the `code` split when D exposes it.
#[allow(clippy::too_many_arguments)]
fn d_pass<D: KernelDevice, T: dfdx::prelude::Tape<f32, D>>(
    r: &mut Runner<D, T>,
    dn: &Net,
    store: &mut ParamStore<D>,
    code: Option<Tensor>,
    img: Tensor,
    cond: Option<Tensor>,
    outputs: &[String],
) -> Result<Outs> {
    let wanted = named(dn, outputs)?;
    let mut feeds = Vec::new();
    match (code, dn.output("code")) {
        (Some(c), Some(v)) => feeds.push((v, c)),
        _ => feeds.push((dn.input("img").unwrap_or(0), img)),
    }
    if let (Some(c), Some(v)) = (cond, dn.input("cond")) {
        feeds.push((v, c));
    }
    let hs = r.run_net(dn, store, &feeds, &wanted)?;
    Ok(outputs.iter().cloned().zip(hs).collect())
}

/// Apply Adam to `net`'s trainable parameters from the gradients of the last backward.
#[allow(clippy::too_many_arguments)]
fn step<D: KernelDevice>(
    store: &mut ParamStore<D>,
    net: &Net,
    params: &[(usize, Val<D>)],
    grads: &mut dfdx::prelude::Gradients<f32, D>,
    adam: &mut Adam,
    cfg: &AdamConfig,
    lr: f64,
    keep: Option<(char, &mut Vec<KeptGrad>)>,
) -> Result<()> {
    adam.begin_step();
    let mut kept = keep;
    for (p, v) in params {
        let g = grad_of(grads, v);
        let path = &net.params[*p].path;
        let mut data = v.to_vec();
        adam.update(cfg, lr, path, &mut data, &g);
        if let Some((tag, out)) = kept.as_mut() {
            out.push((*tag, path.clone(), g));
        }
        let nv = Val::from_host(&store.dev, data, &v.dims())?;
        store.set(path, nv)?;
    }
    Ok(())
}

/// One training iteration. `lr_scale` multiplies both learning rates (the schedule);
/// `keep_grads` copies every gradient Adam consumed into the report.
#[allow(clippy::too_many_arguments)]
pub fn iteration<D: KernelDevice>(
    flow: &Flow,
    st: &StageSetup,
    store: &mut ParamStore<D>,
    opt: &mut Optimizers,
    batch: &Batch,
    lr_scale: f64,
    rng: &mut StdRng,
    injected: Option<&Injected>,
    keep_grads: bool,
) -> Result<Report> {
    let (gn, dn) = (&flow.nets[st.g], &flow.nets[st.d]);
    let b = batch.len();
    let dev = store.dev.clone();
    let mut report = Report::default();
    let mut noise = NoiseSource::seeded(rng.next_u64());
    let z = match injected.and_then(|i| i.z.clone()) {
        Some(z) => z,
        None => st.noise.sample(rng, b, st.z_dim)?,
    };
    for (path, eps) in injected.map(|i| i.eps.as_slice()).unwrap_or(&[]) {
        noise.give(path.clone(), eps.clone());
    }
    let s = st.image_size;

    // G forward, kept on its own tape for the G step.
    let mut gr: Runner<D, OwnedTape<f32, D>> = Runner::new(dev.clone(), true, &mut noise);
    let emb = gr.push(Val::from_host(&dev, batch.emb.clone(), &[b, st.embed_dim])?);
    let zh = gr.push(Val::from_host(&dev, z, &[b, st.z_dim])?);
    let want = named(gn, &["fake_img".into(), "mu".into(), "logvar".into()])?;
    let feeds = [(gn.input("emb").unwrap_or(0), emb), (gn.input("z").unwrap_or(0), zh)];
    let g_params: Vec<(usize, Val<D>)> = gn
        .trainable_params()
        .into_iter()
        .map(|p| (p, store.get(&gn.params[p].path).map(|e| e.value.clone())))
        .map(|(p, v)| v.map(|v| (p, v)).ok_or_else(|| Error::other("train::param", "G parameter missing")))
        .collect::<Result<_>>()?;
    let outs = gr.run_net(gn, store, &feeds, &want)?;
    let (fake, mu, logvar) = (outs[0], outs[1], outs[2]);
    let fake_host = gr.read(fake)?;
    let mu_host = gr.read(mu)?;
    let cond_dim = mu_host.len() / b.max(1);

    // D step on a separate tape: fakes and condition enter as constants (detached).
    {
        let mut dnoise = NoiseSource::seeded(0);
        let mut dr: Runner<D, OwnedTape<f32, D>> = Runner::new(dev.clone(), true, &mut dnoise);
        let real = dr.push(Val::from_host(&dev, batch.real.clone(), &[b, 3, s, s])?);
        let fake_c = dr.push(Val::from_host(&dev, fake_host.clone(), &[b, 3, s, s])?);
        let cond = match st.d_condition {
            crate::dsl::DCondition::Mu => dr.push(Val::from_host(&dev, mu_host.clone(), &[b, cond_dim])?),
            crate::dsl::DCondition::Embedding => dr.push(Val::from_host(&dev, batch.emb.clone(), &[b, st.embed_dim])?),
        };
        let d_params: Vec<(usize, Val<D>)> = dn
            .trainable_params()
            .into_iter()
            .map(|p| {
                store
                    .get(&dn.params[p].path)
                    .map(|e| (p, e.value.clone()))
                    .ok_or_else(|| Error::other("train::param", "D parameter missing"))
            })
            .collect::<Result<_>>()?;
        let split = dn.output("code").is_some();
        let (real_code, fake_code) = if split {
            let c = dn.output("code").unwrap_or(0);
            let img = dn.input("img").unwrap_or(0);
            let rc = dr.run_net(dn, store, &[(img, real)], &[c])?[0];
            let fc = dr.run_net(dn, store, &[(img, fake_c)], &[c])?[0];
            (Some(rc), Some(fc))
        } else {
            (None, None)
        };
        let real_outs = d_pass(&mut dr, dn, store, real_code, real, Some(cond), &st.d_outputs)?;
        let pairs = st.mismatch.pairs(rng, &batch.tags)?;
        if pairs.is_empty() {
            return Err(Error::other("train::mismatch", "the mismatch sampler returned no pairs"));
        }
        let (imgs, texts): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
        let wrong_src = real_code.unwrap_or(real);
        let wrong_img = dr.select_rows(wrong_src, &imgs)?;
        let wrong_cond = dr.select_rows(cond, &texts)?;
        let wrong_outs = if split {
            d_pass(&mut dr, dn, store, Some(wrong_img), real, Some(wrong_cond), &st.d_cond_outputs)?
        } else {
            d_pass(&mut dr, dn, store, None, wrong_img, Some(wrong_cond), &st.d_cond_outputs)?
        };
        let fake_outs = d_pass(&mut dr, dn, store, fake_code, fake_c, Some(cond), &st.d_outputs)?;
        for (kind, outs) in [("real", &real_outs), ("wrong", &wrong_outs), ("fake", &fake_outs)] {
            for (n, h) in outs {
                let short = n.trim_end_matches("_prob");
                report.probs.push((format!("{short}_{kind}"), dr.read(*h)?));
            }
        }
        let terms = st.loss.d_loss(&mut dr, &real_outs, &wrong_outs, &fake_outs)?;
        report.terms.push(("D".into(), read_scalar(&mut dr, terms.total)?));
        for (n, t) in &terms.parts {
            report.terms.push((n.clone(), read_scalar(&mut dr, *t)?));
        }
        check_finite(&report, "D")?;
        let mut grads = dr.backward(terms.total)?;
        let keep = keep_grads.then_some(('D', &mut report.grads));
        step(store, dn, &d_params, &mut grads, &mut opt.d, &st.opt_d, st.opt_d.lr * lr_scale, keep)?;
    }

    // G step through the updated D, on G's tape.
    let cond = match st.d_condition {
        crate::dsl::DCondition::Mu => gr.detach(mu)?,
        crate::dsl::DCondition::Embedding => emb,
    };
    let fake_outs = d_pass(&mut gr, dn, store, None, fake, Some(cond), &st.d_outputs)?;
    for (n, h) in &fake_outs {
        report.probs.push((format!("g_{}_fake", n.trim_end_matches("_prob")), gr.read(*h)?));
    }
    let g_terms = st.loss.g_loss(&mut gr, &fake_outs)?;
    let kl = kl_term(&mut gr, mu, logvar)?;
    let weighted = gr.unary(Unary::Scale(st.kl_weight), kl)?;
    let total = gr.binary(Binary::Add, g_terms.total, weighted)?;
    report.terms.push(("G".into(), read_scalar(&mut gr, g_terms.total)?));
    for (n, t) in &g_terms.parts {
        report.terms.push((n.clone(), read_scalar(&mut gr, *t)?));
    }
    report.terms.push(("KL".into(), read_scalar(&mut gr, kl)?));
    report.terms.push(("G_total".into(), read_scalar(&mut gr, total)?));
    check_finite(&report, "G")?;
    let mut grads = gr.backward(total)?;
    drop(gr);
    let keep = keep_grads.then_some(('G', &mut report.grads));
    step(store, gn, &g_params, &mut grads, &mut opt.g, &st.opt_g, st.opt_g.lr * lr_scale, keep)?;
    Ok(report)
}

/// −½ · mean(1 + logvar − μ² − exp(logvar)) over batch and dims.
pub fn kl_term(ops: &mut dyn Ops, mu: Tensor, logvar: Tensor) -> Result<Tensor> {
    let one_plus = ops.unary(Unary::AddScalar(1.0), logvar)?;
    let mu2 = ops.unary(Unary::Square, mu)?;
    let ex = ops.unary(Unary::Exp, logvar)?;
    let a = ops.binary(Binary::Sub, one_plus, mu2)?;
    let a = ops.binary(Binary::Sub, a, ex)?;
    let m = ops.mean(a)?;
    ops.unary(Unary::Scale(-0.5), m)
}

fn check_finite(r: &Report, phase: &str) -> Result<()> {
    if let Some((n, v)) = r.terms.iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::other(
            "train::not_finite",
            format!("loss `{n}` is {v} in the {phase} step; stopping before anything is saved"),
        )
        .with_help("lower the learning rate, check the data for NaN, or resume from the last checkpoint"));
    }
    Ok(())
}

/// Generate a sample batch with `g` in eval mode (used for sample grids).
pub fn generate<D: KernelDevice>(
    flow: &Flow,
    g: usize,
    store: &mut ParamStore<D>,
    emb: &[f32],
    z: &[f32],
    training: bool,
    seed: u64,
) -> Result<Vec<f32>> {
    let gn = &flow.nets[g];
    let e = gn.values[gn.input("emb").unwrap_or(0)].shape.numel();
    let zd = gn.values[gn.input("z").unwrap_or(0)].shape.numel();
    let b = emb.len() / e.max(1);
    let mut noise = NoiseSource::seeded(seed);
    let dev = store.dev.clone();
    let mut r: Runner<D, NoneTape> = Runner::new(dev.clone(), training, &mut noise);
    let eh = r.push(Val::from_host(&dev, emb.to_vec(), &[b, e])?);
    let zh = r.push(Val::from_host(&dev, z.to_vec(), &[b, zd])?);
    let out = r.run_net(
        gn,
        store,
        &[(gn.input("emb").unwrap_or(0), eh), (gn.input("z").unwrap_or(0), zh)],
        &named(gn, &["fake_img".into()])?,
    )?;
    r.read(out[0])
}

/// A fresh generator for the iteration's randomness, from the run seed and step.
pub fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
