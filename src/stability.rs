//! Recursive stability (docs/model.md section 8; Fu et al. 2025): two worlds with common random
//! numbers, identical except for one perturbation of the initial data or parameters, and
//! their divergence round by round.
//!
//! The twin worlds are built from the same seed and replicate, so every entity of one draws
//! exactly the random numbers its namesake in the other draws until the perturbation makes
//! their paths differ. The perturbation is applied to the scenario (see
//! [`Perturbation`]): it moves the model's starting point and its real-data source together, as
//! perturbing the initial real dataset does in Fu et al., where every generation's real data
//! come from that dataset.
//!
//! Divergence rows, per round (the tidy format of `metrics.csv`, text column empty):
//! - text model: `tv`, the total variation distance between the twins' `p`;
//! - conditional model: `frechet_sum`, `sum_i W2(q_a(.|i), q_b(.|i))`, the sum over texts of
//!   the Frechet distance (not squared) between the twins' conditionals, from their moments
//!   ([`ConditionalModel::moments`](crate::models::ConditionalModel::moments)); models that
//!   do not expose moments get no row. The Frechet distance is the square root of the closed
//!   form of docs/model.md section 7, so between conditionals that differ only by roundoff it carries an absolute
//!   error of order `sqrt(f64::EPSILON * tr Sigma)` (about 1e-8); identical ones give exactly 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::metrics::gaussian::frechet_sq;
use crate::metrics::text::total_variation;
use crate::metrics::{MetricRow, names};
use crate::output::{format_level, write_atomic};
use crate::resolve::{Resolved, ResolvedEntity};
use crate::run::{ManifestWriter, Rounds, RunFailure, RunOptions, drive, first_failure, prepare_output};
use crate::scenario::{Covariance, EntitySpec, Means, Perturbation, Scenario};
use crate::world::{BuildError, ConditionalAgent, EntityName, RunError, ScenarioEntities, Simulation, TextAgent};

/// The scenario of the twin world: `scenario` with `perturbation` applied (a validated
/// scenario and perturbation; see [`crate::scenario::validate`]).
pub fn perturbed(scenario: &Scenario, perturbation: &Perturbation) -> Scenario {
    let mut twin = scenario.clone();
    let Ok(resolved) = Resolved::of(scenario) else { return twin };
    let as_rows = |m: &nalgebra::DMatrix<f64>| -> Vec<Vec<f64>> { m.row_iter().map(|r| r.iter().copied().collect()).collect() };
    for (e, r) in twin.entities.iter_mut().zip(&resolved.entities) {
        let initial = match r {
            ResolvedEntity::Conditional { initial: Some(g), .. } => Some(g),
            _ => None,
        };
        match (e, perturbation, initial) {
            (EntitySpec::TextModel(s), Perturbation::TextInitial { model, initial }, _) if s.name == *model => s.initial = initial.clone(),
            (EntitySpec::ImageModel(s), Perturbation::MeanShift { model, text, shift }, Some(g)) if s.name == *model => {
                let mut means: Vec<Vec<f64>> = g.means.iter().map(|m| m.iter().copied().collect()).collect();
                for (m, delta) in means[*text as usize].iter_mut().zip(shift) {
                    *m += delta;
                }
                s.means = Means::Explicit(means);
            }
            (EntitySpec::ImageModel(s), Perturbation::CovarianceScale { model, text, factor }, Some(g)) if s.name == *model => {
                let f = *factor;
                let scale_rows = |rows: &mut Vec<Vec<f64>>| rows.iter_mut().flatten().for_each(|x| *x *= f);
                match (text, &mut s.covariance) {
                    (None, Covariance::Isotropic(s2)) => *s2 *= f,
                    (None, Covariance::Diagonal(v)) => v.iter_mut().for_each(|x| *x *= f),
                    (None, Covariance::Full(rows)) => scale_rows(rows),
                    (None, Covariance::PerText(all)) => all.iter_mut().for_each(scale_rows),
                    // Covariances estimated from data: the resolved ones, scaled, written out.
                    (None, covariance @ Covariance::FromData(_)) => {
                        let mut all: Vec<Vec<Vec<f64>>> = g.covariances.iter().map(as_rows).collect();
                        all.iter_mut().for_each(scale_rows);
                        *covariance = Covariance::PerText(all);
                    }
                    (Some(i), covariance) => {
                        let mut all: Vec<Vec<Vec<f64>>> = g.covariances.iter().map(as_rows).collect();
                        scale_rows(&mut all[*i as usize]);
                        *covariance = Covariance::PerText(all);
                    }
                }
            }
            _ => {}
        }
    }
    twin
}

