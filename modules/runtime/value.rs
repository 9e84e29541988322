//! Script values: what pvars, AVPs, `$var`s and expressions produce.

use std::borrow::Cow;
use std::fmt;

/// A script value (SER rvalues are int or string; `$null` / unset is `Null`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    /// Unset / `$null`.
    #[default]
    Null,
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
}

impl Value {
    /// String view; ints are printed, null is `""`.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Str(s) => Cow::Borrowed(s),
        }
    }

    /// Int view: strings are parsed as SER does (leading/trailing blanks ignored,
    /// non-numbers are 0), null is 0.
    pub fn as_int(&self) -> i64 {
        match self {
            Value::Null => 0,
            Value::Int(i) => *i,
            Value::Str(s) => s.trim().parse().unwrap_or(0),
        }
    }

    /// Whether the value is null or an empty string (`strempty`).
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Int(_) => false,
            Value::Str(s) => s.is_empty(),
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Truth value in a condition: ints are true when positive (SER: negative is
    /// false), strings when non-empty, null is false.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Int(i) => *i > 0,
            Value::Str(s) => !s.is_empty(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("<null>"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Value::from(" 42 ").as_int(), 42);
        assert_eq!(Value::from("x").as_int(), 0);
        assert_eq!(Value::Int(-3).as_str(), "-3");
        assert!(Value::Null.is_empty() && Value::from("").is_empty());
        assert!(!Value::Int(-1).is_true() && Value::Int(2).is_true());
    }
}
