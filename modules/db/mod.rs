//! The generic database API the modules use (replaces SER's `lib/srdb1`
//! `db_func_t` + the `db_sqlite` / `db_postgres` / `db_mysql` drivers).
//!
//! A module names its database by `db_url`; the driver is chosen by the
//! scheme: `sqlite:///abs/path.db` (embedded, always built),
//! `postgres://user:pass@host/db` (cargo feature `postgres`, on by default),
//! `mysql://user:pass@host/db` (cargo feature `mysql`, on by default; without
//! it a clear "driver not built" error).
//!
//! Connections are per process and opened on first use ([`with`]), i.e. in
//! a child after fork, never shared across a fork.  A failed statement that
//! looks like a broken connection drops it, so the next use reconnects.
//! Statements are built from checked identifiers (config-given table and
//! column names) and bound values; nothing from a message is spliced in.

pub mod drivers;
mod sqlite;

#[cfg(feature = "postgres")]
mod pg;

#[cfg(feature = "mysql")]
mod my;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// A typed column value.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    /// SQL NULL.
    Null,
    /// Integer.
    Int(i64),
    /// Floating point (usrloc `q`).
    Double(f64),
    /// Text.
    Str(String),
    /// Date and time as Unix seconds (stored as `YYYY-MM-DD HH:MM:SS` UTC).
    DateTime(i64),
}

impl DbValue {
    /// As text (`""` for NULL; numbers printed).
    pub fn as_str(&self) -> String {
        match self {
            DbValue::Null => String::new(),
            DbValue::Int(i) => i.to_string(),
            DbValue::Double(d) => d.to_string(),
            DbValue::Str(s) => s.clone(),
            DbValue::DateTime(t) => format_datetime(*t),
        }
    }

    /// As an integer (text parsed; 0 when not a number).
    pub fn as_int(&self) -> i64 {
        match self {
            DbValue::Null => 0,
            DbValue::Int(i) => *i,
            DbValue::Double(d) => *d as i64,
            DbValue::Str(s) => s.trim().parse().unwrap_or(0),
            DbValue::DateTime(t) => *t,
        }
    }

    /// As a float.
    pub fn as_f64(&self) -> f64 {
        match self {
            DbValue::Double(d) => *d,
            DbValue::Str(s) => s.trim().parse().unwrap_or(0.0),
            other => other.as_int() as f64,
        }
    }

    /// As Unix seconds: a DATETIME column read back as text is parsed.
    pub fn as_datetime(&self) -> i64 {
        match self {
            DbValue::Str(s) => parse_datetime(s).unwrap_or(0),
            other => other.as_int(),
        }
    }

    /// Whether NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, DbValue::Null)
    }
}

/// Why a database operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbError {
    /// The URL is malformed or names a scheme we do not know.
    BadUrl(String),
    /// The driver for this scheme is not part of this build.
    NotBuilt(&'static str),
    /// Cannot connect (server down, file not writable).
    Connect(String),
    /// The statement failed (SQL error, lost connection).
    Query(String),
    /// A table or column name that is not a plain identifier.
    BadIdentifier(String),
    /// The `version` table says the table has another schema version.
    Version {
        /// Table checked.
        table: String,
        /// Version we need.
        expected: i64,
        /// Version found (None: no row).
        found: Option<i64>,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::BadUrl(u) => write!(f, "bad db_url `{u}`"),
            DbError::NotBuilt(d) => write!(f, "database driver `{d}` is not built into this ser"),
            DbError::Connect(e) => write!(f, "cannot connect to the database: {e}"),
            DbError::Query(e) => write!(f, "database query failed: {e}"),
            DbError::BadIdentifier(i) => write!(f, "`{i}` is not a valid table/column name"),
            DbError::Version {
                table,
                expected,
                found: Some(v),
            } => {
                write!(
                    f,
                    "table `{table}` has version {v}, expected {expected} (upgrade the schema)"
                )
            }
            DbError::Version {
                table,
                expected,
                found: None,
            } => {
                write!(
                    f,
                    "table `{table}` has no row in table `version` (expected version {expected})"
                )
            }
        }
    }
}

