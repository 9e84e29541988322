//! The syntax tree of a SER / Kamailio config script.
//!
//! This is what the routing engine compiles into its action tree. It is purely syntactic:
//! names (functions, modules, routes, flags) are kept as written and resolved later;
//! pseudo-variables, AVPs and selects are cut correctly but kept as raw text plus a
//! name/inner split, because their meaning depends on loaded modules.
//!
//! Every node carries a [`Span`]; turn it into `file:line:column` with
//! [`SourceMap::format_pos`](ser_lexer::SourceMap::format_pos).
//!
//! Normalisations the parser applies (so the engine sees one form):
//! - `route[0]` / `route["0"]` / `request_route` / `route` are all the main request route
//!   (`RouteKind::Request`, `name: None`); `reply_route` is `RouteKind::OnReply`, `name: None`.
//! - `if (c) stmt;` without braces gets a one-statement [`Block`].
//! - `else if` is an `else` block holding one [`Stmt::If`].
//! - Adjacent string literals (`"a" "b"`) are concatenated.
//! - `yes/no/on/off/true/false/enable/disable` are [`ValueKind::Bool`] in global values and
//!   `Int` 1/0 in expressions and modparams (as SER's lexer does).
//! - `$?`, `$retcode`, `$rc` and `retcode` are [`Keyword::Retcode`].
//! - `(int)e` is `0 + e` and `(str)e` is `"" + e` (`+` converts its right side to the type
//!   of its left side, so this is the same cast).
//! - Socket specs given as function arguments (`force_send_socket(udp:1.2.3.4:5060)`) and
//!   SER 0.8's `uri:host` / `uri:port` are [`Expr::Ident`]s holding that text.
//! - SER's `%name` attributes are [`Expr::Avp`]s (raw text keeps the `%`).
//! - `exit()`, `drop()`, `return()` are `exit;`, `drop;`, `return;`.
//! - A bare name as a modparam value (an undefined `#!define`, e.g. `DBURL`) is a string
//!   [`ParamValue::Str`] with a warning (Kamailio rejects it).

use std::net::IpAddr;

pub use ser_lexer::{Keyword, Span};

/// A whole config file (after preprocessing).
#[derive(Clone, Debug, PartialEq)]
pub enum Config {
    /// A SER / Kamailio script: global settings, module settings and route blocks, in file
    /// order.
    Script {
        /// Top-level items in source order.
        items: Vec<Item>,
    },
    /// The 2001 `sip_router.cfg` regex routing table (`method_re uri_re dest` per line).
    LegacyTable(Vec<LegacyRule>),
}

impl Config {
    /// The script items (empty for a legacy table).
    pub fn items(&self) -> &[Item] {
        match self {
            Config::Script { items } => items,
            Config::LegacyTable(_) => &[],
        }
    }
}

/// One line of the 2001 regex table: requests whose method matches `method_re` and whose
/// request URI matches `uri_re` are forwarded to `dest`.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyRule {
    /// POSIX extended regex on the method (`^INVITE`).
    pub method_re: String,
    /// POSIX extended regex on the request URI (`^sip:.*@dorian.*`).
    pub uri_re: String,
    /// Destination host name or IP address.
    pub dest: String,
    /// The whole line (without comment).
    pub span: Span,
}

