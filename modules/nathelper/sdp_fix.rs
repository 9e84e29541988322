//! `fix_nated_sdp(flags[, ip])` and `is_rfc1918(ip)`: SDP of a UA behind
//! NAT pointed at its public address without a media relay.
//!
//! flags: 1 add `a=direction:active`, 2 rewrite the `c=` addresses, 4 add
//! the `nortpproxy_str` line, 8 rewrite the `o=` address; the new address
//! is the `ip` argument or the message's source.  With
//! `append_sdp_oldmediaip` a rewritten `c=` keeps the old address in an
//! `a=oldmediaip:` line.

use std::net::IpAddr;

use crate::iface::{Arg, FixupCtx, FixupError, Handler};
use crate::rtpproxy::sdp;
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;

/// Line end to use in added lines: the body's own.
fn eol(body: &[u8]) -> &'static str {
    if body.windows(2).any(|w| w == b"\r\n") || !body.contains(&b'\n') {
        "\r\n"
    } else {
        "\n"
    }
}

fn fix(
    ctx: &mut MsgCtx<'_>,
    flags: u32,
    ip: Option<String>,
    old_ip_line: bool,
    marker: &str,
) -> Flow {
    let body = ctx.msg.body().to_vec();
    if body.is_empty() {
        return Flow::False;
    }
    let sessions = sdp::parse(&body);
    if sessions.is_empty() {
        return Flow::False;
    }
    let new_ip = ip.unwrap_or_else(|| ctx.src.ip().to_string());
    let v6 = new_ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6());
    let addr = format!("IP{} {new_ip}", if v6 { 6 } else { 4 });
    let nl = eol(&body);
    let base = ctx.msg.body_span().begin();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut old_lines = String::new();
    for s in &sessions {
        let conns = s
            .conn
            .iter()
            .chain(s.streams.iter().filter_map(|m| m.conn.as_ref()));
        if flags & 2 != 0 {
            for c in conns {
                if sdp::is_null_addr(&c.addr) {
                    continue;
                }
                edits.push((c.span.clone(), addr.clone()));
                if old_ip_line && !old_lines.contains(&c.addr) {
                    old_lines.push_str(&format!("a=oldmediaip:{}{nl}", c.addr));
                }
            }
        }
        if flags & 8 != 0 {
            if let Some(o) = &s.origin {
                edits.push((o.span.clone(), addr.clone()));
            }
        }
    }
    let mut added = String::new();
    if flags & 1 != 0 && !sdp::has_marker(&body, "a=direction:") {
        added.push_str(&format!("a=direction:active{nl}"));
    }
    added.push_str(&old_lines);
    if flags & 4 != 0 && !marker.is_empty() && !sdp::has_marker(&body, marker) {
        added.push_str(&format!("{marker}{nl}"));
    }
    let msg = &ctx.msg;
    for (r, text) in edits {
        let span = ser_sip::Span::new(base + r.start, base + r.end);
        ctx.lumps.replace(msg, span, text.as_bytes());
    }
    if !added.is_empty() {
        // new lines go after the last one, which may lack its line end
        if !body.ends_with(b"\n") {
            added.insert_str(0, nl);
        }
        ctx.lumps.insert(msg, base + body.len(), added.as_bytes());
    }
    Flow::True
}

fn ip_format(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Option<Format>, FixupError> {
    if args.len() <= i {
        return Ok(None);
    }
    let f = fx.format_arg(args, i)?;
    if let Some(c) = f.as_constant() {
        c.parse::<IpAddr>()
            .map_err(|_| FixupError::arg(i, format!("`{c}` is not an IP address")))?;
    }
    Ok(Some(f))
}

/// Fixup of `fix_nated_sdp`.
pub fn fixup_fix_sdp(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let flags = fx.int_arg(args, 0)?;
    if !(1..=15).contains(&flags) {
        return Err(FixupError::arg(0, format!("bad flags {flags} (1..15)")));
    }
    let flags = flags as u32;
    let ip = ip_format(fx, args, 1)?;
    let old_ip_line = fx.module.int("append_sdp_oldmediaip") != 0;
    let marker = fx.module.str("nortpproxy_str");
    Ok(Box::new(move |ctx| {
        let ip = match ip.as_ref().map(|f| ctx.render(f)) {
            Some(t) if t.parse::<IpAddr>().is_err() => {
                log::error!("fix_nated_sdp: `{t}` is not an IP address");
                return Flow::False;
            }
            other => other,
        };
        fix(ctx, flags, ip, old_ip_line, &marker)
    }))
}

/// Fixup of `is_rfc1918(ip)`: true for private (RFC 1918 / 6598) addresses.
pub fn fixup_is_rfc1918(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        let t = ctx.render(&f);
        let ip = t.trim().trim_start_matches('[').trim_end_matches(']');
        Flow::from_bool(ip.parse::<IpAddr>().is_ok_and(super::is_private))
    }))
}
