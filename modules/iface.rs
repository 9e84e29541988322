//! The module interface: what a built-in module exports (replaces SER's
//! `sr_module.h` `module_exports` + dlopen with a static registry).
//!
//! A module is a unit struct implementing [`Module`]; it lists typed
//! parameters ([`ParamExport`]) and script functions ([`FunctionExport`]).
//! Each function has a *fixup* that runs once at config load: it validates the
//! arguments and returns a [`Handler`] closure with everything pre-compiled.
//!
//! ```
//! use ser_modules::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module,
//!     ParamExport, RouteMask};
//! use ser_modules::Flow;
//!
//! /// `hello("text $rU")`: logs, true when the R-URI has a user.
//! pub struct Hello;
//!
//! static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
//!     name: "hello",
//!     min_args: 1,
//!     max_args: 1,
//!     routes: RouteMask::REQUEST,
//!     fixup: fixup_hello,
//! }];
//! static PARAMS: &[ParamExport] = &[ParamExport::int("verbose", 0)];
//!
//! impl Module for Hello {
//!     fn name(&self) -> &'static str { "hello" }
//!     fn params(&self) -> &'static [ParamExport] { PARAMS }
//!     fn functions(&self) -> &'static [FunctionExport] { FUNCTIONS }
//! }
//!
//! fn fixup_hello(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
//!     let text = fx.format_arg(args, 0)?; // `$pvar`s compiled once, here
//!     let verbose = fx.module.int("verbose") != 0; // modparam("hello", "verbose", 1)
//!     Ok(Box::new(move |ctx| {
//!         if verbose {
//!             log::info!("{}", ctx.render(&text));
//!         }
//!         Flow::from_bool(ctx.ruri().is_some_and(|u| u.contains('@')))
//!     }))
//! }
//! ```
//! Then add `pub mod hello;` to `lib.rs` and `&crate::hello::Hello` to
//! [`crate::registry::builtin`].

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crate::runtime::ctx::{Env, MsgCtx};
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::Pv;

/// Route types a function may be called from (SER `REQUEST_ROUTE`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMask(pub u32);

impl RouteMask {
    /// `route`, `request_route`.
    pub const REQUEST: RouteMask = RouteMask(1);
    /// `failure_route`.
    pub const FAILURE: RouteMask = RouteMask(2);
    /// `onreply_route`.
    pub const ONREPLY: RouteMask = RouteMask(4);
    /// `branch_route`.
    pub const BRANCH: RouteMask = RouteMask(8);
    /// `onsend_route`.
    pub const ONSEND: RouteMask = RouteMask(16);
    /// `event_route`.
    pub const EVENT: RouteMask = RouteMask(32);
    /// `error_route`.
    pub const ERROR: RouteMask = RouteMask(64);
    /// Every route type.
    pub const ANY: RouteMask = RouteMask(127);
    /// Routes that handle a request (request, failure, branch, event).
    pub const REQUEST_LIKE: RouteMask = RouteMask(1 | 2 | 8 | 32);

    /// Union.
    pub const fn or(self, o: RouteMask) -> RouteMask {
        RouteMask(self.0 | o.0)
    }

    /// Whether all bits of `o` are allowed.
    pub fn allows(self, o: RouteMask) -> bool {
        self.0 & o.0 == o.0
    }
}

/// A modparam value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// Integer (`yes`/`no` arrive as 1/0).
    Int(i64),
    /// String.
    Str(String),
}

/// Parameter type and default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamDefault {
    /// An int parameter (strings holding a number or a flag name are converted).
    Int(i64),
    /// A string parameter.
    Str(&'static str),
}

/// One `modparam` a module accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamExport {
    /// Name as in the docs (`maxfwd_limit`).
    pub name: &'static str,
    /// Type and default.
    pub default: ParamDefault,
    /// May be given several times (all values kept, e.g. ctl `binrpc`).
    pub multi: bool,
}

impl ParamExport {
    /// An int parameter.
    pub const fn int(name: &'static str, default: i64) -> ParamExport {
        ParamExport {
            name,
            default: ParamDefault::Int(default),
            multi: false,
        }
    }

    /// A string parameter.
    pub const fn str(name: &'static str, default: &'static str) -> ParamExport {
        ParamExport {
            name,
            default: ParamDefault::Str(default),
            multi: false,
        }
    }

