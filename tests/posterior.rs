//! The blocked, screened caption posterior (`coevo::models::posterior`) against the exact path:
//! every log-density in the exact form (`z = W (y - mu)`, or the structured families' `O(d)`
//! kernel, which must equal the dense `add_log_likelihood` bit for bit), the whole `N x K`
//! matrix, and the row-by-row log-sum-exp of `accumulate_caption_posterior`. Soft counts must
//! agree to 1e-12 relative (the requirement of issue 17) on random, collapsed, near-singular,
//! overlapping and dead-text cases of every covariance family; the guard must be what makes
//! them agree where the fast form cancels; and the result must not depend on the number of
//! threads.

use coevo::models::conditional::ConditionalModel;
use coevo::models::posterior::{PosteriorBuffers, Scorer, accumulate_posterior};
use coevo::models::text::{accumulate_caption_posterior, multinomial_counts};
use coevo::models::{DataPolicy, Estimator, GaussianImageModel, Structure, StructuredCovariance};
use coevo::rng::{Stream, entity_stream};
use nalgebra::{DMatrix, DVector};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

/// A random orthogonal `d x d` matrix (QR of a Gaussian matrix).
fn rotation(d: usize, rng: &mut Stream) -> DMatrix<f64> {
    DMatrix::from_fn(d, d, |_, _| StandardNormal.sample(rng)).qr().q()
}

/// `V diag(eigenvalues) V^T` with a random rotation `V`, symmetrised.
fn covariance(eigenvalues: &[f64], rng: &mut Stream) -> DMatrix<f64> {
    let v = rotation(eigenvalues.len(), rng);
    let s = &v * DMatrix::from_diagonal(&DVector::from_column_slice(eigenvalues)) * v.transpose();
    (&s + s.transpose()) * 0.5
}

#[derive(Clone)]
struct Case {
    label: String,
    p: Vec<f64>,
    mu: Vec<DVector<f64>>,
    sigma: Vec<StructuredCovariance>,
    n: u64,
}

/// The case's model, its log-densities readied, and a batch drawn from it with `seed`.
fn sampled_model(case: &Case, seed: u64) -> (GaussianImageModel, Vec<f64>) {
    let mut model = GaussianImageModel::new(
        case.mu.clone(),
        case.sigma.clone(),
        Estimator::Mle,
        DataPolicy::Replace,
        (case.mu[0].clone(), case.sigma[0].clone()),
    );
    let mut rng = entity_stream(seed, 0, &case.label);
    let (mut counts, mut samples) = (Vec::new(), Vec::new());
    multinomial_counts(case.n, &case.p, &mut rng, &mut counts);
    model.sample(&counts, 1.0, &mut rng, &mut samples).unwrap();
    assert!(model.prepare_log_density());
    (model, samples)
}

/// Soft counts by the blocked posterior and by the exact path, and the guard's recomputations.
fn both_paths(case: &Case, seed: u64) -> (Vec<f64>, Vec<f64>, u64) {
    let (k, d) = (case.p.len(), case.mu[0].len());
    let (mut model, samples) = sampled_model(case, seed);
    let n = case.n as usize;
    let mut dense = vec![0.0; n * k];
    model.add_log_likelihood(&samples, &mut dense).unwrap();
    let structured = model.structure() != Structure::Full;
    let scorer = model.log_density().unwrap();
    let mut soft = vec![0.0; k];
    let report =
        accumulate_posterior(&case.p, n, &[Scorer { model: scorer, samples: &samples }], &mut PosteriorBuffers::default(), &mut soft);
    let mut scratch = Vec::new();
    let mut ll = vec![0.0; n * k];
    for j in 0..n {
        for i in 0..k {
            ll[j * k + i] = scorer.exact(&samples, j, i, &mut scratch);
        }
    }
    assert!(samples.len() == n * d);
    if structured {
        // The guard's exact form is the dense path's kernel, pair by pair.
        let same = ll.iter().zip(&dense).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{}: the per-pair exact form differs from the dense log-likelihood", case.label);
    }
    let mut exact = vec![0.0; k];
    accumulate_caption_posterior(&case.p, &ll, &mut exact, &mut scratch);
    (soft, exact, report.recomputed)
}

