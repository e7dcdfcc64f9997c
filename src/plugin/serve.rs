//! The plugin host process (`coevo plugin-host LIBRARY`), the other end of
//! [`super::isolate`]: loads one plugin library into itself, so that whatever the library does
//! (a segfault, `abort()`, `exit(0)`, an endless loop, a huge allocation, a heap overrun, a
//! fork) happens in this process and not in the run's, and serves the parent's calls over the
//! [`super::wire`] protocol until its input ends.
//!
//! The protocol runs on copies of the standard input and output taken before the library is
//! loaded; the standard output itself is then pointed at the standard error and the standard
//! input at `/dev/null`, so a plugin that prints (or reads) cannot corrupt the protocol. Each
//! call is the in-process host's ([`PluginModel`]): the same checks of outputs, the same
//! errors, sent back word for word. Random numbers come from the parent's stream state, sent
//! with each call and returned advanced, so a model draws exactly the numbers it would draw in
//! the parent.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use coevo_plugin_api::DataPolicy;
use coevo_plugin_api::abi::CoevoDataPolicy;
use coevo_plugin_api::host::{HostError, LoadedTable, PluginModel};

use super::wire::{self, Decoder, Encoder, HELLO, Header, Op, REPLY_ERR, REPLY_OK};
use crate::rng::Stream;

/// Serves one library over the standard input and output until the input ends. Errors are
/// I/O failures of the protocol itself (the parent went away); a library that cannot be
/// loaded is reported to the parent, then the host ends normally.
pub fn serve(library: &Path, sha256: Option<&str>) -> std::io::Result<()> {
    let (input, output) = protocol_pipes()?;
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut output = BufWriter::with_capacity(1 << 16, output);
    let pid = std::process::id();
    let table = open_verified(library, sha256);
    let mut hello = Encoder::default();
    match &table {
        Ok(t) => {
            hello.u32(REPLY_OK).str(t.name()).str(t.version()).u64(t.models().len() as u64);
            for m in t.models() {
                hello.str(&m.name).str(&m.modality).str(&m.dim_rule).u64(m.fixed_dim.unwrap_or(0) as u64).str(&m.description);
            }
        }
        Err(e) => {
            hello.u32(REPLY_ERR).0.extend(wire::encode_error(e));
        }
    }
    wire::write_frame(&mut output, Header { tag: HELLO, pid, seq: 0, len: hello.0.len() as u64 }, &hello.0)?;
    let Ok(table) = table else { return Ok(()) };
    let mut models = Models { table, handles: HashMap::new(), next: 1 };
    // The parent is the trusted side: its frames are as large as its batches.
    while let Some((header, payload)) = wire::read_frame(&mut input, u64::MAX)? {
        let op = Op::from_tag(header.tag);
        let mut reply = match op {
            Some(op) => models.call(op, &payload),
            None => Err(models.usage(Op::Create, "", format!("unknown request {}", header.tag))),
        };
        if std::process::id() != pid {
            // The plugin forked and this is the copy. It must never answer: two processes
            // reading and writing one protocol would interleave at random. It ends here,
            // without running the plugin's exit handlers; the host reports the fork.
            // SAFETY: `_exit` ends the process at once and takes no pointer.
            unsafe { libc::_exit(0) };
        }
        if let Some(child) = forked_child() {
            // Reported on the call that forked, whatever the copy does next: a run with a
            // forking plugin fails at the same round every time.
            let reason = format!("forked a process (pid {child}), which a plugin host does not allow");
            let op = op.map_or("request", Op::name);
            reply = Err(HostError::Crashed { plugin: models.table.name().to_owned(), model: String::new(), op, reason });
        }
        let (tag, body) = match reply {
            Ok(body) => (REPLY_OK, body),
            Err(e) => (REPLY_ERR, wire::encode_error(&e)),
        };
        wire::write_frame(&mut output, Header { tag, pid, seq: header.seq, len: body.len() as u64 }, &body)?;
    }
    Ok(())
}

/// A child of this host process, if the plugin made one (running, or exited and not reaped):
/// the host itself never forks.
fn forked_child() -> Option<i32> {
    // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `siginfo_t`; WNOWAIT leaves any child as it is.
    let found = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    if found != 0 {
        return None; // ECHILD: no child at all.
    }
    // SAFETY: waitid filled `info` (si_pid is 0 when a child exists but is still running).
    let pid = unsafe { info.si_pid() };
    Some(if pid == 0 { first_child().unwrap_or(0) } else { pid })
}

