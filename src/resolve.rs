//! From a scenario file to what worlds are built from.
//!
//! - [`Scenario::load`]: read, parse, validate (the pure schema in [`crate::scenario`]), then
//!   load the plugin libraries it names and check its plugin models against them
//!   ([`crate::plugin`]). This sits above both, so the schema never depends on the plugin host.
//! - [`Resolved`]: a validated scenario with every default and derived value worked out once:
//!   initial text distributions, initial means and covariances as matrices, new-text priors,
//!   wiring as entity indices, plugin library files. The world builder, the manifest, the
//!   perturbations of recursive stability and the plots read it instead of re-deriving them.

use std::path::{Path, PathBuf};

use nalgebra::{DMatrix, DVector};

use crate::scenario::{Covariance, EntitySpec, ImageModelSpec, Means, Scenario, ScenarioError, ScenarioErrors, UserSource};

impl Scenario {
    /// Reads, parses and validates a scenario file, then loads the plugin libraries it names
    /// and checks its plugin models against them (see [`crate::plugin::check_scenario`]).
    pub fn load(file: &Path) -> Result<(Scenario, String), ScenarioErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| ScenarioErrors::from(ScenarioError::Io { file: file.to_path_buf(), message: e.to_string() }))?;
        let mut scenario = Scenario::parse(&source, file)?;
        crate::plugin::check_scenario(&mut scenario, file).map_err(|problems| ScenarioErrors::invalid(file, &source, problems))?;
        Ok((scenario, source))
    }
}

/// A scenario that passed validation but still cannot be built (an internal inconsistency,
/// or a plugin that refuses its parameters).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot build entity `{entity}`: {message}")]
pub struct BuildError {
    /// Name of the entity.
    pub entity: String,
    /// Why.
    pub message: String,
}

/// Per-text Gaussians: an image model's initial conditionals, or a Gaussian user-content
/// source.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussians {
    /// `mu_i`, one per text.
    pub means: Vec<DVector<f64>>,
    /// `Sigma_i`, one per text, exactly symmetric.
    pub covariances: Vec<DMatrix<f64>>,
    /// The conditional a text appended by a `NewText` injection starts from.
    pub new_text: (DVector<f64>, DMatrix<f64>),
}

/// One entity of a resolved scenario (same index as in the scenario's `entities`).
#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedEntity {
    /// A text model and its initial distribution `p0`.
    Text {
        /// `p0`.
        p0: Vec<f64>,
    },
    /// A conditional model (image or plugin model).
    Conditional {
        /// Index of the text model it is conditioned on.
        text: usize,
        /// Its feed as (text model index, weight), empty for its own text model alone.
        feed: Vec<(usize, f64)>,
        /// Its initial per-text Gaussians (built-in image models only).
        initial: Option<Gaussians>,
        /// The plugin library file (plugin models loaded from a file).
        library: Option<PathBuf>,
    },
    /// An influence (temperature sampler, injector) and the index of the model it acts on.
    Influence {
        /// Index of its target.
        target: usize,
        /// A user-content injector's Gaussian source, if it has one.
        source: Option<Gaussians>,
    },
}

/// A validated scenario's initial state and wiring, resolved once (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// One per scenario entity, in scenario order.
    pub entities: Vec<ResolvedEntity>,
}

