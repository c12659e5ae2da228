//! One iteration of the StackGAN game, in the reference's order: one G forward; the D step
//! on (real, text), (real, mismatched text) and (fake, text) with separate D calls for real
//! and fake batches and G's detached CA mean as the condition; Adam on D; the G step
//! through the updated D with the KL term; Adam on G.

use std::sync::Arc;

use dfdx::prelude::{NoneTape, OwnedTape};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::adam::{Adam, AdamConfig};
use super::augment::diff_augment;
use super::ema::Ema;
use crate::dsl::{entries, Key, Optimizer};
use crate::error::{Error, Result};
use crate::exec::runner::kerr;
use crate::exec::{NoiseSource, ParamStore, Runner, Val};
use crate::ir::{DiscriminatorPorts, Flow, GeneratorPorts, Net, Producer, ValueId};
use crate::kernels::{AdamKernel, AdamVisit, KernelDevice};
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
    /// The generator's and discriminator's ports.
    pub ports: (GeneratorPorts, DiscriminatorPorts),
    /// D outputs the loss reads, by name and value.
    pub d_outputs: Vec<(String, ValueId)>,
    /// Those of them that depend on the condition (computed for mismatched pairs).
    pub d_cond_outputs: Vec<(String, ValueId)>,
    /// Noise width.
    pub z_dim: usize,
    /// Text embedding width.
    pub embed_dim: usize,
    /// Image side of this stage.
    pub image_size: usize,
    /// Decay of the moving average of G's weights, if the stage keeps one.
    pub ema: Option<f32>,
    /// DiffAugment policies for every image batch D sees.
    pub augment: Vec<crate::dsl::Augment>,
}

fn adam_of(o: &Optimizer) -> AdamConfig {
    let Optimizer::Adam { lr, betas, eps } = o;
    AdamConfig { lr: *lr, betas: *betas, eps: *eps }
}

/// The attributes a recipe field gives (`loss_params`, `mismatch_params`, …), spanned.
fn recipe_attrs(flow: &Flow, index: usize, field: &str, v: &ron::Value) -> Result<Vec<Attr>> {
    let p = &flow.parsed;
    let at = vec![Key::from("train"), Key::Index(index), Key::from(field)];
    let items = entries(v)
        .ok_or_else(|| p.error("graph::bad_value", &at, format!("`{field}` must be a map such as `(share: 0.5)`")))?;
    Ok(items
        .into_iter()
        .map(|(name, value)| {
            let path = [at.clone(), vec![Key::from(name.as_str())]].concat();
            Attr { span: p.span(&path), key_span: p.spans.key_span(&path), name, value }
        })
        .collect())
}

/// The sampler a stage names in `field` (kind `kind`), configured with `params` (written
/// in `params_field`).
fn recipe_sampler(
    flow: &Flow,
    registry: &Registry,
    index: usize,
    [field, kind, params_field]: [&str; 3],
    params: &ron::Value,
) -> Result<SamplerImpl> {
    let p = &flow.parsed;
    let at = vec![Key::from("train"), Key::Index(index), Key::from(field)];
    let k = registry.samplers().get(kind).ok_or_else(|| {
        p.error("graph::unknown_kind", &at, format!("unknown sampler `{kind}`"))
            .with_help(registry.samplers().suggest(kind))
    })?;
    let mut a = Attrs::new(recipe_attrs(flow, index, params_field, params)?, &flow.vars, &p.src, p.span(&at), kind);
    let s = k.configure(&mut a)?;
    a.finish()?;
    Ok(s)
}

/// The noise sampler of stage `index`, with its `noise_params`.
pub fn stage_noise(flow: &Flow, registry: &Registry, index: usize) -> Result<Arc<dyn NoiseSampler>> {
    let st = &flow.parsed.doc.train[index];
    match recipe_sampler(flow, registry, index, ["noise", &st.noise, "noise_params"], &st.noise_params)? {
        SamplerImpl::Noise(noise) => Ok(noise),
        SamplerImpl::Mismatch(_) => Err(flow.parsed.error(
            "graph::bad_value",
            &["train".into(), Key::Index(index), "noise".into()],
            format!("`{}` is not a noise sampler", st.noise),
        )),
    }
}

