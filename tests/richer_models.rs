//! The mixture and KDE plugins (issue 15) from the host's side: both pass `coevo plugins check`,
//! the comparison scenarios are byte-identical across runs and thread counts, and a killed run
//! with both plugins (under `Accumulate`, with user content and new texts) resumes to exactly the
//! uninterrupted output. Their statistical tests (EM recovery, the M = 1 contraction law, the
//! KDE's variance and round-to-round law) live in the plugin crates, `plugins/*/src/tests.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::checkpoint::kill_after_first_checkpoint;
use crate::common::{bytes, coevo, ok, scratch, stderr, stdout, write};

/// Builds both plugins once per test binary and returns the folder holding the libraries.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = coevo_plugin_api::host::cargo_build_plugin(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            "coevo-plugin-mixture",
            &["-p", "coevo-plugin-kde"],
        )
        .unwrap_or_else(|e| panic!("building the plugins failed: {e}"));
        lib.parent().expect("a library lives in a folder").to_path_buf()
    })
}

/// The library file of `lib_name` (e.g. `coevo_plugin_kde`) in the build folder.
fn library(lib_name: &str) -> String {
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    plugin_dir().join(format!("{p}{lib_name}{s}")).display().to_string()
}

#[test]
fn both_plugins_pass_every_contract_check() {
    for (lib, plugin, model) in [("coevo_plugin_mixture", "coevo-mixture", "gaussian_mixture"), ("coevo_plugin_kde", "coevo-kde", "kde")] {
        let out = coevo(&["plugins", "check", &library(lib)]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{lib}:\n{text}\n{}", stderr(&out));
        assert!(text.starts_with(&format!("{plugin} 0.1.0 (ABI 1)")), "{text}");
        assert!(text.contains(&format!("model {model} (params {{}}, K = 3")), "{text}");
        assert!(text.contains("9 of 9 checks passed, 0 failed"), "{text}");
    }
}

#[test]
fn comparison_scenarios_are_byte_identical_across_runs_and_thread_counts() {
    let dir = scratch("richer_models", "reproducible");
    let plugins = plugin_dir().display().to_string();
    for scenario in ["scenarios/compare_mixture.ron", "scenarios/compare_mixture_users.ron"] {
        let run = |tag: &str, threads: &str| {
            let out_dir = dir.join(tag);
            let args = ["run", scenario, "--out", out_dir.to_str().unwrap(), "--rounds", "4", "--replicates", "2"];
            let out = coevo(&[&args[..], &["--threads", threads, "--quiet", "--plugin-dir", plugins.as_str()]].concat());
            assert_eq!(out.status.code(), Some(0), "{scenario}: {}", stderr(&out));
            bytes(&out_dir.join("metrics.csv"))
        };
        let name = Path::new(scenario).file_stem().unwrap().to_str().unwrap();
        let first = run(&format!("{name}_1"), "1");
        assert!(first == run(&format!("{name}_1b"), "1"), "{scenario}: two runs differ");
        assert!(first == run(&format!("{name}_2"), "2"), "{scenario}: --threads 1 and --threads 2 differ");
        let text = String::from_utf8(first).unwrap();
        for row in ["1,4,mix,4,live_components,", "1,4,mix,,weighted_diversity,", "1,4,kde,0,bandwidth,", "1,4,gauss,3,frechet_to_initial,"]
        {
            assert!(text.contains(row), "{scenario}: no row {row}");
        }
    }
}

#[test]
fn a_killed_run_with_both_plugins_resumes_to_exactly_the_uninterrupted_output() {
    // Every piece of plugin state a checkpoint must carry: the mixture's accumulated soft
    // statistics, the KDE's reservoir (and the fit stream it draws from), the host's initial
    // real data pooled into the first refit, texts added by NewText injection, user content.
    let dir = scratch("richer_models", "resume");
    let scenario = format!(
        r#"Scenario(name: "resume", seed: 9, rounds: 400, replicates: 2, entities: [
    TextModel(name: "captioner", initial: Uniform(3), batch: 60),
    PluginModel(name: "mix", library: "{mix}", model: "gaussian_mixture", conditioned_on: "captioner", batch: 60,
                params: {{"initial": {{"components": 2}}}}, data: Accumulate(initial: 30)),
    PluginModel(name: "kde", library: "{kde}", model: "kde", conditioned_on: "captioner", batch: 60,
                params: {{"capacity": 40, "bandwidth": "silverman"}}, data: Accumulate(initial: 30)),
    CorpusInjector(name: "newcomers", target: "captioner", alpha: 0.02, eps: 0.05, distribution: NewText),
    UserContentInjector(name: "users", target: "kde", n0: 2),
])"#,
        mix = library("coevo_plugin_mixture"),
        kde = library("coevo_plugin_kde"),
    );
    let file = write(&dir, "resume.ron", &scenario);
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    ok(&["run", file.to_str().unwrap(), "--out", whole.to_str().unwrap(), "-q"]);
    kill_after_first_checkpoint(&file, &killed, "5");
    assert!(bytes(&killed.join("metrics.csv")).len() < bytes(&whole.join("metrics.csv")).len(), "the run finished before it was killed");
    ok(&["resume", killed.to_str().unwrap(), "-q"]);
    for f in ["metrics.csv", "aggregate.csv", "summary.json"] {
        assert!(bytes(&whole.join(f)) == bytes(&killed.join(f)), "{f} differs after resume");
    }
    let metrics = String::from_utf8(bytes(&whole.join("metrics.csv"))).unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("1,400,kde,3,")), "a NewText text reached the plugins");
}
