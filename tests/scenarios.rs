//! Every ready scenario in `scenarios/` runs and shows the result its header promises,
//! asserted from its metrics against the theory of docs/model.md with tolerances derived from the standard
//! error over replicates (and texts, where texts are independent).
//!
//! The real files are loaded; only `rounds` and `replicates` are overridden where a shorter
//! run shows the same thing, to keep each test to a few seconds. Replicates run in parallel
//! through the library's `Simulation`, each stopping early once the result is in.

use coevo::Scenario;
use coevo::metrics::MetricRow;
use coevo::scenario::EntitySpec;
use rayon::prelude::*;

use crate::common::{Z, mean_se, metric, per_text, ready};
use crate::stabilisers::pooled_fixed_point;

/// Runs replicate `replicate` of `scenario` round by round, up to `scenario.rounds` or until
/// `done(rows)` holds; returns the rows of round 0, of every round listed in `keep`, and of
/// the last round run (deduplicated, in round order).
fn run_replicate(scenario: &Scenario, replicate: u64, keep: &[u64], done: impl Fn(&[MetricRow]) -> bool) -> Vec<Vec<MetricRow>> {
    let mut sim = coevo::Simulation::new(scenario, replicate).expect("world builds");
    let mut out = vec![sim.measure().expect("round 0").to_vec()];
    for round in 1..=scenario.rounds {
        let rows = sim.step().unwrap_or_else(|e| panic!("replicate {replicate}: {e}"));
        let last = round == scenario.rounds || done(rows);
        if last || keep.contains(&round) {
            out.push(rows.to_vec());
        }
        if last {
            break;
        }
    }
    out
}

/// [`run_replicate`] for replicates `0..scenario.replicates`, in parallel.
fn run_all(scenario: &Scenario, keep: &[u64], done: impl Fn(&[MetricRow]) -> bool + Sync) -> Vec<Vec<Vec<MetricRow>>> {
    (0..scenario.replicates).into_par_iter().map(|r| run_replicate(scenario, r, keep, &done)).collect()
}

#[test]
fn frozen_image_text_model_collapses_to_one_text() {
    let mut s = ready("frozen_image");
    // Four replicates of the full 8000 rounds, each stopping once one text is left. Fixation
    // of a Wright-Fisher-like drift with N = 1000 has an exponential tail with time scale
    // about N rounds: P(not fixed by 8000) is of order 4 exp(-7), about 0.4% per replicate.
    s.replicates = 4;
    let runs = run_all(&s, &[], |rows| metric(rows, "captioner", "support", None) == 1.0);
    for (r, run) in runs.iter().enumerate() {
        let (first, last) = (&run[0], run.last().unwrap());
        assert_eq!(metric(first, "captioner", "support", None), 5.0);
        assert_eq!(metric(last, "captioner", "support", None), 1.0, "replicate {r}: support after {} rounds", last[0].round);
        assert!(metric(last, "captioner", "gini_simpson", None) < s.collapse.text_gini, "replicate {r}: diversity left");
        assert!(metric(last, "captioner", "max_p", None) > 1.0 - 1e-9, "replicate {r}: one text holds all the mass");
        // The frozen model never refits: its conditionals are exactly the initial ones.
        assert_eq!(per_text(last, "painter", "trace", 5), per_text(first, "painter", "trace", 5), "replicate {r}");
        assert!(per_text(last, "painter", "fidelity", 5).iter().all(|&f| f == 0.0), "replicate {r}");
    }
}

