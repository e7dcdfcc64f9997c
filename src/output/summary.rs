//! The end-of-run summary: final diversity per model and the round at which it collapsed,
//! and the early-stop rule (docs/model.md section 13), which is a function of the same state:
//! a replicate stops once every model has collapsed, or every text model is absorbed, for
//! `patience` rounds in a row.
//!
//! The tracker sees every round of every replicate whatever the `output` section records, so
//! summaries, collapse rounds and stops do not depend on what is written. Its state is stored
//! in checkpoints ([`SummaryTracker`] is `Serialize`/`Deserialize`), so a resumed run needs
//! no replay of the tables (which may hold every k-th round only).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::{MetricRow, names};
use crate::scenario::{CollapseSpec, StopSpec, StopWhen};

/// What the summary says about one model in one replicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model name.
    pub model: String,
    /// `text` or the conditional's modality.
    pub kind: String,
    /// The diversity metric summarised (`gini_simpson` for text, `weighted_trace` for images).
    pub diversity_metric: String,
    /// Its value at round 0.
    pub initial: f64,
    /// Its value after the last round.
    pub last: f64,
    /// First round at which the model counted as collapsed, if it did.
    pub collapsed_at: Option<u64>,
    /// Text models: support (texts alive) after the last round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<f64>,
    /// Conditional models: Matthew index after the last round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matthew_index: Option<f64>,
    /// Conditional models: regularised factorisations over the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regularized: Option<f64>,
    /// The steady-state level: the mean of the diversity metric over the last 10% of the
    /// planned rounds (at least one), once the run has reached them. A replicate that stopped
    /// early counts as holding its last value over the rounds it did not run (exact for a text
    /// model once absorbed, whose `p` can no longer change; an upper bound for an image
    /// model's trace, which keeps contracting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_level: Option<f64>,
}

impl ModelSummary {
    /// Whether the model counts as collapsed at its last observed round: a text model's
    /// Gini-Simpson index below `text_gini`, a conditional model's p-weighted diversity below
    /// `image_trace_ratio` times its initial value.
    pub fn is_collapsed(&self, collapse: &CollapseSpec) -> bool {
        if self.kind == "text" { self.last < collapse.text_gini } else { self.last < collapse.image_trace_ratio * self.initial }
    }
}

/// Where and why a replicate stopped before the planned rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedEarly {
    /// The last round it ran (its rows of that round are recorded).
    pub round: u64,
    /// The condition that held `patience` rounds in a row.
    pub reason: StopWhen,
}

/// The summary of a run: per replicate, per model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Rounds completed (by the replicate that ran longest).
    pub rounds: u64,
    /// `replicates[r]` lists the models of replicate `r` in scenario order.
    pub replicates: Vec<Vec<ModelSummary>>,
    /// Per replicate, where it stopped early (`null`: it ran every round); present when the
    /// scenario has a `stop` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<Vec<Option<StoppedEarly>>>,
}

/// Follows the metric rows of a run and builds the [`Summary`]; decides early stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryTracker {
    collapse: CollapseSpec,
    stop: Option<StopSpec>,
    /// Planned rounds.
    planned: u64,
    rounds: u64,
    /// First round of the steady-state window.
    steady_from: u64,
    replicates: Vec<BTreeMap<usize, ModelSummary>>,
    /// Per replicate and model: (sum, count) of the diversity metric in the steady window,
    /// summed in round order as the rows arrive.
    steady: Vec<BTreeMap<usize, (f64, u64)>>,
    order: Vec<Vec<String>>,
    /// Per replicate: rounds in a row the stop condition has held.
    streak: Vec<u64>,
    stopped: Vec<Option<StoppedEarly>>,
}

impl SummaryTracker {
    /// A tracker for `replicates` worlds of `rounds` planned rounds with the given collapse
    /// thresholds and stop rule. The steady-state window is the last 10% of the planned
    /// rounds (at least one): rounds `t > rounds - ceil(rounds / 10)`.
    pub fn new(collapse: CollapseSpec, stop: Option<StopSpec>, replicates: usize, rounds: u64) -> Self {
        let tail = rounds.div_ceil(10).max(1);
        SummaryTracker {
            collapse,
            stop,
            planned: rounds,
            rounds: 0,
            steady_from: rounds + 1 - tail.min(rounds + 1),
            replicates: vec![BTreeMap::new(); replicates],
            steady: vec![BTreeMap::new(); replicates],
            order: vec![Vec::new(); replicates],
            streak: vec![0; replicates],
            stopped: vec![None; replicates],
        }
    }

    /// Whether replicate `replicate` has stopped early.
    pub fn has_stopped(&self, replicate: usize) -> bool {
        self.stopped[replicate].is_some()
    }

