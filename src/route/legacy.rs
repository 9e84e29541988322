//! The 2001 `sip_router.cfg` regex table: the first rule whose method regex
//! and R-URI regex both match forwards the request to its destination host.

use regex::Regex;
use ser_modules::iface::compile_regex;
use ser_modules::runtime::ctx::MsgCtx;
use ser_parser::ast::LegacyRule;
use ser_parser::Diagnostic;

use super::core_fns::forward;
use super::Outcome;

struct Rule {
    method: Regex,
    uri: Regex,
    dest: String,
}

/// A compiled table.
pub struct Table {
    rules: Vec<Rule>,
}

impl Table {
    /// Compile every rule's regexes (case-insensitive, POSIX extended as SER).
    pub fn compile(rules: &[LegacyRule]) -> Result<Table, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut out = Vec::new();
        for r in rules {
            match (
                compile_regex(&r.method_re, true),
                compile_regex(&r.uri_re, true),
            ) {
                (Ok(method), Ok(uri)) => out.push(Rule {
                    method,
                    uri,
                    dest: r.dest.clone(),
                }),
                (Err(e), _) | (_, Err(e)) => diags.push(Diagnostic::error(r.span, e)),
            }
        }
        if diags.is_empty() {
            Ok(Table { rules: out })
        } else {
            Err(diags)
        }
    }

    /// Route one request.
    pub fn run(&self, ctx: &mut MsgCtx<'_>) -> Outcome {
        if !ctx.is_request() {
            return Outcome::Done;
        }
        let method = ctx.method().to_owned();
        let uri = ctx.ruri().unwrap_or_default();
        match self
            .rules
            .iter()
            .find(|r| r.method.is_match(&method) && r.uri.is_match(&uri))
        {
            Some(rule) => {
                let flow = forward(ctx, Some((rule.dest.as_str(), None)), None, true, None);
                ctx.retcode = flow.to_int();
                Outcome::Done
            }
            None => {
                log::info!("no routing rule matches {method} {uri}; dropped");
                Outcome::Drop
            }
        }
    }
}
