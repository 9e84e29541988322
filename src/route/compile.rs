//! AST → action tree: name resolution, fixups, diagnostics (SER `fix_rls`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ser_modules::iface::{
    Arg, FixupCtx, FunctionExport, Module, ModuleEnv, ParamValue, RouteMask, ScriptNames,
};
use ser_modules::registry::{self, LoadError, Modules};
use ser_modules::runtime::avp::{parse_prefix, AvpName, AvpRef};
use ser_modules::runtime::cfg::StaticCfg;
use ser_modules::runtime::pvar::{parse_pv, Pv};
use ser_modules::runtime::select::Select;
use ser_modules::runtime::value::Value;
use ser_parser::ast::{self, BinOp, Block, Config, Expr, Item, RouteKind, Stmt, UnOp};
use ser_parser::{Diagnostic, Keyword, Span};

use super::core_fns::Core;
use super::exec::{Action, CallSite, Switch};
use super::expr::{Kw, Op, Rv};
use super::{legacy, mask_kind, LoadOptions, RouteBody, Script};

struct Names {
    flags: HashMap<String, u32>,
    avp_flags: HashMap<String, u32>,
    routes: HashSet<(RouteKind, String)>,
}

fn kind_mask(kind: RouteKind) -> RouteMask {
    match kind {
        RouteKind::Request => RouteMask::REQUEST,
        RouteKind::Failure => RouteMask::FAILURE,
        RouteKind::OnReply => RouteMask::ONREPLY,
        RouteKind::Branch => RouteMask::BRANCH,
        RouteKind::OnSend => RouteMask::ONSEND,
        RouteKind::Event => RouteMask::EVENT,
        RouteKind::Error => RouteMask::ERROR,
    }
}

fn kind_name(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Request => "route",
        RouteKind::OnReply => "onreply_route",
        RouteKind::Failure => "failure_route",
        RouteKind::Branch => "branch_route",
        RouteKind::OnSend => "onsend_route",
        RouteKind::Event => "event_route",
        RouteKind::Error => "error_route",
    }
}

impl ScriptNames for Names {
    fn flag(&self, name: &str) -> Option<u32> {
        self.flags.get(name).copied()
    }
    fn avp_flag(&self, name: &str) -> Option<u32> {
        self.avp_flags.get(name).copied()
    }
    fn has_route(&self, kind: RouteMask, name: &str) -> bool {
        mask_kind(kind).is_some_and(|k| self.routes.contains(&(k, name.to_owned())))
    }
}

struct Compiler {
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    modules: Modules,
    core_env: ModuleEnv,
    names: Names,
    calls: Vec<CallSite>,
    index: HashMap<(RouteKind, Option<String>), usize>,
    /// The route block being compiled: its kind, and whether it is a named
    /// request route (callable from any route type, so not checked).
    cur: (RouteKind, bool),
}

