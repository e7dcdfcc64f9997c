//! Building a world from a validated scenario.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use nalgebra::{DMatrix, DVector};

use super::components::*;
use crate::models::text::multinomial_counts;
use crate::models::{DataPolicy, Estimator, GaussianImageModel, TextModel};
use crate::rng::entity_stream;
use crate::scenario::{Covariance, EntitySpec, ImageModelSpec, Means, Scenario, UserSource};

/// A scenario that passed validation but still cannot be built (an internal inconsistency,
/// or a plugin that refuses its parameters).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot build entity `{entity}`: {message}")]
pub struct BuildError {
    /// Name of the entity.
    pub entity: String,
    /// Why.
    pub message: String,
}

/// The paper's initial means: `(cos(2 pi i / K), sin(2 pi i / K))` for `i = 1..K`, padded
/// with zeros up to `d` coordinates.
pub fn unit_circle_means(k: usize, d: usize) -> Vec<DVector<f64>> {
    (1..=k)
        .map(|i| {
            let angle = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
            let mut m = DVector::zeros(d);
            m[0] = angle.cos();
            m[1] = angle.sin();
            m
        })
        .collect()
}

/// The initial covariances an image model spec describes, one per text.
pub fn initial_covariances(spec: &Covariance, k: usize, d: usize) -> Vec<DMatrix<f64>> {
    let rows_to_matrix = |rows: &Vec<Vec<f64>>| {
        let m = DMatrix::from_fn(d, d, |r, c| rows[r][c]);
        // Symmetrise exactly: validation accepted asymmetry at the 1e-9 level only.
        (&m + m.transpose()) * 0.5
    };
    match spec {
        Covariance::Isotropic(s2) => vec![DMatrix::identity(d, d) * *s2; k],
        Covariance::Diagonal(v) => vec![DMatrix::from_diagonal(&DVector::from_column_slice(v)); k],
        Covariance::Full(rows) => vec![rows_to_matrix(rows); k],
        Covariance::PerText(all) => all.iter().map(rows_to_matrix).collect(),
    }
}