    /// Takes in one round's rows of replicate `replicate`; returns whether the replicate
    /// stops after this round (its stop condition has now held `patience` training rounds
    /// in a row, round 0 not counted).
    pub fn observe(&mut self, replicate: usize, rows: &[MetricRow]) -> bool {
        self.take(replicate, rows);
        let (Some(stop), Some(round)) = (&self.stop, rows.first().map(|r| r.round)) else { return false };
        if round == 0 || round >= self.planned {
            return false;
        }
        let models = self.replicates[replicate].values();
        let holds = match stop.when {
            StopWhen::AllCollapsed => models.clone().all(|m| m.is_collapsed(&self.collapse)),
            StopWhen::Absorbed => models.filter(|m| m.kind == "text").all(|m| m.support == Some(1.0)),
        };
        let streak = &mut self.streak[replicate];
        *streak = if holds { *streak + 1 } else { 0 };
        if *streak >= stop.patience {
            self.stopped[replicate] = Some(StoppedEarly { round, reason: stop.when });
            return true;
        }
        false
    }

    fn take(&mut self, replicate: usize, rows: &[MetricRow]) {
        let models = &mut self.replicates[replicate];
        let order = &mut self.order[replicate];
        for row in rows {
            if row.text.is_some() {
                continue;
            }
            let index = match order.iter().position(|m| **m == *row.model) {
                Some(i) => i,
                None => {
                    order.push(row.model.to_string());
                    order.len() - 1
                }
            };
            self.rounds = self.rounds.max(row.round);
            let metric = &*row.metric;
            let entry = |kind: &str, diversity: &str| ModelSummary {
                model: row.model.to_string(),
                kind: kind.to_string(),
                diversity_metric: diversity.to_string(),
                initial: row.value,
                last: row.value,
                collapsed_at: None,
                support: None,
                matthew_index: None,
                regularized: None,
                steady_level: None,
            };
            let steady = &mut self.steady[replicate];
            let mut in_window = |value: f64| {
                if row.round >= self.steady_from {
                    let e = steady.entry(index).or_insert((0.0, 0));
                    e.0 += value;
                    e.1 += 1;
                }
            };
            match metric {
                names::GINI_SIMPSON => {
                    let s = models.entry(index).or_insert_with(|| entry("text", names::GINI_SIMPSON));
                    s.last = row.value;
                    in_window(row.value);
                    if s.collapsed_at.is_none() && s.is_collapsed(&self.collapse) {
                        s.collapsed_at = Some(row.round);
                    }
                }
                names::SUPPORT => {
                    if let Some(s) = models.get_mut(&index) {
                        s.support = Some(row.value);
                    }
                }
                m if m.starts_with(names::WEIGHTED_PREFIX) => {
                    let s = models.entry(index).or_insert_with(|| entry("conditional", m));
                    s.last = row.value;
                    in_window(row.value);
                    if s.collapsed_at.is_none() && s.is_collapsed(&self.collapse) {
                        s.collapsed_at = Some(row.round);
                    }
                }
                names::MATTHEW_INDEX => {
                    if let Some(s) = models.get_mut(&index) {
                        s.matthew_index = Some(row.value);
                    }
                }
                names::REGULARIZED => {
                    if let Some(s) = models.get_mut(&index) {
                        *s.regularized.get_or_insert(0.0) += row.value;
                    }
                }
                _ => {}
            }
        }
    }

    /// The summary so far.
    pub fn summary(&self) -> Summary {
        let window = self.planned + 1 - self.steady_from;
        let replicates = self
            .replicates
            .iter()
            .zip(&self.steady)
            .zip(&self.stopped)
            .map(|((models, steady), stopped)| {
                let level = |i: &usize, m: &ModelSummary| match stopped {
                    // Held at its last value over the window rounds it did not run.
                    Some(_) => {
                        let (sum, n) = steady.get(i).copied().unwrap_or((0.0, 0));
                        Some((sum + m.last * (window - n) as f64) / window as f64)
                    }
                    None => steady.get(i).map(|(sum, n)| sum / *n as f64),
                };
                models.iter().map(|(i, m)| ModelSummary { steady_level: level(i, m), ..m.clone() }).collect()
            })
            .collect();
        let stopped_early = self.stop.is_some().then(|| self.stopped.clone());
        Summary { rounds: self.rounds, replicates, stopped_early }
    }
}

impl Summary {
    /// A short human-readable report (what the CLI prints).
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let r = self.replicates.len();
        let Some(first) = self.replicates.first() else { return out };
        for (m, model) in first.iter().enumerate() {
            let across: Vec<&ModelSummary> = self.replicates.iter().filter_map(|rep| rep.get(m)).collect();
            let mean_last = across.iter().map(|s| s.last).sum::<f64>() / across.len() as f64;
            let collapsed: Vec<u64> = across.iter().filter_map(|s| s.collapsed_at).collect();
            let _ = write!(
                out,
                "{:<16} {:<12} {} {} -> {}",
                model.model,
                model.kind,
                model.diversity_metric,
                format_level(model.initial),
                format_level(mean_last)
            );
            if r > 1 {
                let _ = write!(out, " (mean of {r})");
            }
            if let Some(s) = model.support.filter(|_| r == 1) {
                let _ = write!(out, ", support {s}");
            }
            match (collapsed.len(), r) {
                (0, _) => out.push_str(", no collapse"),
                (_, 1) => {
                    let _ = write!(out, ", collapsed at round {}", collapsed[0]);
                }
                (c, _) => {
                    let _ = write!(out, ", collapsed in {c}/{r} replicates (median round {})", median(&collapsed));
                }
            }
            out.push('\n');
        }
        let stops: Vec<&StoppedEarly> = self.stopped_early.iter().flatten().flatten().collect();
        if let Some(first) = stops.first() {
            let rounds: Vec<u64> = stops.iter().map(|s| s.round).collect();
            let reason = match first.reason {
                StopWhen::AllCollapsed => "every model collapsed",
                StopWhen::Absorbed => "every text model absorbed",
            };
            let _ = writeln!(out, "stopped early ({reason}) in {}/{r} replicates, at round {}", stops.len(), rounds_list(&rounds));
        }
        out
    }
}

