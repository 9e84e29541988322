//! The action tree and its interpreter (SER `action.c` `run_actions`).

use ser_modules::iface::Handler;
use ser_modules::runtime::ctx::MsgCtx;
use ser_modules::runtime::flow::Flow;
use ser_modules::runtime::pvar::Pv;
use ser_modules::runtime::value::Value;

use super::expr::{values_eq, Rv};
use super::Script;

/// A fixed-up function call site.
pub struct CallSite {
    /// Function name (for logs).
    pub name: String,
    /// The pre-compiled handler.
    pub handler: Handler,
}

/// One `switch`: the case labels index into one flat body, so a case without
/// `break` falls through into the next.
pub struct Switch {
    /// `(label, index of its first action in body)`.
    pub cases: Vec<(Value, usize)>,
    /// Index of `default:`'s first action.
    pub default: Option<usize>,
    /// All case bodies in order.
    pub body: Vec<Action>,
}

/// A compiled statement.
pub enum Action {
    /// Module/core function call (index into [`Script::calls`]).
    Call(usize),
    /// `route(X)` (index into the route list).
    Route(usize),
    /// `if`.
    If(Rv, Vec<Action>, Vec<Action>),
    /// `switch`.
    Switch(Rv, Switch),
    /// `while`.
    While(Rv, Vec<Action>),
    /// `return [expr]`.
    Return(Option<Rv>),
    /// `exit`.
    Exit,
    /// `drop`.
    Drop,
    /// `break`.
    Break,
    /// `$x = expr` (`true`: `:=`).
    Assign(Pv, Rv, bool),
    /// `{ ... }`.
    Block(Vec<Action>),
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// Go on with the next statement.
    Next,
    /// `break`: leaves a switch/while; at route level ends the route.
    Break,
    /// `return`: ends the current route (`ctx.retcode` holds the value).
    Return,
    /// Stop the script.
    Exit,
    /// Stop the script, message dropped.
    Drop,
}

/// Interpreter state for one script run.
pub struct Exec<'s> {
    /// The script.
    pub script: &'s Script,
    /// Route call depth.
    pub depth: u32,
    /// Set when a call inside an expression stopped the script.
    pub stop: Option<Ctl>,
}

impl<'s> Exec<'s> {
    /// A fresh interpreter.
    pub fn new(script: &'s Script) -> Exec<'s> {
        Exec {
            script,
            depth: 0,
            stop: None,
        }
    }

    /// Run one route by index, as a sub-route call: `return`/`break`/end all
    /// come back as `Next`; only exit/drop propagate.
    pub fn run_route_idx(&mut self, ctx: &mut MsgCtx<'_>, idx: usize) -> Ctl {
        if self.depth >= self.script.opts.max_recursion {
            log::error!(
                "too many recursive route calls (limit {}) entering route `{}`",
                self.script.opts.max_recursion,
                self.script.routes[idx].label()
            );
            ctx.retcode = -1;
            return Ctl::Exit;
        }
        self.depth += 1;
        let ctl = self.block(ctx, &self.script.routes[idx].actions);
        self.depth -= 1;
        match ctl {
            Ctl::Exit | Ctl::Drop => ctl,
            Ctl::Next | Ctl::Break | Ctl::Return => Ctl::Next,
        }
    }

    /// Run a statement list.
    pub fn block(&mut self, ctx: &mut MsgCtx<'_>, actions: &[Action]) -> Ctl {
        for a in actions {
            let ctl = self.action(ctx, a);
            if ctl != Ctl::Next {
                return ctl;
            }
        }
        Ctl::Next
    }

    /// Call a fixed-up function and record its return code.
    pub fn call(&mut self, ctx: &mut MsgCtx<'_>, idx: usize) -> Ctl {
        let site = &self.script.calls[idx];
        let flow = (site.handler)(ctx);
        ctx.retcode = flow.to_int();
        match flow {
            Flow::Drop => Ctl::Drop,
            f if f.stops() => Ctl::Exit,
            _ => Ctl::Next,
        }
    }

    fn take_stop(&mut self) -> Option<Ctl> {
        self.stop.take()
    }

    fn action(&mut self, ctx: &mut MsgCtx<'_>, a: &Action) -> Ctl {
        match a {
            Action::Call(idx) => self.call(ctx, *idx),
            Action::Route(idx) => self.run_route_idx(ctx, *idx),
            Action::If(cond, then, otherwise) => {
                let c = self.cond(ctx, cond);
                if let Some(stop) = self.take_stop() {
                    return stop;
                }
                self.block(ctx, if c { then } else { otherwise })
            }
            Action::Switch(e, sw) => {
                let v = self.eval(ctx, e);
                if let Some(stop) = self.take_stop() {
                    return stop;
                }
                let start = sw
                    .cases
                    .iter()
                    .find(|(label, _)| values_eq(label, &v))
                    .map(|(_, i)| *i)
                    .or(sw.default);
                let Some(start) = start else { return Ctl::Next };
                match self.block(ctx, &sw.body[start..]) {
                    Ctl::Break => Ctl::Next,
                    other => other,
                }
            }
            Action::While(cond, body) => {
                let max = self.script.opts.max_while_loops;
                let mut n = 0u32;
                loop {
                    let c = self.cond(ctx, cond);
                    if let Some(stop) = self.take_stop() {
                        return stop;
                    }
                    if !c {
                        return Ctl::Next;
                    }
                    if n >= max {
                        log::error!(
                            "runaway while loop: stopped after max_while_loops={max} iterations"
                        );
                        return Ctl::Next;
                    }
                    n += 1;
                    match self.block(ctx, body) {
                        Ctl::Next => {}
                        Ctl::Break => return Ctl::Next,
                        other => return other,
                    }
                }
            }
            Action::Return(v) => {
                let code = match v {
                    Some(e) => {
                        let v = self.eval(ctx, e);
                        if let Some(stop) = self.take_stop() {
                            return stop;
                        }
                        v.as_int().clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
                    }
                    None => 1,
                };
                ctx.retcode = code;
                // `return(0)` stops the whole script, as in SER.
                if code == 0 {
                    Ctl::Exit
                } else {
                    Ctl::Return
                }
            }
            Action::Exit => Ctl::Exit,
            Action::Drop => Ctl::Drop,
            Action::Break => Ctl::Break,
            Action::Assign(pv, e, colon) => {
                let v = self.eval(ctx, e);
                if let Some(stop) = self.take_stop() {
                    return stop;
                }
                if let Err(err) = ctx.set_pv(pv, v, *colon) {
                    log::error!("assignment failed: {err}");
                }
                Ctl::Next
            }
            Action::Block(b) => self.block(ctx, b),
        }
    }
}
