//! The table formats (`output.format: Csv | Parquet`) and when the aggregate table is written
//! (`output.aggregate`; issue 11, items 1 and 2):
//! - a Parquet table decodes (with the parquet crate directly, not coevo's reader) to the values
//!   of its CSV twin bit for bit, and to the same rows in the same order; the other files are
//!   the same bytes whatever the format;
//! - the same scenario and seed write the same Parquet bytes whatever the thread count;
//! - coevo's readers yield the same rows from either format, and the aggregate computed from the
//!   metrics (what `coevo plot` draws for a run with no aggregate table) is the one written;
//! - the file is a complete Parquet file after every row group, holding whole rounds;
//! - a run killed after a checkpoint resumes to the bytes of an uninterrupted run, even when
//!   the kill left the file without a footer (inside the write of a row group);
//! - the aggregate table is written with 2 replicates or more, or when asked;
//! - an output folder holding another run's tables of the other format is refused (exit 2,
//!   naming the file and `output.format`) unless `--force`, which removes them;
//! - a sweep writes its points in the format asked, and the same `sweep.csv` either way.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, Float64Array, StringArray, UInt64Array};
use arrow_schema::DataType;
use coevo::metrics::MetricRow;
use coevo::output::aggregate::AggregateRow;
use coevo::output::parquet::{MetricsParquet, ROW_GROUP_ROWS};
use coevo::output::tidy::{self, MetricsRow};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{bytes, coevo, coevo_command, ok, read, scratch, stderr, wait_until, write};

/// Two replicates of a text model and an image model over four texts: 84 rows a round, so
/// 2000 rounds make three row groups; the Matthew index is NaN at round 0 (all ties).
const SCENARIO: &str = r#"Scenario(
    name: "tables",
    seed: 31,
    rounds: 2000,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Probabilities([0.4, 0.3, 0.2, 0.1]), batch: 100),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 100),
    ],
)"#;

/// Runs `scenario` into `dir/name` with extra arguments; returns the folder.
fn run(dir: &Path, scenario: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut all = vec!["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
    all.extend_from_slice(args);
    ok(&all);
    out
}

/// A row of `metrics`: replicate, round, model, text, metric, value.
type Row = (u64, u64, String, Option<u64>, String, f64);

/// The rows of a `metrics.parquet`, decoded with the parquet crate (checking the column types:
/// replicate and round u64, model and metric strings, text a nullable u64, value f64).
fn decode_parquet(path: &Path) -> Vec<Row> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let types: Vec<(String, DataType, bool)> =
        reader.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable())).collect();
    let expected = [
        ("replicate", DataType::UInt64, false),
        ("round", DataType::UInt64, false),
        ("model", DataType::Utf8, false),
        ("text", DataType::UInt64, true),
        ("metric", DataType::Utf8, false),
        ("value", DataType::Float64, false),
    ];
    assert_eq!(types, expected.map(|(n, t, null)| (n.to_string(), t, null)), "{}: columns", path.display());
    let mut rows = Vec::new();
    for batch in reader.build().unwrap() {
        let b = batch.unwrap();
        let u = |i: usize| b.column(i).as_any().downcast_ref::<UInt64Array>().unwrap().clone();
        let s = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (replicate, round, model, text, metric) = (u(0), u(1), s(2), u(3), s(4));
        let value = b.column(5).as_any().downcast_ref::<Float64Array>().unwrap().clone();
        for i in 0..b.num_rows() {
            let t = (!text.is_null(i)).then(|| text.value(i));
            rows.push((replicate.value(i), round.value(i), model.value(i).into(), t, metric.value(i).into(), value.value(i)));
        }
    }
    rows
}

/// The rows of a `metrics.csv`, split by hand and parsed with `str::parse`.
fn parse_csv(path: &Path) -> Vec<Row> {
    let text = read(path);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("replicate,round,model,text,metric,value"));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let t = (!f[3].is_empty()).then(|| f[3].parse().unwrap());
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].into(), t, f[4].into(), f[5].parse().unwrap())
        })
        .collect()
}

/// Whether two values are the same `f64`: the same bits, or both NaN (the CSV spells every NaN
/// `NaN`, which parses to one NaN; the Parquet file keeps the bits the engine produced).
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same_rows(parquet: &[Row], csv: &[Row], what: &str) {
    assert_eq!(parquet.len(), csv.len(), "{what}: row counts");
    for (i, (p, c)) in parquet.iter().zip(csv).enumerate() {
        assert!(p.0 == c.0 && p.1 == c.1 && p.2 == c.2 && p.3 == c.3 && p.4 == c.4 && same(p.5, c.5), "{what}: row {i}: {p:?} vs {c:?}");
    }
}

