//! Semantic checks of a parsed scenario: every value a user can get wrong gets a message that
//! says what is wrong and what would be valid.

use std::collections::{HashMap, HashSet};

use nalgebra::{DMatrix, SymmetricEigen};

use std::sync::Arc;

use super::{
    CorpusInjectorSpec, Covariance, DatasetSpec, EntitySpec, GaussianSpec, ImageModelSpec, Injection, Means, Perturbation, PluginModelSpec,
    Scenario, TextInit, UserContentInjectorSpec, UserSource, Window,
};
use crate::data::Dataset;
use crate::models::{Allocation, DataPolicy, Schedule, ScheduleValue, Structure, StructuredCovariance};

/// Tolerance on `sum p = 1`: loose enough for hand-written decimals like `0.1` (ten of which
/// sum to `0.9999999999999999`), tight enough to catch a genuine typo.
pub const SIMPLEX_TOLERANCE: f64 = 1e-9;

/// One invalid value, located by entity and field.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Index and name of the entity, for entity fields.
    pub entity: Option<(usize, String)>,
    /// Entity kind as written (`TextModel`, ...), for entity fields.
    pub kind: &'static str,
    /// The field name as written in the file (`covariance`, `rounds`, ...).
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl Problem {
    /// Human-readable path of the field.
    pub fn path(&self) -> String {
        match &self.entity {
            Some((i, name)) => format!("entities[{i}] ({} \"{name}\").{}", self.kind, self.key),
            None => self.key.clone(),
        }
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    current: Option<(usize, String)>,
    kind: &'static str,
    _scenario: &'a Scenario,
}

impl<'a> Checker<'a> {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem { entity: self.current.clone(), kind: self.kind, key: key.to_string(), message: message.into() });
    }

    fn at_least(&mut self, key: &str, value: u64, min: u64, what: &str) {
        if value < min {
            self.fail(key, format!("{what} must be at least {min}, got {value}"));
        }
    }

    fn policy(&mut self, policy: &DataPolicy) {
        if let DataPolicy::Fresh { lambda } = policy {
            self.schedule(
                "data",
                Some("Fresh(lambda: ..)"),
                lambda,
                |l| (0.0..=1.0).contains(&l),
                |at, l| format!("Fresh(lambda: {l}){at}: the real-data fraction lambda must lie in [0, 1]"),
            );
        }
        if let DataPolicy::Augment { lambda } = *policy
            && !(lambda.is_finite() && lambda >= 0.0)
        {
            self.fail("data", format!("Augment(lambda: {lambda}): lambda, generated samples per real one, must be a finite number >= 0"));
        }
    }

    /// A scheduled parameter (docs/model.md section 12) written under `key`: its shape (steps
    /// start at round 0 or 1, rounds increase; a ramp ends after it starts) and its value at
    /// every declared point. The valid ranges are intervals, so values in range at the points
    /// are in range at every round (steps take the points' values, a ramp interpolates between
    /// them). `message(at, value)` says what is wrong with a value, `at` being empty for a
    /// plain number and ` at round r` for a point of a schedule. `label` names the value inside
    /// the field, when the field holds more than the schedule (`Fresh(lambda: ..)` in `data`).
    fn schedule<T: ScheduleValue>(
        &mut self,
        key: &str,
        label: Option<&str>,
        schedule: &Schedule<T>,
        in_range: impl Fn(T) -> bool,
        message: impl Fn(&str, T) -> String,
    ) {
        if let Some(problem) = schedule.shape_problem() {
            self.fail(key, label.map_or(problem.clone(), |l| format!("{l}: {problem}")));
            return;
        }
        for (round, value) in schedule.points() {
            if !in_range(value) {
                let at = if schedule.constant().is_some() { String::new() } else { format!(" at round {round}") };
                self.fail(key, message(&at, value));
                return;
            }
        }
    }

    /// The window of rounds an influence acts in: starts at round 1 or later, ends no earlier.
    fn window(&mut self, window: Option<&Window>) {
        let Some(w) = window else { return };
        if w.from == 0 {
            self.fail("active", "active.from = 0: rounds count from 1 (round 0 is the initial state); write from: 1 for the first round");
        }
        if let Some(until) = w.until
            && until < w.from
        {
            self.fail(
                "active",
                format!("active window from: {} until: {until} is empty: `until` must be >= `from` (both rounds are included)", w.from),
            );
        }
    }

    /// The dataset `name` refers to from field `key`: an error unless a `Dataset` entity has
    /// that name; its data once loaded (`None` before: the checks that need it wait).
    fn dataset(&mut self, key: &str, name: &str) -> Option<&'a Arc<Dataset>> {
        let scenario = self._scenario;
        match scenario.entity(name) {
            Some(EntitySpec::Dataset(d)) => d.loaded.as_ref(),
            Some(other) => {
                self.fail(key, format!("`{name}` is {}, not a Dataset ({})", with_article(other.kind()), names_of(scenario, "Dataset")));
                None
            }
            None => {
                self.fail(
                    key,
                    format!("no entity is called `{name}`; FromData and Data name a Dataset ({})", names_of(scenario, "Dataset")),
                );
                None
            }
        }
    }

    /// A loaded dataset used for the `k` texts of `text_model` in dimension `d` (`d` unknown
    /// for a plugin model): one label per text, each with rows, and vectors of dimension `d`.
    fn data_fits(&mut self, key: &str, name: &str, data: &Dataset, k: Option<usize>, d: Option<usize>, text_model: &str) {
        if let Some(d) = d
            && data.dim() != d
        {
            self.fail(
                key,
                format!("dataset `{name}` has vectors of dimension {} but the model has dim = {d}; set dim: {}", data.dim(), data.dim()),
            );
        }
        let Some(k) = k else { return };
        let kd = data.num_labels();
        if kd > k {
            self.fail(
                key,
                format!(
                    "dataset `{name}` has labels 0 to {}, but `{text_model}` has K = {k} texts: labels {k} to {} are outside 0..K-1 (use initial: FromData(\"{name}\") for K = {kd})",
                    kd - 1,
                    kd - 1
                ),
            );
        } else if kd < k {
            self.fail(
                key,
                format!(
                    "`{text_model}` has K = {k} texts but dataset `{name}` has labels 0 to {} only: texts {kd} to {} have no rows (every text needs at least one)",
                    kd - 1,
                    k - 1
                ),
            );
        }
    }

    fn probabilities(&mut self, key: &str, p: &[f64]) {
        if p.is_empty() {
            self.fail(key, "a probability vector needs at least one entry");
            return;
        }
        if let Some((i, x)) = p.iter().enumerate().find(|(_, x)| !x.is_finite() || **x < 0.0) {
            self.fail(key, format!("probability [{i}] = {x} is not a number in [0, 1]; every entry must be >= 0"));
            return;
        }
        let sum: f64 = p.iter().sum();
        if (sum - 1.0).abs() > SIMPLEX_TOLERANCE {
            self.fail(
                key,
                format!(
                    "probabilities sum to {sum}, not 1 (within {SIMPLEX_TOLERANCE:e}); rescale them so they sum to 1, or use Uniform(K)"
                ),
            );
        }
    }

    fn matrix(&mut self, key: &str, label: &str, rows: &[Vec<f64>], d: usize) {
        if rows.len() != d || rows.iter().any(|r| r.len() != d) {
            let shape: Vec<usize> = rows.iter().map(Vec::len).collect();
            self.fail(key, format!("{label} must be {d} x {d} (dim = {d}), got rows of lengths {shape:?}"));
            return;
        }
        if let Some(x) = rows.iter().flatten().find(|x| out_of_range(**x)) {
            self.fail(key, format!("{label} has the entry {x}; {RANGE}"));
            return;
        }
        let m = DMatrix::from_fn(d, d, |r, c| rows[r][c]);
        let scale = m.amax().max(f64::MIN_POSITIVE);
        if (&m - m.transpose()).amax() > 1e-9 * scale {
            self.fail(key, format!("{label} is not symmetric: a covariance needs entry [r][c] equal to [c][r]"));
            return;
        }
        let min = SymmetricEigen::new(m).eigenvalues.min();
        if min < -1e-10 * scale {
            self.fail(
                key,
                format!(
                    "{label} is not positive semi-definite: its smallest eigenvalue is {min:.6e}; a covariance needs every eigenvalue >= 0"
                ),
            );
        }
    }

    fn variances(&mut self, key: &str, v: &[f64], d: usize) {
        if v.len() != d {
            self.fail(key, format!("Diagonal needs {d} variances (dim = {d}), got {}", v.len()));
        } else if let Some(x) = v.iter().find(|x| out_of_range(**x) || **x < 0.0) {
            self.fail(key, format!("variance {x} is invalid: variances must be >= 0; {RANGE}"));
        }
    }

    fn image_model(&mut self, s: &ImageModelSpec, texts: Option<usize>) {
        self.at_least("dim", s.dim, 1, "the image dimension");
        self.at_least("batch", s.batch, 1, "the batch size N");
        self.at_least("steps", s.steps, 1, "image phases per round");
        if let Allocation::Fixed(n) = s.allocation {
            self.at_least("allocation", n as u64, 1, "Fixed(n) samples per text");
        }
        self.policy(&s.data);
        let d = s.dim as usize;
        if d == 0 {
            return;
        }
        if !(0.0..=1.0).contains(&s.shrinkage) {
            self.fail("shrinkage", format!("shrinkage = {}: the shrinkage s must lie in [0, 1]", s.shrinkage));
        } else if s.shrinkage > 0.0 && !matches!(s.covariance, Covariance::FromData(_)) {
            self.fail("shrinkage", "shrinkage applies to covariances estimated from data: use it with covariance: FromData(..)");
        }
        if let (Means::FromData(a), Covariance::FromData(b)) = (&s.means, &s.covariance)
            && a != b
        {
            self.fail("covariance", format!("means come from `{a}` and covariances from `{b}`: a model is built from one dataset"));
        }
        for (key, name) in [("means", data_name_of_means(&s.means)), ("covariance", data_name_of_covariance(&s.covariance))] {
            let Some(name) = name else { continue };
            let Some(data) = self.dataset(key, name) else { continue };
            self.data_fits(key, name, data, texts, Some(d), &s.conditioned_on);
            if key == "covariance" && data.dim() == d && texts == Some(data.num_labels()) {
                for i in 0..data.num_labels() {
                    if let Err(why) = data.label_covariance(i, s.estimator, s.shrinkage) {
                        self.fail(key, format!("dataset `{name}`: {why}"));
                    }
                }
            }
        }
        self.gaussians(&s.means, &s.covariance, d, texts, &s.conditioned_on);
        self.in_family("covariance", &s.covariance, d, s.structure);
        if let Some(prior) = &s.new_text {
            self.gaussian("new_text", prior, d);
            self.in_family("new_text", &prior.covariance, d, s.structure);
        }
    }

    /// Explicit covariances of a structured image model must lie in its family
    /// (docs/model.md section 14): an off-diagonal entry, or unequal variances for
    /// `Isotropic`, is reported rather than dropped. Covariances from data are estimated in
    /// the family and need no check; malformed matrices are reported by [`Self::matrix`].
    fn in_family(&mut self, key: &str, covariance: &Covariance, d: usize, structure: Structure) {
        let square = |rows: &Vec<Vec<f64>>| rows.len() == d && rows.iter().all(|r| r.len() == d);
        let matrices: Vec<(String, DMatrix<f64>)> = match covariance {
            Covariance::Diagonal(v) if structure == Structure::Isotropic && v.len() == d => {
                vec![("Diagonal covariance".into(), DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(v)))]
            }
            Covariance::Full(rows) if structure != Structure::Full && square(rows) => {
                vec![("Full covariance".into(), DMatrix::from_fn(d, d, |r, c| rows[r][c]))]
            }
            Covariance::PerText(all) if structure != Structure::Full => all
                .iter()
                .enumerate()
                .filter(|(_, rows)| square(rows))
                .map(|(i, rows)| (format!("covariance [{i}]"), DMatrix::from_fn(d, d, |r, c| rows[r][c])))
                .collect(),
            _ => Vec::new(),
        };
        for (label, m) in matrices {
            if let Err(why) = StructuredCovariance::within(structure, m) {
                self.fail(key, format!("{label}: {why} (structure: {})", structure.name()));
                return;
            }
        }
    }

    /// The fields of a plugin model that need no library to check (the library, model and
    /// params are checked when the scenario is loaded: `crate::plugin::check_scenario`, which
    /// also checks a hosted model against the models supplied).
    fn plugin_model(&mut self, s: &PluginModelSpec) {
        if s.library.as_ref().is_some_and(|l| l.trim().is_empty()) {
            self.fail(
                "library",
                "give the plugin library: a name found in the plugin directories (e.g. \"audio\") or a path; omit `library` for a hosted model",
            );
        }
        if s.model.trim().is_empty() {
            self.fail("model", "give the model's name inside the library (`coevo plugins list` shows them), or the name of a hosted model");
        }
        self.at_least("batch", s.batch, 1, "the batch size N");
        self.at_least("steps", s.steps, 1, "refits per round");
        if let Allocation::Fixed(n) = s.allocation {
            self.at_least("allocation", n as u64, 1, "Fixed(n) samples per text");
        }
        self.policy(&s.data);
        if let DataPolicy::Augment { .. } = s.data {
            self.fail("data", "Augment is available to the built-in image models, not to plugin models; use Replace, Accumulate or Fresh");
        }
        if let (None, DataPolicy::Accumulate { .. }) = (&s.library, &s.data) {
            self.fail(
                "data",
                "a hosted model (no `library`) takes Replace or Fresh: coevo supplies the real data of Fresh, while Accumulate needs statistics kept across refits, which only the built-in and plugin models implement",
            );
        }
    }

    /// A conditional model's `feed` (docs/model.md section 9): distinct text models with the same texts
    /// as `conditioned_on`, positive finite weights, and no `NewText` injection that would
    /// give one of them a text the others lack.
    fn feed(&mut self, feed: &[(String, f64)], conditioned_on: &str, texts: Option<usize>, kinds: &HashMap<&str, &EntitySpec>) {
        let mut seen = HashSet::new();
        for (name, weight) in feed {
            if !seen.insert(name.as_str()) {
                self.fail("feed", format!("`{name}` appears twice in the feed; list each text model once with its total weight"));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                self.fail(
                    "feed",
                    format!(
                        "weight {weight} of `{name}` is invalid: feed weights must be finite and > 0 (they are normalised to sum to 1)"
                    ),
                );
            }
            let Some(EntitySpec::TextModel(t)) = self.target("feed", name, &["TextModel"], "a feed", kinds) else { continue };
            let Some(k) = self._scenario.texts_of(t) else { continue };
            if let Some(own) = texts
                && k != own
            {
                self.fail(
                    "feed",
                    format!(
                        "`{name}` has K = {k} texts but `{conditioned_on}` has K = {own}; the text models of a feed must share their texts"
                    ),
                );
            }
        }
        // A feed mixes per-text distributions, so its text models must keep the same texts.
        let in_feed = |name: &str| name == conditioned_on || feed.iter().any(|(n, _)| n == name);
        if feed.iter().any(|(n, _)| n != conditioned_on) {
            let scenario = self._scenario;
            for e in &scenario.entities {
                if let EntitySpec::CorpusInjector(inj) = e
                    && matches!(inj.distribution, Injection::NewText)
                    && in_feed(&inj.target)
                {
                    let message = format!(
                        "`{}` gets NewText corpus injections (from `{}`), which would give it a text the rest of the feed lacks; drop the feed or the injection",
                        inj.target, inj.name
                    );
                    self.fail("feed", message);
                }
            }
        }
    }

    /// Per-text means and covariances (of an image model or a Gaussian user-content source)
    /// for `texts` texts of `text_model` in dimension `d`.
    fn gaussians(&mut self, means: &Means, covariance: &Covariance, d: usize, texts: Option<usize>, text_model: &str) {
        match means {
            Means::UnitCircle if d < 2 => {
                self.fail("means", format!("UnitCircle needs dim >= 2, got dim = {d}; give Explicit means instead"))
            }
            Means::Explicit(list) => {
                if let Some(k) = texts
                    && list.len() != k
                {
                    self.fail("means", format!("{} means given but text model `{text_model}` has K = {k} texts", list.len()));
                }
                if let Some((i, m)) = list.iter().enumerate().find(|(_, m)| m.len() != d) {
                    self.fail("means", format!("mean [{i}] has {} coordinates, expected dim = {d}", m.len()));
                } else if let Some(x) = list.iter().flatten().find(|x| out_of_range(**x)) {
                    self.fail("means", format!("a mean has the coordinate {x}; {RANGE}"));
                }
            }
            Means::FromData(_) | Means::UnitCircle => {}
        }
        if let Covariance::PerText(all) = covariance {
            if let Some(k) = texts
                && all.len() != k
            {
                self.fail("covariance", format!("PerText gives {} covariances but text model `{text_model}` has K = {k} texts", all.len()));
            }
            for (i, rows) in all.iter().enumerate() {
                self.matrix("covariance", &format!("covariance [{i}]"), rows, d);
            }
        } else if !matches!(covariance, Covariance::FromData(_)) {
            self.shared_covariance("covariance", covariance, d);
        }
    }

    /// A covariance shared by every text (`Isotropic`, `Diagonal` or `Full`).
    fn shared_covariance(&mut self, key: &str, covariance: &Covariance, d: usize) {
        match covariance {
            Covariance::Isotropic(s2) if out_of_range(*s2) || *s2 < 0.0 => {
                self.fail(key, format!("Isotropic({s2}): the variance s^2 must be >= 0; {RANGE}"))
            }
            Covariance::Diagonal(v) => self.variances(key, v, d),
            Covariance::Full(rows) => self.matrix(key, "Full covariance", rows, d),
            Covariance::PerText(_) => self.fail(key, "a single Gaussian takes Isotropic, Diagonal or Full, not PerText"),
            Covariance::FromData(_) => self.fail(key, "a single Gaussian takes Isotropic, Diagonal or Full, not FromData"),
            Covariance::Isotropic(_) => {}
        }
    }

    /// One Gaussian (a `new_text` prior) in dimension `d`.
    fn gaussian(&mut self, key: &str, g: &GaussianSpec, d: usize) {
        if g.mean.len() != d {
            self.fail(key, format!("mean has {} coordinates, expected dim = {d}", g.mean.len()));
        } else if let Some(x) = g.mean.iter().find(|x| out_of_range(**x)) {
            self.fail(key, format!("the mean has the coordinate {x}; {RANGE}"));
        }
        self.shared_covariance(key, &g.covariance, d);
    }

    /// A fraction that must lie in `[0, 1]` (a probability, a mixing weight), possibly scheduled.
    fn unit_interval(&mut self, key: &str, value: &Schedule<f64>, what: &str) {
        self.schedule(key, None, value, |v| (0.0..=1.0).contains(&v), |at, v| format!("{key} = {v}{at}: {what} must lie in [0, 1]"));
    }
}

