//! The ECS world of one simulated platform: components, the round schedule and its systems.
//!
//! Every model and every external influence is an entity. A round runs the phases
//! `Prepare -> Text -> Inject -> Image -> Measure` in that order (a chained set of system
//! sets, on the single-threaded executor); systems iterate entities in scenario order, never
//! in query order, so results do not depend on archetype layout.
#![allow(
    clippy::type_complexity,
    clippy::too_many_arguments,
    reason = "ECS systems take many queries and resources by design; Bevy allows these two lints for the same reason"
)]

mod build;
pub mod components;
mod inject;
mod systems;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{LogLevel, ScheduleBuildSettings, SingleThreadedExecutor};

pub use build::{BuildError, build_world, initial_covariances, initial_means, unit_circle_means};
pub use components::*;

use crate::metrics::MetricRow;
use crate::models::ModelError;
use crate::scenario::Scenario;

/// The phases of a training round, run in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Temperatures are applied and models remember last round's parameters.
    Prepare,
    /// Text models refit on the caption posterior of their conditionals' samples (`M` times).
    Text,
    /// External text enters (corpus injection).
    Inject,
    /// Conditional models refit per text on fresh batches (`N_t` times).
    Image,
    /// Every metric of SPEC section 7 is computed into [`Measurements`].
    Measure,
}

/// A failure while running a round.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// A model call failed (a plugin error, a bad buffer, ...).
    #[error("round {round}: model `{model}`: {source}")]
    Model {
        /// Round in which it happened.
        round: u64,
        /// Name of the model entity.
        model: String,
        /// The failing call and its message.
        source: ModelError,
    },
}

fn round_schedule() -> Schedule {
    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.set_build_settings(ScheduleBuildSettings { ambiguity_detection: LogLevel::Error, ..Default::default() });
    schedule.configure_sets((Phase::Prepare, Phase::Text, Phase::Inject, Phase::Image, Phase::Measure).chain());
    schedule.add_systems((systems::sync_temperatures, systems::begin_round).chain().in_set(Phase::Prepare));
    schedule.add_systems(systems::text_phase.in_set(Phase::Text));
    schedule.add_systems(inject::corpus_injection.in_set(Phase::Inject));
    schedule.add_systems(systems::image_phase.in_set(Phase::Image));
    schedule.add_systems((systems::measure, inject::measure_injectors).chain().run_if(|m: Res<Measuring>| m.0).in_set(Phase::Measure));
    schedule
}

fn measure_schedule() -> Schedule {
    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.set_build_settings(ScheduleBuildSettings { ambiguity_detection: LogLevel::Error, ..Default::default() });
    schedule.add_systems((systems::sync_temperatures, systems::measure, inject::measure_injectors).chain());
    schedule
}

/// One simulated platform: a world built from a scenario, and the schedule that advances it.
pub struct Simulation {
    world: World,
    round_schedule: Schedule,
    measure_schedule: Schedule,
}

impl Simulation {
    /// Builds replicate `replicate` of `scenario` (which must have passed validation).
    pub fn new(scenario: &Scenario, replicate: u64) -> Result<Self, BuildError> {
        Ok(Simulation { world: build_world(scenario, replicate)?, round_schedule: round_schedule(), measure_schedule: measure_schedule() })
    }

    /// Switches the Measure phase on or off for the following rounds (benchmarks time the
    /// training alone; a run always measures). Off, [`step`](Self::step) returns no rows.
    pub fn set_measuring(&mut self, on: bool) {
        self.world.resource_mut::<Measuring>().0 = on;
        if !on {
            self.world.resource_mut::<Measurements>().0.clear();
        }
    }

    /// Number of completed rounds.
    pub fn round(&self) -> u64 {
        self.world.resource::<RoundCounter>().0
    }

    /// Measures the current state without training (round 0 is the initial state).
    pub fn measure(&mut self) -> Result<&[MetricRow], RunError> {
        self.measure_schedule.run(&mut self.world);
        self.finish()
    }

    /// Runs one training round and returns its measurements.
    pub fn step(&mut self) -> Result<&[MetricRow], RunError> {
        self.world.resource_mut::<RoundCounter>().0 += 1;
        self.round_schedule.run(&mut self.world);
        self.finish()
    }

    fn finish(&mut self) -> Result<&[MetricRow], RunError> {
        if let Some(e) = self.world.resource_mut::<Failure>().0.take() {
            return Err(e);
        }
        Ok(&self.world.resource::<Measurements>().0)
    }

    /// The ECS world, for inspection.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The ECS world, for tests and tools that change parameters between rounds.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }
}
