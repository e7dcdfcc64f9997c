//! Per-text metrics of a Gaussian conditional (docs/model.md section 7). Matrix products go
//! through [`matmul`], so a metric has the same bits on every machine.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::linalg::gemm::matmul;

/// Symmetric square root of a positive semi-definite matrix (negative roundoff eigenvalues
/// are treated as zero: the root of the nearest PSD matrix).
pub fn sqrtm_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(m.clone());
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    // V diag(roots) V^T: the columns of V scaled, then one product (machine-independent bits).
    let mut scaled = eig.eigenvectors.clone();
    for (mut column, r) in scaled.column_iter_mut().zip(roots.iter()) {
        column *= *r;
    }
    matmul(&scaled, &eig.eigenvectors.transpose())
}

/// `tr Sigma^(1/2)` from the eigenvalues of `Sigma`.
pub fn trace_sqrt(eigenvalues: &DVector<f64>) -> f64 {
    eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum()
}

/// `log det Sigma` from its eigenvalues: `-inf` for a singular covariance, its true value.
pub fn log_det(eigenvalues: &DVector<f64>) -> f64 {
    eigenvalues.iter().map(|l| l.max(0.0).ln()).sum()
}

/// Effective rank: `exp` of the entropy of the normalised eigenvalues. Equals `d` for an
/// isotropic covariance and falls towards 1 as the covariance contracts onto one direction.
/// Zero for a zero covariance (no direction left).
pub fn effective_rank(eigenvalues: &DVector<f64>) -> f64 {
    let total: f64 = eigenvalues.iter().map(|l| l.max(0.0)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let h: f64 = eigenvalues.iter().map(|l| l.max(0.0) / total).filter(|&q| q > 0.0).map(|q| -q * q.ln()).sum();
    h.exp()
}

/// Squared Frechet (2-Wasserstein) distance between `N(mu1, s1)` and `N(mu2, s2)`:
/// `|mu1 - mu2|^2 + tr(s1 + s2 - 2 (s2^(1/2) s1 s2^(1/2))^(1/2))`.
pub fn frechet_sq(mu1: &DVector<f64>, s1: &DMatrix<f64>, mu2: &DVector<f64>, s2: &DMatrix<f64>) -> f64 {
    frechet_sq_with_sqrt(mu1, s1, mu2, s2, &sqrtm_psd(s2))
}

/// [`frechet_sq`] with `s2^(1/2)` precomputed (the initial conditional's root is reused
/// every round).
pub fn frechet_sq_with_sqrt(mu1: &DVector<f64>, s1: &DMatrix<f64>, mu2: &DVector<f64>, s2: &DMatrix<f64>, s2_sqrt: &DMatrix<f64>) -> f64 {
    let mut cross = matmul(&matmul(s2_sqrt, s1), s2_sqrt);
    // Symmetrise: the product is symmetric in exact arithmetic only.
    cross = (&cross + cross.transpose()) * 0.5;
    let cross_trace = trace_sqrt(&SymmetricEigen::new(cross).eigenvalues);
    let d2 = (mu1 - mu2).norm_squared() + s1.trace() + s2.trace() - 2.0 * cross_trace;
    d2.max(0.0)
}

/// Mean and covariance of the mixture `sum_i p_i N(mu_i, s_i)`: `m = sum p_i mu_i`,
/// `C = sum p_i s_i + sum p_i (mu_i - m)(mu_i - m)^T` (the law of total covariance, centred so
/// that a small spread next to a large mean keeps its precision). Texts with `p_i = 0` drop out.
pub fn mixture_moments(p: &[f64], moments: &[(DVector<f64>, DMatrix<f64>)]) -> (DVector<f64>, DMatrix<f64>) {
    let d = moments.first().map_or(0, |(m, _)| m.len());
    let mut mean = DVector::zeros(d);
    for (w, (m, _)) in p.iter().zip(moments) {
        mean.axpy(*w, m, 1.0);
    }
    let mut cov = DMatrix::zeros(d, d);
    for (w, (m, s)) in p.iter().zip(moments) {
        if *w == 0.0 {
            continue;
        }
        let dm = m - &mean;
        cov += s * *w;
        cov.ger(*w, &dm, &dm, 1.0);
    }
    (mean, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_of_identical_and_of_commuting_covariances() {
        let mu = DVector::from_vec(vec![1.0, 2.0]);
        let s = DMatrix::from_row_slice(2, 2, &[0.4, 0.1, 0.1, 0.3]);
        assert!(frechet_sq(&mu, &s, &mu, &s) < 1e-12);
        // Commuting diagonal covariances: sum (sqrt a - sqrt b)^2 plus the mean term.
        let a = DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 1.0]));
        let b = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 9.0]));
        let zero = DVector::zeros(2);
        let expected = 3.0f64.powi(2) + 1.0 + 4.0;
        let shifted = DVector::from_vec(vec![3.0, 0.0]);
        assert!((frechet_sq(&shifted, &a, &zero, &b) - expected).abs() < 1e-12);
    }

    #[test]
    fn mixture_of_two_points_has_their_spread() {
        // Two point masses at -1 and 1 with weights 1/4, 3/4: mean 1/2, variance 1 - 1/4.
        let moments = [(DVector::from_vec(vec![-1.0]), DMatrix::zeros(1, 1)), (DVector::from_vec(vec![1.0]), DMatrix::zeros(1, 1))];
        let (m, c) = mixture_moments(&[0.25, 0.75], &moments);
        assert!((m[0] - 0.5).abs() < 1e-15 && (c[(0, 0)] - 0.75).abs() < 1e-15);
    }

    #[test]
    fn effective_rank_of_isotropic_and_rank_one() {
        assert!((effective_rank(&DVector::from_vec(vec![0.1, 0.1, 0.1])) - 3.0).abs() < 1e-12);
        assert!((effective_rank(&DVector::from_vec(vec![0.0, 2.0])) - 1.0).abs() < 1e-12);
        assert_eq!(log_det(&DVector::from_vec(vec![0.0, 2.0])), f64::NEG_INFINITY);
    }
}