impl Checker<'_> {
    /// The entity `target` names, if it is of one of the kinds `want`; otherwise reports under
    /// `key` what would be valid.
    fn target<'s>(
        &mut self,
        key: &str,
        target: &str,
        want: &[&str],
        who: &str,
        kinds: &HashMap<&str, &'s EntitySpec>,
    ) -> Option<&'s EntitySpec> {
        let wanted = format!("{}{}", with_article(want[0]), want[1..].iter().map(|k| format!(" or {k}")).collect::<String>());
        let valid: Vec<String> = want.iter().map(|k| names_of(self._scenario, k)).collect();
        let valid = valid.join("; ");
        match kinds.get(target) {
            Some(e) if want.contains(&e.kind()) => Some(*e),
            Some(e) => {
                self.fail(key, format!("`{target}` is {}, but {who} targets {wanted} ({valid})", with_article(e.kind())));
                None
            }
            None => {
                self.fail(key, format!("no entity is called `{target}`; {who} targets {wanted} ({valid})"));
                None
            }
        }
    }

    fn corpus_injector(&mut self, s: &CorpusInjectorSpec, kinds: &HashMap<&str, &EntitySpec>) {
        self.unit_interval("alpha", &s.alpha, "the injection probability alpha");
        self.unit_interval("eps", &s.eps, "the mixing weight eps");
        self.window(s.active.as_ref());
        let texts = match self.target("target", &s.target, &["TextModel"], "a CorpusInjector", kinds) {
            Some(EntitySpec::TextModel(t)) => self._scenario.texts_of(t),
            _ => None,
        };
        match &s.distribution {
            Injection::RandomTokens(m) => self.at_least("distribution", *m, 1, "RandomTokens(m): the number of tokens m"),
            Injection::Fixed(r) => {
                self.probabilities("distribution", r);
                if let Some(k) = texts
                    && r.len() != k
                {
                    self.fail("distribution", format!("Fixed gives {} probabilities but `{}` has K = {k} texts", r.len(), s.target));
                }
            }
            Injection::Uniform | Injection::NewText => {}
        }
    }

    fn user_content_injector(&mut self, s: &UserContentInjectorSpec, kinds: &HashMap<&str, &EntitySpec>) {
        // Every whole number >= 0 is a valid n0 (0 adds nothing), so only the shape is checked.
        self.schedule("n0", None, &s.n0, |_| true, |_, _| String::new());
        self.window(s.active.as_ref());
        let target = self.target("target", &s.target, &["ImageModel", "PluginModel"], "a UserContentInjector", kinds);
        if let UserSource::Data(name) = &s.source
            && let Some(data) = self.dataset("source", name)
            && let Some(target) = target
        {
            let on = target.conditioned_on().unwrap_or_default();
            let texts = match kinds.get(on) {
                Some(EntitySpec::TextModel(t)) => self._scenario.texts_of(t),
                _ => None,
            };
            let d = match target {
                EntitySpec::ImageModel(image) => Some(image.dim as usize),
                _ => None,
            };
            self.data_fits("source", name, data, texts, d, on);
        }
        if let UserSource::Gaussian(g) = &s.source {
            match target {
                Some(EntitySpec::ImageModel(image)) => {
                    let texts = match kinds.get(image.conditioned_on.as_str()) {
                        Some(EntitySpec::TextModel(t)) => self._scenario.texts_of(t),
                        _ => None,
                    };
                    if matches!(g.means, Means::FromData(_)) || matches!(g.covariance, Covariance::FromData(_)) {
                        self.fail(
                            "source",
                            "a Gaussian source takes means and covariances written out; for real data use source: Data(\"<dataset>\")",
                        );
                    } else if image.dim >= 1 {
                        self.gaussians(&g.means, &g.covariance, image.dim as usize, texts, &image.conditioned_on);
                    }
                }
                Some(other) => self.fail(
                    "source",
                    format!(
                        "a Gaussian source needs an ImageModel target, and `{}` is {}; use `source: Initial`",
                        s.target,
                        with_article(other.kind())
                    ),
                ),
                None => {}
            }
        }
    }

    fn perturbation(&mut self, p: &Perturbation, kinds: &HashMap<&str, &EntitySpec>) {
        const KEY: &str = "perturb";
        match p {
            Perturbation::TextInitial { model, initial } => {
                let Some(EntitySpec::TextModel(t)) = self.target(KEY, model, &["TextModel"], "TextInitial", kinds) else { return };
                match initial {
                    TextInit::Probabilities(q) => self.probabilities(KEY, q),
                    TextInit::FromData(name) => {
                        self.dataset(KEY, name);
                    }
                    TextInit::Uniform(_) => {}
                }
                let scenario = self._scenario;
                let (Some(k), Some(perturbed)) = (scenario.texts_of(t), scenario.initial_p(initial)) else { return };
                if perturbed.len() != k {
                    self.fail(
                        KEY,
                        format!("TextInitial gives {} texts but `{model}` has K = {k}; a perturbation keeps K", perturbed.len()),
                    );
                }
            }
            Perturbation::MeanShift { model, text, shift } => {
                let Some(EntitySpec::ImageModel(s)) = self.target(KEY, model, &["ImageModel"], "MeanShift", kinds) else { return };
                self.text_index(*text, s, kinds);
                if shift.len() as u64 != s.dim || shift.iter().any(|x| !x.is_finite()) {
                    self.fail(KEY, format!("MeanShift needs {} finite coordinates (dim of `{model}`), got {shift:?}", s.dim));
                }
            }
            Perturbation::CovarianceScale { model, text, factor } => {
                let Some(EntitySpec::ImageModel(s)) = self.target(KEY, model, &["ImageModel"], "CovarianceScale", kinds) else { return };
                if let Some(i) = text {
                    self.text_index(*i, s, kinds);
                }
                if !(factor.is_finite() && *factor > 0.0) {
                    self.fail(KEY, format!("CovarianceScale factor = {factor}: the factor must be a finite number > 0"));
                }
            }
        }
    }

    fn text_index(&mut self, text: u64, image: &ImageModelSpec, kinds: &HashMap<&str, &EntitySpec>) {
        if let Some(EntitySpec::TextModel(t)) = kinds.get(image.conditioned_on.as_str())
            && let Some(k) = self._scenario.texts_of(t)
            && text as usize >= k
        {
            self.fail("perturb", format!("text = {text}: `{}` has K = {k} texts; valid indices are 0 to K - 1", image.conditioned_on));
        }
    }
}

