//! `permissions`: Kamailio's access control (replaces `modules/permissions`):
//! - `allow_source_address([group])` (default group 1), `allow_address(group,
//!   ip, port)`, `allow_source_address_group()` against the `address` table
//!   (`grp, ip_addr, mask, port`; port 0 = any);
//! - `allow_trusted([src_ip, proto])` against the `trusted` table (`src_ip,
//!   proto` (`any` or a transport), `from_pattern` / `ruri_pattern` regexes);
//! - `allow_routing([basename | allow_file, deny_file])` with Kamailio's
//!   allow/deny files ([`rules`]): allowed when the (From, R-URI) pair matches
//!   the allow file, else denied when it matches the deny file, else allowed.
//!
//! With `db_mode` 1 the tables are read once at start-up (in main, before
//! fork, so every process shares the copy); with 0 every call queries.

pub mod rules;

use std::net::IpAddr;
use std::sync::Arc;

use crate::db::{self, DbValue};
use crate::iface::{
    compile_regex, Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv,
    ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::transport::Proto;

use self::rules::Rules;

/// The `permissions` module.
pub struct Permissions;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", ""),
    ParamExport::int("db_mode", 0),
    ParamExport::str("address_table", "address"),
    ParamExport::str("trusted_table", "trusted"),
    ParamExport::str("default_allow_file", "permissions.allow"),
    ParamExport::str("default_deny_file", "permissions.deny"),
    ParamExport::str("allow_suffix", ".allow"),
    ParamExport::str("deny_suffix", ".deny"),
    // Kamailio 5: which tables to load (1 address, 2 trusted, ...); both
    // tables are always available here, so it has no effect.
    ParamExport::int("load_backends", 0xFFFF),
];

const REQ: RouteMask = RouteMask::REQUEST_LIKE;

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "allow_routing",
        min_args: 0,
        max_args: 2,
        routes: REQ,
        fixup: fixup_allow_routing,
    },
    FunctionExport {
        name: "allow_source_address",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_allow_source_address,
    },
    FunctionExport {
        name: "allow_address",
        min_args: 3,
        max_args: 3,
        routes: RouteMask::ANY,
        fixup: fixup_allow_address,
    },
    FunctionExport {
        name: "allow_source_address_group",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_source_group,
    },
    FunctionExport {
        name: "allow_trusted",
        min_args: 0,
        max_args: 2,
        routes: REQ,
        fixup: fixup_allow_trusted,
    },
];

/// One `address` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Group.
    pub grp: i64,
    /// Network address.
    pub ip: IpAddr,
    /// Prefix length.
    pub mask: u8,
    /// Port (0 = any).
    pub port: u16,
}

