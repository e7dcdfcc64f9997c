//! Claim files: how any number of identical worker processes (`coevo sweep --claim`) share
//! one sweep folder without a coordinator.
//!
//! A worker takes point `i` by creating `claims/NNNN.G` with `create_new` (`O_CREAT|O_EXCL`,
//! atomic on a local file system and on NFS v3 and later): of several workers racing for the
//! same file exactly one creates it. `G` is the claim's generation, 0 for the first claim of a
//! point. While the worker runs the point it refreshes the file's modification time every
//! tenth of the [`Lease`] (a heartbeat thread). A claim whose file was not refreshed for a
//! whole lease belongs to a dead worker (SIGKILL, a lost node); another worker takes the point
//! over by creating generation `G + 1`, again with `create_new`, so a takeover is as atomic as
//! a first claim and two workers never both take over the same stale claim. A worker that is
//! interrupted (SIGTERM) releases its claim by setting its modification time to the epoch,
//! so the point is taken over at once, and resumed from its checkpoint.
//!
//! Clocks: a claim is stale when the worker's clock says its modification time is more than a
//! lease old, so the workers' clocks must agree to well within a lease (NTP does; the default
//! lease is five minutes). A worker paused for longer than a lease (SIGSTOP, a suspended
//! machine) loses its claim and must not be resumed.
//!
//! Claim files stay in the folder after the sweep: whether a point is done is told by its
//! completion record (`points/NNNN/done.json` or `failed.json`), never by its claim, so a
//! later rerun is not confused by them.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How long a claim stays valid without a heartbeat: a positive, finite duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease(Duration);

impl Lease {
    /// The default lease, in seconds: long enough to absorb clock differences between
    /// machines and slow shared file systems, short enough that a dead worker's point waits
    /// minutes, not hours.
    pub const DEFAULT_SECONDS: f64 = 300.0;

    /// A lease of `seconds`, which must be positive and finite.
    pub fn from_secs(seconds: f64) -> Result<Self, String> {
        if seconds.is_finite() && seconds > 0.0 {
            Ok(Lease(Duration::from_secs_f64(seconds)))
        } else {
            Err(format!("a lease must be a positive number of seconds (e.g. {}), got {seconds}", Lease::DEFAULT_SECONDS))
        }
    }

    /// Its length.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// How often a held claim is refreshed (and an idle worker looks for expired claims): a
    /// tenth of the lease, so nine heartbeats in a row can be late before a live claim looks
    /// stale.
    pub fn heartbeat(self) -> Duration {
        (self.0 / 10).max(Duration::from_millis(10))
    }
}

impl Default for Lease {
    fn default() -> Self {
        Lease(Duration::from_secs_f64(Lease::DEFAULT_SECONDS))
    }
}

/// A point this worker holds.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The point's index.
    pub(crate) point: usize,
    path: PathBuf,
}

/// The claims of one worker process over a sweep folder.
pub(crate) struct Claims {
    dir: PathBuf,
    total: usize,
    lease: Lease,
    /// Points below it were offered to this worker's first pass already.
    cursor: AtomicUsize,
    /// The claim files this worker holds (refreshed by [`Claims::heartbeat`]).
    held: Mutex<BTreeSet<PathBuf>>,
}

impl Claims {
    /// The claims of the sweep folder `sweep_dir` with `total` points (creates `claims/`).
    pub(crate) fn new(sweep_dir: &Path, total: usize, lease: Lease) -> io::Result<Self> {
        let dir = sweep_dir.join("claims");
        std::fs::create_dir_all(&dir)?;
        Ok(Claims { dir, total, lease, cursor: AtomicUsize::new(0), held: Mutex::new(BTreeSet::new()) })
    }

    fn file(&self, point: usize, generation: u64) -> PathBuf {
        self.dir.join(format!("{}.{generation}", super::grid::point_name(point, self.total)))
    }

