//! Futex locks that work between processes: [`Lock`], [`Mutex`] and
//! [`LockSet`] (replaces Kamailio's `futexlock.h`, `lock_ops.h` and the lock
//! sets of `locking.h`).

use std::cell::UnsafeCell;
use std::fmt;
use std::hint::spin_loop;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::safe::ShmSafe;
use crate::slice::ShmSlice;
use crate::sys::{current_pid, futex_wait_for, futex_wake, process_gone};
use crate::ShmError;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// How many times a contended `lock` re-reads the word before sleeping
/// (SER's `ADAPTIVE_WAIT`): a lock is normally held for a few hundred
/// nanoseconds, far less than a futex sleep/wake round trip.
const SPIN_LIMIT: u32 = 128;

/// How long a waiter sleeps on the futex before looking at the holder again.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// How long a waiter waits before it asks whether the holder still lives:
/// far longer than any critical section, far shorter than a SIP timer.
pub const TAKEOVER_AFTER: Duration = Duration::from_millis(100);

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
///
/// # A holder that dies
/// A waiter that has waited [`TAKEOVER_AFTER`] checks whether the holder is
/// still alive (`kill(pid, 0)`, or a zombie in /proc) and, if not, takes the
/// lock over; the supervisor does the same when it reaps the dead child
/// ([`crate::release_locks_of`]). One compare-and-swap on the owner field
/// decides who recovers it, so a lock is never released twice.
///
/// The *dirty mark* says whether the dead holder was in the middle of a
/// change: a holder sets it when it starts changing the data (a
/// [`MutexGuard`]'s `deref_mut` does so on its own), a normal unlock clears
/// it, a death leaves it. The next holder sees it through
/// [`LockGuard::inherited_dirty`] and checks the data before trusting it
/// ([`crate::HashTable`] does that for its buckets, the allocator for its
/// heap).
#[repr(C)]
pub struct Lock {
    word: AtomicU32,
    owner: AtomicI32,
    dirty: AtomicU32,
}

impl Lock {
    /// A free lock.
    pub const fn new() -> Self {
        Lock {
            word: AtomicU32::new(FREE),
            owner: AtomicI32::new(0),
            dirty: AtomicU32::new(0),
        }
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            inherited: self.dirty.load(Ordering::Acquire) != 0,
            _not_send: PhantomData,
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
        self.guard()
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
        let start = Instant::now();
        while self.word.swap(CONTENDED, Ordering::Acquire) != FREE {
            futex_wait_for(&self.word, CONTENDED, WAIT_SLICE);
            if start.elapsed() >= TAKEOVER_AFTER && self.take_over_from_dead() {
                return;
            }
        }
    }

    /// Takes the lock from a holder that no longer exists. The word stays
    /// held throughout (the dead cannot release it); winning the owner
    /// field's compare-and-swap makes it ours.
    #[cold]
    fn take_over_from_dead(&self) -> bool {
        let dead = self.owner.load(Ordering::Acquire);
        let me = current_pid();
        if dead <= 0 || dead == me || !process_gone(dead) {
            return false;
        }
        if self
            .owner
            .compare_exchange(dead, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Released meanwhile (by the supervisor) or taken by another waiter.
            return false;
        }
        // Others may sleep on it: our unlock must wake one.
        self.word.store(CONTENDED, Ordering::Release);
        log::error!(
            "process {me} took over a shm lock held by dead process {dead}{}",
            if self.dirty.load(Ordering::Acquire) != 0 {
                " in the middle of a change: checking the data it protects"
            } else {
                " (no change in progress)"
            }
        );
        true
    }

    /// Releases the lock if the dead process `pid` holds it (the
    /// supervisor's side of recovery). The dirty mark stays for the next
    /// holder to see. Whether it released it.
    pub(crate) fn release_dead(&self, pid: i32) -> bool {
        if pid <= 0
            || self.word.load(Ordering::Acquire) == FREE
            || self
                .owner
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.release_word();
        true
    }

    /// Frees the word (waking a sleeper if any), leaving the dirty mark.
    fn release_word(&self) {
        if self.word.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake(&self.word, 1);
        }
    }

    /// Whether the data this lock protects was left mid-change by a holder
    /// that died (a snapshot; the holder sees it on its guard).
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed) != 0
    }

    /// Acquires the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.word
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.owner.store(current_pid(), Ordering::Relaxed);
        Some(self.guard())
    }

    #[inline]
    fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.dirty.store(0, Ordering::Relaxed);
        self.release_word();
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
    /// the protected data or release the lock again). The dirty mark stays,
    /// so the next holder still learns of a half-done change.
    pub unsafe fn force_unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.release_word();
    }
}

// SAFETY: three atomics, no pointers, no Drop.
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
    inherited: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether the previous holder died while changing the protected data:
    /// check (and repair) it before trusting it.
    #[inline]
    pub fn inherited_dirty(&self) -> bool {
        self.inherited
    }

    /// Says a change of the protected data begins: if this process dies
    /// before unlocking, the next holder learns of it.
    #[inline]
    pub fn mark_dirty(&self) {
        self.lock.dirty.store(1, Ordering::Relaxed);
    }

    /// Unlocks but keeps the dirty mark: for a holder that found the data
    /// broken beyond repair and is about to give up (panic).
    pub fn abandon(self) {
        self.lock.owner.store(0, Ordering::Relaxed);
        self.lock.release_word();
        std::mem::forget(self);
    }
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

impl<T: ShmSafe> MutexGuard<'_, T> {
    /// See [`LockGuard::inherited_dirty`].
    #[inline]
    pub fn inherited_dirty(&self) -> bool {
        self._guard.inherited_dirty()
    }
}

impl<T: ShmSafe> DerefMut for MutexGuard<'_, T> {
    /// Marks the lock dirty (see [`Lock`]): a mutable borrow is where a
    /// change may begin.
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self._guard.mark_dirty();
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
    fn a_waiter_takes_a_dead_holders_lock_within_the_bound() {
        crate::tests::setup();
        let l: &'static Lock = crate::ShmBox::leak(crate::ShmBox::new(Lock::new()).unwrap());
        let mut fds = [0; 2];
        // SAFETY: a plain pipe for the child to say it holds the lock.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (rd, wr) = (fds[0], fds[1]);
        // SAFETY: the child only takes the lock, writes one byte and waits
        // to be killed; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let g = l.lock();
            g.mark_dirty();
            std::mem::forget(g);
            // SAFETY: one byte to our pipe, then sleep until killed.
            unsafe {
                libc::write(wr, b"x".as_ptr().cast(), 1);
                libc::sleep(30);
                libc::_exit(1);
            }
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte from our pipe.
        assert_eq!(
            unsafe { libc::read(rd, (&mut byte as *mut u8).cast(), 1) },
            1
        );
        assert_eq!(l.owner(), Some(pid));
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Not reaped: the holder is a zombie while we wait.
        let t0 = std::time::Instant::now();
        let g = l.lock();
        let waited = t0.elapsed();
        assert!(waited >= TAKEOVER_AFTER / 2, "{waited:?}");
        assert!(waited < TAKEOVER_AFTER * 5, "{waited:?}");
        assert!(g.inherited_dirty());
        assert_eq!(l.owner(), Some(current_pid()));
        drop(g);
        assert!(!l.is_locked() && !l.is_dirty());
        let mut status = 0;
        // SAFETY: reaps our child and closes our pipe.
        unsafe {
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::close(rd);
            libc::close(wr);
        }
        // The supervisor, late, finds nothing to release.
        assert!(!l.release_dead(pid));
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
