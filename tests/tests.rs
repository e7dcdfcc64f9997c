//! coevo's integration tests, as one test binary: each file of `tests/` is a module of it
//! (`autotests = false` and one `[[test]]` in `Cargo.toml`), so the suite links once instead
//! of once per file, and the helpers of `tests/common/` are compiled once.
//!
//! Run one file's tests, or any subset, with a filter on the module path:
//! `cargo test --test tests cli::`, `cargo test --test tests theory::binomial`.

mod common;

mod allocation;
mod checkpoint;
mod cli;
mod data;
mod data_errors;
mod designs;
mod examples;
mod exp;
mod experiments;
mod fuzz;
mod hosted;
mod hostile;
#[cfg(unix)]
mod interrupt;
mod layers;
mod machines;
mod plot_folders;
#[cfg(target_os = "linux")]
mod plugin_isolation;
mod plugins;
mod posterior;
mod readme;
mod recording;
mod richer_models;
mod scenario_errors;
mod scenarios;
mod schedules;
mod stabilisers;
mod structure;
#[cfg(unix)]
mod sweep_ops;
mod tables;
mod theory;

/// With `autotests = false`, a file added to `tests/` runs only once it is declared above: this
/// test fails, naming the file, until it is, so no test file is silently left out.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(dir.join("tests.rs")).expect("tests/tests.rs is readable");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/ is readable") {
        let path = entry.expect("an entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().is_some_and(|e| e == "rs") && stem != "tests" && !root.contains(&format!("\nmod {stem};\n")) {
            missing.push(path.display().to_string());
        }
    }
    assert!(missing.is_empty(), "test files not declared as `mod` in tests/tests.rs (they would never run): {missing:?}");
}
