//! A model of a plugin library seen as a [`ConditionalModel`], so the world's systems run it
//! exactly like the built-in Gaussian image model.
//!
//! Data policies keep the built-in models' semantics (docs/model.md section 6):
//! - `Replace`: the plugin refits on the batch the image phase gives it.
//! - `Fresh { lambda }`: the plugin is created with `Replace`; [`data_policy`] reports `Fresh`,
//!   so the image phase pools real samples from [`sample_initial`] with the synthetic ones
//!   before the refit, exactly as for the Gaussian.
//! - `Accumulate { initial }`: the plugin keeps the statistics of everything it is fitted on,
//!   but is created with `initial = 0`; the initial real dataset is drawn by the host like the
//!   Gaussian's (`initial` pairs, captions from the text model's `p0`, from the entity's
//!   stream, at build time) and pooled into the first refit, so the plugin's accumulated
//!   statistics are the same union of real and generated data. (The plugin ABI's own
//!   `initial` means samples *per text*; the host's means pairs in total, as everywhere in a
//!   scenario.)
//!
//! Real data comes from a second, pristine instance created from the same parameters and never
//! fitted: the model's initial conditionals.
//!
//! [`data_policy`]: ConditionalModel::data_policy
//! [`sample_initial`]: ConditionalModel::sample_initial

use std::sync::Mutex;

use coevo_plugin_api::host::{HostError, ModelMeta};

use super::isolate::{PluginInstance, PluginLibrary};
use rand::SeedableRng;

use crate::models::{ConditionalModel, DataPolicy, ModelError, PerTextMetrics};
use crate::rng::Stream;

/// The per-text metric a plugin model reports its diversity in (first by convention).
pub const DIVERSITY_METRIC: &str = "diversity";
/// The per-text metric whose sum over texts is reported as the model's `regularized` count.
const REGULARIZED_METRIC: &str = crate::metrics::names::REGULARIZED;
/// Format tag of [`PluginConditional::save_state`]'s first value.
const STATE_FORMAT: f64 = 1.0;

/// A plugin model wrapped as a [`ConditionalModel`].
pub struct PluginConditional {
    /// The trained model. In a mutex only because [`ConditionalModel::save_state`] takes
    /// `&self` while every call into a plugin needs exclusive access; every other method
    /// reaches it through `get_mut`, which never locks.
    model: Mutex<PluginInstance>,
    /// A pristine instance (same params, never fitted): the initial conditionals.
    initial: Mutex<PluginInstance>,
    meta: ModelMeta,
    plugin_name: String,
    dim: usize,
    num_texts: usize,
    metric_names: Vec<String>,
    /// The scenario's data policy (the plugin itself gets `Replace` or `Accumulate`).
    policy: DataPolicy,
    /// The random stream the plugin's `fit` draws from, split off the entity's stream when the
    /// model is built (the trait's `fit` takes no stream). Under the policies the host creates
    /// plugins with, the SDK contract leaves `fit` no real-data draws to make, so this stream is
    /// normally untouched; a plugin that does draw in `fit` stays reproducible.
    fit_stream: Stream,
    /// `Accumulate`'s initial real dataset, pooled into the first refit.
    pending_initial: Option<(Vec<usize>, Vec<f64>)>,
    counts: Vec<u64>,
    regularized_column: Option<usize>,
    regularized: u64,
}

fn model_error(call: &'static str) -> impl Fn(HostError) -> ModelError {
    move |e| ModelError::new(call, e.to_string())
}

