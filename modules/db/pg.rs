//! The PostgreSQL driver (`postgres://user:pass@host[:port]/db`), via the
//! blocking `postgres` crate.  Replaces Kamailio's `db_postgres`.  Opened
//! lazily in the process that uses it (after fork).
//!
//! Values cross the wire in binary form, converted to whatever type the
//! server infers for the parameter or reports for the column, so one
//! [`DbValue`] fits INTEGER, VARCHAR, REAL and TIMESTAMP columns alike.

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls};

use super::{DbError, DbValue, Dialect, Driver};

/// One PostgreSQL connection.
pub struct Pg {
    client: Client,
}

impl Pg {
    /// Connect to `url` (a libpq-style URL).
    pub fn open(url: &str) -> Result<Pg, DbError> {
        let client = Client::connect(url, NoTls).map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(Pg { client })
    }
}

/// Seconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH: i64 = 946_684_800;

type BoxErr = Box<dyn Error + Sync + Send>;

#[derive(Debug)]
struct Param<'a>(&'a DbValue);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        let v = self.0;
        if v.is_null() {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::INT2 => (v.as_int() as i16).to_sql(ty, out),
            Type::INT4 => (v.as_int() as i32).to_sql(ty, out),
            Type::INT8 => v.as_int().to_sql(ty, out),
            Type::FLOAT4 => (v.as_f64() as f32).to_sql(ty, out),
            Type::FLOAT8 => v.as_f64().to_sql(ty, out),
            Type::BOOL => (v.as_int() != 0).to_sql(ty, out),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                ((v.as_datetime() - PG_EPOCH) * 1_000_000).to_sql(&Type::INT8, out)
            }
            _ => v.as_str().to_sql(&Type::TEXT, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

struct Cell(DbValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxErr> {
        Ok(Cell(match *ty {
            Type::INT2 => DbValue::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => DbValue::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => DbValue::Int(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => DbValue::Double(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => DbValue::Double(f64::from_sql(ty, raw)?),
            Type::BOOL => DbValue::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                DbValue::DateTime(i64::from_sql(&Type::INT8, raw)?.div_euclid(1_000_000) + PG_EPOCH)
            }
            _ => DbValue::Str(String::from_utf8_lossy(raw).into_owned()),
        }))
    }

    fn from_sql_null(_ty: &Type) -> Result<Cell, BoxErr> {
        Ok(Cell(DbValue::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn qerr(e: postgres::Error) -> DbError {
    if e.is_closed() {
        DbError::Connect(e.to_string())
    } else {
        DbError::Query(e.to_string())
    }
}

impl Driver for Pg {
    fn select(&mut self, sql: &str, params: &[DbValue]) -> Result<Vec<Vec<DbValue>>, DbError> {
        let ps: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(sql, &refs).map_err(qerr)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                row.push(r.try_get::<_, Cell>(i).map_err(qerr)?.0);
            }
            out.push(row);
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[DbValue]) -> Result<usize, DbError> {
        let ps: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(sql, &refs)
            .map(|n| n as usize)
            .map_err(qerr)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.batch_execute(sql).map_err(qerr)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Dollar
    }
}
