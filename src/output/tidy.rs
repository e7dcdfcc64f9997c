//! Reading back the tidy tables a run writes (`metrics.csv`, `aggregate.csv`, `phases.csv`):
//! what resume, the sweep summary, diagnostics and plots consume.
//!
//! The writers never quote: model names contain no comma, quote or newline (validation), and
//! values are Rust's shortest round-trip decimals, so splitting on commas and parsing with
//! `str::parse::<f64>` gives back exactly the `f64`s that were written (`NaN` and `inf` too).

use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// One row of `metrics.csv`.
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

/// Reads `metrics.csv`, calling `each` for every row in file order.
pub fn read_metrics(path: &Path, mut each: impl FnMut(MetricsRow)) -> io::Result<()> {
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
