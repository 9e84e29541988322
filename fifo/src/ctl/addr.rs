//! ctl listen addresses in Kamailio's syntax: `[proto:]name[:port]`.

use std::fmt;
use std::path::PathBuf;

use super::CtlError;

/// SER 3.0's default ctl socket (what `sercmd` tries without `-s`).
pub const DEFAULT_CTL_ADDR: &str = "unixs:/tmp/ser_ctl";
/// Default port for `tcp:`/`udp:` addresses without one.
pub const DEFAULT_CTL_PORT: u16 = 2049;

/// Where a ctl listener listens (or a client connects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlAddr {
    /// `unixs:/path` (also `unix:/path` and a bare `/path`): Unix stream socket.
    UnixStream(PathBuf),
    /// `unixd:/path`: Unix datagram socket.
    UnixDgram(PathBuf),
    /// `tcp:host[:port]`.
    Tcp {
        /// Host name or address (`*` for any).
        host: String,
        /// Port (2049 when omitted; 0 binds an ephemeral port).
        port: u16,
    },
    /// `udp:host[:port]`.
    Udp {
        /// Host name or address (`*` for any).
        host: String,
        /// Port (2049 when omitted; 0 binds an ephemeral port).
        port: u16,
    },
    /// `fifo:/path`: the FIFO text protocol (ctl's `fifo` modparam).
    Fifo(PathBuf),
    /// `json:fifo:/path`, `json:unixd:/path`, `json:udp:host:port`: JSON-RPC 2.0
    /// (Kamailio's `jsonrpcs`) instead of binrpc / the FIFO text protocol.
    Json(Box<CtlAddr>),
}

impl CtlAddr {
    /// Parses `unixs:/p`, `unix:/p`, `unixd:/p`, `tcp:host:port`, `udp:host:port`, `fifo:/p`;
    /// an address without a protocol is a Unix stream path. IPv6 hosts go in brackets
    /// (`tcp:[::1]:2049`).
    pub fn parse(s: &str) -> Result<CtlAddr, CtlError> {
        let bad = |why: &str| CtlError::BadAddress {
            addr: s.to_owned(),
            reason: why.to_owned(),
        };
        if let Some(inner) = s.strip_prefix("json:") {
            return match CtlAddr::parse(inner)? {
                a @ (CtlAddr::Fifo(_) | CtlAddr::UnixDgram(_) | CtlAddr::Udp { .. }) => {
                    Ok(CtlAddr::Json(Box::new(a)))
                }
                _ => Err(bad("JSON-RPC runs on fifo:, unixd: or udp: only")),
            };
        }
        let (proto, rest) = match s.split_once(':') {
            Some((p, r)) if ["unixs", "unix", "unixd", "tcp", "udp", "fifo"].contains(&p) => (p, r),
            _ => ("unixs", s),
        };
        let path = || {
            if rest.is_empty() {
                Err(bad("empty path"))
            } else if rest.contains('\0') {
                Err(bad("NUL in path"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match proto {
            "unixs" | "unix" => Ok(CtlAddr::UnixStream(path()?)),
            "unixd" => Ok(CtlAddr::UnixDgram(path()?)),
            "fifo" => Ok(CtlAddr::Fifo(path()?)),
            _ => {
                let (host, port) = split_host_port(rest).ok_or_else(|| bad("bad host[:port]"))?;
                if host.is_empty() {
                    return Err(bad("empty host"));
                }
                let port = match port {
                    None => DEFAULT_CTL_PORT,
                    Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
                };
                let host = host.to_owned();
                Ok(if proto == "tcp" {
                    CtlAddr::Tcp { host, port }
                } else {
                    CtlAddr::Udp { host, port }
                })
            }
        }
    }

    /// `host:port` as the socket API wants it (`*` → any address, brackets for IPv6).
    pub(crate) fn socket_addr_string(host: &str, port: u16) -> String {
        if host == "*" {
            format!("0.0.0.0:{port}")
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        }
    } else {
        match s.split_once(':') {
            None => Some((s, None)),
            Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
            // A bare IPv6 address without brackets and without port.
            Some(_) => Some((s, None)),
        }
    }
}

impl fmt::Display for CtlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlAddr::UnixStream(p) => write!(f, "unixs:{}", p.display()),
            CtlAddr::UnixDgram(p) => write!(f, "unixd:{}", p.display()),
            CtlAddr::Fifo(p) => write!(f, "fifo:{}", p.display()),
            CtlAddr::Json(a) => write!(f, "json:{a}"),
            CtlAddr::Tcp { host, port } => {
                write!(f, "tcp:{}", Self::socket_addr_string(host, *port))
            }
            CtlAddr::Udp { host, port } => {
                write!(f, "udp:{}", Self::socket_addr_string(host, *port))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_syntax() {
        let p = |s| CtlAddr::parse(s).unwrap();
        assert_eq!(
            p("unixs:/tmp/ser_ctl"),
            CtlAddr::UnixStream("/tmp/ser_ctl".into())
        );
        assert_eq!(p("unix:/tmp/x"), CtlAddr::UnixStream("/tmp/x".into()));
        assert_eq!(p("/tmp/x"), CtlAddr::UnixStream("/tmp/x".into()));
        assert_eq!(p("unixd:/tmp/d"), CtlAddr::UnixDgram("/tmp/d".into()));
        assert_eq!(
            p("fifo:/tmp/ser_fifo"),
            CtlAddr::Fifo("/tmp/ser_fifo".into())
        );
        assert_eq!(
            p("tcp:localhost:2046"),
            CtlAddr::Tcp {
                host: "localhost".into(),
                port: 2046
            }
        );
        assert_eq!(
            p("udp:127.0.0.1"),
            CtlAddr::Udp {
                host: "127.0.0.1".into(),
                port: 2049
            }
        );
        assert_eq!(
            p("tcp:[::1]:5"),
            CtlAddr::Tcp {
                host: "::1".into(),
                port: 5
            }
        );
        assert_eq!(
            p("tcp:[::1]"),
            CtlAddr::Tcp {
                host: "::1".into(),
                port: 2049
            }
        );
        assert_eq!(p(DEFAULT_CTL_ADDR).to_string(), DEFAULT_CTL_ADDR);
        assert_eq!(p("tcp:[::1]:5").to_string(), "tcp:[::1]:5");
        for bad in [
            "unixs:",
            "tcp:",
            "tcp:h:99999",
            "udp:h:x",
            "tcp:[::1",
            "tcp:[::1]x",
        ] {
            assert!(CtlAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
