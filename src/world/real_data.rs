//! Metrics against the data (docs/model.md section 10) as a feature: every conditional model built from a
//! dataset is compared, every round, with the empirical moments of that dataset.
//!
//! - per text `i` (a label of the dataset): `frechet_to_data`, the squared Frechet distance
//!   between the conditional `N(mu_i, Sigma_i)` and the label's mean and MLE covariance;
//! - per model: `frechet_to_data_marginal`, the squared Frechet distance between the Gaussian
//!   with the model's marginal moments (the mixture over texts weighted by the `p` of the text
//!   model it is conditioned on) and the data's marginal mean and MLE covariance: an FID in the
//!   model's own embedding space (not Inception FID: no image network is involved).
//!
//! The rows follow every model's own rows in the Measure stage, in scenario order. Models that
//! do not expose their moments (see [`crate::models::ConditionalModel::moments`]) get none.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::components::*;
use super::measure::MetricNames;
use super::{BuildContext, BuildError, RoundFeature, RoundPart, Stage};
use crate::metrics::gaussian::{frechet_sq_with_sqrt, mixture_moments, sqrtm_psd};
use crate::metrics::{MetricRow, names};
use crate::resolve::empirical_moments;

/// The metrics against the data of the models built from a dataset.
pub struct DataMetrics;

impl RoundFeature for DataMetrics {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        let mut any = false;
        let conditionals = ctx.world.resource::<ScenarioEntities>().conditionals.clone();
        for e in conditionals {
            let Some(RealData(data)) = ctx.world.get::<RealData>(e).cloned() else { continue };
            let (labels, (mean, cov)) = empirical_moments(&data);
            let labels = labels.into_iter().map(|(m, s)| (m, s.clone(), sqrtm_psd(&s))).collect();
            let marginal = (mean, cov.clone(), sqrtm_psd(&cov));
            ctx.world.entity_mut(e).insert(DataMoments { labels, marginal });
            any = true;
        }
        if any {
            ctx.add_systems(RoundPart::Measure, Stage::Measure, measure_against_data);
        }
        Ok(())
    }
}

/// Appends `frechet_to_data` (per text) and `frechet_to_data_marginal` of every model built from
/// a dataset to the round's [`Measurements`].
pub fn measure_against_data(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    texts: Query<&TextAgent>,
    conditionals: Query<(&ConditionalAgent, &DataMoments, &ConditionedOn, &EntityName)>,
    mut measurements: ResMut<Measurements>,
    mut interned: Local<MetricNames>,
    mut moments: Local<Vec<(nalgebra::DVector<f64>, nalgebra::DMatrix<f64>)>>,
) {
    let r = round.0;
    for &e in &entities.conditionals {
        let Ok((agent, data, on, name)) = conditionals.get(e) else { continue };
        moments.clear();
        for i in 0..agent.model.num_texts() {
            let Some(m) = agent.model.moments(i) else { break };
            moments.push(m);
        }
        if moments.len() != agent.model.num_texts() {
            continue;
        }
        let per_text: Arc<str> = interned.get(names::FRECHET_TO_DATA);
        for (i, ((mu, sigma), (m, s, root))) in moments.iter().zip(&data.labels).enumerate() {
            let value = frechet_sq_with_sqrt(mu, sigma, m, s, root);
            measurements.0.push(MetricRow { round: r, model: name.0.clone(), text: Some(i as u32), metric: per_text.clone(), value });
        }
        if let Ok(text) = texts.get(on.0) {
            let (mean, cov) = mixture_moments(&text.model.p, &moments);
            let (m, s, root) = &data.marginal;
            let value = frechet_sq_with_sqrt(&mean, &cov, m, s, root);
            let metric = interned.get(names::FRECHET_TO_DATA_MARGINAL);
            measurements.0.push(MetricRow { round: r, model: name.0.clone(), text: None, metric, value });
        }
    }
}
