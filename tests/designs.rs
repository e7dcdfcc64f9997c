//! Sweep designs beyond the grid (Zip, Random, LatinHypercube, Sobol, Table), the Sobol
//! sensitivity estimator (against the Ishigami function's analytic indices) and the noisy
//! bisection of `coevo search` (against synthetic targets), then the commands end to end on
//! tiny scenarios and their bad-input answers.

use std::path::{Path, PathBuf};

use coevo::Scenario;
use coevo::experiment::search::{Bisection, Side, Status, bisect};
use coevo::experiment::sensitivity::{Bootstrap, normal_quantile, sobol_indices};
use coevo::scenario::design::{DesignPoints, points, saltelli};
use coevo::scenario::{Design, SweepValue};
use rand::{RngExt as _, SeedableRng as _};

use crate::common::{Z, coevo, ok, read, stderr, stdout, write};

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("designs", name)
}

/// A tiny platform; `{sweep}` is replaced by a sweep section.
const BASE: &str = r#"Scenario(
    name: "tiny",
    seed: 5,
    rounds: 4,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 40, data: Fresh(lambda: 0.1)),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 40, covariance: Isotropic(0.1)),
    ],
    sweep: Sweep({sweep}),
)"#;

fn with_sweep(sweep: &str) -> String {
    BASE.replace("{sweep}", sweep)
}

fn design_of(sweep: &str) -> (Scenario, DesignPoints) {
    let s = crate::common::scenario(&with_sweep(sweep));
    let d = points(s.sweep.as_ref().unwrap(), &s).unwrap();
    (s, d)
}

fn float(v: &SweepValue) -> f64 {
    match v {
        SweepValue::Float(x) => *x,
        SweepValue::Unsigned(u) => *u as f64,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn grid_points_are_row_major_and_zip_pairs_values_index_by_index() {
    let (_, d) =
        design_of(r#"parameters: [(path: "captioner.batch", values: [10, 20]), (path: "painter.covariance", values: [0.1, 0.2, 0.3])]"#);
    assert_eq!(d.len(), 6);
    assert_eq!(d.values[4], vec![SweepValue::Unsigned(20), SweepValue::Float(0.2)]);
    let (_, d) = design_of(
        r#"design: Zip, parameters: [(path: "captioner.batch", values: [10, 20, 30]), (path: "painter.covariance", values: [0.1, 0.2, 0.3])]"#,
    );
    assert_eq!(d.len(), 3);
    assert_eq!(d.values[2], vec![SweepValue::Unsigned(30), SweepValue::Float(0.3)]);
    assert_eq!(d.csv(), "point,captioner.batch,painter.covariance\n0,10,0.1\n1,20,0.2\n2,30,0.3\n");
}

#[test]
fn random_points_lie_in_their_ranges_whole_numbers_cover_theirs_and_log_scales_are_log_uniform() {
    let (_, d) = design_of(
        r#"design: Random(400), parameters: [
            (path: "captioner.data.lambda", min: 0.1, max: 0.3),
            (path: "painter.covariance", min: 0.01, max: 1.0, log: true),
            (path: "captioner.batch", min: 10, max: 20),
        ]"#,
    );
    assert_eq!(d.len(), 400);
    let col = |j: usize| d.values.iter().map(|r| float(&r[j])).collect::<Vec<f64>>();
    assert!(col(0).iter().all(|x| (0.1..=0.3).contains(x)));
    assert!(col(1).iter().all(|x| (0.01..=1.0).contains(x)));
    // Whole numbers, each of 10..=20 drawn: one is missed with probability 11 (10/11)^400 < 1e-15.
    assert!(d.values.iter().all(|r| matches!(r[2], SweepValue::Unsigned(10..=20))));
    for b in 10..=20 {
        assert!(col(2).contains(&(b as f64)), "batch {b} never drawn");
    }
    // Log-uniform on [0.01, 1]: below the geometric midpoint 0.1 with probability 1/2, so the
    // count below is Binomial(400, 1/2): mean 200, sd 10.
    let below = col(1).iter().filter(|&&x| x < 0.1).count() as f64;
    assert!((below - 200.0).abs() < Z * 10.0, "{below} of 400 below 0.1");
    // Linear on [0.1, 0.3]: the mean is 0.2 with standard error (0.2 / sqrt 12) / sqrt 400.
    let mean = col(0).iter().sum::<f64>() / 400.0;
    assert!((mean - 0.2).abs() < Z * 0.2 / 12f64.sqrt() / 20.0, "{mean}");
}

#[test]
fn latin_hypercube_puts_exactly_one_point_in_every_stratum_of_every_parameter() {
    let n = 50;
    let (_, d) = design_of(&format!(
        r#"design: LatinHypercube({n}), parameters: [
            (path: "captioner.data.lambda", min: 0.0, max: 1.0),
            (path: "painter.covariance", min: 2.0, max: 4.0),
        ]"#
    ));
    assert_eq!(d.len(), n);
    for (j, (min, max)) in [(0.0, 1.0), (2.0, 4.0)].into_iter().enumerate() {
        let mut strata: Vec<usize> = d.values.iter().map(|r| ((float(&r[j]) - min) / (max - min) * n as f64).floor() as usize).collect();
        strata.sort_unstable();
        assert_eq!(strata, (0..n).collect::<Vec<_>>(), "parameter {j}");
    }
}

#[test]
fn sobol_points_are_the_saltelli_scheme_on_the_crates_sequence() {
    let (scenario, d) = design_of(
        r#"design: Sobol(64), parameters: [
            (path: "captioner.data.lambda", min: 0.0, max: 1.0),
            (path: "painter.covariance", min: 0.0, max: 1.0),
        ]"#,
    );
    let k = 2;
    assert_eq!(d.len(), 64 * (k + 2));
    // The scrambling seed is the first draw of the design's own stream.
    let seed: u32 = coevo::rng::named_stream("sweep design", scenario.seed).random();
    let reference = |j: usize, dim: usize| f64::from(sobol_burley::sample(j as u32, dim as u32, seed));
    for j in 0..64 {
        let block = &d.values[j * (k + 2)..(j + 1) * (k + 2)];
        let (a, b): (Vec<f64>, Vec<f64>) = ((0..k).map(|i| reference(j, i)).collect(), (0..k).map(|i| reference(j, k + i)).collect());
        let row = |r: &[SweepValue]| r.iter().map(float).collect::<Vec<f64>>();
        assert_eq!(row(&block[0]), a, "A_{j}");
        assert_eq!(row(&block[k + 1]), b, "B_{j}");
        for i in 0..k {
            let mut ab = a.clone();
            ab[i] = b[i];
            assert_eq!(row(&block[1 + i]), ab, "AB_{j}^({i})");
        }
    }
    // The first 2^6 points of a Sobol sequence are stratified: one in each 1/64 of every
    // dimension, in A and in B.
    for dim in 0..2 * k {
        let mut strata: Vec<usize> = (0..64).map(|j| (reference(j, dim) * 64.0).floor() as usize).collect();
        strata.sort_unstable();
        assert_eq!(strata, (0..64).collect::<Vec<_>>(), "dimension {dim}");
    }
}

