//! What a scenario will cost before anything is allocated: an estimate of its peak memory,
//! its work per round and the volume of its output, worked out from the scenario's numbers
//! alone (texts `K`, dimension `d`, batches `N` and steps `M`, replicates, `Accumulate` and
//! `Augment` data, `NewText` growth, user content, sweep points, loaded datasets) in `u128`
//! arithmetic, so no size a scenario writes can wrap.
//!
//! Two refusals use it:
//! - validation refuses a scenario beyond [`ABSOLUTE_LIMIT`] bytes whatever the machine (so
//!   every size computed from the scenario later, as `usize`, is far from overflowing: an
//!   image model's `batch: 2^63` or a `Uniform(2^63)` is refused here, never wrapped);
//! - loading refuses one beyond the memory the machine reports available, or `--max-memory`
//!   ([`check_memory`]), naming the fields that drive the estimate, and warns above half of
//!   it.
//!
//! The estimate counts the dominant allocations (a text model's caption log-likelihoods
//! `n x K`, an image model's batch `N x d` and per-text `d x d` matrices, the rows measured
//! each round, ...), each with the factor of the buffers that hold them; it is meant to be
//! right within a factor of about two, which is what a refusal needs.

use std::collections::HashMap;

use super::validate::Problem;
use super::{EntitySpec, ImageModelSpec, Injection, Scenario, TextInit, UserSource};
use crate::data::{MemoryLimit, human_bytes};
use crate::models::{DataPolicy, Structure};

/// No scenario may need more than this (1 PiB) whatever the machine: beyond it the estimate
/// itself is the refusal, and sizes derived from the scenario stay far from `usize::MAX`.
pub const ABSOLUTE_LIMIT: u128 = 1 << 50;

/// Bytes of one `f64`.
const F64: u128 = 8;
/// Bytes a measured row takes in memory (a `MetricRow`: shared names, round, text, value).
const ROW_BYTES: u128 = 64;
/// Bytes a recorded row takes in a CSV table, about (`0,12,painter,3,trace,0.0123...`).
const CSV_ROW_BYTES: u128 = 48;
/// Per-text metrics of a text model and of a conditional model, and model-level metrics of
/// either (upper bounds of what `crate::metrics` measures).
const PER_TEXT_METRICS: u128 = 8;
const MODEL_METRICS: u128 = 16;
/// Memory a sweep keeps per point besides the point's run (its scenario, its row of
/// `sweep.csv`), about.
const SWEEP_POINT_BYTES: u128 = 16 << 10;

/// Numbers one conditional covariance of an image model stores: `d^2` (`Full`) or `d`
/// (`Diagonal`, and `Isotropic`, whose likelihood keeps `d` precisions); also the work of one
/// of its log-densities, or of one sample's share of its refit.
fn stored_covariance(s: &ImageModelSpec) -> u128 {
    let d = u128::from(s.dim);
    if s.structure == Structure::Full { d.saturating_mul(d) } else { d }
}

/// One allocation the estimate counts, where it comes from in the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Index and name of the entity whose fields drive it (`None`: the scenario's own).
    pub entity: Option<(usize, String)>,
    /// The entity's kind as written.
    pub kind: &'static str,
    /// The field that drives it (`batch`, `initial`, `dim`, ...).
    pub key: String,
    /// What is allocated, in the scenario's terms (`log-likelihoods: batch 1000 x 5 texts`).
    pub what: String,
    /// Bytes, over every replicate.
    pub bytes: u128,
}

/// A scenario's estimated cost (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Footprint {
    /// Peak memory in bytes: every replicate (and the sweep points run at once) together.
    pub memory: u128,
    /// Arithmetic operations per round, about, over every replicate.
    pub work_per_round: u128,
    /// Bytes the tables will hold at the end of the run (CSV; every sweep point).
    pub output: u128,
    /// The memory terms, largest first.
    pub terms: Vec<Term>,
    /// Sweep points (1 without a sweep).
    pub points: u128,
}

/// The largest value a schedule takes (at its declared points: between them it interpolates).
fn max_u64(s: &crate::models::Schedule<u64>) -> u128 {
    s.points().into_iter().map(|(_, v)| u128::from(v)).max().unwrap_or(0)
}

fn max_f64(s: &crate::models::Schedule<f64>) -> f64 {
    s.points().into_iter().map(|(_, v)| v).fold(0.0, f64::max)
}

