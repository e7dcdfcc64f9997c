//! Scenario errors point at the right place and speak the scenario format, not the parser's:
//! an entity's error is located in that entity even when the scenario has the same name, a
//! struct-like variant written without field names is answered with the fields it takes, and
//! a negative count names the entity and the field. Each test drives the real binary on a
//! fixture in `tests/fixtures/errors/` and expects exit code 2 (bad input).
//!
//! Self-contained (no `mod common`), so that it can be moved into a single test binary as is.

use std::process::{Command, Output};

/// `coevo validate` on `tests/fixtures/errors/<fixture>.ron`, from the crate root.
fn validate(fixture: &str) -> (Output, String) {
    let file = format!("tests/fixtures/errors/{fixture}.ron");
    let out = Command::new(env!("CARGO_BIN_EXE_coevo"))
        .args(["validate", &file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the coevo binary runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{file}: bad input must exit with code 2; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{file}: bad input must be answered, not crash:\n{err}");
    (out, err)
}

/// The scenario and its text model are both called `captioner`: the error about the text
/// model's `batch` must point at line 8 (`batch: 0,` inside the TextModel), not at the
/// scenario's `name:` on line 3.
#[test]
fn entity_error_is_located_in_the_entity_when_the_scenario_has_its_name() {
    let (_, err) = validate("name_shared");
    let expected = "tests/fixtures/errors/name_shared.ron:8:13: entities[0] (TextModel \"captioner\").batch:";
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
}

/// `Fresh(0.1)` must be answered with the field `Fresh` takes, not with the parser's
/// suggestion of a raw identifier `r#0.1`.
#[test]
fn struct_variant_without_field_names_says_which_fields_it_takes() {
    let (_, err) = validate("fresh_positional");
    assert!(err.contains("tests/fixtures/errors/fresh_positional.ron:6:"), "the error must be located:\n{err}");
    assert!(err.contains("`Fresh` takes `(lambda: ...)`"), "the error must name the field of Fresh:\n{err}");
    assert!(err.contains("Fresh(lambda: 0.2)"), "the error must show an example:\n{err}");
    assert!(!err.contains("r#"), "no raw-identifier suggestion from the parser:\n{err}");
}

/// The same for a struct-like variant of another enum (a perturbation), found generically.
#[test]
fn every_struct_variant_lists_its_fields() {
    let (_, err) = validate("perturb_positional");
    assert!(err.contains("`MeanShift` takes `(model: ..., text: ..., shift: ...)`"), "the error must list MeanShift's fields:\n{err}");
    assert!(!err.contains("r#"), "no raw-identifier suggestion from the parser:\n{err}");
}

/// `batch: -500` in the second entity: the message names the entity and the field, as a
/// semantic error would, and says what would be valid.
#[test]
fn negative_count_names_the_entity_and_the_field() {
    let (_, err) = validate("batch_negative_named");
    let expected = "tests/fixtures/errors/batch_negative_named.ron:10:21: entities[1] (ImageModel \"painter\").batch:";
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    assert!(err.contains("`batch` expects a non-negative whole number"), "the hint must say what is valid:\n{err}");
}
