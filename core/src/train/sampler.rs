//! Built-in samplers: `core.normal` noise, and the mismatched-pair policies
//! `stackgan.batch_shift` (the reference) and `stackgan.keep_background`.

use std::sync::Arc;

use rand::RngCore;
use rand_distr::Distribution;

use crate::error::Result;
use crate::kind::{Attrs, MismatchSampler, NoiseSampler, SamplerImpl, SamplerKind};

/// `core.normal`.
pub struct Normal;

impl SamplerKind for Normal {
    fn name(&self) -> &str {
        "core.normal"
    }
    fn doc(&self) -> &str {
        "noise z ~ N(0, I) (attr `std` = 1)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<SamplerImpl> {
        let std = attrs.float_or("std", 1.0)? as f32;
        if std <= 0.0 {
            return Err(attrs.error("`std` must be positive"));
        }
        Ok(SamplerImpl::Noise(Arc::new(NormalNoise { std })))
    }
}

#[derive(Debug)]
struct NormalNoise {
    std: f32,
}

impl NoiseSampler for NormalNoise {
    fn sample(&self, rng: &mut dyn RngCore, batch: usize, dim: usize) -> Result<Vec<f32>> {
        let n = rand_distr::StandardNormal;
        Ok((0..batch * dim).map(|_| self.std * Distribution::<f32>::sample(&n, rng)).collect())
    }
}

/// `stackgan.batch_shift`.
pub struct BatchShift;

impl SamplerKind for BatchShift {
    fn name(&self) -> &str {
        "stackgan.batch_shift"
    }
    fn doc(&self) -> &str {
        "mismatched pairs: image i with the text of i+1, for i < B−1 (StackGAN-Pytorch)"
    }
    fn configure(&self, _: &mut Attrs) -> Result<SamplerImpl> {
        Ok(SamplerImpl::Mismatch(Arc::new(Shift)))
    }
}

#[derive(Debug)]
struct Shift;

fn shift_pairs(b: usize) -> Vec<(usize, usize)> {
    (0..b.saturating_sub(1)).map(|i| (i, i + 1)).collect()
}

impl MismatchSampler for Shift {
    fn pairs(&self, _: &mut dyn RngCore, tags: &[Vec<u32>]) -> Result<Vec<(usize, usize)>> {
        Ok(shift_pairs(tags.len()))
    }
}

/// `stackgan.keep_background`.
pub struct KeepBackground;

impl SamplerKind for KeepBackground {
    fn name(&self) -> &str {
        "stackgan.keep_background"
    }
    fn doc(&self) -> &str {
        "mismatched pairs that share tag 0 (background) but differ in tag 1 (object colour) where the batch has them, \
         else a batch shift; `share` (0–1, default 0.5) is the fraction of such pairs"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<SamplerImpl> {
        let share = attrs.float_or("share", 0.5)?;
        if !(0.0..=1.0).contains(&share) {
            return Err(attrs.error("`share` must be within [0, 1]"));
        }
        Ok(SamplerImpl::Mismatch(Arc::new(Keep { share })))
    }
}

#[derive(Debug)]
struct Keep {
    share: f64,
}

impl MismatchSampler for Keep {
    fn pairs(&self, rng: &mut dyn RngCore, tags: &[Vec<u32>]) -> Result<Vec<(usize, usize)>> {
        let b = tags.len();
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let want_hard = (rng.next_u32() as f64 / u32::MAX as f64) < self.share;
            let hard = want_hard
                .then(|| {
                    let cands: Vec<usize> = (0..b)
                        .filter(|&j| j != i && tags[j].first() == tags[i].first() && tags[j].get(1) != tags[i].get(1))
                        .collect();
                    (!cands.is_empty()).then(|| cands[rng.next_u32() as usize % cands.len()])
                })
                .flatten();
            match hard {
                Some(j) => out.push((i, j)),
                None if i + 1 < b => out.push((i, i + 1)),
                None => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shift_matches_reference() {
        let tags = vec![vec![]; 4];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(Shift.pairs(&mut rng, &tags).unwrap(), vec![(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn keep_background_prefers_same_background() {
        let tags = vec![vec![0, 1], vec![0, 2], vec![1, 1], vec![1, 3]];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let pairs = Keep { share: 1.0 }.pairs(&mut rng, &tags).unwrap();
        assert_eq!(pairs.len(), 4);
        for (i, j) in pairs {
            assert_eq!(tags[i][0], tags[j][0]);
            assert_ne!(tags[i][1], tags[j][1]);
        }
    }
}