/// `x` (a non-negative count from a float product) as `u128`, saturating; NaN counts as 0.
fn count(x: f64) -> u128 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u128::MAX as f64 {
        u128::MAX
    } else {
        x.ceil() as u128
    }
}

/// Samples a data policy adds to a batch of `n` or keeps across rounds: `(per refit, kept)`.
fn policy_samples(policy: &DataPolicy, n: u128) -> (u128, u128) {
    match policy {
        DataPolicy::Augment { lambda } => (n.saturating_add(count(*lambda * n as f64)), n),
        DataPolicy::Accumulate { initial } => (n, u128::from(*initial)),
        DataPolicy::Replace | DataPolicy::Fresh { .. } => (n, 0),
    }
}

impl Footprint {
    /// The estimate for `scenario` (validated as far as its wiring goes; names that do not
    /// resolve count as nothing). Linear in the number of entities.
    pub fn of(scenario: &Scenario) -> Footprint {
        let index: HashMap<&str, usize> = scenario.entities.iter().enumerate().map(|(i, e)| (e.name(), i)).collect();
        let rounds = u128::from(scenario.rounds);
        let replicates = u128::from(scenario.replicates.max(1));
        // Texts each text model starts with, and the ones `NewText` injections may add.
        let mut texts: Vec<u128> = scenario
            .entities
            .iter()
            .map(|e| match e {
                EntitySpec::TextModel(t) => match &t.initial {
                    TextInit::Uniform(k) => u128::from(*k),
                    TextInit::Probabilities(p) => p.len() as u128,
                    TextInit::FromData(name) => index
                        .get(name.as_str())
                        .and_then(|&i| match &scenario.entities[i] {
                            EntitySpec::Dataset(d) => d.loaded.as_ref().map(|d| d.num_labels() as u128),
                            _ => None,
                        })
                        .unwrap_or(0),
                },
                _ => 0,
            })
            .collect();
        for e in &scenario.entities {
            if let EntitySpec::CorpusInjector(c) = e
                && matches!(c.distribution, Injection::NewText)
                && let Some(&t) = index.get(c.target.as_str())
            {
                // Expected new texts: one per round with probability alpha.
                texts[t] = texts[t].saturating_add(count(max_f64(&c.alpha).min(1.0) * rounds as f64));
            }
        }
        let texts_of = |name: &str| index.get(name).map_or(0, |&i| texts[i]);
        // Per text model: the dimensions of the samples its conditionals add per caption, and
        // the work of one log-density per caption and text (`d^2` for a full covariance, `d`
        // for a structured one: docs/model.md section 14).
        let mut sample_dims: Vec<u128> = vec![0; scenario.entities.len()];
        let mut square_dims: Vec<u128> = vec![0; scenario.entities.len()];
        for e in &scenario.entities {
            let (d, work) = match e {
                EntitySpec::ImageModel(s) => (u128::from(s.dim), stored_covariance(s)),
                EntitySpec::PluginModel(_) => (1, 1),
                _ => continue,
            };
            let fed = e.conditioned_on().into_iter().chain(e.feed().iter().map(|(t, _)| t.as_str()));
            for t in fed {
                if let Some(&i) = index.get(t) {
                    sample_dims[i] = sample_dims[i].saturating_add(d);
                    square_dims[i] = square_dims[i].saturating_add(work);
                }
            }
        }

        let mut f = Footprint { points: 1, ..Footprint::default() };
        let mut rows: u128 = 0;
        let mut recorded_rows: u128 = 0;
        let per_text = scenario.output.per_text;
        let term = |f: &mut Footprint, i: usize, e: &EntitySpec, key: &str, what: String, bytes: u128| {
            f.terms.push(Term {
                entity: Some((i, e.name().to_string())),
                kind: e.kind(),
                key: key.to_string(),
                what,
                bytes: bytes.saturating_mul(replicates),
            });
        };
        for (i, e) in scenario.entities.iter().enumerate() {
            match e {
                EntitySpec::TextModel(t) => {
                    let k = texts[i];
                    let (n, kept) = policy_samples(&t.data, u128::from(t.batch));
                    let key = if matches!(t.data, DataPolicy::Augment { .. }) { "data" } else { "batch" };
                    // p, p0, accumulated and soft counts, sampling p, counts, real counts.
                    term(&mut f, i, e, "initial", format!("text distributions: 8 x {k} texts"), k.saturating_mul(8 * F64));
                    term(
                        &mut f,
                        i,
                        e,
                        key,
                        format!("caption log-likelihoods: {n} captions x {k} texts"),
                        n.saturating_mul(k).saturating_mul(F64),
                    );
                    term(
                        &mut f,
                        i,
                        e,
                        key,
                        format!("conditional samples: {n} captions x {} coordinates", sample_dims[i]),
                        n.saturating_mul(sample_dims[i]).saturating_mul(F64),
                    );
                    if kept > 0 {
                        term(&mut f, i, e, "data", format!("real captions: {kept}"), kept.saturating_mul(F64));
                    }
                    let steps = u128::from(t.steps);
                    let step = n.saturating_mul(k.saturating_add(square_dims[i]));
                    f.work_per_round = f.work_per_round.saturating_add(steps.saturating_mul(step).saturating_mul(replicates));
                    rows = rows.saturating_add(k.saturating_mul(PER_TEXT_METRICS) + MODEL_METRICS);
                    recorded_rows =
                        recorded_rows.saturating_add(if per_text { k.saturating_mul(PER_TEXT_METRICS) } else { 0 } + MODEL_METRICS);
                }
                EntitySpec::ImageModel(s) => {
                    let (k, d) = (texts_of(&s.conditioned_on), u128::from(s.dim));
                    // `Fixed(n)` gives every text exactly n samples whatever `batch` says.
                    let (per_round, key) = match s.allocation {
                        crate::models::Allocation::Fixed(each) => (k.saturating_mul(each as u128), "allocation"),
                        crate::models::Allocation::Binomial => (u128::from(s.batch), "batch"),
                    };
                    let (n, kept) = policy_samples(&s.data, per_round);
                    // Means, covariances (current, initial, last round's), their roots, the
                    // likelihood factors and the draws' statistics: about 8 of each per text.
                    let (field, size) = match s.structure {
                        Structure::Full => ("dim", format!("{d} x {d}")),
                        other => ("structure", format!("{} {}", other.name(), d)),
                    };
                    term(
                        &mut f,
                        i,
                        e,
                        field,
                        format!("per-text Gaussians: {k} texts x 8 x ({size} + {d})"),
                        k.saturating_mul(stored_covariance(s).saturating_add(d)).saturating_mul(8 * F64),
                    );
                    term(
                        &mut f,
                        i,
                        e,
                        key,
                        format!("image batch: {n} samples x {d} coordinates"),
                        n.saturating_mul(d).saturating_mul(2 * F64),
                    );
                    if kept > 0 {
                        term(
                            &mut f,
                            i,
                            e,
                            "data",
                            format!("real samples: {kept} x {d} coordinates"),
                            kept.saturating_mul(d).saturating_mul(F64),
                        );
                    }
                    let steps = u128::from(s.steps);
                    // Scatter per sample, then a factorisation per text (`d^3` for `Full`).
                    let square = stored_covariance(s);
                    let factorisation = if s.structure == Structure::Full { square.saturating_mul(d) } else { square };
                    let step = n.saturating_mul(square).saturating_add(k.saturating_mul(factorisation));
                    f.work_per_round = f.work_per_round.saturating_add(steps.saturating_mul(step).saturating_mul(replicates));
                    rows = rows.saturating_add(k.saturating_mul(PER_TEXT_METRICS) + MODEL_METRICS);
                    recorded_rows =
                        recorded_rows.saturating_add(if per_text { k.saturating_mul(PER_TEXT_METRICS) } else { 0 } + MODEL_METRICS);
                }
                EntitySpec::PluginModel(s) => {
                    let k = texts_of(&s.conditioned_on);
                    let (n, kept) = policy_samples(&s.data, u128::from(s.batch));
                    // The plugin's own dimension is known once it is loaded: count one coordinate.
                    term(&mut f, i, e, "batch", format!("plugin batch: {n} samples"), n.saturating_add(kept).saturating_mul(2 * F64));
                    f.work_per_round = f.work_per_round.saturating_add(u128::from(s.steps).saturating_mul(n).saturating_mul(replicates));
                    rows = rows.saturating_add(k.saturating_mul(PER_TEXT_METRICS) + MODEL_METRICS);
                    recorded_rows =
                        recorded_rows.saturating_add(if per_text { k.saturating_mul(PER_TEXT_METRICS) } else { 0 } + MODEL_METRICS);
                }
                EntitySpec::UserContentInjector(u) => {
                    let (k, d) = match index.get(u.target.as_str()).map(|&t| &scenario.entities[t]) {
                        Some(EntitySpec::ImageModel(s)) => (texts_of(&s.conditioned_on), u128::from(s.dim)),
                        Some(EntitySpec::PluginModel(s)) => (texts_of(&s.conditioned_on), 1),
                        _ => (0, 0),
                    };
                    let n0 = max_u64(&u.n0);
                    if !matches!(u.source, UserSource::Data(_)) || n0 > 0 {
                        term(
                            &mut f,
                            i,
                            e,
                            "n0",
                            format!("user content: {n0} images x {k} texts x {d} coordinates"),
                            n0.saturating_mul(k).saturating_mul(d).saturating_mul(2 * F64),
                        );
                    }
                }
                // A `Fixed` distribution is written in the file: already in memory.
                EntitySpec::CorpusInjector(c) => {
                    if let Injection::RandomTokens(n) = c.distribution {
                        f.work_per_round = f.work_per_round.saturating_add(u128::from(n).saturating_mul(replicates));
                    }
                }
                EntitySpec::Temperature(_) | EntitySpec::Dataset(_) => {}
            }
        }
        // The drift chains of `phases.csv` keep two windows of values per conditional model.
        let conditionals = scenario.entities.iter().filter(|e| e.conditioned_on().is_some()).count() as u128;
        let window = u128::from(scenario.diagnostics.window);
        f.terms.push(Term {
            entity: None,
            kind: "",
            key: "diagnostics".to_string(),
            what: format!("drift windows: {conditionals} conditional models x 2 x {window} rounds"),
            bytes: conditionals.saturating_mul(window).saturating_mul(4 * F64).saturating_mul(replicates),
        });
        // The rows of a round, measured per replicate, and formatted for the tables.
        f.terms.push(Term {
            entity: None,
            kind: "",
            key: "replicates".to_string(),
            what: format!("measured rows: {rows} per round x {replicates} replicates"),
            bytes: rows.saturating_mul(ROW_BYTES).saturating_mul(replicates).saturating_mul(2),
        });
        let per_run: u128 = f.terms.iter().fold(0u128, |a, t| a.saturating_add(t.bytes));
        let every = u128::from(scenario.output.every.max(1));
        let recorded_rounds = (rounds / every).saturating_add(2);
        let run_output = recorded_rows.saturating_mul(replicates).saturating_mul(recorded_rounds).saturating_mul(CSV_ROW_BYTES);
        // A sweep runs its points one per worker thread at a time, and keeps every point's
        // scenario and row.
        let points =
            scenario.sweep.as_ref().map_or(1, |s| s.parameters.iter().fold(1u128, |a, p| a.saturating_mul(p.values.len() as u128)));
        let at_once = points.min(std::thread::available_parallelism().map_or(1, |n| n.get() as u128));
        f.points = points;
        f.memory = per_run.saturating_mul(at_once).saturating_add(if scenario.sweep.is_some() {
            points.saturating_mul(SWEEP_POINT_BYTES)
        } else {
            0
        });
        if scenario.sweep.is_some() {
            f.terms.push(Term {
                entity: None,
                kind: "",
                key: "sweep".to_string(),
                what: format!("sweep: {points} points"),
                bytes: points.saturating_mul(SWEEP_POINT_BYTES),
            });
        }
        f.output = run_output.saturating_mul(points);
        f.terms.sort_by_key(|t| std::cmp::Reverse(t.bytes));
        f
    }

