//! Message framing on stream transports (TCP/TLS): where does one message
//! end? Replaces the framing part of `tcp_read.c`.

use crate::error::ParseError;
use crate::hdr::{parse_value, HeaderValue};
use crate::hname::HeaderName;
use crate::limits::Limits;
use crate::msg::{index_header, is_http_request_line, parse_first_line, FirstLine};

/// The result of looking for one complete message at the start of a
/// stream buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A complete message of this many bytes starts the buffer.
    Complete(usize),
    /// The buffer starts with this many CR/LF octets (keep-alives, RFC
    /// 5626 §3.5.1, and stray line ends RFC 3261 §7.5 says to ignore);
    /// consume them and frame again.
    Keepalive(usize),
    /// The message is not complete yet; read more.
    NeedMore,
    /// The stream cannot be framed (bad first line or header section,
    /// missing or bad Content-Length, too large): close the connection.
    Error(ParseError),
}

/// [`frame_stream_with`] with [`Limits::DEFAULT`].
pub fn frame_stream(buf: &[u8]) -> Framing {
    frame_stream_with(buf, &Limits::DEFAULT)
}

/// Frames one message at the start of `buf`. On a stream the
/// Content-Length header is mandatory (RFC 3261 §18.3), except in an
/// HTTP/1.x request (XML-RPC on the SIP port), where its absence means no
/// body; a chunked HTTP body is refused.
pub fn frame_stream_with(buf: &[u8], limits: &Limits) -> Framing {
    let crlf = buf
        .iter()
        .take_while(|c| **c == b'\r' || **c == b'\n')
        .count();
    if crlf > 0 {
        return Framing::Keepalive(crlf);
    }
    // Find the empty line that ends the header section.
    let mut p = 0;
    let body_start = loop {
        match buf[p..].iter().position(|c| *c == b'\n') {
            None => {
                return if buf.len() >= limits.max_msg_len {
                    Framing::Error(ParseError::TooLarge {
                        len: buf.len(),
                        max: limits.max_msg_len,
                    })
                } else {
                    Framing::NeedMore
                };
            }
            Some(off) => {
                let nl = p + off;
                let line_start = p;
                p = nl + 1;
                if line_start > 0
                    && (nl == line_start || (nl == line_start + 1 && buf[line_start] == b'\r'))
                {
                    break p;
                }
            }
        }
    };
    if body_start > limits.max_msg_len {
        return Framing::Error(ParseError::TooLarge {
            len: body_start,
            max: limits.max_msg_len,
        });
    }
    let head = &buf[..body_start];
    let (first, first_span, mut q) = match parse_first_line(head, true) {
        Ok(v) => v,
        Err(e) => return Framing::Error(e),
    };
    let mut cl = None;
    let mut chunked_at = None;
    let mut count = 0;
    while q < head.len() && head[q] != b'\r' && head[q] != b'\n' {
        let h = match index_header(head, q, limits) {
            Ok(h) => h,
            Err(e) => return Framing::Error(e),
        };
        count += 1;
        if count > limits.max_headers {
            return Framing::Error(ParseError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        if h.name == HeaderName::ContentLength {
            match parse_value(head, h.name, h.body_span, limits) {
                Ok(HeaderValue::Number(n)) => {
                    if cl.is_some_and(|c| c != n) {
                        return Framing::Error(ParseError::DuplicateHeader {
                            name: h.name,
                            at: h.span.start,
                        });
                    }
                    cl = Some(n);
                }
                Ok(_) => {}
                Err(e) => return Framing::Error(e),
            }
        }
        if h.name == HeaderName::Other
            && h.name_span
                .of(head)
                .eq_ignore_ascii_case(b"Transfer-Encoding")
        {
            chunked_at = Some(h.span.start);
        }
        q = h.span.end();
    }
    // An HTTP request without Content-Length has no body (RFC 9112 §6.3).
    let http = matches!(first, FirstLine::Request { .. }) && is_http_request_line(head, first_span);
    if let (true, Some(at)) = (http, chunked_at) {
        return Framing::Error(ParseError::BadHeader {
            name: HeaderName::Other,
            at,
            what: "Transfer-Encoding is not supported, send Content-Length",
        });
    }
    let Some(cl) = cl.or(http.then_some(0)) else {
        return Framing::Error(ParseError::MissingHeader {
            name: HeaderName::ContentLength,
        });
    };
    let total = body_start + cl as usize;
    if total > limits.max_msg_len {
        return Framing::Error(ParseError::TooLarge {
            len: total,
            max: limits.max_msg_len,
        });
    }
    if buf.len() < total {
        Framing::NeedMore
    } else {
        Framing::Complete(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 4\r\n\r\nbody";

    #[test]
    fn complete_and_partial() {
        assert_eq!(frame_stream(MSG), Framing::Complete(MSG.len()));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_stream(&two), Framing::Complete(MSG.len()));
        for cut in 0..MSG.len() {
            assert_eq!(frame_stream(&MSG[..cut]), Framing::NeedMore, "cut {cut}");
        }
        assert_eq!(frame_stream(b"\r\n\r\nOPTIONS"), Framing::Keepalive(4));
    }

    #[test]
    fn stream_errors() {
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert!(matches!(
            frame_stream(no_cl),
            Framing::Error(ParseError::MissingHeader { .. })
        ));
        let neg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(
            frame_stream(neg),
            Framing::Error(ParseError::BadHeader { .. })
        ));
        let big = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n";
        assert!(matches!(
            frame_stream(big),
            Framing::Error(ParseError::TooLarge { .. })
        ));
        let sip_no_version = b"OPTIONS sip:a@b HTTP/2.0\r\n\r\n";
        assert!(matches!(
            frame_stream(sip_no_version),
            Framing::Error(ParseError::BadFirstLine { .. })
        ));
        let chunked = b"POST /RPC2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello";
        assert!(matches!(
            frame_stream(chunked),
            Framing::Error(ParseError::BadHeader { .. })
        ));
        let garbage = vec![b'a'; 70000];
        assert!(matches!(
            frame_stream(&garbage),
            Framing::Error(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn http_requests_frame_by_content_length_or_have_no_body() {
        let post = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST";
        assert_eq!(frame_stream(post), Framing::Complete(post.len() - 4));
        for cut in 0..post.len() - 4 {
            assert_eq!(frame_stream(&post[..cut]), Framing::NeedMore, "cut {cut}");
        }
        let get = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n";
        assert_eq!(frame_stream(get), Framing::Complete(get.len()));
    }
}
