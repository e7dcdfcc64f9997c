//! The protocol between coevo and a plugin host process (`coevo plugin-host`, see
//! [`super::isolate`] and [`super::serve`]): length-prefixed binary frames over two pipes.
//!
//! A frame is a 24-byte header, `tag u32 | pid u32 | seq u64 | len u64` (little-endian), then
//! `len` payload bytes. A request's tag is an [`Op`]; a reply's tag is [`REPLY_OK`] or
//! [`REPLY_ERR`] (the payload is then an encoded [`HostError`]), its `pid` is the host
//! process's and its `seq` the request's: a reply from another process (a plugin that forked)
//! or out of order (a plugin that wrote to the protocol pipe) is a protocol violation, not a
//! result.
//!
//! Nothing read from the other side is trusted: every length is checked against the bytes
//! that are actually there before anything is allocated, and the parent caps each reply at
//! the size the call can legitimately produce before reading it.

use std::io::{Read, Write};

use coevo_plugin_api::host::HostError;

/// Bytes of a frame header.
pub const HEADER: usize = 24;

/// A request to the plugin host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Create a model: name, params JSON, K, data policy.
    Create = 1,
    /// Destroy a handle.
    Destroy = 2,
    /// `sample`: handle, temperature, stream state, counts.
    Sample = 3,
    /// `log_likelihood`: handle, samples.
    LogLikelihood = 4,
    /// `fit`: handle, stream state, counts, samples.
    Fit = 5,
    /// `metrics`: handle.
    Metrics = 6,
    /// `add_text`: handle.
    AddText = 7,
    /// `get_params`: handle.
    GetParams = 8,
    /// `set_params`: handle, params.
    SetParams = 9,
}

impl Op {
    /// The op of a request tag.
    pub fn from_tag(tag: u32) -> Option<Op> {
        const ALL: [Op; 9] =
            [Op::Create, Op::Destroy, Op::Sample, Op::LogLikelihood, Op::Fit, Op::Metrics, Op::AddText, Op::GetParams, Op::SetParams];
        ALL.into_iter().find(|op| *op as u32 == tag)
    }

    /// The plugin call it performs, as [`HostError`]s name it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Destroy => "destroy",
            Op::Sample => "sample",
            Op::LogLikelihood => "log_likelihood",
            Op::Fit => "fit",
            Op::Metrics => "metrics",
            Op::AddText => "add_text",
            Op::GetParams => "get_params",
            Op::SetParams => "set_params",
        }
    }
}

/// Reply tag: the call succeeded; the payload is its result.
pub const REPLY_OK: u32 = 0;
/// Reply tag: the call failed; the payload is an encoded [`HostError`].
pub const REPLY_ERR: u32 = 1;
/// Tag of the first frame the host sends: the library's table, or why it cannot be used.
pub const HELLO: u32 = 0x4845_4C4F;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Op or reply tag.
    pub tag: u32,
    /// The sender's process id (0 from the parent).
    pub pid: u32,
    /// Request number, echoed by the reply.
    pub seq: u64,
    /// Payload bytes.
    pub len: u64,
}

impl Header {
    /// The 24 bytes of the header.
    pub fn encode(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[0..4].copy_from_slice(&self.tag.to_le_bytes());
        b[4..8].copy_from_slice(&self.pid.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Reads a header back.
    pub fn decode(b: &[u8; HEADER]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Header { tag: u32_at(0), pid: u32_at(4), seq: u64_at(8), len: u64_at(16) }
    }
}

/// Writes one frame (header and payload) with blocking I/O (the host process's side).
pub fn write_frame(w: &mut impl Write, header: Header, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&header.encode())?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame with blocking I/O, or `None` at a clean end of input. A payload longer
/// than `max` bytes is refused before it is allocated.
pub fn read_frame(r: &mut impl Read, max: u64) -> std::io::Result<Option<(Header, Vec<u8>)>> {
    let mut head = [0u8; HEADER];
    match r.read_exact(&mut head) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let header = Header::decode(&head);
    if header.len > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {} bytes, more than {max}", header.len)));
    }
    let mut payload = vec![0u8; header.len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((header, payload)))
}

/// Builds a payload.
#[derive(Debug, Default)]
pub struct Encoder(pub Vec<u8>);

impl Encoder {
    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends an `f64` (bit pattern, so NaN payloads survive).
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Appends a length-prefixed list of `u64`s.
    pub fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.reserve(v.len() * 8);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    /// Appends a length-prefixed list of `f64`s.
    pub fn f64s(&mut self, v: &[f64]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.reserve(v.len() * 8);
        for x in v {
            self.0.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        self
    }

    /// Appends a length-prefixed list of strings.
    pub fn strs(&mut self, v: &[String]) -> &mut Self {
        self.u64(v.len() as u64);
        for s in v {
            self.str(s);
        }
        self
    }
}

/// Reads a payload; every read is bounds-checked and every length checked against the bytes
/// left before anything is allocated.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("malformed message: {n} more bytes wanted at byte {} of {}", self.at, self.bytes.len()))?;
        let part = &self.bytes[self.at..end];
        self.at = end;
        Ok(part)
    }

    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// Reads a `u64` that must fit a `usize`.
    pub fn usize(&mut self) -> Result<usize, String> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| format!("malformed message: {v} does not fit this platform"))
    }

    /// Reads an `f64`.
    pub fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A length of `width`-byte items that the remaining bytes can hold.
    fn len(&mut self, width: usize) -> Result<usize, String> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) / width;
        usize::try_from(n).ok().filter(|&n| n <= left).ok_or_else(|| format!("malformed message: {n} items announced, {left} present"))
    }

    /// Reads a length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.len(1)?;
        self.take(n)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, String> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| "malformed message: a string is not UTF-8".to_owned())
    }

    /// Reads a length-prefixed list of `u64`s.
    pub fn u64s(&mut self) -> Result<Vec<u64>, String> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }

    /// Reads a length-prefixed list of `f64`s.
    pub fn f64s(&mut self) -> Result<Vec<f64>, String> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().expect("8 bytes")))).collect())
    }

    /// Reads a length-prefixed list of strings.
    pub fn strs(&mut self) -> Result<Vec<String>, String> {
        // Each string takes at least its 8-byte length.
        let n = self.len(8)?;
        (0..n).map(|_| self.str()).collect()
    }

    /// Refuses bytes left over (a reply longer than its call's result).
    pub fn end(&self) -> Result<(), String> {
        if self.at == self.bytes.len() { Ok(()) } else { Err(format!("malformed message: {} bytes left over", self.bytes.len() - self.at)) }
    }
}

