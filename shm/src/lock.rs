//! Futex locks that work between processes: [`Lock`], [`Mutex`] and
//! [`LockSet`] (replaces Kamailio's `futexlock.h`, `lock_ops.h` and the lock
//! sets of `locking.h`).

use std::cell::UnsafeCell;
use std::fmt;
use std::hint::spin_loop;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::safe::ShmSafe;
use crate::slice::ShmSlice;
use crate::sys::{current_pid, futex_wait, futex_wake};
use crate::ShmError;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// How many times a contended `lock` re-reads the word before sleeping
/// (SER's `ADAPTIVE_WAIT`): a lock is normally held for a few hundred
/// nanoseconds, far less than a futex sleep/wake round trip.
const SPIN_LIMIT: u32 = 128;

/// Whether more than one CPU is online (cached; CPU hot-plug is ignored).
fn multi_cpu() -> bool {
    static CPUS: AtomicU32 = AtomicU32::new(0);
    let mut n = CPUS.load(Ordering::Relaxed);
    if n == 0 {
        n = crate::sys::online_cpus();
        CPUS.store(n, Ordering::Relaxed);
    }
    n > 1
}

/// A mutual-exclusion lock usable from every process that shares the memory
/// it lives in.
///
/// The word has three states, as in Drepper's "Futexes Are Tricky" and SER's
/// `futexlock.h`: 0 free, 1 held, 2 held with (possible) sleepers. Unlocking
/// only enters the kernel when the word says someone may sleep. The holder's
/// pid is recorded beside the word so a supervisor can tell that a dead
/// process still holds it (see [`Lock::owner`]).
#[repr(C)]
pub struct Lock {
    word: AtomicU32,
    owner: AtomicI32,
}

impl Lock {
    /// A free lock.
    pub const fn new() -> Self {
        Lock {
            word: AtomicU32::new(FREE),
            owner: AtomicI32::new(0),
        }
    }

    /// Acquires the lock, spinning briefly and then sleeping in the kernel.
    ///
    /// Not reentrant: locking a lock the caller already holds deadlocks.
    #[inline]
    pub fn lock(&self) -> LockGuard<'_> {
        if self
            .word
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.owner.store(current_pid(), Ordering::Relaxed);
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    #[cold]
    fn lock_contended(&self) {
        // On one CPU the holder cannot run while we spin: sleep at once.
        let spins = if multi_cpu() { SPIN_LIMIT } else { 0 };
        for _ in 0..spins {
            match self.word.load(Ordering::Relaxed) {
                FREE if self
                    .word
                    .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok() =>
                {
                    return
                }
                // Others already sleep: queue behind them instead of
                // stealing the lock on every release.
                CONTENDED => break,
                _ => {}
            }
            spin_loop();
        }
        // Mark "someone waits" whenever we take or wait, so the holder's
        // unlock wakes the next sleeper.
        while self.word.swap(CONTENDED, Ordering::Acquire) != FREE {
            futex_wait(&self.word, CONTENDED);
        }
    }

    /// Acquires the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.word
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.owner.store(current_pid(), Ordering::Relaxed);
        Some(LockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    #[inline]
    fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        if self.word.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake(&self.word, 1);
        }
    }

    /// The pid of the process holding the lock, if it is held.
    ///
    /// `None` also for the instant between acquiring the word and recording
    /// the pid: a held lock whose owner stays `None` belongs to a process
    /// that died in that window.
    pub fn owner(&self) -> Option<i32> {
        if self.word.load(Ordering::Relaxed) == FREE {
            return None;
        }
        match self.owner.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether some process holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != FREE
    }

    /// Releases a lock held by someone else: the recovery path when the
    /// holder died (the supervisor saw [`Lock::owner`] name a dead pid).
    ///
    /// # Safety
    /// The holder must really be gone (or otherwise guaranteed never to touch
    /// the protected data or release the lock again), and the data the lock
    /// protects must be left in a state the next holder can cope with.
    pub unsafe fn force_unlock(&self) {
        self.unlock();
    }
}

// SAFETY: two atomics, no pointers, no Drop.
unsafe impl ShmSafe for Lock {}
// SAFETY: a Lock and an ShmSafe value.
unsafe impl<T: ShmSafe> ShmSafe for Mutex<T> {}
// SAFETY: a ShmSlice of Locks.
unsafe impl ShmSafe for LockSet {}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .field("owner", &self.owner())
            .finish()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
///
/// Not `Send`: the owner pid recorded in the lock is this process's.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

/// A value protected by a [`Lock`], both living in the same memory (usually
/// shm, inside a `ShmBox` or a table).
#[repr(C)]
pub struct Mutex<T: ShmSafe> {
    lock: Lock,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `lock`, as for std's Mutex; the
// value may be used from whichever thread holds the lock, so T: Send.
unsafe impl<T: ShmSafe + Send> Sync for Mutex<T> {}

impl<T: ShmSafe> Mutex<T> {
    /// A free mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Mutex {
            lock: Lock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks and returns a guard giving access to the value.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            _guard: self.lock.lock(),
            mutex: self,
        }
    }

    /// Locks only if the mutex is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        Some(MutexGuard {
            _guard: self.lock.try_lock()?,
            mutex: self,
        })
    }

    /// The underlying lock (for [`Lock::owner`] and recovery).
    pub fn raw_lock(&self) -> &Lock {
        &self.lock
    }

    /// The value, without locking: `&mut self` proves exclusive access.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ShmSafe + Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ShmSafe> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

/// Access to the value of a locked [`Mutex`]; unlocks when dropped.
#[must_use = "the mutex is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ShmSafe> {
    _guard: LockGuard<'a>,
    mutex: &'a Mutex<T>,
}

impl<T: ShmSafe> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other reference to the
        // value exists in any process until it is dropped.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ShmSafe> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A fixed number of locks in shm, for lock striping (SER's `gen_lock_set_t`):
/// item `i` of a table is protected by `get(i)`.
#[derive(Debug)]
pub struct LockSet {
    locks: ShmSlice<Lock>,
}

impl LockSet {
    /// Allocates `n` free locks in the segment. `n` must not be 0.
    pub fn new(n: usize) -> Result<Self, ShmError> {
        if n == 0 {
            return Err(ShmError::InvalidSize { requested: 0 });
        }
        Ok(LockSet {
            locks: ShmSlice::from_fn(n, |_| Lock::new())?,
        })
    }

    /// The lock for item `i` (taken modulo the set's size).
    #[inline]
    pub fn get(&self, i: usize) -> &Lock {
        &self.locks[i % self.locks.len()]
    }

    /// How many locks the set holds.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Always false: a set holds at least one lock.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// Every lock, e.g. to look for one held by a dead process.
    pub fn iter(&self) -> std::slice::Iter<'_, Lock> {
        self.locks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_unlock_owner() {
        let l = Lock::new();
        assert_eq!(l.owner(), None);
        let g = l.lock();
        assert_eq!(l.owner(), Some(std::process::id() as i32));
        assert!(l.try_lock().is_none());
        drop(g);
        assert!(!l.is_locked());
        assert!(l.try_lock().is_some());
        assert!(!l.is_locked());
    }

    #[test]
    fn threads_count_exactly() {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 80_000);
        assert!(!m.raw_lock().is_locked());
    }

    #[test]
    fn force_unlock_recovers() {
        let l = Lock::new();
        std::mem::forget(l.lock());
        assert!(l.is_locked());
        // SAFETY: the "holder" (a forgotten guard) will never touch it again.
        unsafe { l.force_unlock() };
        assert!(l.try_lock().is_some());
    }
}
