//! TLS over the TCP machinery (SER/Kamailio's `tls` module transport), on
//! rustls with the `ring` provider.
//!
//! Profiles (certificate, key, CA list, verification, method) are built in
//! main before the fork ([`configure`]); every child inherits them. A TLS
//! connection lives in the TCP worker that accepted or opened it: its rustls
//! state machine is driven from the worker's poll loop (non-blocking, so a
//! stalled handshake ties up nothing but its own slot, and it is closed after
//! the handshake timeout). Each process keeps a table of the TLS connections
//! it holds, by peer and alias, so replies and forwards to a peer go out on
//! its connection, as for TCP ([`crate::tcp_conn`]). A process that is not a
//! TCP worker (a UDP receiver, the timer) opens its own client connection,
//! handshakes within the connect timeout and keeps it for sending.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, Connection, DigitallySignedStruct, RootCertStore, ServerConfig};

/// Kamailio's default `tls_handshake_timeout` (seconds... it has 30; a
/// stalled client should not hold a slot that long).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `tls_method`: which protocol versions a profile speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `SSLv23`, `TLSv1+`, `TLSv1.2+`...: every version rustls supports.
    #[default]
    Any,
    /// `TLSv1.2`: only 1.2.
    Tls12,
    /// `TLSv1.3`, `TLSv1.3+`: only 1.3.
    Tls13,
}

impl Method {
    /// Parses Kamailio's `tls_method` values. Versions rustls does not
    /// speak (SSLv3, TLSv1, TLSv1.1 alone) are an error.
    pub fn parse(s: &str) -> Result<Method, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "" | "SSLV23" | "TLSV1+" | "TLSV1.1+" | "TLSV1.2+" | "DEFAULT" | "ANY" => {
                Ok(Method::Any)
            }
            "TLSV1.2" => Ok(Method::Tls12),
            "TLSV1.3" | "TLSV1.3+" => Ok(Method::Tls13),
            other => Err(format!(
                "tls_method {other} is not supported (rustls speaks TLSv1.2 and TLSv1.3)"
            )),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static ANY: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static V12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static V13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            Method::Any => ANY,
            Method::Tls12 => V12,
            Method::Tls13 => V13,
        }
    }
}

/// One profile's settings (the tls module parameters, or a tls.cfg section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// `tls_method`.
    pub method: Method,
    /// `certificate`: PEM chain.
    pub certificate: Option<PathBuf>,
    /// `private_key`: PEM key.
    pub private_key: Option<PathBuf>,
    /// `ca_list`: PEM CA certificates to verify peers with.
    pub ca_list: Option<PathBuf>,
    /// `verify_certificate`.
    pub verify: bool,
    /// `require_certificate`.
    pub require: bool,
    /// `cipher_list` (OpenSSL syntax; rustls has its own fixed safe set).
    pub cipher_list: String,
    /// `server_name` (client side: SNI and name checked; default the IP).
    pub server_name: Option<String>,
}

impl Profile {
    /// Sets one key as Kamailio spells it; unknown keys are an error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let path = || (!value.is_empty()).then(|| PathBuf::from(value));
        let flag = || match value.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" => Ok(true),
            "0" | "no" | "off" | "false" => Ok(false),
            _ => Err(format!("{key}: bad boolean '{value}'")),
        };
        match key {
            "method" | "tls_method" => self.method = Method::parse(value)?,
            "certificate" => self.certificate = path(),
            "private_key" => self.private_key = path(),
            "ca_list" => self.ca_list = path(),
            "verify_certificate" => self.verify = flag()?,
            "require_certificate" => self.require = flag()?,
            "cipher_list" => self.cipher_list = value.to_string(),
            "server_name" => self.server_name = (!value.is_empty()).then(|| value.to_string()),
            // accepted, nothing to do with rustls
            "verify_depth" | "crl" | "ca_path" | "server_id" | "server_name_mode"
            | "verify_client" => {}
            other => return Err(format!("unknown tls parameter '{other}'")),
        }
        Ok(())
    }
}

/// Where a tls.cfg section applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `[server:default]`.
    ServerDefault,
    /// `[client:default]`.
    ClientDefault,
    /// `[server:IP:PORT]`.
    Server(SocketAddr),
    /// `[client:IP:PORT]`.
    Client(SocketAddr),
}

