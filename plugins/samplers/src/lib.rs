//! Samplers as a stackflow plugin: what the GAN game draws besides data.
//!
//! - `samplers.truncated_normal` — noise z ~ N(0, I) with every coordinate re-drawn until
//!   |z_i| < `truncation` (the truncation trick: fewer, cleaner modes at sampling time).
//! - `samplers.sphere_path` — noise along great-circle paths: consecutive rows of a batch
//!   walk from one random z to another by spherical interpolation ([`slerp`]), which keeps
//!   the norm typical of a Gaussian draw (a straight line would pass through low-norm
//!   noise the generator never saw). Use it as the noise sampler of `stackflow sample` /
//!   `stackflow interpolate` to render interpolation strips, `steps` images per row.
//! - `samplers.class_aware` — mismatched (image, text) pairs whose texts come from a
//!   different class, read from the dataset's tags, so the discriminator never learns
//!   that a caption of the same class is "wrong".
//!
//! Every draw comes from the host's generator, so a run's seed decides them.

use stackflow_plugin_api::prelude::*;

/// `samplers.truncated_normal`.
#[derive(Debug)]
pub struct TruncatedNormal {
    truncation: f64,
}

fn truncation(attrs: &mut Attrs, default: f64) -> Result<f64> {
    let t = attrs.float_or("truncation", default)?;
    if t <= 0.0 {
        return Err(Error::at("truncation", "`truncation` must be positive"));
    }
    Ok(t)
}

/// A standard normal draw with |x| < bound (re-drawn otherwise).
fn truncated(rng: &mut Rng, bound: f64) -> f64 {
    loop {
        let x = rng.normal();
        if x.abs() < bound {
            return x;
        }
    }
}

impl NoiseSampler for TruncatedNormal {
    const NAME: &'static str = "samplers.truncated_normal";
    const DOC: &'static str = "noise z ~ N(0, I) truncated to |z_i| < truncation (re-drawn), the truncation trick";
    const ATTRS: &'static [(&'static str, &'static str)] = &[("truncation", "bound on |z_i|, > 0 (default 2.0)")];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Ok(Self { truncation: truncation(attrs, 2.0)? })
    }

    fn sample(&self, rng: &mut Rng, batch: usize, dim: usize) -> Result<Vec<f32>> {
        Ok((0..batch * dim).map(|_| truncated(rng, self.truncation) as f32).collect())
    }
}

/// Spherical interpolation between `a` and `b` at `t` ∈ [0, 1]: along the great circle
/// through both (scaled linearly in norm), falling back to a straight line when they are
/// (anti)parallel.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = if na > 0.0 && nb > 0.0 { (dot / (na * nb)).clamp(-1.0, 1.0) } else { 1.0 };
    let omega = cos.acos();
    let s = omega.sin();
    if s.abs() < 1e-6 {
        return a.iter().zip(b).map(|(x, y)| ((1.0 - t) * *x as f64 + t * *y as f64) as f32).collect();
    }
    let (wa, wb) = (((1.0 - t) * omega).sin() / s, (t * omega).sin() / s);
    a.iter().zip(b).map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32).collect()
}

/// `samplers.sphere_path`.
#[derive(Debug)]
pub struct SpherePath {
    steps: usize,
    truncation: Option<f64>,
}

impl NoiseSampler for SpherePath {
    const NAME: &'static str = "samplers.sphere_path";
    const DOC: &'static str = "noise along great circles: every `steps` consecutive rows interpolate (slerp) between two random z, for interpolation strips";
    const ATTRS: &'static [(&'static str, &'static str)] = &[
        ("steps", "points per path including both ends, >= 2 (default 0: the whole batch is one path)"),
        ("truncation", "truncate the end points' coordinates to |z_i| < truncation (default: none)"),
    ];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let steps = attrs.uint_or("steps", 0)?;
        if steps == 1 {
            return Err(Error::at("steps", "a path needs at least 2 steps (or 0 for the whole batch)"));
        }
        let truncation = if attrs.has("truncation") { Some(truncation(attrs, 2.0)?) } else { None };
        Ok(Self { steps, truncation })
    }

    fn sample(&self, rng: &mut Rng, batch: usize, dim: usize) -> Result<Vec<f32>> {
        let steps = if self.steps == 0 { batch.max(1) } else { self.steps };
        let draw = |rng: &mut Rng| -> Vec<f32> {
            (0..dim)
                .map(|_| match self.truncation {
                    Some(b) => truncated(rng, b) as f32,
                    None => rng.normal() as f32,
                })
                .collect()
        };
        let mut out = Vec::with_capacity(batch * dim);
        while out.len() < batch * dim {
            let (a, b) = (draw(rng), draw(rng));
            for k in 0..steps {
                if out.len() == batch * dim {
                    break;
                }
                let t = if steps > 1 { k as f64 / (steps - 1) as f64 } else { 0.0 };
                out.extend(slerp(&a, &b, t));
            }
        }
        Ok(out)
    }
}

