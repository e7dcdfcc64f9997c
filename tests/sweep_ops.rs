//! Sweeps that survive a cluster (issue 12, parts 1 and 5): SIGTERM stops every running point
//! after its round in flight and a rerun completes the same table; a failing point is
//! recorded while the others run; `--list-points` and `--point K`; claim workers, some killed
//! with SIGKILL, write the table of a single process byte for byte.
//!
//! Unix only: declared under `#[cfg(unix)]` in `tests/tests.rs` (signals are sent with `kill`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::{bytes, coevo, coevo_command, ok, read, stderr, stdout, wait_until, write};

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("sweep_ops", name)
}

/// Four points of a small co-evolution, 20,000 rounds each (every 100th recorded; about half a
/// second of work): long enough that a signal sent once a point's first checkpoint (round
/// 1,000 with `--checkpoint-every 1000`) exists lands while it runs.
const LONG: &str = r#"Scenario(
    name: "ops",
    seed: 5,
    rounds: 20000,
    replicates: 1,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 60),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 60),
    ],
    output: (every: 100, per_text: false),
    sweep: Sweep(parameters: [(path: "captioner.batch", values: [40, 60, 80, 100])]),
)"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Every file below `dir` whose name ends with `.tmp` (left by an atomic write cut short).
fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

fn manifest(point: &Path) -> serde_json::Value {
    serde_json::from_slice(&bytes(&point.join("manifest.json"))).unwrap()
}

/// The folders of the points of `sweep` that exist, in order.
fn point_dirs(sweep: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(sweep.join("points")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

/// The `status` of each row of a `sweep.csv`, with its point.
fn statuses(table: &str) -> Vec<(usize, String)> {
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "status").expect("a status column");
    table.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).map(|f| (f[0].parse().unwrap(), f[col].to_string())).collect()
}

#[test]
fn sigterm_stops_every_running_point_and_a_rerun_completes_the_same_table() {
    let dir = scratch("term");
    let scenario = write(&dir, "ops.ron", LONG);
    let reference = dir.join("reference");
    ok(&["sweep", s(&scenario), "--out", s(&reference), "-q", "--threads", "2"]);

    let swept = dir.join("swept");
    let args = ["sweep", s(&scenario), "--out", s(&swept), "-q", "--threads", "2", "--checkpoint-every", "1000"];
    let mut child = coevo_command(&args).stderr(Stdio::piped()).spawn().expect("coevo starts");
    wait_until(&mut child, "a point's first checkpoint", || point_dirs(&swept).iter().any(|p| p.join("checkpoint.json").exists()));
    kill("TERM", child.id());
    let out = child.wait_with_output().expect("coevo exits");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted") && err.contains("run the same command again"), "{err}");

    // Every point that started either completed or says `interrupted` (none is left
    // `running`); one past round 1,000 kept its checkpoint, so the rerun resumes it.
    let mut resumable = 0;
    for point in point_dirs(&swept) {
        let m = manifest(&point);
        if point.join("done.json").exists() {
            assert_eq!(m["status"], "complete", "{}", point.display());
            continue;
        }
        assert_eq!(m["status"], "interrupted", "{}", point.display());
        if m["rounds_completed"].as_u64().unwrap() >= 1000 {
            assert!(point.join("checkpoint.json").exists(), "{}: no checkpoint to resume from", point.display());
            resumable += 1;
        }
    }
    assert!(resumable >= 1, "the point we waited for was interrupted after its checkpoint");
    assert!(tmp_files(&swept).is_empty(), "stray temporary files: {:?}", tmp_files(&swept));
    // The partial table lists the interrupted points by status.
    let partial = read(&swept.join("sweep.csv"));
    assert!(statuses(&partial).iter().any(|(_, st)| st == "interrupted"), "{partial}");

    let out = ok(&args);
    assert!(out.status.success());
    assert_eq!(bytes(&swept.join("sweep.csv")), bytes(&reference.join("sweep.csv")), "the resumed sweep's table differs");
    assert!(tmp_files(&swept).is_empty());
}

