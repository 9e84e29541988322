//! The routing engine: compiles the config AST into an action tree with every
//! name resolved and every function argument fixed up, then runs it per
//! message.  Replaces SER's `route.c` (`fix_rls`, route tables), `action.c`
//! (`run_actions`), `rvalue.c` and the script side of `sr_module.c`.
//!
//! Start-up calls [`load`] once in main (`-c` stops after it), then
//! [`Script::init_modules`] before forking and [`Script::child_init`] in each
//! child; a worker builds a [`MsgCtx`] per message and calls
//! [`Script::run_request`] or [`Script::run_reply`].  [`serve`] adapts a
//! script to the spine's `ChildInit`/`SipHandler` seam.

pub mod blacklist;
mod compile;
mod core_fns;
pub mod exec;
pub mod expr;
mod legacy;
pub mod serve;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use ser_modules::iface::{RouteEnd, RouteMask, RouteRunner};
use ser_modules::registry::Modules;
use ser_modules::runtime::cfg::StaticCfg;
use ser_parser::ast::RouteKind;
use ser_parser::{Diagnostic, Parsed};

pub use ser_modules::runtime::ctx::{Env, MsgCtx};
pub use ser_modules::runtime::transport::{Dest, Listen, Myself, Proto, Recorder, Transport};
pub use ser_modules::Flow;

use exec::{Action, CallSite, Ctl, Exec};

/// Engine limits (core parameters `max_while_loops`, recursion depth).
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Iterations after which a `while` loop is stopped (Kamailio default 100).
    pub max_while_loops: u32,
    /// Nested `route()` calls allowed (SER `ROUTE_MAX_REC_LEV`).
    pub max_recursion: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_while_loops: 100,
            max_recursion: 100,
        }
    }
}

/// One compiled route block.
pub struct RouteBody {
    /// Route type.
    pub kind: RouteKind,
    /// `None` for the main block of its type.
    pub name: Option<String>,
    /// Its statements.
    pub actions: Vec<Action>,
}

impl RouteBody {
    /// `route[NAME]`-style label for logs.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            RouteKind::Request => "route",
            RouteKind::OnReply => "onreply_route",
            RouteKind::Failure => "failure_route",
            RouteKind::Branch => "branch_route",
            RouteKind::OnSend => "onsend_route",
            RouteKind::Event => "event_route",
            RouteKind::Error => "error_route",
        };
        match &self.name {
            Some(n) => format!("{kind}[{n}]"),
            None => kind.to_owned(),
        }
    }
}

/// How a script run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The route ended (end of block, `return`, `break`); `ctx.retcode` holds `$?`.
    Done,
    /// `exit`, or a function/route returned 0.
    Exit,
    /// `drop` (or a function asked to drop): replies are not forwarded, branches cancelled.
    Drop,
    /// No route of that kind/name exists.
    NoRoute,
}

/// A loaded config: route tables, fixed-up calls, modules.
pub struct Script {
    pub(crate) routes: Vec<RouteBody>,
    pub(crate) calls: Vec<CallSite>,
    pub(crate) index: HashMap<(RouteKind, Option<String>), usize>,
    pub(crate) opts: LoadOptions,
    pub(crate) modules: Modules,
    pub(crate) cfg: Arc<StaticCfg>,
    pub(crate) legacy: Option<legacy::Table>,
    /// Warnings found while loading.
    pub warnings: Vec<Diagnostic>,
    /// The core functions' route runner slot (`forward()` runs `onsend_route`).
    pub(crate) core_routes: Arc<std::sync::OnceLock<std::sync::Weak<dyn RouteRunner>>>,
    /// `onsend_route_reply=yes`: relayed replies go through `onsend_route` too.
    pub(crate) onsend_reply: bool,
}

/// Compile a parsed config.  Every problem is reported at its span: unknown
/// or unavailable modules and functions, wrong arity, bad constants (fixups),
/// undefined routes and flags.
pub fn load(parsed: &Parsed, opts: &LoadOptions) -> Result<Script, Vec<Diagnostic>> {
    compile::compile(&parsed.config, *opts)
}

fn ctl_outcome(ctl: Ctl) -> Outcome {
    match ctl {
        Ctl::Exit => Outcome::Exit,
        Ctl::Drop => Outcome::Drop,
        Ctl::Next | Ctl::Break | Ctl::Return => Outcome::Done,
    }
}

impl Script {
    /// Index of a route (`name` as written; numbers as their decimal text).
    pub fn route_index(&self, kind: RouteKind, name: Option<&str>) -> Option<usize> {
        self.index.get(&(kind, name.map(str::to_owned))).copied()
    }

