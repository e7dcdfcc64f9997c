//! The systems of a training round (SPEC sections 2-4 and 7).

use std::collections::HashSet;
use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::RunError;
use super::components::*;
use super::inject::draw_user_content;
use crate::metrics::MetricRow;
use crate::metrics::{coupling, names, text as tm};
use crate::models::batch::{check_finite, check_len, pool_by_text};
use crate::models::text::{accumulate_caption_posterior, multinomial_counts, tempered};
use crate::models::{Allocation, ModelError};

/// Copies every sampler's temperature onto its target.
pub fn sync_temperatures(samplers: Query<(&Temperature, &Targets)>, mut targets: Query<&mut SamplingTemperature>) {
    for (t, target) in &samplers {
        if let Ok(mut s) = targets.get_mut(target.0) {
            s.0 = t.t;
        }
    }
}

/// Conditional models remember this round's starting parameters (for local drift).
pub fn begin_round(mut conditionals: Query<&mut ConditionalAgent>) {
    for mut c in &mut conditionals {
        c.model.begin_round();
    }
}

/// Scratch buffers reused by the phase systems across rounds.
#[derive(Default)]
pub struct PhaseBuffers {
    sampling_p: Vec<f64>,
    /// Caption distribution of the real samples of the fresh-data policy.
    real_p: Vec<f64>,
    counts: Vec<usize>,
    real_counts: Vec<usize>,
    samples: Vec<f64>,
    real_samples: Vec<f64>,
    pooled: Vec<f64>,
    pooled_counts: Vec<usize>,
    log_likelihood: Vec<f64>,
    soft_counts: Vec<f64>,
    scratch: Vec<f64>,
    order: Vec<(ScenarioOrder, Entity)>,
    conditionals: Vec<(ScenarioOrder, Entity)>,
    /// User-content injectors in scenario order, with their targets.
    users: Vec<(ScenarioOrder, Entity, Entity)>,
    /// One `(counts, samples)` batch per user-content injector of the model being refitted.
    user_batches: Vec<(Vec<usize>, Vec<f64>)>,
}

type ConditionalQuery<'w, 's, F> = Query<
    'w,
    's,
    (&'static mut ConditionalAgent, &'static ConditionedOn, &'static mut RandomStream, &'static SamplingTemperature, &'static EntityName),
    F,
>;

fn sorted<'a>(out: &mut Vec<(ScenarioOrder, Entity)>, it: impl Iterator<Item = (&'a ScenarioOrder, Entity)>) {
    out.clear();
    out.extend(it.map(|(o, e)| (*o, e)));
    out.sort_unstable();
}

