//! `tm`: the transaction module — SER as a stateful proxy (replaces SER
//! `modules/tm`: `h_table.c`, `t_lookup.c`, `t_funcs.c`, `t_fwd.c`,
//! `t_reply.c`, `t_cancel.c`, `timer.c`).
//!
//! Transactions live in a shm hash table ([`core::Tm`]); any process may
//! create, match, relay and time them out.  The pieces:
//! - [`state`]: the RFC 3261 state machines and timers A–K,
//! - [`matching`]: RFC 3261 / RFC 2543 request matching,
//! - [`select`]: which final reply goes upstream (§16.7),
//! - [`tx`]: the shm representation of a transaction,
//! - [`core`]: table, forking, reply processing, CANCEL, timers, wait timer.
//!
//! The engine drives it through the module interface: `Script::into_shared`
//! hands the script to tm as its [`crate::iface::RouteRunner`] (failure,
//! onreply and branch routes), `run_reply` calls `Modules::on_reply_all`
//! before stateless forwarding, the timer process runs `Modules::tick_all`
//! every tick, and module init runs after `ser_shm::init`, before fork.
//!
//! Behaviour worth knowing (differences from Kamailio are deliberate):
//! - timers are milliseconds; a value ≤ 300 is read as seconds (SER 0.8/0.9 configs);
//! - a branch without any reply is never cancelled on the wire: it gets its
//!   CANCEL when its first provisional arrives (`cancel_b_method` 1, default)
//!   or ends at once as 487 (`cancel_b_method` 0);
//! - `failure_reply_mode` (default 3) decides which replies of earlier
//!   branches still count once a failure route forks again; `noisy_ctimer=0`
//!   lets an unanswered single-branch INVITE end without a 408;
//! - our hop-by-hop CANCELs are retransmitted (UDP, timers E/F) until their
//!   final reply;
//! - the wait timer (`wt_timer`) stands for timers J/K/D; INVITE server
//!   transactions use G/H/I as in RFC 3261;
//! - a selected 503 is relayed as 500; 401/407 challenges are aggregated.

pub mod core;
pub mod hooks;
pub mod matching;
pub mod select;
pub mod state;
pub mod tx;

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use ser_fifo::{RpcRegistry, RpcValue};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::{Env, MsgCtx, ProcessingError};
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::transport::Proto;

use self::core::{
    current, reset_current, with_pending, Override, Params, Stat, Target, Tm as TmCore, TxRef,
};
use self::matching::Purpose;
use self::state::Timers;

/// The `tm` module.
pub struct Tm;

/// A module state slot (`ModuleEnv::state`).
pub type TmState = Arc<OnceLock<Box<dyn Any + Send + Sync>>>;
type State = TmState;

/// The state of the tm that was initialised last in this process (tmx binds
/// to it, as Kamailio's tmx binds to tm's API).
static LOADED: Mutex<Option<TmState>> = Mutex::new(None);

/// tm's state for tmx.
pub fn loaded_state() -> Option<TmState> {
    LOADED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Every tm initialised in this process (one per loaded config).
static INSTANCES: Mutex<Vec<TmState>> = Mutex::new(Vec::new());

/// The tm of a script ([`hooks::script_id`] of a module's `env.routes`):
/// a module replying through tm finds its own config's tm even when
/// several configs are loaded in one process (tests).
pub fn state_of_script(script: usize) -> Option<TmState> {
    if script == 0 {
        return None;
    }
    INSTANCES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|st| tm_of(st).is_some_and(|tm| hooks::script_id(&tm.routes) == script))
        .cloned()
}

/// tm's state in a module environment (after `init`).
pub fn tm_of(state: &State) -> Option<&TmCore> {
    state.get().and_then(|b| b.downcast_ref::<TmCore>())
}

const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);
const REQ_FAIL: RouteMask = RouteMask::REQUEST.or(RouteMask::FAILURE);
const ALL_TM: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::ONREPLY)
    .or(RouteMask::BRANCH);

