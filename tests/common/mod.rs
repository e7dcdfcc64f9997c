//! Helpers shared by the integration tests. Each test file is its own crate and uses only some
//! of them, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coevo::metrics::MetricRow;

/// Runs the `coevo` binary with `args` from the crate root (so scenario paths are the ones a
/// user types), with no `RUST_LOG` and no plugin path from the caller's environment.
pub fn coevo(args: &[&str]) -> Output {
    coevo_with(args, &[])
}

/// [`coevo`] with extra environment variables.
pub fn coevo_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coevo"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("RUST_LOG").env_remove(coevo::plugin::PLUGIN_PATH_VAR);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the coevo binary runs")
}

/// A fresh, empty scratch folder for one test (under cargo's per-target temp dir).
pub fn scratch(group: &str, test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A process's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `metric` of `model` (for `text`, if per text) in one round's rows.
pub fn metric(rows: &[MetricRow], model: &str, metric: &str, text: Option<u32>) -> f64 {
    rows.iter()
        .find(|r| &*r.model == model && &*r.metric == metric && r.text == text)
        .unwrap_or_else(|| panic!("no row {model}/{metric}/{text:?} in round {:?}", rows.first().map(|r| r.round)))
        .value
}