/// `a TextModel`, `an ImageModel`.
fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
    format!("{article} {kind}")
}

/// The dataset an image model's means come from, if they do.
fn data_name_of_means(m: &Means) -> Option<&str> {
    if let Means::FromData(name) = m { Some(name) } else { None }
}

/// The dataset an image model's covariances come from, if they do.
fn data_name_of_covariance(c: &Covariance) -> Option<&str> {
    if let Covariance::FromData(name) = c { Some(name) } else { None }
}

impl<'a> Checker<'a> {
    /// The scenario's own fields: name, rounds, replicates, collapse thresholds, a text model.
    fn top_level(&mut self, scenario: &Scenario) {
        let c = self;
        if let Some(why) = bad_name(&scenario.name).or_else(|| {
            (scenario.name.contains(['/', '\\']) || matches!(scenario.name.trim(), "." | ".."))
                .then_some("be a folder name (no path separator, not `.` or `..`)")
        }) {
            c.fail(
                "name",
                format!("scenario name {} must {why}: it names the output folder out/<name>", super::error::shown(&scenario.name)),
            );
        }
        c.at_least("rounds", scenario.rounds, 1, "the number of rounds");
        c.at_least("replicates", scenario.replicates, 1, "the number of replicates");
        for (key, v) in [("collapse", scenario.collapse.text_gini), ("collapse", scenario.collapse.image_trace_ratio)] {
            if !(v > 0.0 && v < 1.0) {
                c.fail(key, format!("collapse thresholds must lie strictly between 0 and 1, got {v}"));
            }
        }
        if !scenario.entities.iter().any(|e| matches!(e, EntitySpec::TextModel(_))) {
            c.fail("entities", "a scenario needs at least one TextModel");
        }
    }

