//! Statistical theory tests of the core (docs/model.md sections 2-4, issue 2).
//!
//! Every random quantity is checked against the value docs/model.md's theory predicts, with a fixed seed
//! and a tolerance of `Z` standard errors of the estimate. Where the standard error can be
//! derived exactly (binomial counts, Wishart moments of a refit covariance) the exact value is
//! used; elsewhere it is the sample standard error over many independent replicates, which is
//! reliable because every such quantity is bounded or has light tails (stated per test).
//!
//! Worlds are built from RON scenarios through the public API (`Scenario::parse`,
//! `Simulation::step`) and observed through their metric rows, so the tests exercise the
//! wiring of the round schedule as well as the maths; the few properties that live below the
//! world (caption counts, soft counts, the sampler) are checked on the model API directly.

use coevo::metrics::MetricRow;
use coevo::metrics::text::{gini_simpson, max_p, shannon_entropy};
use coevo::models::text::{accumulate_caption_posterior, multinomial_counts, tempered};
use coevo::models::{ConditionalModel, DataPolicy, Estimator, GaussianImageModel};
use coevo::resolve::unit_circle_means;
use coevo::rng::entity_stream;
use coevo::world::TextAgent;
use coevo::{Scenario, Simulation};
use nalgebra::{DMatrix, DVector};

// `Z`, the tolerance of every statistical check in standard errors, is shared with
// `stabilisers.rs` and explained in `common`.
use crate::common::{Z, full, metric, per_text, scenario};

/// The non-uniform initial text distribution of the issue: no symmetry can make a check pass.
const P0: [f64; 5] = [0.4, 0.3, 0.15, 0.1, 0.05];

/// `P0` as a RON list.
fn p0_ron() -> String {
    format!("{P0:?}")
}

/// Runs replicates `0..replicates` of `scenario` for `rounds` rounds each and hands every
/// round's rows to `observe(replicate, rows)`, round 0 (the initial state) included.
fn ensemble(scenario: &Scenario, replicates: u64, rounds: u64, mut observe: impl FnMut(u64, &[MetricRow])) {
    for r in 0..replicates {
        let mut sim = Simulation::new(scenario, r).expect("scenario builds");
        observe(r, sim.measure().expect("round 0 measures"));
        for _ in 0..rounds {
            observe(r, sim.step().expect("round runs"));
        }
    }
}

/// Overwrites the (single) text model's `p`: repeated one-phase experiments from a given `p`.
fn set_p(sim: &mut Simulation, p: &[f64]) {
    let world = sim.world_mut();
    let mut query = world.query::<&mut TextAgent>();
    let mut agent = query.single_mut(world).expect("one text model");
    agent.model.p.copy_from_slice(p);
}

/// Moments of each `p'_i` over `rounds` independent text phases of `scenario`'s world, each
/// starting again from `p = P0` (so the rounds are i.i.d. draws of one phase from `P0`).
fn one_phase_moments(scenario: &Scenario, rounds: usize) -> [Moments; 5] {
    let mut sim = Simulation::new(scenario, 0).unwrap();
    let mut means = [Moments::default(); 5];
    for _ in 0..rounds {
        set_p(&mut sim, &P0);
        for (m, p) in means.iter_mut().zip(per_text(sim.step().unwrap(), "captioner", "p", 5)) {
            m.push(p);
        }
    }
    means
}

/// Running mean and sample variance (Welford), for ensemble averages and their standard errors.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let delta = x - self.mean;
        self.mean += delta / self.n;
        self.m2 += delta * (x - self.mean);
    }

    fn variance(&self) -> f64 {
        self.m2 / (self.n - 1.0)
    }

    /// Sample standard error of the mean.
    fn se(&self) -> f64 {
        (self.variance() / self.n).sqrt()
    }
}

/// Asserts that `estimate` is within `Z` standard errors `se` of the theoretical `expected`.
fn assert_close(what: &str, estimate: f64, expected: f64, se: f64) {
    let off = (estimate - expected) / se;
    assert!(off.abs() <= Z, "{what}: measured {estimate:.6e}, theory {expected:.6e}: {off:+.2} standard errors (se {se:.3e}, allowed {Z})");
}

/// The probabilities of Binomial(n, p), by the ratio recursion in log space (no underflow of
/// `(1-p)^n` for large `n`).
fn binomial_pmf(n: usize, p: f64) -> Vec<f64> {
    assert!(p > 0.0 && p < 1.0);
    let mut log = (n as f64) * (1.0 - p).ln();
    let odds = (p / (1.0 - p)).ln();
    let mut pmf = Vec::with_capacity(n + 1);
    for k in 0..=n {
        pmf.push(log.exp());
        log += ((n - k) as f64 / (k + 1) as f64).ln() + odds;
    }
    pmf
}

/// Exact mean and variance of `tr Sigma_t`, `t = 0..=rounds`, for one text whose conditional is
/// refit every round on `n` fresh samples of itself drawn at image temperature `c`, with `n`
/// distributed as `sizes` (`(n, probability)` pairs; one pair for `Fixed(n)`), independently
/// across rounds.
///
/// Given `Sigma` and `n >= 2`, the scatter about the sample mean is `W ~ Wishart(m, c Sigma)`,
/// `m = n - 1`, and the refit is `W / D` with `D = n` (MLE) or `m` (unbiased). The Wishart
/// moments `E tr W = m tr S`, `E (tr W)^2 = m^2 (tr S)^2 + 2 m tr S^2` and
/// `E tr W^2 = m (m + 1) tr S^2 + m (tr S)^2` (with `S = c Sigma`) close a linear recursion on
/// `(E tr Sigma, E (tr Sigma)^2, E tr Sigma^2)`. With `n < 2` the conditional is unchanged.
fn trace_moments(sigma0: &DMatrix<f64>, sizes: &[(usize, f64)], estimator: Estimator, c: f64, rounds: usize) -> Vec<(f64, f64)> {
    let trace = sigma0.trace();
    let (mut e, mut a, mut b) = (trace, trace * trace, (sigma0 * sigma0).trace());
    let mut out = vec![(e, a - e * e)];
    for _ in 0..rounds {
        let (mut e2, mut a2, mut b2) = (0.0, 0.0, 0.0);
        for &(n, prob) in sizes {
            if n < 2 {
                (e2, a2, b2) = (e2 + prob * e, a2 + prob * a, b2 + prob * b);
                continue;
            }
            let m = (n - 1) as f64;
            let s = c / match estimator {
                Estimator::Mle => n as f64,
                Estimator::Unbiased => m,
            };
            e2 += prob * s * m * e;
            a2 += prob * s * s * (m * m * a + 2.0 * m * b);
            b2 += prob * s * s * (m * (m + 1.0) * b + m * a);
        }
        (e, a, b) = (e2, a2, b2);
        out.push((e, a - e * e));
    }
    out
}

