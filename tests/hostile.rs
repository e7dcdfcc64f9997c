//! Hostile inputs and faults (issue 13): scenarios, folders and checkpoints that someone else
//! prepared, full disks, concurrent writers and signals. Each test is a regression test of one
//! problem found by an adversarial campaign; each drives the `coevo` binary as a user would.
//!
//! - sizes: a scenario that cannot fit is refused (exit 2) before anything of its size is
//!   allocated, naming the fields that drive the estimate; sizes never wrap;
//! - confined writes: a scenario names only a folder below its own; planted links are never
//!   written through; `--out a/missing/../b` does not slip past the overwrite guard;
//! - the folder lock, a full disk (a file size limit, `RLIMIT_FSIZE`), checkpoint corruptions;
//! - small ones: a closed stdout, escape sequences and huge names in messages, `--threads`,
//!   coordinates near `f64::MAX`, an interrupt inside a long round.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::{bytes, coevo, coevo_command, ok, read, scratch, stderr, stdout, wait_until, write};

/// A scenario of a few milliseconds: `entities` inside, `extra` top-level fields after them.
fn tiny(entities: &str, extra: &str) -> String {
    format!(
        "Scenario(name: \"tiny\", seed: 3, rounds: 4, entities: [TextModel(name: \"a\", batch: 50), ImageModel(name: \"b\", conditioned_on: \"a\", batch: 50), {entities}], {extra})"
    )
}

