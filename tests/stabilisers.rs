//! Stabilisers, temperature regimes, data policies and recursive stability (docs/model.md sections 4-6
//! and 8, issue 3).
//!
//! Every random quantity is compared with the value the theory predicts, with fixed seeds and
//! a tolerance of `Z` standard errors. Where a test averages over rounds, the independent units
//! are replicates (or texts of a frozen text model, whose refits do not interact), and the
//! standard error is the sample standard deviation of the per-unit time averages over the
//! square root of their number: this accounts for the correlation between the rounds of one
//! replicate without modelling it. Expectations are exact wherever the recursion for them is
//! linear (stated per test), so the only approximation is the normality of a mean of 20 or more
//! independent units.
//!
//! The bad-input tests drive the real binary (exit code 2, a message naming the field and
//! what would be valid), on files in `tests/fixtures/stabilisers/`.

use std::path::Path;

use coevo::metrics::MetricRow;
use coevo::metrics::text::gini_simpson;
use coevo::run::Rounds;
use coevo::scenario::{EntitySpec, Perturbation, TextInit};
use coevo::stability::Twins;
use coevo::world::{ConditionalAgent, TextAgent};
use coevo::{Scenario, Simulation};

use crate::common::alloc::live_bytes;
use crate::common::{Z, coevo, mean_se, metric, ready, scenario, stderr, text_p};

// ------------------------------------------------------------------ corpus injection

/// Text model `K = 5` uniform, `N = 100` pairs per batch, with a frozen image model whose
/// conditionals are separated: means on the unit circle 1.18 apart, `Sigma = 1e-4 I`, so the
/// log-likelihood of a wrong text is lower by at least 1.18^2 / (2e-4) ~ 6900 nats and every
/// caption posterior is exactly one-hot. The text phase is then exact multinomial resampling.
fn injected_platform(frozen_painter: bool, injector: &str) -> String {
    let painter = if frozen_painter {
        r#"ImageModel(name: "painter", conditioned_on: "captioner", covariance: Isotropic(1e-4), frozen: true)"#
    } else {
        r#"ImageModel(name: "painter", conditioned_on: "captioner", batch: 100)"#
    };
    format!(
        r#"Scenario(name: "t", seed: 41, rounds: 1, entities: [
            TextModel(name: "captioner", initial: Uniform(5), batch: 100),
            {painter},
            {injector},
        ])"#
    )
}

