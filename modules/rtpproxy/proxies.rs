//! The RTP proxies a config names (`rtpproxy_sock`), and talking to them:
//! the rtpproxy control protocol over UDP (cookie, timeout, retries) or a
//! unix stream socket, the version check a node must pass before use, and
//! balancing by weight over the nodes of a set.
//!
//! Sockets and the enabled/disabled state of a node belong to one process:
//! they are made on first use after the fork (a socket shared across the
//! fork would mix up the replies of different workers).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Protocol version every rtpproxy speaks (`V` answers it).
const BASE_VERSION: &str = "20040107";
/// Capability we need: per-media tags (`tag;medianum`).
const MEDIANUM_CAP: &str = "20050322";

/// How a node is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `udp:host:port` / `udp6:host:port`.
    Udp(SocketAddr),
    /// `unix:/path` (stream socket, one connection per command).
    Unix(String),
}

/// One rtpproxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// As configured (`udp:127.0.0.1:7722`).
    pub url: String,
    /// Where it listens.
    pub addr: Addr,
    /// Share of the calls (`=N` after the URL, default 1).
    pub weight: u32,
}

/// A numbered set of proxies (`N == url url ...`; set 0 without a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Set id.
    pub id: u32,
    /// Its nodes, in config order.
    pub nodes: Vec<Node>,
}

/// Timing of the control protocol (modparams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait for a reply this long per try (`rtpproxy_tout`, seconds).
    pub tout: Duration,
    /// Tries per command (`rtpproxy_retr`).
    pub retr: u32,
    /// A node that failed is left alone this long (`rtpproxy_disable_tout`).
    pub disable: Duration,
}

fn parse_addr(url: &str) -> Result<Addr, String> {
    let (scheme, rest) = match url.split_once(':') {
        Some((s, r)) if ["udp", "udp6", "unix"].contains(&s.to_ascii_lowercase().as_str()) => {
            (s.to_ascii_lowercase(), r)
        }
        // Kamailio: no scheme means a unix socket path.
        _ => ("unix".to_owned(), url),
    };
    if scheme == "unix" {
        if rest.is_empty() {
            return Err(format!("`{url}`: empty unix socket path"));
        }
        return Ok(Addr::Unix(rest.to_owned()));
    }
    // host:port, IPv6 in brackets; the default control port is 22222.
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("`{url}`: bad port `{p}`"))?,
        ),
        _ => (rest, 22222),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let want_v6 = scheme == "udp6" || host.parse::<std::net::Ipv6Addr>().is_ok();
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("`{url}`: cannot resolve `{host}`: {e}"))?
        .find(|a| a.is_ipv6() == want_v6)
        .map(Addr::Udp)
        .ok_or_else(|| format!("`{url}`: no IPv{} address", if want_v6 { 6 } else { 4 }))
}

/// Parse every `rtpproxy_sock` value into sets: `"[N ==] url[=weight] url..."`.
/// Values naming the same set add to it.
pub fn parse_sets(values: &[String]) -> Result<Vec<Set>, String> {
    let mut sets: Vec<Set> = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let (id, list) = match v.split_once("==") {
            Some((id, list)) => {
                let id = id.trim();
                let id: u32 = id
                    .parse()
                    .map_err(|_| format!("rtpproxy_sock: set id `{id}` is not a number"))?;
                (id, list)
            }
            None => (0, v),
        };
        if list.trim().is_empty() {
            return Err(format!("rtpproxy_sock: set {id} names no proxy"));
        }
        let idx = match sets.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                sets.push(Set {
                    id,
                    nodes: Vec::new(),
                });
                sets.len() - 1
            }
        };
        for word in list.split_whitespace() {
            let (url, weight) = match word.split_once('=') {
                Some((u, w)) => (
                    u,
                    w.parse::<u32>()
                        .map_err(|_| format!("rtpproxy_sock: bad weight in `{word}`"))?,
                ),
                None => (word, 1),
            };
            let addr = parse_addr(url).map_err(|e| format!("rtpproxy_sock: {e}"))?;
            sets[idx].nodes.push(Node {
                url: url.to_owned(),
                addr,
                weight,
            });
        }
    }
    Ok(sets)
}

/// Why a command got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// No node of the set is usable.
    NoProxy,
    /// The node did not answer (it is disabled for a while).
    Timeout(String),
    /// Socket error talking to the node.
    Io(String),
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdError::NoProxy => write!(f, "no available RTP proxy"),
            CmdError::Timeout(u) => write!(f, "timeout waiting for a reply from RTP proxy {u}"),
            CmdError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A node's state in this process.
#[derive(Default)]
struct NodeState {
    sock: Option<UdpSocket>,
    /// Passed the version check.
    ok: bool,
    /// Not to be tried before this instant.
    disabled_until: Option<Instant>,
}

/// Per-process state: pid it belongs to (a fork starts afresh), node states by URL.
static LOCAL: Mutex<Option<(u32, HashMap<String, NodeState>)>> = Mutex::new(None);
static SEQ: AtomicU32 = AtomicU32::new(0);

fn with_state<R>(url: &str, f: impl FnOnce(&mut NodeState) -> R) -> R {
    let pid = std::process::id();
    let mut g = LOCAL.lock().unwrap_or_else(|p| p.into_inner());
    if g.as_ref().is_none_or(|(p, _)| *p != pid) {
        *g = Some((pid, HashMap::new()));
    }
    // Just set to Some above.
    let map = &mut g.as_mut().expect("state initialised above").1;
    f(map.entry(url.to_owned()).or_default())
}

/// Send one command (without cookie) to `node`; the reply without cookie.
pub fn send(node: &Node, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    match &node.addr {
        Addr::Unix(path) => send_unix(path, cmd, t),
        Addr::Udp(a) => send_udp(node, *a, cmd, t),
    }
}