static PARAMS: &[ParamExport] = &[
    ParamExport::int("fr_timer", 30_000),
    ParamExport::int("fr_inv_timer", 120_000),
    ParamExport::int("wt_timer", 5000),
    ParamExport::int("retr_timer1", 500),
    ParamExport::int("retr_timer2", 4000),
    ParamExport::int("restart_fr_on_each_reply", 1),
    ParamExport::int("failure_reply_mode", 3),
    ParamExport::int("noisy_ctimer", 1),
    ParamExport::int("hash_size", 2048),
    ParamExport::int("cancel_b_method", 1),
    ParamExport::int("auto_inv_100", 1),
    ParamExport::int("disable_6xx_block", 0),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "t_relay",
        min_args: 0,
        max_args: 3,
        routes: REQ_FAIL,
        fixup: fixup_relay,
    },
    FunctionExport {
        name: "t_relay_to_udp",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_relay_udp,
    },
    FunctionExport {
        name: "t_relay_to_tcp",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_relay_tcp,
    },
    FunctionExport {
        name: "t_relay_to_tls",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_relay_tls,
    },
    FunctionExport {
        name: "t_forward_nonack",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_forward_nonack,
    },
    FunctionExport {
        name: "t_relay_cancel",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_relay_cancel,
    },
    FunctionExport {
        name: "t_newtran",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_newtran,
    },
    FunctionExport {
        name: "t_reply",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_reply,
    },
    FunctionExport {
        name: "t_check_trans",
        min_args: 0,
        max_args: 0,
        routes: ALL_TM,
        fixup: fixup_check_trans,
    },
    FunctionExport {
        name: "t_lookup_request",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_lookup_request,
    },
    FunctionExport {
        name: "t_on_reply",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_on_reply,
    },
    FunctionExport {
        name: "t_on_failure",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_on_failure,
    },
    FunctionExport {
        name: "t_on_branch",
        min_args: 1,
        max_args: 1,
        routes: REQ_FAIL,
        fixup: fixup_on_branch,
    },
    FunctionExport {
        name: "t_is_branch_route",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_is_branch_route,
    },
    FunctionExport {
        name: "t_is_set",
        min_args: 1,
        max_args: 1,
        routes: ALL_TM,
        fixup: fixup_is_set,
    },
    FunctionExport {
        name: "t_check_status",
        min_args: 1,
        max_args: 1,
        routes: ALL_TM,
        fixup: fixup_check_status,
    },
    FunctionExport {
        name: "t_is_canceled",
        min_args: 0,
        max_args: 0,
        routes: ALL_TM,
        fixup: fixup_is_canceled,
    },
    FunctionExport {
        name: "t_was_cancelled",
        min_args: 0,
        max_args: 0,
        routes: ALL_TM,
        fixup: fixup_is_canceled,
    },
    FunctionExport {
        name: "t_set_fr",
        min_args: 1,
        max_args: 2,
        routes: REQ,
        fixup: fixup_set_fr,
    },
    FunctionExport {
        name: "t_release",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_release,
    },
    FunctionExport {
        name: "t_branch_timeout",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::FAILURE,
        fixup: fixup_branch_timeout,
    },
    FunctionExport {
        name: "t_branch_replied",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::FAILURE,
        fixup: fixup_branch_replied,
    },
    FunctionExport {
        name: "t_any_timeout",
        min_args: 0,
        max_args: 0,
        routes: ALL_TM,
        fixup: fixup_any_timeout,
    },
    FunctionExport {
        name: "t_any_replied",
        min_args: 0,
        max_args: 0,
        routes: ALL_TM,
        fixup: fixup_any_replied,
    },
    FunctionExport {
        name: "t_relay_to",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_relay_to,
    },
    FunctionExport {
        name: "t_relay_to_sctp",
        min_args: 0,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_relay_sctp,
    },
    FunctionExport {
        name: "t_forward_nonack_udp",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_forward_nonack_udp,
    },
    FunctionExport {
        name: "t_forward_nonack_tcp",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_forward_nonack_tcp,
    },
    FunctionExport {
        name: "t_forward_nonack_tls",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_forward_nonack_tls,
    },
    FunctionExport {
        name: "t_forward_nonack_sctp",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_forward_nonack_sctp,
    },
    FunctionExport {
        name: "t_send_reply",
        min_args: 2,
        max_args: 2,
        routes: REQ_FAIL,
        fixup: fixup_reply,
    },
    FunctionExport {
        name: "t_retransmit_reply",
        min_args: 0,
        max_args: 0,
        routes: REQ_FAIL,
        fixup: fixup_retransmit_reply,
    },
    FunctionExport {
        name: "t_lookup_cancel",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::REQUEST,
        fixup: fixup_lookup_cancel,
    },
    FunctionExport {
        name: "t_grep_status",
        min_args: 1,
        max_args: 1,
        routes: ALL_TM,
        fixup: fixup_grep_status,
    },
    FunctionExport {
        name: "t_reset_fr",
        min_args: 0,
        max_args: 0,
        routes: REQ,
        fixup: fixup_reset_fr,
    },
    FunctionExport {
        name: "t_drop_replies",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::FAILURE,
        fixup: fixup_drop_replies,
    },
    FunctionExport {
        name: "t_set_disable_6xx",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_set_disable_6xx,
    },
    FunctionExport {
        name: "t_set_auto_inv_100",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_set_auto_inv_100,
    },
    FunctionExport {
        name: "t_set_disable_failover",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_accepted_switch,
    },
    FunctionExport {
        name: "t_set_disable_internal_reply",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_accepted_switch,
    },
    FunctionExport {
        name: "t_set_no_e2e_cancel_reason",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_accepted_switch,
    },
    FunctionExport {
        name: "t_use_uac_headers",
        min_args: 0,
        max_args: 0,
        routes: REQ,
        fixup: fixup_use_uac_headers,
    },
];