/// Text phase (SPEC section 3): each unfrozen text model, `M` times, draws a batch of
/// captions from `tau_T(p)`, lets every conditional model of it generate a sample per caption,
/// and refits `p` on the caption posterior under its own prior `p`.
pub fn text_phase(
    mut texts: Query<(Entity, &ScenarioOrder, &mut TextAgent, &mut RandomStream, &SamplingTemperature, &EntityName), Without<Frozen>>,
    mut conditionals: ConditionalQuery<(Without<TextAgent>, With<ConditionedOn>)>,
    orders: Query<(&ScenarioOrder, Entity), With<ConditionalAgent>>,
    round: Res<RoundCounter>,
    mut failure: ResMut<Failure>,
    mut buf: Local<PhaseBuffers>,
) {
    if failure.0.is_some() {
        return;
    }
    let buf = &mut *buf;
    sorted(&mut buf.order, texts.iter().map(|(e, o, ..)| (o, e)));
    sorted(&mut buf.conditionals, orders.iter());
    for &(_, text_entity) in &buf.order {
        let (_, _, mut agent, mut stream, temperature, _) = texts.get_mut(text_entity).expect("listed above");
        let agent = &mut *agent;
        let k = agent.model.num_texts();
        for _ in 0..agent.steps {
            let real = agent.model.policy.real_count(agent.batch as usize);
            tempered(&agent.model.p, temperature.0, &mut buf.sampling_p);
            multinomial_counts(agent.batch - real as u64, &buf.sampling_p, &mut stream.0, &mut buf.counts);
            let n: usize = buf.counts.iter().sum();
            buf.log_likelihood.clear();
            buf.log_likelihood.resize(n * k, 0.0);
            for &(_, ce) in &buf.conditionals {
                let Ok((mut c, on, mut c_stream, c_temp, c_name)) = conditionals.get_mut(ce) else { continue };
                if on.0 != text_entity {
                    continue;
                }
                let result = c
                    .model
                    .sample(&buf.counts, c_temp.0, &mut c_stream.0, &mut buf.samples)
                    .and_then(|()| check_len("sample", buf.samples.len(), n * c.model.dim()))
                    .and_then(|()| c.model.add_log_likelihood(&buf.samples, &mut buf.log_likelihood))
                    .and_then(|()| check_finite("log_likelihood", &buf.log_likelihood));
                if let Err(source) = result {
                    failure.0 = Some(RunError::Model { round: round.0, model: c_name.0.to_string(), source });
                    return;
                }
            }
            buf.soft_counts.clear();
            buf.soft_counts.resize(k, 0.0);
            accumulate_caption_posterior(&agent.model.p, &buf.log_likelihood, &mut buf.soft_counts, &mut buf.scratch);
            if real > 0 {
                // Fresh-data policy: real captions are labelled, so they count one-hot.
                multinomial_counts(real as u64, &agent.model.p0, &mut stream.0, &mut buf.real_counts);
                for (s, &r) in buf.soft_counts.iter_mut().zip(&buf.real_counts) {
                    *s += r as f64;
                }
            }
            agent.model.refit(&buf.soft_counts);
        }
    }
}

/// Image phase (SPEC section 3): each unfrozen conditional model, `N_t` times, draws a fresh
/// batch (captions by its allocation, samples from itself), pools it with the real samples of
/// its data policy and the user content of the injectors targeting it (SPEC section 5), and
/// refits per text.
pub fn image_phase(
    texts: Query<(&TextAgent, &SamplingTemperature)>,
    mut conditionals: ConditionalQuery<Without<Frozen>>,
    orders: Query<(&ScenarioOrder, Entity), (With<ConditionalAgent>, Without<Frozen>)>,
    feeds: Query<&Feed>,
    mut users: Query<
        (Entity, &ScenarioOrder, &mut UserContentInjector, &Targets, &mut RandomStream, &EntityName),
        Without<ConditionalAgent>,
    >,
    round: Res<RoundCounter>,
    mut failure: ResMut<Failure>,
    mut buf: Local<PhaseBuffers>,
) {
    if failure.0.is_some() {
        return;
    }
    let buf = &mut *buf;
    sorted(&mut buf.conditionals, orders.iter());
    buf.users.clear();
    buf.users.extend(users.iter().map(|(e, o, _, target, ..)| (*o, e, target.0)));
    buf.users.sort_unstable();
    let order = std::mem::take(&mut buf.conditionals);
    for &(_, ce) in &order {
        let (mut c, on, mut stream, temperature, name) = conditionals.get_mut(ce).expect("listed above");
        let Ok((text, text_temperature)) = texts.get(on.0) else { continue };
        let c = &mut *c;
        let policy = c.model.data_policy();
        for _ in 0..c.steps {
            // Synthetic and real (fresh-data policy) caption counts.
            match c.allocation {
                Allocation::Binomial => {
                    let real = policy.real_count(c.batch as usize);
                    match feeds.get(ce) {
                        Ok(feed) => feed_mixture(feed, &texts, &mut buf.sampling_p, &mut buf.real_p, &mut buf.scratch),
                        Err(_) => {
                            tempered(&text.model.p, text_temperature.0, &mut buf.sampling_p);
                            buf.real_p.clone_from(&text.model.p0);
                        }
                    }
                    multinomial_counts(c.batch - real as u64, &buf.sampling_p, &mut stream.0, &mut buf.counts);
                    multinomial_counts(real as u64, &buf.real_p, &mut stream.0, &mut buf.real_counts);
                }
                Allocation::Fixed(n) => {
                    let real = policy.real_count(n);
                    buf.counts.clear();
                    buf.counts.resize(text.model.num_texts(), n - real);
                    buf.real_counts.clear();
                    buf.real_counts.resize(text.model.num_texts(), real);
                }
            }
            // User content (Algorithm 3), from each injector's own stream, in scenario order.
            let mut drawn = 0;
            for &(_, ue, target) in &buf.users {
                if target != ce {
                    continue;
                }
                let (_, _, mut injector, _, mut user_stream, user_name) = users.get_mut(ue).expect("listed above");
                if buf.user_batches.len() == drawn {
                    buf.user_batches.push(Default::default());
                }
                let (counts, samples) = &mut buf.user_batches[drawn];
                if let Err(source) = draw_user_content(&mut injector, &mut *c.model, &mut user_stream.0, counts, samples) {
                    failure.0 = Some(RunError::Model { round: round.0, model: user_name.0.to_string(), source });
                    break;
                }
                drawn += 1;
            }
            if failure.0.is_some() {
                break;
            }
            let result = image_refit(c, &mut stream.0, temperature.0, drawn, buf);
            if let Err(source) = result {
                failure.0 = Some(RunError::Model { round: round.0, model: name.0.to_string(), source });
                break;
            }
        }
        if failure.0.is_some() {
            break;
        }
    }
    buf.conditionals = order;
}