/// Largest relative difference over texts (0 where both are 0).
fn worst_relative(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() / y.abs().max(f64::MIN_POSITIVE) }).fold(0.0, f64::max)
}

fn random_means(k: usize, d: usize, scale: f64, offset: f64, rng: &mut Stream) -> Vec<DVector<f64>> {
    (0..k)
        .map(|_| {
            DVector::from_fn(d, |_, _| {
                offset
                    + scale * {
                        let z: f64 = StandardNormal.sample(rng);
                        z
                    }
            })
        })
        .collect()
}

fn random_p(k: usize, dead: &[usize], rng: &mut Stream) -> Vec<f64> {
    let mut p: Vec<f64> = (0..k).map(|i| if dead.contains(&i) { 0.0 } else { rng.random_range(0.2..1.0) }).collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    p
}

/// Full covariances.
fn full(sigma: Vec<DMatrix<f64>>) -> Vec<StructuredCovariance> {
    sigma.into_iter().map(Into::into).collect()
}

/// A covariance of the structured family `structure` with coordinate variances `v` (an
/// `Isotropic` one takes the first).
fn structured(structure: Structure, v: Vec<f64>) -> StructuredCovariance {
    match structure {
        Structure::Isotropic => StructuredCovariance::Isotropic { variance: v[0], dim: v.len() },
        _ => StructuredCovariance::Diagonal(DVector::from_vec(v)),
    }
}

/// The cases of [`cases`] for a structured family, labelled `"{family} {case}"`, and one at a
/// scale with several text tiles and product chunks (`K = 300`, `d = 300`) whose dead texts
/// make the live texts of later tiles non-consecutive.
fn structured_cases(structure: Structure, rng: &mut Stream) -> Vec<Case> {
    let family = structure.name();
    let label = |case: &str| format!("{family} {case}");
    let mut out = Vec::new();
    let (k, d) = (20, 42);
    let sigma = (0..k).map(|_| structured(structure, (0..d).map(|_| rng.random_range(0.02..0.5)).collect())).collect();
    out.push(Case { label: label("random"), p: random_p(k, &[], rng), mu: random_means(k, d, 1.0, 0.0, rng), sigma, n: 3000 });
    // Collapsed: variances 1e-12 (and down to 1e-20) of the mean's squared magnitude (30^2),
    // means 1e-7 apart: some texts overlap, some are separated by many standard deviations.
    let (k, d) = (12, 10);
    let sigma = (0..k)
        .map(|i| structured(structure, (0..d).map(|_| 900.0 * 10f64.powi(-12 - 2 * (i % 5) as i32) * rng.random_range(0.5..2.0)).collect()))
        .collect();
    out.push(Case { label: label("collapsed"), p: random_p(k, &[], rng), mu: random_means(k, d, 1e-7, 30.0, rng), sigma, n: 2000 });
    // Near-singular: variances spanning 1 .. 1e-14 over the coordinates (Isotropic: over the texts).
    let (k, d) = (10, 6);
    let sigma = (0..k)
        .map(|i| {
            let v = (0..d).map(|a| {
                10f64.powf(-14.0 * if structure == Structure::Isotropic { i as f64 / (k - 1) as f64 } else { a as f64 / (d - 1) as f64 })
            });
            structured(structure, v.collect())
        })
        .collect();
    out.push(Case { label: label("near-singular"), p: random_p(k, &[], rng), mu: random_means(k, d, 0.5, 1.0, rng), sigma, n: 2000 });
    // Overlapping: nearly identical conditionals, and a collapsed pair on one mean.
    let (k, d) = (8, 5);
    let mut mu = random_means(k, d, 1e-3, 2.0, rng);
    let mut sigma: Vec<StructuredCovariance> =
        (0..k).map(|i| structured(structure, [0.3, 0.2, 0.1, 0.05, 0.01].iter().map(|v| v * (1.0 + 1e-3 * i as f64)).collect())).collect();
    mu[7] = mu[6].clone();
    sigma[6] = structured(structure, vec![1e-18; d]);
    sigma[7] = structured(structure, vec![1.5e-18; d]);
    out.push(Case { label: label("overlapping"), p: random_p(k, &[], rng), mu, sigma, n: 2000 });
    // A collapsed pair on one mean sharing a block with a far text (see `cases`).
    let mu = vec![DVector::from_vec(vec![50.0, 0.0]), DVector::from_vec(vec![-50.0, 1.0]), DVector::from_vec(vec![-50.0, 1.0])];
    let sigma =
        vec![structured(structure, vec![0.01; 2]), structured(structure, vec![1e-12, 3e-13]), structured(structure, vec![2e-12, 1e-12])];
    out.push(Case { label: label("collapsed pair"), p: vec![0.5, 0.25, 0.25], mu, sigma, n: 300 });
    // Dead texts at a scale with three tiles of live texts and two product chunks.
    let (k, d) = (300, 300);
    let dead: Vec<usize> = (150..k).filter(|i| i % 3 == 1).collect();
    let sigma = (0..k).map(|_| structured(structure, (0..d).map(|_| rng.random_range(0.05..0.3)).collect())).collect();
    out.push(Case { label: label("dead texts"), p: random_p(k, &dead, rng), mu: random_means(k, d, 0.5, 0.0, rng), sigma, n: 600 });
    out
}