/// SER 0.8/0.9 gave tm timers in seconds, 2.x+ in milliseconds: a value this
/// small can only mean seconds.
fn timer_ms(env: &ModuleEnv, name: &str) -> u32 {
    let v = env.int(name).max(1);
    let ms = if v <= 300 { v * 1000 } else { v };
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl Module for Tm {
    fn name(&self) -> &'static str {
        "tm"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let timers = Timers {
            t1: u32::try_from(env.int("retr_timer1").max(1)).unwrap_or(500),
            t2: u32::try_from(env.int("retr_timer2").max(1)).unwrap_or(4000),
            t4: 5000,
            fr: timer_ms(env, "fr_timer"),
            fr_inv: timer_ms(env, "fr_inv_timer"),
            wt: timer_ms(env, "wt_timer"),
        };
        let params = Params {
            restart_fr_on_each_reply: env.int("restart_fr_on_each_reply") != 0,
            failure_reply_mode: env.int("failure_reply_mode"),
            noisy_ctimer: env.int("noisy_ctimer") != 0,
            cancel_b_method: env.int("cancel_b_method"),
            disable_6xx_block: env.int("disable_6xx_block") != 0,
            auto_inv_100: env.int("auto_inv_100") != 0,
        };
        let buckets = usize::try_from(env.int("hash_size"))
            .unwrap_or(2048)
            .clamp(16, 1 << 16);
        let mut tm = TmCore::new(buckets, timers, params)?;
        tm.routes = env.routes.clone();
        env.state
            .set(Box::new(tm))
            .map_err(|_| "tm initialised twice".to_owned())?;
        *LOADED.lock().unwrap_or_else(|p| p.into_inner()) = Some(env.state.clone());
        INSTANCES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(env.state.clone());
        Ok(())
    }
    fn on_request(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        reset_current();
        let Some(tm) = tm_of(&env.state) else {
            return true;
        };
        if ctx.method().eq_ignore_ascii_case("ACK") {
            if let Some(t) = tm.lookup(&ctx.msg, Purpose::Ack) {
                if tm.absorb_ack(t) {
                    log::debug!("tm: ACK to our negative reply absorbed");
                    return false;
                }
            }
        }
        true
    }
    fn on_reply(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        reset_current();
        match tm_of(&env.state) {
            Some(tm) => tm.on_reply(ctx),
            None => true,
        }
    }
    fn on_tick(&self, env: &ModuleEnv, proc_env: &Env, now: Instant) {
        if let Some(tm) = tm_of(&env.state) {
            tm.tick(proc_env, now);
        }
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let st = env.state.clone();
        let r = reg.register("tm.stats", &["Transaction statistics."], move |rpc| {
            let Some(tm) = tm_of(&st) else {
                return Err(ser_fifo::RpcFault::new(500, "tm not initialised"));
            };
            let v = |s: Stat| RpcValue::long(tm.stat(s) as i64);
            rpc.add(RpcValue::structure([
                ("current", RpcValue::long(tm.current_count() as i64)),
                ("waiting", v(Stat::Waiting)),
                ("total", v(Stat::Created)),
                ("total_local", v(Stat::TotalLocal)),
                ("replied_locally", v(Stat::RepliedLocally)),
                ("6xx", v(Stat::Rpl6xx)),
                ("5xx", v(Stat::Rpl5xx)),
                ("4xx", v(Stat::Rpl4xx)),
                ("3xx", v(Stat::Rpl3xx)),
                ("2xx", v(Stat::Rpl2xx)),
            ]));
            Ok(())
        });
        if let Err(e) = r {
            log::error!("tm: cannot register tm.stats: {e}");
        }
        let st = env.state.clone();
        let r = reg.register(
            "tm.list",
            &["List the transactions: id, method, state, last code, branches, Call-ID."],
            move |rpc| {
                let Some(tm) = tm_of(&st) else {
                    return Err(ser_fifo::RpcFault::new(500, "tm not initialised"));
                };
                for (id, method, state, code, branches, callid) in tm.list() {
                    rpc.add(RpcValue::structure([
                        ("id", RpcValue::long(id as i64)),
                        ("method", RpcValue::Str(method)),
                        ("state", RpcValue::Str(format!("{state:?}"))),
                        ("code", RpcValue::Int(i32::from(code))),
                        ("branches", RpcValue::Int(branches as i32)),
                        ("callid", RpcValue::Str(callid)),
                    ]));
                }
                Ok(())
            },
        );
        if let Err(e) = r {
            log::error!("tm: cannot register tm.list: {e}");
        }
        let st = env.state.clone();
        let r = reg.register(
            "tm.cancel",
            // Kamailio's help text: system.methodHelp answers the same.
            &["Cancel a pending transaction"],
            move |rpc| {
                let Some(tm) = tm_of(&st) else {
                    return Err(ser_fifo::RpcFault::new(500, "tm not initialised"));
                };
                let expected =
                    || ser_fifo::RpcFault::new(400, "Callid and CSeq expected as parameters");
                let callid = rpc.scan_str(0).map_err(|_| expected())?;
                // kamcmd sends a numeric CSeq as an int, Kamailio wants a string:
                // both are taken, with or without the method after the number.
                let cseq = rpc.scan_str(1).map_err(|_| expected())?;
                let cseq = cseq
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(expected)?;
                let remaining = tm
                    .request_cancel(callid.as_bytes(), cseq)
                    .ok_or_else(|| ser_fifo::RpcFault::new(400, "Transaction not found"))?;
                rpc.add(RpcValue::Int(i32::try_from(remaining).unwrap_or(i32::MAX)));
                rpc.add(RpcValue::from("branches remaining (waiting for timeout)"));
                Ok(())
            },
        );
        if let Err(e) = r {
            log::error!("tm: cannot register tm.cancel: {e}");
        }
    }
}

/// Run `f` with tm's state, or fail when tm was not initialised.
fn with_tm(st: &State, f: impl FnOnce(&TmCore) -> Flow) -> Flow {
    match tm_of(st) {
        Some(tm) => f(tm),
        None => {
            log::error!("tm: module not initialised");
            Flow::False
        }
    }
}

/// The branches t_relay creates: the R-URI (with dst-uri) and every
/// `append_branch`; the R-URI not again when `append_branch()` already made
/// a branch of it unchanged.
fn targets(ctx: &mut MsgCtx<'_>) -> Vec<Target> {
    let mut out = Vec::new();
    let consumed = |uri: &str, ctx: &MsgCtx<'_>| {
        !ctx.branches.is_empty()
            && ctx
                .ruri_consumed
                .as_ref()
                .is_some_and(|(u, d)| u == uri && *d == ctx.dst_uri)
    };
    if let Some(uri) = ctx.ruri().filter(|u| !consumed(u, ctx)) {
        out.push(Target {
            uri,
            dst_uri: ctx.dst_uri.clone(),
            bflags: ctx.bflags.0,
        });
    }
    for b in ctx.branches.drain(..) {
        out.push(Target {
            uri: b.uri,
            dst_uri: b.dst_uri,
            bflags: b.bflags.0,
        });
    }
    out
}

