//! Scenarios: the RON files a user writes (schema, defaults, loading, validation).
//!
//! A scenario lists the entities of one simulated platform (text models, image models,
//! temperature samplers, ...) wired by name, and says how many rounds to run and with which
//! seed. Every field but the names and the wiring has the paper's default, so a minimal
//! scenario is short; unknown fields are rejected. See `scenarios/` and the README for
//! annotated examples.

pub mod design;
pub mod diagnostics;
mod error;
pub mod footprint;
pub mod output;
mod plugin;
pub mod search;
pub mod sweep;
mod validate;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use design::{Design, DesignPoints};
pub use diagnostics::DiagnosticsSpec;
pub use error::{ScenarioError, ScenarioErrors};
pub use output::{AggregateWhen, OutputSpec, StopSpec, StopWhen, TableFormat};
pub use plugin::{Feed, LibraryRecord, PluginModelSpec};
pub use search::SearchSpec;
pub use sweep::{Sweep, SweepParameter, SweepValue};

use crate::data::Dataset;
pub use crate::models::Schedule;
use crate::models::{Allocation, DataPolicy, Estimator};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Scenario", deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, used for the default output folder.
    pub name: String,
    /// One line on what the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random stream.
    #[serde(default)]
    pub seed: u64,
    /// Number of training rounds.
    pub rounds: u64,
    /// Number of independent worlds (replicates) to run.
    #[serde(default = "one")]
    pub replicates: u64,
    /// The entities of the platform, wired by name.
    pub entities: Vec<EntitySpec>,
    /// When a model counts as collapsed (for the summary).
    #[serde(default)]
    pub collapse: CollapseSpec,
    /// Where results go and which rows are recorded.
    #[serde(default)]
    pub output: OutputSpec,
    /// When a replicate stops before `rounds` (docs/model.md section 13); default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSpec>,
    /// Recursive stability (docs/model.md section 8): the perturbation `coevo stability` applies to a
    /// twin world. Ignored by `coevo run`.
    #[serde(default)]
    pub stability: Option<StabilitySpec>,
    /// How the drift phases of the generational Markov chain are labelled (`phases.csv`).
    #[serde(default)]
    pub diagnostics: DiagnosticsSpec,
    /// Parameter grids that `coevo sweep` runs. Ignored by `coevo run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// The threshold `coevo search` looks for. Ignored by `coevo run` and `coevo sweep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
}

fn one() -> u64 {
    1
}

/// One entity of the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EntitySpec {
    /// A categorical text model (captioner).
    TextModel(TextModelSpec),
    /// A conditional Gaussian image model of a text model.
    ImageModel(ImageModelSpec),
    /// A temperature sampler attached to a text or image model.
    Temperature(TemperatureSpec),
    /// Mixes external text into a text model (Algorithm 2).
    CorpusInjector(CorpusInjectorSpec),
    /// Pools external images into an image model's refit (Algorithm 3).
    UserContentInjector(UserContentInjectorSpec),
    /// A conditional model of any modality from a plugin library (docs/model.md section 9).
    PluginModel(PluginModelSpec),
    /// Labelled embeddings read from a file: models are built from it and it is the real-data
    /// source of the models built from it (docs/model.md section 10).
    Dataset(DatasetSpec),
}

impl EntitySpec {
    /// The entity's name.
    pub fn name(&self) -> &str {
        match self {
            EntitySpec::TextModel(s) => &s.name,
            EntitySpec::ImageModel(s) => &s.name,
            EntitySpec::Temperature(s) => &s.name,
            EntitySpec::CorpusInjector(s) => &s.name,
            EntitySpec::UserContentInjector(s) => &s.name,
            EntitySpec::PluginModel(s) => &s.name,
            EntitySpec::Dataset(s) => &s.name,
        }
    }

