//! Measurement (docs/model.md section 7) as a feature: every text model's diversity and every
//! conditional model's per-text metrics and coupling, into [`Measurements`], in scenario
//! order. Influences add their own rows in the Report stage, after these.

use std::collections::HashSet;
use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::components::*;
use super::{BuildContext, BuildError, RoundFeature, RoundPart, RunError, Stage, record_failure};
use crate::metrics::{MetricRow, coupling, names, text as tm};

/// The Measure part's model metrics.
pub struct Measure;

impl RoundFeature for Measure {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        ctx.add_systems(RoundPart::Measure, Stage::Measure, (measure_texts, measure_conditionals.pipe(record_failure)).chain());
        Ok(())
    }
}

/// Interned metric names, so that steady-state rounds do not allocate a string per row.
#[derive(Default)]
pub struct MetricNames(HashSet<Arc<str>>);

impl MetricNames {
    pub(super) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }
}

/// Clears the round's [`Measurements`] and measures every text model: Gini-Simpson,
/// entropy, effective texts, support, max p, spread, TV to `p0`, and `p` per text.
pub fn measure_texts(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    texts: Query<(&TextAgent, &EntityName)>,
    mut measurements: ResMut<Measurements>,
    mut interned: Local<MetricNames>,
) {
    let rows = &mut measurements.0;
    rows.clear();
    for &e in &entities.texts {
        let Ok((agent, name)) = texts.get(e) else { continue };
        let p = &agent.model.p;
        let mut push = |metric: &str, text: Option<u32>, value: f64| {
            rows.push(MetricRow { round: round.0, model: name.0.clone(), text, metric: interned.get(metric), value })
        };
        push(names::GINI_SIMPSON, None, tm::gini_simpson(p));
        push(names::ENTROPY, None, tm::shannon_entropy(p));
        push(names::EFFECTIVE_TEXTS, None, tm::effective_texts(p));
        push(names::SUPPORT, None, tm::support(p) as f64);
        push(names::MAX_P, None, tm::max_p(p));
        push(names::SPREAD, None, tm::spread(p));
        push(names::TV_TO_INITIAL, None, tm::total_variation(p, &agent.model.p0));
        for (i, &pi) in p.iter().enumerate() {
            push(names::P, Some(i as u32), pi);
        }
    }
}

/// Measures every conditional model: its own per-text metrics, then the p-weighted mean of
/// its diversity metric, the Matthew index, and the regularised factorisations since the
/// last measurement.
pub fn measure_conditionals(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    texts: Query<&TextAgent>,
    mut conditionals: Query<(&mut ConditionalAgent, &ConditionedOn, &EntityName)>,
    mut measurements: ResMut<Measurements>,
    mut interned: Local<MetricNames>,
    mut per_text: Local<Vec<f64>>,
    mut diversity: Local<String>,
) -> Result<(), RunError> {
    let (rows, r) = (&mut measurements.0, round.0);
    for &e in &entities.conditionals {
        let Ok((mut agent, on, name)) = conditionals.get_mut(e) else { continue };
        let k = agent.model.num_texts();
        diversity.clear();
        diversity.push_str(agent.model.diversity_metric());
        per_text.clear();
        per_text.resize(k, f64::NAN);
        agent
            .model
            .metrics(&mut |metric: &str, i: usize, value: f64| {
                if metric == diversity.as_str() && i < k {
                    per_text[i] = value;
                }
                rows.push(MetricRow { round: r, model: name.0.clone(), text: Some(i as u32), metric: interned.get(metric), value });
            })
            .map_err(|source| RunError::model(r, name, source))?;
        let weighted = interned.get(&names::weighted(diversity.as_str()));
        let regularized = agent.model.take_regularized() as f64;
        let mut push = |metric: Arc<str>, value: f64| rows.push(MetricRow { round: r, model: name.0.clone(), text: None, metric, value });
        if let Ok(text) = texts.get(on.0) {
            push(weighted, coupling::weighted_mean(&text.model.p, &per_text));
            push(interned.get(names::MATTHEW_INDEX), coupling::matthew_index(&text.model.p, &per_text));
        }
        push(interned.get(names::REGULARIZED), regularized);
    }
    Ok(())
}
