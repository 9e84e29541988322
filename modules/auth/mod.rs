//! `auth`: digest authentication core (replaces SER/Kamailio `modules/auth`):
//! challenges (`www_challenge`, `proxy_challenge`), `consume_credentials`,
//! nonces with a secret and expiry, and the credential check that `auth_db`
//! runs once it has the user's HA1 or password ([`verify`]).

pub mod digest;
pub mod nonce;

use ser_sip::{Auth, Header, HeaderName};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::AvpRef;
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::value::Value;
use digest::Alg;

/// The `auth` module.
pub struct AuthModule;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("secret", ""),
    ParamExport::int("nonce_expire", 30),
    ParamExport::str("algorithm", "MD5"),
    ParamExport::int("qop", 0),
];

const R: RouteMask = RouteMask::REQUEST.or(RouteMask::FAILURE);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "www_challenge",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_www_challenge,
    },
    FunctionExport {
        name: "proxy_challenge",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_proxy_challenge,
    },
    FunctionExport {
        name: "auth_challenge",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_auth_challenge,
    },
    FunctionExport {
        name: "consume_credentials",
        min_args: 0,
        max_args: 0,
        routes: R,
        fixup: fixup_consume,
    },
    FunctionExport {
        name: "has_credentials",
        min_args: 1,
        max_args: 1,
        routes: R,
        fixup: fixup_has_credentials,
    },
];

impl Module for AuthModule {
    fn name(&self) -> &'static str {
        "auth"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let secret = match env.str("secret") {
            s if s.is_empty() => nonce::random_secret(),
            s => s.into_bytes(),
        };
        let expire = env.int("nonce_expire");
        if expire <= 0 {
            return Err(format!("nonce_expire must be positive, got {expire}"));
        }
        parse_algorithms(&env.str("algorithm"))?;
        nonce::init(nonce::NonceCfg {
            secret,
            expire: expire as u64,
        })
    }
}

/// WWW (registrar, 401) or Proxy (407) authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Authorization` / `WWW-Authenticate`, 401.
    Www,
    /// `Proxy-Authorization` / `Proxy-Authenticate`, 407.
    Proxy,
}

impl Kind {
    fn credentials_header(self) -> HeaderName {
        match self {
            Kind::Www => HeaderName::Authorization,
            Kind::Proxy => HeaderName::ProxyAuthorization,
        }
    }
    fn challenge_header(self) -> &'static str {
        match self {
            Kind::Www => "WWW-Authenticate",
            Kind::Proxy => "Proxy-Authenticate",
        }
    }
    fn reply(self) -> (u16, &'static str) {
        match self {
            Kind::Www => (401, "Unauthorized"),
            Kind::Proxy => (407, "Proxy Authentication Required"),
        }
    }
}

/// Result of an authorization attempt (Kamailio's return codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// 1: authenticated.
    Ok,
    /// -1: generic error (bad credentials, DB failure, ...).
    Error,
    /// -2: wrong password.
    InvalidPassword,
    /// -3: no such user.
    UnknownUser,
    /// -4: the nonce expired (or is not ours any more).
    StaleNonce,
    /// -5: no credentials for this realm.
    NoCredentials,
    /// -6: the nonce-count was seen already.
    NonceReused,
    /// -8: the authenticated user is not the From/To user (`auth_check`).
    UserMismatch,
}

impl AuthResult {
    /// The script return code.
    pub fn code(self) -> i32 {
        match self {
            AuthResult::Ok => 1,
            AuthResult::Error => -1,
            AuthResult::InvalidPassword => -2,
            AuthResult::UnknownUser => -3,
            AuthResult::StaleNonce => -4,
            AuthResult::NoCredentials => -5,
            AuthResult::NonceReused => -6,
            AuthResult::UserMismatch => -8,
        }
    }

    /// As a script flow.
    pub fn flow(self) -> Flow {
        Flow::from_int(self.code())
    }
}

// Per-message notes from authorize to challenge / consume_credentials.
// Keys no script variable can spell.
const STALE_KEY: &str = "\u{0}auth.stale";
const USED_KEY: &str = "\u{0}auth.hdr";

/// Parsed digest credentials (quotes removed).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm` (absent: MD5).
    pub algorithm: String,
    /// `cnonce`.
    pub cnonce: String,
    /// `qop`.
    pub qop: String,
    /// `nc`.
    pub nc: String,
    /// Index of the header in the message.
    pub index: usize,
}

