//! The examples in `examples/` run and show what their headers say. Each is built by the
//! test itself (`cargo build --example` through the `CARGO` that runs the tests, in the
//! optimised test profile), so filtering the tests still runs the example it names. It is
//! built with `--workspace`, as `cargo test --workspace` builds: a build of the root package
//! alone unifies features without the other members' (PyO3's macros ask more of `syn`), so it
//! would compile the library and its derive macros a second time.

use std::process::Command;

/// Builds the example `name` and returns the path of its executable.
fn build_example(name: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--profile", "test", "--example", name, "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building example {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    let messages = String::from_utf8(out.stdout).expect("utf-8 cargo messages");
    messages
        .lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains(&format!("\"name\":\"{name}\"")))
        .find_map(|l| {
            let (_, rest) = l.split_once("\"executable\":\"")?;
            Some(rest.split('"').next()?.to_string())
        })
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

/// Builds and runs the example `name` and returns its stdout.
fn run_example(name: &str) -> String {
    let path = build_example(name);
    let out = Command::new(&path).output().expect("example starts");
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The numeric columns of the output line that starts with `round`.
fn row(output: &str, round: u64) -> Vec<f64> {
    let line = output.lines().find(|l| l.split_whitespace().next() == Some(&round.to_string())).unwrap_or_else(|| panic!("no row {round}"));
    line.split_whitespace().skip(1).map(|x| x.parse().expect("a number")).collect()
}

#[test]
fn embed_reads_a_collapsing_platform_in_memory() {
    let out = run_example("embed");
    let (first, last) = (row(&out, 0), row(&out, 500));
    // Round 0 is the scenario's initial state: uniform p over 5 texts, trace 0.1 I in d = 2.
    assert_eq!(first[0], 0.8);
    assert_eq!(first[1], 0.2);
    // The image trace contracts: after 500 rounds its expectation is 0.2 (199/200)^500 = 0.016;
    // every one of the 4 replicates lies below the initial value by then.
    assert!(last[1] < first[1], "{out}");
}

#[test]
fn moderation_filter_drops_half_and_speeds_up_the_contraction() {
    let out = run_example("moderation");
    // Columns: plain, (49/50)^t, moderated, (24/25)^t, dropped.
    let first = row(&out, 0);
    assert_eq!(first[0], first[2], "the filter changes nothing before the first round");
    let r = row(&out, 25);
    // 5 texts x 50 images, each dropped with probability 1/2: dropped ~ Binomial(250, 1/2) per
    // world, mean 125, sd 7.9; the mean over 4 worlds has sd 4.0: allow 4 standard errors.
    assert!((r[4] - 125.0).abs() < 4.0 * (250.0f64 * 0.25 / 4.0).sqrt(), "dropped {}", r[4]);
    let last = row(&out, 200);
    // Expected traces at round 200 differ by a factor (0.96/0.98)^200 = 0.016: far beyond the
    // replicate spread, so the moderated platform is below the plain one.
    assert!(last[2] < last[0], "{out}");
}
