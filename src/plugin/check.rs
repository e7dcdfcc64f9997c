//! `coevo plugins check LIB`: every model of a plugin library exercised against the plugin
//! contract, with a report a plugin author can act on.
//!
//! The host's safe wrapper ([`PluginModel`]) already refuses outputs that are the wrong size,
//! unwritten, overrun or non-finite, so most checks here just make each call once under the
//! wrapper. What no single call can show is checked by repeating calls: determinism (two calls
//! from identical host-stream states must agree bit for bit, or runs would not be reproducible
//! from the seed) and the checkpoint round trip (`get_params` then `set_params` into a fresh
//! instance must continue exactly as the original, or resumed runs would diverge).
//!
//! Each check creates its own instances, so one failure (a panic poisons a handle) does not
//! hide the others. Loading problems are an `Err` (exit 2); failed checks are in the report.

use std::fmt::Write as _;
use std::path::PathBuf;

use coevo_plugin_api::DataPolicy;
use coevo_plugin_api::host::{HostError, LoadedTable, PluginModel};
use rand::SeedableRng;

use super::adapter::DIVERSITY_METRIC;
use super::library;
use crate::rng::Stream;

/// Number of texts the checks create models with.
pub const CHECK_TEXTS: usize = 3;
/// Samples per text in a check batch: one text without samples, as happens in real rounds.
const COUNTS: [u64; CHECK_TEXTS] = [5, 0, 3];

/// The outcome of one check: what was seen, or what the plugin author must fix.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Passed, with a short note of what was verified.
    Pass(String),
    /// Failed: what happened and what the contract requires.
    Fail(String),
    /// Not run because an earlier check it depends on failed.
    Skipped(String),
}

/// One named check of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Short name, e.g. `"determinism"`.
    pub name: &'static str,
    /// Its outcome.
    pub outcome: Outcome,
}

/// The checks of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    /// Model name.
    pub model: String,
    /// Checks in the order run.
    pub checks: Vec<Check>,
}

/// The report of `coevo plugins check`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The library file checked.
    pub library: PathBuf,
    /// Plugin name from its table.
    pub plugin: String,
    /// Plugin version from its table.
    pub version: String,
    /// The params JSON every model was created with.
    pub params: String,
    /// One report per model checked.
    pub models: Vec<ModelReport>,
}

impl CheckReport {
    /// True if no check failed (skipped checks only follow failed ones).
    pub fn passed(&self) -> bool {
        self.models.iter().flat_map(|m| &m.checks).all(|c| matches!(c.outcome, Outcome::Pass(_)))
    }

    /// The report as printed: one line per check, `ok`, `FAIL` (with what to fix) or `skip`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} {} (ABI {})  {}", self.plugin, self.version, coevo_plugin_api::COEVO_ABI_VERSION, self.library.display());
        let (mut total, mut failed) = (0, 0);
        for m in &self.models {
            let _ = writeln!(out, "\nmodel {} (params {}, K = {CHECK_TEXTS}, counts {COUNTS:?})", m.model, self.params);
            for c in &m.checks {
                total += 1;
                match &c.outcome {
                    Outcome::Pass(note) => {
                        let _ = writeln!(out, "  ok    {:<16} {note}", c.name);
                    }
                    Outcome::Fail(why) => {
                        failed += 1;
                        let _ = writeln!(out, "  FAIL  {:<16} {why}", c.name);
                    }
                    Outcome::Skipped(why) => {
                        let _ = writeln!(out, "  skip  {:<16} {why}", c.name);
                    }
                }
            }
        }
        let verdict = if self.passed() { "the library follows the plugin contract" } else { "fix the FAIL lines above" };
        let _ = writeln!(out, "\n{} of {total} checks passed, {failed} failed: {verdict}", total - failed - self.skipped());
        out
    }

    fn skipped(&self) -> usize {
        self.models.iter().flat_map(|m| &m.checks).filter(|c| matches!(c.outcome, Outcome::Skipped(_))).count()
    }
}

