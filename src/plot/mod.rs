//! Figures of a run or sweep folder (`coevo plot`), as SVG and PNG.
//!
//! - `diversity`: Gini-Simpson diversity of every text model against round; with several
//!   replicates, the mean and a 5-95% band (from the aggregate table, or computed from the
//!   metrics when the run wrote none).
//! - `trace_<model>`: trace of every text's image covariance on a log axis (mean over
//!   replicates), with the theoretical contraction `((n-1)/n)^(t N_t) tr Sigma_0` dashed in the
//!   same colour (docs/model.md section 3: exact for `Fixed(n)` allocation and a frozen text model; for
//!   binomial allocation `n = N p0_i`, the expected count, as a reference).
//! - `drift_<model>`: local and cumulative drift (replicate 0, log axis) with the phases of
//!   `phases.csv` shaded behind them.
//! - `heatmap_<model>` (a sweep over two parameters): fraction of replicates that collapsed
//!   at each grid point, with the value written in each cell.
//!
//! Text in PNGs is drawn with the DejaVu Sans font embedded by the `dejavu` crate (plotters'
//! `ab_glyph` backend), so rendering needs no system font.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::diagnostics::ChainPhase;
use crate::experiment::grid::{PointStatus, SweepManifest};
use crate::metrics::names;
use crate::models::Allocation;
use crate::output::aggregate::AggregateRow;
use crate::output::phases::PHASES_HEADER;
use crate::output::table::find_table;
use crate::output::tidy::{self, parse, read_csv};
use crate::run::RunFailure;
use crate::scenario::{EntitySpec, Scenario};

mod legend;
mod lines;

use legend::{Entry, Mark, draw_legend, layout};

/// Pixel size of the PNGs (SVGs use the same user units).
const SIZE: (u32, u32) = (960, 600);

/// A figure that can draw itself on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file: registration cannot fail.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Renders `figure` to `dir/stem.svg` and `dir/stem.png`. Both are drawn in memory and
/// written through [`crate::output::files`] (atomically, never through a link planted in the
/// figures folder), not by the plotting backends' own file handling.
fn save(figure: &impl Figure, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, RunFailure> {
    use image::ImageEncoder as _;
    register_font();
    let (svg, png) = (dir.join(format!("{stem}.svg")), dir.join(format!("{stem}.png")));
    let fail = |path: &Path, e: String| RunFailure::Io { path: path.to_path_buf(), source: std::io::Error::other(e) };
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(err)).map_err(|e| fail(&svg, e))?;
    }
    crate::output::write_atomic(&svg, text.as_bytes()).map_err(|e| fail(&svg, e.to_string()))?;
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(err)).map_err(|e| fail(&png, e))?;
    }
    crate::output::write_atomic_with(&png, |out| {
        image::codecs::png::PngEncoder::new(out).write_image(&pixels, width, height, image::ColorType::Rgb8).map_err(std::io::Error::other)
    })
    .map_err(|e| fail(&png, e.to_string()))?;
    Ok(vec![svg, png])
}

/// The folder kinds `coevo plot` accepts (run, sweep, stability), for the errors.
const RUN: &str = "a run folder (metrics.csv or metrics.parquet, from `coevo run`)";
const SWEEP: &str = "a sweep folder (sweep.csv and sweep.json, from `coevo sweep` or `coevo merge`)";
const STABILITY: &str = "a stability folder (divergence.csv, from `coevo stability`)";

