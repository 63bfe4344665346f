//! One connection type over the two databases a registry can live in: an SQLite file (the
//! embedded default, for one machine) or a PostgreSQL server (for a team or a cluster; SQLite
//! must not be shared over NFS, whose locks do not protect it).
//!
//! Every statement is written once, in the SQL both accept, with SQLite's `?N` placeholders;
//! [`postgres_sql`] rewrites those to PostgreSQL's `$N`. Values cross as [`Value`] (NULL, 64-bit
//! integer, double, text), which is all the schema uses. Where the two dialects differ, the
//! caller branches on [`Conn::backend`] and says why.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Where a registry lives, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl Location {
    /// `postgres://...` / `postgresql://...` is a server, `sqlite://PATH` or anything else a file.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Location::Postgres(s.to_string())
        } else if let Some(p) = s.strip_prefix("sqlite://") {
            Location::Sqlite(PathBuf::from(p))
        } else {
            Location::Sqlite(PathBuf::from(s))
        }
    }

    /// Whether `s` names a database server rather than a file or directory.
    pub fn is_url(s: &str) -> bool {
        s.contains("://") && !s.starts_with("sqlite://")
    }

    /// `DOGE_REGISTRY` when set, else `default`.
    pub fn from_env_or(default: &Path) -> Location {
        match std::env::var("DOGE_REGISTRY") {
            Ok(s) if !s.trim().is_empty() => Location::parse(s.trim()),
            _ => Location::Sqlite(default.to_path_buf()),
        }
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }

    /// Whether there is something to open (queries refuse to create an empty registry).
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.is_file(),
            Location::Postgres(_) => true,
        }
    }
}

impl fmt::Display for Location {
    /// The path, or the URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => {
                let redacted = match (url.find("://"), url.find('@')) {
                    (Some(s), Some(at)) if at > s => {
                        let creds = &url[s + 3..at];
                        match creds.find(':') {
                            Some(c) => {
                                format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..])
                            }
                            None => url.clone(),
                        }
                    }
                    _ => url.clone(),
                };
                f.write_str(&redacted)
            }
        }
    }
}

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A value crossing into or out of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::Int(x)
    }
}
impl From<u64> for Value {
    fn from(x: u64) -> Self {
        Value::Int(x as i64)
    }
}
impl From<u32> for Value {
    fn from(x: u32) -> Self {
        Value::Int(x as i64)
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Int(x as i64)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Real(x)
    }
}
impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::Text(x.to_string())
    }
}
impl From<String> for Value {
    fn from(x: String) -> Self {
        Value::Text(x)
    }
}
impl From<&String> for Value {
    fn from(x: &String) -> Self {
        Value::Text(x.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(x: Option<T>) -> Self {
        x.map_or(Value::Null, Into::into)
    }
}

/// `[a.into(), b.into(), ...]` for statement parameters.
#[macro_export]
macro_rules! sql_params {
    ($($x:expr),* $(,)?) => { [$($crate::registry::db::Value::from($x)),*] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn get(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.get(i) {
            Value::Text(s) => Some(s.clone()),
            Value::Int(x) => Some(x.to_string()),
            Value::Real(x) => Some(x.to_string()),
            Value::Null => None,
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)
            .ok_or_else(|| anyhow!("registry: column {i} is NULL where text was expected"))
    }

    pub fn opt_f64(&self, i: usize) -> Option<f64> {
        match self.get(i) {
            Value::Real(x) => Some(*x),
            Value::Int(x) => Some(*x as f64),
            _ => None,
        }
    }

    pub fn f64(&self, i: usize) -> Result<f64> {
        self.opt_f64(i)
            .ok_or_else(|| anyhow!("registry: column {i} is not a number"))
    }

    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match self.get(i) {
            Value::Int(x) => Some(*x),
            Value::Real(x) => Some(*x as i64),
            _ => None,
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)
            .ok_or_else(|| anyhow!("registry: column {i} is not an integer"))
    }
}

/// A transaction's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// Writes. SQLite: `BEGIN IMMEDIATE`, which takes the write lock at BEGIN, where the busy
    /// timeout applies (a deferred transaction that upgrades later can fail at once with
    /// "database is locked"). PostgreSQL: READ COMMITTED, row locks as statements need them.
    Write,
    /// Several reads that must see one state of the database (no torn reads while a sweep
    /// writes). SQLite: a deferred transaction, whose first read fixes the WAL snapshot.
    /// PostgreSQL: REPEATABLE READ READ ONLY, one snapshot for the whole transaction.
    Snapshot,
}

/// An open connection.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    // postgres::Client needs `&mut` for every call; the registry's API reads `&self` (SQLite's
    // does), and a connection is never shared between threads, so a RefCell is enough.
    Postgres(RefCell<postgres::Client>),
}