impl std::error::Error for DbError {}

/// A `col = value` condition (all conditions are ANDed).
pub type Cond<'a> = (&'a str, DbValue);

/// What a driver does; statements are built by [`Sql`] for its dialect.
pub trait Driver: Send {
    /// Run a statement that returns rows.
    fn select(&mut self, sql: &str, params: &[DbValue]) -> Result<Vec<Vec<DbValue>>, DbError>;
    /// Run a statement that changes rows; returns the number affected.
    fn execute(&mut self, sql: &str, params: &[DbValue]) -> Result<usize, DbError>;
    /// Run several `;`-separated statements without parameters (schema scripts).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// Placeholder style.
    fn dialect(&self) -> Dialect;
}

/// SQL placeholder style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?1`, `?2` (SQLite).
    Numbered,
    /// `$1`, `$2` (PostgreSQL).
    Dollar,
    /// `?` (MySQL).
    Question,
}

impl Dialect {
    /// The `n`th (1-based) parameter placeholder.
    pub fn ph(self, n: usize) -> String {
        match self {
            Dialect::Numbered => format!("?{n}"),
            Dialect::Dollar => format!("${n}"),
            Dialect::Question => "?".to_owned(),
        }
    }
}

/// Checks a config-given identifier (table or column name).
pub fn ident(s: &str) -> Result<&str, DbError> {
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(s)
    } else {
        Err(DbError::BadIdentifier(s.to_owned()))
    }
}

/// Statement builder for one dialect.
pub struct Sql(pub Dialect);