    /// Entity names: usable in CSV output, and unique (entities are wired by name).
    fn names(&mut self, scenario: &'a Scenario) {
        let c = self;
        let mut seen = HashSet::new();
        for (i, e) in scenario.entities.iter().enumerate() {
            c.current = Some((i, e.name().to_string()));
            c.kind = e.kind();
            let name = e.name();
            if let Some(why) = bad_name(name).or_else(|| name.contains([',', '"']).then_some("contain no comma or quote")) {
                c.fail("name", format!("entity name {} must {why} (it appears in CSV output)", super::error::shown(name)));
            }
            if !seen.insert(name) {
                c.fail("name", format!("two entities are called `{name}`; names must be unique because entities are wired by name"));
            }
        }
    }

    /// Wiring: a conditional model names a text model. `conditioned_on` links are followed
    /// first so a loop is reported as the loop it is, not as a kind mismatch.
    fn wiring(&mut self, scenario: &Scenario, kinds: &HashMap<&str, &EntitySpec>) {
        let c = self;
        for (i, e) in scenario.entities.iter().enumerate() {
            c.current = Some((i, e.name().to_string()));
            c.kind = e.kind();
            if let Some(conditioned_on) = e.conditioned_on() {
                let name = e.name();
                if conditioned_on == name {
                    c.fail(
                        "conditioned_on",
                        format!("`{name}` is conditioned on itself; a conditional model must be conditioned on a TextModel"),
                    );
                    continue;
                }
                if let Some(cycle) = conditioning_cycle(kinds, name) {
                    c.fail("conditioned_on", format!("conditioning cycle {}: conditioning must end at a TextModel", cycle.join(" -> ")));
                    continue;
                }
                let texts = match kinds.get(conditioned_on) {
                    None => {
                        c.fail(
                            "conditioned_on",
                            format!("no entity is called `{conditioned_on}`; valid text models: {}", names_of(scenario, "TextModel")),
                        );
                        None
                    }
                    Some(EntitySpec::TextModel(t)) => c._scenario.texts_of(t),
                    Some(other) => {
                        c.fail(
                            "conditioned_on",
                            format!(
                                "`{conditioned_on}` is a {}, but a conditional model must be conditioned on a TextModel ({})",
                                other.kind(),
                                names_of(scenario, "TextModel")
                            ),
                        );
                        None
                    }
                };
                match e {
                    EntitySpec::ImageModel(s) => c.image_model(s, texts),
                    EntitySpec::PluginModel(s) => c.plugin_model(s),
                    _ => {}
                }
                c.feed(e.feed(), conditioned_on, texts, kinds);
            }
        }
    }

