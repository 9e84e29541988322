//! The seams where the routing engine and the modules plug into the
//! processes: per-child init, the SIP message handler, timer callbacks.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::plan::Rank;
use crate::socket::ListenSocket;

/// Handles the SIP messages a worker receives. One instance per process,
/// made after fork by [`ChildInit::handler`], so it may own per-process
/// state (DB connections, caches) freely.
pub trait SipHandler {
    /// A UDP datagram arrived on `sock` from `src`. `buf` may be any bytes.
    fn on_datagram(&mut self, buf: &[u8], src: SocketAddr, sock: &ListenSocket);

    /// One framed SIP message arrived on a TCP connection; replies on the
    /// same connection go through `reply`.
    fn on_stream_message(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        sock: &ListenSocket,
        reply: &mut dyn StreamReply,
    ) {
        let _ = reply;
        log::debug!(
            "tcp message of {} bytes from {src} on {} dropped",
            msg.len(),
            sock.name()
        );
    }
}

/// Sends bytes back on the connection a stream message came from.
pub trait StreamReply {
    /// Writes all of `bytes` to the connection.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// A callback run by the timer process.
pub trait TimerCallback {
    /// How often to run; rounded up to the timer tick.
    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }
    /// Runs one tick.
    fn on_tick(&mut self, now: Instant);
}

/// What every forked process asks of the configuration: SER's per-child
/// init (`init_child(rank)`), and the objects each kind of process runs.
/// Implemented by the routing engine; [`NullInit`] stands in until then.
pub trait ChildInit {
    /// Modules' init in main (SER's `mod_init`): runs once after the shm
    /// segment is mapped and the sockets are bound, before privileges are
    /// dropped and before the first fork. Allocate shared tables here.
    fn init_main(&self, sockets: &'static [ListenSocket]) -> Result<(), String> {
        let _ = sockets;
        Ok(())
    }

    /// Modules' destroy (SER's `destroy_modules`): runs in main after every
    /// child has stopped.
    fn destroy(&self) {}

    /// Per-child init of every module (open DB connections here). Runs in
    /// each child right after fork, before it starts its loop; an error
    /// stops that child (and so the server).
    fn init(&self, rank: Rank, desc: &str) -> Result<(), String> {
        let _ = (rank, desc);
        Ok(())
    }

    /// The message handler of a SIP worker process.
    fn handler(&self, rank: Rank) -> Box<dyn SipHandler>;

    /// The callbacks the timer process runs.
    fn timers(&self) -> Vec<Box<dyn TimerCallback>> {
        Vec::new()
    }

    /// Body of the ctl process; returns when `stop` becomes true.
    fn run_ctl(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Logs each message at debug level and drops it: the behaviour until a
/// routing script is loaded.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullInit;

/// The handler of [`NullInit`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DropHandler;

impl SipHandler for DropHandler {
    fn on_datagram(&mut self, buf: &[u8], src: SocketAddr, sock: &ListenSocket) {
        log::debug!(
            "udp datagram of {} bytes from {src} on {} dropped",
            buf.len(),
            sock.name()
        );
    }
}

impl ChildInit for NullInit {
    fn handler(&self, _rank: Rank) -> Box<dyn SipHandler> {
        Box::new(DropHandler)
    }
}
