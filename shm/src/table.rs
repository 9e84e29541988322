//! [`HashTable`]: the shared hash table with one lock per bucket that tm's
//! transactions and usrloc's AORs are built on.

use std::fmt;

use crate::lock::{Lock, Mutex, MutexGuard};
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
///
/// A bucket whose previous holder died in the middle of a change is
/// repaired before anyone sees it (see [`crate::release_locks_of`]'s
/// module): the table's [`EntryCheck`] says which entries are sound.
pub struct HashTable<V: ShmSafe> {
    buckets: ShmSlice<Mutex<ShmVec<V>>>,
    check: Option<EntryCheck<V>>,
}

/// Checks one entry of a bucket left mid-change by a dead process: `None`
/// if it cannot be trusted (it is then leaked, never dropped), else the
/// address of a shm block the entry owns and no other entry does (e.g.
/// [`crate::ShmStr::addr`] of its key), so that an entry duplicated by a
/// half-done move keeps one owner. It may repair the entry's insides (e.g.
/// with [`ShmVec::retain_leaking`]).
///
/// A plain `fn`: the pointer is stored in shm and used by every process,
/// which all run the same binary at the same addresses.
pub type EntryCheck<V> = fn(&mut V) -> Option<usize>;

/// One bucket of a [`HashTable`], not locked yet.
pub struct Bucket<'a, V: ShmSafe> {
    table: &'a HashTable<V>,
    mutex: &'a Mutex<ShmVec<V>>,
}

impl<V: ShmSafe> Clone for Bucket<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V: ShmSafe> Copy for Bucket<'_, V> {}