/// `12` for one round, else `min..max (median m)`.
fn rounds_list(rounds: &[u64]) -> String {
    let (min, max) = (rounds.iter().min().copied().unwrap_or(0), rounds.iter().max().copied().unwrap_or(0));
    if min == max { min.to_string() } else { format!("{min}..{max} (median {})", median(rounds)) }
}

/// The one format of the numbers summaries print (diversities, divergences): four
/// significant digits, in plain decimals from 1e-3 to 1e4 and in scientific notation outside,
/// so a collapsed image model's `weighted_trace` of 2e-7 does not print as `0.0000` and a
/// Gini-Simpson index of 0.8 prints as `0.8000`; zero prints as `0`. The files keep every
/// digit (`format_value`).
pub fn format_level(x: f64) -> String {
    // Zero (a collapsed text model's Gini-Simpson index) is exact: print it as such.
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    // Round to four significant digits first, then read the exponent of the rounded value
    // (9.99996 rounds to 1.000e1, which prints as 10.00, not 10.000).
    let sci = format!("{x:.3e}");
    let exponent: i32 = sci.rsplit_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    if (-3..4).contains(&exponent) {
        let decimals = (3 - exponent).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        sci
    }
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(round: u64, gini: f64, weighted_trace: f64) -> Vec<MetricRow> {
        let row =
            |model: &str, metric: &str, value: f64| MetricRow { round, model: model.into(), text: None, metric: metric.into(), value };
        vec![
            row("captioner", names::GINI_SIMPSON, gini),
            row("captioner", names::SUPPORT, 2.0),
            row("painter", "weighted_trace", weighted_trace),
        ]
    }

    #[test]
    fn all_collapsed_stops_after_patience_rounds_of_every_model_below_its_threshold() {
        let collapse = CollapseSpec { text_gini: 0.01, image_trace_ratio: 0.01 };
        let stop = StopSpec { when: StopWhen::AllCollapsed, patience: 3 };
        let mut tracker = SummaryTracker::new(collapse, Some(stop), 1, 100);
        // Initial trace 1: the image model collapses below 0.01. Round 2: only the text model
        // has collapsed; rounds 3-4 both, round 5 the image model is back above (the streak
        // restarts), rounds 6-8 both: the replicate stops at round 8.
        let series = [(0, 0.5, 1.0), (1, 0.3, 0.5), (2, 0.005, 0.5), (3, 0.005, 0.005), (4, 0.004, 0.005), (5, 0.004, 0.02)];
        for (round, gini, trace) in series {
            assert!(!tracker.observe(0, &rows(round, gini, trace)), "round {round}");
        }
        assert!(!tracker.observe(0, &rows(6, 0.004, 0.009)));
        assert!(!tracker.observe(0, &rows(7, 0.004, 0.009)));
        assert!(tracker.observe(0, &rows(8, 0.0, 0.001)));
        let summary = tracker.summary();
        assert_eq!(summary.stopped_early, Some(vec![Some(StoppedEarly { round: 8, reason: StopWhen::AllCollapsed })]));
        // Collapse rounds are first crossings, as without a stop rule.
        assert_eq!(summary.replicates[0][0].collapsed_at, Some(2));
        assert_eq!(summary.replicates[0][1].collapsed_at, Some(3));
        // The steady window (rounds 91..=100, 10 rounds) holds the last values of a stopped
        // replicate.
        assert_eq!(summary.replicates[0][0].steady_level, Some(0.0));
        assert_eq!(summary.replicates[0][1].steady_level, Some(0.001));
    }

    #[test]
    fn the_state_goes_through_a_checkpoint_bit_for_bit() {
        let mut tracker = SummaryTracker::new(CollapseSpec::default(), Some(StopSpec { when: StopWhen::Absorbed, patience: 2 }), 2, 10);
        for round in 0..10 {
            let odd = [0.1 + round as f64 / 3.0, f64::NAN, f64::INFINITY, -0.0, 1e-310][round as usize % 5];
            tracker.observe(0, &rows(round, odd, 1.0 / 3.0));
        }
        let back: SummaryTracker = ron::from_str(&ron::to_string(&tracker).unwrap()).unwrap();
        assert_eq!(format!("{:?}", back.summary()), format!("{:?}", tracker.summary()));
        assert_eq!(format!("{back:?}"), format!("{tracker:?}"));
    }
}