/// `Binomial(n, p)` as `(size, probability)` pairs for [`trace_moments`].
fn binomial_sizes(n: usize, p: f64) -> Vec<(usize, f64)> {
    binomial_pmf(n, p).into_iter().enumerate().collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The text phase is a martingale (docs/model.md section 3).
// ---------------------------------------------------------------------------------------------

/// Runs `R` replicates of a T = 1 world and checks the ensemble mean of every `p_i` at several
/// rounds against `p0`.
///
/// Standard error: `p'_i = (1/N) sum_j Z_i(y_j)` with `Z_i in [0, 1]` and `E Z_i = p_i`, so
/// `Var(p'_i | p) <= E Z_i^2 - p_i^2 <= p_i (1 - p_i) / N`. With the martingale,
/// `v_t = Var p_{t,i}` then obeys `v_{t+1} <= v_t (1 - 1/N) + p0_i (1 - p0_i) / N`, so
/// `v_t <= p0_i (1 - p0_i) (1 - (1 - 1/N)^t)` (equality in the Wright-Fisher limit), whatever
/// the image model does. The mean of `R` independent replicates has variance `v_t / R`: an
/// upper bound on the standard error. 4 rounds x 5 texts = 20 checks per call.
fn check_martingale(image_frozen: bool, seed: u64) {
    const N: u64 = 1000;
    const R: u64 = 300;
    const CHECKED: [u64; 4] = [1, 5, 10, 20];
    let s = scenario(&format!(
        "Scenario(name: \"martingale\", seed: {seed}, rounds: 20, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), batch: {N}),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic(0.1), batch: {N},
                       allocation: Binomial, frozen: {image_frozen}),
        ])",
        p0_ron()
    ));
    let mut means = vec![[Moments::default(); 5]; CHECKED.len()];
    ensemble(&s, R, 20, |_, rows| {
        if let Some(c) = CHECKED.iter().position(|&t| t == rows[0].round) {
            for (m, p) in means[c].iter_mut().zip(per_text(rows, "captioner", "p", 5)) {
                m.push(p);
            }
        }
    });
    for (c, &t) in CHECKED.iter().enumerate() {
        for i in 0..5 {
            let v = P0[i] * (1.0 - P0[i]) * (1.0 - (1.0 - 1.0 / N as f64).powi(t as i32));
            let what = format!("E p_{t},{i} (image model frozen: {image_frozen})");
            assert_close(&what, means[c][i].mean, P0[i], (v / R as f64).sqrt());
        }
    }
}

#[test]
fn text_phase_is_a_martingale_with_a_frozen_image_model() {
    check_martingale(true, 11);
}

#[test]
fn text_phase_is_a_martingale_while_the_image_model_co_evolves() {
    check_martingale(false, 12);
}

// ---------------------------------------------------------------------------------------------
// 2. (1 - 1/N) H <= E[H'] <= H, and both ends (docs/model.md section 3).
// ---------------------------------------------------------------------------------------------

/// Expectations over one image of the caption posterior `Z(y)` under the prior `p`, for `y`
/// drawn from the mixture `sum_k w_k N(mu_k, s2 I)` in two dimensions (`w = p` when captions
/// are drawn from `p` itself, `w = tau_T(p)` under a text temperature).
struct PosteriorExpectations {
    /// `E[Z_i(y)]` per text.
    z: Vec<f64>,
    /// `E[sum_i Z_i(y)^2]`.
    square: f64,
    /// Total mass of the quadrature (must be 1).
    mass: f64,
}

/// [`PosteriorExpectations`] by midpoint quadrature, written independently of the library's
/// posterior code. The grid spans 10 standard deviations beyond the means with 25 points per
/// standard deviation: the integrands are smooth Gaussians, for which the midpoint rule's
/// error at this spacing is far below 1e-9 (checked through the mass).
fn posterior_quadrature(w: &[f64], p: &[f64], means: &[DVector<f64>], s2: f64) -> PosteriorExpectations {
    let s = s2.sqrt();
    let h = s / 25.0;
    let lo = means.iter().flat_map(|m| m.iter()).copied().fold(f64::INFINITY, f64::min) - 10.0 * s;
    let hi = means.iter().flat_map(|m| m.iter()).copied().fold(f64::NEG_INFINITY, f64::max) + 10.0 * s;
    let steps = ((hi - lo) / h).ceil() as usize;
    let norm = 1.0 / (2.0 * std::f64::consts::PI * s2);
    let mut out = PosteriorExpectations { z: vec![0.0; p.len()], square: 0.0, mass: 0.0 };
    let mut density = vec![0.0; p.len()];
    for a in 0..steps {
        let x = lo + (a as f64 + 0.5) * h;
        for b in 0..steps {
            let y = lo + (b as f64 + 0.5) * h;
            for (d, m) in density.iter_mut().zip(means) {
                *d = norm * (-0.5 * ((x - m[0]).powi(2) + (y - m[1]).powi(2)) / s2).exp();
            }
            let f: f64 = w.iter().zip(&density).map(|(w, d)| w * d).sum();
            let evidence: f64 = p.iter().zip(&density).map(|(p, d)| p * d).sum();
            if evidence > 0.0 {
                let weight = f * h * h;
                out.mass += weight;
                for ((z, pi), d) in out.z.iter_mut().zip(p).zip(&density) {
                    let zi = pi * d / evidence;
                    *z += weight * zi;
                    out.square += weight * zi * zi;
                }
            }
        }
    }
    out
}