fn exclusive(m: &mut Mutex<PluginInstance>) -> &mut PluginInstance {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

impl PluginConditional {
    /// Creates model `model` of `library` with `num_texts` texts from `params_json`, honouring
    /// `policy` (see the module docs), plus its pristine twin. `fit_stream` serves the plugin's
    /// `fit` calls.
    pub fn new(
        library: &PluginLibrary,
        model: &str,
        params_json: &str,
        num_texts: usize,
        policy: DataPolicy,
        fit_stream: Stream,
    ) -> Result<Self, HostError> {
        use coevo_plugin_api::DataPolicy as Abi;
        let plugin_policy = match policy {
            DataPolicy::Accumulate { .. } => Abi::Accumulate { initial: 0 },
            // Validation keeps `Augment` to the built-in models.
            DataPolicy::Replace | DataPolicy::Fresh { .. } | DataPolicy::Augment { .. } => Abi::Replace,
        };
        let trained = library.create_by_name(model, params_json, num_texts, plugin_policy)?;
        let initial = library.create_by_name(model, params_json, num_texts, Abi::Replace)?;
        let metric_names = trained.metric_names().to_vec();
        Ok(PluginConditional {
            meta: trained.meta().clone(),
            plugin_name: library.name().to_owned(),
            dim: trained.dim(),
            num_texts: trained.num_texts(),
            regularized_column: metric_names.iter().position(|m| m == REGULARIZED_METRIC),
            metric_names,
            model: Mutex::new(trained),
            initial: Mutex::new(initial),
            policy,
            fit_stream,
            pending_initial: None,
            counts: Vec::new(),
            regularized: 0,
        })
    }

    /// The model's metadata from its library (name, modality, dimension rule, description).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The name of the plugin library carrying the model.
    pub fn plugin_name(&self) -> &str {
        &self.plugin_name
    }

    /// The per-text metrics the plugin reports, in its order.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// Draws `Accumulate`'s initial real dataset, `counts[i]` samples of text `i` from the
    /// initial conditionals, to be pooled into the first refit (as
    /// [`GaussianImageModel::seed_accumulated`](crate::models::GaussianImageModel::seed_accumulated)
    /// seeds the Gaussian's statistics).
    pub fn seed_accumulated(&mut self, counts: &[usize], rng: &mut Stream) -> Result<(), ModelError> {
        let mut samples = Vec::new();
        self.sample_initial(counts, rng, &mut samples)?;
        self.pending_initial = Some((counts.to_vec(), samples));
        Ok(())
    }

    fn fit_batch(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError> {
        set_counts(&mut self.counts, counts);
        exclusive(&mut self.model).fit(&self.counts, samples, &mut self.fit_stream).map_err(model_error("fit"))
    }
}

fn set_counts(out: &mut Vec<u64>, counts: &[usize]) {
    out.clear();
    out.extend(counts.iter().map(|&c| c as u64));
}

impl ConditionalModel for PluginConditional {
    fn modality(&self) -> &str {
        &self.meta.modality
    }

    fn num_texts(&self) -> usize {
        self.num_texts
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn sample(&mut self, counts: &[usize], temperature: f64, rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        set_counts(&mut self.counts, counts);
        *out = exclusive(&mut self.model).sample(&self.counts, temperature, rng).map_err(model_error("sample"))?;
        Ok(())
    }

    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        set_counts(&mut self.counts, counts);
        *out = exclusive(&mut self.initial).sample(&self.counts, 1.0, rng).map_err(model_error("sample_initial"))?;
        Ok(())
    }

    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        let ll = exclusive(&mut self.model).log_likelihood(samples).map_err(model_error("log_likelihood"))?;
        if ll.len() != out.len() {
            return Err(ModelError::new("log_likelihood", format!("{} values for an output of {}", ll.len(), out.len())));
        }
        for (o, l) in out.iter_mut().zip(&ll) {
            *o += l;
        }
        Ok(())
    }

    fn data_policy(&self) -> &DataPolicy {
        &self.policy
    }

    fn fit(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError> {
        if let Some((real_counts, real)) = self.pending_initial.take() {
            let (mut pooled_counts, mut pooled) = (Vec::new(), Vec::new());
            crate::models::batch::pool_by_text(&[(&real_counts, &real), (counts, samples)], self.dim, &mut pooled_counts, &mut pooled);
            return self.fit_batch(&pooled_counts, &pooled);
        }
        self.fit_batch(counts, samples)
    }

    /// Plugins keep no "last round" parameters: any local-drift metric is the plugin's own.
    fn begin_round(&mut self) {}

    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError> {
        let values = exclusive(&mut self.model).metrics().map_err(model_error("metrics"))?;
        let m = self.metric_names.len();
        self.regularized = 0;
        if m == 0 {
            return Ok(());
        }
        for (i, row) in values.chunks_exact(m).enumerate() {
            for (name, &v) in self.metric_names.iter().zip(row) {
                sink(name, i, v);
            }
            if let Some(c) = self.regularized_column {
                self.regularized += row[c].max(0.0).round() as u64;
            }
        }
        Ok(())
    }

    fn diversity_metric(&self) -> &str {
        DIVERSITY_METRIC
    }

    /// The sum over texts of the plugin's per-text `regularized` metric at the last
    /// [`metrics`](ConditionalModel::metrics) call (0 if the plugin reports none).
    fn take_regularized(&mut self) -> u64 {
        std::mem::take(&mut self.regularized)
    }

    fn add_text(&mut self) -> Result<(), ModelError> {
        exclusive(&mut self.model).add_text().map_err(model_error("add_text"))?;
        exclusive(&mut self.initial).add_text().map_err(model_error("add_text"))?;
        self.num_texts += 1;
        Ok(())
    }

    /// `[format, fit stream (14 values), pending initial data, trained model's get_params,
    /// pristine model's get_params]`, every integer split into exactly representable 32-bit
    /// halves (written by `encode_state`, read back by [`PluginState::decode`]).
    fn save_state(&self) -> Result<Vec<f64>, ModelError> {
        let lock = |m: &Mutex<PluginInstance>| -> Result<Vec<f64>, ModelError> {
            m.lock().unwrap_or_else(|e| e.into_inner()).get_params().map_err(model_error("save_state"))
        };
        let (trained, initial) = (lock(&self.model)?, lock(&self.initial)?);
        Ok(encode_state(&self.fit_stream, self.pending_initial.as_ref(), &trained, &initial))
    }

    fn load_state(&mut self, state: &[f64]) -> Result<(), ModelError> {
        let decoded = decode_state(state).map_err(|m| ModelError::new("load_state", m))?;
        let model = exclusive(&mut self.model);
        let backup = model.get_params().map_err(model_error("load_state"))?;
        model.set_params(&decoded.trained).map_err(model_error("load_state"))?;
        if let Err(e) = exclusive(&mut self.initial).set_params(&decoded.initial) {
            // Leave the pair consistent: a rejected checkpoint changes nothing.
            let _ = exclusive(&mut self.model).set_params(&backup);
            return Err(model_error("load_state")(e));
        }
        let (k, k0) = (exclusive(&mut self.model).num_texts(), exclusive(&mut self.initial).num_texts());
        if k != k0 {
            return Err(ModelError::new("load_state", format!("the trained model has {k} texts but the initial one {k0}")));
        }
        self.num_texts = k;
        self.fit_stream = decoded.fit_stream;
        self.pending_initial = decoded.pending;
        Ok(())
    }
}

/// A plugin model's checkpoint ([`ConditionalModel::save_state`] of a [`PluginConditional`]),
/// decoded: for tools and tests that look inside one.
#[derive(Debug, Clone)]
pub struct PluginState {
    /// The stream the plugin's `fit` draws from.
    pub fit_stream: Stream,
    /// `Accumulate`'s initial real dataset not yet pooled into a refit: counts per text and
    /// the caption-grouped samples.
    pub pending: Option<(Vec<usize>, Vec<f64>)>,
    /// The trained model's `get_params` (layout defined by the plugin).
    pub trained: Vec<f64>,
    /// The pristine twin's `get_params`.
    pub initial: Vec<f64>,
}

impl PluginState {
    /// Reads a state written by [`PluginConditional`]'s `save_state`.
    pub fn decode(state: &[f64]) -> Result<PluginState, String> {
        decode_state(state)
    }
}

/// Appends `v` as two `f64`s holding its low and high 32 bits (exact, always finite).
fn push_u64(out: &mut Vec<f64>, v: u64) {
    out.push((v & 0xFFFF_FFFF) as f64);
    out.push((v >> 32) as f64);
}

/// Serialises the adapter's own state around the plugin's two checkpoints.
fn encode_state(fit_stream: &Stream, pending: Option<&(Vec<usize>, Vec<f64>)>, trained: &[f64], initial: &[f64]) -> Vec<f64> {
    let mut out = vec![STATE_FORMAT];
    for chunk in fit_stream.get_seed().chunks_exact(8) {
        push_u64(&mut out, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    push_u64(&mut out, fit_stream.get_stream());
    let pos = fit_stream.get_word_pos();
    push_u64(&mut out, pos as u64);
    push_u64(&mut out, (pos >> 64) as u64);
    match pending {
        None => out.push(0.0),
        Some((counts, samples)) => {
            out.push(1.0);
            push_u64(&mut out, counts.len() as u64);
            out.extend(counts.iter().map(|&c| c as f64));
            push_u64(&mut out, samples.len() as u64);
            out.extend_from_slice(samples);
        }
    }
    for part in [trained, initial] {
        push_u64(&mut out, part.len() as u64);
        out.extend_from_slice(part);
    }
    out
}

/// Reads what [`encode_state`] wrote, refusing anything else with a message.
fn decode_state(state: &[f64]) -> Result<PluginState, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[f64], String> {
        let part = state.get(at..at + n).ok_or_else(|| format!("the state ends after {} values", state.len()))?;
        at += n;
        Ok(part)
    };
    fn u64_of(pair: &[f64]) -> Result<u64, String> {
        let half = |x: f64| {
            if x.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&x) {
                Ok(x as u64)
            } else {
                Err(format!("{x} is not a 32-bit integer"))
            }
        };
        Ok(half(pair[0])? | (half(pair[1])? << 32))
    }
    if take(1)?[0] != STATE_FORMAT {
        return Err(format!("unknown plugin state format {} (expected {STATE_FORMAT})", state[0]));
    }
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&u64_of(take(2)?)?.to_le_bytes());
    }
    let mut fit_stream = Stream::from_seed(seed);
    fit_stream.set_stream(u64_of(take(2)?)?);
    let lo = u64_of(take(2)?)?;
    let hi = u64_of(take(2)?)?;
    fit_stream.set_word_pos(u128::from(lo) | (u128::from(hi) << 64));
    let pending = match take(1)?[0] {
        0.0 => None,
        1.0 => {
            let k = u64_of(take(2)?)? as usize;
            let counts = take(k)?.iter().map(|&c| c as usize).collect();
            let n = u64_of(take(2)?)? as usize;
            Some((counts, take(n)?.to_vec()))
        }
        other => return Err(format!("pending-data flag {other} is neither 0 nor 1")),
    };
    let n = u64_of(take(2)?)? as usize;
    let trained = take(n)?.to_vec();
    let n = u64_of(take(2)?)? as usize;
    let initial = take(n)?.to_vec();
    if at != state.len() {
        return Err(format!("{} values left over after the plugin state", state.len() - at));
    }
    Ok(PluginState { fit_stream, pending, trained, initial })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn adapter_state_round_trips_exactly() {
        let mut stream = Stream::from_seed([7; 32]);
        stream.set_stream(u64::MAX - 3);
        for _ in 0..5 {
            stream.next_u64();
        }
        let pending = (vec![2, 0, 1], vec![0.5, -1.25, f64::MIN_POSITIVE]);
        let state = encode_state(&stream, Some(&pending), &[1.0, 2.0], &[3.0]);
        assert!(state.iter().all(|v| v.is_finite()));
        let d = decode_state(&state).expect("decodes");
        assert_eq!(d.pending, Some(pending));
        assert_eq!((d.trained, d.initial), (vec![1.0, 2.0], vec![3.0]));
        let mut restored = d.fit_stream;
        assert_eq!(
            (restored.get_seed(), restored.get_stream(), restored.get_word_pos()),
            (stream.get_seed(), stream.get_stream(), stream.get_word_pos())
        );
        assert_eq!(restored.next_u64(), stream.next_u64());
        assert!(decode_state(&state[..state.len() - 1]).is_err());
        assert!(decode_state(&[2.0]).unwrap_err().contains("format"));
    }
}