    /// Run one route table entry at top level (tm uses this for failure,
    /// branch and onreply routes).
    pub fn run_route(&self, kind: RouteKind, name: Option<&str>, ctx: &mut MsgCtx<'_>) -> Outcome {
        let Some(idx) = self.route_index(kind, name) else {
            return Outcome::NoRoute;
        };
        let mut ex = Exec::new(self);
        let ctl = ex.block(ctx, &self.routes[idx].actions);
        ctl_outcome(ctl)
    }

    /// A received request: modules' pre-script hooks (sl absorbs ACKs to its
    /// replies), then the main request route (or the 2001 regex table).
    pub fn run_request(&self, ctx: &mut MsgCtx<'_>) -> Outcome {
        for l in self.modules.iter() {
            if !l.module.on_request(&l.env, ctx) {
                return Outcome::Drop;
            }
        }
        if let Some(t) = &self.legacy {
            return t.run(ctx);
        }
        self.run_route(RouteKind::Request, None, ctx)
    }

    /// A received reply: the main `onreply_route` if any, then (unless it
    /// dropped the reply) stateless forwarding by the next Via when our Via is
    /// on top.
    pub fn run_reply(&self, ctx: &mut MsgCtx<'_>) -> Outcome {
        let out = match self.route_index(RouteKind::OnReply, None) {
            Some(_) => self.run_route(RouteKind::OnReply, None, ctx),
            None => Outcome::Done,
        };
        if out == Outcome::Drop {
            return out;
        }
        // tm (and other modules) may take the reply
        if !self.modules.on_reply_all(ctx) {
            return out;
        }
        if !ctx.top_via_is_ours() {
            log::debug!("reply whose top Via is not ours dropped");
            return Outcome::Drop;
        }
        match ctx.build_reply_forward() {
            Ok((buf, dst)) => {
                if self.onsend_reply && !ctx.onsend_allows(Some(self), &buf, &dst) {
                    return Outcome::Drop;
                }
                if let Err(e) = ctx.env.transport.send(&buf, &dst) {
                    log::error!("forwarding reply to {} failed: {e}", dst.addr);
                }
            }
            Err(e) => log::info!("reply not forwarded: {e}"),
        }
        out
    }

    /// Whether the config has an `error_route` (requests failing the
    /// pre-script checks go there instead of getting ser-sip's 400).
    pub fn has_error_route(&self) -> bool {
        self.route_index(RouteKind::Error, None).is_some()
    }

    /// The loaded modules.
    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    /// Custom cfg parameters (`group.name = value desc "..."`), to put in [`Env::cfg`].
    pub fn cfg(&self) -> Arc<StaticCfg> {
        self.cfg.clone()
    }

    /// Modules' init, in main before fork.
    pub fn init_modules(&self) -> Result<(), String> {
        self.modules.init_all()
    }

    /// Modules' per-child init, after fork.
    pub fn child_init(&self, rank: i32) -> Result<(), String> {
        self.modules.child_init_all(rank)
    }

    /// Put the script behind an `Arc` and hand it to the modules as their
    /// [`RouteRunner`] (tm runs failure/onreply/branch routes through it).
    pub fn into_shared(self) -> Arc<Script> {
        let shared = Arc::new(self);
        let weak: std::sync::Weak<dyn RouteRunner> =
            Arc::downgrade(&(shared.clone() as Arc<dyn RouteRunner>));
        let _ = shared.core_routes.set(weak.clone());
        shared.modules.set_route_runner(weak);
        shared
    }

    /// Number of routes (all types).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }
}

fn mask_kind(mask: RouteMask) -> Option<RouteKind> {
    Some(match mask {
        RouteMask::REQUEST => RouteKind::Request,
        RouteMask::FAILURE => RouteKind::Failure,
        RouteMask::ONREPLY => RouteKind::OnReply,
        RouteMask::BRANCH => RouteKind::Branch,
        RouteMask::ONSEND => RouteKind::OnSend,
        RouteMask::EVENT => RouteKind::Event,
        RouteMask::ERROR => RouteKind::Error,
        _ => return None,
    })
}

impl RouteRunner for Script {
    fn run_route(&self, kind: RouteMask, name: &str, ctx: &mut MsgCtx<'_>) -> RouteEnd {
        let Some(kind) = mask_kind(kind) else {
            return RouteEnd::Missing;
        };
        let name = if name.is_empty() { None } else { Some(name) };
        match Script::run_route(self, kind, name, ctx) {
            Outcome::Done => RouteEnd::Done,
            Outcome::Exit => RouteEnd::Exit,
            Outcome::Drop => RouteEnd::Drop,
            Outcome::NoRoute => RouteEnd::Missing,
        }
    }

    fn onsend_replies(&self) -> bool {
        self.onsend_reply
    }

    fn has_route(&self, kind: RouteMask, name: &str) -> bool {
        let name = if name.is_empty() { None } else { Some(name) };
        mask_kind(kind).is_some_and(|k| self.route_index(k, name).is_some())
    }
}
