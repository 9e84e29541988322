//! `pike`: per-source-IP flood detection (replaces Kamailio `modules/pike`,
//! SER's `pike`).
//!
//! Every request's source address is counted in a table in shared memory,
//! so all SIP workers see the same counts. Time is cut into units of
//! `sampling_time_unit` seconds; an address that sends more than
//! `reqs_density_per_unit` requests in a unit is a flood source and stays
//! blocked as long as it keeps exceeding the density in the current or the
//! previous unit. An address not seen for `remove_latency` seconds is
//! forgotten by the timer.
//!
//! `pike_check_req()` returns (as Kamailio):
//! * `1`: not flooding (also when the table is full or not ready: pike
//!   fails open),
//! * `-1`: a flood source detected before and still flooding,
//! * `-2`: newly detected as a flood source (logged once).
//!
//! `pike_check_ip(addr)` does the same for an address given as text (e.g.
//! from an X-Forwarded-For header or `$si` behind a load balancer); an
//! address that does not parse is refused with `-3` and logged.
//!
//! RPC `pike.top`: the addresses being tracked, blocked ones marked.

use std::any::Any;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ser_fifo::{RpcCtx, RpcRegistry, RpcValue};
use ser_shm::{hash, HashTable, ShmBox};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;

/// The `pike` module.
pub struct Pike;

/// Buckets of the shared table (addresses hash into them).
const BUCKETS: usize = 1024;

/// Entries kept per bucket at most: beyond that new addresses are not
/// tracked (fail open) rather than eating shared memory.
const MAX_PER_BUCKET: usize = 64;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("sampling_time_unit", 2),
    ParamExport::int("reqs_density_per_unit", 30),
    ParamExport::int("remove_latency", 120),
    ParamExport::int("pike_log_level", 1),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "pike_check_req",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_check,
    },
    FunctionExport {
        name: "pike_check_ip",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_check_ip,
    },
];

/// One tracked address: (address as IPv6 bytes, last seen ms, start of the
/// current unit ms, hits in the current unit, hits in the previous unit,
/// blocked 0/1).
type Entry = ([u8; 16], u64, u64, u32, u32, u32);

/// The settings and the shared table, made by `init` in main.
pub struct PikeState {
    table: &'static HashTable<Entry>,
    /// All processes inherit this instant: their clocks agree.
    base: Instant,
    unit_ms: u64,
    density: u32,
    latency_ms: u64,
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the limit (or not tracked).
    Ok,
    /// Over the limit for the first time: `-2`.
    NewFlood,
    /// Still over the limit: `-1`.
    Flooding,
}

impl Verdict {
    /// The script return code (Kamailio's).
    pub fn code(self) -> i32 {
        match self {
            Verdict::Ok => 1,
            Verdict::Flooding => -1,
            Verdict::NewFlood => -2,
        }
    }
}

fn key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl PikeState {
    /// A table in shm with the given limits (`init`, in main before fork).
    pub fn new(unit: Duration, density: u32, latency: Duration) -> Result<PikeState, String> {
        let e = |e: ser_shm::ShmError| format!("pike: {e}");
        let table: &'static HashTable<Entry> =
            ShmBox::leak(ShmBox::new(HashTable::new(BUCKETS).map_err(e)?).map_err(e)?);
        ser_shm::register_table("pike", table);
        Ok(PikeState {
            table,
            base: Instant::now(),
            unit_ms: (unit.as_millis() as u64).max(1),
            density,
            latency_ms: latency.as_millis() as u64,
        })
    }

    fn now_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Counts one request from `ip` at `at`.
    pub fn check(&self, ip: IpAddr, at: Instant) -> Verdict {
        let now = self.now_ms(at);
        let k = key(ip);
        let mut b = self.table.bucket(hash(&[&k]));
        let e = match b.iter().position(|e| e.0 == k) {
            Some(i) => &mut b[i],
            None => {
                if b.len() >= MAX_PER_BUCKET || b.push((k, now, now, 0, 0, 0)).is_err() {
                    return Verdict::Ok;
                }
                let last = b.len() - 1;
                &mut b[last]
            }
        };
        // Roll the units: one unit later the current count becomes the
        // previous one; two or more later both are stale.
        let elapsed = now.saturating_sub(e.2);
        if elapsed >= 2 * self.unit_ms {
            e.3 = 0;
            e.4 = 0;
            e.2 = now;
        } else if elapsed >= self.unit_ms {
            e.4 = e.3;
            e.3 = 0;
            e.2 += self.unit_ms;
        }
        e.1 = now;
        e.3 = e.3.saturating_add(1);
        let over = e.3 > self.density || (e.5 != 0 && e.4 > self.density);
        match (over, e.5 != 0) {
            (false, _) => {
                e.5 = 0;
                Verdict::Ok
            }
            (true, true) => Verdict::Flooding,
            (true, false) => {
                e.5 = 1;
                Verdict::NewFlood
            }
        }
    }

    /// Forgets addresses idle for longer than `remove_latency` (timer).
    pub fn expire(&self, at: Instant) {
        let now = self.now_ms(at);
        for b in self.table.buckets() {
            b.lock()
                .retain(|e| now.saturating_sub(e.1) <= self.latency_ms);
        }
    }

    /// Tracked addresses: (address, hits in the current unit, blocked).
    pub fn top(&self) -> Vec<(IpAddr, u32, bool)> {
        let mut out = Vec::new();
        for b in self.table.buckets() {
            for e in b.lock().iter() {
                let v6 = Ipv6Addr::from(e.0);
                let ip = v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6));
                out.push((ip, e.3, e.5 != 0));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        out
    }
}

