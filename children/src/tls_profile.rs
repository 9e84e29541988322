//! TLS profiles (the `tls` module's parameters and Kamailio's tls.cfg) and
//! the rustls configurations built from them before the fork.
//!
//! A server listen address gets one rustls `ServerConfig`: its nameless
//! profile (`[server:IP:PORT]`, else `[server:default]`) decides versions
//! and client verification, and a certificate resolver picks the chain by
//! the ClientHello's SNI among the address's `server_name` profiles
//! (Kamailio's SNI callback switching the domain), falling back to the
//! nameless profile's certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};

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

/// How a profile's `server_name` matches the ClientHello's SNI (Kamailio's
/// `server_name_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMode {
    /// 0: the name exactly.
    #[default]
    Exact,
    /// 1: the domain and its subdomains.
    DomainAndSubdomains,
    /// 2: subdomains only.
    Subdomains,
}

impl NameMode {
    fn matches(self, name: &str, sni: &str) -> bool {
        let sub = || {
            sni.len() > name.len()
                && sni[sni.len() - name.len()..].eq_ignore_ascii_case(name)
                && sni.as_bytes()[sni.len() - name.len() - 1] == b'.'
        };
        match self {
            NameMode::Exact => sni.eq_ignore_ascii_case(name),
            NameMode::DomainAndSubdomains => sni.eq_ignore_ascii_case(name) || sub(),
            NameMode::Subdomains => sub(),
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
    /// `server_name`: a server profile answers ClientHellos with this SNI;
    /// a client profile sends it (and checks it); default the IP.
    pub server_name: Option<String>,
    /// `server_name_mode`.
    pub name_mode: NameMode,
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
            "server_name_mode" => {
                self.name_mode = match value.trim() {
                    "0" | "" => NameMode::Exact,
                    "1" => NameMode::DomainAndSubdomains,
                    "2" => NameMode::Subdomains,
                    v => return Err(format!("server_name_mode: '{v}' is not 0, 1 or 2")),
                }
            }
            // accepted, nothing to do with rustls
            "verify_depth" | "crl" | "ca_path" | "server_id" | "verify_client" => {}
            other => return Err(format!("unknown tls parameter '{other}'")),
        }
        Ok(())
    }

    /// Makes relative file names relative to `dir` (Kamailio: a name
    /// starting with `/` is absolute, with `.` relative to the working
    /// directory, anything else relative to the main config file's
    /// directory).
    pub fn resolve_paths(&mut self, dir: &Path) {
        for p in [
            &mut self.certificate,
            &mut self.private_key,
            &mut self.ca_list,
        ]
        .into_iter()
        .flatten()
        {
            *p = resolve_path(p, dir);
        }
    }
}

/// Kamailio's rule for the file names of the tls module (see
/// [`Profile::resolve_paths`]).
pub fn resolve_path(p: &Path, dir: &Path) -> PathBuf {
    if p.is_absolute() || p.starts_with(".") || p.starts_with("..") || dir.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        dir.join(p)
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

/// One tls.cfg section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Where it applies.
    pub scope: Scope,
    /// Its settings.
    pub profile: Profile,
    /// The line of its `[...]` header (0: the module parameters).
    pub line: usize,
}

/// Parses a tls.cfg (Kamailio's ini-style profile file): `[server:default]`,
/// `[client:default]`, `[server:IP:PORT]`, `[client:IP:PORT]` sections of
/// `key = value` lines; `#` starts a comment. Sections start from `base`.
/// Errors read `line N: ...`.
pub fn parse_tls_cfg(text: &str, base: &Profile) -> Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
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
            out.push(Section {
                scope,
                profile: base.clone(),
                line: n + 1,
            });
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected key = value, got '{line}'")))?;
        let v = v.trim().trim_matches('"');
        let sec = out
            .last_mut()
            .ok_or_else(|| at("key outside of a section".into()))?;
        sec.profile.set(k.trim(), v).map_err(at)?;
    }
    Ok(out)
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
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

fn load_key(p: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read_file("private_key", p)?)
        .map_err(|e| format!("tls private_key {}: {e}", p.display()))
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

/// A server profile's certificate chain and key, checked to match.
fn certified_key(p: &Profile) -> Result<Arc<CertifiedKey>, String> {
    let cert = p
        .certificate
        .as_deref()
        .ok_or("tls: no certificate for a server profile")?;
    let key = p
        .private_key
        .as_deref()
        .ok_or("tls: no private_key for a server profile")?;
    CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider())
        .map(Arc::new)
        .map_err(|e| format!("tls certificate/private_key: {e}"))
}

/// A `server_name` profile's name, mode and certificate.
type Named = (String, NameMode, Arc<CertifiedKey>);

/// Picks the certificate by SNI; `fallback` for no or an unknown name.
#[derive(Debug)]
struct SniResolver {
    named: Vec<Named>,
    fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|sni| {
            self.named
                .iter()
                .find(|(name, mode, _)| mode.matches(name, sni))
        });
        if let (Some(sni), Some((name, _, _))) = (hello.server_name(), chosen) {
            log::debug!("tls: SNI {sni}: certificate of server_name {name}");
        }
        Some(chosen.map_or(&self.fallback, |(_, _, k)| k).clone())
    }
}