/// The caption distributions of a fed model's image phase (SPEC section 9): the mixture
/// `sum_t w_t tau_T(p_t)` of its feed's text models into `sampling`, and `sum_t w_t p0_t`, the
/// distribution of real captions, into `real`. Validation guarantees the text models share K.
fn feed_mixture(
    feed: &Feed,
    texts: &Query<(&TextAgent, &SamplingTemperature)>,
    sampling: &mut Vec<f64>,
    real: &mut Vec<f64>,
    scratch: &mut Vec<f64>,
) {
    sampling.clear();
    real.clear();
    for &(source, w) in &feed.0 {
        let Ok((text, temperature)) = texts.get(source) else { continue };
        tempered(&text.model.p, temperature.0, scratch);
        sampling.resize(scratch.len(), 0.0);
        real.resize(scratch.len(), 0.0);
        for (s, t) in sampling.iter_mut().zip(scratch.iter()) {
            *s += w * t;
        }
        for (r, p0) in real.iter_mut().zip(&text.model.p0) {
            *r += w * p0;
        }
    }
}

/// Samples the synthetic batch and the real samples of the data policy, pools them with the
/// first `users` batches of user content, and refits.
fn image_refit(
    c: &mut ConditionalAgent,
    stream: &mut crate::rng::Stream,
    temperature: f64,
    users: usize,
    buf: &mut PhaseBuffers,
) -> Result<(), ModelError> {
    let d = c.model.dim();
    c.model.sample(&buf.counts, temperature, stream, &mut buf.samples)?;
    check_len("sample", buf.samples.len(), buf.counts.iter().sum::<usize>() * d)?;
    let real_total: usize = buf.real_counts.iter().sum();
    if real_total == 0 && users == 0 {
        return c.model.fit(&buf.counts, &buf.samples);
    }
    if real_total > 0 {
        c.model.sample_initial(&buf.real_counts, stream, &mut buf.real_samples)?;
        check_len("sample_initial", buf.real_samples.len(), real_total * d)?;
    } else {
        buf.real_samples.clear();
    }
    let own: [(&[usize], &[f64]); 2] = [(&buf.counts, &buf.samples), (&buf.real_counts, &buf.real_samples)];
    if users == 0 {
        pool_by_text(&own, d, &mut buf.pooled_counts, &mut buf.pooled);
    } else {
        let mut batches = own.to_vec();
        batches.extend(buf.user_batches[..users].iter().map(|(c, s)| (c.as_slice(), s.as_slice())));
        pool_by_text(&batches, d, &mut buf.pooled_counts, &mut buf.pooled);
    }
    c.model.fit(&buf.pooled_counts, &buf.pooled)
}

