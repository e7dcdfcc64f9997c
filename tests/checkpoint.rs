//! Checkpoints: a run killed after a checkpoint and resumed writes exactly the files an
//! uninterrupted run writes; a checkpoint that does not belong to the folder is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const COEVO: &str = env!("CARGO_BIN_EXE_coevo");

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn coevo(args: &[&str]) -> Output {
    Command::new(COEVO).args(args).output().expect("coevo runs")
}

fn ok(args: &[&str]) {
    let out = coevo(args);
    assert!(out.status.success(), "coevo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every kind of state a checkpoint must carry: accumulated text counts, accumulated image
/// statistics, a fresh-data policy with the unbiased estimator, a temperature, two image
/// models multiplying their likelihoods in the caption posterior, corpus injectors (their own
/// streams; new texts grow K in both models), user content, two replicates.
const STATEFUL: &str = r#"Scenario(
    name: "stateful",
    seed: 77,
    rounds: 1500,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Probabilities([0.4, 0.3, 0.2, 0.1]), batch: 120, data: Accumulate(initial: 200)),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 120, data: Accumulate(initial: 100)),
        ImageModel(name: "sketcher", conditioned_on: "captioner", dim: 3, batch: 120, estimator: Unbiased, data: Fresh(lambda: 0.25)),
        Temperature(name: "heat", target: "captioner", t: 1.3),
        CorpusInjector(name: "newcomers", target: "captioner", alpha: 0.01, eps: 0.05, distribution: NewText),
        CorpusInjector(name: "tokens", target: "captioner", alpha: 0.1, eps: 0.05, distribution: RandomTokens(20)),
        UserContentInjector(name: "users", target: "sketcher", n0: 3),
    ],
)"#;

const FILES: [&str; 4] = ["metrics.csv", "aggregate.csv", "phases.csv", "summary.json"];

#[test]
fn a_killed_run_resumes_to_exactly_the_uninterrupted_output() {
    let dir = scratch("kill");
    let scenario = dir.join("stateful.ron");
    std::fs::write(&scenario, STATEFUL).unwrap();
    let s = scenario.to_str().unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", s, "--out", whole.to_str().unwrap(), "-q"]);

    let mut child = Command::new(COEVO)
        .args(["run", s, "--out", killed.to_str().unwrap(), "-q", "--checkpoint-every", "4"])
        .spawn()
        .expect("coevo starts");
    let checkpoint = killed.join("checkpoint.json");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("kill");
    child.wait().unwrap();
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
    let dir = scratch("twice");
    let scenario = dir.join("s.ron");
    std::fs::write(&scenario, STATEFUL.replace("rounds: 1500", "rounds: 900")).unwrap();
    let s = scenario.to_str().unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", s, "--out", whole.to_str().unwrap(), "-q"]);
    let mut child =
        Command::new(COEVO).args(["run", s, "--out", killed.to_str().unwrap(), "-q", "--checkpoint-every", "10"]).spawn().unwrap();
    let checkpoint = killed.join("checkpoint.json");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
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
    let dir = scratch("other");
    let a = dir.join("a.ron");
    std::fs::write(&a, STATEFUL.replace("rounds: 1500", "rounds: 600")).unwrap();
    let b = dir.join("b.ron");
    std::fs::write(&b, STATEFUL.replace("rounds: 1500", "rounds: 600").replace("seed: 77", "seed: 78")).unwrap();
    let (run_a, run_b) = (dir.join("run_a"), dir.join("run_b"));
    let mut child = Command::new(COEVO)
        .args(["run", a.to_str().unwrap(), "--out", run_a.to_str().unwrap(), "-q", "--checkpoint-every", "5"])
        .spawn()
        .unwrap();
    let checkpoint = run_a.join("checkpoint.json");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ok(&["run", b.to_str().unwrap(), "--out", run_b.to_str().unwrap(), "-q"]);
    std::fs::copy(&checkpoint, run_b.join("checkpoint.json")).unwrap();
    let out = coevo(&["resume", run_b.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is from another scenario"), "{stderr}");

    // And a folder without a checkpoint says how to get one.
    let out = coevo(&["resume", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--checkpoint-every"));
}