/// Two worlds with common random numbers: `a` from the scenario, `b` from its perturbed twin.
pub struct Twins {
    /// The world of the scenario as written.
    pub a: Simulation,
    /// The world of the perturbed scenario.
    pub b: Simulation,
    rows: Vec<MetricRow>,
    names: [Arc<str>; 2],
}

impl Twins {
    /// Builds replicate `replicate` of `scenario` and of its twin under `perturbation` (`None`:
    /// identical twins). The twins skip the per-model metrics: only their divergence is measured.
    pub fn new(scenario: &Scenario, perturbation: Option<&Perturbation>, replicate: u64) -> Result<Self, BuildError> {
        let twin = perturbation.map_or_else(|| scenario.clone(), |p| perturbed(scenario, p));
        let mut a = Simulation::new(scenario, replicate)?;
        let mut b = Simulation::new(&twin, replicate)?;
        a.set_measuring(false);
        b.set_measuring(false);
        Ok(Twins { a, b, rows: Vec::new(), names: [Arc::from(names::TV), Arc::from(names::FRECHET_SUM)] })
    }

    fn record(&mut self) {
        let round = self.a.round();
        self.rows.clear();
        divergence(&self.a, &self.b, round, &self.names, &mut self.rows);
    }
}

impl Rounds for Twins {
    fn measure(&mut self) -> Result<(), RunError> {
        self.record();
        Ok(())
    }

    fn step(&mut self) -> Result<(), RunError> {
        self.a.step()?;
        self.b.step()?;
        self.record();
        Ok(())
    }

    fn rows(&self) -> &[MetricRow] {
        &self.rows
    }
}

/// Appends the divergence rows of round `round` between the namesake models of `a` and `b`,
/// text models first, each group in scenario order.
fn divergence(a: &Simulation, b: &Simulation, round: u64, names: &[Arc<str>; 2], out: &mut Vec<MetricRow>) {
    // The twins are built from the same entity list (a perturbation changes values, never
    // the wiring), so their entities pair up by scenario position.
    let (wa, wb) = (a.world(), b.world());
    let (ea, eb) = (wa.resource::<ScenarioEntities>(), wb.resource::<ScenarioEntities>());
    for (&ta, &tb) in ea.texts.iter().zip(&eb.texts) {
        let (Some(x), Some(y), Some(name)) = (wa.get::<TextAgent>(ta), wb.get::<TextAgent>(tb), wa.get::<EntityName>(ta)) else { continue };
        out.push(MetricRow {
            round,
            model: name.0.clone(),
            text: None,
            metric: names[0].clone(),
            value: total_variation(&x.model.p, &y.model.p),
        });
    }
    for (&ca, &cb) in ea.conditionals.iter().zip(&eb.conditionals) {
        let (Some(x), Some(y), Some(name)) = (wa.get::<ConditionalAgent>(ca), wb.get::<ConditionalAgent>(cb), wa.get::<EntityName>(ca))
        else {
            continue;
        };
        // Texts both twins hold (a NewText injection fires in the same rounds in both, as the
        // injector's stream is common, so normally all of them).
        let mut sum = 0.0;
        for i in 0..x.model.num_texts().min(y.model.num_texts()) {
            match (x.model.moments(i), y.model.moments(i)) {
                // Identical conditionals are at distance exactly 0; the closed form would
                // leave a roundoff residue of order sqrt(f64::EPSILON * tr Sigma) ~ 1e-8.
                (Some((mu_a, s_a)), Some((mu_b, s_b))) if mu_a == mu_b && s_a == s_b => {}
                (Some((mu_a, s_a)), Some((mu_b, s_b))) => sum += frechet_sq(&mu_a, &s_a, &mu_b, &s_b).sqrt(),
                _ => {
                    sum = f64::NAN;
                    break;
                }
            }
        }
        if !sum.is_nan() {
            out.push(MetricRow { round, model: name.0.clone(), text: None, metric: names[1].clone(), value: sum });
        }
    }
}

