//! The ECS world of one simulated platform: components, the round's schedules and systems.
//!
//! Every model and every external influence is an entity. A round runs five parts in order,
//! each a [`Schedule`] on the single-threaded executor:
//!
//! | part | runs | what |
//! |---|---|---|
//! | [`RoundPart::Prepare`] | once | temperatures are applied; models remember last round's parameters |
//! | [`RoundPart::TextPhase`] | `max M` times | text models draw captions, their conditionals score them, text models refit |
//! | [`RoundPart::Inject`] | once | external text enters (corpus injection) |
//! | [`RoundPart::ImagePhase`] | `max N_t` times | conditional models generate, the batch is filtered and curated, they refit |
//! | [`RoundPart::Measure`] | once | every metric into [`Measurements`] |
//!
//! Inside each part the systems sit in the chained [`Stage`] sets `Prepare -> Generate ->
//! Filter -> Curate -> Fit -> Measure -> Report`, and within a stage in the order they were
//! registered. The batch a phase works on is a component of the model entity
//! ([`CaptionBatch`], [`ImageBatch`]), so an influence on it is a system of its own: each
//! feature ([`RoundFeature`]: temperature, corpus injection, user content, measurement, or
//! one written outside this crate) spawns its entities and registers its systems in one
//! place. Systems visit entities in scenario order ([`ScenarioEntities`]), never query order.
#![allow(
    clippy::type_complexity,
    clippy::too_many_arguments,
    reason = "ECS systems take many queries and resources by design; Bevy allows these two lints for the same reason"
)]

mod build;
pub mod components;
mod feature;
mod image_phase;
mod inject;
mod measure;
mod real_data;
mod temperature;
mod text_phase;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{LogLevel, ScheduleBuildSettings, ScheduleConfigs, SingleThreadedExecutor};
use bevy_ecs::system::ScheduleSystem;

pub use crate::resolve::BuildError;
pub use components::*;
pub use feature::{BuildContext, Influence, RoundFeature};
pub use image_phase::{allocate_captions, fresh_images, generate_images, refit_conditionals};
pub use inject::{CorpusInjection, UserContent, draw_user_content};
pub use measure::Measure;
pub use real_data::{DataMetrics, measure_against_data};
pub use temperature::Temperatures;
pub use text_phase::{draw_captions, fresh_captions, refit_texts, score_captions};

use crate::metrics::MetricRow;
use crate::models::ModelError;
use crate::scenario::Scenario;

/// The parts of a training round, run in this order (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoundPart {
    /// Temperatures are applied and models remember last round's parameters.
    Prepare,
    /// One text phase (run `max M` times; text model `m` trains in the first `M_m`).
    TextPhase,
    /// External text enters (corpus injection).
    Inject,
    /// One image phase (run `max N_t` times; conditional `c` trains in the first `N_t,c`).
    ImagePhase,
    /// Every metric is computed into [`Measurements`] (also round 0's, without training).
    Measure,
}

/// The stages inside every part, chained in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Settings for what follows (temperatures, the start of a round).
    Prepare,
    /// Models generate the phase's batch.
    Generate,
    /// What the platform removes from the generated batch (e.g. a moderation filter).
    Filter,
    /// What it adds: real data of the data policies, user content, datasets.
    Curate,
    /// Models refit on the batch.
    Fit,
    /// Models are measured.
    Measure,
    /// Influences report their own metrics after the models'.
    Report,
}

/// The order of registration inside one stage of one part: each registration gets the next
/// slot, and slots run in order, so two features' systems never race for the same data.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot(RoundPart, Stage, usize);

/// A failure while running a round.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// A model call failed (a plugin error, a bad buffer, ...).
    #[error("round {round}: model `{model}`: {source}")]
    Model {
        /// Round in which it happened.
        round: u64,
        /// Name of the model (or influence) entity.
        model: String,
        /// The failing call and its message.
        source: ModelError,
    },
    /// The interrupt flag was raised while round `round` was in progress: the round stopped
    /// between two of its phases and is not complete (see [`Simulation::set_interrupt`]).
    #[error("interrupted during round {round}")]
    Interrupted {
        /// The round in progress.
        round: u64,
    },
}

