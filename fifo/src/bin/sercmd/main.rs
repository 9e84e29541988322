//! `sercmd`: SER's command-line client for the ctl binrpc interface, usable in place of
//! Kamailio's `kamcmd` (same options, aliases, argument typing and reply printing).
//!
//! Exit status: 0 on success, 1 when the server answered with a fault, 2 on a usage,
//! connection or protocol error.
#![forbid(unsafe_code)]

mod shell;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use ser_fifo::client::{parse_arg, unescape_format, Client, ClientError, ClientOptions};
use ser_fifo::ctl::{CtlAddr, DEFAULT_CTL_ADDR};

const NAME: &str = "sercmd";
const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
Usage: sercmd [options][-s address] [ cmd ]
Options:
    -s address  unix socket name or host name to send the commands on
    -R name     force reply socket name, for the unix datagram socket mode
    -D dir      create the reply socket in the directory <dir> if no reply
                socket is forced (-R) and a unix datagram socket is selected
                as the transport
    -f format   print the result using format. Format is a string containing
                %v at the places where values read from the reply should be
                substituted. To print '%v', escape it using '%': %%v.
    -t timeout  timeout in seconds to wait for a reply (default 30)
    -v          Verbose
    -V          Version number
    -h          This help message
address:
    [proto:]name[:port]   where proto is one of tcp, udp, unixs or unixd
                          e.g.:  tcp:localhost:2049 , unixs:/tmp/ser_ctl
cmd:
    method  [arg1 [arg2...]]
arg:
     string or number; to force a number to be interpreted as string
     prefix it by \"s:\", e.g. s:1 (\"i:\" forces an integer)
Examples:
    sercmd -s unixs:/tmp/ser_ctl system.listMethods
    sercmd -f \"pid: %v  desc: %v\\n\" -s udp:localhost:2047 core.ps
    sercmd ps  # uses default ctl socket
    sercmd     # enters interactive mode on the default socket
    sercmd -s tcp:localhost # interactive mode, default port
";

/// kamcmd's aliases: name, method, reply format.
const ALIASES: &[(&str, &str, Option<&str>)] = &[
    ("ps", "core.ps", Some("%v\t%v\n")),
    ("psx", "core.psx", None),
    ("list", "system.listMethods", None),
    ("ls", "system.listMethods", None),
    ("ver", "core.version", None),
    ("version", "core.version", None),
    ("who", "ctl.who", Some("[%v] %v: %v %v -> %v %v\n")),
    ("listen", "ctl.listen", Some("[%v] %v: %v %v\n")),
    ("dns_mem_info", "dns.mem_info", Some("%v / %v\n")),
    ("dns_debug", "dns.debug", Some("%v (%v): size=%v ref=%v expire=%vs last=%vs ago f=%v\n")),
    (
        "dns_debug_all",
        "dns.debug_all",
        Some("%v (%v) [%v]: size=%v ref=%v expire=%vs last=%vs ago f=%v\n\t\t%v:%v expire=%vs f=%v\n"),
    ),
    ("dst_blocklist_mem_info", "dst_blocklist.mem_info", Some("%v / %v\n")),
    ("dst_blocklist_debug", "dst_blocklist.debug", Some("%v:%v:%v expire:%v flags: %v\n")),
];

/// Built-in commands of the interactive shell (and one-shot mode).
const BUILTINS: &[(&str, &str)] = &[
    ("?", "help"),
    ("help", "displays help for a command"),
    ("version", "displays sercmd version"),
    ("quit", "exits sercmd"),
    ("exit", "exits sercmd"),
    ("warranty", "displays sercmd's warranty info"),
    ("license", "displays sercmd's license"),
];

struct Opts {
    addr: String,
    format: Option<String>,
    verbose: u32,
    client: ClientOptions,
    command: Vec<String>,
}

enum Outcome {
    Ok,
    /// The server answered with a fault.
    Fault,
    /// Bad argument, connection or protocol error.
    Error,
    Quit,
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("ERROR: {msg}");
    eprintln!("try `{NAME} -h` for help");
    ExitCode::from(2)
}