/// Compile a config.
pub fn compile(config: &Config, opts: LoadOptions) -> Result<Script, Vec<Diagnostic>> {
    let items = match config {
        Config::LegacyTable(rules) => {
            let table = legacy::Table::compile(rules)?;
            return Ok(Script {
                routes: Vec::new(),
                calls: Vec::new(),
                index: HashMap::new(),
                opts,
                modules: Modules::default(),
                cfg: Arc::new(StaticCfg::default()),
                legacy: Some(table),
                warnings: Vec::new(),
                core_routes: Default::default(),
                onsend_reply: false,
            });
        }
        Config::Script { items } => items,
    };
    let mut c = Compiler {
        diags: Vec::new(),
        warnings: Vec::new(),
        modules: Modules::default(),
        core_env: ModuleEnv::new(&Core),
        names: Names {
            flags: HashMap::new(),
            avp_flags: HashMap::new(),
            routes: HashSet::new(),
        },
        calls: Vec::new(),
        index: HashMap::new(),
        cur: (RouteKind::Request, false),
    };
    let mut cfg = StaticCfg::default();
    let mut onsend_reply = false;
    c.declare_names(items);
    // route table index first: calls may refer to routes defined later
    let mut routes: Vec<RouteBody> = Vec::new();
    for item in items {
        if let Item::Route(r) = item {
            let key = (r.kind, r.name.clone());
            if c.index.contains_key(&key) {
                c.diags.push(Diagnostic::error(
                    r.span,
                    format!("{} is defined twice", label(r.kind, &r.name)),
                ));
                continue;
            }
            c.index.insert(key, routes.len());
            if let Some(n) = &r.name {
                c.names.routes.insert((r.kind, n.clone()));
            }
            routes.push(RouteBody {
                kind: r.kind,
                name: r.name.clone(),
                actions: Vec::new(),
            });
        }
    }
    for item in items {
        match item {
            Item::LoadModule { path, span } => {
                if let Err(e) = c.modules.load(path) {
                    c.diags.push(Diagnostic::error(*span, e.to_string()));
                }
            }
            Item::ModParam {
                modules,
                param,
                value,
                span,
            } => {
                let v = match value {
                    ast::ParamValue::Str(s, _) => ParamValue::Str(s.clone()),
                    ast::ParamValue::Int(i, _) => ParamValue::Int(*i),
                };
                let flags = &c.names.flags;
                let lookup = |n: &str| flags.get(n).copied();
                match c.modules.modparam(modules, param, &v, &lookup) {
                    Ok(()) => {}
                    // the missing `loadmodule` itself is the error to report
                    Err(LoadError::NoModuleMatches(m)) => c.diags.push(
                        Diagnostic::error(
                            *span,
                            format!("modparam for module `{m}`, which is not loaded"),
                        )
                        .with_note(format!("add loadmodule \"{m}\" before this line")),
                    ),
                    Err(e) => c.diags.push(Diagnostic::error(*span, e.to_string())),
                }
            }
            Item::CustomParam {
                group,
                name,
                value,
                desc,
                ..
            } => {
                let v = match &value.kind {
                    ast::ValueKind::Int(i) => Value::Int(*i),
                    ast::ValueKind::Bool(b) => Value::Int(i64::from(*b)),
                    ast::ValueKind::Str(s) | ast::ValueKind::Ident(s) => Value::Str(s.clone()),
                    other => Value::Str(format!("{other:?}")),
                };
                cfg.declare(group, name, v, desc.as_deref().unwrap_or(""));
            }
            Item::Assign { name, value, .. } if name == "onsend_route_reply" => {
                onsend_reply = match &value.kind {
                    ast::ValueKind::Bool(b) => *b,
                    ast::ValueKind::Int(i) => *i != 0,
                    _ => false,
                };
            }
            _ => {}
        }
    }
    c.names.routes.extend(
        c.index
            .keys()
            .filter_map(|(k, n)| n.clone().map(|n| (*k, n))),
    );
    for item in items {
        if let Item::Route(r) = item {
            let Some(&idx) = c.index.get(&(r.kind, r.name.clone())) else {
                continue;
            };
            if routes[idx].actions.is_empty() {
                c.cur = (r.kind, r.kind == RouteKind::Request && r.name.is_some());
                routes[idx].actions = c.block(&r.body);
            }
        }
    }
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    Ok(Script {
        routes,
        calls: c.calls,
        index: c.index,
        opts,
        modules: c.modules,
        cfg: Arc::new(cfg),
        legacy: None,
        warnings: c.warnings,
        core_routes: c.core_env.routes.clone(),
        onsend_reply,
    })
}

fn label(kind: RouteKind, name: &Option<String>) -> String {
    match name {
        Some(n) => format!("{}[{n}]", kind_name(kind)),
        None => kind_name(kind).to_owned(),
    }
}