impl RunError {
    /// A failure of `source` in entity `name` at round `round`.
    pub fn model(round: u64, name: &EntityName, source: ModelError) -> Self {
        RunError::Model { round, model: name.0.to_string(), source }
    }
}

/// Records a system's failure in [`Failure`]: fallible systems are piped into it
/// (`system.pipe(record_failure)`), and the stages after a failure do not run.
pub fn record_failure(In(result): In<Result<(), RunError>>, mut failure: ResMut<Failure>) {
    if let Err(e) = result
        && failure.0.is_none()
    {
        failure.0 = Some(e);
    }
}

fn no_failure(failure: Res<Failure>) -> bool {
    failure.0.is_none()
}

/// The five schedules of a round (see [`RoundPart`]).
pub struct RoundSchedules {
    parts: [(RoundPart, Schedule, Vec<usize>); 5],
}

const PARTS: [RoundPart; 5] = [RoundPart::Prepare, RoundPart::TextPhase, RoundPart::Inject, RoundPart::ImagePhase, RoundPart::Measure];
const STAGES: [Stage; 7] = [Stage::Prepare, Stage::Generate, Stage::Filter, Stage::Curate, Stage::Fit, Stage::Measure, Stage::Report];

impl RoundSchedules {
    fn new() -> Self {
        RoundSchedules {
            parts: PARTS.map(|part| {
                let mut schedule = Schedule::default();
                schedule.set_executor(SingleThreadedExecutor::new());
                // Two systems touching the same data in no defined order is a build error:
                // every result must not depend on an arbitrary order.
                schedule.set_build_settings(ScheduleBuildSettings { ambiguity_detection: LogLevel::Error, ..Default::default() });
                // Each stage checks for a failure before its systems run, so the stages after a
                // failed system never see a half-made batch.
                schedule.configure_sets(
                    (Stage::Prepare, Stage::Generate, Stage::Filter, Stage::Curate, Stage::Fit, Stage::Measure, Stage::Report)
                        .chain()
                        .distributive_run_if(no_failure),
                );
                (part, schedule, vec![0; STAGES.len()])
            }),
        }
    }

    /// Adds `systems` to `stage` of `part`, after every system registered there before.
    pub fn add_systems<M>(&mut self, part: RoundPart, stage: Stage, systems: impl IntoScheduleConfigs<ScheduleSystem, M>) -> &mut Self {
        let (_, schedule, slots) = self.parts.iter_mut().find(|(p, ..)| *p == part).expect("every part has a schedule");
        let index = STAGES.iter().position(|s| *s == stage).expect("every stage is listed");
        let slot = Slot(part, stage, slots[index]);
        slots[index] += 1;
        let configs: ScheduleConfigs<ScheduleSystem> = systems.into_configs();
        schedule.configure_sets(slot.in_set(stage));
        if slot.2 > 0 {
            schedule.configure_sets(Slot(part, stage, slot.2 - 1).before(slot));
        }
        schedule.add_systems(configs.in_set(slot));
        self
    }