/// Resolve stage `index` of the recipe: kinds, attributes and the ports the game needs.
pub fn setup(flow: &Flow, registry: &Registry, index: usize) -> Result<StageSetup> {
    let p = &flow.parsed;
    let st = &p.doc.train[index];
    let at = |field: &str| vec![Key::from("train"), Key::Index(index), Key::from(field)];
    let loss_kind = registry.losses().get(&st.loss).ok_or_else(|| {
        p.error("graph::unknown_kind", &at("loss"), format!("unknown loss `{}`", st.loss))
            .with_help(registry.losses().suggest(&st.loss))
    })?;
    let mut a = Attrs::new(
        recipe_attrs(flow, index, "loss_params", &st.loss_params)?,
        &flow.vars,
        &p.src,
        p.span(&at("loss")),
        &st.loss,
    );
    let loss = loss_kind.configure(&mut a)?;
    a.finish()?;
    let noise = stage_noise(flow, registry, index)?;
    let SamplerImpl::Mismatch(mismatch) =
        recipe_sampler(flow, registry, index, ["mismatch", &st.mismatch, "mismatch_params"], &st.mismatch_params)?
    else {
        return Err(p.error(
            "graph::bad_value",
            &at("mismatch"),
            format!("`{}` is not a mismatch sampler", st.mismatch),
        ));
    };
    let stage = &flow.stages[index];
    let (g, d, gp, dp) = (stage.g, stage.d, stage.g_ports, stage.d_ports);
    let gn = &flow.nets[g];
    let (d_outputs, d_cond_outputs) = d_outputs(flow, index, loss.as_ref())?;
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
        ports: (gp, dp),
        d_outputs,
        d_cond_outputs,
        z_dim: gp.z_dim(gn),
        embed_dim: gp.embed_dim(gn),
        image_size: gp.image_side(gn),
        ema: st.ema.map(|d| d as f32),
        augment: st.augment.clone(),
    })
}

/// The discriminator outputs `loss` reads (required and optional ones D has), by name
/// and value; and those of them that depend on the condition.
type NamedOutputs = Vec<(String, ValueId)>;

