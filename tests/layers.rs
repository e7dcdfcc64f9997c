//! The module graph of `src/` points one way: each module uses only modules below it on the
//! data path, so there is no import cycle and no arrow back up. The order is the README's
//! architecture section; a module that is not listed, or a `crate::` path that points up,
//! fails this test with the file and line.
//!
//! Run it alone with `cargo test --test tests layers::`.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top. A module may use the modules before it, never those after it.
const LAYERS: &[&str] = &[
    "linalg",      // machine-independent arithmetic: instruction-set dispatch, product, eigen
    "rng",         // named, portable random streams
    "metrics",     // metric functions, names, the tidy row
    "models",      // the maths: text model, conditional Gaussian, batches, policies
    "data",        // datasets read from files: checked, grouped by label, moments, bootstrap
    "scenario",    // the pure RON schema and its validation
    "plugin",      // the plugin host: libraries, the C ABI adapter
    "resolve",     // a scenario file made ready to build: parsed, validated, plugins checked
    "world",       // the ECS: components, the round's schedules and systems
    "diagnostics", // drift phases of the generational chain, from metric rows
    "output",      // tables, manifest, summary: writers and readers
    "checkpoint",  // world state to disk and back
    "run",         // a scenario end to end: worlds, round loop, output folder
    "stability",   // twin worlds (recursive stability)
    "experiment",  // sweeps, shards, merge
    "plot",        // figures from output folders
    "bench",       // timing helpers for the benchmarks
];

/// The top-level modules a line of code names through `crate::` (comments skipped).
fn crate_paths(line: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code = line.trim_start();
    if code.starts_with("//") {
        return found;
    }
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in group.split(['}', ',']).take_while(|s| !s.contains(';')) {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

#[test]
fn modules_depend_only_on_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = crate::common::rust_files(&src);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if first == "main" || first == "lib" {
            continue; // the crate root and the CLI sit above everything
        }
        let Some(level) = LAYERS.iter().position(|l| *l == first) else {
            violations
                .push(format!("src/{}: module `{first}` is not in LAYERS (tests/layers.rs): place it in the order", relative.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable");
        for (n, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                if used == first {
                    continue;
                }
                match LAYERS.iter().position(|l| *l == used) {
                    Some(u) if u < level => {}
                    Some(_) => violations.push(format!(
                        "src/{}:{}: `{first}` uses `crate::{used}`, which sits above it (or beside it) in LAYERS",
                        relative.display(),
                        n + 1
                    )),
                    None if matches!(used.as_str(), "Scenario" | "Simulation") => {} // crate-root re-exports
                    None => violations.push(format!("src/{}:{}: `crate::{used}` is not a module in LAYERS", relative.display(), n + 1)),
                }
            }
        }
    }
    assert!(violations.is_empty(), "the module graph points up:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_plain_and_grouped_paths() {
    assert_eq!(crate_paths("use crate::metrics::{MetricRow, names};"), BTreeSet::from(["metrics".to_string()]));
    assert_eq!(crate_paths("use crate::{run, world::Simulation};"), BTreeSet::from(["run".to_string(), "world".to_string()]));
    assert_eq!(crate_paths("let x = crate::output::format_value(v) + crate::rng::seed();").len(), 2);
    assert!(crate_paths("    // crate::plot in a comment").is_empty());
}
