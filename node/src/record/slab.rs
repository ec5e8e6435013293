//! Encoded events.
//!
//! Each sink brings an [`EventEncoder`]; the enricher calls every encoder for
//! every event that passes, on its own thread, so sinks receive bytes ready
//! to batch. A batch's events for one sink travel as one [`EventSlab`]: a
//! single buffer plus end offsets, so a sink can send, split or resend any
//! run of events without copying them one by one.

use std::ops::Range;

use bytes::Bytes;

use crate::record::View;

/// Writes one event in a sink's format.
pub trait EventEncoder: Send + Sync + 'static {
    fn encode(&self, view: &View<'_>, out: &mut Vec<u8>);
}

/// Events being encoded.
#[derive(Debug, Default)]
pub struct EncodedEvents {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedEvents {
    #[inline]
    pub fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Room for `events` more events of `bytes` in all, reserved at once.
    pub fn reserve(&mut self, events: usize, bytes: usize) {
        self.ends.reserve(events);
        self.buf.reserve(bytes);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn freeze(self) -> EventSlab {
        EventSlab {
            bytes: Bytes::from(self.buf),
            ends: self.ends,
        }
    }
}

/// Encoded events, frozen: cheap to clone and slice.
#[derive(Debug, Clone, Default)]
pub struct EventSlab {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl EventSlab {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all events.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Event `i`.
    pub fn event(&self, i: usize) -> Bytes {
        self.bytes.slice(self.start(i)..self.ends[i])
    }

    /// Events `r`, contiguous.
    pub fn range(&self, r: Range<usize>) -> Bytes {
        if r.is_empty() {
            return Bytes::new();
        }
        self.bytes.slice(self.start(r.start)..self.ends[r.end - 1])
    }

    /// Bytes of events `r`.
    pub fn range_len(&self, r: Range<usize>) -> usize {
        if r.is_empty() {
            0
        } else {
            self.ends[r.end - 1] - self.start(r.start)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_ranges() {
        let mut e = EncodedEvents::default();
        for w in ["aa", "b", "cccc"] {
            e.push_with(|b| b.extend_from_slice(w.as_bytes()));
        }
        let s = e.freeze();
        assert_eq!(s.len(), 3);
        assert_eq!(&s.event(1)[..], b"b");
        assert_eq!(&s.range(1..3)[..], b"bcccc");
        assert_eq!(s.range_len(0..2), 3);
        assert!(s.range(2..2).is_empty());
    }
}