/// The pid of a running child of this process, from `/proc` (for the message only).
fn first_child() -> Option<i32> {
    let me = std::process::id();
    let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Loads the library after checking that its bytes still have the SHA-256 the parent
/// recorded (the file could have been replaced since the scenario was checked).
fn open_verified(library: &Path, sha256: Option<&str>) -> Result<LoadedTable, HostError> {
    if let Some(expected) = sha256 {
        let found =
            super::library::sha256_of(library).map_err(|message| HostError::Load { path: library.display().to_string(), message })?;
        if found != expected {
            return Err(HostError::Load {
                path: library.display().to_string(),
                message: format!("its SHA-256 is {found}, but {expected} was recorded when the scenario was checked: the file changed"),
            });
        }
    }
    super::library::load(library)
}

/// Copies of the standard input and output for the protocol (close-on-exec, so a program a
/// plugin starts does not inherit them), then the standard output pointed at the standard
/// error and the standard input at `/dev/null`.
fn protocol_pipes() -> std::io::Result<(File, File)> {
    use std::os::fd::FromRawFd as _;
    let last = std::io::Error::last_os_error;
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` only creates new descriptors; both are checked, and
    // each is owned by exactly one `File` below.
    let (input, output) = unsafe { (libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3), libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3)) };
    if input < 0 || output < 0 {
        return Err(last());
    }
    // SAFETY: `dup2` and `open` act on this process's own standard descriptors; a failure of
    // either leaves the protocol copies intact.
    unsafe {
        if libc::dup2(2, 1) < 0 {
            return Err(last());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
    // SAFETY: fresh descriptors owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(input), File::from_raw_fd(output)) })
}

/// The models alive in this host, by the handle numbers the parent knows them by.
struct Models {
    table: LoadedTable,
    handles: HashMap<u64, PluginModel>,
    next: u64,
}

/// A random stream sent by the parent: seed, stream number, word position.
fn read_stream(r: &mut Decoder<'_>) -> Result<Stream, String> {
    use rand::SeedableRng as _;
    let seed: [u8; 32] = r.bytes()?.try_into().map_err(|_| "a stream seed is not 32 bytes".to_owned())?;
    let mut stream = Stream::from_seed(seed);
    stream.set_stream(r.u64()?);
    let (lo, hi) = (r.u64()?, r.u64()?);
    stream.set_word_pos(u128::from(lo) | (u128::from(hi) << 64));
    Ok(stream)
}

impl Models {
    fn usage(&self, op: Op, model: &str, message: String) -> HostError {
        HostError::Usage { plugin: self.table.name().to_owned(), model: model.to_owned(), op: op.name(), message }
    }

    fn model(&mut self, op: Op, r: &mut Decoder<'_>) -> Result<&mut PluginModel, HostError> {
        let handle = r.u64().map_err(|m| self.usage(op, "", m))?;
        if !self.handles.contains_key(&handle) {
            return Err(self.usage(op, "", format!("no model with handle {handle}")));
        }
        Ok(self.handles.get_mut(&handle).expect("checked above"))
    }

    /// Performs one request; the reply payload or the error to send back.
    fn call(&mut self, op: Op, payload: &[u8]) -> Result<Vec<u8>, HostError> {
        let mut r = Decoder::new(payload);
        let mut out = Encoder::default();
        let name = self.table.name().to_owned();
        let malformed = move |m: String| HostError::Usage { plugin: name.clone(), model: String::new(), op: op.name(), message: m };
        match op {
            Op::Create => {
                let (model, params, k) = (r.str().map_err(&malformed)?, r.str().map_err(&malformed)?, r.usize().map_err(&malformed)?);
                let raw = CoevoDataPolicy {
                    kind: r.u32().map_err(&malformed)?,
                    initial: r.u64().map_err(&malformed)?,
                    lambda: r.f64().map_err(&malformed)?,
                };
                let policy = DataPolicy::from_raw(raw).map_err(|e| malformed(e.to_string()))?;
                let m = self.table.create_by_name(&model, &params, k, policy)?;
                let handle = self.next;
                self.next += 1;
                out.u64(handle).u64(m.dim() as u64).u64(m.num_texts() as u64).strs(m.metric_names());
                self.handles.insert(handle, m);
            }
            Op::Destroy => {
                let handle = r.u64().map_err(&malformed)?;
                self.handles.remove(&handle);
            }
            Op::Sample => {
                let m = self.model(op, &mut r)?;
                let temperature = r.f64().map_err(&malformed)?;
                let mut rng = read_stream(&mut r).map_err(&malformed)?;
                let counts = r.u64s().map_err(&malformed)?;
                let values = m.sample(&counts, temperature, &mut rng)?;
                out.f64s(&values).u64(rng.get_word_pos() as u64).u64((rng.get_word_pos() >> 64) as u64);
            }
            Op::LogLikelihood => {
                let m = self.model(op, &mut r)?;
                let samples = r.f64s().map_err(&malformed)?;
                out.f64s(&m.log_likelihood(&samples)?);
            }
            Op::Fit => {
                let m = self.model(op, &mut r)?;
                let mut rng = read_stream(&mut r).map_err(&malformed)?;
                let (counts, samples) = (r.u64s().map_err(&malformed)?, r.f64s().map_err(&malformed)?);
                m.fit(&counts, &samples, &mut rng)?;
                out.u64(rng.get_word_pos() as u64).u64((rng.get_word_pos() >> 64) as u64);
            }
            Op::Metrics => {
                let m = self.model(op, &mut r)?;
                out.f64s(&m.metrics()?);
            }
            Op::AddText => {
                self.model(op, &mut r)?.add_text()?;
            }
            Op::GetParams => {
                let m = self.model(op, &mut r)?;
                out.f64s(&m.get_params()?);
            }
            Op::SetParams => {
                let m = self.model(op, &mut r)?;
                let params = r.f64s().map_err(&malformed)?;
                m.set_params(&params)?;
                out.u64(m.num_texts() as u64);
            }
        }
        Ok(out.0)
    }
}
