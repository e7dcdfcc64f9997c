//! Von Mises maths: Bessel-function ratios, the concentration estimator and the sampler.
//!
//! The von Mises density on the circle is `f(θ | μ, κ) = exp(κ cos(θ - μ)) / (2π I0(κ))`.
//! Its mean resultant length is `A1(κ) = I1(κ) / I0(κ)`, so the circular variance of the
//! distribution is `1 - A1(κ)`, and the maximum-likelihood concentration given a sample's mean
//! resultant length `R̄` solves `A1(κ) = R̄`.

use core::f64::consts::{PI, TAU};

use rand::RngExt;
use rand::distr::Open01;
use rand_distr::StandardNormal;

/// Below this the series for `I0`, `I1` is used; above it the asymptotic expansion (both are
/// accurate to ~1e-12 relative at the switch, see the tests).
const SERIES_MAX: f64 = 50.0;

/// `(Σ_m t_m, Σ_m u_m)` with `t_m = (x/2)^{2m} / (m!)^2` (→ `I0(x)`) and
/// `u_m = (x/2)^{2m+1} / (m! (m+1)!)` (→ `I1(x)`); only for `0 <= x <= SERIES_MAX`.
fn bessel_series(x: f64) -> (f64, f64) {
    let h = x / 2.0;
    let (mut t, mut s0, mut s1) = (1.0f64, 0.0f64, 0.0f64);
    let mut m = 0.0f64;
    loop {
        s0 += t;
        s1 += t * h / (m + 1.0);
        m += 1.0;
        t *= h * h / (m * m);
        if m > h && t < 1e-17 * s0 {
            return (s0, s1);
        }
    }
}

/// Asymptotic expansions `I_ν(x) ≈ e^x / sqrt(2πx) · S_ν(x)` for ν = 0, 1, returning
/// `(S0(x), S0(x) - S1(x))` (the difference directly, to keep `1 - A1` accurate).
///
/// `S_ν = Σ_k t_k` with `t_0 = 1`, `t_k = t_{k-1} ((2k-1)² - 4ν²) / (8 k x)`; for x >= 50 the
/// terms shrink quickly, and summing until they drop below 1e-17 leaves an error far below
/// f64 precision (the series only diverges after k ≈ 2x terms).
fn bessel_asymptotic(x: f64) -> (f64, f64) {
    let (mut t0, mut t1) = (1.0f64, 1.0f64);
    let (mut s0, mut d) = (1.0f64, 0.0f64);
    for k in 1..200 {
        let kf = k as f64;
        let odd = (2.0 * kf - 1.0) * (2.0 * kf - 1.0);
        t0 *= odd / (8.0 * kf * x);
        t1 *= (odd - 4.0) / (8.0 * kf * x);
        s0 += t0;
        d += t0 - t1;
        if t0.abs() < 1e-17 && t1.abs() < 1e-17 {
            break;
        }
    }
    (s0, d)
}

/// `A1(κ) = I1(κ) / I0(κ)`, the mean resultant length of a von Mises distribution (κ >= 0).
pub fn a1(kappa: f64) -> f64 {
    1.0 - one_minus_a1(kappa)
}

/// `1 - A1(κ)`: the circular variance of a von Mises distribution, computed without
/// cancellation for large κ (where it is about `1 / (2κ)`).
pub fn one_minus_a1(kappa: f64) -> f64 {
    if kappa <= 0.0 {
        1.0
    } else if kappa <= SERIES_MAX {
        let (i0, i1) = bessel_series(kappa);
        (i0 - i1) / i0
    } else {
        let (s0, d) = bessel_asymptotic(kappa);
        d / s0
    }
}

/// `ln I0(κ) - κ` (the exponentially scaled log Bessel function, finite for all κ >= 0).
pub fn log_i0_scaled(kappa: f64) -> f64 {
    if kappa <= SERIES_MAX {
        bessel_series(kappa).0.ln() - kappa
    } else {
        let (s0, _) = bessel_asymptotic(kappa);
        s0.ln() - 0.5 * (TAU * kappa).ln()
    }
}

