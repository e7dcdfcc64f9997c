//! Plugins that cannot take coevo down (issue 13, items 1, 6, 7 and 8): plugin models run in
//! plugin host processes by default, so a segfault, `abort()`, `exit(0)`, an endless loop, a
//! 50 GB allocation, a heap overrun, a stack overflow or a fork in a plugin ends the run with
//! exit 1, the plugin named, the manifest `failed` and whole rows on disk, and leaves no
//! process behind (bit-identity with `--trusted-plugins` runs is checked with the other
//! reproducibility checks, `plugins::runs_with_plugins_...`);
//! `validate` and `plugins list` never run plugin code in the coevo process; a library outside
//! the plugin folders needs `--allow-plugin`; sizes never wrap; resume verifies the library.
//!
//! The hostile fixture is `plugins/hostile`, built with the other plugins by
//! `plugins::plugin_dir()`. Its constructor writes `ctor-<pid>` (holding the command line)
//! into `COEVO_HOSTILE_MARKER_DIR`, which also tags every process that inherits the variable,
//! so a test can look for survivors in `/proc`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{coevo_command, scratch, stderr, stdout, wait_until};
use crate::plugins::{fault_scenario, plugin_dir};

const MARKER_VAR: &str = "COEVO_HOSTILE_MARKER_DIR";

/// [`fault_scenario`] with the hostile plugin model and `params`, and `extra` fields appended
/// to the plugin model's (e.g. `", data: Replace"`), in `dir`; `library` as the scenario names it.
fn hostile_scenario(dir: &Path, library: &str, params: &str, extra: &str) -> PathBuf {
    let file = PathBuf::from(fault_scenario(dir, library, "hostile", params));
    let source = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, source.replace("        batch: 50,\n    ),", &format!("        batch: 50{extra},\n    ),"))).unwrap();
    file
}

/// A scratch folder for `test` and, inside it, an empty marker folder.
fn marked_scratch(test: &str) -> (PathBuf, PathBuf) {
    let dir = scratch("plugin_isolation", test);
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    (dir, markers)
}

/// Runs coevo with `args` (the plugin folder added) and the marker folder `markers` set.
fn run_marked(args: &[&str], markers: &Path) -> Output {
    let plugins = plugin_dir().to_str().unwrap();
    coevo_command(&[args, &["--plugin-dir", plugins]].concat()).env(MARKER_VAR, markers).output().expect("coevo runs")
}

