//! Little-endian, fixed-width primitives shared by every encoding, and a reader that bounds every
//! length before it allocates.

use crate::{FormatError, Result};

/// Appends encoded fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that appends to `buf`.
    pub fn with_buffer(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes with no length prefix.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Bytes with a `u16` length prefix. Callers guarantee `v.len() <= u16::MAX`.
    pub fn bytes16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).expect("caller bounds short strings to u16::MAX");
        self.u16(len);
        self.raw(v);
    }
    /// Bytes with a `u32` length prefix. Callers guarantee `v.len() <= u32::MAX`.
    pub fn bytes32(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("caller bounds long strings to u32::MAX");
        self.u32(len);
        self.raw(v);
    }
}

/// Reads fields from a byte slice; every read is bounds-checked and names what it was reading.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, naming `what` in its errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(FormatError::Truncated { what: self.what, need: n as u64, got: self.remaining() as u64 });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// A 32-byte id.
    pub fn id(&mut self) -> Result<[u8; 32]> {
        self.array()
    }
    /// Bytes with a `u16` length prefix.
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    /// Bytes with a `u32` length prefix, refused above `max`.
    pub fn bytes32(&mut self, max: u32) -> Result<&'a [u8]> {
        let n = self.u32()?;
        if n > max {
            return Err(FormatError::TooLarge { what: self.what, len: u64::from(n), max: u64::from(max) });
        }
        self.take(n as usize)
    }
    /// A UTF-8 string with a `u16` length prefix.
    pub fn string16(&mut self) -> Result<String> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| FormatError::Invalid { what: self.what, reason: "text field is not UTF-8" })
    }
    /// A count of items, each at least `min_item_len` bytes long: refused when the remaining input
    /// cannot possibly hold that many, so a hostile count never drives an allocation.
    pub fn count(&mut self, min_item_len: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        let possible = self.remaining() / min_item_len.max(1);
        if n > possible {
            return Err(FormatError::TooLarge { what: self.what, len: n as u64, max: possible as u64 });
        }
        Ok(n)
    }
    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(FormatError::TrailingBytes { what: self.what, extra: self.remaining() as u64 });
        }
        Ok(())
    }
}

/// Longest text field (host, user, tag, user or group name, program version).
pub const MAX_SHORT: usize = u16::MAX as usize;

/// Truncates a string to at most [`MAX_SHORT`] bytes on a character boundary, so encoders never fail
/// on an over-long host or tag.
pub fn clamp_short(s: &str) -> &str {
    clamp_to(s, MAX_SHORT)
}

/// Truncates a string to at most `max` bytes on a character boundary: a cut inside a multi-byte
/// character would make the field invalid UTF-8, which decoders refuse.
pub fn clamp_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