#[test]
fn frozen_text_image_trace_contracts_exponentially_with_bounded_fidelity() {
    let mut s = ready("frozen_text");
    // Fixed(n) allocation with MLE and a frozen text model: for every text independently,
    // E tr Sigma_t = r^t tr Sigma_0 with r = (n - 1) / n, and E ||mu_t - mu_0||^2 =
    // sum_{s<t} E tr Sigma_s / n = tr Sigma_0 (1 - r^t) (docs/model.md section 3). 16 replicates x 5 texts = 80
    // independent conditionals; 120 rounds keep the spread of the multiplicative trace moderate
    // (log-variance about t / (n - 1) = 0.6, so the sample mean's SE is about 10%).
    s.replicates = 16;
    s.rounds = 120;
    let checkpoints = [30, 60, 120];
    let runs = run_all(&s, &checkpoints, |_| false);
    let n = 200.0_f64;
    let r = (n - 1.0) / n;
    let trace0 = 0.2;
    for (i, &t) in checkpoints.iter().enumerate() {
        let traces: Vec<f64> = runs.iter().flat_map(|run| per_text(&run[i + 1], "painter", "trace", 5)).collect();
        let fidelity_sq: Vec<f64> = runs.iter().flat_map(|run| per_text(&run[i + 1], "painter", "fidelity", 5)).map(|f| f * f).collect();
        assert_eq!(traces.len(), 80);
        assert!(runs.iter().all(|run| run[i + 1][0].round == t));
        // Tolerance 4 SE: each of these six comparisons of an 80-sample mean with its exact
        // expectation fails by chance with probability about 6e-5 (normal approximation).
        let (mean, se) = mean_se(&traces);
        let expected = r.powi(t as i32) * trace0;
        assert!((mean - expected).abs() < 4.0 * se, "round {t}: mean trace {mean:.5} +- {se:.5}, theory {expected:.5}");
        let (mean, se) = mean_se(&fidelity_sq);
        let expected = trace0 * (1.0 - r.powi(t as i32));
        assert!((mean - expected).abs() < 4.0 * se, "round {t}: mean |mu - mu0|^2 {mean:.5} +- {se:.5}, theory {expected:.5}");
    }
    // The text model is frozen: p is exactly p0 in every replicate.
    for run in &runs {
        assert_eq!(metric(run.last().unwrap(), "captioner", "tv_to_initial", None), 0.0);
    }
}

#[test]
fn coevolve_both_models_lose_diversity() {
    let mut s = ready("coevolve");
    // 8 replicates of 1000 rounds (the file's 4000 rounds show the full collapse). docs/model.md section 3:
    // (1 - 1/N)^t H_0 <= E[H_t] <= H_0 whatever the conditionals, so the mean over replicates
    // must lie above the Wright-Fisher curve and, the images separating the conditionals,
    // clearly below H_0. Tolerances: 3 standard errors of the mean over replicates
    // (one-sided chance failure about 0.1% each).
    s.replicates = 8;
    s.rounds = 1000;
    let runs = run_all(&s, &[], |_| false);
    let n = 1000.0_f64;
    let h0 = metric(&runs[0][0], "captioner", "gini_simpson", None);
    assert!((h0 - 0.8).abs() < 1e-12);
    let h: Vec<f64> = runs.iter().map(|run| metric(run.last().unwrap(), "captioner", "gini_simpson", None)).collect();
    let (mean, se) = mean_se(&h);
    let wright_fisher = (1.0 - 1.0 / n).powi(1000) * h0;
    assert!(mean < h0 - 3.0 * se, "text diversity did not fall: {mean:.3} +- {se:.3} from {h0}");
    assert!(mean > wright_fisher - 3.0 * se, "text diversity {mean:.3} +- {se:.3} fell faster than Wright-Fisher {wright_fisher:.3}");
    // Image diversity: every refit contracts a covariance in expectation (E[(n_i - 1)/n_i] < 1).
    let w0 = metric(&runs[0][0], "painter", "weighted_trace", None);
    let w: Vec<f64> = runs.iter().map(|run| metric(run.last().unwrap(), "painter", "weighted_trace", None)).collect();
    let (mean, se) = mean_se(&w);
    assert!(mean < w0 - 3.0 * se, "image diversity did not fall: {mean:.4} +- {se:.4} from {w0}");
}