/// Parses a tls.cfg (Kamailio's ini-style profile file): `[server:default]`,
/// `[client:default]`, `[server:IP:PORT]`, `[client:IP:PORT]` sections of
/// `key = value` lines; `#` starts a comment. Sections start from `base`.
pub fn parse_tls_cfg(text: &str, base: &Profile) -> Result<Vec<(Scope, Profile)>, String> {
    let mut out: Vec<(Scope, Profile)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        if let Some(sec) = line.strip_prefix('[') {
            let sec = sec
                .strip_suffix(']')
                .ok_or_else(|| at("missing ']'".into()))?;
            let (kind, addr) = sec
                .split_once(':')
                .ok_or_else(|| at(format!("bad section [{sec}]")))?;
            let scope = match (kind.trim(), addr.trim()) {
                // `any` is Kamailio's name for the profile of any address
                ("server", "default" | "any") => Scope::ServerDefault,
                ("client", "default" | "any") => Scope::ClientDefault,
                (k, a) => {
                    let a = a
                        .parse::<SocketAddr>()
                        .map_err(|_| at(format!("bad address '{a}' (IP:PORT, [IPv6]:PORT)")))?;
                    match k {
                        "server" => Scope::Server(a),
                        "client" => Scope::Client(a),
                        _ => return Err(at(format!("bad section [{sec}]"))),
                    }
                }
            };
            out.push((scope, base.clone()));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected key = value, got '{line}'")))?;
        let v = v.trim().trim_matches('"');
        let (_, profile) = out
            .last_mut()
            .ok_or_else(|| at("key outside of a section".into()))?;
        profile.set(k.trim(), v).map_err(at)?;
    }
    Ok(out)
}

/// The built profiles, inherited by every child.
pub struct Profiles {
    server_default: Option<Arc<ServerConfig>>,
    servers: HashMap<SocketAddr, Arc<ServerConfig>>,
    client_default: Arc<ClientConfig>,
    clients: HashMap<SocketAddr, Arc<ClientConfig>>,
    client_names: HashMap<SocketAddr, String>,
    /// What `tls.info` and logs say about the profiles.
    pub summary: Vec<String>,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Connect + handshake timeout for outgoing connections.
    pub connect_timeout: Duration,
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiles")
            .field("summary", &self.summary)
            .finish()
    }
}

static PROFILES: OnceLock<Profiles> = OnceLock::new();

fn provider() -> Arc<CryptoProvider> {
    Arc::new(provider::default_provider())
}

fn read_file(what: &str, p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("tls {what} {}: {e}", p.display()))
}

fn load_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file("certificate", p)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls certificate {}: {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls certificate {}: no PEM certificate",
            p.display()
        ));
    }
    Ok(certs)
}

fn load_roots(p: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(p)? {
        roots
            .add(c)
            .map_err(|e| format!("tls ca_list {}: {e}", p.display()))?;
    }
    Ok(roots)
}

fn warn_ciphers(p: &Profile) {
    if !p.cipher_list.is_empty() {
        log::warn!(
            "tls: cipher_list '{}' ignored: rustls uses its own set of safe cipher suites",
            p.cipher_list
        );
    }
}