/// Builds replicate `replicate` of a validated scenario.
pub fn build_world(scenario: &Scenario, replicate: u64) -> Result<World, BuildError> {
    let mut world = World::new();
    world.insert_resource(RoundCounter(0));
    world.insert_resource(WorldInfo { replicate });
    world.insert_resource(Measurements::default());
    world.insert_resource(Measuring(true));
    world.insert_resource(Failure::default());

    let mut by_name: HashMap<&str, Entity> = HashMap::new();
    let mut texts: HashMap<&str, Vec<f64>> = HashMap::new();
    // Text models first, so conditional models can be wired to them whatever the file order.
    for (order, spec) in scenario.entities.iter().enumerate() {
        let EntitySpec::TextModel(s) = spec else { continue };
        let mut stream = entity_stream(scenario.seed, replicate, &s.name);
        let p0 = s.initial.probabilities();
        texts.insert(&s.name, p0.clone());
        let model = TextModel::new(p0, s.data, &mut stream);
        let mut e = world.spawn((
            EntityName(Arc::from(s.name.as_str())),
            ScenarioOrder(order),
            RandomStream(stream),
            TextAgent { model, batch: s.batch, steps: s.steps },
            SamplingTemperature(1.0),
        ));
        if s.frozen {
            e.insert(Frozen);
        }
        by_name.insert(&s.name, e.id());
    }
    let lookup = |by_name: &HashMap<&str, Entity>, entity: &str, target: &str| {
        by_name
            .get(target)
            .copied()
            .ok_or_else(|| BuildError { entity: entity.to_string(), message: format!("no model called `{target}`") })
    };
    // Conditional models: the built-in Gaussian image model and plugin models alike.
    for (order, spec) in scenario.entities.iter().enumerate() {
        let Some(conditioned_on) = spec.conditioned_on() else { continue };
        let name = spec.name();
        let text = lookup(&by_name, name, conditioned_on)?;
        let mut stream = entity_stream(scenario.seed, replicate, name);
        let p0 = &texts[conditioned_on];
        let (agent, frozen) = match spec {
            EntitySpec::ImageModel(s) => {
                let model = gaussian_model(s, p0, &mut stream);
                (ConditionalAgent { model: Box::new(model), batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            EntitySpec::PluginModel(s) => {
                let model = crate::plugin::build_conditional(s, p0, &mut stream)
                    .map_err(|message| BuildError { entity: name.to_string(), message })?;
                (ConditionalAgent { model: Box::new(model), batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            _ => unreachable!("only conditional models have `conditioned_on`"),
        };
        let mut feed = Vec::with_capacity(spec.feed().len());
        for (source, weight) in spec.feed() {
            feed.push((lookup(&by_name, name, source)?, *weight));
        }
        let mut e = world.spawn((
            EntityName(Arc::from(name)),
            ScenarioOrder(order),
            RandomStream(stream),
            agent,
            ConditionedOn(text),
            SamplingTemperature(1.0),
        ));
        if frozen {
            e.insert(Frozen);
        }
        if !feed.is_empty() {
            e.insert(Feed::new(feed));
        }
        by_name.insert(name, e.id());
    }
    for (order, spec) in scenario.entities.iter().enumerate() {
        let base = (EntityName(Arc::from(spec.name())), ScenarioOrder(order));
        match spec {
            EntitySpec::Temperature(s) => {
                let target = lookup(&by_name, &s.name, &s.target)?;
                world.spawn((base, Temperature { t: s.t }, Targets(target)));
            }
            EntitySpec::CorpusInjector(s) => {
                let target = lookup(&by_name, &s.name, &s.target)?;
                let stream = RandomStream(entity_stream(scenario.seed, replicate, &s.name));
                let injector = CorpusInjector { alpha: s.alpha, eps: s.eps, distribution: s.distribution.clone(), fired: false };
                world.spawn((base, injector, Targets(target), stream));
            }
            EntitySpec::UserContentInjector(s) => {
                let target = lookup(&by_name, &s.name, &s.target)?;
                let source = match (&s.source, scenario.entity(&s.target)) {
                    (UserSource::Initial, _) => None,
                    (UserSource::Gaussian(g), Some(EntitySpec::ImageModel(image))) => {
                        let (k, d) = (texts[image.conditioned_on.as_str()].len(), image.dim as usize);
                        let sigma0 = initial_covariances(&g.covariance, k, d);
                        let prior = new_text_prior(image, &initial_covariances(&image.covariance, k, d));
                        let mu0 = initial_means(&g.means, k, d);
                        Some(GaussianImageModel::new(mu0, sigma0, Estimator::Mle, DataPolicy::Replace, prior))
                    }
                    (UserSource::Gaussian(_), _) => {
                        return Err(BuildError { entity: s.name.clone(), message: format!("`{}` is not an image model", s.target) });
                    }
                };
                let stream = RandomStream(entity_stream(scenario.seed, replicate, &s.name));
                world.spawn((base, UserContentInjector { n0: s.n0 as usize, source }, Targets(target), stream));
            }
            EntitySpec::TextModel(_) | EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_) => {}
        }
    }
    Ok(world)
}

/// The initial means an image model (or a Gaussian user-content source) spec describes.
pub fn initial_means(spec: &Means, k: usize, d: usize) -> Vec<DVector<f64>> {
    match spec {
        Means::UnitCircle => unit_circle_means(k, d),
        Means::Explicit(m) => m.iter().map(|v| DVector::from_column_slice(v)).collect(),
    }
}

/// The conditional a text appended by a `NewText` injection starts from: the spec's `new_text`
/// prior, else mean at the origin with the covariance of text 0.
fn new_text_prior(s: &ImageModelSpec, sigma0: &[DMatrix<f64>]) -> (DVector<f64>, DMatrix<f64>) {
    let d = s.dim as usize;
    match &s.new_text {
        Some(prior) => (DVector::from_column_slice(&prior.mean), initial_covariances(&prior.covariance, 1, d).remove(0)),
        None => (DVector::zeros(d), sigma0.first().cloned().unwrap_or_else(|| DMatrix::identity(d, d) * 0.1)),
    }
}

fn gaussian_model(s: &ImageModelSpec, p0: &[f64], stream: &mut crate::rng::Stream) -> GaussianImageModel {
    let (k, d) = (p0.len(), s.dim as usize);
    let mu0 = initial_means(&s.means, k, d);
    let sigma0 = initial_covariances(&s.covariance, k, d);
    let prior = new_text_prior(s, &sigma0);
    let mut model = GaussianImageModel::new(mu0, sigma0, s.estimator, s.data, prior);
    if let DataPolicy::Accumulate { initial } = s.data {
        // The initial real dataset: `initial` pairs of the initial joint model, captions from
        // the text model's p0 and images from the initial conditionals.
        let mut counts = Vec::new();
        multinomial_counts(initial, p0, stream, &mut counts);
        model.seed_accumulated(&counts, stream);
    }
    model
}
