//! Plugin models run out of process: each plugin library is loaded into child processes
//! (`coevo plugin-host LIBRARY`, [`super::serve`]) and called over the [`super::wire`]
//! protocol, so that nothing a plugin does can take the run down with it.
//!
//! A segfault, `abort()`, `exit(0)`, stack overflow or heap corruption in a plugin ends its
//! host process, which the next call sees as a closed connection: the call fails with
//! [`HostError::Crashed`] naming the plugin, the call and the exit status or signal. A call
//! that does not answer within the watchdog's time (`--plugin-timeout`) has its host killed; an
//! allocation beyond the host's address-space limit (`--plugin-memory-mb`, default the memory
//! the system reports available) fails inside the host. A reply is believed only if it comes
//! from the host process itself (a plugin that forked cannot answer for it), in order, and of
//! the exact size the call produces.
//!
//! Each host runs in its own process group, dies with its parent (`PR_SET_PDEATHSIG`), and is
//! killed with its whole group when its last model is dropped or it fails, so a run leaves no
//! process behind (a plugin that starts a new session on purpose escapes the group).
//!
//! One library has at most one host per worker thread of the run ([`rayon`]'s pool): models
//! are spread over them in creation order, so replicates still run their plugin calls in
//! parallel. Results do not depend on it: a model lives in one host for its whole life, and
//! every call carries the caller's random-stream state (seed, stream, word position) and
//! returns it advanced, so a model draws exactly the numbers it would draw in process.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use coevo_plugin_api::DataPolicy;
use coevo_plugin_api::host::{HostError, LoadedTable, MAX_DIM, MAX_METRICS, MAX_MODELS, ModelMeta, PluginModel};

use super::wire::{self, Decoder, Encoder, HEADER, HELLO, Header, Op, REPLY_ERR, REPLY_OK};
use crate::rng::Stream;

/// The hidden `coevo` subcommand that hosts a plugin library.
pub const HOST_COMMAND: &str = "plugin-host";
/// Environment variable naming the `coevo` executable to start plugin hosts with (default:
/// the running executable if it is `coevo`, else a `coevo` next to it or one folder up, as
/// cargo lays out `target/<profile>/` and its `deps/`).
pub const HOST_PROGRAM_VAR: &str = "COEVO_PLUGIN_HOST";

/// Default watchdog: the longest a single plugin call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The smallest address-space limit given to a host (the executable and its libraries need
/// room of their own whatever the system reports available).
const MIN_MEMORY: u64 = 1 << 30;
/// Largest error reply believed (messages are capped at 4 KiB by the in-process host).
const MAX_ERROR_REPLY: u64 = 1 << 20;

/// Where plugin code runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Isolation {
    /// In child processes with these limits (the default).
    Child(ChildLimits),
    /// In the coevo process itself (`--trusted-plugins`): no boundary cost, no protection.
    InProcess,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::Child(ChildLimits::default())
    }
}

/// The limits a plugin host process runs under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChildLimits {
    /// Longest time one call may take before the host is killed (`None`: no watchdog).
    pub timeout: Option<Duration>,
    /// Address-space limit of the host in bytes (`None`: the memory the system reports
    /// available when the host starts, at least 1 GiB).
    pub memory_bytes: Option<u64>,
}

impl Default for ChildLimits {
    fn default() -> Self {
        ChildLimits { timeout: Some(DEFAULT_TIMEOUT), memory_bytes: None }
    }
}

static ISOLATION: RwLock<Option<Isolation>> = RwLock::new(None);
static HOST_PROGRAM: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets where plugin models run, for every later model built in this process.
pub fn set_isolation(isolation: Isolation) {
    *ISOLATION.write().unwrap_or_else(|e| e.into_inner()) = Some(isolation);
}

/// Where plugin models run (default: child processes with the default limits).
pub fn isolation() -> Isolation {
    ISOLATION.read().unwrap_or_else(|e| e.into_inner()).unwrap_or_default()
}

