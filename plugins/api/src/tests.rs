//! In-process tests of the macro-generated table, the FFI glue and the host helpers.

use core::ffi::{CStr, c_void};
use std::sync::Mutex;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::abi::*;
use crate::host::{HostError, LoadedTable};
use crate::sdk::caption_groups;
use crate::{ConditionalModelPlugin, DataPolicy, HostRng, LogLevel, ModelDescription, PluginResult, RngLoan, plugin_bail, plugin_log};

/// A minimal per-text location model: `y = mu_i + sqrt(T) * u`, `u` uniform with unit variance.
struct Toy {
    dim: usize,
    mu: Vec<f64>,
    mu0: Vec<f64>,
    /// What to misbehave in, for host-detection tests.
    fault: String,
}

fn uniform01(rng: &mut HostRng<'_>) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl ConditionalModelPlugin for Toy {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"toy",
        modality: c"test",
        dim_rule: c"params.dim (default 1)",
        fixed_dim: 0,
        description: c"uniform noise around a per-text mean",
    };

    fn create(params: &serde_json::Value, num_texts: usize, _: DataPolicy) -> PluginResult<Self> {
        let obj = params.as_object().ok_or("params must be an object")?;
        for key in obj.keys() {
            if key != "dim" && key != "fault" {
                plugin_bail!("unknown field `{key}`");
            }
        }
        let dim = obj.get("dim").and_then(|d| d.as_u64()).unwrap_or(1) as usize;
        if dim == 0 {
            plugin_bail!("dim must be >= 1");
        }
        let fault = obj.get("fault").and_then(|f| f.as_str()).unwrap_or("").to_owned();
        if fault == "create" {
            panic!("toy create panics on request");
        }
        let mu: Vec<f64> = (0..num_texts * dim).map(|j| j as f64).collect();
        Ok(Toy { dim, mu0: mu.clone(), mu, fault })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn num_texts(&self) -> usize {
        self.mu.len() / self.dim
    }

    fn metric_names(&self) -> Vec<String> {
        vec!["diversity".into(), "fidelity".into()]
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        if self.fault == "sample" {
            panic!("toy sample panics on request");
        }
        let s = (12.0 * temperature).sqrt();
        let mut row = 0;
        for (i, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                for d in 0..self.dim {
                    out[row * self.dim + d] = self.mu[i * self.dim + d] + s * (uniform01(rng) - 0.5);
                }
                row += 1;
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let k = self.num_texts();
        for (j, y) in samples.chunks(self.dim).enumerate() {
            for i in 0..k {
                let m = &self.mu[i * self.dim..(i + 1) * self.dim];
                out[j * k + i] = -0.5 * y.iter().zip(m).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            }
        }
        match self.fault.as_str() {
            "nan_loglik" => out[0] = f64::NAN,
            "posinf_loglik" => out[0] = f64::INFINITY,
            "neginf_loglik" => out[0] = f64::NEG_INFINITY,
            "short_loglik" => {
                // Claim success but "forget" the last entry: restore the host's canary.
                let last = out.len() - 1;
                out[last] = f64::from_bits(0x7FF4_DEAD_BEEF_C0DE);
            }
            _ => {}
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], _: &mut HostRng<'_>) -> PluginResult<()> {
        if self.fault == "fit" {
            panic!("toy fit panics on request");
        }
        for (i, g) in caption_groups(counts, samples, self.dim).iter().enumerate() {
            let n = g.len() / self.dim;
            if n < 2 {
                continue;
            }
            for d in 0..self.dim {
                self.mu[i * self.dim + d] = g.iter().skip(d).step_by(self.dim).sum::<f64>() / n as f64;
            }
        }
        plugin_log!(Info, "toy fitted {} texts", counts.len());
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        for i in 0..self.num_texts() {
            let r = i * self.dim..(i + 1) * self.dim;
            out[i * 2] = self.dim as f64;
            out[i * 2 + 1] = self.mu[r.clone()].iter().zip(&self.mu0[r]).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        }
        if self.fault == "nan_metrics" {
            out[1] = f64::NAN;
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.mu.extend(std::iter::repeat_n(0.0, self.dim));
        self.mu0.extend(std::iter::repeat_n(0.0, self.dim));
        if self.fault == "add_text_twice" {
            self.mu.extend(std::iter::repeat_n(0.0, self.dim));
            self.mu0.extend(std::iter::repeat_n(0.0, self.dim));
        }
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        let mut v = vec![self.num_texts() as f64];
        v.extend(&self.mu);
        v.extend(&self.mu0);
        v
    }

    fn set_params(&mut self, params: &[f64]) -> PluginResult<()> {
        let Some(&k) = params.first() else {
            plugin_bail!("empty checkpoint");
        };
        let k = k as usize;
        if k == 0 || params.len() != 1 + 2 * k * self.dim {
            plugin_bail!("checkpoint has {} values, expected 1 + 2 * K * dim", params.len());
        }
        self.mu = params[1..1 + k * self.dim].to_vec();
        self.mu0 = params[1 + k * self.dim..].to_vec();
        Ok(())
    }
}

/// A second model type in the same library, to check multi-model tables.
struct Always;

impl ConditionalModelPlugin for Always {
    const DESCRIPTION: ModelDescription =
        ModelDescription { name: c"always_zero", modality: c"test", dim_rule: c"1", fixed_dim: 1, description: c"every sample is 0" };
    fn create(_: &serde_json::Value, num_texts: usize, _: DataPolicy) -> PluginResult<Self> {
        assert!(num_texts > 0);
        Ok(Always)
    }
    fn dim(&self) -> usize {
        1
    }
    fn num_texts(&self) -> usize {
        1
    }
    fn metric_names(&self) -> Vec<String> {
        vec![]
    }
    fn sample(&self, _: &[u64], _: f64, _: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        out.fill(0.0);
        Ok(())
    }
    fn log_likelihood(&self, _: &[f64], out: &mut [f64]) -> PluginResult<()> {
        out.fill(0.0);
        Ok(())
    }
    fn fit(&mut self, _: &[u64], _: &[f64], _: &mut HostRng<'_>) -> PluginResult<()> {
        Ok(())
    }
    fn metrics(&self, _: &mut [f64]) -> PluginResult<()> {
        Ok(())
    }
    fn add_text(&mut self) -> PluginResult<()> {
        plugin_bail!("always_zero supports exactly one text")
    }
    fn get_params(&self) -> Vec<f64> {
        vec![]
    }
    fn set_params(&mut self, _: &[f64]) -> PluginResult<()> {
        Ok(())
    }
}

crate::export_plugin! {
    name: "test-plugin",
    version: env!("CARGO_PKG_VERSION"),
    models: [Toy, Always],
}

fn loaded() -> LoadedTable {
    // SAFETY: the table is a static generated in this binary.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "in-process test table") }.unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn table_header_and_metadata() {
    let t = coevo_plugin_entry();
    assert_eq!(t, coevo_plugin_table() as *const _);
    // SAFETY: static table.
    let t = unsafe { &*t };
    assert_eq!(t.struct_size, core::mem::size_of::<CoevoPluginTable>());
    assert_eq!(t.abi_version, COEVO_ABI_VERSION);
    // SAFETY: static NUL-terminated strings.
    unsafe {
        assert_eq!(CStr::from_ptr(t.plugin_name).to_str().unwrap(), "test-plugin");
        assert_eq!(CStr::from_ptr(t.plugin_version).to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(t.model_count, 2);
        let m = &*t.models.add(1);
        assert_eq!(CStr::from_ptr(m.name).to_str().unwrap(), "always_zero");
        assert_eq!(m.fixed_dim, 1);
    }
    let lt = loaded();
    assert_eq!(lt.name(), "test-plugin");
    let names: Vec<_> = lt.models().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["toy", "always_zero"]);
    assert_eq!(lt.models()[0].fixed_dim, None);
    assert_eq!(lt.model_index("always_zero").unwrap(), 1);
    assert!(matches!(lt.model_index("nope"), Err(HostError::UnknownModel { .. })));
}

#[test]
fn host_round_trip_through_function_pointers() {
    let lt = loaded();
    let mut m = lt.create_by_name("toy", r#"{"dim": 2}"#, 3, DataPolicy::Replace).unwrap();
    assert_eq!((m.dim(), m.num_texts()), (2, 3));
    assert_eq!(m.metric_names(), ["diversity", "fidelity"]);

    let counts = [2u64, 0, 3];
    let s1 = m.sample(&counts, 1.0, &mut rng(7)).unwrap();
    let s2 = m.sample(&counts, 1.0, &mut rng(7)).unwrap();
    assert_eq!(s1.len(), 5 * 2);
    assert_eq!(s1, s2, "same host seed, same samples");
    // Text 2's mean is (4, 5); uniform noise of unit variance stays within sqrt(3).
    assert!((s1[4] - 4.0).abs() <= 3f64.sqrt());

    let ll = m.log_likelihood(&s1).unwrap();
    assert_eq!(ll.len(), 5 * 3);
    assert!(ll[0] > ll[2], "the first sample is text 0's");

    m.fit(&counts, &s1, &mut rng(1)).unwrap();
    let met = m.metrics().unwrap();
    assert_eq!(met.len(), 3 * 2);
    assert_eq!(met[3], 0.0, "text 1 had no evidence: fidelity 0");
    assert!(met[1] > 0.0, "text 0 moved");

    let ckpt = m.get_params().unwrap();
    m.add_text().unwrap();
    assert_eq!(m.num_texts(), 4);
    assert_eq!(m.metrics().unwrap().len(), 8);
    m.set_params(&ckpt).unwrap();
    assert_eq!(m.num_texts(), 3);
    assert_eq!(m.get_params().unwrap(), ckpt);
}

#[test]
fn loglik_argmax_is_own_text() {
    let lt = loaded();
    let mut m = lt.create(0, "", 4, DataPolicy::Replace).unwrap();
    let counts = [1u64, 1, 1, 1];
    let s = m.sample(&counts, 0.01, &mut rng(3)).unwrap();
    let ll = m.log_likelihood(&s).unwrap();
    for j in 0..4 {
        let row = &ll[j * 4..(j + 1) * 4];
        let best = (0..4).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(best, j);
    }
}

#[test]
fn panics_become_error_status_and_poison_the_handle() {
    let lt = loaded();
    let mut m = lt.create_by_name("toy", r#"{"fault": "sample"}"#, 2, DataPolicy::Replace).unwrap();
    let e = m.sample(&[1, 1], 1.0, &mut rng(0)).unwrap_err();
    assert!(e.is_panic(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("toy sample panics on request"), "{msg}");
    assert!(msg.contains("test-plugin"), "{msg}");
    // Poisoned now: every further call fails cleanly, drop (destroy) still works.
    let e = m.metrics().unwrap_err();
    assert!(matches!(e, HostError::Call { status, .. } if status == COEVO_ERR_POISONED), "{e}");

    let mut m = lt.create_by_name("toy", r#"{"fault": "fit"}"#, 1, DataPolicy::Replace).unwrap();
    let e = m.fit(&[2], &[0.0, 1.0], &mut rng(0)).unwrap_err();
    assert!(e.is_panic() && e.to_string().contains("toy fit panics"), "{e}");

    let e = lt.create_by_name("toy", r#"{"fault": "create"}"#, 1, DataPolicy::Replace).unwrap_err();
    assert!(e.is_panic() && e.to_string().contains("toy create panics"), "{e}");
}

#[test]
fn bad_params_are_clear_errors() {
    let lt = loaded();
    let e = lt.create(0, "{not json", 2, DataPolicy::Replace).unwrap_err();
    assert!(
        matches!(&e, HostError::Call { status, message, .. }
            if *status == COEVO_ERR_INVALID_ARGUMENT && message.contains("not valid JSON")),
        "{e}"
    );
    let e = lt.create(0, r#"{"dimm": 2}"#, 2, DataPolicy::Replace).unwrap_err();
    assert!(
        matches!(&e, HostError::Call { status, message, .. }
            if *status == COEVO_ERR_MODEL && message.contains("unknown field `dimm`")),
        "{e}"
    );
    let e = lt.create(0, "{}", 0, DataPolicy::Replace).unwrap_err();
    assert!(e.to_string().contains("num_texts must be at least 1"), "{e}");
    let e = lt.create(0, "{}", 2, DataPolicy::Fresh { lambda: 1.5 }).unwrap_err();
    assert!(e.to_string().contains("lambda in [0, 1]"), "{e}");
    let e = lt.create(7, "{}", 2, DataPolicy::Replace).unwrap_err();
    assert!(matches!(e, HostError::UnknownModel { .. }), "{e}");
    let mut z = lt.create(1, "{}", 1, DataPolicy::Replace).unwrap();
    let e = z.add_text().unwrap_err();
    assert!(e.to_string().contains("exactly one text"), "{e}");
}

/// Raw calls with broken arguments: every one is an error status, never UB or a crash.
#[test]
fn raw_calls_check_sizes_and_pointers() {
    let t = coevo_plugin_table();
    let mut bytes = [0u8; 256];
    let mut err = CoevoErrorBuf { ptr: bytes.as_mut_ptr(), capacity: bytes.len(), written: 0 };
    let mut h: *mut c_void = core::ptr::null_mut();
    let params = br#"{"dim": 2}"#;
    // SAFETY: valid buffers; every call below passes deliberately wrong sizes, never bad memory.
    unsafe {
        let st = (t.create.unwrap())(0, params.as_ptr(), params.len(), 2, DataPolicy::Replace.to_raw(), &mut h, &mut err);
        assert_eq!(st, COEVO_OK);
        assert_eq!(err.written, 0);
        assert_eq!((t.dim.unwrap())(h), 2);
        assert_eq!((t.metric_count.unwrap())(h), 2);
        assert!((t.metric_name.unwrap())(h, 2).is_null());
        assert_eq!(CStr::from_ptr((t.metric_name.unwrap())(h, 1)).to_str().unwrap(), "fidelity");

        let mut r = rng(1);
        let mut loan = RngLoan::new(&mut r);
        let counts = [1u64, 2];
        let mut out = [0.0f64; 6];
        let msg = |e: &CoevoErrorBuf| String::from_utf8_lossy(core::slice::from_raw_parts(e.ptr, e.written)).into_owned();
        // Wrong output length.
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 2, 1.0, loan.as_raw(), out.as_mut_ptr(), 5, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        assert!(msg(&err).contains("expected sum(counts) * dim = 6"), "{}", msg(&err));
        // Wrong K.
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 1, 1.0, loan.as_raw(), out.as_mut_ptr(), 6, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        // Null output with non-zero length.
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 2, 1.0, loan.as_raw(), core::ptr::null_mut(), 6, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        // Bad temperature, null rng.
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 2, 0.0, loan.as_raw(), out.as_mut_ptr(), 6, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 2, 1.0, core::ptr::null_mut(), out.as_mut_ptr(), 6, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        // Correct call succeeds and clears the message.
        let st = (t.sample.unwrap())(h, counts.as_ptr(), 2, 1.0, loan.as_raw(), out.as_mut_ptr(), 6, &mut err);
        assert_eq!(st, COEVO_OK);
        assert_eq!(err.written, 0);
        // Non-finite input to fit.
        out[3] = f64::NAN;
        let st = (t.fit.unwrap())(h, counts.as_ptr(), 2, out.as_ptr(), 6, loan.as_raw(), &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        assert!(msg(&err).contains("samples[3]"), "{}", msg(&err));
        // log_likelihood with wrong out_len.
        let mut ll = [0.0f64; 6];
        let st = (t.log_likelihood.unwrap())(h, out.as_ptr(), 3, ll.as_mut_ptr(), 5, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        // metrics with wrong out_len.
        let mut met = [0.0f64; 3];
        let st = (t.metrics.unwrap())(h, met.as_mut_ptr(), 3, &mut err);
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        // get_params: query, too small, exact.
        let mut needed = 0usize;
        let st = (t.get_params.unwrap())(h, core::ptr::null_mut(), 0, &mut needed, &mut err);
        assert_eq!(st, COEVO_ERR_BUFFER_TOO_SMALL);
        assert_eq!(needed, 1 + 2 * 2 * 2);
        let mut p = vec![0.0; needed];
        let st = (t.get_params.unwrap())(h, p.as_mut_ptr(), needed, &mut needed, &mut err);
        assert_eq!(st, COEVO_OK);
        let st = (t.set_params.unwrap())(h, p.as_ptr(), needed - 1, &mut err);
        assert_eq!(st, COEVO_ERR_MODEL);
        // Null handle and null error buffer are tolerated.
        let st = (t.metrics.unwrap())(core::ptr::null_mut(), met.as_mut_ptr(), 3, core::ptr::null_mut());
        assert_eq!(st, COEVO_ERR_INVALID_ARGUMENT);
        assert_eq!((t.dim.unwrap())(core::ptr::null_mut()), 0);
        (t.destroy.unwrap())(h);
        (t.destroy.unwrap())(core::ptr::null_mut());
    }
}

#[test]
fn error_buffer_truncates_at_char_boundary() {
    let mut bytes = [0xFFu8; 5];
    let mut err = CoevoErrorBuf { ptr: bytes.as_mut_ptr(), capacity: 5, written: 0 };
    // "ab€€": the euro sign is 3 bytes, so only "ab€" (5 bytes) fits.
    // SAFETY: valid buffer.
    unsafe { crate::ffi::write_err(&mut err, "ab€€") };
    assert_eq!(err.written, 5);
    assert_eq!(core::str::from_utf8(&bytes).unwrap(), "ab€");
    let mut bytes = [0u8; 4];
    err.ptr = bytes.as_mut_ptr();
    err.capacity = 4;
    // SAFETY: valid buffer.
    unsafe { crate::ffi::write_err(&mut err, "ab€€") };
    assert_eq!(err.written, 2);
}

#[test]
fn host_detects_lying_plugins() {
    let lt = loaded();
    let mk = |fault: &str| lt.create_by_name("toy", &format!(r#"{{"fault": "{fault}"}}"#), 2, DataPolicy::Replace).unwrap();
    let y = [0.5, 1.5];
    let e = mk("nan_loglik").log_likelihood(&y).unwrap_err();
    assert!(matches!(e, HostError::Contract { .. }) && e.to_string().contains("NaN"), "{e}");
    let e = mk("posinf_loglik").log_likelihood(&y).unwrap_err();
    assert!(matches!(e, HostError::Contract { .. }), "{e}");
    let ll = mk("neginf_loglik").log_likelihood(&y).unwrap();
    assert_eq!(ll[0], f64::NEG_INFINITY, "-inf (zero density) is allowed");
    let e = mk("short_loglik").log_likelihood(&y).unwrap_err();
    assert!(e.to_string().contains("left output element 3 of 4 unwritten"), "{e}");
    let e = mk("nan_metrics").metrics().unwrap_err();
    assert!(e.to_string().contains("metric `fidelity` of text 0 is NaN"), "{e}");
    let e = mk("add_text_twice").add_text().unwrap_err();
    assert!(e.to_string().contains("after add_text"), "{e}");
}

unsafe extern "C" fn overrunning_log_likelihood(
    handle: *mut c_void,
    samples: *const f64,
    n: usize,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: deliberately writes one element past `out_len`: the host's guard zone absorbs it.
    unsafe {
        let st = crate::ffi::log_likelihood(handle, samples, n, out, out_len, err);
        *out.add(out_len) = 0.0;
        st
    }
}

#[test]
fn host_detects_overrun_and_bad_tables() {
    let base = coevo_plugin_table();
    let patched: &'static CoevoPluginTable =
        Box::leak(Box::new(CoevoPluginTable { log_likelihood: Some(overrunning_log_likelihood), ..*base }));
    // SAFETY: leaked, static-lifetime table.
    let lt = unsafe { LoadedTable::from_raw(patched, "overrun") }.unwrap();
    let mut m = lt.create(0, "", 2, DataPolicy::Replace).unwrap();
    let e = m.log_likelihood(&[0.0]).unwrap_err();
    assert!(e.to_string().contains("wrote past the end"), "{e}");

    let bad_version: &'static CoevoPluginTable = Box::leak(Box::new(CoevoPluginTable { abi_version: 99, ..*base }));
    // SAFETY: as above.
    let e = unsafe { LoadedTable::from_raw(bad_version, "libold.so") }.unwrap_err();
    assert_eq!(e, HostError::AbiMismatch { origin: "libold.so".into(), found: 99, expected: COEVO_ABI_VERSION });
    assert!(e.to_string().contains("libold.so"));

    let small: &'static CoevoPluginTable = Box::leak(Box::new(CoevoPluginTable { struct_size: 16, ..*base }));
    // SAFETY: as above.
    let e = unsafe { LoadedTable::from_raw(small, "x") }.unwrap_err();
    assert!(e.to_string().contains("struct_size is 16"), "{e}");

    let no_fit: &'static CoevoPluginTable = Box::leak(Box::new(CoevoPluginTable { fit: None, ..*base }));
    // SAFETY: as above.
    let e = unsafe { LoadedTable::from_raw(no_fit, "x") }.unwrap_err();
    assert!(e.to_string().contains("function `fit` is null"), "{e}");

    // SAFETY: EMPTY has null strings, which must be reported, not dereferenced.
    let e = unsafe { LoadedTable::from_raw(&CoevoPluginTable::EMPTY, "empty") }.unwrap_err();
    assert!(e.to_string().contains("plugin_name is null"), "{e}");
    // SAFETY: null is allowed.
    let e = unsafe { LoadedTable::from_raw(core::ptr::null(), "null") }.unwrap_err();
    assert!(matches!(e, HostError::InvalidTable { .. }), "{e}");
}

static LOG_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_log(plugin: &str, level: LogLevel, msg: &str) {
    LOG_LINES.lock().unwrap().push(format!("{plugin} {level:?} {msg}"));
}

#[test]
fn plugin_logs_reach_the_host_sink() {
    let lt = loaded();
    lt.set_log_sink(record_log);
    let mut m = lt.create(0, "", 1, DataPolicy::Replace).unwrap();
    m.fit(&[2], &[1.0, 2.0], &mut rng(0)).unwrap();
    let lines = LOG_LINES.lock().unwrap();
    assert!(lines.iter().any(|l| l == "test-plugin Info toy fitted 1 texts"), "{lines:?}");
}

#[test]
fn host_rng_draws_whole_u64s() {
    let mut a = rng(5);
    let mut b = rng(5);
    let mut loan = RngLoan::new(&mut a);
    // SAFETY: the loan is alive for the whole block.
    let mut h = unsafe { HostRng::from_raw(&mut *loan.as_raw()) }.unwrap();
    let x = h.next_u64();
    let y = h.next_u32();
    let mut bytes = [0u8; 12];
    h.fill_bytes(&mut bytes);
    assert_eq!(x, b.next_u64());
    assert_eq!(y, (b.next_u64() >> 32) as u32);
    let w1 = b.next_u64().to_le_bytes();
    let w2 = b.next_u64().to_le_bytes();
    assert_eq!(&bytes[..8], &w1);
    assert_eq!(&bytes[8..], &w2[..4]);
    let mut null = CoevoRng { ctx: core::ptr::null_mut(), next_u64: None };
    // SAFETY: a null callback is rejected, never called.
    assert!(unsafe { HostRng::from_raw(&mut null) }.is_none());
}

#[test]
fn data_policy_codec_and_fresh_split() {
    for p in [DataPolicy::Replace, DataPolicy::Accumulate { initial: 100 }, DataPolicy::Fresh { lambda: 0.25 }] {
        assert_eq!(DataPolicy::from_raw(p.to_raw()).unwrap(), p);
    }
    let bad = CoevoDataPolicy { kind: 9, initial: 0, lambda: 0.0 };
    assert!(DataPolicy::from_raw(bad).is_err());
    assert_eq!(crate::fresh_real_count(10, 0.25), 3);
    assert_eq!(crate::fresh_real_count(10, 0.0), 0);
    assert_eq!(crate::fresh_real_count(10, 1.0), 10);
    assert_eq!(crate::fresh_real_count(0, 0.5), 0);
}