/// Collapse round of the text model in each replicate of `coevolve_nt<nt>.ron`, as in the
/// summary (first round with gini_simpson below the scenario's threshold); a replicate that
/// does not collapse within the scenario's rounds counts as `rounds + 1`.
fn collapse_rounds(nt: u64) -> Vec<f64> {
    let s = ready(&format!("coevolve_nt{nt}"));
    let threshold = s.collapse.text_gini;
    let collapsed = |rows: &[MetricRow]| metric(rows, "captioner", "gini_simpson", None) < threshold;
    run_all(&s, &[], collapsed)
        .iter()
        .map(|run| {
            let last = run.last().unwrap();
            if collapsed(last) { last[0].round as f64 } else { (s.rounds + 1) as f64 }
        })
        .collect()
}

#[test]
fn more_image_steps_faster_text_collapse() {
    // The three files as they are (40 replicates each). Each consecutive pair must differ by
    // more than 2 standard errors of the difference of means, sqrt(se_a^2 + se_b^2): a
    // one-sided test at the 2.3% level that the collapse round decreases with N_t.
    // Counting a non-collapsed replicate as rounds + 1 only lowers the mean of the slower
    // variant, so it can only make the test harder to pass.
    let [t1, t2, t5] = [1, 2, 5].map(collapse_rounds);
    let [(m1, s1), (m2, s2), (m5, s5)] = [&t1, &t2, &t5].map(|t| mean_se(t));
    let report = format!("mean collapse round: N_t=1 {m1:.1} +- {s1:.1}, N_t=2 {m2:.1} +- {s2:.1}, N_t=5 {m5:.1} +- {s5:.1}");
    assert!(m1 - m2 > 2.0 * (s1 * s1 + s2 * s2).sqrt(), "N_t = 2 does not collapse faster than N_t = 1: {report}");
    assert!(m2 - m5 > 2.0 * (s2 * s2 + s5 * s5).sqrt(), "N_t = 5 does not collapse faster than N_t = 2: {report}");
}

#[test]
fn matthew_rare_texts_lose_image_diversity_first() {
    let s = ready("matthew");
    // The file as it is: 4 replicates, 200 rounds. Over replicates the final Matthew index
    // (Spearman correlation between p_i and trace_i) must exceed 0 by 3 standard errors
    // (one-sided chance failure about 0.1% under a normal approximation). Single replicates
    // are not compared text by text: the rarest text's log-trace has a standard deviation of
    // about sqrt(t / n_i) = 2, too wide for a per-replicate ordering to be certain.
    let runs = run_all(&s, &[], |_| false);
    assert_eq!(runs.len(), 4);
    let first = &runs[0][0];
    assert!(metric(first, "painter", "matthew_index", None).is_nan(), "equal traces at round 0: no ranking, so NaN");
    let m: Vec<f64> = runs.iter().map(|run| metric(run.last().unwrap(), "painter", "matthew_index", None)).collect();
    let (mean, se) = mean_se(&m);
    assert!(mean > 0.0 && mean > 3.0 * se, "Matthew index {mean:.3} +- {se:.3} is not positive; per replicate {m:?}");
}

