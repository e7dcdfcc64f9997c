//! Dynamic plugins from the host's side (issue 4): plugin models co-evolve with the built-in
//! ones through the same systems, runs with plugins are reproducible, the caption posterior
//! multiplies every conditional's likelihood (docs/model.md section 9), a feed pools several text models'
//! captions with weights (docs/model.md section 9), and every plugin fault is a clear error, never a crash.
//!
//! The plugin crates are built by the tests themselves (`cargo build` through the `CARGO`
//! variable, into the workspace's target folder), so `cargo test` passes on a clean clone.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use bevy_ecs::prelude::*;
use coevo::models::text::multinomial_counts;
use coevo::plugin::PluginState;
use coevo::rng::Stream;
use coevo::world::{ConditionalAgent, RandomStream, ScenarioEntities, TextAgent};
use coevo::{Scenario, Simulation};

use crate::common::{coevo, coevo_with, read, scratch, stderr, stdout, text_p};

/// Every plugin package the tests load.
const PLUGINS: [&str; 8] = [
    "coevo-plugin-audio",
    "coevo-plugin-multi",
    "coevo-plugin-faulty-panic",
    "coevo-plugin-faulty-nan",
    "coevo-plugin-faulty-abi",
    "coevo-plugin-faulty-no-entry",
    "coevo-plugin-gaussian",
    "coevo-plugin-template",
];

/// Builds every plugin once per test binary (one cargo invocation) and returns the folder
/// holding the libraries.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut args = Vec::new();
        for p in &PLUGINS[1..] {
            args.extend(["-p", p]);
        }
        let lib = coevo_plugin_api::host::cargo_build_plugin(Path::new(env!("CARGO_MANIFEST_DIR")), PLUGINS[0], &args)
            .unwrap_or_else(|e| panic!("building the plugins failed: {e}"));
        lib.parent().expect("a library lives in a folder").to_path_buf()
    })
}

/// The audio plugin's library file.
fn audio_library() -> String {
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    plugin_dir().join(format!("{p}coevo_plugin_audio{s}")).display().to_string()
}

fn parse(source: &str) -> Scenario {
    let file = Path::new("inline.ron");
    let mut scenario = Scenario::parse(source, file).unwrap_or_else(|e| panic!("{e}"));
    coevo::plugin::check_scenario(&mut scenario, file).unwrap_or_else(|p| panic!("{p:?}"));
    scenario
}

// ---------------------------------------------------------------- discovery and loading

