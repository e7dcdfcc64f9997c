//! Covariance families and exact refits (docs/model.md sections 3 and 14, issue 17).
//!
//! - the contraction law `E tr Sigma_t = ((n-1)/n)^t tr Sigma_0` of `Diagonal` and `Isotropic`
//!   models with `Fixed(n)`, MLE and a frozen text, within standard errors of the exact
//!   chi-square recursions;
//! - an exact cross-check: a `Diagonal` model and a `Full` one started from the same diagonal
//!   covariances draw the same samples in round 1, so their refits agree on the diagonal
//!   under every data policy;
//! - the log-determinant increment law `E[log det S_z]` (a Wishart law) at condition numbers
//!   1e2 to 1e14, and a 1-D collapse that keeps following theory past the f64 resolution of
//!   its mean (the exact refit on the standard-normal draws);
//! - checkpoints of every family (and the version-1 layout, which loads as `Full`);
//! - located validation errors for covariances outside a model's family.

use coevo::Simulation;
use coevo::metrics::MetricRow;
use coevo::models::{ConditionalModel, DataPolicy, Estimator, GaussianImageModel, StructuredCovariance};
use coevo::rng::entity_stream;
use nalgebra::{DMatrix, DVector};

use crate::common::{Z, mean_se, metric, scenario};

/// Euler-Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `psi(x)` and `psi'(x)` (digamma, trigamma) at a positive half-integer or integer `x`, from
/// `psi(1) = -gamma`, `psi(1/2) = -gamma - 2 ln 2`, `psi'(1) = pi^2/6`, `psi'(1/2) = pi^2/2`
/// and the recurrences `psi(x + 1) = psi(x) + 1/x`, `psi'(x + 1) = psi'(x) - 1/x^2`: exact,
/// no numerical special function involved.
fn polygamma_half(x: f64) -> (f64, f64) {
    let pi2 = std::f64::consts::PI.powi(2);
    let (mut at, mut psi, mut tri) =
        if x.fract() == 0.0 { (1.0, -EULER_GAMMA, pi2 / 6.0) } else { (0.5, -EULER_GAMMA - 2.0 * std::f64::consts::LN_2, pi2 / 2.0) };
    assert!(x >= at && (x - at).fract() == 0.0, "{x} is not a positive half-integer");
    while at < x {
        psi += 1.0 / at;
        tri -= 1.0 / (at * at);
        at += 1.0;
    }
    (psi, tri)
}

/// Mean and variance of `log det S_z`, `S_z` the MLE covariance (divisor `n`) of `n` standard
/// normal vectors in dimension `d`: `n S_z ~ Wishart_d(n - 1, I)`, whose log-determinant is a
/// sum of independent `log chi^2_{n-1-k}`, `k = 0..d-1` (Bartlett), so
/// `E = sum_k psi((n-1-k)/2) + d ln 2 - d ln n` and `Var = sum_k psi'((n-1-k)/2)`.
fn log_det_increment_law(d: usize, n: usize) -> (f64, f64) {
    let (mut mean, mut var) = (d as f64 * (2f64.ln() - (n as f64).ln()), 0.0);
    for k in 0..d {
        let (psi, tri) = polygamma_half((n - 1 - k) as f64 / 2.0);
        mean += psi;
        var += tri;
    }
    (mean, var)
}

fn assert_within(what: &str, estimate: f64, expected: f64, se: f64) {
    let off = (estimate - expected) / se;
    assert!(off.abs() <= Z, "{what}: measured {estimate:.6e}, theory {expected:.6e}: {off:+.2} standard errors (se {se:.3e}, allowed {Z})");
}

/// Runs replicates `0..replicates` of `source` for `rounds` rounds and returns every round's
/// rows (round 0 first) per replicate.
fn runs(source: &str, replicates: u64, rounds: usize) -> Vec<Vec<Vec<MetricRow>>> {
    let s = scenario(source);
    (0..replicates)
        .map(|r| {
            let mut sim = Simulation::new(&s, r).expect("scenario builds");
            let mut out = vec![sim.measure().expect("round 0 measures").to_vec()];
            for _ in 0..rounds {
                out.push(sim.step().expect("round runs").to_vec());
            }
            out
        })
        .collect()
}

