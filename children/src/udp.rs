//! The UDP receive loop of a receiver process (SER's `udp_rcv_loop`). All
//! receivers of a socket read the same inherited socket; the kernel hands
//! each datagram to one of them.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::handler::SipHandler;
use crate::socket::ListenSocket;

/// SER's `BUF_SIZE`: the largest datagram handled.
pub const BUF_SIZE: usize = 65535;

/// How often a blocked receiver looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Receives on `sock` until `stop` is set, handing every datagram to
/// `handler`. Never returns early on network errors; a panicking handler is
/// logged and the loop goes on with the next datagram.
pub fn receive_loop(sock: &ListenSocket, handler: &mut dyn SipHandler, stop: &AtomicBool) {
    let Some(udp) = sock.udp() else {
        log::error!("receive_loop on non-udp socket {sock}");
        return;
    };
    // A receive timeout makes recvfrom return so the stop flag is seen; it
    // also makes signals interrupt recvfrom (EINTR) despite SA_RESTART.
    if let Err(e) = udp.set_read_timeout(Some(STOP_POLL)) {
        log::warn!("cannot set receive timeout on {sock}: {e}");
    }
    let mut buf = vec![0u8; BUF_SIZE];
    while !stop.load(Ordering::Relaxed) {
        match udp.recv_from(&mut buf) {
            Ok((n, src)) => {
                let data = &buf[..n];
                log::trace!("udp: {n} bytes from {src} on {sock}");
                if catch_unwind(AssertUnwindSafe(|| handler.on_datagram(data, src, sock))).is_err()
                {
                    log::error!("handler panicked on a {n} byte datagram from {src}; dropped");
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
                // ICMP errors reported on the socket (e.g. port unreachable
                // after a send) belong to an earlier send: ignore.
                ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => {}
                _ => {
                    log::error!("recvfrom on {sock}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Proto;
    use std::net::{SocketAddr, UdpSocket};

    struct Count<'a>(&'a AtomicBool, usize);
    impl SipHandler for Count<'_> {
        fn on_datagram(&mut self, buf: &[u8], _src: SocketAddr, _sock: &ListenSocket) {
            self.1 += 1;
            if buf == b"panic" {
                panic!("test panic");
            }
            if buf == b"stop" {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn loop_survives_garbage_and_panics_and_stops() {
        let sock = ListenSocket::bind(Proto::Udp, "127.0.0.1:0".parse().unwrap(), 65536).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for msg in [&b"\x00\xff\xfe garbage"[..], b"", b"panic", b"stop"] {
            client.send_to(msg, sock.addr()).unwrap();
        }
        let stop = AtomicBool::new(false);
        let mut h = Count(&stop, 0);
        receive_loop(&sock, &mut h, &stop);
        assert_eq!(h.1, 4);
    }
}