fn d_outputs(flow: &Flow, index: usize, loss: &dyn Loss) -> Result<(NamedOutputs, NamedOutputs)> {
    let (p, st, stage) = (&flow.parsed, &flow.parsed.doc.train[index], &flow.stages[index]);
    let at = |field: &str| vec![Key::from("train"), Key::Index(index), Key::from(field)];
    let dn = &flow.nets[stage.d];
    let mut d_outputs = Vec::new();
    for o in loss.needs() {
        let Some(v) = dn.output(&o) else {
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
        };
        d_outputs.push((o, v));
    }
    d_outputs.extend(loss.optional().into_iter().filter_map(|o| dn.output(&o).map(|v| (o, v))));
    let d_cond_outputs = match stage.d_ports.cond {
        Some(cond) => d_outputs.iter().filter(|(_, v)| depends_on(dn, *v, cond)).cloned().collect(),
        None => d_outputs.clone(),
    };
    Ok((d_outputs, d_cond_outputs))
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

/// The optimiser state of a stage, its Adam moments of type `M`: host vectors as a
/// checkpoint holds them, [`DeviceOptimizers`] while training.
#[derive(Clone, Debug)]
pub struct Optimizers<M = Vec<f32>> {
    /// G's Adam.
    pub g: Adam<M>,
    /// D's Adam.
    pub d: Adam<M>,
    /// The moving average of G's weights (empty unless the stage keeps one).
    pub ema: Ema,
}

/// The optimiser state as device `D` trains with it: the moments on the device.
pub type DeviceOptimizers<D> = Optimizers<<D as AdamKernel>::Moment>;

impl<M> Default for Optimizers<M> {
    fn default() -> Self {
        Self { g: Adam::default(), d: Adam::default(), ema: Ema::default() }
    }
}

impl<M> Optimizers<M> {
    /// The state a stage starts with after this one: fresh Adam moments and no average,
    /// but the trained weights that earlier averages replaced.
    pub fn next_stage(&self) -> Optimizers<M> {
        Optimizers { ema: self.ema.next_stage(), ..Optimizers::default() }
    }
}

impl Optimizers {
    /// This (a checkpoint's) state with its Adam moments on `dev`.
    pub fn to_device<D: KernelDevice>(&self, dev: &D) -> Result<DeviceOptimizers<D>> {
        let up = |m: Vec<f32>| dev.moment_from_host(m).map_err(kerr);
        let (g, d) = (self.g.clone().try_map(up)?, self.d.clone().try_map(up)?);
        Ok(Optimizers { g, d, ema: self.ema.clone() })
    }
}

fn read_scalar(ops: &mut dyn Ops, t: Tensor) -> Result<f32> {
    Ok(ops.read(t)?.first().copied().unwrap_or(f32::NAN))
}

/// D's inputs for one pair kind: the image (or its code, when D exposes one and it was
/// computed already) and the condition.
#[derive(Clone, Copy)]
enum Seen {
    /// The image, through the whole of D.
    Image(Tensor),
    /// The image code, through D's heads only.
    Code(Tensor),
}

/// Run D's heads for one pair kind and name the outputs the loss reads.
fn d_pass<D: KernelDevice, T: dfdx::prelude::Tape<f32, D>>(
    r: &mut Runner<D, T>,
    (dn, dp): (&Net, &DiscriminatorPorts),
    store: &mut ParamStore<D>,
    (seen, cond): (Seen, Tensor),
    outputs: &[(String, ValueId)],
) -> Result<Outs> {
    let mut feeds = vec![match (seen, dp.code) {
        (Seen::Code(c), Some(v)) => (v, c),
        (Seen::Image(img), _) => (dp.img, img),
        (Seen::Code(_), None) => {
            return Err(Error::other("train::d_code", format!("discriminator `{}` has no `code` output", dn.name)))
        }
    }];
    if let Some(v) = dp.cond {
        feeds.push((v, cond));
    }
    let wanted: Vec<ValueId> = outputs.iter().map(|(_, v)| *v).collect();
    let hs = r.run_net(dn, store, &feeds, &wanted)?;
    Ok(outputs.iter().map(|(n, _)| n.clone()).zip(hs).collect())
}

/// One optimiser step: the net, its trainable parameters with the values the backward
/// pass saw, its Adam state and settings, the learning rate of this iteration, and the
/// moving average the updated values move (G's, when the stage keeps one).
struct AdamArgs<'a, D: KernelDevice> {
    net: &'a Net,
    params: &'a [(usize, Val<D>)],
    adam: &'a mut Adam<D::Moment>,
    cfg: &'a AdamConfig,
    lr: f64,
    ema: Option<(&'a mut Ema, f32)>,
}

/// Apply Adam to the net's trainable parameters from the gradients of the last backward;
/// `keep` collects every gradient consumed, tagged `'D'` or `'G'`.
fn adam_step<D: KernelDevice>(
    store: &mut ParamStore<D>,
    s: AdamArgs<'_, D>,
    grads: &mut dfdx::prelude::Gradients<f32, D>,
    mut keep: Option<(char, &mut Vec<KeptGrad>)>,
) -> Result<()> {
    let AdamArgs { net, params, adam, cfg, lr, mut ema } = s;
    adam.begin_step();
    let step = adam.step(cfg, lr);
    let observed = ema.is_some() || keep.is_some();
    for (p, v) in params {
        let path = &net.params[*p].path;
        let mut consumed = Vec::new();
        let mut visit = |g: &[f32], new: &[f32]| {
            if let Some((avg, decay)) = ema.as_mut() {
                avg.update(*decay, path, new);
            }
            if keep.is_some() {
                consumed = g.to_vec();
            }
        };
        let moments = adam.moments_on(&store.dev, path, v.numel()).map_err(kerr)?;
        let updated = v.adam(&step, moments, grads, observed.then_some(&mut visit as AdamVisit<'_>))?;
        if let Some((tag, out)) = keep.as_mut() {
            out.push((*tag, path.clone(), consumed));
        }
        match updated {
            Some(nv) => store.set(path, nv)?,
            // No gradient, no step: the average still moves toward the unchanged value.
            None => {
                if let Some((avg, decay)) = ema.as_mut() {
                    avg.update(*decay, path, &v.to_vec());
                }
            }
        }
    }
    Ok(())
}

/// The parameters stage `st` trains in `net` (its G or D), with their current values.
fn trainable<D: KernelDevice>(
    flow: &Flow,
    st: &StageSetup,
    store: &ParamStore<D>,
    net: &Net,
) -> Result<Vec<(usize, Val<D>)>> {
    let stage = &flow.stages[st.index];
    net.trainable_params()
        .into_iter()
        .filter(|&p| !stage.freezes(&net.params[p].path))
        .map(|p| {
            store
                .get(&net.params[p].path)
                .map(|e| (p, e.value.clone()))
                .ok_or_else(|| Error::other("train::param", format!("parameter `{}` is missing", net.params[p].path)))
        })
        .collect()
}

/// What one iteration trains on.
pub struct Step<'a> {
    /// The batch.
    pub batch: &'a Batch,
    /// Multiplies both learning rates (the schedule).
    pub lr_scale: f64,
    /// Noise given from outside instead of drawn (parity tests).
    pub injected: Option<&'a Injected>,
    /// Copy every gradient Adam consumed into the report.
    pub keep_grads: bool,
}

impl<'a> Step<'a> {
    /// A plain step on `batch` at the recipe's learning rates.
    pub fn on(batch: &'a Batch) -> Self {
        Self { batch, lr_scale: 1.0, injected: None, keep_grads: false }
    }
}

/// G's forward pass, kept on its own tape for the G step: the tape and the handles of the
/// text embedding, the fakes, μ and log σ².
struct GForward<'n, D: KernelDevice> {
    tape: Runner<'n, D, OwnedTape<f32, D>>,
    emb: Tensor,
    fake: Tensor,
    mu: Tensor,
    logvar: Tensor,
}

fn g_forward<'n, D: KernelDevice>(
    flow: &Flow,
    st: &StageSetup,
    store: &mut ParamStore<D>,
    step: &Step<'_>,
    (rng, noise): (&mut StdRng, &'n mut NoiseSource),
) -> Result<GForward<'n, D>> {
    let (gn, gp) = (&flow.nets[st.g], &st.ports.0);
    let b = step.batch.len();
    let dev = store.dev.clone();
    let z = match step.injected.and_then(|i| i.z.clone()) {
        Some(z) => z,
        None => st.noise.sample(rng, b, st.z_dim)?,
    };
    let mut tape: Runner<D, OwnedTape<f32, D>> = Runner::new(dev.clone(), true, noise);
    let stage = &flow.stages[st.index];
    tape.fix_params(gn.params.iter().map(|p| p.path.as_str()).filter(|p| stage.freezes(p)));
    let emb = tape.push_constant(Val::from_host(&dev, step.batch.emb.clone(), &[b, st.embed_dim])?);
    let zh = tape.push_constant(Val::from_host(&dev, z, &[b, st.z_dim])?);
    let outs = tape.run_net(gn, store, &[(gp.emb, emb), (gp.z, zh)], &[gp.fake_img, gp.mu, gp.logvar])?;
    Ok(GForward { tape, emb, fake: outs[0], mu: outs[1], logvar: outs[2] })
}