/// `E tr Sigma_t` for `Diagonal` and `Isotropic` models, `Fixed(n)`, MLE, frozen text.
///
/// Theory (exact). `Diagonal`: each coordinate's variance is refit from `n` draws with
/// independent coordinates, `s_t = s_{t-1} X / n`, `X ~ chi^2_{n-1}` independent across
/// coordinates and rounds, so `E s_t = q^t s_0` with `q = (n-1)/n` and
/// `E s_t^2 = m^t s_0^2` with `m = E (X/n)^2 = (n-1)(n+1)/n^2`; the trace's variance is the sum
/// of the coordinates'. `Isotropic`: `v_t = v_{t-1} X / (d n)`, `X ~ chi^2_{d(n-1)}`, so
/// `E tr = q^t d v_0` and `E tr^2 = (d v_0)^2 m^t`, `m = d(n-1)(d(n-1)+2)/(d n)^2`. The `R x K`
/// texts are independent (disjoint draws), so the standard error of their mean trace is
/// `sqrt(Var / (R K))`, exact: no sample variance is involved. 2 families x 12 rounds.
#[test]
fn structured_families_contract_the_trace_geometrically() {
    const N: usize = 6;
    const T: usize = 12;
    const R: u64 = 60;
    const K: usize = 5;
    let variances = [0.2, 0.1, 0.05];
    let q = (N as f64 - 1.0) / N as f64;
    for (structure, covariance) in [("Diagonal", format!("Diagonal({variances:?})")), ("Isotropic", "Isotropic(0.1)".to_string())] {
        let source = format!(
            "Scenario(name: \"contraction\", seed: 5, rounds: {T}, entities: [
                TextModel(name: \"captioner\", initial: Probabilities([0.4, 0.3, 0.15, 0.1, 0.05]), frozen: true),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", dim: 3, covariance: {covariance},
                           structure: {structure}, allocation: Fixed({N}), estimator: Mle),
            ])"
        );
        let (s0, m): (Vec<f64>, f64) = match structure {
            "Diagonal" => (variances.to_vec(), (N as f64 - 1.0) * (N as f64 + 1.0) / (N * N) as f64),
            _ => {
                let dof = 3.0 * (N as f64 - 1.0);
                (vec![0.1; 3], dof * (dof + 2.0) / (3.0 * N as f64).powi(2))
            }
        };
        let tr0: f64 = s0.iter().sum();
        let all = runs(&source, R, T);
        for t in 1..=T {
            let traces: Vec<f64> =
                all.iter().flat_map(|run| (0..K).map(move |i| metric(&run[t], "painter", "trace", Some(i as u32)))).collect();
            let expected = q.powi(t as i32) * tr0;
            let var = match structure {
                "Diagonal" => s0.iter().map(|s| s * s * (m.powi(t as i32) - q.powi(2 * t as i32))).sum::<f64>(),
                _ => tr0 * tr0 * (m.powi(t as i32) - q.powi(2 * t as i32)),
            };
            let mean = traces.iter().sum::<f64>() / traces.len() as f64;
            assert_within(&format!("{structure}: E tr Sigma_{t}"), mean, expected, (var / traces.len() as f64).sqrt());
        }
    }
}

