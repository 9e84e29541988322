//! `pipelimit`: named rate-limit pipes shared by all processes (replaces
//! Kamailio `modules/pipelimit`; pipes from the database are not read yet).
//!
//! A pipe counts the requests checked against it during each
//! `timer_interval` (seconds). Pipes live in a table in shared memory and
//! are created by `pl_check(name, algorithm, limit)` the first time it runs
//! (a later call with a positive limit updates the limit) or by the
//! `pl.set_pipe` RPC. The algorithms, as Kamailio's:
//! * TAILDROP: once the count exceeds the limit, -1 until the next interval;
//! * RED: the load of the last interval (`count / limit`, whole) spreads the
//!   drops evenly: with load `n > 0` every `n`-th request is refused;
//! * NETWORK: refuses while the bytes waiting in the kernel's receive
//!   queues of all UDP/TCP sockets (/proc/net) exceed the limit;
//! * FEEDBACK: the limit is a CPU load in percent (a setpoint); a PID
//!   controller turns the measured load (/proc/stat) into a drop rate, and
//!   that share of requests is refused, spread over each hundred;
//! * NOP: never limits (`pl_check` returns 2).
//!
//! The timer process measures the network and CPU load once per interval
//! (no lock held) and publishes them in shm.
//!
//! `pl_check(name [, algorithm, limit])` returns as Kamailio: `-2` no such
//! pipe, `-1` limit reached, `1` under the limit, `2` NOP algorithm.
//! `pl_drop([min [, max]])` sends `reply_code reply_reason` (503 "Server
//! Unavailable") with a `Retry-After` of `min`..=`max` seconds (default:
//! `timer_interval`). RPCs: `pl.stats` (every pipe with its load and
//! counter), `pl.get_pipes`, `pl.set_pipe name algorithm limit`,
//! `pl.get_pid`, `pl.set_pid ki kp kd`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ser_fifo::{RpcCtx, RpcRegistry, RpcValue};
use ser_shm::{hash, HashTable, ShmBox, ShmStr};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;

/// The `pipelimit` module.
pub struct Pipelimit;

/// Longest pipe name kept.
const MAX_NAME: usize = 128;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("timer_interval", 10),
    ParamExport::int("hash_size", 6),
    ParamExport::int("reply_code", 503),
    ParamExport::str("reply_reason", "Server Unavailable"),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "pl_check",
        min_args: 1,
        max_args: 3,
        routes: RouteMask::REQUEST
            .or(RouteMask::FAILURE)
            .or(RouteMask::BRANCH),
        fixup: fixup_check,
    },
    FunctionExport {
        name: "pl_drop",
        min_args: 0,
        max_args: 2,
        routes: RouteMask::REQUEST,
        fixup: fixup_drop,
    },
];

/// The algorithms of a pipe (Kamailio's names, case sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Count per interval, refuse above the limit.
    TailDrop,
    /// Never limit (`pl_check` returns 2).
    Nop,
    /// Random early detection: spread drops by the last interval's load.
    Red,
    /// Refuse while the kernel's receive queues hold more than the limit.
    Network,
    /// Drop rate from a PID controller on the CPU load (limit: percent).
    Feedback,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::TailDrop,
        Algorithm::Nop,
        Algorithm::Red,
        Algorithm::Network,
        Algorithm::Feedback,
    ];

    fn parse(s: &str) -> Result<Algorithm, String> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown algorithm `{s}` (TAILDROP, RED, NETWORK, FEEDBACK or NOP; \
                     case sensitive)"
                )
            })
    }
    fn id(self) -> u32 {
        match self {
            Algorithm::TailDrop => 1,
            Algorithm::Nop => 2,
            Algorithm::Red => 3,
            Algorithm::Network => 4,
            Algorithm::Feedback => 5,
        }
    }
    fn from_id(id: u32) -> Algorithm {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.id() == id)
            .unwrap_or(Algorithm::TailDrop)
    }
    /// Kamailio's name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TailDrop => "TAILDROP",
            Algorithm::Nop => "NOP",
            Algorithm::Red => "RED",
            Algorithm::Network => "NETWORK",
            Algorithm::Feedback => "FEEDBACK",
        }
    }
}

