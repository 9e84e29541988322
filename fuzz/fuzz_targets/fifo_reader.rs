//! The FIFO request parser (`:method:reply_fifo` then one argument per line,
//! a blank line ends it) over arbitrary bytes, request after request as the
//! FIFO reader consumes its buffer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ser_fifo::fifo_server::{parse_request, FifoParse};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Bounded: every step consumes at least one byte or stops.
    for _ in 0..64 {
        let consumed = match parse_request(rest, 256, 4096) {
            FifoParse::NeedMore => break,
            FifoParse::Request(_, consumed) | FifoParse::Bad { consumed, .. } => consumed,
        };
        if consumed == 0 || consumed > rest.len() {
            break;
        }
        rest = &rest[consumed..];
    }
});