impl Compiler {
    fn declare_names(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Flags { flags, .. } => {
                    for f in flags {
                        let bit = match f.bit {
                            Some(b) if b <= 31 => b,
                            Some(b) => {
                                self.diags.push(Diagnostic::error(
                                    f.span,
                                    format!("flag `{}`: bit {b} out of range 0..31", f.name),
                                ));
                                continue;
                            }
                            None => match (0..=31)
                                .find(|b| !self.names.flags.values().any(|v| v == b))
                            {
                                Some(b) => b,
                                None => {
                                    self.diags
                                        .push(Diagnostic::error(f.span, "no free flag bit left"));
                                    continue;
                                }
                            },
                        };
                        if self.names.flags.insert(f.name.clone(), bit).is_some() {
                            self.diags.push(Diagnostic::error(
                                f.span,
                                format!("flag `{}` declared twice", f.name),
                            ));
                        }
                    }
                }
                Item::AvpFlags { names, .. } => {
                    for (n, span) in names {
                        let bit = self.names.avp_flags.len() as u32;
                        if bit > 7 {
                            self.diags
                                .push(Diagnostic::error(*span, "too many avpflags (at most 8)"));
                            continue;
                        }
                        self.names.avp_flags.entry(n.clone()).or_insert(bit);
                    }
                }
                _ => {}
            }
        }
    }

    fn block(&mut self, b: &Block) -> Vec<Action> {
        self.stmts(&b.stmts)
    }

    fn stmts(&mut self, stmts: &[Stmt]) -> Vec<Action> {
        stmts.iter().filter_map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &Stmt) -> Option<Action> {
        Some(match s {
            Stmt::Call(call) => {
                if call.name == "route" {
                    return self.route_call(call).map(Action::Route);
                }
                Action::Call(self.function(call)?)
            }
            Stmt::If {
                cond,
                then,
                otherwise,
                ..
            } => {
                let c = self.expr(cond);
                let t = self.block(then);
                let o = otherwise
                    .as_ref()
                    .map(|b| self.block(b))
                    .unwrap_or_default();
                Action::If(c?, t, o)
            }
            Stmt::Switch { expr, cases, .. } => {
                let e = self.expr(expr);
                let mut sw = Switch {
                    cases: Vec::new(),
                    default: None,
                    body: Vec::new(),
                };
                for case in cases {
                    let start = sw.body.len();
                    match &case.label {
                        None => {
                            if sw.default.replace(start).is_some() {
                                self.diags.push(Diagnostic::error(
                                    case.span,
                                    "switch has two `default` labels",
                                ));
                            }
                        }
                        Some(l) => match l {
                            Expr::Int { value, .. } => sw.cases.push((Value::Int(*value), start)),
                            Expr::Str { value, .. } => {
                                sw.cases.push((Value::Str(value.clone()), start))
                            }
                            other => self.diags.push(Diagnostic::error(
                                other.span(),
                                "case label must be an integer or string constant",
                            )),
                        },
                    }
                    let body = self.stmts(&case.body);
                    sw.body.extend(body);
                }
                Action::Switch(e?, sw)
            }
            Stmt::While { cond, body, .. } => {
                let c = self.expr(cond);
                let b = self.block(body);
                Action::While(c?, b)
            }
            Stmt::Return { value, .. } => match value {
                Some(v) => Action::Return(Some(self.expr(v)?)),
                None => Action::Return(None),
            },
            Stmt::Exit { .. } => Action::Exit,
            Stmt::Drop { .. } => Action::Drop,
            Stmt::Break { .. } => Action::Break,
            Stmt::Assign {
                target,
                op,
                value,
                span,
            } => {
                let pv = self.lvalue(target, *span);
                let v = self.expr(value);
                Action::Assign(pv?, v?, *op == ast::AssignOp::ColonAssign)
            }
            Stmt::Block(b) => Action::Block(self.block(b)),
        })
    }

    fn lvalue(&mut self, target: &Expr, span: Span) -> Option<Pv> {
        let pv = match target {
            Expr::Pvar(_) | Expr::Avp(_) | Expr::Select(_) => self.pv_of(target)?,
            Expr::Keyword {
                kw: Keyword::Retcode,
                ..
            } => Pv::RetCode,
            other => {
                self.diags.push(Diagnostic::error(
                    other.span(),
                    "only variables can be assigned to",
                ));
                return None;
            }
        };
        if !pv.is_writable() {
            self.diags.push(Diagnostic::error(
                span,
                format!("`{}` is read-only", target_text(target)),
            ));
            return None;
        }
        Some(pv)
    }

    fn pv_of(&mut self, e: &Expr) -> Option<Pv> {
        let r = match e {
            Expr::Pvar(p) => parse_pv(&p.raw).map_err(|m| (p.span, m)),
            // a class-less `$name` the parser took for an AVP may be a pvar we know
            // (`$T_reply_code`)
            Expr::Avp(a) => match parse_pv(&a.raw) {
                Ok(pv) if a.class.is_none() && !matches!(pv, Pv::Avp(_)) => Ok(pv),
                _ => avp_ref(a).map(Pv::Avp).map_err(|m| (a.span, m)),
            },
            Expr::Select(s) => select_of(s).map(Pv::Sel).map_err(|m| (s.span, m)),
            other => Err((other.span(), "not a variable".to_owned())),
        };
        match r {
            Ok(pv) => Some(pv),
            Err((span, m)) => {
                self.diags.push(Diagnostic::error(span, m));
                None
            }
        }
    }

    fn route_call(&mut self, call: &ast::Call) -> Option<usize> {
        let name = match call.args.as_slice() {
            [Expr::Ident { name, .. }] | [Expr::Str { value: name, .. }] => name.clone(),
            [Expr::Int { value, .. }] => value.to_string(),
            _ => {
                self.diags.push(Diagnostic::error(
                    call.span,
                    "route() takes one route name or number",
                ));
                return None;
            }
        };
        match self.index.get(&(RouteKind::Request, Some(name.clone()))) {
            Some(i) => Some(*i),
            None => {
                let known: Vec<&str> = self
                    .index
                    .keys()
                    .filter(|(k, _)| *k == RouteKind::Request)
                    .filter_map(|(_, n)| n.as_deref())
                    .collect();
                let mut d = Diagnostic::error(call.span, format!("route `{name}` is not defined"));
                if let Some(s) = registry::closest(&name, known) {
                    d = d.with_note(format!("did you mean `{s}`?"));
                }
                self.diags.push(d);
                None
            }
        }
    }

    fn arg_of(&mut self, e: &Expr) -> Option<Arg> {
        Some(match e {
            Expr::Str { value, .. } => Arg::Str(value.clone()),
            Expr::Int { value, .. } => Arg::Int(*value),
            Expr::Ident { name, .. } => Arg::Ident(name.clone()),
            Expr::Keyword { kw, .. } => Arg::Ident(kw.as_str().to_owned()),
            Expr::Ip { addr, .. } => Arg::Str(addr.to_string()),
            Expr::Pvar(_) | Expr::Avp(_) | Expr::Select(_) => Arg::Pv(self.pv_of(e)?),
            other => {
                self.diags.push(Diagnostic::error(
                    other.span(),
                    "function arguments must be constants or variables",
                ));
                return None;
            }
        })
    }

    /// Resolve a function call, fix up its arguments, return its call-site index.
    fn function(&mut self, call: &ast::Call) -> Option<usize> {
        let args: Vec<Arg> = call
            .args
            .iter()
            .map(|a| self.arg_of(a))
            .collect::<Option<_>>()?;
        let (export, env): (&'static FunctionExport, &ModuleEnv) =
            if let Some(f) = Core.functions().iter().find(|f| f.name == call.name) {
                (f, &self.core_env)
            } else if let Some((l, f)) = self.modules.function(&call.name) {
                (f, &l.env)
            } else {
                self.diags.push(self.unknown_function(call));
                return None;
            };
        if args.len() < export.min_args || args.len() > export.max_args {
            let want = if export.min_args == export.max_args {
                format!("{}", export.min_args)
            } else {
                format!("{} to {}", export.min_args, export.max_args)
            };
            self.diags.push(Diagnostic::error(
                call.span,
                format!(
                    "function `{}` takes {want} argument(s), {} given",
                    call.name,
                    args.len()
                ),
            ));
            return None;
        }
        let (kind, named_request) = self.cur;
        if !named_request && !export.routes.allows(kind_mask(kind)) {
            self.diags.push(Diagnostic::error(
                call.span,
                format!(
                    "function `{}` cannot be used in {}",
                    call.name,
                    kind_name(kind)
                ),
            ));
            return None;
        }
        let fx = FixupCtx {
            module: env,
            names: &self.names,
        };
        match (export.fixup)(&fx, &args) {
            Ok(handler) => {
                self.calls.push(CallSite {
                    name: call.name.clone(),
                    handler,
                });
                Some(self.calls.len() - 1)
            }
            Err(e) => {
                let span = e
                    .arg
                    .and_then(|i| call.args.get(i))
                    .map_or(call.span, |a| a.span());
                self.diags.push(Diagnostic::error(
                    span,
                    format!("{}: {}", call.name, e.message),
                ));
                None
            }
        }
    }

    fn unknown_function(&self, call: &ast::Call) -> Diagnostic {
        let name = call.name.as_str();
        if let Some(m) = registry::builtin()
            .iter()
            .find(|m| m.functions().iter().any(|f| f.name == name))
        {
            return Diagnostic::error(
                call.span,
                format!(
                    "function `{name}` is in module `{}`, which is not loaded",
                    m.name()
                ),
            )
            .with_note(format!("add loadmodule \"{}\"", m.name()));
        }
        if let Some(m) = registry::not_yet_module_of(name) {
            return Diagnostic::error(
                call.span,
                format!("function `{name}` (module `{m}`) is not available in this build (not implemented yet)"),
            );
        }
        let mut candidates: Vec<&str> = Core.functions().iter().map(|f| f.name).collect();
        for l in self.modules.iter() {
            candidates.extend(l.module.functions().iter().map(|f| f.name));
        }
        candidates.push("route");
        let mut d = Diagnostic::error(call.span, format!("unknown function `{name}`"));
        if let Some(s) = registry::closest(name, candidates) {
            d = d.with_note(format!("did you mean `{s}`?"));
        }
        d
    }

    fn expr(&mut self, e: &Expr) -> Option<Rv> {
        Some(match e {
            Expr::Int { value, .. } => Rv::Const(Value::Int(*value)),
            Expr::Str { value, .. } => Rv::Const(Value::Str(value.clone())),
            Expr::Ip { addr, .. } => Rv::Const(Value::Str(addr.to_string())),
            Expr::IpNet { addr, prefix, .. } => Rv::Const(Value::Str(format!("{addr}/{prefix}"))),
            Expr::Ident { name, .. } => Rv::Const(Value::Str(name.clone())),
            Expr::Keyword { kw, span } => Rv::Kw(self.keyword(*kw, *span)?),
            Expr::Pvar(_) | Expr::Avp(_) | Expr::Select(_) => match self.pv_of(e)? {
                Pv::RetCode => Rv::Kw(Kw::Retcode),
                pv => Rv::Pv(pv),
            },
            Expr::Call(call) => {
                if call.name == "route" {
                    Rv::Route(self.route_call(call)?)
                } else {
                    Rv::Call(self.function(call)?)
                }
            }
            Expr::Unary { op, expr, .. } => {
                let x = Box::new(self.expr(expr)?);
                match op {
                    UnOp::Not => Rv::Not(x),
                    UnOp::Neg => Rv::Neg(x),
                    UnOp::BitNot => Rv::BitNot(x),
                    UnOp::Defined => Rv::Defined(x),
                    UnOp::StrLen => Rv::StrLen(x),
                    UnOp::StrEmpty => Rv::StrEmpty(x),
                }
            }
            Expr::Binary { op, lhs, rhs, .. } => return self.binary(*op, lhs, rhs),
        })
    }

    fn keyword(&mut self, kw: Keyword, span: Span) -> Option<Kw> {
        Some(match kw {
            Keyword::Method => Kw::Method,
            Keyword::Uri => Kw::Uri,
            Keyword::FromUri => Kw::FromUri,
            Keyword::ToUri => Kw::ToUri,
            Keyword::Status => Kw::Status,
            Keyword::SrcIp => Kw::SrcIp,
            Keyword::SrcPort => Kw::SrcPort,
            Keyword::DstIp => Kw::DstIp,
            Keyword::DstPort => Kw::DstPort,
            Keyword::Proto => Kw::Proto,
            Keyword::Af => Kw::Af,
            Keyword::MsgLen => Kw::MsgLen,
            Keyword::Retcode => Kw::Retcode,
            Keyword::MaxLen => Kw::MaxLen,
            Keyword::Myself => {
                self.diags.push(Diagnostic::error(
                    span,
                    "`myself` can only be compared with `==` / `!=`",
                ));
                return None;
            }
            other => {
                self.diags.push(Diagnostic::error(
                    span,
                    format!("keyword `{}` is not supported yet", other.as_str()),
                ));
                return None;
            }
        })
    }

    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr) -> Option<Rv> {
        let eq_ne = matches!(op, BinOp::Eq | BinOp::Ne);
        let neg = op == BinOp::Ne;
        // `!method == "X"` parsed as `(!method) == "X"`: SER means `!(method == "X")`
        if let Expr::Unary {
            op: UnOp::Not,
            expr,
            ..
        } = lhs
        {
            if matches!(**expr, Expr::Keyword { kw, .. } if kw.is_subject()) && eq_ne {
                let inner = self.binary(op, expr, rhs)?;
                return Some(Rv::Not(Box::new(inner)));
            }
        }
        // x == myself
        let is_myself = |e: &Expr| {
            matches!(
                e,
                Expr::Keyword {
                    kw: Keyword::Myself,
                    ..
                }
            )
        };
        if eq_ne && (is_myself(rhs) || is_myself(lhs)) {
            let subject = if is_myself(rhs) { lhs } else { rhs };
            let s = self.expr(subject)?;
            return Some(Rv::Myself(Box::new(s), neg));
        }
        // src_ip == 1.2.3.4 / 10.0.0.0/8
        if eq_ne {
            let net = match rhs {
                Expr::Ip { addr, .. } => Some((*addr, if addr.is_ipv4() { 32 } else { 128 })),
                Expr::IpNet { addr, prefix, .. } => Some((*addr, *prefix)),
                _ => None,
            };
            if let Some((addr, prefix)) = net {
                let s = self.expr(lhs)?;
                return Some(Rv::IpIn(Box::new(s), addr, prefix, neg));
            }
        }
        // method == "INVITE" / method == CANCEL: case-insensitive
        if eq_ne
            && matches!(
                lhs,
                Expr::Keyword {
                    kw: Keyword::Method,
                    ..
                }
            )
        {
            if let Expr::Str { value, .. } | Expr::Ident { name: value, .. } = rhs {
                return Some(Rv::MethodIs(value.clone(), neg));
            }
        }
        // proto == udp, af == inet: names compare upper-case
        if eq_ne
            && matches!(
                lhs,
                Expr::Keyword {
                    kw: Keyword::Proto | Keyword::Af,
                    ..
                }
            )
        {
            if let Expr::Ident { name, .. } | Expr::Str { value: name, .. } = rhs {
                let l = self.expr(lhs)?;
                let r = Rv::Const(Value::Str(name.to_ascii_uppercase()));
                return Some(Rv::Bin(
                    if neg { Op::Ne } else { Op::Eq },
                    Box::new(l),
                    Box::new(r),
                ));
            }
        }
        // x =~ "constant regex": compiled now
        if matches!(op, BinOp::Match | BinOp::NotMatch) {
            if let Expr::Str { value, span: rs } = rhs {
                let l = self.expr(lhs)?;
                return match ser_modules::iface::compile_regex(value, true) {
                    Ok(re) => Some(Rv::MatchRe(Box::new(l), re, op == BinOp::NotMatch)),
                    Err(m) => {
                        self.diags.push(Diagnostic::error(*rs, m));
                        None
                    }
                };
            }
        }
        let l = self.expr(lhs);
        let r = self.expr(rhs);
        let op = match op {
            BinOp::Or => Op::Or,
            BinOp::And => Op::And,
            BinOp::BitOr => Op::BitOr,
            BinOp::BitAnd => Op::BitAnd,
            BinOp::BitXor => Op::BitXor,
            BinOp::Shl => Op::Shl,
            BinOp::Shr => Op::Shr,
            BinOp::Eq => Op::Eq,
            BinOp::Ne => Op::Ne,
            BinOp::Match => Op::Match,
            BinOp::NotMatch => Op::NotMatch,
            BinOp::Lt => Op::Lt,
            BinOp::Gt => Op::Gt,
            BinOp::Le => Op::Le,
            BinOp::Ge => Op::Ge,
            BinOp::StrEq => Op::StrEq,
            BinOp::StrNe => Op::StrNe,
            BinOp::IntEq => Op::IntEq,
            BinOp::IntNe => Op::IntNe,
            BinOp::Add => Op::Add,
            BinOp::Sub => Op::Sub,
            BinOp::Mul => Op::Mul,
            BinOp::Div => Op::Div,
            BinOp::Mod => Op::Mod,
        };
        Some(Rv::Bin(op, Box::new(l?), Box::new(r?)))
    }
}

