//! From a scenario file to what worlds are built from.
//!
//! - [`Scenario::load`]: read, parse, validate (the pure schema in [`crate::scenario`]), read
//!   the datasets it declares ([`crate::data`], paths relative to the file) and validate again
//!   with them, then load the plugin libraries it names and check its plugin models against
//!   them ([`crate::plugin`]). This sits above both, so the schema never depends on the plugin
//!   host. Every data file is read here, once, before anything is written.
//! - [`Resolved`]: a validated scenario with every default and derived value worked out once:
//!   initial text distributions, initial means and covariances as matrices, new-text priors,
//!   wiring as entity indices, plugin library files. The world builder, the manifest, the
//!   perturbations of recursive stability and the plots read it instead of re-deriving them.

use std::path::Path;
use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use crate::data::{Dataset, MemoryLimit};
use crate::models::{Estimator, HostedModels};
use crate::models::{Structure, StructuredCovariance};
use crate::scenario::design::{Design, read_table};
use crate::scenario::{Covariance, EntitySpec, ImageModelSpec, Means, Problem, Scenario, ScenarioError, ScenarioErrors, UserSource};

impl Scenario {
    /// Reads, parses and validates a scenario file, then loads the plugin libraries it names
    /// and checks its plugin models against them (see [`crate::plugin::check_scenario`]).
    /// A scenario estimated to need more memory than the system reports available is
    /// refused before anything of its size is allocated (see [`Scenario::load_within`]).
    pub fn load(file: &Path) -> Result<(Scenario, String), ScenarioErrors> {
        Scenario::load_within(file, None)
    }

    /// [`Scenario::load`] with a memory limit of `max_memory` bytes (`--max-memory`) in place
    /// of the memory the system reports available: a scenario whose estimated peak memory
    /// ([`crate::scenario::footprint`]) exceeds it is refused, naming the fields that drive
    /// the estimate, after its datasets are read (with their own limits) and before its
    /// plugin models are created or any text distribution is built.
    pub fn load_within(file: &Path, max_memory: Option<u64>) -> Result<(Scenario, String), ScenarioErrors> {
        Scenario::load_with_models(file, max_memory, &HostedModels::new())
    }

    /// [`Scenario::load_within`] with the hosted models a program supplies: a `PluginModel`
    /// without `library` names one of `models` (the Python API's `models=`), is checked
    /// against it, and the loaded scenario carries `models` to the worlds built from it.
    pub fn load_with_models(file: &Path, max_memory: Option<u64>, models: &HostedModels) -> Result<(Scenario, String), ScenarioErrors> {
        const MAX_SCENARIO_BYTES: u64 = 64 << 20;
        let too_large = std::fs::metadata(file).is_ok_and(|m| m.len() > MAX_SCENARIO_BYTES);
        if too_large {
            return Err(ScenarioError::Io { file: file.to_path_buf(), message: "larger than 64 MiB: not a scenario file".into() }.into());
        }
        let source = std::fs::read_to_string(file)
            .map_err(|e| ScenarioErrors::from(ScenarioError::Io { file: file.to_path_buf(), message: e.to_string() }))?;
        let scenario = Scenario::from_source(&source, file, max_memory, models)?;
        Ok((scenario, source))
    }

    /// [`Scenario::load_within`] for a scenario whose RON `source` was not read from a file
    /// (a string handed to the Python package): `file` names it in errors, and the paths it
    /// holds (datasets, design tables, plugins) are relative to `file`'s folder. `models`: the
    /// hosted models it may name (see [`Scenario::load_with_models`]).
    pub fn from_source(source: &str, file: &Path, max_memory: Option<u64>, models: &HostedModels) -> Result<Scenario, ScenarioErrors> {
        Scenario::parse(source, file)?.complete(file, source, max_memory, models)
    }

