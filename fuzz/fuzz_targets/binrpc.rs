//! The binrpc decoder as the ctl server drives it: frame the packets found
//! in the buffer, then decode each body as a request and as a reply/fault.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ser_fifo::binrpc::{decode_body, decode_fault, decode_request, split_frame, Decoded};

/// The ctl server's body limit is larger; keep the fuzzer's inputs small.
const MAX_BODY: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Each frame consumes at least its header, so this ends.
    while let Ok(Decoded::Complete(frame, used)) = split_frame(rest, MAX_BODY) {
        let _ = decode_request(frame.body);
        let _ = decode_body(frame.body);
        let _ = decode_fault(frame.body);
        if used == 0 || used > rest.len() {
            break;
        }
        rest = &rest[used..];
    }
    // Bodies without a valid header too.
    let _ = decode_request(data);
    let _ = decode_body(data);
});