fn cases() -> Vec<Case> {
    let mut rng = entity_stream(17, 0, "posterior cases");
    let rng = &mut rng;
    let mut out = Vec::new();
    // Random: spread conditionals of random shape, d = 8 (one full block and a partial one at N = 3000).
    let (k, d) = (20, 8);
    let sigma = full((0..k).map(|_| covariance(&(0..d).map(|_| rng.random_range(0.02..0.5)).collect::<Vec<_>>(), rng)).collect());
    out.push(Case { label: "random".into(), p: random_p(k, &[], rng), mu: random_means(k, d, 1.0, 0.0, rng), sigma, n: 3000 });
    // Collapsed: tiny covariances (1e-20 .. 1e-16) around means far from the origin, where the
    // fast form cancels by |y|^2 ||P|| ~ 1e22 eps.
    let (k, d) = (12, 4);
    let sigma = full((0..k).map(|i| covariance(&vec![10f64.powi(-16 - (i % 5) as i32); d], rng)).collect());
    out.push(Case { label: "collapsed".into(), p: random_p(k, &[], rng), mu: random_means(k, d, 1e-7, 30.0, rng), sigma, n: 2000 });
    // Near-singular: condition number 1e14, eigenvalues 1 .. 1e-14, random rotations, d = 6.
    let (k, d) = (10, 6);
    let sigma =
        full((0..k).map(|_| covariance(&(0..d).map(|a| 10f64.powf(-14.0 * a as f64 / (d - 1) as f64)).collect::<Vec<_>>(), rng)).collect());
    out.push(Case { label: "near-singular".into(), p: random_p(k, &[], rng), mu: random_means(k, d, 0.5, 1.0, rng), sigma, n: 2000 });
    // Overlapping: nearly identical conditionals (the posterior depends on every digit of the
    // log-density differences), and a pair of collapsed texts on the same mean.
    let (k, d) = (8, 5);
    let base = covariance(&[0.3, 0.2, 0.1, 0.05, 0.01], rng);
    let mut mu = random_means(k, d, 1e-3, 2.0, rng);
    let mut sigma: Vec<DMatrix<f64>> = (0..k).map(|i| &base * (1.0 + 1e-3 * i as f64)).collect();
    mu[7] = mu[6].clone();
    sigma[6] = covariance(&[1e-18; 5], rng);
    sigma[7] = &sigma[6] * 1.5;
    out.push(Case { label: "overlapping".into(), p: random_p(k, &[], rng), mu, sigma: full(sigma), n: 2000 });
    // A collapsed pair on one mean, sharing a block with the samples of a far text: the block's
    // centre lies between them, so the fast form cancels by ~|m'|^2 ||P|| u ~ 1 nat, while
    // the pair's posterior split depends on every digit of their log-density difference.
    let mu = vec![DVector::from_vec(vec![50.0, 0.0]), DVector::from_vec(vec![-50.0, 1.0]), DVector::from_vec(vec![-50.0, 1.0])];
    let sigma = full(vec![DMatrix::identity(2, 2) * 0.01, covariance(&[1e-12, 3e-13], rng), covariance(&[2e-12, 1e-12], rng)]);
    out.push(Case { label: "collapsed pair".into(), p: vec![0.5, 0.25, 0.25], mu, sigma, n: 300 });
    // Dead texts: a third of the texts have p_i = 0; they are scored nowhere and get exactly 0.
    let (k, d) = (15, 3);
    let sigma = full((0..k).map(|_| covariance(&[0.2, 0.1, 0.05], rng)).collect());
    out.push(Case {
        label: "dead texts".into(),
        p: random_p(k, &[0, 3, 4, 9, 14], rng),
        mu: random_means(k, d, 0.5, 0.0, rng),
        sigma,
        n: 1500,
    });
    // Up to d = 8 `Full` blocks are scored by the exact form itself; the same cases lifted to
    // d = 10 exercise the fast form and its guard.
    let lifted: Vec<Case> = out.iter().map(|c| lift(c, FAST_FORM_D)).collect();
    out.extend(lifted);
    out.extend(structured_cases(Structure::Diagonal, rng));
    out.extend(structured_cases(Structure::Isotropic, rng));
    out
}