#[test]
fn corpus_injection_holds_gini_simpson_at_the_derived_floor() {
    // Derivation. Let H = 1 - sum p^2. One text phase gives E[H(p') | p] >= (1 - 1/N) H(p)
    // (docs/model.md section 3), with equality when the posteriors are one-hot (multinomial resampling). A
    // uniform injection maps H exactly to (1 - eps)^2 H + c (1 - 1/K), c = 1 - (1 - eps)^2
    // (expand sum ((1 - eps) p_i + eps / K)^2 using sum p_i = 1), and fires independently of p
    // with probability alpha. Hence, exactly for separated conditionals and as a lower bound
    // otherwise,
    //     E H_{t+1} = rho E H_t + alpha c (1 - 1/K),   rho = (1 - alpha c)(1 - 1/N),
    // whose solution from H_0 = 1 - 1/K is E H_t = H* + (H_0 - H*) rho^t with the floor
    //     H* = alpha c (1 - 1/K) / (1 - rho).
    // Without injection (alpha = 0) H* = 0: collapse.
    let (k, n, alpha, eps) = (5.0, 100.0, 0.05, 0.05);
    let c = 1.0 - (1.0f64 - eps).powi(2);
    let rho = (1.0 - alpha * c) * (1.0 - 1.0 / n);
    let floor = alpha * c * (1.0 - 1.0 / k) / (1.0 - rho);
    let h0 = 1.0 - 1.0 / k;
    let injector = format!(r#"CorpusInjector(name: "corpus", target: "captioner", alpha: {alpha}, eps: {eps}, distribution: Uniform)"#);
    let (replicates, rounds) = (30u64, 1500u64);
    // The expected time average of E H_t over rounds 1..=rounds, from the closed form.
    let expected_mean = floor + (h0 - floor) * (1..=rounds).map(|t| rho.powi(t as i32)).sum::<f64>() / rounds as f64;

    for frozen in [true, false] {
        let s = scenario(&injected_platform(frozen, &injector));
        let mut averages = Vec::new();
        let mut fired = 0.0;
        for r in 0..replicates {
            let mut sim = Simulation::new(&s, r).unwrap();
            let mut sum = 0.0;
            for _ in 0..rounds {
                let rows = sim.step().unwrap();
                sum += metric(rows, "captioner", "gini_simpson", None);
                fired += metric(rows, "corpus", "injected", None);
            }
            averages.push(sum / rounds as f64);
        }
        let (mean, se) = mean_se(&averages);
        if frozen {
            // Separated conditionals: the recursion is exact, so the check is two-sided.
            assert!(
                (mean - expected_mean).abs() <= Z * se,
                "separated: mean gini_simpson {mean:.5} vs derived {expected_mean:.5} (floor H* = {floor:.5}), se {se:.2e}"
            );
        } else {
            // Co-evolving conditionals overlap, so each text phase loses less than 1/N of H:
            // H* is a floor only.
            assert!(
                mean >= expected_mean - Z * se,
                "co-evolving: mean gini_simpson {mean:.5} below the floor {expected_mean:.5}, se {se:.2e}"
            );
        }
        // One Bernoulli(alpha) draw per round: the injection count is Binomial(R T, alpha).
        let draws = (replicates * rounds) as f64;
        let se_fired = (alpha * (1.0 - alpha) / draws).sqrt();
        assert!((fired / draws - alpha).abs() <= Z * se_fired, "injection frequency {} vs alpha {alpha}", fired / draws);
    }
}

#[test]
fn injection_distributions_mix_exactly() {
    // Frozen text models skip their refit, so with alpha = 1 the only change of p is the
    // injection: p_t = r + (1 - eps)^t (p_0 - r) for a fixed r. Four independent platforms in
    // one world, one per distribution.
    let s = scenario(
        r#"Scenario(name: "t", seed: 3, rounds: 1, entities: [
            TextModel(name: "u", initial: Probabilities([0.7, 0.2, 0.1]), frozen: true),
            CorpusInjector(name: "iu", target: "u", alpha: 1.0, eps: 0.1, distribution: Uniform),
            TextModel(name: "f", initial: Probabilities([0.7, 0.2, 0.1]), frozen: true),
            CorpusInjector(name: "if", target: "f", alpha: 1.0, eps: 0.2, distribution: Fixed([0.0, 0.25, 0.75])),
            TextModel(name: "r", initial: Uniform(4), frozen: true),
            CorpusInjector(name: "ir", target: "r", alpha: 1.0, eps: 1.0, distribution: RandomTokens(7)),
        ])"#,
    );
    let mut sim = Simulation::new(&s, 0).unwrap();
    let p0 = [0.7, 0.2, 0.1];
    let (rounds, m) = (2000, 7.0);
    let mut token_mass = [0.0; 4];
    for t in 1..=rounds {
        sim.step().unwrap();
        let decay = |eps: f64| (1.0f64 - eps).powi(t);
        let uniform: Vec<f64> = p0.iter().map(|p| 1.0 / 3.0 + decay(0.1) * (p - 1.0 / 3.0)).collect();
        let fixed: Vec<f64> = p0.iter().zip([0.0, 0.25, 0.75]).map(|(p, r)| r + decay(0.2) * (p - r)).collect();
        for (got, want) in [(text_p(&mut sim, "u"), uniform), (text_p(&mut sim, "f"), fixed)] {
            for (g, w) in got.iter().zip(&want) {
                // A few ulps per round of rounding in the mixing.
                assert!((g - w).abs() <= 1e-12, "round {t}: {got:?} vs closed form {want:?}");
            }
        }
        // eps = 1: p is the empirical distribution of m = 7 uniform tokens.
        let tokens = text_p(&mut sim, "r");
        for (i, x) in tokens.iter().enumerate() {
            assert!((x * m - (x * m).round()).abs() < 1e-9, "round {t}: {tokens:?} is not a count over {m} tokens");
            token_mass[i] += x;
        }
    }
    // Each token share has mean 1/4 and variance (1/4)(3/4)/m per round, independent across rounds.
    let se = (0.25 * 0.75 / m / rounds as f64).sqrt();
    for x in token_mass {
        assert!((x / rounds as f64 - 0.25).abs() <= Z * se, "random tokens: mean share {} vs 1/4", x / rounds as f64);
    }

    // NewText: K grows by one per injection, p <- ((1 - eps) p, eps), and every image model of
    // the target gets a conditional for the new text from its new_text prior (the painter is
    // frozen, so its conditionals are still the prior).
    let s = scenario(
        r#"Scenario(name: "t", seed: 3, rounds: 1, entities: [
            TextModel(name: "n", initial: Probabilities([0.5, 0.5]), frozen: true),
            ImageModel(name: "np", conditioned_on: "n", frozen: true, new_text: (mean: [3.0, -1.0], covariance: Isotropic(0.5))),
            CorpusInjector(name: "in", target: "n", alpha: 1.0, eps: 0.1, distribution: NewText),
        ])"#,
    );
    let mut sim = Simulation::new(&s, 0).unwrap();
    for t in 1..=3 {
        let rows = sim.step().unwrap();
        assert_eq!(metric(rows, "np", "trace", Some(1 + t)), 1.0, "round {t}: the new text's conditional is the prior");
        let p = text_p(&mut sim, "n");
        assert_eq!(p.len(), 2 + t as usize);
        assert!((p[p.len() - 1] - 0.1).abs() < 1e-15 && (p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
        assert!((p[0] - 0.5 * 0.9f64.powi(t as i32)).abs() < 1e-15, "{p:?}");
    }
    let world = sim.world_mut();
    let mut q = world.query::<&ConditionalAgent>();
    let painter = q.single(world).unwrap();
    assert_eq!(painter.model.num_texts(), 5);
    let (mu, sigma) = painter.model.moments(4).unwrap();
    assert_eq!(mu.as_slice(), &[3.0, -1.0]);
    assert_eq!(sigma.as_slice(), &[0.5, 0.0, 0.0, 0.5]);
}

// ------------------------------------------------------------------ user content, fresh data

/// The stationary trace and squared fidelity of a per-text MLE refit on `n` samples of the
/// model itself pooled with `n0` samples of the initial conditional (trace `t0`), in `d` = any.
///
/// Derivation. Pool `n` draws of `N(mu, S)` with `n0` of `N(mu0, S0)`, `M = n + n0`, and refit
/// by MLE (divisor `M`). With `delta = mu - mu0`, the expectation of the pooled scatter is
///     E S' = ((M - 1)/M^2) (n S + n0 S0) + (n n0 / M^2) delta delta^T
/// (within-sample scatter of the two groups plus their between-group term), and the new mean
/// `mu' = (n ybar_1 + n0 ybar_0)/M` gives
///     E |delta'|^2 = (n/M)^2 |delta|^2 + (n tr S + n0 tr S0) / M^2.
/// Both are linear in `(tr S, |delta|^2)`, so their expectations follow a linear recursion
/// exactly; its fixed point is
///     D* = (n T* + n0 T0) / (n0 (2n + n0)),
///     T* = g n0 T0 / (1 - g n),   g = (M - 1)/M^2 + n / (M^2 (2n + n0)).
/// (As n0 grows T* -> T0; with n0 = 0 the recursion is the plain contraction (n-1)/n.)
pub(crate) fn pooled_fixed_point(n: f64, n0: f64, t0: f64) -> (f64, f64) {
    let m = n + n0;
    let g = (m - 1.0) / (m * m) + n / (m * m * (2.0 * n + n0));
    let t = g * n0 * t0 / (1.0 - g * n);
    (t, (n * t + n0 * t0) / (n0 * (2.0 * n + n0)))
}

/// Runs `source` (a frozen uniform text model over 5 texts and an image model "painter" with
/// Fixed allocation) and compares every text's time-averaged trace and squared fidelity with
/// the pooled fixed point.
fn check_pooled_fixed_point(source: &str, n: f64, n0: f64) {
    let t0 = 0.2; // trace of Sigma0 = 0.1 I in d = 2
    let (t_star, d_star) = pooled_fixed_point(n, n0, t0);
    let s = scenario(source);
    // The recursion's eigenvalues are 2/3 and 0.4 for (n, n0) = (10, 5): after 100 rounds the
    // transient is below 1e-17 of T0, so rounds 101.. are stationary.
    let (replicates, burn_in, rounds) = (20u64, 100, 1500);
    let (mut traces, mut fidelities) = (Vec::new(), Vec::new());
    for r in 0..replicates {
        let mut sim = Simulation::new(&s, r).unwrap();
        let (mut t_sum, mut d_sum) = ([0.0; 5], [0.0; 5]);
        for round in 1..=burn_in + rounds {
            let rows = sim.step().unwrap();
            if round > burn_in {
                for i in 0..5 {
                    t_sum[i] += metric(rows, "painter", "trace", Some(i as u32));
                    d_sum[i] += metric(rows, "painter", "fidelity", Some(i as u32)).powi(2);
                }
            }
        }
        // The frozen text model and fixed allocation make the five texts independent units.
        traces.extend(t_sum.iter().map(|x| x / rounds as f64));
        fidelities.extend(d_sum.iter().map(|x| x / rounds as f64));
    }
    let (t_mean, t_se) = mean_se(&traces);
    let (d_mean, d_se) = mean_se(&fidelities);
    assert!((t_mean - t_star).abs() <= Z * t_se, "trace {t_mean:.5} vs fixed point {t_star:.5} (se {t_se:.1e})");
    assert!((d_mean - d_star).abs() <= Z * d_se, "fidelity^2 {d_mean:.5} vs fixed point {d_star:.5} (se {d_se:.1e})");
    // Without the pooled real data the trace would contract by (n-1)/n per round to 0.
    assert!(t_star > 0.8 * t0);
}

#[test]
fn user_content_holds_the_trace_at_the_pooled_mle_fixed_point() {
    check_pooled_fixed_point(
        r#"Scenario(name: "t", seed: 17, rounds: 1, entities: [
            TextModel(name: "captioner", initial: Uniform(5), frozen: true),
            ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(10)),
            UserContentInjector(name: "users", target: "painter", n0: 5, source: Initial),
        ])"#,
        10.0,
        5.0,
    );
}

