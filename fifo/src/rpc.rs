//! The transport-neutral RPC API: values, faults, the handler context and the method registry.
//!
//! A method is written once, as an [`RpcHandler`], and served over every transport (binrpc on
//! the ctl sockets, the FIFO, later XML-RPC/JSON-RPC). This is Kamailio's `rpc_t` idea
//! (`core/rpc.h`) with Rust types instead of printf-like format letters: a handler reads its
//! parameters from [`RpcCtx::params`] (or the `scan_*` helpers) and appends reply values with
//! [`RpcCtx::add`]; a fault is the `Err` it returns.

use std::collections::HashMap;
use std::fmt;

/// One RPC value, as carried by every transport.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcValue {
    /// Signed 32-bit integer (binrpc INT).
    Int(i32),
    /// Text (binrpc STR, sent NUL-terminated).
    Str(String),
    /// Number with a fraction. binrpc carries it as fixed point with 3 decimals; 64-bit
    /// counters are sent this way too (see [`RpcValue::long`]).
    Double(f64),
    /// Raw bytes (binrpc BYTES).
    Bytes(Vec<u8>),
    /// Named members, in order (binrpc STRUCT of AVPs; kamcmd prints `name: value`).
    Struct(Vec<(String, RpcValue)>),
    /// Unnamed members. Sent like Kamailio's `rpc->add("[")`: a binrpc STRUCT of bare values.
    Array(Vec<RpcValue>),
    /// No value (sent as an empty BYTES record; kamcmd prints an empty line).
    Null,
}

impl RpcValue {
    /// A struct built from `(name, value)` pairs.
    pub fn structure<N, V, I>(members: I) -> RpcValue
    where
        N: Into<String>,
        V: Into<RpcValue>,
        I: IntoIterator<Item = (N, V)>,
    {
        RpcValue::Struct(
            members
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }

    /// A 64-bit quantity. Kamailio sends `long` values (`l`, `j`, `L`, `J` format letters) as
    /// DOUBLE, so this does the same: `core.shmmem` and friends arrive as fixed-point doubles.
    pub fn long(v: i64) -> RpcValue {
        RpcValue::Double(v as f64)
    }

    /// The text of a `Str` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RpcValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of an `Int` value.
    pub fn as_int(&self) -> Option<i32> {
        match self {
            RpcValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            RpcValue::Int(_) => "int",
            RpcValue::Str(_) => "string",
            RpcValue::Double(_) => "double",
            RpcValue::Bytes(_) => "bytes",
            RpcValue::Struct(_) => "struct",
            RpcValue::Array(_) => "array",
            RpcValue::Null => "null",
        }
    }
}

/// Scalars print like kamcmd prints them; containers print on one line (`{a: 1, b: x}`,
/// `[1, 2]`). Doubles with no fraction print as integers, like kamcmd.
impl fmt::Display for RpcValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcValue::Int(i) => write!(f, "{i}"),
            RpcValue::Str(s) => f.write_str(s),
            RpcValue::Double(d) => fmt_double(*d, f),
            RpcValue::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            RpcValue::Struct(members) => {
                f.write_str("{")?;
                for (i, (n, v)) in members.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{n}: {v}")?;
                }
                f.write_str("}")
            }
            RpcValue::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{v}")?;
                }
                f.write_str("]")
            }
            RpcValue::Null => Ok(()),
        }
    }
}

/// kamcmd's rule: a double with no fraction prints as `%lld`, otherwise as `%f`.
pub(crate) fn fmt_double(d: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if d.is_finite() && d == d.trunc() && d.abs() < 9.2e18 {
        write!(f, "{}", d as i64)
    } else {
        write!(f, "{d:.6}")
    }
}

impl From<i32> for RpcValue {
    fn from(v: i32) -> Self {
        RpcValue::Int(v)
    }
}
impl From<u32> for RpcValue {
    /// Fits an `Int` when it can, else a fixed-point `Double` (as Kamailio does for longs).
    fn from(v: u32) -> Self {
        i32::try_from(v).map_or(RpcValue::Double(v as f64), RpcValue::Int)
    }
}
impl From<u64> for RpcValue {
    fn from(v: u64) -> Self {
        i32::try_from(v).map_or(RpcValue::Double(v as f64), RpcValue::Int)
    }
}
impl From<i64> for RpcValue {
    fn from(v: i64) -> Self {
        i32::try_from(v).map_or(RpcValue::Double(v as f64), RpcValue::Int)
    }
}
impl From<usize> for RpcValue {
    fn from(v: usize) -> Self {
        i32::try_from(v).map_or(RpcValue::Double(v as f64), RpcValue::Int)
    }
}
impl From<f64> for RpcValue {
    fn from(v: f64) -> Self {
        RpcValue::Double(v)
    }
}
impl From<&str> for RpcValue {
    fn from(v: &str) -> Self {
        RpcValue::Str(v.to_owned())
    }
}
impl From<String> for RpcValue {
    fn from(v: String) -> Self {
        RpcValue::Str(v)
    }
}
impl From<Vec<RpcValue>> for RpcValue {
    fn from(v: Vec<RpcValue>) -> Self {
        RpcValue::Array(v)
    }
}