/// One text phase from a given `p` with overlapping conditionals lands strictly inside the
/// docs/model.md's bounds, at the value theory predicts.
///
/// `H(p) - H(p') = D + 2 sum_i p_i (p'_i - p_i)` with `D = sum_i (p'_i - p_i)^2`; the last term
/// has mean zero (martingale), so `E[H'] = H - E[D]` and the bounds read `0 <= E[D] <= H/N`.
/// Exactly, `E[D] = sum_i Var(p'_i) = (E[sum_i Z_i(y)^2] - sum_i p_i^2) / N` for `N` iid pairs,
/// which is `H/N` for one-hot posteriors and 0 for `Z = p`; the expectation is computed by
/// quadrature. `D` is a sum of squared, roughly Gaussian deviations (a weighted chi-square
/// with 4 degrees of freedom, light-tailed), so the sample standard error over `R = 4000`
/// independent phases is reliable. `E[H']` is also checked directly (its estimator does not
/// use the martingale), with the sample standard error of `H'`, which lies in [0, 1].
#[test]
fn one_text_phase_keeps_expected_diversity_between_the_wright_fisher_and_identity_ends() {
    const N: u64 = 50;
    const R: usize = 4000;
    const S2: f64 = 0.25;
    let s = scenario(&format!(
        "Scenario(name: \"one-phase\", seed: 21, rounds: 1, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), batch: {N}),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic({S2}), frozen: true),
        ])",
        p0_ron()
    ));
    let mut sim = Simulation::new(&s, 0).unwrap();
    let (mut d, mut h_next) = (Moments::default(), Moments::default());
    for _ in 0..R {
        set_p(&mut sim, &P0);
        let p = per_text(sim.step().unwrap(), "captioner", "p", 5);
        d.push(p.iter().zip(&P0).map(|(a, b)| (a - b).powi(2)).sum());
        h_next.push(gini_simpson(&p));
    }
    let h = gini_simpson(&P0);
    let theory = posterior_quadrature(&P0, &P0, &unit_circle_means(5, 2), S2);
    assert!((theory.mass - 1.0).abs() < 1e-9, "quadrature mass {}", theory.mass);
    let expected_d = (theory.square - (1.0 - h)) / N as f64;
    // The theory itself puts this overlap strictly inside the bounds, far from both ends.
    assert!(expected_d > 0.2 * h / N as f64 && expected_d < 0.8 * h / N as f64, "E[D] = {expected_d}, H/N = {}", h / N as f64);
    assert_close("E[sum (p'-p)^2]", d.mean, expected_d, d.se());
    assert_close("E[H(p')]", h_next.mean, h - expected_d, h_next.se());
    assert!(h_next.mean + Z * h_next.se() > (1.0 - 1.0 / N as f64) * h && h_next.mean - Z * h_next.se() < h);
}

/// Well-separated conditionals (`Sigma = 1e-6 I`, means 1.18 apart: 1180 standard deviations)
/// make every posterior one-hot, so the text phase is Wright-Fisher resampling: `N p_t` is an
/// integer vector and `E[H_t] = (1 - 1/N)^t H_0`. `H_t` lies in [0, 1] (light tails), so the
/// sample standard error over `R = 1000` replicates is reliable; 30 rounds are checked.
#[test]
fn well_separated_conditionals_give_the_wright_fisher_rate() {
    const N: u64 = 50;
    const R: u64 = 1000;
    const T: u64 = 30;
    let s = scenario(&format!(
        "Scenario(name: \"wright-fisher\", seed: 22, rounds: {T}, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), batch: {N}),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic(1e-6), frozen: true),
        ])",
        p0_ron()
    ));
    let mut h = vec![Moments::default(); T as usize + 1];
    ensemble(&s, R, T, |_, rows| {
        let p = per_text(rows, "captioner", "p", 5);
        for &pi in p.iter().filter(|_| rows[0].round > 0) {
            let count = pi * N as f64;
            assert!(
                (count - count.round()).abs() < 1e-9,
                "round {}: N p = {count} is not a count: a posterior was not one-hot",
                rows[0].round
            );
        }
        h[rows[0].round as usize].push(metric(rows, "captioner", "gini_simpson", None));
    });
    let h0 = gini_simpson(&P0);
    for (t, m) in h.iter().enumerate().skip(1) {
        let expected = (1.0 - 1.0 / N as f64).powi(t as i32) * h0;
        assert_close(&format!("E[H_{t}]"), m.mean, expected, m.se());
    }
    // The collapse is visible: the rate is far from the identity end by round 30.
    assert!(h[T as usize].mean < 0.6 * h0);
}

/// Identical conditionals carry no evidence: `Z(y) = p` for every image and `p' = p`.
///
/// Rounding bound: `Z_i = exp(l_i - l_max) / sum_k ...` with `l_i = ln p_i + ll(y)` where the
/// log-likelihood is the same for every text; `ln`, the additions and `exp` each contribute a
/// relative error of a few ulps (the shared `ll(y)` cancels exactly because it is added to
/// each `ln p_i` and subtracted again at the same magnitude, `|ll| < 40` here), so every
/// posterior is `p` to within `~(|ll| + 8) eps`, and the mean of `N` of them and its
/// normalisation add `N eps` at most: `|p' - p| < (40 + 8 + 1000) eps < 2.4e-13` per phase.
/// Over 20 phases the bound is 20 times larger; the check uses 5e-12.
#[test]
fn identical_conditionals_leave_p_unchanged() {
    let s = scenario(&format!(
        "Scenario(name: \"identical\", seed: 23, rounds: 20, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), batch: 1000),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", means: Explicit([[0.3, -0.2], [0.3, -0.2], [0.3, -0.2], [0.3, -0.2], [0.3, -0.2]]),
                       covariance: Full([[0.2, 0.05], [0.05, 0.1]]), frozen: true),
        ])",
        p0_ron()
    ));
    let mut worst: f64 = 0.0;
    ensemble(&s, 3, 20, |_, rows| {
        for (p, p0) in per_text(rows, "captioner", "p", 5).iter().zip(&P0) {
            worst = worst.max((p - p0).abs());
        }
    });
    assert!(worst < 5e-12, "identical conditionals moved p by {worst:e}");
}

// ---------------------------------------------------------------------------------------------
// 3. Image refit with Fixed(n), frozen text (docs/model.md section 3).
// ---------------------------------------------------------------------------------------------

/// The initial covariance of the refit tests: full, not isotropic, so that no step of the
/// theory can lean on `tr Sigma^2 = (tr Sigma)^2 / d`.
const SIGMA0_RON: &str = "Full([[0.2, 0.05], [0.05, 0.1]])";

fn sigma0() -> DMatrix<f64> {
    DMatrix::from_row_slice(2, 2, &[0.2, 0.05, 0.05, 0.1])
}

