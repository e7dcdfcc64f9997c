//! Stabilisers (docs/model.md section 5) as features: corpus injection into text models after the
//! text phase, and user content pooled into the image refits.
//!
//! Each injector draws from its own random stream, so adding an injector changes no model's
//! numbers but through what it injects, and two worlds that differ only in a perturbation see
//! the same injection events (common random numbers, docs/model.md section 8).
//!
//! Scheduled parameters (docs/model.md section 12) are read at the current round, and an
//! injector outside its active window does nothing. A corpus injector still makes its one
//! Bernoulli draw in an inactive round, so its stream is where it would be without the
//! window: two worlds that differ only in a window or a schedule see the same draws.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use rand::RngExt;

use super::components::*;
use super::{BuildContext, BuildError, RoundFeature, RoundPart, RunError, Stage, record_failure};
use crate::metrics::{MetricRow, names};
use crate::models::batch::check_len;
use crate::models::text::multinomial_counts;
use crate::models::{ConditionalModel, DataPolicy, Estimator, GaussianImageModel, ModelError};
use crate::resolve::ResolvedEntity;
use crate::rng::Stream;
use crate::scenario::{EntitySpec, Injection};

/// Corpus injection (Algorithm 2): the scenario's `CorpusInjector` entities, their Inject
/// system and their `injected` metric.
pub struct CorpusInjection;

impl RoundFeature for CorpusInjection {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        let injectors = ctx.influences(|e| if let EntitySpec::CorpusInjector(s) = e { Some(s) } else { None });
        for i in &injectors {
            let s = i.spec;
            let injector =
                CorpusInjector { alpha: s.alpha.clone(), eps: s.eps.clone(), distribution: s.distribution.clone(), fired: false };
            let stream = ctx.stream(&s.name);
            ctx.world.entity_mut(i.entity).insert((injector, Targets(i.target), stream));
        }
        if !injectors.is_empty() {
            ctx.add_systems(RoundPart::Inject, Stage::Curate, corpus_injection.pipe(record_failure)).add_systems(
                RoundPart::Measure,
                Stage::Report,
                measure_injectors,
            );
        }
        Ok(())
    }
}

/// Scratch buffers of [`corpus_injection`].
#[derive(Default)]
pub struct InjectionBuffers {
    uniform: Vec<f64>,
    counts: Vec<usize>,
    r: Vec<f64>,
}

/// Corpus injection, once per round after the text phase: every injector, in scenario order,
/// makes exactly one Bernoulli(`alpha`) draw from its own stream (whatever `alpha`, and
/// whether or not the round is in its active window, so the stream's use depends on neither)
/// and, on success in an active round, mixes its distribution into its target:
/// `p <- (1 - eps) p + eps r`, with `alpha` and `eps` at the current round. `NewText` appends
/// text `K + 1` with mass `eps` and gives every conditional model of the target a
/// conditional for it.
///
/// A frozen text model is injected into too: freezing stops a model's own refit, while the
/// corpus it generates from is changed from outside.
pub fn corpus_injection(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut injectors: Query<(&mut CorpusInjector, &Targets, &mut RandomStream, Option<&ActiveWindow>)>,
    mut texts: Query<(&mut TextAgent, Option<&Conditionals>)>,
    mut conditionals: Query<(&mut ConditionalAgent, &EntityName)>,
    mut buf: Local<InjectionBuffers>,
) -> Result<(), RunError> {
    for &e in &entities.all {
        let Ok((mut injector, target, mut stream, window)) = injectors.get_mut(e) else { continue };
        // One uniform draw per round: `u < alpha` is Bernoulli(alpha), and alpha = 1 always fires.
        let u: f64 = stream.0.random();
        injector.fired = ActiveWindow::admits(window, round.0) && u < injector.alpha.at(round.0);
        let Ok((mut text, of_text)) = texts.get_mut(target.0) else { continue };
        if !injector.fired {
            continue;
        }
        let eps = injector.eps.at(round.0);
        if let Injection::NewText = injector.distribution {
            text.model.append_text(eps);
            for c in of_text.into_iter().flat_map(|c| c.iter()) {
                let Ok((mut c, name)) = conditionals.get_mut(c) else { continue };
                c.model.add_text().map_err(|source| RunError::model(round.0, name, source))?;
            }
            continue;
        }
        injection_distribution(&injector.distribution, text.model.num_texts(), &mut stream.0, &mut buf);
        text.model.mix(eps, &buf.r);
    }
    Ok(())
}

/// The distribution `r` an injection mixes in, over the target's `k` current texts, into
/// `buf.r` (`RandomTokens` draws its tokens from the injector's stream).
fn injection_distribution(distribution: &Injection, k: usize, stream: &mut Stream, buf: &mut InjectionBuffers) {
    buf.r.clear();
    match distribution {
        Injection::Uniform => buf.r.resize(k, 1.0 / k as f64),
        Injection::RandomTokens(m) => {
            buf.uniform.clear();
            buf.uniform.resize(k, 1.0);
            multinomial_counts(*m, &buf.uniform, stream, &mut buf.counts);
            buf.r.extend(buf.counts.iter().map(|&c| c as f64 / *m as f64));
        }
        // Texts appended after validation (by a NewText injector) get none of `r`.
        Injection::Fixed(r) => buf.r.extend(r.iter().copied().chain(std::iter::repeat(0.0)).take(k)),
        Injection::NewText => unreachable!("a new text is appended, not mixed in"),
    }
}

