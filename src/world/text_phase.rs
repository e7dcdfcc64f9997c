//! The text phase (docs/model.md section 3), one system per step: each unfrozen text model draws a
//! batch of captions from `tau_T(p)` (Generate), every conditional model of it generates a
//! sample per caption (Generate; a model without blocked log-densities, a plugin, also adds its
//! whole `N x K` log-likelihood matrix), a fresh-data policy adds real captions (Curate), and
//! the model refits `p` on the caption posterior under its own prior `p` plus the real captions
//! (Fit): the blocked, fused posterior of [`crate::models::posterior`], which scores only the
//! live texts, block by block, in parallel for large batches. The part runs `max M` times a
//! round; text model `m` takes part in the first `M_m` (its [`CaptionBatch::active`]).

use bevy_ecs::prelude::*;

use super::RunError;
use super::components::*;
use crate::models::batch::{check_finite, check_len};
use crate::models::posterior::{DenseLogLikelihood, Scorer, accumulate_posterior};
use crate::models::text::{multinomial_counts, tempered};

/// Generate: every text model in this phase draws its synthetic captions from `tau_T(p)` and
/// clears the log-likelihood matrix of conditionals without blocked log-densities.
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
        batch.log_likelihood.clear();
    }
}

/// Generate: every conditional model of a text model in this phase (frozen ones too: they
/// still generate) samples one item per caption and readies its blocked log-densities; a model
/// without them adds `log q(y_j | i)` under every text to the text model's matrix.
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
                .and_then(|()| {
                    if model.prepare_log_density() {
                        return Ok(());
                    }
                    batch.log_likelihood.resize(n * model.num_texts(), 0.0);
                    model.add_log_likelihood(samples, &mut batch.log_likelihood)?;
                    check_finite("log_likelihood", &batch.log_likelihood)
                })
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
/// its own prior `p` (every conditional's likelihood multiplied, docs/model.md section 9), plus
/// its real captions, which are labelled and so count one-hot.
pub fn refit_texts(
    entities: Res<ScenarioEntities>,
    mut texts: Query<(&mut TextAgent, &mut CaptionBatch, &Conditionals)>,
    conditionals: Query<(&ConditionalAgent, &ImageBatch)>,
) {
    // Conditional models of one text model: a handful, so the list lives on the stack.
    const INLINE: usize = 8;
    const NONE: DenseLogLikelihood<'static> = DenseLogLikelihood { values: &[], k: 0 };
    for &e in &entities.texts {
        let Ok((mut agent, mut batch, of_text)) = texts.get_mut(e) else { continue };
        let batch = &mut *batch;
        if !batch.active {
            continue;
        }
        let k = agent.model.num_texts();
        let n: usize = batch.counts.iter().sum();
        let dense = DenseLogLikelihood { values: &batch.log_likelihood, k };
        let mut inline = [Scorer { model: &NONE, samples: &[] }; INLINE];
        let mut spilled = Vec::new();
        let mut count = 0;
        let scorers = (!batch.log_likelihood.is_empty()).then_some(Scorer { model: &dense, samples: &[] }).into_iter().chain(
            of_text
                .iter()
                .filter_map(|c| conditionals.get(c).ok())
                .filter_map(|(c, own)| Some(Scorer { model: c.model.log_density()?, samples: &own.samples })),
        );
        for s in scorers {
            if count < INLINE {
                inline[count] = s;
            } else {
                // The inline ones move to the heap once, when the ninth arrives.
                if count == INLINE {
                    spilled.extend_from_slice(&inline);
                }
                spilled.push(s);
            }
            count += 1;
        }
        let scorers = if count <= INLINE { &inline[..count] } else { &spilled[..] };
        batch.soft_counts.clear();
        batch.soft_counts.resize(k, 0.0);
        accumulate_posterior(&agent.model.p, n, scorers, &mut batch.posterior, &mut batch.soft_counts);
        if batch.real > 0 {
            for (s, &r) in batch.soft_counts.iter_mut().zip(&batch.real_counts) {
                *s += r as f64;
            }
        }
        agent.model.refit(&batch.soft_counts);
    }
}