/// Loads `library` (a path, or a bare name looked up like a scenario's) and checks `model`
/// (default: every model) created with `params_json` (`""` = `{}`). `Err` means the library
/// could not be found or loaded, with the loader's reason.
pub fn check_library(library: &str, params_json: &str, model: Option<&str>) -> Result<CheckReport, String> {
    let path = library::resolve_library(library, None).map_err(|e| e.to_string())?;
    let table = library::load(&path).map_err(|e| e.to_string())?;
    let names: Vec<String> = match model {
        Some(m) => {
            table.model_index(m).map_err(|e| e.to_string())?;
            vec![m.to_owned()]
        }
        None => table.models().iter().map(|m| m.name.clone()).collect(),
    };
    let params = if params_json.trim().is_empty() { "{}".to_owned() } else { params_json.to_owned() };
    let models = names.iter().map(|name| check_model(&table, name, &params)).collect();
    Ok(CheckReport { library: path, plugin: table.name().to_owned(), version: table.version().to_owned(), params, models })
}

/// A host stream in a fixed state; two calls with the same `seed` give identical streams.
fn stream(seed: u8) -> Stream {
    Stream::from_seed([seed; 32])
}

/// Bitwise equality, so `-0.0` vs `0.0` and NaN payloads count as differences.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The first index where two vectors differ, for messages.
fn first_difference(a: &[f64], b: &[f64]) -> String {
    if a.len() != b.len() {
        return format!("{} values vs {}", a.len(), b.len());
    }
    let j = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()).unwrap_or(0);
    format!("value {j} is {:?} vs {:?}", a[j], b[j])
}

/// A step of a check: the host error (already naming plugin, model and call) plus the rule.
fn step<T>(r: Result<T, HostError>, rule: &str) -> Result<T, Failure> {
    r.map_err(|e| {
        let op = match &e {
            HostError::Call { op, .. } | HostError::Contract { op, .. } | HostError::Usage { op, .. } | HostError::Crashed { op, .. } => {
                Some(*op)
            }
            _ => None,
        };
        Failure { op, message: format!("{e}\n        fix: {rule}") }
    })
}

/// Why a check failed, and in which plugin call if a call failed: a compound check that fails
/// only because a call already reported by its own check fails is shown as skipped, so each
/// fault is reported once.
#[derive(Debug)]
struct Failure {
    op: Option<&'static str>,
    message: String,
}

/// A failure found by comparing outputs, not raised by a call.
fn fail(message: String) -> Failure {
    Failure { op: None, message }
}

fn check_model(table: &LoadedTable, model: &str, params: &str) -> ModelReport {
    let create = |policy: DataPolicy| table.create_by_name(model, params, CHECK_TEXTS, policy);
    let mut checks = Vec::new();
    // Calls whose own check failed: later checks failing in the same call are skipped.
    let mut failed_calls: Vec<&'static str> = Vec::new();
    let mut push = |name: &'static str, r: Result<String, Failure>| {
        let outcome = match r {
            Ok(note) => Outcome::Pass(note),
            Err(Failure { op: Some(op), .. }) if op != name && failed_calls.contains(&op) => {
                Outcome::Skipped(format!("needs `{op}`, which fails above"))
            }
            Err(f) => {
                failed_calls.push(name);
                failed_calls.extend(f.op);
                Outcome::Fail(f.message)
            }
        };
        checks.push(Check { name, outcome });
    };

    let created = step(
        create(DataPolicy::Replace),
        "create must accept these params (`{}` when a scenario gives none) for any K >= 1 under Replace, and report dim >= 1, \
         the same dim as the table's fixed_dim, and K texts",
    );
    let m = match created {
        Ok(m) => m,
        Err(f) => {
            push("create", Err(f));
            let rest = ["metrics", "sample", "log_likelihood", "fit", "determinism", "checkpoint", "add_text", "accumulate"];
            checks.extend(rest.map(|name| Check { name, outcome: Outcome::Skipped("create failed".into()) }));
            return ModelReport { model: model.to_owned(), checks };
        }
    };
    push("create", Ok(format!("dim {}, metrics [{}]", m.dim(), m.metric_names().join(", "))));
    drop(m);

    push("metrics", check_metrics(&create));
    push("sample", check_sample(&create));
    push("log_likelihood", check_log_likelihood(&create));
    push("fit", check_fit(&create));
    push("determinism", check_determinism(&create));
    push("checkpoint", check_checkpoint(&create));
    push("add_text", check_add_text(&create));
    push("accumulate", check_accumulate(&create));
    ModelReport { model: model.to_owned(), checks }
}

