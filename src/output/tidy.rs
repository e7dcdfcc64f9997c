//! Reading back the tidy tables a run writes (`metrics`, `aggregate` in either format,
//! `phases.csv`): what resume, the sweep summary, diagnostics and plots consume. The readers of
//! `metrics` and `aggregate` take either format (by the file's extension) and yield the same
//! rows: a Parquet table decodes to the `f64`s its CSV twin parses to.
//!
//! The CSV writers never quote: model names contain no comma, quote or newline (validation), and
//! values are Rust's shortest round-trip decimals, so splitting on commas and parsing with
//! `str::parse::<f64>` gives back exactly the `f64`s that were written (`NaN` and `inf` too).

use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::aggregate::{AGGREGATE_HEADER, AggregateRow, Aggregator, Stats};
use crate::metrics::MetricRow;

/// One row of the metrics table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Replicate index.
    pub replicate: u64,
    /// Round (0 = initial state).
    pub round: u64,
    /// Model name.
    pub model: String,
    /// Text index, for per-text metrics.
    pub text: Option<u32>,
    /// Metric name.
    pub metric: String,
    /// Value.
    pub value: f64,
}

fn invalid(path: &Path, line: usize, message: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}:{line}: {message}", path.display()))
}

/// Reads a headed CSV file line by line, checking its header, and calls `each` with the line
/// number (1-based) and the fields of every data row.
pub fn read_csv(path: &Path, header: &str, mut each: impl FnMut(usize, &[&str]) -> io::Result<()>) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim_end() != header.trim_end() {
        return Err(invalid(path, 1, format!("expected the header `{}`, found `{}`", header.trim_end(), line.trim_end())));
    }
    let columns = header.trim_end().split(',').count();
    let mut number = 1;
    loop {
        line.clear();
        number += 1;
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            return Err(invalid(path, number, "the last line is incomplete (the run was killed while writing it)"));
        }
        let fields: Vec<&str> = line.trim_end_matches(['\n', '\r']).split(',').collect();
        if fields.len() != columns {
            return Err(invalid(path, number, format!("expected {columns} fields, found {}", fields.len())));
        }
        each(number, &fields)?;
    }
}

/// Parses a field, naming the file and line on failure.
pub fn parse<T: std::str::FromStr>(path: &Path, line: usize, what: &str, s: &str) -> io::Result<T> {
    s.parse().map_err(|_| invalid(path, line, format!("{what} `{s}` is not valid")))
}

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == crate::scenario::TableFormat::Parquet.extension())
}

/// Reads a metrics table (`metrics.csv`, `metrics.parquet`, or a table of the same columns such
/// as a stability run's `divergence.csv`), calling `each` for every row in file order.
pub fn read_metrics(path: &Path, mut each: impl FnMut(MetricsRow)) -> io::Result<()> {
    if is_parquet(path) {
        return super::parquet::read_metrics(path, each);
    }
    read_csv(path, crate::output::METRICS_HEADER, |n, f| {
        each(MetricsRow {
            replicate: parse(path, n, "replicate", f[0])?,
            round: parse(path, n, "round", f[1])?,
            model: f[2].to_string(),
            text: if f[3].is_empty() { None } else { Some(parse(path, n, "text", f[3])?) },
            metric: f[4].to_string(),
            value: parse(path, n, "value", f[5])?,
        });
        Ok(())
    })
}

/// Reads an aggregate table (`aggregate.csv` or `aggregate.parquet`), calling `each` for
/// every row in file order.
pub fn read_aggregate(path: &Path, mut each: impl FnMut(AggregateRow<'_>)) -> io::Result<()> {
    if is_parquet(path) {
        return super::parquet::read_aggregate(path, each);
    }
    read_csv(path, AGGREGATE_HEADER, |n, f| {
        let stats = Stats {
            n: parse(path, n, "n", f[4])?,
            mean: parse(path, n, "mean", f[5])?,
            se: parse(path, n, "se", f[6])?,
            q05: parse(path, n, "q05", f[7])?,
            q50: parse(path, n, "q50", f[8])?,
            q95: parse(path, n, "q95", f[9])?,
        };
        let text = if f[2].is_empty() { None } else { Some(parse(path, n, "text", f[2])?) };
        each(AggregateRow { round: parse(path, n, "round", f[0])?, model: f[1], text, metric: f[3], stats });
        Ok(())
    })
}

/// The rows of the aggregate table computed from a metrics table (either format): what a run
/// that wrote no aggregate table (one replicate, or `aggregate: Never`) would have written.
pub fn aggregate_metrics(path: &Path, mut each: impl FnMut(AggregateRow<'_>)) -> io::Result<()> {
    let mut aggregator = Aggregator::default();
    // One round's rows, per replicate in file (replicate) order.
    let mut round: Vec<(u64, Vec<MetricRow>)> = Vec::new();
    let mut flush = |round: &mut Vec<(u64, Vec<MetricRow>)>| {
        aggregator.round(round.iter().map(|(_, rows)| rows.as_slice())).for_each(&mut each);
        round.clear();
    };
    replay_rounds(path, |replicate, rows| {
        if round.first().is_some_and(|(_, first)| first[0].round != rows[0].round) {
            flush(&mut round);
        }
        round.push((replicate, rows.to_vec()));
    })?;
    flush(&mut round);
    Ok(())
}

/// Reads a metrics table (either format) back as the round loop produced it:
/// `each(replicate, rows)` for every replicate's rows of every round, in file order (what
/// [`aggregate_metrics`] folds into statistics over replicates).
pub fn replay_rounds(path: &Path, mut each: impl FnMut(u64, &[MetricRow])) -> io::Result<()> {
    let mut rows: Vec<MetricRow> = Vec::new();
    let mut key = (0, 0);
    read_metrics(path, |row| {
        if !rows.is_empty() && key != (row.replicate, row.round) {
            each(key.0, &rows);
            rows.clear();
        }
        key = (row.replicate, row.round);
        rows.push(MetricRow { round: row.round, model: row.model.into(), text: row.text, metric: row.metric.into(), value: row.value });
    })?;
    if !rows.is_empty() {
        each(key.0, &rows);
    }
    Ok(())
}
