//! `ser -V`: the version line and the build's real compile-time features.

use ser_children::socket::MAX_RECV_BUFFER_SIZE;
use ser_children::udp::BUF_SIZE;

use crate::globals::DEFAULT_SHM_MB;
use crate::listen::MAX_LISTEN;

/// `version: ser 3.0.0 (x86_64/linux)`.
pub fn version_line() -> String {
    format!(
        "version: ser {} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// What this build has, named as SER's `-V` names it. Only true entries:
/// IPv6 and TCP listening, one mmap'ed shared segment, futex locks that
/// spin before sleeping.
pub const BUILD_FLAGS: &[&str] = &[
    "STATS: Off",
    "USE_IPV6",
    "USE_TCP",
    "SHM_MEM",
    "SHM_MMAP",
    "USE_FUTEX",
    "FAST_LOCK-ADAPTIVE_WAIT",
];

/// Spins of a contended shm lock before it sleeps on the futex (ser-shm's
/// `SPIN_LIMIT`).
pub const ADAPTIVE_WAIT_LOOPS: u32 = 128;

/// Longest URI accepted by the SIP parser (ser-sip's `max_uri_len`).
pub const MAX_URI_SIZE: usize = 1024;

/// The whole `-V` output.
pub fn version_text() -> String {
    let id = option_env!("SER_GIT_ID").unwrap_or("unknown");
    let rustc = option_env!("SER_RUSTC_VERSION").unwrap_or("rustc (version not recorded)");
    let when = option_env!("SER_BUILD_DATE")
        .map(|d| format!("on {d} "))
        .unwrap_or_default();
    format!(
        "{}\nflags: {}\nADAPTIVE_WAIT_LOOPS={ADAPTIVE_WAIT_LOOPS}, MAX_RECV_BUFFER_SIZE \
         {MAX_RECV_BUFFER_SIZE}, MAX_LISTEN {MAX_LISTEN}, MAX_URI_SIZE {MAX_URI_SIZE}, BUF_SIZE \
         {BUF_SIZE}, DEFAULT SHM_SIZE {DEFAULT_SHM_MB}MB\npoll method support: {}.\nid: {id}\n\
         compiled {when}with {rustc}\n",
        version_line(),
        BUILD_FLAGS.join(", "),
        crate::flags::POLL_METHODS.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_shape() {
        let v = version_text();
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "version: ser 3.0.0 (x86_64/linux)");
        assert!(lines[1].starts_with("flags: STATS: Off, USE_IPV6, USE_TCP"));
        assert!(lines[2].contains("MAX_RECV_BUFFER_SIZE 262144, MAX_LISTEN 16"));
        assert_eq!(
            lines[3],
            "poll method support: poll, epoll_lt, epoll_et, select."
        );
        assert!(lines[4].starts_with("id: "));
        assert!(lines[5].starts_with("compiled "));
    }
}
