//! The README's first ready-scenario table ("Ready scenarios") against runs of the binary.
//!
//! Every figure checked here is parsed from README.md (the row of the scenario file, after a
//! fixed phrase), so a figure edited in the README without the runs agreeing fails, and a
//! rewording that loses a phrase fails loudly (the phrase is not found) rather than silently.
//!
//! Two kinds of check:
//! - **Reproduction.** The README quotes what the command shown gives, seed included; runs are
//!   deterministic, so the same command must give the same figure to the precision printed
//!   (half a unit of its last printed digit). Where the README's figure concerns early rounds
//!   the run is cut short with `--rounds` (round t of a shorter run is round t of the full one),
//!   and where it needs more replicates it uses the flag the README shows.
//! - **Statistics.** Where a figure is a mean over replicates, a cheaper run (fewer replicates or
//!   another seed) must agree with it within `Z = 4` standard errors of the difference, the
//!   standard errors computed from the replicates (derivation next to each check). Z = 4 makes
//!   a false alarm about 1 in 16 000 per check for a normal statistic.
//!
//! Not checked (too slow for a test of a few seconds): the 16-replicate collapse rounds of
//! `coevolve.ron` and `frozen_image.ron` (40 s and 60 s on one core), and the medians of the
//! 40-replicate `coevolve_nt*.ron` runs (their means are checked on the first 10 replicates).
//!
//! Self-contained (no `mod common`), so that it can be moved into a single test binary as is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Standard errors allowed in the statistical checks (see the module docs).
const Z: f64 = 4.0;

// ------------------------------------------------------------------- the README's figures

/// The README's row of the first ready-scenario table for `file` (e.g. `matthew.ron`).
fn row(file: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let start = readme.find("## Ready scenarios").expect("README has a Ready scenarios section");
    let key = format!("| `{file}`");
    readme[start..].lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("no README row for {file}")).to_string()
}

/// A number as printed in the README, with its printed precision: half a unit of its last digit.
#[derive(Debug, Clone, Copy)]
struct Figure {
    value: f64,
    rounding: f64,
}

/// Parses the number at the start of `text` (`-0.04`, `2076`, `2.1e-7`, `5.2e-5`).
fn parse_figure(text: &str) -> Option<Figure> {
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (c == '-' && (i == 0 || text[..i].ends_with('e'))) || c == 'e'))
        .map_or(text.len(), |(i, _)| i);
    let literal = text[..end].trim_end_matches(['.', 'e']);
    let value: f64 = literal.parse().ok()?;
    let (mantissa, exponent) = match literal.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (literal, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    Some(Figure { value, rounding: 0.5 * 10f64.powi(exponent - decimals) })
}

/// The figure right after `phrase` in `row`.
fn after(row: &str, phrase: &str) -> Figure {
    let at = row.find(phrase).unwrap_or_else(|| panic!("README row lacks {phrase:?}: {row}"));
    parse_figure(row[at + phrase.len()..].trim_start()).unwrap_or_else(|| panic!("no number after {phrase:?} in: {row}"))
}

/// `count` comma-separated figures right after `phrase` (`116, 98, 60`).
fn list_after(row: &str, phrase: &str, count: usize) -> Vec<Figure> {
    let at = row.find(phrase).unwrap_or_else(|| panic!("README row lacks {phrase:?}: {row}"));
    let mut rest = &row[at + phrase.len()..];
    let mut out = Vec::new();
    for _ in 0..count {
        rest = rest.trim_start();
        let f = parse_figure(rest).unwrap_or_else(|| panic!("expected {count} numbers after {phrase:?} in: {row}"));
        out.push(f);
        let next = rest.find([',', ' ', ')']).unwrap_or(rest.len());
        rest = rest[next..].trim_start_matches([',', ' ']);
    }
    out
}

/// `a ± b` pairs after `phrase`, separated by commas (`128 ± 7, 101 ± 5, 64 ± 3`).
fn pm_after(row: &str, phrase: &str, count: usize) -> Vec<(Figure, Figure)> {
    let at = row.find(phrase).unwrap_or_else(|| panic!("README row lacks {phrase:?}: {row}"));
    let mut rest = &row[at + phrase.len()..];
    let mut out = Vec::new();
    for _ in 0..count {
        rest = rest.trim_start();
        let mean = parse_figure(rest).unwrap_or_else(|| panic!("expected a mean after {phrase:?} in: {row}"));
        let pm = rest.find('±').unwrap_or_else(|| panic!("expected `±` after {phrase:?} in: {row}"));
        rest = rest[pm + '±'.len_utf8()..].trim_start();
        let se = parse_figure(rest).unwrap_or_else(|| panic!("expected a standard error after {phrase:?} in: {row}"));
        out.push((mean, se));
        let next = rest.find([',', ' ', ')']).unwrap_or(rest.len());
        rest = rest[next..].trim_start_matches([',', ' ']);
    }
    out
}

