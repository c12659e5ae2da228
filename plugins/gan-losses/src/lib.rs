//! GAN objectives as a stackflow plugin: hinge, least squares, non-saturating BCE and the
//! relativistic average BCE (RaGAN), whose G loss reads D's outputs on real images.
//!
//! All three play the StackGAN game: the discriminator scores (real image, its text),
//! (real image, mismatched text) and (fake, text), and the terms combine as in the paper's
//! matching-aware loss: `D = real + (wrong + fake)/2`, or with an unconditional head
//! `(real_c + real_u)/2 + (fake_c + wrong_c + fake_u)/3`; `G = cond + uncond`.
//!
//! **Probabilities or logits.** stackflow's built-in discriminator heads end in a sigmoid
//! and expose `cond_prob`/`uncond_prob`. Hinge and least squares are defined on raw
//! scores (logits), so with `input: "prob"` (the default) they first recover the logit
//! `ln(p/(1−p))` from the probability clamped to `[1e-6, 1−1e-6]`; gradients pass through
//! exactly (the sigmoid's derivative cancels), and only outputs saturated beyond
//! |logit| ≈ 13.8 lose their gradient. With `input: "logit"` they read `cond_logits` /
//! `uncond_logits` from a head without the final sigmoid. The BCE loss on probabilities
//! computes `nn.BCELoss` exactly as the built-in `stackgan.matching_aware_bce` does (logs
//! clamped at −100), so the two give identical values and gradients; on logits it uses a
//! stable softplus. The attributes `cond` and `uncond` rename the outputs read.

use stackflow_plugin_api::prelude::*;

/// Probabilities clamped to `[EPS, 1 − EPS]` before taking logits.
const EPS: f32 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Input {
    Prob,
    Logit,
}

/// Which discriminator outputs a loss reads, and what they hold.
#[derive(Debug)]
struct Heads {
    input: Input,
    cond: String,
    uncond: String,
}

const ATTRS: &[(&str, &str)] = &[
    ("input", "\"prob\" (default: outputs end in a sigmoid) or \"logit\""),
    ("cond", "conditional output name (default `cond_prob` or `cond_logits`)"),
    ("uncond", "unconditional output name, used when D has it (default `uncond_prob` or `uncond_logits`)"),
];

impl Heads {
    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let input = match attrs.choice("input", &["prob", "logit"])? {
            "logit" => Input::Logit,
            _ => Input::Prob,
        };
        let (c, u) = match input {
            Input::Prob => ("cond_prob", "uncond_prob"),
            Input::Logit => ("cond_logits", "uncond_logits"),
        };
        let cond = attrs.string_or("cond", c)?;
        let uncond = attrs.string_or("uncond", u)?;
        if cond.is_empty() || uncond.is_empty() || cond == uncond {
            return Err(Error::at("cond", "`cond` and `uncond` must be two different output names"));
        }
        Ok(Self { input, cond, uncond })
    }

    fn needs(&self) -> Vec<String> {
        vec![self.cond.clone()]
    }

    fn optional(&self) -> Vec<String> {
        vec![self.uncond.clone()]
    }

    /// The raw score (logit) of a D output.
    fn logit<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        match self.input {
            Input::Logit => x,
            Input::Prob => {
                let p = x.clamp(EPS, 1.0 - EPS);
                p.ln() - (1.0 - p).ln()
            }
        }
    }
}