/// Draws every figure the folder's files allow into `out`; returns the files written. A folder
/// of none of the kinds coevo writes, or one with nothing to plot, is an error (never an
/// empty `figures/`).
pub fn plot_dir(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, RunFailure> {
    let tables = |stem| find_table(dir, stem).map_err(|e| RunFailure::BadInput(e.to_string()));
    let is_run = tables("metrics")?.is_some() || tables("aggregate")?.is_some();
    let is_sweep = dir.join("sweep.csv").exists() && dir.join("sweep.json").exists();
    let is_stability = dir.join("divergence.csv").exists();
    if !is_run && !is_sweep && !is_stability {
        return Err(RunFailure::BadInput(format!("{} is neither {RUN}, {SWEEP} nor {STABILITY}", dir.display())));
    }
    std::fs::create_dir_all(out).map_err(|source| RunFailure::Io { path: out.to_path_buf(), source })?;
    let mut files = Vec::new();
    if is_run {
        files.extend(plot_run(dir, out)?);
    }
    if is_sweep {
        files.extend(plot_sweep(dir, out)?);
    }
    if is_stability {
        files.extend(lines::plot_stability(dir, out)?);
    }
    if files.is_empty() {
        return Err(RunFailure::BadInput(format!(
            "{} has nothing to plot (no model has a row in its files): expected a finished run, sweep or stability folder: {RUN}, {SWEEP} or {STABILITY}",
            dir.display()
        )));
    }
    Ok(files)
}

/// One series of the aggregate table: per round, mean, q05, q95 and the replicate count.
#[derive(Debug, Default, Clone)]
struct Series {
    rounds: Vec<f64>,
    mean: Vec<f64>,
    q05: Vec<f64>,
    q95: Vec<f64>,
    n: usize,
}

type Key = (String, Option<u32>, String);

fn bad_file(path: &Path, e: impl std::fmt::Display) -> RunFailure {
    RunFailure::BadInput(format!("{}: {e}", path.display()))
}

/// Every series of the run's aggregate table, in either format; for a run that wrote none
/// (one replicate, or `aggregate: Never`), computed from its metrics table.
fn read_aggregate(dir: &Path) -> Result<BTreeMap<Key, Series>, RunFailure> {
    let mut out: BTreeMap<Key, Series> = BTreeMap::new();
    let add = |row: AggregateRow<'_>| {
        let s = out.entry((row.model.to_string(), row.text, row.metric.to_string())).or_default();
        s.rounds.push(row.round as f64);
        s.n = s.n.max(row.stats.n);
        s.mean.push(row.stats.mean);
        s.q05.push(row.stats.q05);
        s.q95.push(row.stats.q95);
    };
    let found = |stem| find_table(dir, stem).map_err(|e| RunFailure::BadInput(e.to_string()));
    if let Some(path) = found("aggregate")? {
        tidy::read_aggregate(&path, add).map_err(|e| bad_file(&path, e))?;
    } else if let Some(path) = found("metrics")? {
        tidy::aggregate_metrics(&path, add).map_err(|e| bad_file(&path, e))?;
    }
    Ok(out)
}

fn read_scenario(dir: &Path) -> Result<Scenario, RunFailure> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| bad_file(&path, e))?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad_file(&path, e))?;
    serde_json::from_value(manifest["scenario"].clone()).map_err(|e| bad_file(&path, format!("no readable scenario: {e}")))
}