#[test]
fn plugins_list_shows_every_plugin_with_version_abi_and_modalities() {
    let dir = plugin_dir().display().to_string();
    let out = coevo(&["plugins", "list", &dir]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for expected in [
        "coevo-audio 0.1.0 (ABI 1)",
        "von_mises_pitch",
        "modality audio",
        "coevo-multi 0.1.0 (ABI 1)",
        "laplace_motion",
        "modality video",
        "tag_spectrum",
        "modality tags",
        "faulty-panic",
    ] {
        assert!(text.contains(expected), "`plugins list` must show {expected:?}:\n{text}");
    }
    // Libraries that are not usable plugins are listed with the reason, not loaded as plugins.
    assert!(text.contains("not usable as plugins") && text.contains("ABI version 999") && text.contains("coevo_plugin_entry"), "{text}");

    let missing = coevo(&["plugins", "list", "no/such/folder"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/folder"), "{}", stderr(&missing));
}

#[test]
fn libraries_are_found_by_path_plugin_dir_and_environment() {
    let dir = scratch("plugins", "search");
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    // A copy under a name only these folders hold, so the executable's folder cannot answer.
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    std::fs::copy(audio_library(), libs.join(format!("{p}myaudio{s}"))).unwrap();
    let write = |name: &str, library: &str| {
        let file = dir.join(name);
        std::fs::write(
            &file,
            format!(
                r#"Scenario(name: "search", rounds: 1, entities: [
    TextModel(name: "captioner", initial: Uniform(3)),
    PluginModel(name: "singer", library: "{library}", model: "von_mises_pitch", conditioned_on: "captioner"),
])"#
            ),
        )
        .unwrap();
        file.display().to_string()
    };
    let by_name = write("by_name.ron", "myaudio");
    let libs_dir = libs.display().to_string();

    let not_found = coevo(&["validate", &by_name]);
    let err = stderr(&not_found);
    assert_eq!(not_found.status.code(), Some(2), "{err}");
    for expected in ["PluginModel \"singer\"", "library", "`myaudio` not found", "libmyaudio", "--plugin-dir", "COEVO_PLUGIN_PATH"] {
        assert!(err.contains(expected), "must say {expected:?}:\n{err}");
    }
    let via_flag = coevo(&["validate", &by_name, "--plugin-dir", "no/such/dir", "--plugin-dir", &libs_dir]);
    assert_eq!(via_flag.status.code(), Some(0), "{}", stderr(&via_flag));
    let via_env = coevo_with(&["validate", &by_name], &[("COEVO_PLUGIN_PATH", &format!("/no/such/dir:{libs_dir}"))]);
    assert_eq!(via_env.status.code(), Some(0), "{}", stderr(&via_env));

    // A relative path is taken from the scenario file's folder, whatever the current directory.
    let relative = write("relative.ron", &format!("libs/{p}myaudio{s}"));
    let out = coevo(&["validate", &relative]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn plugin_log_messages_reach_tracing_with_the_plugin_name() {
    let dir = plugin_dir().display().to_string();
    let out = coevo_with(&["validate", "scenarios/plugin_audio.ron", "--plugin-dir", &dir], &[("RUST_LOG", "coevo::plugin=debug")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The audio plugin logs its configuration at debug level when a model is created.
    let line = err.lines().find(|l| l.contains("von_mises_pitch: 5 texts")).unwrap_or_else(|| panic!("no plugin log line:\n{err}"));
    assert!(line.contains("DEBUG") && line.contains("coevo-audio"), "the event must carry its level and the plugin name: {line}");
}

// ---------------------------------------------------------------- reproducibility

/// `coevo run` of `scenario` with `threads` worker threads; returns metrics.csv.
fn run_metrics(dir: &Path, tag: &str, scenario: &str, threads: &str) -> Vec<u8> {
    let out_dir = dir.join(tag);
    let plugins = plugin_dir().display().to_string();
    let args =
        ["run", scenario, "--out", out_dir.to_str().unwrap(), "--rounds", "12", "--replicates", "3", "--threads", threads, "--quiet"];
    let out = coevo(&[&args[..], &["--plugin-dir", plugins.as_str()]].concat());
    assert_eq!(out.status.code(), Some(0), "{scenario}: {}", stderr(&out));
    std::fs::read(out_dir.join("metrics.csv")).unwrap()
}

#[test]
fn runs_with_plugins_and_feeds_are_byte_identical_across_runs_and_thread_counts() {
    let dir = scratch("plugins", "reproducible");
    for scenario in ["scenarios/plugin_audio.ron", "scenarios/platform_two_by_two.ron"] {
        let name = Path::new(scenario).file_stem().unwrap().to_str().unwrap();
        let first = run_metrics(&dir, &format!("{name}_1"), scenario, "1");
        let again = run_metrics(&dir, &format!("{name}_1b"), scenario, "1");
        let parallel = run_metrics(&dir, &format!("{name}_2"), scenario, "2");
        assert!(first == again, "{scenario}: two runs differ");
        assert!(first == parallel, "{scenario}: --threads 1 and --threads 2 differ");
        let text = String::from_utf8(first).unwrap();
        // 3 replicates x 13 rounds (0..=12) of each model's rows are all there.
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("2,12,"), "{scenario}: last row {last}");
        if name == "plugin_audio" {
            for row in ["0,12,singer,0,diversity,", "0,12,singer,,weighted_diversity,", "0,12,singer,4,kappa,", "0,12,painter,2,trace,"] {
                assert!(text.contains(row), "{scenario}: no row {row}");
            }
        }
    }
}

/// The manifest records which plugin produced a run's numbers: the library file loaded, the
/// plugin's name and version, the ABI version and the model.
#[test]
fn the_manifest_names_the_plugin_library_and_version() {
    let out_dir = scratch("plugins", "manifest");
    let plugins = plugin_dir().to_str().unwrap().to_string();
    let out =
        coevo(&["run", "scenarios/plugin_audio.ron", "--out", out_dir.to_str().unwrap(), "--rounds", "2", "-q", "--plugin-dir", &plugins]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let singer = manifest["resolved"].as_array().unwrap().iter().find(|m| m["name"] == "singer").expect("the plugin model is listed");
    let plugin = &singer["plugin"];
    assert_eq!(plugin["plugin"], "coevo-audio");
    assert_eq!(plugin["model"], "von_mises_pitch");
    assert_eq!(plugin["abi_version"], coevo_plugin_api::COEVO_ABI_VERSION);
    assert!(!plugin["version"].as_str().unwrap().is_empty());
    assert!(plugin["library"].as_str().unwrap().ends_with(&audio_library()), "{plugin}");
}

// ---------------------------------------------------------------- docs/model.md section 9: the caption posterior

/// The conditional-model entities of a world, in scenario order.
fn conditionals(world: &mut World) -> Vec<Entity> {
    world.resource::<ScenarioEntities>().conditionals.clone()
}

#[test]
fn caption_posterior_multiplies_the_likelihoods_of_image_and_audio_models() {
    let scenario = parse(&format!(
        r#"Scenario(name: "posterior", seed: 11, rounds: 1, entities: [
    TextModel(name: "captioner", initial: Probabilities([0.5, 0.3, 0.2]), batch: 12),
    ImageModel(name: "painter", conditioned_on: "captioner", covariance: Isotropic(0.5), frozen: true),
    PluginModel(name: "singer", library: "{}", model: "von_mises_pitch", conditioned_on: "captioner",
                params: (kappa0: 1.5), frozen: true),
    Temperature(name: "warm", target: "singer", t: 2.0),
])"#,
        audio_library()
    ));
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    let p = text_p(&mut sim, "captioner");
    let world = sim.world_mut();
    let k = p.len();
    // Replay the text phase by hand on copies of the streams: captions from p (T = 1), then
    // each conditional model, in scenario order, samples its modality for every caption (the
    // singer at its sampler's temperature 2).
    let mut text_stream = world.query::<(&TextAgent, &RandomStream)>().single(world).unwrap().1.0.clone();
    let mut counts = Vec::new();
    multinomial_counts(12, &p, &mut text_stream, &mut counts);
    let n: usize = counts.iter().sum();
    let mut log_likelihoods = Vec::new();
    for (e, temperature) in conditionals(world).into_iter().zip([1.0, 2.0]) {
        let mut stream: Stream = world.get::<RandomStream>(e).unwrap().0.clone();
        let mut agent = world.get_mut::<ConditionalAgent>(e).unwrap();
        let mut samples = Vec::new();
        agent.model.sample(&counts, temperature, &mut stream, &mut samples).unwrap();
        let mut ll = vec![0.0; n * k];
        agent.model.add_log_likelihood(&samples, &mut ll).unwrap();
        log_likelihoods.push(ll);
        if temperature != 1.0 {
            // The same draws untempered, to show the sampler's temperature reaches the plugin.
            let mut stream: Stream = world.get::<RandomStream>(e).unwrap().0.clone();
            let mut agent = world.get_mut::<ConditionalAgent>(e).unwrap();
            agent.model.sample(&counts, 1.0, &mut stream, &mut samples).unwrap();
            let mut ll = vec![0.0; n * k];
            agent.model.add_log_likelihood(&samples, &mut ll).unwrap();
            log_likelihoods.push(ll);
        }
    }
    assert_eq!(log_likelihoods.len(), 3, "an image model, and an audio model at T = 2 and at T = 1");
    // p'_i = (1/N) sum_j Z_i(y_j, a_j) with Z_i ~ p_i q_image(y|i) q_audio(a|i), in linear space.
    let posterior_mean = |models: &[&Vec<f64>]| -> Vec<f64> {
        let mut out = vec![0.0; k];
        for j in 0..n {
            let w: Vec<f64> = (0..k).map(|i| p[i] * models.iter().map(|ll| ll[j * k + i].exp()).product::<f64>()).collect();
            let z: f64 = w.iter().sum();
            for i in 0..k {
                out[i] += w[i] / z / n as f64;
            }
        }
        out
    };
    let both = posterior_mean(&[&log_likelihoods[0], &log_likelihoods[1]]);
    let image_only = posterior_mean(&[&log_likelihoods[0]]);
    let untempered = posterior_mean(&[&log_likelihoods[0], &log_likelihoods[2]]);

    sim.step().unwrap();
    let refit = text_p(&mut sim, "captioner");
    for i in 0..k {
        // The engine works in log space with log-sum-exp; both are exact to rounding.
        assert!((refit[i] - both[i]).abs() < 1e-12, "text {i}: engine {} vs product posterior {}", refit[i], both[i]);
    }
    // The audio likelihood matters: leaving it out gives another refit.
    let gap = |other: &[f64]| (0..k).map(|i| (other[i] - both[i]).abs()).fold(0.0, f64::max);
    assert!(gap(&image_only) > 1e-3, "image-only and joint posteriors nearly agree; the test would not see a missing factor");
    assert!(gap(&untempered) > 1e-3, "T = 1 and T = 2 posteriors nearly agree; the test would not see a lost temperature");
}

#[test]
fn text_model_is_a_martingale_with_image_and_plugin_conditionals() {
    // docs/model.md section 3 with several conditionals (docs/model.md section 9): at T = 1, E[p' | p] = p, however many
    // modalities the posterior multiplies. Each trial restarts the text model from p0 (the
    // conditionals are frozen), so the trials are independent draws of p' given p0.
    let scenario = parse(&format!(
        r#"Scenario(name: "martingale", seed: 5, rounds: 1, entities: [
    TextModel(name: "captioner", initial: Probabilities([0.5, 0.3, 0.2]), batch: 40),
    ImageModel(name: "painter", conditioned_on: "captioner", covariance: Isotropic(0.4), frozen: true),
    PluginModel(name: "singer", library: "{}", model: "von_mises_pitch", conditioned_on: "captioner",
                params: (kappa0: 1.0), frozen: true),
])"#,
        audio_library()
    ));
    let p0 = [0.5, 0.3, 0.2];
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    sim.set_measuring(false);
    const TRIALS: usize = 3000;
    let (mut sum, mut sum_sq) = ([0.0; 3], [0.0; 3]);
    for _ in 0..TRIALS {
        sim.step().unwrap();
        let world = sim.world_mut();
        let mut q = world.query::<&mut TextAgent>();
        let mut agent = q.single_mut(world).unwrap();
        for i in 0..3 {
            sum[i] += agent.model.p[i];
            sum_sq[i] += agent.model.p[i] * agent.model.p[i];
        }
        agent.model.p = p0.to_vec();
    }
    for i in 0..3 {
        let mean = sum[i] / TRIALS as f64;
        let var = (sum_sq[i] / TRIALS as f64 - mean * mean) * TRIALS as f64 / (TRIALS - 1) as f64;
        // The mean of TRIALS iid draws of p'_i has standard error sd / sqrt(TRIALS) (sd from
        // the sample, about sqrt(p(1-p)/N) / 2 here: about 0.0008). 4.5 standard errors,
        // two-sided, for 3 texts: a false alarm probability below 3 * 7e-6.
        let se = (var / TRIALS as f64).sqrt();
        assert!((mean - p0[i]).abs() < 4.5 * se, "text {i}: mean p' = {mean}, p = {}, se = {se}", p0[i]);
    }
}

// ---------------------------------------------------------------- docs/model.md section 9: a shared feed

#[test]
fn feed_draws_image_phase_captions_from_the_weighted_mixture_of_text_models() {
    // captioner_a only ever says text 0, captioner_b only text 1. The painter is conditioned
    // on captioner_a but fed 1 : 3 by both (weights normalised to 0.25, 0.75). With a batch of
    // N = 2 captions, text i is refitted iff both captions are i (fewer than 2 samples leave a
    // text unchanged, docs/model.md section 3): probability w_i^2, i.e. 1/16 for text 0 and 9/16 for text 1.
    let scenario = parse(
        r#"Scenario(name: "feed", seed: 9, rounds: 1, entities: [
    TextModel(name: "captioner_a", initial: Probabilities([1.0, 0.0]), frozen: true),
    TextModel(name: "captioner_b", initial: Probabilities([0.0, 1.0]), frozen: true),
    ImageModel(name: "painter", conditioned_on: "captioner_a", batch: 2, feed: [("captioner_a", 1.0), ("captioner_b", 3.0)]),
])"#,
    );
    const TRIALS: u64 = 4000;
    let mut refits = [0u64; 2];
    for replicate in 0..TRIALS {
        // Every replicate has its own streams: independent trials from the initial state.
        let mut sim = Simulation::new(&scenario, replicate).unwrap();
        let rows = sim.step().unwrap();
        for row in rows.iter().filter(|r| &*r.model == "painter" && &*r.metric == "fidelity") {
            // fidelity = ||mu - mu0|| is exactly 0 until a refit moves the mean.
            if row.value > 0.0 {
                refits[row.text.unwrap() as usize] += 1;
            }
        }
    }
    for (i, expected) in [1.0 / 16.0, 9.0 / 16.0].into_iter().enumerate() {
        let observed = refits[i] as f64 / TRIALS as f64;
        // Binomial proportion: standard error sqrt(q (1 - q) / TRIALS) (0.0038 and 0.0078);
        // 4.5 of them, two-sided, for 2 texts: false alarm probability below 2 * 7e-6. Equal
        // weights would give 1/4 for both texts, the conditioned-on text alone 1 and 0.
        let se = (expected * (1.0 - expected) / TRIALS as f64).sqrt();
        assert!((observed - expected).abs() < 4.5 * se, "text {i}: refitted in {observed} of trials, expected {expected} (se {se})");
    }
}