/// A loss as three per-pair terms, each a mean over the batch → [1].
trait Terms3 {
    fn heads(&self) -> &Heads;
    /// D's term for outputs that should score "real".
    fn real<'a>(&self, x: Tensor<'a>) -> Tensor<'a>;
    /// D's term for outputs that should score "fake".
    fn fake<'a>(&self, x: Tensor<'a>) -> Tensor<'a>;
    /// G's term for D's outputs on fakes.
    fn gen<'a>(&self, x: Tensor<'a>) -> Tensor<'a>;

    fn d<'a>(&self, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        let h = self.heads();
        let real_c = self.real(real.need(&h.cond)?);
        let wrong_c = self.fake(wrong.need(&h.cond)?);
        let fake_c = self.fake(fake.need(&h.cond)?);
        let mut parts = vec![
            ("D_cond_real".to_string(), real_c),
            ("D_cond_wrong".to_string(), wrong_c),
            ("D_cond_fake".to_string(), fake_c),
        ];
        let total = match (real.get(&h.uncond), fake.get(&h.uncond)) {
            (Some(ru), Some(fu)) => {
                let real_u = self.real(ru);
                let fake_u = self.fake(fu);
                parts.push(("D_uncond_real".into(), real_u));
                parts.push(("D_uncond_fake".into(), fake_u));
                (real_c + real_u) * 0.5 + (fake_c + wrong_c + fake_u) / 3.0
            }
            _ => real_c + (fake_c + wrong_c) * 0.5,
        };
        Ok(Terms { total, parts })
    }

    fn g<'a>(&self, fake: &Outs<'a>) -> Result<Terms<'a>> {
        let h = self.heads();
        let mut total = self.gen(fake.need(&h.cond)?);
        if let Some(fu) = fake.get(&h.uncond) {
            total = total + self.gen(fu);
        }
        Ok(Terms::total(total))
    }
}

/// Hinge loss (SAGAN, BigGAN): D minimises relu(1 − l) on real and relu(1 + l) on fake
/// scores, G minimises −l.
#[derive(Debug)]
pub struct Hinge(Heads);

impl Terms3 for Hinge {
    fn heads(&self) -> &Heads {
        &self.0
    }
    fn real<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        (1.0 - self.0.logit(x)).relu().mean()
    }
    fn fake<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        (self.0.logit(x) + 1.0).relu().mean()
    }
    fn gen<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        -self.0.logit(x).mean()
    }
}

impl Loss for Hinge {
    const NAME: &'static str = "gan_losses.hinge";
    const DOC: &'static str = "hinge GAN loss: D = relu(1−l_real) + (relu(1+l_wrong) + relu(1+l_fake))/2, G = −l_fake; on logits (probs converted)";
    const ATTRS: &'static [(&'static str, &'static str)] = ATTRS;

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Heads::configure(attrs).map(Hinge)
    }
    fn needs(&self) -> Vec<String> {
        self.0.needs()
    }
    fn optional(&self) -> Vec<String> {
        self.0.optional()
    }
    fn d_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.d(real, wrong, fake)
    }
    fn g_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.g(fake)
    }
}

/// Least squares (LSGAN with targets 0 and 1): D minimises (l − 1)² on real and l² on
/// fake scores, G minimises (l − 1)².
#[derive(Debug)]
pub struct LeastSquares(Heads);

impl Terms3 for LeastSquares {
    fn heads(&self) -> &Heads {
        &self.0
    }
    fn real<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        (self.0.logit(x) - 1.0).square().mean()
    }
    fn fake<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        self.0.logit(x).square().mean()
    }
    fn gen<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        self.real(x)
    }
}

impl Loss for LeastSquares {
    const NAME: &'static str = "gan_losses.least_squares";
    const DOC: &'static str = "least-squares GAN loss (LSGAN, targets 0/1): D = (l_real−1)² + (l_wrong² + l_fake²)/2, G = (l_fake−1)²; on logits (probs converted)";
    const ATTRS: &'static [(&'static str, &'static str)] = ATTRS;

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Heads::configure(attrs).map(LeastSquares)
    }
    fn needs(&self) -> Vec<String> {
        self.0.needs()
    }
    fn optional(&self) -> Vec<String> {
        self.0.optional()
    }
    fn d_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.d(real, wrong, fake)
    }
    fn g_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.g(fake)
    }
}

/// Non-saturating BCE: the paper's matching-aware loss; G maximises ln D(fake).
#[derive(Debug)]
pub struct Bce(Heads);

/// softplus(x) = ln(1 + eˣ), computed as relu(x) + ln(1 + e^−|x|) so it never overflows.
fn softplus(x: Tensor<'_>) -> Tensor<'_> {
    x.relu() + ((-x.abs()).exp() + 1.0).ln()
}

impl Terms3 for Bce {
    fn heads(&self) -> &Heads {
        &self.0
    }
    fn real<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        match self.0.input {
            // −mean(clamp(ln p, −100)), op for op as nn.BCELoss and the built-in.
            Input::Prob => -x.ln().clamp(-100.0, f32::MAX).mean(),
            Input::Logit => softplus(-x).mean(),
        }
    }
    fn fake<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        match self.0.input {
            Input::Prob => -(1.0 - x).ln().clamp(-100.0, f32::MAX).mean(),
            Input::Logit => softplus(x).mean(),
        }
    }
    fn gen<'a>(&self, x: Tensor<'a>) -> Tensor<'a> {
        self.real(x)
    }
}

