//! The inner loops: drawing samples through a factor, counting clamped factors, squared
//! distances.

use nalgebra::DVector;
use rand_distr::{Distribution, StandardNormal};

use super::factor::Factor;
use crate::rng::Stream;

/// Draws `counts[i]` samples of `N(mu[i], c * Sigma_i)` for every text into `out`, using the
/// factors' square roots.
pub(super) fn sample_into(
    mu: &[DVector<f64>],
    factors: &[Factor],
    counts: &[usize],
    c: f64,
    rng: &mut Stream,
    out: &mut Vec<f64>,
    z: &mut Vec<f64>,
) {
    let d = mu.first().map_or(0, |m| m.len());
    let total: usize = counts.iter().sum();
    out.clear();
    out.resize(total * d, 0.0);
    // The paper's d = 2 (and other tiny d) get a kernel with the dimension known at compile
    // time, fully unrolled; the arithmetic and the order of random draws are the same.
    match d {
        1 => sample_kernel::<1>(mu, factors, counts, c, rng, out),
        2 => sample_kernel::<2>(mu, factors, counts, c, rng, out),
        3 => sample_kernel::<3>(mu, factors, counts, c, rng, out),
        4 => sample_kernel::<4>(mu, factors, counts, c, rng, out),
        _ => sample_kernel_dyn(d, mu, factors, counts, c, rng, out, z),
    }
}

fn sample_kernel<const D: usize>(mu: &[DVector<f64>], factors: &[Factor], counts: &[usize], c: f64, rng: &mut Stream, out: &mut [f64]) {
    let scale = c.sqrt();
    let mut samples = out.chunks_exact_mut(D);
    for (i, &n) in counts.iter().enumerate() {
        let a: [[f64; D]; D] = std::array::from_fn(|col| std::array::from_fn(|r| factors[i].sqrt[(r, col)]));
        let m: [f64; D] = std::array::from_fn(|x| mu[i][x]);
        for y in samples.by_ref().take(n) {
            // A plain loop rather than `array::from_fn`: whether LLVM inlined the latter's
            // fallible-closure machinery here varied from build to build (6% of a paper-scale
            // round in instructions); the draws and their order are the same.
            let mut z = [0.0f64; D];
            for v in &mut z {
                *v = StandardNormal.sample(rng);
            }
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
}

#[expect(
    clippy::too_many_arguments,
    reason = "the dynamic-dimension twin of `sample_kernel::<D>`: its six inputs plus the dimension and a scratch buffer, kept as plain arguments in the hot loop"
)]
fn sample_kernel_dyn(
    d: usize,
    mu: &[DVector<f64>],
    factors: &[Factor],
    counts: &[usize],
    c: f64,
    rng: &mut Stream,
    out: &mut [f64],
    z: &mut Vec<f64>,
) {
    let scale = c.sqrt();
    z.resize(d, 0.0);
    let mut samples = out.chunks_exact_mut(d.max(1));
    for (i, &n) in counts.iter().enumerate() {
        let a = factors[i].sqrt.as_slice();
        let m = mu[i].as_slice();
        for y in samples.by_ref().take(n) {
            for zr in z.iter_mut() {
                *zr = StandardNormal.sample(rng);
            }
            y.copy_from_slice(m);
            for (col, &zc) in z.iter().enumerate() {
                let zc = zc * scale;
                for (yr, ar) in y.iter_mut().zip(&a[col * d..(col + 1) * d]) {
                    *yr += ar * zc;
                }
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
