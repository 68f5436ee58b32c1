//! Rows written in bulk: `COPY … FROM STDIN` on PostgreSQL, multi-row inserts in one
//! transaction per batch on SQLite.

use sqlx::{Connection, PgConnection, SqliteConnection, sqlite::SqliteConnectOptions};

/// One column's value.
pub enum Val {
    Text(String),
    Int(i64),
    Null,
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::Null, Val::Text)
    }
}

/// A table's rows, ready to be written.
pub struct Batch {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Val>>,
}

impl Batch {
    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Batch {
            table,
            columns,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Val>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }
}

pub enum Sink {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl Sink {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres") {
            Ok(Sink::Postgres(PgConnection::connect(url).await?))
        } else {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let options = SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
            Ok(Sink::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        }
    }

    pub async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Sink::Postgres(c) => {
                sqlx::raw_sql(sql).execute(c).await?;
            }
            Sink::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(c).await?;
            }
        }
        Ok(())
    }

    /// PostgreSQL: drops the secondary indexes of `tables` (answering their definitions) so that
    /// a bulk load does not maintain them row by row; [`Sink::restore_indexes`] builds them
    /// again. Nothing on SQLite, where the load is small enough to keep them.
    pub async fn drop_indexes(&mut self, tables: &[&str]) -> anyhow::Result<Vec<String>> {
        let Sink::Postgres(conn) = self else {
            return Ok(Vec::new());
        };
        let defs: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i \
             WHERE i.schemaname = 'public' AND i.tablename = ANY($1) AND NOT EXISTS \
             (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        )
        .bind(tables)
        .fetch_all(&mut *conn)
        .await?;
        for (name, _) in &defs {
            sqlx::raw_sql(&format!("DROP INDEX {name}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok(defs.into_iter().map(|(_, def)| def).collect())
    }

    pub async fn restore_indexes(&mut self, defs: &[String]) -> anyhow::Result<()> {
        if defs.is_empty() {
            return Ok(());
        }
        self.execute("SET maintenance_work_mem = '1GB'").await?;
        for def in defs {
            self.execute(def).await?;
        }
        Ok(())
    }

    pub async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        if batch.rows.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Postgres(conn) => {
                let sql = format!(
                    "COPY {} ({}) FROM STDIN",
                    batch.table,
                    batch.columns.join(", ")
                );
                let mut copy = conn.copy_in_raw(&sql).await?;
                let mut buf = String::with_capacity(1 << 20);
                for row in &batch.rows {
                    copy_line(&mut buf, row);
                    if buf.len() > (1 << 20) {
                        copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                    }
                }
                if !buf.is_empty() {
                    copy.send(buf.into_bytes()).await?;
                }
                copy.finish().await?;
            }
            Sink::Sqlite(conn) => {
                let per = (30_000 / batch.columns.len()).max(1);
                let mut tx = conn.begin().await?;
                for chunk in batch.rows.chunks(per) {
                    let row = format!("({})", vec!["?"; batch.columns.len()].join(", "));
                    let sql = format!(
                        "INSERT INTO {} ({}) VALUES {}",
                        batch.table,
                        batch.columns.join(", "),
                        vec![row.as_str(); chunk.len()].join(", ")
                    );
                    let mut query = sqlx::query(&sql);
                    for row in chunk {
                        for v in row {
                            query = match v {
                                Val::Text(s) => query.bind(s.as_str()),
                                Val::Int(i) => query.bind(*i),
                                Val::Null => query.bind(None::<String>),
                            };
                        }
                    }
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// One row in COPY's text format.
fn copy_line(buf: &mut String, row: &[Val]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            buf.push('\t');
        }
        match v {
            Val::Null => buf.push_str("\\N"),
            Val::Int(n) => buf.push_str(&n.to_string()),
            Val::Text(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => buf.push_str("\\\\"),
                        '\t' => buf.push_str("\\t"),
                        '\n' => buf.push_str("\\n"),
                        '\r' => buf.push_str("\\r"),
                        c => buf.push(c),
                    }
                }
            }
        }
    }
    buf.push('\n');
}
