//! The statistics over Inception features, in f64: Fréchet distance (FID), kernel inception
//! distance (KID), Inception Score (IS), and k-NN precision and recall.

use faer::{Mat, Side};

/// `n` samples of `dim` features each, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// Values, `n × dim`.
    pub data: Vec<f64>,
    /// Features per sample.
    pub dim: usize,
}

impl Samples {
    /// Rows of `dim` values; `data.len()` must be a multiple of `dim`.
    pub fn new(data: Vec<f64>, dim: usize) -> Self {
        debug_assert!(dim > 0 && data.len().is_multiple_of(dim));
        Self { data, dim }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn matrix(&self) -> Mat<f64> {
        Mat::from_fn(self.len(), self.dim, |i, j| self.data[i * self.dim + j])
    }

    /// Mean and unbiased covariance (as `np.cov(rowvar=False)`).
    pub fn mean_cov(&self) -> (Vec<f64>, Mat<f64>) {
        let n = self.len();
        let mut mu = vec![0.0; self.dim];
        for i in 0..n {
            mu.iter_mut().zip(self.row(i)).for_each(|(m, v)| *m += v);
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);
        let centred = Mat::from_fn(n, self.dim, |i, j| self.data[i * self.dim + j] - mu[j]);
        let cov = centred.transpose() * &centred * faer::Scale(1.0 / (n as f64 - 1.0).max(1.0));
        (mu, cov)
    }
}

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatsError(pub String);

/// FID: the Fréchet distance between Gaussians fitted to `a` and `b` (each needs 2 samples).
pub fn fid(a: &Samples, b: &Samples) -> Result<f64, StatsError> {
    if a.len() < 2 || b.len() < 2 || a.dim != b.dim {
        return Err(StatsError(format!(
            "FID needs two sets of at least 2 samples with the same features ({} × {}, {} × {})",
            a.len(),
            a.dim,
            b.len(),
            b.dim
        )));
    }
    let ((mu1, s1), (mu2, s2)) = (a.mean_cov(), b.mean_cov());
    frechet_distance(&mu1, &s1, &mu2, &s2)
}

/// `‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½`. The trace of the square root is
/// `Σ √λ` over the eigenvalues of the symmetric `Σ₁^½ Σ₂ Σ₁^½`, which has the same
/// eigenvalues as `Σ₁Σ₂`; both square roots come from symmetric eigendecompositions, so a
/// singular covariance (fewer samples than features) needs no offset.
pub fn frechet_distance(mu1: &[f64], s1: &Mat<f64>, mu2: &[f64], s2: &Mat<f64>) -> Result<f64, StatsError> {
    let eig_err = |e| StatsError(format!("eigendecomposition failed: {e:?}"));
    let d2: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let trace = |m: &Mat<f64>| (0..m.nrows()).map(|i| m[(i, i)]).sum::<f64>();
    let e = s1.self_adjoint_eigen(Side::Lower).map_err(eig_err)?;
    let (u, s) = (e.U(), e.S().column_vector());
    let root = Mat::from_fn(u.nrows(), u.ncols(), |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let sqrt1 = &root * u.transpose();
    let m = &sqrt1 * s2 * &sqrt1;
    let sym = Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let lambdas = sym.self_adjoint_eigenvalues(Side::Lower).map_err(eig_err)?;
    let tr_covmean: f64 = lambdas.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok(d2 + trace(s1) + trace(s2) - 2.0 * tr_covmean)
}

/// Rows of `a` against rows of `b` by blocks: `f(i, j, a_i · b_j)` for every pair.
fn for_each_dot(a: &Samples, b: &Samples, mut f: impl FnMut(usize, usize, f64)) {
    const BLOCK: usize = 1024;
    let bm = b.matrix();
    for start in (0..a.len()).step_by(BLOCK) {
        let rows = BLOCK.min(a.len() - start);
        let block = Mat::from_fn(rows, a.dim, |i, j| a.data[(start + i) * a.dim + j]);
        let g = &block * bm.transpose();
        for i in 0..rows {
            for j in 0..b.len() {
                f(start + i, j, g[(i, j)]);
            }
        }
    }
}

/// KID: the unbiased MMD² between `a` and `b` with the kernel `(x·y/d + 1)³`, over all
/// samples (each set needs 2).
pub fn kid(a: &Samples, b: &Samples) -> Result<f64, StatsError> {
    if a.len() < 2 || b.len() < 2 || a.dim != b.dim {
        return Err(StatsError("KID needs two sets of at least 2 samples with the same features".into()));
    }
    let d = a.dim as f64;
    let k = |dot: f64| (dot / d + 1.0).powi(3);
    let off_diagonal = |x: &Samples| {
        let mut sum = 0.0;
        for_each_dot(x, x, |i, j, dot| {
            if i != j {
                sum += k(dot);
            }
        });
        sum / (x.len() * (x.len() - 1)) as f64
    };
    let mut cross = 0.0;
    for_each_dot(a, b, |_, _, dot| cross += k(dot));
    Ok(off_diagonal(a) + off_diagonal(b) - 2.0 * cross / (a.len() * b.len()) as f64)
}

/// Inception Score of class `logits` (one row per sample): the samples in `splits`
/// consecutive groups, each scored `exp(mean KL(p(y|x) ‖ p(y)))` with `p(y)` the group's
/// mean; returns the mean and standard deviation over groups.
pub fn inception_score(logits: &Samples, splits: usize) -> Result<(f64, f64), StatsError> {
    let n = logits.len();
    if splits == 0 || n < splits {
        return Err(StatsError(format!("Inception Score in {splits} splits needs at least {splits} samples, got {n}")));
    }
    let log_p: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let row = logits.row(i);
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            row.iter().map(|v| v - lse).collect()
        })
        .collect();
    let scores: Vec<f64> = (0..splits)
        .map(|k| {
            let part = &log_p[k * n / splits..(k + 1) * n / splits];
            let mut py = vec![0.0; logits.dim];
            for row in part {
                py.iter_mut().zip(row).for_each(|(m, l)| *m += l.exp() / part.len() as f64);
            }
            let kl: f64 = part
                .iter()
                .map(|row| row.iter().zip(&py).map(|(l, q)| l.exp() * (l - q.ln())).sum::<f64>())
                .sum::<f64>()
                / part.len() as f64;
            kl.exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok((mean, var.sqrt()))
}

/// Squared distances of every row of `a` to every row of `b`, visited by blocks.
fn for_each_dist2(a: &Samples, b: &Samples, mut f: impl FnMut(usize, usize, f64)) {
    let norms = |x: &Samples| (0..x.len()).map(|i| x.row(i).iter().map(|v| v * v).sum()).collect::<Vec<f64>>();
    let (na, nb) = (norms(a), norms(b));
    for_each_dot(a, b, |i, j, dot| f(i, j, (na[i] + nb[j] - 2.0 * dot).max(0.0)));
}

/// For each sample, the squared distance to its `k`-th nearest other sample.
fn knn_radii2(x: &Samples, k: usize) -> Vec<f64> {
    let mut nearest = vec![Vec::with_capacity(k + 1); x.len()];
    for_each_dist2(x, x, |i, j, d| {
        if i != j {
            let list: &mut Vec<f64> = &mut nearest[i];
            let at = list.partition_point(|&v| v <= d);
            if at < k {
                list.insert(at, d);
                list.truncate(k);
            }
        }
    });
    nearest.into_iter().map(|l| l.last().copied().unwrap_or(f64::INFINITY)).collect()
}

/// Improved precision and recall (Kynkäänniemi et al., 2019): each set's manifold is the
/// union of balls reaching each sample's `k`-th nearest neighbour; precision is the share
/// of `fake` inside the real manifold, recall the share of `real` inside the fake one.
pub fn precision_recall(real: &Samples, fake: &Samples, k: usize) -> Result<(f64, f64), StatsError> {
    if real.len() <= k || fake.len() <= k || real.dim != fake.dim {
        return Err(StatsError(format!("precision and recall need more than k = {k} samples in each set")));
    }
    let (r_real, r_fake) = (knn_radii2(real, k), knn_radii2(fake, k));
    let (mut fake_in, mut real_in) = (vec![false; fake.len()], vec![false; real.len()]);
    for_each_dist2(real, fake, |i, j, d| {
        fake_in[j] |= d <= r_real[i];
        real_in[i] |= d <= r_fake[j];
    });
    let share = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / v.len() as f64;
    Ok((share(&fake_in), share(&real_in)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let a = Samples::new(lcg(60 * 5, 1), 5);
        assert!(fid(&a, &a).unwrap().abs() < 1e-9);
        let (p, r) = precision_recall(&a, &a, 3).unwrap();
        assert_eq!((p, r), (1.0, 1.0));
    }

    #[test]
    fn fid_of_shifted_set_is_the_squared_shift() {
        let a = Samples::new(lcg(50 * 4, 2), 4);
        let b = Samples::new(a.data.iter().map(|v| v + 0.5).collect(), 4);
        assert!((fid(&a, &b).unwrap() - 4.0 * 0.25).abs() < 1e-9);
    }

    #[test]
    fn uniform_logits_score_one() {
        let l = Samples::new(vec![0.0; 20 * 4], 4);
        let (m, s) = inception_score(&l, 2).unwrap();
        assert!((m - 1.0).abs() < 1e-12 && s.abs() < 1e-12);
        assert!(inception_score(&l, 30).is_err());
    }

    #[test]
    fn too_few_samples_are_errors() {
        let one = Samples::new(vec![0.0; 3], 3);
        assert!(fid(&one, &one).is_err());
        assert!(kid(&one, &one).is_err());
        assert!(precision_recall(&one, &one, 3).is_err());
    }
}