#[test]
fn fresh_data_holds_the_trace_at_the_same_fixed_point() {
    // Fresh(lambda = 1/3) with Fixed(15): round(15/3) = 5 real and 10 synthetic samples per
    // text, the same pooled refit as 10 generated plus 5 user images (docs/model.md section 6: same total size).
    check_pooled_fixed_point(
        r#"Scenario(name: "t", seed: 19, rounds: 1, entities: [
            TextModel(name: "captioner", initial: Uniform(5), frozen: true),
            ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(15), data: Fresh(lambda: 0.3333333333333333)),
        ])"#,
        10.0,
        5.0,
    );
}

// ------------------------------------------------------------------ temperature regimes

#[test]
fn cold_temperature_collapses_every_replicate() {
    // temperature_cold.ron: T = 0.5, N = 50, separated frozen conditionals, so
    // p_{t+1} = counts/N with counts ~ Multinomial(N, p_t^2 / sum p^2). The map p -> p^2/sum p^2
    // squares every ratio p_j / p_max each round: from the initial ratio 0.625 of the two
    // largest texts, after 8 rounds it is below 0.625^256 ~ 1e-52, so the runner-up expects
    // N * 1e-52 captions and dies (a zero stays zero under tempering). The multinomial noise
    // (relative size 1/sqrt(N p_j)) cannot undo a squaring in the ratio: 200 rounds are far
    // more than enough in every replicate, with no tolerance to choose.
    let s = ready("temperature_cold");
    for r in 0..s.replicates {
        let mut sim = Simulation::new(&s, r).unwrap();
        for _ in 0..s.rounds {
            sim.step().unwrap();
        }
        let rows = sim.step().unwrap();
        assert_eq!(metric(rows, "captioner", "support", None), 1.0, "replicate {r}");
        assert_eq!(metric(rows, "captioner", "max_p", None), 1.0, "replicate {r}");
        assert_eq!(metric(rows, "captioner", "gini_simpson", None), 0.0, "replicate {r}");
    }
}