/// Runs `R` replicates of a frozen text model with `Fixed(n)` allocation and returns, per
/// round, the moments over all `R x K` texts (independent: disjoint samples) of `tr Sigma_t`
/// and of `||mu_t - mu_0||^2`.
fn fixed_refit_ensemble(estimator: &str, n: usize, rounds: u64, seed: u64) -> (Vec<Moments>, Vec<Moments>) {
    const R: u64 = 300;
    let s = scenario(&format!(
        "Scenario(name: \"refit\", seed: {seed}, rounds: {rounds}, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), frozen: true),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON},
                       allocation: Fixed({n}), estimator: {estimator}),
        ])",
        p0_ron()
    ));
    let mut trace = vec![Moments::default(); rounds as usize + 1];
    let mut drift = vec![Moments::default(); rounds as usize + 1];
    ensemble(&s, R, rounds, |_, rows| {
        let t = rows[0].round as usize;
        for i in 0..5 {
            trace[t].push(metric(rows, "painter", "trace", Some(i)));
            drift[t].push(metric(rows, "painter", "fidelity", Some(i)).powi(2));
        }
    });
    (trace, drift)
}

/// MLE with `Fixed(n)`: `E tr Sigma_t = ((n-1)/n)^t tr Sigma_0` at every round, with the exact
/// standard error from the Wishart recursion of [`trace_moments`]; and
/// `E ||mu_t - mu_0||^2 = sum_{s<t} E tr Sigma_s / n = tr Sigma_0 (1 - ((n-1)/n)^t) < tr Sigma_0`
/// (the mean is a martingale whose increment given `Sigma_s` has variance `tr Sigma_s / n`):
/// the fidelity stays bounded while the covariance contracts. `||mu_t - mu_0||^2` is a mixture
/// of scaled chi-squares (light tails), so its sample standard error over 1500 texts is
/// reliable. 25 rounds x 2 quantities = 50 checks.
#[test]
fn mle_refit_contracts_the_trace_geometrically_while_fidelity_stays_bounded() {
    const N: usize = 50;
    const T: usize = 25;
    let (trace, drift) = fixed_refit_ensemble("Mle", N, T as u64, 31);
    let theory = trace_moments(&sigma0(), &[(N, 1.0)], Estimator::Mle, 1.0, T);
    let tr0 = sigma0().trace();
    let mut cumulative = 0.0;
    for t in 1..=T {
        let q = (N as f64 - 1.0) / N as f64;
        assert!((theory[t].0 - q.powi(t as i32) * tr0).abs() < 1e-12 * tr0, "the recursion reproduces docs/model.md's mean");
        assert_close(&format!("E tr Sigma_{t} (MLE)"), trace[t].mean, theory[t].0, (theory[t].1 / trace[t].n).sqrt());
        cumulative += theory[t - 1].0 / N as f64;
        assert!((cumulative - tr0 * (1.0 - q.powi(t as i32))).abs() < 1e-12);
        assert_close(&format!("E |mu_{t} - mu_0|^2 (MLE)"), drift[t].mean, cumulative, drift[t].se());
    }
    // Contracted by ((n-1)/n)^25 = 0.60 while the drift is bounded by tr Sigma_0 even measured.
    assert!(trace[T].mean + Z * trace[T].se() < 0.7 * tr0);
    assert!(drift[T].mean + Z * drift[T].se() < tr0);
}

/// Unbiased estimator: `E tr Sigma_t = tr Sigma_0` (a martingale) with the exact standard error
/// of [`trace_moments`] (whose variance grows with `t`); the mean then drifts without bound,
/// `E ||mu_t - mu_0||^2 = t tr Sigma_0 / n`. 50 checks.
#[test]
fn unbiased_refit_keeps_the_trace_a_martingale() {
    const N: usize = 50;
    const T: usize = 25;
    let (trace, drift) = fixed_refit_ensemble("Unbiased", N, T as u64, 32);
    let theory = trace_moments(&sigma0(), &[(N, 1.0)], Estimator::Unbiased, 1.0, T);
    let tr0 = sigma0().trace();
    for t in 1..=T {
        assert!((theory[t].0 - tr0).abs() < 1e-12);
        assert_close(&format!("E tr Sigma_{t} (unbiased)"), trace[t].mean, tr0, (theory[t].1 / trace[t].n).sqrt());
        assert_close(&format!("E |mu_{t} - mu_0|^2 (unbiased)"), drift[t].mean, t as f64 * tr0 / N as f64, drift[t].se());
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Singular and tiny covariances (docs/model.md section 3, "Singular covariances").
// ---------------------------------------------------------------------------------------------

/// The covariances of the singular tests: exactly zero, `1e-200 I` (below the smallest
/// normal f64 squared root), rank-deficient, and two regular ones.
fn singular_covariances() -> Vec<DMatrix<f64>> {
    vec![
        DMatrix::zeros(2, 2),
        DMatrix::identity(2, 2) * 1e-200,
        DMatrix::from_row_slice(2, 2, &[0.1, 0.1, 0.1, 0.1]),
        DMatrix::identity(2, 2) * 0.1,
        sigma0(),
    ]
}

/// On the model API: every posterior of a batch from singular conditionals is finite, no image
/// falls back to the prior, and the soft counts sum to the batch size. Rounding bound: each
/// posterior is normalised by a sum of `K = 5` terms (relative error `<= K eps`), and adding
/// `N` of them adds `N eps`: `|sum - N| <= N (K + 1) eps`, checked at `4 N (K + 1) eps`.
#[test]
fn posterior_is_finite_and_sums_to_the_batch_with_singular_covariances() {
    const N: u64 = 1000;
    let means = unit_circle_means(5, 2);
    for (label, sigmas) in [
        ("mixed", singular_covariances()),
        ("all zero", vec![DMatrix::zeros(2, 2); 5]),
        ("all 1e-200 I", vec![DMatrix::identity(2, 2) * 1e-200; 5]),
    ] {
        let mut model =
            GaussianImageModel::new(means.clone(), full(&sigmas), Estimator::Mle, DataPolicy::Replace, (means[0].clone(), sigma0().into()));
        let mut rng = entity_stream(41, 0, label);
        let (mut counts, mut samples) = (Vec::new(), Vec::new());
        multinomial_counts(N, &P0, &mut rng, &mut counts);
        model.sample(&counts, 1.0, &mut rng, &mut samples).unwrap();
        assert!(samples.iter().all(|v| v.is_finite()), "{label}: a sample is not finite");
        let mut ll = vec![0.0; N as usize * 5];
        model.add_log_likelihood(&samples, &mut ll).unwrap();
        assert!(ll.iter().all(|v| !v.is_nan() && *v != f64::INFINITY), "{label}: a log-likelihood is NaN or +inf");
        let (mut soft, mut scratch) = (vec![0.0; 5], Vec::new());
        let fallbacks = accumulate_caption_posterior(&P0, &ll, &mut soft, &mut scratch);
        assert_eq!(fallbacks, 0, "{label}: every image has a finite posterior under its own conditional");
        assert!(soft.iter().all(|s| s.is_finite() && *s >= 0.0), "{label}: soft counts {soft:?}");
        let total: f64 = soft.iter().sum();
        assert!((total - N as f64).abs() <= 4.0 * N as f64 * 6.0 * f64::EPSILON, "{label}: soft counts sum to {total}, not {N}");
        let clamped = model.take_regularized();
        let singular = if label == "mixed" { 3 } else { 5 };
        // Each singular text's clamped factor is used once, to score. Drawing from it needs
        // no floor: samples go through the exact (singular) root (docs/model.md section 3).
        assert_eq!(clamped, singular, "{label}: every use of a clamped factor is counted");
    }
}

/// In a co-evolving world with singular conditionals (exactly zero, `1e-200 I`, rank-deficient,
/// next to two regular ones): `p` stays finite and on the simplex every round and no image
/// metric is NaN. `regularized` counts uses of clamped factors (one text in one
/// log-likelihood call; samples go through the exact roots, never floored): 0 at round 0
/// (measuring uses the exact eigenvalues), exactly 3 in round 1 (the 3 singular texts are
/// scored in the text phase's posterior), and 0 in every round for a regular model.
/// Later rounds are not pinned: a degenerate text refit on `n` identical samples gets a
/// covariance at the rounding level of its mean (`~1e-29`, rank one or full rank by chance),
/// clamped in some rounds and not in others. Simplex rounding: `p = s / sum(s)` over 5 terms,
/// `|sum p - 1| <= 5 eps`.
#[test]
fn singular_covariances_keep_p_on_the_simplex_and_are_counted() {
    let rows: Vec<String> = singular_covariances()
        .iter()
        .map(|m| format!("[[{:e}, {:e}], [{:e}, {:e}]]", m[(0, 0)], m[(0, 1)], m[(1, 0)], m[(1, 1)]))
        .collect();
    let s = scenario(&format!(
        "Scenario(name: \"singular\", seed: 42, rounds: 15, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({})),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: PerText([{}])),
            ImageModel(name: \"regular\", conditioned_on: \"captioner\", covariance: Isotropic(0.1)),
        ])",
        p0_ron(),
        rows.join(", ")
    ));
    ensemble(&s, 3, 15, |_, rows| {
        let round = rows[0].round;
        let p = per_text(rows, "captioner", "p", 5);
        assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0), "round {round}: p = {p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() <= 5.0 * f64::EPSILON, "round {round}: sum p = {}", p.iter().sum::<f64>());
        for name in ["trace", "logdet", "effective_rank", "fidelity", "frechet_to_initial", "frechet_local"] {
            for v in per_text(rows, "painter", name, 5) {
                assert!(!v.is_nan(), "round {round}: {name} is NaN");
            }
        }
        if round == 0 {
            assert_eq!(metric(rows, "painter", "regularized", None), 0.0, "round 0: no factor is used");
        }
        if round == 1 {
            assert_eq!(metric(rows, "painter", "regularized", None), 3.0, "round 1: 3 singular texts, each scored once");
        }
        assert_eq!(metric(rows, "regular", "regularized", None), 0.0, "round {round}: a regular model needs no clamp");
    });
}