    /// Every entity's values, and the influences' targets.
    fn values(&mut self, scenario: &Scenario, kinds: &HashMap<&str, &EntitySpec>) {
        let c = self;
        let mut tempered: HashMap<&str, &str> = HashMap::new();
        for (i, e) in scenario.entities.iter().enumerate() {
            c.current = Some((i, e.name().to_string()));
            c.kind = e.kind();
            match e {
                EntitySpec::TextModel(s) => {
                    match &s.initial {
                        TextInit::Uniform(k) => c.at_least("initial", *k, 1, "Uniform(K): the number of texts"),
                        TextInit::Probabilities(p) => c.probabilities("initial", p),
                        TextInit::FromData(name) => {
                            c.dataset("initial", name);
                        }
                    }
                    c.at_least("batch", s.batch, 1, "the batch size N");
                    c.at_least("steps", s.steps, 1, "text phases per round M");
                    c.policy(&s.data);
                }
                EntitySpec::Temperature(s) => {
                    c.schedule(
                        "t",
                        None,
                        &s.t,
                        |t| t.is_finite() && t > 0.0,
                        |at, t| {
                            format!("temperature T = {t}{at} is invalid: T must be a finite number > 0 (T < 1 sharpens, T > 1 flattens)")
                        },
                    );
                    c.window(s.active.as_ref());
                    match kinds.get(s.target.as_str()) {
                        None => c.fail(
                            "target",
                            format!("no entity is called `{}`; a Temperature targets a TextModel, ImageModel or PluginModel", s.target),
                        ),
                        Some(EntitySpec::TextModel(_) | EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_)) => {
                            if let Some(other) = tempered.insert(&s.target, &s.name) {
                                c.fail(
                                    "target",
                                    format!("`{}` already has the temperature sampler `{other}`; one sampler per model", s.target),
                                );
                            }
                        }
                        Some(other) => c.fail(
                            "target",
                            format!("`{}` is a {}; a Temperature targets a TextModel, ImageModel or PluginModel", s.target, other.kind()),
                        ),
                    }
                }
                EntitySpec::CorpusInjector(s) => c.corpus_injector(s, kinds),
                EntitySpec::UserContentInjector(s) => c.user_content_injector(s, kinds),
                EntitySpec::Dataset(s) => c.dataset_spec(s),
                EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_) => {}
            }
        }
    }
}