/// Forward an ACK (to a 2xx: end-to-end) statelessly.
fn forward_stateless(ctx: &mut MsgCtx<'_>, over: Option<&Override>) -> Flow {
    let hp = over
        .filter(|o| !o.host.is_empty())
        .map(|o| (o.host.as_str(), o.port));
    let dest = match ctx.forward_dest(hp, over.and_then(|o| o.proto)) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("tm: cannot forward {}: {e}", ctx.method());
            return Flow::False;
        }
    };
    let buf = match ctx.build_forward(dest.proto) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("tm: cannot build {}: {e}", ctx.method());
            return Flow::False;
        }
    };
    match ctx.env.transport.send(&buf, &dest) {
        Ok(()) => Flow::True,
        Err(e) => {
            log::warn!("tm: sending {} to {} failed: {e}", ctx.method(), dest.addr);
            Flow::False
        }
    }
}

/// A hop-by-hop CANCEL for an INVITE transaction: 200 to the CANCEL (its own
/// transaction absorbs retransmissions), CANCEL on every pending branch.
fn handle_cancel(tm: &TmCore, ctx: &mut MsgCtx<'_>, inv: TxRef) {
    match tm.create(ctx) {
        Ok(c) => {
            tm.reply_local(ctx.env, c, 200, "canceling", &[]);
        }
        Err(Ok(c)) => tm.resend_last_reply(ctx.env, c),
        Err(Err(e)) => log::warn!("tm: CANCEL transaction: {e}"),
    }
    tm.cancel(ctx.env, inv);
}

/// Add branches to transaction `t` and send them.
fn relay_on(
    tm: &TmCore,
    ctx: &mut MsgCtx<'_>,
    t: TxRef,
    over: Option<&Override>,
    fresh: bool,
) -> Flow {
    // What the script did up to here is what failure/onreply routes must see.
    let flags = ctx.flags.0;
    tm.update(t, |d| d.flags = flags);
    if let Some(mut m) = tm.meta(t) {
        let p = with_pending(ctx, std::mem::take);
        if let Some(f) = p.on_failure {
            m.on_failure = f;
        }
        if let Some(r) = p.on_reply {
            m.on_reply = r;
        }
        if let Some(b) = p.on_branch {
            m.on_branch = b;
        }
        m.avps = ctx.avps.export();
        // a failure route starts from the R-URI the request route relayed with
        if !tm.data(t).is_some_and(|d| d.in_failure) {
            m.ruri = ctx.new_uri.clone().unwrap_or_default();
            m.dst_uri = ctx.dst_uri.clone().unwrap_or_default();
        }
        tm.set_meta(t, &m);
        tm.update(t, |d| {
            d.fr = p.fr.unwrap_or(d.fr);
            d.fr_inv = p.fr_inv.unwrap_or(d.fr_inv);
            d.disable_6xx = p.disable_6xx.unwrap_or(d.disable_6xx);
            if let Some(a) = p.auto_100 {
                d.no_auto_100 = !a;
            }
        });
    }
    let targets = targets(ctx);
    // 100 Trying goes out before the branches: sent after them, it could
    // reach the caller after a fast final reply that another process relayed.
    let auto_100 = over.is_none_or(|o| o.flags & RELAY_NO_100 == 0);
    if fresh
        && auto_100
        && tm
            .data(t)
            .is_some_and(|d| d.invite && d.up_code == 0 && !d.no_auto_100)
    {
        tm.reply_local(
            ctx.env,
            t,
            100,
            "trying -- your call is important to us",
            &[],
        );
    }
    match tm.relay(ctx.env, ctx, t, &targets, over) {
        Ok(_) => Flow::True,
        Err(e) => {
            log::warn!("tm: t_relay failed: {e}");
            if fresh {
                tm.remove(t);
                reset_current();
            }
            Flow::False
        }
    }
}

/// t_relay and friends.
fn relay(tm: &TmCore, ctx: &mut MsgCtx<'_>, over: Option<&Override>, nonack: bool) -> Flow {
    let method = ctx.method().to_ascii_uppercase();
    if method == "ACK" {
        if nonack {
            log::warn!("tm: t_forward_nonack called for an ACK");
            return Flow::False;
        }
        return forward_stateless(ctx, over);
    }
    if let Some(cur) = current(ctx) {
        return relay_on(tm, ctx, cur.tx, over, false);
    }
    if method == "CANCEL" {
        if let Some(inv) = tm.lookup(&ctx.msg, Purpose::Cancel) {
            handle_cancel(tm, ctx, inv);
            return Flow::True;
        }
    }
    match tm.create(ctx) {
        Ok(t) => relay_on(tm, ctx, t, over, true),
        Err(Ok(t)) => {
            log::debug!("tm: retransmission absorbed");
            tm.resend_last_reply(ctx.env, t);
            Flow::Exit
        }
        Err(Err(e)) => {
            create_failed(ctx, "cannot create transaction", &e);
            Flow::False
        }
    }
}