impl Resolved {
    /// Resolves a validated scenario; a reference to an entity that does not exist (which
    /// validation rules out) is a [`BuildError`].
    pub fn of(scenario: &Scenario) -> Result<Resolved, BuildError> {
        let index = |by: &str, name: &str| {
            scenario
                .entities
                .iter()
                .position(|e| e.name() == name)
                .ok_or_else(|| BuildError { entity: by.to_string(), message: format!("no entity called `{name}`") })
        };
        let texts_of = |by: &str, name: &str| -> Result<usize, BuildError> {
            match &scenario.entities[index(by, name)?] {
                EntitySpec::TextModel(t) => Ok(t.initial.probabilities().len()),
                _ => Err(BuildError { entity: by.to_string(), message: format!("`{name}` is not a text model") }),
            }
        };
        let mut entities = Vec::with_capacity(scenario.entities.len());
        for spec in &scenario.entities {
            let name = spec.name();
            entities.push(match spec {
                EntitySpec::TextModel(t) => ResolvedEntity::Text { p0: t.initial.probabilities() },
                EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_) => {
                    let on = spec.conditioned_on().expect("a conditional model");
                    let feed = spec.feed().iter().map(|(t, w)| Ok((index(name, t)?, *w))).collect::<Result<_, BuildError>>()?;
                    let (initial, library) = match spec {
                        EntitySpec::ImageModel(s) => (Some(image_gaussians(s, texts_of(name, on)?)), None),
                        EntitySpec::PluginModel(s) => (None, s.resolved.clone()),
                        _ => unreachable!("matched above"),
                    };
                    ResolvedEntity::Conditional { text: index(name, on)?, feed, initial, library }
                }
                EntitySpec::Temperature(s) => ResolvedEntity::Influence { target: index(name, &s.target)?, source: None },
                EntitySpec::CorpusInjector(s) => ResolvedEntity::Influence { target: index(name, &s.target)?, source: None },
                EntitySpec::UserContentInjector(s) => {
                    let source = match (&s.source, scenario.entity(&s.target)) {
                        (UserSource::Initial, _) => None,
                        (UserSource::Gaussian(g), Some(EntitySpec::ImageModel(image))) => {
                            let (k, d) = (texts_of(&image.name, &image.conditioned_on)?, image.dim as usize);
                            let prior = new_text_prior(image, &initial_covariances(&image.covariance, k, d));
                            Some(Gaussians {
                                means: initial_means(&g.means, k, d),
                                covariances: initial_covariances(&g.covariance, k, d),
                                new_text: prior,
                            })
                        }
                        (UserSource::Gaussian(_), _) => {
                            return Err(BuildError { entity: s.name.clone(), message: format!("`{}` is not an image model", s.target) });
                        }
                    };
                    ResolvedEntity::Influence { target: index(name, &s.target)?, source }
                }
            });
        }
        Ok(Resolved { entities })
    }

    /// `p0` of the text model at index `i` (empty if it is not one).
    pub fn p0(&self, i: usize) -> &[f64] {
        match &self.entities[i] {
            ResolvedEntity::Text { p0 } => p0,
            _ => &[],
        }
    }

    /// The initial Gaussians of the image model at index `i`, if it is one.
    pub fn image(&self, i: usize) -> Option<&Gaussians> {
        match &self.entities[i] {
            ResolvedEntity::Conditional { initial, .. } => initial.as_ref(),
            _ => None,
        }
    }
}

fn image_gaussians(s: &ImageModelSpec, k: usize) -> Gaussians {
    let d = s.dim as usize;
    let covariances = initial_covariances(&s.covariance, k, d);
    Gaussians { means: initial_means(&s.means, k, d), new_text: new_text_prior(s, &covariances), covariances }
}

/// The paper's initial means: `(cos(2 pi i / K), sin(2 pi i / K))` for `i = 1..K`, padded
/// with zeros up to `d` coordinates.
pub fn unit_circle_means(k: usize, d: usize) -> Vec<DVector<f64>> {
    (1..=k)
        .map(|i| {
            let angle = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
            let mut m = DVector::zeros(d);
            m[0] = angle.cos();
            m[1] = angle.sin();
            m
        })
        .collect()
}

/// The initial means an image model (or a Gaussian user-content source) spec describes.
pub fn initial_means(spec: &Means, k: usize, d: usize) -> Vec<DVector<f64>> {
    match spec {
        Means::UnitCircle => unit_circle_means(k, d),
        Means::Explicit(m) => m.iter().map(|v| DVector::from_column_slice(v)).collect(),
    }
}

/// The initial covariances an image model spec describes, one per text.
pub fn initial_covariances(spec: &Covariance, k: usize, d: usize) -> Vec<DMatrix<f64>> {
    let rows_to_matrix = |rows: &Vec<Vec<f64>>| {
        let m = DMatrix::from_fn(d, d, |r, c| rows[r][c]);
        // Symmetrise exactly: validation accepted asymmetry at the 1e-9 level only.
        (&m + m.transpose()) * 0.5
    };
    match spec {
        Covariance::Isotropic(s2) => vec![DMatrix::identity(d, d) * *s2; k],
        Covariance::Diagonal(v) => vec![DMatrix::from_diagonal(&DVector::from_column_slice(v)); k],
        Covariance::Full(rows) => vec![rows_to_matrix(rows); k],
        Covariance::PerText(all) => all.iter().map(rows_to_matrix).collect(),
    }
}

/// The conditional a text appended by a `NewText` injection starts from: the spec's `new_text`
/// prior, else mean at the origin with the covariance of text 0.
fn new_text_prior(s: &ImageModelSpec, sigma0: &[DMatrix<f64>]) -> (DVector<f64>, DMatrix<f64>) {
    let d = s.dim as usize;
    match &s.new_text {
        Some(prior) => (DVector::from_column_slice(&prior.mean), initial_covariances(&prior.covariance, 1, d).remove(0)),
        None => (DVector::zeros(d), sigma0.first().cloned().unwrap_or_else(|| DMatrix::identity(d, d) * 0.1)),
    }
}