/// Sets the `coevo` executable plugin hosts are started from (the CLI gives its own).
pub fn set_host_program(path: PathBuf) {
    *HOST_PROGRAM.write().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

/// The `coevo` executable plugin hosts are started from (see [`HOST_PROGRAM_VAR`]).
pub fn host_program() -> Result<PathBuf, String> {
    if let Some(p) = HOST_PROGRAM.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os(HOST_PROGRAM_VAR) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let name = format!("coevo{}", std::env::consts::EXE_SUFFIX);
    if exe.file_name().is_some_and(|n| n == name.as_str()) {
        return Ok(exe);
    }
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join(&name)).collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "cannot find the coevo executable that hosts plugins out of process (looked for {}); set {HOST_PROGRAM_VAR}, or run plugins in process with --trusted-plugins",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A library's table as its host reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Its models, in `model_index` order.
    pub models: Vec<ModelMeta>,
}

impl TableInfo {
    /// The table of a library loaded in process.
    pub fn of(table: &LoadedTable) -> TableInfo {
        TableInfo { name: table.name().to_owned(), version: table.version().to_owned(), models: table.models().to_vec() }
    }

    fn decode(r: &mut Decoder<'_>) -> Result<TableInfo, String> {
        let (name, version) = (r.str()?, r.str()?);
        let count = r.usize()?;
        if count == 0 || count > MAX_MODELS {
            return Err(format!("{count} models (expected 1 to {MAX_MODELS})"));
        }
        let mut models = Vec::with_capacity(count);
        for _ in 0..count {
            let (name, modality, dim_rule) = (r.str()?, r.str()?, r.str()?);
            let fixed = r.usize()?;
            models.push(ModelMeta { name, modality, dim_rule, fixed_dim: (fixed != 0).then_some(fixed), description: r.str()? });
        }
        r.end()?;
        Ok(TableInfo { name, version, models })
    }

    fn model_index(&self, model: &str) -> Result<usize, HostError> {
        self.models.iter().position(|m| m.name == model).ok_or_else(|| HostError::UnknownModel {
            plugin: self.name.clone(),
            model: model.to_owned(),
            available: self.models.iter().map(|m| m.name.clone()).collect(),
        })
    }
}

/// Why a call to a host failed: the plugin's own error (sent back by the host), or the host
/// itself died or misbehaved (the reason, e.g. `crashed (signal 11, SIGSEGV)`).
enum Failure {
    Plugin(HostError),
    Host(String),
}

/// A request to the spawner thread: the command, and where to send the started child.
type SpawnJob = (std::process::Command, std::sync::mpsc::Sender<std::io::Result<std::process::Child>>);

/// Starts `command` from a thread that lives as long as the process. `PR_SET_PDEATHSIG`
/// fires when the *thread* that started the child exits, not the process: a host started from
/// a short-lived thread (a test's, a scoped worker's) would be killed with it while models of
/// other threads still use it.
fn spawn_from_lasting_thread(mut command: std::process::Command) -> std::io::Result<std::process::Child> {
    use std::sync::mpsc::channel;
    static SPAWNER: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<SpawnJob>>>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, received) = channel::<SpawnJob>();
        let thread = std::thread::Builder::new().name("coevo-plugin-spawner".into()).spawn(move || {
            for (mut command, reply) in received {
                let _ = reply.send(command.spawn());
            }
        });
        thread.ok().map(|_| Mutex::new(jobs))
    });
    let Some(jobs) = spawner else { return command.spawn() };
    let (reply, started) = channel();
    jobs.lock().unwrap_or_else(|e| e.into_inner()).send((command, reply)).map_err(|_| std::io::Error::other("the spawner thread ended"))?;
    started.recv().map_err(|_| std::io::Error::other("the spawner thread ended"))?
}

/// One plugin host process and the connection to it.
struct Child {
    process: std::process::Child,
    conn: UnixStream,
    pid: u32,
    seq: u64,
    timeout: Option<Duration>,
    /// Why the host is unusable, once it is: every later call fails with the same reason.
    dead: Option<String>,
}

/// The name of a signal, for messages.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

