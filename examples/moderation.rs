//! A new influence on the platform written entirely outside the engine: a moderation filter
//! that drops a fraction of the generated images before the image model refits on them.
//! `cargo run --release --example moderation`.
//!
//! It is a [`RoundFeature`]: it spawns its own entity (with its own random stream, derived
//! from the seed, the replicate and its name, so adding it changes no other entity's
//! numbers), wires it to its target with the [`Targets`] relationship, and adds two systems:
//! one in the image phase's `Filter` stage (between generation and the real data, user
//! content and refit that follow), one in the Measure part's `Report` stage (its `dropped`
//! metric). No file of `src/` knows about it.
//!
//! What it shows: dropping each generated image with probability `q` leaves a text with
//! `n (1 - q)` samples on average, so the image trace contracts faster, roughly like
//! `((n(1 - q) - 1) / (n (1 - q)))^t` instead of `((n - 1)/n)^t` (docs/model.md section 3; with
//! binomial survivors the factor is `1 - E[1/n']`, within 0.1% of that here). The run prints
//! both platforms' mean p-weighted trace at the same rounds: the expectations are the
//! theory columns, but a trace's spread over replicates grows like a log-normal's, so the
//! mean of 4 replicates x 5 texts falls below its expectation as rounds pass; compare the
//! two platforms' orders of magnitude.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use coevo::metrics::{MetricRow, names};
use coevo::world::{
    BuildContext, BuildError, ConditionalAgent, EntityName, ImageBatch, Measurements, RandomStream, RoundCounter, RoundFeature, RoundPart,
    ScenarioEntities, Stage, Targets,
};
use coevo::{Scenario, Simulation};
use rand::RngExt;

/// The moderation filter's component: the drop probability and what it dropped this round.
#[derive(Component)]
struct ModerationFilter {
    drop: f64,
    dropped: u64,
}

/// The feature: a filter called `name` on the conditional model `target`.
struct Moderation {
    name: String,
    target: String,
    drop: f64,
}

impl RoundFeature for Moderation {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        let target = ctx.entity(&self.name, &self.target)?;
        let stream = ctx.stream(&self.name);
        ctx.spawn(&self.name, (ModerationFilter { drop: self.drop, dropped: 0 }, Targets(target), stream))?;
        ctx.add_systems(RoundPart::Prepare, Stage::Prepare, reset).add_systems(RoundPart::ImagePhase, Stage::Filter, moderate).add_systems(
            RoundPart::Measure,
            Stage::Report,
            report,
        );
        Ok(())
    }
}

fn reset(mut filters: Query<&mut ModerationFilter>) {
    for mut f in &mut filters {
        f.dropped = 0;
    }
}

/// Drops each generated sample of the target's batch with probability `drop` (one uniform
/// draw per sample from the filter's own stream), compacting the batch in place.
fn moderate(
    entities: Res<ScenarioEntities>,
    mut filters: Query<(&mut ModerationFilter, &Targets, &mut RandomStream)>,
    mut models: Query<(&ConditionalAgent, &mut ImageBatch)>,
) {
    for &e in &entities.all {
        let Ok((mut filter, target, mut stream)) = filters.get_mut(e) else { continue };
        let Ok((agent, mut batch)) = models.get_mut(target.0) else { continue };
        if !batch.active {
            continue;
        }
        let (d, batch) = (agent.model.dim(), &mut *batch);
        let (mut read, mut write) = (0, 0);
        for count in batch.counts.iter_mut() {
            let mut kept = 0;
            for _ in 0..*count {
                if stream.0.random::<f64>() >= filter.drop {
                    batch.samples.copy_within(read * d..(read + 1) * d, write * d);
                    write += 1;
                    kept += 1;
                }
                read += 1;
            }
            *count = kept;
        }
        batch.samples.truncate(write * d);
        filter.dropped += (read - write) as u64;
    }
}

/// Reports `dropped`, the images the filter removed this round.
fn report(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    filters: Query<(&ModerationFilter, &EntityName)>,
    mut measurements: ResMut<Measurements>,
) {
    for &e in &entities.all {
        let Ok((f, name)) = filters.get(e) else { continue };
        let row = MetricRow { round: round.0, model: name.0.clone(), text: None, metric: Arc::from("dropped"), value: f.dropped as f64 };
        measurements.0.push(row);
    }
}

const SCENARIO: &str = r#"Scenario(
    name: "moderated",
    seed: 3,
    rounds: 200,
    replicates: 4,
    entities: [
        TextModel(name: "captioner", frozen: true),
        ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(50)),
    ],
)"#;

fn value(rows: &[MetricRow], model: &str, metric: &str) -> f64 {
    rows.iter().find(|r| &*r.model == model && &*r.metric == metric && r.text.is_none()).map_or(f64::NAN, |r| r.value)
}

fn main() -> Result<(), Box<dyn Error>> {
    let scenario = Scenario::parse(SCENARIO, Path::new("<moderation example>"))?;
    let q = 0.5;
    let filter: Arc<dyn RoundFeature> = Arc::new(Moderation { name: "moderator".into(), target: "painter".into(), drop: q });
    let trace = names::weighted(names::TRACE);
    let mut plain = Vec::new();
    let mut moderated = Vec::new();
    for r in 0..scenario.replicates {
        plain.push(Simulation::new(&scenario, r)?);
        moderated.push(Simulation::with_features(&scenario, r, std::slice::from_ref(&filter))?);
    }
    let n = 50.0f64;
    println!("{:>6} {:>14} {:>14} {:>14} {:>14} {:>8}", "round", "plain", "(49/50)^t", "moderated", "(24/25)^t", "dropped");
    for round in 0..=scenario.rounds {
        let (mut a, mut b, mut dropped) = (0.0, 0.0, 0.0);
        for (p, m) in plain.iter_mut().zip(&mut moderated) {
            let (rp, rm) =
                if round == 0 { (p.measure()?.to_vec(), m.measure()?.to_vec()) } else { (p.step()?.to_vec(), m.step()?.to_vec()) };
            a += value(&rp, "painter", &trace) / scenario.replicates as f64;
            b += value(&rm, "painter", &trace) / scenario.replicates as f64;
            dropped += value(&rm, "moderator", "dropped") / scenario.replicates as f64;
        }
        if round % 25 == 0 {
            let t = round as i32;
            let (theory_a, theory_b) = (0.2 * ((n - 1.0) / n).powi(t), 0.2 * ((n * q - 1.0) / (n * q)).powi(t));
            println!("{round:>6} {a:>14.4e} {theory_a:>14.4e} {b:>14.4e} {theory_b:>14.4e} {dropped:>8.1}");
        }
    }
    Ok(())
}
