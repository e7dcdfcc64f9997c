//! The aggregate table: every metric summarised over replicates, round by round; the
//! [`Aggregator`] that computes it (for either format, and for `coevo plot` from the metrics of
//! a run that wrote none) and the `aggregate.csv` writer (`aggregate.parquet`:
//! [`crate::output::parquet`]).
//!
//! Columns: `round,model,text,metric,n,mean,se,q05,q50,q95`. For each round, model, text
//! (empty for model-level metrics) and metric, over the replicates that reported a value that
//! is not NaN (`n` of them; a Matthew index is NaN when the ranking is all ties):
//! - `mean`: the sample mean;
//! - `se`: its standard error `s / sqrt(n)`, `s` the sample standard deviation (divisor
//!   `n - 1`); NaN when `n < 2`;
//! - `q05`, `q50`, `q95`: quantiles by linear interpolation between order statistics
//!   (Hyndman and Fan's type 7, numpy's default): `q(a) = x_(h) + (h - floor h)(x_(h+1) - x_(h))`
//!   with `h = a (n - 1)` on the sorted values, 0-based.
//!
//! Rows keep the order in which keys first appear, replicate by replicate; the replicates of
//! a round are folded in replicate order, so the file is identical whatever the thread count.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use crate::metrics::{MetricRow, format_value};

/// Header of `aggregate.csv`.
pub const AGGREGATE_HEADER: &str = "round,model,text,metric,n,mean,se,q05,q50,q95\n";

/// Summary statistics of one metric over replicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Values that were not NaN.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean (NaN for `n < 2`).
    pub se: f64,
    /// 5% quantile.
    pub q05: f64,
    /// Median.
    pub q50: f64,
    /// 95% quantile.
    pub q95: f64,
}

impl Stats {
    /// Statistics of `values`, NaNs left out.
    pub fn of(values: &[f64]) -> Stats {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        let n = v.len();
        if n == 0 {
            return Stats { n, mean: f64::NAN, se: f64::NAN, q05: f64::NAN, q50: f64::NAN, q95: f64::NAN };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let se = if n < 2 {
            f64::NAN
        } else {
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        };
        v.sort_by(f64::total_cmp);
        Stats { n, mean, se, q05: quantile(&v, 0.05), q50: quantile(&v, 0.5), q95: quantile(&v, 0.95) }
    }
}

/// Type-7 quantile of sorted, non-empty `v`.
pub fn quantile(v: &[f64], a: f64) -> f64 {
    let h = a * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = h - lo as f64;
    if frac == 0.0 || v[lo] == v[hi] { v[lo] } else { v[lo] + frac * (v[hi] - v[lo]) }
}

type Key = (Arc<str>, Option<u32>, Arc<str>);

/// One row of the aggregate table: a metric of a model (of a text, for per-text metrics) at a
/// round, summarised over the replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow<'a> {
    /// Round.
    pub round: u64,
    /// Model name.
    pub model: &'a str,
    /// Text index, for per-text metrics.
    pub text: Option<u32>,
    /// Metric name.
    pub metric: &'a str,
    /// The statistics over replicates.
    pub stats: Stats,
}

/// Groups one round's rows of every replicate by model, text and metric, and summarises each
/// group: what the aggregate table holds, whatever its format (and what `coevo plot` computes
/// from the metrics of a run that wrote no aggregate table). Its buffers are reused from round
/// to round.
#[derive(Debug, Default)]
pub struct Aggregator {
    index: HashMap<Key, usize>,
    keys: Vec<(Key, u64)>,
    values: Vec<Vec<f64>>,
}

impl Aggregator {
    /// Summarises one round's rows of every replicate (in replicate order): one row per key,
    /// in the order keys first appear.
    pub fn round<'a>(&mut self, replicates: impl IntoIterator<Item = &'a [MetricRow]>) -> impl Iterator<Item = AggregateRow<'_>> {
        self.index.clear();
        self.keys.clear();
        for v in &mut self.values {
            v.clear();
        }
        for rows in replicates {
            for row in rows {
                let key = (row.model.clone(), row.text, row.metric.clone());
                let i = match self.index.get(&key) {
                    Some(&i) => i,
                    None => {
                        let i = self.keys.len();
                        self.index.insert(key.clone(), i);
                        self.keys.push((key, row.round));
                        if self.values.len() <= i {
                            self.values.push(Vec::new());
                        }
                        i
                    }
                };
                self.values[i].push(row.value);
            }
        }
        self.keys.iter().zip(&self.values).map(|(((model, text, metric), round), values)| AggregateRow {
            round: *round,
            model,
            text: *text,
            metric,
            stats: Stats::of(values),
        })
    }
}

/// Appends one block of rows per round to `aggregate.csv`.
pub struct AggregateWriter {
    file: File,
    line: String,
    aggregator: Aggregator,
    /// Bytes of the header and the whole rounds written (see [`super::append_whole`]).
    whole: u64,
}

impl AggregateWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut file = super::files::create(path)?;
        file.write_all(AGGREGATE_HEADER.as_bytes())?;
        file.flush()?;
        Ok(Self::with_file(file, AGGREGATE_HEADER.len() as u64))
    }

    /// Opens an existing `aggregate.csv` to append to (resuming a run).
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = super::files::append(path)?;
        let whole = file.metadata()?.len();
        Ok(Self::with_file(file, whole))
    }

    fn with_file(file: File, whole: u64) -> Self {
        AggregateWriter { file, line: String::new(), aggregator: Aggregator::default(), whole }
    }

    /// Summarises one round's rows of every replicate (in replicate order) and appends them
    /// with a single write.
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = &'a [MetricRow]>) -> io::Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        for AggregateRow { round, model, text, metric, stats: s } in self.aggregator.round(replicates) {
            let _ = write!(self.line, "{round},{model},");
            if let Some(t) = text {
                let _ = write!(self.line, "{t}");
            }
            let _ = writeln!(
                self.line,
                ",{metric},{},{},{},{},{},{}",
                s.n,
                format_value(s.mean),
                format_value(s.se),
                format_value(s.q05),
                format_value(s.q50),
                format_value(s.q95)
            );
        }
        super::append_whole(&mut self.file, self.line.as_bytes(), &mut self.whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_hand_computed_values() {
        let s = Stats::of(&[3.0, 1.0, f64::NAN, 2.0, 4.0]);
        assert_eq!(s.n, 4);
        assert_eq!(s.mean, 2.5);
        // Sample variance of 1..4 is 5/3; se = sqrt(5/3 / 4).
        assert!((s.se - (5.0f64 / 12.0).sqrt()).abs() < 1e-15);
        // h = 0.05 * 3 = 0.15: 1 + 0.15 * (2 - 1).
        assert!((s.q05 - 1.15).abs() < 1e-15);
        assert_eq!(s.q50, 2.5);
        assert!((s.q95 - 3.85).abs() < 1e-15);
        let one = Stats::of(&[7.0]);
        assert_eq!((one.n, one.mean, one.q05, one.q95), (1, 7.0, 7.0, 7.0));
        assert!(one.se.is_nan());
        assert!(Stats::of(&[f64::NAN]).mean.is_nan());
    }
}