impl Child {
    /// Starts a host for `library` and reads its hello: the library's table, or why the host
    /// cannot use it (the plugin's own refusal, as in process).
    fn spawn(library: &Path, sha256: Option<&str>, limits: ChildLimits) -> Result<(Child, Result<TableInfo, HostError>), HostError> {
        use std::os::unix::process::CommandExt as _;
        let fail = |message: String| HostError::Load { path: library.display().to_string(), message };
        let program = host_program().map_err(fail)?;
        let (conn, theirs) = UnixStream::pair().map_err(|e| fail(format!("cannot create the plugin host's connection: {e}")))?;
        let theirs = std::os::fd::OwnedFd::from(theirs);
        let theirs_too = theirs.try_clone().map_err(|e| fail(format!("cannot create the plugin host's connection: {e}")))?;
        let memory =
            limits.memory_bytes.unwrap_or_else(|| crate::data::MemoryLimit::new(None).map_or(u64::MAX, |m| m.bytes.max(MIN_MEMORY)));
        let parent = std::process::id() as libc::pid_t;
        let mut command = std::process::Command::new(&program);
        command.arg(HOST_COMMAND).arg(library);
        if let Some(hash) = sha256 {
            command.arg("--sha256").arg(hash);
        }
        command.stdin(std::process::Stdio::from(theirs)).stdout(std::process::Stdio::from(theirs_too)).process_group(0);
        // SAFETY: the closure runs in the forked child before `exec` and only makes
        // async-signal-safe system calls (prctl, getppid, setrlimit) and allocates nothing (its
        // errors are raw OS errors), as `pre_exec` requires.
        unsafe {
            command.pre_exec(move || {
                // Dies with coevo even if coevo is killed outright.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // coevo died between fork and prctl: nobody would reap this host.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                // A crashing plugin leaves no core file in the user's folder.
                let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                if memory != u64::MAX {
                    let limit = libc::rlimit { rlim_cur: memory as libc::rlim_t, rlim_max: memory as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let process = spawn_from_lasting_thread(command)
            .map_err(|e| fail(format!("cannot start the plugin host {} {HOST_COMMAND}: {e}", program.display())))?;
        let pid = process.id();
        let mut child = Child { process, conn, pid, seq: 0, timeout: limits.timeout, dead: None };
        let deadline = child.timeout.map(|t| Instant::now() + t);
        let hello = match child.receive(deadline, HELLO, 0, 1 << 24) {
            Ok((_, bytes)) => bytes,
            Err(reason) => {
                return Err(HostError::Crashed { plugin: library.display().to_string(), model: String::new(), op: "load", reason });
            }
        };
        let mut r = Decoder::new(&hello);
        let bad = |m: String| fail(format!("the plugin host sent a malformed table: {m}"));
        let info = match r.u32().map_err(bad)? {
            REPLY_OK => Ok(TableInfo::decode(&mut r).map_err(bad)?),
            _ => Err(wire::decode_error(&hello[4..]).map_err(bad)?),
        };
        Ok((child, info))
    }

    /// Reads one reply frame: tag `expected` (or an error reply), from the host process
    /// itself, answering request `seq`, at most `max_ok` bytes long; its tag and payload. Any
    /// other frame, a closed connection or the deadline passing is the host's failure.
    fn receive(&mut self, deadline: Option<Instant>, expected: u32, seq: u64, max_ok: u64) -> Result<(u32, Vec<u8>), String> {
        let mut head = [0u8; HEADER];
        self.read_exact(&mut head, deadline)?;
        let h = Header::decode(&head);
        if h.pid != self.pid {
            return Err(self.broken(format!(
                "broke the host protocol: a reply came from process {} instead of the host {} (did the plugin fork?)",
                h.pid, self.pid
            )));
        }
        if h.seq != seq || (h.tag != expected && h.tag != REPLY_ERR) {
            return Err(self.broken(format!(
                "broke the host protocol: reply {} (kind {}) to request {seq} (did the plugin write to the host's output?)",
                h.seq, h.tag
            )));
        }
        let max = if h.tag == REPLY_ERR { MAX_ERROR_REPLY } else { max_ok };
        if h.len > max {
            return Err(self.broken(format!("broke the host protocol: a reply of {} bytes, at most {max} expected", h.len)));
        }
        let mut payload = vec![0u8; h.len as usize];
        self.read_exact(&mut payload, deadline)?;
        Ok((h.tag, payload))
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<(), String> {
        let mut at = 0;
        while at < buf.len() {
            self.arm(deadline)?;
            match self.conn.read(&mut buf[at..]) {
                Ok(0) => return Err(self.died()),
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(_) => return Err(self.died()),
            }
        }
        Ok(())
    }

    fn write_all(&mut self, mut buf: &[u8], deadline: Option<Instant>) -> Result<(), String> {
        while !buf.is_empty() {
            self.arm(deadline)?;
            // `UnixStream` writes with MSG_NOSIGNAL: a dead host is an EPIPE error, never a
            // SIGPIPE that would kill coevo.
            match self.conn.write(buf) {
                Ok(0) => return Err(self.died()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(_) => return Err(self.died()),
            }
        }
        Ok(())
    }

    /// Sets the socket timeouts to what is left before `deadline`; past it, the watchdog
    /// kills the host.
    fn arm(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        let left = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let t = self.timeout.unwrap_or_default();
                    return Err(self.broken(format!(
                        "did not answer within {} s and was stopped (the watchdog; raise it with --plugin-timeout)",
                        t.as_secs_f64()
                    )));
                }
                Some(left)
            }
        };
        let _ = self.conn.set_read_timeout(left);
        let _ = self.conn.set_write_timeout(left);
        Ok(())
    }

    /// The host closed the connection: waits briefly for its exit status (without reaping
    /// it, so its process group cannot be reused before it is killed) and says how it ended.
    fn died(&mut self) -> String {
        let start = Instant::now();
        let exited = loop {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid on our own child with WNOWAIT only reads its state.
            let r = unsafe { libc::waitid(libc::P_PID, self.pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
            // SAFETY: waitid filled `info` (or left it zeroed, si_pid 0: still running).
            if r != 0 || unsafe { info.si_pid() } != 0 {
                break true;
            }
            if start.elapsed() > Duration::from_secs(2) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if !exited {
            return self.broken("closed its connection to coevo (the host was stopped)".to_owned());
        }
        self.kill_group();
        use std::os::unix::process::ExitStatusExt as _;
        let reason = match self.process.wait() {
            Ok(status) => match (status.signal(), status.code()) {
                (Some(s), _) => format!("crashed (signal {s}, {})", signal_name(s)),
                (None, Some(c)) => format!("ended the plugin host process (exit status {c})"),
                (None, None) => format!("ended the plugin host process ({status})"),
            },
            Err(e) => format!("ended the plugin host process (its status is unknown: {e})"),
        };
        self.dead = Some(reason.clone());
        reason
    }

    /// Marks the host failed for `reason` and kills it with its process group.
    fn broken(&mut self, reason: String) -> String {
        self.kill_group();
        let _ = self.process.wait();
        self.dead = Some(reason.clone());
        reason
    }

    fn kill_group(&mut self) {
        // SAFETY: the group is the host's own (process_group(0) at spawn) and the host has not
        // been reaped yet, so the group id still names it and whatever it started.
        unsafe { libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL) };
    }

    /// One request and its reply: the reply payload, or why the call failed.
    fn call(&mut self, op: Op, payload: &[u8], max_reply: u64) -> Result<Vec<u8>, Failure> {
        if let Some(reason) = &self.dead {
            return Err(Failure::Host(reason.clone()));
        }
        self.seq += 1;
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let header = Header { tag: op as u32, pid: 0, seq: self.seq, len: payload.len() as u64 };
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(payload);
        self.write_all(&frame, deadline).map_err(Failure::Host)?;
        let (tag, reply) = self.receive(deadline, REPLY_OK, self.seq, max_reply).map_err(Failure::Host)?;
        if tag == REPLY_ERR {
            return Err(match wire::decode_error(&reply) {
                Ok(e) => Failure::Plugin(e),
                Err(m) => Failure::Host(self.broken(format!("broke the host protocol: {m}"))),
            });
        }
        Ok(reply)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.dead.is_none() {
            self.kill_group();
            let _ = self.process.wait();
        }
    }
}

/// A plugin library served by host processes: its table, and up to one host per worker thread.
pub struct RemoteLibrary {
    path: PathBuf,
    sha256: Option<String>,
    info: TableInfo,
    limits: ChildLimits,
    children: Mutex<Vec<Arc<Mutex<Child>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for RemoteLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLibrary").field("path", &self.path).field("info", &self.info).finish()
    }
}

/// The libraries with live hosts, shared by every model built from them in this process; a
/// library's hosts are stopped when its last model is dropped.
static LIBRARIES: Mutex<Vec<LiveLibrary>> = Mutex::new(Vec::new());

/// An entry of [`LIBRARIES`]: library file, expected SHA-256, the library while it lives.
type LiveLibrary = (PathBuf, Option<String>, Weak<RemoteLibrary>);

impl RemoteLibrary {
    /// The library at `path` served by host processes with `limits`; `sha256`, if given, is
    /// checked by each host before it loads the file.
    pub fn open(path: &Path, sha256: Option<&str>, limits: ChildLimits) -> Result<Arc<RemoteLibrary>, HostError> {
        let mut live = LIBRARIES.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|(_, _, w)| w.strong_count() > 0);
        let key = (path.to_path_buf(), sha256.map(str::to_owned));
        if let Some(lib) = live.iter().find(|(p, h, _)| (p, h) == (&key.0, &key.1)).and_then(|(_, _, w)| w.upgrade())
            && lib.limits == limits
        {
            return Ok(lib);
        }
        let (child, info) = Child::spawn(path, sha256, limits)?;
        let lib = Arc::new(RemoteLibrary {
            path: key.0.clone(),
            sha256: key.1.clone(),
            info: info?,
            limits,
            children: Mutex::new(vec![Arc::new(Mutex::new(child))]),
            next: AtomicUsize::new(0),
        });
        live.push((key.0, key.1, Arc::downgrade(&lib)));
        Ok(lib)
    }

    /// The library's table.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// The host a new model goes to: a new one while there are fewer hosts than worker
    /// threads, else the next in turn.
    fn host(&self) -> Result<Arc<Mutex<Child>>, HostError> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if children.len() < rayon::current_num_threads().max(1) && turn >= children.len() {
            let (child, info) = Child::spawn(&self.path, self.sha256.as_deref(), self.limits)?;
            if info.as_ref() != Ok(&self.info) {
                return Err(HostError::InvalidTable {
                    origin: self.path.display().to_string(),
                    reason: "a second host of the library reported another table (the file changed?)".into(),
                });
            }
            children.push(Arc::new(Mutex::new(child)));
            return Ok(children.last().expect("just pushed").clone());
        }
        Ok(children[turn % children.len()].clone())
    }

    /// Creates model `model` with `num_texts` texts in one of the library's hosts.
    pub fn create_by_name(
        self: &Arc<Self>,
        model: &str,
        params_json: &str,
        num_texts: usize,
        policy: DataPolicy,
    ) -> Result<RemoteModel, HostError> {
        let index = self.info.model_index(model)?;
        let host = self.host()?;
        let raw = policy.to_raw();
        let mut w = Encoder::default();
        w.str(model).str(params_json).u64(num_texts as u64).u32(raw.kind).u64(raw.initial).f64(raw.lambda);
        let mut m = RemoteModel { library: self.clone(), host, handle: 0, index, dim: 0, num_texts, metric_names: Vec::new() };
        let cap = 64 + (MAX_METRICS as u64) * (8 + coevo_plugin_api::host::MAX_STRING as u64);
        let reply = m.call(Op::Create, &w.0, cap)?;
        let decode = |r: &mut Decoder<'_>| -> Result<(u64, usize, usize, Vec<String>), String> {
            let parts = (r.u64()?, r.usize()?, r.usize()?, r.strs()?);
            r.end()?;
            Ok(parts)
        };
        let (handle, dim, k, names) = decode(&mut Decoder::new(&reply)).map_err(|why| m.contract(Op::Create, why))?;
        // The host checked these already; a host whose memory a plugin corrupted is not
        // believed on sizes the parent allocates by.
        m.handle = handle;
        if dim == 0 || dim > MAX_DIM || k != num_texts || names.len() > MAX_METRICS {
            return Err(m.contract(Op::Create, format!("the host reported dim {dim}, K {k}, {} metrics", names.len())));
        }
        m.dim = dim;
        m.metric_names = names;
        Ok(m)
    }
}

/// A model living in a plugin host process: the same calls as [`PluginModel`], the same
/// errors, plus [`HostError::Crashed`] when the host dies.
pub struct RemoteModel {
    library: Arc<RemoteLibrary>,
    host: Arc<Mutex<Child>>,
    handle: u64,
    index: usize,
    dim: usize,
    num_texts: usize,
    metric_names: Vec<String>,
}

impl std::fmt::Debug for RemoteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteModel").field("plugin", &self.library.info.name).field("model", &self.meta().name).finish()
    }
}

