//! Helpers shared by the integration tests, kept here once: the statistical tolerance `Z`, mean
//! and standard error, scenario builders, metric look-ups, and the helpers that drive the
//! `coevo` binary as a process.

pub mod alloc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use coevo::metrics::MetricRow;
use coevo::world::{EntityName, TextAgent};
use coevo::{Scenario, Simulation};

// ---------------------------------------------------------------- statistics

/// Tolerance of every statistical check, in standard errors. A two-sided Gaussian tail beyond
/// 4.5 sigma has probability 6.8e-6, so a test making up to 60 such checks (the heat-death test
/// makes 64, still below 5e-4) fails on a correct implementation with probability below 4.1e-4
/// (Bonferroni); where the standard error used is an upper bound the rate is lower still. Seeds
/// are fixed, so each outcome is deterministic: the rate says how unlucky a seed would have to
/// be, and no seed was chosen to make a run pass.
pub const Z: f64 = 4.5;

/// Sample mean of independent values and its standard error `sd / sqrt(n)` (sample standard
/// deviation, divisor `n - 1`).
pub fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    assert!(n >= 2.0, "need two values for a standard error");
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

// ---------------------------------------------------------------- scenarios and worlds

/// A scenario from RON source (named `test.ron` in messages); panics with the source if invalid.
pub fn scenario(source: &str) -> Scenario {
    Scenario::parse(source, Path::new("test.ron")).unwrap_or_else(|e| panic!("test scenario is invalid:\n{e}\n{source}"))
}

/// The ready scenario `scenarios/<name>.ron`, loaded as a user's run loads it.
pub fn ready(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{name}.ron"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}")).0
}

/// The current `p` of text model `name`.
pub fn text_p(sim: &mut Simulation, name: &str) -> Vec<f64> {
    let world = sim.world_mut();
    let mut q = world.query::<(&EntityName, &TextAgent)>();
    q.iter(world).find(|(n, _)| &*n.0 == name).map(|(_, t)| t.model.p.clone()).unwrap_or_else(|| panic!("no text model {name}"))
}

/// The value of `metric` of `model` (for `text`, if per text) in one round's rows.
pub fn metric(rows: &[MetricRow], model: &str, metric: &str, text: Option<u32>) -> f64 {
    rows.iter()
        .find(|r| &*r.model == model && &*r.metric == metric && r.text == text)
        .unwrap_or_else(|| panic!("no row {model}/{metric}/{text:?} in round {:?}", rows.first().map(|r| r.round)))
        .value
}

/// The per-text values of `name` (`p`, `trace`, `fidelity`, ...) of `model` for texts `0..k`.
pub fn per_text(rows: &[MetricRow], model: &str, name: &str, k: usize) -> Vec<f64> {
    (0..k).map(|i| metric(rows, model, name, Some(i as u32))).collect()
}

// ---------------------------------------------------------------- the coevo binary

/// A `coevo` command with `args`, run from the crate root (so scenario paths are the ones a user
/// types), with no `RUST_LOG` and no plugin path from the caller's environment.
pub fn coevo_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coevo"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("RUST_LOG").env_remove(coevo::plugin::PLUGIN_PATH_VAR);
    cmd
}

/// Runs [`coevo_command`] to completion.
pub fn coevo(args: &[&str]) -> Output {
    coevo_with(args, &[])
}

/// [`coevo`] with extra environment variables.
pub fn coevo_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = coevo_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the coevo binary runs")
}

/// [`coevo`], asserting that it succeeds.
pub fn ok(args: &[&str]) -> Output {
    let out = coevo(args);
    assert!(out.status.success(), "coevo {args:?} failed: {}", stderr(&out));
    out
}

/// Polls `ready` every few milliseconds while `child` runs; panics if `child` exits first or if
/// `ready` does not hold within a minute (`what` says what was awaited).
pub fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(child.try_wait().expect("the child's status").is_none(), "coevo exited before {what}");
        assert!(start.elapsed() < Duration::from_secs(60), "no {what} within a minute");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A process's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------- files

/// A fresh, empty scratch folder for one test (under cargo's per-target temp dir).
pub fn scratch(group: &str, test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// A file's text; panics naming the file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A file's bytes; panics naming the file.
pub fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file below `dir`, sorted (the source checks of `layers` and `cli` read them).
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Full covariances as the image model's structured form (`StructuredCovariance::Full`).
pub fn full(covariances: &[nalgebra::DMatrix<f64>]) -> Vec<coevo::models::StructuredCovariance> {
    covariances.iter().cloned().map(Into::into).collect()
}
