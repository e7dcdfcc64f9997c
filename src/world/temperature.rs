//! Temperature samplers (docs/model.md section 4) as a feature: each `Temperature` entity sets the
//! temperature its target samples at, before the round and before round 0's measurement.

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
            ctx.world.entity_mut(i.entity).insert((Temperature { t: i.spec.t }, Targets(i.target)));
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

/// Copies every sampler's temperature onto its target, in scenario order.
pub fn sync_temperatures(
    entities: Res<ScenarioEntities>,
    samplers: Query<(&Temperature, &Targets)>,
    mut targets: Query<&mut SamplingTemperature>,
) {
    for &e in &entities.all {
        let Ok((t, target)) = samplers.get(e) else { continue };
        if let Ok(mut s) = targets.get_mut(target.0) {
            s.0 = t.t;
        }
    }
}
