//! Checkpoints: a run killed after a checkpoint and resumed writes exactly the files an
//! uninterrupted run writes; a checkpoint that does not belong to the folder is refused.

use std::path::{Path, PathBuf};

use crate::common::{bytes, coevo, coevo_command, ok, scratch, stderr, wait_until, write};

/// Starts `coevo run scenario --checkpoint-every every` into `out`, kills it (SIGKILL) as soon
/// as its first checkpoint is on disk, and returns the checkpoint's path.
pub fn kill_after_first_checkpoint(scenario: &Path, out: &Path, every: &str) -> PathBuf {
    let mut child = coevo_command(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q", "--checkpoint-every", every])
        .spawn()
        .expect("coevo starts");
    let checkpoint = out.join("checkpoint.json");
    wait_until(&mut child, "checkpoint", || checkpoint.exists());
    child.kill().expect("kill");
    child.wait().unwrap();
    checkpoint
}

/// Every kind of state a checkpoint must carry: accumulated text counts, accumulated image
/// statistics, a fresh-data policy with the unbiased estimator, the three covariance families
/// (the exact roots of their refits), a temperature, three image
/// models multiplying their likelihoods in the caption posterior, corpus injectors (their own
/// streams; new texts grow K in every model), user content, two replicates.
const STATEFUL: &str = r#"Scenario(
    name: "stateful",
    seed: 77,
    rounds: 1500,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Probabilities([0.4, 0.3, 0.2, 0.1]), batch: 120, data: Accumulate(initial: 200)),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 120, data: Accumulate(initial: 100)),
        ImageModel(name: "sketcher", conditioned_on: "captioner", dim: 3, batch: 120, estimator: Unbiased, data: Fresh(lambda: 0.25), structure: Diagonal),
        ImageModel(name: "doodler", conditioned_on: "captioner", dim: 4, batch: 60, structure: Isotropic),
        Temperature(name: "heat", target: "captioner", t: 1.3),
        CorpusInjector(name: "newcomers", target: "captioner", alpha: 0.01, eps: 0.05, distribution: NewText),
        CorpusInjector(name: "tokens", target: "captioner", alpha: 0.1, eps: 0.05, distribution: RandomTokens(20)),
        UserContentInjector(name: "users", target: "sketcher", n0: 3),
    ],
)"#;

const FILES: [&str; 4] = ["metrics.csv", "aggregate.csv", "phases.csv", "summary.json"];

