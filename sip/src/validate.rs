//! First validation of a parsed message: what SER checks before running
//! the routing script (the parse errors Kamailio's `parse_headers` and the
//! sanity module would report). A message failing it is answered with
//! [`crate::ParseError::reply_code`] (requests) or dropped (replies).

use crate::error::ParseError;
use crate::hdr::HeaderValue;
use crate::hname::HeaderName;
use crate::msg::SipMsg;

/// Headers whose every occurrence must parse.
const CHECKED: [HeaderName; 12] = [
    HeaderName::Contact,
    HeaderName::MaxForwards,
    HeaderName::Expires,
    HeaderName::MinExpires,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Date,
    HeaderName::Require,
    HeaderName::ProxyRequire,
    HeaderName::Supported,
];

/// Headers that must occur exactly once.
const SINGLE: [HeaderName; 4] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

impl SipMsg {
    /// Checks that the key headers are present and parse: Request-URI
    /// (no header part), every Via, From, To, Call-ID, CSeq (once each;
    /// CSeq method equal to the request method), and every Contact,
    /// Max-Forwards, Expires, Content-Length (all equal), Content-Type,
    /// Route, Record-Route, Date and option-tag list.
    ///
    /// An HTTP request ([`SipMsg::is_http`]) has none of the SIP headers:
    /// only its Content-Length values are checked.
    pub fn check_headers(&self) -> Result<(), ParseError> {
        if self.is_http() {
            return self.check_listed(&[HeaderName::ContentLength]);
        }
        if self.is_request() {
            let ruri = self.parsed_ruri()?;
            if let Some(h) = ruri.headers {
                return Err(ParseError::BadUri {
                    at: h.start,
                    what: "header part in Request-URI",
                });
            }
        }
        let mut n = 0;
        for v in self.vias() {
            v?;
            n += 1;
            if n > self.limits().max_vias {
                return Err(ParseError::TooManyVias {
                    max: self.limits().max_vias,
                });
            }
        }
        if n == 0 {
            return Err(ParseError::MissingHeader {
                name: HeaderName::Via,
            });
        }
        for name in SINGLE {
            let mut it = self.find_all(name);
            let h = it.next().ok_or(ParseError::MissingHeader { name })?;
            if let Some(dup) = it.next() {
                return Err(ParseError::DuplicateHeader {
                    name,
                    at: dup.span.start,
                });
            }
            self.parsed(h)?;
        }
        if self.is_request() {
            let cseq = self.cseq()?;
            if self.s(cseq.method_span) != self.method_bytes() {
                return Err(ParseError::CSeqMethodMismatch {
                    at: cseq.method_span.start,
                });
            }
        }
        self.check_listed(&CHECKED)
    }

    /// Every header field named in `names` parses; Content-Length values agree.
    fn check_listed(&self, names: &[HeaderName]) -> Result<(), ParseError> {
        let mut cl = None;
        for h in self.headers().iter().filter(|h| names.contains(&h.name)) {
            let v = self.parsed(h)?;
            if let (HeaderName::ContentLength, HeaderValue::Number(n)) = (h.name, v) {
                if cl.is_some_and(|c| c != *n) {
                    return Err(ParseError::DuplicateHeader {
                        name: h.name,
                        at: h.span.start,
                    });
                }
                cl = Some(*n);
            }
        }
        Ok(())
    }

    /// [`SipMsg::check_headers`] plus the datagram framing rule of RFC
    /// 3261 §18.3: a body shorter than Content-Length is an error.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.check_headers()?;
        if let Some(expected) = self.truncated_body() {
            return Err(ParseError::BodyTruncated {
                expected,
                available: self.body_span().len,
            });
        }
        Ok(())
    }
}