#[test]
fn parquet_tables_decode_to_the_csv_values_bit_for_bit_and_do_not_depend_on_threads() {
    let dir = scratch("tables", "formats");
    let scenario = write(&dir, "s.ron", SCENARIO);
    let csv = run(&dir, &scenario, "csv", &[]);
    let one = run(&dir, &scenario, "parquet1", &["--format", "parquet", "--threads", "1"]);
    let four = run(&dir, &scenario, "parquet4", &["--format", "parquet", "--threads", "4"]);

    let rows = decode_parquet(&one.join("metrics.parquet"));
    assert_same_rows(&rows, &parse_csv(&csv.join("metrics.csv")), "metrics");
    assert!(rows.iter().any(|r| r.5.is_nan()), "the scenario should produce NaN values (Matthew index at round 0)");
    assert!(rows.len() > 2 * ROW_GROUP_ROWS, "{} rows make fewer than three row groups", rows.len());
    // Parquet has its own reproducibility contract: the same bytes whatever the thread count.
    for f in ["metrics.parquet", "aggregate.parquet"] {
        assert!(bytes(&one.join(f)) == bytes(&four.join(f)), "{f} differs between --threads 1 and --threads 4");
    }
    // The format changes the tables only; every other file is the same.
    for f in ["phases.csv", "summary.json"] {
        assert!(bytes(&one.join(f)) == bytes(&csv.join(f)), "{f} differs between the formats");
    }
    assert!(!one.join("metrics.csv").exists() && !one.join("aggregate.csv").exists(), "a Parquet run writes no CSV table");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes(&one.join("manifest.json"))).unwrap();
    assert_eq!(manifest["scenario"]["output"]["format"], "Parquet", "the manifest records the --format override");

    // coevo's readers give the same rows from either format.
    let metrics = |path: &Path| {
        let mut rows: Vec<MetricsRow> = Vec::new();
        tidy::read_metrics(path, |r| rows.push(r)).unwrap();
        rows
    };
    let (from_parquet, from_csv) = (metrics(&one.join("metrics.parquet")), metrics(&csv.join("metrics.csv")));
    assert_eq!(from_parquet.len(), from_csv.len());
    let key = |r: &MetricsRow| (r.replicate, r.round, r.model.clone(), r.text, r.metric.clone());
    assert!(from_parquet.iter().zip(&from_csv).all(|(p, c)| key(p) == key(c) && same(p.value, c.value)), "coevo's readers differ");
    type Agg = (u64, String, Option<u32>, String, usize, [f64; 5]);
    let own = |r: AggregateRow<'_>| -> Agg {
        let s = r.stats;
        (r.round, r.model.into(), r.text, r.metric.into(), s.n, [s.mean, s.se, s.q05, s.q50, s.q95])
    };
    let aggregate = |path: &Path| {
        let mut rows: Vec<Agg> = Vec::new();
        tidy::read_aggregate(path, |r| rows.push(own(r))).unwrap();
        rows
    };
    let computed = {
        let mut rows: Vec<Agg> = Vec::new();
        tidy::aggregate_metrics(&one.join("metrics.parquet"), |r| rows.push(own(r))).unwrap();
        rows
    };
    let same_agg = |a: &[Agg], b: &[Agg]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.0, &x.1, x.2, &x.3, x.4) == (y.0, &y.1, y.2, &y.3, y.4) && x.5.iter().zip(&y.5).all(|(u, v)| same(*u, *v)))
    };
    let (agg_parquet, agg_csv) = (aggregate(&one.join("aggregate.parquet")), aggregate(&csv.join("aggregate.csv")));
    assert!(!agg_csv.is_empty());
    assert!(same_agg(&agg_parquet, &agg_csv), "aggregate.parquet and aggregate.csv differ");
    assert!(same_agg(&computed, &agg_csv), "the aggregate computed from the metrics differs from the one written");
}

/// Synthetic rows of one round: `rows` rows of replicate 0, model `m`, per text, value
/// `round + text / 1000`.
fn synthetic(round: u64, rows: usize) -> Vec<MetricRow> {
    let (model, metric): (Arc<str>, Arc<str>) = ("m".into(), "x".into());
    (0..rows)
        .map(|t| MetricRow {
            round,
            model: model.clone(),
            text: Some(t as u32),
            metric: metric.clone(),
            value: round as f64 + t as f64 / 1000.0,
        })
        .collect()
}

/// The rounds of a decoded table, each once, in order; asserts every round has all its rows.
fn whole_rounds(rows: &[Row], per_round: usize) -> Vec<u64> {
    let mut rounds: Vec<u64> = rows.iter().map(|r| r.1).collect();
    rounds.dedup();
    assert_eq!(rows.len(), rounds.len() * per_round, "the file holds a round in part");
    rounds
}

