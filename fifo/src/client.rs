//! The binrpc client side: connecting to a ctl address, sending one request, reading its
//! reply, and printing replies exactly as kamcmd does. Used by the `sercmd` binary and by
//! tests that talk to a server.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::binrpc::{
    decode_body, encode_request, split_frame, BinRpcError, Decoded, PacketType, RecordKind,
    RecordReader,
};
use crate::ctl::CtlAddr;
use crate::rpc::{fmt_double, RpcValue};

/// Largest reply the client accepts (kamcmd stops at 128 KiB; we allow big dumps).
pub const MAX_CLIENT_REPLY: usize = 16 * 1024 * 1024;

/// Turns one command-line argument into a parameter the way kamcmd does: an integer becomes
/// INT, another number DOUBLE, anything else STR; `s:` forces a string (`s:1` is "1") and
/// `i:` forces an integer.
pub fn parse_arg(arg: &str) -> Result<RpcValue, String> {
    if let Some(s) = arg.strip_prefix("s:") {
        return Ok(RpcValue::Str(s.to_owned()));
    }
    if let Some(i) = arg.strip_prefix("i:") {
        return i
            .trim()
            .parse::<i32>()
            .map(RpcValue::Int)
            .map_err(|_| format!("bad integer: {arg}"));
    }
    if let Ok(i) = arg.trim_start().parse::<i32>() {
        return Ok(RpcValue::Int(i));
    }
    if looks_numeric(arg) {
        if let Ok(d) = arg.trim_start().parse::<f64>() {
            return Ok(RpcValue::Double(d));
        }
    }
    Ok(RpcValue::Str(arg.to_owned()))
}

/// Digits with an optional sign, point and exponent (Rust's float parser also takes "inf"
/// and "nan", which kamcmd users mean as text).
fn looks_numeric(s: &str) -> bool {
    let s = s.trim_start();
    !s.is_empty()
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
}

/// Client options (kamcmd's `-R`, `-D`, `-t`).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Reply socket path for `unixd:` (`-R`); default: `<dir>/sercmd_<pid>`.
    pub reply_socket: Option<PathBuf>,
    /// Directory for the `unixd:` reply socket (`-D`), default `/tmp`.
    pub reply_dir: PathBuf,
    /// How long to wait for a reply.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            reply_socket: None,
            reply_dir: "/tmp".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a call failed (a fault is not a failure: it is a [`Reply`] of kind `Fault`).
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, sending or receiving failed.
    Io(io::Error),
    /// The reply is not valid binrpc.
    Protocol(BinRpcError),
    /// The reply's cookie is not ours.
    CookieMismatch {
        /// Cookie sent.
        sent: u32,
        /// Cookie received.
        got: u32,
    },
    /// The peer sent a request instead of a reply.
    NotAReply,
    /// The reply is larger than [`MAX_CLIENT_REPLY`].
    ReplyTooBig,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Protocol(e) => write!(f, "while parsing the reply: {e}"),
            ClientError::CookieMismatch { sent, got } => {
                write!(
                    f,
                    "cookie does not match: sent {sent:08x}, received {got:08x}"
                )
            }
            ClientError::NotAReply => f.write_str("not a reply"),
            ClientError::ReplyTooBig => f.write_str("reply too big"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A received reply or fault, with its raw body (kept raw so it prints record by record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `Reply` or `Fault`.
    pub kind: PacketType,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// True for a fault.
    pub fn is_fault(&self) -> bool {
        self.kind == PacketType::Fault
    }

    /// The body as values.
    pub fn values(&self) -> Result<Vec<RpcValue>, BinRpcError> {
        decode_body(&self.body)
    }

    /// What kamcmd prints for this reply (`fmt` is a `-f` format, already unescaped).
    pub fn to_kamcmd_text(&self, fmt: Option<&str>) -> Result<String, BinRpcError> {
        if self.is_fault() {
            Ok(format!(
                "error: {}",
                format_body(&self.body, Some("%v - %v\n"))?
            ))
        } else {
            format_body(&self.body, fmt)
        }
    }
}

enum Conn {
    UnixStream(UnixStream),
    UnixDgram(UnixDatagram, PathBuf),
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A connection to a ctl server.
pub struct Client {
    conn: Conn,
    cookie: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Conn::UnixDgram(_, path) = &self.conn {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn initial_cookie() -> u32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: &CtlAddr, opts: &ClientOptions) -> io::Result<Client> {
        let conn = match addr {
            CtlAddr::UnixStream(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(opts.timeout))?;
                Conn::UnixStream(s)
            }
            CtlAddr::UnixDgram(p) => {
                let mine = opts.reply_socket.clone().unwrap_or_else(|| {
                    opts.reply_dir
                        .join(format!("sercmd_{}", std::process::id()))
                });
                let _ = std::fs::remove_file(&mine);
                let s = UnixDatagram::bind(&mine)?;
                let r = s
                    .connect(p)
                    .and_then(|_| s.set_read_timeout(Some(opts.timeout)));
                if let Err(e) = r {
                    let _ = std::fs::remove_file(&mine);
                    return Err(e);
                }
                Conn::UnixDgram(s, mine)
            }
            CtlAddr::Tcp { host, port } => {
                let s = TcpStream::connect(CtlAddr::socket_addr_string(host, *port))?;
                s.set_read_timeout(Some(opts.timeout))?;
                Conn::Tcp(s)
            }
            CtlAddr::Udp { host, port } => {
                let target = CtlAddr::socket_addr_string(host, *port);
                let local = if host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let s = UdpSocket::bind(local)?;
                s.connect(target)?;
                s.set_read_timeout(Some(opts.timeout))?;
                Conn::Udp(s)
            }
            CtlAddr::Fifo(_) | CtlAddr::Json(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "sercmd speaks binrpc, not FIFO or JSON-RPC",
                ))
            }
        };
        Ok(Client {
            conn,
            cookie: initial_cookie(),
        })
    }

    /// Sends `method(params)` and returns the reply or fault.
    pub fn call(&mut self, method: &str, params: &[RpcValue]) -> Result<Reply, ClientError> {
        self.cookie = self.cookie.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let cookie = self.cookie;
        let pkt = encode_request(method, params, cookie).map_err(ClientError::Protocol)?;
        let raw = match &mut self.conn {
            Conn::UnixStream(s) => {
                s.write_all(&pkt)?;
                read_stream(s)?
            }
            Conn::Tcp(s) => {
                s.write_all(&pkt)?;
                read_stream(s)?
            }
            Conn::UnixDgram(s, _) => {
                s.send(&pkt)?;
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                buf
            }
            Conn::Udp(s) => {
                s.send(&pkt)?;
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                buf
            }
        };
        let Decoded::Complete(frame, _) =
            split_frame(&raw, MAX_CLIENT_REPLY).map_err(ClientError::Protocol)?
        else {
            return Err(ClientError::Protocol(BinRpcError::BadMessage(
                "truncated reply",
            )));
        };
        if frame.header.cookie != cookie {
            return Err(ClientError::CookieMismatch {
                sent: cookie,
                got: frame.header.cookie,
            });
        }
        if frame.header.kind == PacketType::Request {
            return Err(ClientError::NotAReply);
        }
        Ok(Reply {
            kind: frame.header.kind,
            body: frame.body.to_vec(),
        })
    }
}

