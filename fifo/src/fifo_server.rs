//! The FIFO text protocol: SER's `fifo=` / ctl's `fifo` and Kamailio's `mi_fifo` framing,
//! carrying the same [`RpcRegistry`] as binrpc.
//!
//! # Request (both dialects)
//!
//! ```text
//! :<method>:<reply_fifo>\n
//! <param>\n          one parameter per line, sent as a string
//! ...
//! \n                 an empty line ends the request
//! ```
//!
//! `<reply_fifo>` is a bare file name, opened in the reply directory (default `/tmp/`, ctl's
//! `fifo_dir` / mi_fifo's `reply_dir`); names with `/`, `\` or `.` are refused, as in ctl,
//! except that an absolute path directly inside the reply directory (`/tmp/ser_receiver_42`,
//! as SER 0.8.x's serctl sent) is accepted. An empty name (`:method:`) runs the method
//! without a reply. Lines may end in `\r\n`.
//!
//! # Dialect by method name
//!
//! - A **dotted** RPC name (`core.uptime`) is served the way ctl's `fifo_server.c` does:
//!   parameters unescape `\n \r \t \\ \0`, plus `\c` → `:` and `\o` → `,` as ctl's
//!   reader does; the reply is `200 OK\n`, then each top-level value on its own line
//!   (escaped), a struct as one line `name:value,name:value` (`:` and `,` escaped as `\o`/`\c`);
//!   a fault is `<code> <message>\n`.
//! - An **undotted** name is an old MI / SER 0.8.8 command (`uptime`, `ps`, `version`,
//!   `which`, ...): it is mapped to the RPC method (`which` → `system.listMethods`, `ps` →
//!   `core.ps`, …; other names are looked up as they are), `name::value` parameters keep the
//!   value, a quoted `"value"` loses its quotes, and the reply is mi_fifo's tree:
//!   `200 OK\n`, one node per line (`name:: value`, children indented by a tab), then an
//!   empty line.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::ctl::{CtlAddr, CtlConfig, CtlError, CtlListener, SocketPerms};
use crate::rpc::{RpcFault, RpcRegistry, RpcValue};

/// Most parameters one FIFO request may carry.
pub const MAX_FIFO_PARAMS: usize = 256;

/// Reply flavour, chosen from the method name (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoDialect {
    /// ctl's `fifo_server.c` (SER 2.x/3.0).
    Ctl,
    /// Kamailio `mi_fifo` / SER 0.8.8 commands.
    Mi,
}

/// One parsed FIFO request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoRequest {
    /// The RPC method to run (MI names already mapped).
    pub method: String,
    /// The method name as written.
    pub command: String,
    /// Reply FIFO file name, if any.
    pub reply_fifo: Option<String>,
    /// Parameters, unescaped.
    pub params: Vec<String>,
    /// Reply flavour.
    pub dialect: FifoDialect,
}

/// What [`parse_request`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FifoParse {
    /// No complete request yet.
    NeedMore,
    /// A request using `consumed` bytes.
    Request(FifoRequest, usize),
    /// A malformed request using `consumed` bytes; `reply_fifo` is set when the first line
    /// named one, so an error can still be sent.
    Bad {
        /// What is wrong.
        reason: String,
        /// Reply FIFO named by the request, if any.
        reply_fifo: Option<String>,
        /// Bytes to drop.
        consumed: usize,
    },
}

/// Old MI / SER 0.8.8 command names and the RPC methods that answer them.
const MI_ALIASES: &[(&str, &str)] = &[
    ("which", "system.listMethods"),
    ("help", "system.methodHelp"),
    ("ps", "core.ps"),
    ("uptime", "core.uptime"),
    ("version", "core.version"),
    ("print", "core.echo"),
    ("arg", "core.arg"),
    ("pwd", "core.pwd"),
    ("kill", "core.kill"),
    ("get_statistics", "stats.get_statistics"),
    ("reset_statistics", "stats.reset_statistics"),
];