/// A top-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// Core parameter `name = value` (`debug=3`, `listen=udp:1.2.3.4:5060`).
    /// The name was checked against the core parameter table (unknown → error).
    Assign {
        /// Parameter name as written (`debug`, `tcp_connection_lifetime`).
        name: String,
        /// Span of the name.
        name_span: Span,
        /// The value.
        value: Value,
        /// The whole assignment.
        span: Span,
    },
    /// Custom runtime cfg parameter `group.name = value desc "text"` (Kamailio cfg framework).
    CustomParam {
        /// Group (`pstn`).
        group: String,
        /// Parameter name inside the group (`gw_ip`).
        name: String,
        /// Default value (`Int` or `Str`).
        value: Value,
        /// Description after `desc`, if any.
        desc: Option<String>,
        /// The whole declaration.
        span: Span,
    },
    /// `loadmodule "path_or_name"`.
    LoadModule {
        /// As written: a name (`"sl"`), a file (`"tm.so"`) or an absolute path.
        path: String,
        /// The whole item.
        span: Span,
    },
    /// `loadpath "a:b"`, `mpath "a:b"`, `mpath="a:b"`: colon-separated module directories.
    LoadPath {
        /// As written (not split).
        path: String,
        /// The whole item.
        span: Span,
    },
    /// `modparam("mod1|mod2", "param", value)`.
    ModParam {
        /// Module name, or a `|`-separated list / regex of module names, as written.
        modules: String,
        /// Parameter name.
        param: String,
        /// The value (string or int).
        value: ParamValue,
        /// The whole item.
        span: Span,
    },
    /// `flags NAME : N, NAME2, ...;`: named message flags.
    Flags {
        /// The declarations, in order.
        flags: Vec<FlagDecl>,
        /// The whole item.
        span: Span,
    },
    /// `avpflags a, b;`: named AVP flags.
    AvpFlags {
        /// The flag names with their spans.
        names: Vec<(String, Span)>,
        /// The whole item.
        span: Span,
    },
    /// A route block of any type.
    Route(Route),
}

/// A route block.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Which route table it goes into.
    pub kind: RouteKind,
    /// `None` for the main route of its kind (`route {}`, `onreply_route {}`);
    /// otherwise the name or number as written (`"FORWARD"`, `"2"`, `"tm:local-request"`).
    pub name: Option<String>,
    /// The statements.
    pub body: Block,
    /// From the keyword to the closing `}`.
    pub span: Span,
}

/// Route types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `route`, `request_route`.
    Request,
    /// `onreply_route`, `reply_route`.
    OnReply,
    /// `failure_route`.
    Failure,
    /// `branch_route`.
    Branch,
    /// `onsend_route`.
    OnSend,
    /// `event_route`.
    Event,
    /// `error_route`.
    Error,
}

/// One entry of a `flags` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagDecl {
    /// Flag name (`FLAG_ACC`).
    pub name: String,
    /// Explicit bit number after `:`, if given.
    pub bit: Option<u32>,
    /// The entry.
    pub span: Span,
}

/// The value of a core parameter assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where it is.
    pub span: Span,
}

/// Kinds of core parameter values.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// `3`, `-1`, `0x10`.
    Int(i64),
    /// `"text"`.
    Str(String),
    /// `yes`, `no`, `on`, `off`, `true`, `false`, `enable`, `disable`.
    Bool(bool),
    /// A bare word or host name (`LOG_LOCAL0`, `eth0`, `sip.example.com`).
    Ident(String),
    /// An address literal (`127.0.0.1`, `[::1]`).
    Ip(IpAddr),
    /// A socket-like value: `[proto:]host[:port] [advertise host[:port]]`
    /// (`udp:1.2.3.4:5060`, `sip.example.com:5060`, `*:5060`).
    Socket(SocketSpec),
    /// Several space- or comma-separated values (`alias=a.com b.com:5070`).
    List(Vec<Value>),
}

/// `[proto:]host[:port]`, optionally with `advertise host[:port]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketSpec {
    /// Transport (`udp`, `tcp`, `tls`, `sctp`, ...), lower-cased, if given.
    pub proto: Option<String>,
    /// Host: IP address text (IPv6 without brackets), host name, interface name or `*`.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// `advertise host[:port]`, if given.
    pub advertise: Option<(String, Option<u16>)>,
}

/// A modparam value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// String value (also what a `#!define`d name expands to when it was a string).
    Str(String, Span),
    /// Integer value (`yes`/`no` are 1/0).
    Int(i64, Span),
}

