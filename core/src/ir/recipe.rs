//! The training recipe lowered onto the checked nets: each stage's generator and
//! discriminator by index, with the ports the game reads resolved to value ids, checked
//! once when the flow is built. The trainer reads [`Stage`], never a port name.

use super::{Flow, Net, ValueId};
use crate::dsl::{Key, StageDef};
use crate::error::{did_you_mean, Result};

/// The generator's ports: inputs `emb` and `z`; outputs `fake_img`, and the CA's `mu` and
/// `logvar` for the KL term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorPorts {
    /// Text embedding input.
    pub emb: ValueId,
    /// Noise input.
    pub z: ValueId,
    /// The image.
    pub fake_img: ValueId,
    /// CA mean.
    pub mu: ValueId,
    /// CA log-variance.
    pub logvar: ValueId,
}

impl GeneratorPorts {
    /// The ports of `net`, or the diagnostic code and message of the one it lacks.
    pub fn of(net: &Net) -> std::result::Result<Self, (&'static str, String)> {
        let input = |n: &str| {
            net.input(n).ok_or_else(|| ("graph::missing_input", format!("generator `{}` has no input `{n}`", net.name)))
        };
        let output = |n: &str| {
            net.output(n)
                .ok_or_else(|| ("graph::missing_output", format!("generator `{}` has no output `{n}`", net.name)))
        };
        Ok(Self {
            emb: input("emb")?,
            z: input("z")?,
            fake_img: output("fake_img")?,
            mu: output("mu")?,
            logvar: output("logvar")?,
        })
    }

    /// Elements of one text embedding.
    pub fn embed_dim(&self, net: &Net) -> usize {
        net.values[self.emb].shape.numel()
    }

    /// Elements of one noise vector.
    pub fn z_dim(&self, net: &Net) -> usize {
        net.values[self.z].shape.numel()
    }

    /// The side of the (square) images.
    pub fn image_side(&self, net: &Net) -> usize {
        net.values[self.fake_img].shape.dims().last().copied().unwrap_or(1)
    }
}

/// The discriminator's ports: input `img`, optional input `cond`, and optional output
/// `code` (the image code, which lets the game run the image encoder once per batch and
/// the condition heads per pair kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscriminatorPorts {
    /// Image input.
    pub img: ValueId,
    /// Condition input, if D is conditional.
    pub cond: Option<ValueId>,
    /// Image code output, if D exposes it.
    pub code: Option<ValueId>,
}

impl DiscriminatorPorts {
    /// The ports of `net`, or which one it lacks.
    pub fn of(net: &Net) -> std::result::Result<Self, String> {
        let img = net.input("img").ok_or_else(|| format!("discriminator `{}` has no input `img`", net.name))?;
        Ok(Self { img, cond: net.input("cond"), code: net.output("code") })
    }
}

/// One stage of the recipe on the checked nets.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Generator net (index into [`Flow::nets`]).
    pub g: usize,
    /// Discriminator net.
    pub d: usize,
    /// The generator's ports.
    pub g_ports: GeneratorPorts,
    /// The discriminator's ports.
    pub d_ports: DiscriminatorPorts,
    /// Nets whose parameters this stage does not train, wherever G or D embeds them.
    pub frozen: Vec<String>,
}

impl Stage {
    /// Whether the parameter at `path` (`g1.up1.conv.weight`) belongs to a net this stage
    /// freezes.
    pub fn freezes(&self, path: &str) -> bool {
        self.frozen.iter().any(|f| path.strip_prefix(f.as_str()).is_some_and(|rest| rest.starts_with('.')))
    }
}

/// Check the `train` section against the nets (roles exist and have the ports the game
/// needs, the numbers are sane) and resolve each stage.
pub fn lower(flow: &Flow) -> Result<Vec<Stage>> {
    let p = &flow.parsed;
    let mut stages = Vec::new();
    for (i, st) in p.doc.train.iter().enumerate() {
        let at = |field: &str| vec![Key::from("train"), Key::Index(i), Key::from(field)];
        let names: Vec<&str> = flow.nets.iter().map(|n| n.name.as_str()).collect();
        let find = |field: &str, name: &str| {
            flow.nets.iter().position(|n| n.name == name).ok_or_else(|| {
                p.error("graph::unknown_net", &at(field), format!("stage `{}`: no net named `{name}`", st.name))
                    .with_help(
                        did_you_mean(name, names.iter().copied())
                            .unwrap_or_else(|| format!("nets: {}", names.join(", "))),
                    )
            })
        };
        let (g, d) = (find("generator", &st.generator)?, find("discriminator", &st.discriminator)?);
        for (j, f) in st.frozen.iter().enumerate() {
            if flow.net(f).is_none() {
                return Err(p.error(
                    "graph::unknown_net",
                    &[at("frozen"), vec![Key::Index(j)]].concat(),
                    format!("no net named `{f}`"),
                ));
            }
        }
        let g_ports = GeneratorPorts::of(&flow.nets[g]).map_err(|(code, m)| {
            let help = match code {
                "graph::missing_input" => "a generator reads `emb` (the text embedding) and `z` (the noise)",
                _ => "a generator exposes `fake_img`, `mu` and `logvar` (the CA outputs for the KL term)",
            };
            p.error(code, &at("generator"), m).with_help(help)
        })?;
        let d_ports = DiscriminatorPorts::of(&flow.nets[d])
            .map_err(|m| p.error("graph::missing_input", &at("discriminator"), m))?;
        check_d(flow, st, (&flow.nets[g], &g_ports), (&flow.nets[d], &d_ports), &at("discriminator"))?;
        check_numbers(flow, st, &at)?;
        stages.push(Stage { g, d, g_ports, d_ports, frozen: st.frozen.clone() });
    }
    Ok(stages)
}

