//! ser-children: SER's process model.
//!
//! This crate owns everything between "the configuration is loaded" and
//! "a child process handles a message":
//!
//! * [`plan`]: the explicit fork plan computed before forking (replaces the
//!   fork sequence of `main.c:main_loop`),
//! * [`table`]: the process table in shared memory, read by `core.ps`
//!   (replaces `pt.c`/`pt.h`),
//! * [`daemon`]: `-D` levels, pid/pgid files, chroot, chdir, privilege drop
//!   (replaces `daemonize.c`),
//! * [`socket`] and [`udp`]: bound listen sockets, receive buffer probing and
//!   the UDP receive loop (replaces `udp_server.c`),
//! * [`tcp`]: tcp main and the TCP workers, with connection hand-over over a
//!   unix socketpair (the shape of `tcp_main.c`/`tcp_read.c`); sending
//!   from any process on the connection a worker holds ([`tcp_conn`],
//!   the shared [`tcp_table`]),
//! * [`timer`]: the timer process ticking registered callbacks (`timer.c`),
//! * [`supervisor`]: forking by the plan, per-child init, and the main
//!   process's signal loop (`main.c:handle_sigs`).
//!
//! The main process must stay single-threaded until the last fork:
//! [`supervisor::run`] refuses to fork otherwise.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod daemon;
mod error;
pub mod handler;
pub mod plan;
pub mod reactor;
pub mod sctp;
pub mod socket;
pub mod supervisor;
pub mod sys;
pub mod table;
pub mod tcp;
pub mod tcp_conn;
mod tcp_relay;
pub mod tcp_table;
pub mod timer;
pub mod tls;
pub mod tls_profile;
pub mod tls_relay;
pub mod udp;

pub use error::Error;
pub use handler::{ChildInit, NullInit, SipHandler, StreamReply, TimerCallback};
pub use plan::{ProcKind, ProcSpec, Rank, SpawnPlan};
pub use socket::{ListenSocket, Proto};
pub use table::{process_table, ProcInfo};