/// Interned metric names, so that steady-state rounds do not allocate a string per row.
#[derive(Default)]
pub struct MetricNames(HashSet<Arc<str>>);

impl MetricNames {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }
}

/// Measures every metric of SPEC section 7 into [`Measurements`].
pub fn measure(
    texts: Query<(Entity, &ScenarioOrder, &TextAgent, &EntityName)>,
    mut conditionals: Query<(Entity, &ScenarioOrder, &mut ConditionalAgent, &ConditionedOn, &EntityName)>,
    round: Res<RoundCounter>,
    mut measurements: ResMut<Measurements>,
    mut failure: ResMut<Failure>,
    mut interned: Local<MetricNames>,
    mut per_text: Local<Vec<f64>>,
    mut scratch: Local<String>,
    mut order: Local<Vec<(ScenarioOrder, Entity)>>,
) {
    if failure.0.is_some() {
        return;
    }
    let rows = &mut measurements.0;
    rows.clear();
    let r = round.0;
    sorted(&mut order, texts.iter().map(|(e, o, ..)| (o, e)));
    for &(_, e) in order.iter() {
        let (_, _, agent, name) = texts.get(e).expect("listed above");
        let p = &agent.model.p;
        let mut push = |metric: &str, text: Option<u32>, value: f64| {
            rows.push(MetricRow { round: r, model: name.0.clone(), text, metric: interned.get(metric), value })
        };
        push(names::GINI_SIMPSON, None, tm::gini_simpson(p));
        push(names::ENTROPY, None, tm::shannon_entropy(p));
        push(names::EFFECTIVE_TEXTS, None, tm::effective_texts(p));
        push(names::SUPPORT, None, tm::support(p) as f64);
        push(names::MAX_P, None, tm::max_p(p));
        push(names::SPREAD, None, tm::spread(p));
        push(names::TV_TO_INITIAL, None, tm::total_variation(p, &agent.model.p0));
        for (i, &pi) in p.iter().enumerate() {
            push(names::P, Some(i as u32), pi);
        }
    }
    sorted(&mut order, conditionals.iter().map(|(e, o, ..)| (o, e)));
    for &(_, e) in order.iter() {
        let (_, _, mut agent, on, name) = conditionals.get_mut(e).expect("listed above");
        let k = agent.model.num_texts();
        scratch.clear();
        scratch.push_str(agent.model.diversity_metric());
        per_text.clear();
        per_text.resize(k, f64::NAN);
        let result = agent.model.metrics(&mut |metric: &str, i: usize, value: f64| {
            if metric == scratch.as_str() && i < k {
                per_text[i] = value;
            }
            rows.push(MetricRow { round: r, model: name.0.clone(), text: Some(i as u32), metric: interned.get(metric), value });
        });
        if let Err(source) = result {
            failure.0 = Some(RunError::Model { round: r, model: name.0.to_string(), source });
            return;
        }
        let weighted = interned.get(&names::weighted(scratch.as_str()));
        let regularized = agent.model.take_regularized() as f64;
        let mut push = |metric: Arc<str>, value: f64| rows.push(MetricRow { round: r, model: name.0.clone(), text: None, metric, value });
        if let Ok((_, _, text, _)) = texts.get(on.0) {
            push(weighted, coupling::weighted_mean(&text.model.p, &per_text));
            push(interned.get(names::MATTHEW_INDEX), coupling::matthew_index(&text.model.p, &per_text));
        }
        push(interned.get(names::REGULARIZED), regularized);
    }
}