/// A dimension where `Full` blocks are scored by the fast (quadratic-feature) form.
const FAST_FORM_D: usize = 10;

/// The `Full` `case` embedded in dimension `d`: means padded with zeros, each covariance
/// extended by a block `lambda_min I` (its own smallest eigenvalue), so collapsed and
/// near-singular conditionals stay so in the new coordinates.
fn lift(case: &Case, d: usize) -> Case {
    let sigma = case
        .sigma
        .iter()
        .map(|s| {
            let StructuredCovariance::Full(s) = s else { panic!("{}: only Full cases are lifted", case.label) };
            let low = s.symmetric_eigenvalues().min().max(0.0);
            StructuredCovariance::Full(DMatrix::from_fn(d, d, |r, c| match (r < s.nrows(), c < s.ncols()) {
                (true, true) => s[(r, c)],
                _ if r == c => low,
                _ => 0.0,
            }))
        })
        .collect();
    let mu = case.mu.iter().map(|m| DVector::from_fn(d, |r, _| if r < m.len() { m[r] } else { 0.0 })).collect();
    Case { label: format!("{} (d = {d})", case.label), p: case.p.clone(), mu, sigma, n: case.n }
}

/// The blocked, screened posterior equals the exact path to 1e-12 relative on every soft
/// count, and gives dead texts exactly zero.
#[test]
fn blocked_posterior_equals_the_exact_path() {
    for case in cases() {
        let (soft, exact, recomputed) = both_paths(&case, 3);
        let worst = worst_relative(&soft, &exact);
        eprintln!("{}: worst relative difference {worst:.2e}, {recomputed} entries recomputed", case.label);
        assert!(worst <= 1e-12, "{}: soft counts {soft:?} vs exact {exact:?} ({worst:e})", case.label);
        for (i, &pi) in case.p.iter().enumerate() {
            if pi == 0.0 {
                assert_eq!(soft[i], 0.0, "{}: dead text {i}", case.label);
            }
        }
        let total: f64 = soft.iter().sum();
        // Each of the N rows sums to 1 up to (K + 1) roundings: |sum - N| <= N (K + 1) eps, checked at 4x.
        let bound = 4.0 * case.n as f64 * (case.p.len() + 1) as f64 * f64::EPSILON;
        assert!((total - case.n as f64).abs() <= bound, "{}: soft counts sum to {total}", case.label);
    }
}

