//! ser-shm: SER's shared memory — the segment, its allocator and its locks.
//!
//! Replaces Kamailio's `mem/shm.c` (the segment), `mem/f_malloc.c` (the
//! allocator), `futexlock.h`/`lock_ops.h` (locks) and the lock sets of
//! `locking.h`.
//!
//! # The model
//!
//! The main process calls [`init`] once, **before any fork**, to map one
//! segment of `-m` megabytes ([`DEFAULT_SIZE`] 32 MiB) `MAP_SHARED |
//! MAP_ANONYMOUS`. Every child inherits the mapping at the same address, so
//! a pointer into the segment means the same thing in every process: the shm
//! containers ([`ShmBox`], [`ShmArc`], [`ShmSlice`], [`ShmVec`], [`ShmStr`],
//! [`HashTable`]) hold plain pointers and may themselves be stored in shm.
//! The mapping is never unmapped.
//!
//! The allocator (one free list per 16-byte size up to 16 KiB, then per
//! power of two; split on allocation, coalesce with both neighbours on free;
//! 16-byte alignment) keeps its metadata inside the segment under a [`Lock`],
//! so any process may allocate, free (also blocks another process
//! allocated), or read [`stats`]; [`check`] walks the heap for corruption.
//! Running out is ordinary: allocation returns [`ShmError::OutOfMemory`] and
//! the caller answers 500 or drops.
//!
//! Ownership is Rust's: a container frees its block when dropped, in
//! whichever process that happens, so exactly one owner (per [`ShmArc`]
//! handle) may drop it. A process that dies leaks what it owned, and if it
//! died inside an alloc/free it still holds the allocator lock
//! ([`allocator_lock_owner`]).

//! ```
//! use ser_shm::{hash, HashTable, ShmBox, ShmStr};
//!
//! ser_shm::init(4 << 20)?; // in main, before forking
//! let table: &'static HashTable<ShmStr> = ShmBox::leak(ShmBox::new(HashTable::new(16)?)?);
//! // ... fork; then in any process:
//! let aor = b"sip:alice@example.com";
//! table.bucket(hash(&[aor])).push(ShmStr::new(aor)?)?;
//! assert_eq!(table.count(), 1);
//! # Ok::<(), ser_shm::ShmError>(())
//! ```
//!
//! # What may live in shm
//!
//! Only [`ShmSafe`] types: plain data, atomics, locks and the shm
//! containers. Never a pointer into one process's private memory (`Box`,
//! `String`, `Vec`, references), never a `Drop` that touches per-process
//! state. Copy private data in explicitly (e.g. [`ShmStr::new`]).
//!
//! # Lock rules
//!
//! * [`Lock`] is a 3-state futex word (0 free, 1 held, 2 held with waiters)
//!   without `FUTEX_PRIVATE_FLAG`, plus the holder's pid ([`Lock::owner`]) so
//!   the supervisor can spot a lock held by a dead process.
//! * Hold locks briefly: never while running script code or doing I/O that
//!   can block. Locks are not reentrant.
//! * Hash tables lock per bucket ([`HashTable`], [`LockSet`]); when two locks
//!   are needed, take them in a fixed order (e.g. ascending bucket index).
//! * The allocator's lock is taken inside every alloc/free: allocating while
//!   holding a table lock is fine, the reverse never happens.
//! * Forks must go through libc's `fork` (as `nix::unistd::fork` does), so
//!   the cached owner pid is refreshed in the child.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod arc;
mod boxed;
mod heap;
mod lock;
mod ratelimit;
mod recovery;
mod safe;
mod segment;
mod slice;
mod sys;
mod table;
mod vec;

use std::mem::{align_of, size_of};
use std::ptr::NonNull;

pub use arc::ShmArc;
pub use boxed::ShmBox;
pub use lock::{Lock, LockGuard, LockSet, Mutex, MutexGuard, TAKEOVER_AFTER};
pub use ratelimit::{log_oom, LogLimit, OOM_LOG_EVERY_SECS};
pub use recovery::{register_locks, register_table, release_locks_of, Released};
pub use safe::ShmSafe;
pub use segment::{contains, init, init_once, is_initialized};
pub use slice::{ShmSlice, ShmStr};
pub use sys::current_pid;
pub use table::{hash, Bucket, EntryCheck, HashTable};
pub use vec::ShmVec;

/// The segment size when `-m` is not given: 32 MiB, as in SER.
pub const DEFAULT_SIZE: usize = 32 << 20;