impl Address {
    /// Whether `ip:port` is inside this entry.
    pub fn contains(&self, ip: IpAddr, port: u16) -> bool {
        if self.port != 0 && self.port != port {
            return false;
        }
        let ip = match (self.ip, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.ip, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => prefix_eq(&a.octets(), &b.octets(), self.mask),
            (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(&a.octets(), &b.octets(), self.mask),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits).min(a.len() * 8);
    let (full, rest) = (bits / 8, bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) & (0xffu8 << (8 - rest)) == 0
}

/// One `trusted` row.
#[derive(Debug, Clone)]
pub struct Trusted {
    src_ip: String,
    proto: String,
    from: Option<regex::Regex>,
    ruri: Option<regex::Regex>,
}

/// The tables, cached (db_mode 1) or read per call.
struct Source {
    url: String,
    address_table: String,
    trusted_table: String,
    cache: Option<(Vec<Address>, Vec<Trusted>)>,
}

impl Source {
    fn addresses(&self) -> Result<Vec<Address>, String> {
        match &self.cache {
            Some((a, _)) => Ok(a.clone()),
            None => load_addresses(&self.url, &self.address_table),
        }
    }

    fn trusted(&self) -> Result<Vec<Trusted>, String> {
        match &self.cache {
            Some((_, t)) => Ok(t.clone()),
            None => load_trusted(&self.url, &self.trusted_table),
        }
    }
}

fn load_addresses(url: &str, table: &str) -> Result<Vec<Address>, String> {
    let rows = db::with(url, |c| {
        c.query(table, &["grp", "ip_addr", "mask", "port"], &[], None)
    })
    .map_err(|e| format!("permissions: {table}: {e}"))?;
    let mut out = Vec::new();
    for r in rows {
        let ip_text = r[1].as_str();
        let Ok(ip) = ip_text.trim().parse::<IpAddr>() else {
            log::warn!("permissions: {table}: `{ip_text}` is not an IP address, skipped");
            continue;
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let mask = match r[2].as_int() {
            m if (0..=max).contains(&m) => m as u8,
            _ => max as u8,
        };
        out.push(Address {
            grp: r[0].as_int(),
            ip,
            mask,
            port: u16::try_from(r[3].as_int()).unwrap_or(0),
        });
    }
    Ok(out)
}

fn opt_regex(v: &DbValue) -> Result<Option<regex::Regex>, String> {
    let s = v.as_str();
    if v.is_null() || s.is_empty() {
        return Ok(None);
    }
    compile_regex(&s, true).map(Some)
}

fn load_trusted(url: &str, table: &str) -> Result<Vec<Trusted>, String> {
    let rows = db::with(url, |c| {
        c.query(
            table,
            &["src_ip", "proto", "from_pattern", "ruri_pattern"],
            &[],
            None,
        )
    })
    .map_err(|e| format!("permissions: {table}: {e}"))?;
    let mut out = Vec::new();
    for r in rows {
        match (opt_regex(&r[2]), opt_regex(&r[3])) {
            (Ok(from), Ok(ruri)) => out.push(Trusted {
                src_ip: r[0].as_str().trim().to_owned(),
                proto: r[1].as_str().trim().to_ascii_lowercase(),
                from,
                ruri,
            }),
            (Err(e), _) | (_, Err(e)) => log::warn!("permissions: {table}: {e}, row skipped"),
        }
    }
    Ok(out)
}

fn source(env: &ModuleEnv) -> Result<Arc<Source>, FixupError> {
    if let Some(s) = env
        .state
        .get()
        .and_then(|s| s.downcast_ref::<Arc<Source>>())
    {
        return Ok(s.clone());
    }
    let s = Arc::new(Source {
        url: env.str("db_url"),
        address_table: env.str("address_table"),
        trusted_table: env.str("trusted_table"),
        cache: None,
    });
    for t in [&s.address_table, &s.trusted_table] {
        db::ident(t).map_err(|e| FixupError::call(e.to_string()))?;
    }
    Ok(s)
}

/// Shared slot the handlers read: `init` fills it (db_mode 1 cache).
type Slot = Arc<std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>>;

fn current(slot: &Slot, fallback: &Arc<Source>) -> Arc<Source> {
    slot.get()
        .and_then(|s| s.downcast_ref::<Arc<Source>>())
        .cloned()
        .unwrap_or_else(|| fallback.clone())
}

impl Module for Permissions {
    fn name(&self) -> &'static str {
        "permissions"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let url = env.str("db_url");
        let address_table = env.str("address_table");
        let trusted_table = env.str("trusted_table");
        let cache = if env.int("db_mode") == 1 && !url.is_empty() {
            Some((
                load_addresses(&url, &address_table)?,
                load_trusted(&url, &trusted_table)?,
            ))
        } else {
            None
        };
        let _ = env.state.set(Box::new(Arc::new(Source {
            url,
            address_table,
            trusted_table,
            cache,
        })));
        Ok(())
    }
}

fn need_db(fx: &FixupCtx<'_>, what: &str) -> Result<(), FixupError> {
    if fx.module.str("db_url").is_empty() {
        return Err(FixupError::call(format!(
            "{what} needs modparam(\"permissions\", \"db_url\", ...)"
        )));
    }
    Ok(())
}

fn address_check(
    fx: &FixupCtx<'_>,
    group: Option<Format>,
    ip: Option<Format>,
    port: Option<Format>,
) -> Result<Handler, FixupError> {
    need_db(fx, "address matching")?;
    let fallback = source(fx.module)?;
    let slot = fx.module.state.clone();
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        let grp = group
            .as_ref()
            .map_or(1, |g| ctx.render(g).trim().parse().unwrap_or(-1));
        let ip = match &ip {
            Some(f) => match ctx.render(f).trim().parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return Flow::False,
            },
            None => ctx.src.ip(),
        };
        let port = port.as_ref().map_or(ctx.src.port(), |p| {
            ctx.render(p).trim().parse().unwrap_or(0)
        });
        match current(&slot, &fallback).addresses() {
            Ok(list) => Flow::from_bool(list.iter().any(|a| a.grp == grp && a.contains(ip, port))),
            Err(e) => {
                log::error!("{e}");
                Flow::Code(-1)
            }
        }
    }))
}