    /// The window of rounds an influence acts in (`None`: every round; models have none).
    pub fn active(&self) -> Option<&Window> {
        match self {
            EntitySpec::Temperature(s) => s.active.as_ref(),
            EntitySpec::CorpusInjector(s) => s.active.as_ref(),
            EntitySpec::UserContentInjector(s) => s.active.as_ref(),
            EntitySpec::TextModel(_) | EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_) | EntitySpec::Dataset(_) => None,
        }
    }

    /// The variant name as written in a scenario.
    pub fn kind(&self) -> &'static str {
        match self {
            EntitySpec::TextModel(_) => "TextModel",
            EntitySpec::ImageModel(_) => "ImageModel",
            EntitySpec::Temperature(_) => "Temperature",
            EntitySpec::CorpusInjector(_) => "CorpusInjector",
            EntitySpec::UserContentInjector(_) => "UserContentInjector",
            EntitySpec::PluginModel(_) => "PluginModel",
            EntitySpec::Dataset(_) => "Dataset",
        }
    }

    /// The text model a conditional model (image or plugin model) is conditioned on.
    pub fn conditioned_on(&self) -> Option<&str> {
        match self {
            EntitySpec::ImageModel(s) => Some(&s.conditioned_on),
            EntitySpec::PluginModel(s) => Some(&s.conditioned_on),
            _ => None,
        }
    }

    /// The feed of a conditional model (empty: its own text model alone).
    pub fn feed(&self) -> &[(String, f64)] {
        match self {
            EntitySpec::ImageModel(s) => &s.feed,
            EntitySpec::PluginModel(s) => &s.feed,
            _ => &[],
        }
    }
}

/// A text model: `p` on the simplex over `K` texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextModelSpec {
    /// Unique entity name.
    pub name: String,
    /// Initial distribution `p^0` (default: uniform over 5 texts).
    #[serde(default)]
    pub initial: TextInit,
    /// Pairs per batch `N` (default 1000).
    #[serde(default = "default_batch")]
    pub batch: u64,
    /// Text phases per round `M` (default 1).
    #[serde(default = "one")]
    pub steps: u64,
    /// A frozen model skips its own refit but still generates.
    #[serde(default)]
    pub frozen: bool,
    /// Data policy (default `Replace`).
    #[serde(default)]
    pub data: DataPolicy,
}

fn default_batch() -> u64 {
    1000
}

/// The initial text distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TextInit {
    /// Uniform over this many texts.
    Uniform(u64),
    /// Explicit probabilities (must be non-negative and sum to 1).
    Probabilities(Vec<f64>),
    /// The empirical label distribution `n_i / n` of the named `Dataset` (K = its labels).
    FromData(String),
}

impl Default for TextInit {
    fn default() -> Self {
        TextInit::Uniform(5)
    }
}

impl TextInit {
    /// The initial probabilities written in the scenario (`None` for `FromData`, which needs
    /// the dataset: see [`Scenario::initial_p`]).
    pub fn probabilities(&self) -> Option<Vec<f64>> {
        match self {
            TextInit::Uniform(k) => Some(vec![1.0 / *k as f64; *k as usize]),
            TextInit::Probabilities(p) => Some(p.clone()),
            TextInit::FromData(_) => None,
        }
    }
}

/// An image model: `N(mu_i, Sigma_i)` per text of the text model it is conditioned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageModelSpec {
    /// Unique entity name.
    pub name: String,
    /// Name of the text model whose texts condition the images.
    pub conditioned_on: String,
    /// Image dimension `d` (default 2).
    #[serde(default = "default_dim")]
    pub dim: u64,
    /// Initial means (default: on the unit circle).
    #[serde(default)]
    pub means: Means,
    /// Initial covariances (default `Isotropic(0.1)`).
    #[serde(default)]
    pub covariance: Covariance,
    /// Pairs per image-phase batch `N` under binomial allocation (default 1000).
    #[serde(default = "default_batch")]
    pub batch: u64,
    /// Image phases per round `N_t` (default 1).
    #[serde(default = "one")]
    pub steps: u64,
    /// How samples are allocated to texts (default `Binomial`).
    #[serde(default)]
    pub allocation: Allocation,
    /// Covariance estimator (default `Mle`), also of covariances from data.
    #[serde(default)]
    pub estimator: Estimator,
    /// Shrinkage `s` in `[0, 1]` of covariances from data towards their isotropic part,
    /// `(1 - s) S_i + s (tr S_i / d) I` (default 0; only with `covariance: FromData`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shrinkage: f64,
    /// A frozen model skips its own refit but still generates.
    #[serde(default)]
    pub frozen: bool,
    /// Data policy (default `Replace`).
    #[serde(default)]
    pub data: DataPolicy,
    /// The conditional a text appended by a `NewText` corpus injection starts from (default:
    /// mean at the origin, the covariance of text 0).
    #[serde(default)]
    pub new_text: Option<GaussianSpec>,
    /// The text models whose captions the model trains on, with weights (see [`Feed`]);
    /// default: the text model it is conditioned on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feed: Feed,
}