#[test]
fn a_killed_run_resumes_to_exactly_the_uninterrupted_output() {
    let dir = scratch("checkpoint", "kill");
    let scenario = write(&dir, "stateful.ron", STATEFUL);
    let s = scenario.to_str().unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", s, "--out", whole.to_str().unwrap(), "-q"]);
    let checkpoint = kill_after_first_checkpoint(&scenario, &killed, "4");
    let metrics_when_killed = bytes(&killed.join("metrics.csv")).len();
    assert!(metrics_when_killed < bytes(&whole.join("metrics.csv")).len(), "the run finished before it was killed");

    ok(&["resume", killed.to_str().unwrap(), "-q"]);
    for f in FILES {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
    assert!(!checkpoint.exists(), "a completed run leaves no checkpoint to resume");
}

#[test]
fn resuming_twice_from_one_checkpoint_gives_the_same_output() {
    // A resumed run cuts the tables back to the checkpoint's lengths, so resuming again from
    // the same checkpoint after a first resume has appended (and checkpointed) must not
    // depend on what the first resume wrote.
    let dir = scratch("checkpoint", "twice");
    let scenario = write(&dir, "s.ron", &STATEFUL.replace("rounds: 1500", "rounds: 900"));
    let s = scenario.to_str().unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", s, "--out", whole.to_str().unwrap(), "-q"]);
    let checkpoint = kill_after_first_checkpoint(&scenario, &killed, "10");
    let saved = bytes(&checkpoint);
    // Resume with checkpoints on, then put the old checkpoint back and resume again: the
    // tables are cut back to the checkpoint and regrown identically.
    ok(&["resume", killed.to_str().unwrap(), "-q", "--checkpoint-every", "7"]);
    std::fs::write(&checkpoint, &saved).unwrap();
    ok(&["resume", killed.to_str().unwrap(), "-q"]);
    for f in FILES {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
}

#[test]
fn a_checkpoint_from_another_scenario_is_bad_input() {
    let dir = scratch("checkpoint", "other");
    let a = write(&dir, "a.ron", &STATEFUL.replace("rounds: 1500", "rounds: 600"));
    let b = write(&dir, "b.ron", &STATEFUL.replace("rounds: 1500", "rounds: 600").replace("seed: 77", "seed: 78"));
    let (run_a, run_b) = (dir.join("run_a"), dir.join("run_b"));
    let checkpoint = kill_after_first_checkpoint(&a, &run_a, "5");
    ok(&["run", b.to_str().unwrap(), "--out", run_b.to_str().unwrap(), "-q"]);
    std::fs::copy(&checkpoint, run_b.join("checkpoint.json")).unwrap();
    let out = coevo(&["resume", run_b.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is from another scenario"), "{err}");

    // And a folder without a checkpoint says how to get one.
    let out = coevo(&["resume", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--checkpoint-every"));
}

/// Every kind of state data adds: a text model and an image model built from a dataset, the
/// image model's `Augment` real samples (a bootstrap), `Fresh` real captions of the text model
/// from the empirical label distribution, `Data` user content, and new texts (which have no
/// rows), two replicates.
fn with_data(vectors: &Path) -> String {
    format!(
        r#"Scenario(
    name: "with_data",
    seed: 78,
    rounds: 200,
    replicates: 2,
    entities: [
        Dataset(name: "digits", file: "{}", labels: "y.npy"),
        TextModel(name: "captioner", initial: FromData("digits"), batch: 200, data: Fresh(lambda: 0.1)),
        ImageModel(name: "painter", conditioned_on: "captioner", dim: 16, means: FromData("digits"), covariance: FromData("digits"), shrinkage: 0.05, batch: 200, data: Augment(lambda: 2.0)),
        CorpusInjector(name: "newcomers", target: "captioner", alpha: 0.05, eps: 0.05, distribution: NewText),
        UserContentInjector(name: "users", target: "painter", n0: 3, source: Data("digits")),
    ],
)"#,
        vectors.display()
    )
}

/// The shipped digits as a `.npy` pair in `dir` (rows grouped by label), the first two rows
/// swapped if `swap`: the same data to every statistic, other bytes.
fn digits_npy(dir: &Path, swap: bool) -> PathBuf {
    use crate::data::{f64_bytes, i64_bytes, npy};
    let data = coevo::data::Dataset::load(&crate::data::digits_path(), &coevo::data::Layout::default(), None).unwrap();
    let mut vectors: Vec<f64> = (0..10).flat_map(|i| data.label_rows(i).to_vec()).collect();
    let labels: Vec<i64> = (0..10).flat_map(|i| std::iter::repeat_n(i as i64, data.count(i))).collect();
    if swap {
        let (first, second) = vectors.split_at_mut(16);
        first.swap_with_slice(&mut second[..16]);
    }
    std::fs::write(dir.join("y.npy"), npy("<i8", &[labels.len()], &i64_bytes(&labels))).unwrap();
    let x = dir.join("x.npy");
    std::fs::write(&x, npy("<f8", &[labels.len(), 16], &f64_bytes(&vectors))).unwrap();
    x
}

#[test]
fn a_run_with_a_dataset_resumes_to_exactly_the_uninterrupted_output_and_refuses_changed_data() {
    let dir = scratch("checkpoint", "data");
    let scenario = write(&dir, "s.ron", &with_data(&digits_npy(&dir, false)));
    let s = scenario.to_str().unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", s, "--out", whole.to_str().unwrap(), "-q"]);
    let manifest = std::fs::read_to_string(whole.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"sha256\"") && manifest.contains("x.npy"), "the manifest records the dataset");
    let checkpoint = kill_after_first_checkpoint(&scenario, &killed, "5");
    let saved = bytes(&checkpoint);
    ok(&["resume", killed.to_str().unwrap(), "-q"]);
    for f in FILES {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
    // The data file changes under a checkpointed run (two rows of one label swapped: every
    // statistic the same, the bytes not): resuming is refused, naming the dataset.
    std::fs::write(&checkpoint, &saved).unwrap();
    digits_npy(&dir, true);
    let out = coevo(&["resume", killed.to_str().unwrap(), "-q"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("dataset `digits` changed since the run started") && err.contains("x.npy"), "{err}");
}