/// Builds a server profile: certificate and key are required.
pub fn server_config(p: &Profile) -> Result<ServerConfig, String> {
    server_config_sni(p, Vec::new())
}

/// A server profile `p` whose certificate is replaced by one of `named`'s
/// when the ClientHello's SNI matches its `server_name`.
fn server_config_sni(p: &Profile, named: Vec<Named>) -> Result<ServerConfig, String> {
    warn_ciphers(p);
    let fallback = certified_key(p)?;
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
    Ok(builder.with_cert_resolver(Arc::new(SniResolver { named, fallback })))
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
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(load_certs(c)?, load_key(k)?)
            .map_err(|e| format!("tls client certificate: {e}")),
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

/// Every profile built: what [`crate::tls::configure`] keeps for the
/// children.
pub(crate) struct Built {
    pub server_default: Option<Arc<ServerConfig>>,
    pub servers: HashMap<SocketAddr, Arc<ServerConfig>>,
    pub client_default: Arc<ClientConfig>,
    pub clients: HashMap<SocketAddr, Arc<ClientConfig>>,
    pub client_names: HashMap<SocketAddr, String>,
    pub summary: Vec<String>,
}

/// Builds the rustls configurations from `sections` (module parameters
/// first, then the tls.cfg's). `origin` names the tls.cfg for errors
/// (`file:line: ...`). `tls_listen`: the bound TLS sockets; one without a
/// profile of its own needs the default server profile.
pub(crate) fn build(
    sections: &[Section],
    origin: &str,
    tls_listen: &[SocketAddr],
) -> Result<Built, String> {
    let at = |s: &Section, e: String| match s.line {
        0 => format!("tls: {e}"),
        n => format!("{origin}:{n}: {e}"),
    };
    let mut built = Built {
        server_default: None,
        servers: HashMap::new(),
        client_default: Arc::new(client_config(&Profile::default())?),
        clients: HashMap::new(),
        client_names: HashMap::new(),
        summary: Vec::new(),
    };
    let describe = |what: String, p: &Profile| {
        format!(
            "{what}: method={:?} certificate={} verify={} require={}{}",
            p.method,
            p.certificate
                .as_deref()
                .map_or("-".into(), |c| c.display().to_string()),
            p.verify,
            p.require,
            p.server_name
                .as_deref()
                .map_or(String::new(), |n| format!(" server_name={n}")),
        )
    };
    // The nameless profile of each server scope (the last one wins) and
    // the named ones, by scope.
    let mut nameless: HashMap<&Scope, &Section> = HashMap::new();
    let mut named: HashMap<&Scope, Vec<Named>> = HashMap::new();
    let mut first_named: HashMap<&Scope, &Section> = HashMap::new();
    for s in sections {
        match &s.scope {
            Scope::ServerDefault | Scope::Server(_) => match &s.profile.server_name {
                Some(name) => {
                    let key = certified_key(&s.profile).map_err(|e| at(s, e))?;
                    named.entry(&s.scope).or_default().push((
                        name.clone(),
                        s.profile.name_mode,
                        key,
                    ));
                    first_named.entry(&s.scope).or_insert(s);
                    built
                        .summary
                        .push(describe(scope_name(&s.scope), &s.profile));
                }
                None => {
                    nameless.insert(&s.scope, s);
                }
            },
            Scope::ClientDefault => {
                built.client_default = Arc::new(client_config(&s.profile).map_err(|e| at(s, e))?);
                built
                    .summary
                    .push(describe("client:default".into(), &s.profile));
            }
            Scope::Client(a) => {
                let cfg = client_config(&s.profile).map_err(|e| at(s, e))?;
                built.clients.insert(*a, Arc::new(cfg));
                if let Some(n) = &s.profile.server_name {
                    built.client_names.insert(*a, n.clone());
                }
                built
                    .summary
                    .push(describe(format!("client:{a}"), &s.profile));
            }
        }
    }
    let need_default = tls_listen.iter().any(|a| {
        let own = Scope::Server(*a);
        !nameless.contains_key(&own) && !named.contains_key(&own)
    });
    let default_scope = Scope::ServerDefault;
    let default_base = nameless.get(&default_scope).copied();
    let mut scopes: Vec<&Scope> = nameless.keys().chain(named.keys()).copied().collect();
    scopes.sort_by_key(|s| scope_name(s));
    scopes.dedup();
    for scope in scopes {
        // versions and verification: the scope's nameless profile, else
        // the default one, else its first named one
        let Some(base) = nameless
            .get(scope)
            .copied()
            .or(default_base.filter(|s| s.profile.certificate.is_some()))
            .or_else(|| first_named.get(scope).copied())
        else {
            continue;
        };
        let is_default = *scope == Scope::ServerDefault;
        if is_default
            && base.profile.certificate.is_none()
            && !need_default
            && !named.contains_key(scope)
        {
            // module parameters without a certificate: no server side
            continue;
        }
        let names = named.get(scope).cloned().unwrap_or_default();
        let cfg = server_config_sni(&base.profile, names).map_err(|e| at(base, e))?;
        if nameless.get(scope).is_some_and(|s| std::ptr::eq(*s, base)) {
            built
                .summary
                .push(describe(scope_name(scope), &base.profile));
        }
        match scope {
            Scope::Server(a) => {
                built.servers.insert(*a, Arc::new(cfg));
            }
            _ => built.server_default = Some(Arc::new(cfg)),
        }
    }
    if need_default && built.server_default.is_none() {
        // only per-address profiles: an unlisted address still needs one
        let base = Profile::default();
        return Err(at(
            &Section {
                scope: Scope::ServerDefault,
                profile: base,
                line: 0,
            },
            "no certificate for the default server profile (certificate, private_key)".into(),
        ));
    }
    Ok(built)
}

fn scope_name(s: &Scope) -> String {
    match s {
        Scope::ServerDefault => "server:default".into(),
        Scope::ClientDefault => "client:default".into(),
        Scope::Server(a) => format!("server:{a}"),
        Scope::Client(a) => format!("client:{a}"),
    }
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
                    ca_list = \"/ca.pem\"\nserver_name = a.test\nserver_name_mode = 1\n";
        let got = parse_tls_cfg(text, &Profile::default()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].scope, Scope::ServerDefault);
        assert_eq!(got[0].line, 2);
        let p0 = &got[0].profile;
        assert_eq!(p0.certificate.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(got[1].scope, Scope::ClientDefault);
        assert_eq!(
            got[2].scope,
            Scope::Server("127.0.0.1:5061".parse().unwrap())
        );
        let p2 = &got[2].profile;
        assert!(p2.verify && p2.require);
        assert_eq!(p2.ca_list.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(p2.server_name.as_deref(), Some("a.test"));
        assert_eq!(p2.name_mode, NameMode::DomainAndSubdomains);
        let any = parse_tls_cfg("[client:any]\nmethod = TLSv1.3\n", &Profile::default());
        assert_eq!(any.unwrap()[0].scope, Scope::ClientDefault);
        for (bad, line) in [
            ("key = 1\n", 1),
            ("\n[server:x]\n", 2),
            ("[server:default\n", 1),
            ("[server:default]\n\nfoo=1\n", 3),
            ("[server:default]\nserver_name_mode = 7\n", 2),
        ] {
            let e = parse_tls_cfg(bad, &Profile::default()).unwrap_err();
            assert!(e.starts_with(&format!("line {line}:")), "{bad}: {e}");
        }
    }

    #[test]
    fn relative_paths_follow_the_config_dir() {
        let dir = Path::new("/etc/ser");
        assert_eq!(resolve_path(Path::new("/a.pem"), dir), Path::new("/a.pem"));
        assert_eq!(
            resolve_path(Path::new("tls/a.pem"), dir),
            Path::new("/etc/ser/tls/a.pem")
        );
        assert_eq!(
            resolve_path(Path::new("./a.pem"), dir),
            Path::new("./a.pem")
        );
        assert_eq!(
            resolve_path(Path::new("../a.pem"), dir),
            Path::new("../a.pem")
        );
        let mut p = Profile::default();
        p.set("certificate", "c.pem").unwrap();
        p.set("ca_list", "/ca.pem").unwrap();
        p.resolve_paths(dir);
        assert_eq!(p.certificate.as_deref(), Some(Path::new("/etc/ser/c.pem")));
        assert_eq!(p.ca_list.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(p.private_key, None);
    }

    #[test]
    fn sni_name_modes() {
        assert!(NameMode::Exact.matches("a.test", "A.test"));
        assert!(!NameMode::Exact.matches("a.test", "x.a.test"));
        assert!(NameMode::DomainAndSubdomains.matches("a.test", "a.test"));
        assert!(NameMode::DomainAndSubdomains.matches("a.test", "x.a.test"));
        assert!(!NameMode::DomainAndSubdomains.matches("a.test", "xa.test"));
        assert!(NameMode::Subdomains.matches("a.test", "x.a.test"));
        assert!(!NameMode::Subdomains.matches("a.test", "a.test"));
    }

    #[test]
    fn server_profile_needs_a_certificate() {
        assert!(server_config(&Profile::default()).is_err());
        assert!(client_config(&Profile::default()).is_ok());
        let s = Section {
            scope: Scope::Server("127.0.0.1:5061".parse().unwrap()),
            profile: Profile {
                certificate: Some("/nonexistent/c.pem".into()),
                private_key: Some("/nonexistent/k.pem".into()),
                ..Profile::default()
            },
            line: 7,
        };
        let e = build(&[s], "/x/tls.cfg", &[]).err().unwrap();
        assert!(
            e.starts_with("/x/tls.cfg:7: tls certificate /nonexistent/c.pem"),
            "{e}"
        );
        let e = build(&[], "-", &["127.0.0.1:5061".parse().unwrap()])
            .err()
            .unwrap();
        assert!(
            e.contains("no certificate for the default server profile"),
            "{e}"
        );
    }
}