/// The pids of live processes (zombies excluded) whose environment holds `markers`.
fn survivors(markers: &Path) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={}", markers.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else { continue };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .is_ok_and(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'));
        if !zombie && env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Asserts that no process tagged with `markers` is left (waiting up to 5 s for the kernel to
/// finish killing them: a killed process's children are reparented and reaped asynchronously).
fn assert_no_survivors(markers: &Path, what: &str) {
    let start = Instant::now();
    loop {
        let left = survivors(markers);
        if left.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rows of metrics.csv of `round` (replicate 0).
fn rows_of_round(csv: &str, round: u64) -> usize {
    let prefix = format!("0,{round},");
    csv.lines().filter(|l| l.starts_with(&prefix)).count()
}

#[test]
fn hostile_plugins_end_the_run_with_exit_1_naming_the_plugin_and_leave_no_process() {
    // (mode, extra flags, what the message must say). The watchdog and the memory limit are
    // lowered so the hang and the 50 GB allocation are caught in seconds.
    let cases: [(&str, &[&str], &[&str]); 8] = [
        ("segfault", &[], &["crashed (signal 11, SIGSEGV) in sample"]),
        ("abort", &[], &["crashed (signal 6, SIGABRT) in sample"]),
        ("exit0", &[], &["ended the plugin host process (exit status 0) in sample"]),
        ("hang", &["--plugin-timeout", "2"], &["did not answer within 2 s", "--plugin-timeout"]),
        ("alloc", &["--plugin-memory-mb", "1024"], &["crashed (signal 6, SIGABRT) in sample"]),
        // A heap overrun is caught by the guard zone or crashes the host, depending on what
        // it overwrote: either way the run fails naming the plugin.
        ("overrun", &[], &["sample"]),
        ("stack", &[], &["crashed (signal"]),
        ("fork", &["--plugin-timeout", "30"], &["forked a process"]),
    ];
    for (mode, flags, expected) in cases {
        let (dir, markers) = marked_scratch(&format!("hostile_{mode}"));
        let file = hostile_scenario(&dir, "hostile", &format!(r#"{{"mode": "{mode}"}}"#), "");
        let out_dir = dir.join("out");
        let args = [&["run", file.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--quiet"], flags].concat();
        let out = run_marked(&args, &markers);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{mode}: a plugin fault ends the run with exit 1:\n{err}");
        for e in ["plugin `hostile`", "`faulty`"].iter().chain(expected) {
            assert!(err.contains(e), "{mode}: the error must say {e:?}:\n{err}");
        }
        assert!(!err.contains("panicked"), "{mode}: {err}");
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
        let status = manifest["status"].as_str().unwrap();
        assert!(status.starts_with("failed: round 1:") && status.contains("plugin `hostile`"), "{mode}: manifest status {status:?}");
        assert_eq!(manifest["rounds_completed"], 0, "{mode}");
        // Round 0 is on disk, whole; nothing of the failed round is.
        let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
        assert!(csv.ends_with('\n') && rows_of_round(&csv, 0) > 20 && rows_of_round(&csv, 1) == 0, "{mode}: metrics.csv:\n{csv}");
        assert_no_survivors(&markers, mode);
    }
}

#[test]
fn a_plugin_crash_while_a_scenario_is_checked_is_bad_input_naming_the_plugin() {
    let (dir, markers) = marked_scratch("crash_at_create");
    let file = hostile_scenario(&dir, "hostile", r#"{"mode": "segfault", "at": "create"}"#, "");
    let out = run_marked(&["validate", file.to_str().unwrap()], &markers);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for e in ["(PluginModel \"faulty\").params:", "plugin `hostile`", "crashed (signal 11, SIGSEGV) in create"] {
        assert!(err.contains(e), "must say {e:?}:\n{err}");
    }
    assert_no_survivors(&markers, "validate");
}

/// Starts `coevo args` as a child and returns its pid with its output.
fn spawn_marked(args: &[&str], markers: &Path) -> (u32, Output) {
    let plugins = plugin_dir().to_str().unwrap();
    let child = coevo_command(&[args, &["--plugin-dir", plugins]].concat())
        .env(MARKER_VAR, markers)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

/// Removes every marker.
fn clear(markers: &Path) {
    for e in std::fs::read_dir(markers).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
}

/// The constructor markers in `markers`: (pid, command line).
fn constructor_runs(markers: &Path) -> Vec<(u32, String)> {
    std::fs::read_dir(markers)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.strip_prefix("ctor-")?.parse().ok()?;
            Some((pid, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect()
}

#[test]
fn validate_and_plugins_list_never_run_plugin_code_in_the_coevo_process() {
    let (dir, markers) = marked_scratch("consent");
    let file = hostile_scenario(&dir, "hostile", "{}", "");
    let plugins = plugin_dir().to_str().unwrap().to_owned();
    for args in [vec!["validate", file.to_str().unwrap()], vec!["plugins", "list", &plugins]] {
        let (pid, out) = spawn_marked(&args, &markers);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        if args[0] == "plugins" {
            assert!(stdout(&out).contains("hostile 0.1.0"), "{}", stdout(&out));
        }
        let runs = constructor_runs(&markers);
        // The library was read (its constructor ran), but only in plugin host processes.
        assert!(!runs.is_empty(), "{args:?}: the constructor never ran: the test would prove nothing");
        for (ran_in, cmdline) in &runs {
            assert_ne!(*ran_in, pid, "{args:?}: the library's constructor ran in the coevo process");
            assert!(cmdline.contains(" plugin-host "), "{args:?}: the constructor ran in {cmdline:?}");
        }
        assert_no_survivors(&markers, args[0]);
        clear(&markers);
    }
}

#[test]
fn a_library_outside_the_plugin_folders_needs_allow_plugin_and_is_never_loaded_without() {
    let (dir, markers) = marked_scratch("allow");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let lib = elsewhere.join(format!("{p}coevo_plugin_hostile{s}"));
    std::fs::copy(plugin_dir().join(format!("{p}coevo_plugin_hostile{s}")), &lib).unwrap();
    let scenario_dir = dir.join("scenario");
    std::fs::create_dir_all(&scenario_dir).unwrap();
    // An absolute path and a `../` path: both outside every plugin folder.
    for library in [lib.display().to_string(), format!("../elsewhere/{p}coevo_plugin_hostile{s}")] {
        let file = hostile_scenario(&scenario_dir, &library, "{}", "");
        let out_dir = dir.join("out");
        for args in
            [vec!["validate", file.to_str().unwrap()], vec!["run", file.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "-q"]]
        {
            let out = run_marked(&args, &markers);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{library} {}: {err}", args[0]);
            for e in ["(PluginModel \"faulty\").library:", "not in a plugin folder", "--allow-plugin"] {
                assert!(err.contains(e), "{library}: must say {e:?}:\n{err}");
            }
            assert!(constructor_runs(&markers).is_empty(), "{library}: a library not allowed was loaded");
            assert!(!out_dir.join("manifest.json").exists());
        }
        // Allowed by file or by folder, it loads.
        for allow in [lib.to_str().unwrap(), elsewhere.to_str().unwrap()] {
            let out = run_marked(&["validate", file.to_str().unwrap(), "--allow-plugin", allow], &markers);
            assert_eq!(out.status.code(), Some(0), "{library} allowed by {allow}: {}", stderr(&out));
        }
        assert!(!constructor_runs(&markers).is_empty(), "{library}: the allowed library was never loaded: the test would prove nothing");
        clear(&markers);
    }
}

/// A C library named like a plugin whose constructor segfaults: loading it kills whatever
/// process loads it.
const CRASH_AT_LOAD_C: &str = r#"
__attribute__((constructor)) static void boom(void) { *(volatile int *)0 = 1; }
const void *coevo_plugin_entry(void) { return 0; }
"#;

#[test]
fn plugins_list_considers_only_plugin_files_and_reports_each_one_even_when_another_crashes() {
    let dir = scratch("plugin_isolation", "list");
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    std::fs::copy(plugin_dir().join(format!("{p}coevo_plugin_audio{s}")), libs.join(format!("{p}coevo_plugin_audio{s}"))).unwrap();
    // Not named like a plugin and without the entry symbol: a system library, never opened.
    std::fs::write(libs.join(format!("{p}system{s}")), b"\x7fELF not a coevo plugin").unwrap();
    // Named like one but garbage: reported as unusable.
    std::fs::write(libs.join(format!("{p}coevo_plugin_garbage{s}")), b"garbage").unwrap();
    let source = dir.join("crash.c");
    std::fs::write(&source, CRASH_AT_LOAD_C).unwrap();
    let crash = libs.join(format!("{p}crash{s}"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let built = std::process::Command::new(&cc).args(["-shared", "-fPIC", "-o"]).arg(&crash).arg(&source).output();
    let built = built.unwrap_or_else(|e| panic!("this test needs a C compiler (`{cc}`: {e}); install one or set CC"));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    let out = coevo_command(&["plugins", "list", libs.to_str().unwrap()]).output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.starts_with("1 plugin library in") && text.contains("coevo-audio 0.1.0") && text.contains("von_mises_pitch"), "{text}");
    assert!(text.contains("not usable as plugins"), "{text}");
    assert!(text.contains(&format!("{p}crash{s}")) && text.contains("crashed (signal 11, SIGSEGV)"), "{text}");
    assert!(text.contains(&format!("{p}coevo_plugin_garbage{s}")), "{text}");
    assert!(!text.contains(&format!("{p}system{s}")), "a file not named like a plugin is not considered:\n{text}");
}

#[test]
fn sizes_from_a_scenario_never_wrap_in_the_plugin_host() {
    // `batch: u64::MAX` made `len + GUARD` wrap to a 7-element buffer the plugin wrote past;
    // `Accumulate(initial: u64::MAX)` likewise. Each must fail cleanly, in and out of process.
    let (dir, markers) = marked_scratch("sizes");
    for (tag, extra) in [("batch", ", batch: 18446744073709551615"), ("accumulate", ", data: Accumulate(initial: 18446744073709551615)")] {
        // `batch` is given twice for the batch case: use a scenario of its own.
        let file = dir.join(format!("{tag}.ron"));
        let body = std::fs::read_to_string(hostile_scenario(&dir, "hostile", "{}", extra)).unwrap();
        let body = if tag == "batch" { body.replace("batch: 50, batch:", "batch:") } else { body };
        std::fs::write(&file, body).unwrap();
        for mode in [&[][..], &["--trusted-plugins"][..]] {
            let out_dir = dir.join(format!("out_{tag}_{}", mode.len()));
            let args = [&["run", file.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "-q"][..], mode].concat();
            let out = run_marked(&args, &markers);
            let err = stderr(&out);
            let code = out.status.code();
            assert!(code == Some(1) || code == Some(2), "{tag} {mode:?}: must fail cleanly (exit 1 or 2), got {code:?}:\n{err}");
            assert!(!err.contains("panicked") && !err.contains("crashed"), "{tag} {mode:?}: {err}");
            assert!(err.contains("faulty"), "{tag} {mode:?}: the error names the model:\n{err}");
            assert_no_survivors(&markers, tag);
        }
    }
}

#[test]
fn the_manifest_and_checkpoint_record_the_library_and_resume_verifies_it() {
    let (dir, markers) = marked_scratch("provenance");
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    let name = format!("{p}coevo_plugin_hostile{s}");
    let original = plugin_dir().join(&name);
    let lib = libs.join(&name);
    std::fs::copy(&original, &lib).unwrap();
    let file = hostile_scenario(&dir, "hostile", "{}", "").display().to_string();
    let source = std::fs::read_to_string(&file).unwrap().replace("rounds: 3", "rounds: 1000000");
    std::fs::write(&file, source).unwrap();
    let out_dir = dir.join("out");
    let libs_dir = libs.to_str().unwrap();
    let mut child =
        coevo_command(&["run", &file, "--out", out_dir.to_str().unwrap(), "-q", "--checkpoint-every", "1", "--plugin-dir", libs_dir])
            .env(MARKER_VAR, &markers)
            .spawn()
            .unwrap();
    let checkpoint = out_dir.join("checkpoint.json");
    wait_until(&mut child, "checkpoint", || checkpoint.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed outright: its plugin host dies with it (PR_SET_PDEATHSIG).
    assert_no_survivors(&markers, "SIGKILL of the run");

    let canonical = lib.canonicalize().unwrap().display().to_string();
    let sha256 = coevo::plugin::library::sha256_of(&lib).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let plugin = &manifest["resolved"].as_array().unwrap().iter().find(|m| m["name"] == "faulty").unwrap()["plugin"];
    assert_eq!((plugin["library"].as_str(), plugin["sha256"].as_str()), (Some(canonical.as_str()), Some(sha256.as_str())), "{plugin}");
    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let record = &recorded["plugins"][0];
    assert_eq!(
        (record["name"].as_str(), record["path"].as_str(), record["sha256"].as_str()),
        (Some("faulty"), Some(canonical.as_str()), Some(sha256.as_str()))
    );

    let resume = |extra: &[&str]| coevo_command(&[&["resume", out_dir.to_str().unwrap(), "-q"][..], extra].concat()).output().unwrap();
    // A library of the same name found first in another folder: another file, refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(&original, other.join(&name)).unwrap();
    let out = resume(&["--plugin-dir", other.to_str().unwrap(), "--plugin-dir", libs_dir]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("plugin model `faulty`") && err.contains("now resolves to") && err.contains(&canonical), "{err}");
    // The same file with other bytes: refused.
    let mut bytes = std::fs::read(&original).unwrap();
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&lib, &bytes).unwrap();
    let out = resume(&["--plugin-dir", libs_dir]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("changed since the run started") && err.contains(&sha256), "{err}");
    assert!(checkpoint.exists(), "a refused resume changes nothing");
}
