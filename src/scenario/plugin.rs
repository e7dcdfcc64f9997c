//! The scenario entity of a plugin model (from a plugin library, or hosted by the program
//! running coevo), and the `feed` of conditional models.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::models::{Allocation, DataPolicy, HostedModels};

/// A conditional model provided by a plugin library (docs/model.md section 9): like an image model, one
/// conditional distribution per text of the text model it is conditioned on, but of any
/// modality and implemented by a shared library loaded at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginModelSpec {
    /// Unique entity name.
    pub name: String,
    /// The library: a bare name looked up in the plugin directories (`"audio"` finds
    /// `libaudio.so` or `libcoevo_plugin_audio.so`), or a path (relative to the scenario file's
    /// folder, else to the current directory). Omitted: `model` is a hosted model, supplied
    /// in process by the program running coevo (the Python API's `models=`; see
    /// [`HostedModels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// The model's name inside the library (`coevo plugins list` shows them), or the name a
    /// hosted model is supplied under.
    pub model: String,
    /// Name of the text model whose texts condition the samples.
    pub conditioned_on: String,
    /// The model's parameters: a RON map (`{"kappa0": 4.0}`) or struct (`(kappa0: 4.0)`),
    /// handed to the plugin as JSON. Default: none (`{}`).
    #[serde(default = "empty_params")]
    pub params: serde_json::Value,
    /// Pairs per image-phase batch `N` under binomial allocation (default 1000).
    #[serde(default = "default_batch")]
    pub batch: u64,
    /// Refits per round `N_t` (default 1).
    #[serde(default = "one")]
    pub steps: u64,
    /// How samples are allocated to texts (default `Binomial`).
    #[serde(default)]
    pub allocation: Allocation,
    /// A frozen model skips its own refit but still generates.
    #[serde(default)]
    pub frozen: bool,
    /// Data policy (default `Replace`), with the built-in models' semantics.
    #[serde(default)]
    pub data: DataPolicy,
    /// The text models whose captions this model trains on, with weights (see [`Feed`]);
    /// default: the text model it is conditioned on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feed: Feed,
    /// The library file `library` resolved to, with its hash and table (filled in when the
    /// scenario is loaded from a file; not part of the file format).
    #[serde(skip)]
    pub resolved: Option<LibraryRecord>,
    /// The hosted models supplied with the scenario when `library` is omitted (filled in when
    /// the scenario is checked with them; not part of the file format).
    #[serde(skip)]
    pub hosted: Option<HostedModels>,
}

/// The provenance of a plugin library a scenario loaded: which file, exactly which bytes, and
/// what it said it is. Recorded in the manifest and in checkpoints; a resumed run refuses a
/// library that changed or that would now resolve to another file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryRecord {
    /// The library file, absolute and canonical.
    pub path: PathBuf,
    /// SHA-256 of its bytes (lowercase hex).
    pub sha256: String,
    /// The plugin's name from its table.
    pub plugin: String,
    /// The plugin's version from its table.
    pub version: String,
}

impl super::Scenario {
    /// The hosted models the scenario was checked with (see `crate::plugin::check_scenario`;
    /// none if it names no hosted model or was not checked).
    pub fn hosted_models(&self) -> HostedModels {
        self.entities
            .iter()
            .find_map(|e| match e {
                super::EntitySpec::PluginModel(s) => s.hosted.clone(),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Gives the hosted models of `base`'s plugin models to the same entities of this scenario,
    /// derived from `base` through its serialised form (which does not carry them): entities
    /// are structure, never parameters, so they are in the same order.
    pub(crate) fn carry_hosted(&mut self, base: &super::Scenario) {
        for (to, from) in self.entities.iter_mut().zip(&base.entities) {
            if let (super::EntitySpec::PluginModel(to), super::EntitySpec::PluginModel(from)) = (to, from) {
                to.hosted.clone_from(&from.hosted);
            }
        }
    }
}

/// The feed of a conditional model: `[(text model, weight), ...]`. In its image phase the
/// captions of a batch are drawn from the mixture `sum_t w_t tau_T(p_t)` of these text models
/// (weights normalised to sum to 1; the text models must have the same texts), so several text
/// models' output is pooled into the data the model trains on (docs/model.md section 9). Empty: the
/// text model the model is conditioned on, alone. The caption posterior of each text model
/// still uses the conditionals conditioned on it, whatever their feed.
pub type Feed = Vec<(String, f64)>;

fn empty_params() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_batch() -> u64 {
    1000
}

fn one() -> u64 {
    1
}