/// getopt-like parsing of `UVhbjs:D:R:vf:t:z:`; options end at the first non-option, so
/// negative numbers can be passed as arguments.
fn parse_opts(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        addr: DEFAULT_CTL_ADDR.to_owned(),
        format: None,
        verbose: 0,
        client: ClientOptions::default(),
        command: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let mut flags = a[1..].chars();
        while let Some(c) = flags.next() {
            let takes_value = "sDRftz".contains(c);
            let value = if takes_value {
                let rest: String = flags.by_ref().collect();
                if !rest.is_empty() {
                    Some(rest)
                } else {
                    i += 1;
                    Some(
                        args.get(i)
                            .cloned()
                            .ok_or(format!("option `-{c}' requires an argument"))?,
                    )
                }
            } else {
                None
            };
            match (c, value) {
                ('h', _) => {
                    println!("version: {NAME} {VERSION}");
                    print!("{HELP}");
                    return Ok(None);
                }
                ('V', _) => {
                    println!("version: {NAME} {VERSION}");
                    return Ok(None);
                }
                ('v', _) => o.verbose += 1,
                ('b', _) | ('U', _) => {}
                ('j', _) => return Err("jsonrpc (-j) is not supported by sercmd".into()),
                ('s', Some(v)) => o.addr = v,
                ('R', Some(v)) => o.client.reply_socket = Some(v.into()),
                ('D', Some(v)) => o.client.reply_dir = v.into(),
                ('f', Some(v)) => o.format = Some(unescape_format(&v)),
                ('t', Some(v)) => {
                    let secs: u64 = v.parse().map_err(|_| format!("bad timeout {v:?}"))?;
                    o.client.timeout = Duration::from_secs(secs.max(1));
                }
                ('z', Some(_)) => {}
                (c, _) => return Err(format!("unknown option `-{c}'")),
            }
        }
        i += 1;
    }
    o.command = args[i..].to_vec();
    Ok(Some(o))
}

/// Holds the connection; reconnects once if the server dropped an idle stream.
struct Session {
    addr: CtlAddr,
    opts: ClientOptions,
    client: Option<Client>,
    verbose: u32,
}