    /// Problems naming the (at most three) largest memory terms, each located at its field,
    /// for an estimate of [`memory`](Self::memory) bytes against `limit` bytes (`why` says
    /// where the limit comes from).
    fn refusal(&self, limit: u128, why: &str) -> Vec<Problem> {
        let total = human_bytes(self.memory);
        self.terms
            .iter()
            .filter(|t| t.bytes > 0)
            .take(3)
            .map(|t| Problem {
                entity: t.entity.clone(),
                kind: t.kind,
                key: t.key.clone(),
                message: format!(
                    "the scenario needs about {total} of memory, more than {} ({why}); this field drives {} of it ({}): reduce it{}",
                    human_bytes(limit),
                    human_bytes(t.bytes),
                    t.what,
                    if why.starts_with("--max-memory") { "" } else { ", or raise the limit with --max-memory SIZE" }
                ),
            })
            .collect()
    }
}

/// Validation's refusal: anything beyond [`ABSOLUTE_LIMIT`] (see the module docs).
pub(super) fn check_absolute(scenario: &Scenario) -> Vec<Problem> {
    let f = Footprint::of(scenario);
    let mut problems = Vec::new();
    if f.memory > ABSOLUTE_LIMIT {
        problems = f.refusal(ABSOLUTE_LIMIT, "what any machine has");
    }
    if f.points > u128::from(u32::MAX) {
        problems.push(Problem {
            entity: None,
            kind: "",
            key: "sweep".to_string(),
            message: format!(
                "the sweep has {} points, more than {} (the grid is the product of every parameter's values)",
                f.points,
                u32::MAX
            ),
        });
    }
    problems
}

