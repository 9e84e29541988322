//! The command line, defined as data (ripgrep's flag table): one entry per
//! SER 3.0 flag with its argument name and help text. `ser -h` (and the man
//! page) are generated from [`FLAGS`]; [`parse`] reads `argv` getopt-style
//! (combined short flags `-dddE`, attached values `-n3`, repeated `-l`).

use std::fmt::Write as _;

use crate::listen::ListenSpec;
use crate::version;

/// Default config file (SER 3.0, `/usr/local` prefix).
pub const DEFAULT_CFG_FILE: &str = "/usr/local/etc/ser/ser.cfg";
/// Default module search path (modules are built in; kept for `-L`).
pub const DEFAULT_MODULES_DIR: &str = "/usr/local/lib/ser/modules";

/// One command-line flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The letter after `-`.
    pub letter: char,
    /// Name of its argument in the help (`file`), `None` for switches.
    pub arg: Option<&'static str>,
    /// Help text, one entry per output line.
    pub help: &'static [&'static str],
}

/// Every flag, in SER 3.0's help order.
pub const FLAGS: &[Flag] = &[
    Flag {
        letter: 'f',
        arg: Some("file"),
        help: &["Configuration file (default: /usr/local/etc/ser/ser.cfg)"],
    },
    Flag {
        letter: 'L',
        arg: Some("path"),
        help: &["Modules search path (default: /usr/local/lib/ser/modules)"],
    },
    Flag {
        letter: 'c',
        arg: None,
        help: &["Check configuration file for errors"],
    },
    Flag {
        letter: 'l',
        arg: Some("address"),
        help: &[
            "Listen on the specified address/interface (multiple -l",
            " mean listening on more addresses).  The address format is",
            " [proto:]addr_lst[:port], where proto=udp|tcp|tls|sctp, ",
            " addr_lst= addr|(addr, addr_lst) and ",
            " addr= host|ip_address|interface_name. ",
            " E.g: -l localhost, -l udp:127.0.0.1:5080, -l eth0:5062,",
            " -l \"sctp:(eth0)\", -l \"(eth0, eth1, 127.0.0.1):5065\".",
            " The default behaviour is to listen on all the interfaces.",
        ],
    },
    Flag {
        letter: 'n',
        arg: Some("processes"),
        help: &[
            "Number of child processes to fork per interface",
            " (default: 8)",
        ],
    },
    Flag {
        letter: 'r',
        arg: None,
        help: &[
            "Use dns to check if is necessary to add a \"received=\"",
            " field to a via",
        ],
    },
    Flag {
        letter: 'R',
        arg: None,
        help: &[
            "Same as `-r` but use reverse dns;",
            " (to use both use `-rR`)",
        ],
    },
    Flag {
        letter: 'v',
        arg: None,
        help: &["Turn on \"via:\" host checking when forwarding replies"],
    },
    Flag {
        letter: 'd',
        arg: None,
        help: &["Debugging mode (multiple -d increase the level)"],
    },
    Flag {
        letter: 'D',
        arg: None,
        help: &[
            "Control how daemonize is done:",
            " -D..do not fork (almost) anyway;",
            " -DD..do not daemonize creator;",
            " -DDD..daemonize (default)",
        ],
    },
    Flag {
        letter: 'E',
        arg: None,
        help: &["Log to stderr"],
    },
    Flag {
        letter: 'T',
        arg: None,
        help: &["Disable tcp"],
    },
    Flag {
        letter: 'N',
        arg: Some("processes"),
        help: &["Number of tcp child processes (default: equal to `-n')"],
    },
    Flag {
        letter: 'S',
        arg: None,
        help: &["Disable sctp"],
    },
    Flag {
        letter: 'Q',
        arg: Some("processes"),
        help: &["Number of sctp child processes (default: equal to `-n')"],
    },
    Flag {
        letter: 'W',
        arg: Some("type"),
        help: &["poll method: poll, epoll_lt (default), epoll_et, select"],
    },
    Flag {
        letter: 'V',
        arg: None,
        help: &["Version number"],
    },
    Flag {
        letter: 'h',
        arg: None,
        help: &["This help message"],
    },
    Flag {
        letter: 'b',
        arg: Some("nr"),
        help: &[
            "Maximum receive buffer size which will not be exceeded by",
            " auto-probing procedure even if  OS allows",
        ],
    },
    Flag {
        letter: 'm',
        arg: Some("nr"),
        help: &["Size of shared memory allocated in Megabytes"],
    },
    Flag {
        letter: 'w',
        arg: Some("dir"),
        help: &["Change the working directory to \"dir\" (default: \"/\")"],
    },
    Flag {
        letter: 't',
        arg: Some("dir"),
        help: &["Chroot to \"dir\""],
    },
    Flag {
        letter: 'u',
        arg: Some("uid"),
        help: &["Change uid "],
    },
    Flag {
        letter: 'g',
        arg: Some("gid"),
        help: &["Change gid "],
    },
    Flag {
        letter: 'P',
        arg: Some("file"),
        help: &["Create a pid file"],
    },
    Flag {
        letter: 'G',
        arg: Some("file"),
        help: &["Create a pgid file"],
    },
    Flag {
        letter: 'O',
        arg: Some("nr"),
        help: &["Script optimization level (debugging option)"],
    },
    Flag {
        letter: 'a',
        arg: Some("mode"),
        help: &[
            "Auto aliases mode: enable with yes or on,",
            " disable with no or off",
        ],
    },
    Flag {
        letter: 'A',
        arg: Some("define"),
        help: &["Add config pre-processor define (e.g., -A WITH_AUTH)"],
    },
];