/// The `p0` the manifest of run folder `dir` records for text model `name`.
fn resolved_p0(dir: &Path, name: &str) -> Option<Vec<f64>> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()?;
    let model = manifest["resolved"].as_array()?.iter().find(|m| m["name"] == name)?;
    serde_json::from_value(model["p0"].clone()).ok()
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn plot_run(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, RunFailure> {
    let agg = read_aggregate(dir)?;
    let scenario = read_scenario(dir)?;
    let mut files = Vec::new();
    let texts: Vec<(String, Series)> = scenario
        .entities
        .iter()
        .filter_map(|e| match e {
            EntitySpec::TextModel(t) => agg.get(&(t.name.clone(), None, names::GINI_SIMPSON.into())).map(|s| (t.name.clone(), s.clone())),
            _ => None,
        })
        .collect();
    if !texts.is_empty() {
        files.extend(save(&Diversity { title: scenario.name.clone(), models: texts }, out, "diversity")?);
    }
    for e in &scenario.entities {
        let EntitySpec::ImageModel(img) = e else { continue };
        let Some(EntitySpec::TextModel(text)) = scenario.entity(&img.conditioned_on) else { continue };
        // A text model built from data: its p0 is in the manifest's resolved state.
        let Some(p0) = text.initial.probabilities().or_else(|| resolved_p0(dir, &text.name)) else { continue };
        let mut lines = Vec::new();
        for (i, p) in p0.iter().enumerate() {
            let Some(s) = agg.get(&(img.name.clone(), Some(i as u32), names::TRACE.into())) else { continue };
            let n = match img.allocation {
                Allocation::Fixed(n) => n as f64,
                Allocation::Binomial => img.batch as f64 * p,
            };
            lines.push(TraceLine { text: i, series: s.clone(), n, steps: img.steps as f64 });
        }
        if !lines.is_empty() {
            let fixed = matches!(img.allocation, Allocation::Fixed(_));
            files.extend(save(
                &Trace { title: format!("{}: {}", scenario.name, img.name), lines, fixed },
                out,
                &format!("trace_{}", img.name),
            )?);
        }
        if let Some(drift) = read_drift(dir, &img.name)? {
            files.extend(save(&drift, out, &format!("drift_{}", img.name))?);
        }
    }
    files.extend(lines::plot_conditional_diversity(dir, out, &scenario.name, &agg)?);
    Ok(files)
}

struct Diversity {
    title: String,
    models: Vec<(String, Series)>,
}

/// Rounds from 0 to the last round in `series`, as an axis range.
fn round_range<'a>(series: impl Iterator<Item = &'a Series>) -> std::ops::Range<f64> {
    let last = series.flat_map(|s| s.rounds.last().copied()).filter(|r| r.is_finite()).fold(1.0, f64::max);
    0.0..on_axis(last)
}

impl Figure for Diversity {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let replicates = self.models.iter().map(|(_, s)| s.n).max().unwrap_or(1);
        let caption = if replicates > 1 {
            format!("{}: text diversity (mean, 5-95% band over {replicates} replicates)", self.title)
        } else {
            format!("{}: text diversity", self.title)
        };
        let mut entries: Vec<Entry> = self.models.iter().enumerate().map(|(i, (name, _))| (name.clone(), Mark::Line(color(i)))).collect();
        if replicates > 1 {
            entries.push(("5-95% band".into(), Mark::Patch(color(0), 0.2)));
        }
        let (area, legend) = layout(root, &caption, &entries)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(round_range(self.models.iter().map(|(_, s)| s)), 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("Gini-Simpson 1 - sum p^2")
            .x_label_formatter(&round_label)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (i, (_, s)) in self.models.iter().enumerate() {
            let c = color(i);
            if s.n > 1 {
                let band: Vec<(f64, f64)> = s
                    .rounds
                    .iter()
                    .zip(&s.q95)
                    .map(|(&r, &q)| (r, q))
                    .chain(s.rounds.iter().zip(&s.q05).rev().map(|(&r, &q)| (r, q)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.2).filled()))).map_err(err)?;
            }
            chart.draw_series(LineSeries::new(s.rounds.iter().copied().zip(s.mean.iter().copied()), c.stroke_width(2))).map_err(err)?;
        }
        draw_legend(&legend, &entries)
    }
}

struct TraceLine {
    text: usize,
    series: Series,
    n: f64,
    steps: f64,
}

struct Trace {
    title: String,
    lines: Vec<TraceLine>,
    fixed: bool,
}

/// Positive values only (a log axis cannot show zero): `(round, value)` pairs.
fn positive(rounds: &[f64], values: &[f64]) -> Vec<(f64, f64)> {
    rounds.iter().zip(values).filter(|(_, v)| **v > 0.0 && v.is_finite()).map(|(&r, &v)| (r, v)).collect()
}

/// Largest magnitude an axis reaches: a trace near `f64::MAX` padded by 5% or doubled would be
/// infinite, and plotters then computes ticks without end (a hang). Values beyond it are
/// drawn at the edge of the figure.
pub(crate) const AXIS_LIMIT: f64 = 1e300;

