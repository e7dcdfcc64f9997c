//! `coevo data inspect FILE`: what coevo sees in a data file (rows, dimension, type, labels
//! and their counts) and what a scenario built on it would run into.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Dataset, Layout, MemoryLimit, memory_estimate};
use crate::models::Estimator;

/// The report of `coevo data inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The file read.
    pub file: PathBuf,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Number of rows `n`.
    pub rows: usize,
    /// Dimension `d`.
    pub dim: usize,
    /// The vectors' type as stored.
    pub dtype: String,
    /// Rows per label, labels `0..K`.
    pub counts: Vec<usize>,
    /// Memory the load took at its peak (see [`memory_estimate`]).
    pub memory: u64,
    /// What a scenario using the file at its own dimension would fail on, one line each.
    pub warnings: Vec<String>,
}

/// Reads `file` as a scenario's dataset would and reports it (a file that cannot be read is the
/// same error a scenario would show).
pub fn inspect(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<Inspection, super::DataError> {
    let data = Dataset::load(file, layout, limit)?;
    let mut warnings = Vec::new();
    let d = data.dim();
    let too_few: Vec<String> =
        (0..data.num_labels()).filter(|&i| data.count(i) <= d).map(|i| format!("{i} ({} rows)", data.count(i))).collect();
    if !too_few.is_empty() {
        warnings.push(format!(
            "labels with too few rows for a positive definite covariance in d = {d} (at least {} needed) without shrinkage: {}; an ImageModel with covariance: FromData needs shrinkage > 0",
            d + 1,
            too_few.join(", ")
        ));
    }
    for i in 0..data.num_labels() {
        if data.count(i) > d
            && let Err(why) = data.label_covariance(i, Estimator::Mle, 0.0)
        {
            warnings.push(why);
        }
        if data.count(i) >= 2 && data.label_covariance(i, Estimator::Mle, 0.5).is_err() {
            warnings.push(format!("label {i}: its rows are all identical; no shrinkage gives it a positive definite covariance"));
        }
    }
    Ok(Inspection {
        file: file.to_path_buf(),
        sha256: data.sha256().to_string(),
        rows: data.rows(),
        dim: d,
        dtype: data.dtype().to_string(),
        counts: (0..data.num_labels()).map(|i| data.count(i)).collect(),
        memory: memory_estimate(data.rows() as u64, d as u64),
        warnings,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file:      {}", self.file.display())?;
        writeln!(f, "sha256:    {}", self.sha256)?;
        writeln!(f, "rows:      {}", self.rows)?;
        writeln!(f, "dimension: {} ({})", self.dim, self.dtype)?;
        writeln!(f, "memory:    {} bytes while loading", self.memory)?;
        writeln!(f, "labels:    K = {} (a TextModel with initial: FromData gets K = {} texts)", self.counts.len(), self.counts.len())?;
        let n = self.rows as f64;
        for (i, c) in self.counts.iter().enumerate() {
            writeln!(f, "  {i:>4}  {c:>8} rows  p0 = {:.6}", *c as f64 / n)?;
        }
        if self.warnings.is_empty() {
            writeln!(f, "ok: every label can give an ImageModel (dim: {}) a positive definite covariance without shrinkage", self.dim)?;
        }
        for w in &self.warnings {
            writeln!(f, "would fail: {w}")?;
        }
        Ok(())
    }
}