/// A transaction could not be created: shm exhaustion (logged already,
/// rate-limited) sets 500 for `sl_reply_error`; anything else is logged.
fn create_failed(ctx: &mut MsgCtx<'_>, what: &str, e: &str) {
    if e == self::core::NO_SHM {
        ctx.last_error = Some(ProcessingError {
            code: 500,
            reason: "Server Internal Error".into(),
        });
    } else {
        log::error!("tm: {what}: {e}");
    }
}

enum PortArg {
    None,
    Const(u16),
    Dyn(Format),
}

fn port_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<PortArg, FixupError> {
    if args.len() <= i {
        return Ok(PortArg::None);
    }
    let f = fx.format_arg(args, i)?;
    match f.as_constant() {
        Some(c) => {
            let p = c
                .trim()
                .parse::<u16>()
                .map_err(|_| FixupError::arg(i, format!("bad port `{c}`")))?;
            Ok(PortArg::Const(p))
        }
        None => Ok(PortArg::Dyn(f)),
    }
}

/// `t_relay_to` flag 0x01: no automatic 100 Trying.
const RELAY_NO_100: u32 = 0x01;

/// `[proto:]host[:port]` (`t_relay("tcp:10.0.0.1:5080")`, `t_relay_to`):
/// any of proto and port may be left out; an IPv6 address with a port is
/// written in brackets.
pub fn parse_proxy(s: &str) -> Result<(Option<Proto>, String, Option<u16>), String> {
    let s = s.trim();
    let (proto, rest) = match s.split_once(':') {
        Some((p, rest)) if Proto::from_name(p).is_some() && !rest.is_empty() => {
            (Proto::from_name(p), rest)
        }
        _ => (None, s),
    };
    let bad_port = |p: &str| format!("bad port `{p}` in `{s}`");
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed `[` in `{s}`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad_port(p))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected `{after}` in `{s}`")),
        };
        (h.to_owned(), port)
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
        (
            h.to_owned(),
            Some(p.parse::<u16>().map_err(|_| bad_port(p))?),
        )
    } else {
        (rest.to_owned(), None)
    };
    if host.is_empty() {
        return Err(format!("no host in `{s}`"));
    }
    Ok((proto, host, port))
}

/// A `t_relay_to` flags argument: a number, decimal or `0x` hex.
fn relay_flags(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Where a relay goes when the script names it: `host[, port[, proto]]`
/// (a single `proto:host:port` string too), or nothing.
enum Dst {
    Uri,
    HostPort(Format, PortArg, Option<Proto>),
    Proxy(Format),
}

fn relay_handler(st: State, dst: Dst, proto: Option<Proto>, flags: u32, nonack: bool) -> Handler {
    Box::new(move |ctx| {
        let over = match &dst {
            Dst::Uri if proto.is_none() && flags == 0 => None,
            Dst::Uri => Some(Override {
                host: String::new(),
                port: None,
                proto,
                flags,
            }),
            Dst::HostPort(h, port, p) => {
                let port = match port {
                    PortArg::None => None,
                    PortArg::Const(p) => Some(*p),
                    PortArg::Dyn(f) => ctx.render(f).trim().parse().ok(),
                };
                Some(Override {
                    host: ctx.render(h),
                    port,
                    proto: p.or(proto),
                    flags,
                })
            }
            Dst::Proxy(f) => {
                let text = ctx.render(f);
                match parse_proxy(&text) {
                    Ok((p, host, port)) => Some(Override {
                        host,
                        port,
                        proto: p.or(proto),
                        flags,
                    }),
                    Err(e) => {
                        log::error!("tm: relay destination: {e}");
                        return Flow::False;
                    }
                }
            }
        };
        with_tm(&st, |tm| relay(tm, ctx, over.as_ref(), nonack))
    })
}

/// A constant `proto:host:port` is checked at load time.
fn proxy_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Dst, FixupError> {
    let f = fx.format_arg(args, i)?;
    if let Some(c) = f.as_constant() {
        parse_proxy(c).map_err(|e| FixupError::arg(i, e))?;
    }
    Ok(Dst::Proxy(f))
}

fn make_relay(
    fx: &FixupCtx<'_>,
    args: &[Arg],
    proto: Option<Proto>,
    nonack: bool,
) -> Result<Handler, FixupError> {
    let dst = match args.len() {
        0 => Dst::Uri,
        // one string: `host`, `host:port` or `proto:host:port`
        1 => proxy_arg(fx, args, 0)?,
        _ => {
            let host = fx.format_arg(args, 0)?;
            let port = port_arg(fx, args, 1)?;
            let p = match args.get(2) {
                Some(_) => {
                    let p = fx.str_arg(args, 2)?;
                    Some(
                        Proto::from_name(&p)
                            .ok_or_else(|| FixupError::arg(2, format!("unknown protocol `{p}`")))?,
                    )
                }
                None => None,
            };
            Dst::HostPort(host, port, p)
        }
    };
    Ok(relay_handler(
        fx.module.state.clone(),
        dst,
        proto,
        0,
        nonack,
    ))
}

/// `t_relay_to([proxy][, flags])`: one argument is flags when it is a number.
fn fixup_relay_to(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let flags_at = |i: usize| -> Result<u32, FixupError> {
        let t = fx.str_arg(args, i)?;
        relay_flags(&t).ok_or_else(|| FixupError::arg(i, format!("bad flags `{t}`")))
    };
    let (dst, flags) = match args.len() {
        0 => (Dst::Uri, 0),
        1 => match args[0].text().as_deref().and_then(relay_flags) {
            Some(f) => (Dst::Uri, f),
            None => (proxy_arg(fx, args, 0)?, 0),
        },
        _ => (proxy_arg(fx, args, 0)?, flags_at(1)?),
    };
    Ok(relay_handler(
        fx.module.state.clone(),
        dst,
        None,
        flags,
        false,
    ))
}

fn fixup_relay(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, None, false)
}

