//! DNS for SIP: our own resolver (UDP/TCP to the nameservers of
//! /etc/resolv.conf, /etc/hosts first), the shared-memory cache
//! (`use_dns_cache`), the destination blacklist (`use_dst_blacklist`), and
//! RFC 3263 target selection (NAPTR → SRV → A/AAAA) in one place,
//! [`resolve_sip`], used by `forward`, `t_relay` and reply routing.
//!
//! Settings are the `dns_*` core parameters; main fixes them with
//! [`configure`] (and creates the shm tables with [`attach_shm`]) before
//! forking, so every process resolves the same way.

pub mod blacklist;
pub mod cache;
pub mod resolver;
pub mod rpc;
pub mod sip;
pub mod wire;

use std::net::IpAddr;
use std::sync::OnceLock;

pub use sip::{resolve_sip, Target};
use wire::{Rdata, RrType};

/// `dns_cache_flags` bit: IPv4 only.
pub const FLAG_IPV4_ONLY: u32 = 1;
/// `dns_cache_flags` bit: IPv6 only.
pub const FLAG_IPV6_ONLY: u32 = 2;
/// `dns_cache_flags` bit: IPv6 addresses first.
pub const FLAG_PREFER_IPV6: u32 = 4;

/// The `dns_*` core parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `use_dns_cache`.
    pub use_cache: bool,
    /// `dns_cache_flags`.
    pub cache_flags: u32,
    /// `dns_try_ipv6`: ask for AAAA when there is no A record.
    pub try_ipv6: bool,
    /// `dns_try_naptr`: start with NAPTR when the transport is open.
    pub try_naptr: bool,
    /// `dns_srv_lb`: weighted random choice among equal SRV priorities.
    pub srv_lb: bool,
    /// `dns_udp_pref`, `dns_tcp_pref`, `dns_tls_pref`, `dns_sctp_pref`
    /// (higher wins among NAPTRs of one order; negative: never).
    pub prefs: [i32; 4],
    /// Query timing and search list.
    pub query: resolver::QueryOpts,
    /// `use_dns_failover`: a failed send tries the next DNS target.
    pub failover: bool,
}

impl Default for Config {
    fn default() -> Self {
        // Kamailio's defaults (3 for UDP, 2 TCP, 1 TLS, SCTP as TCP... its
        // numbers are 30/20/10/20)
        Config {
            use_cache: true,
            cache_flags: 0,
            try_ipv6: true,
            try_naptr: false,
            srv_lb: false,
            prefs: [30, 20, 10, 20],
            query: resolver::QueryOpts::default(),
            failover: false,
        }
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Fixes the settings (main, before forking; later calls are ignored).
pub fn configure(c: Config) {
    let _ = CONFIG.set(c);
}

/// The settings in force.
pub fn config() -> Config {
    CONFIG.get().cloned().unwrap_or_default()
}

/// Creates the shm cache (when `use_dns_cache`) and blacklist (when
/// `blacklist` is given): main, after shm is mapped, before forking.
pub fn attach_shm(
    cache: Option<cache::Limits>,
    bl: Option<blacklist::Settings>,
) -> Result<(), ser_shm::ShmError> {
    if let Some(l) = cache {
        cache::attach_shm(l)?;
    }
    if let Some(s) = bl {
        blacklist::attach_shm(s)?;
    }
    Ok(())
}

/// Periodic cleaning (the timer process): expired cache and blacklist
/// entries, each at its own `*_gc_interval`.
pub fn gc_tick() {
    cache::gc(cache::now(), true);
    blacklist::gc(blacklist::now_ms(), true);
}

/// How deep CNAME chains are followed.
const MAX_CNAME: usize = 8;

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name has no record of the type (NXDOMAIN, NODATA, negative
    /// cache entry).
    NotFound,
    /// The nameservers did not answer usefully.
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound => f.write_str("no such record"),
            LookupError::Failed(e) => write!(f, "DNS failure: {e}"),
        }
    }
}

/// The records of `name`/`ty`, following CNAMEs: from the cache, else from
/// the nameservers (answers cached, negatives too). A/AAAA names listed in
/// /etc/hosts are answered from there.
pub fn lookup(name: &str, ty: RrType) -> Result<Vec<Rdata>, LookupError> {
    let mut name = name.trim_end_matches('.').to_ascii_lowercase();
    let c = config();
    for _ in 0..MAX_CNAME {
        if matches!(ty, RrType::A | RrType::Aaaa) {
            let hosts: Vec<Rdata> = resolver::system_hosts(&name)
                .into_iter()
                .filter_map(|ip| match (ip, ty) {
                    (IpAddr::V4(a), RrType::A) => Some(Rdata::A(a)),
                    (IpAddr::V6(a), RrType::Aaaa) => Some(Rdata::Aaaa(a)),
                    _ => None,
                })
                .collect();
            if !hosts.is_empty() {
                return Ok(hosts);
            }
        }
        if c.use_cache {
            if let Some(e) = cache::get(&name, ty) {
                return if e.is_negative() {
                    Err(LookupError::NotFound)
                } else {
                    Ok(e.records)
                };
            }
            if ty != RrType::Cname {
                if let Some(e) = cache::get(&name, RrType::Cname) {
                    if let Some(Rdata::Cname(target)) = e.records.first() {
                        name = target.clone();
                        continue;
                    }
                }
            }
        }
        match ask(&c, &name, ty)? {
            Answer::Records(r) => return Ok(r),
            Answer::Alias(target) => name = target,
        }
    }
    Err(LookupError::Failed(format!(
        "CNAME chain too long at {name}"
    )))
}