    /// A string parameter that may repeat.
    pub const fn str_multi(name: &'static str, default: &'static str) -> ParamExport {
        ParamExport {
            name,
            default: ParamDefault::Str(default),
            multi: true,
        }
    }
}

/// A function argument as written in the config, before fixup.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// String literal.
    Str(String),
    /// Integer literal.
    Int(i64),
    /// Bare word (`FLAG_ACC`, `max_len`, a route name).
    Ident(String),
    /// A pseudo-variable, AVP or select written bare (`setavpflag($account, ..)`).
    Pv(Pv),
}

impl Arg {
    /// Text of a literal / word (ints printed).
    pub fn text(&self) -> Option<String> {
        match self {
            Arg::Str(s) | Arg::Ident(s) => Some(s.clone()),
            Arg::Int(i) => Some(i.to_string()),
            Arg::Pv(_) => None,
        }
    }
}

/// Why a fixup rejected its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixupError {
    /// Index of the offending argument, if one.
    pub arg: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl FixupError {
    /// An error about argument `i`.
    pub fn arg(i: usize, message: impl Into<String>) -> FixupError {
        FixupError {
            arg: Some(i),
            message: message.into(),
        }
    }

    /// An error about the whole call.
    pub fn call(message: impl Into<String>) -> FixupError {
        FixupError {
            arg: None,
            message: message.into(),
        }
    }
}

/// Per-message behaviour of a fixed-up function call.
pub type Handler = Box<dyn Fn(&mut MsgCtx<'_>) -> Flow + Send + Sync>;

/// Fixup: check and pre-compile the args, return the handler.
pub type FixupFn = fn(&FixupCtx<'_>, &[Arg]) -> Result<Handler, FixupError>;

/// One exported script function (`cmd_export_t`).
#[derive(Clone, Copy)]
pub struct FunctionExport {
    /// Script name.
    pub name: &'static str,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments.
    pub max_args: usize,
    /// Where it may be called.
    pub routes: RouteMask,
    /// Load-time argument check + compile.
    pub fixup: FixupFn,
}

impl FunctionExport {
    /// An export; modules wrap it in a `const fn f` with their usual route mask.
    pub const fn new(
        name: &'static str,
        min_args: usize,
        max_args: usize,
        routes: RouteMask,
        fixup: FixupFn,
    ) -> FunctionExport {
        FunctionExport {
            name,
            min_args,
            max_args,
            routes,
            fixup,
        }
    }
}

/// What the engine knows about the script, for fixups (named flags, routes).
pub trait ScriptNames {
    /// Bit of a named flag (`flags FLAG_ACC : 1;`).
    fn flag(&self, name: &str) -> Option<u32>;
    /// Bit of a named AVP flag (`avpflags dialog_cookie;`).
    fn avp_flag(&self, name: &str) -> Option<u32>;
    /// Whether a route of this kind and name exists (`t_on_failure("X")`).
    fn has_route(&self, kind: RouteMask, name: &str) -> bool;
}

/// Context handed to a fixup.
pub struct FixupCtx<'a> {
    /// The function's module (parameters, shared state).
    pub module: &'a ModuleEnv,
    /// Names declared in the script.
    pub names: &'a dyn ScriptNames,
}

impl FixupCtx<'_> {
    /// A flag argument: a number 0..=31 or a declared flag name (also as a string: `"6"`, `"FLAG_ACC"`).
    pub fn flag_arg(&self, args: &[Arg], i: usize) -> Result<u32, FixupError> {
        let text = match &args[i] {
            Arg::Int(n) => n.to_string(),
            Arg::Str(s) | Arg::Ident(s) => s.trim().to_owned(),
            Arg::Pv(_) => return Err(FixupError::arg(i, "flag must be a number or a flag name")),
        };
        let bit = match text.parse::<i64>() {
            Ok(n) => n,
            Err(_) => match self.names.flag(&text) {
                Some(b) => i64::from(b),
                None => {
                    return Err(FixupError::arg(
                        i,
                        format!("unknown flag `{text}` (not declared with `flags`)"),
                    ))
                }
            },
        };
        if !(0..=i64::from(crate::runtime::flags::MAX_FLAG)).contains(&bit) {
            return Err(FixupError::arg(i, format!("flag {bit} out of range 0..31")));
        }
        Ok(bit as u32)
    }

    /// An int argument (literal or a string holding a number).
    pub fn int_arg(&self, args: &[Arg], i: usize) -> Result<i64, FixupError> {
        match &args[i] {
            Arg::Int(n) => Ok(*n),
            Arg::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| FixupError::arg(i, format!("`{s}` is not a number"))),
            other => Err(FixupError::arg(
                i,
                format!("expected a number, found {other:?}"),
            )),
        }
    }

    /// A format-string argument (`$pvar`, `%$avp`, `%@select` expanded per message);
    /// a bare pvar is a one-variable format.
    pub fn format_arg(&self, args: &[Arg], i: usize) -> Result<Format, FixupError> {
        match &args[i] {
            Arg::Str(s) => Format::parse(s).map_err(|e| FixupError::arg(i, e)),
            Arg::Int(n) => Ok(Format::parse(&n.to_string()).map_err(|e| FixupError::arg(i, e))?),
            Arg::Ident(s) => Format::parse(s).map_err(|e| FixupError::arg(i, e)),
            Arg::Pv(pv) => Ok(Format {
                pieces: vec![crate::runtime::format::Piece::Pv(pv.clone())],
            }),
        }
    }

    /// A plain string argument (no variables).
    pub fn str_arg(&self, args: &[Arg], i: usize) -> Result<String, FixupError> {
        args[i]
            .text()
            .ok_or_else(|| FixupError::arg(i, "expected a constant string"))
    }

    /// A regex argument (POSIX extended, case-insensitive as SER compiles them).
    pub fn regex_arg(&self, args: &[Arg], i: usize) -> Result<regex::Regex, FixupError> {
        let s = self.str_arg(args, i)?;
        compile_regex(&s, true).map_err(|e| FixupError::arg(i, e))
    }
}