#[test]
fn hot_temperature_with_accumulated_data_makes_the_survivors_uniform() {
    // temperature_hot.ron: T = 3, N = 50, accumulated data (l = 20 initial captions), separated
    // frozen conditionals. With A_t the accumulated counts (total S_t = l + N t) and
    // p_t = A_t / S_t, a text with A = 0 has p = 0 forever (tempering keeps zeros, the one-hot
    // posterior gives it nothing): it vanished. For the s survivors, write p = 1/s + delta.
    // Tempering near the uniform point is tau(p) = 1/s + delta/T + O(s delta^2), so
    //     delta_t = (1 - a N / S_t) delta_{t-1} + xi_t / S_t,   a = 1 - 1/T,
    // with xi_t the multinomial noise of one batch (variance N tau_i (1 - tau_i) per text).
    // From round t0, every survivor's deviation at round t is at most
    //     m_t = max|delta_{t0}| prod_{u=t0+1..t} (1 - a' N / S_u)
    // plus a zero-mean noise term of variance v_t = sum_u N sigma^2 / S_u^2 prod_{w>u} (1 - a' N/S_w)^2.
    // The quadratic term of tempering changes the restoring rate a by a relative amount at most
    // s delta / (2T); a' = a (1 - s max|delta_{t0}| / T) covers it twice over, and
    // sigma^2 = x (1 - x) at x = min(1/2, 1/s + max|delta_{t0}|) bounds tau_i (1 - tau_i).
    let s = ready("temperature_hot");
    let t = s
        .entities
        .iter()
        .find_map(|e| match e {
            EntitySpec::Temperature(x) if x.target == "captioner" => x.t.constant(),
            _ => None,
        })
        .expect("a constant temperature sampler on the captioner");
    let (n, l, a) = (50.0, 20.0, 1.0 - 1.0 / t);
    let (t0, rounds) = (300u64, s.rounds);
    let mut lost = 0;
    for r in 0..s.replicates {
        let mut sim = Simulation::new(&s, r).unwrap();
        for _ in 0..t0 {
            sim.step().unwrap();
        }
        let p_t0 = text_p(&mut sim, "captioner");
        let survivors: Vec<usize> = (0..p_t0.len()).filter(|&i| p_t0[i] > 0.0).collect();
        let k = survivors.len() as f64;
        let dev = survivors.iter().map(|&i| (p_t0[i] - 1.0 / k).abs()).fold(0.0, f64::max);
        assert!(k * dev < 0.25, "replicate {r}: at round {t0} the survivors are still far from uniform ({p_t0:?}): linearisation invalid");
        let a_eff = a * (1.0 - k * dev / t);
        let x = (1.0 / k + dev).min(0.5);
        let sigma2 = x * (1.0 - x);
        let (mut m, mut v) = (dev, 0.0);
        for u in t0 + 1..=rounds {
            let s_u = l + n * u as f64;
            let c = 1.0 - a_eff * n / s_u;
            m *= c;
            v = v * c * c + n * sigma2 / (s_u * s_u);
        }
        let tolerance = m + Z * v.sqrt();
        for _ in t0..rounds {
            sim.step().unwrap();
        }
        let p = text_p(&mut sim, "captioner");
        for (i, &pi) in p.iter().enumerate() {
            if survivors.contains(&i) {
                assert!(
                    (pi - 1.0 / k).abs() <= tolerance,
                    "replicate {r}: survivor {i} has p = {pi} vs 1/{k}, tolerance {tolerance:.2e} (drift {m:.1e}, noise sd {:.1e})",
                    v.sqrt()
                );
            } else {
                assert_eq!(pi, 0.0, "replicate {r}: text {i} vanished and must stay vanished");
            }
        }
        lost += (survivors.len() < p.len()) as u32;
        assert!(tolerance < 0.1 / k, "the test must be able to tell uniform from not: tolerance {tolerance} vs 1/{k}");
    }
    // The scenario shows heat death: each replicate loses a text with probability ~0.66 (the two
    // rarest texts miss the initial data and round 1 with probabilities ~0.48 and ~0.35), so all
    // 8 keeping every text would happen with probability ~2e-4.
    assert!(lost > 0, "no replicate lost a text: the scenario does not show the subset that vanishes");
}

