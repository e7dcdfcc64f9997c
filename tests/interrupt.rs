//! SIGTERM (a scheduler's time limit, `kill`) and SIGINT (Ctrl-C) stop a run cleanly: the
//! round in flight is finished and written whole, the manifest says `interrupted` with the
//! last complete round, and the exit code is 130; a Parquet table is closed (its footer
//! written) with every completed round. (SIGKILL cannot be caught; what it can leave is
//! documented on `MetricsWriter::write_round` and `coevo::output::parquet`, and tested in
//! `tests/cli.rs` and `tests/tables.rs`.)
//!
//! Unix only: declared under `#[cfg(unix)]` in `tests/tests.rs` (signals are sent with `kill`).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{coevo_command, wait_until};

/// Starts a run of `coevolve.ron` (10 million rounds, `extra` flags) into `dir`, sends it
/// `signal` once `table` holds `bytes` bytes, checks it exits 130 with the manifest saying
/// `interrupted`, and returns the manifest's last completed round.
fn signal_long_run(signal: &str, dir: &Path, extra: &[&str], table: &str, bytes: u64) -> u64 {
    let _ = std::fs::remove_dir_all(dir);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/coevolve.ron");
    let mut args = vec!["run", scenario.to_str().unwrap(), "--rounds", "10000000", "-q", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut child = coevo_command(&args).stderr(Stdio::piped()).spawn().expect("coevo starts");
    let path = dir.join(table);
    wait_until(&mut child, &format!("{bytes} bytes of {table}"), || std::fs::metadata(&path).map_or(0, |m| m.len()) >= bytes);
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("coevo exits");
    assert_eq!(out.status.code(), Some(130), "{signal}: stderr {}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted");
    manifest["rounds_completed"].as_u64().unwrap()
}

fn interrupt_with(signal: &str, dir: &Path) {
    let last = signal_long_run(signal, dir, &[], "metrics.csv", 200_000);
    let metrics = dir.join("metrics.csv");
    let table = std::fs::read_to_string(&metrics).unwrap();
    assert!(table.ends_with('\n'), "{signal}: the table ends mid-line");
    let mut rows_per_round = std::collections::BTreeMap::<u64, usize>::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 6, "{signal}: incomplete row {line:?}");
        fields[5].parse::<f64>().unwrap_or_else(|_| panic!("{signal}: bad value in {line:?}"));
        *rows_per_round.entry(fields[1].parse().unwrap()).or_default() += 1;
    }
    assert_eq!(*rows_per_round.keys().next_back().unwrap(), last, "{signal}: the manifest names the last round in the table");
    let per_round = rows_per_round[&0];
    assert!(rows_per_round.values().all(|&n| n == per_round), "{signal}: a round is incomplete");
    assert_eq!(rows_per_round.len() as u64, last + 1);
}

/// Sends `signal` to a Parquet run once its first row group is on disk: the file is closed
/// with every completed round (a complete Parquet file, whole rounds, the last the manifest's).
fn interrupt_parquet(signal: &str, dir: &Path) {
    // A new table is a valid empty file of a few hundred bytes; a row group makes it grow.
    let last = signal_long_run(signal, dir, &["--format", "parquet"], "metrics.parquet", 20_000);
    let metrics = dir.join("metrics.parquet");
    let mut rows_per_round = std::collections::BTreeMap::<u64, usize>::new();
    coevo::output::tidy::read_metrics(&metrics, |row| *rows_per_round.entry(row.round).or_default() += 1)
        .unwrap_or_else(|e| panic!("{signal}: metrics.parquet is not readable: {e}"));
    assert_eq!(*rows_per_round.keys().next_back().unwrap(), last, "{signal}: the manifest names the last round in the table");
    let per_round = rows_per_round[&0];
    assert!(rows_per_round.values().all(|&n| n == per_round), "{signal}: a round is incomplete");
    assert_eq!(rows_per_round.len() as u64, last + 1);
}

#[test]
fn sigterm_and_sigint_stop_after_a_whole_round() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interrupt");
    interrupt_with("TERM", &base.join("term"));
    interrupt_with("INT", &base.join("int"));
}

#[test]
fn sigterm_and_sigint_close_a_parquet_table_with_every_round() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interrupt");
    interrupt_parquet("TERM", &base.join("parquet_term"));
    interrupt_parquet("INT", &base.join("parquet_int"));
}
