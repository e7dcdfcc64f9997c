//! Line figures of sweeps, stability folders and conditional models' diversity.
//!
//! - `sweep_<model>` (a sweep over one parameter): final diversity (`final_mean`, band of
//!   plus or minus one `final_se`) and collapsed fraction against the parameter, from `sweep.csv`.
//! - `sweep_<model>_<parameter>` (a sweep over several parameters): the same, one figure per
//!   parameter, marginal over the others: at each value of the parameter, the mean over the
//!   other parameters' grid values, with their min-max range as the band.
//! - `divergence_<model>` (a `coevo stability` folder): the model's divergence metric (`tv`
//!   for a text model, `frechet_sum` for a conditional one) against round, mean over the
//!   replicates with their min-max range as a band, from `divergence.csv`.
//! - `diversity_<model>` (a run folder, every conditional model, plugins included): the
//!   p-weighted diversity metric named in `summary.json` (`diversity_metric`) against round,
//!   mean and 5-95% band over replicates, from the aggregate table (or computed from the
//!   metrics when the run wrote none).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::legend::{Entry, Mark, draw_legend, layout};
use super::{Figure, Key, Series, bad_file, color, err, on_axis, round_label, save};
use crate::experiment::grid::{PointStatus, SweepManifest};
use crate::output::tidy::{parse, read_csv};
use crate::run::RunFailure;

/// One curve: `y` against `x`, with an optional band `lo..hi` behind it.
pub(super) struct Curve {
    label: String,
    color: RGBColor,
    x: Vec<f64>,
    y: Vec<f64>,
    band: Option<(Vec<f64>, Vec<f64>, String)>,
}

/// One chart of a figure: its curves share a y axis.
pub(super) struct Panel {
    y_desc: String,
    curves: Vec<Curve>,
}

/// A figure of one or more panels stacked vertically, sharing the x axis and one legend.
pub(super) struct Lines {
    title: String,
    x_desc: String,
    /// Category labels of x positions 0, 1, ... (a parameter whose values are not numbers).
    categories: Option<Vec<String>>,
    /// Draw a marker at every point (few points, as in a sweep).
    markers: bool,
    /// Integer x labels (rounds).
    integer_x: bool,
    panels: Vec<Panel>,
}

impl Lines {
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for c in self.panels.iter().flat_map(|p| &p.curves) {
            out.push((c.label.clone(), Mark::Line(c.color)));
            if let Some((_, _, label)) = &c.band {
                out.push((label.clone(), Mark::Patch(c.color, 0.25)));
            }
        }
        out
    }

    fn x_range(&self) -> Range<f64> {
        let xs = self.panels.iter().flat_map(|p| &p.curves).flat_map(|c| c.x.iter().copied()).filter(|v| v.is_finite()).map(on_axis);
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if !lo.is_finite() {
            return 0.0..1.0;
        }
        let pad = if self.markers { ((hi - lo) * 0.05).max(0.05) } else { 0.0 };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        lo - pad..hi + pad
    }
}

/// A y range from 0 (or the lowest value, if negative) to the highest value, padded 5%.
fn y_range(p: &Panel) -> Range<f64> {
    let values = p
        .curves
        .iter()
        .flat_map(|c| c.y.iter().chain(c.band.iter().flat_map(|(lo, hi, _)| lo.iter().chain(hi))).copied().filter(|v| v.is_finite()))
        .map(on_axis);
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi > lo { hi } else { lo + 1.0 };
    lo..hi + 0.05 * (hi - lo)
}

/// A parameter value for an axis label: at most 6 decimals, trailing zeros dropped
/// (`0.30000000000000004` reads `0.3`).
fn short_number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// Finite `(x, y)` pairs.
fn finite(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect()
}