// ------------------------------------------------------------------ constant memory

// The bytes live on this thread are counted by the binary's global allocator
// (`common::alloc`): the simulation runs on the test's thread, so other tests running
// concurrently do not disturb the count.

#[test]
fn accumulated_data_uses_constant_memory_over_10000_rounds() {
    // Method: the bytes live on this thread after round 1000 (every scratch buffer has reached
    // its steady size: batch sizes are fixed) must equal those after rounds 2500, 5000 and
    // 10000. Keeping raw history would add at least one f64 per sample per round (16,000 bytes
    // a round here); even a leak of one byte per round would show as 9000 bytes. The sufficient
    // statistics themselves are checked too: K soft counts whose total grows by N per round.
    let s = scenario(
        r#"Scenario(name: "t", seed: 23, rounds: 1, entities: [
            TextModel(name: "captioner", initial: Uniform(5), batch: 200, data: Accumulate(initial: 100)),
            ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(40), data: Accumulate(initial: 100)),
            UserContentInjector(name: "users", target: "painter", n0: 2),
            CorpusInjector(name: "corpus", target: "captioner", alpha: 0.1, eps: 0.05),
        ])"#,
    );
    let live = live_bytes;
    let mut sim = Simulation::new(&s, 0).unwrap();
    let mut baseline = None;
    for round in 1..=10_000u64 {
        sim.step().unwrap();
        if round == 1000 {
            baseline = Some(live());
        }
        if [2500, 5000, 10_000].contains(&round) {
            let now = live();
            assert_eq!(
                now,
                baseline.unwrap(),
                "live bytes after round {round} ({now}) differ from after round 1000 ({})",
                baseline.unwrap()
            );
            let world = sim.world_mut();
            let mut q = world.query::<&TextAgent>();
            let text = q.single(world).unwrap();
            assert_eq!(text.model.accumulated.len(), 5);
            // Injections rescale the counts but keep their total; each round adds N = 200.
            let total: f64 = text.model.accumulated.iter().sum();
            let expected = 100.0 + 200.0 * round as f64;
            assert!((total - expected).abs() <= 1e-9 * expected, "accumulated total {total} vs {expected}");
        }
    }
}

