//! The `-W` poll methods (SER's `io_wait.h`): how the TCP loops wait for
//! readable descriptors. One small [`Reactor`] with a backend per method,
//! chosen at run time.
//!
//! The loops rebuild their list of descriptors each round, each with a
//! token that names the descriptor's owner for its whole life (a connection
//! serial, not the fd number, which the kernel reuses). The epoll backends
//! keep the kernel's interest list in step with that list: new tokens are
//! added, vanished ones deleted.
//!
//! UDP receivers do not use a reactor: like SER's `udp_rcv_loop` they block
//! in `recvfrom` on their one socket.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::select::{select, FdSet};
use nix::sys::time::{TimeVal, TimeValLike};

/// A `-W` method this build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMethod {
    /// poll(2).
    Poll,
    /// epoll(7), level-triggered (SER's default on Linux).
    #[default]
    EpollLt,
    /// epoll(7), edge-triggered.
    EpollEt,
    /// select(2): descriptors below `FD_SETSIZE` (1024) only.
    Select,
}

/// Methods SER knows on other systems; named in the refusal.
const OTHER_SYSTEMS: &[&str] = &["kqueue", "/dev/poll", "sigio_rt"];

impl PollMethod {
    /// Every method, in `-V` order.
    pub const ALL: [PollMethod; 4] = [
        PollMethod::Poll,
        PollMethod::EpollLt,
        PollMethod::EpollEt,
        PollMethod::Select,
    ];

    /// The `-W` name.
    pub fn name(self) -> &'static str {
        match self {
            PollMethod::Poll => "poll",
            PollMethod::EpollLt => "epoll_lt",
            PollMethod::EpollEt => "epoll_et",
            PollMethod::Select => "select",
        }
    }

    /// The available names, comma separated.
    pub fn available() -> String {
        PollMethod::ALL.map(|m| m.name()).join(", ")
    }

    /// Parses a `-W`/`tcp_poll_method` value (case-insensitive; `epoll`
    /// means `epoll_lt`); the error names what is available.
    pub fn parse(name: &str) -> Result<PollMethod, String> {
        let lower = name.to_ascii_lowercase();
        if lower == "epoll" {
            return Ok(PollMethod::EpollLt);
        }
        if let Some(m) = PollMethod::ALL.into_iter().find(|m| m.name() == lower) {
            return Ok(m);
        }
        let avail = PollMethod::available();
        if OTHER_SYSTEMS.contains(&lower.as_str()) {
            Err(format!(
                "poll method {name} is not available on Linux (available: {avail})"
            ))
        } else {
            Err(format!("unknown poll method {name} (available: {avail})"))
        }
    }
}

/// Waits for readable descriptors with one [`PollMethod`].
pub struct Reactor {
    method: PollMethod,
    epoll: Option<Epoll>,
    /// token -> fd registered with epoll.
    registered: HashMap<u64, RawFd>,
    /// Edge-triggered tokens reported ready that may still hold data: the
    /// loops read what they need, so they are checked again (level) until
    /// they run dry.
    pending: HashSet<u64>,
}

impl Reactor {
    /// A reactor for `method` (epoll methods create their epoll instance).
    pub fn new(method: PollMethod) -> nix::Result<Reactor> {
        let epoll = match method {
            PollMethod::EpollLt | PollMethod::EpollEt => {
                Some(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?)
            }
            PollMethod::Poll | PollMethod::Select => None,
        };
        Ok(Reactor {
            method,
            epoll,
            registered: HashMap::new(),
            pending: HashSet::new(),
        })
    }

    /// The method in use.
    pub fn method(&self) -> PollMethod {
        self.method
    }