/// One pipe: (name, algorithm id, limit, count in this interval, start of
/// this interval in ms, (load of the last interval, count of the last
/// interval)).
type Pipe = (ShmStr, u32, u32, u32, u64, (u32, u32));

/// Lock recovery: a pipe is sound when its name is a live block.
fn check_pipe(p: &mut Pipe) -> Option<usize> {
    p.0.is_intact().then(|| p.0.addr())
}

/// What the timer process measures for NETWORK and FEEDBACK, in shm: a
/// row of atomics (a plain array is shm-safe), indexed by the `L_*`
/// constants.
type Load = [AtomicU64; L_COUNT];
/// Bytes waiting in the receive queues of all sockets (NETWORK).
const L_NET_BYTES: usize = 0;
/// CPU busy percent over the last interval (FEEDBACK's input).
const L_CPU_PCT: usize = 1;
/// FEEDBACK's drop rate, percent.
const L_DROP_PCT: usize = 2;
/// The previous /proc/stat sample: busy and total jiffies.
const L_CPU_BUSY: usize = 3;
const L_CPU_TOTAL: usize = 4;
/// PID controller: gains, integral and last error, as f64 bits.
const L_KI: usize = 5;
const L_KP: usize = 6;
const L_KD: usize = 7;
const L_INTEGRAL: usize = 8;
const L_LAST_ERROR: usize = 9;
const L_COUNT: usize = 10;

/// A percentage kept in the load row.
fn pct(l: &Load, i: usize) -> u32 {
    u32::try_from(l[i].load(Ordering::Relaxed).min(100)).unwrap_or(100)
}

fn get_f(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn set_f(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Ordering::Relaxed);
}

/// Kamailio's default controller: integral only, ki -25 (pl.set_pid).
const DEFAULT_PID: (f64, f64, f64) = (-25.0, 0.0, 0.0);

/// The shared pipes and the interval, made by `init` in main.
pub struct Pipes {
    table: &'static HashTable<Pipe>,
    load: &'static Load,
    base: Instant,
    interval_ms: u64,
}

/// What `pl_check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Under the limit: 1.
    Pass,
    /// NOP pipe: 2.
    Nop,
    /// Limit reached: -1.
    Limited,
    /// No such pipe: -2.
    NoPipe,
}

impl Check {
    /// The script return code (Kamailio's).
    pub fn code(self) -> i32 {
        match self {
            Check::Pass => 1,
            Check::Nop => 2,
            Check::Limited => -1,
            Check::NoPipe => -2,
        }
    }
}

impl Pipes {
    /// An empty table of `2^hash_bits` buckets in shm (`init`, before fork).
    pub fn new(hash_bits: u32, interval: Duration) -> Result<Pipes, String> {
        let e = |e: ser_shm::ShmError| format!("pipelimit: {e}");
        let buckets = 1usize << hash_bits.clamp(1, 16);
        let table = HashTable::new(buckets).map_err(e)?.with_check(check_pipe);
        let table: &'static HashTable<Pipe> = ShmBox::leak(ShmBox::new(table).map_err(e)?);
        ser_shm::register_table("pipelimit", table);
        let load: &'static Load =
            ShmBox::leak(ShmBox::new(std::array::from_fn(|_| AtomicU64::new(0))).map_err(e)?);
        let (ki, kp, kd) = DEFAULT_PID;
        set_f(&load[L_KI], ki);
        set_f(&load[L_KP], kp);
        set_f(&load[L_KD], kd);
        Ok(Pipes {
            table,
            load,
            base: Instant::now(),
            interval_ms: (interval.as_millis() as u64).max(1),
        })
    }

