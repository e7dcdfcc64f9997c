//! Designs of a sweep: which points a `sweep` section stands for.
//!
//! A grid (the Cartesian product of each parameter's values) grows as `levels^k`: six
//! parameters at five levels are 15,625 points. The other designs choose the points otherwise:
//! - `Zip`: the values of every parameter paired index by index (matched settings);
//! - `Random(n)`: `n` points drawn uniformly in the ranges (`min`, `max`, optionally on a log
//!   scale);
//! - `LatinHypercube(n)`: `n` points with exactly one in each of the `n` equal strata of every
//!   parameter's range (McKay, Beckman and Conover 1979);
//! - `Sobol(n)`: the Saltelli scheme for first-order and total Sobol indices (Saltelli et al.
//!   2010) on an Owen-scrambled Sobol sequence (`sobol_burley`): for each of the `n` base rows
//!   `j`, the points `A_j`, `AB_j^(1)`, ..., `AB_j^(k)`, `B_j`, that is `n (k + 2)` points, in
//!   the order SALib's `sobol.sample(..., calc_second_order=False)` writes them, so that
//!   `sobol.analyze(..., calc_second_order=False)` reads `sweep.csv` as it is (and
//!   [`crate::experiment::sensitivity`] does the same analysis);
//! - `Table("points.csv")`: the rows of a CSV file whose header names the parameters.
//!
//! The sampled designs draw from their own named stream of the scenario seed
//! ([`crate::rng::named_stream`] `"sweep design"`), never from a run's: the same scenario and
//! seed give the same points on every machine, and sampling never shifts a run's numbers.
//! [`points`] is the one function that turns a `sweep` section into its list of points; the
//! sweep runner consumes that list and writes it as `design.csv`.

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Scenario;
use super::sweep::{Sweep, SweepParameter, SweepValue, apply, is_integer};

/// The most points a sweep may have: beyond it a sweep is refused with a clear error rather
/// than allocating and validating millions of scenarios.
pub const MAX_POINTS: usize = 1_000_000;

/// The most base rows of a `Sobol` design: `sobol_burley` computes the first 2^16 points of
/// its sequence.
pub const MAX_SOBOL_ROWS: u64 = 1 << 16;

/// How a sweep chooses its points.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Design {
    /// Every combination of the parameters' values (row-major: the last parameter fastest).
    #[default]
    Grid,
    /// The parameters' values paired index by index (all lists the same length).
    Zip,
    /// `n` points drawn uniformly in the parameters' ranges.
    Random(u64),
    /// `n` points, one in each of `n` equal strata of every parameter's range.
    LatinHypercube(u64),
    /// The Saltelli scheme on `n` base rows: `n (k + 2)` points for `k` parameters.
    Sobol(u64),
    /// The rows of a CSV file (relative to the scenario file) whose header names the
    /// parameters.
    Table(String),
}

impl Design {
    /// Whether this is the default full grid.
    pub fn is_grid(&self) -> bool {
        *self == Design::Grid
    }

    /// The `n` of a sampled design (`None` for `Grid`, `Zip` and `Table`).
    pub fn size(&self) -> Option<u64> {
        match self {
            Design::Random(n) | Design::LatinHypercube(n) | Design::Sobol(n) => Some(*n),
            Design::Grid | Design::Zip | Design::Table(_) => None,
        }
    }

