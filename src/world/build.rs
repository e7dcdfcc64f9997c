//! Building a world from a validated scenario.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use nalgebra::{DMatrix, DVector};

use super::components::*;
use super::{
    BuildContext, CorpusInjection, Measure, RoundFeature, RoundSchedules, Temperatures, UserContent, allocate_captions, draw_captions,
    fresh_captions, fresh_images, generate_images, refit_conditionals, refit_texts, score_captions,
};
use crate::models::text::multinomial_counts;
use crate::models::{DataPolicy, GaussianImageModel, TextModel};
use crate::scenario::{Covariance, EntitySpec, ImageModelSpec, Means, Scenario};

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

/// Builds replicate `replicate` of a validated scenario: every scenario entity is spawned
/// (named, in scenario order), the models get their components and the core systems are
/// registered, then each feature builds: the built-in ones, then `extra` in order.
pub(super) fn build_world(
    scenario: &Scenario,
    replicate: u64,
    schedules: &mut RoundSchedules,
    extra: &[Arc<dyn RoundFeature>],
) -> Result<World, BuildError> {
    let mut world = World::new();
    world.insert_resource(RoundCounter(0));
    world.insert_resource(PhaseIndex(0));
    world.insert_resource(WorldInfo { seed: scenario.seed, replicate });
    world.insert_resource(Measurements::default());
    world.insert_resource(Measuring(true));
    world.insert_resource(Failure::default());
    let mut entities = ScenarioEntities::default();
    for (order, spec) in scenario.entities.iter().enumerate() {
        let name: Arc<str> = Arc::from(spec.name());
        let e = world.spawn((EntityName(name.clone()), ScenarioOrder(order))).id();
        entities.all.push(e);
        entities.by_name.insert(name, e);
    }
    world.insert_resource(entities);
    let mut ctx = BuildContext { world: &mut world, scenario, schedules };
    spawn_models(&mut ctx)?;
    add_core_systems(&mut ctx);
    let builtin: [&dyn RoundFeature; 4] = [&Temperatures, &CorpusInjection, &UserContent, &Measure];
    for feature in builtin.into_iter().chain(extra.iter().map(|f| &**f)) {
        feature.build(&mut ctx)?;
    }
    Ok(world)
}

/// The systems every world runs: the text phase and the image phase of SPEC section 3, with
/// the real data of the data policies (SPEC section 6).
fn add_core_systems(ctx: &mut BuildContext<'_>) {
    use super::{RoundPart::*, Stage, record_failure};
    ctx.add_systems(Prepare, Stage::Prepare, begin_round)
        .add_systems(TextPhase, Stage::Generate, (draw_captions, score_captions.pipe(record_failure)).chain())
        .add_systems(TextPhase, Stage::Curate, fresh_captions)
        .add_systems(TextPhase, Stage::Fit, refit_texts)
        .add_systems(ImagePhase, Stage::Generate, (allocate_captions, generate_images.pipe(record_failure)).chain())
        .add_systems(ImagePhase, Stage::Curate, fresh_images.pipe(record_failure))
        .add_systems(ImagePhase, Stage::Fit, refit_conditionals.pipe(record_failure));
}

/// Conditional models remember this round's starting parameters (for local drift).
fn begin_round(mut conditionals: Query<&mut ConditionalAgent>) {
    for mut c in &mut conditionals {
        c.model.begin_round();
    }
}

/// Gives the scenario's text models and conditional models (built-in Gaussian image models
/// and plugin models) their components: text models first, so that a conditional model's
/// initial state can use its text model's `p0` whatever the file order.
fn spawn_models(ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
    let scenario = ctx.scenario;
    for (order, spec) in scenario.entities.iter().enumerate() {
        let EntitySpec::TextModel(s) = spec else { continue };
        let e = ctx.scenario_entity(order);
        let RandomStream(mut stream) = ctx.stream(&s.name);
        let model = TextModel::new(s.initial.probabilities(), s.data, &mut stream);
        let agent = TextAgent { model, batch: s.batch, steps: s.steps };
        let mut entity = ctx.world.entity_mut(e);
        entity.insert((RandomStream(stream), agent, SamplingTemperature(1.0), CaptionBatch::default()));
        if s.frozen {
            entity.insert(Frozen);
        }
        ctx.world.resource_mut::<ScenarioEntities>().texts.push(e);
    }
    for (order, spec) in scenario.entities.iter().enumerate() {
        let Some(conditioned_on) = spec.conditioned_on() else { continue };
        let name = spec.name();
        let (e, text) = (ctx.scenario_entity(order), ctx.entity(name, conditioned_on)?);
        let RandomStream(mut stream) = ctx.stream(name);
        let p0 = ctx.world.get::<TextAgent>(text).map(|t| t.model.p0.clone()).unwrap_or_default();
        let (agent, frozen) = match spec {
            EntitySpec::ImageModel(s) => {
                let model = gaussian_model(s, &p0, &mut stream);
                (ConditionalAgent { model: Box::new(model), batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            EntitySpec::PluginModel(s) => {
                let model = crate::plugin::build_conditional(s, &p0, &mut stream)
                    .map_err(|message| BuildError { entity: name.to_string(), message })?;
                (ConditionalAgent { model: Box::new(model), batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            _ => unreachable!("only conditional models have `conditioned_on`"),
        };
        let mut feed = Vec::with_capacity(spec.feed().len());
        for (source, weight) in spec.feed() {
            feed.push((ctx.entity(name, source)?, *weight));
        }
        let mut entity = ctx.world.entity_mut(e);
        entity.insert((RandomStream(stream), agent, ConditionedOn(text), SamplingTemperature(1.0), ImageBatch::default()));
        if frozen {
            entity.insert(Frozen);
        }
        if !feed.is_empty() {
            entity.insert(Feed::new(feed));
        }
        ctx.world.resource_mut::<ScenarioEntities>().conditionals.push(e);
    }
    Ok(())
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
pub(super) fn new_text_prior(s: &ImageModelSpec, sigma0: &[DMatrix<f64>]) -> (DVector<f64>, DMatrix<f64>) {
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