    /// Creates the pipe or changes its algorithm and limit (`pl.set_pipe`).
    pub fn set_pipe(&self, name: &str, alg: Algorithm, limit: u32) -> Result<(), String> {
        let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
        let mut b = self.table.bucket(hash(&[name]));
        if let Some(p) = b.iter_mut().find(|p| p.0 == *name) {
            p.1 = alg.id();
            p.2 = limit;
            return Ok(());
        }
        let now = self.base.elapsed().as_millis() as u64;
        let n = ShmStr::new(name).map_err(|e| e.to_string())?;
        b.push((n, alg.id(), limit, 0, now, (0, 0)))
            .map_err(|e| e.to_string())
    }

    /// The timer's measurement (timer process, once per interval, no lock
    /// held): network backlog and CPU load, then the FEEDBACK drop rate
    /// for `setpoint` percent (the limit of a FEEDBACK pipe, if any).
    pub fn measure(&self) {
        if let Some(bytes) = network_backlog() {
            self.load[L_NET_BYTES].store(bytes, Ordering::Relaxed);
        }
        if let Some((busy, total)) = cpu_sample() {
            let l = self.load;
            let (pb, pt) = (
                l[L_CPU_BUSY].swap(busy, Ordering::Relaxed),
                l[L_CPU_TOTAL].swap(total, Ordering::Relaxed),
            );
            if pt != 0 && total > pt {
                let pct = (busy.saturating_sub(pb) * 100 / (total - pt)).min(100) as u32;
                l[L_CPU_PCT].store(u64::from(pct), Ordering::Relaxed);
            }
        }
        if let Some(setpoint) = self.feedback_setpoint() {
            self.update_drop_rate(setpoint);
        }
    }

    fn feedback_setpoint(&self) -> Option<u32> {
        self.table.buckets().find_map(|b| {
            b.lock()
                .iter()
                .find(|p| p.1 == Algorithm::Feedback.id())
                .map(|p| p.2)
        })
    }

    /// One PID step: error = setpoint - load (fractions); the output is the
    /// drop rate in percent, 0..=100 (the integral is clamped there).
    fn update_drop_rate(&self, setpoint: u32) {
        let l = self.load;
        let load = f64::from(pct(l, L_CPU_PCT)) / 100.0;
        let error = f64::from(setpoint.min(100)) / 100.0 - load;
        let (ki, kp, kd) = (get_f(&l[L_KI]), get_f(&l[L_KP]), get_f(&l[L_KD]));
        let mut integral = get_f(&l[L_INTEGRAL]) + error;
        if ki != 0.0 {
            // Anti wind-up: keep ki*integral within the output range.
            let (a, b) = (0.0 / ki, 100.0 / ki);
            integral = integral.clamp(a.min(b), a.max(b));
        }
        let derivative = error - get_f(&l[L_LAST_ERROR]);
        set_f(&l[L_INTEGRAL], integral);
        set_f(&l[L_LAST_ERROR], error);
        let out = kp * error + ki * integral + kd * derivative;
        l[L_DROP_PCT].store(out.clamp(0.0, 100.0).round() as u64, Ordering::Relaxed);
    }

    /// `pl.set_pid`: the controller's gains.
    pub fn set_pid(&self, ki: f64, kp: f64, kd: f64) {
        set_f(&self.load[L_KI], ki);
        set_f(&self.load[L_KP], kp);
        set_f(&self.load[L_KD], kd);
    }

    /// `pl.get_pid`: (ki, kp, kd).
    pub fn pid(&self) -> (f64, f64, f64) {
        (
            get_f(&self.load[L_KI]),
            get_f(&self.load[L_KP]),
            get_f(&self.load[L_KD]),
        )
    }

