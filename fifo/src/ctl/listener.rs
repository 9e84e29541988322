//! Binding ctl listeners: socket files with the configured mode/owner, stale files replaced,
//! files removed again when the listener is dropped.

use std::fs::{self, File, OpenOptions};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use super::addr::CtlAddr;
use super::CtlError;

/// Permissions of Unix socket and FIFO files (ctl modparams `mode`, `user`, `group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPerms {
    /// File mode, default `0600`.
    pub mode: u32,
    /// Owner, by name or number; unchanged when `None`.
    pub user: Option<String>,
    /// Group, by name or number; unchanged when `None`.
    pub group: Option<String>,
}

impl Default for SocketPerms {
    fn default() -> Self {
        SocketPerms {
            mode: 0o600,
            user: None,
            group: None,
        }
    }
}

/// The bound socket of a listener.
#[derive(Debug)]
pub(crate) enum Sock {
    UnixStream(UnixListener),
    UnixDgram(UnixDatagram),
    Tcp(TcpListener),
    Udp(UdpSocket),
    /// The FIFO's read end, plus a write end we hold so that reads never see EOF when the
    /// last client closes.
    Fifo {
        read: File,
        _writer: File,
    },
}

/// A bound ctl listener. Dropping it closes the socket and removes its file.
#[derive(Debug)]
pub struct CtlListener {
    addr: CtlAddr,
    pub(crate) sock: Sock,
    cleanup: Option<PathBuf>,
    /// Speaks JSON-RPC (a `json:` address).
    pub(crate) json: bool,
}

impl CtlListener {
    /// Binds `addr` (Kamailio ctl syntax, see [`CtlAddr::parse`]) with default permissions.
    pub fn bind(addr: &str) -> Result<CtlListener, CtlError> {
        Self::bind_addr(&CtlAddr::parse(addr)?, &SocketPerms::default())
    }

    /// Binds `addr`; Unix socket and FIFO files get `perms`.
    pub fn bind_addr(addr: &CtlAddr, perms: &SocketPerms) -> Result<CtlListener, CtlError> {
        let io = |what: &str, e| CtlError::io(format!("{what} {addr}"), e);
        let (sock, cleanup) = match addr {
            CtlAddr::Json(inner) => {
                let mut l = Self::bind_addr(inner, perms)?;
                l.addr = addr.clone();
                l.json = true;
                return Ok(l);
            }
            CtlAddr::UnixStream(p) => {
                remove_stale(p, false)?;
                let l = UnixListener::bind(p).map_err(|e| io("bind", e))?;
                (Sock::UnixStream(l), Some(p.clone()))
            }
            CtlAddr::UnixDgram(p) => {
                remove_stale(p, false)?;
                let s = UnixDatagram::bind(p).map_err(|e| io("bind", e))?;
                (Sock::UnixDgram(s), Some(p.clone()))
            }
            CtlAddr::Tcp { host, port } => {
                let l = TcpListener::bind(CtlAddr::socket_addr_string(host, *port))
                    .map_err(|e| io("bind", e))?;
                (Sock::Tcp(l), None)
            }
            CtlAddr::Udp { host, port } => {
                let s = UdpSocket::bind(CtlAddr::socket_addr_string(host, *port))
                    .map_err(|e| io("bind", e))?;
                (Sock::Udp(s), None)
            }
            CtlAddr::Fifo(p) => {
                remove_stale(p, true)?;
                nix::unistd::mkfifo(p.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| io("mkfifo", e.into()))?;
                let read = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p)
                    .map_err(|e| io("open", e))?;
                let writer = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p)
                    .map_err(|e| io("open", e))?;
                (
                    Sock::Fifo {
                        read,
                        _writer: writer,
                    },
                    Some(p.clone()),
                )
            }
        };
        // From here on the file is ours: Drop removes it even if setting perms fails.
        let listener = CtlListener {
            addr: addr.clone(),
            sock,
            cleanup,
            json: false,
        };
        listener
            .set_nonblocking()
            .map_err(|e| io("set non-blocking", e))?;
        if let Some(p) = &listener.cleanup {
            apply_perms(p, perms)?;
        }
        Ok(listener)
    }

    fn set_nonblocking(&self) -> std::io::Result<()> {
        match &self.sock {
            Sock::UnixStream(s) => s.set_nonblocking(true),
            Sock::UnixDgram(s) => s.set_nonblocking(true),
            Sock::Tcp(s) => s.set_nonblocking(true),
            Sock::Udp(s) => s.set_nonblocking(true),
            Sock::Fifo { .. } => Ok(()), // opened O_NONBLOCK
        }
    }

    /// The address this listener was bound to.
    pub fn addr(&self) -> &CtlAddr {
        &self.addr
    }

    /// The local port of a TCP/UDP listener (useful after binding port 0).
    pub fn local_port(&self) -> Option<u16> {
        match &self.sock {
            Sock::Tcp(s) => s.local_addr().ok().map(|a| a.port()),
            Sock::Udp(s) => s.local_addr().ok().map(|a| a.port()),
            _ => None,
        }
    }
}

