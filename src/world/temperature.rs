//! Temperature samplers (docs/model.md section 4) as a feature: each `Temperature` entity sets the
//! temperature its target samples at, before the round and before round 0's measurement.
//!
//! A scheduled temperature is evaluated at the current round (docs/model.md section 12); outside
//! the sampler's active window its target samples at `T = 1`, as if it had no sampler.

use bevy_ecs::prelude::*;

use super::components::*;
use super::{BuildContext, BuildError, RoundFeature, RoundPart, Stage};
use crate::scenario::EntitySpec;

/// The scenario's `Temperature` entities and the system that applies them.
pub struct Temperatures;

impl RoundFeature for Temperatures {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        let samplers = ctx.influences(|e| if let EntitySpec::Temperature(s) = e { Some(s) } else { None });
        for i in &samplers {
            ctx.world.entity_mut(i.entity).insert((Temperature { t: i.spec.t.clone() }, Targets(i.target)));
        }
        if !samplers.is_empty() {
            ctx.add_systems(RoundPart::Prepare, Stage::Prepare, sync_temperatures).add_systems(
                RoundPart::Measure,
                Stage::Prepare,
                sync_temperatures,
            );
        }
        Ok(())
    }
}

/// Copies every sampler's temperature at the current round onto its target, in scenario
/// order (`T = 1` outside the sampler's window; validation allows one sampler per model).
pub fn sync_temperatures(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    samplers: Query<(&Temperature, &Targets, Option<&ActiveWindow>)>,
    mut targets: Query<&mut SamplingTemperature>,
) {
    for &e in &entities.all {
        let Ok((t, target, window)) = samplers.get(e) else { continue };
        if let Ok(mut s) = targets.get_mut(target.0) {
            s.0 = if ActiveWindow::admits(window, round.0) { t.t.at(round.0) } else { 1.0 };
        }
    }
}