/// Appends a random stream's state (seed, stream, word position).
fn put_stream(w: &mut Encoder, rng: &Stream) {
    let pos = rng.get_word_pos();
    w.bytes(&rng.get_seed()).u64(rng.get_stream()).u64(pos as u64).u64((pos >> 64) as u64);
}

/// Reads back the word position a host advanced a stream to.
fn take_position(r: &mut Decoder<'_>) -> Result<u128, String> {
    let (lo, hi) = (r.u64()?, r.u64()?);
    Ok(u128::from(lo) | (u128::from(hi) << 64))
}

impl RemoteModel {
    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.library.info.models[self.index]
    }

    /// Sample dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Current number of texts K.
    pub fn num_texts(&self) -> usize {
        self.num_texts
    }

    /// Names of the per-text metrics.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    fn contract(&self, op: Op, message: String) -> HostError {
        HostError::Contract { plugin: self.library.info.name.clone(), model: self.meta().name.clone(), op: op.name(), message }
    }

    fn usage(&self, op: Op, message: String) -> HostError {
        HostError::Usage { plugin: self.library.info.name.clone(), model: self.meta().name.clone(), op: op.name(), message }
    }

    fn call(&mut self, op: Op, payload: &[u8], max_reply: u64) -> Result<Vec<u8>, HostError> {
        let mut host = self.host.lock().unwrap_or_else(|e| e.into_inner());
        host.call(op, payload, max_reply).map_err(|f| match f {
            Failure::Plugin(e) => e,
            Failure::Host(reason) => {
                HostError::Crashed { plugin: self.library.info.name.clone(), model: self.meta().name.clone(), op: op.name(), reason }
            }
        })
    }

    /// `sum(counts) * dim`, checked.
    fn rows(&self, op: Op, counts: &[u64]) -> Result<usize, HostError> {
        if counts.len() != self.num_texts {
            return Err(self.usage(op, format!("{} counts for {} texts", counts.len(), self.num_texts)));
        }
        counts
            .iter()
            .try_fold(0usize, |a, &c| a.checked_add(usize::try_from(c).ok()?))
            .and_then(|n| n.checked_mul(self.dim))
            .ok_or_else(|| self.usage(op, "sum(counts) * dim overflows".into()))
    }

    /// Reply bytes of a list of `len` values and `extra` more bytes, checked.
    fn cap(&self, op: Op, len: usize, extra: u64) -> Result<u64, HostError> {
        (len as u64).checked_mul(8).and_then(|b| b.checked_add(8 + extra)).ok_or_else(|| self.usage(op, format!("{len} values overflow")))
    }

    /// A list of exactly `len` values from the reply, or the host broke the contract.
    fn values(&self, op: Op, r: &mut Decoder<'_>, len: usize) -> Result<Vec<f64>, HostError> {
        let v = r.f64s().map_err(|m| self.contract(op, m))?;
        if v.len() != len {
            return Err(self.contract(op, format!("{} values, expected {len}", v.len())));
        }
        Ok(v)
    }

    /// As [`PluginModel::sample`], from the stream `rng`, which is advanced as in process.
    pub fn sample(&mut self, counts: &[u64], temperature: f64, rng: &mut Stream) -> Result<Vec<f64>, HostError> {
        const OP: Op = Op::Sample;
        let len = self.rows(OP, counts)?;
        let mut w = Encoder::default();
        w.u64(self.handle).f64(temperature);
        put_stream(&mut w, rng);
        w.u64s(counts);
        let reply = self.call(OP, &w.0, self.cap(OP, len, 16)?)?;
        let mut r = Decoder::new(&reply);
        let values = self.values(OP, &mut r, len)?;
        let pos = take_position(&mut r).map_err(|m| self.contract(OP, m))?;
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.contract(OP, format!("sample value {j} is {}", values[j])));
        }
        rng.set_word_pos(pos);
        Ok(values)
    }

    /// As [`PluginModel::log_likelihood`].
    pub fn log_likelihood(&mut self, samples: &[f64]) -> Result<Vec<f64>, HostError> {
        const OP: Op = Op::LogLikelihood;
        if !samples.len().is_multiple_of(self.dim) {
            return Err(self.usage(OP, format!("{} values is not a multiple of dim {}", samples.len(), self.dim)));
        }
        let len = (samples.len() / self.dim).checked_mul(self.num_texts).ok_or_else(|| self.usage(OP, "n * K overflows".into()))?;
        let mut w = Encoder::default();
        w.u64(self.handle).f64s(samples);
        let reply = self.call(OP, &w.0, self.cap(OP, len, 0)?)?;
        let values = self.values(OP, &mut Decoder::new(&reply), len)?;
        if let Some(j) = values.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(self.contract(OP, format!("log-likelihood {j} is {}", values[j])));
        }
        Ok(values)
    }

    /// As [`PluginModel::fit`], from the stream `rng`, which is advanced as in process.
    pub fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut Stream) -> Result<(), HostError> {
        const OP: Op = Op::Fit;
        let len = self.rows(OP, counts)?;
        if samples.len() != len {
            return Err(self.usage(OP, format!("{} sample values, expected sum(counts) * dim = {len}", samples.len())));
        }
        let mut w = Encoder::default();
        w.u64(self.handle);
        put_stream(&mut w, rng);
        w.u64s(counts).f64s(samples);
        let reply = self.call(OP, &w.0, 16)?;
        let pos = take_position(&mut Decoder::new(&reply)).map_err(|m| self.contract(OP, m))?;
        rng.set_word_pos(pos);
        Ok(())
    }

    /// As [`PluginModel::metrics`].
    pub fn metrics(&mut self) -> Result<Vec<f64>, HostError> {
        const OP: Op = Op::Metrics;
        let len = self.num_texts.checked_mul(self.metric_names.len()).ok_or_else(|| self.usage(OP, "K * M overflows".into()))?;
        let mut w = Encoder::default();
        w.u64(self.handle);
        let reply = self.call(OP, &w.0, self.cap(OP, len, 0)?)?;
        let values = self.values(OP, &mut Decoder::new(&reply), len)?;
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.contract(OP, format!("metric value {j} is {}", values[j])));
        }
        Ok(values)
    }

    /// As [`PluginModel::add_text`].
    pub fn add_text(&mut self) -> Result<(), HostError> {
        let mut w = Encoder::default();
        w.u64(self.handle);
        self.call(Op::AddText, &w.0, 0)?;
        self.num_texts += 1;
        Ok(())
    }

    /// As [`PluginModel::get_params`]. The reply may be as large as the host's memory.
    pub fn get_params(&mut self) -> Result<Vec<f64>, HostError> {
        let mut w = Encoder::default();
        w.u64(self.handle);
        let cap = self.library.limits.memory_bytes.unwrap_or(u64::MAX).min(isize::MAX as u64);
        let reply = self.call(Op::GetParams, &w.0, cap)?;
        let mut r = Decoder::new(&reply);
        let v = r.f64s().map_err(|m| self.contract(Op::GetParams, m))?;
        r.end().map_err(|m| self.contract(Op::GetParams, m))?;
        Ok(v)
    }

    /// As [`PluginModel::set_params`]: K is read back from the host.
    pub fn set_params(&mut self, params: &[f64]) -> Result<(), HostError> {
        let mut w = Encoder::default();
        w.u64(self.handle).f64s(params);
        let reply = self.call(Op::SetParams, &w.0, 8)?;
        let k = Decoder::new(&reply).usize().map_err(|m| self.contract(Op::SetParams, m))?;
        if k == 0 {
            return Err(self.contract(Op::SetParams, "num_texts is 0".into()));
        }
        self.num_texts = k;
        Ok(())
    }
}