// ------------------------------------------------------------------ recursive stability

/// A platform that uses every random stream there is: co-evolving models under the fresh-data
/// policy, a corpus injector and a user-content injector.
const BUSY: &str = r#"Scenario(name: "t", seed: 29, rounds: 60, entities: [
    TextModel(name: "captioner", initial: Probabilities([0.4, 0.3, 0.15, 0.1, 0.05]), batch: 300, data: Fresh(lambda: 0.1)),
    ImageModel(name: "painter", conditioned_on: "captioner", batch: 300, data: Fresh(lambda: 0.1)),
    CorpusInjector(name: "corpus", target: "captioner", alpha: 0.2, eps: 0.1, distribution: RandomTokens(20)),
    UserContentInjector(name: "users", target: "painter", n0: 3),
])"#;

fn divergence_rows(s: &Scenario, perturbation: Option<&Perturbation>) -> Vec<Vec<MetricRow>> {
    let mut twins = Twins::new(s, perturbation, 0).unwrap();
    twins.measure().unwrap();
    let mut all = vec![twins.rows().to_vec()];
    for _ in 0..s.rounds {
        twins.step().unwrap();
        all.push(twins.rows().to_vec());
    }
    all
}

#[test]
fn unperturbed_twins_diverge_by_exactly_zero() {
    let s = scenario(BUSY);
    let identity = Perturbation::CovarianceScale { model: "painter".into(), text: None, factor: 1.0 };
    for perturbation in [None, Some(&identity)] {
        let rounds = divergence_rows(&s, perturbation);
        assert_eq!(rounds.len(), 61);
        for rows in &rounds {
            assert_eq!(rows.len(), 2, "one tv row and one frechet_sum row per round: {rows:?}");
            for row in rows {
                assert_eq!(row.value, 0.0, "{perturbation:?}: round {} {} {} = {}", row.round, row.model, row.metric, row.value);
            }
        }
    }
    // A real perturbation: the divergence starts at its size and moves.
    let shifted =
        Perturbation::TextInitial { model: "captioner".into(), initial: TextInit::Probabilities(vec![0.35, 0.35, 0.15, 0.1, 0.05]) };
    let rounds = divergence_rows(&s, Some(&shifted));
    assert!((metric(&rounds[0], "captioner", "tv", None) - 0.05).abs() < 1e-15);
    assert_eq!(metric(&rounds[0], "painter", "frechet_sum", None), 0.0);
    assert!(metric(&rounds[60], "painter", "frechet_sum", None) > 0.0);
    let scaled = Perturbation::CovarianceScale { model: "painter".into(), text: Some(1), factor: 4.0 };
    let rounds = divergence_rows(&s, Some(&scaled));
    // W2^2 between N(mu, S) and N(mu, 4 S) is sum over eigenvalues (2 sqrt(l) - sqrt(l))^2 = tr S,
    // so the one perturbed text contributes sqrt(0.2) for S = 0.1 I, the others 0.
    let w2 = metric(&rounds[0], "painter", "frechet_sum", None);
    assert!((w2 - 0.2f64.sqrt()).abs() < 1e-12, "{w2}");
}