impl Session {
    fn call(
        &mut self,
        method: &str,
        params: &[ser_fifo::RpcValue],
    ) -> Result<ser_fifo::client::Reply, ClientError> {
        for attempt in 0..2 {
            if self.client.is_none() {
                self.client = Some(Client::connect(&self.addr, &self.opts)?);
            }
            let Some(c) = self.client.as_mut() else {
                unreachable!("connected just above")
            };
            match c.call(method, params) {
                Err(ClientError::Io(e)) if attempt == 0 => {
                    if self.verbose > 0 {
                        eprintln!("reconnecting after: {e}");
                    }
                    self.client = None;
                }
                r => return r,
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Runs one command line (already split into words).
    fn run(&mut self, words: &[String], format: Option<&str>) -> Outcome {
        let Some(first) = words.first() else {
            return Outcome::Ok;
        };
        let mut method = first.as_str();
        let mut fmt = format.map(str::to_owned);
        if let Some((_, m, f)) = ALIASES.iter().find(|(a, _, _)| *a == method) {
            method = m;
            if fmt.is_none() {
                fmt = f.map(str::to_owned);
            }
        }
        let args = &words[1..];
        match method {
            "quit" | "exit" => return Outcome::Quit,
            "version" => {
                println!("{NAME} {VERSION}");
                return Outcome::Ok;
            }
            "warranty" | "license" => {
                println!("{NAME} {VERSION}\nGPL-2.0-or-later; this program comes with ABSOLUTELY NO WARRANTY.");
                return Outcome::Ok;
            }
            "help" | "?" => return self.help(args),
            _ => {}
        }
        let mut params = Vec::with_capacity(args.len());
        for (n, a) in args.iter().enumerate() {
            match parse_arg(a) {
                Ok(v) => params.push(v),
                Err(e) => {
                    eprintln!("ERROR: bad argument {}: {e}", n + 1);
                    return Outcome::Error;
                }
            }
        }
        self.call_and_print(method, &params, fmt.as_deref())
    }

    fn call_and_print(
        &mut self,
        method: &str,
        params: &[ser_fifo::RpcValue],
        fmt: Option<&str>,
    ) -> Outcome {
        let reply = match self.call(method, params) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ERROR: {method}: {e} (server {})", self.addr);
                return Outcome::Error;
            }
        };
        match reply.to_kamcmd_text(fmt) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("ERROR while parsing the reply: {e}");
                return Outcome::Error;
            }
        }
        if self.verbose > 0 {
            println!(".");
        }
        let _ = std::io::stdout().flush();
        if reply.is_fault() {
            Outcome::Fault
        } else {
            Outcome::Ok
        }
    }

    fn help(&mut self, args: &[String]) -> Outcome {
        if let Some(cmd) = args.first() {
            if let Some((a, m, f)) = ALIASES.iter().find(|(a, _, _)| a == cmd) {
                match f {
                    Some(f) => println!(
                        "{a} is an alias for {m} with reply formatting: \"{}\"",
                        f.escape_default()
                    ),
                    None => println!("{a} is an alias for {m}"),
                }
                return Outcome::Ok;
            }
            if let Some((_, doc)) = BUILTINS.iter().find(|(b, _)| b == cmd) {
                println!("builtin command: {doc}");
                return Outcome::Ok;
            }
            let param = [ser_fifo::RpcValue::Str(cmd.clone())];
            return self.call_and_print("system.methodHelp", &param, None);
        }
        match self.call("system.listMethods", &[]) {
            Ok(r) if !r.is_fault() => {
                for v in r.values().unwrap_or_default() {
                    println!("{v}");
                }
            }
            Ok(_) | Err(_) => eprintln!("ERROR: could not list the server's methods"),
        }
        for (a, _, _) in ALIASES {
            println!("alias: {a}");
        }
        for (b, _) in BUILTINS {
            println!("builtin: {b}");
        }
        Outcome::Ok
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return usage_error(&e),
    };
    let addr = match CtlAddr::parse(&opts.addr) {
        Ok(CtlAddr::Fifo(_)) => {
            return usage_error("sercmd speaks binrpc; fifo: is not a binrpc address")
        }
        Ok(a) => a,
        Err(e) => return usage_error(&e.to_string()),
    };
    let mut session = Session {
        addr,
        opts: opts.client.clone(),
        client: None,
        verbose: opts.verbose,
    };
    if !opts.command.is_empty() {
        return match session.run(&opts.command, opts.format.as_deref()) {
            Outcome::Ok | Outcome::Quit => ExitCode::SUCCESS,
            Outcome::Fault => ExitCode::from(1),
            Outcome::Error => ExitCode::from(2),
        };
    }
    interactive(&mut session, opts.format.as_deref())
}

/// The shell: one command per line; on a terminal with a prompt, a banner,
/// history and completion ([`shell`]).
fn interactive(session: &mut Session, format: Option<&str>) -> ExitCode {
    let tty = std::io::stdin().is_terminal();
    let methods = match session.call("system.listMethods", &[]) {
        Ok(r) if r.is_fault() => Vec::new(),
        Ok(r) => r.values().unwrap_or_default(),
        Err(e) => {
            eprintln!("ERROR: cannot reach {}: {e}", session.addr);
            return ExitCode::from(2);
        }
    };
    if tty {
        println!("{NAME} {VERSION}\nThis is free software with ABSOLUTELY NO WARRANTY.");
        let names = methods
            .iter()
            .map(ToString::to_string)
            .chain(ALIASES.iter().map(|(a, _, _)| (*a).to_owned()))
            .chain(BUILTINS.iter().map(|(b, _)| (*b).to_owned()))
            .collect();
        let prompt = format!("{NAME}> ");
        let done = shell::run(&prompt, names, |words| match session.run(words, format) {
            Outcome::Quit => shell::Step::Quit,
            Outcome::Ok | Outcome::Fault | Outcome::Error => shell::Step::Continue,
        });
        println!();
        // On a terminal the user saw each error: the status is 0.
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ERROR: reading the terminal: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut worst = 0u8;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        // Bounded like kamcmd's 16 KiB line buffer.
        match std::io::Read::take(&mut lines, 16 * 1024).read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("ERROR: reading stdin: {e}");
                return ExitCode::from(2);
            }
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match session.run(&words, format) {
            Outcome::Quit => break,
            Outcome::Fault => worst = worst.max(1),
            Outcome::Error => worst = 2,
            Outcome::Ok => {}
        }
    }
    // In a script the status tells the worst error.
    ExitCode::from(worst)
}