    /// The variant's name as written in a scenario.
    pub fn label(&self) -> &'static str {
        match self {
            Design::Grid => "Grid",
            Design::Zip => "Zip",
            Design::Random(_) => "Random",
            Design::LatinHypercube(_) => "LatinHypercube",
            Design::Sobol(_) => "Sobol",
            Design::Table(_) => "Table",
        }
    }

    /// An example of the variant, for messages.
    pub(super) fn example(&self) -> String {
        format!("{}({})", self.label(), if matches!(self, Design::Sobol(_)) { 256 } else { 100 })
    }

    /// Whether a design of this size can be built for `k` parameters (the limits of the Sobol
    /// sequence); says what would fit otherwise.
    pub(super) fn fits(&self, k: usize) -> Result<(), String> {
        if let Design::Sobol(n) = self {
            if *n > MAX_SOBOL_ROWS {
                return Err(format!(
                    "Sobol({n}) has more base rows than the {MAX_SOBOL_ROWS} the Sobol sequence provides; use at most Sobol({MAX_SOBOL_ROWS})"
                ));
            }
            let dims = 2 * k as u64;
            if dims > u64::from(sobol_burley::NUM_DIMENSIONS) {
                return Err(format!(
                    "Sobol needs 2k = {dims} dimensions of the sequence for k = {k} parameters, more than its {}; sweep at most {} parameters",
                    sobol_burley::NUM_DIMENSIONS,
                    sobol_burley::NUM_DIMENSIONS / 2
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Design::Grid | Design::Zip => f.write_str(self.label()),
            Design::Random(n) | Design::LatinHypercube(n) | Design::Sobol(n) => write!(f, "{}({n})", self.label()),
            Design::Table(file) => write!(f, "Table({file:?})"),
        }
    }
}

/// The points of a `Table` design as read from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignTable {
    /// The file read (the scenario's folder joined with the name written).
    pub file: PathBuf,
    /// The header: one parameter path per column.
    pub columns: Vec<String>,
    /// One row of values per point, in file order.
    pub rows: Vec<Vec<SweepValue>>,
    /// The line of the file each row is written on (1-based; the header is line 1).
    pub lines: Vec<u64>,
    /// SHA-256 of the file's bytes: part of the sweep's identity.
    pub sha256: String,
}

/// Reads the points of a `Table` design: a CSV file with a header of parameter paths and one
/// point per row. Every error names the file, the line and the column.
pub fn read_table(file: &Path) -> Result<DesignTable, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: cannot read the design table: {e}", file.display()))?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let at = |line: u64, col: usize, message: String| format!("{}:{line}:{col}: {message}", file.display());
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(&bytes[..]);
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(format!("{}: {e}", file.display())),
        None => {
            return Err(format!(
                "{}: empty file: the first line names the parameters, e.g. `captioner.batch,painter.covariance`",
                file.display()
            ));
        }
    };
    let columns: Vec<String> = header.iter().map(str::to_string).collect();
    for (j, c) in columns.iter().enumerate() {
        if c.is_empty() {
            return Err(at(1, j + 1, "empty column name: each column of the header is a parameter path such as `captioner.batch`".into()));
        }
        if columns[..j].contains(c) {
            return Err(at(1, j + 1, format!("`{c}` is a column twice; each parameter has one column")));
        }
    }
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    for record in records {
        let record = record.map_err(|e| format!("{}: {e}", file.display()))?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() == 1 && record.get(0) == Some("") {
            continue; // a blank line
        }
        if record.len() != columns.len() {
            return Err(at(
                line,
                record.len().min(columns.len()) + 1,
                format!("{} values for {} columns; every row gives one value per column of the header", record.len(), columns.len()),
            ));
        }
        let mut row = Vec::with_capacity(columns.len());
        for (j, cell) in record.iter().enumerate() {
            let value = parse_value(cell).map_err(|m| at(line, j + 1, format!("`{}`: {m}", columns[j])))?;
            row.push(value);
        }
        rows.push(row);
        lines.push(line);
        if rows.len() > MAX_POINTS {
            return Err(at(line, 1, format!("more than {MAX_POINTS} points, the most a sweep may have")));
        }
    }
    if rows.is_empty() {
        return Err(format!("{}: no points: the header is followed by no row", file.display()));
    }
    Ok(DesignTable { file: file.to_path_buf(), columns, rows, lines, sha256 })
}