/// Exact cross-check, one round under each data policy: from the same seed a `Diagonal` model
/// and a `Full` one with the same diagonal initial covariances draw bit-identical samples
/// (`y = mu + A z` with `A = diag(sd)` either way, the same standard-normal draws; real data
/// and user content come from the initial conditionals through the same roots). So after the
/// first refit the `Full` covariance's diagonal is the `Diagonal` model's variances: both
/// traces and both means agree to rounding (`1e-12` relative: a few operations in another
/// order), while the `Full` model also fits correlations (its log-determinant is lower).
#[test]
fn a_diagonal_model_refits_the_diagonal_of_a_full_model_on_the_same_draws() {
    for (policy, users) in [
        ("Replace", false),
        ("Fresh(lambda: 0.4)", false),
        ("Accumulate(initial: 30)", false),
        ("Augment(lambda: 1.0)", false),
        ("Replace", true),
    ] {
        let rows = |structure: &str| {
            let user = if users { "UserContentInjector(name: \"users\", target: \"painter\", n0: 4)," } else { "" };
            let source = format!(
                "Scenario(name: \"cross\", seed: 9, rounds: 1, entities: [
                    TextModel(name: \"captioner\", initial: Probabilities([0.5, 0.3, 0.2]), batch: 300),
                    ImageModel(name: \"painter\", conditioned_on: \"captioner\", dim: 3, covariance: Diagonal([0.3, 0.05, 0.01]),
                               structure: {structure}, batch: 300, data: {policy}),
                    {user}
                ])"
            );
            runs(&source, 1, 1).remove(0).remove(1)
        };
        let (diagonal, full) = (rows("Diagonal"), rows("Full"));
        for i in 0..3 {
            for name in ["trace", "fidelity"] {
                let (a, b) = (metric(&diagonal, "painter", name, Some(i)), metric(&full, "painter", name, Some(i)));
                assert!((a - b).abs() <= 1e-12 * b.abs(), "{policy}, users {users}: text {i} {name}: Diagonal {a} vs Full {b}");
            }
            let (a, b) = (metric(&diagonal, "painter", "logdet", Some(i)), metric(&full, "painter", "logdet", Some(i)));
            assert!(a > b, "{policy}: text {i}: the Full refit fits correlations, so its logdet {b} is below the Diagonal one {a}");
        }
    }
}

/// A rotated 2 x 2 covariance with eigenvalues `1` and `1 / cond`, as RON rows.
fn rotated(cond: f64) -> String {
    let (c, s) = (0.6f64, 0.8f64);
    let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
    let m = &r * DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 1.0 / cond])) * r.transpose();
    let m = (&m + m.transpose()) * 0.5;
    format!("[[{:?}, {:?}], [{:?}, {:?}]]", m[(0, 0)], m[(0, 1)], m[(1, 0)], m[(1, 1)])
}

/// The held-out check of issue 17, now a test: with `d = 2`, `Fixed(3)`, MLE and a frozen
/// text, the per-round change of `log det Sigma` is `log det S_z` whatever `Sigma` is, so its
/// law must not depend on the condition number. Per condition number `1e2, 1e6, 1e10, 1e14`:
/// `R = 300` replicates x 4 rounds = 1200 independent increments (the increments of one
/// replicate are independent: each round's draws are fresh), mean within `Z` standard errors
/// `sqrt(Var / 1200)` of the exact mean (-3.3516) with the exact variance (2 pi^2 / 3); every
/// log-determinant finite (`n = 3 > d`: never singular); and, since one seed gives the same
/// standard-normal draws at every condition number, every increment equal to its twin at cond
/// 1e2 (the refit is exact: nothing in it depends on how ill-conditioned `Sigma` is).
#[test]
fn the_log_determinant_follows_the_wishart_law_at_any_condition_number() {
    const R: u64 = 300;
    const T: usize = 4;
    let (mean, var) = log_det_increment_law(2, 3);
    assert!(
        (mean - (-2.0 * EULER_GAMMA - 2.0 * 3f64.ln())).abs() < 1e-12 && (var - 2.0 * std::f64::consts::PI.powi(2) / 3.0).abs() < 1e-12
    );
    let mut first: Option<Vec<f64>> = None;
    for cond in [1e2, 1e6, 1e10, 1e14] {
        let source = format!(
            "Scenario(name: \"wishart\", seed: 17, rounds: {T}, entities: [
                TextModel(name: \"captioner\", initial: Probabilities([1.0]), frozen: true),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", means: Explicit([[3.0, -2.0]]),
                           covariance: Full({}), allocation: Fixed(3), estimator: Mle),
            ])",
            rotated(cond)
        );
        let mut increments = Vec::new();
        for run in runs(&source, R, T) {
            let logdet: Vec<f64> = run.iter().map(|rows| metric(rows, "painter", "logdet", Some(0))).collect();
            assert!(logdet.iter().all(|l| l.is_finite()), "cond {cond:e}: a log-determinant is not finite: {logdet:?}");
            increments.extend(logdet.windows(2).map(|w| w[1] - w[0]));
        }
        // Exactness: the same seed draws the same z, and the increment is log det S_z whatever
        // Sigma is, so every increment equals the one at cond 1e2 to the rounding of a sum of
        // log-determinants (|log det| < 100 here: 1e-11 absolute is 1e4 ulp of room).
        let reference = first.get_or_insert_with(|| increments.clone());
        let worst = reference.iter().zip(&increments).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-11, "cond {cond:e}: an increment differs from the one at cond 1e2 by {worst:e}");
        let measured = increments.iter().sum::<f64>() / increments.len() as f64;
        println!("cond {cond:e}: mean log-det increment {measured:.4} over {} (theory {mean:.4})", increments.len());
        assert_within(&format!("cond {cond:e}: E[log det S_z]"), measured, mean, (var / increments.len() as f64).sqrt());
    }
}