impl Checker<'_> {
    /// A dataset's own fields (its file is read when the scenario is loaded).
    fn dataset_spec(&mut self, s: &DatasetSpec) {
        if s.file.trim().is_empty() {
            self.fail("file", "give the data file: a .npy, .npz, .csv or .parquet path, relative to the scenario file's folder");
        }
        if s.labels.trim().is_empty() {
            self.fail("labels", "give the labels' array or column (default `labels`)");
        }
        if s.vectors.as_ref().is_some_and(|v| v.trim().is_empty()) {
            self.fail("vectors", "give the vectors' array, column or column prefix, or leave `vectors` out");
        }
        if let Some(mb) = s.max_memory_mb {
            self.at_least("max_memory_mb", mb, 1, "the memory limit in MiB");
        }
    }
}

/// Checks a parsed scenario, returning every problem found.
pub fn validate(scenario: &Scenario) -> Result<(), Vec<Problem>> {
    let mut c = Checker { problems: Vec::new(), current: None, kind: "", _scenario: scenario };
    let kinds: HashMap<&str, &EntitySpec> = scenario.entities.iter().map(|e| (e.name(), e)).collect();
    c.top_level(scenario);
    c.names(scenario);
    c.wiring(scenario, &kinds);
    c.values(scenario, &kinds);
    if let Some(perturbation) = scenario.stability.as_ref().and_then(|s| s.perturb.as_ref()) {
        c.current = None;
        c.kind = "";
        c.perturbation(perturbation, &kinds);
    }
    c.problems.extend(super::diagnostics::check(&scenario.diagnostics));
    let has_plugins = scenario.entities.iter().any(|e| matches!(e, EntitySpec::PluginModel(_)));
    c.problems.extend(super::output::check(&scenario.output, scenario.stop.as_ref(), has_plugins));
    c.problems.extend(super::sweep::check(scenario));
    c.problems.extend(super::search::check(scenario));
    c.problems.extend(super::footprint::check_absolute(scenario));
    if c.problems.is_empty() { Ok(()) } else { Err(c.problems) }
}

