//! Bad data is answered, never crashed on: each kind of unusable data file makes `coevo run`
//! exit 2 with the scenario file and field, the data file and the place in it named, and
//! nothing written. The fixtures are made here, in a scratch folder.

use std::path::{Path, PathBuf};

use crate::common::{coevo, scratch, stderr, write};
use crate::data::{f64_bytes, i64_bytes, npy};

/// A scenario in `dir` reading `file` as its dataset (`dataset` adds fields), with a text model
/// of `initial` and an image model of dimension `dim` built from it.
fn scenario(dir: &Path, file: &str, dataset: &str, initial: &str, dim: usize) -> PathBuf {
    let text = format!(
        r#"Scenario(
    name: "bad",
    rounds: 3,
    entities: [
        Dataset(name: "emb", file: "{file}"{dataset}),
        TextModel(name: "captioner", initial: {initial}, batch: 50),
        ImageModel(name: "painter", conditioned_on: "captioner", dim: {dim}, means: FromData("emb"), covariance: FromData("emb"), shrinkage: 0.1, batch: 50),
    ],
)"#
    );
    write(dir, "s.ron", &text)
}

/// Runs the scenario; asserts exit code 2, that stderr names everything in `expected`, and that
/// no output folder was made. Returns stderr.
fn refused(dir: &Path, scenario: &Path, expected: &[&str]) -> String {
    let out_dir = dir.join("out");
    let out = coevo(&["run", scenario.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "-q"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr:\n{err}");
    for e in expected {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(!out_dir.exists(), "nothing may be written for bad input");
    err
}

/// A valid 12 x 2 table with labels 0, 1, 2 (4 rows each) as vectors/labels `.npy` files.
fn good_npy(dir: &Path) {
    let vectors: Vec<f64> = (0..24).map(|i| ((i * 7) % 11) as f64 / 3.0).collect();
    let labels: Vec<i64> = (0..12).map(|i| i % 3).collect();
    std::fs::write(dir.join("x.npy"), npy("<f8", &[12, 2], &f64_bytes(&vectors))).unwrap();
    std::fs::write(dir.join("y.npy"), npy("<i8", &[12], &i64_bytes(&labels))).unwrap();
}

const LABELS: &str = r#", labels: "y.npy""#;

#[test]
fn the_good_fixture_runs() {
    let dir = scratch("data_errors", "good");
    good_npy(&dir);
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 2);
    let out = coevo(&["run", s.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_missing_file() {
    let dir = scratch("data_errors", "missing");
    let s = scenario(&dir, "nowhere.npz", "", "FromData(\"emb\")", 2);
    refused(&dir, &s, &["s.ron:5:", "(Dataset \"emb\").file", "nowhere.npz", "cannot open"]);
}

#[test]
fn a_truncated_file() {
    let dir = scratch("data_errors", "truncated");
    good_npy(&dir);
    let bytes = std::fs::read(dir.join("x.npy")).unwrap();
    std::fs::write(dir.join("x.npy"), &bytes[..bytes.len() - 20]).unwrap();
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 2);
    refused(&dir, &s, &["(Dataset \"emb\").file", "x.npy", "truncated", "promises 24 values"]);
    // Not a numpy file at all.
    std::fs::write(dir.join("x.npy"), b"hello").unwrap();
    refused(&dir, &s, &["x.npy", "not a readable .npy array"]);
}

#[test]
fn a_wrong_dtype() {
    let dir = scratch("data_errors", "dtype");
    good_npy(&dir);
    std::fs::write(dir.join("x.npy"), npy("<i8", &[12, 2], &i64_bytes(&[1; 24]))).unwrap();
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 2);
    refused(&dir, &s, &["x.npy", "wrong dtype <i8", "float32 or float64"]);
    // Float labels.
    good_npy(&dir);
    std::fs::write(dir.join("y.npy"), npy("<f8", &[12], &f64_bytes(&[0.0; 12]))).unwrap();
    refused(&dir, &s, &["y.npy", "wrong dtype <f8 for the labels", "integers"]);
}

#[test]
fn nan_or_inf_in_a_vector() {
    let dir = scratch("data_errors", "nan");
    let csv = "label,a,b\n0,1,2\n0,2,1\n0,0,0\n1,1,1\n1,nan,2\n1,3,3\n";
    write(&dir, "t.csv", csv);
    let s = scenario(&dir, "t.csv", r#", labels: "label""#, "FromData(\"emb\")", 2);
    refused(&dir, &s, &["t.csv", "line 6, column 2 (`a`)", "not finite"]);
    write(&dir, "t.csv", &csv.replace("nan", "inf"));
    refused(&dir, &s, &["line 6, column 2 (`a`)", "inf is not finite"]);
}

#[test]
fn labels_outside_0_to_k_minus_1_or_a_label_without_rows() {
    let dir = scratch("data_errors", "labels");
    good_npy(&dir);
    // The data has labels 0..2; a text model of K = 2 cannot take label 2.
    let s = scenario(&dir, "x.npy", LABELS, "Uniform(2)", 2);
    refused(&dir, &s, &["(ImageModel \"painter\").means", "labels 2 to 2 are outside 0..K-1"]);
    // K = 4: text 3 has no rows.
    let s = scenario(&dir, "x.npy", LABELS, "Uniform(4)", 2);
    refused(&dir, &s, &["(ImageModel \"painter\").means", "texts 3 to 3 have no rows"]);
    // A gap in the labels themselves.
    std::fs::write(dir.join("y.npy"), npy("<i8", &[12], &i64_bytes(&[0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2]))).unwrap();
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 2);
    refused(&dir, &s, &["(Dataset \"emb\").file", "label 1 has no rows"]);
    // A negative label.
    std::fs::write(dir.join("y.npy"), npy("<i8", &[12], &i64_bytes(&[0, 1, 2, 0, 1, 2, 0, -1, 2, 0, 1, 2]))).unwrap();
    refused(&dir, &s, &["row 7 (0-based)", "label -1 is negative"]);
}

#[test]
fn a_dimension_that_differs_from_the_image_models() {
    let dir = scratch("data_errors", "dim");
    good_npy(&dir);
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 3);
    refused(&dir, &s, &["(ImageModel \"painter\").means", "dimension 2 but the model has dim = 3"]);
}

#[test]
fn a_label_with_too_few_rows_for_a_positive_definite_covariance() {
    let dir = scratch("data_errors", "too_few");
    good_npy(&dir);
    // 4 rows per label in d = 2 is enough; in the same file read as d = 2 but unshrunk with one
    // label of 2 rows it is not.
    std::fs::write(dir.join("y.npy"), npy("<i8", &[12], &i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 0, 0, 1, 0]))).unwrap();
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 2);
    let text = std::fs::read_to_string(&s).unwrap().replace("shrinkage: 0.1, ", "");
    std::fs::write(&s, text).unwrap();
    refused(&dir, &s, &["(ImageModel \"painter\").covariance", "label 2 has 2 rows", "at least 3"]);
}