/// `v` within the axes' reach, `[-AXIS_LIMIT, AXIS_LIMIT]`.
pub(crate) fn on_axis(v: f64) -> f64 {
    v.clamp(-AXIS_LIMIT, AXIS_LIMIT)
}

/// A log-axis range covering `values` (positive ones), padded a little, within
/// `[1 / AXIS_LIMIT, AXIS_LIMIT]`.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return 1e-3..1.0;
    }
    let (lo, hi) = ((lo / 2.0).clamp(1.0 / AXIS_LIMIT, AXIS_LIMIT), (hi * 2.0).clamp(1.0 / AXIS_LIMIT, AXIS_LIMIT));
    if hi > lo { lo..hi } else { lo..lo * 10.0 }
}

impl Trace {
    fn theory(&self, line: &TraceLine) -> Vec<(f64, f64)> {
        let t0 = line.series.mean.first().copied().unwrap_or(0.0);
        let rate = if line.n > 1.0 { (line.n - 1.0) / line.n } else { 0.0 };
        line.series.rounds.iter().map(|&t| (t, t0 * rate.powf(t * line.steps))).filter(|(_, v)| *v > 0.0).collect()
    }
}

impl Figure for Trace {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let theory: Vec<Vec<(f64, f64)>> = self.lines.iter().map(|l| self.theory(l)).collect();
        let y = log_range(self.lines.iter().flat_map(|l| l.series.mean.iter().copied()));
        let n_label = if self.fixed { "n".to_string() } else { "n = N p0_i".to_string() };
        let mut entries: Vec<Entry> =
            self.lines.iter().map(|l| (format!("text {} (n = {:.0})", l.text, l.n), Mark::Line(color(l.text)))).collect();
        entries.push(("theory ((n-1)/n)^(t N_t) tr Sigma_0".into(), Mark::Dashed(BLACK)));
        let caption = format!("{}: image trace per text (solid) vs ((n-1)/n)^t, {n_label} (dashed)", self.title);
        let (area, legend) = layout(root, &caption, &entries)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(round_range(self.lines.iter().map(|l| &l.series)), y.clone().log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("trace Sigma_i (log)")
            .x_label_formatter(&round_label)
            .y_label_formatter(&log_label)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        // Texts with the same n and initial trace share one theory curve: draw each distinct
        // curve once, in the text's colour when it is the only one, else in black.
        let mut drawn: Vec<(u64, u64)> = Vec::new();
        for (line, th) in self.lines.iter().zip(&theory) {
            let c = color(line.text);
            chart.draw_series(LineSeries::new(positive(&line.series.rounds, &line.series.mean), c.stroke_width(2))).map_err(err)?;
            let key = (line.n.to_bits(), line.series.mean.first().copied().unwrap_or(0.0).to_bits());
            if drawn.contains(&key) {
                continue;
            }
            drawn.push(key);
            let shared =
                self.lines.iter().filter(|l| (l.n.to_bits(), l.series.mean.first().copied().unwrap_or(0.0).to_bits()) == key).count() > 1;
            let tc = if shared { BLACK } else { c };
            let visible: Vec<(f64, f64)> = th.iter().copied().filter(|(_, v)| *v >= y.start).collect();
            chart.draw_series(DashedLineSeries::new(visible, 6, 4, tc.stroke_width(2))).map_err(err)?;
        }
        draw_legend(&legend, &entries)
    }
}

struct Drift {
    model: String,
    rounds: Vec<f64>,
    local: Vec<f64>,
    cumulative: Vec<f64>,
    phases: Vec<ChainPhase>,
}