/// `measured` reproduces the README's `figure` to the precision printed.
fn reproduces(what: &str, measured: f64, figure: Figure) {
    // A small relative allowance for the last bit of f64 arithmetic on top of the rounding.
    let tolerance = figure.rounding * (1.0 + 1e-9);
    assert!(
        (measured - figure.value).abs() <= tolerance,
        "{what}: README says {}, the run gives {measured} (allowed: the printed precision, +-{})",
        figure.value,
        figure.rounding
    );
}

// --------------------------------------------------------------------------------- runs

/// What a run wrote: `summary.json` and the rows of `metrics.csv` that `keep` selects.
struct Run {
    summary: serde_json::Value,
    /// `(replicate, round, model, text, metric) -> value`.
    rows: BTreeMap<(usize, u64, String, String, String), f64>,
}

/// Runs `coevo run` with `args` (scenario and flags) into a fresh folder and reads it.
fn run(test: &str, args: &[&str], keep: &[&str]) -> Run {
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", dir.to_str().expect("utf-8 path"), "--quiet"]);
    let out = Command::new(env!("CARGO_BIN_EXE_coevo"))
        .args(&all)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the coevo binary runs");
    assert!(out.status.success(), "coevo {all:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary.json")).expect("json");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut rows = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if keep.contains(&f[4]) {
            let key = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string(), f[3].to_string(), f[4].to_string());
            rows.insert(key, f[5].parse().unwrap());
        }
    }
    Run { summary, rows }
}

impl Run {
    fn replicates(&self) -> usize {
        self.summary["replicates"].as_array().expect("replicates").len()
    }

    /// `collapsed_at` of model number `model` (scenario order) in every replicate.
    fn collapse_rounds(&self, model: usize) -> Vec<Option<u64>> {
        self.summary["replicates"].as_array().unwrap().iter().map(|r| r[model]["collapsed_at"].as_u64()).collect()
    }

    /// Values of `metric` of `model` at `round` in replicate `rep`, one per text (or one).
    fn values(&self, rep: usize, round: u64, model: &str, metric: &str) -> Vec<f64> {
        self.rows
            .range((rep, round, model.to_string(), String::new(), String::new())..)
            .take_while(|((r, t, m, ..), _)| *r == rep && *t == round && m == model)
            .filter(|((.., name), _)| name == metric)
            .map(|(_, v)| *v)
            .collect()
    }