/// `d/dκ A1(κ) = 1 - A1/κ - A1²` (with its limit 1/2 at κ = 0).
fn a1_derivative(kappa: f64) -> f64 {
    if kappa < 1e-8 {
        return 0.5;
    }
    let a = a1(kappa);
    1.0 - a / kappa - a * a
}

/// Best & Fisher (1981) approximation of `A1⁻¹(R̄)`, the usual closed-form starting point.
pub fn best_fisher_kappa(r: f64) -> f64 {
    if r < 0.53 {
        2.0 * r + r.powi(3) + 5.0 * r.powi(5) / 6.0
    } else if r < 0.85 {
        -0.4 + 1.39 * r + 0.43 / (1.0 - r)
    } else {
        1.0 / (r * (1.0 - r) * (3.0 - r))
    }
}

/// Maximum-likelihood concentration for a mean resultant length `r` in `[0, 1]`: the
/// Best–Fisher approximation, refined by Newton's method on `A1(κ) = r` while κ < 1e6 (beyond
/// that Best–Fisher already matches the asymptotic inverse `1/(2(1-r)) + 1/4` to O(1/κ)).
/// Returns `+inf` for `r = 1` (all angles equal).
pub fn kappa_mle(r: f64) -> f64 {
    let r = r.clamp(0.0, 1.0);
    if r >= 1.0 {
        return f64::INFINITY;
    }
    if r <= 0.0 {
        return 0.0;
    }
    let mut k = best_fisher_kappa(r);
    if k >= 1e6 {
        return k;
    }
    for _ in 0..50 {
        let step = (a1(k) - r) / a1_derivative(k);
        let next = if k - step > 0.0 { k - step } else { k / 2.0 };
        let done = (next - k).abs() <= 1e-13 * k.max(1e-300);
        k = next;
        if done {
            break;
        }
    }
    k
}

/// Wrap an angle into `(-π, π]`.
pub fn wrap(theta: f64) -> f64 {
    let t = theta.rem_euclid(TAU);
    if t > PI { t - TAU } else { t }
}

/// Absolute angular distance in `[0, π]`.
pub fn angular_distance(a: f64, b: f64) -> f64 {
    wrap(a - b).abs()
}

/// `ln f(θ | μ, κ)`, written as `κ (cos d - 1) - (ln I0(κ) - κ) - ln 2π` with
/// `cos d - 1 = -2 sin²(d/2)`, so it is accurate even for huge κ.
pub fn log_density(theta: f64, mu: f64, kappa: f64) -> f64 {
    let s = ((theta - mu) / 2.0).sin();
    -2.0 * kappa * s * s - log_i0_scaled(kappa) - TAU.ln()
}