fn fixup_allow_source_address(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let group = if a.is_empty() {
        None
    } else {
        Some(fx.format_arg(a, 0)?)
    };
    address_check(fx, group, None, None)
}

fn fixup_allow_address(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    address_check(
        fx,
        Some(fx.format_arg(a, 0)?),
        Some(fx.format_arg(a, 1)?),
        Some(fx.format_arg(a, 2)?),
    )
}

/// The group of the source address as the return code (-1 none).
fn fixup_source_group(fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    need_db(fx, "allow_source_address_group")?;
    let fallback = source(fx.module)?;
    let slot = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        match current(&slot, &fallback).addresses() {
            Ok(list) => list
                .iter()
                .find(|a| a.contains(ctx.src.ip(), ctx.src.port()))
                .map_or(Flow::Code(-1), |a| Flow::Code(a.grp as i32)),
            Err(e) => {
                log::error!("{e}");
                Flow::Code(-1)
            }
        }
    }))
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
        Proto::Tls => "tls",
        Proto::Sctp => "sctp",
    }
}

fn fixup_allow_trusted(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    need_db(fx, "allow_trusted")?;
    if a.len() == 1 {
        return Err(FixupError::call(
            "allow_trusted takes 0 or 2 arguments (src_ip, proto)",
        ));
    }
    let args = if a.len() == 2 {
        Some((fx.format_arg(a, 0)?, fx.format_arg(a, 1)?))
    } else {
        None
    };
    let fallback = source(fx.module)?;
    let slot = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let (ip, proto) = match &args {
            Some((i, p)) => (ctx.render(i), ctx.render(p).to_ascii_lowercase()),
            None => (ctx.src.ip().to_string(), proto_name(ctx.proto).to_owned()),
        };
        let from = ctx.from_uri().unwrap_or_default();
        let ruri = ctx.ruri().unwrap_or_default();
        match current(&slot, &fallback).trusted() {
            Ok(list) => Flow::from_bool(list.iter().any(|t| {
                t.src_ip == ip
                    && (t.proto == "any" || t.proto == proto)
                    && t.from.as_ref().is_none_or(|r| r.is_match(&from))
                    && t.ruri.as_ref().is_none_or(|r| r.is_match(&ruri))
            })),
            Err(e) => {
                log::error!("{e}");
                Flow::Code(-1)
            }
        }
    }))
}

/// `allow_routing()`, `allow_routing("basename")`, `allow_routing(allow, deny)`:
/// the files are read at fixup (start-up).
fn fixup_allow_routing(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (allow, deny) = match a.len() {
        0 => (
            fx.module.str("default_allow_file"),
            fx.module.str("default_deny_file"),
        ),
        1 => {
            let base = fx.str_arg(a, 0)?;
            (
                format!("{base}{}", fx.module.str("allow_suffix")),
                format!("{base}{}", fx.module.str("deny_suffix")),
            )
        }
        _ => (fx.str_arg(a, 0)?, fx.str_arg(a, 1)?),
    };
    let allow = Rules::load(&allow).map_err(FixupError::call)?;
    let deny = Rules::load(&deny).map_err(FixupError::call)?;
    Ok(Box::new(move |ctx| {
        let from = ctx.from_uri().unwrap_or_default();
        let ruri = ctx.ruri().unwrap_or_default();
        if allow.matches(&from, &ruri) {
            return Flow::True;
        }
        Flow::from_bool(!deny.matches(&from, &ruri))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let a = Address {
            grp: 1,
            ip: "10.1.0.0".parse().unwrap(),
            mask: 16,
            port: 0,
        };
        assert!(a.contains("10.1.200.3".parse().unwrap(), 5060));
        assert!(!a.contains("10.2.0.1".parse().unwrap(), 5060));
        assert!(a.contains("::ffff:10.1.0.9".parse().unwrap(), 1));
        let b = Address {
            grp: 1,
            ip: "192.168.1.5".parse().unwrap(),
            mask: 32,
            port: 5060,
        };
        assert!(b.contains("192.168.1.5".parse().unwrap(), 5060));
        assert!(!b.contains("192.168.1.5".parse().unwrap(), 5070));
        let c = Address {
            grp: 2,
            ip: "2001:db8::".parse().unwrap(),
            mask: 33,
            port: 0,
        };
        assert!(c.contains("2001:db8:7fff::1".parse().unwrap(), 1));
        assert!(!c.contains("2001:db8:8000::1".parse().unwrap(), 1));
    }
}