/// Looks a flag up by letter.
pub fn flag(letter: char) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.letter == letter)
}

/// The `-h` text.
pub fn help_text() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", version::version_line());
    out.push_str("Usage: ser [options]\nOptions:\n");
    for f in FLAGS {
        let head = match f.arg {
            Some(a) => format!("-{} {a}", f.letter),
            None => format!("-{}", f.letter),
        };
        for (i, line) in f.help.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "    {head:<12} {line}");
            } else {
                let _ = writeln!(out, "{:17}{line}", "");
            }
        }
    }
    out
}

/// The OPTIONS section of `man/ser.8` (roff), from the same table as `-h`.
pub fn man_options() -> String {
    let mut out = String::from(".SH OPTIONS\n");
    for f in FLAGS {
        out.push_str(".TP\n");
        match f.arg {
            Some(a) => {
                let _ = writeln!(out, ".BI \\-{} \" {a}\"", f.letter);
            }
            None => {
                let _ = writeln!(out, ".B \\-{}", f.letter);
            }
        }
        let text: Vec<&str> = f.help.iter().map(|l| l.trim()).collect();
        // roff: a leading dot or quote would be read as a request.
        let body = text.join(" ").replace('\\', "\\e").replace('-', "\\-");
        let body = if body.starts_with(['.', '\'']) {
            format!("\\&{body}")
        } else {
            body
        };
        out.push_str(&body);
        out.push('\n');
    }
    out
}

/// `-W` methods this build has (the TCP loops' reactor backends).
pub const POLL_METHODS: &[&str] = &["poll", "epoll_lt", "epoll_et", "select"];

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Start the server.
    #[default]
    Run,
    /// `-c`: check the config and exit.
    Check,
    /// `-h`.
    Help,
    /// `-V`.
    Version,
}