/// Draw one angle in `(-π, π]` from `VM(μ, κ)`.
///
/// Best & Fisher (1979) rejection sampler (as in NumPy), with the uniform distribution for
/// κ < 1e-8 and the normal approximation `N(μ, 1/κ)` (wrapped) for κ > 1e6, where the rejection
/// constants lose precision and the approximation error in the variance is O(κ⁻²).
pub fn sample<R: rand::Rng + ?Sized>(rng: &mut R, mu: f64, kappa: f64) -> f64 {
    if kappa < 1e-8 {
        let u: f64 = rng.sample(Open01);
        return wrap(mu + PI * (2.0 * u - 1.0));
    }
    if kappa > 1e6 {
        let z: f64 = rng.sample(StandardNormal);
        return wrap(mu + z / kappa.sqrt());
    }
    let s = if kappa < 1e-5 {
        1.0 / kappa + kappa
    } else {
        let r = 1.0 + (1.0 + 4.0 * kappa * kappa).sqrt();
        let rho = (r - (2.0 * r).sqrt()) / (2.0 * kappa);
        (1.0 + rho * rho) / (2.0 * rho)
    };
    let w = loop {
        let u: f64 = rng.sample(Open01);
        let z = (PI * u).cos();
        let w = (1.0 + s * z) / (s + z);
        let y = kappa * (s - w);
        let v: f64 = rng.sample(Open01);
        if y * (2.0 - y) - v >= 0.0 || (y / v).ln() + 1.0 - y >= 0.0 {
            break w;
        }
    };
    let u: f64 = rng.sample(Open01);
    let angle = w.clamp(-1.0, 1.0).acos();
    wrap(if u < 0.5 { mu - angle } else { mu + angle })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bessel_values() {
        // Reference values of I0, I1 (Abramowitz & Stegun table 9.8).
        let i0_1 = 1.266_065_877_752_008_4f64;
        let i1_1 = 0.565_159_103_992_485_1f64;
        assert!((log_i0_scaled(1.0) + 1.0 - i0_1.ln()).abs() < 1e-14);
        assert!((a1(1.0) - i1_1 / i0_1).abs() < 1e-14);
        let i0_10 = 2_815.716_628_466_254f64;
        let i1_10 = 2_670.988_303_701_255f64;
        assert!((log_i0_scaled(10.0) + 10.0 - i0_10.ln()).abs() < 1e-12);
        assert!((a1(10.0) - i1_10 / i0_10).abs() < 1e-13);
        assert_eq!(a1(0.0), 0.0);
        assert!((a1(1e-6) - 0.5e-6).abs() < 1e-15);
    }

    #[test]
    fn series_and_asymptotic_agree_at_the_switch() {
        let (i0, i1) = bessel_series(SERIES_MAX);
        let (s0, d) = bessel_asymptotic(SERIES_MAX);
        assert!(((i0 - i1) / i0 - d / s0).abs() < 1e-12);
        let log_series = i0.ln() - SERIES_MAX;
        let log_asym = s0.ln() - 0.5 * (TAU * SERIES_MAX).ln();
        assert!((log_series - log_asym).abs() < 1e-11);
        // Large-κ behaviour: 1 - A1 ≈ 1/(2κ).
        assert!((one_minus_a1(1e8) * 2e8 - 1.0).abs() < 1e-7);
    }

    #[test]
    fn kappa_mle_inverts_a1() {
        for &k in &[1e-4, 0.01, 0.3, 1.0, 2.5, 4.0, 10.0, 49.0, 51.0, 300.0, 1e4, 5e5] {
            let r = a1(k);
            let est = kappa_mle(r);
            assert!((est - k).abs() <= 1e-8 * k, "k={k} est={est}");
            // Best-Fisher alone is within a few percent.
            assert!((best_fisher_kappa(r) - k).abs() <= 0.05 * k + 0.05, "k={k}");
        }
        assert_eq!(kappa_mle(0.0), 0.0);
        assert_eq!(kappa_mle(1.0), f64::INFINITY);
    }

    #[test]
    fn density_integrates_to_one() {
        for &(mu, k) in &[(0.3, 0.0), (1.0, 0.5), (-2.0, 4.0), (3.0, 80.0)] {
            let n = 20_000;
            let h = TAU / n as f64;
            let total: f64 = (0..n).map(|j| log_density(-PI + (j as f64 + 0.5) * h, mu, k).exp() * h).sum();
            assert!((total - 1.0).abs() < 1e-9, "mu={mu} k={k} total={total}");
        }
    }

    #[test]
    fn sampler_matches_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for &(mu, k) in &[(0.5, 0.0), (0.5, 1e-6), (1.0, 0.7), (-2.5, 4.0), (3.0, 200.0), (0.2, 5e6)] {
            let n = 100_000;
            let (mut c, mut s) = (0.0, 0.0);
            for _ in 0..n {
                let t = sample(&mut rng, mu, k);
                assert!(t > -PI && t <= PI);
                c += t.cos();
                s += t.sin();
            }
            let r = (c * c + s * s).sqrt() / n as f64;
            // Standard error of R̄ is about sqrt((1 - A1²)/(2n)) <= 0.0023.
            assert!((r - a1(k)).abs() < 0.01, "k={k}: R̄={r} A1={}", a1(k));
            if k > 0.5 {
                assert!(angular_distance(s.atan2(c), mu) < 0.02, "k={k}");
            }
        }
    }
}