/// With collapsed covariances the fast form alone is wrong by whole nats: posterior weights from
/// the fast values without the guard differ from the exact ones by far more than 1e-12, the
/// guard recomputes entries, and with it the soft counts agree (the test above). On
/// spread-out conditionals the fast form does the work: the worst-case bound recomputes only a
/// small minority of entries (a tenth is the limit checked: past it the fast form would no
/// longer pay for itself).
#[test]
fn guard_triggers_where_the_fast_form_cancels_and_only_there() {
    let cases = cases();
    for family in ["", "Diagonal ", "Isotropic "] {
        // `Full` blocks take the fast form above d = 8 only.
        let lifted = if family.is_empty() { format!(" (d = {FAST_FORM_D})") } else { String::new() };
        let case = |kind: &str| cases.iter().find(|c| c.label == format!("{family}{kind}{lifted}")).unwrap();
        guard_fires_only_where_needed(case("collapsed pair"), case("random"));
    }
}

/// The guard recomputes entries of `collapsed` (where the fast form alone is off by more than
/// 1e-6 relative) and fewer than a tenth of those of `random`.
fn guard_fires_only_where_needed(collapsed: &Case, random: &Case) {
    use coevo::models::posterior::BLOCK;
    let case = collapsed;
    let (_, exact, recomputed) = both_paths(case, 3);
    assert!(recomputed > 0, "{}: the guard recomputed no entry", case.label);
    // The same batch scored by the fast form alone, every entry accepted.
    let (k, n) = (case.p.len(), case.n as usize);
    let (model, samples) = sampled_model(case, 3);
    let scorer = model.log_density().unwrap();
    let live: Vec<usize> = (0..k).collect();
    let (mut ll, mut errors, mut scratch) = (vec![0.0; n * k], vec![0.0; n * k], Vec::new());
    for start in (0..n).step_by(BLOCK) {
        let rows = start..(start + BLOCK).min(n);
        let (a, b) = (rows.start * k, rows.end * k);
        scorer.add_block(&samples, rows, &live, &mut ll[a..b], &mut errors[a..b], &mut scratch);
    }
    let mut fast = vec![0.0; k];
    accumulate_caption_posterior(&case.p, &ll, &mut fast, &mut scratch);
    let unguarded = worst_relative(&fast, &exact);
    eprintln!("{}, fast form without the guard: worst relative difference {unguarded:.2e}", case.label);
    assert!(unguarded > 1e-6, "{}: the fast form alone is accurate here ({unguarded:e}): the case does not exercise the guard", case.label);
    let case = random;
    let (_, _, recomputed) = both_paths(case, 3);
    let entries = case.n * case.p.len() as u64;
    assert!(recomputed * 10 < entries, "{}: {recomputed} of {entries} entries recomputed", case.label);
}

/// A world large enough for its blocks to run in parallel (N K = 1.3e6 scored entries, above
/// `PARALLEL_ENTRIES`) gives bit-identical metric tables on one thread and on two, in every
/// covariance family (the structured ones at `d = 262`: two product chunks, a tail of lanes).
/// Its draws' transforms run in parallel too (`N d^2` above a million), and at `Full`, `d = 32`
/// the factors' eigendecompositions (`K d^3 = 2.1e6`).
#[test]
fn one_world_is_identical_on_one_and_two_threads() {
    use coevo::bench::structured_scenario;
    use coevo::models::posterior::PARALLEL_ENTRIES;
    use coevo::world::Simulation;
    for (structure, d) in [(Structure::Full, 12u64), (Structure::Full, 32), (Structure::Diagonal, 262), (Structure::Isotropic, 262)] {
        let (k, n) = (64u64, 20_000u64);
        assert!((n * k) as usize >= PARALLEL_ENTRIES);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut sim = Simulation::new(&structured_scenario(k, d, n, 5, structure), 0).unwrap();
                (0..3)
                    .map(|_| sim.step().unwrap().iter().map(|r| (r.metric.to_string(), r.text, r.value.to_bits())).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.iter().all(|round| !round.is_empty()));
        assert_eq!(one, two, "{}: metric tables differ between 1 and 2 threads", structure.name());
    }
}

