//! Features: each influence on a round registers its components, entities and systems in one
//! place, as bevy's plugins do.
//!
//! A feature's [`build`](RoundFeature::build) runs once per world, after the models are
//! spawned. It finds its scenario entities (or spawns new ones from code), inserts their
//! components, and adds its systems to a [`Stage`] of a [`RoundPart`]. The built-in features
//! are [`Temperatures`](super::Temperatures), [`CorpusInjection`](super::CorpusInjection),
//! [`UserContent`](super::UserContent) and [`Measure`](super::Measure); a feature written
//! outside this crate (see `examples/moderation.rs`) uses exactly the same API.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_ecs::system::ScheduleSystem;

use super::{EntityName, RandomStream, RoundPart, RoundSchedules, ScenarioEntities, Stage, WorldInfo};
use crate::resolve::{BuildError, Resolved, ResolvedEntity};
use crate::rng::entity_stream;
use crate::scenario::{EntitySpec, Scenario};

/// An influence on a round: its entities, components and systems, registered in one place.
pub trait RoundFeature: Send + Sync {
    /// Inserts the feature's components on its scenario entities (or spawns entities with
    /// [`BuildContext::spawn`]) and registers its systems with [`BuildContext::add_systems`].
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError>;
}

/// What a feature builds with: the world being built, the round's schedules and the scenario.
pub struct BuildContext<'a> {
    /// The world being built (models are already spawned).
    pub world: &'a mut World,
    /// The validated scenario.
    pub scenario: &'a Scenario,
    /// Its initial state and wiring, resolved.
    pub resolved: &'a Resolved,
    pub(super) schedules: &'a mut RoundSchedules,
}

/// One influence of the scenario, as a feature builds it: its position in the scenario, its
/// spec, its entity and the entity of the model it acts on.
pub struct Influence<'s, T> {
    /// Index in the scenario's `entities` (and in [`Resolved::entities`]).
    pub index: usize,
    /// Its spec.
    pub spec: &'s T,
    /// Its entity.
    pub entity: Entity,
    /// The entity of its target.
    pub target: Entity,
}

impl<'a> BuildContext<'a> {
    /// The scenario's influences that `pick` selects (by kind), in scenario order, wired to
    /// their targets by the resolved scenario.
    pub fn influences<T>(&self, pick: impl Fn(&'a EntitySpec) -> Option<&'a T>) -> Vec<Influence<'a, T>> {
        let scenario: &'a Scenario = self.scenario;
        scenario
            .entities
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| {
                let spec = pick(spec)?;
                let ResolvedEntity::Influence { target, .. } = self.resolved.entities[index] else { return None };
                Some(Influence { index, spec, entity: self.scenario_entity(index), target: self.scenario_entity(target) })
            })
            .collect()
    }

    /// The entity called `name` (a model or influence of the scenario, or one spawned by a
    /// feature), or a build error naming `by`, the entity that refers to it.
    pub fn entity(&self, by: &str, name: &str) -> Result<Entity, BuildError> {
        self.world
            .resource::<ScenarioEntities>()
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| BuildError { entity: by.to_string(), message: format!("no entity called `{name}`") })
    }

    /// The scenario entity at position `index` of the scenario's `entities`.
    pub fn scenario_entity(&self, index: usize) -> Entity {
        self.world.resource::<ScenarioEntities>().all[index]
    }

    /// The random stream of the entity called `name`: derived from (seed, replicate, name),
    /// so adding an entity changes no other entity's numbers.
    pub fn stream(&self, name: &str) -> RandomStream {
        let info = self.world.resource::<WorldInfo>();
        RandomStream(entity_stream(info.seed, info.replicate, name))
    }

    /// Spawns a new named entity after the scenario's (for influences written in code).
    pub fn spawn(&mut self, name: &str, bundle: impl Bundle) -> Result<Entity, BuildError> {
        if self.world.resource::<ScenarioEntities>().by_name.contains_key(name) {
            return Err(BuildError { entity: name.to_string(), message: "an entity of this name already exists".into() });
        }
        let name: Arc<str> = Arc::from(name);
        let e = self.world.spawn((EntityName(name.clone()), bundle)).id();
        let mut entities = self.world.resource_mut::<ScenarioEntities>();
        entities.all.push(e);
        entities.by_name.insert(name, e);
        Ok(e)
    }

    /// Adds `systems` to `stage` of `part`, after every system registered there before.
    /// A fallible system is added as `system.pipe(record_failure)`.
    pub fn add_systems<M>(&mut self, part: RoundPart, stage: Stage, systems: impl IntoScheduleConfigs<ScheduleSystem, M>) -> &mut Self {
        self.schedules.add_systems(part, stage, systems);
        self
    }
}