#[test]
fn a_parquet_table_is_a_complete_file_after_every_row_group() {
    // A reader opening the file while the writer is still going (as after a SIGKILL) finds a
    // complete Parquet file of whole rounds: empty at first, then every row group written.
    let dir = scratch("tables", "row_groups");
    let path = dir.join("metrics.parquet");
    let per_round = 1000;
    let mut writer = MetricsParquet::create(&path).unwrap();
    assert!(decode_parquet(&path).is_empty(), "a new table is a valid, empty file");
    let mut seen_groups = 0;
    for round in 0..200u64 {
        let rows = synthetic(round, per_round);
        writer.write_round([(0, rows.as_slice())]).unwrap();
        let on_disk = decode_parquet(&path);
        let rounds = whole_rounds(&on_disk, per_round);
        // A row group is written once 2^16 rows are buffered, after the round that reaches it:
        // every 66 rounds of 1000 rows.
        let per_group = ROW_GROUP_ROWS.div_ceil(per_round);
        assert_eq!(rounds.len(), (round as usize + 1) / per_group * per_group, "round {round}: rounds on disk");
        assert!(rounds.iter().copied().eq(0..rounds.len() as u64));
        seen_groups = seen_groups.max(rounds.len() / per_group);
    }
    assert!(seen_groups >= 2, "the test should cross several row groups");
    writer.close().unwrap();
    assert_eq!(whole_rounds(&decode_parquet(&path), per_round).len(), 200, "close writes the rows still buffered");
}

#[test]
fn a_parquet_table_resumed_from_a_mark_is_the_uninterrupted_file() {
    // Write 250 rounds of 700 rows with marks (checkpoints) after rounds 40 and 90; a second
    // writer stops after round 200 without closing (a kill), a row group having been written
    // after the mark at 90 (at round 184, the 65,536th row), and its file is cut inside that
    // row group (a kill inside its write: no footer). Resuming from the mark at 90 and writing
    // rounds 91..250 must give the uninterrupted file, byte for byte.
    let dir = scratch("tables", "resume");
    let (whole, killed) = (dir.join("whole.parquet"), dir.join("killed.parquet"));
    let per_round = 700;
    let write_rounds = |w: &mut MetricsParquet, rounds: std::ops::Range<u64>| {
        for round in rounds {
            w.write_round([(0, synthetic(round, per_round).as_slice())]).unwrap();
        }
    };
    let mut w = MetricsParquet::create(&whole).unwrap();
    write_rounds(&mut w, 0..41);
    w.mark().unwrap();
    write_rounds(&mut w, 41..91);
    w.mark().unwrap();
    write_rounds(&mut w, 91..250);
    w.close().unwrap();

    let mut k = MetricsParquet::create(&killed).unwrap();
    write_rounds(&mut k, 0..41);
    k.mark().unwrap();
    write_rounds(&mut k, 41..91);
    let mark = k.mark().unwrap();
    write_rounds(&mut k, 91..201);
    drop(k);
    let len = std::fs::metadata(&killed).unwrap().len();
    assert!(len > mark.bytes + mark.footer.as_ref().unwrap().len() as u64, "a row group was written after the mark");
    let file = std::fs::OpenOptions::new().write(true).open(&killed).unwrap();
    file.set_len(mark.bytes + 1000).unwrap();
    drop(file);
    assert!(ParquetRecordBatchReaderBuilder::try_new(File::open(&killed).unwrap()).is_err(), "a file cut inside a row group has no footer");

    let mut resumed = MetricsParquet::resume(&killed, &mark).unwrap();
    write_rounds(&mut resumed, 91..250);
    resumed.close().unwrap();
    assert_eq!(whole_rounds(&decode_parquet(&killed), per_round).len(), 250);
    assert!(bytes(&whole) == bytes(&killed), "the resumed file differs from the uninterrupted one");
}

/// The `metrics_bytes` and footer length of `dir/checkpoint.json`, if it is there and whole.
fn checkpoint_end(dir: &Path) -> Option<u64> {
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).ok()?).ok()?;
    Some(c["metrics_bytes"].as_u64()? + c["metrics_footer"].as_str()?.len() as u64 / 2)
}