/// A table cell as a value, read as a RON literal would be: `true`/`false`, a whole number, a
/// finite number, or else a string (a unit variant such as `Unbiased`).
fn parse_value(cell: &str) -> Result<SweepValue, String> {
    if cell.is_empty() {
        return Err("empty value: every point gives every parameter".into());
    }
    if let Ok(b) = cell.parse::<bool>() {
        return Ok(SweepValue::Bool(b));
    }
    if let Ok(u) = cell.parse::<u64>() {
        return Ok(SweepValue::Unsigned(u));
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Ok(SweepValue::Signed(i));
    }
    match cell.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(SweepValue::Float(x)),
        Ok(x) => Err(format!("{x} is not a finite number")),
        Err(_) => Ok(SweepValue::Text(cell.to_string())),
    }
}

/// The points of a sweep: the values every parameter takes at every point.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignPoints {
    /// The design they come from.
    pub design: Design,
    /// The parameter paths, one per column.
    pub parameters: Vec<String>,
    /// One row of values per point, in point order.
    pub values: Vec<Vec<SweepValue>>,
    /// The table, for a `Table` design (to name the file and line of a point).
    pub table: Option<Arc<DesignTable>>,
}

impl DesignPoints {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is no point.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `(path, value)` assignments of point `index`.
    pub fn assignments(&self, index: usize) -> Vec<(String, SweepValue)> {
        self.parameters.iter().cloned().zip(self.values[index].iter().cloned()).collect()
    }

    /// The scenario of point `index`: the base with the point's values applied, no sweep
    /// section, validated. A `Table` point's error names the file and line.
    pub fn point(&self, base: &Scenario, index: usize) -> Result<Scenario, String> {
        apply(base, &self.assignments(index)).map_err(|e| match &self.table {
            Some(t) => format!("{}:{}: {e}", t.file.display(), t.lines[index]),
            None => e,
        })
    }

