//! The crate's one error type.

use std::{fmt, io};

/// What can go wrong while building or running the process model.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` says which step.
    Io {
        /// The step that failed, e.g. `bind udp:127.0.0.1:5060`.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// More than one thread exists where forking requires exactly one.
    MultiThreaded {
        /// Number of threads found in `/proc/self/task`.
        threads: usize,
    },
    /// A user or group name given to `-u`/`-g` does not exist.
    UnknownId {
        /// `user` or `group`.
        kind: &'static str,
        /// The name as given.
        name: String,
    },
    /// A protocol this build cannot listen on (tls, sctp).
    Unsupported {
        /// What is unsupported.
        what: String,
    },
    /// The process table could not be placed in shared memory.
    Shm {
        /// The allocator's message.
        msg: String,
    },
    /// A per-child init hook failed.
    ChildInit {
        /// The child's description.
        desc: String,
        /// The hook's message.
        msg: String,
    },
}

impl Error {
    /// Wraps an [`io::Error`] with the step that failed.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::MultiThreaded { threads } => {
                write!(
                    f,
                    "cannot fork: the main process has {threads} threads, expected 1"
                )
            }
            Error::UnknownId { kind, name } => write!(f, "unknown {kind} '{name}'"),
            Error::Unsupported { what } => write!(f, "{what} is not supported by this build"),
            Error::Shm { msg } => write!(f, "process table: {msg}"),
            Error::ChildInit { desc, msg } => write!(f, "init of '{desc}' failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
