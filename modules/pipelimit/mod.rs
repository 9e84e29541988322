//! `pipelimit`: named rate-limit pipes shared by all processes (replaces
//! Kamailio `modules/pipelimit`; pipes from the database are not read yet).
//!
//! A pipe counts the requests checked against it during each
//! `timer_interval` (seconds); with the TAILDROP algorithm, once the count
//! exceeds the pipe's limit `pl_check` answers -1 until the next interval.
//! Pipes live in a table in shared memory and are created by
//! `pl_check(name, algorithm, limit)` the first time it runs (a later call
//! with a positive limit updates the limit).
//!
//! `pl_check(name [, algorithm, limit])` returns as Kamailio: `-2` no such
//! pipe, `-1` limit reached, `1` under the limit, `2` NOP algorithm.
//! `pl_drop([min [, max]])` sends `reply_code reply_reason` (503 "Server
//! Unavailable") with a `Retry-After` of `min`..=`max` seconds (default:
//! `timer_interval`). RPC `pl.stats`: every pipe with its counter.

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

/// The algorithms of a pipe (Kamailio's names; RED, NETWORK and FEEDBACK
/// are not implemented yet and refused when the config is loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Count per interval, refuse above the limit.
    TailDrop,
    /// Never limit (`pl_check` returns 2).
    Nop,
}

impl Algorithm {
    fn parse(s: &str) -> Result<Algorithm, String> {
        match s {
            "TAILDROP" => Ok(Algorithm::TailDrop),
            "NOP" => Ok(Algorithm::Nop),
            "RED" | "NETWORK" | "FEEDBACK" => Err(format!("algorithm {s} is not supported yet")),
            _ => Err(format!(
                "unknown algorithm `{s}` (TAILDROP or NOP; case sensitive)"
            )),
        }
    }
    fn id(self) -> u32 {
        match self {
            Algorithm::TailDrop => 1,
            Algorithm::Nop => 2,
        }
    }
}

/// One pipe: (name, algorithm id, limit, count in this interval, start of
/// this interval in ms).
type Pipe = (ShmStr, u32, u32, u32, u64);

/// The shared pipes and the interval, made by `init` in main.
pub struct Pipes {
    table: &'static HashTable<Pipe>,
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
        let table: &'static HashTable<Pipe> =
            ShmBox::leak(ShmBox::new(HashTable::new(buckets).map_err(e)?).map_err(e)?);
        ser_shm::register_table("pipelimit", table);
        Ok(Pipes {
            table,
            base: Instant::now(),
            interval_ms: (interval.as_millis() as u64).max(1),
        })
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
                let Ok(n) = ShmStr::new(name) else {
                    log::error!("pipelimit: out of shared memory creating a pipe");
                    return Check::NoPipe;
                };
                if b.push((n, alg.id(), limit, 0, now)).is_err() {
                    log::error!("pipelimit: out of shared memory creating a pipe");
                    return Check::NoPipe;
                }
                b.len() - 1
            }
        };
        let p = &mut b[i];
        if p.1 == Algorithm::Nop.id() {
            return Check::Nop;
        }
        if now.saturating_sub(p.4) >= self.interval_ms {
            p.4 = now - (now - p.4) % self.interval_ms;
            p.3 = 0;
        }
        p.3 = p.3.saturating_add(1);
        if p.3 > p.2 {
            Check::Limited
        } else {
            Check::Pass
        }
    }

    /// Every pipe: (name, algorithm, limit, count in this interval).
    pub fn stats(&self) -> Vec<(String, &'static str, u32, u32)> {
        let mut out = Vec::new();
        for b in self.table.buckets() {
            for p in b.lock().iter() {
                let alg = if p.1 == Algorithm::Nop.id() {
                    "NOP"
                } else {
                    "TAILDROP"
                };
                out.push((
                    String::from_utf8_lossy(p.0.as_bytes()).into_owned(),
                    alg,
                    p.2,
                    p.3,
                ));
            }
        }
        out.sort();
        out
    }
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
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let s = env.state.clone();
        let r = reg.register(
            "pl.stats",
            &["Every pipe: name, algorithm, limit and the requests counted in this interval."],
            move |ctx: &mut dyn RpcCtx| {
                let pipes = s.get().and_then(|b| b.downcast_ref::<Pipes>());
                for (name, alg, limit, counter) in pipes.map(Pipes::stats).unwrap_or_default() {
                    let int = |v: u32| RpcValue::Int(i32::try_from(v).unwrap_or(i32::MAX));
                    ctx.add(RpcValue::Struct(vec![
                        ("name".into(), RpcValue::Str(name)),
                        ("algorithm".into(), RpcValue::Str(alg.into())),
                        ("limit".into(), int(limit)),
                        ("counter".into(), int(counter)),
                    ]));
                }
                Ok(())
            },
        );
        if let Err(e) = r {
            log::warn!("pipelimit: rpc: {e}");
        }
    }
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
        assert_eq!(s[1], ("one".to_string(), "TAILDROP", 1, 2));
    }

    #[test]
    fn algorithms_are_case_sensitive() {
        assert_eq!(Algorithm::parse("TAILDROP"), Ok(Algorithm::TailDrop));
        assert!(Algorithm::parse("taildrop").is_err());
        assert!(Algorithm::parse("RED")
            .unwrap_err()
            .contains("not supported"));
    }
}
