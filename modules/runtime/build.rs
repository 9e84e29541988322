//! Building outgoing buffers from the received message: stateless replies
//! (SER `build_res_buf_from_sip_req`) and forwarded requests/replies
//! (`build_req_buf_from_sip_req`, `build_res_buf_from_sip_res`).  The edits
//! queued in [`MsgCtx::edits`] are applied here, once.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ser_sip::HeaderName;

use crate::runtime::ctx::{Edit, MsgCtx};
use crate::runtime::transport::{Dest, Proto};

/// FNV-1a 64 over several parts (separated, so `("ab","c") != ("a","bc")`).
pub fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Apply non-overlapping edits (sorted by position, later overlapping ones dropped).
pub fn apply_edits(buf: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut sorted: Vec<&Edit> = edits.iter().filter(|e| e.start <= e.end && e.end <= buf.len()).collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = Vec::with_capacity(buf.len() + 256);
    let mut pos = 0;
    for e in sorted {
        if e.start < pos {
            log::warn!("overlapping message edits at offset {}; later one ignored", e.start);
            continue;
        }
        out.extend_from_slice(&buf[pos..e.start]);
        out.extend_from_slice(&e.text);
        pos = e.end;
    }
    out.extend_from_slice(&buf[pos..]);
    out
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

impl MsgCtx<'_> {
    /// The address a stateless reply goes to: the source IP, the source port when
    /// the top Via asks for `rport` (or `force_rport`), else the Via port.
    pub fn reply_dest(&self) -> Dest {
        let mut port = self.src.port();
        if let Ok(v) = self.msg.via1() {
            if v.rport.is_none() && !self.force_rport && self.proto == Proto::Udp {
                port = v.port.unwrap_or(5060);
            }
        }
        Dest { proto: self.proto, addr: SocketAddr::new(self.src.ip(), port), send_sock: Some(self.local) }
    }

    /// Build a stateless reply to the request: Vias (top one with `received`/`rport`),
    /// Record-Route for 18x/2xx, From, Call-ID, CSeq, To (with `to_tag` if it has none).
    pub fn build_reply(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Vec<u8> {
        let m = &self.msg;
        let mut out = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
        let mut first_via = true;
        for h in m.headers() {
            let copy = match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                HeaderName::RecordRoute => (180..300).contains(&code),
                HeaderName::To => {
                    out.extend_from_slice(b"To: ");
                    out.extend_from_slice(m.header_body(h));
                    let has_tag = m.to().is_ok_and(|t| t.tag.is_some());
                    if let (false, Some(tag), true) = (has_tag, to_tag, code > 100) {
                        out.extend_from_slice(format!(";tag={tag}").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    false
                }
                _ => false,
            };
            if !copy {
                continue;
            }
            if h.name == HeaderName::Via && first_via {
                first_via = false;
                out.extend_from_slice(m.header_name(h));
                out.extend_from_slice(b": ");
                out.extend_from_slice(&self.via_with_received(h));
                out.extend_from_slice(b"\r\n");
                continue;
            }
            out.extend_from_slice(m.s(h.span));
            if !m.s(h.span).ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        for extra in &self.reply_headers {
            out.extend_from_slice(extra.as_bytes());
            if !extra.ends_with('\n') {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(self.env.server_header.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        out
    }

    /// The top Via's body with `received=` (if the source IP differs from
    /// sent-by) and `rport=` (if requested) added, as SER does on receipt.
    fn via_with_received(&self, h: &ser_sip::Header) -> Vec<u8> {
        let m = &self.msg;
        let body = m.header_body(h).to_vec();
        let Ok(v) = m.via1() else { return body };
        let base = h.body_span.begin();
        let src_ip = self.src.ip().to_string();
        let host = String::from_utf8_lossy(m.s(v.host)).trim_matches(['[', ']']).to_owned();
        let mut edits = Vec::new();
        let end = (v.params_end as usize).saturating_sub(base).min(body.len());
        if v.received.is_none() && host != src_ip {
            edits.push(Edit { start: end, end, text: format!(";received={src_ip}").into_bytes() });
        }
        if let (Some(None), Some(sp)) = (v.rport, v.rport_span) {
            let (s, e) = (sp.begin() - base, sp.end() - base);
            edits.push(Edit { start: s, end: e, text: format!("rport={}", self.src.port()).into_bytes() });
        }
        apply_edits(&body, &edits)
    }

    /// Our Via header line for a forwarded request (branch as SER: `z9hG4bK` + hash).
    pub fn our_via(&self, proto: Proto, branch_no: u32) -> String {
        let (host, port) = self.advertised_addr();
        let m = &self.msg;
        let callid = m.call_id().unwrap_or_default();
        let cseq = m.cseq().map(|c| c.number.to_string()).unwrap_or_default();
        let ftag = m.from().ok().and_then(|f| f.tag).map(|t| m.s(t).to_vec()).unwrap_or_default();
        let ttag = m.to().ok().and_then(|t| t.tag).map(|t| m.s(t).to_vec()).unwrap_or_default();
        let vbranch = m.via1().ok().and_then(|v| v.branch).map(|b| m.s(b).to_vec()).unwrap_or_default();
        let ruri = self.ruri().unwrap_or_default();
        let h = hash_parts(&[callid, cseq.as_bytes(), &ftag, &ttag, &vbranch, ruri.as_bytes()]);
        let rport = if self.local_rport { ";rport" } else { "" };
        format!("Via: SIP/2.0/{} {host}:{port};branch=z9hG4bK{h:016x}.{branch_no}{rport}\r\n", proto.as_str())
    }

    /// Host and port we advertise (set_advertised_*, listen advertise, or the socket).
    pub fn advertised_addr(&self) -> (String, u16) {
        let sock = self.send_socket.unwrap_or(self.local);
        let listen_adv = self.env.listen.iter().find(|l| l.addr == sock).and_then(|l| l.advertise.clone());
        let host = self
            .advertised
            .0
            .clone()
            .or_else(|| listen_adv.as_ref().map(|a| a.0.clone()))
            .unwrap_or_else(|| ip_text(sock.ip()));
        let port = self.advertised.1.or(listen_adv.map(|a| a.1)).unwrap_or(sock.port());
        (host, port)
    }

    /// The request as it will be forwarded: edits applied, R-URI replaced, our Via on top.
    pub fn build_forward(&self, proto: Proto) -> Vec<u8> {
        let m = &self.msg;
        let mut edits = self.edits.clone();
        if let (Some(new), Some(sp)) = (&self.new_uri, m.ruri_span()) {
            edits.push(Edit { start: sp.begin(), end: sp.end(), text: new.clone().into_bytes() });
        }
        let at = m.first_line_span().end();
        edits.push(Edit { start: at, end: at, text: self.our_via(proto, 0).into_bytes() });
        apply_edits(m.buf(), &edits)
    }

    /// Where a request goes: dst-uri, else the (new) R-URI; `host` resolved with
    /// the system resolver (DNS SRV later).
    pub fn forward_dest(&self, host_override: Option<(&str, Option<u16>)>, proto: Option<Proto>) -> Result<Dest, String> {
        let (host, port, uproto) = match host_override {
            Some((h, p)) => (h.to_owned(), p, None),
            None => {
                let uri = self.dst_uri.clone().or_else(|| self.ruri()).ok_or("no destination URI")?;
                let u = ser_sip::parse_uri(uri.as_bytes()).map_err(|e| format!("bad destination URI `{uri}`: {e}"))?;
                let host = String::from_utf8_lossy(u.maddr.unwrap_or(u.host).of(uri.as_bytes())).into_owned();
                let tp = u.transport.and_then(|t| Proto::from_name(&String::from_utf8_lossy(t.of(uri.as_bytes()))));
                let default_port = if u.scheme == ser_sip::Scheme::Sips { 5061 } else { 5060 };
                (host, Some(u.port.unwrap_or(default_port)), tp)
            }
        };
        let proto = proto.or(uproto).unwrap_or(Proto::Udp);
        let port = port.unwrap_or(5060);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` has no address"))?;
        Ok(Dest { proto, addr, send_sock: self.send_socket })
    }

    /// Stateless forwarding of a reply: drop our top Via, send to the next Via's
    /// received / rport / sent-by.
    pub fn build_reply_forward(&self) -> Result<(Vec<u8>, Dest), String> {
        let m = &self.msg;
        let first = m.find(HeaderName::Via).ok_or("reply has no Via")?;
        let vias = m.vias_of(first).map_err(|e| e.to_string())?;
        let mut edits = self.edits.clone();
        if vias.len() > 1 {
            // several via-parms in one header: cut the first one and its comma
            let v0 = &vias[0];
            let next = vias[1].span.begin();
            edits.push(Edit { start: v0.span.begin(), end: next, text: Vec::new() });
        } else {
            edits.push(Edit { start: first.span.begin(), end: first.span.end(), text: Vec::new() });
        }
        let next = m.via2().map_err(|e| e.to_string())?.ok_or("reply has only our Via")?;
        let host = match next.received {
            Some(r) => String::from_utf8_lossy(m.s(r)).into_owned(),
            None => String::from_utf8_lossy(m.s(next.host)).into_owned(),
        };
        let port = match next.rport {
            Some(Some(p)) => p,
            _ => next.port.unwrap_or(5060),
        };
        let proto = Proto::from_name(&String::from_utf8_lossy(m.s(next.transport))).unwrap_or(Proto::Udp);
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addr = (bare.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` has no address"))?;
        Ok((apply_edits(m.buf(), &edits), Dest { proto, addr, send_sock: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_order() {
        let e = |s, en, t: &str| Edit { start: s, end: en, text: t.as_bytes().to_vec() };
        let out = apply_edits(b"hello world", &[e(6, 11, "there"), e(0, 0, ">"), e(5, 5, ",")]);
        assert_eq!(out, b">hello, there");
        // overlapping later edit ignored
        assert_eq!(apply_edits(b"abc", &[e(0, 2, "X"), e(1, 3, "Y")]), b"Xc");
    }

    #[test]
    fn hash_separates_parts() {
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }
}
