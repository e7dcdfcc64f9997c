//! The symmetric eigendecomposition of the factorisations, on caller-owned buffers, so that a
//! steady-state round does not allocate. Matrices are column-major `d x d` slices (the layout of
//! `nalgebra::DMatrix`). Plain additions, multiplications and square roots in a fixed order:
//! the same bits on every machine.

/// Eigendecomposition of a symmetric matrix by cyclic Jacobi rotations.
///
/// `a` (overwritten) holds the matrix; on return `values[k]` are the eigenvalues and column
/// `k` of `vectors` the matching unit eigenvector. Jacobi is chosen over QR iteration because
/// it works in place with no workspace, and it computes small eigenvalues to high relative
/// accuracy, which matters for the near-singular covariances that collapse produces. Sweeps
/// stop when the off-diagonal mass is below `f64::EPSILON^2` of the total (or after 64 sweeps;
/// convergence is quadratic, a 32 x 32 matrix needs about 8).
pub fn symmetric_eigen(a: &mut [f64], d: usize, values: &mut [f64], vectors: &mut [f64]) {
    debug_assert!(a.len() == d * d && values.len() == d && vectors.len() == d * d);
    vectors.fill(0.0);
    for i in 0..d {
        vectors[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..64 {
        let mut off = 0.0;
        for q in 0..d {
            for p in 0..q {
                off += a[q * d + p] * a[q * d + p];
            }
        }
        if off <= f64::EPSILON * f64::EPSILON * total || off == 0.0 {
            break;
        }
        for q in 1..d {
            for p in 0..q {
                let apq = a[q * d + p];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * d + p], a[q * d + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- J^T A J with J the rotation in the (p, q) plane.
                for k in 0..d {
                    let (akp, akq) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * akp - s * akq;
                    a[q * d + k] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * apk - s * aqk;
                    a[k * d + q] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (vectors[p * d + k], vectors[q * d + k]);
                    vectors[p * d + k] = c * vkp - s * vkq;
                    vectors[q * d + k] = s * vkp + c * vkq;
                }
            }
        }
    }
    for i in 0..d {
        values[i] = a[i * d + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn jacobi_reconstructs_random_symmetric_matrices() {
        for d in [1, 2, 3, 8, 32] {
            let b = DMatrix::from_fn(d, d, |r, c| ((r * 7 + c * 13) % 11) as f64 - 5.0 + (r as f64 * 0.37).sin());
            let m = &b * b.transpose();
            let mut a = m.as_slice().to_vec();
            let (mut vals, mut vecs) = (vec![0.0; d], vec![0.0; d * d]);
            symmetric_eigen(&mut a, d, &mut vals, &mut vecs);
            let v = DMatrix::from_column_slice(d, d, &vecs);
            let rebuilt = &v * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vals.clone())) * v.transpose();
            assert!((rebuilt - &m).amax() < 1e-10 * m.amax(), "d = {d}");
            assert!((v.transpose() * &v - DMatrix::identity(d, d)).amax() < 1e-12);
        }
    }

    #[test]
    fn jacobi_keeps_tiny_eigenvalues_accurate() {
        // diag(1, 1e-14) rotated by 30 degrees: the small eigenvalue survives with relative accuracy.
        let (c, s) = (3f64.sqrt() / 2.0, 0.5);
        let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let m = &r * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 1e-14])) * r.transpose();
        let mut a = m.as_slice().to_vec();
        let (mut vals, mut vecs) = (vec![0.0; 2], vec![0.0; 4]);
        symmetric_eigen(&mut a, 2, &mut vals, &mut vecs);
        vals.sort_by(f64::total_cmp);
        assert!((vals[0] - 1e-14).abs() < 1e-16, "{vals:?}");
    }
}
