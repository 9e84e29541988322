//! The logger behind the `log` facade, installed first thing in main: every
//! crate logs with `log::info!` etc. Lines look like SER's
//! ` 0(12345) ERROR: <core> [udp.rs:42]: message` — process number, pid,
//! level, module — and go to syslog (ident `ser`, facility `log_facility`)
//! or, with `-E`/`log_stderror=yes`, to stderr.
//!
//! SER's `debug` levels map onto `log` levels: -3..-1 (alert, crit, err)
//! error, 0 warning, 1..2 (notice, info) info, 3 debug, 4+ trace.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Syslog facility codes by name (`LOG_LOCAL0`...), as `syslog.h`.
const FACILITIES: &[(&str, u8)] = &[
    ("LOG_KERN", 0),
    ("LOG_USER", 1),
    ("LOG_MAIL", 2),
    ("LOG_DAEMON", 3),
    ("LOG_AUTH", 4),
    ("LOG_SYSLOG", 5),
    ("LOG_LPR", 6),
    ("LOG_NEWS", 7),
    ("LOG_UUCP", 8),
    ("LOG_CRON", 9),
    ("LOG_AUTHPRIV", 10),
    ("LOG_FTP", 11),
    ("LOG_LOCAL0", 16),
    ("LOG_LOCAL1", 17),
    ("LOG_LOCAL2", 18),
    ("LOG_LOCAL3", 19),
    ("LOG_LOCAL4", 20),
    ("LOG_LOCAL5", 21),
    ("LOG_LOCAL6", 22),
    ("LOG_LOCAL7", 23),
];

/// The facility code for a name (`LOG_DAEMON`, `local0` ...).
pub fn facility_code(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("LOG_") {
        upper
    } else {
        format!("LOG_{upper}")
    };
    FACILITIES.iter().find(|(n, _)| *n == full).map(|(_, c)| *c)
}

/// SER debug level → `log` filter.
pub fn level_filter(debug: i32) -> LevelFilter {
    match debug {
        i32::MIN..=-1 => LevelFilter::Error,
        0 => LevelFilter::Warn,
        1..=2 => LevelFilter::Info,
        3 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

struct SerLogger {
    to_stderr: AtomicBool,
    facility: AtomicU8,
    syslog: Mutex<Option<UnixDatagram>>,
}

static LOGGER: SerLogger = SerLogger {
    to_stderr: AtomicBool::new(true),
    facility: AtomicU8::new(3),
    syslog: Mutex::new(None),
};

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "DEBUG",
    }
}

fn severity(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<core>` for the core crates, `<tm>` for `ser_modules::tm::...`.
fn module_of(target: &str) -> &str {
    target
        .strip_prefix("ser_modules::")
        .and_then(|rest| rest.split("::").next())
        .unwrap_or("core")
}

impl Log for SerLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let pid = std::process::id();
        let pid_i32 = i32::try_from(pid).unwrap_or(0);
        let no = ser_children::table::index_of(pid_i32).unwrap_or(0);
        let file = record
            .file()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
            .unwrap_or("?");
        let body = format!(
            "{no}({pid}) {}: <{}> [{file}:{}]: {}",
            level_name(record.level()),
            module_of(record.target()),
            record.line().unwrap_or(0),
            record.args()
        );
        if self.to_stderr.load(Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr().lock(), " {body}");
            return;
        }
        let pri = self.facility.load(Ordering::Relaxed) * 8 + severity(record.level());
        let line = format!("<{pri}>ser[{pid}]: {body}");
        let Ok(mut sock) = self.syslog.lock() else {
            return;
        };
        if sock.is_none() {
            *sock = UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok());
        }
        if let Some(s) = sock.as_ref() {
            // Lost log lines are better than a blocked SIP worker.
            let _ = s.set_nonblocking(true);
            let _ = s.send(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: stderr at warning level until [`configure`] says
/// otherwise (so config errors are seen).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

/// Applies the final `debug`, `log_stderror` and `log_facility`.
pub fn configure(debug: i32, to_stderr: bool, facility: &str) -> Result<(), String> {
    let code = facility_code(facility).ok_or_else(|| format!("bad log facility '{facility}'"))?;
    LOGGER.facility.store(code, Ordering::Relaxed);
    LOGGER.to_stderr.store(to_stderr, Ordering::Relaxed);
    log::set_max_level(level_filter(debug));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_facilities() {
        assert_eq!(level_filter(0), LevelFilter::Warn);
        assert_eq!(level_filter(3), LevelFilter::Debug);
        assert_eq!(level_filter(-3), LevelFilter::Error);
        assert_eq!(facility_code("LOG_LOCAL0"), Some(16));
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("nope"), None);
        assert_eq!(module_of("ser_modules::tm::timer"), "tm");
        assert_eq!(module_of("ser_children::udp"), "core");
    }
}