#[test]
fn fresh_data_bounds_the_divergence_that_replace_lets_grow() {
    // The ready pair stability_fresh.ron / stability_replace.ron, same perturbation of p0 (TV
    // 0.05 at round 0). With lambda = 0 the twins are two martingales whose paths decorrelate
    // once the perturbation shifts their multinomial draws, so E TV grows towards the distance
    // between two independent collapses; with lambda = 0.2 every refit pulls both towards their
    // (nearby) real distributions, so TV stays at the size of the perturbation plus sampling
    // noise. Compared over replicates (independent units) with their standard errors. 24
    // replicates: one replace twin's final TV is anywhere in [0, 1] (the two collapses fix the
    // same text or not), a standard deviation of about 0.35, so 8 replicates left a standard
    // error of 0.125 and the Z-level comparison without power (it failed at a 0.47 gap once the
    // draws changed); 24 bring it to about 0.07.
    let mut finals = Vec::new();
    for name in ["stability_fresh", "stability_replace"] {
        let mut s = ready(name);
        s.rounds = 500;
        let perturbation = s.stability.as_ref().and_then(|x| x.perturb.clone());
        let mut tv = Vec::new();
        for r in 0..s.replicates.max(24) {
            let mut twins = Twins::new(&s, perturbation.as_ref(), r).unwrap();
            for _ in 0..s.rounds {
                twins.step().unwrap();
            }
            tv.push(metric(twins.rows(), "captioner", "tv", None));
        }
        finals.push(mean_se(&tv));
    }
    let ((fresh, fresh_se), (replace, replace_se)) = (finals[0], finals[1]);
    assert!(
        replace - fresh > Z * (fresh_se.powi(2) + replace_se.powi(2)).sqrt(),
        "after 500 rounds: TV fresh {fresh:.3} +- {fresh_se:.3}, replace {replace:.3} +- {replace_se:.3}"
    );
    // Bounded: with real data the divergence stays of the order of the perturbation.
    assert!(fresh < 0.2, "fresh-data twins drifted apart: TV {fresh}");
}

// ------------------------------------------------------------------ bad input

