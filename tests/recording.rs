//! Recording less and stopping early (the `output` and `stop` sections): what is written is
//! exactly a subset of a full run's rows, summaries see every round, a replicate stops exactly
//! where its condition has held `patience` rounds, and resuming a thinned, stopping run gives
//! the uninterrupted files.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{bytes, coevo, ok, read, scratch, stderr, write};

/// A small platform with per-text and model-level rows of every kind (text, image, injector),
/// three replicates so that the aggregate has something to aggregate.
const PLATFORM: &str = r#"Scenario(
    name: "recording",
    seed: 5,
    rounds: 57,
    replicates: 3,
    entities: [
        TextModel(name: "captioner", initial: Uniform(4), batch: 60),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 60),
        CorpusInjector(name: "tokens", target: "captioner", alpha: 0.1, eps: 0.05),
    ],
)"#;

/// A platform that absorbs within tens of rounds (3 texts, batches of 20, no injection):
/// the Wright-Fisher chain of `p` fixes in O(N) rounds.
const ABSORBING: &str = r#"Scenario(
    name: "absorbing",
    seed: 11,
    rounds: 3000,
    replicates: 4,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 20),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 20),
    ],
    STOP
)"#;

/// The data lines of a table (header dropped).
fn lines(path: &Path) -> Vec<String> {
    read(path).lines().skip(1).map(str::to_string).collect()
}

fn field(line: &str, i: usize) -> &str {
    line.split(',').nth(i).expect("a field")
}