/// Up to `d = 8` a block is scored by the exact form itself: every value equals `exact` bit
/// for bit, with zero error bounds, so the guard never recomputes.
#[test]
fn small_dimensions_are_scored_by_the_exact_form() {
    use coevo::models::posterior::BLOCK;
    for case in cases().iter().filter(|c| c.mu[0].len() <= 8 && matches!(c.sigma[0], StructuredCovariance::Full(_))) {
        let (k, n) = (case.p.len(), case.n as usize);
        let (model, samples) = sampled_model(case, 5);
        let scorer = model.log_density().unwrap();
        // Every other text live, so that gathered (not only complete) text lists are covered.
        let live: Vec<usize> = (0..k).filter(|i| i % 2 == 0).collect();
        let l = live.len();
        let (mut values, mut errors, mut scratch) = (vec![0.0; n * l], vec![0.0; n * l], Vec::new());
        for start in (0..n).step_by(BLOCK) {
            let rows = start..(start + BLOCK).min(n);
            let (a, b) = (rows.start * l, rows.end * l);
            scorer.add_block(&samples, rows, &live, &mut values[a..b], &mut errors[a..b], &mut scratch);
        }
        for j in 0..n {
            for (li, &i) in live.iter().enumerate() {
                let exact = scorer.exact(&samples, j, i, &mut scratch);
                assert_eq!(values[j * l + li].to_bits(), exact.to_bits(), "{}: sample {j}, text {i}", case.label);
                assert_eq!(errors[j * l + li], 0.0, "{}: sample {j}, text {i}", case.label);
            }
        }
    }
}

/// A text model with ten conditional models (more than the text phase keeps inline) multiplies
/// each one's likelihood exactly once: the posterior is a product, so listing the conditionals
/// in the opposite order changes the text model's refit only by the rounding of the sum of
/// log-densities (each image model draws from its own named stream whatever the order).
/// Counting some conditionals twice, as a spilled list once did, moves `p` by whole percents.
/// The variances are wide (2 to 4.7 against means 1.18 apart), so that even ten likelihoods
/// leave the posterior far from one-hot and every factor shows in it.
#[test]
fn ten_conditionals_are_each_counted_once_whatever_their_order() {
    use coevo::world::Simulation;
    let source = |order: &mut dyn Iterator<Item = usize>| {
        let images: String = order
            .map(|m| {
                format!(
                    r#"ImageModel(name: "painter{m}", conditioned_on: "captioner", dim: 2, batch: 400,
                                  covariance: Isotropic({})),"#,
                    2.0 + 0.3 * m as f64
                )
            })
            .collect();
        format!(
            r#"Scenario(name: "ten", seed: 11, rounds: 1, entities: [
                TextModel(name: "captioner", initial: Uniform(5), batch: 400), {images} ])"#
        )
    };
    let p = |src: String| {
        let mut sim = Simulation::new(&crate::common::scenario(&src), 0).unwrap();
        sim.step().unwrap();
        crate::common::text_p(&mut sim, "captioner")
    };
    let forward = p(source(&mut (0..10)));
    let backward = p(source(&mut (0..10).rev()));
    let moved = worst_relative(&forward, &backward);
    eprintln!("ten conditionals: p = {forward:?}, reversed order moves it by {moved:.1e} relative");
    // A few hundred roundings of log-densities of size ~10 per row, pushed through exp: far below 1e-9.
    assert!(moved < 1e-9, "p {forward:?} vs reversed order {backward:?}");
}

/// Soft counts of one block (`n <= BLOCK` samples, every text live) whose scorers are exact,
/// by the blocked path and by the row-by-row `accumulate_caption_posterior`, which must agree
/// bit for bit: the blocked path's fused screen (cut below the row maximum minus `UNDERFLOW`,
/// then the maximum subtracted) only turns into `-inf` what `exp` turns into 0 anyway, and a
/// single block sums its rows in the same order. NaN soft counts must be NaN on both sides.
fn assert_exact_block_matches_rows(
    label: &str,
    p: &[f64],
    ll: &[f64],
    scorer: &dyn coevo::models::posterior::BlockLogDensity,
    samples: &[f64],
) {
    let (k, n) = (p.len(), ll.len() / p.len());
    let mut soft = vec![0.0; k];
    let mut buffers = PosteriorBuffers::default();
    let report = accumulate_posterior(p, n, &[Scorer { model: scorer, samples }], &mut buffers, &mut soft);
    let (mut exact, mut scratch) = (vec![0.0; k], Vec::new());
    let fallbacks = accumulate_caption_posterior(p, ll, &mut exact, &mut scratch);
    assert_eq!(report.recomputed, 0, "{label}: an exact scorer's entry was recomputed");
    assert_eq!(report.fallbacks, fallbacks, "{label}: rows without a finite weight");
    for (i, (a, b)) in soft.iter().zip(&exact).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{label}: text {i}: blocked {a:e} vs rows {b:e}");
    }
}

