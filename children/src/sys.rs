//! Thin OS wrappers: the only place this crate forks or maps memory.

use std::io;
use std::ptr::NonNull;

use nix::unistd::{ForkResult, Pid};

use crate::Error;

/// Number of threads of this process, from `/proc/self/task`.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Fails unless this process has exactly one thread (the fork precondition).
pub fn ensure_single_threaded() -> Result<(), Error> {
    let threads = thread_count().map_err(|e| Error::io("read /proc/self/task", e))?;
    if threads == 1 {
        Ok(())
    } else {
        Err(Error::MultiThreaded { threads })
    }
}

/// What a fork returned, seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Forks after checking the process is single-threaded, so the child may do
/// anything (allocate, log) afterwards.
pub fn fork_checked() -> Result<Forked, Error> {
    ensure_single_threaded()?;
    // SAFETY: we just verified that this process has exactly one thread, so
    // no lock (allocator, stdio, logger) can be held by another thread at
    // the time of the fork; the child is a complete copy of a consistent
    // single-threaded process.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(Error::io("fork", io::Error::from(e))),
    }
}

/// An anonymous `MAP_SHARED` mapping: created before fork, it is at the same
/// address in every child.
#[derive(Debug)]
pub struct SharedRegion {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedRegion {
    /// Maps `len` zeroed bytes (at least one page).
    pub fn new(len: usize) -> io::Result<SharedRegion> {
        let len = len.max(1);
        // SAFETY: an anonymous mapping with a null hint touches no existing
        // memory; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
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
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(SharedRegion { ptr, len })
    }

    /// Start of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the mapping is empty (never: at least one byte is mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the mapping for the life of the process.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and the region is
        // only dropped when nothing borrows it (leaked regions never drop).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Ignores a signal (SIG_IGN), e.g. SIGPIPE and SIGHUP before forking.
pub fn ignore_signal(sig: nix::sys::signal::Signal) -> Result<(), Error> {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: SIG_IGN installs no Rust handler, so no signal-safety rules
    // apply to code of ours.
    unsafe { signal(sig, SigHandler::SigIgn) }
        .map(|_| ())
        .map_err(|e| Error::io(format!("ignore {sig}"), e.into()))
}

/// Restores the default action of a signal (used in children for signals the
/// main process handles).
pub fn default_signal(sig: nix::sys::signal::Signal) -> Result<(), Error> {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: SIG_DFL installs no Rust handler.
    unsafe { signal(sig, SigHandler::SigDfl) }
        .map(|_| ())
        .map_err(|e| Error::io(format!("reset {sig}"), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_region_is_writable() {
        let r = SharedRegion::new(100).unwrap();
        // SAFETY: r maps at least 100 bytes.
        unsafe { r.as_ptr().add(99).write(7) };
        // SAFETY: same byte, just written.
        assert_eq!(unsafe { r.as_ptr().add(99).read() }, 7);
    }

    #[test]
    fn thread_count_sees_threads() {
        assert!(thread_count().unwrap() >= 1);
    }
}
