//! The tokens the lexer hands to the parser.

use std::fmt;
use std::net::IpAddr;

/// Words that open statements, blocks and declarations. Reserved: they cannot be used as
/// function or parameter names (as in SER's `cfg.lex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kw {
    /// `if`
    If,
    /// `else`
    Else,
    /// `switch`
    Switch,
    /// `case`
    Case,
    /// `default`
    Default,
    /// `while`
    While,
    /// `break`
    Break,
    /// `return`
    Return,
    /// `exit`
    Exit,
    /// `drop`
    Drop,
    /// `route` (also a call: `route(NAME)`)
    Route,
    /// `request_route`
    RequestRoute,
    /// `reply_route`
    ReplyRoute,
    /// `onreply_route`
    OnReplyRoute,
    /// `failure_route`
    FailureRoute,
    /// `branch_route`
    BranchRoute,
    /// `onsend_route`
    OnSendRoute,
    /// `event_route`
    EventRoute,
    /// `error_route`
    ErrorRoute,
    /// `loadmodule`
    LoadModule,
    /// `loadpath` or its alias `mpath`
    LoadPath,
    /// `modparam`
    ModParam,
    /// `flags`
    Flags,
    /// `avpflags`
    AvpFlags,
    /// `desc` (custom cfg parameter description)
    Desc,
    /// `defined`
    Defined,
    /// `strlen`
    StrLen,
    /// `strempty`
    StrEmpty,
}

impl Kw {
    /// The word for a reserved keyword, or `None`.
    pub fn from_word(w: &str) -> Option<Kw> {
        Some(match w {
            "if" => Kw::If,
            "else" => Kw::Else,
            "switch" => Kw::Switch,
            "case" => Kw::Case,
            "default" => Kw::Default,
            "while" => Kw::While,
            "break" => Kw::Break,
            "return" => Kw::Return,
            "exit" => Kw::Exit,
            "drop" => Kw::Drop,
            "route" => Kw::Route,
            "request_route" => Kw::RequestRoute,
            "reply_route" => Kw::ReplyRoute,
            "onreply_route" => Kw::OnReplyRoute,
            "failure_route" => Kw::FailureRoute,
            "branch_route" => Kw::BranchRoute,
            "onsend_route" => Kw::OnSendRoute,
            "event_route" => Kw::EventRoute,
            "error_route" => Kw::ErrorRoute,
            "loadmodule" => Kw::LoadModule,
            "loadpath" | "mpath" => Kw::LoadPath,
            "modparam" => Kw::ModParam,
            "flags" => Kw::Flags,
            "avpflags" => Kw::AvpFlags,
            "desc" => Kw::Desc,
            "defined" => Kw::Defined,
            "strlen" => Kw::StrLen,
            "strempty" => Kw::StrEmpty,
            _ => return None,
        })
    }
}

/// Core message/state keywords usable in expressions (`method`, `uri`, `src_ip`, `myself`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `method`: request method.
    Method,
    /// `uri`: request URI.
    Uri,
    /// `from_uri`
    FromUri,
    /// `to_uri`
    ToUri,
    /// `status`: reply status code.
    Status,
    /// `src_ip`
    SrcIp,
    /// `src_port`
    SrcPort,
    /// `dst_ip`
    DstIp,
    /// `dst_port`
    DstPort,
    /// `snd_ip`
    SndIp,
    /// `snd_port`
    SndPort,
    /// `snd_proto`
    SndProto,
    /// `snd_af`
    SndAf,
    /// `to_ip`
    ToIp,
    /// `to_port`
    ToPort,
    /// `proto`: transport of the received message.
    Proto,
    /// `af`: address family of the received message.
    Af,
    /// `msg:len`: message length.
    MsgLen,
    /// `retcode`, `$?`, `$retcode`, `$rc`: return code of the last function/route.
    Retcode,
    /// `max_len`: the configured maximum message length.
    MaxLen,
    /// `myself`: any local address/alias.
    Myself,
}

impl Keyword {
    /// The keyword for a word, or `None`. (`msg:len` and `$?` are cut by the lexer itself.)
    pub fn from_word(w: &str) -> Option<Keyword> {
        Some(match w {
            "method" => Keyword::Method,
            "uri" => Keyword::Uri,
            "from_uri" => Keyword::FromUri,
            "to_uri" => Keyword::ToUri,
            "status" => Keyword::Status,
            "src_ip" => Keyword::SrcIp,
            "src_port" => Keyword::SrcPort,
            "dst_ip" => Keyword::DstIp,
            "dst_port" => Keyword::DstPort,
            "snd_ip" => Keyword::SndIp,
            "snd_port" => Keyword::SndPort,
            "snd_proto" => Keyword::SndProto,
            "snd_af" => Keyword::SndAf,
            "to_ip" => Keyword::ToIp,
            "to_port" => Keyword::ToPort,
            "proto" => Keyword::Proto,
            "af" => Keyword::Af,
            "retcode" => Keyword::Retcode,
            "max_len" => Keyword::MaxLen,
            "myself" => Keyword::Myself,
            _ => return None,
        })
    }

    /// True for keywords that name a message property and are compared with `==`, `=~`, ...
    /// (`method == "INVITE"`). The others (`myself`, `max_len`, `retcode`) are plain values.
    pub fn is_subject(self) -> bool {
        !matches!(self, Keyword::Myself | Keyword::MaxLen | Keyword::Retcode)
    }

