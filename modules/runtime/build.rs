//! Building outgoing buffers from the received message with ser-sip's lumps
//! and reply builder: stateless replies, forwarded requests (our Via on top,
//! branch as SER: `z9hG4bK` + hash) and stateless reply forwarding.

use std::net::{IpAddr, SocketAddr};

use ser_sip::HeaderName;

use crate::runtime::ctx::MsgCtx;
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

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The first RFC 3263 destination of `host` (our resolver: cache, NAPTR,
/// SRV, A/AAAA; blacklisted destinations last).
fn resolve_first(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<(Proto, SocketAddr), String> {
    crate::runtime::dns::resolve_sip(host, port, proto, sips)?
        .first()
        .map(|t| (t.proto, t.addr))
        .ok_or_else(|| format!("`{host}` has no address"))
}

impl MsgCtx<'_> {
    /// The address a stateless reply goes to: the source IP, the source port when
    /// the top Via asks for `rport` (or `force_rport`) or over TCP, else the Via port.
    pub fn reply_dest(&self) -> Dest {
        let mut port = self.src.port();
        if let Ok(v) = self.msg.via1() {
            if v.rport.is_none() && !self.force_rport && self.proto == Proto::Udp {
                port = v.port.unwrap_or(5060);
            }
        }
        Dest {
            proto: self.proto,
            addr: SocketAddr::new(self.src.ip(), port),
            send_sock: Some(self.local),
        }
    }

    /// Build a stateless reply (ser-sip `build_reply`) with `append_to_reply`
    /// headers and our Server header.
    pub fn build_reply(
        &self,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut extra = String::new();
        for h in &self.reply_headers {
            extra.push_str(h);
            if !h.ends_with("\r\n") {
                extra.push_str("\r\n");
            }
        }
        extra.push_str(&self.env.server_header);
        extra.push_str("\r\n");
        ser_sip::build_reply(
            &self.msg,
            code,
            reason.as_bytes(),
            extra.as_bytes(),
            b"",
            to_tag.map(str::as_bytes),
            Some(self.src),
        )
        .map_err(|e| e.to_string())
    }

    /// The branch of our Via for a forwarded request (SER stateless: `z9hG4bK` +
    /// hash of the transaction keys, so retransmissions get the same branch).
    pub fn forward_branch(&self, branch_no: u32) -> String {
        let m = &self.msg;
        let callid = m.call_id().unwrap_or_default();
        let cseq = m.cseq().map(|c| c.number.to_string()).unwrap_or_default();
        let ftag = m
            .from()
            .ok()
            .and_then(|f| f.tag)
            .map(|t| m.s(t).to_vec())
            .unwrap_or_default();
        let ttag = m
            .to()
            .ok()
            .and_then(|t| t.tag)
            .map(|t| m.s(t).to_vec())
            .unwrap_or_default();
        let vbranch = m
            .via1()
            .ok()
            .and_then(|v| v.branch)
            .map(|b| m.s(b).to_vec())
            .unwrap_or_default();
        let ruri = self.ruri().unwrap_or_default();
        let h = hash_parts(&[
            callid,
            cseq.as_bytes(),
            &ftag,
            &ttag,
            &vbranch,
            ruri.as_bytes(),
        ]);
        format!("z9hG4bK{h:016x}.{branch_no}")
    }

    /// Host and port we advertise (set_advertised_*, listen advertise, or the socket).
    pub fn advertised_addr(&self) -> (String, u16) {
        let sock = self.send_socket.unwrap_or(self.local);
        let listen_adv = self
            .env
            .listen
            .iter()
            .find(|l| l.addr == sock)
            .and_then(|l| l.advertise.clone());
        let host = self
            .advertised
            .0
            .clone()
            .or_else(|| listen_adv.as_ref().map(|a| a.0.clone()))
            .unwrap_or_else(|| ip_text(sock.ip()));
        let port = self
            .advertised
            .1
            .or(listen_adv.map(|a| a.1))
            .unwrap_or(sock.port());
        (host, port)
    }

    /// The request as it will be forwarded: lumps applied, R-URI replaced,
    /// `received`/`rport` recorded in the sender's Via, our Via on top.
    pub fn build_forward(&self, proto: Proto) -> Result<Vec<u8>, String> {
        let m = &self.msg;
        let mut lumps = self.lumps.clone();
        if let (Some(new), Some(sp)) = (&self.new_uri, m.ruri_span()) {
            lumps.replace(m, sp, new.as_bytes());
        }
        lumps.add_received(m, self.src).map_err(|e| e.to_string())?;
        // RFC 3261 16.6 step 3: a proxy adds Max-Forwards: 70 when missing
        if !self.max_forwards_added && m.find(HeaderName::MaxForwards).is_none() {
            lumps.add_header(m, b"Max-Forwards", b"70");
        }
        let (host, port) = self.advertised_addr();
        let via = ser_sip::lump::via_value(
            proto.as_str(),
            &host,
            Some(port),
            &self.forward_branch(0),
            self.local_rport,
        );
        lumps.insert_via(m, &via);
        ser_sip::apply(m, &lumps).map_err(|e| e.to_string())
    }

    /// Where a request goes: `host_port` if given, else dst-uri, else the (new)
    /// R-URI (maddr, port, transport honoured), resolved per RFC 3263
    /// ([`crate::runtime::dns::resolve_sip`]).
    pub fn forward_dest(
        &self,
        host_port: Option<(&str, Option<u16>)>,
        proto: Option<Proto>,
    ) -> Result<Dest, String> {
        self.forward_dests(host_port, proto)?
            .into_iter()
            .next()
            .ok_or_else(|| "destination has no address".to_string())
    }

    /// Every RFC 3263 candidate of [`MsgCtx::forward_dest`], in order (the
    /// next one is tried when a send fails and `use_dns_failover` is on).
    pub fn forward_dests(
        &self,
        host_port: Option<(&str, Option<u16>)>,
        proto: Option<Proto>,
    ) -> Result<Vec<Dest>, String> {
        let (host, port, uproto, sips) = match host_port {
            Some((h, p)) => (h.to_owned(), Some(p.unwrap_or(5060)), None, false),
            None => {
                let uri = self
                    .dst_uri
                    .clone()
                    .or_else(|| self.ruri())
                    .ok_or("no destination URI")?;
                let u = ser_sip::parse_uri(uri.as_bytes())
                    .map_err(|e| format!("bad destination URI `{uri}`: {e}"))?;
                let b = uri.as_bytes();
                let host = String::from_utf8_lossy(u.maddr.unwrap_or(u.host).of(b)).into_owned();
                let tp = u
                    .transport
                    .and_then(|t| Proto::from_name(&String::from_utf8_lossy(t.of(b))));
                let sips = u.scheme == ser_sip::Scheme::Sips;
                // a maddr target is used as an address (RFC 3261 §19.1.1)
                let port = u.port.or(u.maddr.map(|_| if sips { 5061 } else { 5060 }));
                (host, port, tp, sips)
            }
        };
        if host.is_empty() {
            return Err("destination has no host".into());
        }
        let targets = crate::runtime::dns::resolve_sip(&host, port, proto.or(uproto), sips)?;
        if targets.is_empty() {
            return Err(format!("`{host}` has no address"));
        }
        Ok(targets
            .into_iter()
            .map(|t| Dest {
                proto: t.proto,
                addr: t.addr,
                send_sock: self.send_socket,
            })
            .collect())
    }

    /// Stateless forwarding of a reply: drop our top Via, send to the next Via's
    /// received / rport / sent-by.
    pub fn build_reply_forward(&self) -> Result<(Vec<u8>, Dest), String> {
        let m = &self.msg;
        let next = m
            .via2()
            .map_err(|e| e.to_string())?
            .ok_or("reply has only one Via")?;
        let host = String::from_utf8_lossy(m.s(next.received.unwrap_or(next.host))).into_owned();
        // RFC 3263 §5: a sent-by name without port is looked up by SRV
        let port = match next.rport {
            Some(Some(p)) => Some(p),
            _ => next.port,
        };
        let proto =
            Proto::from_name(&String::from_utf8_lossy(m.s(next.transport))).unwrap_or(Proto::Udp);
        let (_, addr) = resolve_first(&host, port, Some(proto), false)?;
        let mut lumps = self.lumps.clone();
        lumps.remove_first_via(m).map_err(|e| e.to_string())?;
        let buf = ser_sip::apply(m, &lumps).map_err(|e| e.to_string())?;
        Ok((
            buf,
            Dest {
                proto,
                addr,
                send_sock: None,
            },
        ))
    }

    /// Whether the top Via of a reply is ours (sent-by is one of our addresses).
    pub fn top_via_is_ours(&self) -> bool {
        match self.msg.via1() {
            Ok(v) => {
                let host = String::from_utf8_lossy(self.msg.s(v.host)).into_owned();
                self.env.myself.matches(&host, v.port)
            }
            Err(_) => false,
        }
    }

    /// A header of the message, by type, for callers that need its spans.
    pub fn has_header(&self, name: HeaderName) -> bool {
        self.msg.find(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_separates_parts() {
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }
}