/// D's outputs on one pair kind, read back: name, values, shape.
type HostOuts = Vec<(String, Vec<f32>, Vec<usize>)>;

/// The D step on a separate tape: (real, text), (real, mismatched text) and (fake, text),
/// with the fakes and the condition entering as constants (G's tensors themselves, no
/// copy). Returns D's outputs on the real pairs, for the G loss.
fn d_step<D: KernelDevice>(
    flow: &Flow,
    st: &StageSetup,
    (store, opt): (&mut ParamStore<D>, &mut DeviceOptimizers<D>),
    step: &Step<'_>,
    (fake, mu): (Val<D>, Val<D>),
    (rng, report): (&mut StdRng, &mut Report),
) -> Result<HostOuts> {
    let (dn, dp) = (&flow.nets[st.d], &st.ports.1);
    let batch = step.batch;
    let (b, s) = (batch.len(), st.image_size);
    let dev = store.dev.clone();
    let mut dnoise = NoiseSource::seeded(0);
    let mut dr: Runner<D, OwnedTape<f32, D>> = Runner::new(dev.clone(), true, &mut dnoise);
    let real = dr.push_constant(Val::from_host(&dev, batch.real.clone(), &[b, 3, s, s])?);
    let fake = dr.push_constant(fake);
    let (real, fake) = if st.augment.is_empty() {
        (real, fake)
    } else {
        (diff_augment(&mut dr, real, &st.augment, rng)?, diff_augment(&mut dr, fake, &st.augment, rng)?)
    };
    let cond = match st.d_condition {
        crate::dsl::DCondition::Mu => dr.push_constant(mu),
        crate::dsl::DCondition::Embedding => {
            dr.push_constant(Val::from_host(&dev, batch.emb.clone(), &[b, st.embed_dim])?)
        }
    };
    let d_params = trainable(flow, st, store, dn)?;
    // With a `code` output, the image encoder runs once per image batch.
    let (real_seen, fake_seen) = match dp.code {
        Some(c) => {
            let rc = dr.run_net(dn, store, &[(dp.img, real)], &[c])?[0];
            let fc = dr.run_net(dn, store, &[(dp.img, fake)], &[c])?[0];
            (Seen::Code(rc), Seen::Code(fc))
        }
        None => (Seen::Image(real), Seen::Image(fake)),
    };
    let real_outs = d_pass(&mut dr, (dn, dp), store, (real_seen, cond), &st.d_outputs)?;
    let pairs = st.mismatch.pairs(rng, &batch.tags)?;
    if pairs.is_empty() {
        return Err(Error::other("train::mismatch", "the mismatch sampler returned no pairs"));
    }
    let (imgs, texts): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
    let wrong_seen = match real_seen {
        Seen::Code(c) => Seen::Code(dr.select_rows(c, &imgs)?),
        Seen::Image(i) => Seen::Image(dr.select_rows(i, &imgs)?),
    };
    let wrong_cond = dr.select_rows(cond, &texts)?;
    let wrong_outs = d_pass(&mut dr, (dn, dp), store, (wrong_seen, wrong_cond), &st.d_cond_outputs)?;
    let fake_outs = d_pass(&mut dr, (dn, dp), store, (fake_seen, cond), &st.d_outputs)?;
    let mut real_host = HostOuts::new();
    for (kind, outs) in [("real", &real_outs), ("wrong", &wrong_outs), ("fake", &fake_outs)] {
        for (n, h) in outs {
            let short = n.trim_end_matches("_prob");
            let values = dr.read(*h)?;
            if kind == "real" {
                real_host.push((n.clone(), values.clone(), dr.shape(*h)?));
            }
            report.probs.push((format!("{short}_{kind}"), values));
        }
    }
    let terms = st.loss.d_loss(&mut dr, &real_outs, &wrong_outs, &fake_outs)?;
    report.terms.push(("D".into(), read_scalar(&mut dr, terms.total)?));
    for (n, t) in &terms.parts {
        report.terms.push((n.clone(), read_scalar(&mut dr, *t)?));
    }
    check_finite(report, "D")?;
    let mut grads = dr.backward(terms.total)?;
    let lr = st.opt_d.lr * step.lr_scale;
    let adam = AdamArgs { net: dn, params: &d_params, adam: &mut opt.d, cfg: &st.opt_d, lr, ema: None };
    adam_step(store, adam, &mut grads, step.keep_grads.then_some(('D', &mut report.grads)))?;
    Ok(real_host)
}

