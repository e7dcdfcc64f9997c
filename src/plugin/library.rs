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
//! A library outside the plugin search path (an absolute path, a `../` path, or one below the
//! scenario's folder) is native code a scenario brings along: it is loaded only with the user's
//! consent, `--allow-plugin PATH` naming the file or a folder holding it ([`check_consent`]).
//!
//! Libraries loaded in this process (`--trusted-plugins`, and the plugin host process itself)
//! are loaded once per process, cached by canonical path, and never unloaded: model handles,
//! metric-name pointers and log callbacks point into them until the process exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use coevo_plugin_api::LogLevel;
use coevo_plugin_api::host::{HostError, LoadedTable, load_library};

use super::isolate::{ChildLimits, Isolation, PluginLibrary, RemoteLibrary, TableInfo, isolation, probe};

/// Environment variable holding extra plugin folders (separated like `PATH`).
pub const PLUGIN_PATH_VAR: &str = "COEVO_PLUGIN_PATH";

/// Folders given on the command line (`--plugin-dir`), searched before the environment's.
static CLI_DIRS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// Libraries and folders the user allowed outside the search path (`--allow-plugin`).
static ALLOWED: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// Every library loaded (or refused) so far, by canonical path. A refusal is cached too: the
/// library stays mapped after a failed check, so loading it again would only leak another copy.
static LIBRARIES: Mutex<Option<HashMap<PathBuf, Result<LoadedTable, HostError>>>> = Mutex::new(None);

/// Sets the folders `--plugin-dir` gave, for every later resolution in this process.
pub fn set_plugin_dirs(dirs: Vec<PathBuf>) {
    *CLI_DIRS.write().unwrap_or_else(|e| e.into_inner()) = dirs;
}

/// Sets the library files and folders `--allow-plugin` gave: scenarios may load libraries from
/// them although they are not on the plugin search path.
pub fn set_allowed_plugins(paths: Vec<PathBuf>) {
    *ALLOWED.write().unwrap_or_else(|e| e.into_inner()) = paths;
}

/// Refuses a library file a scenario names by path unless the user consented to it: the file
/// lies directly in a folder of the plugin search path, or is (or lies below) a path given with
/// `--allow-plugin`. Loading a library runs its code, so a scenario received from someone else
/// must not be able to run a library it brings along without the user saying so.
pub fn check_consent(path: &Path, library: &str) -> Result<(), String> {
    let canonical = path.canonicalize().map_err(|e| format!("plugin library {}: {e}", path.display()))?;
    let canon = |d: &PathBuf| d.canonicalize().ok();
    let on_search_path = canonical.parent().is_some_and(|dir| search_path().iter().filter_map(canon).any(|d| d == dir));
    let allowed = ALLOWED.read().unwrap_or_else(|e| e.into_inner()).iter().filter_map(canon).any(|a| canonical.starts_with(a));
    if on_search_path || allowed {
        return Ok(());
    }
    Err(format!(
        "plugin library `{library}` is {}, which is not in a plugin folder; loading a library runs its code, so coevo loads one from elsewhere only if you allow it: pass --allow-plugin {} (or its folder) if you trust it, or put it in a folder given with --plugin-dir or {PLUGIN_PATH_VAR}",
        canonical.display(),
        canonical.display()
    ))
}

/// SHA-256 of a file's bytes, as lowercase hex (the provenance of a plugin library).
pub fn sha256_of(path: &Path) -> Result<String, String> {
    use sha2::{Digest as _, Sha256};
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
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

/// Opens the library at `path` for a run, where [`isolation`] says plugin code runs: in plugin
/// host processes (the default) or in this process. With `sha256`, a library whose bytes no
/// longer have that hash is refused (the file changed since the scenario was checked).
pub fn open_for_run(path: &Path, sha256: Option<&str>) -> Result<PluginLibrary, HostError> {
    match isolation() {
        Isolation::Child(limits) => RemoteLibrary::open(path, sha256, limits).map(PluginLibrary::Child),
        Isolation::InProcess => {
            if let Some(expected) = sha256 {
                let found = sha256_of(path).map_err(|message| HostError::Load { path: path.display().to_string(), message })?;
                if found != expected {
                    return Err(HostError::Load {
                        path: path.display().to_string(),
                        message: format!(
                            "its SHA-256 is {found}, but {expected} was recorded when the scenario was checked: the file changed"
                        ),
                    });
                }
            }
            load(path).map(PluginLibrary::InProcess)
        }
    }
}

/// Whether a file is named like a coevo plugin library: the platform's library prefix and
/// suffix, and either `coevo_plugin_` after the prefix (as cargo names the workspace's plugins)
/// or the entry symbol's name among its bytes (a library exporting `coevo_plugin_entry` holds
/// the name in its symbol table). Nothing of the file is run to tell.
pub fn looks_like_plugin(path: &Path) -> bool {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !(path.is_file() && name.starts_with(DLL_PREFIX) && name.ends_with(DLL_SUFFIX)) {
        return false;
    }
    name[DLL_PREFIX.len()..].starts_with("coevo_plugin_") || contains_bytes(path, coevo_plugin_api::COEVO_ENTRY_SYMBOL.as_bytes())
}

/// Whether the file holds `needle`, read in blocks (a library may be hundreds of megabytes).
fn contains_bytes(path: &Path, needle: &[u8]) -> bool {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut window = vec![0u8; (1 << 20) + needle.len()];
    let mut kept = 0;
    loop {
        let n = match file.read(&mut window[kept..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let filled = kept + n;
        if window[..filled].windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        // Keep the last bytes, so a name split across two reads is still found.
        kept = (needle.len() - 1).min(filled);
        window.copy_within(filled - kept..filled, 0);
    }
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
    /// The table its plugin host reported, or why it is not usable (the loader's refusal, or
    /// how it crashed its host).
    pub table: Result<TableInfo, HostError>,
}

/// Every file named like a plugin library ([`looks_like_plugin`]) in `dirs`, each read in a
/// throwaway plugin host process (so none runs in this one and a broken one is reported, not
/// fatal), in folder order and then by file name. A folder that cannot be read is an error
/// naming it.
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<Discovered>, String> {
    let limits = match isolation() {
        Isolation::Child(limits) => limits,
        Isolation::InProcess => ChildLimits::default(),
    };
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read plugin directory {}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| looks_like_plugin(p)).collect();
        files.sort();
        for path in files {
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if seen.contains(&key) {
                continue;
            }
            let table = probe(&key, limits);
            seen.push(key);
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