    /// Claims the next point that is not `finished`: first, in point order, one nobody has
    /// claimed yet; once every point was offered, one whose claim expired. `None`: nothing
    /// can be claimed now (every unfinished point is held by a live worker, or none is left).
    pub(crate) fn next(&self, finished: impl Fn(usize) -> bool) -> io::Result<Option<Claim>> {
        loop {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed);
            if i >= self.total {
                break;
            }
            if !finished(i)
                && let Some(claim) = self.try_create(i, 0)?
            {
                return Ok(Some(claim));
            }
        }
        for i in (0..self.total).filter(|&i| !finished(i)) {
            let generation = self.last_generation(i)?;
            let Some(g) = generation else {
                // Never claimed (created after this worker's first pass looked): claim it.
                if let Some(claim) = self.try_create(i, 0)? {
                    return Ok(Some(claim));
                }
                continue;
            };
            if self.is_stale(&self.file(i, g))?
                && let Some(claim) = self.try_create(i, g + 1)?
            {
                tracing::info!(point = i, generation = g + 1, "took over an expired claim");
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    /// Creates claim file `generation` of `point`; `None` if another worker has it.
    fn try_create(&self, point: usize, generation: u64) -> io::Result<Option<Claim>> {
        let path = self.file(point, generation);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e),
        };
        // Who holds it, for a person looking at the folder; the protocol reads only the mtime.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        writeln!(file, "point {point} generation {generation}: host {} pid {}", host.trim(), std::process::id())?;
        self.held.lock().expect("not poisoned").insert(path.clone());
        Ok(Some(Claim { point, path }))
    }

    /// The highest generation of `point`'s claim files, if any.
    fn last_generation(&self, point: usize) -> io::Result<Option<u64>> {
        let mut last = None;
        // Generations are created one after the other and never removed, so they are
        // contiguous from 0.
        for g in 0.. {
            match std::fs::metadata(self.file(point, g)) {
                Ok(_) => last = Some(g),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        Ok(last)
    }

    /// Whether the claim at `path` was not refreshed for a whole lease (or was released).
    fn is_stale(&self, path: &Path) -> io::Result<bool> {
        let modified = std::fs::metadata(path)?.modified()?;
        // A modification time in the future (another machine's clock ahead) is live.
        Ok(SystemTime::now().duration_since(modified).is_ok_and(|age| age > self.lease.duration()))
    }

    /// The point of `claim` ended: done or failed (its record is written, the claim no
    /// longer matters), or interrupted (`release`: the claim is made stale at once so another
    /// worker resumes the point without waiting for the lease).
    pub(crate) fn end(&self, claim: Claim, release: bool) {
        self.held.lock().expect("not poisoned").remove(&claim.path);
        if release && let Err(e) = touch(&claim.path, SystemTime::UNIX_EPOCH) {
            tracing::warn!("releasing the claim {}: {e}", claim.path.display());
        }
    }

    /// Refreshes every held claim every [`Lease::heartbeat`] until `stop` is raised (run on a
    /// thread of its own while the worker runs points).
    pub(crate) fn heartbeat(&self, stop: &AtomicBool) {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(self.lease.heartbeat()));
            if last.elapsed() < self.lease.heartbeat() {
                continue;
            }
            last = Instant::now();
            let held: Vec<PathBuf> = self.held.lock().expect("not poisoned").iter().cloned().collect();
            for path in held {
                if let Err(e) = touch(&path, SystemTime::now()) {
                    tracing::warn!("refreshing the claim {}: {e}", path.display());
                }
            }
        }
    }
}

/// Sets the modification time of `path`.
fn touch(path: &Path, time: SystemTime) -> io::Result<()> {
    File::options().write(true).open(path)?.set_modified(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_positive_and_finite() {
        assert_eq!(Lease::from_secs(2.0).unwrap().heartbeat(), Duration::from_millis(200));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Lease::from_secs(bad).unwrap_err().contains("positive number of seconds"), "{bad}");
        }
    }

    #[test]
    fn a_point_is_claimed_once_and_taken_over_only_when_its_claim_expired() {
        let dir = std::env::temp_dir().join(format!("coevo-claims-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lease = Lease::from_secs(3600.0).unwrap();
        let (a, b) = (Claims::new(&dir, 2, lease).unwrap(), Claims::new(&dir, 2, lease).unwrap());
        let none = |_| false;
        let first = a.next(none).unwrap().expect("point 0 is free");
        assert_eq!(first.point, 0);
        // b's first pass finds point 0 taken and gets point 1; then nothing is free.
        let second = b.next(none).unwrap().expect("point 1 is free");
        assert_eq!(second.point, 1);
        assert!(b.next(none).unwrap().is_none(), "both claims are live");
        // a is interrupted on point 0: its released claim is taken over at once (generation 1).
        a.end(first, true);
        let taken = b.next(none).unwrap().expect("the released claim");
        assert_eq!((taken.point, taken.path.extension().unwrap().to_str().unwrap()), (0, "1"));
        assert!(a.next(none).unwrap().is_none(), "generation 1 is live");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