fn default_dim() -> u64 {
    2
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Initial means of an image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Means {
    /// `mu_i^0 = (cos(2 pi i / K), sin(2 pi i / K), 0, ...)`, `i = 1..K` (the paper's choice).
    #[default]
    UnitCircle,
    /// One mean per text.
    Explicit(Vec<Vec<f64>>),
    /// The mean of each label's vectors in the named `Dataset` (image models only).
    FromData(String),
}

/// Initial covariances of an image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Covariance {
    /// `s^2 I` for every text.
    Isotropic(f64),
    /// `diag(v)` for every text.
    Diagonal(Vec<f64>),
    /// The same full matrix (rows) for every text.
    Full(Vec<Vec<f64>>),
    /// One full matrix (rows) per text.
    PerText(Vec<Vec<Vec<f64>>>),
    /// The sample covariance of each label's vectors in the named `Dataset`, with the image
    /// model's estimator and `shrinkage` (image models only).
    FromData(String),
}

impl Default for Covariance {
    fn default() -> Self {
        Covariance::Isotropic(0.1)
    }
}

/// A temperature sampler: changes how its target samples (docs/model.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureSpec {
    /// Unique entity name.
    pub name: String,
    /// The text model (softmax of `log p / T`) or image model (covariance times `T`) it acts on.
    pub target: String,
    /// Temperature `T > 0`, possibly scheduled over rounds.
    pub t: Schedule<f64>,
    /// The rounds it acts in (default: every round); outside them its target samples at `T = 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Window>,
}

/// The rounds an influence acts in (docs/model.md section 12): `from` to `until`, both included
/// (`until` absent: to the end of the run). Outside its window an influence does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First round it acts in (rounds count from 1; default 1).
    #[serde(default = "first_round")]
    pub from: u64,
    /// Last round it acts in (default: none, to the end of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

fn first_round() -> u64 {
    1
}

impl Window {
    /// Whether round `round` lies in the window.
    pub fn contains(&self, round: u64) -> bool {
        round >= self.from && self.until.is_none_or(|until| round <= until)
    }
}

/// One Gaussian `N(mean, covariance)` (the prior of a new text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianSpec {
    /// Mean, `dim` coordinates.
    pub mean: Vec<f64>,
    /// Covariance (`Isotropic`, `Diagonal` or `Full`; default `Isotropic(0.1)`).
    #[serde(default)]
    pub covariance: Covariance,
}

/// A corpus injector (docs/model.md section 5, Algorithm 2): after the text phase, with probability
/// `alpha`, `p <- (1 - eps) p + eps r`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusInjectorSpec {
    /// Unique entity name (it also names the injector's random stream).
    pub name: String,
    /// The text model it injects into.
    pub target: String,
    /// Probability of an injection in a round, in `[0, 1]`, possibly scheduled over rounds.
    pub alpha: Schedule<f64>,
    /// Mixing weight of an injection, in `[0, 1]`, possibly scheduled over rounds.
    pub eps: Schedule<f64>,
    /// The injection distribution `r` (default `Uniform`).
    #[serde(default)]
    pub distribution: Injection,
    /// The rounds it acts in (default: every round); outside them it never injects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Window>,
}

/// The distribution `r` a corpus injector mixes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Injection {
    /// Uniform over the current texts.
    #[default]
    Uniform,
    /// The empirical distribution of this many uniform draws over the current texts.
    RandomTokens(u64),
    /// A fixed distribution over the target's texts (texts appended later get none of it).
    Fixed(Vec<f64>),
    /// A new text `K + 1` with mass `eps`; every image model of the target gets a conditional
    /// for it from its `new_text` prior.
    NewText,
}

