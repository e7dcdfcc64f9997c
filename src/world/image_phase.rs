//! The image phase (docs/model.md section 3), one system per step: each unfrozen conditional model
//! allocates its batch's captions (by its allocation; real ones too under a fresh-data
//! policy) and generates a sample per caption (Generate); the real samples of the fresh-data
//! policy join the batch (Curate), after which other features may add theirs (user content)
//! or remove some (Filter); the model refits per text on the pooled batch (Fit). The part
//! runs `max N_t` times a round; conditional `c` takes part in the first `N_t,c` (its
//! [`ImageBatch::active`]).

use bevy_ecs::prelude::*;

use super::RunError;
use super::components::*;
use crate::models::Allocation;
use crate::models::batch::{check_len, pool_by_text};
use crate::models::text::{multinomial_counts, tempered};

type Texts<'w, 's> = Query<'w, 's, (&'static TextAgent, &'static SamplingTemperature)>;

/// Generate: the captions of every conditional model's batch in this phase, synthetic and
/// (fresh-data policy) real, from its own stream; external batches of the last phase are
/// cleared.
pub fn allocate_captions(
    phase: Res<PhaseIndex>,
    round: Res<RoundCounter>,
    entities: Res<ScenarioEntities>,
    texts: Texts,
    mut conditionals: Query<
        (&ConditionalAgent, &ConditionedOn, Option<&Feed>, Option<&RealData>, &mut ImageBatch, &mut RandomStream),
        Without<Frozen>,
    >,
) {
    for &e in &entities.conditionals {
        let Ok((c, on, feed, data, mut batch, mut stream)) = conditionals.get_mut(e) else { continue };
        let batch = &mut *batch;
        batch.clear_external();
        let text = texts.get(on.0).ok();
        batch.active = c.steps > phase.0 && text.is_some();
        let Some((text, temperature)) = text.filter(|_| batch.active) else { continue };
        let policy = c.model.data_policy();
        match c.allocation {
            Allocation::Binomial => {
                let real = policy.real_count(c.batch as usize, round.0);
                match feed {
                    Some(feed) => feed_mixture(feed, &texts, batch),
                    None => {
                        tempered(&text.model.p, temperature.0, &mut batch.sampling_p);
                        batch.real_p.clone_from(&text.model.p0);
                    }
                }
                if let Some(RealData(data)) = data {
                    // Real pairs are rows of the dataset: their captions follow its labels.
                    let (k, n) = (text.model.num_texts(), data.rows() as f64);
                    batch.real_p.clear();
                    batch.real_p.extend((0..k).map(|i| if i < data.num_labels() { data.count(i) as f64 / n } else { 0.0 }));
                }
                let synthetic = policy.synthetic_count(c.batch as usize, round.0) as u64;
                multinomial_counts(synthetic, &batch.sampling_p, &mut stream.0, &mut batch.counts);
                multinomial_counts(real as u64, &batch.real_p, &mut stream.0, &mut batch.real_counts);
            }
            Allocation::Fixed(n) => {
                let real = policy.real_count(n, round.0);
                batch.counts.clear();
                batch.counts.resize(text.model.num_texts(), policy.synthetic_count(n, round.0));
                batch.real_counts.clear();
                batch.real_counts.resize(text.model.num_texts(), real);
            }
        }
    }
}

/// The caption distributions of a fed model's image phase (docs/model.md section 9): the mixture
/// `sum_t w_t tau_T(p_t)` of its feed's text models into `sampling_p`, and `sum_t w_t p0_t`,
/// the distribution of real captions, into `real_p`. Validation guarantees the text models
/// share K.
fn feed_mixture(feed: &Feed, texts: &Texts, batch: &mut ImageBatch) {
    batch.sampling_p.clear();
    batch.real_p.clear();
    for &(source, w) in &feed.0 {
        let Ok((text, temperature)) = texts.get(source) else { continue };
        tempered(&text.model.p, temperature.0, &mut batch.scratch);
        batch.sampling_p.resize(batch.scratch.len(), 0.0);
        batch.real_p.resize(batch.scratch.len(), 0.0);
        for (s, t) in batch.sampling_p.iter_mut().zip(batch.scratch.iter()) {
            *s += w * t;
        }
        for (r, p0) in batch.real_p.iter_mut().zip(&text.model.p0) {
            *r += w * p0;
        }
    }
}

/// Generate: every conditional model in this phase samples its batch from itself.
pub fn generate_images(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut conditionals: Query<(&mut ConditionalAgent, &mut ImageBatch, &mut RandomStream, &SamplingTemperature, &EntityName)>,
) -> Result<(), RunError> {
    for &e in &entities.conditionals {
        let Ok((mut c, mut batch, mut stream, temperature, name)) = conditionals.get_mut(e) else { continue };
        let batch = &mut *batch;
        if !batch.active {
            continue;
        }
        let n: usize = batch.counts.iter().sum();
        c.model
            .sample(&batch.counts, temperature.0, &mut stream.0, &mut batch.samples)
            .and_then(|()| check_len("sample", batch.samples.len(), n * c.model.dim()))
            .map_err(|source| RunError::model(round.0, name, source))?;
    }
    Ok(())
}

/// Curate: under the fresh-data policy, real samples of the real captions, drawn from the
/// initial conditionals with the model's own stream.
pub fn fresh_images(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut conditionals: Query<(&mut ConditionalAgent, &mut ImageBatch, &mut RandomStream, &EntityName)>,
) -> Result<(), RunError> {
    for &e in &entities.conditionals {
        let Ok((mut c, mut batch, mut stream, name)) = conditionals.get_mut(e) else { continue };
        let batch = &mut *batch;
        let real: usize = batch.real_counts.iter().sum();
        if !batch.active {
            continue;
        }
        if real == 0 {
            batch.real_samples.clear();
            continue;
        }
        c.model
            .sample_initial(&batch.real_counts, &mut stream.0, &mut batch.real_samples)
            .and_then(|()| check_len("sample_initial", batch.real_samples.len(), real * c.model.dim()))
            .map_err(|source| RunError::model(round.0, name, source))?;
    }
    Ok(())
}

/// Fit: every conditional model in this phase refits per text: on its generated batch alone,
/// or, when anything was added, on the batch pooled by text (generated, real, then each
/// external batch in the order added).
pub fn refit_conditionals(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut conditionals: Query<(&mut ConditionalAgent, &mut ImageBatch, &EntityName)>,
) -> Result<(), RunError> {
    for &e in &entities.conditionals {
        let Ok((mut c, mut batch, name)) = conditionals.get_mut(e) else { continue };
        let batch = &mut *batch;
        if !batch.active {
            continue;
        }
        let d = c.model.dim();
        let real = batch.real_counts.iter().any(|&n| n > 0);
        let result = if !real && batch.external().is_empty() {
            c.model.fit(&batch.counts, &batch.samples)
        } else {
            let own: [(&[usize], &[f64]); 2] = [(&batch.counts, &batch.samples), (&batch.real_counts, &batch.real_samples)];
            if batch.external().is_empty() {
                pool_by_text(&own, d, &mut batch.pooled_counts, &mut batch.pooled);
            } else {
                let mut all = own.to_vec();
                all.extend(batch.external.iter().take(batch.external_len).map(|x| (x.counts.as_slice(), x.samples.as_slice())));
                pool_by_text(&all, d, &mut batch.pooled_counts, &mut batch.pooled);
            }
            c.model.fit(&batch.pooled_counts, &batch.pooled)
        };
        result.map_err(|source| RunError::model(round.0, name, source))?;
    }
    Ok(())
}
