//! The text phase (docs/model.md section 3), one system per step: each unfrozen text model draws a
//! batch of captions from `tau_T(p)` (Generate), every conditional model of it generates a
//! sample per caption and adds its log-likelihoods under every text (Generate), a fresh-data
//! policy adds real captions (Curate), and the model refits `p` on the caption posterior
//! under its own prior `p` plus the real captions (Fit). The part runs `max M` times a round;
//! text model `m` takes part in the first `M_m` (its [`CaptionBatch::active`]).

use bevy_ecs::prelude::*;

use super::RunError;
use super::components::*;
use crate::models::batch::{check_finite, check_len};
use crate::models::text::{accumulate_caption_posterior, multinomial_counts, tempered};

/// Generate: every text model in this phase draws its synthetic captions from `tau_T(p)` and
/// clears the log-likelihood matrix for its conditionals.
pub fn draw_captions(
    phase: Res<PhaseIndex>,
    round: Res<RoundCounter>,
    entities: Res<ScenarioEntities>,
    mut texts: Query<(&TextAgent, &mut CaptionBatch, &mut RandomStream, &SamplingTemperature), Without<Frozen>>,
) {
    for &e in &entities.texts {
        let Ok((agent, mut batch, mut stream, temperature)) = texts.get_mut(e) else { continue };
        let batch = &mut *batch;
        batch.active = agent.steps > phase.0;
        if !batch.active {
            continue;
        }
        batch.real = agent.model.policy.real_count(agent.batch as usize, round.0);
        tempered(&agent.model.p, temperature.0, &mut batch.sampling_p);
        let synthetic = agent.model.policy.synthetic_count(agent.batch as usize, round.0) as u64;
        multinomial_counts(synthetic, &batch.sampling_p, &mut stream.0, &mut batch.counts);
        let n: usize = batch.counts.iter().sum();
        batch.log_likelihood.clear();
        batch.log_likelihood.resize(n * agent.model.num_texts(), 0.0);
    }
}

/// Generate: every conditional model of a text model in this phase (frozen ones too: they
/// still generate) samples one item per caption and adds `log q(y_j | i)` under every text
/// to the text model's batch.
pub fn score_captions(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut texts: Query<(&mut CaptionBatch, &Conditionals)>,
    mut conditionals: Query<(&mut ConditionalAgent, &mut ImageBatch, &mut RandomStream, &SamplingTemperature, &EntityName)>,
) -> Result<(), RunError> {
    for &t in &entities.texts {
        let Ok((mut batch, of_text)) = texts.get_mut(t) else { continue };
        if !batch.active {
            continue;
        }
        let batch = &mut *batch;
        let n: usize = batch.counts.iter().sum();
        for c in of_text.iter() {
            let Ok((mut agent, mut own, mut stream, temperature, name)) = conditionals.get_mut(c) else { continue };
            let (model, samples) = (&mut agent.model, &mut own.samples);
            model
                .sample(&batch.counts, temperature.0, &mut stream.0, samples)
                .and_then(|()| check_len("sample", samples.len(), n * model.dim()))
                .and_then(|()| model.add_log_likelihood(samples, &mut batch.log_likelihood))
                .and_then(|()| check_finite("log_likelihood", &batch.log_likelihood))
                .map_err(|source| RunError::model(round.0, name, source))?;
        }
    }
    Ok(())
}

/// Curate: under the fresh-data policy, real captions drawn from `p0` join the batch.
pub fn fresh_captions(entities: Res<ScenarioEntities>, mut texts: Query<(&TextAgent, &mut CaptionBatch, &mut RandomStream)>) {
    for &e in &entities.texts {
        let Ok((agent, mut batch, mut stream)) = texts.get_mut(e) else { continue };
        let batch = &mut *batch;
        if batch.active && batch.real > 0 {
            multinomial_counts(batch.real as u64, &agent.model.p0, &mut stream.0, &mut batch.real_counts);
        }
    }
}

/// Fit: every text model in this phase refits on the caption posterior of its batch under
/// its own prior `p`, plus its real captions, which are labelled and so count one-hot.
pub fn refit_texts(entities: Res<ScenarioEntities>, mut texts: Query<(&mut TextAgent, &mut CaptionBatch)>) {
    for &e in &entities.texts {
        let Ok((mut agent, mut batch)) = texts.get_mut(e) else { continue };
        let batch = &mut *batch;
        if !batch.active {
            continue;
        }
        batch.soft_counts.clear();
        batch.soft_counts.resize(agent.model.num_texts(), 0.0);
        accumulate_caption_posterior(&agent.model.p, &batch.log_likelihood, &mut batch.soft_counts, &mut batch.scratch);
        if batch.real > 0 {
            for (s, &r) in batch.soft_counts.iter_mut().zip(&batch.real_counts) {
                *s += r as f64;
            }
        }
        agent.model.refit(&batch.soft_counts);
    }
}