impl Drop for RemoteModel {
    fn drop(&mut self) {
        if self.handle == 0 {
            return;
        }
        let mut w = Encoder::default();
        w.u64(self.handle);
        let mut host = self.host.lock().unwrap_or_else(|e| e.into_inner());
        let _ = host.call(Op::Destroy, &w.0, 0);
    }
}

/// A plugin library as a run uses it: loaded in process (trusted) or served by hosts.
#[derive(Debug, Clone)]
pub enum PluginLibrary {
    /// Loaded into this process.
    InProcess(LoadedTable),
    /// Served by plugin host processes.
    Child(Arc<RemoteLibrary>),
}

impl PluginLibrary {
    /// The library's table.
    pub fn info(&self) -> TableInfo {
        match self {
            PluginLibrary::InProcess(t) => TableInfo::of(t),
            PluginLibrary::Child(l) => l.info.clone(),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        match self {
            PluginLibrary::InProcess(t) => t.name(),
            PluginLibrary::Child(l) => &l.info.name,
        }
    }

    /// Creates model `model` with `num_texts` texts.
    pub fn create_by_name(
        &self,
        model: &str,
        params_json: &str,
        num_texts: usize,
        policy: DataPolicy,
    ) -> Result<PluginInstance, HostError> {
        match self {
            PluginLibrary::InProcess(t) => t.create_by_name(model, params_json, num_texts, policy).map(PluginInstance::InProcess),
            PluginLibrary::Child(l) => l.create_by_name(model, params_json, num_texts, policy).map(PluginInstance::Child),
        }
    }
}

/// One model of a [`PluginLibrary`].
#[derive(Debug)]
pub enum PluginInstance {
    /// In this process.
    InProcess(PluginModel),
    /// In a plugin host process.
    Child(RemoteModel),
}

/// Forwards a call to whichever side the model lives on.
macro_rules! either {
    ($self:ident, $m:ident => $call:expr) => {
        match $self {
            PluginInstance::InProcess($m) => $call,
            PluginInstance::Child($m) => $call,
        }
    };
}

impl PluginInstance {
    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        either!(self, m => m.meta())
    }

