//! Thin OS wrappers: the only place this crate forks or maps memory.

use std::io;

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
    fn thread_count_sees_threads() {
        assert!(thread_count().unwrap() >= 1);
    }
}