/// `coevo validate` on `tests/fixtures/stabilisers/<fixture>.ron` must exit with code 2 and
/// say each of `expected` (the field and what would be valid), without panicking.
fn rejects(fixture: &str, expected: &[&str]) {
    let file = format!("tests/fixtures/stabilisers/{fixture}.ron");
    let out = coevo(&["validate", &file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{file}: expected exit code 2; stderr:\n{err}");
    assert!(err.contains(&file) && !err.contains("panicked"), "{file}:\n{err}");
    for e in expected {
        assert!(err.contains(e), "{file}: the message must say {e:?}; stderr:\n{err}");
    }
}

#[test]
fn alpha_outside_the_unit_interval() {
    rejects("alpha", &["entities[2] (CorpusInjector \"corpus\").alpha", "alpha = 1.5", "must lie in [0, 1]"]);
}

#[test]
fn eps_outside_the_unit_interval() {
    rejects("eps", &["entities[2] (CorpusInjector \"corpus\").eps", "eps = -0.1", "must lie in [0, 1]"]);
}

#[test]
fn lambda_outside_the_unit_interval() {
    rejects("lambda", &["entities[1] (ImageModel \"painter\").data", "lambda must lie in [0, 1]"]);
}

#[test]
fn negative_n0() {
    rejects("n0_negative", &["n0_negative.ron:8:", "(UserContentInjector \"users\").n0", "expected a whole number >= 0 or a schedule"]);
}

#[test]
fn injector_target_that_does_not_exist() {
    rejects("target_missing", &["(CorpusInjector \"corpus\").target", "no entity is called `nobody`", "`captioner`"]);
}

#[test]
fn injector_target_of_the_wrong_kind() {
    rejects(
        "target_kind",
        &[
            "(CorpusInjector \"corpus\").target",
            "`painter` is an ImageModel, but a CorpusInjector targets a TextModel",
            "(UserContentInjector \"users\").target",
            "`captioner` is a TextModel, but a UserContentInjector targets an ImageModel",
        ],
    );
}

#[test]
fn fixed_injection_of_the_wrong_length() {
    rejects("fixed_length", &["(CorpusInjector \"corpus\").distribution", "Fixed gives 3 probabilities but `captioner` has K = 5"]);
}

#[test]
fn perturbation_of_a_missing_model_or_bad_factor() {
    rejects("perturb_missing", &["perturb", "no entity is called `nobody`"]);
    // The same answer for --perturb on the command line, located in the argument.
    let out =
        coevo(&["stability", "scenarios/stability_fresh.ron", "--perturb", "CovarianceScale(model: \"painter\", factor: -2.0)", "--quiet"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--perturb") && err.contains("factor = -2") && err.contains("finite number > 0"), "{err}");
    let out = coevo(&["stability", "scenarios/stability_fresh.ron", "--perturb", "MeanShift(model: \"painter\"", "--quiet"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--perturb:1:"), "a malformed --perturb is located: {err}");
}

#[test]
fn stability_output_is_the_same_whatever_the_thread_count() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stabilisers");
    let mut tables = Vec::new();
    for threads in ["1", "2"] {
        let out_dir = dir.join(format!("threads{threads}"));
        let out = coevo(&[
            "stability",
            "scenarios/stability_replace.ron",
            "--rounds",
            "40",
            "--threads",
            threads,
            "--out",
            out_dir.to_str().unwrap(),
            "--force",
            "--quiet",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        tables.push(std::fs::read(out_dir.join("divergence.csv")).unwrap());
    }
    assert_eq!(tables[0], tables[1]);
    let csv = String::from_utf8(tables.remove(0)).unwrap();
    assert!(csv.starts_with("replicate,round,model,text,metric,value\n0,0,captioner,,tv,0.04"), "{}", &csv[..200.min(csv.len())]);
}

/// The identity the floor derivation rests on: a uniform injection maps H affinely,
/// H' = (1 - eps)^2 H + (1 - (1 - eps)^2)(1 - 1/K), checked on the crate's gini_simpson.
#[test]
fn uniform_injection_maps_gini_simpson_affinely() {
    let p = [0.6, 0.3, 0.1, 0.0, 0.0];
    let eps: f64 = 0.3;
    let mixed: Vec<f64> = p.iter().map(|x| (1.0 - eps) * x + eps / 5.0).collect();
    let c = 1.0 - (1.0 - eps).powi(2);
    assert!((gini_simpson(&mixed) - ((1.0 - eps).powi(2) * gini_simpson(&p) + c * 0.8)).abs() < 1e-15);
}