/// Batch, data size, epochs, KL weight, optimisers, schedule and checkpoint interval.
fn check_numbers(flow: &Flow, st: &StageDef, at: &dyn Fn(&str) -> Vec<Key>) -> Result<()> {
    let p = &flow.parsed;
    if st.batch < 2 || st.batch > 1 << 20 {
        return Err(p.error(
            "graph::bad_value",
            &at("batch"),
            "batch must be between 2 and 1048576 (mismatched pairs need two samples)",
        ));
    }
    if let crate::dsl::DataDef::SyntheticShapes { count, .. } = st.data {
        if count == 0 || count > crate::data::MAX_SYNTHETIC_COUNT {
            return Err(p.error(
                "graph::bad_value",
                &at("data"),
                format!("SyntheticShapes needs a count between 1 and {}", crate::data::MAX_SYNTHETIC_COUNT),
            ));
        }
    }
    if let Some(ev) = &st.eval {
        if ev.every == 0 || ev.captions == 0 || ev.per_caption == 0 {
            return Err(p.error(
                "graph::bad_value",
                &at("eval"),
                "eval needs every, captions and per_caption of at least 1",
            ));
        }
        if ev.metric.uses_inception() {
            if !(4..=1 << 16).contains(&ev.images) {
                return Err(p
                    .error("graph::bad_value", &at("eval"), "eval compares 4 to 65,536 images")
                    .with_help("precision and recall need k + 1 = 4 images; FID wants hundreds or more"));
            }
        } else {
            if !matches!(st.data, crate::dsl::DataDef::SyntheticShapes { .. }) {
                return Err(p
                    .error("graph::bad_value", &at("eval"), "caption fidelity scores stages trained on SyntheticShapes")
                    .with_help("the colour judge needs synthetic data; use `metric: Fid` or `metric: Kid` (with `run --inception`)"));
            }
            let images = ev.captions.saturating_mul(ev.per_caption.saturating_add(1));
            if images > 1 << 16 {
                return Err(p.error("graph::bad_value", &at("eval"), "eval would draw more than 65,536 images"));
            }
        }
    }
    if st.ema.is_some_and(|d| !(d > 0.0 && d < 1.0)) {
        return Err(p.error("graph::bad_value", &at("ema"), "ema must be a decay between 0 and 1, e.g. `Some(0.999)`"));
    }
    if st.epochs == 0 {
        return Err(p.error("graph::bad_value", &at("epochs"), "epochs must be at least 1"));
    }
    if !st.kl_weight.is_finite() || st.kl_weight < 0.0 {
        return Err(p.error("graph::bad_value", &at("kl_weight"), "kl_weight must be a finite number >= 0"));
    }
    for (field, opt) in [("optimizer", Some(&st.optimizer)), ("d_optimizer", st.d_optimizer.as_ref())] {
        if let Some(crate::dsl::Optimizer::Adam { lr, betas, eps }) = opt {
            let ok = lr.is_finite()
                && *lr > 0.0
                && (0.0..1.0).contains(&betas.0)
                && (0.0..1.0).contains(&betas.1)
                && eps.is_finite()
                && *eps > 0.0;
            if !ok {
                return Err(p.error(
                    "graph::bad_value",
                    &at(field),
                    "Adam needs a finite lr > 0, betas in [0, 1) and a finite eps > 0",
                ));
            }
        }
    }
    if let crate::dsl::LrDecay::Halve { every_epochs: 0 } = st.lr_decay {
        return Err(p.error("graph::bad_value", &at("lr_decay"), "every_epochs must be at least 1"));
    }
    if let Some(crate::dsl::CheckpointEvery::Steps(0) | crate::dsl::CheckpointEvery::Minutes(0)) = st.checkpoint_every {
        return Err(p.error("graph::bad_value", &at("checkpoint_every"), "checkpoint_every must be at least 1"));
    }
    Ok(())
}

/// D reads the images G makes, and the condition the recipe gives it.
fn check_d(
    flow: &Flow,
    st: &StageDef,
    g: (&Net, &GeneratorPorts),
    d: (&Net, &DiscriminatorPorts),
    at: &[Key],
) -> Result<()> {
    let p = &flow.parsed;
    let ((g, gp), (d, dp)) = (g, d);
    let fake = &g.values[gp.fake_img].shape;
    if &d.values[dp.img].shape != fake {
        return Err(p.error(
            "graph::shape",
            at,
            format!(
                "stage `{}`: generator `{}` makes {fake} images but discriminator `{}` reads {}",
                st.name, g.name, d.name, d.values[dp.img].shape
            ),
        ));
    }
    if let Some(cond) = dp.cond {
        let (what, src) = match st.d_condition {
            crate::dsl::DCondition::Mu => ("the generator's `mu`", gp.mu),
            crate::dsl::DCondition::Embedding => ("the text embedding", gp.emb),
        };
        let want = &g.values[src].shape;
        if &d.values[cond].shape != want {
            return Err(p.error(
                "graph::shape",
                at,
                format!(
                    "discriminator `{}` reads a condition of {} but {what} is {want}",
                    d.name, d.values[cond].shape
                ),
            ));
        }
    }
    Ok(())
}