/// Regression test of a fixed bug (the eigenvalue floor now includes the mean's resolution,
/// `RESOLUTION_FACTOR`). A covariance far below the f64 resolution of its mean, here rank one
/// with scale 1e-28 next to `|mu| = 1` (what a degenerate text refit on identical samples
/// produces: the rounding error `delta` of the sample mean gives `Sigma = delta delta^T`),
/// is clamped only to `RELATIVE_FLOOR * lambda_max = 1e-40`, a standard deviation of 1e-20,
/// while any sample or mean is only known to `eps |mu| ~ 1e-16`. The text's own images then
/// sit ~1e4 standard deviations off its null direction and about 40% of them are assigned to
/// another text (soft counts [277, 723] for caption counts [493, 507]): the martingale breaks
/// by far more than any noise (in a co-evolving world `p_0` fell from 0.39 to 0.10 in one
/// phase, 19 standard deviations). With well-separated conditionals the posterior must be
/// one-hot and the soft counts equal the caption counts. The floor is
/// `max(RELATIVE_FLOOR lambda_max, (16 eps max|mu_k|)^2, ABSOLUTE_FLOOR)`.
#[test]
fn posterior_of_a_covariance_below_the_resolution_of_its_mean_is_one_hot() {
    let means = unit_circle_means(2, 2);
    let v = DVector::from_vec(vec![0.6, 0.8]);
    let sigmas = vec![&v * v.transpose() * 1e-28, DMatrix::identity(2, 2) * 0.1];
    let mut model =
        GaussianImageModel::new(means.clone(), full(&sigmas), Estimator::Mle, DataPolicy::Replace, (means[0].clone(), sigma0().into()));
    let mut rng = entity_stream(43, 0, "resolution");
    let (mut counts, mut y) = (Vec::new(), Vec::new());
    multinomial_counts(1000, &[0.5, 0.5], &mut rng, &mut counts);
    model.sample(&counts, 1.0, &mut rng, &mut y).unwrap();
    let mut ll = vec![0.0; 2000];
    model.add_log_likelihood(&y, &mut ll).unwrap();
    let (mut soft, mut scratch) = (vec![0.0; 2], Vec::new());
    accumulate_caption_posterior(&[0.5, 0.5], &ll, &mut soft, &mut scratch);
    assert_eq!(soft, counts.iter().map(|&c| c as f64).collect::<Vec<_>>(), "posterior is not one-hot");
}

// ---------------------------------------------------------------------------------------------
// 5. Temperature (docs/model.md section 4).
// ---------------------------------------------------------------------------------------------