#[test]
fn inject_late_diversity_recovers_once_the_injectors_switch_on() {
    // The file's platforms with 16 replicates of 1500 rounds (the file: 4 of 2000). Its two
    // injectors act on `late` from round `from` = 500 on (their `active` window).
    let mut s = ready("inject_late");
    s.replicates = 16;
    s.rounds = 1500;
    let Some(EntitySpec::CorpusInjector(corpus)) = s.entity("corpus") else { panic!("inject_late.ron has a corpus injector") };
    let (alpha, eps, from) = (corpus.alpha.constant().unwrap(), corpus.eps.constant().unwrap(), corpus.active.unwrap().from);
    let Some(EntitySpec::UserContentInjector(users)) = s.entity("uploads") else { panic!("inject_late.ron has user content") };
    assert_eq!(users.active.map(|w| w.from), Some(from), "both injectors switch on together");
    let n0 = users.n0.constant().unwrap() as f64;
    let (k, n, t0, average_from) = (5.0, 1000.0, 0.2, 1000u64);
    let rounds_averaged = (s.rounds - average_from + 1) as f64;

    // Per replicate: injections before and from `from`, and the time averages over rounds
    // 1000-1500 of late's gini_simpson and of late_painter's trace averaged over texts.
    let per_replicate: Vec<(f64, f64, f64, f64)> = (0..s.replicates)
        .into_par_iter()
        .map(|r| {
            let mut sim = coevo::Simulation::new(&s, r).expect("world builds");
            let (mut before, mut after, mut gini, mut trace) = (0.0, 0.0, 0.0, 0.0);
            for t in 1..=s.rounds {
                let rows = sim.step().unwrap();
                let fired = metric(rows, "corpus", "injected", None);
                if t < from {
                    before += fired
                } else {
                    after += fired
                }
                if t >= average_from {
                    gini += metric(rows, "late", "gini_simpson", None);
                    trace += per_text(rows, "late_painter", "trace", 5).iter().sum::<f64>() / k;
                }
            }
            (before, after, gini / rounds_averaged, trace / rounds_averaged)
        })
        .collect();

    // Exact: outside its window the injector never fires (its `injected` metric reads 0).
    assert!(per_replicate.iter().all(|r| r.0 == 0.0), "injections before round {from}: {per_replicate:?}");
    // From the window on, one Bernoulli(alpha) per round and replicate: Binomial(n, alpha).
    let trials = (s.replicates * (s.rounds - from + 1)) as f64;
    let fired: f64 = per_replicate.iter().map(|r| r.1).sum();
    let se = (trials * alpha * (1.0 - alpha)).sqrt();
    assert!((fired - trials * alpha).abs() <= Z * se, "{fired} injections in {trials} active rounds, alpha = {alpha}");

    // Text diversity. Whatever the conditionals, a text phase gives E[H' | p] >= (1 - 1/N) H
    // (docs/model.md section 3), and a uniform injection maps H exactly to (1 - eps)^2 H +
    // c (1 - 1/K), c = 1 - (1 - eps)^2, with probability alpha (tests/stabilisers.rs). So from
    // round `from`, whatever H was then (>= 0), E H_t >= L_t with L_{from-1} = 0 and
    //     L_t = rho L_{t-1} + alpha c (1 - 1/K),   rho = (1 - alpha c)(1 - 1/N),
    // which climbs to the floor H* = 0.72. The mean over replicates of the time average over
    // rounds 1000-1500 must not lie below the same average of L by more than Z standard errors.
    let c = 1.0 - (1.0 - eps).powi(2);
    let rho = (1.0 - alpha * c) * (1.0 - 1.0 / n);
    let mut lower = 0.0;
    let mut lower_average = 0.0;
    for t in from..=s.rounds {
        lower = rho * lower + alpha * c * (1.0 - 1.0 / k);
        if t >= average_from {
            lower_average += lower / rounds_averaged;
        }
    }
    let (gini, gini_se) = mean_se(&per_replicate.iter().map(|r| r.2).collect::<Vec<_>>());
    assert!(gini >= lower_average - Z * gini_se, "late gini_simpson {gini:.3} +- {gini_se:.3} below the bound {lower_average:.3}");
    assert!(lower_average > 0.7, "the bound itself says diversity came back: {lower_average}");

    // Image diversity. With n model samples of a text pooled with n0 user images and an MLE
    // refit, the expected trace and squared fidelity follow a linear recursion whose fixed
    // point is T*(n) = g n0 T0 / (1 - g n), g = (M - 1)/M^2 + n / (M^2 (2n + n0)), M = n + n0
    // (derived in tests/stabilisers.rs). Under binomial allocation n changes from round to
    // round (0 <= n <= N), and each round's expected update moves (trace, fidelity^2) towards
    // the fixed point of that round's n by a convex combination, so the stationary expected
    // trace lies between the smallest and the largest T*(n) over n = 0..N: 0.90 T0 to 0.95 T0.
    // The transient from round 500 decays at least as fast as (1 - n0 / (N + n0))^t, below
    // 1% of T0 by round 1000, inside the standard error. Texts are averaged within a
    // replicate (they share the text model), replicates are the independent units.
    let fixed_point = |n: f64| {
        let m = n + n0;
        let g = (m - 1.0) / (m * m) + n / (m * m * (2.0 * n + n0));
        g * n0 * t0 / (1.0 - g * n)
    };
    let stars: Vec<f64> = (0..=n as u64).map(|n| fixed_point(n as f64)).collect();
    let (lo, hi) = stars.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let (trace, trace_se) = mean_se(&per_replicate.iter().map(|r| r.3).collect::<Vec<_>>());
    assert!(
        trace >= lo - Z * trace_se && trace <= hi + Z * trace_se,
        "late_painter mean trace {trace:.4} +- {trace_se:.4} outside the fixed points [{lo:.4}, {hi:.4}]"
    );
}