    /// [`Scenario::from_source`] for the JSON form of a scenario (what `serde` makes of the
    /// same schema, as in `manifest.json`; a Python dict): same defaults and validation, the
    /// errors naming the field path instead of a line.
    pub fn from_json(json: &str, file: &Path, max_memory: Option<u64>, models: &HostedModels) -> Result<Scenario, ScenarioErrors> {
        Scenario::parse_json(json, file)?.complete(file, json, max_memory, models)
    }

    /// What loading does after parsing: read the datasets and design table, check the memory
    /// the scenario needs, load and check its plugins and hosted models.
    fn complete(mut self, file: &Path, source: &str, max_memory: Option<u64>, models: &HostedModels) -> Result<Scenario, ScenarioErrors> {
        self.load_data(file).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        self.load_design_table(file).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        crate::scenario::footprint::check_memory(&self, max_memory).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        crate::plugin::check_scenario_with(&mut self, file, models).map_err(|problems| ScenarioErrors::invalid(file, source, problems))?;
        Ok(self)
    }

    /// Reads every `Dataset` of a parsed scenario (paths relative to the folder of `file`, the
    /// scenario file), then validates the scenario again with the data: its number of labels,
    /// dimension and per-label covariances against the models built from it or fed by it. A
    /// file that cannot be used is a problem located at the dataset's `file` field, naming the
    /// data file and the place in it.
    pub fn load_data(&mut self, file: &Path) -> Result<(), Vec<Problem>> {
        let base = file.parent().unwrap_or(Path::new(""));
        let mut problems = Vec::new();
        let mut any = false;
        for (i, entity) in self.entities.iter_mut().enumerate() {
            let EntitySpec::Dataset(spec) = entity else { continue };
            any = true;
            let path = base.join(&spec.file);
            match Dataset::load(&path, &spec.layout(), MemoryLimit::new(spec.max_memory_mb)) {
                Ok(data) => spec.loaded = Some(Arc::new(data)),
                Err(e) => problems.push(Problem {
                    entity: Some((i, spec.name.clone())),
                    kind: "Dataset",
                    key: "file".to_string(),
                    message: e.to_string(),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        if any {
            crate::scenario::validate(self)?;
        }
        Ok(())
    }

    /// Reads the points of a `Table` design (path relative to the folder of `file`, the scenario
    /// file) and checks them: every column a parameter path, every row a valid point. A problem
    /// is located at the sweep's `design` field and names the table's file, line and column.
    pub fn load_design_table(&mut self, file: &Path) -> Result<(), Vec<Problem>> {
        let Some(sweep) = &self.sweep else { return Ok(()) };
        let Design::Table(name) = &sweep.design else { return Ok(()) };
        let problem = |message: String| vec![Problem { entity: None, kind: "", key: "sweep.design".to_string(), message }];
        let table = read_table(&file.parent().unwrap_or(Path::new("")).join(name)).map_err(problem)?;
        let at = |line: u64, col: usize| format!("{}:{line}:{col}", table.file.display());
        for (j, column) in table.columns.iter().enumerate() {
            if let Err(e) = crate::scenario::sweep::apply(self, &[(column.clone(), table.rows[0][j].clone())])
                && (e.starts_with("unknown parameter path") || e.contains("malformed"))
            {
                return Err(problem(format!("{}: {e}", at(1, j + 1))));
            }
        }
        for (i, row) in table.rows.iter().enumerate() {
            let assignments: Vec<_> = table.columns.iter().cloned().zip(row.iter().cloned()).collect();
            if let Err(e) = crate::scenario::sweep::apply(self, &assignments) {
                return Err(problem(format!("{}: {e}", at(table.lines[i], 1))));
            }
        }
        if let Some(sweep) = &mut self.sweep {
            sweep.table = Some(Arc::new(table));
        }
        Ok(())
    }

    /// The scenario's datasets as (name, loaded data), in scenario order.
    pub fn datasets(&self) -> Vec<(&str, Option<&Arc<Dataset>>)> {
        self.entities
            .iter()
            .filter_map(|e| match e {
                EntitySpec::Dataset(d) => Some((d.name.as_str(), d.loaded.as_ref())),
                _ => None,
            })
            .collect()
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
    /// `Sigma_i`, one per text, in the model's family, exactly symmetric.
    pub covariances: Vec<StructuredCovariance>,
    /// The conditional a text appended by a `NewText` injection starts from.
    pub new_text: (DVector<f64>, StructuredCovariance),
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
        /// The plugin library file and its provenance (plugin models loaded from a file).
        library: Option<crate::scenario::LibraryRecord>,
        /// The dataset it is built from: its real-data source and what the metrics against
        /// the data compare it with.
        data: Option<Arc<Dataset>>,
    },
    /// An influence (temperature sampler, injector) and the index of the model it acts on.
    Influence {
        /// Index of its target.
        target: usize,
        /// A user-content injector's Gaussian source, if it has one.
        source: Option<Gaussians>,
        /// A user-content injector's dataset, if its source is `Data`.
        data: Option<Arc<Dataset>>,
    },
    /// A dataset.
    Dataset(Option<Arc<Dataset>>),
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
        // By name through a hash map, so resolving stays linear in the number of entities.
        let by_name: std::collections::HashMap<&str, usize> = scenario.entities.iter().enumerate().map(|(i, e)| (e.name(), i)).collect();
        let index = |by: &str, name: &str| {
            by_name.get(name).copied().ok_or_else(|| BuildError { entity: by.to_string(), message: format!("no entity called `{name}`") })
        };
        let texts_of = |by: &str, name: &str| -> Result<usize, BuildError> {
            match &scenario.entities[index(by, name)?] {
                EntitySpec::TextModel(t) => scenario.texts_of(t).ok_or_else(|| not_loaded(by, &t.initial_data_name())),
                _ => Err(BuildError { entity: by.to_string(), message: format!("`{name}` is not a text model") }),
            }
        };
        let data = |by: &str, name: &str| scenario.dataset(name).cloned().ok_or_else(|| not_loaded(by, name));
        let mut entities = Vec::with_capacity(scenario.entities.len());
        for spec in &scenario.entities {
            let name = spec.name();
            entities.push(match spec {
                EntitySpec::TextModel(t) => {
                    ResolvedEntity::Text { p0: scenario.initial_p(&t.initial).ok_or_else(|| not_loaded(name, &t.initial_data_name()))? }
                }
                EntitySpec::Dataset(d) => ResolvedEntity::Dataset(d.loaded.clone()),
                EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_) => {
                    let on = spec.conditioned_on().expect("a conditional model");
                    let feed = spec.feed().iter().map(|(t, w)| Ok((index(name, t)?, *w))).collect::<Result<_, BuildError>>()?;
                    let (initial, library, source) = match spec {
                        EntitySpec::ImageModel(s) => {
                            let source = image_data_name(s).map(|n| data(name, n)).transpose()?;
                            let gaussians = image_gaussians(s, texts_of(name, on)?, source.as_deref())
                                .map_err(|message| BuildError { entity: name.to_string(), message })?;
                            (Some(gaussians), None, source)
                        }
                        EntitySpec::PluginModel(s) => (None, s.resolved.clone(), None),
                        _ => unreachable!("matched above"),
                    };
                    ResolvedEntity::Conditional { text: index(name, on)?, feed, initial, library, data: source }
                }
                EntitySpec::Temperature(s) => ResolvedEntity::Influence { target: index(name, &s.target)?, source: None, data: None },
                EntitySpec::CorpusInjector(s) => ResolvedEntity::Influence { target: index(name, &s.target)?, source: None, data: None },
                EntitySpec::UserContentInjector(s) => {
                    let (source, from_data) = match (&s.source, by_name.get(s.target.as_str()).map(|&i| &scenario.entities[i])) {
                        (UserSource::Initial, _) => (None, None),
                        (UserSource::Data(dataset), _) => (None, Some(data(name, dataset)?)),
                        (UserSource::Gaussian(g), Some(EntitySpec::ImageModel(image))) => {
                            let (k, d) = (texts_of(&image.name, &image.conditioned_on)?, image.dim as usize);
                            let target_data = image_data_name(image).map(|n| data(&image.name, n)).transpose()?;
                            let target = image_gaussians(image, k, target_data.as_deref())
                                .map_err(|message| BuildError { entity: image.name.clone(), message })?;
                            // The source's covariances in the family they are written in, or the
                            // target's if wider (its new texts start from the target's prior).
                            let structure = written_structure(&g.covariance).widest(image.structure);
                            let covariances = initial_covariances(&g.covariance, k, d, structure)
                                .map_err(|message| BuildError { entity: s.name.clone(), message })?;
                            let (mean, prior) = target.new_text;
                            let gaussians =
                                Gaussians { means: initial_means(&g.means, k, d), covariances, new_text: (mean, prior.widened(structure)) };
                            (Some(gaussians), None)
                        }
                        (UserSource::Gaussian(_), _) => {
                            return Err(BuildError { entity: s.name.clone(), message: format!("`{}` is not an image model", s.target) });
                        }
                    };
                    ResolvedEntity::Influence { target: index(name, &s.target)?, source, data: from_data }
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

/// A dataset a model needs that is not loaded (the scenario was parsed, not loaded).
fn not_loaded(by: &str, dataset: &str) -> BuildError {
    BuildError {
        entity: by.to_string(),
        message: format!(
            "dataset `{dataset}` is not loaded: load the scenario from its file (Scenario::load), or call Scenario::load_data after Scenario::parse"
        ),
    }
}

impl crate::scenario::TextModelSpec {
    /// The dataset its initial distribution comes from (empty if none), for messages.
    fn initial_data_name(&self) -> String {
        match &self.initial {
            crate::scenario::TextInit::FromData(name) => name.clone(),
            _ => String::new(),
        }
    }
}

/// The dataset an image model is built from (its means' or its covariances'), if any.
pub fn image_data_name(s: &ImageModelSpec) -> Option<&str> {
    match (&s.means, &s.covariance) {
        (Means::FromData(name), _) | (_, Covariance::FromData(name)) => Some(name),
        _ => None,
    }
}

/// An image model's initial Gaussians for `k` texts, from its spec and, for `FromData`, from
/// `data` (docs/model.md section 10): label means, label covariances with the model's estimator
/// and shrinkage. Validation has checked the covariances are positive definite; a failure
/// here is reported all the same, never papered over.
fn image_gaussians(s: &ImageModelSpec, k: usize, data: Option<&Dataset>) -> Result<Gaussians, String> {
    let d = s.dim as usize;
    let (means, covariances) = match data {
        Some(data) => {
            let means = match &s.means {
                Means::FromData(_) => (0..k).map(|i| data.label_stats(i).mean.clone()).collect(),
                other => initial_means(other, k, d),
            };
            let covariances = match &s.covariance {
                Covariance::FromData(_) => (0..k)
                    .map(|i| Ok(StructuredCovariance::estimate_within(s.structure, data.label_covariance(i, s.estimator, s.shrinkage)?)))
                    .collect::<Result<_, String>>()?,
                other => initial_covariances(other, k, d, s.structure)?,
            };
            (means, covariances)
        }
        None => (initial_means(&s.means, k, d), initial_covariances(&s.covariance, k, d, s.structure)?),
    };
    Ok(Gaussians { means, new_text: new_text_prior(s, &covariances, data)?, covariances })
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
        Means::FromData(_) => unreachable!("means from data are resolved with their dataset"),
    }
}

/// The initial covariances an image model spec describes, one per text, in the family
/// `structure`: `Isotropic` and `Diagonal` specs are built in it directly (no `d x d` matrix
/// for a structured model); explicit matrices must lie in it (validation reports the entry
/// that does not, naming the field; this is the message).
pub fn initial_covariances(spec: &Covariance, k: usize, d: usize, structure: Structure) -> Result<Vec<StructuredCovariance>, String> {
    let within = |m: DMatrix<f64>| StructuredCovariance::within(structure, m);
    let rows_to_matrix = |rows: &Vec<Vec<f64>>| {
        let m = DMatrix::from_fn(d, d, |r, c| rows[r][c]);
        // Symmetrise exactly: validation accepted asymmetry at the 1e-9 level only.
        (&m + m.transpose()) * 0.5
    };
    Ok(match (spec, structure) {
        (Covariance::Isotropic(s2), _) => {
            vec![StructuredCovariance::Isotropic { variance: *s2, dim: d }.widened(structure); k]
        }
        (Covariance::Diagonal(v), Structure::Diagonal | Structure::Full) => {
            vec![StructuredCovariance::Diagonal(DVector::from_column_slice(v)).widened(structure); k]
        }
        (Covariance::Diagonal(v), Structure::Isotropic) => vec![within(DMatrix::from_diagonal(&DVector::from_column_slice(v)))?; k],
        (Covariance::Full(rows), _) => vec![within(rows_to_matrix(rows))?; k],
        (Covariance::PerText(all), _) => all.iter().map(|rows| within(rows_to_matrix(rows))).collect::<Result<_, _>>()?,
        (Covariance::FromData(_), _) => unreachable!("covariances from data are resolved with their dataset"),
    })
}

/// The smallest family a covariance spec is written in: `Isotropic(..)`, `Diagonal(..)`, else
/// `Full` (a user-content source's family, unless its target's is wider).
pub fn written_structure(spec: &Covariance) -> Structure {
    match spec {
        Covariance::Isotropic(_) => Structure::Isotropic,
        Covariance::Diagonal(_) => Structure::Diagonal,
        _ => Structure::Full,
    }
}

/// The conditional a text appended by a `NewText` injection starts from: the spec's `new_text`
/// prior, else mean at the origin with the covariance of text 0. A model built from data
/// defaults to the data's marginal moments instead (a new caption's images look like the
/// whole collection until it has its own): the marginal mean for means from data, the
/// marginal covariance (estimator and shrinkage as the labels') for covariances from data.
fn new_text_prior(
    s: &ImageModelSpec,
    sigma0: &[StructuredCovariance],
    data: Option<&Dataset>,
) -> Result<(DVector<f64>, StructuredCovariance), String> {
    let d = s.dim as usize;
    if let Some(prior) = &s.new_text {
        return Ok((DVector::from_column_slice(&prior.mean), initial_covariances(&prior.covariance, 1, d, s.structure)?.remove(0)));
    }
    let text0 =
        || sigma0.first().cloned().unwrap_or_else(|| StructuredCovariance::Isotropic { variance: 0.1, dim: d }.widened(s.structure));
    Ok(match data {
        Some(data) => {
            let mean = if matches!(s.means, Means::FromData(_)) { data.marginal().mean.clone() } else { DVector::zeros(d) };
            let cov = match s.covariance {
                Covariance::FromData(_) => data
                    .marginal_covariance(s.estimator, s.shrinkage)
                    .map(|m| StructuredCovariance::estimate_within(s.structure, m))
                    .unwrap_or_else(|_| text0()),
                _ => text0(),
            };
            (mean, cov)
        }
        None => (DVector::zeros(d), text0()),
    })
}

/// A mean and a covariance.
pub type Moments = (DVector<f64>, DMatrix<f64>);

/// The empirical moments of each label of `data` and of the whole: means and MLE covariances
/// (divisor `n_i`), what the metrics against the data compare a model with (docs/model.md section
/// 10).
pub fn empirical_moments(data: &Dataset) -> (Vec<Moments>, Moments) {
    let moments = |s: &crate::models::gaussian::SufficientStats| (s.mean.clone(), &s.scatter / Estimator::Mle.divisor(s.count));
    ((0..data.num_labels()).map(|i| moments(data.label_stats(i))).collect(), moments(data.marginal()))
}