/// Builds a server profile: certificate and key are required.
pub fn server_config(p: &Profile) -> Result<ServerConfig, String> {
    warn_ciphers(p);
    let cert = p
        .certificate
        .as_deref()
        .ok_or("tls: no certificate for a server profile")?;
    let key_path = p
        .private_key
        .as_deref()
        .ok_or("tls: no private_key for a server profile")?;
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read_file("private_key", key_path)?)
        .map_err(|e| format!("tls private_key {}: {e}", key_path.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(p.method.versions())
        .map_err(|e| format!("tls_method: {e}"))?;
    let builder = if p.verify || p.require {
        let ca = p
            .ca_list
            .as_deref()
            .ok_or("tls: verify_certificate/require_certificate need a ca_list")?;
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider());
        let v = if p.require {
            v
        } else {
            v.allow_unauthenticated()
        };
        builder.with_client_cert_verifier(v.build().map_err(|e| format!("tls ca_list: {e}"))?)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls certificate/private_key: {e}"))
}

/// Builds a client profile. Without `verify_certificate` the server's
/// certificate is not checked (Kamailio's default).
pub fn client_config(p: &Profile) -> Result<ClientConfig, String> {
    warn_ciphers(p);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(p.method.versions())
        .map_err(|e| format!("tls_method: {e}"))?;
    let builder = if p.verify {
        let ca = p
            .ca_list
            .as_deref()
            .ok_or("tls: verify_certificate needs a ca_list")?;
        builder.with_root_certificates(load_roots(ca)?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    match (&p.certificate, &p.private_key) {
        (Some(c), Some(k)) => {
            let key = PrivateKeyDer::from_pem_slice(&read_file("private_key", k)?)
                .map_err(|e| format!("tls private_key {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(load_certs(c)?, key)
                .map_err(|e| format!("tls client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate (client profiles without
/// `verify_certificate`), still checking the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            msg,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            msg,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds every profile from the module parameters (`base`) and an optional
/// tls.cfg; main calls it once before forking. `need_server`: a TLS socket
/// is bound, so a default server profile must load.
pub fn configure(
    base: &Profile,
    tls_cfg: Option<&Path>,
    need_server: bool,
    handshake_timeout: Duration,
) -> Result<(), String> {
    let mut sections = vec![
        (Scope::ServerDefault, base.clone()),
        (Scope::ClientDefault, base.clone()),
    ];
    if let Some(f) = tls_cfg {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("tls config {}: {e}", f.display()))?;
        let parsed = parse_tls_cfg(&text, &Profile::default())
            .map_err(|e| format!("tls config {}: {e}", f.display()))?;
        // a section in the file replaces the module parameters' defaults
        for (scope, p) in parsed {
            sections.retain(|(s, _)| *s != scope);
            sections.push((scope, p));
        }
    }
    let mut profiles = Profiles {
        server_default: None,
        servers: HashMap::new(),
        client_default: Arc::new(client_config(&Profile::default())?),
        clients: HashMap::new(),
        client_names: HashMap::new(),
        summary: Vec::new(),
        handshake_timeout,
        connect_timeout: crate::tcp_conn::DEFAULT_CONNECT_TIMEOUT,
    };
    for (scope, p) in &sections {
        let describe = |what: &str| {
            format!(
                "{what}: method={:?} certificate={} verify={} require={}",
                p.method,
                p.certificate
                    .as_deref()
                    .map_or("-".into(), |c| c.display().to_string()),
                p.verify,
                p.require
            )
        };
        match scope {
            Scope::ServerDefault => {
                if p.certificate.is_some() || need_server {
                    profiles.server_default = Some(Arc::new(server_config(p)?));
                    profiles.summary.push(describe("server:default"));
                }
            }
            Scope::Server(a) => {
                profiles.servers.insert(*a, Arc::new(server_config(p)?));
                profiles.summary.push(describe(&format!("server:{a}")));
            }
            Scope::ClientDefault => {
                profiles.client_default = Arc::new(client_config(p)?);
                profiles.summary.push(describe("client:default"));
            }
            Scope::Client(a) => {
                profiles.clients.insert(*a, Arc::new(client_config(p)?));
                if let Some(n) = &p.server_name {
                    profiles.client_names.insert(*a, n.clone());
                }
                profiles.summary.push(describe(&format!("client:{a}")));
            }
        }
    }
    PROFILES
        .set(profiles)
        .map_err(|_| "tls configured twice".to_string())
}

/// The profiles, once [`configure`]d.
pub fn profiles() -> Option<&'static Profiles> {
    PROFILES.get()
}

/// A new server-side session for a connection accepted on `local`.
pub fn accept(local: SocketAddr) -> Option<Connection> {
    let p = PROFILES.get()?;
    let cfg = p.servers.get(&local).or(p.server_default.as_ref())?;
    match rustls::ServerConnection::new(cfg.clone()) {
        Ok(c) => Some(c.into()),
        Err(e) => {
            log::error!("tls: new server session: {e}");
            None
        }
    }
}

/// A TLS connection this process holds.
pub struct TlsConn {
    /// The TCP connection under it.
    pub stream: Arc<TcpStream>,
    /// The session; one process, so the lock is never contended.
    pub session: Mutex<Connection>,
    /// The peer.
    pub peer: SocketAddr,
    /// When it was accepted/opened (handshake timeout).
    pub started: Instant,
}

impl TlsConn {
    /// Wraps an accepted or opened stream.
    pub fn new(stream: Arc<TcpStream>, session: Connection, peer: SocketAddr) -> TlsConn {
        TlsConn {
            stream,
            session: Mutex::new(session),
            peer,
            started: Instant::now(),
        }
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Still handshaking.
    pub fn handshaking(&self) -> bool {
        self.session().is_handshaking()
    }

    /// Reads what the socket has (non-blocking), appending plaintext to
    /// `out`; answers the handshake. False when the connection is finished
    /// (EOF, error, TLS alert or garbage).
    pub fn read_into(&self, out: &mut Vec<u8>, chunk: &mut [u8]) -> bool {
        let mut s = self.session();
        loop {
            match s.read_tls(&mut &*self.stream) {
                Ok(0) => return false,
                Ok(_) => {
                    if let Err(e) = s.process_new_packets() {
                        log::info!("tls: {} : {e}; closing", self.peer);
                        // tell the peer why (an alert), best effort
                        let _ = flush(&mut s, &self.stream, Duration::from_millis(100));
                        return false;
                    }
                    loop {
                        match s.reader().read(chunk) {
                            Ok(0) => return false, // close_notify
                            Ok(n) => out.extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => return false,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        flush(&mut s, &self.stream, crate::tcp_conn::SEND_TIMEOUT).is_ok()
    }

    /// Encrypts and sends one whole message (bounded by the send timeout).
    pub fn send(&self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.session();
        s.writer().write_all(buf)?;
        flush(&mut s, &self.stream, crate::tcp_conn::SEND_TIMEOUT)
    }

    /// The negotiated version and cipher suite, for `tls.list`.
    pub fn describe(&self) -> (String, String) {
        let s = self.session();
        (
            s.protocol_version()
                .map_or("-".into(), |v| format!("{v:?}")),
            s.negotiated_cipher_suite()
                .map_or("-".into(), |c| format!("{:?}", c.suite())),
        )
    }
}

/// Writes the session's pending records, waiting for room within `limit`.
fn flush(s: &mut Connection, stream: &TcpStream, limit: Duration) -> io::Result<()> {
    let end = Instant::now() + limit;
    while s.wants_write() {
        match s.write_tls(&mut &*stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(ErrorKind::TimedOut, "tls send timed out"));
                }
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Default)]
struct Table {
    by_peer: HashMap<SocketAddr, Arc<TlsConn>>,
    aliases: HashMap<SocketAddr, SocketAddr>,
    /// Opened by this worker, not yet polled by its loop.
    fresh: Vec<Arc<TlsConn>>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Table::default))
}

/// Registers a connection this worker reads.
pub(crate) fn register(c: Arc<TlsConn>) {
    with_table(|t| {
        t.by_peer.insert(c.peer, c);
    });
}

/// Forgets a connection and shuts it down (after a close_notify).
pub(crate) fn unregister(c: &TlsConn) {
    {
        let mut s = c.session();
        if !s.is_handshaking() {
            s.send_close_notify();
            let _ = flush(&mut s, &c.stream, Duration::from_millis(50));
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    with_table(|t| {
        if t.by_peer
            .get(&c.peer)
            .is_some_and(|e| Arc::ptr_eq(&e.stream, &c.stream))
        {
            t.by_peer.remove(&c.peer);
        }
        t.aliases.retain(|_, p| *p != c.peer);
    });
}

pub(crate) fn take_fresh() -> Vec<Arc<TlsConn>> {
    with_table(|t| std::mem::take(&mut t.fresh))
}

/// `alias` (a Via sent-by) names the connection from `peer`.
pub fn add_alias(alias: SocketAddr, peer: SocketAddr) {
    if alias != peer {
        with_table(|t| {
            if t.by_peer.contains_key(&peer) {
                t.aliases.insert(alias, peer);
            }
        });
    }
}

fn lookup(dst: SocketAddr) -> Option<Arc<TlsConn>> {
    with_table(|t| {
        let peer = if t.by_peer.contains_key(&dst) {
            dst
        } else {
            *t.aliases.get(&dst)?
        };
        t.by_peer.get(&peer).cloned()
    })
}

/// `(peer, version, cipher)` of the connections this process holds.
pub fn list() -> Vec<(SocketAddr, String, String)> {
    let conns: Vec<Arc<TlsConn>> = with_table(|t| t.by_peer.values().cloned().collect());
    conns
        .iter()
        .map(|c| {
            let (v, s) = c.describe();
            (c.peer, v, s)
        })
        .collect()
}

/// Sends one whole SIP message to `dst` over TLS: on the connection this
/// process holds to it, else on a new client connection (handshake bounded
/// by the connect timeout).
pub fn send(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let p = PROFILES.get().ok_or_else(|| {
        io::Error::new(
            ErrorKind::Unsupported,
            "tls is not enabled (enable_tls, loadmodule \"tls\")",
        )
    })?;
    if !crate::tcp_conn::is_worker() && lookup(dst).is_none() && crate::tls_relay::available() {
        // the session lives in a TCP worker (crate::tls_relay)
        return crate::tls_relay::send(dst, buf);
    }
    if let Some(c) = lookup(dst) {
        match c.send(buf) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::debug!("tls: connection to {dst} failed ({e}); reconnecting");
                unregister(&c);
            }
        }
    }
    if crate::tcp_conn::is_worker() {
        // The worker's poll loop drives the handshake (a slow server ties
        // up nothing); rustls sends the message once it is done.
        let c = Arc::new(start_client(p, dst)?);
        c.send(buf)?;
        register(c.clone());
        with_table(|t| t.fresh.push(c));
        return Ok(());
    }
    let c = Arc::new(connect(p, dst)?);
    c.send(buf)?;
    register(c);
    Ok(())
}

/// Sends on a connection this process holds to `dst`, if any.
pub(crate) fn send_if_held(dst: SocketAddr, buf: &[u8]) -> bool {
    let Some(c) = lookup(dst) else { return false };
    match c.send(buf) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("tls: connection to {dst} failed ({e})");
            unregister(&c);
            false
        }
    }
}

/// Opens a TCP connection to `dst` and starts a client session on it (the
/// ClientHello is queued, not yet sent).
fn start_client(p: &Profiles, dst: SocketAddr) -> io::Result<TlsConn> {
    let cfg = p.clients.get(&dst).unwrap_or(&p.client_default).clone();
    let name = match p.client_names.get(&dst) {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?,
        None => ServerName::IpAddress(dst.ip().into()),
    };
    let session = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
    let stream = TcpStream::connect_timeout(&dst, p.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    stream.set_nonblocking(true)?;
    Ok(TlsConn::new(Arc::new(stream), session.into(), dst))
}

/// Opens a client connection to `dst` and completes the handshake (a
/// process without a poll loop to drive it).
fn connect(p: &Profiles, dst: SocketAddr) -> io::Result<TlsConn> {
    let end = Instant::now() + p.connect_timeout;
    let c = start_client(p, dst)?;
    let mut scratch = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        {
            let mut s = c.session();
            flush(&mut s, &c.stream, p.connect_timeout)?;
            if !s.is_handshaking() {
                break;
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "tls handshake timed out",
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !c.read_into(&mut scratch, &mut chunk) {
            return Err(io::Error::new(
                ErrorKind::ConnectionAborted,
                format!("tls handshake with {dst} failed"),
            ));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(Method::parse("SSLv23").unwrap(), Method::Any);
        assert_eq!(Method::parse("TLSv1.2+").unwrap(), Method::Any);
        assert_eq!(Method::parse("TLSv1.2").unwrap(), Method::Tls12);
        assert_eq!(Method::parse("tlsv1.3").unwrap(), Method::Tls13);
        assert!(Method::parse("SSLv3").is_err());
    }

    #[test]
    fn tls_cfg_sections() {
        let text = "# profiles\n[server:default]\nmethod = TLSv1.2+\ncertificate = /c.pem\n\
                    private_key = /k.pem\n\n[client:default]\nverify_certificate = no\n\
                    [server:127.0.0.1:5061]\nverify_certificate = 1\nrequire_certificate = yes\n\
                    ca_list = \"/ca.pem\"\n";
        let got = parse_tls_cfg(text, &Profile::default()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, Scope::ServerDefault);
        assert_eq!(got[0].1.certificate.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(got[1].0, Scope::ClientDefault);
        assert_eq!(got[2].0, Scope::Server("127.0.0.1:5061".parse().unwrap()));
        assert!(got[2].1.verify && got[2].1.require);
        assert_eq!(got[2].1.ca_list.as_deref(), Some(Path::new("/ca.pem")));
        let any = parse_tls_cfg("[client:any]\nmethod = TLSv1.3\n", &Profile::default());
        assert_eq!(any.unwrap()[0].0, Scope::ClientDefault);
        for bad in [
            "key = 1\n",
            "[server:x]\n",
            "[server:default\n",
            "[server:default]\nfoo=1\n",
        ] {
            assert!(parse_tls_cfg(bad, &Profile::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_profile_needs_a_certificate() {
        assert!(server_config(&Profile::default()).is_err());
        assert!(client_config(&Profile::default()).is_ok());
    }
}