    fn value(&self, rep: usize, round: u64, model: &str, metric: &str) -> f64 {
        let v = self.values(rep, round, model, metric);
        assert_eq!(v.len(), 1, "{model}/{metric} at round {round}");
        v[0]
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (divisor n - 1).
fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

fn se(v: &[f64]) -> f64 {
    sd(v) / (v.len() as f64).sqrt()
}

// -------------------------------------------------------------------------------- tests

#[test]
fn coevolve_row() {
    let row = row("coevolve.ron");
    let r = run("coevolve", &["scenarios/coevolve.ron"], &["weighted_trace"]);
    let collapse = r.collapse_rounds(0)[0].expect("the text model of coevolve.ron collapses") as f64;
    reproduces("coevolve.ron text collapse round", collapse, after(&row, "text collapse at round"));
    let last = r.summary["replicates"][0][1]["last"].as_f64().unwrap();
    reproduces("coevolve.ron final weighted_trace", last, after(&row, "`weighted_trace` from 0.2 to"));
    reproduces("coevolve.ron initial weighted_trace", r.value(0, 0, "painter", "weighted_trace"), after(&row, "`weighted_trace` from"));
}

#[test]
fn frozen_image_row() {
    let row = row("frozen_image.ron");
    // The collapse round of this seed: rounds after it do not change it.
    let quoted = after(&row, "This seed: collapse at round");
    let r = run("frozen_image", &["scenarios/frozen_image.ron", "--rounds", &format!("{}", quoted.value as u64 + 10)], &[]);
    reproduces("frozen_image.ron collapse round", r.collapse_rounds(0)[0].expect("collapses") as f64, quoted);

    // Mean gini_simpson at round 500 over the 16 replicates of `--replicates 16` (reproduction),
    // and the Wright-Fisher value the README compares it with.
    let r = run("frozen_image16", &["scenarios/frozen_image.ron", "--replicates", "16", "--rounds", "500"], &["gini_simpson"]);
    let g: Vec<f64> = (0..16).map(|rep| r.value(rep, 500, "captioner", "gini_simpson")).collect();
    let (m, s) = pm_after(&row, "mean `gini_simpson`", 1)[0];
    reproduces("frozen_image.ron mean gini_simpson at round 500", mean(&g), m);
    reproduces("frozen_image.ron its standard error", se(&g), s);
    let wf = 0.8 * 0.999f64.powi(500);
    reproduces("the Wright-Fisher value 0.8 x 0.999^500", wf, after(&row, "`0.8 x 0.999^500 ="));
    // Theory (docs/model.md section 3): E[H_t] >= (1 - 1/N)^t H_0, with equality for separated
    // conditionals; the mean of 16 independent replicates may fall below only by noise:
    // allow Z standard errors of the mean.
    assert!(mean(&g) >= wf - Z * se(&g), "mean gini_simpson {} below the Wright-Fisher bound {wf} by more than {Z} SE", mean(&g));
}

#[test]
fn frozen_text_row() {
    let row = row("frozen_text.ron");
    let r = run("frozen_text", &["scenarios/frozen_text.ron"], &["trace", "fidelity"]);
    // The expectation 0.2 x 0.995^t quoted at rounds 100 and 1000.
    let expected = list_after(&row, "with expectation `0.995^t tr Sigma0` (0.2 at round 0,", 1)[0];
    reproduces("0.2 x 0.995^100", 0.2 * 0.995f64.powi(100), expected);
    reproduces("0.2 x 0.995^1000", 0.2 * 0.995f64.powi(1000), after(&row, "at round 100,"));
    // This seed's mean over its 5 texts.
    let m100 = mean(&r.values(0, 100, "painter", "trace"));
    let m1000 = mean(&r.values(0, 1000, "painter", "trace"));
    reproduces("mean trace over the 5 texts at round 100", m100, after(&row, "the mean over this seed's 5 texts is"));
    reproduces("mean trace over the 5 texts at round 1000", m1000, after(&row, "at round 100 and"));
    let ratio = 0.2 * 0.995f64.powi(1000) / m1000;
    let quoted_ratio = after(&row, "at round 1000,");
    assert!((ratio - quoted_ratio.value).abs() <= 0.5, "README says {} times below, the run gives {ratio:.2}", quoted_ratio.value);
    // Squared fidelity, mean over the 5 texts: its peak over the run and its value at 1000.
    let fid2 = |t: u64| mean(&r.values(0, t, "painter", "fidelity").iter().map(|f| f * f).collect::<Vec<_>>());
    let peak = (0..=1000).map(fid2).fold(0.0, f64::max);
    reproduces("peak of the mean squared fidelity", peak, after(&row, "peaks at"));
    reproduces("mean squared fidelity at round 1000", fid2(1000), after(&row, "expectation) and is"));

    // 80 texts of `--replicates 16` at round 100 (reproduction), against the expectation
    // (statistics): the 80 traces are independent (Fixed allocation, frozen text model: every
    // text refits on its own samples), so their mean has standard error sd / sqrt(80). At round
    // 100 the log-normal spread is still small (log-sd about sqrt(100 x 2 / 398) = 0.7), so the
    // mean is close to normal.
    let r = run("frozen_text16", &["scenarios/frozen_text.ron", "--replicates", "16", "--rounds", "100"], &["trace"]);
    let traces: Vec<f64> = (0..16).flat_map(|rep| r.values(rep, 100, "painter", "trace")).collect();
    assert_eq!(traces.len(), 80);
    let (m, s) = pm_after(&row, "80 texts:", 1)[0];
    reproduces("mean trace over 80 texts at round 100", mean(&traces), m);
    reproduces("its standard error", se(&traces), s);
    let theory = 0.2 * 0.995f64.powi(100);
    assert!(
        (mean(&traces) - theory).abs() <= Z * se(&traces),
        "mean trace {} at round 100 is more than {Z} SE from E tr Sigma_100 = {theory}",
        mean(&traces)
    );
}

#[test]
fn coevolve_nt_row() {
    let row = row("coevolve_nt1.ron");
    let claimed = pm_after(&row, "mean ± standard error", 3);
    let sds = list_after(&row, "a single replicate's standard deviation", 3);
    // The first 10 of the README's 40 replicates (replicate r is the same world in both runs).
    // The mean of a subset of n = 10 of the N = 40 values differs from the mean of all 40 by
    // a random amount of variance sigma^2 (1/n - 1/N) (sampling without replacement from the
    // 40), with sigma the README's single-replicate standard deviation.
    let (n, big_n) = (10.0f64, 40.0f64);
    for (i, file) in ["coevolve_nt1.ron", "coevolve_nt2.ron", "coevolve_nt5.ron"].iter().enumerate() {
        let r = run(file, &[&format!("scenarios/{file}"), "--replicates", "10"], &[]);
        let rounds: Vec<f64> = r.collapse_rounds(0).iter().map(|c| c.expect("every replicate collapses") as f64).collect();
        assert_eq!(rounds.len(), 10);
        let tolerance = Z * sds[i].value * (1.0 / n - 1.0 / big_n).sqrt();
        let m = mean(&rounds);
        assert!(
            (m - claimed[i].0.value).abs() <= tolerance,
            "{file}: mean collapse round of the first 10 replicates {m} vs README {} (allowed +-{tolerance:.1})",
            claimed[i].0.value
        );
    }
}

#[test]
fn matthew_row() {
    let row = row("matthew.ron");
    let r = run("matthew", &["scenarios/matthew.ron"], &["matthew_index"]);
    assert_eq!(r.replicates(), 4);
    let m = |rep: usize, t: u64| r.value(rep, t, "painter", "matthew_index");
    assert!((0..4).all(|rep| m(rep, 0).is_nan()), "matthew_index is NaN at round 0");
    let window =
        |from: u64, to: u64| -> Vec<f64> { (0..4).flat_map(|rep| (from..=to).map(move |t| (rep, t))).map(|(rep, t)| m(rep, t)).collect() };
    let negatives = |v: &[f64]| v.iter().filter(|x| **x < 0.0).count() as f64;
    reproduces("mean over rounds 1-5", mean(&window(1, 5)), after(&row, "noise in rounds 1-5 (mean"));
    reproduces("negative values in rounds 1-5", negatives(&window(1, 5)), after(&row, "(mean -0.215,"));
    reproduces("negative values in rounds 6-20", negatives(&window(6, 20)), after(&row, "then rising ("));
    reproduces("negative values in rounds 50-200", negatives(&window(50, 200)), after(&row, "in rounds 6-20,"));
    reproduces("mean over rounds 1-20", mean(&window(1, 20)), after(&row, "mean over the 4 replicates"));
    let per_replicate = |run: &Run| -> Vec<f64> {
        (0..4).map(|rep| mean(&(50..=200).map(|t| run.value(rep, t, "painter", "matthew_index")).collect::<Vec<_>>())).collect()
    };
    let late = per_replicate(&r);
    let (claimed, claimed_se) = pm_after(&row, "over rounds 1-20 and", 1)[0];
    reproduces("mean over rounds 50-200", mean(&late), claimed);
    reproduces("its standard error over the 4 replicates", se(&late), claimed_se);

    // Another seed (statistics): 4 new replicates, independent of the README's, must agree
    // within Z standard errors of the difference of the two means, sqrt(se_a^2 + se_b^2), each
    // from the spread of the replicates' averages over rounds 50-200.
    let other = run("matthew_seed1", &["scenarios/matthew.ron", "--seed", "1"], &["matthew_index"]);
    let late_other = per_replicate(&other);
    let tolerance = Z * (claimed_se.value.powi(2) + se(&late_other).powi(2)).sqrt();
    assert!(
        (mean(&late_other) - claimed.value).abs() <= tolerance,
        "seed 1: mean matthew_index over rounds 50-200 {} vs README {} (allowed +-{tolerance:.3})",
        mean(&late_other),
        claimed.value
    );
}

#[test]
fn figures_parse_with_their_precision() {
    let f = parse_figure("2.1e-7,").unwrap();
    assert_eq!((f.value, f.rounding), (2.1e-7, 0.5e-8));
    let f = parse_figure("2076 (").unwrap();
    assert_eq!((f.value, f.rounding), (2076.0, 0.5));
    let f = parse_figure("-0.04,").unwrap();
    assert_eq!((f.value, f.rounding), (-0.04, 0.005));
    assert_eq!(list_after("x 116, 98, 60; y", "x", 3).iter().map(|f| f.value).collect::<Vec<_>>(), vec![116.0, 98.0, 60.0]);
    let pm = pm_after("z 128 ± 7, 101 ± 5, 64 ± 3 (", "z", 3);
    assert_eq!(pm.iter().map(|(m, s)| (m.value, s.value)).collect::<Vec<_>>(), vec![(128.0, 7.0), (101.0, 5.0), (64.0, 3.0)]);
}