/// 1-D, `n = 2`: `log Sigma_t - log Sigma_0` is a sum of `t` independent `log(chi^2_1 / 2)`,
/// mean `psi(1/2)` (-1.9635) and variance `psi'(1/2) = pi^2 / 2` each. After 100 rounds theory
/// says -196: far below `2 log(eps |mu|) = -72`, where a refit from the rounded samples stalls
/// (every sample rounds to the mean). Over `R = 200` replicates the mean of the 100-round
/// change is within `Z` standard errors `sqrt(100 Var / R)` of `100 psi(1/2)`; every value is
/// finite, and so is the likelihood of every sample (the run completes).
#[test]
fn one_dimensional_collapse_follows_theory_past_the_resolution_of_the_mean() {
    const R: u64 = 200;
    const T: usize = 100;
    let source = format!(
        "Scenario(name: \"deep\", seed: 23, rounds: {T}, entities: [
            TextModel(name: \"captioner\", initial: Probabilities([1.0]), frozen: true),
            ImageModel(name: \"painter\", conditioned_on: \"captioner\", dim: 1, means: Explicit([[1.0]]),
                       covariance: Isotropic(0.1), allocation: Fixed(2), estimator: Mle),
        ])"
    );
    let (mean, var) = log_det_increment_law(1, 2);
    let changes: Vec<f64> = runs(&source, R, T)
        .iter()
        .map(|run| {
            let logdet: Vec<f64> = run.iter().map(|rows| metric(rows, "painter", "logdet", Some(0))).collect();
            assert!(logdet.iter().all(|l| l.is_finite()), "a log-determinant is not finite: {logdet:?}");
            logdet[T] - logdet[0]
        })
        .collect();
    let (measured, _) = mean_se(&changes);
    println!("1-D, n = 2: mean log-det change over {T} rounds {measured:.2} (theory {:.2})", T as f64 * mean);
    assert!(measured < -150.0, "the collapse stalled at {measured}");
    assert_within("E[log Sigma_100 - log Sigma_0] (1-D, n = 2)", measured, T as f64 * mean, (T as f64 * var / R as f64).sqrt());
}

