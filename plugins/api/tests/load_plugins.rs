//! Loads the example and faulty plugins as real shared libraries (built with cargo first) and
//! checks the host helpers end to end: metadata, calls, logging, and every fault a fixture
//! simulates becoming a clear error that names the plugin.
//!
//! Run with `cargo test -p coevo-plugin-api --features host`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use coevo_plugin_api::host::{HostError, LoadedTable, cargo_build_plugin, load_library};
use coevo_plugin_api::{COEVO_ABI_VERSION, DataPolicy, LogLevel};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const PACKAGES: &[&str] = &[
    "coevo-plugin-audio",
    "coevo-plugin-multi",
    "coevo-plugin-faulty-no-entry",
    "coevo-plugin-faulty-abi",
    "coevo-plugin-faulty-panic",
    "coevo-plugin-faulty-nan",
];

/// Build every plugin once per test binary (sequentially: cargo locks the target directory).
fn library(package: &str) -> PathBuf {
    static BUILT: OnceLock<HashMap<&'static str, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        PACKAGES.iter().map(|p| (*p, cargo_build_plugin(&workspace, p, &[]).unwrap_or_else(|e| panic!("{e}")))).collect()
    });
    built[package].clone()
}

fn load(package: &str) -> Result<LoadedTable, HostError> {
    // SAFETY: `load_library` needs a coevo plugin that follows the ABI: these are this
    // workspace's plugin crates, built by cargo above; the faulty fixtures break the ABI only
    // in ways the loader checks (a wrong version, a missing entry) or the host contains.
    unsafe { load_library(&library(package)) }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn sink(plugin: &str, level: LogLevel, msg: &str) {
    LOG.lock().unwrap().push(format!("[{plugin}] {level:?}: {msg}"));
}

#[test]
fn audio_plugin_end_to_end() {
    let t = load("coevo-plugin-audio").unwrap();
    assert_eq!(t.name(), "coevo-audio");
    assert_eq!(t.version(), "0.1.0");
    assert!(t.origin().ends_with(&format!("libcoevo_plugin_audio{}", std::env::consts::DLL_SUFFIX)));
    t.set_log_sink(sink);
    let mut m = t.create_by_name("von_mises_pitch", r#"{"kappa0": 3.0}"#, 5, DataPolicy::Accumulate { initial: 50 }).unwrap();
    assert!(
        LOG.lock().unwrap().iter().any(|l| l.starts_with("[coevo-audio] Debug: von_mises_pitch: 5 texts")),
        "{:?}",
        LOG.lock().unwrap()
    );
    let counts = [10u64, 0, 5, 5, 1];
    let y = m.sample(&counts, 1.0, &mut rng(1)).unwrap();
    assert_eq!(y, m.sample(&counts, 1.0, &mut rng(1)).unwrap());
    let ll = m.log_likelihood(&y).unwrap();
    assert_eq!(ll.len(), 21 * 5);
    m.fit(&counts, &y, &mut rng(2)).unwrap();
    let met = m.metrics().unwrap();
    assert_eq!(met.len(), 5 * m.metric_names().len());
    m.add_text().unwrap();
    let ck = m.get_params().unwrap();
    let mut m2 = t.create_by_name("von_mises_pitch", r#"{"kappa0": 3.0}"#, 5, DataPolicy::Accumulate { initial: 50 }).unwrap();
    m2.set_params(&ck).unwrap();
    assert_eq!(m2.num_texts(), 6);
    assert_eq!(m2.get_params().unwrap(), ck);

    // Bad params are a clear error naming plugin and model.
    let e = t.create_by_name("von_mises_pitch", r#"{"kappa0": -1}"#, 5, DataPolicy::Replace).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("coevo-audio") && s.contains("von_mises_pitch") && s.contains("kappa0 must be finite and > 0"), "{s}");
    let e = t.create_by_name("gaussian", "{}", 5, DataPolicy::Replace).unwrap_err();
    assert!(e.to_string().contains("has no model `gaussian` (it has: von_mises_pitch)"), "{e}");
}

#[test]
fn models_can_be_used_from_several_threads() {
    let t = load("coevo-plugin-audio").unwrap();
    // Loading the same library again yields the same plugin.
    assert_eq!(load("coevo-plugin-audio").unwrap().name(), t.name());
    let results: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                s.spawn(move || {
                    let mut m = t.create_by_name("von_mises_pitch", "", 3, DataPolicy::Replace).unwrap();
                    let mut g = rng(42);
                    for _ in 0..20 {
                        let y = m.sample(&[20, 20, 20], 1.0, &mut g).unwrap();
                        m.fit(&[20, 20, 20], &y, &mut g).unwrap();
                    }
                    m.get_params().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]), "same seed, same result on every thread");
}

#[test]
fn multi_plugin_carries_two_models() {
    let t = load("coevo-plugin-multi").unwrap();
    let names: Vec<_> = t.models().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["laplace_motion", "tag_spectrum"]);
    let mut a = t.create_by_name("laplace_motion", r#"{"dim": 2}"#, 3, DataPolicy::Replace).unwrap();
    let mut b = t.create_by_name("tag_spectrum", r#"{"tags": 6}"#, 3, DataPolicy::Fresh { lambda: 0.5 }).unwrap();
    for m in [&mut a, &mut b] {
        let y = m.sample(&[4, 4, 4], 1.0, &mut rng(3)).unwrap();
        assert_eq!(y.len(), 12 * m.dim());
        assert_eq!(m.log_likelihood(&y).unwrap().len(), 12 * 3);
        m.fit(&[4, 4, 4], &y, &mut rng(4)).unwrap();
        assert_eq!(m.metrics().unwrap().len(), 3 * m.metric_names().len());
    }
}

#[test]
fn missing_entry_symbol_is_reported() {
    let e = load("coevo-plugin-faulty-no-entry").unwrap_err();
    assert!(matches!(e, HostError::MissingEntry { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("libcoevo_plugin_faulty_no_entry") && s.contains("coevo_plugin_entry"), "{s}");
}

#[test]
fn wrong_abi_version_is_reported() {
    let e = load("coevo-plugin-faulty-abi").unwrap_err();
    match &e {
        HostError::AbiMismatch { origin, found, expected } => {
            assert_eq!((*found, *expected), (999, COEVO_ABI_VERSION));
            assert!(origin.contains("libcoevo_plugin_faulty_abi"));
        }
        other => panic!("expected AbiMismatch, got {other}"),
    }
    assert!(e.to_string().contains("ABI version 999"), "{e}");
}

#[test]
fn unloadable_path_is_reported() {
    // SAFETY: the file does not exist, nothing is loaded.
    let e = unsafe { load_library(Path::new("/nonexistent/libnothing.so")) }.unwrap_err();
    assert!(matches!(e, HostError::Load { .. }) && e.to_string().contains("/nonexistent/libnothing.so"), "{e}");
}

#[test]
fn panics_become_errors_naming_the_plugin() {
    let t = load("coevo-plugin-faulty-panic").unwrap();
    let create = |point: &str| t.create_by_name("panicky", &format!(r#"{{"panic_in": "{point}"}}"#), 2, DataPolicy::Replace);
    let e = create("create").unwrap_err();
    assert!(e.is_panic() && e.to_string().contains("deliberate panic in create"), "{e}");
    let e = create("nowhere").unwrap_err();
    assert!(e.to_string().contains("panic_in must be one of"), "{e}");

    type Call = fn(&mut coevo_plugin_api::host::PluginModel) -> Result<(), HostError>;
    let calls: &[(&str, Call)] = &[
        ("sample", |m| m.sample(&[1, 1], 1.0, &mut rng(0)).map(drop)),
        ("log_likelihood", |m| m.log_likelihood(&[0.0]).map(drop)),
        ("fit", |m| m.fit(&[1, 1], &[0.0, 1.0], &mut rng(0))),
        ("metrics", |m| m.metrics().map(drop)),
        ("add_text", |m| m.add_text()),
        ("get_params", |m| m.get_params().map(drop)),
        ("set_params", |m| m.set_params(&[2.0])),
    ];
    for (point, call) in calls {
        let mut m = create(point).unwrap();
        let e = call(&mut m).unwrap_err();
        let s = e.to_string();
        assert!(e.is_panic(), "{point}: {s}");
        assert!(s.contains("faulty-panic") && s.contains("panicky") && s.contains(&format!("deliberate panic in {point}")), "{s}");
        // The handle is poisoned; further calls fail cleanly and drop still works.
        let e = m.metrics().unwrap_err();
        assert!(e.to_string().contains("poisoned"), "{e}");
    }
    // A panic while the plugin frees a handle is contained too.
    let m = create("drop").unwrap();
    drop(m);
    // Healthy calls still work on other handles of the library.
    let mut ok = create("none").unwrap();
    assert_eq!(ok.sample(&[1, 2], 1.0, &mut rng(0)).unwrap(), [0.0, 1.0, 1.0]);
}

#[test]
fn lying_outputs_are_detected() {
    let t = load("coevo-plugin-faulty-nan").unwrap();
    let mk = |mode: &str| t.create_by_name("liar", &format!(r#"{{"mode": "{mode}"}}"#), 3, DataPolicy::Replace).unwrap();
    let y = [0.1, 0.2];
    let expect = |mode: &str, r: Result<(), HostError>, needle: &str| {
        let e = r.unwrap_err();
        assert!(matches!(e, HostError::Contract { .. }), "{mode}: {e}");
        let s = e.to_string();
        assert!(s.contains("faulty-nan") && s.contains(needle), "{mode}: {s}");
    };
    expect("nan_loglik", mk("nan_loglik").log_likelihood(&y).map(drop), "is NaN");
    expect("posinf_loglik", mk("posinf_loglik").log_likelihood(&y).map(drop), "is inf");
    expect("short_loglik", mk("short_loglik").log_likelihood(&y).map(drop), "left output element 5 of 6 unwritten");
    expect("overrun_loglik", mk("overrun_loglik").log_likelihood(&y).map(drop), "wrote past the end of its 6-element output buffer");
    expect("nan_sample", mk("nan_sample").sample(&[1, 1, 1], 1.0, &mut rng(0)).map(drop), "sample value 0 is NaN");
    expect("short_sample", mk("short_sample").sample(&[1, 1, 1], 1.0, &mut rng(0)).map(drop), "unwritten");
    expect("nan_metrics", mk("nan_metrics").metrics().map(drop), "metric `diversity` of text 0 is NaN");
    expect("inf_metrics", mk("inf_metrics").metrics().map(drop), "is inf");
    expect("short_metrics", mk("short_metrics").metrics().map(drop), "unwritten");
    expect("nan_params", mk("nan_params").get_params().map(drop), "parameter 1 is NaN");
    // Legal: a zero density.
    let ll = mk("neginf_loglik").log_likelihood(&y).unwrap();
    assert_eq!(ll[0], f64::NEG_INFINITY);
    // Host-side misuse is caught before the call.
    let e = mk("none").sample(&[1, 1], 1.0, &mut rng(0)).unwrap_err();
    assert!(matches!(e, HostError::Usage { .. }) && e.to_string().contains("2 counts for 3 texts"), "{e}");
}

/// A plugin written in C against `include/coevo_plugin.h` alone loads and works: the documented
/// ABI is enough without the Rust SDK (and the header's layout asserts match the Rust types).
#[test]
fn c_plugin_follows_the_documented_abi() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("libcoevo_c_plugin{}", std::env::consts::DLL_SUFFIX));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = std::process::Command::new(&cc)
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("tests/c_plugin/plugin.c"))
        .arg("-o")
        .arg(&out)
        .arg("-lm")
        .status();
    // No compiler is a failure, not a skip: a skipped test would let CI pass without ever
    // checking the C header against the Rust ABI. CI has gcc; elsewhere install a C compiler
    // or point `CC` at one.
    let status = match status {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("this test compiles a C plugin, but there is no C compiler `{cc}`: install one (e.g. gcc) or set CC to its path")
        }
        Err(e) => panic!("cannot run {cc}: {e}"),
    };
    assert!(status.success(), "compiling the C plugin failed");
    // SAFETY: the library was just built from this crate's test source.
    let t = unsafe { load_library(&out) }.unwrap();
    assert_eq!((t.name(), t.version()), ("c-plugin", "1.0.0"));
    assert_eq!(t.models()[0].fixed_dim, Some(1));
    t.set_log_sink(sink);
    let mut m = t.create_by_name("c_gauss", "", 3, DataPolicy::Replace).unwrap();
    assert!(LOG.lock().unwrap().iter().any(|l| l == "[c-plugin] Info: c_gauss created"));
    assert_eq!(m.metric_names(), ["diversity", "fidelity"]);
    let counts = [2000u64, 2000, 2000];
    let y = m.sample(&counts, 4.0, &mut rng(1)).unwrap();
    assert_eq!(y, m.sample(&counts, 4.0, &mut rng(1)).unwrap());
    m.fit(&counts, &y, &mut rng(2)).unwrap();
    let met = m.metrics().unwrap();
    for i in 0..3 {
        assert!((met[2 * i] - 4.0).abs() < 0.4, "variance scaled by the temperature: {met:?}");
        assert!(met[2 * i + 1] < 0.15, "{met:?}");
    }
    assert_eq!(m.log_likelihood(&y[..5]).unwrap().len(), 15);
    m.add_text().unwrap();
    let ck = m.get_params().unwrap();
    assert_eq!(ck.len(), 1 + 3 * 4);
    let mut m2 = t.create_by_name("c_gauss", "{}", 1, DataPolicy::Replace).unwrap();
    m2.set_params(&ck).unwrap();
    assert_eq!(m2.num_texts(), 4);
    let e = t.create_by_name("c_gauss", "", 3, DataPolicy::Fresh { lambda: 0.5 }).unwrap_err();
    assert!(e.to_string().contains("c-plugin") && e.to_string().contains("only the replace policy"), "{e}");
}
