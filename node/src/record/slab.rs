//! Encoded events.
//!
//! Each sink brings an [`EventEncoder`]; the enricher calls every encoder for
//! every event that passes, on its own thread, so sinks receive bytes ready
//! to batch. A batch's events for one sink travel as one [`EventSlab`]: a
//! single buffer plus end offsets, so a sink can send, split or resend any
//! run of events without copying them one by one.
//!
//! Slab buffers are megabytes, allocated and freed every few milliseconds
//! on every enricher thread. Freed, the allocator hands them back to the
//! kernel and the next batch faults the pages in again, zeroed — 2–3 % of a
//! node's CPU (BENCHMARKS.md, issue 16). So a frozen slab's buffer goes back
//! to a small pool when its last reference drops (after the sink is done),
//! and the next batch writes into pages already resident. The pool keeps
//! at most [`POOL_KEEP`] buffers of at most [`POOL_MAX_CAPACITY`] each.

use std::ops::Range;

use std::sync::Mutex;

use bytes::Bytes;

use crate::record::View;

/// How many freed slab buffers are kept for reuse (about the slabs in flight
/// on a node: shards × credits, for the usual few shards per node).
pub const POOL_KEEP: usize = 8;
/// Larger buffers are freed, not kept.
pub const POOL_MAX_CAPACITY: usize = 16 << 20;

/// Freed slab buffers, kept for the next batches.
#[derive(Debug)]
struct Pool(Mutex<Vec<Vec<u8>>>);

static POOL: Pool = Pool(Mutex::new(Vec::new()));

impl Pool {
    /// An empty buffer of at least `min` bytes, reused if one is free.
    fn take(&self, min: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        match reused {
            Some(v) if v.capacity() >= min => v,
            // Too small: growing it would copy nothing useful; start afresh.
            _ => Vec::with_capacity(min),
        }
    }

    fn give(&self, mut v: Vec<u8>) {
        if v.capacity() == 0 || v.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        v.clear();
        if let Ok(mut free) = self.0.lock() {
            if free.len() < POOL_KEEP {
                free.push(v);
            }
        }
    }
}

/// A frozen slab's buffer: back to its pool when the last `Bytes` of it drops.
struct Recycled(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

/// Writes one event in a sink's format.
pub trait EventEncoder: Send + Sync + 'static {
    fn encode(&self, view: &View<'_>, out: &mut Vec<u8>);
}

/// Events being encoded.
#[derive(Debug, Default)]
pub struct EncodedEvents {
    buf: Vec<u8>,
    ends: Vec<usize>,
    pool: Option<&'static Pool>,
}

impl EncodedEvents {
    #[inline]
    pub fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Room for `events` more events of `bytes` in all, reserved at once
    /// (the first time, in a buffer from the pool).
    pub fn reserve(&mut self, events: usize, bytes: usize) {
        self.ends.reserve(events);
        if self.buf.capacity() == 0 {
            let pool = *self.pool.get_or_insert(&POOL);
            self.buf = pool.take(bytes);
        } else {
            self.buf.reserve(bytes);
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn freeze(self) -> EventSlab {
        let bytes = match self.pool {
            Some(pool) if !self.buf.is_empty() => Bytes::from_owner(Recycled(self.buf, pool)),
            _ => Bytes::from(self.buf),
        };
        EventSlab {
            bytes,
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

    #[test]
    fn a_slab_buffer_returns_to_the_pool_after_its_last_reference() {
        let pool: &'static Pool = Box::leak(Box::new(Pool(Mutex::new(Vec::new()))));
        let slab = |text: &[u8]| {
            let mut e = EncodedEvents {
                pool: Some(pool),
                ..Default::default()
            };
            e.reserve(1, 1 << 20);
            e.push_with(|b| b.extend_from_slice(text));
            e.freeze()
        };
        let s = slab(b"event");
        let run = s.range(0..1);
        let ptr = run.as_ptr();
        drop(s);
        // Still referenced: not back yet, still readable.
        assert!(pool.0.lock().unwrap().is_empty());
        assert_eq!(&run[..], b"event");
        drop(run);
        assert_eq!(pool.0.lock().unwrap().len(), 1);
        // The next batch writes into the same pages.
        let again = slab(b"next");
        assert_eq!(again.range(0..1).as_ptr(), ptr);
        assert_eq!(&again.event(0)[..], b"next");
        drop(again);
        // Bounded: never more than POOL_KEEP kept, nor huge buffers.
        for _ in 0..POOL_KEEP + 3 {
            pool.give(Vec::with_capacity(16));
        }
        pool.give(Vec::with_capacity(POOL_MAX_CAPACITY + 1));
        let free = pool.0.lock().unwrap();
        assert_eq!(free.len(), POOL_KEEP);
        assert!(free.iter().all(|v| v.capacity() <= POOL_MAX_CAPACITY));
    }
}