    /// `design.csv`: a `point` column, then one column per parameter with the values run.
    pub fn csv(&self) -> String {
        let mut out = String::from("point");
        for p in &self.parameters {
            let _ = write!(out, ",{p}");
        }
        out.push('\n');
        for (i, row) in self.values.iter().enumerate() {
            let _ = write!(out, "{i}");
            for v in row {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
    }
}

/// A number as the value of a field: a whole number for an integer field (see [`points`] for
/// how draws are made whole), else a float.
pub(super) fn value(x: f64, integer: bool) -> SweepValue {
    match (integer, x >= 0.0) {
        (true, true) => SweepValue::Unsigned(x as u64),
        (true, false) => SweepValue::Signed(x as i64),
        (false, _) => SweepValue::Float(x),
    }
}

/// The points of `sweep` over `base`: the one place a design becomes its list of points.
///
/// A sampled design draws `u` in `[0, 1)` per parameter and maps it onto the range: `min + u
/// (max - min)`, or `exp(ln min + u (ln max - ln min))` with `log: true`. A parameter whose
/// field holds whole numbers (a batch size, a `Fixed(n)` allocation, a seed) maps `u` onto
/// `[min, max + 1)` the same way and takes the floor, so that every whole number from `min` to
/// `max` can be drawn and, on a linear scale, each is equally likely (two points may then
/// coincide). Deterministic: the same sweep and `base.seed` give the same points.
pub fn points(sweep: &Sweep, base: &Scenario) -> Result<DesignPoints, String> {
    let design = sweep.design.clone();
    let parameters = sweep.paths();
    let k = parameters.len();
    let values = match &design {
        Design::Grid => {
            let total = sweep.len();
            (0..total)
                .map(|i| grid_coordinates(&sweep.parameters, i).iter().zip(&sweep.parameters).map(|(&c, p)| p.values[c].clone()).collect())
                .collect()
        }
        Design::Zip => (0..sweep.len()).map(|i| sweep.parameters.iter().map(|p| p.values[i].clone()).collect()).collect(),
        Design::Table(name) => {
            let table = sweep.table.as_ref().ok_or_else(|| {
                format!("the Table({name:?}) design has not been read: load the scenario with `Scenario::load`, which reads it")
            })?;
            return Ok(DesignPoints { design, parameters: table.columns.clone(), values: table.rows.clone(), table: Some(table.clone()) });
        }
        Design::Random(n) | Design::LatinHypercube(n) | Design::Sobol(n) => {
            let n = usize::try_from(*n).map_err(|_| format!("{design} is too large"))?;
            let mut stream = crate::rng::named_stream("sweep design", base.seed);
            let unit = match design {
                Design::Random(_) => random(n, k, &mut stream),
                Design::LatinHypercube(_) => latin_hypercube(n, k, &mut stream),
                _ => saltelli(n, k, stream.random::<u32>()),
            };
            let integer: Vec<bool> = parameters.iter().map(|p| is_integer(base, p)).collect::<Result<_, _>>()?;
            unit.iter().map(|u| u.iter().zip(&sweep.parameters).zip(&integer).map(|((&u, p), &int)| scale(u, p, int)).collect()).collect()
        }
    };
    Ok(DesignPoints { design, parameters, values, table: None })
}

/// The value index of every parameter at grid point `index` (row-major: last parameter
/// fastest).
fn grid_coordinates(parameters: &[SweepParameter], mut index: usize) -> Vec<usize> {
    let mut coords = vec![0; parameters.len()];
    for (c, p) in coords.iter_mut().zip(parameters).rev() {
        *c = index % p.values.len();
        index /= p.values.len();
    }
    coords
}

/// `u` in `[0, 1)` mapped onto the range of `p` (see [`points`]).
fn scale(u: f64, p: &SweepParameter, integer: bool) -> SweepValue {
    let (min, max) = (p.min.unwrap_or(0.0), p.max.unwrap_or(1.0));
    let max = if integer { max + 1.0 } else { max };
    let x = if p.log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
    // Rounding can reach the open end; the range is closed at `max` (the integer's `max`).
    if integer { value(x.floor().clamp(min, max - 1.0), true) } else { value(x.clamp(min, max), false) }
}

/// `n` points uniform in `[0, 1)^k`, row by row.
fn random(n: usize, k: usize, stream: &mut crate::rng::Stream) -> Vec<Vec<f64>> {
    (0..n).map(|_| (0..k).map(|_| stream.random::<f64>()).collect()).collect()
}

/// `n` points in `[0, 1)^k` with exactly one in each stratum `[s/n, (s+1)/n)` of every
/// dimension: per dimension, a uniformly random permutation assigns the strata to the points
/// (Fisher-Yates), and each point is uniform inside its stratum.
fn latin_hypercube(n: usize, k: usize, stream: &mut crate::rng::Stream) -> Vec<Vec<f64>> {
    let mut points = vec![vec![0.0; k]; n];
    for d in 0..k {
        let mut strata: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            strata.swap(i, stream.random_range(0..=i));
        }
        for (point, s) in points.iter_mut().zip(strata) {
            // (s + u) / n < (s + 1) / n in exact arithmetic; the min keeps it so after rounding.
            point[d] = ((s as f64 + stream.random::<f64>()) / n as f64).min((s + 1) as f64 / n as f64 - f64::EPSILON);
        }
    }
    points
}

/// The Saltelli scheme on `n` base rows of a `2k`-dimensional Owen-scrambled Sobol sequence
/// (seed `seed`): `A_j` is the first `k` coordinates of row `j`, `B_j` the last `k`, and
/// `AB_j^(i)` is `A_j` with coordinate `i` taken from `B_j`. Rows `A_j, AB_j^(1), ...,
/// AB_j^(k), B_j` for every `j`, as SALib orders them.
pub fn saltelli(n: usize, k: usize, seed: u32) -> Vec<Vec<f64>> {
    let mut points = Vec::with_capacity(n * (k + 2));
    for j in 0..n {
        let row =
            |offset: usize| -> Vec<f64> { (0..k).map(|d| f64::from(sobol_burley::sample(j as u32, (offset + d) as u32, seed))).collect() };
        let (a, b) = (row(0), row(k));
        points.push(a.clone());
        for i in 0..k {
            let mut ab = a.clone();
            ab[i] = b[i];
            points.push(ab);
        }
        points.push(b);
    }
    points
}