/// `{ ... }`, or the single statement of a brace-less `if`/`else`/`while`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Statements in order (empty `;` statements are dropped).
    pub stmts: Vec<Stmt>,
    /// From `{` to `}` (or the single statement).
    pub span: Span,
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// A function call used as a statement: `t_relay();`, `sl_reply_error();`
    /// `route(NAME);` (a call named `route` whose argument is an `Expr::Ident`, `Str` or `Int`).
    Call(Call),
    /// `if (cond) then [else otherwise]`.
    If {
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Block,
        /// Else branch (`else if` is a block with one `Stmt::If`).
        otherwise: Option<Block>,
        /// From `if` to the end of the last branch.
        span: Span,
    },
    /// `switch (expr) { case X: ... default: ... }`. Cases fall through unless they `break`.
    Switch {
        /// The switched value.
        expr: Expr,
        /// Cases in source order (including `default`).
        cases: Vec<Case>,
        /// The whole statement.
        span: Span,
    },
    /// `while (cond) body`.
    While {
        /// Condition.
        cond: Expr,
        /// Loop body.
        body: Block,
        /// The whole statement.
        span: Span,
    },
    /// `return;`, `return(expr);`, `return expr;`.
    Return {
        /// The returned value, if any.
        value: Option<Expr>,
        /// The statement.
        span: Span,
    },
    /// `exit;`
    Exit {
        /// The statement.
        span: Span,
    },
    /// `drop;`
    Drop {
        /// The statement.
        span: Span,
    },
    /// `break;` (ends a route in SER 0.8.8 style, or a `switch` case / `while` loop).
    Break {
        /// The statement.
        span: Span,
    },
    /// `$x = expr;`, `$x := expr;`.
    Assign {
        /// Left side: an `Expr::Pvar` or `Expr::Avp`.
        target: Expr,
        /// Which operator.
        op: AssignOp,
        /// Right side.
        value: Expr,
        /// The statement.
        span: Span,
    },
    /// A nested `{ ... }` block.
    Block(Block),
}

/// Assignment operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Assign,
    /// `:=`: OpenSIPS-style "delete all values of the AVP, then assign". Neither SER nor
    /// Kamailio has it (their only assignment is `=`); accepted so such scripts load.
    ColonAssign,
}

/// One `case`/`default` of a `switch`.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `None` for `default:`; otherwise the label expression (int or string literal).
    pub label: Option<Expr>,
    /// Statements until the next label (may be empty: fall-through).
    pub body: Vec<Stmt>,
    /// From `case` to the end of its body.
    pub span: Span,
}

/// A function call `name(args)`. (`name;` without parentheses is an error, as in Kamailio.)
/// `uri:host` / `uri:port` arguments (SER 0.8 `forward`) are `Expr::Ident`s with those names.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Function name as written (`t_relay`, `route`, `sl_send_reply`).
    pub name: String,
    /// Arguments (usually strings, ints, bare identifiers such as flag names, pvars).
    pub args: Vec<Expr>,
    /// From the name to `)`.
    pub span: Span,
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Integer literal; a leading `-` on a literal is folded in.
    Int {
        /// Value.
        value: i64,
        /// Where.
        span: Span,
    },
    /// String literal (escapes decoded).
    Str {
        /// Value.
        value: String,
        /// Where.
        span: Span,
    },
    /// Address literal (`127.0.0.1`, `[::1]`).
    Ip {
        /// Address.
        addr: IpAddr,
        /// Where.
        span: Span,
    },
    /// Network `addr/prefix` (`10.0.0.0/8`, `10.0.0.0/255.0.0.0` as prefix 8).
    IpNet {
        /// Network address.
        addr: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
        /// Where.
        span: Span,
    },
    /// A bare identifier (`CANCEL` in `method == CANCEL`, `FLAG_ACC` in `setflag(FLAG_ACC)`,
    /// `udp` in `proto == udp`, a route name in `route(NAME)`).
    Ident {
        /// The word.
        name: String,
        /// Where.
        span: Span,
    },
    /// A core keyword (`method`, `uri`, `src_ip`, `myself`, `max_len`, `retcode`, ...).
    Keyword {
        /// Which.
        kw: Keyword,
        /// Where.
        span: Span,
    },
    /// A pseudo-variable (`$rU`, `$ru`, `$var(x)`, `$hdr(X)`, `$sel(a.b)`, `$(avp(x)[0])`).
    Pvar(Pvar),
    /// An AVP (`$t.did`, `$fu.uid`, `$account`, `$avp(i:80)`, `$avp(s:x)`).
    Avp(Avp),
    /// A select (`@to.tag`, `@ruri.host`, `@cfg_get.x.y`, `@hf_value["x"]`).
    Select(Select),
    /// A function call used as a value/test (`if (t_relay())`).
    Call(Call),
    /// Unary operation.
    Unary {
        /// Operator.
        op: UnOp,
        /// Operand.
        expr: Box<Expr>,
        /// Where.
        span: Span,
    },
    /// Binary operation.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// Where.
        span: Span,
    },
}