/// Where every scorer is exact (`d <= 8` `Full` conditionals, or a dense log-likelihood), the
/// blocked posterior of one block is the row-by-row exact path to the bit, including rows cut
/// far below their maximum, rows without a finite weight (the prior), `+inf`, ties, signed
/// zeros and NaN.
#[test]
fn exact_blocks_equal_the_row_by_row_path_bit_for_bit() {
    use coevo::models::posterior::{BLOCK, DenseLogLikelihood};
    for case in cases().iter().filter(|c| c.mu[0].len() <= 8 && matches!(c.sigma[0], StructuredCovariance::Full(_))) {
        if case.p.contains(&0.0) {
            // Dead texts are left out of the blocked rows, which changes the lanes of the row sums.
            continue;
        }
        let case = Case { n: case.n.min(BLOCK as u64), ..case.clone() };
        let (k, n) = (case.p.len(), case.n as usize);
        let (model, samples) = sampled_model(&case, 11);
        let scorer = model.log_density().unwrap();
        let mut scratch = Vec::new();
        let ll: Vec<f64> = (0..n * k).map(|e| scorer.exact(&samples, e / k, e % k, &mut scratch)).collect();
        assert_exact_block_matches_rows(&case.label, &case.p, &ll, scorer, &samples);
    }
    // Hand-made rows over K = 11 texts (a full lane of eight and a remainder).
    let k = 11;
    let mut rng = entity_stream(23, 0, "exact rows");
    let p: Vec<f64> = (0..k).map(|_| rng.random_range(0.01..1.0)).collect();
    let total: f64 = p.iter().sum();
    let p: Vec<f64> = p.iter().map(|x| x / total).collect();
    let mut ll = Vec::new();
    for r in 0..BLOCK {
        let mut row: Vec<f64> = (0..k).map(|_| rng.random_range(-60.0..0.0)).collect();
        match r % 8 {
            // Spread over thousands of nats: most entries cut.
            1 => row.iter_mut().for_each(|w| *w *= 100.0),
            // 740.6 to 746 nats below the maximum, across the cut (745.2) and where `exp`
            // underflows to subnormals and to 0 (745.13).
            2 => row.iter_mut().enumerate().for_each(|(i, w)| *w = if i == 0 { 0.0 } else { -740.0 - 0.6 * i as f64 }),
            3 => row.fill(f64::NEG_INFINITY),
            4 => row[r % k] = f64::INFINITY,
            // Ties at the maximum.
            5 => row[(r + 1) % k] = row[r % k],
            6 => row.iter_mut().enumerate().for_each(|(i, w)| *w = if i % 2 == 0 { 0.0 } else { -0.0 }),
            7 => row.iter_mut().for_each(|w| *w -= 1e300),
            _ => {}
        }
        ll.extend(row);
    }
    let dense = DenseLogLikelihood { values: &ll, k };
    assert_exact_block_matches_rows("hand-made rows", &p, &ll, &dense, &[]);
    // A NaN log-density makes its row's weights, and so every soft count, NaN on both paths
    // (apart, since it poisons all the rows after it).
    let mut nan = ll[..3 * k].to_vec();
    nan[k + 4] = f64::NAN;
    let dense = DenseLogLikelihood { values: &nan, k };
    assert_exact_block_matches_rows("a NaN log-density", &p, &nan, &dense, &[]);
}