/// An RPC error reply: a numeric code (HTTP-like, as in Kamailio) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFault {
    /// Fault code: 400 bad request/parameters, 500 internal or unknown method, …
    pub code: i32,
    /// Human-readable reason.
    pub message: String,
}

impl RpcFault {
    /// A fault with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcFault {
            code,
            message: message.into(),
        }
    }

    /// 400, for a missing or ill-typed parameter (index from 0 in the message, 1-based).
    pub fn bad_param(index: usize, what: impl fmt::Display) -> Self {
        RpcFault::new(400, format!("Invalid parameter {}: {what}", index + 1))
    }
}

impl fmt::Display for RpcFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.code, self.message)
    }
}

impl std::error::Error for RpcFault {}

/// What a handler sees of one call: its parameters, and where its reply values go.
///
/// Parameter conversion is lenient on purpose, like ctl's `autoconversion`: `kamcmd` sends
/// every numeric-looking argument as INT and the FIFO sends everything as text, so
/// [`scan_str`](RpcCtx::scan_str) accepts numbers and [`scan_int`](RpcCtx::scan_int) accepts
/// numeric strings.
pub trait RpcCtx {
    /// The request's parameters, in order.
    fn params(&self) -> &[RpcValue];

    /// Appends one value to the reply (Kamailio's `rpc->add`). Several calls make several
    /// top-level records (e.g. `core.ps` adds pid, description, pid, description…).
    fn add(&mut self, v: RpcValue);

    /// Parameter `i`, if present.
    fn param(&self, i: usize) -> Option<&RpcValue> {
        self.params().get(i)
    }

    /// Parameter `i` as text (numbers are converted); 400 fault when missing or a container.
    fn scan_str(&self, i: usize) -> Result<String, RpcFault> {
        self.scan_opt_str(i)?
            .ok_or_else(|| RpcFault::bad_param(i, "missing string"))
    }

    /// Parameter `i` as text, `None` when absent.
    fn scan_opt_str(&self, i: usize) -> Result<Option<String>, RpcFault> {
        match self.param(i) {
            None => Ok(None),
            Some(RpcValue::Str(s)) => Ok(Some(s.clone())),
            Some(RpcValue::Int(n)) => Ok(Some(n.to_string())),
            Some(v @ RpcValue::Double(_)) => Ok(Some(v.to_string())),
            Some(RpcValue::Bytes(b)) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected string, got {}", v.type_name()),
            )),
        }
    }

    /// Parameter `i` as an integer (numeric strings are converted); 400 fault otherwise.
    fn scan_int(&self, i: usize) -> Result<i32, RpcFault> {
        self.scan_opt_int(i)?
            .ok_or_else(|| RpcFault::bad_param(i, "missing integer"))
    }

    /// Parameter `i` as an integer, `None` when absent.
    fn scan_opt_int(&self, i: usize) -> Result<Option<i32>, RpcFault> {
        match self.param(i) {
            None => Ok(None),
            Some(RpcValue::Int(n)) => Ok(Some(*n)),
            Some(RpcValue::Double(d)) if d.is_finite() && d.abs() < 2.2e9 => Ok(Some(*d as i32)),
            Some(RpcValue::Str(s)) => s
                .trim()
                .parse::<i32>()
                .map(Some)
                .map_err(|_| RpcFault::bad_param(i, format!("expected integer, got {s:?}"))),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected integer, got {}", v.type_name()),
            )),
        }
    }

    /// Parameter `i` as a double (ints and numeric strings are converted).
    fn scan_double(&self, i: usize) -> Result<f64, RpcFault> {
        match self.param(i) {
            None => Err(RpcFault::bad_param(i, "missing number")),
            Some(RpcValue::Double(d)) => Ok(*d),
            Some(RpcValue::Int(n)) => Ok(f64::from(*n)),
            Some(RpcValue::Str(s)) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| RpcFault::bad_param(i, format!("expected number, got {s:?}"))),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected number, got {}", v.type_name()),
            )),
        }
    }
}

/// An RPC method implementation. A boxed closure so that a method can capture shared state
/// (a shm table handle, a counter); plain `fn` items work too. Not `Send`: the registry is
/// built before the fork and each process owns its copy.
pub type RpcHandler = Box<dyn Fn(&mut dyn RpcCtx) -> Result<(), RpcFault>>;