fn state(env: &ModuleEnv) -> Option<&PikeState> {
    env.state.get()?.downcast_ref::<PikeState>()
}

impl Module for Pike {
    fn name(&self) -> &'static str {
        "pike"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let unit = env.int("sampling_time_unit");
        let density = env.int("reqs_density_per_unit");
        let latency = env.int("remove_latency");
        if unit < 1 || density < 1 || latency < 0 {
            return Err(format!(
                "pike: sampling_time_unit {unit} and reqs_density_per_unit {density} must be \
                 positive, remove_latency {latency} not negative"
            ));
        }
        let st = PikeState::new(
            Duration::from_secs(unit as u64),
            u32::try_from(density).unwrap_or(u32::MAX),
            Duration::from_secs(latency as u64),
        )?;
        let _ = env.state.set(Box::new(st));
        Ok(())
    }
    fn timer_interval(&self, env: &ModuleEnv) -> Option<Duration> {
        let unit = env.int("sampling_time_unit").max(1) as u64;
        Some(Duration::from_secs(unit))
    }
    fn on_timer(&self, env: &ModuleEnv) {
        if let Some(st) = state(env) {
            st.expire(Instant::now());
        }
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let s = env.state.clone();
        let r = reg.register(
            "pike.top",
            &["The source addresses pike tracks, busiest first; blocked ones are flood sources."],
            move |ctx: &mut dyn RpcCtx| {
                let st = s.get().and_then(|b| b.downcast_ref::<PikeState>());
                for (ip, hits, blocked) in st.map(PikeState::top).unwrap_or_default() {
                    ctx.add(RpcValue::Struct(vec![
                        ("ip_addr".into(), RpcValue::Str(ip.to_string())),
                        (
                            "hits".into(),
                            RpcValue::Int(i32::try_from(hits).unwrap_or(i32::MAX)),
                        ),
                        (
                            "status".into(),
                            RpcValue::Str(if blocked { "HOT" } else { "WARM" }.into()),
                        ),
                    ]));
                }
                Ok(())
            },
        );
        if let Err(e) = r {
            log::warn!("pike: rpc: {e}");
        }
    }
}

fn fixup_check(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let s = Arc::clone(&fx.module.state);
    let log_level = fx.module.int("pike_log_level");
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        Flow::Code(check_logged(&s, ctx.src.ip(), log_level))
    }))
}

fn fixup_check_ip(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let addr = fx.format_arg(args, 0)?;
    let s = Arc::clone(&fx.module.state);
    let log_level = fx.module.int("pike_log_level");
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        let text = ctx.render(&addr);
        match parse_ip(&text) {
            Some(ip) => Flow::Code(check_logged(&s, ip, log_level)),
            None => {
                log::error!("pike: pike_check_ip: `{text}` is not an IP address");
                Flow::Code(-3)
            }
        }
    }))
}

/// An address as scripts write it: `1.2.3.4`, `::1` or `[::1]`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    t.parse().ok()
}

/// Counts one request from `ip`; the script code. A new flood source is
/// logged once (unless `pike_log_level` is negative).
fn check_logged(s: &OnceLock<Box<dyn Any + Send + Sync>>, ip: IpAddr, log_level: i64) -> i32 {
    let Some(st) = s.get().and_then(|b| b.downcast_ref::<PikeState>()) else {
        return Verdict::Ok.code();
    };
    let v = st.check(ip, Instant::now());
    if v == Verdict::NewFlood && log_level >= 0 {
        log::warn!("pike: {ip} detected as a flood source");
    }
    v.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn state(density: u32) -> PikeState {
        ser_shm::init_once(8 << 20).unwrap();
        PikeState::new(Duration::from_secs(2), density, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn a_flooding_source_is_blocked_while_others_pass() {
        let st = state(5);
        let t0 = st.base;
        let bad = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let good = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        for _ in 0..5 {
            assert_eq!(st.check(bad, t0), Verdict::Ok);
        }
        assert_eq!(st.check(bad, t0), Verdict::NewFlood);
        assert_eq!(st.check(bad, t0), Verdict::Flooding);
        assert_eq!(Verdict::NewFlood.code(), -2);
        assert_eq!(Verdict::Flooding.code(), -1);
        assert_eq!(st.check(good, t0), Verdict::Ok);
        // Next unit: still blocked because the previous unit was a flood.
        let t1 = t0 + Duration::from_millis(2100);
        assert_eq!(st.check(bad, t1), Verdict::Flooding);
        // Quiet for two units: released.
        let t2 = t0 + Duration::from_secs(7);
        assert_eq!(st.check(bad, t2), Verdict::Ok);
        let top = st.top();
        assert_eq!(top.len(), 2);
        assert!(top.iter().any(|(ip, _, _)| *ip == good));
    }

    #[test]
    fn script_addresses_parse() {
        assert_eq!(
            parse_ip(" 10.1.2.3 "),
            Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)))
        );
        assert_eq!(parse_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("example.com"), None);
        assert_eq!(parse_ip(""), None);
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let st = state(100);
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        st.check(ip, st.base);
        st.expire(st.base + Duration::from_secs(5));
        assert_eq!(st.top().len(), 1);
        st.expire(st.base + Duration::from_secs(11));
        assert!(st.top().is_empty());
    }
}