#[test]
fn a_killed_parquet_run_resumes_to_the_bytes_of_an_uninterrupted_run() {
    let dir = scratch("tables", "kill");
    let scenario = write(&dir, "s.ron", &SCENARIO.replace("rounds: 2000", "rounds: 6000"));
    let s = scenario.to_str().unwrap();
    let args = ["--format", "parquet", "--checkpoint-every", "1000"];
    let whole = run(&dir, &scenario, "whole", &args);
    let killed = dir.join("killed");
    let mut child = coevo_command(&["run", s, "--out", killed.to_str().unwrap(), "-q", args[0], args[1], args[2], args[3]])
        .spawn()
        .expect("coevo starts");
    // Kill once a row group has been written after the first checkpoint, so that the resumed
    // run must drop rows.
    let metrics = killed.join("metrics.parquet");
    wait_until(&mut child, "a row group after the first checkpoint", || {
        checkpoint_end(&killed).is_some_and(|end| std::fs::metadata(&metrics).map_or(0, |m| m.len()) > end)
    });
    child.kill().expect("kill");
    child.wait().unwrap();
    let checkpoint: serde_json::Value = serde_json::from_slice(&bytes(&killed.join("checkpoint.json"))).unwrap();
    assert!(checkpoint["round"].as_u64().unwrap() < 6000);
    // Whatever the kill left, a kill inside the write of a row group leaves the worst: cut the
    // file there.
    let cut = checkpoint["metrics_bytes"].as_u64().unwrap() + 100;
    std::fs::OpenOptions::new().write(true).open(&metrics).unwrap().set_len(cut).unwrap();

    // Checkpoints end row groups: resumed with the same checkpoints, the row groups are the
    // uninterrupted run's.
    ok(&["resume", killed.to_str().unwrap(), "-q", "--checkpoint-every", "1000"]);
    for f in ["metrics.parquet", "aggregate.parquet", "phases.csv", "summary.json"] {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
    assert!(!killed.join("checkpoint.json").exists());
}

#[test]
fn the_aggregate_table_is_written_with_two_replicates_or_when_asked() {
    let dir = scratch("tables", "aggregate");
    let short = SCENARIO.replace("rounds: 2000", "rounds: 5");
    let cases = [
        ("one", short.replace("replicates: 2", "replicates: 1"), false),
        ("two", short.clone(), true),
        ("always", short.replace("replicates: 2", "replicates: 1").replace("seed: 31,", "seed: 31, output: (aggregate: Always),"), true),
        ("never", short.replace("seed: 31,", "seed: 31, output: (aggregate: Never),"), false),
    ];
    for (name, source, written) in cases {
        let scenario = write(&dir, &format!("{name}.ron"), &source);
        for format in ["csv", "parquet"] {
            let out = run(&dir, &scenario, &format!("{name}-{format}"), &["--format", format]);
            assert!(out.join(format!("metrics.{format}")).exists(), "{name}, {format}: no metrics table");
            assert_eq!(out.join(format!("aggregate.{format}")).exists(), written, "{name}, {format}: aggregate table");
        }
    }
}

#[test]
fn another_runs_tables_of_the_other_format_are_refused_then_removed_with_force() {
    let dir = scratch("tables", "stale");
    let scenario = write(&dir, "s.ron", &SCENARIO.replace("rounds: 2000", "rounds: 5"));
    let out = run(&dir, &scenario, "out", &[]);
    let o = out.to_str().unwrap();
    let s = scenario.to_str().unwrap();
    let refused = coevo(&["run", s, "--out", o, "--format", "parquet", "-q"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    for expected in ["metrics.csv", "output.format", "--force"] {
        assert!(message.contains(expected), "the error should name `{expected}`: {message}");
    }
    assert!(!out.join("metrics.parquet").exists(), "a refused run writes nothing");

    ok(&["run", s, "--out", o, "--format", "parquet", "--force", "-q"]);
    assert!(out.join("metrics.parquet").exists() && out.join("aggregate.parquet").exists());
    assert!(!out.join("metrics.csv").exists() && !out.join("aggregate.csv").exists(), "--force removes the CSV tables");
    // One replicate writes no aggregate: the other run's is removed too, not left to be read.
    ok(&["run", s, "--out", o, "--format", "parquet", "--replicates", "1", "--force", "-q"]);
    assert!(!out.join("aggregate.parquet").exists(), "--force removes an aggregate this run does not write");
}

#[test]
fn a_sweep_writes_its_points_in_the_format_asked_and_the_same_summary() {
    let dir = scratch("tables", "sweep");
    let source = SCENARIO
        .replace("rounds: 2000", "rounds: 30")
        .replace("    entities: [", "    sweep: Sweep(parameters: [(path: \"captioner.batch\", values: [50, 200])]),\n    entities: [");
    let scenario = write(&dir, "s.ron", &source);
    let sweep = |name: &str, format: &str| {
        let out = dir.join(name);
        ok(&["sweep", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", format, "-q"]);
        out
    };
    let (csv, parquet) = (sweep("csv", "csv"), sweep("parquet", "parquet"));
    assert!(bytes(&csv.join("sweep.csv")) == bytes(&parquet.join("sweep.csv")), "sweep.csv depends on the table format");
    for point in ["0000", "0001"] {
        let p = parquet.join("points").join(point);
        assert!(p.join("metrics.parquet").exists() && !p.join("metrics.csv").exists(), "point {point} is not in Parquet");
    }
}
