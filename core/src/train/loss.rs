//! `stackgan.matching_aware_bce`: the paper's matching-aware discriminator loss on
//! probabilities, as StackGAN-Pytorch computes it (BCELoss with logs clamped at −100).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kind::{Attrs, Loss, LossKind, Outs, Terms};
use crate::ops::{Binary, Ops, Tensor, Unary};

/// The kind.
pub struct MatchingAwareBce;

impl LossKind for MatchingAwareBce {
    fn name(&self) -> &str {
        "stackgan.matching_aware_bce"
    }
    fn doc(&self) -> &str {
        "matching-aware BCE on probabilities: D = real + (wrong + fake)/2, with an uncond head (r_c + r_u)/2 + (f_c + w_c + f_u)/3"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Loss>> {
        Ok(Arc::new(Bce))
    }
}

#[derive(Debug)]
struct Bce;

/// `nn.BCELoss` against a constant label 0 or 1: −mean(clamp(ln p)) or −mean(clamp(ln(1−p))).
pub fn bce(ops: &mut dyn Ops, p: Tensor, label: bool) -> Result<Tensor> {
    let q = if label {
        p
    } else {
        let neg = ops.unary(Unary::Neg, p)?;
        ops.unary(Unary::AddScalar(1.0), neg)?
    };
    let ln = ops.unary(Unary::Ln, q)?;
    let ln = ops.unary(Unary::Clamp(-100.0, f32::MAX), ln)?;
    let m = ops.mean(ln)?;
    ops.unary(Unary::Neg, m)
}

fn get(outs: &Outs, name: &str) -> Option<Tensor> {
    outs.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
}

fn need(outs: &Outs, name: &str, pair: &str) -> Result<Tensor> {
    get(outs, name).ok_or_else(|| Error::other("loss::missing_output", format!("no `{name}` for the {pair} pairs")))
}

fn add(ops: &mut dyn Ops, a: Tensor, b: Tensor) -> Result<Tensor> {
    ops.binary(Binary::Add, a, b)
}

impl Loss for Bce {
    fn needs(&self) -> Vec<String> {
        vec!["cond_prob".into()]
    }

    fn optional(&self) -> Vec<String> {
        vec!["uncond_prob".into()]
    }

    fn d_loss(&self, ops: &mut dyn Ops, real: &Outs, wrong: &Outs, fake: &Outs) -> Result<Terms> {
        let real_c = bce(ops, need(real, "cond_prob", "real")?, true)?;
        let wrong_c = bce(ops, need(wrong, "cond_prob", "mismatched")?, false)?;
        let fake_c = bce(ops, need(fake, "cond_prob", "fake")?, false)?;
        let mut parts = vec![
            ("D_cond_real".to_string(), real_c),
            ("D_cond_wrong".to_string(), wrong_c),
            ("D_cond_fake".to_string(), fake_c),
        ];
        let total = match (get(real, "uncond_prob"), get(fake, "uncond_prob")) {
            (Some(ru), Some(fu)) => {
                let real_u = bce(ops, ru, true)?;
                let fake_u = bce(ops, fu, false)?;
                parts.push(("D_uncond_real".into(), real_u));
                parts.push(("D_uncond_fake".into(), fake_u));
                let r = add(ops, real_c, real_u)?;
                let r = ops.unary(Unary::Scale(0.5), r)?;
                let f = add(ops, fake_c, wrong_c)?;
                let f = add(ops, f, fake_u)?;
                let f = ops.unary(Unary::Scale(1.0 / 3.0), f)?;
                add(ops, r, f)?
            }
            _ => {
                let f = add(ops, fake_c, wrong_c)?;
                let f = ops.unary(Unary::Scale(0.5), f)?;
                add(ops, real_c, f)?
            }
        };
        Ok(Terms { total, parts })
    }

    fn g_loss(&self, ops: &mut dyn Ops, _: &Outs, fake: &Outs) -> Result<Terms> {
        let mut total = bce(ops, need(fake, "cond_prob", "fake")?, true)?;
        if let Some(fu) = get(fake, "uncond_prob") {
            let u = bce(ops, fu, true)?;
            total = add(ops, total, u)?;
        }
        Ok(Terms { total, parts: vec![] })
    }
}
