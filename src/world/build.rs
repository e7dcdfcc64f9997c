//! Building a world from a validated scenario and its [`Resolved`] form.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::components::*;
use super::{
    BuildContext, CorpusInjection, DataMetrics, Measure, RoundFeature, RoundSchedules, Temperatures, UserContent, allocate_captions,
    draw_captions, fresh_captions, fresh_images, generate_images, refit_conditionals, refit_texts, score_captions,
};
use crate::data::Dataset;
use crate::models::text::multinomial_counts;
use crate::models::{Allocation, DataPolicy, GaussianImageModel, TextModel};
use crate::resolve::{BuildError, Gaussians, Resolved, ResolvedEntity};
use crate::scenario::{EntitySpec, ImageModelSpec, Scenario};

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
    for spec in &scenario.entities {
        let name: Arc<str> = Arc::from(spec.name());
        let e = world.spawn(EntityName(name.clone())).id();
        if let Some(&window) = spec.active() {
            world.entity_mut(e).insert(ActiveWindow(window));
        }
        entities.all.push(e);
        entities.by_name.insert(name, e);
    }
    world.insert_resource(entities);
    let resolved = Resolved::of(scenario)?;
    let mut ctx = BuildContext { world: &mut world, scenario, resolved: &resolved, schedules };
    spawn_text_models(&mut ctx);
    spawn_conditional_models(&mut ctx)?;
    add_core_systems(&mut ctx);
    let builtin: [&dyn RoundFeature; 5] = [&Temperatures, &CorpusInjection, &UserContent, &Measure, &DataMetrics];
    for feature in builtin.into_iter().chain(extra.iter().map(|f| &**f)) {
        feature.build(&mut ctx)?;
    }
    Ok(world)
}

/// The systems every world runs: the text phase and the image phase of docs/model.md section 3, with
/// the real data of the data policies (docs/model.md section 6).
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

/// Gives the scenario's text models their components.
fn spawn_text_models(ctx: &mut BuildContext<'_>) {
    for (order, spec) in ctx.scenario.entities.iter().enumerate() {
        let EntitySpec::TextModel(s) = spec else { continue };
        let e = ctx.scenario_entity(order);
        let RandomStream(mut stream) = ctx.stream(&s.name);
        let mut model = TextModel::new(ctx.resolved.p0(order).to_vec(), s.data.clone(), &mut stream);
        if let DataPolicy::Augment { .. } = s.data {
            model.seed_real(s.batch, &mut stream);
        }
        let agent = TextAgent { model, batch: s.batch, steps: s.steps };
        let mut entity = ctx.world.entity_mut(e);
        entity.insert((RandomStream(stream), agent, SamplingTemperature(1.0), CaptionBatch::default()));
        if s.frozen {
            entity.insert(Frozen);
        }
        ctx.world.resource_mut::<ScenarioEntities>().texts.push(e);
    }
}

/// Gives the scenario's conditional models (built-in Gaussian image models and plugin
/// models) their components, wired to their text model and feed.
fn spawn_conditional_models(ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
    for (order, spec) in ctx.scenario.entities.iter().enumerate() {
        let ResolvedEntity::Conditional { text, feed, initial, data, .. } = &ctx.resolved.entities[order] else { continue };
        let (e, name) = (ctx.scenario_entity(order), spec.name());
        let RandomStream(mut stream) = ctx.stream(name);
        let p0 = ctx.resolved.p0(*text);
        let (agent, frozen) = match (spec, initial) {
            (EntitySpec::ImageModel(s), Some(initial)) => {
                let model = gaussian_model(s, initial, p0, data.as_ref(), &mut stream);
                (ConditionalAgent { model: Box::new(model), batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            (EntitySpec::PluginModel(s), _) => {
                let model = crate::plugin::build_conditional(s, p0, &mut stream)
                    .map_err(|message| BuildError { entity: name.to_string(), message })?;
                (ConditionalAgent { model, batch: s.batch, steps: s.steps, allocation: s.allocation }, s.frozen)
            }
            _ => unreachable!("a resolved conditional is an image model with its Gaussians or a plugin model"),
        };
        let feed: Vec<(Entity, f64)> = feed.iter().map(|&(source, w)| (ctx.scenario_entity(source), w)).collect();
        let on = ConditionedOn(ctx.scenario_entity(*text));
        let mut entity = ctx.world.entity_mut(e);
        entity.insert((RandomStream(stream), agent, on, SamplingTemperature(1.0), ImageBatch::default()));
        if frozen {
            entity.insert(Frozen);
        }
        if !feed.is_empty() {
            entity.insert(Feed::new(feed));
        }
        if let Some(data) = data {
            entity.insert(RealData(data.clone()));
        }
        ctx.world.resource_mut::<ScenarioEntities>().conditionals.push(e);
    }
    Ok(())
}

/// The built-in image model from its resolved initial Gaussians, with its dataset as its real
/// data if it was built from one; seeded with real pairs under `Accumulate` (its `initial`
/// real dataset) and `Augment` (its fixed `N` real samples, or `n` per text under `Fixed(n)`):
/// captions from the text model's `p0`, or the dataset's label distribution, and images from
/// the initial conditionals, or the dataset's rows (a bootstrap).
fn gaussian_model(
    s: &ImageModelSpec,
    initial: &Gaussians,
    p0: &[f64],
    data: Option<&Arc<Dataset>>,
    stream: &mut crate::rng::Stream,
) -> GaussianImageModel {
    let g = initial.clone();
    let mut model = GaussianImageModel::new(g.means, g.covariances, s.estimator, s.data.clone(), g.new_text);
    let real_p = match data {
        Some(data) => {
            model = model.with_real_data(data.clone());
            data.label_distribution()
        }
        None => p0.to_vec(),
    };
    let mut counts = Vec::new();
    match (&s.data, s.allocation) {
        (&DataPolicy::Accumulate { initial }, _) => multinomial_counts(initial, &real_p, stream, &mut counts),
        (&DataPolicy::Augment { .. }, Allocation::Binomial) => multinomial_counts(s.batch, &real_p, stream, &mut counts),
        (&DataPolicy::Augment { .. }, Allocation::Fixed(n)) => counts = vec![n; real_p.len()],
        _ => return model,
    }
    model.seed_accumulated(&counts, stream);
    model
}
