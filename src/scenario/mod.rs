//! Scenarios: the RON files a user writes (schema, defaults, loading, validation).
//!
//! A scenario lists the entities of one simulated platform (text models, image models,
//! temperature samplers, ...) wired by name, and says how many rounds to run and with which
//! seed. Every field but the names and the wiring has the paper's default, so a minimal
//! scenario is short; unknown fields are rejected. See `scenarios/` and the README for
//! annotated examples.

mod error;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{ScenarioError, ScenarioErrors};

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
    /// Where results go.
    #[serde(default)]
    pub output: OutputSpec,
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
}

impl EntitySpec {
    /// The entity's name.
    pub fn name(&self) -> &str {
        match self {
            EntitySpec::TextModel(s) => &s.name,
            EntitySpec::ImageModel(s) => &s.name,
            EntitySpec::Temperature(s) => &s.name,
        }
    }

    /// The variant name as written in a scenario.
    pub fn kind(&self) -> &'static str {
        match self {
            EntitySpec::TextModel(_) => "TextModel",
            EntitySpec::ImageModel(_) => "ImageModel",
            EntitySpec::Temperature(_) => "Temperature",
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
}

impl Default for TextInit {
    fn default() -> Self {
        TextInit::Uniform(5)
    }
}

impl TextInit {
    /// The resolved initial probabilities.
    pub fn probabilities(&self) -> Vec<f64> {
        match self {
            TextInit::Uniform(k) => vec![1.0 / *k as f64; *k as usize],
            TextInit::Probabilities(p) => p.clone(),
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
    /// Covariance estimator (default `Mle`).
    #[serde(default)]
    pub estimator: Estimator,
    /// A frozen model skips its own refit but still generates.
    #[serde(default)]
    pub frozen: bool,
    /// Data policy (default `Replace`).
    #[serde(default)]
    pub data: DataPolicy,
}

fn default_dim() -> u64 {
    2
}

/// Initial means of an image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Means {
    /// `mu_i^0 = (cos(2 pi i / K), sin(2 pi i / K), 0, ...)`, `i = 1..K` (the paper's choice).
    #[default]
    UnitCircle,
    /// One mean per text.
    Explicit(Vec<Vec<f64>>),
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
}

impl Default for Covariance {
    fn default() -> Self {
        Covariance::Isotropic(0.1)
    }
}

/// A temperature sampler: changes how its target samples (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureSpec {
    /// Unique entity name.
    pub name: String,
    /// The text model (softmax of `log p / T`) or image model (covariance times `T`) it acts on.
    pub target: String,
    /// Temperature `T > 0`.
    pub t: f64,
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

/// Where results are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output folder (default `out/<scenario name>`); the CLI's `--out` overrides it.
    #[serde(default)]
    pub dir: Option<PathBuf>,
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
        let scenario: Scenario = ron_options().from_str(source).map_err(|e| ScenarioErrors::from(ScenarioError::syntax(file, &e)))?;
        validate::validate(&scenario).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(file: &Path) -> Result<(Scenario, String), ScenarioErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| ScenarioErrors::from(ScenarioError::Io { file: file.to_path_buf(), message: e.to_string() }))?;
        Ok((Scenario::parse(&source, file)?, source))
    }

    /// The entity spec called `name`.
    pub fn entity(&self, name: &str) -> Option<&EntitySpec> {
        self.entities.iter().find(|e| e.name() == name)
    }
}

pub use validate::Problem;