/// Reads exactly one packet from a stream.
fn read_stream(s: &mut impl Read) -> Result<Vec<u8>, ClientError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let want = match split_frame(&buf, MAX_CLIENT_REPLY) {
            Ok(Decoded::Complete(_, n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(Decoded::NeedMore(n)) => n,
            Err(BinRpcError::BodyTooLarge { .. }) => return Err(ClientError::ReplyTooBig),
            Err(e) => return Err(ClientError::Protocol(e)),
        };
        let take = want.min(chunk.len());
        let n = s.read(&mut chunk[..take])?;
        if n == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// kamcmd's `-f` format, split at its `%v` place holders (`%%` is a literal `%`).
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Value,
}

fn parse_format(fmt: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut it = fmt.chars().peekable();
    while let Some(c) = it.next() {
        match (c, it.peek()) {
            ('%', Some('v')) => {
                it.next();
                segs.push(Seg::Lit(std::mem::take(&mut lit)));
                segs.push(Seg::Value);
            }
            ('%', Some('%')) => {
                it.next();
                lit.push('%');
            }
            (c, _) => lit.push(c),
        }
    }
    segs.push(Seg::Lit(lit));
    segs.retain(|s| *s != Seg::Lit(String::new()));
    segs
}

/// kamcmd's `-f` unescaping: `\n`, `\r`, `\t`, `\\`.
pub fn unescape_format(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.peek() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                _ => {
                    out.push('\\');
                    continue;
                }
            }
            it.next();
        } else {
            out.push(c);
        }
    }
    out
}

struct Dbl(f64);
impl std::fmt::Display for Dbl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_double(self.0, f)
    }
}

/// One record the way kamcmd's `print_binrpc_val` prints it.
fn print_record(out: &mut String, name: Option<&[u8]>, kind: RecordKind<'_>, ident: usize) {
    out.extend(std::iter::repeat_n('\t', ident));
    if let Some(n) = name {
        let _ = write!(out, "{}: ", String::from_utf8_lossy(n));
    }
    let _ = match kind {
        RecordKind::Int(i) => write!(out, "{i}"),
        RecordKind::Str(s) | RecordKind::Bytes(s) => write!(out, "{}", String::from_utf8_lossy(s)),
        RecordKind::Double(d) => write!(out, "{}", Dbl(d)),
        RecordKind::StructStart => write!(out, "{{"),
        RecordKind::StructEnd => write!(out, "}}"),
        RecordKind::ArrayStart => write!(out, "["),
        RecordKind::ArrayEnd => write!(out, "]"),
    };
}