/// Appends each corpus injector's `injected` metric (1 if it injected this round, else 0,
/// which it always is outside its active window) to the round's [`Measurements`], after the
/// models' rows.
pub fn measure_injectors(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    injectors: Query<(&CorpusInjector, &EntityName)>,
    mut measurements: ResMut<Measurements>,
    mut metric: Local<Option<Arc<str>>>,
) {
    let metric = metric.get_or_insert_with(|| Arc::from(names::INJECTED)).clone();
    for &e in &entities.all {
        let Ok((injector, name)) = injectors.get(e) else { continue };
        let value = if injector.fired { 1.0 } else { 0.0 };
        measurements.0.push(MetricRow { round: round.0, model: name.0.clone(), text: None, metric: metric.clone(), value });
    }
}

/// User content (Algorithm 3): the scenario's `UserContentInjector` entities and their
/// Curate system, which adds `n0` external samples per text to every image phase's batch of
/// the target.
pub struct UserContent;

impl RoundFeature for UserContent {
    fn build(&self, ctx: &mut BuildContext<'_>) -> Result<(), BuildError> {
        let injectors = ctx.influences(|e| if let EntitySpec::UserContentInjector(s) = e { Some(s) } else { None });
        for i in &injectors {
            let (s, e, target) = (i.spec, i.entity, i.target);
            let (source, data) = match &ctx.resolved.entities[i.index] {
                ResolvedEntity::Influence { source: Some(g), .. } => {
                    let g = g.clone();
                    (Some(GaussianImageModel::new(g.means, g.covariances, Estimator::Mle, DataPolicy::Replace, g.new_text)), None)
                }
                ResolvedEntity::Influence { data, .. } => (None, data.clone()),
                _ => (None, None),
            };
            if let Some(data) = &data
                && let Some(c) = ctx.world.get::<ConditionalAgent>(target)
                && c.model.dim() != data.dim()
            {
                return Err(BuildError {
                    entity: s.name.clone(),
                    message: format!(
                        "its dataset has vectors of dimension {} but `{}` has dimension {}",
                        data.dim(),
                        s.target,
                        c.model.dim()
                    ),
                });
            }
            let stream = ctx.stream(&s.name);
            ctx.world.entity_mut(e).insert((UserContentInjector { n0: s.n0.clone(), source, data }, Targets(target), stream));
        }
        if !injectors.is_empty() {
            ctx.add_systems(RoundPart::ImagePhase, Stage::Curate, user_content.pipe(record_failure));
        }
        Ok(())
    }
}

/// Curate: every user-content injector of a conditional model in this phase that is in its
/// active window adds one external batch of `n0` (at the current round) samples per text
/// (from its own stream, in scenario order). Outside its window it adds nothing and draws
/// nothing.
pub fn user_content(
    entities: Res<ScenarioEntities>,
    round: Res<RoundCounter>,
    mut targets: Query<(&mut ConditionalAgent, &mut ImageBatch, &TargetedBy)>,
    mut injectors: Query<(&mut UserContentInjector, &mut RandomStream, &EntityName, Option<&ActiveWindow>)>,
) -> Result<(), RunError> {
    for &e in &entities.conditionals {
        let Ok((mut c, mut batch, targeted_by)) = targets.get_mut(e) else { continue };
        if !batch.active {
            continue;
        }
        for source in targeted_by.iter() {
            let Ok((mut injector, mut stream, name, window)) = injectors.get_mut(source) else { continue };
            if !ActiveWindow::admits(window, round.0) {
                continue;
            }
            let n0 = injector.n0.at(round.0) as usize;
            let external = batch.push_external();
            draw_user_content(&mut injector, n0, &mut *c.model, &mut stream.0, &mut external.counts, &mut external.samples)
                .map_err(|source| RunError::model(round.0, name, source))?;
        }
    }
    Ok(())
}

/// Draws one image phase's user content: `n0` samples for every text of `target`, from the
/// injector's source, with the injector's stream, into `counts`/`out` (grouped by text). A
/// `Data` source resamples label `i`'s rows for text `i`, and gives a text without rows (one a
/// `NewText` injection appended) none: no real image carries an invented caption.
pub fn draw_user_content(
    injector: &mut UserContentInjector,
    n0: usize,
    target: &mut dyn ConditionalModel,
    rng: &mut Stream,
    counts: &mut Vec<usize>,
    out: &mut Vec<f64>,
) -> Result<(), ModelError> {
    let k = target.num_texts();
    counts.clear();
    counts.resize(k, n0);
    if let Some(data) = &injector.data {
        out.clear();
        for (i, n) in counts.iter_mut().enumerate() {
            if i < data.num_labels() {
                data.resample(i, *n, rng, out);
            } else {
                *n = 0;
            }
        }
        let total: usize = counts.iter().sum();
        return check_len("user content", out.len(), total * target.dim());
    }
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
    check_len("user content", out.len(), k * n0 * target.dim())
}
