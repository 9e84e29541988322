#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ser_sip::fuzzing::parse_msg(data));