/// A model of each family and the same model rebuilt from its saved state give identical
/// samples, log-likelihoods and metrics afterwards (the exact roots are part of the state);
/// a version-1 state (before the families) loads into a `Full` model and is refused by a
/// `Diagonal` one, naming both families.
#[test]
fn checkpoints_of_every_family_restore_the_exact_state() {
    let means = vec![DVector::from_vec(vec![1.0, 0.0, 0.5]), DVector::from_vec(vec![-1.0, 0.2, 0.0])];
    let families = [
        StructuredCovariance::Full(DMatrix::from_row_slice(3, 3, &[0.2, 0.05, 0.0, 0.05, 0.1, 0.01, 0.0, 0.01, 0.3])),
        StructuredCovariance::Diagonal(DVector::from_vec(vec![0.2, 0.1, 0.3])),
        StructuredCovariance::Isotropic { variance: 0.15, dim: 3 },
    ];
    for (f, sigma) in families.iter().enumerate() {
        for policy in [DataPolicy::Replace, DataPolicy::Accumulate { initial: 20 }] {
            let build = || {
                GaussianImageModel::new(
                    means.clone(),
                    vec![sigma.clone(); 2],
                    Estimator::Mle,
                    policy.clone(),
                    (means[0].clone(), sigma.clone()),
                )
            };
            let mut model = build();
            let mut rng = entity_stream(3, 0, "checkpoint");
            let (mut y, counts) = (Vec::new(), [7, 5]);
            for _ in 0..6 {
                model.begin_round();
                model.sample(&counts, 1.3, &mut rng, &mut y).unwrap();
                model.fit(&counts, &y).unwrap();
            }
            let mut restored = build();
            restored.load_state(&model.save_state().unwrap()).unwrap();
            let mut observe = |m: &mut GaussianImageModel, rng: &mut coevo::rng::Stream| {
                let mut out = Vec::new();
                m.sample(&counts, 1.0, rng, &mut y).unwrap();
                let mut ll = vec![0.0; 12 * 2];
                m.add_log_likelihood(&y, &mut ll).unwrap();
                m.fit(&counts, &y).unwrap();
                m.metrics(&mut |name, i, v| out.push((name.to_string(), i, v.to_bits()))).unwrap();
                (y.clone(), ll, out)
            };
            let mut twin = rng.clone();
            assert_eq!(observe(&mut model, &mut rng), observe(&mut restored, &mut twin), "family {f}, {policy:?}");
        }
    }
    // Version 1: [1, K, d, regularized, factors_current, accumulating], then per text mu,
    // Sigma, mu0, Sigma0, prev_mu, prev_Sigma.
    let sigma = DMatrix::from_row_slice(2, 2, &[0.2, 0.05, 0.05, 0.1]);
    let mu = DVector::from_vec(vec![1.0, 0.0]);
    let mut v1 = vec![1.0, 1.0, 2.0, 4.0, 0.0, 0.0];
    for _ in 0..3 {
        v1.extend_from_slice(mu.as_slice());
        v1.extend_from_slice(sigma.as_slice());
    }
    let full = |s: StructuredCovariance| {
        GaussianImageModel::new(vec![mu.clone()], vec![s.clone()], Estimator::Mle, DataPolicy::Replace, (mu.clone(), s))
    };
    let mut model = full(StructuredCovariance::Full(DMatrix::identity(2, 2)));
    model.load_state(&v1).unwrap();
    assert_eq!(model.covariance(0), &StructuredCovariance::Full(sigma.clone()));
    assert!((model.factored_covariance(0).log_det() - sigma.determinant().ln()).abs() < 1e-12);
    assert_eq!(model.take_regularized(), 4);
    let mut diagonal = full(StructuredCovariance::Diagonal(DVector::from_vec(vec![1.0, 1.0])));
    let err = diagonal.load_state(&v1).unwrap_err().to_string();
    assert!(err.contains("Full") && err.contains("Diagonal"), "{err}");
}

/// Covariances written outside a model's family are refused at validation, naming the
/// field and what would be valid.
#[test]
fn covariances_outside_the_family_are_located_errors() {
    for (structure, covariance, expected) in [
        ("Diagonal", "Full([[1.0, 0.5], [0.5, 1.0]])", "off-diagonal"),
        ("Isotropic", "Diagonal([0.1, 0.2])", "differ"),
        ("Isotropic", "PerText([[[0.1, 0.0], [0.0, 0.1]], [[0.1, 0.0], [0.0, 0.3]]])", "covariance [1]"),
    ] {
        let source = format!(
            "Scenario(name: \"family\", rounds: 1, entities: [
                TextModel(name: \"captioner\", initial: Probabilities([0.5, 0.5])),
                ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: {covariance}, structure: {structure}),
            ])"
        );
        let err = coevo::Scenario::parse(&source, std::path::Path::new("family.ron")).unwrap_err().to_string();
        assert!(err.contains("covariance") && err.contains(expected) && err.contains("family.ron"), "{structure}: {err}");
    }
    let ok = "Scenario(name: \"family\", rounds: 1, entities: [
        TextModel(name: \"captioner\", initial: Probabilities([0.5, 0.5])),
        ImageModel(name: \"painter\", conditioned_on: \"captioner\", covariance: Full([[0.1, 0.0], [0.0, 0.1]]), structure: Isotropic),
    ])";
    assert!(coevo::Scenario::parse(ok, std::path::Path::new("family.ron")).is_ok());
}