/// Finds and parses the first request in `buf`. A request whose lines exceed `max_line` or
/// whose bytes exceed `max_request` without an end is refused (and dropped).
pub fn parse_request(buf: &[u8], max_line: usize, max_request: usize) -> FifoParse {
    // Skip blank lines between requests.
    let start = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    let mut lines = Vec::new();
    let mut pos = start;
    let end = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > max_request {
                let reason = "request too long".to_owned();
                return FifoParse::Bad {
                    reason,
                    reply_fifo: None,
                    consumed: buf.len(),
                };
            }
            return FifoParse::NeedMore;
        };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    if start == buf.len() || lines.is_empty() {
        return FifoParse::NeedMore;
    }
    let bad = |reason: &str, reply_fifo: Option<String>| FifoParse::Bad {
        reason: reason.to_owned(),
        reply_fifo,
        consumed: end,
    };
    let first = String::from_utf8_lossy(lines[0]).into_owned();
    let Some((command, reply)) = first.strip_prefix(':').and_then(|r| r.split_once(':')) else {
        return bad("command must look like :method:reply_fifo", None);
    };
    let reply = reply.trim();
    let reply_fifo = if reply.is_empty() {
        None
    } else if !reply_name_ok(reply) {
        return bad("forbidden reply fifo name", None);
    } else {
        Some(reply.to_owned())
    };
    if command.is_empty() {
        return bad("empty command", reply_fifo);
    }
    if lines.iter().any(|l| l.len() > max_line) {
        return bad("line too long", reply_fifo);
    }
    if lines.len() - 1 > MAX_FIFO_PARAMS {
        return bad("too many parameters", reply_fifo);
    }
    let dialect = if command.contains('.') {
        FifoDialect::Ctl
    } else {
        FifoDialect::Mi
    };
    let method = match dialect {
        FifoDialect::Ctl => command.to_owned(),
        FifoDialect::Mi => MI_ALIASES
            .iter()
            .find(|(mi, _)| *mi == command)
            .map_or(command, |(_, rpc)| rpc)
            .to_owned(),
    };
    let mut params = Vec::with_capacity(lines.len() - 1);
    for l in &lines[1..] {
        let text = String::from_utf8_lossy(l);
        let p = match dialect {
            FifoDialect::Ctl => match unescape(&text) {
                Some(p) => p,
                None => return bad("bad escape in parameter", reply_fifo),
            },
            FifoDialect::Mi => mi_arg_value(&text),
        };
        params.push(p);
    }
    FifoParse::Request(
        FifoRequest {
            method,
            command: command.to_owned(),
            reply_fifo,
            params,
            dialect,
        },
        end,
    )
}

/// A bare name without `/`, `\` or `.` (ctl's rule), or — for SER 0.8.x clients, which sent
/// the full path — an absolute path without `.`; [`send_reply`] then also checks that such a
/// path lies directly in the reply directory.
fn reply_name_ok(name: &str) -> bool {
    let bare = name
        .strip_prefix('/')
        .map_or(name, |_| name.rsplit('/').next().unwrap_or(""));
    name.len() <= 255 && !bare.is_empty() && !name.contains(['\\', '.']) && !bare.contains('/')
}

/// mi_fifo arguments: `name::value` keeps the value; `"quoted"` loses its quotes.
fn mi_arg_value(s: &str) -> String {
    let v = s.split_once("::").map_or(s, |(_, v)| v.trim_start());
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// ctl's FIFO unescaping; `None` on an unknown escape.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match it.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '0' => '\0',
            'c' => ':',
            'o' => ',',
            _ => return None,
        });
    }
    Some(out)
}