#[test]
fn a_dataset_too_large_for_memory() {
    let dir = scratch("data_errors", "large");
    // The header promises 2^36 rows of 64 coordinates (about 64 TiB): refused from the header,
    // before anything is allocated or read.
    std::fs::write(dir.join("x.npy"), npy("<f8", &[1 << 36, 64], &[])).unwrap();
    good_npy_labels_only(&dir);
    let s = scenario(&dir, "x.npy", LABELS, "FromData(\"emb\")", 64);
    refused(&dir, &s, &["x.npy", "too large to load", "68719476736 rows x 64 coordinates", "TiB"]);
    // A stated limit refuses a file that would fit in memory.
    good_npy(&dir);
    let s = scenario(&dir, "x.npy", r#", labels: "y.npy", max_memory_mb: 1"#, "FromData(\"emb\")", 2);
    let big: Vec<f64> = (0..200_000).map(|i| i as f64).collect();
    std::fs::write(dir.join("x.npy"), npy("<f8", &[100_000, 2], &f64_bytes(&big))).unwrap();
    refused(&dir, &s, &["too large to load", "max_memory_mb"]);
}

fn good_npy_labels_only(dir: &Path) {
    std::fs::write(dir.join("y.npy"), npy("<i8", &[2], &i64_bytes(&[0, 1]))).unwrap();
}