impl Figure for Lines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let entries = self.entries();
        let (plot, legend) = layout(root, &self.title, &entries)?;
        let n = self.panels.len().max(1);
        let height = plot.dim_in_pixel().1;
        let breaks: Vec<u32> = (1..n as u32).map(|k| k * height / n as u32).collect();
        let areas = plot.split_by_breakpoints(Vec::<u32>::new(), breaks);
        let x = self.x_range();
        for (panel, area) in self.panels.iter().zip(&areas) {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x.clone(), y_range(panel))
                .map_err(err)?;
            let categories = self.categories.clone();
            let integer_x = self.integer_x;
            let x_format = move |v: &f64| match &categories {
                Some(c) => {
                    let k = v.round();
                    if (v - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < c.len() { c[k as usize].clone() } else { String::new() }
                }
                None if integer_x => round_label(v),
                None => short_number(*v),
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(&self.x_desc).y_desc(&panel.y_desc).x_label_formatter(&x_format).label_style(("sans-serif", 15));
            if let Some(c) = &self.categories {
                mesh.x_labels(c.len() * 4 + 1);
            }
            mesh.draw().map_err(err)?;
            for c in &panel.curves {
                if let Some((lo, hi, _)) = &c.band {
                    let upper = finite(&c.x, hi);
                    let lower = finite(&c.x, lo);
                    if upper.len() > 1 && upper.len() == lower.len() {
                        let polygon: Vec<(f64, f64)> = upper.into_iter().chain(lower.into_iter().rev()).collect();
                        chart.draw_series(std::iter::once(Polygon::new(polygon, c.color.mix(0.25).filled()))).map_err(err)?;
                    } else {
                        // One point, or gaps: error bars.
                        let bars = c.x.iter().zip(lo.iter().zip(hi)).filter(|(x, (l, h))| x.is_finite() && l.is_finite() && h.is_finite());
                        chart
                            .draw_series(bars.map(|(&x, (&l, &h))| PathElement::new(vec![(x, l), (x, h)], c.color.stroke_width(2))))
                            .map_err(err)?;
                    }
                }
                let points = finite(&c.x, &c.y);
                chart.draw_series(LineSeries::new(points.clone(), c.color.stroke_width(2))).map_err(err)?;
                if self.markers {
                    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.color.filled()))).map_err(err)?;
                }
            }
        }
        draw_legend(&legend, &entries)
    }
}

/// `diversity_<model>` for every conditional model named in the run's `summary.json`.
pub(super) fn plot_conditional_diversity(
    dir: &Path,
    out: &Path,
    title: &str,
    agg: &BTreeMap<Key, Series>,
) -> Result<Vec<PathBuf>, RunFailure> {
    let path = dir.join("summary.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(&path).map_err(|e| bad_file(&path, e))?;
    let summary: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad_file(&path, e))?;
    // Models of the first replicate, in scenario order: (name, metric).
    let mut models: Vec<(String, String)> = Vec::new();
    let first = summary["replicates"].get(0).and_then(|r| r.as_array()).cloned().unwrap_or_default();
    for m in first {
        if m["kind"] != "conditional" {
            continue;
        }
        if let (Some(name), Some(metric)) = (m["model"].as_str(), m["diversity_metric"].as_str()) {
            models.push((name.to_string(), metric.to_string()));
        }
    }
    let mut files = Vec::new();
    for (i, (model, metric)) in models.iter().enumerate() {
        let Some(s) = agg.get(&(model.clone(), None, metric.clone())) else { continue };
        let c = color(i + 1);
        let band = (s.n > 1).then(|| (s.q05.clone(), s.q95.clone(), format!("5-95% over {} replicates", s.n)));
        let label = if s.n > 1 { format!("{model}: {metric} (mean)") } else { format!("{model}: {metric}") };
        let fig = Lines {
            title: format!("{title}: {model} diversity ({metric})"),
            x_desc: "round".into(),
            categories: None,
            markers: false,
            integer_x: true,
            panels: vec![Panel {
                y_desc: metric.clone(),
                curves: vec![Curve { label, color: c, x: s.rounds.clone(), y: s.mean.clone(), band }],
            }],
        };
        files.extend(save(&fig, out, &format!("diversity_{model}"))?);
    }
    Ok(files)
}

/// A model's name and one of its metrics.
type ModelMetric = (String, String);