    /// Sample dimension.
    pub fn dim(&self) -> usize {
        either!(self, m => m.dim())
    }

    /// Current number of texts K.
    pub fn num_texts(&self) -> usize {
        either!(self, m => m.num_texts())
    }

    /// Names of the per-text metrics.
    pub fn metric_names(&self) -> &[String] {
        either!(self, m => m.metric_names())
    }

    /// See [`PluginModel::sample`].
    pub fn sample(&mut self, counts: &[u64], temperature: f64, rng: &mut Stream) -> Result<Vec<f64>, HostError> {
        either!(self, m => m.sample(counts, temperature, rng))
    }

    /// See [`PluginModel::log_likelihood`].
    pub fn log_likelihood(&mut self, samples: &[f64]) -> Result<Vec<f64>, HostError> {
        either!(self, m => m.log_likelihood(samples))
    }

    /// See [`PluginModel::fit`].
    pub fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut Stream) -> Result<(), HostError> {
        either!(self, m => m.fit(counts, samples, rng))
    }

    /// See [`PluginModel::metrics`].
    pub fn metrics(&mut self) -> Result<Vec<f64>, HostError> {
        either!(self, m => m.metrics())
    }

    /// See [`PluginModel::add_text`].
    pub fn add_text(&mut self) -> Result<(), HostError> {
        either!(self, m => m.add_text())
    }

    /// See [`PluginModel::get_params`].
    pub fn get_params(&mut self) -> Result<Vec<f64>, HostError> {
        either!(self, m => m.get_params())
    }

    /// See [`PluginModel::set_params`].
    pub fn set_params(&mut self, params: &[f64]) -> Result<(), HostError> {
        either!(self, m => m.set_params(params))
    }
}

/// Reads a library's table in a throwaway host process (`coevo plugins list`): nothing of the
/// library runs in this process, and a library that crashes its host is reported, not fatal.
pub fn probe(path: &Path, limits: ChildLimits) -> Result<TableInfo, HostError> {
    let (_child, info) = Child::spawn(path, None, limits)?;
    info
}
