//! Finding and loading plugin libraries.
//!
//! A scenario names a library either by **path** (anything with a path separator or the
//! platform's library extension: tried relative to the scenario file's folder, then to the
//! current directory) or by a **bare name** looked up in the plugin search path: the
//! `--plugin-dir` folders, then the `COEVO_PLUGIN_PATH` folders (separated like `PATH`), then
//! the folder of the running executable (so a workspace build, where cargo puts `coevo` and the
//! plugin libraries side by side in `target/<profile>/`, needs no configuration). In every
//! folder the names `lib<name>.so` and `libcoevo_plugin_<name>.so` are tried (`.dylib` on
//! macOS, `<name>.dll` on Windows), with `-` also tried as `_` as cargo writes it.
//!
//! Libraries are loaded once per process, cached by canonical path, and never unloaded: model
//! handles, metric-name pointers and log callbacks point into them until the process exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use coevo_plugin_api::LogLevel;
use coevo_plugin_api::host::{HostError, LoadedTable, load_library};

/// Environment variable holding extra plugin folders (separated like `PATH`).
pub const PLUGIN_PATH_VAR: &str = "COEVO_PLUGIN_PATH";

/// Folders given on the command line (`--plugin-dir`), searched before the environment's.
static CLI_DIRS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// Every library loaded (or refused) so far, by canonical path. A refusal is cached too: the
/// library stays mapped after a failed check, so loading it again would only leak another copy.
static LIBRARIES: Mutex<Option<HashMap<PathBuf, Result<LoadedTable, HostError>>>> = Mutex::new(None);

/// Sets the folders `--plugin-dir` gave, for every later resolution in this process.
pub fn set_plugin_dirs(dirs: Vec<PathBuf>) {
    *CLI_DIRS.write().unwrap_or_else(|e| e.into_inner()) = dirs;
}

/// The plugin search path, in search order: `--plugin-dir` folders, `COEVO_PLUGIN_PATH`
/// folders, the executable's folder. Folders that do not exist are kept (the error listing
/// them tells the user what was searched).
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = CLI_DIRS.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(env) = std::env::var_os(PLUGIN_PATH_VAR) {
        dirs.extend(std::env::split_paths(&env).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir);
    }
    // The same folder twice (e.g. `target/debug` given and also the executable's) is searched
    // and listed once.
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        let fresh = !seen.contains(&key);
        seen.push(key);
        fresh
    });
    dirs
}

/// The file names a bare library name may have on this platform, in the order tried.
pub fn candidate_file_names(name: &str) -> Vec<String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let mut stems = vec![name.to_owned()];
    if name.contains('-') {
        stems.push(name.replace('-', "_"));
    }
    let mut out = Vec::new();
    for stem in &stems {
        out.push(format!("{DLL_PREFIX}{stem}{DLL_SUFFIX}"));
        out.push(format!("{DLL_PREFIX}coevo_plugin_{stem}{DLL_SUFFIX}"));
    }
    out
}

/// Whether a scenario's `library` string is a path rather than a bare name.
pub fn is_path(library: &str) -> bool {
    library.contains('/')
        || library.contains(std::path::MAIN_SEPARATOR)
        || Path::new(library).extension().is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
}

/// Why a library could not be found: what was tried, for the error message.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFound {
    /// The `library` string as written.
    pub library: String,
    /// Every file tried, in order.
    pub tried: Vec<PathBuf>,
    /// The folders searched (bare names only).
    pub searched: Vec<PathBuf>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.searched.is_empty() {
            let tried: Vec<String> = self.tried.iter().map(|p| p.display().to_string()).collect();
            write!(f, "plugin library `{}` not found (tried {})", self.library, tried.join(", "))
        } else {
            let dirs: Vec<String> = self.searched.iter().map(|p| p.display().to_string()).collect();
            write!(
                f,
                "plugin library `{}` not found as {} in the plugin directories [{}]; give a path, or add the folder with --plugin-dir DIR or {PLUGIN_PATH_VAR}",
                self.library,
                candidate_file_names(&self.library).join(" or "),
                dirs.join(", ")
            )
        }
    }
}

