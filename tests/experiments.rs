//! Experiments at scale: replicate aggregation, sweeps, shards and merge, phase diagnostics,
//! plots, and the bad-input answers of these commands.

use std::path::{Path, PathBuf};

use crate::common::{coevo, ok, read, stderr, stdout, write};

/// A fresh folder for one test of this file.
fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("experiments", name)
}

/// A small co-evolution: K = 4 texts, N = 200 (about 50 images per text per round).
const SMALL: &str = r#"Scenario(
    name: "small",
    seed: 11,
    rounds: 25,
    replicates: 6,
    entities: [
        TextModel(name: "captioner", initial: Uniform(4), batch: 200),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 200),
    ],
)"#;

#[test]
fn aggregate_is_identical_whatever_the_thread_count_and_matches_the_replicates() {
    let dir = scratch("threads");
    let scenario = write(&dir, "small.ron", SMALL);
    let s = scenario.to_str().unwrap();
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(&["run", s, "--out", one.to_str().unwrap(), "--threads", "1", "-q"]);
    ok(&["run", s, "--out", two.to_str().unwrap(), "--threads", "2", "-q"]);
    for f in ["metrics.csv", "aggregate.csv", "phases.csv", "summary.json"] {
        assert_eq!(read(&one.join(f)), read(&two.join(f)), "{f} depends on the thread count");
    }
    // Recompute one aggregate row from the per-replicate rows: the mean of the six
    // replicates' last-round Gini-Simpson, summed in replicate order as the writer does.
    let metrics = read(&one.join("metrics.csv"));
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.contains(",25,captioner,,gini_simpson,"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 6);
    let mean = values.iter().sum::<f64>() / 6.0;
    let agg = read(&one.join("aggregate.csv"));
    let row = agg.lines().find(|l| l.starts_with("25,captioner,,gini_simpson,")).expect("aggregate row");
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[4], "6");
    assert_eq!(fields[5].parse::<f64>().unwrap(), mean);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    // Standard error: sample standard deviation (divisor R - 1) over sqrt(R).
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 5.0;
    assert_eq!(fields[6].parse::<f64>().unwrap(), (var / 6.0).sqrt());
    // Type-7 median of six values: the mean of the 3rd and 4th.
    assert_eq!(fields[8].parse::<f64>().unwrap(), sorted[2] + 0.5 * (sorted[3] - sorted[2]));
}

/// docs/model.md section 3: with T = 1 the captioner refit is a martingale, `E[p_t] = p_0`. Over R = 40
/// independent replicates, the aggregate mean of `p_i` at round t estimates `p0_i = 1/4` and
/// `(mean - 1/4) / se` follows Student's t with 39 degrees of freedom if `p_t,i` is close to
/// normal, whose two-sided 1e-4 quantile is 4.3; with 4 texts at 2 rounds (8 statistics,
/// union bound) the chance of a false alarm is below 8e-4. Rounds 1 and 2 are used because
/// there `p_t,i` is an average of N = 200 posterior weights (sd about 0.03-0.05 around 1/4),
/// so the normal approximation holds; by round 12 the spread is about 0.1 and the bounded,
/// skewed distribution gives the t statistic a heavier tail than Student's. (The `se` formula
/// itself is checked exactly in the previous test, so this check cannot pass vacuously.)
#[test]
fn aggregate_standard_errors_cover_the_martingale_mean() {
    let dir = scratch("martingale");
    let scenario = write(&dir, "m.ron", &SMALL.replace("replicates: 6", "replicates: 40").replace("rounds: 25", "rounds: 2"));
    let out = dir.join("out");
    ok(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    let agg = read(&out.join("aggregate.csv"));
    let mut z = Vec::new();
    for line in agg.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if (f[0] == "1" || f[0] == "2") && f[1] == "captioner" && f[3] == "p" {
            let (mean, se): (f64, f64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
            assert!(se > 0.0, "{line}");
            z.push((mean - 0.25) / se);
        }
    }
    assert_eq!(z.len(), 8);
    assert!(z.iter().all(|z| z.abs() < 4.3), "{z:?}");
}

/// Six points (2 batches x 3 covariances) of 15 rounds (also used by `tests/sweep_ops.rs`).
pub(crate) const SWEEP: &str = r#"Scenario(
    name: "grid",
    seed: 3,
    rounds: 15,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 60),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 60, covariance: Isotropic(0.1)),
    ],
    sweep: Sweep(parameters: [
        (entity: "captioner", field: "batch", values: [30, 90]),
        (path: "painter.covariance", values: [0.01, 0.1, 1.0]),
    ]),
)"#;

