//! A scenario fuzz test that runs with every `cargo test`: the ready scenarios of `scenarios/`,
//! mutated the way a careless or hostile sender would (truncated, numbers replaced by huge,
//! negative or non-finite ones, values of the wrong type, deep nesting, control characters,
//! pieces duplicated or dropped), are fed to the loader. Whatever the input:
//! - nothing panics (each parse, size estimate and the first rounds of a small enough valid
//!   scenario run under `catch_unwind`), and deep nesting does not overflow the stack (ron stops
//!   at its recursion limit);
//! - every refusal names the file and a place in it (`fuzz.ron:LINE:COL` or the field);
//! - through the binary, every refusal is exit code 2 and nothing else.
//!
//! The mutants come from a fixed seed, so a failure is reproducible: the message prints the
//! mutant's index and source. The count is fixed (not a time budget), about two seconds in the
//! test profile.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use coevo::Scenario;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{coevo, stderr, write};

/// Mutants fed to the library in process.
const MUTANTS: usize = 1500;
/// Of which the first few also go through the binary (a process each).
const THROUGH_THE_BINARY: usize = 24;

/// Text that replaces a number or a value.
const REPLACEMENTS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "4294967296",
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "inf",
    "\"x\"",
    "[]",
    "()",
    "true",
    "Uniform(1000000000)",
    "Some(",
    "\"\u{1b}[31m\"",
];

/// The ready scenarios, as text.
fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ron")).collect();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
}

/// Byte offsets of the numbers in `source` (start, end).
fn numbers(source: &str) -> Vec<(usize, usize)> {
    let b = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e' || b[i] == b'-') {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// A char boundary of `s` at or before `i`.
fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One mutation of `source`, chosen by `rng`.
fn mutate(source: &str, rng: &mut ChaCha8Rng) -> String {
    let at = boundary(source, rng.random_range(0..=source.len()));
    match rng.random_range(0..7) {
        // Truncated.
        0 => source[..at].to_string(),
        // A number replaced.
        1 | 2 => {
            let spots = numbers(source);
            if spots.is_empty() {
                return source[..at].to_string();
            }
            let (s, e) = spots[rng.random_range(0..spots.len())];
            format!("{}{}{}", &source[..s], REPLACEMENTS[rng.random_range(0..REPLACEMENTS.len())], &source[e..])
        }
        // Deep nesting (ron's recursion limit must stop it before the stack does).
        3 => {
            let depth = rng.random_range(100..20_000);
            format!("{}{}{}{}", &source[..at], "[".repeat(depth), "]".repeat(depth), &source[at..])
        }
        // A value of another kind inserted.
        4 => format!("{}{}{}", &source[..at], REPLACEMENTS[rng.random_range(0..REPLACEMENTS.len())], &source[at..]),
        // A piece dropped.
        5 => {
            let end = boundary(source, at + rng.random_range(1..40));
            format!("{}{}", &source[..at], &source[end..])
        }
        // A piece duplicated, or a control character inserted.
        _ => {
            if rng.random::<bool>() {
                let end = boundary(source, at + rng.random_range(1..200));
                format!("{}{}{}", &source[..end], &source[at..end], &source[end..])
            } else {
                format!("{}{}{}", &source[..at], ['\u{0}', '\u{1b}', '\u{7}', '\r'][rng.random_range(0..4)], &source[at..])
            }
        }
    }
}

/// What the library does with one mutant: parse (validation included), estimate its size,
/// and run a couple of rounds of replicate 0 when it is valid and small. Returns the refusal
/// message, if refused.
fn exercise(source: &str) -> Option<String> {
    let file = Path::new("fuzz.ron");
    match Scenario::parse(source, file) {
        Err(e) => Some(e.to_string()),
        Ok(mut scenario) => {
            let f = coevo::scenario::footprint::Footprint::of(&scenario);
            // Datasets and plugins need files beside the scenario: not run here.
            let runnable = f.memory < 16 << 20
                && f.work_per_round < 5_000_000
                && scenario
                    .entities
                    .iter()
                    .all(|e| !matches!(e, coevo::scenario::EntitySpec::Dataset(_) | coevo::scenario::EntitySpec::PluginModel(_)));
            if runnable {
                scenario.rounds = scenario.rounds.min(2);
                if let Ok(mut sim) = coevo::Simulation::new(&scenario, 0) {
                    let _ = sim.measure();
                    let _ = sim.step();
                }
            }
            None
        }
    }
}

#[test]
fn mutated_scenarios_never_panic_and_every_refusal_is_located() {
    let seeds = seeds();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..MUTANTS {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let mut mutant = mutate(seed, &mut rng);
        if rng.random_range(0..4) == 0 {
            mutant = mutate(&mutant, &mut rng);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&mutant)));
        match outcome {
            Err(_) => panic!("mutant {i} panicked:\n{mutant}"),
            Ok(Some(message)) => {
                refused += 1;
                assert!(message.starts_with("error: fuzz.ron"), "mutant {i}: refusal without the file: {message}\n{mutant}");
                assert!(!message.contains('\u{1b}'), "mutant {i}: a raw escape in the message: {message:?}");
            }
            Ok(None) => accepted += 1,
        }
    }
    // The mutations must exercise both sides (a generator that only broke the syntax would
    // never reach validation or the run).
    assert!(refused > MUTANTS / 4 && accepted > MUTANTS / 20, "refused {refused}, accepted {accepted}");
}

#[test]
fn mutated_scenarios_are_refused_by_the_binary_with_exit_code_2() {
    let dir = crate::common::scratch("fuzz", "binary");
    let seeds = seeds();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut refused = 0;
    for i in 0..THROUGH_THE_BINARY {
        let mutant = mutate(&seeds[rng.random_range(0..seeds.len())], &mut rng);
        let file = write(&dir, "fuzz.ron", &mutant);
        let out = coevo(&["validate", file.to_str().unwrap()]);
        let code = out.status.code();
        assert!(code == Some(0) || code == Some(2), "mutant {i}: exit {code:?}: {}\n{mutant}", stderr(&out));
        if code == Some(2) {
            refused += 1;
            assert!(stderr(&out).contains("fuzz.ron"), "mutant {i}: {}", stderr(&out));
        }
    }
    assert!(refused > 0);
}