/// ctl's FIFO escaping; `all` also escapes the struct delimiters `:` and `,`.
fn escape(s: &str, all: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            ':' if all => out.push_str("\\o"),
            ',' if all => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

/// The text of a reply (status line and body) in `dialect`.
pub fn format_reply(dialect: FifoDialect, result: &Result<Vec<RpcValue>, RpcFault>) -> String {
    let mut out = String::new();
    match result {
        Err(f) => out.push_str(&format!("{} {}\n", f.code, single_line(&f.message))),
        Ok(values) => {
            out.push_str("200 OK\n");
            for v in values {
                match dialect {
                    FifoDialect::Ctl => ctl_value(v, &mut out),
                    FifoDialect::Mi => mi_node(None, v, 0, &mut out),
                }
            }
        }
    }
    if dialect == FifoDialect::Mi {
        out.push('\n');
    }
    out
}

fn single_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn ctl_value(v: &RpcValue, out: &mut String) {
    match v {
        RpcValue::Struct(members) => {
            let parts: Vec<String> = members
                .iter()
                .map(|(n, v)| format!("{}:{}", escape(n, true), escape(&v.to_string(), true)))
                .collect();
            out.push_str(&parts.join(","));
            out.push('\n');
        }
        RpcValue::Array(items) => items.iter().for_each(|i| ctl_value(i, out)),
        v => {
            out.push_str(&escape(&v.to_string(), false));
            out.push('\n');
        }
    }
}

fn mi_node(name: Option<&str>, v: &RpcValue, level: usize, out: &mut String) {
    let children: Vec<(Option<&str>, &RpcValue)> = match v {
        RpcValue::Struct(members) => members.iter().map(|(n, m)| (Some(n.as_str()), m)).collect(),
        RpcValue::Array(items) => items.iter().map(|m| (None, m)).collect(),
        _ => {
            out.extend(std::iter::repeat_n('\t', level));
            if let Some(n) = name {
                out.push_str(&single_line(n));
                out.push_str(":: ");
            }
            out.push_str(&single_line(&v.to_string()));
            out.push('\n');
            return;
        }
    };
    // An unnamed container prints no line of its own (an empty line would end the reply).
    let level = match name {
        Some(n) => {
            out.extend(std::iter::repeat_n('\t', level));
            out.push_str(&single_line(n));
            out.push_str(":: \n");
            level + 1
        }
        None => level,
    };
    for (n, m) in children {
        mi_node(n, m, level, out);
    }
}

/// Runs every complete request in `buf` (dropping what was used) and answers each on its
/// reply FIFO.
pub(crate) fn process_buffer(buf: &mut Vec<u8>, registry: &RpcRegistry, cfg: &CtlConfig) {
    loop {
        match parse_request(buf, cfg.max_fifo_line, cfg.max_request) {
            FifoParse::NeedMore => return,
            FifoParse::Bad {
                reason,
                reply_fifo,
                consumed,
            } => {
                buf.drain(..consumed.min(buf.len()));
                if let Some(name) = reply_fifo {
                    let text = format_reply(FifoDialect::Ctl, &Err(RpcFault::new(400, reason)));
                    send_reply(
                        &cfg.fifo_reply_dir,
                        &name,
                        text.as_bytes(),
                        cfg.fifo_reply_timeout,
                    );
                }
            }
            FifoParse::Request(req, consumed) => {
                buf.drain(..consumed.min(buf.len()));
                let params = req.params.into_iter().map(RpcValue::Str).collect();
                let result = crate::ctl::call_guarded(registry, &req.method, params);
                let result = result.map_err(|f| {
                    if f.code == 500 && registry.lookup(&req.method).is_none() {
                        RpcFault::new(500, format!("command '{}' not found", req.command))
                    } else {
                        f
                    }
                });
                if let Some(name) = req.reply_fifo {
                    let text = format_reply(req.dialect, &result);
                    send_reply(
                        &cfg.fifo_reply_dir,
                        &name,
                        text.as_bytes(),
                        cfg.fifo_reply_timeout,
                    );
                }
            }
        }
    }
}

/// Writes `data` to the reply FIFO `dir/name`: opened non-blocking (retrying while the
/// client has not opened its end yet), refused unless it is a real FIFO, written within
/// `timeout`. Failures are dropped: the client simply gets no answer.
pub(crate) fn send_reply(dir: &Path, name: &str, data: &[u8], timeout: Duration) -> bool {
    let path = if name.starts_with('/') {
        // SER 0.8.x style absolute name: only inside the reply directory.
        let p = Path::new(name);
        if p.parent() != Some(dir) {
            return false;
        }
        p.to_owned()
    } else {
        dir.join(name)
    };
    let deadline = Instant::now() + timeout;
    // Only a FIFO, never a symlink or a regular file (a local user could otherwise make us
    // write into any file).
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_fifo() => {}
        _ => return false,
    }
    let mut file = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => break f,
            // ENXIO: no reader yet; the client may still be about to open it.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    };
    let mut written = 0;
    while written < data.len() {
        match file.write(&data[written..]) {
            Ok(0) => return false,
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads what is available on the FIFO into `buf` (never beyond `max` buffered bytes).
pub(crate) fn read_available(fifo: &std::fs::File, buf: &mut Vec<u8>, max: usize) {
    let mut fifo = fifo;
    let mut chunk = [0u8; 4096];
    while buf.len() <= max {
        match fifo.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Creates the FIFO at `path` (replacing a stale one, mode 0600) and serves `registry` on it
/// until `stop` is set. The FIFO is removed on return.
pub fn serve_fifo(
    path: impl AsRef<Path>,
    registry: &RpcRegistry,
    stop: &AtomicBool,
) -> Result<(), CtlError> {
    let listener = CtlListener::bind_addr(
        &CtlAddr::Fifo(path.as_ref().to_owned()),
        &SocketPerms::default(),
    )?;
    crate::ctl::serve(vec![listener], registry, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> FifoParse {
        parse_request(s.as_bytes(), 100, 1000)
    }

    #[test]
    fn ser_request() {
        let FifoParse::Request(r, n) = req(":core.echo:rf\nhello\\tworld\n42\n\nrest") else {
            panic!("not parsed")
        };
        assert_eq!(n, ":core.echo:rf\nhello\\tworld\n42\n\n".len());
        assert_eq!(r.method, "core.echo");
        assert_eq!(r.reply_fifo.as_deref(), Some("rf"));
        assert_eq!(r.params, ["hello\tworld", "42"]);
        assert_eq!(r.dialect, FifoDialect::Ctl);
    }

    #[test]
    fn mi_request_with_crlf_and_named_args() {
        let FifoParse::Request(r, _) = req(":get_statistics:reply\r\ndialog:\r\nx:: \"v\"\r\n\r\n")
        else {
            panic!("not parsed")
        };
        assert_eq!(r.method, "stats.get_statistics");
        assert_eq!(r.params, ["dialog:", "v"]);
        assert_eq!(r.dialect, FifoDialect::Mi);
        let FifoParse::Request(r, _) = req(":which:\n\n") else {
            panic!("not parsed")
        };
        assert_eq!(
            (r.method.as_str(), r.reply_fifo),
            ("system.listMethods", None)
        );
    }

    #[test]
    fn incomplete_and_bad_requests() {
        assert_eq!(req(":core.echo:rf\nx\n"), FifoParse::NeedMore);
        assert_eq!(req(""), FifoParse::NeedMore);
        assert_eq!(req("\n\n"), FifoParse::NeedMore);
        assert!(matches!(
            req("core.echo\n\n"),
            FifoParse::Bad {
                reply_fifo: None,
                ..
            }
        ));
        assert!(matches!(
            req(":core.echo:../etc/passwd\n\n"),
            FifoParse::Bad {
                reply_fifo: None,
                ..
            }
        ));
        assert!(matches!(
            req("::rf\n\n"),
            FifoParse::Bad {
                reply_fifo: Some(_),
                ..
            }
        ));
        let long = format!(":core.echo:rf\n{}\n\n", "x".repeat(200));
        assert!(matches!(
            req(&long),
            FifoParse::Bad {
                reply_fifo: Some(_),
                ..
            }
        ));
        let unterminated = "x".repeat(2000);
        assert!(matches!(
            req(&unterminated),
            FifoParse::Bad { consumed: 2000, .. }
        ));
        assert!(matches!(
            req(":core.echo:rf\nbad\\q\n\n"),
            FifoParse::Bad { .. }
        ));
    }

    #[test]
    fn reply_formats() {
        let v = vec![
            RpcValue::from("a\nb"),
            RpcValue::Int(7),
            RpcValue::structure([("x", RpcValue::Int(1)), ("y", RpcValue::from("p:q,r"))]),
        ];
        assert_eq!(
            format_reply(FifoDialect::Ctl, &Ok(v.clone())),
            "200 OK\na\\nb\n7\nx:1,y:p\\oq\\cr\n"
        );
        assert_eq!(
            format_reply(FifoDialect::Mi, &Ok(v)),
            "200 OK\na b\n7\nx:: 1\ny:: p:q,r\n\n"
        );
        let nested = vec![RpcValue::structure([(
            "s",
            RpcValue::structure([("k", RpcValue::Int(2))]),
        )])];
        assert_eq!(
            format_reply(FifoDialect::Mi, &Ok(nested)),
            "200 OK\ns:: \n\tk:: 2\n\n"
        );
        let f = Err(RpcFault::new(500, "command 'x' not found"));
        assert_eq!(
            format_reply(FifoDialect::Ctl, &f),
            "500 command 'x' not found\n"
        );
        assert_eq!(
            format_reply(FifoDialect::Mi, &f),
            "500 command 'x' not found\n\n"
        );
    }
}