fn fixup_relay_udp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Udp), false)
}

fn fixup_relay_tcp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Tcp), false)
}

fn fixup_relay_tls(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Tls), false)
}

fn fixup_relay_sctp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Sctp), false)
}

fn fixup_forward_nonack(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, None, true)
}

fn fixup_forward_nonack_udp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Udp), true)
}

fn fixup_forward_nonack_tcp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Tcp), true)
}

fn fixup_forward_nonack_tls(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Tls), true)
}

fn fixup_forward_nonack_sctp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_relay(fx, args, Some(Proto::Sctp), true)
}

fn fixup_relay_cancel(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            if !ctx.method().eq_ignore_ascii_case("CANCEL") {
                return Flow::True;
            }
            match tm.lookup(&ctx.msg, Purpose::Cancel) {
                Some(inv) => {
                    handle_cancel(tm, ctx, inv);
                    Flow::Exit
                }
                None => Flow::True,
            }
        })
    }))
}

fn fixup_newtran(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            if current(ctx).is_some() {
                return Flow::True;
            }
            if ctx.method().eq_ignore_ascii_case("ACK") {
                log::warn!("tm: t_newtran for an ACK");
                return Flow::False;
            }
            match tm.create(ctx) {
                Ok(_) => Flow::True,
                Err(Ok(t)) => {
                    tm.resend_last_reply(ctx.env, t);
                    Flow::Exit
                }
                Err(Err(e)) => {
                    create_failed(ctx, "t_newtran", &e);
                    Flow::False
                }
            }
        })
    }))
}

fn fixup_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let code_f = fx.format_arg(args, 0)?;
    if let Some(c) = code_f.as_constant() {
        match c.trim().parse::<u16>() {
            Ok(n) if (100..=699).contains(&n) => {}
            _ => return Err(FixupError::arg(0, format!("bad reply code `{c}`"))),
        }
    }
    let reason = fx.format_arg(args, 1)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let Some(code) = ctx
            .render(&code_f)
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=699).contains(c))
        else {
            log::error!("tm: t_reply: bad reply code");
            return Flow::False;
        };
        let reason = ctx.render(&reason);
        with_tm(&st, |tm| {
            let t = match current(ctx) {
                Some(c) => c.tx,
                None => match tm.create(ctx) {
                    Ok(t) => t,
                    Err(Ok(t)) => t,
                    Err(Err(e)) => {
                        create_failed(ctx, "t_reply", &e);
                        return Flow::False;
                    }
                },
            };
            let headers = ctx.reply_headers.clone();
            Flow::from_bool(tm.reply_local(ctx.env, t, code, &reason, &headers))
        })
    }))
}

/// `t_check_trans`, as Kamailio documents it: a reply — it belongs to a
/// transaction of ours; CANCEL — its INVITE transaction exists; an ACK to
/// our negative reply — absorbed, the script ends; an end-to-end ACK — its
/// INVITE transaction is still here; any other request — a retransmission
/// gets the last reply again and the script ends.
fn fixup_check_trans(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            if current(ctx).is_some() {
                return Flow::True;
            }
            if !ctx.is_request() {
                let ours = ctx
                    .msg
                    .via1()
                    .ok()
                    .and_then(|v| v.branch)
                    .and_then(|b| self::core::parse_branch(ctx.msg.s(b)))
                    .is_some_and(|(t, _)| tm.data(t).is_some());
                return Flow::from_bool(ours);
            }
            let m = ctx.method().to_ascii_uppercase();
            match m.as_str() {
                "CANCEL" => Flow::from_bool(tm.lookup(&ctx.msg, Purpose::Cancel).is_some()),
                "ACK" => {
                    if let Some(t) = tm.lookup(&ctx.msg, Purpose::Ack) {
                        if tm.absorb_ack(t) {
                            return Flow::Exit;
                        }
                        return Flow::True;
                    }
                    let e2e = ctx
                        .msg
                        .call_id()
                        .zip(ctx.msg.cseq().ok().map(|c| c.number))
                        .and_then(|(id, n)| tm.find_by_callid(id, n))
                        .and_then(|t| tm.data(t))
                        .is_some_and(|d| d.invite && (200..300).contains(&d.up_code));
                    Flow::from_bool(e2e)
                }
                _ => match tm.lookup(&ctx.msg, Purpose::Retransmission) {
                    Some(t) => {
                        tm.resend_last_reply(ctx.env, t);
                        Flow::Exit
                    }
                    None => Flow::False,
                },
            }
        })
    }))
}

fn fixup_retransmit_reply(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let env = ctx.env;
        tx_flag(&st, ctx, |tm, t| {
            tm.resend_last_reply(env, t);
            true
        })
    }))
}

fn fixup_lookup_request(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            let p = if ctx.method().eq_ignore_ascii_case("ACK") {
                Purpose::Ack
            } else {
                Purpose::Retransmission
            };
            Flow::from_bool(tm.lookup(&ctx.msg, p).is_some())
        })
    }))
}

#[derive(Clone, Copy)]
enum Which {
    Failure,
    Reply,
    Branch,
}

