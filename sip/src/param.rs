//! `;name[=value]` parameter lists of header values (RFC 3261 `generic-param`).

use crate::error::ParseError;
use crate::scan::{is_value_char, Cur};
use crate::span::Span;

/// One parameter: name and optional value, as spans of the buffer. A
/// quoted value keeps its quotes (see [`crate::scan::unquote`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The parameter name.
    pub name: Span,
    /// The value after `=`, if any.
    pub value: Option<Span>,
}

/// Finds a parameter by case-insensitive name.
pub fn find_param<'p>(buf: &[u8], params: &'p [Param], name: &[u8]) -> Option<&'p Param> {
    params
        .iter()
        .find(|p| p.name.of(buf).eq_ignore_ascii_case(name))
}

/// Parses `*( SEMI generic-param )` with LWS allowed around `;` and `=`.
/// Stops (without consuming) at anything that is not `;` after LWS.
pub(crate) fn parse_params(cur: &mut Cur<'_>, max: usize) -> Result<Vec<Param>, ParseError> {
    let mut out = Vec::new();
    while cur.eat_sep(b';') {
        cur.skip_lws();
        let name = cur.token();
        if name.is_empty() {
            return Err(cur.err("empty parameter"));
        }
        let value = if cur.eat_sep(b'=') {
            cur.skip_lws();
            let v = if cur.peek() == Some(b'"') {
                cur.quoted()?
            } else {
                cur.take_while(is_value_char)
            };
            if v.is_empty() {
                return Err(cur.err("empty parameter value"));
            }
            Some(v)
        } else {
            None
        };
        if out.len() >= max {
            return Err(ParseError::TooManyParams {
                name: cur.name,
                at: name.start,
                max,
            });
        }
        out.push(Param { name, value });
    }
    Ok(out)
}