    /// Counts one request against pipe `name` at `at`; with `create` the
    /// pipe is made if missing (and a positive limit updates it).
    pub fn check(&self, name: &str, create: Option<(Algorithm, u32)>, at: Instant) -> Check {
        let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
        let now = at.saturating_duration_since(self.base).as_millis() as u64;
        let mut b = self.table.bucket(hash(&[name]));
        let i = match (b.iter().position(|p| p.0 == *name), create) {
            (Some(i), Some((_, limit))) if limit > 0 => {
                b[i].2 = limit;
                i
            }
            (Some(i), _) => i,
            (None, None) => return Check::NoPipe,
            (None, Some((alg, limit))) => {
                let pushed =
                    ShmStr::new(name).and_then(|n| b.push((n, alg.id(), limit, 0, now, (0, 0))));
                if let Err(e) = pushed {
                    ser_shm::log_oom("pipelimit: new pipe refused", &e);
                    return Check::NoPipe;
                }
                b.len() - 1
            }
        };
        let p = &mut b[i];
        let alg = Algorithm::from_id(p.1);
        if alg == Algorithm::Nop {
            return Check::Nop;
        }
        let elapsed = now.saturating_sub(p.4);
        if elapsed >= self.interval_ms {
            // The last interval's count only if it was the one just before.
            let last = if elapsed < 2 * self.interval_ms {
                p.3
            } else {
                0
            };
            p.5 = (last.checked_div(p.2).unwrap_or(0), last);
            p.4 = now - elapsed % self.interval_ms;
            p.3 = 0;
        }
        p.3 = p.3.saturating_add(1);
        let pass = match alg {
            Algorithm::TailDrop | Algorithm::Nop => p.3 <= p.2,
            Algorithm::Red => p.5 .0 == 0 || !p.3.is_multiple_of(p.5 .0),
            Algorithm::Network => self.load[L_NET_BYTES].load(Ordering::Relaxed) <= u64::from(p.2),
            Algorithm::Feedback => spread(p.3) >= pct(self.load, L_DROP_PCT),
        };
        if pass {
            Check::Pass
        } else {
            Check::Limited
        }
    }

    /// Every pipe: (name, algorithm, limit, count in this interval, load).
    pub fn stats(&self) -> Vec<PipeStat> {
        let mut out = Vec::new();
        for b in self.table.buckets() {
            for p in b.lock().iter() {
                let alg = Algorithm::from_id(p.1);
                let load = match alg {
                    Algorithm::Network => {
                        u32::from(self.load[L_NET_BYTES].load(Ordering::Relaxed) > u64::from(p.2))
                    }
                    Algorithm::Feedback => pct(self.load, L_DROP_PCT),
                    _ => p.5 .0,
                };
                out.push(PipeStat {
                    name: String::from_utf8_lossy(p.0.as_bytes()).into_owned(),
                    algorithm: alg.name(),
                    limit: p.2,
                    counter: p.3,
                    load,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// One pipe as the RPCs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeStat {
    /// Pipe name.
    pub name: String,
    /// Algorithm name.
    pub algorithm: &'static str,
    /// Limit.
    pub limit: u32,
    /// Requests counted in this interval.
    pub counter: u32,
    /// RED: the last interval's load factor; NETWORK: 1 while over the
    /// limit; FEEDBACK: the drop rate in percent.
    pub load: u32,
}

/// Spreads `n` over 0..100 so that a drop rate of `r` percent refuses `r`
/// of every hundred consecutive requests, evenly (a fixed permutation of
/// 0..100: 37 is coprime with 100).
fn spread(n: u32) -> u32 {
    (n % 100) * 37 % 100
}

/// Bytes waiting in the receive queues of every UDP and TCP socket of the
/// host (`rx_queue` of /proc/net/{udp,udp6,tcp,tcp6}).
fn network_backlog() -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for f in ["udp", "udp6", "tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{f}")) else {
            continue;
        };
        any = true;
        total += text.lines().skip(1).filter_map(rx_queue).sum::<u64>();
    }
    any.then_some(total)
}

/// The `rx_queue` of one /proc/net line (`tx_queue:rx_queue`, hex, 5th field).
fn rx_queue(line: &str) -> Option<u64> {
    let q = line.split_whitespace().nth(4)?;
    u64::from_str_radix(q.split_once(':')?.1, 16).ok()
}

/// (busy, total) jiffies of all CPUs from /proc/stat's `cpu` line.
fn cpu_sample() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    cpu_line(text.lines().next()?)
}

fn cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    // idle + iowait are not busy.
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

impl Module for Pipelimit {
    fn name(&self) -> &'static str {
        "pipelimit"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let interval = env.int("timer_interval");
        let bits = env.int("hash_size");
        if interval < 1 || !(1..=16).contains(&bits) {
            return Err(format!(
                "pipelimit: timer_interval {interval} must be positive and hash_size {bits} \
                 within 1..16"
            ));
        }
        let pipes = Pipes::new(bits as u32, Duration::from_secs(interval as u64))?;
        let _ = env.state.set(Box::new(pipes));
        Ok(())
    }
    fn timer_interval(&self, env: &ModuleEnv) -> Option<Duration> {
        Some(Duration::from_secs(env.int("timer_interval").max(1) as u64))
    }
    fn on_timer(&self, env: &ModuleEnv) {
        if let Some(p) = env.state.get().and_then(|b| b.downcast_ref::<Pipes>()) {
            p.measure();
        }
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        for &(name, help, f) in RPCS {
            let s = env.state.clone();
            let r = reg.register(name, help, move |ctx: &mut dyn RpcCtx| {
                let pipes = s
                    .get()
                    .and_then(|b| b.downcast_ref::<Pipes>())
                    .ok_or_else(|| ser_fifo::RpcFault::new(500, "pipelimit not initialised"))?;
                f(pipes, ctx)
            });
            if let Err(e) = r {
                log::warn!("pipelimit: rpc: {e}");
            }
        }
    }
}