/// How the divergence of one model evolved in one replicate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DivergenceSummary {
    /// Model name.
    pub model: String,
    /// `tv` or `frechet_sum`.
    pub metric: String,
    /// At round 0 (the size of the perturbation).
    pub initial: f64,
    /// After the last round.
    pub last: f64,
    /// Largest over all rounds.
    pub max: f64,
}

/// The summary of a stability run (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StabilitySummary {
    /// The perturbation, as written (`None`: identical twins).
    pub perturbation: Option<String>,
    /// Rounds completed.
    pub rounds: u64,
    /// `replicates[r]` lists the models' divergences in replicate `r`.
    pub replicates: Vec<Vec<DivergenceSummary>>,
}

impl StabilitySummary {
    fn observe(&mut self, replicate: usize, rows: &[MetricRow]) {
        let models = &mut self.replicates[replicate];
        for row in rows {
            self.rounds = self.rounds.max(row.round);
            match models.iter_mut().find(|m| *m.model == *row.model && *m.metric == *row.metric) {
                Some(m) => {
                    m.last = row.value;
                    m.max = m.max.max(row.value);
                }
                None => models.push(DivergenceSummary {
                    model: row.model.to_string(),
                    metric: row.metric.to_string(),
                    initial: row.value,
                    last: row.value,
                    max: row.value,
                }),
            }
        }
    }

    /// A short human-readable report (what the CLI prints): per model, the divergence at round 0,
    /// at the end and its maximum, averaged over replicates.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "perturbation: {}", self.perturbation.as_deref().unwrap_or("none (identical twins)"));
        let Some(first) = self.replicates.first() else { return out };
        let r = self.replicates.len() as f64;
        for (m, model) in first.iter().enumerate() {
            let mean = |f: fn(&DivergenceSummary) -> f64| self.replicates.iter().filter_map(|rep| rep.get(m)).map(f).sum::<f64>() / r;
            let _ = write!(
                out,
                "{:<16} {:<12} {} -> {} (max {})",
                model.model,
                model.metric,
                format_level(mean(|s| s.initial)),
                format_level(mean(|s| s.last)),
                format_level(mean(|s| s.max))
            );
            if self.replicates.len() > 1 {
                let _ = write!(out, " (mean of {})", self.replicates.len());
            }
            out.push('\n');
        }
        out
    }
}

/// What a completed stability run produced.
#[derive(Debug, Clone)]
pub struct StabilityOutcome {
    /// The output folder.
    pub out_dir: PathBuf,
    /// The summary (also in `summary.json`).
    pub summary: StabilitySummary,
}

/// The output folder of a stability run: `--out`, else `out/<scenario name>-stability` (the
/// scenario's `output.dir` belongs to `coevo run`).
pub fn stability_dir(scenario: &Scenario, options: &RunOptions) -> PathBuf {
    crate::output::files::lexical(&options.out_dir.clone().unwrap_or_else(|| Path::new("out").join(format!("{}-stability", scenario.name))))
}

/// Runs every replicate's twin worlds of a validated scenario, with the perturbation of its
/// `stability` section, and writes `divergence.csv`, `summary.json` and `manifest.json`.
pub fn run_stability(scenario: &Scenario, source: &str, file: &Path, options: &RunOptions) -> Result<StabilityOutcome, RunFailure> {
    let out_dir = stability_dir(scenario, options);
    let lock = prepare_output(&out_dir, options.force)?;
    let perturbation = scenario.stability.as_ref().and_then(|s| s.perturb.as_ref());
    let mut twins: Vec<Twins> = (0..scenario.replicates).map(|r| Twins::new(scenario, perturbation, r)).collect::<Result<_, _>>()?;
    let manifest = ManifestWriter::new(Some(&out_dir), scenario, source, file);
    manifest.write("running", 0)?;
    let mut summary = StabilitySummary {
        perturbation: perturbation.map(|p| ron::ser::to_string(p).expect("a perturbation serialises")),
        rounds: 0,
        replicates: vec![Vec::new(); twins.len()],
    };
    let (completed, result) = drive(&mut twins, scenario, options, &out_dir.join("divergence.csv"), |r, rows| summary.observe(r, rows));
    let summary_path = out_dir.join("summary.json");
    let written = write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises"));
    let result = first_failure(result, &summary_path, written);
    manifest.finish(completed, None, result)?;
    drop(lock);
    Ok(StabilityOutcome { out_dir, summary })
}
