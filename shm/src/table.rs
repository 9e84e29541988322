//! [`HashTable`]: the shared hash table with one lock per bucket that tm's
//! transactions and usrloc's AORs are built on.

use std::fmt;

use crate::lock::{Mutex, MutexGuard};
use crate::safe::ShmSafe;
use crate::slice::ShmSlice;
use crate::vec::ShmVec;
use crate::ShmError;

/// The hash SER-style tables use: CRC-32 over the concatenated parts (e.g.
/// Call-ID and CSeq number for tm, the AOR for usrloc).
pub fn hash(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// A fixed number of buckets in shm, each a list of entries behind its own
/// lock, so processes working on different buckets never contend.
///
/// The table only does the striping; what an entry is and how it is matched
/// is the caller's business: lock the bucket of a hash, then search, insert
/// or remove in its [`ShmVec`].
pub struct HashTable<V: ShmSafe> {
    buckets: ShmSlice<Mutex<ShmVec<V>>>,
}

// SAFETY: a ShmSlice of shm mutexes over shm vectors.
unsafe impl<V: ShmSafe> ShmSafe for HashTable<V> {}

impl<V: ShmSafe> HashTable<V> {
    /// A table of `buckets` empty buckets (at least 1).
    pub fn new(buckets: usize) -> Result<Self, ShmError> {
        if buckets == 0 {
            return Err(ShmError::InvalidSize { requested: 0 });
        }
        Ok(HashTable {
            buckets: ShmSlice::from_fn(buckets, |_| Mutex::new(ShmVec::new()))?,
        })
    }

    /// The index of the bucket for `hash`.
    #[inline]
    pub fn index(&self, hash: u32) -> usize {
        hash as usize % self.buckets.len()
    }

    /// Locks and returns the bucket for `hash`.
    #[inline]
    pub fn bucket(&self, hash: u32) -> MutexGuard<'_, ShmVec<V>> {
        self.buckets[self.index(hash)].lock()
    }

    /// The bucket at `index` (unlocked), e.g. for a timer walking the whole
    /// table; `None` past the end.
    pub fn bucket_at(&self, index: usize) -> Option<&Mutex<ShmVec<V>>> {
        self.buckets.get(index)
    }

    /// Every bucket, unlocked, in index order (for dumps and expiry walks:
    /// lock one at a time).
    pub fn buckets(&self) -> std::slice::Iter<'_, Mutex<ShmVec<V>>> {
        self.buckets.iter()
    }

    /// The number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Always false: a table has at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Counts the entries, locking each bucket in turn (not atomic as a
    /// whole).
    pub fn count(&self) -> usize {
        self.buckets.iter().map(|b| b.lock().len()).sum()
    }
}

impl<V: ShmSafe> fmt::Debug for HashTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashTable")
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}