enum Answer {
    Records(Vec<Rdata>),
    Alias(String),
}

/// One question to the nameservers (search list applied), its answer
/// cached.
fn ask(c: &Config, name: &str, ty: RrType) -> Result<Answer, LookupError> {
    let rc = resolver::ResolvConf::system();
    let mut last = LookupError::NotFound;
    for cand in resolver::candidates(&rc, &c.query, name) {
        let r = match resolver::query(&rc, &c.query, &cand, ty) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("dns: {cand} {}: {e}", ty.name());
                last = LookupError::Failed(e.to_string());
                continue;
            }
        };
        // follow CNAMEs within the answer
        let mut owner = cand.clone();
        let mut hops = 0;
        while let Some(rec) = r
            .answers
            .iter()
            .find(|a| a.name == owner && matches!(a.data, Rdata::Cname(_)) && ty != RrType::Cname)
        {
            let Rdata::Cname(t) = &rec.data else { break };
            remember(
                &owner,
                RrType::Cname,
                std::slice::from_ref(&rec.data),
                rec.ttl,
                0,
            );
            owner = t.clone();
            hops += 1;
            if hops > MAX_CNAME {
                break;
            }
        }
        let found: Vec<&wire::Record> = r
            .answers
            .iter()
            .filter(|a| a.name == owner && a.data.rr_type() == ty)
            .collect();
        if !found.is_empty() {
            let ttl = found.iter().map(|a| a.ttl).min().unwrap_or(0);
            let data: Vec<Rdata> = found.into_iter().map(|a| a.data.clone()).collect();
            remember(&owner, ty, &data, ttl, 0);
            return Ok(Answer::Records(data));
        }
        if owner != cand {
            // the alias's target was not in the answer: ask for it
            return Ok(Answer::Alias(owner));
        }
        // as Kamailio: dns_cache_negative_ttl, whatever the SOA says
        let neg = cache::limits().negative_ttl;
        if neg > 0 {
            remember(&cand, ty, &[], neg, cache::NEGATIVE);
        }
        last = LookupError::NotFound;
        if r.rcode == 0 && c.query.search_full_match {
            // the name exists: no point trying further suffixes
            break;
        }
    }
    Err(last)
}

fn remember(name: &str, ty: RrType, data: &[Rdata], ttl: u32, flags: u16) {
    if !config().use_cache || !cache::enabled() {
        return;
    }
    let ttl = if flags & cache::NEGATIVE != 0 {
        ttl
    } else {
        cache::clamp_ttl(ttl)
    };
    if let Err(e) = cache::put(name, ty, data, ttl, flags) {
        log::debug!("dns cache: {name} {}: {e}", ty.name());
    }
}

/// The addresses of `host` (an IP literal, /etc/hosts, A and — with
/// `dns_try_ipv6` — AAAA records), in the order `dns_cache_flags` asks.
pub fn addresses(host: &str) -> Result<Vec<IpAddr>, LookupError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let c = config();
    let want4 = c.cache_flags & FLAG_IPV6_ONLY == 0;
    let want6 =
        (c.try_ipv6 || c.cache_flags & FLAG_IPV6_ONLY != 0) && c.cache_flags & FLAG_IPV4_ONLY == 0;
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut err = LookupError::NotFound;
    if want4 {
        match lookup(bare, RrType::A) {
            Ok(r) => v4 = r,
            Err(e) => err = e,
        }
    }
    if want6 && (v4.is_empty() || c.cache_flags & FLAG_PREFER_IPV6 != 0) {
        match lookup(bare, RrType::Aaaa) {
            Ok(r) => v6 = r,
            Err(e) if v4.is_empty() && err == LookupError::NotFound => err = e,
            Err(_) => {}
        }
    }
    let ip = |r: Rdata| match r {
        Rdata::A(a) => Some(IpAddr::V4(a)),
        Rdata::Aaaa(a) => Some(IpAddr::V6(a)),
        _ => None,
    };
    let (first, second) = if c.cache_flags & FLAG_PREFER_IPV6 != 0 {
        (v6, v4)
    } else {
        (v4, v6)
    };
    let out: Vec<IpAddr> = first.into_iter().chain(second).filter_map(ip).collect();
    if out.is_empty() {
        Err(err)
    } else {
        Ok(out)
    }
}