/// Finds the file a scenario's `library` string names. `base` is the scenario file's folder.
pub fn resolve_library(library: &str, base: Option<&Path>) -> Result<PathBuf, NotFound> {
    let mut tried = Vec::new();
    if is_path(library) {
        let path = Path::new(library);
        if path.is_absolute() {
            tried.push(path.to_path_buf());
        } else {
            if let Some(base) = base {
                tried.push(base.join(path));
            }
            tried.push(path.to_path_buf());
        }
        return match tried.iter().find(|p| p.is_file()) {
            Some(p) => Ok(p.clone()),
            None => Err(NotFound { library: library.to_owned(), tried, searched: Vec::new() }),
        };
    }
    let searched = search_path();
    for dir in &searched {
        for file in candidate_file_names(library) {
            let p = dir.join(file);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p);
        }
    }
    Err(NotFound { library: library.to_owned(), tried, searched })
}

/// Loads the library at `path` (once per process) and routes its log messages to `tracing`.
pub fn load(path: &Path) -> Result<LoadedTable, HostError> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut cache = LIBRARIES.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(cached) = cache.get(&key) {
        return cached.clone();
    }
    // SAFETY: loading runs the library's initialisers and trusts its entry point to follow the
    // ABI; coevo only loads libraries a scenario or the user names as coevo plugins.
    let loaded = unsafe { load_library(&key) };
    if let Ok(table) = &loaded {
        table.set_log_sink(forward_log);
        tracing::debug!(plugin = table.name(), version = table.version(), path = %key.display(), "plugin library loaded");
    }
    cache.insert(key, loaded.clone());
    loaded
}

/// Resolves and loads a scenario's `library` in one step, as a message naming what failed.
pub fn open(library: &str, base: Option<&Path>) -> Result<LoadedTable, String> {
    let path = resolve_library(library, base).map_err(|e| e.to_string())?;
    load(&path).map_err(|e| e.to_string())
}

/// Forwards one plugin log message to `tracing`, with the plugin's name as a field.
fn forward_log(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "coevo::plugin", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "coevo::plugin", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "coevo::plugin", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "coevo::plugin", plugin, "{message}"),
        LogLevel::Trace => tracing::trace!(target: "coevo::plugin", plugin, "{message}"),
    }
}

/// One library file found by [`discover`]: its table, or why it is not a usable plugin.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The library file.
    pub path: PathBuf,
    /// The validated table, or the loader's refusal.
    pub table: Result<LoadedTable, HostError>,
}

/// Every shared library (by the platform's file naming) in `dirs`, loaded and checked, in
/// folder order and then by file name. A folder that cannot be read is an error naming it.
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<Discovered>, String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read plugin directory {}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                p.is_file() && name.starts_with(DLL_PREFIX) && name.ends_with(DLL_SUFFIX)
            })
            .collect();
        files.sort();
        for path in files {
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let table = load(&path);
            found.push(Discovered { path, table });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_and_paths_are_told_apart() {
        assert!(!is_path("audio"));
        assert!(!is_path("faulty-panic"));
        assert!(is_path("./audio"));
        assert!(is_path("../target/debug/libcoevo_plugin_audio.so") || cfg!(windows));
        assert!(is_path(&format!("libaudio.{}", std::env::consts::DLL_EXTENSION)));
    }

    #[test]
    fn candidate_names_follow_the_platform_and_cargo_conventions() {
        let names = candidate_file_names("faulty-panic");
        let (p, s) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        assert_eq!(
            names,
            vec![
                format!("{p}faulty-panic{s}"),
                format!("{p}coevo_plugin_faulty-panic{s}"),
                format!("{p}faulty_panic{s}"),
                format!("{p}coevo_plugin_faulty_panic{s}"),
            ]
        );
    }

    #[test]
    fn a_missing_library_lists_what_was_searched() {
        let err = resolve_library("surely-not-a-plugin-xyz", None).unwrap_err();
        assert!(!err.searched.is_empty(), "the executable's folder is always searched");
        let msg = err.to_string();
        assert!(msg.contains("surely-not-a-plugin-xyz") && msg.contains("--plugin-dir"), "{msg}");
        let err = resolve_library("no/such/lib.so", Some(Path::new("/tmp/scen"))).unwrap_err();
        assert_eq!(err.tried, vec![PathBuf::from("/tmp/scen/no/such/lib.so"), PathBuf::from("no/such/lib.so")]);
    }
}