type Create<'a> = dyn Fn(DataPolicy) -> Result<PluginModel, HostError> + 'a;

fn fresh(create: &Create<'_>) -> Result<PluginModel, Failure> {
    step(create(DataPolicy::Replace), "create must succeed every time with the same params")
}

const METRICS_RULE: &str = "metrics must write K * M finite values, out[i * M + m], M = metric_count";
const SAMPLE_RULE: &str =
    "sample must write exactly sum(counts) * dim finite values (counts[i] rows for text i, in text order) for any temperature > 0";
const LOGLIK_RULE: &str = "log_likelihood must write n * K values, out[j * K + i] = log q(y_j | i); -inf is allowed, NaN and +inf are not";
const FIT_RULE: &str = "fit must accept any caption-grouped batch (texts may have 0 samples) and leave dim, K and the outputs valid";

fn check_metrics(create: &Create<'_>) -> Result<String, Failure> {
    let mut m = fresh(create)?;
    let names = m.metric_names().to_vec();
    if !names.iter().any(|n| n == DIVERSITY_METRIC) {
        return Err(fail(format!(
            "the model reports no `{DIVERSITY_METRIC}` metric (it reports {names:?})\n        fix: report a per-text `{DIVERSITY_METRIC}` \
             column (the modality's analogue of trace Σ; coevo's coupling metrics read it), by convention first, then `fidelity`"
        )));
    }
    let values = step(m.metrics(), METRICS_RULE)?;
    let convention = if names.len() >= 2 && names[0] == DIVERSITY_METRIC && names[1] == "fidelity" {
        ""
    } else {
        " (note: by convention the first two are diversity, fidelity)"
    };
    Ok(format!("{} finite values, `{DIVERSITY_METRIC}` present{convention}", values.len()))
}

fn check_sample(create: &Create<'_>) -> Result<String, Failure> {
    let mut m = fresh(create)?;
    let n: u64 = COUNTS.iter().sum();
    for t in [1.0, 0.5, 2.0] {
        let y = step(m.sample(&COUNTS, t, &mut stream(1)), SAMPLE_RULE)?;
        if y.len() as u64 != n * m.dim() as u64 {
            return Err(fail(format!("{} values for {n} samples of dim {}\n        fix: {SAMPLE_RULE}", y.len(), m.dim())));
        }
    }
    let empty = step(m.sample(&[0; CHECK_TEXTS], 1.0, &mut stream(1)), SAMPLE_RULE)?;
    if !empty.is_empty() {
        return Err(fail(format!("{} values for zero counts\n        fix: {SAMPLE_RULE}", empty.len())));
    }
    Ok(format!("{n} x {} finite values at temperatures 1, 0.5, 2; zero counts give none", m.dim()))
}

fn check_log_likelihood(create: &Create<'_>) -> Result<String, Failure> {
    let mut m = fresh(create)?;
    let y = step(m.sample(&COUNTS, 1.0, &mut stream(2)), SAMPLE_RULE)?;
    let ll = step(m.log_likelihood(&y), LOGLIK_RULE)?;
    // Each sample under the text that drew it: a model giving its own samples zero density
    // would make the caption posterior undefined.
    let texts = COUNTS.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i, c as usize));
    for (j, i) in texts.enumerate() {
        if ll[j * CHECK_TEXTS + i] == f64::NEG_INFINITY {
            return Err(fail(format!(
                "sample {j}, drawn from text {i}, has log-likelihood -inf under text {i}\n        fix: a model's own samples must have \
                 positive density under the text that drew them"
            )));
        }
    }
    Ok(format!("{} values for {} samples x {CHECK_TEXTS} texts, own samples have finite density", ll.len(), y.len() / m.dim()))
}