/// Runs `coevo args...` and asserts exit code 2 (bad input) with every one of `expected` in
/// stderr; returns stderr.
fn refused(args: &[&str], expected: &[&str]) -> String {
    let out = coevo(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "coevo {args:?} should be refused as bad input; stderr: {err}");
    for e in expected {
        assert!(err.contains(e), "coevo {args:?}: stderr lacks {e:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

// ---------------------------------------------------------------- sizes

#[test]
fn scenarios_too_large_for_memory_are_refused_before_allocating_naming_the_fields() {
    let dir = scratch("hostile", "sizes");
    // 1e9 texts: the caption log-likelihoods alone are 1000 x 1e9 x 8 bytes = 8 TB. Before,
    // validation built p (8 GB) to check the plugin models.
    let huge_k = write(&dir, "k.ron", "Scenario(name: \"k\", rounds: 1, entities: [TextModel(name: \"a\", initial: Uniform(1000000000))])");
    refused(&["validate", huge_k.to_str().unwrap()], &["k.ron:1:", "TextModel \"a\"", "of memory", "TiB", "--max-memory"]);
    // 2^63 texts: was a `capacity overflow` panic.
    let k63 = write(
        &dir,
        "k63.ron",
        "Scenario(name: \"k\", rounds: 1, entities: [TextModel(name: \"a\", initial: Uniform(9223372036854775808))])",
    );
    refused(&["validate", k63.to_str().unwrap()], &["k63.ron:1:", "of memory"]);
    // An image model's batch of 2^63 with K = 1: wrapped to a silent no-op refit (exit 0).
    let batch = write(
        &dir,
        "batch.ron",
        "Scenario(name: \"b\", rounds: 1, entities: [TextModel(name: \"a\", initial: Uniform(1)), ImageModel(name: \"b\", conditioned_on: \"a\", batch: 9223372036854775808)])",
    );
    refused(&["run", batch.to_str().unwrap(), "--out", dir.join("b").to_str().unwrap()], &["ImageModel \"b\").batch", "of memory"]);
    assert!(!dir.join("b").exists(), "nothing is written for a refused scenario");
    // A billion replicates; u64::MAX for Accumulate's initial data.
    let reps = write(&dir, "reps.ron", &tiny("", "replicates: 1000000000"));
    refused(&["validate", reps.to_str().unwrap()], &["of memory"]);
    let acc = write(
        &dir,
        "acc.ron",
        "Scenario(name: \"acc\", rounds: 1, entities: [TextModel(name: \"a\"), ImageModel(name: \"b\", conditioned_on: \"a\", data: Accumulate(initial: 18446744073709551615))])",
    );
    refused(&["validate", acc.to_str().unwrap()], &["(ImageModel \"b\").data", "real samples"]);
    // --max-memory overrides the machine's figure, both ways.
    let paper = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/coevolve.ron");
    refused(&["validate", "--max-memory", "1K", paper.to_str().unwrap()], &["coevolve.ron:", "more than 1.0 KiB (--max-memory)"]);
    let fine = ok(&["validate", "--max-memory", "1G", paper.to_str().unwrap()]);
    assert!(stdout(&fine).contains("of memory"), "validate shows the estimate: {}", stdout(&fine));
}

#[test]
fn sweeps_whose_point_count_overflows_are_refused() {
    let dir = scratch("hostile", "sweep_points");
    let injectors: Vec<String> =
        (0..32).map(|i| format!("CorpusInjector(name: \"c{i}\", target: \"a\", alpha: 0.0, eps: 0.0, distribution: Uniform)")).collect();
    let parameters: Vec<String> = (0..32)
        .flat_map(|i| [format!("(path: \"c{i}.alpha\", values: [0.0, 0.1])"), format!("(path: \"c{i}.eps\", values: [0.0, 0.1])")])
        .collect();
    // 2^64 points: wrapped to 0 points and exit 0.
    let all = write(&dir, "sweep64.ron", &tiny(&injectors.join(", "), &format!("sweep: Sweep(parameters: [{}])", parameters.join(", "))));
    refused(&["sweep", all.to_str().unwrap(), "--out", dir.join("s").to_str().unwrap()], &["sweep", "18446744073709551616 points"]);
    // 2^22 points: validated, then spent minutes building every point.
    let some =
        write(&dir, "sweep22.ron", &tiny(&injectors.join(", "), &format!("sweep: Sweep(parameters: [{}])", parameters[..22].join(", "))));
    refused(&["validate", "--max-memory", "1G", some.to_str().unwrap()], &["sweep", "4194304 points"]);
}

/// A round of a billion text steps stops within one step of SIGINT (it ignored SIGINT for 29
/// minutes): the round in progress is not written, every earlier round is, exit 130.
#[cfg(unix)]
#[test]
fn an_interrupt_stops_a_round_of_a_billion_steps() {
    let dir = scratch("hostile", "long_round");
    let scenario = write(
        &dir,
        "long.ron",
        "Scenario(name: \"long\", rounds: 2, entities: [TextModel(name: \"a\", batch: 10, steps: 1000000000), ImageModel(name: \"b\", conditioned_on: \"a\", batch: 10)])",
    );
    let out = dir.join("out");
    let mut child = coevo_command(&["run", scenario.to_str().unwrap(), "-q", "--out", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("coevo starts");
    // Round 0 (the initial state) is written before the first long round starts.
    let metrics = out.join("metrics.csv");
    wait_until(&mut child, "round 0 in metrics.csv", || std::fs::read_to_string(&metrics).is_ok_and(|t| t.contains("\n0,0,")));
    interrupt(&child);
    // Bounded: the harness would hang (not fail) otherwise; a step takes microseconds.
    let done = child.wait_with_output().expect("coevo exits");
    assert_eq!(done.status.code(), Some(130), "{}", String::from_utf8_lossy(&done.stderr));
    let manifest: serde_json::Value = serde_json::from_str(&read(&out.join("manifest.json"))).unwrap();
    assert_eq!((manifest["status"].as_str(), manifest["rounds_completed"].as_u64()), (Some("interrupted"), Some(0)));
    assert!(read(&metrics).lines().skip(1).all(|l| l.starts_with("0,0,")), "only round 0 is on disk");
}

// ---------------------------------------------------------------- confined writes

#[test]
fn a_scenario_names_only_a_folder_below_its_own() {
    let dir = scratch("hostile", "confined");
    for (dir_value, why) in [
        ("/etc/cron.d", "is absolute"),
        ("../../../etc", "has a `.` or `..` component"),
        ("runs/../../x", "has a `.` or `..` component"),
        (".", "has a `.` or `..` component"),
        ("", "is empty"),
    ] {
        let s = write(&dir, "s.ron", &tiny("", &format!("output: (dir: {dir_value:?})")));
        refused(&["run", s.to_str().unwrap()], &["s.ron:1:", "output.dir", why, "--out"]);
    }
    for name in ["..", ".", "a/b"] {
        let s = write(&dir, "n.ron", &tiny("", "").replace("name: \"tiny\"", &format!("name: {name:?}")));
        refused(&["validate", s.to_str().unwrap()], &["n.ron:1:", "scenario name"]);
    }
    // A relative folder is joined to the scenario's own folder (not the working directory).
    let s = write(&dir, "ok.ron", &tiny("", "output: (dir: \"runs/ok\")"));
    ok(&["run", s.to_str().unwrap(), "-q"]);
    assert!(dir.join("runs/ok/metrics.csv").exists());
}

#[test]
fn out_through_a_missing_folder_does_not_bypass_the_overwrite_guard() {
    let dir = scratch("hostile", "dotdot");
    let s = write(&dir, "s.ron", &tiny("", ""));
    let run = dir.join("runs/run");
    ok(&["run", s.to_str().unwrap(), "-q", "--out", run.to_str().unwrap()]);
    let before = bytes(&run.join("metrics.csv"));
    let sneaky = dir.join("runs/missing/../run");
    refused(&["run", s.to_str().unwrap(), "-q", "--seed", "9", "--out", sneaky.to_str().unwrap()], &["already holds a run"]);
    assert_eq!(bytes(&run.join("metrics.csv")), before, "the existing run is untouched");
    assert!(!dir.join("runs/missing").exists());
}

#[cfg(unix)]
#[test]
fn planted_links_are_never_written_through() {
    let dir = scratch("hostile", "links");
    let s = write(&dir, "s.ron", &tiny("", ""));
    let victim = write(&dir, "victim", "precious");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A link in place of a table: refused, naming it; the victim is untouched.
    std::os::unix::fs::symlink(&victim, out.join("metrics.csv")).unwrap();
    let run = coevo(&["run", s.to_str().unwrap(), "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("metrics.csv is a symbolic link"), "{}", stderr(&run));
    assert_eq!(read(&victim), "precious");
    // A link in place of a file written atomically (the manifest) is replaced, not followed
    // (the link to an existing file reads as a run in the folder: --force).
    std::fs::remove_file(out.join("metrics.csv")).unwrap();
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("manifest.json")).unwrap();
    ok(&["run", s.to_str().unwrap(), "-q", "--force", "--out", out.to_str().unwrap()]);
    assert_eq!(read(&victim), "precious");
    assert!(!std::fs::symlink_metadata(out.join("manifest.json")).unwrap().file_type().is_symlink());
    let leftovers: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(leftovers.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {leftovers:?}");
}

// ---------------------------------------------------------------- concurrent writers

/// Starts a run of `tiny` (in `dir`) of 1e8 rounds into `dir/out`, and waits until its
/// metrics table holds 10 kB.
#[cfg(unix)]
fn start_long_run(dir: &Path) -> (std::process::Child, PathBuf, PathBuf) {
    let s = write(dir, "s.ron", &tiny("", ""));
    let out = dir.join("out");
    let mut child = coevo_command(&["run", s.to_str().unwrap(), "-q", "--rounds", "100000000", "--out", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("coevo starts");
    let metrics = out.join("metrics.csv");
    wait_until(&mut child, "rows in metrics.csv", || std::fs::metadata(&metrics).is_ok_and(|m| m.len() > 10_000));
    (child, s, out)
}

/// Sends SIGINT to `child`.
#[cfg(unix)]
fn interrupt(child: &std::process::Child) {
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
}

#[cfg(unix)]
#[test]
fn a_folder_in_use_is_refused_even_with_force() {
    let (first, s, out) = start_long_run(&scratch("hostile", "lock"));
    let second = coevo(&["run", s.to_str().unwrap(), "-q", "--force", "--out", out.to_str().unwrap()]);
    let err = stderr(&second);
    interrupt(&first);
    let first = first.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("in use by another coevo run") && err.contains(out.to_str().unwrap()), "{err}");
    assert_eq!(first.status.code(), Some(130), "the first run is undisturbed: {}", String::from_utf8_lossy(&first.stderr));
    let manifest: serde_json::Value = serde_json::from_str(&read(&out.join("manifest.json"))).unwrap();
    assert_eq!(manifest["status"], "interrupted");
    // Once the first run has ended, the folder is free again.
    ok(&["run", s.to_str().unwrap(), "-q", "--force", "--out", out.to_str().unwrap()]);
}

// ---------------------------------------------------------------- a full disk

/// A disk that fills up mid-run, simulated by a file size limit (`RLIMIT_FSIZE`, with
/// SIGXFSZ ignored so writes past it fail with EFBIG, as they fail with ENOSPC on a full
/// disk): the run fails (exit 1) naming the table and the first error, the table ends with the
/// last whole round, the manifest says `failed`, and no temporary file is left.
#[cfg(unix)]
#[test]
fn a_full_disk_leaves_whole_rounds_the_first_error_and_a_failed_manifest() {
    use std::os::unix::process::CommandExt;
    let dir = scratch("hostile", "full");
    let s = write(&dir, "s.ron", &tiny("", "replicates: 3"));
    let out = dir.join("out");
    const LIMIT: u64 = 100_000;
    let mut cmd = coevo_command(&["run", s.to_str().unwrap(), "-q", "--rounds", "1000000", "--out", out.to_str().unwrap()]);
    // SAFETY: between fork and exec the closure calls only setrlimit and signal, both
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: LIMIT, rlim_max: LIMIT };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = cmd.output().expect("coevo runs");
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    // The first error is the table's (EFBIG: "File too large"), not a later one.
    assert!(err.contains("metrics.csv") && err.contains("too large"), "{err}");
    let table = read(&out.join("metrics.csv"));
    assert!(table.len() as u64 <= LIMIT && table.ends_with('\n'), "torn last row ({} bytes)", table.len());
    let mut rows_per_round = std::collections::BTreeMap::<u64, usize>::new();
    for line in table.lines().skip(1) {
        *rows_per_round.entry(line.split(',').nth(1).unwrap().parse().unwrap()).or_default() += 1;
    }
    let per_round = rows_per_round[&0];
    assert!(rows_per_round.values().all(|&n| n == per_round), "a round is cut: {rows_per_round:?}");
    let manifest: serde_json::Value = serde_json::from_str(&read(&out.join("manifest.json"))).unwrap();
    let status = manifest["status"].as_str().unwrap();
    assert!(status.starts_with("failed") && status.contains("metrics.csv"), "{status}");
    assert_eq!(manifest["rounds_completed"].as_u64(), rows_per_round.keys().next_back().copied());
    let names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {names:?}");
}

// ---------------------------------------------------------------- checkpoints

/// A folder killed after its first checkpoint (the STATEFUL scenario of tests/checkpoint.rs
/// is not needed: any run with a checkpoint does).
fn checkpointed(dir: &Path) -> PathBuf {
    let s = write(dir, "s.ron", &tiny("", "replicates: 2").replace("rounds: 4", "rounds: 200000"));
    let folder = dir.join("killed");
    crate::checkpoint::kill_after_first_checkpoint(&s, &folder, "2");
    folder
}

/// Copies the files of `from` into a fresh `to`.
fn copy_folder(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every corruption the campaign tried: each resume is refused (exit 2, `what` in the
/// message), and the tables are byte for byte what they were.
#[test]
fn corrupt_checkpoints_are_refused_before_any_table_is_touched() {
    use coevo::checkpoint::{Checkpoint, decode_f64s, encode_f64s};
    let dir = scratch("hostile", "checkpoints");
    let good = checkpointed(&dir);
    let text = read(&good.join("checkpoint.json"));
    let original: Checkpoint = serde_json::from_str(&text).unwrap();
    type Edit = Box<dyn Fn(&mut Checkpoint)>;
    let edits: Vec<(&str, Edit, bool, &str)> = vec![
        // (name, edit, re-sealed with a valid checksum, expected in the message)
        ("round+1", Box::new(|c| c.round += 1), false, "sha256"),
        ("round max", Box::new(|c| c.round = u64::MAX), false, "sha256"),
        ("stream+1", Box::new(bump_stream), false, "sha256"),
        ("metrics 0", Box::new(|c| c.metrics_bytes = 0), false, "sha256"),
        ("p bit", Box::new(flip_p_bit), false, "sha256"),
        ("p nan", Box::new(|c| set_p(c, f64::NAN)), false, "sha256"),
        // Forged with a valid checksum: the field checks still refuse them.
        ("sealed round+1", Box::new(|c| c.round += 1), true, "replicate 0 is at round"),
        ("sealed round max", Box::new(|c| c.round = u64::MAX), true, "is not a round a checkpoint is taken at"),
        ("sealed p nan", Box::new(|c| set_p(c, f64::NAN)), true, "NaN, not a probability"),
        ("sealed metrics 0", Box::new(|c| c.metrics_bytes = 0), true, "inside its header"),
        ("sealed metrics mid-row", Box::new(|c| c.metrics_bytes -= 3), true, "inside a row"),
        ("sealed metrics past the end", Box::new(|c| c.metrics_bytes += 1 << 40), true, "the table was truncated or replaced"),
    ];
    fn first_text(c: &mut Checkpoint) -> &mut coevo::checkpoint::TextState {
        c.worlds[0].entities.iter_mut().find_map(|e| e.text.as_mut()).expect("a text model")
    }
    fn set_p(c: &mut Checkpoint, v: f64) {
        let t = first_text(c);
        let mut p = decode_f64s(&t.p).unwrap();
        p[0] = v;
        t.p = encode_f64s(&p);
    }
    fn flip_p_bit(c: &mut Checkpoint) {
        let t = first_text(c);
        let mut p = decode_f64s(&t.p).unwrap();
        p[1] = f64::from_bits(p[1].to_bits() ^ 1);
        t.p = encode_f64s(&p);
    }
    fn bump_stream(c: &mut Checkpoint) {
        let s = c.worlds[0].entities.iter_mut().find_map(|e| e.stream.as_mut()).expect("a stream");
        s.word_pos = (s.word_pos.parse::<u128>().unwrap() + 1).to_string();
    }
    for (name, edit, seal, expected) in edits {
        let folder = dir.join("case");
        copy_folder(&good, &folder);
        let mut c = original.clone();
        edit(&mut c);
        if seal {
            c.seal();
        }
        std::fs::write(folder.join("checkpoint.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        let tables: Vec<Vec<u8>> =
            ["metrics.csv", "aggregate.csv", "phases.csv", "manifest.json"].iter().map(|f| bytes(&folder.join(f))).collect();
        let err = refused(&["resume", folder.to_str().unwrap(), "-q"], &["checkpoint.json", expected]);
        assert!(err.contains("corrupt checkpoint"), "{name}: {err}");
        for (f, before) in ["metrics.csv", "aggregate.csv", "phases.csv", "manifest.json"].iter().zip(&tables) {
            assert!(bytes(&folder.join(f)) == *before, "{name}: {f} was changed by a refused resume");
        }
    }
    // The untouched checkpoint's checksum holds (tests/checkpoint.rs resumes such checkpoints
    // to the byte; resuming this one would run its 200000 rounds).
    let read = Checkpoint::read(&good.join("checkpoint.json"));
    assert!(read.is_ok(), "{:?}", read.err());
}

// ---------------------------------------------------------------- small ones

#[cfg(unix)]
#[test]
fn a_closed_stdout_is_not_a_failure() {
    let dir = scratch("hostile", "pipe");
    let s = write(&dir, "s.ron", &tiny("", ""));
    // `coevo run ... | head -0`: the reader is gone before the summary is printed.
    let mut child = coevo_command(&["run", s.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(dir.join("out/summary.json").exists());
}

#[test]
fn escape_sequences_and_huge_names_are_not_echoed_raw() {
    let dir = scratch("hostile", "echo");
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J";
    let s = write(&dir, "e.ron", &tiny("", "").replace("name: \"a\"", &format!("name: \"{evil}\"")));
    let err = refused(&["validate", s.to_str().unwrap()], &["e.ron:1:", "control character"]);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "raw escape in {err:?}");
    let long = "x".repeat(1 << 20);
    let s = write(&dir, "l.ron", &tiny("", "").replace("name: \"tiny\"", &format!("name: \"{long}\"")));
    let err = refused(&["validate", s.to_str().unwrap()], &["l.ron:1:", "at most 255 bytes", "more characters"]);
    assert!(err.len() < 20_000, "a 1 MB name is echoed: {} bytes of stderr", err.len());
}

#[test]
fn coordinates_that_overflow_the_log_densities_are_refused() {
    let dir = scratch("hostile", "overflow");
    let s = write(
        &dir,
        "m.ron",
        "Scenario(name: \"m\", rounds: 2, entities: [TextModel(name: \"a\", initial: Uniform(2)), ImageModel(name: \"b\", conditioned_on: \"a\", means: Explicit([[1e308, 0.0], [0.0, -1e308]]))])",
    );
    refused(&["validate", s.to_str().unwrap()], &["m.ron:1:", "means", "magnitude at most 1e100"]);
}

#[test]
fn absurd_thread_counts_are_capped_with_a_note() {
    let dir = scratch("hostile", "threads");
    let s = write(&dir, "s.ron", &tiny("", ""));
    let out = ok(&["run", s.to_str().unwrap(), "-q", "--threads", "100000", "--out", dir.join("out").to_str().unwrap()]);
    assert!(stderr(&out).contains("--threads 100000 capped at"), "{}", stderr(&out));
}

/// Validation was quadratic in the number of entities (2e4 entities took 8 s); 2e4 now
/// validate in a fraction of that (this test checks the run completes and is correct; speed
/// is not timed in tests).
#[test]
fn twenty_thousand_entities_validate() {
    let dir = scratch("hostile", "many");
    let mut entities = vec!["TextModel(name: \"t\", initial: Uniform(3))".to_string()];
    entities.extend((0..20_000).map(|i| format!("Temperature(name: \"h{i}\", target: \"m{i}\", t: 1.0)")));
    entities.extend((0..20_000).map(|i| format!("ImageModel(name: \"m{i}\", conditioned_on: \"t\", batch: 2)")));
    // Every image model has its own sampler: one per model is allowed.
    let s = write(&dir, "many.ron", &format!("Scenario(name: \"many\", rounds: 1, entities: [{}])", entities.join(",\n")));
    let out = ok(&["validate", s.to_str().unwrap()]);
    assert!(stdout(&out).contains("ok (40001 entities"), "{}", stdout(&out));
}

/// `coevo plot` on traces near `f64::MAX` (axis ranges padded past it were infinite, and the
/// tick computation never ended): the figures are drawn.
#[test]
fn plots_of_values_near_the_largest_float_are_drawn() {
    let dir = scratch("hostile", "plot_huge");
    let s = write(&dir, "s.ron", &tiny("", "replicates: 2"));
    let out = dir.join("out");
    ok(&["run", s.to_str().unwrap(), "-q", "--out", out.to_str().unwrap()]);
    for table in ["metrics.csv", "aggregate.csv"] {
        let text = read(&out.join(table));
        let huge: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                if i == 0 || !line.contains("trace") {
                    return line.to_string();
                }
                // The value (metrics) or the statistics after `n` (aggregate), both from the
                // sixth column on, become +-1.7e308.
                let fields: Vec<&str> = line.split(',').collect();
                let huge = |j: usize| if j.is_multiple_of(2) { "-1.7e308" } else { "1.7e308" };
                fields.iter().enumerate().map(|(j, f)| if j >= 5 { huge(j) } else { f }).collect::<Vec<_>>().join(",")
            })
            .collect();
        std::fs::write(out.join(table), huge.join("\n") + "\n").unwrap();
    }
    let plotted = coevo(&["plot", out.to_str().unwrap()]);
    assert!(plotted.status.success(), "{}", stderr(&plotted));
    assert!(out.join("figures").read_dir().unwrap().count() > 0);
}

/// A second SIGINT exits at once, with 130 as the first does (it exited 1).
#[cfg(unix)]
#[test]
fn a_second_interrupt_also_exits_130() {
    let (child, _, _) = start_long_run(&scratch("hostile", "second_int"));
    interrupt(&child);
    interrupt(&child);
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", String::from_utf8_lossy(&done.stderr));
}