/// The `system.*` methods need the registry itself, so they are dispatched by name.
enum Handler {
    User(RpcHandler),
    ListMethods,
    MethodHelp,
    MethodSignature,
}

/// One registered method.
pub struct RpcMethod {
    /// Its name, e.g. `core.uptime`.
    pub name: &'static str,
    /// Its documentation: `doc[0]` is what `system.methodHelp` returns.
    pub doc: &'static [&'static str],
    handler: Handler,
}

impl fmt::Debug for RpcMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcMethod")
            .field("name", &self.name)
            .field("doc", &self.doc)
            .finish()
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// A method of that name is already registered.
    Duplicate {
        /// The method name.
        name: &'static str,
    },
    /// The name is empty or contains whitespace/control characters.
    InvalidName {
        /// The method name.
        name: &'static str,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Duplicate { name } => write!(f, "duplicate RPC method {name}"),
            RegistryError::InvalidName { name } => write!(f, "invalid RPC method name {name:?}"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// All RPC methods of this process, by name, in registration order.
pub struct RpcRegistry {
    methods: Vec<RpcMethod>,
    by_name: HashMap<&'static str, usize>,
}

impl Default for RpcRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RpcRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.methods.iter().map(|m| m.name))
            .finish()
    }
}

const LIST_METHODS_DOC: &[&str] = &["Lists all RPC methods supported by the server."];
const METHOD_HELP_DOC: &[&str] = &["Print the help string for given method."];
const METHOD_SIGNATURE_DOC: &[&str] = &["Returns signature of given method."];

impl RpcRegistry {
    /// A registry holding only the built-ins `system.listMethods`, `system.methodHelp` and
    /// `system.methodSignature`.
    pub fn new() -> Self {
        let mut r = RpcRegistry {
            methods: Vec::new(),
            by_name: HashMap::new(),
        };
        r.insert("system.listMethods", LIST_METHODS_DOC, Handler::ListMethods);
        r.insert("system.methodHelp", METHOD_HELP_DOC, Handler::MethodHelp);
        r.insert(
            "system.methodSignature",
            METHOD_SIGNATURE_DOC,
            Handler::MethodSignature,
        );
        r
    }

    fn insert(&mut self, name: &'static str, doc: &'static [&'static str], handler: Handler) {
        self.by_name.insert(name, self.methods.len());
        self.methods.push(RpcMethod { name, doc, handler });
    }

    /// Registers `handler` as method `name` with documentation `doc` (`doc[0]` is the help
    /// text). Names are unique; a duplicate is refused, as Kamailio's `rpc_register` does.
    pub fn register<F>(
        &mut self,
        name: &'static str,
        doc: &'static [&'static str],
        handler: F,
    ) -> Result<(), RegistryError>
    where
        F: Fn(&mut dyn RpcCtx) -> Result<(), RpcFault> + 'static,
    {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RegistryError::InvalidName { name });
        }
        if self.by_name.contains_key(name) {
            return Err(RegistryError::Duplicate { name });
        }
        self.insert(name, doc, Handler::User(Box::new(handler)));
        Ok(())
    }

    /// The method called `name`.
    pub fn lookup(&self, name: &str) -> Option<&RpcMethod> {
        self.by_name.get(name).map(|&i| &self.methods[i])
    }

    /// All method names, in registration order (built-ins first).
    pub fn list(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.methods.iter().map(|m| m.name)
    }

    /// Runs method `name` with `ctx`. Unknown methods fault with 500
    /// `command <name> not found`, as Kamailio's ctl does.
    pub fn dispatch(&self, name: &str, ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
        let method = self
            .lookup(name)
            .ok_or_else(|| RpcFault::new(500, format!("command {name} not found")))?;
        match &method.handler {
            Handler::User(h) => h(ctx),
            Handler::ListMethods => {
                for n in self.list() {
                    ctx.add(RpcValue::from(n));
                }
                Ok(())
            }
            Handler::MethodHelp => {
                // Kamailio answers both a missing name and an unknown one with 400.
                let target = ctx
                    .scan_str(0)
                    .map_err(|_| RpcFault::new(400, "Method Name Expected"))?;
                let m = self
                    .lookup(&target)
                    .ok_or_else(|| RpcFault::new(400, "command not found"))?;
                match m.doc.first() {
                    Some(d) => ctx.add(RpcValue::from(*d)),
                    None => ctx.add(RpcValue::from("undocumented")),
                }
                Ok(())
            }
            // Kamailio's core answers this with a fault too.
            Handler::MethodSignature => Err(RpcFault::new(500, "Not Implemented Yet")),
        }
    }

    /// Runs method `name` on `params` and returns the reply values (a convenience over
    /// [`dispatch`](Self::dispatch) with a [`CallCtx`]).
    pub fn call(&self, name: &str, params: Vec<RpcValue>) -> Result<Vec<RpcValue>, RpcFault> {
        let mut ctx = CallCtx::new(params);
        self.dispatch(name, &mut ctx)?;
        Ok(ctx.into_reply())
    }
}