impl<'a, V: ShmSafe> Bucket<'a, V> {
    /// Locks the bucket (repairing it first if a dead holder left it
    /// mid-change).
    pub fn lock(self) -> MutexGuard<'a, ShmVec<V>> {
        self.table.checked(self.mutex.lock())
    }

    /// Locks the bucket if it is free right now.
    pub fn try_lock(self) -> Option<MutexGuard<'a, ShmVec<V>>> {
        Some(self.table.checked(self.mutex.try_lock()?))
    }

    /// The bucket's lock (for recovery registration and tests).
    pub fn raw_lock(self) -> &'a Lock {
        self.mutex.raw_lock()
    }
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
            check: None,
        })
    }

    /// Sets how a bucket left mid-change by a dead process is checked.
    pub fn with_check(mut self, check: EntryCheck<V>) -> Self {
        self.check = Some(check);
        self
    }

    /// Returns the guard, after repairing the bucket if its previous
    /// holder died in the middle of a change.
    fn checked<'a>(&self, mut b: MutexGuard<'a, ShmVec<V>>) -> MutexGuard<'a, ShmVec<V>> {
        if b.inherited_dirty() {
            let (before, after) = repair(&mut b, self.check);
            log::error!(
                "shm table bucket left mid-change by a dead process: \
                 {after} of {before} entries kept"
            );
        }
        b
    }

    /// The index of the bucket for `hash`.
    #[inline]
    pub fn index(&self, hash: u32) -> usize {
        hash as usize % self.buckets.len()
    }

    /// Locks and returns the bucket for `hash`.
    #[inline]
    pub fn bucket(&self, hash: u32) -> MutexGuard<'_, ShmVec<V>> {
        self.checked(self.buckets[self.index(hash)].lock())
    }

    /// The bucket at `index` (unlocked), e.g. for a timer walking the whole
    /// table; `None` past the end.
    pub fn bucket_at(&self, index: usize) -> Option<Bucket<'_, V>> {
        Some(Bucket {
            table: self,
            mutex: self.buckets.get(index)?,
        })
    }

    /// Every bucket, unlocked, in index order (for dumps and expiry walks:
    /// lock one at a time).
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = Bucket<'_, V>> + '_ {
        self.buckets
            .iter()
            .map(move |mutex| Bucket { table: self, mutex })
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

/// Makes a bucket left mid-change safe to use: `(entries before, kept)`.
fn repair<V: ShmSafe>(v: &mut ShmVec<V>, check: Option<EntryCheck<V>>) -> (usize, usize) {
    if !v.is_intact() {
        // The vector's own header is torn: nothing in it can be trusted.
        std::mem::forget(std::mem::take(v));
        return (0, 0);
    }
    let before = v.len();
    if let Some(check) = check {
        let mut owners = Vec::with_capacity(before);
        let mut verdicts = Vec::with_capacity(before);
        for e in v.iter_mut() {
            let keep = match check(e) {
                Some(owner) if !owners.contains(&owner) => {
                    owners.push(owner);
                    true
                }
                _ => false,
            };
            verdicts.push(keep);
        }
        let mut i = 0;
        v.retain_leaking(|_| {
            i += 1;
            verdicts[i - 1]
        });
    }
    (before, v.len())
}

impl<V: ShmSafe> fmt::Debug for HashTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashTable")
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ShmBox, ShmStr};
    use std::time::{Duration, Instant};

    /// Forks a child that runs `f` and then dies by SIGKILL without
    /// unlocking anything; returns its pid, NOT reaped (a zombie, as a
    /// child killed under load is until main gets to it).
    fn child_dies_after(f: impl FnOnce()) -> i32 {
        // SAFETY: the child only touches shm (locks, allocator) and then
        // kills itself; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            f();
            // SAFETY: ends the child at once, holding whatever it holds.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            // SAFETY: not reached; _exit in case the signal is blocked.
            unsafe { libc::_exit(1) };
        }
        pid
    }

    fn reap(pid: i32) {
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    }

    #[test]
    fn waiter_takes_over_from_a_dead_holder_and_repairs_the_bucket() {
        crate::tests::setup();
        fn owner(e: &mut ShmStr) -> Option<usize> {
            e.is_intact().then(|| e.addr())
        }
        let t: &'static HashTable<ShmStr> =
            ShmBox::leak(ShmBox::new(HashTable::new(4).unwrap().with_check(owner)).unwrap());
        t.bucket(1).push(ShmStr::new(b"alice").unwrap()).unwrap();
        t.bucket(1).push(ShmStr::new(b"bob").unwrap()).unwrap();
        // The child dies in the middle of a move: slot 0's value also sits
        // in a new slot 2 (two owners of one block).
        let pid = child_dies_after(|| {
            let mut b = t.bucket(1);
            // SAFETY: a bitwise copy, deliberately a second owner; the
            // child dies before either is dropped.
            let dup = unsafe { std::ptr::read(&b[0]) };
            b.push(dup).unwrap();
            std::mem::forget(b);
        });
        // Wait until the child holds the lock, then lock: the waiter must
        // find the holder dead (a zombie: not reaped) and take over.
        let lock = t.bucket_at(1).unwrap().raw_lock();
        let t0 = Instant::now();
        while lock.owner() != Some(pid) {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        let b = t.bucket(1);
        let waited = t0.elapsed();
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        assert_eq!(lock.owner(), Some(crate::current_pid()));
        assert_eq!(b.len(), 2, "the duplicate is gone");
        assert_eq!(b[0], "alice");
        assert_eq!(b[1], "bob");
        drop(b);
        reap(pid);
        assert!(!lock.is_dirty());
        t.bucket(1).clear();
        crate::check().unwrap();
    }

    #[test]
    fn a_clean_dead_holder_needs_no_repair_and_a_torn_entry_is_leaked() {
        crate::tests::setup();
        fn owner(e: &mut ShmStr) -> Option<usize> {
            e.is_intact().then(|| e.addr())
        }
        let t: &'static HashTable<ShmStr> =
            ShmBox::leak(ShmBox::new(HashTable::new(2).unwrap().with_check(owner)).unwrap());
        t.bucket(0).push(ShmStr::new(b"carol").unwrap()).unwrap();
        // Dies holding the lock without changing anything.
        let pid = child_dies_after(|| std::mem::forget(t.bucket_at(0).unwrap().lock()));
        reap(pid);
        let lock = t.bucket_at(0).unwrap().raw_lock();
        assert!(lock.release_dead(pid));
        assert!(!lock.is_dirty());
        let mut b = t.bucket(0);
        assert!(!b.inherited_dirty());
        assert_eq!(b.len(), 1);
        // A torn entry (a pointer that is no live block) is dropped from
        // the bucket without being freed.
        // SAFETY: a deliberately torn bitwise copy, leaked by the repair.
        let torn: ShmStr = unsafe {
            let mut raw: [usize; 2] = std::mem::transmute_copy(&b[0]);
            raw[0] += 8;
            std::mem::transmute(raw)
        };
        b.push(torn).unwrap();
        std::mem::forget(b);
        // SAFETY: this process "dies" here as far as the lock goes.
        unsafe { lock.force_unlock() };
        let b = t.bucket(0);
        assert!(b.inherited_dirty());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0], "carol");
        drop(b);
        t.bucket(0).clear();
        crate::check().unwrap();
    }
}