/// A user-content injector (docs/model.md section 5, Algorithm 3): `n0` external images per text are
/// pooled with the generated ones before every image refit of the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserContentInjectorSpec {
    /// Unique entity name (it also names the injector's random stream).
    pub name: String,
    /// The image model whose refits get the external images.
    pub target: String,
    /// External images per text per image phase, possibly scheduled over rounds.
    pub n0: Schedule<u64>,
    /// Where the images come from (default `Initial`).
    #[serde(default)]
    pub source: UserSource,
    /// The rounds it acts in (default: every round); outside them it adds no image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Window>,
}

/// The source of user content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum UserSource {
    /// The target's initial conditionals `N(mu_i^0, Sigma_i^0)` (real images).
    #[default]
    Initial,
    /// Configured Gaussians, one per text of the target, given like an image model's
    /// `means` and `covariance`. Texts appended later use the target's `new_text` prior.
    Gaussian(GaussianSource),
    /// Real vectors of the named `Dataset`: for text `i`, `n0` label-`i` rows drawn uniformly
    /// with replacement (a bootstrap). Texts appended later have no rows and get none.
    Data(String),
}

/// Per-text Gaussians of a [`UserSource::Gaussian`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianSource {
    /// Means (default: on the unit circle).
    #[serde(default)]
    pub means: Means,
    /// Covariances (default `Isotropic(0.1)`).
    #[serde(default)]
    pub covariance: Covariance,
}

/// A dataset: labelled embeddings read from a file the user has (docs/model.md section 10). It is
/// loaded once, when the scenario file is loaded ([`Scenario::load`](crate::Scenario)), and
/// shared by every replicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Unique entity name, by which models and sources refer to it.
    pub name: String,
    /// The file: `.npy`, `.npz`, `.csv` or `.parquet`, relative to the scenario file's folder.
    pub file: String,
    /// Where the vectors are (see [`crate::data::Layout::vectors`]); default: the `vectors`
    /// array of an `.npz`, every column but the labels' of a CSV or Parquet file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<String>,
    /// Where the labels are (see [`crate::data::Layout::labels`]); default `labels`.
    #[serde(default = "default_labels")]
    pub labels: String,
    /// Refuse to load more than this many MiB (estimated before reading); default: the memory
    /// the system reports available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    /// The data, once loaded (not part of the file format).
    #[serde(skip)]
    pub loaded: Option<Arc<Dataset>>,
}

fn default_labels() -> String {
    crate::data::DEFAULT_LABELS.to_string()
}

impl DatasetSpec {
    /// Where the vectors and labels are in the file.
    pub fn layout(&self) -> crate::data::Layout {
        crate::data::Layout { vectors: self.vectors.clone(), labels: self.labels.clone() }
    }
}

/// The `stability` section: how the twin world of `coevo stability` differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilitySpec {
    /// The one perturbation of the initial data or parameters (`None`: identical twins, whose
    /// divergence must stay exactly zero).
    #[serde(default)]
    pub perturb: Option<Perturbation>,
}

/// One perturbation of a scenario's initial data or parameters (docs/model.md section 8). It changes
/// the model's starting point and its real-data source together, as perturbing the initial
/// real dataset does in Fu et al.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Perturbation {
    /// A text model starts from other initial probabilities (same number of texts).
    TextInitial {
        /// The text model.
        model: String,
        /// Its perturbed initial distribution.
        initial: TextInit,
    },
    /// The initial mean of one text of an image model is shifted.
    MeanShift {
        /// The image model.
        model: String,
        /// Text index (0-based).
        text: u64,
        /// Added to the mean, `dim` coordinates.
        shift: Vec<f64>,
    },
    /// Initial covariances of an image model are multiplied by `factor`.
    CovarianceScale {
        /// The image model.
        model: String,
        /// Only this text (0-based); every text when absent.
        #[serde(default)]
        text: Option<u64>,
        /// Scale factor, `> 0`.
        factor: f64,
    },
}

/// Thresholds at which the summary calls a model collapsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollapseSpec {
    /// A text model has collapsed once its Gini-Simpson diversity falls below this.
    #[serde(default = "default_text_gini")]
    pub text_gini: f64,
    /// An image model has collapsed once its p-weighted mean trace falls below this fraction
    /// of its initial value.
    #[serde(default = "default_trace_ratio")]
    pub image_trace_ratio: f64,
}

fn default_text_gini() -> f64 {
    0.01
}
fn default_trace_ratio() -> f64 {
    0.01
}