type RpcFn = fn(&Pipes, &mut dyn RpcCtx) -> Result<(), ser_fifo::RpcFault>;

static RPCS: &[(&str, &[&str], RpcFn)] = &[
    (
        "pl.stats",
        &["Every pipe: name, algorithm, limit, load and the requests counted in this interval."],
        rpc_stats,
    ),
    (
        "pl.get_pipes",
        &["Every pipe: name, algorithm, limit and the requests counted in this interval."],
        rpc_stats,
    ),
    (
        "pl.set_pipe",
        &["pl.set_pipe name algorithm limit: creates or changes a pipe."],
        rpc_set_pipe,
    ),
    (
        "pl.get_pid",
        &["The FEEDBACK controller's gains: ki, kp, kd."],
        rpc_get_pid,
    ),
    (
        "pl.set_pid",
        &["pl.set_pid ki kp kd: sets the FEEDBACK controller's gains."],
        rpc_set_pid,
    ),
];

fn rpc_stats(p: &Pipes, ctx: &mut dyn RpcCtx) -> Result<(), ser_fifo::RpcFault> {
    let int = |v: u32| RpcValue::Int(i32::try_from(v).unwrap_or(i32::MAX));
    for s in p.stats() {
        ctx.add(RpcValue::Struct(vec![
            ("name".into(), RpcValue::Str(s.name)),
            ("algorithm".into(), RpcValue::Str(s.algorithm.into())),
            ("limit".into(), int(s.limit)),
            ("load".into(), int(s.load)),
            ("counter".into(), int(s.counter)),
        ]));
    }
    Ok(())
}

fn rpc_set_pipe(p: &Pipes, ctx: &mut dyn RpcCtx) -> Result<(), ser_fifo::RpcFault> {
    let name = ctx.scan_str(0)?;
    let alg = Algorithm::parse(&ctx.scan_str(1)?).map_err(|e| ser_fifo::RpcFault::new(400, e))?;
    let limit = u32::try_from(ctx.scan_int(2)?)
        .map_err(|_| ser_fifo::RpcFault::new(400, "limit must not be negative"))?;
    if name.is_empty() {
        return Err(ser_fifo::RpcFault::new(400, "empty pipe name"));
    }
    p.set_pipe(&name, alg, limit)
        .map_err(|e| ser_fifo::RpcFault::new(500, e))
}