/// `divergence_<model>` for every model of a `coevo stability` folder's `divergence.csv`.
pub(super) fn plot_stability(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, RunFailure> {
    let path = dir.join("divergence.csv");
    // (model, metric) in file order -> round -> values over replicates.
    let mut series: Vec<(ModelMetric, BTreeMap<u64, Vec<f64>>)> = Vec::new();
    read_csv(&path, crate::output::METRICS_HEADER, |n, f| {
        if !f[3].is_empty() {
            return Ok(());
        }
        let key = (f[2].to_string(), f[4].to_string());
        let round: u64 = parse(&path, n, "round", f[1])?;
        let value: f64 = parse(&path, n, "value", f[5])?;
        let i = match series.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                series.push((key, BTreeMap::new()));
                series.len() - 1
            }
        };
        series[i].1.entry(round).or_default().push(value);
        Ok(())
    })
    .map_err(|e| bad_file(&path, e))?;
    let name = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m["scenario"]["name"].as_str().map(String::from))
        .unwrap_or_else(|| dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
    let mut files = Vec::new();
    for (i, ((model, metric), rounds)) in series.into_iter().enumerate() {
        let x: Vec<f64> = rounds.keys().map(|&r| r as f64).collect();
        let finite_values = |v: &Vec<f64>| v.iter().copied().filter(|x| x.is_finite()).collect::<Vec<f64>>();
        let mean: Vec<f64> = rounds
            .values()
            .map(|v| {
                let v = finite_values(v);
                if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
            })
            .collect();
        let replicates = rounds.values().map(Vec::len).max().unwrap_or(0);
        let band = (replicates > 1).then(|| {
            let lo = rounds.values().map(|v| finite_values(v).into_iter().fold(f64::NAN, f64::min)).collect();
            let hi = rounds.values().map(|v| finite_values(v).into_iter().fold(f64::NAN, f64::max)).collect();
            (lo, hi, format!("range over {replicates} replicates"))
        });
        let label = if replicates > 1 { format!("{model}: {metric} (mean)") } else { format!("{model}: {metric}") };
        let fig = Lines {
            title: format!("{name}: divergence of the twin worlds, {model}"),
            x_desc: "round".into(),
            categories: None,
            markers: false,
            integer_x: true,
            panels: vec![Panel { y_desc: metric.clone(), curves: vec![Curve { label, color: color(i), x, y: mean, band }] }],
        };
        files.extend(save(&fig, out, &format!("divergence_{model}"))?);
    }
    Ok(files)
}

/// One row of `sweep.csv`: parameter values and the summary columns the figures use.
struct SweepRow {
    params: Vec<String>,
    model: String,
    metric: String,
    final_mean: f64,
    final_se: f64,
    collapsed: f64,
}

/// Parses a number, or NaN for an empty field.
fn number(path: &Path, n: usize, what: &str, s: &str) -> std::io::Result<f64> {
    if s.is_empty() { Ok(f64::NAN) } else { parse(path, n, what, s) }
}

