//! Test fixture for coevo's plugin isolation (issue 13): model `hostile`, a trivial working
//! model (dim 1, text i's samples are `i` plus uniform noise from the host's stream) that does
//! something no in-process host survives, chosen by its params, e.g.
//! `{"mode": "segfault", "at": "sample"}`.
//!
//! `mode` is one of [`MODES`] (default `"none"`); `at` is `"sample"` (default: the first
//! sample, i.e. during round 1) or `"create"` (while a scenario is checked). Mode `"fork"`
//! forks the host process and lets both copies carry on, as a plugin that forks without
//! `exec` would.
//!
//! When the library is loaded, a constructor (`.init_array`, which runs before any of the
//! library's functions) writes a marker file `ctor-<pid>` holding the process's command line
//! into the folder named by `COEVO_HOSTILE_MARKER_DIR`, if set: the tests check which
//! processes loaded the library. Mode `"fork"` writes `fork-<pid>` with the pid of the copy.

use coevo_plugin_api::serde_json::Value;
use coevo_plugin_api::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, plugin_bail};
use rand_core::Rng as _;

coevo_plugin_api::export_plugin! {
    name: "hostile",
    version: env!("CARGO_PKG_VERSION"),
    models: [Hostile],
}

/// What the model can be made to do.
pub const MODES: &[&str] = &["none", "segfault", "abort", "exit0", "hang", "alloc", "overrun", "stack", "fork"];

/// Environment variable naming the folder the constructor writes its marker into.
pub const MARKER_DIR_VAR: &str = "COEVO_HOSTILE_MARKER_DIR";

unsafe extern "C" {
    fn fork() -> i32;
}

/// Writes `<dir>/<name>` holding this process's command line, if the marker folder is set.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os(MARKER_DIR_VAR) {
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
        let text: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), text);
    }
}

extern "C" fn on_load() {
    mark(&format!("ctor-{}", std::process::id()));
}

/// The library's constructor: the dynamic loader calls every function of `.init_array` when
/// the library is loaded, before anything else of it runs.
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = on_load;

/// See the crate docs.
pub struct Hostile {
    k: usize,
    mode: &'static str,
    at_create: bool,
}

/// Recurses until the stack is exhausted (each frame keeps a buffer the optimiser cannot drop).
fn overflow(depth: u64) -> u64 {
    let buf = std::hint::black_box([depth; 512]);
    // The condition is never true for a real stack; it only makes the recursion conditional.
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    overflow(depth + 1) + buf[(depth % 512) as usize]
}

impl Hostile {
    /// Does what `mode` says; `out` is the output buffer of the call, for the overrun.
    fn act(&self, out: &mut [f64]) {
        match self.mode {
            // SAFETY: none; writing through a null pointer is the point of this fixture.
            "segfault" => unsafe { std::ptr::null_mut::<f64>().write_volatile(1.0) },
            "abort" => std::process::abort(),
            "exit0" => std::process::exit(0),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            "alloc" => {
                let big = std::hint::black_box(vec![1u8; 50 << 30]);
                std::hint::black_box(big[big.len() / 2]);
            }
            "overrun" => {
                let p = out.as_mut_ptr();
                for j in 0..out.len() + 4096 {
                    // SAFETY: none; writing 4096 doubles past the host's buffer is the point.
                    unsafe { p.add(j).write_volatile(f64::from_bits(0x5555_5555_5555_5555)) };
                }
            }
            "stack" => {
                std::hint::black_box(overflow(0));
            }
            "fork" => {
                // SAFETY: fork is async-signal-safe; both copies carry on as the host would.
                let pid = unsafe { fork() };
                if pid > 0 {
                    mark(&format!("fork-{pid}"));
                }
            }
            _ => {}
        }
    }
}

impl ConditionalModelPlugin for Hostile {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"hostile",
        modality: c"test",
        dim_rule: c"1",
        fixed_dim: 1,
        description: c"test fixture: crashes, hangs, exhausts memory or forks as params.mode says",
    };

    fn create(params: &Value, num_texts: usize, _: DataPolicy) -> PluginResult<Self> {
        let want = params.get("mode").and_then(Value::as_str).unwrap_or("none");
        let Some(&mode) = MODES.iter().find(|m| **m == want) else {
            plugin_bail!("mode must be one of {MODES:?}, got {want:?}");
        };
        let at_create = match params.get("at").and_then(Value::as_str).unwrap_or("sample") {
            "create" => true,
            "sample" => false,
            other => plugin_bail!("at must be \"create\" or \"sample\", got {other:?}"),
        };
        let m = Hostile { k: num_texts, mode, at_create };
        if at_create {
            m.act(&mut []);
        }
        Ok(m)
    }

    fn dim(&self) -> usize {
        1
    }

    fn num_texts(&self) -> usize {
        self.k
    }

    fn metric_names(&self) -> Vec<String> {
        vec!["diversity".into(), "fidelity".into()]
    }

    fn sample(&self, counts: &[u64], _: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let mut j = 0;
        for (i, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                out[j] = i as f64 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                j += 1;
            }
        }
        if !self.at_create {
            self.act(out);
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        for (j, y) in samples.iter().enumerate() {
            for i in 0..self.k {
                out[j * self.k + i] = -(y - i as f64 - 0.5).powi(2);
            }
        }
        Ok(())
    }

    fn fit(&mut self, _: &[u64], _: &[f64], _: &mut HostRng<'_>) -> PluginResult<()> {
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        for row in out.chunks_mut(2) {
            row[0] = 1.0;
            row[1] = 0.0;
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.k += 1;
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        vec![self.k as f64]
    }

    fn set_params(&mut self, params: &[f64]) -> PluginResult<()> {
        match params {
            [k] if *k >= 1.0 && k.fract() == 0.0 => {
                self.k = *k as usize;
                Ok(())
            }
            _ => plugin_bail!("checkpoint must be [K]"),
        }
    }
}