fn rpc_get_pid(p: &Pipes, ctx: &mut dyn RpcCtx) -> Result<(), ser_fifo::RpcFault> {
    let (ki, kp, kd) = p.pid();
    ctx.add(RpcValue::Struct(vec![
        ("ki".into(), RpcValue::Double(ki)),
        ("kp".into(), RpcValue::Double(kp)),
        ("kd".into(), RpcValue::Double(kd)),
    ]));
    Ok(())
}

fn rpc_set_pid(p: &Pipes, ctx: &mut dyn RpcCtx) -> Result<(), ser_fifo::RpcFault> {
    let (ki, kp, kd) = (
        ctx.scan_double(0)?,
        ctx.scan_double(1)?,
        ctx.scan_double(2)?,
    );
    if ![ki, kp, kd].iter().all(|v| v.is_finite()) {
        return Err(ser_fifo::RpcFault::new(400, "gains must be finite numbers"));
    }
    p.set_pid(ki, kp, kd);
    Ok(())
}

fn fixup_check(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    if args.len() == 2 {
        return Err(FixupError::call(
            "pl_check takes a name, or a name, an algorithm and a limit",
        ));
    }
    let name = fx.format_arg(args, 0)?;
    let create = if args.len() == 3 {
        let alg = fx.str_arg(args, 1)?;
        let alg = Algorithm::parse(&alg).map_err(|e| FixupError::arg(1, e))?;
        let limit = fx.int_arg(args, 2)?;
        let limit = u32::try_from(limit)
            .map_err(|_| FixupError::arg(2, format!("limit {limit} out of range")))?;
        Some((alg, limit))
    } else {
        None
    };
    let s = Arc::clone(&fx.module.state);
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        let Some(pipes) = s.get().and_then(|b| b.downcast_ref::<Pipes>()) else {
            return Flow::Code(Check::NoPipe.code());
        };
        let name = ctx.render(&name);
        Flow::Code(pipes.check(&name, create, Instant::now()).code())
    }))
}