/// The `&'static str` op names [`HostError`] carries, for errors decoded from the wire.
const OPS: [&str; 10] = ["create", "destroy", "sample", "log_likelihood", "fit", "metrics", "add_text", "get_params", "set_params", "call"];

fn static_op(op: &str) -> &'static str {
    OPS.iter().find(|o| **o == op).copied().unwrap_or("call")
}

/// Encodes a [`HostError`] (the host process's refusal) so the parent reports it word for word.
pub fn encode_error(e: &HostError) -> Vec<u8> {
    let mut w = Encoder::default();
    match e {
        HostError::Load { path, message } => w.u32(1).str(path).str(message),
        HostError::MissingEntry { path, message } => w.u32(2).str(path).str(message),
        HostError::AbiMismatch { origin, found, expected } => w.u32(3).str(origin).u32(*found).u32(*expected),
        HostError::InvalidTable { origin, reason } => w.u32(4).str(origin).str(reason),
        HostError::UnknownModel { plugin, model, available } => w.u32(5).str(plugin).str(model).strs(available),
        HostError::Usage { plugin, model, op, message } => w.u32(6).str(plugin).str(model).str(op).str(message),
        HostError::Call { plugin, model, op, status, message } => w.u32(7).str(plugin).str(model).str(op).u32(*status as u32).str(message),
        HostError::Contract { plugin, model, op, message } => w.u32(8).str(plugin).str(model).str(op).str(message),
        HostError::Crashed { plugin, model, op, reason } => w.u32(9).str(plugin).str(model).str(op).str(reason),
    };
    w.0
}

/// Reads what [`encode_error`] wrote.
pub fn decode_error(bytes: &[u8]) -> Result<HostError, String> {
    let mut r = Decoder::new(bytes);
    let e = match r.u32()? {
        1 => HostError::Load { path: r.str()?, message: r.str()? },
        2 => HostError::MissingEntry { path: r.str()?, message: r.str()? },
        3 => HostError::AbiMismatch { origin: r.str()?, found: r.u32()?, expected: r.u32()? },
        4 => HostError::InvalidTable { origin: r.str()?, reason: r.str()? },
        5 => HostError::UnknownModel { plugin: r.str()?, model: r.str()?, available: r.strs()? },
        6 => HostError::Usage { plugin: r.str()?, model: r.str()?, op: static_op(&r.str()?), message: r.str()? },
        7 => HostError::Call { plugin: r.str()?, model: r.str()?, op: static_op(&r.str()?), status: r.u32()? as i32, message: r.str()? },
        8 => HostError::Contract { plugin: r.str()?, model: r.str()?, op: static_op(&r.str()?), message: r.str()? },
        9 => HostError::Crashed { plugin: r.str()?, model: r.str()?, op: static_op(&r.str()?), reason: r.str()? },
        other => return Err(format!("malformed message: unknown error kind {other}")),
    };
    r.end()?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_values_round_trip_and_lies_about_lengths_are_refused() {
        let errors = [
            HostError::Call { plugin: "p".into(), model: "m".into(), op: "fit", status: 2, message: "boom".into() },
            HostError::UnknownModel { plugin: "p".into(), model: "x".into(), available: vec!["a".into(), "b".into()] },
            HostError::AbiMismatch { origin: "/lib.so".into(), found: 999, expected: 1 },
        ];
        for e in errors {
            assert_eq!(decode_error(&encode_error(&e)).unwrap(), e);
        }
        let mut w = Encoder::default();
        w.f64s(&[1.5, f64::NEG_INFINITY]).u64s(&[7]).str("é");
        let mut r = Decoder::new(&w.0);
        assert_eq!(r.f64s().unwrap(), vec![1.5, f64::NEG_INFINITY]);
        assert_eq!(r.u64s().unwrap(), vec![7]);
        assert_eq!(r.str().unwrap(), "é");
        r.end().unwrap();
        // A length of 2^62 values with 8 bytes behind it is refused, never allocated.
        let mut lie = Encoder::default();
        lie.u64(1 << 62).u64(0);
        assert!(Decoder::new(&lie.0).f64s().unwrap_err().contains("announced"));
        assert!(Decoder::new(&lie.0).strs().unwrap_err().contains("announced"));
        let h = Header { tag: REPLY_OK, pid: 42, seq: u64::MAX, len: 3 };
        assert_eq!(Header::decode(&h.encode()), h);
    }
}
