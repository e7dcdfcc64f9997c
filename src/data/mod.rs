//! Datasets: a user's labelled embeddings, read once from the files they already have (docs/model.md
//! section 10).
//!
//! A [`Dataset`] is `n` labelled vectors `(x_j, v_j)`: label `x_j` in `0..K` (a text), `v_j` in
//! `R^d` (an image embedding). It is read from numpy `.npy`/`.npz`, CSV or Parquet
//! (`formats`), checked (finite vectors, integer labels, every label `0..K` with at least one
//! row), grouped by label, and summarised once into each label's sufficient statistics and the
//! marginal ones: initial models, the empirical real-data source (a bootstrap, [`Dataset::resample`])
//! and the metrics against the data all read these. A run loads each dataset once and shares it
//! between replicates (`Arc`).
//!
//! - this file: the type, its invariants, loading with a memory estimate, the file's hash;
//! - `formats`: one reader per file format, each through a well-kept crate;
//! - `inspect`: what `coevo data inspect` prints, including what would fail.

mod formats;
mod inspect;

use std::fmt;
use std::path::{Path, PathBuf};

use rand::RngExt;
use sha2::{Digest, Sha256};

pub use inspect::{Inspection, inspect};

use nalgebra::{DMatrix, SymmetricEigen};

use crate::models::Estimator;
use crate::models::gaussian::{RELATIVE_FLOOR, RealSource, SufficientStats, shrink_to_isotropic};
use crate::rng::Stream;