/// `tau_T` on random distributions (some with zeros): `T = 1` is the identity bit for bit; the
/// result is on the simplex with the same zeros; max_p rises and entropy falls as `T` falls
/// (for `q ~ p^b`, `dH/db = -b Var_q(ln p) <= 0` and `q_max = 1 / sum (p_k / p_max)^b` rises
/// with `b = 1/T`); `T -> 0` is the point mass on the argmax and `T -> inf` uniform on the
/// support. Deterministic: tolerances are rounding (a few ulps per entry).
#[test]
fn text_temperature_is_identity_at_one_and_sharpens_below_and_flattens_above() {
    use rand::RngExt;
    let mut rng = entity_stream(51, 0, "tau");
    let temps = [0.05, 0.2, 0.5, 0.9, 1.0, 1.5, 3.0, 10.0];
    let mut out = Vec::new();
    for case in 0..200 {
        let k = 2 + case % 7;
        let mut p: Vec<f64> = (0..k).map(|i| if i == 1 && case % 3 == 0 { 0.0 } else { rng.random::<f64>() }).collect();
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= total);
        tempered(&p, 1.0, &mut out);
        assert_eq!(out, p, "T = 1 is the identity");
        let mut last: Option<(f64, f64)> = None;
        for &t in &temps {
            tempered(&p, t, &mut out);
            assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            assert!(out.iter().zip(&p).all(|(q, p)| (*p == 0.0) == (*q == 0.0)), "zeros stay zero, positives stay positive");
            let (m, h) = (max_p(&out), shannon_entropy(&out));
            if let Some((m_prev, h_prev)) = last {
                assert!(m <= m_prev + 1e-14 && h >= h_prev - 1e-13, "T = {t}: max_p {m} (was {m_prev}), entropy {h} (was {h_prev})");
            }
            if t < 1.0 {
                assert!(m >= max_p(&p) - 1e-15);
            } else if t > 1.0 {
                assert!(m <= max_p(&p) + 1e-15);
            }
            last = Some((m, h));
        }
        let argmax = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        tempered(&p, 1e-4, &mut out);
        assert!((out[argmax] - 1.0).abs() < 1e-9, "T -> 0 concentrates on the argmax (ties have probability zero)");
        tempered(&p, 1e6, &mut out);
        let support = p.iter().filter(|&&x| x > 0.0).count() as f64;
        assert!(out.iter().zip(&p).all(|(q, p)| *p == 0.0 || (q - 1.0 / support).abs() < 1e-4), "T -> inf is uniform on the support");
    }
}

/// The text phase samples captions from `tau_T(p)` (docs/model.md section 2): with one-hot posteriors
/// (well-separated conditionals) `N p' ~ Multinomial(N, tau_T(p))`, so `E p'_i = tau_T(p)_i`
/// with standard error `sqrt(q_i (1 - q_i) / (N R))` exactly. The posterior's prior is `p`
/// itself, which with one-hot posteriors does not matter; 2 temperatures x 5 texts = 10 checks.
#[test]
fn text_phase_samples_captions_from_the_tempered_distribution() {
    const N: u64 = 100;
    const R: usize = 1000;
    for (t, seed) in [(0.5, 52), (2.0, 53)] {
        let s = scenario(&format!(
            "Scenario(name: \"tempered-phase\", seed: {seed}, rounds: 1, entities: [
                TextModel(name: \"captioner\", initial: Probabilities({}), batch: {N}),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic(1e-6), frozen: true),
                Temperature(name: \"sampler\", target: \"captioner\", t: {t}),
            ])",
            p0_ron()
        ));
        let means = one_phase_moments(&s, R);
        let mut q = Vec::new();
        tempered(&P0, t, &mut q);
        for i in 0..5 {
            let se = (q[i] * (1.0 - q[i]) / (N as f64 * R as f64)).sqrt();
            assert_close(&format!("E p'_{i} at T = {t}"), means[i].mean, q[i], se);
        }
    }
}

/// Under a text temperature the captions come from `q = tau_T(p)` but the posterior keeps the
/// model's own prior `p` (docs/model.md section 3), so with overlapping conditionals
/// `E p'_i = E_{y ~ sum_k q_k N(mu_k, s2 I)} [Z_i(y; p)]`, computed by quadrature. A posterior
/// under `q` instead would give `E p' = q` exactly (the martingale identity for the tempered
/// model); the test first checks that the two predictions differ by many standard errors, so
/// it can tell them apart. Each `p'_i` is a mean of `N` posteriors in [0, 1] (light tails): the
/// sample standard error over `R = 3000` phases is reliable. 5 checks.
#[test]
fn text_phase_posterior_uses_the_model_prior_not_the_tempered_one() {
    const N: u64 = 50;
    const R: usize = 3000;
    const S2: f64 = 0.25;
    const T: f64 = 0.5;
    let s = scenario(&format!(
        "Scenario(name: \"tempered-posterior\", seed: 59, rounds: 1, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), batch: {N}),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic({S2}), frozen: true),
            Temperature(name: \"sampler\", target: \"captioner\", t: {T}),
        ])",
        p0_ron()
    ));
    let means = one_phase_moments(&s, R);
    let mut q = Vec::new();
    tempered(&P0, T, &mut q);
    let theory = posterior_quadrature(&q, &P0, &unit_circle_means(5, 2), S2);
    assert!((theory.mass - 1.0).abs() < 1e-9, "quadrature mass {}", theory.mass);
    let separation = (0..5).map(|i| (theory.z[i] - q[i]).abs() / means[i].se()).fold(0.0, f64::max);
    assert!(separation > 4.0 * Z, "the two priors' predictions differ by only {separation:.1} standard errors");
    for (i, (m, z)) in means.iter().zip(&theory.z).enumerate() {
        assert_close(&format!("E p'_{i} at T = {T}"), m.mean, *z, m.se());
    }
}

/// `T < 1` on a frozen, well-separated image model collapses the text model to one text, where
/// `T = 1` does not. Deterministic part of the argument: `tau_{1/2}` squares the odds of every
/// text against the leader each round, so after 10 rounds the odds of the runner-up are below
/// `0.75^(2^10) ~ 1e-128` and the expected number of its captions in a batch of 1000 is below
/// 1e-120; 40 rounds leave the remaining multinomial noise no chance. At `T = 1` the step is
/// neutral Wright-Fisher: a rare text may drift out (a text with `k` captions a batch is lost
/// within `t` rounds with probability about `exp(-2k/t)`, the critical branching
/// approximation: 8% for the rarest, k = 50), but collapse to one text needs one of the two
/// leading texts (k = 400, 300) lost, probability about `exp(-20) + exp(-15) < 4e-7` per
/// replicate.
#[test]
fn low_text_temperature_collapses_the_text_model() {
    for (t, seed, collapses) in [(0.5, 54, true), (1.0, 55, false)] {
        let s = scenario(&format!(
            "Scenario(name: \"sharpen\", seed: {seed}, rounds: 40, entities: [
                TextModel(name: \"captioner\", initial: Probabilities({})),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Isotropic(1e-6), frozen: true),
                Temperature(name: \"sampler\", target: \"captioner\", t: {t}),
            ])",
            p0_ron()
        ));
        ensemble(&s, 20, 40, |r, rows| {
            if rows[0].round == 40 {
                let support = metric(rows, "captioner", "support", None);
                let max = metric(rows, "captioner", "max_p", None);
                if collapses {
                    assert!(support == 1.0 && max == 1.0, "T = {t}, replicate {r}: support {support}, max_p {max}");
                } else {
                    assert!(support >= 2.0 && max < 1.0, "T = 1, replicate {r}: collapsed without sharpening (support {support})");
                }
            }
        });
    }
}

