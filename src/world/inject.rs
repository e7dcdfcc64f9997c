//! Stabilisers (SPEC section 5): corpus injection into text models after the text phase, and
//! user content pooled into the image refits.
//!
//! Each injector draws from its own random stream, so adding an injector changes no model's
//! numbers but through what it injects, and two worlds that differ only in a perturbation see
//! the same injection events (common random numbers, SPEC section 8).

use std::sync::Arc;

use bevy_ecs::prelude::*;
use rand::RngExt;

use super::RunError;
use super::components::*;
use crate::metrics::MetricRow;
use crate::models::batch::check_len;
use crate::models::text::multinomial_counts;
use crate::models::{ConditionalModel, ModelError};
use crate::rng::Stream;
use crate::scenario::Injection;

/// Scratch buffers of [`corpus_injection`].
#[derive(Default)]
pub struct InjectionBuffers {
    order: Vec<(ScenarioOrder, Entity)>,
    uniform: Vec<f64>,
    counts: Vec<usize>,
    r: Vec<f64>,
}

/// Corpus injection (Algorithm 2), once per round after the text phase: every injector, in
/// scenario order, makes exactly one Bernoulli(`alpha`) draw from its own stream (whatever
/// `alpha`, so the stream's use does not depend on it) and, on success, mixes its
/// distribution into its target: `p <- (1 - eps) p + eps r`. `NewText` appends text `K + 1`
/// with mass `eps` and gives every conditional model of the target a conditional for it.
///
/// A frozen text model is injected into too: freezing stops a model's own refit, while the
/// corpus it generates from is changed from outside.
pub fn corpus_injection(
    mut injectors: Query<
        (Entity, &ScenarioOrder, &mut CorpusInjector, &Targets, &mut RandomStream),
        (Without<TextAgent>, Without<ConditionalAgent>),
    >,
    mut texts: Query<&mut TextAgent>,
    mut conditionals: Query<(&ScenarioOrder, &mut ConditionalAgent, &ConditionedOn, &EntityName)>,
    round: Res<RoundCounter>,
    mut failure: ResMut<Failure>,
    mut buf: Local<InjectionBuffers>,
) {
    if failure.0.is_some() {
        return;
    }
    let buf = &mut *buf;
    buf.order.clear();
    buf.order.extend(injectors.iter().map(|(e, o, ..)| (*o, e)));
    buf.order.sort_unstable();
    for &(_, ie) in &buf.order {
        let (_, _, mut injector, target, mut stream) = injectors.get_mut(ie).expect("listed above");
        // One uniform draw per round: `u < alpha` is Bernoulli(alpha), and alpha = 1 always fires.
        let u: f64 = stream.0.random();
        injector.fired = u < injector.alpha;
        if !injector.fired {
            continue;
        }
        let Ok(mut text) = texts.get_mut(target.0) else { continue };
        let (eps, k) = (injector.eps, text.model.num_texts());
        match &injector.distribution {
            Injection::Uniform => {
                buf.r.clear();
                buf.r.resize(k, 1.0 / k as f64);
                text.model.mix(eps, &buf.r);
            }
            Injection::RandomTokens(m) => {
                buf.uniform.clear();
                buf.uniform.resize(k, 1.0);
                multinomial_counts(*m, &buf.uniform, &mut stream.0, &mut buf.counts);
                buf.r.clear();
                buf.r.extend(buf.counts.iter().map(|&c| c as f64 / *m as f64));
                text.model.mix(eps, &buf.r);
            }
            Injection::Fixed(r) => {
                // Texts appended after validation (by a NewText injector) get none of `r`.
                buf.r.clear();
                buf.r.extend_from_slice(r);
                buf.r.resize(k, 0.0);
                text.model.mix(eps, &buf.r);
            }
            Injection::NewText => {
                text.model.append_text(eps);
                let mut order: Vec<(ScenarioOrder, &EntityName, Mut<ConditionalAgent>)> =
                    conditionals.iter_mut().filter(|(_, _, on, _)| on.0 == target.0).map(|(o, c, _, name)| (*o, name, c)).collect();
                order.sort_unstable_by_key(|(o, ..)| *o);
                for (_, name, mut c) in order {
                    if let Err(source) = c.model.add_text() {
                        failure.0 = Some(RunError::Model { round: round.0, model: name.0.to_string(), source });
                        return;
                    }
                }
            }
        }
    }
}

/// Appends each corpus injector's `injected` metric (1 if it injected this round, else 0)
/// to the round's [`Measurements`]; runs after the models' measurements.
pub fn measure_injectors(
    injectors: Query<(&ScenarioOrder, &CorpusInjector, &EntityName)>,
    round: Res<RoundCounter>,
    failure: Res<Failure>,
    mut measurements: ResMut<Measurements>,
    mut metric: Local<Option<Arc<str>>>,
) {
    if failure.0.is_some() {
        return;
    }
    let metric = metric.get_or_insert_with(|| Arc::from(crate::metrics::names::INJECTED)).clone();
    let mut sorted: Vec<_> = injectors.iter().collect();
    sorted.sort_unstable_by_key(|(o, ..)| **o);
    for (_, injector, name) in sorted {
        let value = if injector.fired { 1.0 } else { 0.0 };
        measurements.0.push(MetricRow { round: round.0, model: name.0.clone(), text: None, metric: metric.clone(), value });
    }
}

/// Draws one image phase's user content: `n0` samples for every text of `target`, from the
/// injector's source, with the injector's stream, into `counts`/`out` (grouped by text).
pub fn draw_user_content(
    injector: &mut UserContentInjector,
    target: &mut dyn ConditionalModel,
    rng: &mut Stream,
    counts: &mut Vec<usize>,
    out: &mut Vec<f64>,
) -> Result<(), ModelError> {
    let k = target.num_texts();
    counts.clear();
    counts.resize(k, injector.n0);
    match &mut injector.source {
        None => target.sample_initial(counts, rng, out)?,
        Some(source) => {
            // Texts appended by a NewText injection: the source gets a conditional from the
            // same new-text prior as the target.
            while source.num_texts() < k {
                source.add_text()?;
            }
            source.sample(counts, 1.0, rng, out)?;
        }
    }
    check_len("user content", out.len(), k * injector.n0 * target.dim())
}