fn make_on(fx: &FixupCtx<'_>, args: &[Arg], which: Which) -> Result<Handler, FixupError> {
    let name = fx.str_arg(args, 0)?;
    let kind = match which {
        Which::Failure => RouteMask::FAILURE,
        Which::Reply => RouteMask::ONREPLY,
        Which::Branch => RouteMask::BRANCH,
    };
    if !fx.names.has_route(kind, &name) {
        return Err(FixupError::arg(0, format!("route `{name}` is not defined")));
    }
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            match current(ctx) {
                Some(c) => {
                    if let Some(mut m) = tm.meta(c.tx) {
                        match which {
                            Which::Failure => m.on_failure = name.clone(),
                            Which::Reply => m.on_reply = name.clone(),
                            Which::Branch => m.on_branch = name.clone(),
                        }
                        tm.set_meta(c.tx, &m);
                    }
                }
                None => with_pending(ctx, |p| match which {
                    Which::Failure => p.on_failure = Some(name.clone()),
                    Which::Reply => p.on_reply = Some(name.clone()),
                    Which::Branch => p.on_branch = Some(name.clone()),
                }),
            }
            Flow::True
        })
    }))
}

fn fixup_on_failure(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_on(fx, args, Which::Failure)
}

fn fixup_on_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_on(fx, args, Which::Reply)
}

fn fixup_on_branch(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    make_on(fx, args, Which::Branch)
}

/// `t_is_branch_route()`: whether the script runs in a `branch_route`.
fn fixup_is_branch_route(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        Flow::from_bool(
            ctx.module_pvs
                .contains_key(crate::tm::core::IN_BRANCH_ROUTE),
        )
    }))
}

/// `t_is_set("branch_route"|"onreply_route"|"failure_route")`: whether a
/// route of that kind is armed for the current (or the next) transaction.
fn fixup_is_set(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let which = match fx.str_arg(args, 0)?.as_str() {
        "branch_route" => Which::Branch,
        "onreply_route" => Which::Reply,
        "failure_route" => Which::Failure,
        other => {
            return Err(FixupError::arg(
                0,
                format!("`{other}`: want branch_route, onreply_route or failure_route"),
            ))
        }
    };
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            let set = match current(ctx) {
                Some(c) => tm.meta(c.tx).is_some_and(|m| match which {
                    Which::Failure => !m.on_failure.is_empty(),
                    Which::Reply => !m.on_reply.is_empty(),
                    Which::Branch => !m.on_branch.is_empty(),
                }),
                None => with_pending(ctx, |p| match which {
                    Which::Failure => p.on_failure.is_some(),
                    Which::Reply => p.on_reply.is_some(),
                    Which::Branch => p.on_branch.is_some(),
                }),
            };
            Flow::from_bool(set)
        })
    }))
}

fn fixup_check_status(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let re = fx.regex_arg(args, 0)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            let code = match (ctx.status(), current(ctx)) {
                (Some(c), _) => c,
                (None, Some(c)) if c.fail_code != 0 => c.fail_code,
                (None, Some(c)) => tm.data(c.tx).map_or(0, |d| d.up_code),
                (None, None) => return Flow::False,
            };
            Flow::from_bool(code != 0 && re.is_match(&code.to_string()))
        })
    }))
}

fn tx_flag(st: &State, ctx: &MsgCtx<'_>, f: impl FnOnce(&TmCore, TxRef) -> bool) -> Flow {
    with_tm(st, |tm| {
        let t = current(ctx).map(|c| c.tx).or_else(|| {
            if ctx.is_request() {
                tm.lookup(&ctx.msg, Purpose::Retransmission)
            } else {
                None
            }
        });
        match t {
            Some(t) => Flow::from_bool(f(tm, t)),
            None => Flow::False,
        }
    })
}

fn fixup_is_canceled(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        tx_flag(&st, ctx, |tm, t| tm.data(t).is_some_and(|d| d.canceled))
    }))
}

fn fixup_release(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        tx_flag(&st, ctx, |tm, t| tm.release(t))
    }))
}

/// The branch a failure route runs for: the one whose reply was selected
/// (known while tm runs the route; else picked again from the replies).
fn failed_branch(tm: &TmCore, t: TxRef, picked: Option<usize>) -> Option<tx::BranchData> {
    let brs = tm.branches(t);
    if let Some(b) = picked.and_then(|i| brs.get(i)) {
        return Some(*b);
    }
    let codes: Vec<Option<u16>> = brs
        .iter()
        .map(|b| Some(b.code).filter(|c| *c >= 200))
        .collect();
    select::pick_best(&codes).and_then(|i| brs.get(i).copied())
}

fn fixup_branch_timeout(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let picked = current(ctx).and_then(|c| c.fail_branch);
        tx_flag(&st, ctx, |tm, t| {
            failed_branch(tm, t, picked).is_some_and(|b| b.timed_out)
        })
    }))
}

fn fixup_branch_replied(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let picked = current(ctx).and_then(|c| c.fail_branch);
        tx_flag(&st, ctx, |tm, t| {
            failed_branch(tm, t, picked).is_some_and(|b| b.replied)
        })
    }))
}

fn fixup_any_timeout(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        tx_flag(&st, ctx, |tm, t| tm.branches(t).iter().any(|b| b.timed_out))
    }))
}

fn fixup_any_replied(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        tx_flag(&st, ctx, |tm, t| tm.branches(t).iter().any(|b| b.replied))
    }))
}