fn run(dir: &Path, name: &str, source: &str, extra: &[&str]) -> std::path::PathBuf {
    let scenario = write(dir, &format!("{name}.ron"), source);
    let out = dir.join(name);
    let mut args = vec!["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

#[test]
fn thinned_tables_are_exactly_the_every_k_rows_of_a_full_run() {
    let dir = scratch("recording", "every");
    let full = run(&dir, "full", PLATFORM, &[]);
    let thin = run(&dir, "thin", PLATFORM, &["--every", "10"]);
    let kept = |round: &str| {
        let t: u64 = round.parse().unwrap();
        t == 0 || t == 57 || t.is_multiple_of(10)
    };
    // metrics.csv and phases.csv have the round in column 1, aggregate.csv in column 0.
    for (table, column) in [("metrics.csv", 1), ("aggregate.csv", 0), ("phases.csv", 1)] {
        let expected: Vec<String> = lines(&full.join(table)).into_iter().filter(|l| kept(field(l, column))).collect();
        assert!(!expected.is_empty());
        assert_eq!(lines(&thin.join(table)), expected, "{table}: not the every-10 subset of the full run");
    }
    // Summaries and collapse rounds are computed from every round, recorded or not.
    assert_eq!(bytes(&full.join("summary.json")), bytes(&thin.join("summary.json")));
    // The scenario's own section says the same as the flag.
    let section = PLATFORM.replace("replicates: 3,", "replicates: 3,\n    output: (every: 10),");
    let from_file = run(&dir, "section", &section, &[]);
    assert_eq!(bytes(&from_file.join("metrics.csv")), bytes(&thin.join("metrics.csv")));
}

#[test]
fn selected_metrics_and_model_level_rows_are_exactly_those_rows_of_a_full_run() {
    let dir = scratch("recording", "select");
    let full = run(&dir, "full", PLATFORM, &[]);
    let chosen = ["gini_simpson", "trace", "injected", "weighted_trace"];
    let some = run(&dir, "some", PLATFORM, &["--metrics", &chosen.join(","), "--no-per-text"]);
    // Columns: replicate,round,model,text,metric,value; `trace` is per text, so it goes.
    let expected: Vec<String> =
        lines(&full.join("metrics.csv")).into_iter().filter(|l| chosen.contains(&field(l, 4)) && field(l, 3).is_empty()).collect();
    let got = lines(&some.join("metrics.csv"));
    assert_eq!(got, expected);
    let metrics: std::collections::BTreeSet<&str> = got.iter().map(|l| field(l, 4)).collect();
    assert_eq!(metrics.into_iter().collect::<Vec<_>>(), ["gini_simpson", "injected", "weighted_trace"]);
    // aggregate.csv: round,model,text,metric,...
    let expected: Vec<String> =
        lines(&full.join("aggregate.csv")).into_iter().filter(|l| chosen.contains(&field(l, 3)) && field(l, 2).is_empty()).collect();
    assert_eq!(lines(&some.join("aggregate.csv")), expected);
    assert_eq!(bytes(&full.join("summary.json")), bytes(&some.join("summary.json")));
}

/// Per replicate, the round it stopped at, from `summary.json`.
fn stop_rounds(out: &Path) -> Vec<Option<u64>> {
    let summary: serde_json::Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    summary["stopped_early"].as_array().expect("stopped_early").iter().map(|s| s["round"].as_u64()).collect()
}

#[test]
fn an_absorbed_replicate_stops_patience_rounds_after_absorption_with_its_rows_unchanged() {
    let dir = scratch("recording", "absorbed");
    let patience = 5;
    let full = run(&dir, "full", &ABSORBING.replace("STOP", ""), &["--rounds", "400"]);
    let stopping = run(&dir, "stop", &ABSORBING.replace("STOP", &format!("stop: (when: Absorbed, patience: {patience}),")), &[]);
    let stops = stop_rounds(&stopping);
    assert_eq!(stops.len(), 4);
    // Rows of the full run by replicate.
    let mut by_replicate: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for l in lines(&full.join("metrics.csv")) {
        by_replicate.entry(field(&l, 0).parse().unwrap()).or_default().push(l);
    }
    let mut stopped_rows: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for l in lines(&stopping.join("metrics.csv")) {
        stopped_rows.entry(field(&l, 0).parse().unwrap()).or_default().push(l);
    }
    for (r, stop) in stops.iter().enumerate() {
        let r = r as u64;
        let stop = stop.unwrap_or_else(|| panic!("replicate {r} did not stop within 3000 rounds"));
        // Absorption is permanent without injection: the first round with support 1, and the
        // condition then holds `patience` rounds in a row, ending at the stop round.
        let absorbed = by_replicate[&r]
            .iter()
            .find(|l| field(l, 2) == "captioner" && field(l, 4) == "support" && field(l, 5) == "1.0" && field(l, 1) != "0")
            .map(|l| field(l, 1).parse::<u64>().unwrap())
            .expect("the full run absorbs within 400 rounds");
        assert_eq!(stop, absorbed + patience - 1, "replicate {r}");
        // The recorded rounds are the full run's, and nothing after the stop.
        let expected: Vec<String> = by_replicate[&r].iter().filter(|l| field(l, 1).parse::<u64>().unwrap() <= stop).cloned().collect();
        assert_eq!(stopped_rows[&r], expected, "replicate {r}");
    }
    // The aggregate counts only the replicates still running (column n = 4).
    for l in lines(&stopping.join("aggregate.csv")).iter().filter(|l| field(l, 3) == "gini_simpson") {
        let round: u64 = field(l, 0).parse().unwrap();
        let running = stops.iter().filter(|s| s.unwrap() >= round).count();
        assert_eq!(field(l, 4), running.to_string(), "round {round}");
    }
    let manifest: serde_json::Value = serde_json::from_str(&read(&stopping.join("manifest.json"))).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["stopped_early"][0]["reason"], "Absorbed");
    assert_eq!(manifest["rounds_completed"].as_u64(), stops.iter().map(|s| s.unwrap()).max());
}

#[test]
fn a_thinned_stopping_run_resumes_to_exactly_the_uninterrupted_files() {
    let dir = scratch("recording", "resume");
    let source =
        ABSORBING.replace("STOP", "stop: (when: Absorbed, patience: 3),\n    output: (every: 7),").replace("batch: 20", "batch: 150");
    let scenario = write(&dir, "s.ron", &source);
    let whole = run(&dir, "whole", &source, &[]);
    let killed = dir.join("killed");
    crate::checkpoint::kill_after_first_checkpoint(&scenario, &killed, "9");
    ok(&["resume", killed.to_str().unwrap(), "-q"]);
    for f in ["metrics.csv", "aggregate.csv", "phases.csv", "summary.json"] {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
    assert!(stop_rounds(&whole).iter().all(Option::is_some), "every replicate stops within 3000 rounds");
}

#[test]
fn bad_recording_and_stop_sections_are_refused_with_the_field_named() {
    let dir = scratch("recording", "bad");
    let cases = [
        ("output: (every: 0),", "output.every", "at least 1"),
        (
            "output: (metrics: [\"gini_simpson\", \"diversity\"]),",
            "output.metrics",
            "unknown metric \"diversity\"; valid metrics: gini_simpson",
        ),
        ("output: (metrics: []),", "output.metrics", "records nothing"),
        ("stop: (when: Absorbed, patience: 0),", "stop.patience", "at least 1"),
        ("stop: (when: Never),", "Never", "AllCollapsed"),
    ];
    for (section, field, message) in cases {
        let path = write(&dir, "bad.ron", &ABSORBING.replace("STOP", section));
        let out = coevo(&["validate", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{section}: {err}");
        assert!(err.contains(field) && err.contains(message), "{section}: {err}");
        // Located in the file: line 10 holds the section.
        assert!(err.contains("bad.ron:10:"), "{section} not located: {err}");
    }
    let path = write(&dir, "good.ron", &ABSORBING.replace("STOP", ""));
    for (flag, value, message) in [("--metrics", "gini,trace", "unknown metric \"gini\""), ("--every", "0", "0")] {
        let out = coevo(&["run", path.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{flag} {value}: {}", stderr(&out));
        assert!(!dir.join("o").exists(), "{flag} {value}: a refused run wrote its folder");
    }
}

#[test]
fn a_sweep_of_stopping_points_summarises_each_replicate_at_its_last_round() {
    // Every replicate absorbs and stops: its text diversity is exactly 0 from absorption on,
    // so the held steady level is exactly 0, every replicate counts as collapsed, and the
    // drift phase at each replicate's own last round is read (not the planned last round's).
    let dir = scratch("recording", "sweep");
    let source = ABSORBING
        .replace("STOP", "stop: (when: Absorbed, patience: 2),\n    sweep: (parameters: [(path: \"captioner.batch\", values: [15, 25])]),");
    let scenario = write(&dir, "s.ron", &source);
    let out = dir.join("sweep");
    ok(&["sweep", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    let table = read(&out.join("sweep.csv"));
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "two points, two models each");
    let mut points: Vec<_> = std::fs::read_dir(out.join("points")).unwrap().map(|e| e.unwrap().path()).collect();
    points.sort();
    for row in &rows {
        if row[column("model")] == "captioner" {
            assert_eq!(row[column("steady_mean")], "0.0", "{row:?}");
            assert_eq!(row[column("collapsed_fraction")], "1.0", "{row:?}");
            continue;
        }
        // The phase of each replicate's last row in the point's phases.csv.
        let phases = points[row[column("point")].parse::<usize>().unwrap()].join("phases.csv");
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for l in lines(&phases) {
            last.insert(field(&l, 0).to_string(), field(&l, 7).to_string());
        }
        assert_eq!(last.len(), 4, "every replicate has phases");
        let stationary = last.values().filter(|p| *p == "stationary").count() as f64 / 4.0;
        assert_eq!(row[column("stationary_fraction")], format!("{stationary:?}"), "{row:?}");
    }
}