#[test]
fn aa_maker_port_starts_at_the_data_keeps_digit_images_near_it_and_text_mass_is_a_martingale() {
    // The ported third-party experiment on the shipped digits, 8 replicates of 150 rounds (the
    // file's 2000 rounds take about 40 s on one core).
    let mut s = ready("aa_maker_port");
    s.replicates = 8;
    s.rounds = 150;
    let data = s.dataset("digits").expect("loaded").clone();
    let (eps, k) = (0.02f64, 10usize);
    let trace_s: Vec<f64> = (0..k).map(|i| data.label_stats(i).scatter.trace() / data.count(i) as f64).collect();
    let runs: Vec<(Vec<MetricRow>, f64, f64)> = (0..s.replicates)
        .into_par_iter()
        .map(|r| {
            let mut sim = coevo::Simulation::new(&s, r).expect("world builds");
            let first = sim.measure().unwrap().to_vec();
            let mut injections = 0.0;
            let mut last = Vec::new();
            for _ in 0..s.rounds {
                last = sim.step().unwrap().to_vec();
                injections += metric(&last, "corpus", "injected", None);
            }
            // Mass of the ten digits, undone the (1 - eps) of each new-text injection.
            let mass: f64 = per_text(&last, "captioner", "p", k).iter().sum::<f64>() / (1.0 - eps).powf(injections);
            let ratio = per_text(&last, "painter", "trace", k).iter().zip(&trace_s).map(|(t, s)| t / s).sum::<f64>() / k as f64;
            (first, mass, ratio)
        })
        .collect();
    // Round 0: built from the data with the MLE, the model has the data's moments exactly.
    for (first, ..) in &runs {
        for (i, trace) in trace_s.iter().enumerate() {
            assert!(metric(first, "painter", "frechet_to_data", Some(i as u32)) < 1e-10 * trace);
        }
        assert!(metric(first, "painter", "frechet_to_data_marginal", None) < 1e-10 * trace_s.iter().sum::<f64>());
    }
    // The text phase is a martingale (docs/model.md section 3) and a new-text injection multiplies the
    // digits' mass by (1 - eps): mass / (1 - eps)^injections has expectation 1.
    let (mean, se) = mean_se(&runs.iter().map(|r| r.1).collect::<Vec<_>>());
    assert!((mean - 1.0).abs() < Z * se, "digit mass, injections undone: {mean} +- {se}");
    // n0 = 10 real rows per text and image phase: for any number n of generated samples, the
    // pooled MLE fixed point (tests/stabilisers.rs) lies between (n0 - 1)/n0 = 0.9 of the
    // label's trace (n = 0) and 0.951 (n = N = 500), and the model starts at 1: the expected
    // trace ratio stays in [0.9, 1] (without user content it would fall like ((n - 1)/n)^(2t)).
    let (lo, hi) = (pooled_fixed_point(0.0, 10.0, 1.0).0, pooled_fixed_point(500.0, 10.0, 1.0).0);
    assert!((lo - 0.9).abs() < 1e-12 && hi < 0.952);
    let (mean, se) = mean_se(&runs.iter().map(|r| r.2).collect::<Vec<_>>());
    assert!(mean > 0.9 - Z * se && mean < 1.0 + Z * se, "digit traces / data traces: {mean} +- {se}");
}