impl Default for CollapseSpec {
    fn default() -> Self {
        CollapseSpec { text_gini: default_text_gini(), image_trace_ratio: default_trace_ratio() }
    }
}

/// The RON dialect of scenario files: newtype variants may be written without their inner
/// parentheses (`TextModel(name: "a")`), and `Some` may be left out of optional fields.
pub fn ron_options() -> ron::Options {
    use ron::extensions::Extensions;
    ron::Options::default().with_default_extension(Extensions::UNWRAP_VARIANT_NEWTYPES | Extensions::IMPLICIT_SOME)
}

impl Scenario {
    /// Parses and validates a scenario from `source`, naming `file` in errors.
    pub fn parse(source: &str, file: &Path) -> Result<Scenario, ScenarioErrors> {
        let scenario: Scenario =
            ron_options().from_str(source).map_err(|e| ScenarioErrors::from(ScenarioError::syntax_in(file, source, &e)))?;
        validate::validate(&scenario).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        Ok(scenario)
    }

    /// Parses and validates the JSON form of a scenario (the same schema, defaults and checks
    /// as RON: `{"TextModel": {...}}` for a variant with fields, `"Unbiased"` for a unit one,
    /// as `manifest.json` writes it), naming `file` in errors. A value that does not fit is
    /// reported at its field path (`entities[0].TextModel.batch`), the JSON having no lines
    /// worth naming.
    pub fn parse_json(json: &str, file: &Path) -> Result<Scenario, ScenarioErrors> {
        let located = |path: String, e: &serde_json::Error| {
            // serde_json appends where the error is in the text; the path says it better.
            let message = e.to_string();
            let message = message.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&message).to_string();
            let field = if path.is_empty() || path == "." { "(scenario)".to_string() } else { path };
            ScenarioErrors::from(ScenarioError::Invalid { file: file.to_path_buf(), position: None, field, message })
        };
        let mut de = serde_json::Deserializer::from_str(json);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| located(e.path().to_string(), e.inner()))?;
        de.end().map_err(|e| located(String::new(), &e))?;
        validate::validate(&scenario).map_err(|problems| ScenarioErrors::invalid(file, json, problems))?;
        Ok(scenario)
    }

    /// Sets the perturbation of the `stability` section from `text` (RON, written as in a
    /// scenario file: the CLI's `--perturb`) and validates it, naming `label` in errors.
    pub fn set_perturbation(&mut self, text: &str, label: &Path) -> Result<(), ScenarioErrors> {
        let perturbation: Perturbation =
            ron_options().from_str(text).map_err(|e| ScenarioErrors::from(ScenarioError::syntax_in(label, text, &e)))?;
        self.stability = Some(StabilitySpec { perturb: Some(perturbation) });
        validate::validate(self).map_err(|problems| ScenarioErrors::invalid(label, text, problems))
    }

    /// The entity spec called `name`.
    pub fn entity(&self, name: &str) -> Option<&EntitySpec> {
        self.entities.iter().find(|e| e.name() == name)
    }

    /// The loaded data of the `Dataset` entity called `name` (`None` if there is no such
    /// entity or it is not loaded yet).
    pub fn dataset(&self, name: &str) -> Option<&Arc<Dataset>> {
        match self.entity(name) {
            Some(EntitySpec::Dataset(d)) => d.loaded.as_ref(),
            _ => None,
        }
    }

    /// The initial text distribution `init` resolves to: as written, or the empirical label
    /// distribution of its dataset (`None` while that is not loaded).
    pub fn initial_p(&self, init: &TextInit) -> Option<Vec<f64>> {
        match init {
            TextInit::FromData(name) => self.dataset(name).map(|d| d.label_distribution()),
            _ => init.probabilities(),
        }
    }

    /// Number of texts `K` a text model starts with (`None` while its dataset is not loaded).
    pub fn texts_of(&self, text: &TextModelSpec) -> Option<usize> {
        match &text.initial {
            TextInit::Uniform(k) => Some(*k as usize),
            TextInit::Probabilities(p) => Some(p.len()),
            TextInit::FromData(name) => self.dataset(name).map(|d| d.num_labels()),
        }
    }
}

pub use validate::{Problem, validate};