/// Image temperature `c` on the model API: draws of `N(mu, c Sigma)` have sample mean `mu` and
/// sample covariance `c Sigma` within their exact Gaussian standard errors:
/// `Var(ybar_r) = S_rr / n` and `Var(S^_rs) ~ (S_rr S_ss + S_rs^2) / n` with `S = c Sigma`
/// (the O(1/n^2) correction of the unbiased sample covariance is negligible at n = 40000).
/// 3 temperatures x 5 entries = 15 checks.
#[test]
fn image_temperature_scales_the_sampled_covariance() {
    const N: usize = 40_000;
    let mu = DVector::from_vec(vec![0.7, -0.4]);
    let base = sigma0();
    let mut model = GaussianImageModel::new(
        vec![mu.clone()],
        full(std::slice::from_ref(&base)),
        Estimator::Mle,
        DataPolicy::Replace,
        (mu.clone(), base.clone().into()),
    );
    let mut rng = entity_stream(56, 0, "image-temperature");
    let mut y = Vec::new();
    for c in [0.25, 1.0, 3.0] {
        model.sample(&[N], c, &mut rng, &mut y).unwrap();
        let s = &base * c;
        let mean: Vec<f64> = (0..2).map(|r| y.iter().skip(r).step_by(2).sum::<f64>() / N as f64).collect();
        for r in 0..2 {
            assert_close(&format!("mean[{r}] at c = {c}"), mean[r], mu[r], (s[(r, r)] / N as f64).sqrt());
        }
        for (r, q) in [(0, 0), (0, 1), (1, 1)] {
            let cov = y.chunks_exact(2).map(|v| (v[r] - mean[r]) * (v[q] - mean[q])).sum::<f64>() / (N as f64 - 1.0);
            let se = ((s[(r, r)] * s[(q, q)] + s[(r, q)].powi(2)) / N as f64).sqrt();
            assert_close(&format!("cov[{r}{q}] at c = {c}"), cov, s[(r, q)], se);
        }
    }
}

/// Image temperature in a world: a Temperature entity on the image model makes its refit see
/// `N(mu, c Sigma)` samples, so after one MLE round with `Fixed(n)`,
/// `E tr Sigma_1 = c (n-1)/n tr Sigma_0`, exact standard error from [`trace_moments`].
#[test]
fn image_temperature_scales_the_refit_in_a_world() {
    const N: usize = 20;
    const R: u64 = 400;
    for (c, seed) in [(0.5, 57), (2.0, 58)] {
        let s = scenario(&format!(
            "Scenario(name: \"heat\", seed: {seed}, rounds: 1, entities: [
                TextModel(name: \"captioner\", initial: Probabilities({}), frozen: true),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON}, allocation: Fixed({N})),
                Temperature(name: \"heat\", target: \"painter\", t: {c}),
            ])",
            p0_ron()
        ));
        let mut trace = Moments::default();
        ensemble(&s, R, 1, |_, rows| {
            if rows[0].round == 1 {
                per_text(rows, "painter", "trace", 5).into_iter().for_each(|v| trace.push(v));
            }
        });
        let theory = trace_moments(&sigma0(), &[(N, 1.0)], Estimator::Mle, c, 1);
        assert_close(&format!("E tr Sigma_1 at c = {c}"), trace.mean, theory[1].0, (theory[1].1 / trace.n).sqrt());
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Allocation (docs/model.md section 3).
// ---------------------------------------------------------------------------------------------

/// The caption counts of a batch: `n_i ~ Binomial(N, p_i)`. Mean and variance of each count over
/// `R` batches, with exact standard errors: `Var(mean) = N p q / R`, and the sample variance's
/// variance `(mu_4 - sigma^4) / R` (to O(1/R^2)) with the binomial
/// `mu_4 = N p q (1 + 3 (N - 2) p q)`. Also the multinomial covariance of the two largest
/// counts, `-N p_0 p_1`, whose estimator has variance `Var(n_0 n_1 centred) / R`, taken from
/// the sample. 11 checks.
#[test]
fn binomial_allocation_gives_binomial_counts() {
    const N: u64 = 1000;
    const R: usize = 20_000;
    let mut rng = entity_stream(61, 0, "allocation");
    let mut counts = Vec::new();
    let mut draws: Vec<Vec<f64>> = (0..5).map(|_| Vec::with_capacity(R)).collect();
    for _ in 0..R {
        multinomial_counts(N, &P0, &mut rng, &mut counts);
        assert_eq!(counts.iter().sum::<usize>(), N as usize);
        for (d, &c) in draws.iter_mut().zip(&counts) {
            d.push(c as f64);
        }
    }
    let mut moments = [Moments::default(); 5];
    for (m, d) in moments.iter_mut().zip(&draws) {
        d.iter().for_each(|&x| m.push(x));
    }
    for (i, m) in moments.iter().enumerate() {
        let (n, p) = (N as f64, P0[i]);
        let var = n * p * (1.0 - p);
        let mu4 = var * (1.0 + 3.0 * (n - 2.0) * p * (1.0 - p));
        assert_close(&format!("E n_{i}"), m.mean, n * p, (var / R as f64).sqrt());
        assert_close(&format!("Var n_{i}"), m.variance(), var, ((mu4 - var * var) / R as f64).sqrt());
    }
    let mut cross = Moments::default();
    for (a, b) in draws[0].iter().zip(&draws[1]) {
        cross.push((a - moments[0].mean) * (b - moments[1].mean));
    }
    assert_close("Cov(n_0, n_1)", cross.mean, -(N as f64) * P0[0] * P0[1], cross.se());
}

/// In a world, binomial allocation feeds each text `n_i ~ Binomial(N, p_i)` samples and texts
/// with `n_i < 2` keep their conditional, so one MLE round gives exactly
/// `E tr Sigma_{1,i} = tr Sigma_0 (P(n_i < 2) + sum_{n >= 2} P(n_i = n) (n - 1)/n)`, with the
/// exact standard error from [`trace_moments`] over the binomial. At `N = 20` the rarest text
/// (p = 0.05) gets fewer than 2 samples 74% of the time, so this separates "unchanged" from any
/// other treatment of small counts. 5 checks.
#[test]
fn binomial_allocation_contracts_each_text_by_its_expected_sample_size() {
    const N: usize = 20;
    const R: u64 = 3000;
    let s = scenario(&format!(
        "Scenario(name: \"allocation\", seed: 62, rounds: 1, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), frozen: true),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON}, batch: {N}, allocation: Binomial),
        ])",
        p0_ron()
    ));
    let mut trace = [Moments::default(); 5];
    ensemble(&s, R, 1, |_, rows| {
        if rows[0].round == 1 {
            for (m, v) in trace.iter_mut().zip(per_text(rows, "painter", "trace", 5)) {
                m.push(v);
            }
        }
    });
    for (i, m) in trace.iter().enumerate() {
        let theory = trace_moments(&sigma0(), &binomial_sizes(N, P0[i]), Estimator::Mle, 1.0, 1);
        assert_close(&format!("E tr Sigma_1,{i} (binomial, N = {N})"), m.mean, theory[1].0, (theory[1].1 / m.n).sqrt());
    }
}