/// Refuses a scenario whose estimated memory exceeds `max_memory` bytes (`--max-memory`), or
/// else the memory the system reports available, naming the fields that drive it; warns (in
/// the log) above half of it, and when a round or the output will be large.
pub fn check_memory(scenario: &Scenario, max_memory: Option<u64>) -> Result<Footprint, Vec<Problem>> {
    let f = Footprint::of(scenario);
    let (limit, why) = match max_memory {
        Some(bytes) => (Some(u128::from(bytes)), "--max-memory"),
        None => (MemoryLimit::new(None).map(|l| u128::from(l.bytes)), "the memory the system reports available"),
    };
    if let Some(limit) = limit {
        if f.memory > limit {
            return Err(f.refusal(limit, why));
        }
        if f.memory > limit / 2 {
            tracing::warn!(
                "{}: needs about {} of memory, more than half of {} ({why})",
                scenario.name,
                human_bytes(f.memory),
                human_bytes(limit)
            );
        }
    }
    // About 1e11 operations take a minute or more on one core.
    if f.work_per_round > 100_000_000_000 {
        tracing::warn!("{}: about {:.1e} operations per round; each round will take minutes", scenario.name, f.work_per_round as f64);
    }
    if f.output > 10 << 30 {
        tracing::warn!(
            "{}: the tables will hold about {} (use output.every or output.metrics to record less)",
            scenario.name,
            human_bytes(f.output)
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(entities: &str) -> Scenario {
        let source = format!("(name: \"t\", rounds: 10, entities: [{entities}])");
        crate::scenario::ron_options().from_str(&source).expect("parses")
    }

    #[test]
    fn the_log_likelihood_matrix_drives_a_huge_text_model() {
        let f = Footprint::of(&scenario(
            "TextModel(name: \"a\", initial: Uniform(1000000000)), ImageModel(name: \"b\", conditioned_on: \"a\")",
        ));
        // 1000 captions x 1e9 texts x 8 bytes = 8e12 bytes.
        let top = &f.terms[0];
        assert_eq!((top.key.as_str(), top.bytes), ("batch", 1000 * 1_000_000_000 * 8));
        assert!(f.memory > 8_000_000_000_000);
    }

    #[test]
    fn sizes_beyond_u64_do_not_wrap() {
        let f = Footprint::of(&scenario(&format!(
            "TextModel(name: \"a\", initial: Uniform(1)), ImageModel(name: \"b\", conditioned_on: \"a\", batch: {})",
            1u64 << 63
        )));
        assert!(f.memory > ABSOLUTE_LIMIT, "{}", f.memory);
        assert!(!check_absolute(&scenario(&format!("TextModel(name: \"a\", initial: Uniform({}))", u64::MAX))).is_empty());
    }

    #[test]
    fn a_fixed_allocation_counts_every_text_s_samples() {
        // The fuzz campaign's mutant: `Fixed(2^63)` on 5 texts summed past usize::MAX in the
        // image phase; the estimate must see K n samples, not `batch`.
        let fixed = scenario(&format!(
            "TextModel(name: \"a\", initial: Uniform(5)), ImageModel(name: \"b\", conditioned_on: \"a\", allocation: Fixed({}))",
            1u64 << 63
        ));
        let top = Footprint::of(&fixed).terms.into_iter().max_by_key(|t| t.bytes).expect("terms");
        assert_eq!(top.key, "allocation");
        assert!(!check_absolute(&fixed).is_empty());
    }

    #[test]
    fn the_paper_scenario_is_small() {
        let f = Footprint::of(&scenario("TextModel(name: \"a\"), ImageModel(name: \"b\", conditioned_on: \"a\")"));
        assert!(f.memory < 1 << 20, "{}", f.memory);
        assert!(check_absolute(&scenario("TextModel(name: \"a\")")).is_empty());
    }
}