#[test]
fn feeds_are_validated() {
    let base = |feed: &str, injector: &str| {
        format!(
            r#"Scenario(name: "feed", rounds: 1, entities: [
    TextModel(name: "a", initial: Uniform(3)),
    TextModel(name: "b", initial: Uniform(3)),
    TextModel(name: "c", initial: Uniform(4)),
    ImageModel(name: "painter", conditioned_on: "a", feed: {feed}),
    {injector}
])"#
        )
    };
    let cases = [
        (base(r#"[("a", 0.5), ("nobody", 0.5)]"#, ""), "no entity is called `nobody`"),
        (base(r#"[("a", 0.5), ("c", 0.5)]"#, ""), "`c` has K = 4 texts but `a` has K = 3"),
        (base(r#"[("a", 0.5), ("b", 0.0)]"#, ""), "feed weights must be finite and > 0"),
        (base(r#"[("a", 0.5), ("a", 0.5)]"#, ""), "appears twice"),
        (base(r#"[("a", 0.5), ("painter", 0.5)]"#, ""), "`painter` is an ImageModel, but a feed targets a TextModel"),
        (
            base(
                r#"[("a", 0.5), ("b", 0.5)]"#,
                r#"CorpusInjector(name: "new", target: "b", alpha: 0.1, eps: 0.1, distribution: NewText),"#,
            ),
            "NewText",
        ),
    ];
    for (source, expected) in cases {
        let err = Scenario::parse(&source, Path::new("feed.ron")).expect_err(expected).to_string();
        assert!(err.contains(expected) && err.contains("feed"), "expected {expected:?}:\n{err}");
    }
    let ok = base(r#"[("a", 0.5), ("b", 0.5)]"#, "");
    Scenario::parse(&ok, Path::new("feed.ron")).unwrap();
}

// ---------------------------------------------------------------- data policies, checkpoints

#[test]
fn accumulate_pools_the_initial_real_dataset_into_the_first_refit() {
    // As for the built-in image model, Accumulate(initial: L) starts from L pairs of the initial
    // model (captions from p0) and then accumulates every batch: the audio plugin's sufficient
    // statistics must count L + N samples after one refit of N.
    let scenario = parse(&format!(
        r#"Scenario(name: "accumulate", seed: 2, rounds: 1, entities: [
    TextModel(name: "captioner", initial: Uniform(3), frozen: true),
    PluginModel(name: "singer", library: "{}", model: "von_mises_pitch", conditioned_on: "captioner",
                batch: 30, data: Accumulate(initial: 500)),
])"#,
        audio_library()
    ));
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    let singer = conditionals(sim.world_mut())[0];
    let state = |sim: &Simulation| {
        let agent = sim.world().get::<ConditionalAgent>(singer).unwrap();
        PluginState::decode(&agent.model.save_state().unwrap()).unwrap()
    };
    let (counts, samples) = state(&sim).pending.expect("the initial dataset waits for the first refit");
    assert_eq!(counts.iter().sum::<usize>(), 500);
    assert_eq!(samples.len(), 500, "dim 1");
    sim.step().unwrap();
    let after = state(&sim);
    assert!(after.pending.is_none());
    // Audio checkpoint layout: [format, K, per text: mu, kappa, mu0, kappa0, n, C, S, initial_drawn, regularized].
    let k = after.trained[1] as usize;
    let n: f64 = (0..k).map(|i| after.trained[2 + 9 * i + 4]).sum();
    assert_eq!(n, 530.0, "accumulated sample count = initial 500 + batch 30");
}

#[test]
fn checkpoint_restores_a_plugin_world_exactly() {
    let scenario = parse(&format!(
        r#"Scenario(name: "resume", seed: 4, rounds: 1, entities: [
    TextModel(name: "captioner", initial: Uniform(4), batch: 200),
    ImageModel(name: "painter", conditioned_on: "captioner", batch: 200),
    PluginModel(name: "singer", library: "{}", model: "von_mises_pitch", conditioned_on: "captioner",
                batch: 200, data: Accumulate(initial: 100)),
])"#,
        audio_library()
    ));
    let mut original = Simulation::new(&scenario, 0).unwrap();
    for _ in 0..3 {
        original.step().unwrap();
    }
    let saved = coevo::checkpoint::capture(&original).unwrap();
    let mut resumed = Simulation::new(&scenario, 0).unwrap();
    coevo::checkpoint::restore(&mut resumed, &saved).unwrap();
    for _ in 0..3 {
        let a = original.step().unwrap().to_vec();
        let b = resumed.step().unwrap().to_vec();
        assert_eq!(a, b, "a restored world continues exactly as the original");
    }
}

// ---------------------------------------------------------------- faults

/// A fault case: test name, library, model, params, then the field the error names (load
/// faults) or the healthy twin's params (runtime faults), and what the message must say.
type FaultCase<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a [&'a str]);

/// A scenario with a healthy text and image model and one plugin model, in its own folder.
fn fault_scenario(dir: &Path, library: &str, model: &str, params: &str) -> String {
    let file = dir.join("scenario.ron");
    std::fs::write(
        &file,
        format!(
            r#"Scenario(name: "fault", seed: 3, rounds: 3, entities: [
    TextModel(name: "captioner", initial: Uniform(3), batch: 50),
    ImageModel(name: "painter", conditioned_on: "captioner", batch: 50),
    PluginModel(
        name: "faulty",
        library: "{library}",
        model: "{model}",
        conditioned_on: "captioner",
        params: {params},
        batch: 50,
    ),
])"#
        ),
    )
    .unwrap();
    file.display().to_string()
}

fn run_fault(test: &str, library: &str, model: &str, params: &str) -> (Output, PathBuf) {
    let dir = scratch("plugins", test);
    let file = fault_scenario(&dir, library, model, params);
    let out_dir = dir.join("out");
    let plugins = plugin_dir().display().to_string();
    let out = coevo(&["run", &file, "--out", out_dir.to_str().unwrap(), "--plugin-dir", &plugins, "--quiet"]);
    (out, out_dir)
}

#[test]
fn load_faults_are_bad_input_naming_the_plugin_and_the_reason() {
    let cases: [FaultCase; 6] = [
        ("missing_file", "missing/libnothing.so", "any", "{}", "library", &["`missing/libnothing.so` not found", "missing/libnothing.so"]),
        ("unknown_name", "nothing-here", "any", "{}", "library", &["`nothing-here` not found", "plugin directories"]),
        ("no_entry", "faulty-no-entry", "any", "{}", "library", &["libcoevo_plugin_faulty_no_entry", "has no `coevo_plugin_entry` symbol"]),
        ("wrong_abi", "faulty-abi", "any", "{}", "library", &["libcoevo_plugin_faulty_abi", "ABI version 999", "supports version 1"]),
        ("unknown_model", "audio", "trumpet", "{}", "model", &["plugin `coevo-audio` has no model `trumpet`", "von_mises_pitch"]),
        ("bad_params", "audio", "von_mises_pitch", "(kappa0: -1.0)", "params", &["plugin `coevo-audio`", "create", "kappa0"]),
    ];
    for (test, library, model, params, field, expected) in cases {
        let (out, out_dir) = run_fault(test, library, model, params);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{test}: a load fault is bad input (exit 2):\n{err}");
        let location = format!("{}:", out_dir.parent().unwrap().join("scenario.ron").display());
        assert!(err.contains(&location), "{test}: the message must locate the file:\n{err}");
        assert!(err.contains(&format!("(PluginModel \"faulty\").{field}:")), "{test}: the message must name the field `{field}`:\n{err}");
        for e in expected {
            assert!(err.contains(e), "{test}: the message must say {e:?}:\n{err}");
        }
        assert!(!out_dir.join("manifest.json").exists(), "{test}: nothing runs after a load fault");
        assert!(!err.contains("panicked"), "{test}: {err}");
    }
}

/// Rows of metrics.csv (after the header) of round `round`.
fn rows_of_round(csv: &str, round: u64) -> Vec<&str> {
    let prefix = format!("0,{round},");
    csv.lines().skip(1).filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn runtime_faults_fail_the_run_cleanly_and_keep_completed_rounds() {
    // (test, library, model, faulty params, healthy params, what the message must say)
    let cases: [FaultCase; 6] = [
        ("panic_sample", "faulty-panic", "panicky", r#"{"panic_in": "sample"}"#, r#"{"panic_in": "none"}"#, &["sample", "panic"]),
        ("panic_fit", "faulty-panic", "panicky", r#"{"panic_in": "fit"}"#, r#"{"panic_in": "none"}"#, &["fit", "panic"]),
        ("nan_loglik", "faulty-nan", "liar", r#"{"mode": "nan_loglik"}"#, r#"{"mode": "none"}"#, &["log_likelihood", "NaN"]),
        ("short_loglik", "faulty-nan", "liar", r#"{"mode": "short_loglik"}"#, r#"{"mode": "none"}"#, &["log_likelihood", "unwritten"]),
        (
            "overrun_loglik",
            "faulty-nan",
            "liar",
            r#"{"mode": "overrun_loglik"}"#,
            r#"{"mode": "none"}"#,
            &["log_likelihood", "past the end"],
        ),
        ("nan_metrics", "faulty-nan", "liar", r#"{"mode": "nan_metrics"}"#, r#"{"mode": "none"}"#, &["metrics", "NaN"]),
    ];
    for (test, library, model, params, healthy, expected) in cases {
        let (out, out_dir) = run_fault(test, library, model, params);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{test}: a fault while running exits 1:\n{err}");
        let plugin = if library == "faulty-panic" { "faulty-panic" } else { "faulty-nan" };
        for e in [plugin, model, "`faulty`"].iter().chain(expected) {
            assert!(err.contains(e), "{test}: the error must say {e:?}:\n{err}");
        }
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
        let status = manifest["status"].as_str().unwrap();
        assert!(status.starts_with("failed") && status.contains(plugin), "{test}: manifest status {status:?}");
        assert_eq!(manifest["rounds_completed"], 0, "{test}");

        // What was written before the fault is intact: round 0 is exactly the healthy twin's,
        // and nothing of the failed round was written. (A NaN metric fails round 0 itself.)
        let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
        assert!(csv.starts_with("replicate,round,model,text,metric,value\n"), "{test}: header");
        assert!(rows_of_round(&csv, 1).is_empty(), "{test}: rows of the failed round were written");
        let (twin, twin_dir) = run_fault(&format!("{test}_healthy"), library, model, healthy);
        assert_eq!(twin.status.code(), Some(0), "{test}: healthy twin: {}", stderr(&twin));
        let twin_csv = std::fs::read_to_string(twin_dir.join("metrics.csv")).unwrap();
        if test == "nan_metrics" {
            assert!(rows_of_round(&csv, 0).is_empty(), "{test}: round 0 failed, so none of it is written");
        } else {
            let round0 = rows_of_round(&csv, 0);
            assert!(round0.len() > 20, "{test}: round 0 has {} rows", round0.len());
            assert_eq!(round0, rows_of_round(&twin_csv, 0), "{test}: round 0 differs from the healthy twin's");
        }
    }
}

// ---------------------------------------------------------------- plugin authors

/// A C "plugin" whose entry point calls a function no library defines. `cc -shared` links it
/// (undefined symbols are allowed in shared objects), so only the loader can notice.
const UNRESOLVED_C: &str = r#"
extern const void *coevo_test_symbol_that_does_not_exist(void);
const void *coevo_plugin_entry(void) { return coevo_test_symbol_that_does_not_exist(); }
"#;

/// Compiles [`UNRESOLVED_C`] into `dir` as a library called `broken`; fails the test (never
/// skips it) if there is no C compiler, since the regression could not be checked otherwise.
fn build_unresolved_library(dir: &Path) -> PathBuf {
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let source = dir.join("broken.c");
    let lib = dir.join(format!("{p}broken{s}"));
    std::fs::write(&source, UNRESOLVED_C).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("this test needs a C compiler to build a library with an unresolved symbol: cannot run `{cc}` ({e}); install one (e.g. gcc) or set CC"));
    assert!(out.status.success(), "`{cc} -shared` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    lib
}

#[test]
fn a_library_with_an_unresolved_symbol_is_an_error_not_a_dead_host() {
    let dir = scratch("plugins", "unresolved");
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    let broken = build_unresolved_library(&libs);
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    std::fs::copy(audio_library(), libs.join(format!("{p}coevo_plugin_audio{s}"))).unwrap();
    let broken_name = broken.display().to_string();

    // `plugins list` names the broken library with the loader's reason and lists the others.
    let out = coevo(&["plugins", "list", libs.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "lazy binding would exit 127 here:\n{}\n{}", text, stderr(&out));
    assert!(text.contains("coevo-audio 0.1.0") && text.contains("von_mises_pitch"), "the good library is still listed:\n{text}");
    assert!(text.contains("not usable as plugins") && text.contains(&broken_name), "{text}");
    assert!(text.contains("coevo_test_symbol_that_does_not_exist"), "the loader's reason names the symbol:\n{text}");

    // `plugins check` cannot load it: exit 2 naming the library and the symbol.
    let out = coevo(&["plugins", "check", &broken_name]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&broken_name) && err.contains("coevo_test_symbol_that_does_not_exist"), "{err}");

    // `validate` and `run` answer with exit 2 and a message naming the library and the symbol.
    let scenario = fault_scenario(&dir, &broken_name, "any", "{}");
    let out_dir = dir.join("out");
    for args in [vec!["validate", &scenario], vec!["run", &scenario, "--out", out_dir.to_str().unwrap(), "--quiet"]] {
        let out = coevo(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: lazy binding would exit 127 here:\n{err}", args[0]);
        for expected in
            ["(PluginModel \"faulty\").library:", "cannot load plugin library", &broken_name, "coevo_test_symbol_that_does_not_exist"]
        {
            assert!(err.contains(expected), "{}: the message must say {expected:?}:\n{err}", args[0]);
        }
    }
    assert!(!out_dir.join("manifest.json").exists(), "nothing runs after a load fault");
}

/// A library of the plugin folder by its cargo library name, e.g. `coevo_plugin_template`.
pub(crate) fn built_library(lib_name: &str) -> String {
    let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    plugin_dir().join(format!("{p}{lib_name}{s}")).display().to_string()
}

/// The template plugin authors copy (`examples/plugin-template`) builds as a workspace member,
/// loads, and runs a scenario under each data policy next to the built-in models.
#[test]
fn the_plugin_template_builds_loads_and_runs_a_scenario() {
    let library = built_library("coevo_plugin_template");
    let dir = scratch("plugins", "template");
    let file = dir.join("template.ron");
    let entity = |name: &str, data: &str| {
        format!(
            r#"PluginModel(name: "{name}", library: "{library}", model: "isotropic_gaussian", conditioned_on: "captioner",
                params: {{"dim": 3, "sigma": 0.5}}, batch: 40, data: {data}),"#
        )
    };
    std::fs::write(
        &file,
        format!(
            r#"Scenario(name: "template", seed: 5, rounds: 4, entities: [
    TextModel(name: "captioner", initial: Uniform(3), batch: 60),
    ImageModel(name: "painter", conditioned_on: "captioner", batch: 40),
    {}
    {}
    {}
])"#,
            entity("replace", "Replace"),
            entity("accumulate", "Accumulate(initial: 30)"),
            entity("fresh", "Fresh(lambda: 0.5)")
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let out_dir = dir.join("out");
    let out = coevo(&["run", &file, "--out", out_dir.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    for model in ["replace", "accumulate", "fresh"] {
        for round in 0..=4 {
            for text in 0..3 {
                let prefix = format!("0,{round},{model},{text},diversity,");
                let row = csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {prefix}"));
                let value: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
                // dim * sigma^2 at round 0, then a positive finite fitted trace.
                assert!(value.is_finite() && value > 0.0, "{row}");
                if round == 0 {
                    assert!((value - 0.75).abs() < 1e-12, "{row}");
                }
            }
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let plugin = &manifest["resolved"].as_array().unwrap().iter().find(|m| m["name"] == "replace").unwrap()["plugin"];
    assert_eq!((plugin["plugin"].as_str(), plugin["model"].as_str()), (Some("coevo-template"), Some("isotropic_gaussian")));
}

/// `coevo plugins check LIB [--params JSON]`: its stdout and exit code.
fn plugins_check(library: &str, params: &str) -> (Option<i32>, String, String) {
    let out = coevo(&["plugins", "check", library, "--params", params]);
    (out.status.code(), stdout(&out), stderr(&out))
}

/// Every check of `coevo plugins check`, in report order.
const CHECKS: [&str; 9] = ["create", "metrics", "sample", "log_likelihood", "fit", "determinism", "checkpoint", "add_text", "accumulate"];

#[test]
fn plugins_check_passes_on_the_example_plugins_and_the_template() {
    for (lib, plugin, models) in [
        ("coevo_plugin_audio", "coevo-audio", &["von_mises_pitch"][..]),
        ("coevo_plugin_gaussian", "coevo-gaussian", &["gaussian_image"][..]),
        ("coevo_plugin_multi", "coevo-multi", &["laplace_motion", "tag_spectrum"][..]),
        ("coevo_plugin_template", "coevo-template", &["isotropic_gaussian"][..]),
    ] {
        let (code, text, err) = plugins_check(&built_library(lib), "{}");
        assert_eq!(code, Some(0), "{lib}:\n{text}\n{err}");
        assert!(text.starts_with(&format!("{plugin} 0.1.0 (ABI 1)")), "{text}");
        for model in models {
            assert!(text.contains(&format!("model {model} (params {{}}, K = 3")), "{lib}: {model} checked:\n{text}");
        }
        let n = CHECKS.len() * models.len();
        assert!(text.contains(&format!("{n} of {n} checks passed, 0 failed")), "{text}");
        for check in CHECKS {
            let lines = text.lines().filter(|l| l.starts_with(&format!("  ok    {check} "))).count();
            assert_eq!(lines, models.len(), "{lib}: check {check} must pass for every model:\n{text}");
        }
    }
}

#[test]
fn plugins_check_tells_the_author_what_to_fix() {
    let liar = built_library("coevo_plugin_faulty_nan");
    // (params, the failing check, what its message must say)
    let cases = [
        (r#"{"mode": "nan_loglik"}"#, "log_likelihood", &["log-likelihood of sample 0 under text 0 is NaN", "NaN and +inf are not"][..]),
        (r#"{"mode": "short_sample"}"#, "sample", &["left output element 7 of 8 unwritten", "exactly sum(counts) * dim"][..]),
        (r#"{"mode": "nan_metrics"}"#, "metrics", &["metric `diversity` of text 0 is NaN", "finite values"][..]),
        (
            r#"{"mode": "unseeded_sample"}"#,
            "determinism",
            &["sample differs between two calls from identical states", "only from the host stream"][..],
        ),
        (r#"{"mode": "forgetful_params"}"#, "checkpoint", &["set_params into a fresh instance, sample differs", "restore it exactly"][..]),
        (r#"{"mode": "nan_params"}"#, "determinism", &["get_params", "parameter 1 is NaN"][..]),
    ];
    for (params, check, expected) in cases {
        let (code, text, err) = plugins_check(&liar, params);
        assert_eq!(code, Some(1), "{params}: a failed check exits 1:\n{text}\n{err}");
        let line = text
            .lines()
            .position(|l| l.starts_with(&format!("  FAIL  {check} ")))
            .unwrap_or_else(|| panic!("{params}: no FAIL line for {check}:\n{text}"));
        let message: String = text.lines().skip(line).take(2).collect::<Vec<_>>().join("\n");
        assert!(message.contains("fix: "), "{params}: the failure says what to fix:\n{message}");
        for e in expected {
            assert!(message.contains(e), "{params}: the failure must say {e:?}:\n{message}");
        }
        assert!(text.contains("fix the FAIL lines above"), "{text}");
    }
    // The same model with honest params passes: the failures above are the modes'.
    assert_eq!(plugins_check(&liar, r#"{"mode": "none"}"#).0, Some(0));

    // A panic is a failed check naming the call, never a crash of the checker.
    let (code, text, _) = plugins_check(&built_library("coevo_plugin_faulty_panic"), r#"{"panic_in": "fit"}"#);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("  FAIL  fit ") && text.contains("deliberate panic in fit"), "{text}");
    assert!(text.contains("  skip  checkpoint       needs `fit`, which fails above"), "{text}");

    // A library that cannot be loaded, or is not there, is exit 2 naming it.
    let abi = built_library("coevo_plugin_faulty_abi");
    let (code, _, err) = plugins_check(&abi, "{}");
    assert_eq!(code, Some(2));
    assert!(err.contains(&abi) && err.contains("ABI version 999"), "{err}");
    let (code, _, err) = plugins_check("no/such/libplugin.so", "{}");
    assert_eq!(code, Some(2));
    assert!(err.contains("no/such/libplugin.so") && err.contains("not found"), "{err}");
}

#[test]
fn output_metrics_may_name_a_plugins_metrics_and_unknown_ones_are_refused_once_it_is_loaded() {
    let base = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/plugin_audio.ron"))
        .replace("library: \"audio\"", &format!("library: {:?}", audio_library()))
        .replace("rounds: 300,", "rounds: 3,");
    let with = |metrics: &str| base.replace("entities: [", &format!("output: (metrics: [{metrics}]),\n    entities: ["));
    let file = Path::new("inline.ron");
    // The plugin's own per-text `diversity` and its p-weighted mean are valid names.
    let mut good = Scenario::parse(&with("\"diversity\", \"weighted_diversity\", \"gini_simpson\""), file).unwrap();
    coevo::plugin::check_scenario(&mut good, file).unwrap_or_else(|p| panic!("{p:?}"));
    let mut bad = Scenario::parse(&with("\"diversity\", \"pitch_spread\""), file).unwrap();
    let problems = coevo::plugin::check_scenario(&mut bad, file).expect_err("an unknown metric is refused");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "output.metrics");
    assert!(problems[0].message.contains("unknown metric \"pitch_spread\"") && problems[0].message.contains("diversity"), "{problems:?}");
}
