//! The few system calls the crate needs: the shared anonymous mapping, the
//! futex wait/wake pair and a fork-aware cached pid.

use std::io;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

/// Maps `len` bytes `MAP_SHARED | MAP_ANONYMOUS`, zero-filled.
///
/// A shared anonymous mapping survives `fork` at the same address in the
/// child and is *shared* with it (not copy-on-write), which is the whole
/// point of the segment.
pub(crate) fn mmap_shared(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: no address hint and no file descriptor: the kernel picks a
    // fresh range, so no existing Rust object is aliased or overwritten.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// Unmaps a range obtained from [`mmap_shared`].
///
/// # Safety
/// `base`/`len` must be exactly a mapping returned by [`mmap_shared`], and
/// nothing may use memory inside it afterwards (in this process).
pub(crate) unsafe fn munmap(base: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees the range is our mapping and unused.
    // munmap of a valid mapping cannot fail, so the result is ignored.
    unsafe { libc::munmap(base.as_ptr().cast(), len) };
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// CPUs online (at least 1). No allocation, unlike
/// `std::thread::available_parallelism`, so it is fine on any lock path.
pub(crate) fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// Sleeps while `*word == expected`, at most `limit` (or until woken or
/// interrupted).
///
/// No `FUTEX_PRIVATE_FLAG`: the word lives in memory shared between
/// processes, and a private futex would key the wait queue on this process's
/// mm, so a waker in another process would never find us.
pub(crate) fn futex_wait_for(word: &AtomicU32, expected: u32, limit: Duration) {
    let ts = libc::timespec {
        tv_sec: limit.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: limit.subsec_nanos().into(),
    };
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAIT
    // only reads it; `ts` is a valid relative timeout on our stack and the
    // two trailing arguments are ignored by FUTEX_WAIT. Spurious returns
    // (EINTR, EAGAIN, ETIMEDOUT) are fine: every caller re-checks the word
    // in a loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Whether process `pid` is gone: no such process, or a zombie (dead, not
/// yet reaped). A pid reused by another process counts as alive, which only
/// delays recovery until the supervisor reaps the dead one.
pub(crate) fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only checks that `pid` exists.
    if unsafe { libc::kill(pid, 0) } == -1 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // "pid (comm) S ...": the state follows the last ')'.
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .iter()
            .rposition(|&c| c == b')')
            .and_then(|i| stat.get(i + 2))
            .is_some_and(|&state| state == b'Z' || state == b'X'),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Wakes up to `n` waiters sleeping on `word` (in any process).
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access
    // memory through the pointer beyond using it as the wait-queue key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// This process's pid, cached; 0 means "not known yet", -1 "never cache".
static PID: AtomicI32 = AtomicI32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn forget_pid_in_child() {
    // Only an atomic store: fine in the async-signal-safe window after fork.
    PID.store(0, Ordering::Relaxed);
}

/// The pid of the calling process, cheap after the first call.
///
/// glibc no longer caches `getpid`, and a lock records its owner on every
/// acquisition, so we cache it ourselves; a `pthread_atfork` child handler
/// (registered before the first value is cached) clears the cache in every
/// child forked through libc's `fork` (nix's `fork` included).
pub fn current_pid() -> i32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid > 0 {
        return pid;
    }
    ATFORK.call_once(|| {
        // SAFETY: registers a child handler that only does an atomic store;
        // no prepare/parent handlers. Failure (ENOMEM) only means the cache
        // is not cleared after fork, so we fall back to never caching.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
        if rc != 0 {
            PID.store(-1, Ordering::Relaxed);
        }
    });
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    if PID.load(Ordering::Relaxed) != -1 {
        PID.store(pid, Ordering::Relaxed);
    }
    pid
}