/// Why a shared-memory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The segment has no free block of the requested size.
    #[error("out of shared memory (requested {requested} bytes)")]
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
    },
    /// [`init`] has not been called.
    #[error("shared memory not initialised")]
    NotInitialized,
    /// [`init`] was called twice.
    #[error("shared memory already initialised")]
    AlreadyInitialized,
    /// A size that cannot work: a segment too small to hold the allocator's
    /// metadata or too large, or an empty lock set or table.
    #[error("invalid shared memory size {requested}")]
    InvalidSize {
        /// The size asked for.
        requested: usize,
    },
    /// `mmap` refused the segment.
    #[error("cannot map shared memory: {0}")]
    Map(#[source] std::io::Error),
}

/// Counters of the segment's allocator (`core.shmmem`).
///
/// `free + real_used == total`; `used` counts payload bytes handed out,
/// `real_used` adds every block header and the allocator's own metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShmStats {
    /// Size of the segment.
    pub total: usize,
    /// Bytes available in free blocks.
    pub free: usize,
    /// Payload bytes of allocated blocks.
    pub used: usize,
    /// `total - free`: used plus all overhead.
    pub real_used: usize,
    /// Highest `real_used` seen.
    pub max_used: usize,
    /// Number of free blocks.
    pub fragments: usize,
    /// Payload size of the largest free block (the largest allocation that
    /// can succeed).
    pub largest_free: usize,
}

/// The allocator's counters; all zero before [`init`].
pub fn stats() -> ShmStats {
    segment::global().map(|h| h.stats()).unwrap_or_default()
}

/// Walks the whole heap and its free lists and reports the first
/// inconsistency (a corrupt header, a lost or doubly listed free block,
/// counters that do not add up). Holds the allocator lock meanwhile.
pub fn check() -> Result<(), String> {
    segment::global()
        .map_err(|e| e.to_string())
        .and_then(|h| h.check())
}

/// The pid holding the allocator's lock, if any: lets a supervisor tell
/// that a process died in the middle of an allocation (then every later
/// alloc/free would block).
pub fn allocator_lock_owner() -> Option<i32> {
    segment::global().ok()?.lock_owner()
}

/// Whether `[p, p + bytes)` lies inside a live (allocated) shm block:
/// validates a pointer left by a process that died mid-change.
pub fn is_live(p: *const u8, bytes: usize) -> bool {
    segment::global().is_ok_and(|h| h.is_live(p, bytes))
}

/// Allocates `size` raw bytes, 16-byte aligned. Prefer the typed containers.
pub fn alloc(size: usize) -> Result<NonNull<u8>, ShmError> {
    segment::global()?.alloc(size)
}

/// Frees a block from [`alloc`].
///
/// # Panics
/// If the block header shows `ptr` is not a live allocation (double free):
/// going on would corrupt the segment for every process.
///
/// # Safety
/// `ptr` came from [`alloc`] (in any process sharing the segment), is not
/// freed twice, and is not used afterwards.
pub unsafe fn free(ptr: NonNull<u8>) {
    if let Ok(h) = segment::global() {
        // SAFETY: forwarded from the caller.
        unsafe { h.free(ptr) };
    }
}

/// The usable size of a block from [`alloc`] (at least what was asked).
///
/// # Safety
/// `ptr` came from [`alloc`] and is still allocated.
pub unsafe fn usable_size(ptr: NonNull<u8>) -> usize {
    match segment::global() {
        // SAFETY: forwarded from the caller.
        Ok(h) => unsafe { h.usable_size(ptr) },
        Err(_) => 0,
    }
}

/// Allocates room for `n` values of `T` (no allocation for zero bytes).
pub(crate) fn alloc_array<T>(n: usize) -> Result<NonNull<T>, ShmError> {
    const {
        assert!(
            align_of::<T>() <= heap::ALIGN,
            "shm types must not need more than 16-byte alignment"
        )
    };
    if size_of::<T>() == 0 || n == 0 {
        return Ok(NonNull::dangling());
    }
    let bytes = n.checked_mul(size_of::<T>()).ok_or(ShmError::OutOfMemory {
        requested: usize::MAX,
    })?;
    Ok(alloc(bytes)?.cast())
}