    fn run(&mut self, part: RoundPart, world: &mut World) -> Result<(), RunError> {
        let (_, schedule, _) = self.parts.iter_mut().find(|(p, ..)| *p == part).expect("every part has a schedule");
        schedule.run(world);
        match world.resource_mut::<Failure>().0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How many text and image phases a round has: the largest `M` of a trained text model and
/// the largest `N_t` of a trained conditional model.
#[derive(Debug, Clone, Copy, Default)]
struct PhaseCounts {
    text: u64,
    image: u64,
}

/// One simulated platform: a world built from a scenario, and the schedules that advance it.
pub struct Simulation {
    world: World,
    schedules: RoundSchedules,
    phases: PhaseCounts,
    /// Raised to stop: checked between the phases of a round.
    interrupt: Option<Arc<AtomicBool>>,
}

impl Simulation {
    /// Builds replicate `replicate` of `scenario` (which must have passed validation) with
    /// the built-in features.
    pub fn new(scenario: &Scenario, replicate: u64) -> Result<Self, BuildError> {
        Self::with_features(scenario, replicate, &[])
    }

    /// Builds replicate `replicate` of `scenario` with the built-in features and `extra` ones
    /// (influences written outside this crate: see `examples/moderation.rs`), which build in
    /// the order given, after the built-in ones.
    pub fn with_features(scenario: &Scenario, replicate: u64, extra: &[Arc<dyn RoundFeature>]) -> Result<Self, BuildError> {
        let mut schedules = RoundSchedules::new();
        let world = build::build_world(scenario, replicate, &mut schedules, extra)?;
        let mut sim = Simulation { world, schedules, phases: PhaseCounts::default(), interrupt: None };
        sim.count_phases();
        Ok(sim)
    }

    fn count_phases(&mut self) {
        let mut texts = self.world.query_filtered::<&TextAgent, Without<Frozen>>();
        let text = texts.iter(&self.world).map(|t| t.steps).max().unwrap_or(0);
        let mut conditionals = self.world.query_filtered::<&ConditionalAgent, Without<Frozen>>();
        let image = conditionals.iter(&self.world).map(|c| c.steps).max().unwrap_or(0);
        self.phases = PhaseCounts { text, image };
    }

    /// Switches the Measure part on or off for the following rounds (benchmarks time the
    /// training alone; a run always measures). Off, [`step`](Self::step) returns no rows.
    pub fn set_measuring(&mut self, on: bool) {
        self.world.resource_mut::<Measuring>().0 = on;
        if !on {
            self.world.resource_mut::<Measurements>().0.clear();
        }
    }

    /// Stops [`step`](Self::step) between two phases once `flag` is raised, with
    /// [`RunError::Interrupted`]: a round of a billion text steps then ends within one step of
    /// a Ctrl-C instead of running to its end. The flag is read once per phase, an atomic load
    /// beside a phase's whole batch.
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.interrupt = flag;
    }

    /// [`RunError::Interrupted`] if the interrupt flag is raised.
    fn check_interrupt(&self) -> Result<(), RunError> {
        match &self.interrupt {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(RunError::Interrupted { round: self.round() }),
            _ => Ok(()),
        }
    }

    /// Number of completed rounds.
    pub fn round(&self) -> u64 {
        self.world.resource::<RoundCounter>().0
    }

    /// Measures the current state without training (round 0 is the initial state).
    pub fn measure(&mut self) -> Result<&[MetricRow], RunError> {
        self.schedules.run(RoundPart::Measure, &mut self.world)?;
        Ok(&self.world.resource::<Measurements>().0)
    }

    /// Runs one training round and returns its measurements.
    pub fn step(&mut self) -> Result<&[MetricRow], RunError> {
        self.world.resource_mut::<RoundCounter>().0 += 1;
        self.schedules.run(RoundPart::Prepare, &mut self.world)?;
        for phase in 0..self.phases.text {
            self.check_interrupt()?;
            self.world.resource_mut::<PhaseIndex>().0 = phase;
            self.schedules.run(RoundPart::TextPhase, &mut self.world)?;
        }
        self.schedules.run(RoundPart::Inject, &mut self.world)?;
        for phase in 0..self.phases.image {
            self.check_interrupt()?;
            self.world.resource_mut::<PhaseIndex>().0 = phase;
            self.schedules.run(RoundPart::ImagePhase, &mut self.world)?;
        }
        if self.world.resource::<Measuring>().0 {
            self.schedules.run(RoundPart::Measure, &mut self.world)?;
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
