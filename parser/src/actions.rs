//! Helpers called from the grammar's actions: building AST nodes and the checks that need
//! more than syntax (reported into the [`Sink`] so parsing continues).

use lalrpop_util::ErrorRecovery;
use ser_lexer::{Diagnostic, Dialect, Kw, Pos, Span, Tok};

use crate::ast::*;
use crate::core_params::{self, ParamKind};
use crate::{values, vars};

/// Where grammar actions put what they find besides the AST.
#[derive(Debug, Default)]
pub struct Sink {
    /// Syntax errors the parser recovered from.
    pub recovered: Vec<ErrorRecovery<Pos, Tok, String>>,
    /// Errors and warnings from semantic checks in actions.
    pub diags: Vec<Diagnostic>,
    /// The file's dialect marker (changes how `$name` is classified).
    pub dialect: Option<Dialect>,
}

impl Sink {
    /// Records a recovered syntax error.
    pub fn recover(&mut self, e: ErrorRecovery<Pos, Tok, String>) {
        self.recovered.push(e);
    }

    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }
}

/// `name = value` at top level: a core parameter, or a custom cfg parameter when the name
/// is dotted (`group.name = value [desc "text"]`).
pub fn assignment(
    sink: &mut Sink,
    (name, name_span): (String, Span),
    toks: Vec<(Pos, Tok, Pos)>,
    span: Span,
) -> Option<Item> {
    if toks.is_empty() {
        sink.error(name_span, format!("missing value after `{name} =`"));
        return None;
    }
    if let Some((group, pname)) = name.split_once('.') {
        // Custom parameter: value [desc "text"]
        let desc_at = toks.iter().position(|t| t.1 == Tok::Kw(Kw::Desc));
        let (vtoks, desc) = match desc_at {
            Some(i) => {
                let d = match &toks[i + 1..] {
                    [(_, Tok::Str(s), _)] => Some(s.clone()),
                    _ => {
                        let sp = Span::new(toks[i].0, toks[toks.len() - 1].2);
                        sink.error(sp, "`desc` must be followed by one quoted description");
                        None
                    }
                };
                (&toks[..i], d)
            }
            None => (&toks[..], None),
        };
        let value = match values::build(vtoks) {
            Ok(v) => v,
            Err(d) => {
                sink.diags.push(d);
                return None;
            }
        };
        if !matches!(
            value.kind,
            ValueKind::Int(_) | ValueKind::Str(_) | ValueKind::Bool(_)
        ) {
            sink.error(
                value.span,
                "a custom parameter value must be a number or a quoted string",
            );
        }
        return Some(Item::CustomParam {
            group: group.to_string(),
            name: pname.to_string(),
            value,
            desc,
            span,
        });
    }
    let mut toks = toks;
    if let Some(i) = toks.iter().position(|t| t.1 == Tok::Kw(Kw::Desc)) {
        sink.error(
            Span::new(toks[i].0, toks[i].2),
            "`desc` is only allowed after custom `group.name = value` parameters",
        );
        toks.truncate(i);
    }
    match core_params::kind(&name) {
        ParamKind::Core => {}
        ParamKind::Ignored => sink.diags.push(Diagnostic::warning(
            name_span,
            format!("core parameter `{name}` is not supported by this server and is ignored"),
        )),
        ParamKind::Unknown => {
            let mut d = Diagnostic::error(name_span, format!("unknown core parameter `{name}`"));
            if let Some(s) = core_params::suggest(&name) {
                d = d.with_note(format!("did you mean `{s}`?"));
            }
            sink.diags.push(d);
        }
    }
    match values::build(&toks) {
        Ok(value) => Some(Item::Assign {
            name,
            name_span,
            value,
            span,
        }),
        Err(d) => {
            sink.diags.push(d);
            None
        }
    }
}

/// `modparam(modules, param, value)` with its argument checks.
pub fn modparam(sink: &mut Sink, args: Vec<Expr>, span: Span) -> Option<Item> {
    if args.len() != 3 {
        sink.error(
            span,
            format!(
                "modparam needs 3 arguments (\"module\", \"parameter\", value), found {}",
                args.len()
            ),
        );
        return None;
    }
    let mut it = args.into_iter();
    let (m, p, v) = (it.next()?, it.next()?, it.next()?);
    let mut ok = true;
    let mut string_arg = |e: &Expr, what: &str, sink: &mut Sink| match e {
        Expr::Str { value, .. } => Some(value.clone()),
        other => {
            sink.error(
                other.span(),
                format!("the {what} in modparam must be a quoted string"),
            );
            ok = false;
            None
        }
    };
    let modules = string_arg(&m, "module name", sink);
    let param = string_arg(&p, "parameter name", sink);
    let value = match v {
        Expr::Str { value, span } => Some(ParamValue::Str(value, span)),
        Expr::Int { value, span } => Some(ParamValue::Int(value, span)),
        // A name left over from an undefined `#!define` (kamailio.cfg uses DBURL under
        // WITH_ACCDB even when WITH_MYSQL, which defines it, is off). Kamailio rejects
        // it; we take it as a string and warn, so every #!ifdef combination still loads.
        Expr::Ident { name, span } => {
            sink.diags.push(Diagnostic::warning(
                span,
                format!("`{name}` is not defined; the modparam value is the string \"{name}\""),
            ));
            Some(ParamValue::Str(name, span))
        }
        other => {
            sink.error(
                other.span(),
                "a modparam value must be a quoted string or a number",
            );
            None
        }
    };
    match (modules, param, value) {
        (Some(modules), Some(param), Some(value)) if ok => Some(Item::ModParam {
            modules,
            param,
            value,
            span,
        }),
        _ => None,
    }
}