impl Loss for Bce {
    const NAME: &'static str = "gan_losses.bce";
    const DOC: &'static str = "non-saturating BCE (the paper's matching-aware loss): D = bce(real,1) + (bce(wrong,0) + bce(fake,0))/2, G = bce(fake,1)";
    const ATTRS: &'static [(&'static str, &'static str)] = ATTRS;

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Heads::configure(attrs).map(Bce)
    }
    fn needs(&self) -> Vec<String> {
        self.0.needs()
    }
    fn optional(&self) -> Vec<String> {
        self.0.optional()
    }
    fn d_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.d(real, wrong, fake)
    }
    fn g_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        self.g(fake)
    }
}

/// Relativistic average BCE (RaGAN, Jolicoeur-Martineau 2018) on the conditional scores:
/// each side is judged against the other side's mean score. With `rb(x ≻ y)` the BCE of
/// "x is more real than the average y", softplus(−(l_x − mean l_y)), and `rb(x ≺ y)` its
/// opposite, softplus(l_x − mean l_y):
/// D = rb(real ≻ fake) + (rb(fake ≺ real) + rb(wrong ≺ real))/2,
/// G = rb(fake ≻ real) + rb(real ≺ fake), with D's real scores as constants in G's loss.
/// An unconditional head is not used.
#[derive(Debug)]
pub struct Relativistic(Heads);

impl Relativistic {
    /// mean softplus(∓(l_x − mean l_y)): `more` for "x is more real than y on average".
    fn rel<'a>(x: Tensor<'a>, y: Tensor<'a>, more: bool) -> Tensor<'a> {
        let d = x - y.mean().broadcast_to(&x.shape());
        if more {
            softplus(-d).mean()
        } else {
            softplus(d).mean()
        }
    }
}

impl Loss for Relativistic {
    const NAME: &'static str = "gan_losses.relativistic";
    const DOC: &'static str = "relativistic average BCE (RaGAN) on the conditional scores: D = rb(real≻fake) + (rb(fake≺real) + rb(wrong≺real))/2, G = rb(fake≻real) + rb(real≺fake), G reading D's real scores";
    const ATTRS: &'static [(&'static str, &'static str)] = ATTRS;

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Heads::configure(attrs).map(Relativistic)
    }
    fn needs(&self) -> Vec<String> {
        self.0.needs()
    }
    fn d_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        let c = &self.0.cond;
        let (r, w, f) = (self.0.logit(real.need(c)?), self.0.logit(wrong.need(c)?), self.0.logit(fake.need(c)?));
        let (real_t, fake_t, wrong_t) = (Self::rel(r, f, true), Self::rel(f, r, false), Self::rel(w, r, false));
        let parts = vec![
            ("D_rel_real".to_string(), real_t),
            ("D_rel_fake".to_string(), fake_t),
            ("D_rel_wrong".to_string(), wrong_t),
        ];
        Ok(Terms { total: real_t + (fake_t + wrong_t) * 0.5, parts })
    }
    fn g_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        let c = &self.0.cond;
        let (r, f) = (self.0.logit(real.need(c)?.detach()), self.0.logit(fake.need(c)?));
        Ok(Terms::total(Self::rel(f, r, true) + Self::rel(r, f, false)))
    }
}

export_plugin!(
    name: "gan_losses",
    losses: [Hinge, LeastSquares, Bce, Relativistic],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_follow_the_input_attribute() {
        let h = Heads::configure(&mut Attrs::parse("()", None).unwrap()).unwrap();
        assert_eq!((h.needs(), h.optional()), (vec!["cond_prob".to_string()], vec!["uncond_prob".to_string()]));
        let h = Heads::configure(&mut Attrs::parse(r#"(input: "logit", cond: "proj_logits")"#, None).unwrap()).unwrap();
        assert_eq!((h.input, h.cond.as_str(), h.uncond.as_str()), (Input::Logit, "proj_logits", "uncond_logits"));
        assert!(Heads::configure(&mut Attrs::parse(r#"(input: "probs")"#, None).unwrap()).is_err());
    }
}