impl Drop for CtlListener {
    fn drop(&mut self) {
        if let Some(p) = &self.cleanup {
            // Best effort: the file may already be gone.
            let _ = fs::remove_file(p);
        }
    }
}

/// Removes a leftover socket (or FIFO, for FIFO listeners) at `p`; refuses to remove
/// anything else, so a typo cannot delete a regular file.
fn remove_stale(p: &Path, fifo: bool) -> Result<(), CtlError> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CtlError::io(format!("stat {}", p.display()), e)),
        Ok(m) => {
            let t = m.file_type();
            if t.is_socket() || (fifo && t.is_fifo()) {
                fs::remove_file(p)
                    .map_err(|e| CtlError::io(format!("remove stale {}", p.display()), e))
            } else {
                Err(CtlError::io(
                    format!("{} exists and is not a socket", p.display()),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ))
            }
        }
    }
}

fn apply_perms(p: &Path, perms: &SocketPerms) -> Result<(), CtlError> {
    fs::set_permissions(p, fs::Permissions::from_mode(perms.mode))
        .map_err(|e| CtlError::io(format!("chmod {}", p.display()), e))?;
    let uid = perms.user.as_deref().map(resolve_user).transpose()?;
    let gid = perms.group.as_deref().map(resolve_group).transpose()?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(p, uid, gid)
            .map_err(|e| CtlError::io(format!("chown {}", p.display()), e))?;
    }
    Ok(())
}

fn resolve_user(name: &str) -> Result<u32, CtlError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(CtlError::UnknownOwner(name.to_owned())),
    }
}

fn resolve_group(name: &str) -> Result<u32, CtlError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(CtlError::UnknownOwner(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("ser-fifo-listener-{}-{name}", std::process::id()));
        let _ = fs::remove_file(&d);
        d
    }

    #[test]
    fn unix_socket_mode_stale_and_cleanup() {
        let p = tmp("s");
        {
            let _first = CtlListener::bind(&format!("unixs:{}", p.display())).unwrap();
            // The first listener's file is left behind as if the process had crashed.
            std::mem::forget(_first);
        }
        assert!(p.exists());
        let perms = SocketPerms {
            mode: 0o660,
            user: Some("0".into()),
            group: Some("root".into()),
        };
        let l = CtlListener::bind_addr(&CtlAddr::UnixStream(p.clone()), &perms).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o660
        );
        drop(l);
        assert!(!p.exists());
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let p = tmp("f");
        fs::write(&p, b"keep me").unwrap();
        assert!(CtlListener::bind(&format!("unixs:{}", p.display())).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"keep me");
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn unknown_owner_is_an_error_and_leaves_no_file() {
        let p = tmp("o");
        let perms = SocketPerms {
            user: Some("no-such-user-xyz".into()),
            ..Default::default()
        };
        let r = CtlListener::bind_addr(&CtlAddr::UnixDgram(p.clone()), &perms);
        assert!(matches!(r, Err(CtlError::UnknownOwner(_))));
        assert!(!p.exists());
    }

    #[test]
    fn tcp_udp_fifo_bind() {
        let t = CtlListener::bind("tcp:127.0.0.1:0").unwrap();
        assert!(t.local_port().unwrap() > 0);
        let u = CtlListener::bind("udp:127.0.0.1:0").unwrap();
        assert!(u.local_port().unwrap() > 0);
        let p = tmp("fifo");
        let f = CtlListener::bind(&format!("fifo:{}", p.display())).unwrap();
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
        drop(f);
        assert!(!p.exists());
    }
}
