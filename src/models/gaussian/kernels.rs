//! The inner loops: the affine map of standard normal draws through a full covariance's
//! square root, counting clamped factors, squared distances.

use nalgebra::DMatrix;

use super::factor::Factor;

/// `y_j = mu + A (scale z_j)` for every sample `j`: `z` and `out` are row-major `n x d`, `a`
/// is a `d x d` square root of the covariance (`A A^T = Sigma`).
pub(super) fn affine(a: &DMatrix<f64>, mu: &[f64], scale: f64, z: &[f64], out: &mut [f64]) {
    // The paper's d = 2 (and other small d, to 8) get a kernel with the dimension known at
    // compile time, fully unrolled, each sample's coordinates held in registers instead of
    // stored and reloaded once per column; the arithmetic is the same.
    match mu.len() {
        1 => affine_kernel::<1>(a, mu, scale, z, out),
        2 => affine_kernel::<2>(a, mu, scale, z, out),
        3 => affine_kernel::<3>(a, mu, scale, z, out),
        4 => affine_kernel::<4>(a, mu, scale, z, out),
        5 => affine_kernel::<5>(a, mu, scale, z, out),
        6 => affine_kernel::<6>(a, mu, scale, z, out),
        7 => affine_kernel::<7>(a, mu, scale, z, out),
        8 => affine_kernel::<8>(a, mu, scale, z, out),
        _ => affine_dyn(a, mu, scale, z, out),
    }
}

fn affine_kernel<const D: usize>(a: &DMatrix<f64>, mu: &[f64], scale: f64, z: &[f64], out: &mut [f64]) {
    let a: [[f64; D]; D] = std::array::from_fn(|col| std::array::from_fn(|r| a[(r, col)]));
    let m: [f64; D] = std::array::from_fn(|x| mu[x]);
    for (y, z) in out.chunks_exact_mut(D).zip(z.chunks_exact(D)) {
        // Same operation order as the general kernel: y = mu, then += column * (z * scale).
        for r in 0..D {
            let mut v = m[r];
            for col in 0..D {
                v += a[col][r] * (z[col] * scale);
            }
            y[r] = v;
        }
    }
}

fn affine_dyn(a: &DMatrix<f64>, mu: &[f64], scale: f64, z: &[f64], out: &mut [f64]) {
    let d = mu.len();
    let a = a.as_slice();
    for (y, z) in out.chunks_exact_mut(d).zip(z.chunks_exact(d)) {
        y.copy_from_slice(mu);
        for (col, &zc) in z.iter().enumerate() {
            let zc = zc * scale;
            for (yr, ar) in y.iter_mut().zip(&a[col * d..(col + 1) * d]) {
                *yr += ar * zc;
            }
        }
    }
}

/// Uses of clamped factors in one call: texts with a regularised factor that the call draws
/// from (`counts[i] > 0`) or, for a log-likelihood (`counts = None`), scores against.
pub(super) fn clamped_uses(factors: &[Factor], counts: Option<&[usize]>) -> u64 {
    factors.iter().enumerate().filter(|(i, f)| f.regularized && counts.is_none_or(|c| c.get(*i).is_some_and(|&n| n > 0))).count() as u64
}

/// `|a - b|^2` with four independent partial sums, so the compiler can vectorise the loop
/// (one running sum would chain every addition). The grouping is fixed, so results are
/// reproducible.
#[inline]
pub(super) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        for l in 0..4 {
            let v = x[l] - y[l];
            acc[l] += v * v;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += (x - y) * (x - y);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}