#[test]
fn shards_merge_into_the_table_of_a_single_run_and_sweeps_resume() {
    let dir = scratch("sweep");
    let scenario = write(&dir, "grid.ron", SWEEP);
    let s = scenario.to_str().unwrap();
    let full = dir.join("full");
    let out = ok(&["sweep", s, "--out", full.to_str().unwrap()]);
    assert!(stdout(&out).contains("6 of 6 points done (6 computed now)"));
    let table = read(&full.join("sweep.csv"));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!("point,captioner.batch,painter.covariance,status,model,{}", coevo::experiment::grid::SWEEP_SUMMARY_COLUMNS)
    );
    // 6 points x 2 models, in point order, the last parameter varying fastest.
    assert_eq!(lines.len(), 1 + 12);
    assert!(lines[1].starts_with("0,30,0.01,ok,captioner,gini_simpson,2,"), "{}", lines[1]);
    assert!(lines[12].starts_with("5,90,1.0,ok,painter,weighted_trace,2,"), "{}", lines[12]);
    // Each point is a complete run of the point's scenario.
    let manifest = read(&full.join("points/0004/manifest.json"));
    assert!(manifest.contains("\"batch\": 90") && manifest.contains("\"Isotropic\": 0.1"), "{manifest}");

    let shards: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("shard{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        ok(&["sweep", s, "--out", d.to_str().unwrap(), "--shard", &format!("{i}/2"), "--threads", "1"]);
    }
    // Shard 1 holds the odd points only.
    assert!(shards[1].join("points/0001/done.json").exists() && !shards[1].join("points/0000").exists());
    let merged = dir.join("merged");
    ok(&["merge", shards[0].to_str().unwrap(), shards[1].to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(read(&merged.join("sweep.csv")), table, "the merge differs from a single run");

    // A merge with a shard missing names the missing points.
    let out = coevo(&["merge", shards[0].to_str().unwrap(), "--out", dir.join("partial").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("points 1, 3, 5"), "{}", stderr(&out));

    // Resuming: a point whose marker is gone (interrupted) is recomputed, the others are not,
    // and the table comes out the same.
    std::fs::remove_file(full.join("points/0003/done.json")).unwrap();
    let out = ok(&["sweep", s, "--out", full.to_str().unwrap()]);
    assert!(stdout(&out).contains("6 of 6 points done (1 computed now)"));
    assert_eq!(read(&full.join("sweep.csv")), table);
}

fn bad(args: &[&str], expected: &str) {
    let out = coevo(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "coevo {args:?}: {err}");
    assert!(err.contains(expected), "coevo {args:?}: expected {expected:?} in:\n{err}");
}

#[test]
fn unknown_parameter_path_is_bad_input_naming_the_valid_fields() {
    let dir = scratch("bad_path");
    let s = write(&dir, "s.ron", &SWEEP.replace("path: \"painter.covariance\"", "path: \"painter.covarianse\""));
    bad(&["sweep", s.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], "no field `covarianse`; its fields:");
    bad(&["validate", s.to_str().unwrap()], "unknown parameter path `painter.covarianse`");
    let s = write(&dir, "t.ron", &SWEEP.replace("entity: \"captioner\"", "entity: \"captioneer\""));
    bad(&["sweep", s.to_str().unwrap()], "`captioneer` is neither an entity (`captioner`, `painter`)");
}

#[test]
fn empty_grid_is_bad_input() {
    let dir = scratch("empty_grid");
    let s = write(&dir, "s.ron", &SWEEP.replace("[0.01, 0.1, 1.0]", "[]"));
    bad(&["sweep", s.to_str().unwrap()], "`painter.covariance` has an empty grid: list at least one value");
}

#[test]
fn shard_index_beyond_the_count_is_bad_input() {
    let dir = scratch("bad_shard");
    let s = write(&dir, "s.ron", SWEEP);
    bad(
        &["sweep", s.to_str().unwrap(), "--shard", "3/2", "--out", dir.join("o").to_str().unwrap()],
        "shard index 3 must be below the shard count 2",
    );
    assert!(!dir.join("o").exists(), "nothing runs on a bad shard spec");
}

#[test]
fn a_value_that_makes_the_scenario_invalid_is_bad_input() {
    let dir = scratch("bad_value");
    let s = write(&dir, "s.ron", &SWEEP.replace("[30, 90]", "[30, 0]"));
    bad(&["sweep", s.to_str().unwrap()], "captioner.batch = 0 makes the scenario invalid");
}

/// docs/model.md section 3: with `Fixed(n)` allocation, MLE and a frozen text model the trace contracts
/// as `((n-1)/n)^t`: with n = 10, by 0.9 a round. The local drift (about the squared size of a
/// refit step, proportional to the trace) decays at that rate, and the cumulative drift
/// converges (the means stop moving once the covariances are negligible). So the chain must be
/// active at the start (both drifts rise from zero) and stationary at the end: after 150
/// rounds the trace is 0.9^150 = 1.4e-7 of its start, so the window means of the local drift
/// have fallen by far more than the 5% threshold times their peak, and the cumulative drift
/// changes by a comparably negligible amount. Every replicate must show it.
#[test]
fn phases_go_from_active_to_stationary_as_the_covariances_contract() {
    let dir = scratch("phases");
    let s = write(
        &dir,
        "s.ron",
        r#"Scenario(name: "contract", seed: 5, rounds: 150, replicates: 3,
            entities: [
                TextModel(name: "captioner", initial: Uniform(3), frozen: true),
                ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(10)),
            ],
            diagnostics: (flat_threshold: 0.05, window: 10),
        )"#,
    );
    let out = dir.join("out");
    ok(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    let phases = read(&out.join("phases.csv"));
    for r in 0..3 {
        let labels: Vec<&str> =
            phases.lines().skip(1).filter(|l| l.starts_with(&format!("{r},"))).map(|l| l.rsplit(',').next().unwrap()).collect();
        assert_eq!(labels.len(), 150);
        assert!(labels[..10].iter().all(|l| *l == "active"), "replicate {r}: {:?}", &labels[..10]);
        assert_eq!(labels[149], "stationary", "replicate {r}");
    }
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn plot_draws_every_figure_of_a_run_and_a_two_parameter_sweep() {
    let dir = scratch("plot");
    let run = dir.join("run");
    ok(&["run", write(&dir, "small.ron", SMALL).to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    let out = ok(&["plot", run.to_str().unwrap()]);
    let listed = stdout(&out);
    for stem in ["diversity", "trace_painter", "drift_painter"] {
        assert!(is_png(&run.join("figures").join(format!("{stem}.png"))), "{stem}.png");
        let svg = read(&run.join("figures").join(format!("{stem}.svg")));
        assert!(svg.starts_with("<svg") && svg.contains("round"), "{stem}.svg");
        assert!(listed.contains(&format!("{stem}.png")));
    }
    let sweep = dir.join("sweep");
    ok(&["sweep", write(&dir, "grid.ron", SWEEP).to_str().unwrap(), "--out", sweep.to_str().unwrap()]);
    ok(&["plot", sweep.to_str().unwrap()]);
    for model in ["captioner", "painter"] {
        assert!(is_png(&sweep.join(format!("figures/heatmap_{model}.png"))), "heat map of {model}");
    }
    bad(&["plot", dir.to_str().unwrap()], "is neither a run folder");
}
