//! The host's random number generator, lent to a sampler for one call, so that a run's
//! seed decides every draw, plugin samplers included.

use crate::abi::RngV1;

/// Random numbers from the host's generator.
pub struct Rng<'a> {
    raw: Option<&'a RngV1>,
    state: u64,
    spare: Option<f64>,
}

impl<'a> Rng<'a> {
    /// Wrap the host's generator.
    pub fn from_raw(raw: &'a RngV1) -> Self {
        Self { raw: Some(raw), state: 0, spare: None }
    }

    /// A self-contained generator (SplitMix64) for a plugin's unit tests.
    pub fn seeded(seed: u64) -> Rng<'static> {
        Rng { raw: None, state: seed, spare: None }
    }

    /// 64 uniformly random bits.
    pub fn next_u64(&mut self) -> u64 {
        match self.raw {
            // SAFETY: the host's generator is live for this call.
            Some(r) => unsafe { (r.next_u64)(r.ctx) },
            None => {
                self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
        }
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n` > 0), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// A standard normal draw (Marsaglia's polar method).
    pub fn normal(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * m);
                return u * m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_ranges() {
        let mut r = Rng::seeded(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
