//! The command line as a user meets it: bad input is answered (exit code 2, a message that
//! names the file and line:col or the field and says what would be valid), help is complete,
//! runs are reproducible whatever the thread count, and a killed run leaves a readable table.
//!
//! Also the shell's side (completions, man page, hidden bench-round, no colour codes off a
//! terminal, the `next:` hint, exit codes), what the CLI's progress bar is told by the library,
//! and that the library never names the CLI's crates (clap, indicatif, signal-hook,
//! tracing-subscriber).
//!
//! Tests drive the real binary, except the two about the library's progress reports and
//! number format. Bad scenarios live in `tests/fixtures/`, one per kind of mistake; ready
//! scenarios are the files in `scenarios/`.

use std::path::Path;

use std::collections::BTreeSet;

use crate::common::{coevo, coevo_command, coevo_with, scratch, stderr, stdout, wait_until};

/// `coevo run` on `tests/fixtures/<fixture>.ron` must exit with code 2, write nothing, and
/// say each of `expected` on stderr (the location and what would be valid). Returns stderr.
fn rejects(fixture: &str, expected: &[&str]) -> String {
    let dir = scratch("cli", fixture);
    let out_dir = dir.join("out");
    let file = format!("tests/fixtures/{fixture}.ron");
    let out = coevo(&["run", &file, "--out", out_dir.to_str().unwrap(), "--quiet"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{file}: expected exit code 2 (bad input); stderr:\n{err}");
    assert!(err.contains(&file), "{file}: the message must name the file; stderr:\n{err}");
    for e in expected {
        assert!(err.contains(e), "{file}: the message must say {e:?}; stderr:\n{err}");
    }
    assert!(!out_dir.exists(), "{file}: a rejected scenario must not create its output folder");
    assert!(!err.contains("panicked"), "{file}: bad input must be answered, not crash:\n{err}");
    // `validate` gives the same answer without running.
    let v = coevo(&["validate", &file]);
    assert_eq!(v.status.code(), Some(2), "{file}: validate must also exit 2");
    assert_eq!(stderr(&v), err, "{file}: validate and run must report the same problems");
    err
}

// ---------------------------------------------------------------- syntax: file:line:col

#[test]
fn malformed_ron_is_located() {
    // The `TextModel(` opened on line 5 is never closed: the parser stops at the `]`.
    rejects("malformed", &["tests/fixtures/malformed.ron:6:5:", "Expected comma", "needs its closing `)`"]);
}

#[test]
fn unknown_field_lists_the_valid_ones() {
    rejects(
        "unknown_field",
        &["tests/fixtures/unknown_field.ron:5:38:", "`batchsize`", "expected one of `name`, `initial`, `batch`, `steps`"],
    );
}

#[test]
fn unknown_entity_kind_lists_the_valid_ones() {
    rejects("unknown_entity", &["tests/fixtures/unknown_entity.ron:6:9:", "`VideoModel`", "`TextModel`, `ImageModel`, `Temperature`"]);
}

#[test]
fn wrong_type_names_the_field_and_the_expected_type() {
    rejects("wrong_type", &["tests/fixtures/wrong_type.ron:3:12:", "Expected integer", "`rounds` expects a whole number"]);
}

#[test]
fn negative_count_names_the_field() {
    rejects("batch_negative", &["tests/fixtures/batch_negative.ron:6:", "`batch` expects a non-negative whole number"]);
}

#[test]
fn missing_temperature_target_is_named() {
    rejects("temperature_no_target", &["tests/fixtures/temperature_no_target.ron:6:", "missing field named `target`"]);
}

// ---------------------------------------------------------------- semantics: field paths

#[test]
fn probabilities_not_summing_to_one() {
    rejects("p_sum", &["p_sum.ron:5:38:", "entities[0] (TextModel \"captioner\").initial", "sum to 1.1", "rescale them so they sum to 1"]);
}

#[test]
fn negative_probability() {
    rejects("p_negative", &["entities[0] (TextModel \"captioner\").initial", "probability [1] = -0.1", "every entry must be >= 0"]);
}

#[test]
fn asymmetric_covariance() {
    rejects(
        "cov_asymmetric",
        &["cov_asymmetric.ron:9:13:", "entities[1] (ImageModel \"painter\").covariance", "not symmetric", "[r][c] equal to [c][r]"],
    );
}

#[test]
fn covariance_not_positive_semidefinite() {
    rejects(
        "cov_not_psd",
        &["entities[1] (ImageModel \"painter\").covariance", "not positive semi-definite", "-1.000000e-1", "every eigenvalue >= 0"],
    );
}

#[test]
fn means_of_the_wrong_length() {
    rejects("means_dim", &["entities[1] (ImageModel \"painter\").means", "mean [1] has 3 coordinates, expected dim = 2"]);
}

#[test]
fn covariance_of_the_wrong_size() {
    rejects("cov_size", &["entities[1] (ImageModel \"painter\").covariance", "must be 2 x 2 (dim = 2)", "[3, 3, 3]"]);
}

#[test]
fn per_text_covariances_must_match_the_text_count() {
    rejects("pertext_count", &["entities[1] (ImageModel \"painter\").covariance", "PerText gives 2 covariances", "K = 3 texts"]);
}

#[test]
fn batch_of_zero() {
    rejects("batch_zero", &["batch_zero.ron:5:38:", "entities[0] (TextModel \"captioner\").batch", "must be at least 1, got 0"]);
}

#[test]
fn wiring_to_a_missing_name() {
    rejects(
        "wiring_missing",
        &["entities[1] (ImageModel \"painter\").conditioned_on", "no entity is called `captionr`", "valid text models: `captioner`"],
    );
}

#[test]
fn conditioning_cycle() {
    let err =
        rejects("cycle", &["entities[1] (ImageModel \"A\").conditioned_on", "conditioning cycle A -> B -> A", "must end at a TextModel"]);
    assert!(err.contains("cycle B -> A -> B"), "both members of the cycle are reported:\n{err}");
}

#[test]
fn self_conditioning() {
    rejects("self_conditioned", &["entities[1] (ImageModel \"painter\").conditioned_on", "conditioned on itself", "TextModel"]);
}

#[test]
fn non_positive_temperature() {
    rejects("temperature_nonpositive", &["entities[1] (Temperature \"heat\").t", "T = 0 is invalid", "finite number > 0"]);
}

#[test]
fn temperature_target_that_does_not_exist() {
    rejects("temperature_unknown_target", &["entities[1] (Temperature \"heat\").target", "no entity is called `nobody`"]);
}

#[test]
fn duplicate_names() {
    rejects("duplicate_names", &["entities[1] (ImageModel \"captioner\").name", "two entities are called `captioner`", "must be unique"]);
}

// ---------------------------------------------------------------- files and folders

#[test]
fn missing_scenario_file_names_the_path() {
    for args in [&["run", "scenarios/no_such_scenario.ron"][..], &["validate", "scenarios/no_such_scenario.ron"]] {
        let out = coevo(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("scenarios/no_such_scenario.ron") && err.contains("cannot read scenario"), "{args:?}: {err}");
    }
}

#[test]
fn existing_run_is_not_overwritten_without_force() {
    let dir = scratch("cli", "existing_run").join("out");
    let out_dir = dir.to_str().unwrap();
    let first = coevo(&["run", "scenarios/coevolve.ron", "--out", out_dir, "--rounds", "2", "--quiet"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let before = std::fs::read(dir.join("metrics.csv")).unwrap();

    let again = coevo(&["run", "scenarios/coevolve.ron", "--out", out_dir, "--rounds", "3", "--quiet"]);
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(err.contains(out_dir) && err.contains("already holds a run") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("metrics.csv")).unwrap(), before, "a refused run must leave the old one untouched");

    let forced = coevo(&["run", "scenarios/coevolve.ron", "--out", out_dir, "--rounds", "3", "--quiet", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_ne!(std::fs::read(dir.join("metrics.csv")).unwrap(), before, "--force overwrites");
}

#[test]
fn bad_command_line_values_exit_2() {
    for args in [
        &["run", "scenarios/coevolve.ron", "--rounds", "0"][..],
        &["run", "scenarios/coevolve.ron", "--threads", "-1"],
        &["run", "scenarios/coevolve.ron", "--no-such-flag"],
        &["run", "scenarios/coevolve.ron", "--vectors", "avx1024"],
        &["run"],
        &["validate"],
    ] {
        let out = coevo(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error:"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn every_ready_scenario_validates() {
    let mut files: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        // Scenarios with plugin models need their plugin library built first (`cargo test`
        // does not build cdylib members); the plugin tests build and validate those.
        .filter(|p| !std::fs::read_to_string(p).unwrap().contains("PluginModel("))
        .map(|p| format!("scenarios/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the ready scenarios are missing: {files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = coevo(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in &files {
        assert!(stdout(&out).contains(&format!("{f}: ok")), "{f} not reported ok:\n{}", stdout(&out));
    }
}

// ---------------------------------------------------------------- help

#[test]
fn help_is_complete() {
    let top = coevo(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let top = stdout(&top);
    for word in ["run", "validate", "RUST_LOG", "--help", "--version"] {
        assert!(top.contains(word), "coevo --help must mention {word}:\n{top}");
    }
    let run = coevo(&["run", "--help"]);
    assert_eq!(run.status.code(), Some(0));
    let run = stdout(&run);
    for word in
        ["<SCENARIO>", "--out", "--force", "--seed", "--rounds", "--replicates", "--threads", "--quiet", "metrics.csv", "manifest.json"]
    {
        assert!(run.contains(word), "coevo run --help must mention {word}:\n{run}");
    }
    let validate = coevo(&["validate", "--help"]);
    assert_eq!(validate.status.code(), Some(0));
    let validate = stdout(&validate);
    for word in ["<SCENARIOS>...", "exit code 2"] {
        assert!(validate.contains(word), "coevo validate --help must mention {word}:\n{validate}");
    }
}

// ---------------------------------------------------------------- determinism

/// Runs `coevolve.ron` for 60 rounds and 3 replicates with `extra` arguments; returns
/// metrics.csv. 60 rounds are enough for every stream to have been drawn from many times.
fn coevolve_metrics(test: &str, extra: &[&str]) -> Vec<u8> {
    let dir = scratch("cli", test).join("out");
    let mut args = vec!["run", "scenarios/coevolve.ron", "--out", dir.to_str().unwrap(), "--rounds", "60", "--replicates", "3", "--quiet"];
    args.extend_from_slice(extra);
    let out = coevo(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::read(dir.join("metrics.csv")).unwrap()
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let one = coevolve_metrics("det_threads1", &["--threads", "1"]);
    let four = coevolve_metrics("det_threads4", &["--threads", "4"]);
    let again = coevolve_metrics("det_again", &["--threads", "1"]);
    // Header + 61 rounds (0..=60) x 3 replicates of rows.
    assert!(one.len() > 10_000, "metrics.csv suspiciously short: {} bytes", one.len());
    assert!(one == four, "metrics.csv differs between --threads 1 and --threads 4");
    assert!(one == again, "metrics.csv differs between two identical runs");
    let replicates: std::collections::BTreeSet<&str> =
        std::str::from_utf8(&one).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(replicates.into_iter().collect::<Vec<_>>(), ["0", "1", "2"]);

    let other = coevolve_metrics("det_other_seed", &["--threads", "1", "--seed", "2026"]);
    assert!(one != other, "a different seed must give different numbers");
    // Round 0 is the initial state, identical whatever the seed; the seeds differ after it.
    let round0 = |csv: &[u8]| -> Vec<String> {
        std::str::from_utf8(csv).unwrap().lines().filter(|l| l.split(',').nth(1) == Some("0")).map(str::to_string).collect()
    };
    assert_eq!(round0(&one), round0(&other));
}

/// The instruction set changes only the speed: a Full model above `d = 8` (the matrix
/// product, the guard, the eigendecompositions), a Diagonal one (its own block kernel) and
/// the paper's scenario (the bulk normals and the exact block) give the same bytes with
/// `--vectors baseline` as with the CPU's widest. (`tests/machines.rs` compares every variant
/// inside the library; this is the user's switch, end to end.)
#[test]
fn same_bytes_whatever_the_instruction_set() {
    let base = coevolve_metrics("vectors_widest", &["--threads", "1"]);
    let narrow = coevolve_metrics("vectors_baseline", &["--threads", "1", "--vectors", "baseline"]);
    assert!(base == narrow, "metrics.csv of coevolve.ron differs between the widest vectors and --vectors baseline");
    let dir = scratch("cli", "vectors_structured");
    for structure in ["Full", "Diagonal"] {
        let scenario = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/platform.ron"))
            .unwrap()
            .replace("Uniform(1024), batch: 100000", "Uniform(24), batch: 2000")
            .replace("dim: 512", "dim: 12")
            .replace("batch: 100000", "batch: 2000")
            .replace("rounds: 20", "rounds: 5")
            .replace("structure: Diagonal", &format!("structure: {structure}"));
        let file = crate::common::write(&dir, &format!("{structure}.ron"), &scenario);
        let metrics = |set: &str| {
            let out_dir = dir.join(format!("{structure}-{set}"));
            let out = coevo(&["run", file.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--quiet", "--vectors", set]);
            assert_eq!(out.status.code(), Some(0), "{structure} {set}: {}", stderr(&out));
            std::fs::read(out_dir.join("metrics.csv")).unwrap()
        };
        let (wide, narrow) = (metrics("avx512"), metrics("baseline"));
        assert!(wide.len() > 1000, "{structure}: metrics.csv suspiciously short");
        assert!(wide == narrow, "{structure}: metrics.csv differs between --vectors avx512 and baseline");
    }
}

// ---------------------------------------------------------------- interrupted run

/// Parses metrics.csv strictly: the header, then rows of exactly six fields (replicate and
/// round integers, a model name, an empty or integer text, a metric name, a float). Returns
/// the rows as (replicate, round, model, text, metric).
fn parse_metrics(csv: &str) -> Vec<(u64, u64, String, String, String)> {
    // The writer's guarantee (src/output/mod.rs): whole rounds, except that a kill landing
    // inside the one write(2) of a round can cut it at a page boundary. So a last fragment
    // without its newline is tolerated, as any reader must; every other line is checked.
    let csv = match csv.rfind('\n') {
        Some(end) if end + 1 < csv.len() => {
            let fragment = &csv[end + 1..];
            assert!(fragment.split(',').count() <= 6, "the unterminated tail {fragment:?} is more than a cut row");
            &csv[..end + 1]
        }
        _ => csv,
    };
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("replicate,round,model,text,metric,value"));
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 6, "line {}: {line:?} does not have 6 fields", i + 2);
            let replicate = f[0].parse().unwrap_or_else(|e| panic!("line {}: replicate {:?}: {e}", i + 2, f[0]));
            let round = f[1].parse().unwrap_or_else(|e| panic!("line {}: round {:?}: {e}", i + 2, f[1]));
            assert!(f[3].is_empty() || f[3].parse::<u32>().is_ok(), "line {}: text {:?}", i + 2, f[3]);
            let _: f64 = f[5].parse().unwrap_or_else(|e| panic!("line {}: value {:?}: {e}", i + 2, f[5]));
            (replicate, round, f[2].to_string(), f[3].to_string(), f[4].to_string())
        })
        .collect()
}

#[test]
fn killed_run_leaves_complete_rounds() {
    let dir = scratch("cli", "killed").join("out");
    let metrics = dir.join("metrics.csv");
    let mut child = coevo_command(&[
        "run",
        "scenarios/coevolve.ron",
        "--out",
        dir.to_str().unwrap(),
        "--rounds",
        "1000000",
        "--replicates",
        "2",
        "--quiet",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn coevo");
    // Wait until some rounds are on disk (each round of 2 replicates is ~100 rows, ~4 kB).
    wait_until(&mut child, "200 kB of metrics.csv", || std::fs::metadata(&metrics).map_or(0, |m| m.len()) >= 200_000);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let csv = std::fs::read_to_string(&metrics).unwrap();
    let rows = parse_metrics(&csv);
    // Rows come round by round, replicate by replicate; every round but possibly the last
    // holds the same rows as round 0.
    let key = |r: &(u64, u64, String, String, String)| (r.0, r.2.clone(), r.3.clone(), r.4.clone());
    let round0: Vec<_> = rows.iter().filter(|r| r.1 == 0).map(key).collect();
    assert!(round0.len() >= 2 * 12, "round 0 has only {} rows", round0.len());
    let last = rows.last().unwrap().1;
    assert!(last >= 10, "only {last} rounds were written before the kill");
    for (round, chunk) in rows.chunks(round0.len()).enumerate() {
        let got: Vec<_> = chunk.iter().map(key).collect();
        assert!(chunk.iter().all(|r| r.1 == round as u64), "rows of round {round} are out of order");
        if round as u64 != last {
            assert_eq!(got, round0, "round {round} is incomplete");
        } else {
            assert_eq!(got[..], round0[..got.len()], "the last round's rows are not a prefix of a round");
        }
    }
    // The manifest is rewritten atomically: it parses, and says the run did not complete.
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "running");
    assert_eq!(manifest["seed"], 2025);
}

// ---------------------------------------------------------------- the command line as a shell sees it

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef coevo"), ("fish", "complete -c coevo")] {
        let out = coevo(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: the script lacks {marker:?}:\n{script}");
        // The script completes the user's commands and their flags.
        for word in ["sweep", "checkpoint-every"] {
            assert!(script.contains(word), "{shell}: the script does not complete {word}");
        }
    }
    let bad = coevo(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is bad input: {}", stderr(&bad));
}

#[test]
fn man_page_is_roff_naming_coevo_and_its_commands() {
    let out = coevo(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.starts_with(".ie") || page.contains(".TH coevo"), "not a roff page:\n{page}");
    assert!(page.contains(".TH coevo"), "the page is not titled coevo:\n{page}");
    for word in ["run", "sweep", "plot", "completions", "RUST_LOG"] {
        assert!(page.contains(word), "the man page does not mention {word}:\n{page}");
    }
    // roff writes the hyphen as `\-`.
    assert!(!page.contains("bench-round") && !page.contains("bench\\-round"), "the man page lists the hidden bench-round:\n{page}");
}

#[test]
fn bench_round_is_hidden_from_help_but_works() {
    let top = coevo(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let top = stdout(&top);
    assert!(!top.contains("bench-round"), "coevo --help lists bench-round:\n{top}");
    for word in ["completions", "man", "sweep", "plot"] {
        assert!(top.contains(word), "coevo --help must list {word}:\n{top}");
    }
    let help = coevo(&["bench-round", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", stderr(&help));
    let help = stdout(&help);
    for word in ["--K", "--N", "--worlds", "--floor", "JSON"] {
        assert!(help.contains(word), "coevo bench-round --help must mention {word}:\n{help}");
    }
    // benches/compare.sh reads this JSON line.
    let out = coevo(&["bench-round", "--N", "50", "--rounds", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let timing: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON line");
    assert_eq!(timing["rounds"], 3, "{timing}");
    assert!(timing["rounds_per_second"].as_f64().is_some_and(|r| r > 0.0), "{timing}");
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    // Tests capture stderr through a pipe: exactly the case of a log file or a scheduler.
    let dir = scratch("cli", "no_ansi").join("out");
    let out = coevo_with(&["run", "scenarios/coevolve.ron", "--out", dir.to_str().unwrap(), "--rounds", "2"], &[("RUST_LOG", "info")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("run complete"), "the info log line is missing, so nothing was checked:\n{err}");
    assert!(!err.contains("\x1b["), "stderr holds ANSI escape codes:\n{err:?}");
    // No progress bar is drawn into a pipe either.
    assert!(!err.contains("ETA"), "a progress bar was drawn into a pipe:\n{err}");
}

#[test]
fn a_finished_run_names_its_folder_and_the_next_command() {
    let dir = scratch("cli", "hint").join("my out");
    let d = dir.to_str().unwrap();
    let out = coevo(&["run", "scenarios/coevolve.ron", "--out", d, "--rounds", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == format!("results in {d}")).unwrap_or_else(|| panic!("no `results in` line:\n{text}"));
    // The folder has a space: the hint quotes it, so it can be pasted into a shell.
    assert_eq!(lines.get(at + 1).copied(), Some(format!("next: coevo plot '{d}'").as_str()), "{text}");
    // The hinted command works on that folder.
    let plot = coevo(&["plot", d]);
    assert_eq!(plot.status.code(), Some(0), "{}", stderr(&plot));
    // The summary prints every diversity in one format: four significant digits.
    let summary: Vec<&str> = lines[..at].iter().copied().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(summary.len(), 2, "one summary line per model:\n{text}");
    assert!(summary[0].contains("gini_simpson 0.8000 -> "), "{text}");

    let quiet = coevo(&["run", "scenarios/coevolve.ron", "--out", d, "--rounds", "2", "--force", "--quiet"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), "", "--quiet prints nothing");
}

/// A small sweep of 2 x 2 points of 3 rounds, written to `dir/grid.ron`.
fn small_grid(dir: &Path) -> std::path::PathBuf {
    let scenario = dir.join("grid.ron");
    let source = r#"Scenario(
    name: "grid",
    rounds: 3,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 30),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 30),
    ],
    sweep: Sweep(parameters: [
        (entity: "captioner", field: "batch", values: [30, 60]),
        (path: "painter.covariance", values: [0.01, 0.1]),
    ]),
)"#;
    std::fs::write(&scenario, source).unwrap();
    scenario
}

#[test]
fn summary_numbers_have_one_format_of_four_significant_digits() {
    use coevo::output::format_level as f;
    for (x, shown) in [
        (0.7999999999999999, "0.8000"),
        (0.030671, "0.03067"),
        (0.001, "0.001000"),
        (9.99996, "10.00"),
        (1234.56, "1235"),
        (12345.6, "1.235e4"),
        (2.1112e-7, "2.111e-7"),
        (0.0, "0"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(f(x), shown, "{x}");
    }
}

#[test]
fn a_finished_sweep_names_the_next_command() {
    let dir = scratch("cli", "sweep_hint");
    let scenario = small_grid(&dir);
    let out_dir = dir.join("sweep");
    let out = coevo(&["sweep", scenario.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("4 of 4 points done (4 computed now)"), "{text}");
    assert!(text.ends_with(&format!("next: coevo plot {}\n", out_dir.display())), "{text}");
}

#[test]
fn exit_codes_and_error_messages_are_those_documented() {
    // 0: success, nothing on stderr.
    let ok = coevo(&["validate", "scenarios/coevolve.ron"]);
    assert_eq!((ok.status.code(), stderr(&ok).as_str()), (Some(0), ""));
    // 2: bad input. Every invalid file is reported, the valid ones still said ok.
    let mixed = coevo(&["validate", "scenarios/coevolve.ron", "tests/fixtures/p_sum.ron", "tests/fixtures/batch_zero.ron"]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(stdout(&mixed).contains("scenarios/coevolve.ron: ok"), "{}", stdout(&mixed));
    let alone = |f: &str| stderr(&coevo(&["validate", f]));
    assert_eq!(stderr(&mixed), alone("tests/fixtures/p_sum.ron") + &alone("tests/fixtures/batch_zero.ron"));
    let shard = coevo(&["sweep", "scenarios/coevolve.ron", "--shard", "2/2", "--out", scratch("cli", "bad_shard").to_str().unwrap()]);
    assert_eq!(shard.status.code(), Some(2));
    assert!(stderr(&shard).starts_with("error: --shard: shard index 2 must be below the shard count 2"), "{}", stderr(&shard));
    let plot = coevo(&["plot", "tests/fixtures"]);
    assert_eq!(plot.status.code(), Some(2));
    assert!(stderr(&plot).starts_with("error: tests/fixtures is neither a run folder"), "{}", stderr(&plot));
    // 1: a failure while running, here the output folder cannot be created.
    let dir = scratch("cli", "exit_1");
    std::fs::write(dir.join("file"), "").unwrap();
    let blocked = dir.join("file").join("out");
    let failed = coevo(&["run", "scenarios/coevolve.ron", "--out", blocked.to_str().unwrap(), "--rounds", "2"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(stderr(&failed).starts_with(&format!("error: {}: ", blocked.display())), "{}", stderr(&failed));
    // 130 (interrupted) is checked by tests/interrupt.rs.
}

// ---------------------------------------------------------------- progress through the library

/// Records what the library tells a [`coevo::run::Progress`]; raises `stop` (a run's
/// interrupt flag) once `stop_after` rounds were reported, as a Ctrl-C would.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<String>>,
    stop: Option<(u64, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

impl coevo::run::Progress for Recorder {
    fn start(&self, name: &str, total: u64, done: u64) {
        self.calls.lock().unwrap().push(format!("start {name} {total} {done}"));
    }
    fn advance(&self, rounds: u64) {
        self.calls.lock().unwrap().push(format!("advance {rounds}"));
        if let Some((after, flag)) = &self.stop
            && self.calls().1 >= *after
        {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn finish(&self) {
        self.calls.lock().unwrap().push("finish".into());
    }
}

impl Recorder {
    /// The calls other than `advance`, and the sum of the advances.
    fn calls(&self) -> (Vec<String>, u64) {
        let calls = self.calls.lock().unwrap();
        let advanced = calls.iter().filter_map(|c| c.strip_prefix("advance ")).map(|n| n.parse::<u64>().unwrap()).sum();
        (calls.iter().filter(|c| !c.starts_with("advance")).cloned().collect(), advanced)
    }
}

#[test]
fn progress_counts_training_rounds_of_runs_and_sweeps() {
    use std::sync::Arc;
    let dir = scratch("cli", "progress");
    let path = small_grid(&dir);
    let (scenario, source) = coevo::Scenario::load(&path).unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = coevo::run::RunOptions { out_dir: Some(dir.join("run")), progress: Some(recorder.clone()), ..Default::default() };
    coevo::run::run(&scenario, &source, &path, &options).unwrap();
    // Rounds 1..=3, each reported once it is on disk; round 0 (the initial state) is not one.
    assert_eq!(recorder.calls(), (vec!["start grid 3 0".to_string(), "finish".to_string()], 3));

    // Interrupted after its checkpoint at round 2, then resumed: the resumed run starts with
    // 2 of 3 rounds done and reports the last one.
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recorder = Arc::new(Recorder { stop: Some((2, flag.clone())), ..Default::default() });
    let options = coevo::run::RunOptions {
        out_dir: Some(dir.join("resumed")),
        progress: Some(recorder.clone()),
        checkpoint_every: Some(2),
        interrupt: Some(flag),
        ..Default::default()
    };
    let stopped = coevo::run::run(&scenario, &source, &path, &options);
    assert!(matches!(stopped, Err(coevo::run::RunFailure::Interrupted { round: 2 })), "{stopped:?}");
    assert_eq!(recorder.calls(), (vec!["start grid 3 0".to_string(), "finish".to_string()], 2));
    let recorder = Arc::new(Recorder::default());
    let options = coevo::run::RunOptions { progress: Some(recorder.clone()), ..Default::default() };
    coevo::run::resume(&dir.join("resumed"), &options).unwrap();
    assert_eq!(recorder.calls(), (vec!["start grid 3 2".to_string(), "finish".to_string()], 1));

    // A sweep is one progress over every point's rounds, whichever thread ran them.
    let recorder = Arc::new(Recorder::default());
    let options =
        coevo::experiment::grid::SweepOptions { out_dir: Some(dir.join("sweep")), progress: Some(recorder.clone()), ..Default::default() };
    coevo::experiment::grid::run_sweep(&scenario, &source, &path, &options).unwrap();
    assert_eq!(recorder.calls(), (vec!["start grid: 4 points 12 0".to_string(), "finish".to_string()], 12));
}

// ---------------------------------------------------------------- the library stays a library

/// The identifiers in `text`, comments (`//` to the end of the line) left out: code names a
/// crate in a path, which this catches wherever it is; prose may mention one.
fn identifiers(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                found.insert(word.to_string());
            }
        }
    }
    found
}

/// Crates only the binary may use: terminal drawing, signals, argument parsing, log output.
const CLI_ONLY: &[&str] = &["indicatif", "signal_hook", "clap", "clap_complete", "clap_mangen", "tracing_subscriber"];

#[test]
fn the_library_never_names_the_cli_crates() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = crate::common::rust_files(&src);
    // The binary: src/main.rs and its modules in src/main/.
    let (cli, library): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.starts_with(src.join("main")) || *f == src.join("main.rs"));
    assert!(library.len() >= 30 && library.contains(&src.join("lib.rs")), "the library's files were not found: {library:?}");
    let mut violations = Vec::new();
    for file in &library {
        let names = identifiers(&std::fs::read_to_string(file).unwrap());
        for krate in CLI_ONLY.iter().filter(|k| names.contains(**k)) {
            violations.push(format!("{}: names `{krate}`", file.strip_prefix(&src).unwrap().display()));
        }
    }
    assert!(
        violations.is_empty(),
        "the library uses crates that belong to the CLI (move that code to src/main/):\n{}",
        violations.join("\n")
    );
    // The check sees these names where they are: in the binary.
    let cli_names: BTreeSet<String> = cli.iter().flat_map(|f| identifiers(&std::fs::read_to_string(f).unwrap())).collect();
    for krate in CLI_ONLY {
        assert!(cli_names.contains(*krate), "the check does not find `{krate}` even in the CLI");
    }
}