fn send_unix(path: &str, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    let io = |e: std::io::Error| CmdError::Io(format!("RTP proxy unix:{path}: {e}"));
    let mut s = UnixStream::connect(path).map_err(io)?;
    let limit = t.tout.max(Duration::from_millis(10)) * t.retr.max(1);
    s.set_read_timeout(Some(limit)).map_err(io)?;
    s.set_write_timeout(Some(limit)).map_err(io)?;
    s.write_all(cmd.as_bytes()).map_err(io)?;
    s.write_all(b"\n").map_err(io)?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    s.take(4096).read_to_end(&mut buf).map_err(io)?;
    if buf.is_empty() {
        return Err(CmdError::Io(format!("RTP proxy unix:{path}: empty reply")));
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_owned())
}

fn send_udp(node: &Node, to: SocketAddr, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    let io = |e: std::io::Error| CmdError::Io(format!("RTP proxy {}: {e}", node.url));
    let sock = with_state(&node.url, |st| -> std::io::Result<UdpSocket> {
        if st.sock.is_none() {
            let bind: SocketAddr = if to.is_ipv6() {
                "[::]:0".parse().expect("literal address")
            } else {
                "0.0.0.0:0".parse().expect("literal address")
            };
            let s = UdpSocket::bind(bind)?;
            s.connect(to)?;
            st.sock = Some(s);
        }
        st.sock.as_ref().expect("socket made above").try_clone()
    })
    .map_err(io)?;
    // Drop late replies to earlier commands.
    sock.set_nonblocking(true).map_err(io)?;
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    sock.set_nonblocking(false).map_err(io)?;
    let cookie = format!(
        "{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let line = format!("{cookie} {cmd}");
    let tout = t.tout.max(Duration::from_millis(10));
    for _ in 0..t.retr.max(1) {
        sock.send(line.as_bytes()).map_err(io)?;
        let end = Instant::now() + tout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left)).map_err(io)?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let r = String::from_utf8_lossy(&buf[..n]);
                    if let Some(rest) = r.strip_prefix(&cookie) {
                        if rest.is_empty() || rest.starts_with([' ', '\n', '\r']) {
                            return Ok(rest.trim().to_owned());
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                // ECONNREFUSED: nobody listens; the next try may find it up.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                    break;
                }
                Err(e) => return Err(io(e)),
            }
        }
    }
    Err(CmdError::Timeout(node.url.clone()))
}

/// Whether `node` speaks a protocol we can use (`V`, then `VF 20050322`).
fn version_ok(node: &Node, t: &Timing) -> Result<(), String> {
    let v = send(node, "V", t).map_err(|e| e.to_string())?;
    if v != BASE_VERSION {
        return Err(format!(
            "RTP proxy {} speaks protocol `{v}`, not {BASE_VERSION}",
            node.url
        ));
    }
    let cap = send(node, &format!("VF {MEDIANUM_CAP}"), t).map_err(|e| e.to_string())?;
    if cap != "1" {
        return Err(format!(
            "RTP proxy {} lacks capability {MEDIANUM_CAP} (answered `{cap}`)",
            node.url
        ));
    }
    Ok(())
}

/// Usable now: checked (once per process) and not disabled.
fn usable(node: &Node, t: &Timing, now: Instant) -> bool {
    let (ok, until) = with_state(&node.url, |st| (st.ok, st.disabled_until));
    if until.is_some_and(|u| now < u) {
        return false;
    }
    if ok {
        return true;
    }
    match version_ok(node, t) {
        Ok(()) => {
            log::info!(
                "rtpproxy: RTP proxy <{}> found, support for it enabled",
                node.url
            );
            with_state(&node.url, |st| {
                st.ok = true;
                st.disabled_until = None;
            });
            true
        }
        Err(e) => {
            log::warn!("rtpproxy: {e}; support for it disabled for {:?}", t.disable);
            disable(node, t, now);
            false
        }
    }
}

fn disable(node: &Node, t: &Timing, now: Instant) {
    with_state(&node.url, |st| {
        st.ok = false;
        st.disabled_until = now.checked_add(t.disable).or(Some(now));
    });
}

/// The node of `set` for a call: by weight over the usable nodes, chosen by
/// a hash of the Call-ID so every command of a call goes to the same node
/// while the set does not change.
pub fn select<'s>(set: &'s Set, callid: &[u8], t: &Timing) -> Option<&'s Node> {
    let now = Instant::now();
    if let [only] = set.nodes.as_slice() {
        return usable(only, t, now).then_some(only);
    }
    let usable: Vec<&Node> = set
        .nodes
        .iter()
        .filter(|n| n.weight > 0 && usable(n, t, now))
        .collect();
    let total: u32 = usable.iter().map(|n| n.weight).sum();
    if total == 0 {
        return None;
    }
    let sum = callid
        .iter()
        .fold(0u32, |a, b| a.wrapping_add(u32::from(*b)))
        & 0xff;
    let mut cut = sum % total;
    for n in usable {
        if cut < n.weight {
            return Some(n);
        }
        cut -= n.weight;
    }
    None
}

/// Send `cmd` for a call through `set`: a node that does not answer is
/// disabled and the next one tried.
pub fn command(set: &Set, callid: &[u8], cmd: &str, t: &Timing) -> Result<String, CmdError> {
    for _ in 0..set.nodes.len().max(1) {
        let node = select(set, callid, t).ok_or(CmdError::NoProxy)?;
        match send(node, cmd, t) {
            Ok(r) => return Ok(r),
            Err(e) => {
                log::error!("rtpproxy: {e}; proxy <{}> disabled", node.url);
                disable(node, t, Instant::now());
            }
        }
    }
    Err(CmdError::NoProxy)
}