/// Compile a SER (POSIX extended) regex.
pub fn compile_regex(re: &str, icase: bool) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(re)
        .case_insensitive(icase)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regular expression `{re}`: {e}"))
}

/// A module's runtime environment: its parameters (defaults + modparams) and
/// the state its `init` creates.
pub struct ModuleEnv {
    /// The module name.
    pub name: &'static str,
    params: HashMap<&'static str, Vec<ParamValue>>,
    explicit: HashSet<&'static str>,
    /// State created by `init` (in main, before fork), read by handlers.
    pub state: Arc<OnceLock<Box<dyn Any + Send + Sync>>>,
    /// The engine, for modules that run script routes themselves (tm's
    /// failure/onreply/branch routes); set once by [`crate::registry::Modules::set_route_runner`].
    pub routes: Arc<OnceLock<Weak<dyn RouteRunner>>>,
}

/// How a route run through [`RouteRunner`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteEnd {
    /// The route ended normally (end of block, `return`, `break`).
    Done,
    /// `exit` (or a function returned 0).
    Exit,
    /// `drop`.
    Drop,
    /// No route of that kind and name.
    Missing,
}

/// Lets a module run a named script route outside the request route: tm runs
/// `failure_route`, `onreply_route` and `branch_route` on a context it builds
/// (in whatever process handles the reply or the timeout).  Implemented by the
/// routing engine.
pub trait RouteRunner: Send + Sync {
    /// Run route `name` of type `kind` (one bit) at top level on `ctx`.
    fn run_route(&self, kind: RouteMask, name: &str, ctx: &mut MsgCtx<'_>) -> RouteEnd;
    /// Whether route `name` ("" for the main one) of type `kind` exists, so
    /// a caller can skip preparing a context for a route that is not there
    /// (`onsend_route` on every send).
    fn has_route(&self, _kind: RouteMask, _name: &str) -> bool {
        true
    }
    /// `onsend_route_reply=yes`: replies relayed upstream run `onsend_route`.
    fn onsend_replies(&self) -> bool {
        false
    }
}

impl ModuleEnv {
    /// A fresh env with the parameter defaults.
    pub fn new(m: &dyn Module) -> ModuleEnv {
        let mut params = HashMap::new();
        for p in m.params() {
            let v = match p.default {
                ParamDefault::Int(i) => ParamValue::Int(i),
                ParamDefault::Str(s) => ParamValue::Str(s.to_owned()),
            };
            params.insert(p.name, vec![v]);
        }
        ModuleEnv {
            name: m.name(),
            params,
            explicit: HashSet::new(),
            state: Arc::new(OnceLock::new()),
            routes: Arc::new(OnceLock::new()),
        }
    }