/// `samplers.class_aware`.
#[derive(Debug)]
pub struct ClassAware {
    tag: Option<usize>,
}

impl ClassAware {
    fn class<'t>(&self, tags: &'t [u32]) -> &'t [u32] {
        match self.tag {
            Some(i) => tags.get(i..i + 1).unwrap_or(&[]),
            None => tags,
        }
    }
}

impl MismatchSampler for ClassAware {
    const NAME: &'static str = "samplers.class_aware";
    const DOC: &'static str = "mismatched pairs whose text is of another class (by the dataset's tags); a batch shift where a sample has no other class";
    const ATTRS: &'static [(&'static str, &'static str)] = &[(
        "tag",
        "which tag is the class (e.g. 1: object colour in the synthetic shapes); default: all tags, so any difference is another class",
    )];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let tag = if attrs.has("tag") { Some(attrs.uint_or("tag", 0)?) } else { None };
        Ok(Self { tag })
    }

    fn pairs(&self, rng: &mut Rng, tags: &[&[u32]]) -> Result<Vec<(usize, usize)>> {
        let b = tags.len();
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let mine = self.class(tags[i]);
            let others: Vec<usize> = (0..b).filter(|&j| j != i && self.class(tags[j]) != mine).collect();
            if !others.is_empty() {
                out.push((i, others[rng.below(others.len())]));
            } else if i + 1 < b {
                out.push((i, i + 1));
            }
        }
        Ok(out)
    }
}

export_plugin!(
    name: "samplers",
    noise_samplers: [TruncatedNormal, SpherePath],
    mismatch_samplers: [ClassAware],
);

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn truncated_noise_stays_within_the_bound() {
        let s = TruncatedNormal::configure(&mut Attrs::parse("(truncation: 0.5)", None).unwrap()).unwrap();
        let z = s.sample(&mut Rng::seeded(1), 64, 16).unwrap();
        assert_eq!(z.len(), 64 * 16);
        assert!(z.iter().all(|x| x.abs() < 0.5));
        assert!(TruncatedNormal::configure(&mut Attrs::parse("(truncation: 0.0)", None).unwrap()).is_err());
    }

    #[test]
    fn slerp_ends_at_the_end_points_and_keeps_the_norm() {
        let a = [1.0f32, 0.0, 0.0];
        let b = [0.0f32, 2.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        let end = slerp(&a, &b, 1.0);
        assert!((end[1] - 2.0).abs() < 1e-6 && end[0].abs() < 1e-6);
        let mid = slerp(&[1.0, 0.0], &[0.0, 1.0], 0.5);
        assert!((norm(&mid) - 1.0).abs() < 1e-6, "{mid:?}");
        // Parallel vectors fall back to a line.
        assert_eq!(slerp(&[1.0, 1.0], &[2.0, 2.0], 0.5), vec![1.5, 1.5]);
    }

    #[test]
    fn sphere_paths_walk_between_draws() {
        let s = SpherePath::configure(&mut Attrs::parse("(steps: 4)", None).unwrap()).unwrap();
        let z = s.sample(&mut Rng::seeded(2), 10, 8).unwrap();
        assert_eq!(z.len(), 80);
        let rows: Vec<&[f32]> = z.chunks(8).collect();
        // Row 1 lies on the circle from row 0 to row 3.
        let expect = slerp(rows[0], rows[3], 1.0 / 3.0);
        assert!(expect.iter().zip(rows[1]).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(SpherePath::configure(&mut Attrs::parse("(steps: 1)", None).unwrap()).is_err());
    }

    #[test]
    fn class_aware_pairs_differ_in_class() {
        let s = ClassAware::configure(&mut Attrs::parse("(tag: 1)", None).unwrap()).unwrap();
        let tags: Vec<Vec<u32>> = vec![vec![0, 1], vec![0, 2], vec![1, 1], vec![3, 2]];
        let t: Vec<&[u32]> = tags.iter().map(|v| v.as_slice()).collect();
        let pairs = s.pairs(&mut Rng::seeded(3), &t).unwrap();
        assert_eq!(pairs.len(), 4);
        for (i, j) in pairs {
            assert_ne!(tags[i][1], tags[j][1]);
        }
        // One class only (or no tags): a batch shift.
        let none: Vec<&[u32]> = vec![&[]; 3];
        let all = ClassAware::configure(&mut Attrs::parse("()", None).unwrap()).unwrap();
        assert_eq!(all.pairs(&mut Rng::seeded(4), &none).unwrap(), vec![(0, 1), (1, 2)]);
    }
}