fn read_drift(dir: &Path, model: &str) -> Result<Option<Drift>, RunFailure> {
    let path = dir.join("phases.csv");
    if !path.exists() {
        return Ok(None);
    }
    let mut d = Drift { model: model.to_string(), rounds: vec![], local: vec![], cumulative: vec![], phases: vec![] };
    read_csv(&path, PHASES_HEADER, |n, f| {
        if f[0] == "0" && f[2] == model {
            d.rounds.push(parse::<u64>(&path, n, "round", f[1])? as f64);
            d.local.push(parse(&path, n, "local_drift", f[3])?);
            d.cumulative.push(parse(&path, n, "cumulative_drift", f[4])?);
            d.phases
                .push(ChainPhase::from_label(f[7]).ok_or_else(|| std::io::Error::other(format!("line {n}: unknown phase `{}`", f[7])))?);
        }
        Ok(())
    })
    .map_err(|e| bad_file(&path, e))?;
    Ok(if d.rounds.is_empty() { None } else { Some(d) })
}

fn phase_color(p: ChainPhase) -> RGBColor {
    match p {
        ChainPhase::Active => RGBColor(250, 200, 200),
        ChainPhase::Slow => RGBColor(250, 235, 180),
        ChainPhase::Stationary => RGBColor(200, 235, 200),
    }
}

impl Figure for Drift {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let y = log_range(self.local.iter().chain(&self.cumulative).copied());
        let x = 0.0..self.rounds.last().copied().unwrap_or(1.0) + 0.5;
        let curves = [
            ("local drift (to last round)", &self.local, RGBColor(31, 119, 180)),
            ("cumulative drift (to round 0)", &self.cumulative, BLACK),
        ];
        let mut entries: Vec<Entry> = curves.iter().map(|(name, _, c)| (name.to_string(), Mark::Line(*c))).collect();
        for p in [ChainPhase::Active, ChainPhase::Slow, ChainPhase::Stationary] {
            entries.push((format!("phase: {p}"), Mark::Patch(phase_color(p), 1.0)));
        }
        let caption = format!("{}: drift of the generational chain (replicate 0), phases shaded", self.model);
        let (area, legend) = layout(root, &caption, &entries)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y.clone().log_scale())
            .map_err(err)?;
        // Phase bands first, merged over runs of equal phase, so the curves draw on top.
        let mut start = 0;
        while start < self.phases.len() {
            let mut end = start;
            while end + 1 < self.phases.len() && self.phases[end + 1] == self.phases[start] {
                end += 1;
            }
            let (x0, x1) = (self.rounds[start] - 0.5, self.rounds[end] + 0.5);
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, y.start), (x1, y.end)], phase_color(self.phases[start]).filled())))
                .map_err(err)?;
            start = end + 1;
        }
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("squared Frechet distance, summed over texts (log)")
            .x_label_formatter(&round_label)
            .y_label_formatter(&log_label)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (_, values, c) in curves {
            chart.draw_series(LineSeries::new(positive(&self.rounds, values), c.stroke_width(2))).map_err(err)?;
        }
        draw_legend(&legend, &entries)
    }
}

struct Heatmap {
    title: String,
    x_name: String,
    y_name: String,
    x_values: Vec<String>,
    y_values: Vec<String>,
    /// `cells[(xi, yi)]` = collapsed fraction.
    cells: BTreeMap<(usize, usize), f64>,
}

/// One point of a two-parameter sweep: the first and second parameter's values as written in
/// `sweep.csv`, and the fraction of replicates that collapsed there.
type HeatmapPoint = (String, String, f64);