    /// Apply `modparam(mod, name, value)`, converting to the declared type.
    /// `flag` resolves flag names given as strings for int parameters.
    pub fn set_param(
        &mut self,
        m: &dyn Module,
        name: &str,
        value: ParamValue,
        flag: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<(), String> {
        let Some(p) = m.params().iter().find(|p| p.name == name) else {
            let known: Vec<&str> = m.params().iter().map(|p| p.name).collect();
            return Err(format!(
                "module `{}` has no parameter `{name}` (known: {})",
                m.name(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let v = match (p.default, value) {
            (ParamDefault::Int(_), ParamValue::Str(s)) => match s.trim().parse::<i64>() {
                Ok(i) => ParamValue::Int(i),
                Err(_) => match flag(s.trim()) {
                    Some(b) => ParamValue::Int(i64::from(b)),
                    None => {
                        return Err(format!(
                            "parameter `{name}` of `{}` wants an int, got \"{s}\"",
                            m.name()
                        ))
                    }
                },
            },
            (ParamDefault::Str(_), ParamValue::Int(i)) => ParamValue::Str(i.to_string()),
            (_, v) => v,
        };
        // A multi parameter's default is replaced by the first explicit value.
        let first = self.explicit.insert(p.name);
        let slot = self.params.entry(p.name).or_default();
        if first || !p.multi {
            slot.clear();
        }
        slot.push(v);
        Ok(())
    }

    /// Int parameter value (0 if absent or not an int).
    pub fn int(&self, name: &str) -> i64 {
        match self.params.get(name).and_then(|v| v.last()) {
            Some(ParamValue::Int(i)) => *i,
            Some(ParamValue::Str(s)) => s.parse().unwrap_or(0),
            None => 0,
        }
    }

    /// String parameter value ("" if absent).
    pub fn str(&self, name: &str) -> String {
        match self.params.get(name).and_then(|v| v.last()) {
            Some(ParamValue::Str(s)) => s.clone(),
            Some(ParamValue::Int(i)) => i.to_string(),
            None => String::new(),
        }
    }

    /// Every value of a multi parameter.
    pub fn all(&self, name: &str) -> &[ParamValue] {
        self.params.get(name).map_or(&[], |v| v.as_slice())
    }
}

/// A built-in SER module.
pub trait Module: Sync {
    /// Module name as in `loadmodule` (`sl`, `maxfwd`).
    fn name(&self) -> &'static str;
    /// Parameters (`modparam`).
    fn params(&self) -> &'static [ParamExport] {
        &[]
    }
    /// Script functions.
    fn functions(&self) -> &'static [FunctionExport] {
        &[]
    }
    /// Init in main, after fixups, before fork (may allocate shm); may fill `env.state`.
    fn init(&self, _env: &ModuleEnv) -> Result<(), String> {
        Ok(())
    }
    /// Per-child init after fork (open DB connections here); `rank` as SER.
    fn child_init(&self, _env: &ModuleEnv, _rank: i32) -> Result<(), String> {
        Ok(())
    }
    /// Register the module's RPC methods (`core.*`-style names) into the ctl registry.
    fn register_rpc(&self, _env: &ModuleEnv, _reg: &mut ser_fifo::RpcRegistry) {}
    /// Runs on every received request before the request route (SER pre-script
    /// callbacks); `false` drops the message (sl absorbs ACKs to its replies here).
    fn on_request(&self, _env: &ModuleEnv, _ctx: &mut MsgCtx<'_>) -> bool {
        true
    }
    /// Runs on every received reply after the main `onreply_route`, before
    /// stateless forwarding (SER `response_f`); `false` means the module took
    /// the reply (tm relayed or absorbed it) and it must not be forwarded.
    fn on_reply(&self, _env: &ModuleEnv, _ctx: &mut MsgCtx<'_>) -> bool {
        true
    }
    /// Runs in the timer process on every timer tick (100 ms); `proc_env` is
    /// that process's environment (transport for sending).
    fn on_tick(&self, _env: &ModuleEnv, _proc_env: &Env, _now: Instant) {}
    /// How often the timer process calls [`Module::on_timer`] (None: never).
    fn timer_interval(&self, _env: &ModuleEnv) -> Option<std::time::Duration> {
        None
    }
    /// Periodic work in the timer process (usrloc expiry and write-back).
    fn on_timer(&self, _env: &ModuleEnv) {}
    /// Called once at shutdown in main.
    fn destroy(&self, _env: &ModuleEnv) {}
}