fn check_fit(create: &Create<'_>) -> Result<String, Failure> {
    let mut m = fresh(create)?;
    let mut g = stream(3);
    for _ in 0..3 {
        let y = step(m.sample(&COUNTS, 1.0, &mut g), SAMPLE_RULE)?;
        step(m.fit(&COUNTS, &y, &mut g), FIT_RULE)?;
    }
    step(m.fit(&[0; CHECK_TEXTS], &[], &mut g), FIT_RULE)?;
    step(m.metrics(), METRICS_RULE)?;
    let y = step(m.sample(&COUNTS, 1.0, &mut g), SAMPLE_RULE)?;
    step(m.log_likelihood(&y), LOGLIK_RULE)?;
    Ok("3 sample/fit rounds and an empty batch, outputs still valid".into())
}

const DETERMINISM_RULE: &str = "draw randomness only from the host stream passed to sample/fit (never thread_rng, the clock or a generator of your own), \
     and keep no state that changes between calls except through fit/add_text/set_params";

fn check_determinism(create: &Create<'_>) -> Result<String, Failure> {
    let differ = |what: &str, a: &[f64], b: &[f64]| {
        Err(fail(format!(
            "{what} differs between two calls from identical states: {}\n        fix: {DETERMINISM_RULE}",
            first_difference(a, b)
        )))
    };
    // The same instance twice from the same stream state.
    let mut m = fresh(create)?;
    let (mut g1, mut g2) = (stream(4), stream(4));
    let y1 = step(m.sample(&COUNTS, 1.0, &mut g1), SAMPLE_RULE)?;
    let y2 = step(m.sample(&COUNTS, 1.0, &mut g2), SAMPLE_RULE)?;
    if !same_bits(&y1, &y2) {
        return differ("sample", &y1, &y2);
    }
    if g1.get_word_pos() != g2.get_word_pos() {
        return Err(fail(format!(
            "sample drew a different number of values from the host stream on two identical calls\n        fix: {DETERMINISM_RULE}"
        )));
    }
    let (l1, l2) = (step(m.log_likelihood(&y1), LOGLIK_RULE)?, step(m.log_likelihood(&y1), LOGLIK_RULE)?);
    if !same_bits(&l1, &l2) {
        return differ("log_likelihood", &l1, &l2);
    }
    // Two instances fitted on the same batch from the same stream state.
    let (mut a, mut b) = (fresh(create)?, fresh(create)?);
    step(a.fit(&COUNTS, &y1, &mut stream(5)), FIT_RULE)?;
    step(b.fit(&COUNTS, &y1, &mut stream(5)), FIT_RULE)?;
    let (pa, pb) = (step(a.get_params(), CHECKPOINT_RULE)?, step(b.get_params(), CHECKPOINT_RULE)?);
    if !same_bits(&pa, &pb) {
        return differ("get_params after the same fit", &pa, &pb);
    }
    let (ya, yb) = (step(a.sample(&COUNTS, 1.0, &mut stream(6)), SAMPLE_RULE)?, step(b.sample(&COUNTS, 1.0, &mut stream(6)), SAMPLE_RULE)?);
    if !same_bits(&ya, &yb) {
        return differ("sample after the same fit", &ya, &yb);
    }
    Ok("sample, log_likelihood and fit are bit-identical from identical stream states".into())
}

const CHECKPOINT_RULE: &str = "get_params must return the full state as finite doubles (parameters, initial parameters, policy \
     statistics), and set_params on a model created with the same params must restore it exactly, K included";

