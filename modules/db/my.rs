//! The MySQL driver (`mysql://user:pass@host[:port]/db`), via the blocking
//! `mysql` crate without TLS (cargo feature `mysql`, on by default).
//! Replaces Kamailio's `db_mysql`.  Opened lazily in the process that uses
//! it (after fork).

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, Params, Value};

use super::{DbError, DbValue, Dialect, Driver};

/// One MySQL connection.
pub struct My {
    conn: Conn,
}

impl My {
    /// Connect to `url`.
    pub fn open(url: &str) -> Result<My, DbError> {
        let opts = Opts::from_url(url)
            .map_err(|e| DbError::BadUrl(format!("{}: {e}", super::redact(url))))?;
        let conn = Conn::new(opts).map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(My { conn })
    }
}

fn to_my(v: &DbValue) -> Value {
    match v {
        DbValue::Null => Value::NULL,
        DbValue::Int(i) => Value::Int(*i),
        DbValue::Double(d) => Value::Double(*d),
        DbValue::Str(s) => Value::Bytes(s.clone().into_bytes()),
        DbValue::DateTime(t) => Value::Bytes(super::format_datetime(*t).into_bytes()),
    }
}

fn from_my(v: Value) -> DbValue {
    match v {
        Value::NULL => DbValue::Null,
        Value::Int(i) => DbValue::Int(i),
        Value::UInt(u) => DbValue::Int(i64::try_from(u).unwrap_or(i64::MAX)),
        Value::Float(f) => DbValue::Double(f64::from(f)),
        Value::Double(d) => DbValue::Double(d),
        Value::Bytes(b) => DbValue::Str(String::from_utf8_lossy(&b).into_owned()),
        Value::Date(y, mo, d, h, mi, s, _) => {
            DbValue::Str(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
        }
        Value::Time(..) => DbValue::Null,
    }
}

fn params(p: &[DbValue]) -> Params {
    if p.is_empty() {
        Params::Empty
    } else {
        Params::Positional(p.iter().map(to_my).collect())
    }
}

fn qerr(e: mysql::Error) -> DbError {
    match e {
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => DbError::Connect(e.to_string()),
        other => DbError::Query(other.to_string()),
    }
}

impl Driver for My {
    fn select(&mut self, sql: &str, p: &[DbValue]) -> Result<Vec<Vec<DbValue>>, DbError> {
        let rows: Vec<mysql::Row> = self.conn.exec(sql, params(p)).map_err(qerr)?;
        Ok(rows
            .into_iter()
            .map(|r| r.unwrap().into_iter().map(from_my).collect())
            .collect())
    }

    fn execute(&mut self, sql: &str, p: &[DbValue]) -> Result<usize, DbError> {
        self.conn.exec_drop(sql, params(p)).map_err(qerr)?;
        Ok(usize::try_from(self.conn.affected_rows()).unwrap_or(usize::MAX))
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.query_drop(sql).map_err(qerr)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Question
    }
}