/// Frees a block from [`alloc_array`]`(n)`.
///
/// # Safety
/// `p` came from `alloc_array::<T>(n)` with the same `n` and is not used
/// afterwards; its values are already dropped or moved out.
pub(crate) unsafe fn free_array<T>(p: NonNull<T>, n: usize) {
    if size_of::<T>() != 0 && n != 0 {
        // SAFETY: a real block from `alloc`, per the contract.
        unsafe { free(p.cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The unit tests share one global segment (tests run on threads, so
    /// they never assert exact global counters).
    pub(crate) fn setup() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| init(DEFAULT_SIZE).unwrap());
    }

    #[test]
    fn init_twice_fails() {
        setup();
        assert!(is_initialized());
        assert!(matches!(init(1 << 20), Err(ShmError::AlreadyInitialized)));
        assert!(init_once(1 << 20).is_ok());
        assert!(stats().total >= 32 << 20);
        check().unwrap();
        let b = ShmBox::new(1u8).unwrap();
        assert!(contains(ShmBox::as_ptr(&b)));
        assert!(!contains(&0u8));
        assert_eq!(allocator_lock_owner(), None);
    }

    #[test]
    fn shm_box() {
        setup();
        let mut b = ShmBox::new([7u64; 10]).unwrap();
        assert_eq!(ShmBox::as_ptr(&b) as usize % 16, 0);
        b[3] = 9;
        assert_eq!(b[3] + b[0], 16);
        let raw = ShmBox::into_raw(b);
        // SAFETY: from into_raw just above, owned by nobody else.
        let b = unsafe { ShmBox::from_raw(raw) };
        assert_eq!(b[3], 9);
        let leaked: &'static AtomicU32 = ShmBox::leak(ShmBox::new(AtomicU32::new(1)).unwrap());
        leaked.fetch_add(1, Ordering::Relaxed);
        assert_eq!(leaked.load(Ordering::Relaxed), 2);
        let _zst = ShmBox::new(()).unwrap();
    }

    #[test]
    fn shm_box_drops_contents() {
        setup();
        let inner = ShmBox::new(ShmVec::<u32>::with_capacity(100).unwrap()).unwrap();
        drop(inner);
        let nested = ShmBox::new(Mutex::new(ShmStr::new(b"x").unwrap())).unwrap();
        assert_eq!(*nested.lock(), "x");
    }

    #[test]
    fn shm_arc() {
        setup();
        let a = ShmArc::new(ShmStr::new(b"branch").unwrap()).unwrap();
        let b = a.clone();
        assert_eq!(ShmArc::strong_count(&a), 2);
        assert!(ShmArc::ptr_eq(&a, &b));
        drop(a);
        assert_eq!(ShmArc::strong_count(&b), 1);
        let raw = ShmArc::into_raw(b);
        assert!(contains(raw.as_ptr()));
        // SAFETY: from into_raw just above, taken back once.
        let c = unsafe { ShmArc::from_raw(raw) };
        assert_eq!(*c, "branch");
        let t: HashTable<ShmArc<AtomicU32>> = HashTable::new(4).unwrap();
        let x = ShmArc::new(AtomicU32::new(5)).unwrap();
        t.bucket(1).push(x.clone()).unwrap();
        t.bucket(1)[0].fetch_add(1, Ordering::Relaxed);
        assert_eq!(x.load(Ordering::Relaxed), 6);
        drop(t);
        assert_eq!(ShmArc::strong_count(&x), 1);
    }

    #[test]
    fn shm_str() {
        setup();
        let s = ShmStr::new(b"sip:alice@example.com").unwrap();
        assert_eq!(s.as_bytes(), b"sip:alice@example.com");
        assert_eq!(s.as_str().unwrap(), "sip:alice@example.com");
        assert_eq!(s.len(), 21);
        assert_eq!(s, "sip:alice@example.com");
        assert_eq!(s.try_clone().unwrap(), s);
        assert_eq!(format!("{s}"), "sip:alice@example.com");
        let bad = ShmStr::new(&[0xff, b'a']).unwrap();
        assert!(bad.as_str().is_err());
        assert_eq!(format!("{bad:?}"), "\"\u{fffd}a\"");
        let e = ShmStr::new(b"").unwrap();
        assert!(e.is_empty());
        assert_eq!(ShmStr::empty(), e);
        let t: ShmStr = "abc".try_into().unwrap();
        assert_eq!(t, *b"abc".as_slice());
    }

    #[test]
    fn shm_slice() {
        setup();
        let s = ShmSlice::from_fn(100, |i| i as u32 * 2).unwrap();
        assert_eq!(s.len(), 100);
        assert_eq!(s[99], 198);
        let c = ShmSlice::copy_from(&[1u8, 2, 3]).unwrap();
        assert_eq!(&*c, &[1, 2, 3]);
        let l: &'static [u32] = ShmSlice::leak(s);
        assert_eq!(l.iter().sum::<u32>(), 9900);
        assert!(ShmSlice::<u64>::from_fn(0, |_| 0).unwrap().is_empty());
        assert!(matches!(
            ShmSlice::<u64>::from_fn(usize::MAX / 4, |_| 0),
            Err(ShmError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn shm_slice_panicking_init_frees() {
        setup();
        let r = std::panic::catch_unwind(|| {
            ShmSlice::from_fn(10, |i| {
                assert!(i < 5, "boom");
                ShmStr::new(b"x").unwrap()
            })
        });
        assert!(r.is_err());
        check().unwrap();
    }

    #[test]
    fn shm_vec() {
        setup();
        let mut v = ShmVec::new();
        assert!(v.is_empty());
        for i in 0..1000u32 {
            v.push(i).unwrap();
        }
        assert_eq!(v.len(), 1000);
        assert!(v.capacity() >= 1000);
        assert_eq!(v.iter().copied().sum::<u32>(), 999 * 500);
        assert_eq!(v.remove(0), 0);
        assert_eq!(v[0], 1);
        assert_eq!(v.swap_remove(0), 1);
        assert_eq!(v[0], 999);
        assert_eq!(v.len(), 998);
        v.insert(0, 5000).unwrap();
        assert_eq!(v[0], 5000);
        assert_eq!(v.pop(), Some(998));
        v.retain(|&x| x % 2 == 0);
        assert!(v.iter().all(|x| x % 2 == 0));
        v.truncate(3);
        assert_eq!(v.len(), 3);
        v.clear();
        assert!(v.is_empty());
        assert_eq!(v.pop(), None);
        let mut strs = ShmVec::new();
        for i in 0..50 {
            strs.push(ShmStr::new(format!("contact-{i}").as_bytes()).unwrap())
                .unwrap();
        }
        strs.retain(|s| s.as_bytes().ends_with(b"7"));
        assert_eq!(strs.len(), 5);
        let mut zst = ShmVec::new();
        for _ in 0..10 {
            zst.push(()).unwrap();
        }
        assert_eq!(zst.len(), 10);
    }

    #[test]
    fn shm_vec_oom_leaves_it_intact() {
        setup();
        let mut v: ShmVec<[u8; 1 << 20]> = ShmVec::new();
        assert!(matches!(
            v.reserve(1 << 30),
            Err(ShmError::OutOfMemory { .. })
        ));
        assert!(v.is_empty());
    }

    #[test]
    fn hash_table() {
        setup();
        let t: HashTable<(u32, ShmStr)> = HashTable::new(16).unwrap();
        assert_eq!(t.len(), 16);
        for i in 0..100u32 {
            let key = format!("call-{i}");
            let h = hash(&[key.as_bytes(), b"1 INVITE"]);
            t.bucket(h)
                .push((i, ShmStr::new(key.as_bytes()).unwrap()))
                .unwrap();
        }
        assert_eq!(t.count(), 100);
        let h = hash(&[b"call-42", b"1 INVITE"]);
        {
            let mut b = t.bucket(h);
            let pos = b.iter().position(|(_, k)| k == "call-42").unwrap();
            assert_eq!(b.swap_remove(pos).0, 42);
        }
        assert_eq!(t.count(), 99);
        assert!(t.bucket(h).iter().all(|(_, k)| k != "call-42"));
        assert_eq!(t.index(h), h as usize % 16);
        assert!(t.bucket_at(16).is_none());
        assert!(t.buckets().all(|b| !b.raw_lock().is_locked()));
        assert_eq!(hash(&[b"ab", b"c"]), hash(&[b"abc"]));
        assert!(HashTable::<u8>::new(0).is_err());
    }

    #[test]
    fn lock_set() {
        setup();
        let s = LockSet::new(8).unwrap();
        assert_eq!(s.len(), 8);
        let g = s.get(3).lock();
        assert!(s.get(11).is_locked());
        assert!(!s.get(4).is_locked());
        drop(g);
        assert!(s.iter().all(|l| l.owner().is_none()));
        assert!(LockSet::new(0).is_err());
    }
}