/// Largest magnitude of a coordinate of a mean or an entry of a covariance. Log-densities
/// square differences of coordinates and scale them by inverse covariances: with entries up
/// to 1e100 they stay finite in `f64` (up to about 1.8e308), while 1e308 would overflow into
/// NaN log-likelihoods mid-run.
const MAX_MAGNITUDE: f64 = 1e100;

/// What [`MAX_MAGNITUDE`] asks, as messages say it.
const RANGE: &str = "means and covariances must be finite numbers of magnitude at most 1e100 (larger ones overflow the log-densities)";

/// Whether `x` is NaN, infinite or beyond [`MAX_MAGNITUDE`].
fn out_of_range(x: f64) -> bool {
    !x.is_finite() || x.abs() > MAX_MAGNITUDE
}

/// Longest name (in bytes) of a scenario or an entity: names become folder names (at most 255
/// bytes on every common file system) and are echoed in tables and messages.
pub const MAX_NAME_BYTES: usize = 255;

/// Why `name` cannot name a scenario or an entity, if it cannot: empty, too long, or with a
/// control character (a newline would break a CSV row, an escape sequence would drive the
/// terminal that shows a message).
fn bad_name(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("be non-empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("be at most 255 bytes long")
    } else if name.chars().any(char::is_control) {
        Some("contain no control character (newline, tab, escape, ...)")
    } else {
        None
    }
}

fn names_of(scenario: &Scenario, kind: &str) -> String {
    let names: Vec<String> = scenario.entities.iter().filter(|e| e.kind() == kind).map(|e| format!("`{}`", e.name())).collect();
    if names.is_empty() { format!("the scenario has no {kind}") } else { names.join(", ") }
}

/// The loop of `conditioned_on` links starting at `start`, if there is one. Entities are
/// looked up by name in `kinds` (a hash map: validation stays linear in the number of
/// entities), and the path is followed until it returns to a name already on it.
fn conditioning_cycle(kinds: &HashMap<&str, &EntitySpec>, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start];
    let mut on_path: HashSet<&str> = HashSet::from([start]);
    let mut current = start;
    loop {
        let next = kinds.get(current).and_then(|e| e.conditioned_on())?;
        if on_path.contains(next) {
            let pos = path.iter().position(|n| *n == next).expect("on the path");
            let mut cycle: Vec<String> = path[pos..].iter().map(|n| n.to_string()).collect();
            cycle.push(next.to_string());
            return if pos == 0 { Some(cycle) } else { None };
        }
        path.push(next);
        on_path.insert(next);
        current = next;
    }
}