impl Sql {
    fn params(conds: &[Cond<'_>]) -> Vec<DbValue> {
        conds
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `SELECT cols FROM table WHERE conds [ORDER BY order]`.
    pub fn select(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order: Option<&str>,
    ) -> Result<String, DbError> {
        let cols: Vec<&str> = cols.iter().map(|c| ident(c)).collect::<Result<_, _>>()?;
        let mut sql = format!(
            "SELECT {} FROM {}{}",
            cols.join(","),
            ident(table)?,
            self.where_numbered(conds)?
        );
        if let Some(o) = order {
            sql.push_str(&format!(" ORDER BY {}", ident(o)?));
        }
        Ok(sql)
    }

    // Placeholders numbered over the non-NULL conditions only.
    fn where_numbered(&self, conds: &[Cond<'_>]) -> Result<String, DbError> {
        if conds.is_empty() {
            return Ok(String::new());
        }
        let mut parts = Vec::new();
        let mut n = 0;
        for (c, v) in conds {
            if v.is_null() {
                parts.push(format!("{} IS NULL", ident(c)?));
            } else {
                n += 1;
                parts.push(format!("{}={}", ident(c)?, self.0.ph(n)));
            }
        }
        Ok(format!(" WHERE {}", parts.join(" AND ")))
    }

    /// `INSERT INTO table (cols) VALUES (...)`.
    pub fn insert(&self, table: &str, vals: &[Cond<'_>]) -> Result<String, DbError> {
        let cols: Vec<&str> = vals
            .iter()
            .map(|(c, _)| ident(c))
            .collect::<Result<_, _>>()?;
        let phs: Vec<String> = (1..=vals.len()).map(|i| self.0.ph(i)).collect();
        Ok(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            ident(table)?,
            cols.join(","),
            phs.join(",")
        ))
    }

    /// `UPDATE table SET ... WHERE ...` (params: set values then non-NULL conds).
    pub fn update(
        &self,
        table: &str,
        set: &[Cond<'_>],
        conds: &[Cond<'_>],
    ) -> Result<String, DbError> {
        let sets: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(i, (c, _))| Ok(format!("{}={}", ident(c)?, self.0.ph(i + 1))))
            .collect::<Result<_, DbError>>()?;
        let mut w = String::new();
        let mut n = set.len();
        let mut parts = Vec::new();
        for (c, v) in conds {
            if v.is_null() {
                parts.push(format!("{} IS NULL", ident(c)?));
            } else {
                n += 1;
                parts.push(format!("{}={}", ident(c)?, self.0.ph(n)));
            }
        }
        if !parts.is_empty() {
            w = format!(" WHERE {}", parts.join(" AND "));
        }
        Ok(format!(
            "UPDATE {} SET {}{}",
            ident(table)?,
            sets.join(","),
            w
        ))
    }

    /// `DELETE FROM table WHERE ...`.
    pub fn delete(&self, table: &str, conds: &[Cond<'_>]) -> Result<String, DbError> {
        Ok(format!(
            "DELETE FROM {}{}",
            ident(table)?,
            self.where_numbered(conds)?
        ))
    }
}

/// A connection of this process to one database.
pub struct Conn {
    drv: Box<dyn Driver>,
}

impl Conn {
    /// Open a connection for `url`.
    pub fn open(url: &str) -> Result<Conn, DbError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| DbError::BadUrl(url.to_owned()))?;
        let drv: Box<dyn Driver> = match scheme {
            "sqlite" => Box::new(sqlite::Sqlite::open(rest)?),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Box::new(pg::Pg::open(url)?),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => return Err(DbError::NotBuilt("postgres")),
            #[cfg(feature = "mysql")]
            "mysql" => Box::new(my::My::open(url)?),
            #[cfg(not(feature = "mysql"))]
            "mysql" => return Err(DbError::NotBuilt("mysql")),
            _ => return Err(DbError::BadUrl(url.to_owned())),
        };
        Ok(Conn { drv })
    }

    /// The connection's placeholder style.
    pub fn dialect(&self) -> Dialect {
        self.drv.dialect()
    }

    fn sql(&self) -> Sql {
        Sql(self.drv.dialect())
    }

    /// `SELECT cols FROM table WHERE conds`.
    pub fn query(
        &mut self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order: Option<&str>,
    ) -> Result<Vec<Vec<DbValue>>, DbError> {
        let sql = self.sql().select(table, cols, conds, order)?;
        self.drv.select(&sql, &Sql::params(conds))
    }

    /// Insert one row.
    pub fn insert(&mut self, table: &str, vals: &[Cond<'_>]) -> Result<(), DbError> {
        let sql = self.sql().insert(table, vals)?;
        let params: Vec<DbValue> = vals.iter().map(|(_, v)| v.clone()).collect();
        self.drv.execute(&sql, &params).map(|_| ())
    }

    /// Update rows; returns how many.
    pub fn update(
        &mut self,
        table: &str,
        conds: &[Cond<'_>],
        set: &[Cond<'_>],
    ) -> Result<usize, DbError> {
        let sql = self.sql().update(table, set, conds)?;
        let mut params: Vec<DbValue> = set.iter().map(|(_, v)| v.clone()).collect();
        params.extend(Sql::params(conds));
        self.drv.execute(&sql, &params)
    }

    /// Delete rows; returns how many.
    pub fn delete(&mut self, table: &str, conds: &[Cond<'_>]) -> Result<usize, DbError> {
        let sql = self.sql().delete(table, conds)?;
        self.drv.execute(&sql, &Sql::params(conds))
    }

    /// Replace the row(s) matching `keys` by one row `keys + vals`.
    pub fn replace(
        &mut self,
        table: &str,
        keys: &[Cond<'_>],
        vals: &[Cond<'_>],
    ) -> Result<(), DbError> {
        self.delete(table, keys)?;
        let mut all = keys.to_vec();
        all.extend_from_slice(vals);
        self.insert(table, &all)
    }

    /// Run a raw statement with bound parameters (rows discarded).
    pub fn execute_raw(&mut self, sql: &str, params: &[DbValue]) -> Result<usize, DbError> {
        self.drv.execute(sql, params)
    }

    /// Run a schema script.
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.drv.batch(sql)
    }

    /// Run `f` in a transaction: committed if it succeeds, rolled back if
    /// not (several processes rewriting one AOR never interleave).
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let begin = match self.dialect() {
            // Take the write lock at once: no lock upgrade, no deadlock.
            Dialect::Numbered => "BEGIN IMMEDIATE",
            Dialect::Dollar => "BEGIN",
            Dialect::Question => "START TRANSACTION",
        };
        self.drv.batch(begin)?;
        match f(self) {
            Ok(v) => {
                self.drv.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.drv.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Check `version.table_version` for `table` (Kamailio's schema check).
    pub fn check_version(&mut self, table: &str, expected: i64) -> Result<(), DbError> {
        self.check_version_in(table, expected..=expected)
    }

    /// Check that `table`'s schema version is one of `ok` (older versions
    /// with the same columns we use are accepted).
    pub fn check_version_in(
        &mut self,
        table: &str,
        ok: std::ops::RangeInclusive<i64>,
    ) -> Result<(), DbError> {
        let rows = self.query(
            "version",
            &["table_version"],
            &[("table_name", DbValue::Str(table.to_owned()))],
            None,
        )?;
        let found = rows.first().and_then(|r| r.first()).map(DbValue::as_int);
        match found {
            Some(v) if ok.contains(&v) => Ok(()),
            _ => Err(DbError::Version {
                table: table.to_owned(),
                expected: *ok.end(),
                found,
            }),
        }
    }
}

/// This process's open connections, by URL.  After fork each process has
/// its own copy of the map; a child inherits none open because connections
/// are opened lazily (and the start-up loader closes its own with [`close_all`]).
static POOL: Mutex<Option<HashMap<String, Conn>>> = Mutex::new(None);

/// Run `f` on this process's connection for `url`, opening it if needed.
/// A connection whose statement failed is dropped (reconnect on next use).
pub fn with<T>(url: &str, f: impl FnOnce(&mut Conn) -> Result<T, DbError>) -> Result<T, DbError> {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let map = pool.get_or_insert_with(HashMap::new);
    if !map.contains_key(url) {
        let c = Conn::open(url)?;
        map.insert(url.to_owned(), c);
    }
    // infallible: inserted just above when missing.
    let conn = map.get_mut(url).expect("connection present");
    let res = f(conn);
    if let Err(e) = &res {
        if matches!(e, DbError::Query(_) | DbError::Connect(_)) {
            log::warn!(
                "db: {e}; the connection to {} will be reopened",
                redact(url)
            );
            map.remove(url);
        }
    }
    res
}

/// Close every connection of this process (before forking).
pub fn close_all() {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    *pool = None;
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@') {
            Some((cred, host)) => {
                let user = cred.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn format_datetime(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix seconds of `YYYY-MM-DD HH:MM:SS` (UTC; a `T` separator and a
/// fraction or `+00` suffix are accepted).
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut dp = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, d) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let time = time.split(['.', '+']).next()?;
    let mut tp = time.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (
        tp.next()?.ok()?,
        tp.next()?.ok()?,
        tp.next().unwrap_or(Ok(0)).ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The schema script for a driver (`sqlite`, `postgres`, `mysql`), as shipped in `etc/db/`.
pub fn schema(driver: &str) -> Option<&'static str> {
    match driver {
        "sqlite" => Some(include_str!("../../etc/db/sqlite.sql")),
        "postgres" => Some(include_str!("../../etc/db/postgres.sql")),
        "mysql" => Some(include_str!("../../etc/db/mysql.sql")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(1_900_000_000), "2030-03-17 17:46:40");
        for t in [0, 86_399, 951_782_400, 1_900_000_000, 4_102_444_800] {
            assert_eq!(parse_datetime(&format_datetime(t)), Some(t));
        }
        assert_eq!(
            parse_datetime("2030-05-28T21:32:15.5+00"),
            parse_datetime("2030-05-28 21:32:15")
        );
        assert_eq!(parse_datetime("garbage"), None);
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(ident("location").is_ok());
        assert!(ident("x; DROP TABLE y").is_err());
        assert!(ident("").is_err());
    }

    #[test]
    fn statements() {
        let s = Sql(Dialect::Dollar);
        assert_eq!(
            s.select(
                "subscriber",
                &["ha1"],
                &[
                    ("username", DbValue::Str("a".into())),
                    ("domain", DbValue::Null)
                ],
                None
            )
            .unwrap(),
            "SELECT ha1 FROM subscriber WHERE username=$1 AND domain IS NULL"
        );
        assert_eq!(
            s.update("t", &[("a", DbValue::Int(1))], &[("b", DbValue::Int(2))])
                .unwrap(),
            "UPDATE t SET a=$1 WHERE b=$2"
        );
        assert_eq!(
            Sql(Dialect::Numbered)
                .insert("t", &[("a", DbValue::Int(1)), ("b", DbValue::Null)])
                .unwrap(),
            "INSERT INTO t (a,b) VALUES (?1,?2)"
        );
    }

    #[test]
    fn sqlite_round_trip_and_version() {
        let dir = std::env::temp_dir().join(format!("ser-db-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let url = format!("sqlite://{}/t.db", dir.display());
        let _ = std::fs::remove_file(dir.join("t.db"));
        with(&url, |c| c.batch(schema("sqlite").unwrap())).unwrap();
        with(&url, |c| {
            c.check_version("subscriber", 7)?;
            c.check_version("location", 9)?;
            assert!(c.check_version("location", 8).is_err());
            c.check_version_in("location", 6..=9)?;
            assert!(c.check_version_in("nosuch", 1..=9).is_err());
            c.insert(
                "subscriber",
                &[
                    ("username", DbValue::Str("alice".into())),
                    ("domain", DbValue::Str("d".into())),
                    ("password", DbValue::Str("pw".into())),
                ],
            )?;
            let rows = c.query(
                "subscriber",
                &["password", "ha1"],
                &[("username", DbValue::Str("alice".into()))],
                None,
            )?;
            assert_eq!(
                rows,
                vec![vec![DbValue::Str("pw".into()), DbValue::Str(String::new())]]
            );
            assert_eq!(
                c.update(
                    "subscriber",
                    &[("username", DbValue::Str("alice".into()))],
                    &[("ha1", DbValue::Str("h".into()))]
                )?,
                1
            );
            assert_eq!(
                c.delete("subscriber", &[("username", DbValue::Str("alice".into()))])?,
                1
            );
            // A failed transaction leaves nothing behind.
            let r: Result<(), DbError> = c.transaction(|c| {
                c.insert("subscriber", &[("username", DbValue::Str("tx".into()))])?;
                Err(DbError::Query("abort".into()))
            });
            assert!(r.is_err());
            assert!(c.query("subscriber", &["username"], &[], None)?.is_empty());
            c.transaction(|c| c.insert("subscriber", &[("username", DbValue::Str("tx".into()))]))?;
            assert_eq!(c.query("subscriber", &["username"], &[], None)?.len(), 1);
            Ok(())
        })
        .unwrap();
        #[cfg(not(feature = "mysql"))]
        assert!(matches!(
            Conn::open("mysql://u:p@h/db"),
            Err(DbError::NotBuilt("mysql"))
        ));
        assert!(matches!(Conn::open("nonsense"), Err(DbError::BadUrl(_))));
        assert_eq!(
            redact("postgres://ser:secret@localhost/ser"),
            "postgres://ser:***@localhost/ser"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