/// One training iteration: G forward, the D step, then the G step through the updated D
/// with the KL term.
pub fn iteration<D: KernelDevice>(
    flow: &Flow,
    st: &StageSetup,
    (store, opt): (&mut ParamStore<D>, &mut DeviceOptimizers<D>),
    step: Step<'_>,
    rng: &mut StdRng,
) -> Result<Report> {
    let (gn, dn) = (&flow.nets[st.g], &flow.nets[st.d]);
    let mut report = Report::default();
    let mut noise = NoiseSource::seeded(rng.next_u64());
    for (path, eps) in step.injected.map(|i| i.eps.as_slice()).unwrap_or(&[]) {
        noise.give(path.clone(), eps.clone());
    }
    let g_params = trainable(flow, st, store, gn)?;
    let GForward { tape: mut gr, emb, fake, mu, logvar } = g_forward(flow, st, store, &step, (rng, &mut noise))?;
    let g_outs = (gr.val(fake)?.clone(), gr.val(mu)?.clone());
    let real_host = d_step(flow, st, (store, opt), &step, g_outs, (rng, &mut report))?;

    // G step through the updated D, on G's tape; D's weights are not trained here.
    gr.fix_params(dn.params.iter().map(|p| p.path.as_str()));
    let cond = match st.d_condition {
        crate::dsl::DCondition::Mu => gr.detach(mu)?,
        crate::dsl::DCondition::Embedding => emb,
    };
    let seen = if st.augment.is_empty() { fake } else { diff_augment(&mut gr, fake, &st.augment, rng)? };
    let fake_outs = d_pass(&mut gr, (dn, &st.ports.1), store, (Seen::Image(seen), cond), &st.d_outputs)?;
    for (n, h) in &fake_outs {
        report.probs.push((format!("g_{}_fake", n.trim_end_matches("_prob")), gr.read(*h)?));
    }
    let dev = store.dev.clone();
    let mut real_outs = Outs::new();
    for (name, values, shape) in real_host {
        real_outs.push((name, gr.push_constant(Val::from_host(&dev, values, &shape)?)));
    }
    let g_terms = st.loss.g_loss(&mut gr, &real_outs, &fake_outs)?;
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
    let lr = st.opt_g.lr * step.lr_scale;
    let ema = st.ema.map(|decay| (&mut opt.ema, decay));
    let adam = AdamArgs { net: gn, params: &g_params, adam: &mut opt.g, cfg: &st.opt_g, lr, ema };
    adam_step(store, adam, &mut grads, step.keep_grads.then_some(('G', &mut report.grads)))?;
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

/// Generate images with the generator of stage `stage` (eval-mode BatchNorm unless
/// `training`), for text embeddings `emb` and noise `z` (rows of the batch).
pub fn generate<D: KernelDevice>(
    flow: &Flow,
    stage: usize,
    store: &mut ParamStore<D>,
    (emb, z): (&[f32], &[f32]),
    training: bool,
    seed: u64,
) -> Result<Vec<f32>> {
    let st = &flow.stages[stage];
    let (gn, gp) = (&flow.nets[st.g], &st.g_ports);
    let (e, zd) = (gp.embed_dim(gn), gp.z_dim(gn));
    let b = emb.len() / e.max(1);
    let mut noise = NoiseSource::seeded(seed);
    let dev = store.dev.clone();
    let mut r: Runner<D, NoneTape> = Runner::new(dev.clone(), training, &mut noise);
    let eh = r.push(Val::from_host(&dev, emb.to_vec(), &[b, e])?);
    let zh = r.push(Val::from_host(&dev, z.to_vec(), &[b, zd])?);
    let out = r.run_net(gn, store, &[(gp.emb, eh), (gp.z, zh)], &[gp.fake_img])?;
    r.read(out[0])
}

/// A fresh generator for the iteration's randomness, from the run seed and step.
pub fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