/// Everything given on the command line; `None`/empty means "not given",
/// so the config file's value (or the default) stays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmdLine {
    /// What to do.
    pub action: Action,
    /// `-f`.
    pub cfg_file: Option<String>,
    /// `-L`.
    pub modules_dir: Option<String>,
    /// `-l`, in order.
    pub listen: Vec<ListenSpec>,
    /// `-n`.
    pub children: Option<u32>,
    /// `-r`.
    pub dns: bool,
    /// `-R`.
    pub rev_dns: bool,
    /// `-v`.
    pub check_via: bool,
    /// Number of `-d`.
    pub debug_count: u32,
    /// Number of `-D`.
    pub dont_fork_count: u32,
    /// `-E`.
    pub log_stderr: bool,
    /// `-T`.
    pub disable_tcp: bool,
    /// `-N`.
    pub tcp_children: Option<u32>,
    /// `-S`.
    pub disable_sctp: bool,
    /// `-Q`.
    pub sctp_children: Option<u32>,
    /// `-W`.
    pub poll_method: Option<String>,
    /// `-b`.
    pub rcvbuf_max: Option<u32>,
    /// `-m`, megabytes.
    pub shm_mb: Option<u32>,
    /// `-w`.
    pub wdir: Option<String>,
    /// `-t`.
    pub chroot: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-g`.
    pub group: Option<String>,
    /// `-P`.
    pub pid_file: Option<String>,
    /// `-G`.
    pub pgid_file: Option<String>,
    /// `-O`.
    pub opt_level: Option<u32>,
    /// `-a`.
    pub auto_aliases: Option<bool>,
    /// `-A NAME` / `-A NAME=value`, in order.
    pub defines: Vec<(String, Option<String>)>,
}

/// A rejected command line; its `Display` is the one line SER prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// Unknown letter.
    Unknown(char),
    /// A flag that needs an argument came last.
    MissingArg(char),
    /// A value that does not fit the flag.
    BadArg {
        /// The flag.
        letter: char,
        /// The value given.
        value: String,
        /// Why, if more can be said.
        why: Option<String>,
    },
    /// A word that is not an option.
    Stray(String),
}

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagError::Unknown(c) => write!(f, "invalid option -- '{c}'"),
            FlagError::MissingArg(c) => write!(f, "option requires an argument -- '{c}'"),
            FlagError::BadArg {
                letter,
                value,
                why: None,
            } => {
                write!(f, "bad -{letter} argument '{value}'")
            }
            FlagError::BadArg {
                letter,
                value,
                why: Some(w),
            } => {
                write!(f, "bad -{letter} argument '{value}': {w}")
            }
            FlagError::Stray(s) => write!(f, "unexpected argument '{s}'"),
        }
    }
}

fn number(letter: char, v: &str) -> Result<u32, FlagError> {
    v.trim().parse::<u32>().map_err(|_| FlagError::BadArg {
        letter,
        value: v.to_string(),
        why: None,
    })
}

fn positive(letter: char, v: &str) -> Result<u32, FlagError> {
    match number(letter, v)? {
        0 => Err(FlagError::BadArg {
            letter,
            value: v.into(),
            why: Some("must be > 0".into()),
        }),
        n => Ok(n),
    }
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<CmdLine, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cl = CmdLine::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "--" {
            if let Some(extra) = args.next() {
                return Err(FlagError::Stray(extra));
            }
            break;
        }
        let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) else {
            return Err(FlagError::Stray(arg));
        };
        for (i, c) in letters.char_indices() {
            let def = flag(c).ok_or(FlagError::Unknown(c))?;
            if def.arg.is_none() {
                apply_switch(&mut cl, c);
                continue;
            }
            let rest = &letters[i + c.len_utf8()..];
            let value = if rest.is_empty() {
                args.next().ok_or(FlagError::MissingArg(c))?
            } else {
                rest.to_string()
            };
            apply_value(&mut cl, c, value)?;
            break;
        }
    }
    Ok(cl)
}

fn apply_switch(cl: &mut CmdLine, c: char) {
    match c {
        'c' => cl.action = Action::Check,
        'h' => cl.action = Action::Help,
        'V' => cl.action = Action::Version,
        'r' => cl.dns = true,
        'R' => cl.rev_dns = true,
        'v' => cl.check_via = true,
        'd' => cl.debug_count += 1,
        'D' => cl.dont_fork_count += 1,
        'E' => cl.log_stderr = true,
        'T' => cl.disable_tcp = true,
        'S' => cl.disable_sctp = true,
        // The table and this match list the same switches.
        _ => {}
    }
}

fn apply_value(cl: &mut CmdLine, c: char, v: String) -> Result<(), FlagError> {
    match c {
        'f' => cl.cfg_file = Some(v),
        'L' => cl.modules_dir = Some(v),
        'l' => {
            let spec = ListenSpec::parse(&v).map_err(|why| FlagError::BadArg {
                letter: 'l',
                value: v.clone(),
                why: Some(why),
            })?;
            cl.listen.push(spec);
        }
        'n' => cl.children = Some(positive(c, &v)?),
        'N' => cl.tcp_children = Some(number(c, &v)?),
        'Q' => cl.sctp_children = Some(number(c, &v)?),
        'W' => {
            if let Err(why) = ser_children::reactor::PollMethod::parse(&v) {
                return Err(FlagError::BadArg {
                    letter: c,
                    value: v,
                    why: Some(why),
                });
            }
            cl.poll_method = Some(v);
        }
        'b' => cl.rcvbuf_max = Some(positive(c, &v)?),
        'm' => cl.shm_mb = Some(positive(c, &v)?),
        'w' => cl.wdir = Some(v),
        't' => cl.chroot = Some(v),
        'u' => cl.user = Some(v),
        'g' => cl.group = Some(v),
        'P' => cl.pid_file = Some(v),
        'G' => cl.pgid_file = Some(v),
        'O' => cl.opt_level = Some(number(c, &v)?),
        'a' => {
            cl.auto_aliases = Some(match v.to_ascii_lowercase().as_str() {
                "yes" | "on" => true,
                "no" | "off" => false,
                _ => {
                    return Err(FlagError::BadArg {
                        letter: c,
                        value: v,
                        why: None,
                    })
                }
            })
        }
        'A' => {
            let (name, value) = match v.split_once('=') {
                Some((n, val)) => (n.to_string(), Some(val.to_string())),
                None => (v.clone(), None),
            };
            if name.is_empty() {
                return Err(FlagError::BadArg {
                    letter: c,
                    value: v,
                    why: None,
                });
            }
            cl.defines.push((name, value));
        }
        // Only flags with an argument reach here, and all are listed above.
        _ => return Err(FlagError::Unknown(c)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<CmdLine, FlagError> {
        parse(args.iter().copied())
    }

    #[test]
    fn combined_and_counted() {
        let cl = p(&["-dddE", "-DD", "-rR", "-n3", "-T"]).unwrap();
        assert_eq!(cl.debug_count, 3);
        assert!(cl.log_stderr && cl.dns && cl.rev_dns && cl.disable_tcp);
        assert_eq!(cl.dont_fork_count, 2);
        assert_eq!(cl.children, Some(3));
    }

    #[test]
    fn values_and_defines() {
        let cl = p(&[
            "-f",
            "/tmp/x.cfg",
            "-l",
            "udp:127.0.0.1:5080",
            "-l",
            "tcp:[::1]",
            "-A",
            "WITH_AUTH",
            "-AFLT=1",
            "-m",
            "64",
            "-P",
            "/tmp/p",
            "-a",
            "on",
            "-W",
            "poll",
        ])
        .unwrap();
        assert_eq!(cl.cfg_file.as_deref(), Some("/tmp/x.cfg"));
        assert_eq!(cl.listen.len(), 2);
        assert_eq!(
            cl.defines,
            [
                ("WITH_AUTH".to_string(), None),
                ("FLT".to_string(), Some("1".to_string()))
            ]
        );
        assert_eq!(cl.shm_mb, Some(64));
        assert_eq!(cl.auto_aliases, Some(true));
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(p(&["-x"]).unwrap_err().to_string(), "invalid option -- 'x'");
        assert_eq!(
            p(&["-n", "abc"]).unwrap_err().to_string(),
            "bad -n argument 'abc'"
        );
        assert_eq!(
            p(&["-f"]).unwrap_err().to_string(),
            "option requires an argument -- 'f'"
        );
        assert_eq!(
            p(&["-dq"]).unwrap_err().to_string(),
            "invalid option -- 'q'"
        );
        for m in POLL_METHODS {
            assert_eq!(p(&["-W", m]).unwrap().poll_method.as_deref(), Some(*m));
        }
        assert_eq!(
            p(&["-W", "kqueue"]).unwrap_err().to_string(),
            "bad -W argument 'kqueue': poll method kqueue is not available on Linux \
             (available: poll, epoll_lt, epoll_et, select)"
        );
        assert!(p(&["-l", "udp:1.2.3.4:99999"]).is_err());
        assert_eq!(
            p(&["foo"]).unwrap_err().to_string(),
            "unexpected argument 'foo'"
        );
    }

    #[test]
    fn man_options_cover_every_flag() {
        let m = man_options();
        assert!(m.starts_with(".SH OPTIONS\n.TP\n.BI \\-f \" file\"\nConfiguration file"));
        assert_eq!(m.matches(".TP\n").count(), FLAGS.len());
        assert!(m.contains(".B \\-E\nLog to stderr\n"));
    }

    #[test]
    fn help_lists_every_flag_in_ser_format() {
        let h = help_text();
        assert!(
            h.starts_with("version: ser 3.0.0 (x86_64/linux)\nUsage: ser [options]\nOptions:\n")
        );
        assert!(h.contains(
            "\n    -f file      Configuration file (default: /usr/local/etc/ser/ser.cfg)\n"
        ));
        assert!(h.contains("\n    -n processes Number of child processes to fork per interface\n                  (default: 8)\n"));
        for f in FLAGS {
            assert!(h.contains(&format!("\n    -{}", f.letter)), "{}", f.letter);
        }
    }
}