#[test]
fn sampled_designs_are_deterministic_in_the_seed_and_only_in_it() {
    let sweep = r#"design: LatinHypercube(20), parameters: [(path: "captioner.data.lambda", min: 0.0, max: 0.5)]"#;
    let (mut s, first) = design_of(sweep);
    assert_eq!(points(s.sweep.as_ref().unwrap(), &s).unwrap(), first);
    s.seed = 6;
    assert_ne!(points(s.sweep.as_ref().unwrap(), &s).unwrap().values, first.values);
    for design in ["Random(20)", "Sobol(8)"] {
        let (s, d) = design_of(&sweep.replace("LatinHypercube(20)", design));
        assert_eq!(points(s.sweep.as_ref().unwrap(), &s).unwrap(), d, "{design}");
    }
}

/// Loads `source` as the scenario file `s.ron` in `dir` and returns the error text.
fn load_error(dir: &Path, source: &str) -> String {
    let path = write(dir, "s.ron", source);
    Scenario::load(&path).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn bad_designs_are_located_at_the_field_and_say_what_is_valid() {
    let dir = scratch("bad_designs");
    let cases: &[(&str, &[&str])] = &[
        (
            r#"design: Random(10), parameters: [
        (path: "captioner.data.lambda", min: 0.0, max: 0.5),
        (path: "painter.covariance", min: 0.5, max: 0.1)]"#,
            &["s.ron:12:48: sweep.parameters[1].max", "min < max"],
        ),
        (
            r#"design: Random(10), parameters: [(path: "painter.covariance", min: 0.0, max: 1.0, log: true)]"#,
            &["sweep.parameters[0].min", "log scale needs min > 0"],
        ),
        (r#"design: Random(0), parameters: [(path: "painter.covariance", min: 0.1, max: 1.0)]"#, &["sweep.design", "at least one point"]),
        (r#"design: Random(2000000), parameters: [(path: "painter.covariance", min: 0.1, max: 1.0)]"#, &["more than the 1000000"]),
        (r#"design: Sobol(100000), parameters: [(path: "painter.covariance", min: 0.1, max: 1.0)]"#, &["at most Sobol(65536)"]),
        (
            r#"design: Sobol(8), parameters: [(path: "painter.covariance", values: [0.1])]"#,
            &["sweep.parameters[0].values", "draws from a range"],
        ),
        (r#"parameters: [(path: "painter.covariance", min: 0.1, max: 1.0)]"#, &["a Grid design takes `values`"]),
        (r#"design: Random(3), parameters: [(path: "captioner.batch", min: 1.5, max: 9)]"#, &["whole numbers"]),
        (
            r#"design: Random(3), parameters: [(path: "captioner.data.lambda", min: 0.0, max: 1.5)]"#,
            &["sweep.parameters[0].max", "lambda = 1.5"],
        ),
        (
            r#"design: Zip, parameters: [(path: "captioner.batch", values: [10, 20]), (path: "painter.covariance", values: [0.1])]"#,
            &["sweep.parameters[1].values", "`captioner.batch` has 2, `painter.covariance` has 1"],
        ),
    ];
    for (sweep, expected) in cases {
        let e = load_error(&dir, &with_sweep(sweep));
        for x in *expected {
            assert!(e.contains(x), "expected {x:?} in:\n{e}");
        }
    }
}

#[test]
fn table_designs_read_their_file_and_bad_files_are_located_by_line_and_column() {
    let dir = scratch("table");
    write(&dir, "points.csv", "captioner.batch,painter.covariance\n10,0.1\n30,0.05\n");
    let path = write(&dir, "s.ron", &with_sweep(r#"design: Table("points.csv")"#));
    let (s, _) = Scenario::load(&path).unwrap();
    let d = points(s.sweep.as_ref().unwrap(), &s).unwrap();
    assert_eq!(d.parameters, ["captioner.batch", "painter.covariance"]);
    assert_eq!(
        d.values,
        vec![vec![SweepValue::Unsigned(10), SweepValue::Float(0.1)], vec![SweepValue::Unsigned(30), SweepValue::Float(0.05)]]
    );
    assert_eq!(d.design, Design::Table("points.csv".into()));
    let cases: &[(&str, &[&str])] = &[
        ("captioner.batch,painter.covariance\n10,0.1\n30\n", &["points.csv:3:2", "1 values for 2 columns"]),
        ("captioner.batch,painter.covariance\n10,0.1\n30,\n", &["points.csv:3:2", "`painter.covariance`: empty value"]),
        ("captioner.batch,painter.covarianse\n10,0.1\n", &["points.csv:1:2", "no field `covarianse`"]),
        (
            "captioner.batch,painter.covariance\n10,0.1\n0,0.1\n",
            &["points.csv:3:1", "captioner.batch = 0, painter.covariance = 0.1 makes the scenario invalid"],
        ),
        ("captioner.batch,captioner.batch\n10,20\n", &["points.csv:1:2", "is a column twice"]),
        ("captioner.batch\n", &["no points"]),
    ];
    for (csv, expected) in cases {
        write(&dir, "points.csv", csv);
        let e = Scenario::load(&path).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("sweep.design"), "{e}");
        for x in *expected {
            assert!(e.contains(x), "expected {x:?} in:\n{e}");
        }
    }
    std::fs::remove_file(dir.join("points.csv")).unwrap();
    let e = Scenario::load(&path).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("points.csv: cannot read the design table"), "{e}");
    let e = load_error(&dir, &with_sweep(r#"design: Table("points.csv"), parameters: [(path: "captioner.batch", values: [1])]"#));
    assert!(e.contains("takes its parameters from the header"), "{e}");
}

/// The Ishigami function (a = 7, b = 0.1) on `[-pi, pi]^3`, whose Sobol indices are known in
/// closed form: S1 = 0.3139, S2 = 0.4424, S3 = 0, ST1 = 0.5576, ST2 = 0.4424, ST3 = 0.2437.
fn ishigami(x: &[f64]) -> f64 {
    let (a, b) = (7.0, 0.1);
    x[0].sin() + a * x[1].sin().powi(2) + b * x[2].powi(4) * x[0].sin()
}

/// The estimator against the analytic indices, on 8192 base rows (40,960 evaluations).
///
/// Tolerance: each reported interval is the estimate plus or minus `z` bootstrap standard
/// errors. With `z` the two-sided quantile at 1 - 0.01/6, and the estimator close to normal
/// with the bootstrap standard error (1000 resamples of the base rows) as its spread, each of
/// the 6 intervals misses its true value with probability 0.01/6, so one of them misses with
/// probability at most 1% (Bonferroni). Resampling rows as if independent overstates the spread
/// of an Owen-scrambled Sobol estimate, so the intervals are if anything conservative. To keep
/// the check from passing on uninformative intervals, every standard error must be below 0.03:
/// the i.i.d. sampling error of these estimators at this N is about 0.01 (terms with standard
/// deviation about V over sqrt(8192) = 90, divided by V).
#[test]
fn sobol_indices_of_the_ishigami_function_cover_the_analytic_values() {
    let (n, k) = (8192, 3);
    let pi = std::f64::consts::PI;
    let y: Vec<f64> = saltelli(n, k, 2024).iter().map(|u| ishigami(&u.iter().map(|u| -pi + 2.0 * pi * u).collect::<Vec<_>>())).collect();
    let bootstrap = Bootstrap { resamples: 1000, confidence: 1.0 - 0.01 / 6.0, seed: 0 };
    let indices = sobol_indices(&y, k, &bootstrap).unwrap();
    let first = [0.3139, 0.4424, 0.0];
    let total = [0.5576, 0.4424, 0.2437];
    for i in 0..k {
        for (e, truth, name) in [(indices[i].first, first[i], "S"), (indices[i].total, total[i], "ST")] {
            assert!(e.lo <= truth && truth <= e.hi, "{name}{}: {truth} outside [{}, {}] (estimate {})", i + 1, e.lo, e.hi, e.value);
            assert!(e.se > 0.0 && e.se < 0.03, "{name}{}: standard error {}", i + 1, e.se);
        }
    }
    // The normal quantile the intervals use: Phi^-1(0.975) = 1.959964 (to 6 digits).
    assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
    assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-6);
    // No variance, wrong length: said, not computed.
    assert!(sobol_indices(&[1.0; 5 * 4], k, &bootstrap).unwrap_err().contains("same at every point"));
    assert!(sobol_indices(&[1.0; 7], k, &bootstrap).unwrap_err().contains("not n (k + 2)"));
}

/// A noisy monotone target: a logistic step at `truth`, observed as the mean of 20 draws with
/// noise sd 0.1 (standard error about 0.022).
fn noisy(truth: f64, rising: bool, seed: u64) -> impl FnMut(f64) -> Result<(f64, f64), ()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    move |x| {
        let f = 1.0 / (1.0 + (-(x - truth) / 0.05).exp());
        let f = if rising { f } else { 1.0 - f };
        let draws: Vec<f64> =
            (0..20).map(|_| f + 0.1 * rand_distr::Distribution::<f64>::sample(&rand_distr::StandardNormal, &mut rng)).collect();
        Ok(crate::common::mean_se(&draws))
    }
}

/// Every decision is at z = Phi^-1(1 - 0.0005), so each is on the wrong side with probability
/// at most 0.0005 and a search of at most 30 evaluations decides wrongly anywhere with
/// probability below 1.5%: the bracket then contains the truth. Near the truth the mean is
/// within z se (3.29 x 0.022 = 0.074) of the level over a band of half-width about
/// 0.074 / slope 5 = 0.015, where evaluations are undecided; the bracket closes on that band,
/// so it must end narrower than 4 band half-widths plus the tolerance (0.065).
#[test]
fn noisy_bisection_brackets_the_crossing_of_a_monotone_target() {
    for (truth, rising, seed) in [(0.37, true, 1), (0.81, false, 2)] {
        let options =
            Bisection { range: (0.0, 1.0), level: 0.5, tolerance: 0.005, budget: 30, z: normal_quantile(1.0 - 0.0005), integer: false };
        let r = bisect(&options, noisy(truth, rising, seed)).unwrap();
        let (lo, hi) = r.bracket.expect("bracketed");
        assert!(lo <= truth && truth <= hi, "{truth} outside [{lo}, {hi}]");
        assert!(hi - lo < 0.065, "[{lo}, {hi}] after {} evaluations ({:?})", r.evaluations.len(), r.status);
        assert_eq!(r.increasing, Some(rising));
        assert!(matches!(r.status, Status::Converged | Status::NoiseLimited), "{:?}", r.status);
        assert!(r.evaluations.len() <= 30);
        assert_eq!(r.monotonicity_violation, None);
    }
    // Without noise, plain bisection: the bracket halves each step down to the tolerance.
    let exact = Bisection { range: (0.0, 1.0), level: 0.5, tolerance: 1.0 / 64.0, budget: 20, z: 3.0, integer: false };
    let r = bisect(&exact, |x| Ok::<_, ()>((x * x, 0.0))).unwrap();
    let (lo, hi) = r.bracket.unwrap();
    assert_eq!((r.status, r.evaluations.len()), (Status::Converged, 2 + 6));
    assert!(lo <= 0.5f64.sqrt() && 0.5f64.sqrt() <= hi && hi - lo <= 1.0 / 64.0);
    // A whole-number parameter is bracketed to neighbouring integers.
    let whole = Bisection { range: (1.0, 100.0), level: 37.5, tolerance: 0.1, budget: 20, z: 3.0, integer: true };
    let r = bisect(&whole, |x| Ok::<_, ()>((x, 0.0))).unwrap();
    assert_eq!(r.bracket, Some((37.0, 38.0)));
    assert!(r.evaluations.iter().all(|e| e.x.fract() == 0.0));
    // Both ends on one side: not bracketed, after the two ends only.
    let r = bisect(&exact, |x| Ok::<_, ()>((x + 1.0, 0.0))).unwrap();
    assert_eq!((r.status, r.bracket, r.evaluations.len()), (Status::NotBracketed, None, 2));
    // Budget: stops when spent.
    let r = bisect(&Bisection { budget: 4, ..exact }, |x| Ok::<_, ()>((x * x, 0.0))).unwrap();
    assert_eq!((r.status, r.evaluations.len()), (Status::Budget, 4));
    // A rise to 0.95 at 0.5, then a fall to 0.7 at the upper end (still above the level, so
    // the range brackets it): 0.25 apart at standard errors 0.01, a violation.
    let bumpy = Bisection { level: 0.45, ..exact };
    let r = bisect(&bumpy, |x| {
        Ok::<_, ()>((
            if x < 0.5 {
                x
            } else if x < 0.75 {
                0.95
            } else {
                0.7
            },
            0.01,
        ))
    })
    .unwrap();
    assert_eq!(r.monotonicity_violation, Some((2, 1)), "{r:?}");
    assert_eq!(Side::of(0.5, 0.1, 0.45, 1.0), Side::Undecided);
}

const SOBOL_TINY: &str = r#"design: Sobol(4), parameters: [
    (path: "captioner.data.lambda", min: 0.0, max: 0.5),
    (path: "captioner.batch", min: 20, max: 60),
]"#;

#[test]
fn a_sobol_sweep_writes_its_design_and_analyse_writes_the_indices() {
    let dir = scratch("sobol_sweep");
    let s = write(&dir, "s.ron", &with_sweep(SOBOL_TINY));
    let out = dir.join("out");
    let o = ok(&["sweep", s.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    assert!(stdout(&o).is_empty());
    let design = read(&out.join("design.csv"));
    let table = read(&out.join("sweep.csv"));
    let design_rows: Vec<&str> = design.lines().skip(1).collect();
    assert_eq!(design.lines().next(), Some("point,captioner.data.lambda,captioner.batch"));
    assert_eq!(design_rows.len(), 4 * 4);
    // Every row of sweep.csv starts with its point's values as design.csv lists them.
    for line in table.lines().skip(1) {
        let point: usize = line.split(',').next().unwrap().parse().unwrap();
        assert!(line.starts_with(&format!("{},", design_rows[point])), "{line} against {}", design_rows[point]);
    }
    assert_eq!(table.lines().count(), 1 + 16 * 2);
    assert!(read(&out.join("sweep.json")).contains("\"design\": \"Sobol(4)\""));
    // The point's scenario is the design's: point 1 ran with design.csv's batch.
    let batch = design_rows[1].split(',').nth(2).unwrap();
    assert!(read(&out.join("points/0001/manifest.json")).contains(&format!("\"batch\": {batch}")));

    let o = ok(&["analyse", out.to_str().unwrap(), "--resamples", "50"]);
    let sensitivity = read(&out.join("sensitivity.csv"));
    assert_eq!(sensitivity.lines().next(), Some(coevo::experiment::sensitivity::SENSITIVITY_HEADER));
    assert!(sensitivity.lines().any(|l| l.starts_with("captioner,final_mean,captioner.data.lambda,")), "{sensitivity}");
    assert!(stdout(&o).contains("captioner final_mean:"), "{}", stdout(&o));
    // Identical on a rerun (fixed bootstrap seed).
    ok(&["analyse", out.to_str().unwrap(), "--resamples", "50"]);
    assert_eq!(read(&out.join("sensitivity.csv")), sensitivity);
}

#[test]
fn analyse_refuses_a_grid_sweep_and_a_missing_folder() {
    let dir = scratch("analyse_bad");
    let s = write(&dir, "s.ron", &with_sweep(r#"parameters: [(path: "captioner.batch", values: [20, 30])]"#));
    let out = dir.join("out");
    ok(&["sweep", s.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    assert_eq!(read(&out.join("design.csv")), "point,captioner.batch\n0,20\n1,30\n");
    let o = coevo(&["analyse", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the sweep's design is Grid; Sobol indices need"), "{}", stderr(&o));
    let o = coevo(&["analyse", dir.join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a sweep folder"), "{}", stderr(&o));
}

#[test]
fn search_flags_are_checked_and_named_in_errors() {
    let dir = scratch("search_bad");
    let s = write(&dir, "s.ron", &with_sweep(r#"parameters: [(path: "captioner.batch", values: [20])]"#));
    let s = s.to_str().unwrap();
    let bad = |args: &[&str], expected: &str| {
        let o = coevo(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "expected {expected:?} in:\n{}", stderr(&o));
    };
    bad(&["search", s, "--param", "captioner.data.lambda"], "give --range, --target");
    bad(
        &["search", s, "--param", "captioner.data.lambda", "--range", "0", "0.5", "--target", "final_mean"],
        "--target: `final_mean` has no `=`",
    );
    let base =
        ["search", s, "--param", "captioner.data.lambda", "--range", "0.5", "0.1", "--target", "final_mean=0.4", "--model", "captioner"];
    bad(&base, "--range: the range needs two finite numbers a < b");
    bad(
        &["search", s, "--param", "captioner.data.lamda", "--range", "0", "0.5", "--target", "final_mean=0.4", "--model", "captioner"],
        "--param: unknown parameter path",
    );
    bad(
        &["search", s, "--param", "captioner.data.lambda", "--range", "0", "0.5", "--target", "final_sd=0.4", "--model", "captioner"],
        "--target: `final_sd` is not an outcome",
    );
    bad(
        &["search", s, "--param", "captioner.data.lambda", "--range", "0", "0.5", "--target", "final_mean=0.4"],
        "--model: the scenario has several models",
    );
    bad(
        &["search", s, "--param", "captioner.data.lambda", "--range", "0", "1.5", "--target", "final_mean=0.4", "--model", "captioner"],
        "lambda = 1.5",
    );
    // A search section of a scenario is validated where it is written.
    let e = load_error(
        &dir,
        &BASE.replace("    sweep: Sweep({sweep}),\n", "    search: (parameter: \"captioner.data.lambda\", range: (0.0, 0.5), target: \"final_mean\", level: 0.4, model: \"paintr\"),\n"),
    );
    assert!(e.contains("search.model") && e.contains("`paintr` is not a model"), "{e}");
}

#[test]
fn search_on_a_tiny_scenario_brackets_and_resumes() {
    let dir = scratch("search_tiny");
    // Text diversity rises with the real-data fraction lambda: at lambda = 0 the tiny model
    // drifts, at 1 it is refit on fresh samples of p0 alone.
    let src = BASE.replace("    sweep: Sweep({sweep}),\n", "").replace("rounds: 4", "rounds: 30").replace("replicates: 2", "replicates: 4");
    let s = write(&dir, "s.ron", &src);
    let out = dir.join("out");
    let args = [
        "search",
        s.to_str().unwrap(),
        "--param",
        "captioner.data.lambda",
        "--range",
        "0",
        "1",
        "--target",
        "final_mean=0.6",
        "--model",
        "captioner",
        "--budget",
        "6",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ok(&args);
    let csv = read(&out.join("search.csv"));
    assert_eq!(csv.lines().next(), Some(coevo::experiment::search::SEARCH_HEADER));
    assert!(csv.lines().count() > 3, "{csv}");
    assert!(stdout(&o).contains("is crossed for captioner.data.lambda in ["), "{}", stdout(&o));
    assert!(out.join("evaluations/00/sweep.csv").exists());
    // A rerun takes the same steps and finds every evaluation done.
    let again = ok(&args);
    assert_eq!(read(&out.join("search.csv")), csv);
    assert!(stdout(&again).contains("is crossed"), "{}", stdout(&again));
}
