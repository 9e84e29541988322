//! Byte ranges into the received buffer.
//!
//! Every parsed value points into the one buffer the message was received
//! in, by offset rather than by reference, so a parsed message can be
//! copied (e.g. into shared memory) as "buffer + plain integers".

/// A `start..start+len` range of the message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// The span `start..end` (`end >= start`; clamped otherwise).
    pub fn new(start: usize, end: usize) -> Span {
        let end = end.max(start);
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }

    /// The empty span at `at`.
    pub fn empty(at: usize) -> Span {
        Span {
            start: at as u32,
            len: 0,
        }
    }

    /// Offset one past the last byte.
    pub fn end(&self) -> usize {
        self.start as usize + self.len as usize
    }

    /// Offset of the first byte as `usize`.
    pub fn begin(&self) -> usize {
        self.start as usize
    }

    /// True when the span holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of `buf` this span covers; empty when out of range
    /// (spans are only ever built from the same buffer, so that never
    /// happens for spans handed out by this crate).
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.begin()..self.end()).unwrap_or(&[])
    }
}