/// A text with fewer than two samples keeps `(mu, Sigma)` bit for bit: on the model API for
/// counts 0 and 1 next to refit texts, and in a world with `Fixed(1)` allocation and with a
/// text of probability 0 under binomial allocation.
#[test]
fn texts_with_fewer_than_two_samples_keep_their_conditional() {
    let means = unit_circle_means(4, 2);
    let sigmas = vec![sigma0(); 4];
    let mut model =
        GaussianImageModel::new(means.clone(), full(&sigmas), Estimator::Mle, DataPolicy::Replace, (means[0].clone(), sigma0().into()));
    let mut rng = entity_stream(63, 0, "small-counts");
    let counts = [0, 1, 2, 30];
    let mut y = Vec::new();
    model.sample(&counts, 1.0, &mut rng, &mut y).unwrap();
    model.fit(&counts, &y).unwrap();
    for i in 0..2 {
        assert_eq!(
            (&model.mu[i], model.covariance(i)),
            (&means[i], &sigmas[i].clone().into()),
            "text {i} with {} samples changed",
            counts[i]
        );
    }
    for i in 2..4 {
        assert_ne!(model.covariance(i), &sigmas[i].clone().into(), "text {i} with {} samples was not refit", counts[i]);
    }

    let s = scenario(&format!(
        "Scenario(name: \"starved\", seed: 64, rounds: 10, entities: [
            TextModel(name: \"captioner\", initial: Probabilities([0.5, 0.5, 0.0])),
            ImageModel(name: \"one-each\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON}, allocation: Fixed(1)),
            ImageModel(name: \"binomial\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON}),
        ])"
    ));
    let tr0 = sigma0().trace();
    ensemble(&s, 2, 10, |_, rows| {
        for i in 0..3 {
            assert_eq!(metric(rows, "one-each", "trace", Some(i)), tr0);
            assert_eq!(metric(rows, "one-each", "fidelity", Some(i)), 0.0);
        }
        assert_eq!(metric(rows, "binomial", "trace", Some(2)), tr0, "a text of probability 0 is never sampled");
        assert_eq!(metric(rows, "binomial", "fidelity", Some(2)), 0.0);
    });
}

// ---------------------------------------------------------------------------------------------
// 7. The Matthew effect (docs/model.md section 3 and 7).
// ---------------------------------------------------------------------------------------------

/// Frozen text at `P0`, binomial allocation, MLE, 20 rounds: a rare text gets fewer samples, so
/// each refit contracts it more, `E tr Sigma_{t,i} = (E g(n_i))^t tr Sigma_0` with
/// `g(n) = (n-1)/n` (`1` for `n < 2`) and `n_i ~ Binomial(N, p_i)` independently each round
/// (exact moments from [`trace_moments`]). Checked: each text's mean trace against that theory
/// (5 checks, exact standard errors); the rarest text contracted more than the dominant one
/// (difference of independent means, margin `Z` standard errors); and the mean Matthew index
/// (Spearman between `p` and trace) positive by more than `Z` standard errors, where the
/// standard error is bounded by `1 / sqrt(R)` because a rank correlation lies in [-1, 1].
#[test]
fn matthew_effect_rare_texts_contract_more() {
    const N: usize = 1000;
    const R: u64 = 200;
    const T: usize = 20;
    let s = scenario(&format!(
        "Scenario(name: \"matthew\", seed: 71, rounds: {T}, entities: [
            TextModel(name: \"captioner\", initial: Probabilities({}), frozen: true),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: {SIGMA0_RON}, batch: {N}, allocation: Binomial),
        ])",
        p0_ron()
    ));
    let mut trace = [Moments::default(); 5];
    let mut matthew = Moments::default();
    ensemble(&s, R, T as u64, |_, rows| {
        if rows[0].round == T as u64 {
            for (m, v) in trace.iter_mut().zip(per_text(rows, "painter", "trace", 5)) {
                m.push(v);
            }
            matthew.push(metric(rows, "painter", "matthew_index", None));
        }
    });
    let tr0 = sigma0().trace();
    let mut expected = Vec::new();
    for (i, m) in trace.iter().enumerate() {
        let theory = trace_moments(&sigma0(), &binomial_sizes(N, P0[i]), Estimator::Mle, 1.0, T);
        expected.push(theory[T].0);
        assert_close(&format!("E tr Sigma_{T},{i} (binomial)"), m.mean, theory[T].0, (theory[T].1 / m.n).sqrt());
    }
    assert!(expected.windows(2).all(|w| w[0] > w[1]), "theory: contraction is monotone in p: {expected:?}");
    assert!(expected[0] > 0.94 * tr0 && expected[4] < 0.7 * tr0, "theory: {expected:?}");
    let gap = trace[0].mean - trace[4].mean;
    let gap_se = (trace[0].se().powi(2) + trace[4].se().powi(2)).sqrt();
    assert!(gap > Z * gap_se, "rarest text did not contract more: {gap} (se {gap_se})");
    assert!(matthew.mean > Z / (R as f64).sqrt(), "mean Matthew index {} (se <= {})", matthew.mean, 1.0 / (R as f64).sqrt());
}