fn plot_sweep(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, RunFailure> {
    let path = dir.join("sweep.json");
    let bytes = std::fs::read(&path).map_err(|e| bad_file(&path, e))?;
    let manifest: SweepManifest = serde_json::from_slice(&bytes).map_err(|e| bad_file(&path, e))?;
    let mut files = lines::plot_sweep_lines(dir, out, &manifest)?;
    if manifest.parameters.len() != 2 || manifest.design.is_some() {
        // The heat map needs a grid over exactly two parameters (the points of another design
        // are not the cells of a grid).
        return Ok(files);
    }
    let csv = dir.join("sweep.csv");
    let header = crate::experiment::grid::sweep_header(&manifest.parameters);
    let columns: Vec<String> = header.trim_end().split(',').map(String::from).collect();
    let col = |name: &str| columns.iter().position(|c| c == name).expect("a column of the header");
    let (model_col, collapsed_col, status_col) = (col("model"), col("collapsed_fraction"), col("status"));
    let mut maps: Vec<(String, Vec<HeatmapPoint>)> = Vec::new();
    read_csv(&csv, &header, |n, f| {
        // Failed and interrupted points have no summary: their cells stay empty.
        if f[status_col] != PointStatus::Ok.label() {
            return Ok(());
        }
        let value: f64 = parse(&csv, n, "collapsed_fraction", f[collapsed_col])?;
        let model = f[model_col].to_string();
        let entry = match maps.iter().position(|(m, _)| *m == model) {
            Some(i) => &mut maps[i].1,
            None => {
                maps.push((model, Vec::new()));
                &mut maps.last_mut().expect("just pushed").1
            }
        };
        entry.push((f[1].to_string(), f[2].to_string(), value));
        Ok(())
    })
    .map_err(|e| bad_file(&csv, e))?;
    for (model, points) in maps {
        let mut x_values: Vec<String> = Vec::new();
        let mut y_values: Vec<String> = Vec::new();
        for (x, y, _) in &points {
            if !x_values.contains(x) {
                x_values.push(x.clone());
            }
            if !y_values.contains(y) {
                y_values.push(y.clone());
            }
        }
        let cells = points
            .iter()
            .map(|(x, y, v)| {
                let xi = x_values.iter().position(|c| c == x).expect("listed");
                let yi = y_values.iter().position(|c| c == y).expect("listed");
                ((xi, yi), *v)
            })
            .collect();
        let fig = Heatmap {
            title: format!("{model}: fraction of replicates collapsed"),
            x_name: manifest.parameters[0].clone(),
            y_name: manifest.parameters[1].clone(),
            x_values,
            y_values,
            cells,
        };
        files.extend(save(&fig, out, &format!("heatmap_{model}"))?);
    }
    Ok(files)
}

/// White (0: no replicate collapsed) to red (1: all collapsed).
fn collapse_color(v: f64) -> RGBColor {
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let fade = |full: f64| (255.0 - v * (255.0 - full)).round() as u8;
    RGBColor(fade(200.0), fade(30.0), fade(30.0))
}

impl Figure for Heatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (nx, ny) = (self.x_values.len(), self.y_values.len());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)
            .map_err(err)?;
        let (xs, ys) = (self.x_values.clone(), self.y_values.clone());
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx * 2 + 1)
            .y_labels(ny * 2 + 1)
            .x_label_formatter(&move |v| label_at(&xs, *v))
            .y_label_formatter(&move |v| label_at(&ys, *v))
            .x_desc(&self.x_name)
            .y_desc(&self.y_name)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (&(xi, yi), &v) in &self.cells {
            let (x, y) = (xi as f64, yi as f64);
            chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], collapse_color(v).filled()))).map_err(err)?;
            chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], BLACK.stroke_width(1)))).map_err(err)?;
            let ink = if v > 0.6 { WHITE } else { BLACK };
            let style = ("sans-serif", 20).into_font().color(&ink).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            chart.draw_series(std::iter::once(Text::new(format!("{v:.2}"), (x + 0.5, y + 0.5), style))).map_err(err)?;
        }
        Ok(())
    }
}

/// Rounds as integers.
fn round_label(x: &f64) -> String {
    format!("{x:.0}")
}

/// Log-axis values in short exponent notation (`1e-5`), free of the roundoff of `10^k`.
fn log_label(y: &f64) -> String {
    format!("{y:.0e}")
}

/// The category label at cell centres (`k + 0.5`), nothing elsewhere.
fn label_at(values: &[String], v: f64) -> String {
    let k = (v - 0.5).round();
    if (v - 0.5 - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < values.len() { values[k as usize].clone() } else { String::new() }
}