/// Prints a reply body as kamcmd does: without a format, one record per line indented by
/// nesting (struct members as `name: value` between `{` and `}`); with a format, each record
/// fills the next `%v`, the format repeating as needed.
pub fn format_body(body: &[u8], fmt: Option<&str>) -> Result<String, BinRpcError> {
    let mut out = String::new();
    let segs = fmt.map(parse_format);
    let has_values = segs.as_ref().is_some_and(|s| s.contains(&Seg::Value));
    let mut idx = 0;
    for rec in RecordReader::new(body) {
        if let Some(segs) = &segs {
            if has_values {
                loop {
                    if idx == segs.len() {
                        idx = 0;
                    }
                    idx += 1;
                    match &segs[idx - 1] {
                        Seg::Lit(l) => out.push_str(l),
                        Seg::Value => break,
                    }
                }
            } else {
                segs.iter().for_each(|s| {
                    if let Seg::Lit(l) = s {
                        out.push_str(l)
                    }
                });
            }
        }
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                if segs.is_some() {
                    out.push('\n');
                }
                return Err(e);
            }
        };
        if segs.is_some() {
            print_record(&mut out, rec.name, rec.kind, 0);
        } else {
            // kamcmd indents a struct's opening brace one level less than its members.
            let ident = match rec.kind {
                RecordKind::StructStart => rec.depth.saturating_sub(1),
                _ => rec.depth,
            };
            print_record(&mut out, rec.name, rec.kind, ident);
            out.push('\n');
        }
    }
    if let Some(segs) = &segs {
        if has_values && idx < segs.len() && idx > 0 {
            for s in &segs[idx..] {
                if let Seg::Lit(l) = s {
                    out.push_str(l);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binrpc::encode_reply;

    fn body(values: &[RpcValue]) -> Vec<u8> {
        let p = encode_reply(values, 1).unwrap();
        let Ok(Decoded::Complete(f, _)) = split_frame(&p, 1 << 20) else {
            panic!("bad")
        };
        f.body.to_vec()
    }

    #[test]
    fn kamcmd_argument_typing() {
        assert_eq!(parse_arg("12").unwrap(), RpcValue::Int(12));
        assert_eq!(parse_arg("-3").unwrap(), RpcValue::Int(-3));
        assert_eq!(parse_arg("1.5").unwrap(), RpcValue::Double(1.5));
        assert_eq!(parse_arg("s:1").unwrap(), RpcValue::from("1"));
        assert_eq!(parse_arg("i:7").unwrap(), RpcValue::Int(7));
        assert!(parse_arg("i:x").is_err());
        assert_eq!(parse_arg("abc").unwrap(), RpcValue::from("abc"));
        assert_eq!(parse_arg("inf").unwrap(), RpcValue::from("inf"));
        assert_eq!(
            parse_arg("sip:alice@x").unwrap(),
            RpcValue::from("sip:alice@x")
        );
    }

    #[test]
    fn prints_like_kamcmd() {
        let uptime = RpcValue::structure([
            ("now", RpcValue::from("Sun Nov 29")),
            ("uptime", RpcValue::Int(42)),
            ("sub", RpcValue::structure([("a", RpcValue::Double(1.5))])),
        ]);
        let text = format_body(&body(&[uptime]), None).unwrap();
        assert_eq!(
            text,
            "{\n\tnow: Sun Nov 29\n\tuptime: 42\n\tsub: {\n\t\ta: 1.500000\n\t}\n}\n"
        );
        let ps = [
            RpcValue::Int(1),
            RpcValue::from("main"),
            RpcValue::Int(2),
            RpcValue::from("udp"),
        ];
        assert_eq!(
            format_body(&body(&ps), Some("%v\t%v\n")).unwrap(),
            "1\tmain\n2\tudp\n"
        );
        assert_eq!(format_body(&body(&ps), None).unwrap(), "1\nmain\n2\nudp\n");
        assert_eq!(
            format_body(&body(&ps[..1]), Some("[%v] %v!\n")).unwrap(),
            "[1] !\n"
        );
        assert_eq!(
            format_body(&body(&ps[..1]), Some("100%% %v\n")).unwrap(),
            "100% 1\n"
        );
        let arr = [RpcValue::Array(vec![
            RpcValue::Int(1),
            RpcValue::Double(3.0),
        ])];
        assert_eq!(format_body(&body(&arr), None).unwrap(), "{\n\t1\n\t3\n}\n");
    }

    #[test]
    fn format_escapes() {
        assert_eq!(unescape_format("a\\tb\\n\\\\\\x"), "a\tb\n\\\\x");
    }
}