impl Conn {
    pub fn open_sqlite(path: &Path) -> Result<Conn> {
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("opening registry {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Conn::Sqlite(conn))
    }

    pub fn connect_postgres(url: &str) -> Result<Conn> {
        let shown = Location::Postgres(url.to_string()).to_string();
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
            anyhow!(
                "connecting to registry {shown}: {e}{}; check that the server runs and the URL \
                 (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE) is right",
                source_text(&e)
            )
        })?;
        Ok(Conn::Postgres(RefCell::new(client)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (PRAGMAs, ATTACH in tests).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Conn::Sqlite(c) => Some(c),
            Conn::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).with_context(|| sql_context(sql))?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(params.iter()))
                    .with_context(|| sql_context(sql))?;
                Ok(n as u64)
            }
            Conn::Postgres(c) => {
                let sql = postgres_sql(sql);
                c.borrow_mut()
                    .execute(sql.as_str(), &pg_params(params))
                    .map_err(|e| pg_error(e, &sql))
            }
        }
    }

    /// Runs one query and returns every row.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).with_context(|| sql_context(sql))?;
                let n = stmt.column_count();
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .with_context(|| sql_context(sql))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef;
                        row.push(match r.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(x) => Value::Int(x),
                            ValueRef::Real(x) => Value::Real(x),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        });
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let sql = postgres_sql(sql);
                let rows = c
                    .borrow_mut()
                    .query(sql.as_str(), &pg_params(params))
                    .map_err(|e| pg_error(e, &sql))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first column of the first row as an integer (`SELECT count(*) ...`).
    pub fn query_i64(&self, sql: &str, params: &[Value]) -> Result<i64> {
        let rows = self.query(sql, params)?;
        rows.first()
            .and_then(|r| r.opt_i64(0))
            .ok_or_else(|| anyhow!("registry: `{sql}` returned no number"))
    }

    /// Runs statements separated by `;`, without parameters (migrations).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).with_context(|| sql_context(sql)),
            Conn::Postgres(c) => c
                .borrow_mut()
                .batch_execute(sql)
                .map_err(|e| pg_error(e, sql)),
        }
    }

    /// Inserts rows into `table` with multi-row VALUES (both dialects have them), a few hundred
    /// parameters per statement: one round trip per chunk instead of per row on a server.
    pub fn insert_rows(&self, table: &str, columns: &[&str], rows: &[Vec<Value>]) -> Result<u64> {
        let per_row = columns.len().max(1);
        let chunk = (900 / per_row).max(1);
        let mut n = 0;
        for part in rows.chunks(chunk) {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            let mut k = 1;
            for (i, row) in part.iter().enumerate() {
                debug_assert_eq!(row.len(), per_row);
                if i > 0 {
                    sql.push_str(", ");
                }
                let marks: Vec<String> = (0..per_row).map(|j| format!("?{}", k + j)).collect();
                k += per_row;
                sql.push('(');
                sql.push_str(&marks.join(", "));
                sql.push(')');
            }
            let params: Vec<Value> = part.iter().flatten().cloned().collect();
            n += self.execute(&sql, &params)?;
        }
        Ok(n)
    }

    /// Runs `f` in a transaction: committed when it returns Ok, rolled back otherwise.
    pub fn transaction<T>(&self, kind: Tx, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let begin = match (self.backend(), kind) {
            (Backend::Sqlite, Tx::Write) => "BEGIN IMMEDIATE",
            (Backend::Sqlite, Tx::Snapshot) => "BEGIN DEFERRED",
            (Backend::Postgres, Tx::Write) => "BEGIN",
            (Backend::Postgres, Tx::Snapshot) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        self.batch(begin)?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Parameters as the postgres client takes them.
fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

fn sql_context(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = one_line.chars().take(120).collect();
    format!("registry statement `{short}`")
}

fn source_text(e: &postgres::Error) -> String {
    use std::error::Error as _;
    e.source().map(|s| format!(" ({s})")).unwrap_or_default()
}

fn pg_error(e: postgres::Error, sql: &str) -> anyhow::Error {
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => format!("{e}{}", source_text(&e)),
    };
    anyhow!("{detail}").context(sql_context(sql))
}

/// SQLite's `?N` (and bare `?`, numbered in order) as PostgreSQL's `$N`, outside quotes.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1usize;
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                    next += 1;
                }
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(c),
        }
    }
    out
}

fn pg_row(r: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut row = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.into()
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(i64::from).into()
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(i64::from).into()
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.into()
        } else if *ty == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?.map(f64::from).into()
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.into()
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.into()
        } else {
            bail!(
                "registry: column `{}` has PostgreSQL type {ty}, which doge does not read",
                col.name()
            );
        };
        row.push(v);
    }
    Ok(Row(row))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(x) => ToSqlOutput::Borrowed(ValueRef::Integer(*x)),
            Value::Real(x) => ToSqlOutput::Borrowed(ValueRef::Real(*x)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl postgres::types::ToSql for Value {
    /// Writes the value as the column's type, so one `Value::Int` serves BIGINT and DOUBLE
    /// PRECISION columns alike (PostgreSQL's binary protocol is strict about widths).
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        let mismatch = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("cannot write {self:?} into a {ty} column").into()
        };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(x) => match *ty {
                Type::INT8 => x.to_sql(ty, out),
                Type::INT4 => i32::try_from(*x)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*x)?.to_sql(ty, out),
                Type::FLOAT8 => (*x as f64).to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                Type::BOOL => (*x != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => x.to_string().to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => x.to_string().to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT ?2, ?1 FROM t WHERE a = '?' AND b IN (?, ?)"),
            "SELECT $2, $1 FROM t WHERE a = '?' AND b IN ($1, $2)"
        );
    }

    #[test]
    fn locations_parse_and_hide_passwords() {
        assert_eq!(
            Location::parse("postgres://u:secret@h:5/db").to_string(),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(
            Location::parse("sqlite://a/b.sqlite"),
            Location::Sqlite("a/b.sqlite".into())
        );
        assert_eq!(
            Location::parse("x.sqlite"),
            Location::Sqlite("x.sqlite".into())
        );
        assert!(Location::is_url("postgresql://h/db") && !Location::is_url("registry"));
    }
}