    /// The spelling used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Method => "method",
            Keyword::Uri => "uri",
            Keyword::FromUri => "from_uri",
            Keyword::ToUri => "to_uri",
            Keyword::Status => "status",
            Keyword::SrcIp => "src_ip",
            Keyword::SrcPort => "src_port",
            Keyword::DstIp => "dst_ip",
            Keyword::DstPort => "dst_port",
            Keyword::SndIp => "snd_ip",
            Keyword::SndPort => "snd_port",
            Keyword::SndProto => "snd_proto",
            Keyword::SndAf => "snd_af",
            Keyword::ToIp => "to_ip",
            Keyword::ToPort => "to_port",
            Keyword::Proto => "proto",
            Keyword::Af => "af",
            Keyword::MsgLen => "msg:len",
            Keyword::Retcode => "retcode",
            Keyword::MaxLen => "max_len",
            Keyword::Myself => "myself",
        }
    }
}

/// A token. Spans travel beside it (`(Pos, Tok, Pos)` triples).
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifier, possibly dotted (`debug`, `pstn.gw_ip`, `sip.example.com`).
    Ident(String),
    /// Reserved word.
    Kw(Kw),
    /// Message keyword that is compared (`method`, `uri`, `src_ip`, `msg:len`, ...).
    Subject(Keyword),
    /// Value keyword (`myself`, `max_len`, `retcode`/`$?`).
    KwValue(Keyword),
    /// Integer literal (decimal or `0x` hex). Negative numbers are `-` then `Int`.
    Int(i64),
    /// String literal, escapes already decoded.
    Str(String),
    /// IPv4 or IPv6 address literal (`127.0.0.1`, `[::1]`, bare `::1`).
    Ip(IpAddr),
    /// Network literal `addr/prefix` written without spaces (`10.0.0.0/8`,
    /// `10.0.0.0/255.0.0.0` → prefix 8).
    IpNet(IpAddr, u8),
    /// `$...` pseudo-variable or AVP, raw text including the `$` (`$rU`, `$avp(i:80)`,
    /// `$t.did`, `$(avp(x)[0])`).
    Dollar(String),
    /// `@...` select, raw text including the `@` (`@to.tag`, `@hf_value["x"]`).
    Select(String),
    /// Raw route name inside `event_route[...]` (`tm:local-request`).
    RouteName(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `;`
    Semi,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `.` (between the parts of a dotted name: `pstn.gw_ip`, `sip.example.com`)
    Dot,
    /// `=`
    Assign,
    /// `:=`
    ColonAssign,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `eq` (string equal)
    StrEq,
    /// `ne` (string not equal)
    StrNe,
    /// `ieq` (integer equal)
    IntEq,
    /// `ine` (integer not equal)
    IntNe,
    /// `&&` or `and`
    AndAnd,
    /// `||` or `or`
    OrOr,
    /// `!` or `not`
    Not,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `|`
    Pipe,
    /// `&`
    Amp,
    /// `^`
    Caret,
    /// `~`
    Tilde,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `(int)` cast.
    IntCast,
    /// `(str)` cast.
    StrCast,
    /// Synthetic end of a top-level `name = value` assignment, inserted by the parser's
    /// token pass (values are free-form, `alias=a.com b.com:5070`, so their end is found
    /// before parsing). Never produced by the lexer.
    ValueEnd,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier `{s}`"),
            Tok::Kw(k) => write!(f, "keyword `{}`", format!("{k:?}").to_lowercase()),
            Tok::Subject(k) | Tok::KwValue(k) => write!(f, "keyword `{}`", k.as_str()),
            Tok::Int(n) => write!(f, "number `{n}`"),
            Tok::Str(s) => write!(f, "string \"{}\"", s.escape_default()),
            Tok::Ip(ip) => write!(f, "address `{ip}`"),
            Tok::IpNet(ip, bits) => write!(f, "network `{ip}/{bits}`"),
            Tok::Dollar(s) => write!(f, "variable `{s}`"),
            Tok::Select(s) => write!(f, "select `{s}`"),
            Tok::RouteName(s) => write!(f, "route name `{s}`"),
            other => write!(f, "`{}`", punct_str(other)),
        }
    }
}

fn punct_str(t: &Tok) -> &'static str {
    match t {
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Semi => ";",
        Tok::Comma => ",",
        Tok::Colon => ":",
        Tok::Dot => ".",
        Tok::Assign => "=",
        Tok::ColonAssign => ":=",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Match => "=~",
        Tok::NotMatch => "!~",
        Tok::Lt => "<",
        Tok::Gt => ">",
        Tok::Le => "<=",
        Tok::Ge => ">=",
        Tok::StrEq => "eq",
        Tok::StrNe => "ne",
        Tok::IntEq => "ieq",
        Tok::IntNe => "ine",
        Tok::AndAnd => "&&",
        Tok::OrOr => "||",
        Tok::Not => "!",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Percent => "%",
        Tok::Pipe => "|",
        Tok::Amp => "&",
        Tok::Caret => "^",
        Tok::Tilde => "~",
        Tok::Shl => "<<",
        Tok::Shr => ">>",
        Tok::ValueEnd => "end of value",
        Tok::IntCast => "(int)",
        Tok::StrCast => "(str)",
        _ => "?",
    }
}