/// `t_lookup_cancel([1])`: the CANCEL's INVITE transaction exists; with 1
/// the message flags become the INVITE's.
fn fixup_lookup_cancel(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let copy_flags = match args.first() {
        Some(_) => fx.int_arg(args, 0)? == 1,
        None => false,
    };
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            if !ctx.method().eq_ignore_ascii_case("CANCEL") {
                return Flow::False;
            }
            match tm
                .lookup(&ctx.msg, Purpose::Cancel)
                .and_then(|t| tm.data(t))
            {
                Some(d) => {
                    if copy_flags {
                        ctx.flags = crate::runtime::flags::Flags(d.flags);
                    }
                    Flow::True
                }
                None => Flow::False,
            }
        })
    }))
}

/// `t_grep_status("code")`: some branch ended with that final code
/// (received or generated by us).
fn fixup_grep_status(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let code_f = fx.format_arg(args, 0)?;
    if let Some(c) = code_f.as_constant() {
        c.trim()
            .parse::<u16>()
            .map_err(|_| FixupError::arg(0, format!("bad reply code `{c}`")))?;
    }
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let Ok(code) = ctx.render(&code_f).trim().parse::<u16>() else {
            return Flow::False;
        };
        tx_flag(&st, ctx, |tm, t| {
            tm.branches(t)
                .iter()
                .any(|b| b.code == code && b.code >= 200)
        })
    }))
}

/// `t_reset_fr()`: the transaction's timers back to the module's.
fn fixup_reset_fr(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            let (fr, fr_inv) = (tm.timers.fr, tm.timers.fr_inv);
            match current(ctx) {
                Some(c) => {
                    tm.update(c.tx, |d| {
                        d.fr = fr;
                        d.fr_inv = fr_inv;
                    });
                }
                None => with_pending(ctx, |p| {
                    p.fr = None;
                    p.fr_inv = None;
                }),
            }
            Flow::True
        })
    }))
}

/// `t_drop_replies([mode])`: 'a' (default) every reply so far, 'l' those of
/// the last serial forking step, 'n' none.
fn fixup_drop_replies(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let mode = match args.first() {
        Some(_) => fx.str_arg(args, 0)?,
        None => "a".to_owned(),
    };
    let last_only = match mode.trim() {
        "a" => Some(false),
        "l" => Some(true),
        "n" => None,
        m => return Err(FixupError::arg(0, format!("bad mode `{m}` (a, l or n)"))),
    };
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| match last_only {
        None => Flow::True,
        Some(last) => tx_flag(&st, ctx, |tm, t| tm.drop_replies(t, last)),
    }))
}

fn switch_arg(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<bool, FixupError> {
    match fx.int_arg(args, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(FixupError::arg(0, format!("expected 0 or 1, not {n}"))),
    }
}

/// `t_set_disable_6xx(0|1)`: this transaction's 6xx replies are ordinary.
fn fixup_set_disable_6xx(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let on = switch_arg(fx, args)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            match current(ctx) {
                Some(c) => {
                    tm.update(c.tx, |d| d.disable_6xx = on);
                }
                None => with_pending(ctx, |p| p.disable_6xx = Some(on)),
            }
            Flow::True
        })
    }))
}

/// `t_set_auto_inv_100(0|1)`: whether relaying this INVITE sends 100 Trying.
fn fixup_set_auto_inv_100(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let on = switch_arg(fx, args)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        with_tm(&st, |tm| {
            match current(ctx) {
                Some(c) => {
                    tm.update(c.tx, |d| d.no_auto_100 = !on);
                }
                None => with_pending(ctx, |p| p.auto_100 = Some(on)),
            }
            Flow::True
        })
    }))
}

/// Per-transaction switches of features tm does not have (DNS failover
/// between a branch's addresses, internal error replies, the CANCEL Reason
/// header copy): accepted so configs load, true.
fn fixup_accepted_switch(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    switch_arg(fx, args)?;
    Ok(Box::new(|_| Flow::True))
}

/// `t_use_uac_headers()`: our ACK/CANCEL copy From/To from the branch's
/// request already.
fn fixup_use_uac_headers(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|_| Flow::True))
}

enum Ms {
    Const(u32),
    Dyn(Format),
}

fn ms_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Option<Ms>, FixupError> {
    let Some(_) = args.get(i) else {
        return Ok(None);
    };
    let f = fx.format_arg(args, i)?;
    Ok(Some(match f.as_constant() {
        Some(c) => Ms::Const(
            c.trim()
                .parse()
                .map_err(|_| FixupError::arg(i, format!("bad timer value `{c}` (milliseconds)")))?,
        ),
        None => Ms::Dyn(f),
    }))
}

fn fixup_set_fr(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let inv = ms_arg(fx, args, 0)?;
    let non = ms_arg(fx, args, 1)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let val = |m: &Option<Ms>, ctx: &MsgCtx<'_>| -> Option<u32> {
            match m {
                None => None,
                Some(Ms::Const(v)) => Some(*v),
                Some(Ms::Dyn(f)) => ctx.render(f).trim().parse().ok(),
            }
            .filter(|v| *v > 0)
        };
        let (fr_inv, fr) = (val(&inv, ctx), val(&non, ctx));
        with_tm(&st, |tm| {
            match current(ctx) {
                Some(c) => {
                    tm.update(c.tx, |d| {
                        d.fr_inv = fr_inv.unwrap_or(d.fr_inv);
                        d.fr = fr.unwrap_or(d.fr);
                    });
                }
                None => with_pending(ctx, |p| {
                    p.fr_inv = fr_inv.or(p.fr_inv);
                    p.fr = fr.or(p.fr);
                }),
            }
            Flow::True
        })
    }))
}

#[cfg(test)]
mod tests;