fn fixup_drop(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let interval = fx.module.int("timer_interval").max(1);
    let min = if args.is_empty() {
        interval
    } else {
        fx.int_arg(args, 0)?
    };
    let max = if args.len() == 2 {
        fx.int_arg(args, 1)?
    } else {
        min
    };
    if min < 0 || max < min {
        return Err(FixupError::call(format!(
            "pl_drop: retry interval {min}..{max} is not valid"
        )));
    }
    let code = u16::try_from(fx.module.int("reply_code"))
        .ok()
        .filter(|c| (300..700).contains(c))
        .unwrap_or(503);
    let reason = fx.module.str("reply_reason");
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        // A cheap spread over min..=max (no rand dependency).
        let span = (max - min + 1) as u64;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let retry = min as u64 + nanos % span;
        ctx.reply_headers.push(format!("Retry-After: {retry}\r\n"));
        crate::sl::send_reply(ctx, code, &reason)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taildrop_limits_per_interval() {
        ser_shm::init_once(8 << 20).unwrap();
        let p = Pipes::new(4, Duration::from_secs(10)).unwrap();
        let t0 = p.base;
        assert_eq!(p.check("one", None, t0), Check::NoPipe);
        let create = Some((Algorithm::TailDrop, 3));
        for _ in 0..3 {
            assert_eq!(p.check("one", create, t0), Check::Pass);
        }
        assert_eq!(p.check("one", None, t0), Check::Limited);
        assert_eq!(Check::Limited.code(), -1);
        // Other pipes are independent.
        assert_eq!(p.check("two", create, t0), Check::Pass);
        // The next interval starts from zero.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(p.check("one", None, t1), Check::Pass);
        // A positive limit in a later call updates the pipe.
        assert_eq!(
            p.check("one", Some((Algorithm::TailDrop, 1)), t1),
            Check::Limited
        );
        assert_eq!(p.check("nop", Some((Algorithm::Nop, 0)), t1), Check::Nop);
        let s = p.stats();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[1].name.as_str(), s[1].algorithm, s[1].limit, s[1].counter),
            ("one", "TAILDROP", 1, 2)
        );
    }

    #[test]
    fn algorithms_are_case_sensitive() {
        assert_eq!(Algorithm::parse("TAILDROP"), Ok(Algorithm::TailDrop));
        assert!(Algorithm::parse("taildrop").is_err());
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.name()), Ok(a));
            assert_eq!(Algorithm::from_id(a.id()), a);
        }
    }

    #[test]
    fn red_spreads_drops_by_the_last_load() {
        ser_shm::init_once(8 << 20).unwrap();
        let p = Pipes::new(4, Duration::from_secs(1)).unwrap();
        let t0 = p.base;
        let red = Some((Algorithm::Red, 10));
        // First interval: no load known yet, nothing refused.
        for _ in 0..30 {
            assert_eq!(p.check("red", red, t0), Check::Pass);
        }
        // Load 3 (30 / 10): every third request is refused.
        let t1 = t0 + Duration::from_millis(1000);
        let refused = (0..30)
            .filter(|_| p.check("red", None, t1) == Check::Limited)
            .count();
        assert_eq!(refused, 10);
        assert_eq!(p.stats()[0].load, 3);
        // An idle interval in between forgets the load.
        let t3 = t0 + Duration::from_millis(3500);
        assert_eq!(p.check("red", None, t3), Check::Pass);
        assert_eq!(p.stats()[0].load, 0);
    }

    #[test]
    fn network_and_feedback_follow_the_measured_load() {
        ser_shm::init_once(8 << 20).unwrap();
        let p = Pipes::new(4, Duration::from_secs(1)).unwrap();
        let t0 = p.base;
        p.load[L_NET_BYTES].store(5000, Ordering::Relaxed);
        assert_eq!(
            p.check("net", Some((Algorithm::Network, 4096)), t0),
            Check::Limited
        );
        p.load[L_NET_BYTES].store(100, Ordering::Relaxed);
        assert_eq!(p.check("net", None, t0), Check::Pass);
        // FEEDBACK: setpoint 50 %, measured 90 %: the integral controller
        // raises the drop rate step by step; at 10 % it comes down again.
        p.set_pipe("fb", Algorithm::Feedback, 50).unwrap();
        p.load[L_CPU_PCT].store(90, Ordering::Relaxed);
        p.update_drop_rate(50);
        let first = pct(p.load, L_DROP_PCT);
        assert_eq!(first, 10); // -25 * (0.5 - 0.9)
        p.update_drop_rate(50);
        assert_eq!(pct(p.load, L_DROP_PCT), 20);
        let refused = (0..100)
            .filter(|_| p.check("fb", None, t0) == Check::Limited)
            .count();
        assert_eq!(refused, 20);
        p.load[L_CPU_PCT].store(10, Ordering::Relaxed);
        for _ in 0..3 {
            p.update_drop_rate(50);
        }
        assert_eq!(pct(p.load, L_DROP_PCT), 0);
        assert_eq!(p.feedback_setpoint(), Some(50));
        p.measure();
        assert!(network_backlog().is_some());
        assert!(cpu_sample().is_some_and(|(b, t)| b <= t));
        assert_eq!(
            rx_queue("  0: 0100007F:13C4 00000000:0000 07 00000000:000001A0 00"),
            Some(0x1a0)
        );
        assert_eq!(cpu_line("cpu  10 0 5 80 5 0 0 0 0 0"), Some((15, 100)));
        assert_eq!(p.pid(), DEFAULT_PID);
    }
}
