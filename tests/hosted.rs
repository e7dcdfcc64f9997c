//! Hosted models (a `PluginModel` without `library`, supplied in process): a Rust test model
//! named in a scenario is checked at load, built per world from the entity's stream, follows
//! the theory of the built-in model it wraps, is reproducible, and its errors are reported
//! like a plugin's (entity, call, round, message). A scenario naming a hosted model that was
//! not supplied is refused, from the library and from the command line, saying where hosted
//! models come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coevo::Scenario;
use coevo::metrics::MetricRow;
use coevo::models::{ConditionalModel, DataPolicy, Estimator, GaussianImageModel, HostedContext, HostedModels, ModelError, PerTextMetrics};
use coevo::rng::Stream;
use coevo::world::{RunError, Simulation};
use nalgebra::{DMatrix, DVector};

use crate::common::{Z, coevo, mean_se, per_text, scratch, stderr, write};

/// The built-in Gaussian, created by a factory from `params` (`variance`, `dim`): the paper's
/// unit-circle means and an isotropic covariance, MLE refit. Wrapped so that `fit` can be made
/// to fail on a chosen call.
struct TestGaussian {
    inner: GaussianImageModel,
    /// `fit` fails on this call (1-based), if set.
    fail_fit_at: Option<u64>,
    fits: u64,
}

fn param(context: &HostedContext<'_>, key: &str) -> Result<f64, String> {
    context.params.get(key).and_then(serde_json::Value::as_f64).ok_or_else(|| format!("`{key}` is missing: give it as a number"))
}

fn test_gaussian(context: &HostedContext<'_>, fail_fit_at: Option<u64>) -> Result<Box<dyn ConditionalModel>, String> {
    let (variance, dim) = (param(context, "variance")?, param(context, "dim")? as usize);
    if variance <= 0.0 {
        return Err(format!("`variance` must be positive, got {variance}"));
    }
    let k = context.num_texts;
    let means = coevo::resolve::unit_circle_means(k, dim);
    let covariance = DMatrix::identity(dim, dim) * variance;
    let prior = (DVector::zeros(dim), covariance.clone().into());
    let inner = GaussianImageModel::new(means, vec![covariance.into(); k], Estimator::Mle, context.policy.clone(), prior);
    Ok(Box::new(TestGaussian { inner, fail_fit_at, fits: 0 }))
}

impl ConditionalModel for TestGaussian {
    fn modality(&self) -> &str {
        "image"
    }
    fn num_texts(&self) -> usize {
        self.inner.num_texts()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn sample(&mut self, counts: &[usize], temperature: f64, rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        self.inner.sample(counts, temperature, rng, out)
    }
    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        self.inner.sample_initial(counts, rng, out)
    }
    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        self.inner.add_log_likelihood(samples, out)
    }
    fn data_policy(&self) -> &DataPolicy {
        self.inner.data_policy()
    }
    fn fit(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError> {
        self.fits += 1;
        if self.fail_fit_at == Some(self.fits) {
            return Err(ModelError::new("fit", "ValueError: the test model refuses this batch"));
        }
        self.inner.fit(counts, samples)
    }
    fn begin_round(&mut self) {
        self.inner.begin_round();
    }
    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError> {
        self.inner.metrics(sink)
    }
    fn diversity_metric(&self) -> &str {
        self.inner.diversity_metric()
    }
    fn take_regularized(&mut self) -> u64 {
        self.inner.take_regularized()
    }
    fn add_text(&mut self) -> Result<(), ModelError> {
        self.inner.add_text()
    }
}

/// The registry a program would supply: `gauss`, and `failing` whose third refit fails.
fn models(built: Arc<AtomicU64>) -> HostedModels {
    HostedModels::new()
        .with("gauss", move |c: &HostedContext<'_>, _: &mut Stream| {
            built.fetch_add(1, Ordering::Relaxed);
            test_gaussian(c, None)
        })
        .with("failing", |c: &HostedContext<'_>, _: &mut Stream| test_gaussian(c, Some(3)))
}

/// A scenario file with a frozen text model of 5 texts and the hosted model `model`, each
/// text refitted on exactly `n` of its own samples by MLE (the isolation experiment of
/// docs/model.md section 3).
fn scenario_file(test: &str, model: &str, extra: &str) -> PathBuf {
    let dir = scratch("hosted", test);
    let source = format!(
        r#"Scenario(
    name: "hosted",
    seed: 11,
    rounds: 30,
    replicates: 16,
    entities: [
        TextModel(name: "captioner", initial: Uniform(5), frozen: true),
        PluginModel(name: "painter", model: "{model}", conditioned_on: "captioner", allocation: Fixed(50),
            params: {{"variance": 0.1, "dim": 2}}{extra}),
    ],
)
"#
    );
    write(&dir, "hosted.ron", &source)
}

/// Every round's rows of every replicate (rounds 0..=rounds).
fn run(scenario: &Scenario) -> Vec<Vec<Vec<MetricRow>>> {
    (0..scenario.replicates)
        .map(|r| {
            let mut sim = Simulation::new(scenario, r).expect("the world builds");
            let mut rounds = vec![sim.measure().expect("round 0").to_vec()];
            for _ in 0..scenario.rounds {
                rounds.push(sim.step().expect("a round").to_vec());
            }
            rounds
        })
        .collect()
}