/// The plain [`RpcCtx`]: parameters in, reply values collected in a `Vec`. Every transport
/// in this crate uses it; the transport encodes the collected values afterwards.
#[derive(Debug, Default)]
pub struct CallCtx {
    params: Vec<RpcValue>,
    reply: Vec<RpcValue>,
}

impl CallCtx {
    /// A context for a call with `params`.
    pub fn new(params: Vec<RpcValue>) -> Self {
        CallCtx {
            params,
            reply: Vec::new(),
        }
    }

    /// The values the handler added.
    pub fn into_reply(self) -> Vec<RpcValue> {
        self.reply
    }
}

impl RpcCtx for CallCtx {
    fn params(&self) -> &[RpcValue] {
        &self.params
    }
    fn add(&mut self, v: RpcValue) {
        self.reply.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> RpcRegistry {
        let mut r = RpcRegistry::new();
        r.register("test.echo", &["Echoes its parameters."], |ctx| {
            for p in ctx.params().to_vec() {
                ctx.add(p);
            }
            Ok(())
        })
        .unwrap();
        r
    }

    #[test]
    fn builtins_and_registration() {
        let mut r = registry();
        let names: Vec<_> = r.list().collect();
        assert_eq!(
            names,
            [
                "system.listMethods",
                "system.methodHelp",
                "system.methodSignature",
                "test.echo"
            ]
        );
        assert_eq!(
            r.register("test.echo", &[], |_| Ok(())),
            Err(RegistryError::Duplicate { name: "test.echo" })
        );
        assert!(r.register("bad name", &[], |_| Ok(())).is_err());
        let help = r
            .call("system.methodHelp", vec!["test.echo".into()])
            .unwrap();
        assert_eq!(help, vec![RpcValue::from("Echoes its parameters.")]);
        assert_eq!(
            r.call("system.methodHelp", vec!["foo.bar".into()])
                .unwrap_err(),
            RpcFault::new(400, "command not found")
        );
        assert_eq!(
            r.call("system.methodHelp", vec![]).unwrap_err(),
            RpcFault::new(400, "Method Name Expected")
        );
        let listed = r.call("system.listMethods", vec![]).unwrap();
        assert_eq!(listed.len(), 4);
        assert_eq!(
            r.call("system.methodSignature", vec![]).unwrap_err().code,
            500
        );
    }

    #[test]
    fn unknown_method_faults_like_kamailio() {
        let f = registry().call("foo.bar", vec![]).unwrap_err();
        assert_eq!(f, RpcFault::new(500, "command foo.bar not found"));
    }

    #[test]
    fn closures_capture_state() {
        use std::cell::Cell;
        use std::rc::Rc;
        let hits = Rc::new(Cell::new(0));
        let mut r = RpcRegistry::new();
        let h = hits.clone();
        r.register("test.hit", &["counts"], move |ctx| {
            h.set(h.get() + 1);
            ctx.add(RpcValue::Int(h.get()));
            Ok(())
        })
        .unwrap();
        assert_eq!(r.call("test.hit", vec![]).unwrap(), vec![RpcValue::Int(1)]);
        assert_eq!(hits.get(), 1);
    }

    #[test]
    fn scanning_is_lenient_between_text_and_numbers() {
        let ctx = CallCtx::new(vec![
            RpcValue::Int(7),
            RpcValue::from(" 42 "),
            RpcValue::from("x"),
            RpcValue::Struct(vec![]),
        ]);
        assert_eq!(ctx.scan_str(0).unwrap(), "7");
        assert_eq!(ctx.scan_int(1).unwrap(), 42);
        assert_eq!(ctx.scan_int(2).unwrap_err().code, 400);
        assert_eq!(ctx.scan_str(3).unwrap_err().code, 400);
        assert_eq!(ctx.scan_opt_int(9).unwrap(), None);
        assert_eq!(ctx.scan_int(9).unwrap_err().code, 400);
        assert_eq!(ctx.scan_double(0).unwrap(), 7.0);
    }

    #[test]
    fn display_follows_kamcmd_for_doubles() {
        assert_eq!(RpcValue::Double(3.0).to_string(), "3");
        assert_eq!(RpcValue::Double(1.5).to_string(), "1.500000");
        let s = RpcValue::structure([("a", RpcValue::Int(1)), ("b", RpcValue::from("x"))]);
        assert_eq!(s.to_string(), "{a: 1, b: x}");
        assert_eq!(RpcValue::from(u64::MAX), RpcValue::Double(u64::MAX as f64));
    }
}
