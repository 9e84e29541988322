//! The embedded SQLite driver (`sqlite:///abs/path.db`), via rusqlite
//! (bundled SQLite).  Replaces Kamailio's `db_sqlite`.

use rusqlite::types::{Value as SqlValue, ValueRef};

use super::{DbError, DbValue, Dialect, Driver};

/// One SQLite database file.
pub struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// Open (creating) the file; `path` is what follows `sqlite://`.
    pub fn open(path: &str) -> Result<Sqlite, DbError> {
        if !path.starts_with('/') {
            return Err(DbError::BadUrl(format!(
                "sqlite://{path} (the path must be absolute: sqlite:///dir/file.db)"
            )));
        }
        let conn = rusqlite::Connection::open(path)
            .map_err(|e| DbError::Connect(format!("{path}: {e}")))?;
        // Several processes write the same file: wait for the lock instead of failing.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(Sqlite { conn })
    }
}

fn to_sql(v: &DbValue) -> SqlValue {
    match v {
        DbValue::Null => SqlValue::Null,
        DbValue::Int(i) => SqlValue::Integer(*i),
        DbValue::Double(d) => SqlValue::Real(*d),
        DbValue::Str(s) => SqlValue::Text(s.clone()),
        DbValue::DateTime(t) => SqlValue::Text(super::format_datetime(*t)),
    }
}

fn from_sql(v: ValueRef<'_>) -> DbValue {
    match v {
        ValueRef::Null => DbValue::Null,
        ValueRef::Integer(i) => DbValue::Int(i),
        ValueRef::Real(d) => DbValue::Double(d),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            DbValue::Str(String::from_utf8_lossy(t).into_owned())
        }
    }
}

fn qerr(e: rusqlite::Error) -> DbError {
    DbError::Query(e.to_string())
}

impl Driver for Sqlite {
    fn select(&mut self, sql: &str, params: &[DbValue]) -> Result<Vec<Vec<DbValue>>, DbError> {
        let mut st = self.conn.prepare_cached(sql).map_err(qerr)?;
        let n = st.column_count();
        let vals: Vec<SqlValue> = params.iter().map(to_sql).collect();
        let mut rows = st
            .query(rusqlite::params_from_iter(vals.iter()))
            .map_err(qerr)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(qerr)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(from_sql(r.get_ref(i).map_err(qerr)?));
            }
            out.push(row);
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[DbValue]) -> Result<usize, DbError> {
        let mut st = self.conn.prepare_cached(sql).map_err(qerr)?;
        let vals: Vec<SqlValue> = params.iter().map(to_sql).collect();
        st.execute(rusqlite::params_from_iter(vals.iter()))
            .map_err(qerr)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(qerr)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Numbered
    }
}
