//! Becoming a daemon the SER way (`daemonize.c`): chroot and chdir, the
//! double fork with `setsid` (unless `-D`), pid and pgid files, standard
//! descriptors to /dev/null, and the privilege drop after sockets are bound.
//!
//! The creator waits for the daemon to report "started" over a pipe, so its
//! exit status says whether the server really came up (as Kamailio does).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{self, Gid, Group, Uid, User};

use crate::sys::{fork_checked, Forked};
use crate::Error;

/// How far to detach, from the number of `-D` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkMode {
    /// No `-D`: daemonize (fork, setsid, fork) and fork the children.
    Daemon,
    /// `-D`: stay in the foreground and do not fork receivers (almost).
    NoFork,
    /// `-DD`: stay in the foreground, fork the children as usual.
    Foreground,
}

impl ForkMode {
    /// From the `-D` count (3 or more = daemonize, as `-DDD`).
    pub fn from_count(n: u32) -> ForkMode {
        match n {
            1 => ForkMode::NoFork,
            2 => ForkMode::Foreground,
            _ => ForkMode::Daemon,
        }
    }
}

/// What [`detach`] needs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// `-D` level.
    pub mode: ForkMode,
    /// `-E`: keep stderr open.
    pub log_stderr: bool,
    /// `-P`.
    pub pid_file: Option<PathBuf>,
    /// `-G`.
    pub pgid_file: Option<PathBuf>,
    /// `-t`.
    pub chroot: Option<PathBuf>,
    /// `-w` (SER default `/`).
    pub wdir: Option<PathBuf>,
}

/// The daemon's end of the start-up pipe: [`StartNotice::started`] lets the
/// creator exit 0; dropping it unsent makes the creator exit 1.
///
/// A daemon keeps the creator's stderr until [`StartNotice::release_stderr`]
/// (called just before the children are forked), so start-up errors still
/// reach the terminal that started it.
#[derive(Debug)]
pub struct StartNotice {
    pipe: Option<OwnedFd>,
    close_stderr: bool,
}

impl StartNotice {
    /// No creator is waiting (foreground modes).
    pub fn none() -> StartNotice {
        StartNotice {
            pipe: None,
            close_stderr: false,
        }
    }

    /// Points stderr at /dev/null if this daemon logs elsewhere; afterwards
    /// no process holds the creator's terminal.
    pub fn release_stderr(&self) -> Result<(), Error> {
        if self.close_stderr {
            redirect_stdio(&[2])?;
        }
        Ok(())
    }

    /// Tells the creator the server is up.
    pub fn started(mut self) {
        if let Some(fd) = self.pipe.take() {
            let mut f = File::from(fd);
            let _ = f.write_all(b"1");
        }
    }
}

/// Detaches as `opts.mode` says; returns in the process that goes on to be
/// the main process. In daemon mode the creator waits for the notice and
/// exits here with 0 or 1.
pub fn detach(opts: &DaemonOptions) -> Result<StartNotice, Error> {
    if let Some(dir) = &opts.chroot {
        unistd::chroot(dir.as_path())
            .map_err(|e| Error::io(format!("chroot {}", dir.display()), e.into()))?;
    }
    let wdir = opts.wdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    unistd::chdir(wdir.as_path())
        .map_err(|e| Error::io(format!("chdir {}", wdir.display()), e.into()))?;

    let mut notice = StartNotice::none();
    if opts.mode == ForkMode::Daemon {
        let (rd, wr) = unistd::pipe().map_err(|e| Error::io("pipe", e.into()))?;
        match fork_checked()? {
            Forked::Parent(_) => {
                drop(wr);
                let mut buf = [0u8; 1];
                let ok = matches!(File::from(rd).read(&mut buf), Ok(1));
                std::process::exit(if ok { 0 } else { 1 });
            }
            Forked::Child => drop(rd),
        }
        unistd::setsid().map_err(|e| Error::io("setsid", e.into()))?;
        // Second fork: the session leader exits, so the daemon can never
        // reacquire a controlling terminal.
        match fork_checked()? {
            Forked::Parent(_) => std::process::exit(0),
            Forked::Child => {}
        }
        redirect_stdio(&[0, 1])?;
        notice = StartNotice {
            pipe: Some(wr),
            close_stderr: !opts.log_stderr,
        };
    }
    write_pid_files(opts)?;
    Ok(notice)
}

fn write_pid_files(opts: &DaemonOptions) -> Result<(), Error> {
    if let Some(p) = &opts.pid_file {
        write_number(p, unistd::getpid().as_raw())?;
    }
    if let Some(p) = &opts.pgid_file {
        let pgid = unistd::getpgid(None).map_err(|e| Error::io("getpgid", e.into()))?;
        write_number(p, pgid.as_raw())?;
    }
    Ok(())
}

fn write_number(path: &Path, n: i32) -> Result<(), Error> {
    std::fs::write(path, format!("{n}\n"))
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Removes the pid and pgid files (at shutdown).
pub fn remove_pid_files(opts: &DaemonOptions) {
    for p in [&opts.pid_file, &opts.pgid_file].into_iter().flatten() {
        if let Err(e) = std::fs::remove_file(p) {
            log::warn!("cannot remove {}: {e}", p.display());
        }
    }
}

fn redirect_stdio(fds: &[i32]) -> Result<(), Error> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open /dev/null", e))?;
    for &fd in fds {
        unistd::dup2(null.as_raw_fd(), fd).map_err(|e| Error::io("dup2", e.into()))?;
    }
    Ok(())
}

/// Resolves `-u`/`-g` values: a name or a number.
pub fn resolve_ids(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<Uid>, Option<Gid>), Error> {
    let uid = match user {
        None => None,
        Some(u) => Some(match u.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(u)
                    .map_err(|e| Error::io(format!("getpwnam {u}"), e.into()))?
                    .ok_or_else(|| Error::UnknownId {
                        kind: "user",
                        name: u.into(),
                    })?
                    .uid
            }
        }),
    };
    let gid = match group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| Error::io(format!("getgrnam {g}"), e.into()))?
                    .ok_or_else(|| Error::UnknownId {
                        kind: "group",
                        name: g.into(),
                    })?
                    .gid
            }
        }),
    };
    Ok((uid, gid))
}

/// Drops privileges (`do_suid`): group first, then supplementary groups,
/// then user. Called after the sockets are bound.
pub fn drop_privileges(uid: Option<Uid>, gid: Option<Gid>) -> Result<(), Error> {
    if let Some(gid) = gid {
        unistd::setgid(gid).map_err(|e| Error::io(format!("setgid {gid}"), e.into()))?;
        unistd::setgroups(&[gid]).map_err(|e| Error::io("setgroups", e.into()))?;
    }
    if let Some(uid) = uid {
        unistd::setuid(uid).map_err(|e| Error::io(format!("setuid {uid}"), e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_mode_from_count() {
        assert_eq!(ForkMode::from_count(0), ForkMode::Daemon);
        assert_eq!(ForkMode::from_count(1), ForkMode::NoFork);
        assert_eq!(ForkMode::from_count(2), ForkMode::Foreground);
        assert_eq!(ForkMode::from_count(3), ForkMode::Daemon);
    }

    #[test]
    fn ids_by_number_and_name() {
        let (u, g) = resolve_ids(Some("0"), Some("root")).unwrap();
        assert_eq!(u, Some(Uid::from_raw(0)));
        assert_eq!(g, Some(Gid::from_raw(0)));
        let e = resolve_ids(Some("no-such-user-xyz"), None).unwrap_err();
        assert_eq!(e.to_string(), "unknown user 'no-such-user-xyz'");
    }
}