/// Something wrong with a data file: which file, where in it, and what would be valid.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    /// The file (as resolved: relative paths joined to the scenario's folder).
    pub file: PathBuf,
    /// Where in the file, when known: `line 14, column 3 (`x2`)`, `array `labels``, `row 12`.
    pub place: Option<String>,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl DataError {
    pub(crate) fn new(file: &Path, place: Option<String>, message: impl Into<String>) -> Self {
        DataError { file: file.to_path_buf(), place, message: message.into() }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Some(place) => write!(f, "{}: {place}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for DataError {}

/// Where the vectors and the labels are inside a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `.npz`: the vectors' array (default `vectors`). CSV and Parquet: the column holding them
    /// (a Parquet list column), or, when no column has this exact name, every column whose name
    /// starts with it, in file order; default: every column but the labels'. `.npy`: unused
    /// (the file is the `n x d` array).
    pub vectors: Option<String>,
    /// `.npz`: the labels' array; CSV and Parquet: the labels' column; `.npy`: the path of a
    /// second `.npy` file holding them (relative to the same folder as the data file's path).
    pub labels: String,
}

/// The default name of the labels' array or column.
pub const DEFAULT_LABELS: &str = "labels";
/// The default name of the vectors' array in an `.npz` file.
pub const DEFAULT_VECTORS: &str = "vectors";

impl Default for Layout {
    fn default() -> Self {
        Layout { vectors: None, labels: DEFAULT_LABELS.to_string() }
    }
}

/// How much memory loading may take: a dataset whose estimate exceeds it is refused before
/// anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// Where the number comes from (for the message): the scenario's `max_memory_mb`, or the
    /// memory the system reports available.
    pub stated: bool,
}

impl MemoryLimit {
    /// `max_mb` mebibytes if given, else the memory the system reports available (Linux
    /// `/proc/meminfo`, `MemAvailable`), else no limit.
    pub fn new(max_mb: Option<u64>) -> Option<MemoryLimit> {
        if let Some(mb) = max_mb {
            return Some(MemoryLimit { bytes: mb.saturating_mul(1 << 20), stated: true });
        }
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(MemoryLimit { bytes: kib.saturating_mul(1024), stated: false })
    }
}

/// Bytes loading `rows` vectors of `d` coordinates takes at its peak: the table in file order
/// and its copy grouped by label, each `rows x (d + 1)` numbers of 8 bytes (the label stored
/// as one more number).
pub fn memory_estimate(rows: u64, d: u64) -> u64 {
    rows.saturating_mul(d.saturating_add(1)).saturating_mul(16)
}

/// Refuses a load whose [`memory_estimate`] exceeds `limit`, naming both.
pub(crate) fn check_memory(file: &Path, rows: u64, d: u64, limit: Option<MemoryLimit>, how: &str) -> Result<(), DataError> {
    let Some(limit) = limit else { return Ok(()) };
    let needed = memory_estimate(rows, d);
    if needed > limit.bytes {
        let source = if limit.stated { "the dataset's max_memory_mb" } else { "the memory the system reports available" };
        return Err(DataError::new(
            file,
            None,
            format!(
                "too large to load: {rows} rows x {d} coordinates ({how}) need about {} (2 x rows x (d + 1) x 8 bytes), more than {} ({source}); reduce the rows or the dimension (e.g. PCA) first{}",
                human_bytes(needed),
                human_bytes(limit.bytes),
                if limit.stated { ", or raise max_memory_mb" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// `b` bytes in binary units, e.g. `7.5 GiB` (what messages about sizes show).
pub fn human_bytes(b: impl Into<u128>) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let b: u128 = b.into();
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// A table as read from a file, before any check of its labels: row-major vectors in file
/// order and one label per row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub d: usize,
    pub vectors: Vec<f64>,
    pub labels: Vec<i64>,
    /// The vectors' type as stored (`float64`, `float32`; `text` for CSV).
    pub dtype: String,
}

/// `n` labelled vectors, grouped by label, with every label `0..K` present, every coordinate
/// finite, and each label's sufficient statistics computed once (see the module docs).
pub struct Dataset {
    file: PathBuf,
    sha256: String,
    dtype: String,
    d: usize,
    /// Row-major, grouped by label (file order within a label).
    vectors: Vec<f64>,
    /// Rows of label `i` are `offsets[i]..offsets[i + 1]`.
    offsets: Vec<usize>,
    by_label: Vec<SufficientStats>,
    marginal: SufficientStats,
}

impl fmt::Debug for Dataset {
    /// A summary: the vectors themselves would flood any message that prints a scenario.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("file", &self.file)
            .field("sha256", &self.sha256)
            .field("rows", &self.rows())
            .field("dim", &self.d)
            .field("labels", &self.num_labels())
            .finish()
    }
}

impl PartialEq for Dataset {
    /// Two datasets are the same data when their files hash alike and they were read alike.
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256 && self.d == other.d && self.offsets == other.offsets && self.vectors == other.vectors
    }
}

impl Dataset {
    /// Reads `file` (format by extension: `.npy`, `.npz`, `.csv`, `.parquet`/`.pq`) with
    /// `layout`, refusing it before allocating if it would take more than `limit`, and checks it.
    pub fn load(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<Dataset, DataError> {
        let (table, files) = formats::read(file, layout, limit)?;
        let mut hash = Sha256::new();
        for f in &files {
            let mut reader = std::fs::File::open(f).map_err(|e| DataError::new(f, None, format!("cannot read: {e}")))?;
            std::io::copy(&mut reader, &mut hash).map_err(|e| DataError::new(f, None, format!("cannot read: {e}")))?;
        }
        Dataset::from_table(file, format!("{:x}", hash.finalize()), table)
    }

    /// Checks a table and groups it by label.
    pub(crate) fn from_table(file: &Path, sha256: String, table: Table) -> Result<Dataset, DataError> {
        let Table { d, vectors, labels, dtype } = table;
        let n = labels.len();
        if n == 0 || d == 0 {
            return Err(DataError::new(
                file,
                None,
                format!("no data: {n} rows of {d} coordinates; a dataset needs at least one row and one coordinate"),
            ));
        }
        if vectors.len() != n * d {
            return Err(DataError::new(file, None, format!("{} vector values for {n} labels of dimension {d}", vectors.len())));
        }
        if let Some(at) = vectors.iter().position(|v| !v.is_finite()) {
            return Err(DataError::new(
                file,
                Some(format!("row {} (0-based), coordinate {}", at / d, at % d)),
                format!("the vector holds {}; every coordinate must be a finite number (drop or impute the row first)", vectors[at]),
            ));
        }
        if let Some(row) = labels.iter().position(|&l| l < 0) {
            return Err(DataError::new(
                file,
                Some(format!("row {row} (0-based)")),
                format!("label {} is negative; labels must be the integers 0 to K - 1 (one per text)", labels[row]),
            ));
        }
        let max = *labels.iter().max().expect("n >= 1");
        if max as u64 >= n as u64 {
            let row = labels.iter().position(|&l| l == max).expect("the maximum is a label");
            return Err(DataError::new(
                file,
                Some(format!("row {row} (0-based)")),
                format!("label {max} with only {n} rows: labels must be the integers 0 to K - 1, each with at least one row"),
            ));
        }
        let k = max as usize + 1;
        let mut counts = vec![0usize; k];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        if let Some(empty) = counts.iter().position(|&c| c == 0) {
            return Err(DataError::new(
                file,
                None,
                format!(
                    "label {empty} has no rows, but labels run up to {}: every label from 0 to the largest needs at least one row (renumber the labels 0 to K - 1)",
                    k - 1
                ),
            ));
        }
        let mut offsets = Vec::with_capacity(k + 1);
        offsets.push(0);
        for c in &counts {
            offsets.push(offsets.last().expect("non-empty") + c);
        }
        let mut next = offsets[..k].to_vec();
        let mut grouped = vec![0.0; n * d];
        for (row, &l) in labels.iter().enumerate() {
            let slot = next[l as usize];
            next[l as usize] += 1;
            grouped[slot * d..(slot + 1) * d].copy_from_slice(&vectors[row * d..(row + 1) * d]);
        }
        drop(vectors);
        let by_label = (0..k)
            .map(|i| {
                let mut s = SufficientStats::empty(d);
                s.set_from(&grouped[offsets[i] * d..offsets[i + 1] * d], d);
                s
            })
            .collect();
        let mut marginal = SufficientStats::empty(d);
        marginal.set_from(&grouped, d);
        Ok(Dataset { file: file.to_path_buf(), sha256, dtype, d, vectors: grouped, offsets, by_label, marginal })
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// SHA-256 (hex) of the file's bytes (for a `.npy` pair, of the vectors' file then the
    /// labels' file): recorded in the manifest, checked on resume.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The vectors' type as stored in the file (`float64`, `float32`, or `text` for CSV).
    pub fn dtype(&self) -> &str {
        &self.dtype
    }

    /// Number of rows `n`.
    pub fn rows(&self) -> usize {
        self.vectors.len() / self.d
    }

    /// Dimension `d` of the vectors.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of labels `K` (every label `0..K` has at least one row).
    pub fn num_labels(&self) -> usize {
        self.by_label.len()
    }

    /// Rows of label `i`, `n_i`.
    pub fn count(&self, label: usize) -> usize {
        self.offsets[label + 1] - self.offsets[label]
    }

    /// The vectors of label `i`, row-major `n_i x d`.
    pub fn label_rows(&self, label: usize) -> &[f64] {
        &self.vectors[self.offsets[label] * self.d..self.offsets[label + 1] * self.d]
    }

    /// Count, mean and scatter of label `i`'s vectors.
    pub fn label_stats(&self, label: usize) -> &SufficientStats {
        &self.by_label[label]
    }

    /// Count, mean and scatter of all vectors (the data's marginal moments).
    pub fn marginal(&self) -> &SufficientStats {
        &self.marginal
    }

    /// The empirical label distribution `n_i / n` (the initial text model `p0` from data, and
    /// the distribution of real captions).
    pub fn label_distribution(&self) -> Vec<f64> {
        let n = self.rows() as f64;
        (0..self.num_labels()).map(|i| self.count(i) as f64 / n).collect()
    }

    /// Label `i`'s covariance `S_i` under `estimator` (divisor `n_i` or `n_i - 1`), shrunk
    /// towards its isotropic part, `(1 - s) S_i + s (tr S_i / d) I` (docs/model.md section 10).
    /// An estimate that is not positive definite (its smallest eigenvalue at or below
    /// [`RELATIVE_FLOOR`] times its largest: the floor of the factorisation) is an error naming
    /// the label, its count and what would do, never a silent jitter.
    pub fn label_covariance(&self, label: usize, estimator: Estimator, shrinkage: f64) -> Result<DMatrix<f64>, String> {
        covariance_of(&self.by_label[label], estimator, shrinkage).map_err(|why| format!("label {label} {why}"))
    }

    /// The marginal covariance of all vectors, as [`label_covariance`](Self::label_covariance).
    pub fn marginal_covariance(&self, estimator: Estimator, shrinkage: f64) -> Result<DMatrix<f64>, String> {
        covariance_of(&self.marginal, estimator, shrinkage).map_err(|why| format!("the whole dataset {why}"))
    }

    /// Appends `n` vectors of label `label` drawn uniformly with replacement from its rows (the
    /// bootstrap of the empirical real-data source), one uniform index per draw from `rng`.
    pub fn resample(&self, label: usize, n: usize, rng: &mut Stream, out: &mut Vec<f64>) {
        let rows = self.label_rows(label);
        let count = self.count(label);
        out.reserve(n * self.d);
        for _ in 0..n {
            let j = rng.random_range(0..count);
            out.extend_from_slice(&rows[j * self.d..(j + 1) * self.d]);
        }
    }
}

impl RealSource for Dataset {
    fn num_labels(&self) -> usize {
        Dataset::num_labels(self)
    }

    fn resample(&self, label: usize, n: usize, rng: &mut Stream, out: &mut Vec<f64>) {
        Dataset::resample(self, label, n, rng, out)
    }
}

/// See [`Dataset::label_covariance`]; the error completes "label i ...".
fn covariance_of(stats: &SufficientStats, estimator: Estimator, shrinkage: f64) -> Result<DMatrix<f64>, String> {
    let (n, d) = (stats.count as usize, stats.mean.len());
    if n < 2 {
        return Err(format!(
            "has {n} row: a covariance needs at least 2 rows (and {} for a positive definite one in d = {d} without shrinkage)",
            d + 1
        ));
    }
    let sample = &stats.scatter / estimator.divisor(stats.count);
    let sigma = if shrinkage > 0.0 { shrink_to_isotropic(&sample, shrinkage) } else { sample };
    let eig = SymmetricEigen::new(sigma.clone()).eigenvalues;
    let (min, max) = (eig.min(), eig.max());
    if max > 0.0 && min > RELATIVE_FLOOR * max {
        return Ok(sigma);
    }
    Err(if max <= 0.0 {
        format!("has {n} rows, all identical: their covariance is zero, and no shrinkage makes it positive definite")
    } else if shrinkage > 0.0 {
        format!(
            "has {n} rows whose covariance, shrunk by {shrinkage}, is still not positive definite (smallest eigenvalue {min:e}, largest {max:e}); raise the shrinkage"
        )
    } else if n <= d {
        format!(
            "has {n} rows: too few for a positive definite covariance in d = {d} (it needs at least {}); give the image model `shrinkage` > 0, or reduce the dimension",
            d + 1
        )
    } else {
        format!(
            "has {n} rows, but they span fewer than d = {d} dimensions: their covariance is singular (smallest eigenvalue {min:e}, largest {max:e}); give the image model `shrinkage` > 0"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(labels: Vec<i64>, vectors: Vec<f64>, d: usize) -> Table {
        Table { d, vectors, labels, dtype: "float64".into() }
    }

    #[test]
    fn groups_rows_by_label_in_file_order() {
        let t = table(vec![1, 0, 1, 0, 2], vec![10.0, 0.0, 11.0, 1.0, 20.0], 1);
        let data = Dataset::from_table(Path::new("x"), String::new(), t).unwrap();
        assert_eq!((data.rows(), data.dim(), data.num_labels()), (5, 1, 3));
        assert_eq!(data.label_rows(0), &[0.0, 1.0]);
        assert_eq!(data.label_rows(1), &[10.0, 11.0]);
        assert_eq!(data.label_distribution(), vec![0.4, 0.4, 0.2]);
        assert_eq!(data.label_stats(1).mean[0], 10.5);
        assert_eq!(data.marginal().count, 5.0);
    }

    #[test]
    fn refuses_gaps_negative_labels_and_non_finite_values() {
        let gap = Dataset::from_table(Path::new("x"), String::new(), table(vec![0, 2, 2], vec![0.0, 1.0, 2.0], 1)).unwrap_err();
        assert!(gap.message.contains("label 1 has no rows"), "{gap}");
        let negative = Dataset::from_table(Path::new("x"), String::new(), table(vec![0, -1], vec![0.0, 1.0], 1)).unwrap_err();
        assert!(negative.message.contains("negative") && negative.place.as_deref() == Some("row 1 (0-based)"), "{negative}");
        let beyond = Dataset::from_table(Path::new("x"), String::new(), table(vec![0, 5], vec![0.0, 1.0], 1)).unwrap_err();
        assert!(beyond.message.contains("label 5 with only 2 rows"), "{beyond}");
        let nan = Dataset::from_table(Path::new("x"), String::new(), table(vec![0, 0], vec![0.0, 1.0, f64::NAN, 2.0], 2)).unwrap_err();
        assert_eq!(nan.place.as_deref(), Some("row 1 (0-based), coordinate 0"), "{nan}");
    }

    #[test]
    fn memory_is_refused_with_an_estimate() {
        let limit = Some(MemoryLimit { bytes: 1000, stated: true });
        let e = check_memory(Path::new("x"), 100, 9, limit, "from the header").unwrap_err();
        assert!(e.message.contains("15.6 KiB") && e.message.contains("1000 B"), "{e}");
        assert!(check_memory(Path::new("x"), 5, 9, limit, "").is_ok());
    }
}