#[test]
fn a_failing_point_is_recorded_the_others_complete_and_merge_reports_it() {
    let dir = scratch("failing");
    let library = crate::plugins::built_library("coevo_plugin_faulty_panic");
    // Points 1 and 3 make the plugin panic in `fit` (turned into an error by the SDK).
    let scenario = write(
        &dir,
        "faults.ron",
        &format!(
            r#"Scenario(name: "faults", seed: 3, rounds: 3, entities: [
    TextModel(name: "captioner", initial: Uniform(3), batch: 50),
    PluginModel(name: "faulty", library: "{library}", model: "panicky", conditioned_on: "captioner",
        params: {{"panic_in": "none"}}, batch: 50),
],
sweep: Sweep(parameters: [
    (path: "captioner.batch", values: [40, 50]),
    (path: "faulty.params.panic_in", values: ["none", "fit"]),
]))"#
        ),
    );
    let out_dir = dir.join("out");
    let run = || coevo(&["sweep", s(&scenario), "--out", s(&out_dir), "-q"]);
    let check_listed = |out: &Output| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("2 point(s) failed"), "{err}");
        for expected in ["point 1 (captioner.batch = 40, faulty.params.panic_in = fit)", "point 3 (captioner.batch = 50", "panic", "fit"] {
            assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        }
        assert!(!err.contains("point 0 ") && !err.contains("point 2 "), "{err}");
    };
    check_listed(&run());
    let table = read(&out_dir.join("sweep.csv"));
    let rows = statuses(&table);
    // Points 0 and 2: a row per model, `ok`; points 1 and 3: one `failed` row each.
    let expected: Vec<(usize, String)> =
        [(0, "ok"), (0, "ok"), (1, "failed"), (2, "ok"), (2, "ok"), (3, "failed")].iter().map(|(i, st)| (*i, st.to_string())).collect();
    assert_eq!(rows, expected, "{table}");
    let width = table.lines().next().unwrap().split(',').count();
    assert!(table.lines().all(|l| l.split(',').count() == width), "a row without the header's columns:\n{table}");
    for failed in ["0001", "0003"] {
        let point = out_dir.join("points").join(failed);
        let error = read(&point.join("error.txt"));
        assert!(error.contains("panic") && error.contains("faulty"), "{error}");
        assert!(manifest(&point)["status"].as_str().unwrap().starts_with("failed"), "{failed}");
        assert!(!point.join("done.json").exists());
    }

    // `coevo merge` writes the same table and lists the failures (exit 1).
    let merged = dir.join("merged");
    let out = coevo(&["merge", s(&out_dir), "--out", s(&merged)]);
    check_listed(&out);
    assert_eq!(read(&merged.join("sweep.csv")), table);

    // A rerun retries the failed points (their runs start again) and not the done ones.
    let done_before = std::fs::metadata(out_dir.join("points/0000/done.json")).unwrap().modified().unwrap();
    let failed_before = std::fs::metadata(out_dir.join("points/0001/manifest.json")).unwrap().modified().unwrap();
    check_listed(&run());
    assert_eq!(std::fs::metadata(out_dir.join("points/0000/done.json")).unwrap().modified().unwrap(), done_before);
    assert!(std::fs::metadata(out_dir.join("points/0001/manifest.json")).unwrap().modified().unwrap() > failed_before, "not retried");
    assert_eq!(read(&out_dir.join("sweep.csv")), table);
}

