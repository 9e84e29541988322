//! SIP method bitmasks for `method_filtering` (the contact's Allow header).

use ser_sip::HeaderName;

use crate::runtime::ctx::MsgCtx;
use crate::usrloc::ALL_METHODS;

const NAMES: &[&str] = &[
    "INVITE",
    "CANCEL",
    "ACK",
    "BYE",
    "INFO",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "OPTIONS",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
];

/// Bit of a method; unknown methods share one bit.
pub fn bit(method: &str) -> u32 {
    match NAMES.iter().position(|n| n.eq_ignore_ascii_case(method)) {
        Some(i) => 1 << i,
        None => 1 << NAMES.len(),
    }
}

/// Methods a REGISTER's Allow headers list; all if it has none.
pub fn allowed(ctx: &MsgCtx<'_>) -> u32 {
    let mut any = false;
    let mut m = 0;
    for h in ctx.msg.find_all(HeaderName::Allow) {
        any = true;
        for tok in String::from_utf8_lossy(ctx.msg.header_body(h)).split(',') {
            let t = tok.trim();
            if !t.is_empty() {
                m |= bit(t);
            }
        }
    }
    if any {
        m
    } else {
        ALL_METHODS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert_eq!(bit("INVITE"), 1);
        assert_eq!(bit("message"), 1 << 8);
        assert_eq!(bit("FOO"), bit("BAR"));
    }
}