fn target_text(e: &Expr) -> String {
    match e {
        Expr::Pvar(p) => p.raw.clone(),
        Expr::Avp(a) => a.raw.clone(),
        Expr::Select(s) => s.raw.clone(),
        _ => "expression".to_owned(),
    }
}

/// An AST AVP (`$t.did`, `$account`, `$avp(i:80)` cut by the parser) → store key.
pub fn avp_ref(a: &ast::Avp) -> Result<AvpRef, String> {
    match &a.class {
        None => AvpRef::parse_kamailio(&a.name),
        Some(prefix) => {
            let (track, class) = parse_prefix(prefix)
                .ok_or_else(|| format!("unknown AVP class `{prefix}` in `{}`", a.raw))?;
            let name = match a.name.strip_prefix("i:") {
                Some(n) => AvpName::Int(
                    n.parse()
                        .map_err(|_| format!("bad AVP id in `{}`", a.raw))?,
                ),
                None => AvpName::Str(a.name.strip_prefix("s:").unwrap_or(&a.name).to_owned()),
            };
            Ok(AvpRef { track, class, name })
        }
    }
}

/// An AST select → resolved select.
pub fn select_of(s: &ast::Select) -> Result<Select, String> {
    if let [first, second] = s.parts.as_slice() {
        if first.name == "hf_value" || first.name == "msg" {
            if let Some(ast::SelectParam::Str(h)) = &first.param {
                let _ = second;
                return Ok(Select::Header(h.clone()));
            }
        }
    }
    if let [first] = s.parts.as_slice() {
        if let (true, Some(ast::SelectParam::Str(h))) = (
            first.name == "hf_value" || first.name == "msg",
            &first.param,
        ) {
            return Ok(Select::Header(h.clone()));
        }
    }
    let path: Vec<&str> = s.parts.iter().map(|p| p.name.as_str()).collect();
    Select::parse(&path.join("."))
}
