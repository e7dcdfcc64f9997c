//! The one place coevo opens a file to write in an output folder, so that what a received
//! scenario or a planted link can make it do is decided here once:
//!
//! - no symbolic link is followed when a file is created, appended to or cut back
//!   (`O_NOFOLLOW`): a link planted in an output folder (`metrics.csv -> ~/.bashrc`) is refused
//!   with an error naming it, and the file it points to is never opened;
//! - atomic writes go through a temporary file created new (`O_EXCL`) under an unpredictable
//!   name in the same folder, removed if anything fails, then renamed over the target (a
//!   rename replaces a link, it does not write through it);
//! - [`DirLock`]: an advisory lock (`flock`) on an output folder for the whole of a run, so a
//!   second coevo process writing the same folder is refused instead of interleaving rows.
//!
//! Paths *below* the folder are coevo's own fixed names; which folder is used at all is
//! decided by the scenario checks (`output.dir` relative and below the scenario's folder) and
//! by the command line (`--out`), see `coevo::run::output_dir`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of every temporary file of [`write_atomic`]: `.NAME.coevo-XXXXXXXXXXXXXXXX.tmp`.
const TEMP_SUFFIX: &str = ".tmp";
/// Marker inside a temporary file's name (what [`remove_temp_files`] recognises).
const TEMP_MARKER: &str = ".coevo-";

/// `path` with its `.` components dropped and each `..` applied to the component before it,
/// on the text alone: `runs/missing/../run` is `runs/run`, whether `runs/missing` exists or
/// not (the kernel would refuse the path while `runs/missing` is missing, which let such a
/// path slip past the check for an existing run). Leading `..` components are kept.
pub fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`; `../..` stays.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            c => out.push(c.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// Options that never follow a link at the path's last component.
fn no_follow() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Turns the error of opening a link with `O_NOFOLLOW` (`ELOOP`) into one that says what is
/// wrong; other errors pass through.
fn named(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link: coevo never writes through a link in an output folder (remove it, or choose another folder)",
                    path.display()
                ),
            );
        }
        e
    }
}

/// Creates `path` or truncates it, for writing; refuses a symbolic link there.
pub fn create(path: &Path) -> io::Result<File> {
    no_follow().write(true).create(true).truncate(true).open(path).map_err(named(path))
}

/// Opens the existing file `path` to append to; refuses a symbolic link there.
pub fn append(path: &Path) -> io::Result<File> {
    no_follow().append(true).open(path).map_err(named(path))
}

/// Opens the existing file `path` to read and write (to cut it back); refuses a symbolic
/// link there.
pub fn open_rw(path: &Path) -> io::Result<File> {
    no_follow().read(true).write(true).open(path).map_err(named(path))
}

/// A name no other process can guess: 64 bits from the standard library's per-process random
/// hash keys, mixed with the process id, the time and a counter.
fn unpredictable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// Writes `contents` to `path` atomically: to a temporary file in the same folder, then
/// renamed over `path`, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(contents))
}

/// [`write_atomic`] for contents produced piece by piece by `write` (e.g. a table streamed
/// from another file), through a buffered writer. The temporary file is created new under an
/// unpredictable name (so no link planted in advance can be written through) and removed if
/// anything fails; the first error is the one returned.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>) -> io::Result<()> {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp: PathBuf = path.with_file_name(format!(".{name}{TEMP_MARKER}{:016x}{TEMP_SUFFIX}", unpredictable()));
    let file = no_follow().write(true).create_new(true).open(&tmp).map_err(named(&tmp))?;
    let written = (|| {
        let mut out = io::BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Best effort: the write's error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Whether `name` is that of a temporary file of [`write_atomic`].
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && name.contains(TEMP_MARKER)
}

/// Removes the temporary files of [`write_atomic`] that a killed process left in `dir`.
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(is_temp_file) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// An exclusive advisory lock (`flock`) on an output folder, held until dropped: coevo takes
/// it for the whole of a run, resume, stability run or sweep point, so two processes never
/// write one folder at once. The kernel releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks the existing folder `dir`; `Ok(None)` if another process (or another run in this
    /// one) holds it.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<DirLock>> {
        let file = File::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coevo-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn links_are_never_written_through() {
        let dir = scratch("links");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = dir.join("metrics.csv");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        for opened in [create(&link), append(&link), open_rw(&link)] {
            let e = opened.expect_err("a link is refused");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        // An atomic write replaces the link itself.
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&link).unwrap(), "new");
        assert!(!fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_are_normalised_on_their_text() {
        for (path, expected) in
            [("runs/missing/../run", "runs/run"), ("./a/./b", "a/b"), ("../a/../../b", "../../b"), ("/x/../../y", "/y"), ("a/..", ".")]
        {
            assert_eq!(lexical(Path::new(path)), Path::new(expected), "{path}");
        }
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file_even_when_they_fail() {
        let dir = scratch("atomic");
        let path = dir.join("manifest.json");
        let failed = write_atomic_with(&path, |out| {
            out.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert!(!path.exists());
        write_atomic(&path, b"{}").unwrap();
        let names: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["manifest.json"]);
        fs::write(dir.join(".manifest.json.coevo-0123456789abcdef.tmp"), "left by a kill").unwrap();
        remove_temp_files(&dir).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_locked_folder_is_refused_until_released() {
        let dir = scratch("lock");
        let held = DirLock::try_acquire(&dir).unwrap().expect("free");
        assert!(DirLock::try_acquire(&dir).unwrap().is_none(), "a second lock is refused");
        drop(held);
        assert!(DirLock::try_acquire(&dir).unwrap().is_some());
        let _ = fs::remove_dir_all(&dir);
    }
}