/// Line figures of a sweep: `sweep_<model>` (one parameter) or `sweep_<model>_<parameter>`
/// (several, marginal over the other parameters).
pub(super) fn plot_sweep_lines(dir: &Path, out: &Path, manifest: &SweepManifest) -> Result<Vec<PathBuf>, RunFailure> {
    let csv = dir.join("sweep.csv");
    let header = crate::experiment::grid::sweep_header(&manifest.parameters);
    let columns: Vec<String> = header.trim_end().split(',').map(String::from).collect();
    let col = |name: &str| columns.iter().position(|c| c == name).expect("a column of the header");
    let np = manifest.parameters.len();
    let (model_col, metric_col, mean_col, se_col, collapsed_col) =
        (col("model"), col("diversity_metric"), col("final_mean"), col("final_se"), col("collapsed_fraction"));
    let status_col = col("status");
    let mut rows = Vec::new();
    read_csv(&csv, &header, |n, f| {
        // Failed and interrupted points have no summary to draw.
        if f[status_col] != PointStatus::Ok.label() {
            return Ok(());
        }
        rows.push(SweepRow {
            params: f[1..=np].iter().map(|s| s.to_string()).collect(),
            model: f[model_col].to_string(),
            metric: f[metric_col].to_string(),
            final_mean: number(&csv, n, "final_mean", f[mean_col])?,
            final_se: number(&csv, n, "final_se", f[se_col])?,
            collapsed: number(&csv, n, "collapsed_fraction", f[collapsed_col])?,
        });
        Ok(())
    })
    .map_err(|e| bad_file(&csv, e))?;
    let mut models: Vec<(String, String)> = Vec::new();
    for r in &rows {
        if !models.iter().any(|(m, _)| *m == r.model) {
            models.push((r.model.clone(), r.metric.clone()));
        }
    }
    // The scenario file's name (the output folder's name when the manifest has none).
    let name = Path::new(&manifest.scenario_file)
        .file_stem()
        .or_else(|| dir.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    for (mi, (model, metric)) in models.iter().enumerate() {
        for (k, parameter) in manifest.parameters.iter().enumerate() {
            // Values of parameter k in grid order, with the rows at each.
            let mut values: Vec<(String, Vec<&SweepRow>)> = Vec::new();
            for r in rows.iter().filter(|r| r.model == *model) {
                match values.iter_mut().find(|(v, _)| *v == r.params[k]) {
                    Some((_, at)) => at.push(r),
                    None => values.push((r.params[k].clone(), vec![r])),
                }
            }
            let numeric: Option<Vec<f64>> = values.iter().map(|(v, _)| v.parse::<f64>().ok()).collect();
            let (x, categories) = match numeric {
                Some(x) => (x, None),
                None => ((0..values.len()).map(|i| i as f64).collect(), Some(values.iter().map(|(v, _)| v.clone()).collect())),
            };
            let mean_of = |v: &[f64]| {
                let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                if f.is_empty() { f64::NAN } else { f.iter().sum::<f64>() / f.len() as f64 }
            };
            let (y, band, collapsed, band_label);
            if np == 1 {
                y = values.iter().map(|(_, r)| r[0].final_mean).collect::<Vec<_>>();
                let lo = values.iter().map(|(_, r)| r[0].final_mean - r[0].final_se).collect();
                let hi = values.iter().map(|(_, r)| r[0].final_mean + r[0].final_se).collect();
                band = (lo, hi);
                collapsed = values.iter().map(|(_, r)| r[0].collapsed).collect::<Vec<_>>();
                band_label = "plus or minus 1 SE".to_string();
            } else {
                let finals = |r: &Vec<&SweepRow>| r.iter().map(|r| r.final_mean).collect::<Vec<f64>>();
                y = values.iter().map(|(_, r)| mean_of(&finals(r))).collect();
                let lo = values.iter().map(|(_, r)| finals(r).into_iter().filter(|v| v.is_finite()).fold(f64::NAN, f64::min)).collect();
                let hi = values.iter().map(|(_, r)| finals(r).into_iter().filter(|v| v.is_finite()).fold(f64::NAN, f64::max)).collect();
                band = (lo, hi);
                collapsed = values.iter().map(|(_, r)| mean_of(&r.iter().map(|r| r.collapsed).collect::<Vec<_>>())).collect();
                band_label = "range over the other parameters".to_string();
            }
            let marginal = if np == 1 { "" } else { ", mean over the other parameters" };
            let fig = Lines {
                title: format!("{name}: {model}, final diversity and collapse against {parameter}{marginal}"),
                x_desc: parameter.clone(),
                categories,
                markers: true,
                integer_x: false,
                panels: vec![
                    Panel {
                        y_desc: format!("final {metric}"),
                        curves: vec![Curve {
                            label: format!("final {metric} (mean)"),
                            color: color(mi),
                            x: x.clone(),
                            y,
                            band: Some((band.0, band.1, band_label)),
                        }],
                    },
                    Panel {
                        y_desc: "collapsed fraction".into(),
                        curves: vec![Curve {
                            label: "fraction of replicates collapsed".into(),
                            color: RGBColor(214, 39, 40),
                            x,
                            y: collapsed,
                            band: None,
                        }],
                    },
                ],
            };
            let stem = if np == 1 { format!("sweep_{model}") } else { format!("sweep_{model}_{parameter}") };
            files.extend(save(&fig, out, &stem)?);
        }
    }
    Ok(files)
}