/// A route block with its kind normalised.
pub fn route(k: Kw, name: Option<String>, body: Block, span: Span) -> Route {
    let kind = match k {
        Kw::Route | Kw::RequestRoute => RouteKind::Request,
        Kw::ReplyRoute | Kw::OnReplyRoute => RouteKind::OnReply,
        Kw::FailureRoute => RouteKind::Failure,
        Kw::BranchRoute => RouteKind::Branch,
        Kw::OnSendRoute => RouteKind::OnSend,
        Kw::EventRoute => RouteKind::Event,
        _ => RouteKind::Error,
    };
    // route[0] is the main route (SER 0.8 numbering).
    let name = match (kind, name) {
        (RouteKind::Request, Some(n)) if n == "0" => None,
        (_, n) => n,
    };
    Route {
        kind,
        name,
        body,
        span,
    }
}

/// `foo_route[X] { ... }`: an unknown route type. The block was parsed (so its own errors
/// are reported) and is dropped.
pub fn bad_route_kind(sink: &mut Sink, (name, span): (String, Span)) -> Option<Item> {
    sink.diags.push(
        Diagnostic::error(span, format!("unknown route type `{name}`")).with_note(
            "route types: route, request_route, reply_route, onreply_route, failure_route, \
             branch_route, onsend_route, event_route, error_route",
        ),
    );
    None
}

/// `name;` without parentheses.
pub fn call_without_parens(sink: &mut Sink, name: String, span: Span) -> Option<Stmt> {
    sink.error(span, format!("missing `()` after function name `{name}`"));
    None
}

/// The body of a brace-less `if`/`while`: wraps a single statement into a block.
pub fn body(s: Option<Stmt>, span: Span) -> Block {
    match s {
        Some(Stmt::Block(b)) => b,
        Some(s) => Block {
            stmts: vec![s],
            span,
        },
        None => Block {
            stmts: Vec::new(),
            span,
        },
    }
}

/// `if (c) t else e`.
pub fn if_else(cond: Expr, t: Option<Stmt>, e: Option<Stmt>, span: Span) -> Stmt {
    let then_span = stmt_span(&t).unwrap_or(span);
    let else_span = stmt_span(&e).unwrap_or(span);
    Stmt::If {
        cond,
        then: body(t, then_span),
        otherwise: Some(body(e, else_span)),
        span,
    }
}

fn stmt_span(s: &Option<Stmt>) -> Option<Span> {
    Some(match s.as_ref()? {
        Stmt::Call(c) => c.span,
        Stmt::If { span, .. }
        | Stmt::Switch { span, .. }
        | Stmt::While { span, .. }
        | Stmt::Return { span, .. }
        | Stmt::Exit { span }
        | Stmt::Drop { span }
        | Stmt::Break { span }
        | Stmt::Assign { span, .. } => *span,
        Stmt::Block(b) => b.span,
    })
}

/// Unary operator; `-` on an integer literal folds into the literal.
pub fn unary(op: UnOp, e: Expr, span: Span) -> Expr {
    match (op, e) {
        (UnOp::Neg, Expr::Int { value, .. }) => Expr::Int {
            value: value.wrapping_neg(),
            span,
        },
        (op, e) => Expr::Unary {
            op,
            expr: Box::new(e),
            span,
        },
    }
}

/// A bare name in an expression: `yes`/`no`/... are 1/0 (as SER's lexer), others stay
/// identifiers.
pub fn name_value(name: String, span: Span) -> Expr {
    match values::bool_word(&name) {
        Some(b) => Expr::Int {
            value: b as i64,
            span,
        },
        None => Expr::Ident { name, span },
    }
}

/// `(int)e`: Kamailio's integer cast. `+` takes its type from the left operand, so
/// `0 + e` is the same conversion; the AST keeps one node kind for it.
pub fn cast_int(e: Expr, span: Span) -> Expr {
    let zero = Expr::Int {
        value: 0,
        span: Span::new(span.lo(), span.lo()),
    };
    Expr::Binary {
        op: BinOp::Add,
        lhs: Box::new(zero),
        rhs: Box::new(e),
        span,
    }
}

/// `(str)e`: Kamailio's string cast, as `"" + e`.
pub fn cast_str(e: Expr, span: Span) -> Expr {
    let empty = Expr::Str {
        value: String::new(),
        span: Span::new(span.lo(), span.lo()),
    };
    Expr::Binary {
        op: BinOp::Add,
        lhs: Box::new(empty),
        rhs: Box::new(e),
        span,
    }
}

/// An address as host text (IPv6 in brackets, as in a socket spec).
pub fn host_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// A socket spec argument `[proto:]host[:port]`, kept as its text.
pub fn socket_arg(proto: Option<String>, host: String, port: Option<i64>, span: Span) -> Expr {
    let mut name = match proto {
        Some(p) => format!("{p}:{host}"),
        None => host,
    };
    if let Some(p) = port {
        name.push_str(&format!(":{p}"));
    }
    Expr::Ident { name, span }
}

/// A `$...` token.
pub fn dollar(sink: &mut Sink, raw: String, span: Span) -> Expr {
    vars::classify_dollar(raw, span, sink.dialect)
}

/// An `@...` token.
pub fn select(_sink: &mut Sink, raw: String, span: Span) -> Expr {
    Expr::Select(vars::parse_select(raw, span))
}