impl Expr {
    /// The span of any expression.
    pub fn span(&self) -> Span {
        match self {
            Expr::Int { span, .. }
            | Expr::Str { span, .. }
            | Expr::Ip { span, .. }
            | Expr::IpNet { span, .. }
            | Expr::Ident { span, .. }
            | Expr::Keyword { span, .. }
            | Expr::Unary { span, .. }
            | Expr::Binary { span, .. } => *span,
            Expr::Pvar(p) => p.span,
            Expr::Avp(a) => a.span,
            Expr::Select(s) => s.span,
            Expr::Call(c) => c.span,
        }
    }
}

/// A pseudo-variable, cut but not resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Pvar {
    /// Full text as written, including `$` (`$hdr(X-Foo)`, `$(avp(x)[0])`).
    pub raw: String,
    /// Class name (`rU`, `hdr`, `var`, `sel`, `avp`; for `$(...)` the name inside).
    pub name: String,
    /// Text inside the name's parentheses (`X-Foo` for `$hdr(X-Foo)`), if any.
    pub inner: Option<String>,
    /// Text inside a trailing `[...]` index, if any (`0` for `$(avp(x)[0])`).
    pub index: Option<String>,
    /// Where.
    pub span: Span,
}

/// A SER-style AVP, cut but not resolved.
///
/// `$t.did` → `class: Some("t"), name: "did"`; `$account` → `class: None, name: "account"`;
/// `$avp(i:80)` → `class: None, name: "i:80"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Avp {
    /// Full text as written, including `$`.
    pub raw: String,
    /// Track/class prefix before the dot (`f`, `t`, `fu`, `tu`, `fr`, `tr`, `fd`, `td`, `g`),
    /// if any.
    pub class: Option<String>,
    /// AVP name (`did`, `account`, `i:80`, `s:x`).
    pub name: String,
    /// Index text inside `[...]`, if any.
    pub index: Option<String>,
    /// Where.
    pub span: Span,
}

/// A select, cut but not resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// Full text as written, including `@`.
    pub raw: String,
    /// The dotted path segments with their optional `[...]` parameters.
    pub parts: Vec<SelectPart>,
    /// Where.
    pub span: Span,
}

/// One segment of a select path: `hf_value["x"]` → `name: "hf_value", param: Some(Str("x"))`.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectPart {
    /// Segment name.
    pub name: String,
    /// Bracketed parameter, if any.
    pub param: Option<SelectParam>,
}

/// Bracketed select parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectParam {
    /// `[2]`, `[-1]`
    Int(i64),
    /// `["x"]`
    Str(String),
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `!`, `not`
    Not,
    /// `-` (on a non-literal)
    Neg,
    /// `~`
    BitNot,
    /// `defined x`
    Defined,
    /// `strlen(x)`
    StrLen,
    /// `strempty(x)`
    StrEmpty,
}

/// Binary operators, loosest first: `||`; `&&`; `|`; `&`; `^`; `<< >>`;
/// comparisons; `+ -`; `* / %` (Kamailio's `cfg.y` precedence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `||`, `or`
    Or,
    /// `&&`, `and`
    And,
    /// `|`
    BitOr,
    /// `&`
    BitAnd,
    /// `^`
    BitXor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (right side is a POSIX regex, usually a string)
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
    /// `eq` (compare as strings)
    StrEq,
    /// `ne` (compare as strings)
    StrNe,
    /// `ieq` (compare as integers)
    IntEq,
    /// `ine` (compare as integers)
    IntNe,
    /// `+` (integer add or string concatenation)
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}
