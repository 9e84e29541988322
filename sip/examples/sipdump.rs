//! Prints the parsed view of SIP messages given as files:
//! `cargo run -p ser-sip --example sipdump -- FILE...`.

fn main() {
    for path in std::env::args().skip(1) {
        let raw = match std::fs::read(&path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        println!("== {path}");
        match ser_sip::SipMsg::parse(raw) {
            Ok(m) => print!("{}", ser_sip::dump::dump(&m)),
            Err(e) => println!("parse error: {e}"),
        }
    }
}