    /// Waits up to `timeout_ms` until one of `fds` (token, descriptor) is
    /// readable (or hung up / in error); returns readiness per entry.
    /// Tokens must be unique in `fds`.
    pub fn wait(
        &mut self,
        fds: &[(u64, BorrowedFd<'_>)],
        timeout_ms: u16,
    ) -> nix::Result<Vec<bool>> {
        match self.method {
            PollMethod::Poll => wait_poll(fds, timeout_ms),
            PollMethod::Select => wait_select(fds, timeout_ms),
            PollMethod::EpollLt | PollMethod::EpollEt => self.wait_epoll(fds, timeout_ms),
        }
    }

    fn wait_epoll(
        &mut self,
        fds: &[(u64, BorrowedFd<'_>)],
        timeout_ms: u16,
    ) -> nix::Result<Vec<bool>> {
        let Some(ep) = &self.epoll else {
            return Err(Errno::EINVAL);
        };
        let edge = self.method == PollMethod::EpollEt;
        let index: HashMap<u64, usize> =
            fds.iter().enumerate().map(|(i, (t, _))| (*t, i)).collect();
        // Deletions first: a vanished token's fd number may be reused by a
        // new one in this same round.
        let gone: Vec<u64> = self
            .registered
            .keys()
            .filter(|t| !index.contains_key(t))
            .copied()
            .collect();
        for t in gone {
            if let Some(fd) = self.registered.remove(&t) {
                // SAFETY: the number is only handed to epoll_ctl(DEL); if it
                // was closed the kernel already dropped it and answers EBADF
                // or ENOENT, which is ignored; no memory is touched.
                let _ = ep.delete(unsafe { BorrowedFd::borrow_raw(fd) });
            }
            self.pending.remove(&t);
        }
        let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        if edge {
            flags |= EpollFlags::EPOLLET;
        }
        for (t, fd) in fds {
            if self.registered.contains_key(t) {
                continue;
            }
            match ep.add(fd, EpollEvent::new(flags, *t)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            self.registered.insert(*t, fd.as_raw_fd());
            if edge {
                // Data may have arrived before the registration's edge.
                self.pending.insert(*t);
            }
        }
        let mut ready = vec![false; fds.len()];
        if edge && !self.pending.is_empty() {
            let still: Vec<(u64, BorrowedFd<'_>)> = fds
                .iter()
                .filter(|(t, _)| self.pending.contains(t))
                .copied()
                .collect();
            let r = wait_poll(&still, 0)?;
            self.pending.clear();
            for ((t, _), ok) in still.iter().zip(r) {
                if ok {
                    self.pending.insert(*t);
                    if let Some(i) = index.get(t) {
                        ready[*i] = true;
                    }
                }
            }
        }
        let timeout = if ready.iter().any(|r| *r) {
            0
        } else {
            timeout_ms
        };
        let mut events = vec![EpollEvent::empty(); fds.len().clamp(1, 1024)];
        let n = ep.wait(&mut events, EpollTimeout::from(timeout))?;
        for e in &events[..n] {
            if let Some(i) = index.get(&e.data()) {
                ready[*i] = true;
                if edge {
                    self.pending.insert(e.data());
                }
            }
        }
        Ok(ready)
    }
}

fn wait_poll(fds: &[(u64, BorrowedFd<'_>)], timeout_ms: u16) -> nix::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd> = fds
        .iter()
        .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    poll(&mut pfds, PollTimeout::from(timeout_ms))?;
    Ok(pfds
        .iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// `FD_SETSIZE`: select(2) cannot watch descriptors from here on.
const FD_SETSIZE: RawFd = 1024;

fn wait_select(fds: &[(u64, BorrowedFd<'_>)], timeout_ms: u16) -> nix::Result<Vec<bool>> {
    if fds.iter().any(|(_, fd)| fd.as_raw_fd() >= FD_SETSIZE) {
        log::error!("select: a descriptor is beyond FD_SETSIZE ({FD_SETSIZE}); use -W epoll_lt");
        return Err(Errno::EINVAL);
    }
    let mut read = FdSet::new();
    let mut err = FdSet::new();
    for (_, fd) in fds {
        read.insert(*fd);
        err.insert(*fd);
    }
    let mut tv = TimeVal::milliseconds(i64::from(timeout_ms));
    select(None, &mut read, None, &mut err, &mut tv)?;
    Ok(fds
        .iter()
        .map(|(_, fd)| read.contains(*fd) || err.contains(*fd))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn names_and_refusals() {
        for m in PollMethod::ALL {
            assert_eq!(PollMethod::parse(m.name()), Ok(m));
        }
        assert_eq!(PollMethod::parse("epoll"), Ok(PollMethod::EpollLt));
        assert_eq!(PollMethod::default(), PollMethod::EpollLt);
        assert_eq!(
            PollMethod::parse("kqueue").unwrap_err(),
            "poll method kqueue is not available on Linux (available: poll, epoll_lt, epoll_et, select)"
        );
        assert!(PollMethod::parse("/dev/poll")
            .unwrap_err()
            .contains("not available on Linux"));
        assert!(PollMethod::parse("bogus")
            .unwrap_err()
            .starts_with("unknown poll method bogus"));
    }

    #[test]
    fn every_method_sees_readable_sockets_and_reused_tokens() {
        for m in PollMethod::ALL {
            let mut r = Reactor::new(m).unwrap();
            let (mut a, b) = UnixStream::pair().unwrap();
            let (mut c, d) = UnixStream::pair().unwrap();
            let idle = r.wait(&[(1, b.as_fd()), (2, d.as_fd())], 10).unwrap();
            assert_eq!(idle, [false, false], "{m:?}");
            c.write_all(b"x").unwrap();
            let got = r.wait(&[(1, b.as_fd()), (2, d.as_fd())], 100).unwrap();
            assert_eq!(got, [false, true], "{m:?}");
            // Not read: level methods and the edge backend's re-check both
            // report it again.
            let again = r.wait(&[(1, b.as_fd()), (2, d.as_fd())], 100).unwrap();
            assert_eq!(again, [false, true], "{m:?}");
            // Token 2 goes away, its fd number may come back as token 3.
            drop((c, d));
            let (mut e, f) = UnixStream::pair().unwrap();
            e.write_all(b"y").unwrap();
            a.write_all(b"z").unwrap();
            let got = r.wait(&[(1, b.as_fd()), (3, f.as_fd())], 100).unwrap();
            assert_eq!(got, [true, true], "{m:?}");
        }
    }
}