fn check_checkpoint(create: &Create<'_>) -> Result<String, Failure> {
    let lost = |what: &str, a: &[f64], b: &[f64]| {
        Err(fail(format!(
            "after get_params -> set_params into a fresh instance, {what} differs: {}\n        fix: {CHECKPOINT_RULE}",
            first_difference(a, b)
        )))
    };
    let mut a = fresh(create)?;
    let mut g = stream(7);
    for _ in 0..2 {
        let y = step(a.sample(&COUNTS, 1.0, &mut g), SAMPLE_RULE)?;
        step(a.fit(&COUNTS, &y, &mut g), FIT_RULE)?;
    }
    let ckpt = step(a.get_params(), CHECKPOINT_RULE)?;
    let mut b = fresh(create)?;
    step(b.set_params(&ckpt), CHECKPOINT_RULE)?;
    let back = step(b.get_params(), CHECKPOINT_RULE)?;
    if !same_bits(&ckpt, &back) {
        return lost("get_params", &ckpt, &back);
    }
    let (ma, mb) = (step(a.metrics(), METRICS_RULE)?, step(b.metrics(), METRICS_RULE)?);
    if !same_bits(&ma, &mb) {
        return lost("metrics", &ma, &mb);
    }
    let (ya, yb) = (step(a.sample(&COUNTS, 1.0, &mut stream(8)), SAMPLE_RULE)?, step(b.sample(&COUNTS, 1.0, &mut stream(8)), SAMPLE_RULE)?);
    if !same_bits(&ya, &yb) {
        return lost("sample", &ya, &yb);
    }
    let (la, lb) = (step(a.log_likelihood(&ya), LOGLIK_RULE)?, step(b.log_likelihood(&ya), LOGLIK_RULE)?);
    if !same_bits(&la, &lb) {
        return lost("log_likelihood", &la, &lb);
    }
    step(a.fit(&COUNTS, &ya, &mut stream(9)), FIT_RULE)?;
    step(b.fit(&COUNTS, &ya, &mut stream(9)), FIT_RULE)?;
    let (pa, pb) = (step(a.get_params(), CHECKPOINT_RULE)?, step(b.get_params(), CHECKPOINT_RULE)?);
    if !same_bits(&pa, &pb) {
        return lost("the state after one more fit", &pa, &pb);
    }
    // A refused checkpoint must leave the model unchanged (coevo relies on it when a resume
    // fails half-way). A plugin may accept a truncated one; only a refusal is judged.
    if !ckpt.is_empty() {
        let before = step(b.get_params(), CHECKPOINT_RULE)?;
        if b.set_params(&ckpt[..ckpt.len() - 1]).is_err() {
            let after = step(b.get_params(), CHECKPOINT_RULE)?;
            if !same_bits(&before, &after) {
                return Err(fail(format!(
                    "a refused (truncated) checkpoint changed the model: {}\n        fix: validate the whole checkpoint before changing \
                     anything",
                    first_difference(&before, &after)
                )));
            }
        }
    }
    Ok(format!("{} values; restored instance matches in metrics, sample, log_likelihood and the next fit", ckpt.len()))
}

fn check_add_text(create: &Create<'_>) -> Result<String, Failure> {
    const RULE: &str = "add_text must grow K by one with the new text at the model's prior, usable at once";
    let mut a = fresh(create)?;
    step(a.add_text(), RULE)?;
    let counts: Vec<u64> = COUNTS.iter().copied().chain([2]).collect();
    let y = step(a.sample(&counts, 1.0, &mut stream(10)), RULE)?;
    step(a.log_likelihood(&y), RULE)?;
    step(a.fit(&counts, &y, &mut stream(11)), RULE)?;
    let metrics = step(a.metrics(), RULE)?;
    // The grown K must survive a checkpoint too (coevo saves worlds whose texts grew).
    let ckpt = step(a.get_params(), CHECKPOINT_RULE)?;
    let mut b = fresh(create)?;
    step(b.set_params(&ckpt), CHECKPOINT_RULE)?;
    if b.num_texts() != CHECK_TEXTS + 1 {
        return Err(fail(format!(
            "a checkpoint taken with K = {} restores K = {}\n        fix: {CHECKPOINT_RULE}",
            CHECK_TEXTS + 1,
            b.num_texts()
        )));
    }
    Ok(format!("K {} -> {}, sample/fit/metrics ({} values) and checkpoint with the new text", CHECK_TEXTS, CHECK_TEXTS + 1, metrics.len()))
}

fn check_accumulate(create: &Create<'_>) -> Result<String, Failure> {
    const RULE: &str = "coevo creates models of scenarios with Accumulate(..) with DataPolicy::Accumulate { initial: 0 } (it draws the \
                        initial real data itself): create must accept it, and fit must pool every batch into running statistics";
    let mut m = step(create(DataPolicy::Accumulate { initial: 0 }), RULE)?;
    let mut g = stream(12);
    for _ in 0..3 {
        let y = step(m.sample(&COUNTS, 1.0, &mut g), RULE)?;
        step(m.fit(&COUNTS, &y, &mut g), RULE)?;
    }
    step(m.metrics(), RULE)?;
    Ok("Accumulate { initial: 0 } accepted, 3 fits".into())
}