fn unq(ctx: &MsgCtx<'_>, s: Option<ser_sip::Span>) -> String {
    s.map(|s| ctx.text(s).trim().trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// The credentials for `realm` of this kind, if any (`Err` if malformed).
pub fn find_credentials(
    ctx: &MsgCtx<'_>,
    kind: Kind,
    realm: &str,
) -> Option<Result<Credentials, String>> {
    let name = kind.credentials_header();
    let heads: Vec<(usize, &Header)> = ctx
        .msg
        .headers()
        .iter()
        .enumerate()
        .filter(|(_, h)| h.name == name)
        .collect();
    let mut malformed = None;
    for (index, h) in heads {
        let a: &Auth = match ctx.msg.parsed(h) {
            Ok(ser_sip::HeaderValue::Auth(a)) => a,
            _ => {
                malformed = Some(Err("unparsable credentials".to_owned()));
                continue;
            }
        };
        if !ctx.text(a.scheme).eq_ignore_ascii_case("Digest") {
            continue;
        }
        let c = Credentials {
            username: unq(ctx, a.username),
            realm: unq(ctx, a.realm),
            nonce: unq(ctx, a.nonce),
            uri: unq(ctx, a.uri),
            response: unq(ctx, a.response),
            algorithm: unq(ctx, a.algorithm),
            cnonce: unq(ctx, a.cnonce),
            qop: unq(ctx, a.qop),
            nc: unq(ctx, a.nc),
            index,
        };
        if c.realm != realm {
            continue;
        }
        if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() || c.uri.is_empty()
        {
            return Some(Err(
                "credentials lack username, nonce, uri or response".into()
            ));
        }
        if !c.qop.is_empty() && (c.cnonce.is_empty() || c.nc.is_empty()) {
            return Some(Err("qop without cnonce/nc".into()));
        }
        return Some(Ok(c));
    }
    malformed
}

/// The realm of a call: the rendered argument, or the To (www) / From
/// (proxy) host when it is empty, as SER does.
pub fn realm_of(ctx: &MsgCtx<'_>, f: &Format, kind: Kind) -> String {
    // A lone unset variable (`$fd.digest_realm` without domain attributes)
    // is empty, not its printed form.
    let r = match f.pieces.as_slice() {
        [crate::runtime::format::Piece::Pv(pv)] => {
            let v = ctx.get_pv(pv);
            if v.is_null() {
                String::new()
            } else {
                v.as_str().into_owned()
            }
        }
        _ => ctx.render(f),
    };
    if !r.is_empty() {
        return r;
    }
    let uri = match kind {
        Kind::Www => ctx.to_uri(),
        Kind::Proxy => ctx.from_uri(),
    };
    uri.and_then(|u| {
        ser_sip::parse_uri(u.as_bytes())
            .ok()
            .map(|p| String::from_utf8_lossy(p.host.of(u.as_bytes())).into_owned())
    })
    .unwrap_or_default()
}

/// Checks the nonce of `c` (marking the message for a `stale=true` challenge
/// when it is expired, foreign or replayed).
pub fn check_nonce(ctx: &mut MsgCtx<'_>, c: &Credentials) -> Result<(), AuthResult> {
    let cfg = nonce::cfg();
    let nc = (!c.qop.is_empty()).then_some(c.nc.as_str());
    match nonce::check(&cfg, &c.nonce, nc, crate::usrloc::now()) {
        Ok(()) => Ok(()),
        Err(e) => {
            ctx.vars.insert(STALE_KEY.to_owned(), Value::Int(1));
            log::info!("auth: nonce of `{}` refused: {e:?}", c.username);
            Err(match e {
                nonce::NonceError::Reused => AuthResult::NonceReused,
                _ => AuthResult::StaleNonce,
            })
        }
    }
}

/// What the subscriber store gave for a user.
pub enum Secret {
    /// Plain-text password (`calculate_ha1`).
    Password(String),
    /// Stored HA1 (MD5 of user:realm:password).
    Ha1(String),
}

/// Checks the response of `c` against the user's secret; on success notes
/// the header for `consume_credentials`.
pub fn verify(ctx: &mut MsgCtx<'_>, c: &Credentials, secret: &Secret) -> AuthResult {
    let Some(alg) = Alg::parse(&c.algorithm) else {
        log::info!("auth: unsupported algorithm `{}`", c.algorithm);
        return AuthResult::Error;
    };
    let ha1 = match secret {
        Secret::Password(p) => digest::ha1(alg, &c.username, &c.realm, p),
        Secret::Ha1(h) if h.len() == alg.hex_len() => h.to_ascii_lowercase(),
        Secret::Ha1(_) => {
            log::info!("auth: stored HA1 does not fit algorithm {}", alg.name());
            return AuthResult::InvalidPassword;
        }
    };
    let method = ctx.method().to_owned();
    let body = ctx.msg.body().to_vec();
    let expected = digest::response(
        alg, &ha1, &c.nonce, &c.nc, &c.cnonce, &c.qop, &method, &c.uri, &body,
    );
    if digest::hex_eq(&expected, &c.response) {
        ctx.vars
            .insert(USED_KEY.to_owned(), Value::Int(c.index as i64));
        AuthResult::Ok
    } else {
        AuthResult::InvalidPassword
    }
}

/// The `algorithm` modparam: one algorithm or a list in order of
/// preference (`"SHA-256, MD5"`: RFC 7616 §3.7, one challenge each).
pub fn parse_algorithms(s: &str) -> Result<Vec<Alg>, String> {
    let mut v = Vec::new();
    for a in s.split([',', ' ']).filter(|a| !a.trim().is_empty()) {
        v.push(Alg::parse(a).ok_or_else(|| {
            format!("unsupported algorithm `{a}` (MD5, MD5-sess, SHA-256, SHA-256-sess)")
        })?);
    }
    if v.is_empty() {
        v.push(Alg::Md5);
    }
    Ok(v)
}

/// The challenge header line(s) (with CRLF) for `realm`: one per
/// algorithm, sharing one nonce.
pub fn challenge_header(
    ctx: &MsgCtx<'_>,
    kind: Kind,
    realm: &str,
    qop: bool,
    algs: &[Alg],
) -> String {
    let cfg = nonce::cfg();
    let n = nonce::generate(&cfg, crate::usrloc::now());
    let stale = ctx.vars.get(STALE_KEY).is_some_and(|v| v.as_int() == 1);
    let mut out = String::new();
    for alg in algs {
        out.push_str(&format!(
            "{}: Digest realm=\"{}\", nonce=\"{n}\"",
            kind.challenge_header(),
            realm.replace('"', "")
        ));
        if qop {
            out.push_str(", qop=\"auth\"");
        }
        if stale {
            out.push_str(", stale=true");
        }
        out.push_str(&format!(", algorithm={}\r\n", alg.name()));
    }
    out
}

/// Send a 401/407 with a fresh challenge.
pub fn challenge(ctx: &mut MsgCtx<'_>, kind: Kind, realm: &str, qop: bool, algs: &[Alg]) -> Flow {
    let h = challenge_header(ctx, kind, realm, qop, algs);
    let (code, reason) = kind.reply();
    let keep = ctx.reply_headers.len();
    ctx.reply_headers.push(h);
    let f = crate::sl::send_reply(ctx, code, reason);
    ctx.reply_headers.truncate(keep);
    if f == Flow::True {
        Flow::True
    } else {
        Flow::Code(-1)
    }
}

/// Sets `$digest_challenge` (SER 3.0 `www_authenticate` failure path).
pub fn set_challenge_avp(ctx: &mut MsgCtx<'_>, kind: Kind, realm: &str) {
    let h = challenge_header(ctx, kind, realm, true, &[Alg::Md5]);
    ctx.avps
        .assign(&AvpRef::named("digest_challenge"), Value::Str(h));
}

fn alg_param(env: &ModuleEnv) -> Result<Vec<Alg>, FixupError> {
    parse_algorithms(&env.str("algorithm")).map_err(FixupError::call)
}

fn fixup_challenge(fx: &FixupCtx<'_>, args: &[Arg], kind: Kind) -> Result<Handler, FixupError> {
    let realm = fx.format_arg(args, 0)?;
    // Second argument: qop flags ("0" none, "1" qop=auth; Kamailio flag bits).
    let flags = if args.len() > 1 {
        fx.int_arg(args, 1)?
    } else {
        fx.module.int("qop")
    };
    let qop = flags & 3 != 0;
    let algs = alg_param(fx.module)?;
    Ok(Box::new(move |ctx| {
        let r = realm_of(ctx, &realm, kind);
        challenge(ctx, kind, &r, qop, &algs)
    }))
}

fn fixup_www_challenge(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_challenge(fx, args, Kind::Www)
}

fn fixup_proxy_challenge(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_challenge(fx, args, Kind::Proxy)
}

/// Kamailio's `auth_challenge(realm, flags)`: 401 for REGISTER, else 407.
fn fixup_auth_challenge(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let www = fixup_challenge(fx, args, Kind::Www)?;
    let proxy = fixup_challenge(fx, args, Kind::Proxy)?;
    Ok(Box::new(move |ctx| {
        if ctx.method().eq_ignore_ascii_case("REGISTER") {
            www(ctx)
        } else {
            proxy(ctx)
        }
    }))
}

fn fixup_consume(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        let Some(i) = ctx.vars.get(USED_KEY).map(Value::as_int) else {
            log::info!("auth: consume_credentials: no authorized credentials");
            return Flow::False;
        };
        let Some(h) = usize::try_from(i)
            .ok()
            .and_then(|i| ctx.msg.headers().get(i))
            .cloned()
        else {
            return Flow::False;
        };
        ctx.lumps.remove_header(&ctx.msg, &h);
        ctx.vars.remove(USED_KEY);
        Flow::True
    }))
}

fn fixup_has_credentials(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let realm = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        let r = ctx.render(&realm);
        let any = [Kind::Www, Kind::Proxy]
            .iter()
            .any(|k| find_credentials(ctx, *k, &r).is_some());
        Flow::from_bool(any)
    }))
}