/// The hosted Gaussian follows SPEC 3's contraction exactly as the built-in one does:
/// `E tr Sigma_t = ((n-1)/n)^t tr Sigma_0` for each text under `Fixed(n)`, MLE and a frozen
/// text model. 16 replicates x 5 texts = 80 independent conditionals per round; each of the
/// three comparisons uses the sample standard error of the 80 traces and the suite's `Z`
/// (4.5, Bonferroni-safe). The factory runs once per world plus once when the scenario is
/// checked, and the same seed gives the same rows.
#[test]
fn hosted_gaussian_contracts_like_the_theory_and_is_reproducible() {
    let built = Arc::new(AtomicU64::new(0));
    let registry = models(built.clone());
    let file = scenario_file("contract", "gauss", "");
    let (scenario, _) = Scenario::load_with_models(&file, None, &registry).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(built.load(Ordering::Relaxed), 1, "checked once at load");
    let runs = run(&scenario);
    assert_eq!(built.load(Ordering::Relaxed), 1 + scenario.replicates, "then once per world");
    let n = 50.0_f64;
    let trace0 = 0.2;
    for t in [10usize, 20, 30] {
        let traces: Vec<f64> = runs.iter().flat_map(|run| per_text(&run[t], "painter", "trace", 5)).collect();
        assert_eq!(traces.len(), 80);
        let (mean, se) = mean_se(&traces);
        let expected = ((n - 1.0) / n).powi(t as i32) * trace0;
        assert!((mean - expected).abs() < Z * se, "round {t}: mean trace {mean:.5} +- {se:.5}, theory {expected:.5}");
    }
    // The coupling metric of the diversity metric is reported like a plugin's.
    let weighted = coevo::metrics::names::weighted("trace");
    assert!(runs[0][1].iter().any(|r| &*r.model == "painter" && *r.metric == *weighted && r.text.is_none()));
    // Compared bit for bit (a NaN metric, such as the Matthew index of a frozen text model, is
    // never `==` itself).
    let bits = |runs: &[Vec<Vec<MetricRow>>]| -> Vec<(u64, String, Option<u32>, String, u64)> {
        runs.iter().flatten().flatten().map(|r| (r.round, r.model.to_string(), r.text, r.metric.to_string(), r.value.to_bits())).collect()
    };
    assert_eq!(bits(&run(&scenario)), bits(&runs), "same scenario, same seed: the same rows");
}

/// An error inside a hosted model's call fails the round it happens in, naming the round, the
/// entity and the call, with the model's message: the third refit is round 3's (steps 1).
#[test]
fn a_hosted_model_error_names_entity_call_and_round() {
    let registry = models(Arc::default());
    let file = scenario_file("failing", "failing", "");
    let (scenario, _) = Scenario::load_with_models(&file, None, &registry).unwrap_or_else(|e| panic!("{e}"));
    let mut sim = Simulation::new(&scenario, 0).expect("the world builds");
    sim.measure().expect("round 0");
    for round in 1..=2 {
        sim.step().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    let err = sim.step().expect_err("the third refit fails");
    let RunError::Model { round, model, source } = &err else { panic!("a model error: {err:?}") };
    assert_eq!((*round, model.as_str(), source.call), (3, "painter", "fit"));
    assert_eq!(err.to_string(), "round 3: model `painter`: fit: ValueError: the test model refuses this batch");
}

/// What loading says, for each way a hosted model can be unusable: the entity and field, and
/// what would be valid.
#[test]
fn unusable_hosted_models_are_refused_at_load_naming_the_field() {
    let registry = models(Arc::default());
    let load = |file: &Path, models: &HostedModels| Scenario::load_with_models(file, None, models).map(|_| ()).unwrap_err().to_string();
    // Not supplied: from the library with none, or with others.
    let file = scenario_file("unsupplied", "kde", "");
    for (models, supplied) in [(HostedModels::new(), "none is"), (registry.clone(), "these are: failing, gauss")] {
        let err = load(&file, &models);
        for expected in
            ["(PluginModel \"painter\").model", "no hosted model `kde` is supplied", supplied, "only available from the Python API"]
        {
            assert!(err.contains(expected), "must say {expected:?}:\n{err}");
        }
    }
    // Parameters the factory refuses.
    let dir = scratch("hosted", "params");
    let source = crate::common::read(&scenario_file("params-src", "gauss", "")).replace("\"variance\": 0.1", "\"variance\": -1.0");
    let err = load(&write(&dir, "bad.ron", &source), &registry);
    for expected in ["(PluginModel \"painter\").params", "hosted model `gauss` refused its parameters", "`variance` must be positive"] {
        assert!(err.contains(expected), "must say {expected:?}:\n{err}");
    }
    // Accumulate is the model's own statistics: refused for a hosted model by validation.
    let err = load(&scenario_file("accumulate", "gauss", ", data: Accumulate(initial: 100)"), &registry);
    assert!(err.contains("(PluginModel \"painter\").data") && err.contains("Replace or Fresh"), "{err}");
}

/// The command line supplies no hosted model: `coevo validate` exits with 2, saying so.
#[test]
fn the_command_line_refuses_a_hosted_model_with_exit_code_2() {
    let file = scenario_file("cli", "kde", "");
    let out = coevo(&["validate", file.to_str().expect("a UTF-8 path")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no hosted model `kde` is supplied") && err.contains("only available from the Python API"), "{err}");
}

/// A sweep point is derived from its base through the serialised scenario: it keeps the
/// hosted models, so its worlds build.
#[test]
fn sweep_points_keep_the_hosted_models() {
    let registry = models(Arc::default());
    let (scenario, _) = Scenario::load_with_models(&scenario_file("sweep", "gauss", ""), None, &registry).unwrap_or_else(|e| panic!("{e}"));
    let point = coevo::scenario::sweep::apply(&scenario, &[("painter.batch".into(), coevo::scenario::SweepValue::Unsigned(10))])
        .expect("a valid point");
    assert_eq!(point.hosted_models(), registry);
    Simulation::new(&point, 0).expect("the point's world builds");
}