#[test]
fn list_points_and_single_points_make_the_table_of_a_single_run() {
    let dir = scratch("points");
    // Six short points: the grid of `tests/experiments.rs`.
    let scenario = write(&dir, "grid.ron", crate::experiments::SWEEP);
    let out = ok(&["sweep", s(&scenario), "--list-points"]);
    let mut expected = String::from("point\tcaptioner.batch\tpainter.covariance\n");
    for (i, (batch, cov)) in [30, 90].iter().flat_map(|b| ["0.01", "0.1", "1.0"].map(move |c| (b, c))).enumerate() {
        expected.push_str(&format!("{i}\t{batch}\t{cov}\n"));
    }
    assert_eq!(stdout(&out), expected);
    assert!(!dir.join("out").exists(), "--list-points runs nothing");

    let full = dir.join("full");
    ok(&["sweep", s(&scenario), "--out", s(&full), "-q"]);
    let shared = dir.join("shared");
    for k in 0..5 {
        let out = ok(&["sweep", s(&scenario), "--out", s(&shared), "--point", &k.to_string()]);
        assert!(stdout(&out).contains("is written once every point ended"), "{}", stdout(&out));
        assert!(!shared.join("sweep.csv").exists(), "the table is written only once every point ended");
    }
    ok(&["sweep", s(&scenario), "--out", s(&shared), "--point", "5", "-q"]);
    assert_eq!(bytes(&shared.join("sweep.csv")), bytes(&full.join("sweep.csv")));
    // A done point is not run again.
    let out = ok(&["sweep", s(&scenario), "--out", s(&shared), "--point", "2"]);
    assert!(stdout(&out).contains("6 of 6 points done (0 computed now)"), "{}", stdout(&out));

    let bad = |args: &[&str], expected: &str| {
        let out = coevo(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: expected {expected:?} in {}", stderr(&out));
    };
    bad(&["sweep", s(&scenario), "--out", s(&shared), "--point", "6"], "the sweep has 6 points, numbered 0 to 5");
    bad(&["sweep", s(&scenario), "--out", s(&shared), "--point", "1", "--force"], "--force cannot be combined with --point or --claim");
    bad(&["sweep", s(&scenario), "--point", "1", "--shard", "0/2"], "cannot be used with");
    bad(&["sweep", s(&scenario), "--lease", "3"], "--claim");
    bad(&["sweep", s(&scenario), "--claim", "--lease", "0"], "--lease: a lease must be a positive number of seconds");
}

/// A tiny deterministic generator (xorshift64*) for the kill schedule: which worker dies, and
/// after how many points are done; fixed seed, so the test does the same every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// The point a worker holds a claim on and has not finished, if any (claim files name the
/// worker's pid).
fn held_point(sweep: &Path, pid: u32) -> Option<PathBuf> {
    let claims = std::fs::read_dir(sweep.join("claims")).ok()?;
    for entry in claims {
        let path = entry.ok()?.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.trim_end().ends_with(&format!(" pid {pid}")) {
            continue;
        }
        let name = path.file_name()?.to_str()?;
        let point = sweep.join("points").join(name.split('.').next()?);
        if !point.join("done.json").exists() {
            return Some(point);
        }
    }
    None
}

#[test]
fn claim_workers_killed_at_random_write_the_table_of_a_single_process() {
    let dir = scratch("claims");
    let scenario = write(&dir, "ops.ron", &LONG.replace("[40, 60, 80, 100]", "[40, 50, 60, 70, 80, 90, 100, 110]"));
    let reference = dir.join("reference");
    ok(&["sweep", s(&scenario), "--out", s(&reference), "-q"]);

    let shared = dir.join("shared");
    let worker = || -> Child {
        let args =
            ["sweep", s(&scenario), "--out", s(&shared), "-q", "--threads", "1", "--claim", "--lease", "1", "--checkpoint-every", "1000"];
        coevo_command(&args).stderr(Stdio::piped()).spawn().expect("a worker starts")
    };
    let mut workers: Vec<Child> = (0..3).map(|_| worker()).collect();
    let mut dice = Dice(0x00C0_FFEE);
    let mut killed = Vec::new();
    // Two kills, each of a worker drawn at random, once it holds a point that has a
    // checkpoint: its claim must expire and another worker resume the point from there. The
    // point's last checkpoint is at most round 10,000 (of 20,000), so it is still running
    // when the kill lands a few milliseconds later.
    for _ in 0..2 {
        let victim = workers.remove(dice.below(workers.len()));
        let pid = victim.id();
        let mut watcher = workers.pop().expect("a live worker");
        wait_until(&mut watcher, "the victim to hold a checkpointed point", || {
            held_point(&shared, pid).is_some_and(|p| {
                p.join("checkpoint.json").exists()
                    && std::fs::read(p.join("manifest.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .is_some_and(|m| {
                            m["status"] == "running" && m["rounds_completed"].as_u64().is_some_and(|r| (1000..=10_000).contains(&r))
                        })
            })
        });
        workers.push(watcher);
        let point = held_point(&shared, pid).expect("still held: the point has 10,000 rounds to go");
        kill("KILL", pid);
        let mut victim = victim;
        let _ = victim.wait();
        killed.push(point);
    }
    for w in workers {
        let out = w.wait_with_output().expect("a worker exits");
        assert!(out.status.success(), "a surviving worker failed: {}", stderr(&out));
    }
    assert_eq!(bytes(&shared.join("sweep.csv")), bytes(&reference.join("sweep.csv")), "the claim workers' table differs");
    // Each killed worker's point was taken over (a claim of generation 1) and completed.
    for point in killed {
        let name = point.file_name().unwrap().to_str().unwrap();
        assert!(shared.join("claims").join(format!("{name}.1")).exists(), "point {name} was not taken over");
        assert!(point.join("done.json").exists());
    }
    assert!(tmp_files(&shared.join("points")).is_empty(), "{:?}", tmp_files(&shared));
}
