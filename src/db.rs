//! The database: one handle over SQLite (the embedded default) or PostgreSQL.
//!
//! SQL stays portable: `$1` placeholders, TEXT/BIGINT columns, times as Unix milliseconds.
//! SQLite allows one writer at a time, so writes go through a single-connection pool (no
//! "database is locked" under load) while reads use several; on PostgreSQL both are one pool.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;
use sqlx::{
    AnyPool, ConnectOptions, Connection, Executor,
    any::{AnyConnectOptions, AnyPoolOptions},
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseSettings;

/// Prepared statements each PostgreSQL connection keeps.
const STATEMENT_CACHE: usize = 2_000;

/// How long a writer's own connection may sit unused before it is checked (see [`Db::reuse`]).
pub const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

/// A transaction on the writer.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Clone, Debug)]
pub struct Db {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
    /// On PostgreSQL, a pool of the driver's own connections, opened on first use: for the
    /// long reads whose rows are decoded in place instead of copied into `Any`'s values
    /// (`audit verify`).
    native: Option<sqlx::PgPool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Db {
    /// Connects (creating the SQLite file and its folder when needed) and runs migrations.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match settings {
            DatabaseSettings::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                format!("sqlite://{}?mode=rwc", path.display())
            }
            DatabaseSettings::Url(url) => {
                let url = url.expose_secret().to_string();
                // An sqlite: URL creates its file, like the default does.
                if url.starts_with("sqlite:") && !url.contains("mode=") {
                    format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
                } else {
                    url
                }
            }
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            // Batched statements come in one text per batch size (sessions, results, the trail):
            // more than sqlx's default of 100 prepared statements per connection holds, and
            // each one pushed out is parsed and planned again.
            Backend::Postgres if !url.contains("statement-cache-capacity") => format!(
                "{url}{}statement-cache-capacity={STATEMENT_CACHE}",
                if url.contains('?') { '&' } else { '?' }
            ),
            _ => url,
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let db = match backend {
            Backend::Sqlite => {
                let pool = |max| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(10))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                };
                let writer = pool(1).connect_with(options.clone()).await?;
                let reader = pool(4).connect_with(options).await?;
                Db {
                    writer,
                    reader,
                    backend,
                    native: None,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    // No ping before each use: it would double every statement's round trips.
                    // A connection that died with the server fails its next statement once and
                    // is then dropped by the pool.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                let native = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    // Its reads are long on purpose.
                    .connect_lazy_with(
                        PgConnectOptions::from_str(&url)?.disable_statement_logging(),
                    );
                Db {
                    writer: pool.clone(),
                    reader: pool,
                    backend,
                    native: Some(native),
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies pending migrations. When none is pending (every one applied, as written), it
    /// touches nothing: an instance may then run under a role that can change no table's
    /// shape and only insert into the audit trail (README, `docs/postgresql-roles.sql`), while
    /// `chartbridge migrate` runs under the owner's.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = sqlx::migrate!("./migrations");
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.writer)
                .await
                .unwrap_or_default();
        let applied: std::collections::HashMap<i64, Vec<u8>> = applied.into_iter().collect();
        let known: Vec<_> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .collect();
        let pending = known
            .iter()
            .any(|m| applied.get(&m.version).map(Vec::as_slice) != Some(&*m.checksum));
        // A database migrated by a newer release: the migrator says so and stops.
        let newer = applied
            .keys()
            .any(|v| !known.iter().any(|m| m.version == *v));
        if pending || newer {
            migrator.run(&self.writer).await.map_err(|e| {
                anyhow::anyhow!(
                    "migrations could not be applied ({e}); if this role may not change the \
                     schema, run `chartbridge migrate` as the database's owner first"
                )
            })?;
        }
        Ok(())
    }

    /// Pool for statements that write (and reads that must see the latest write).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, the driver's own pool (connected on first use) for reads of millions of
    /// rows, decoded where they arrive: through `Any` every value of every row is copied first.
    pub fn postgres(&self) -> Option<&sqlx::PgPool> {
        self.native.as_ref()
    }

    /// Begins a transaction on the writer.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.writer.begin().await
    }

    /// A connection for a writer that sends one batched statement after another (the burst
    /// writer's receipts, `visits/burst.rs`, and new sessions, `hint/session.rs`). On
    /// PostgreSQL it is the writer's own, out of the pool, kept between statements and with
    /// generic plans: every statement through the pool costs a second round trip (sqlx pings
    /// each connection it takes back), and a custom plan, made anew for each batch's values,
    /// comes out the same every time. On SQLite it is the pool's one writer connection.
    async fn writer_connection(&self) -> Result<WriterConnection, sqlx::Error> {
        let connection = self.writer.acquire().await?;
        Ok(match self.backend {
            Backend::Sqlite => WriterConnection::Pooled(connection),
            Backend::Postgres => {
                let mut own = connection.detach();
                own.execute("SET plan_cache_mode = force_generic_plan")
                    .await?;
                WriterConnection::Own {
                    connection: own,
                    last_used: Instant::now(),
                }
            }
        })
    }

    /// A writer's connection (see `Db::writer_connection`): the one it kept, checked first
    /// when it has been idle for [`IDLE_BEFORE_CHECK`] (the database may have closed it
    /// meanwhile: a restart, or an idle timeout), or a new one when there is none or it does
    /// not answer.
    /// Under load it is used as it is; after a pause one round trip makes sure the pause's
    /// first batch does not fail on it.
    pub async fn reuse(
        &self,
        kept: Option<WriterConnection>,
    ) -> Result<WriterConnection, sqlx::Error> {
        if let Some(WriterConnection::Own {
            mut connection,
            last_used,
        }) = kept
        {
            if last_used.elapsed() < IDLE_BEFORE_CHECK || connection.ping().await.is_ok() {
                return Ok(WriterConnection::Own {
                    connection,
                    last_used: Instant::now(),
                });
            }
            tracing::info!("a writer's own connection was closed by the database; opening another");
        }
        self.writer_connection().await
    }

    /// Answers whether the database takes queries (for /readyz).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// A writer's connection, taken with [`Db::reuse`] (see `Db::writer_connection`). Drop it
/// after an error (a connection in doubt is closed).
#[derive(Debug)]
pub enum WriterConnection {
    /// PostgreSQL: the writer's own (keep it for the next statement, and take it back with
    /// [`Db::reuse`]).
    Own {
        connection: sqlx::AnyConnection,
        last_used: Instant,
    },
    /// SQLite: taken from the pool, and given back when dropped.
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl WriterConnection {
    /// Whether it is worth keeping for the next statement.
    pub fn is_own(&self) -> bool {
        matches!(self, Self::Own { .. })
    }
}

impl std::ops::Deref for WriterConnection {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        match self {
            Self::Own { connection, .. } => connection,
            Self::Pooled(c) => c,
        }
    }
}

impl std::ops::DerefMut for WriterConnection {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match self {
            Self::Own { connection, .. } => connection,
            Self::Pooled(c) => c,
        }
    }
}

/// Whether `e` says the database is away for a moment rather than that a statement is wrong:
/// the connection broke or could not be made (a restart, a failover, the pool closing at
/// shutdown), or the server is shutting down, starting up or out of connections. Such a
/// request is answered 503 with `Retry-After`, never 500 (`error.rs`).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        // What the driver reads on a connection the server closed mid-conversation.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting
            // up), 08xxx connection exceptions, 53300 too many connections.
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// A database away for a moment, told through a layer that carries errors as text (the
/// session store's trait): its cause is in its words only.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct DatabaseAway(pub String);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// A random identifier with a readable prefix, e.g. `vis_3kq…`.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A new key for a row of a table that only grows (visits, jobs, versions): the time in
/// milliseconds (12 hex digits), then 80 random bits, as long as [`new_id`]'s. Keys made one
/// after the other sort after each other, so a new row's key goes to the right edge of the
/// primary key's index instead of a random page of it: on a year's 2,000,000 visits, random
/// keys made every insert rewrite a whole index page into PostgreSQL's WAL after each
/// checkpoint (docs/performance.md, "A year of data"). Not for a key that is a secret (a
/// file link): its time is readable and it has fewer random bits.
pub fn new_ordered_id(prefix: &str) -> String {
    let millis = u64::try_from(now_ms()).unwrap_or_default() & 0xffff_ffff_ffff;
    let bytes: [u8; 10] = rand::random();
    format!("{prefix}_{millis:012x}{}", hex::encode(bytes))
}

/// A time as pages show it: in UTC as text (`2026-11-30 05:12 UTC`), and as an instant
/// (`iso`) the browser shows in its own zone (`<time datetime="{{ m.iso() }}">{{ m }}</time>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment(pub i64);

impl Moment {
    /// RFC 3339 in UTC, to the second.
    pub fn iso(&self) -> String {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_ms(self.0))
    }
}

/// Formats Unix milliseconds for people (UTC).
pub fn format_ms(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Stores an enum as TEXT: it is written with `as_str()` and read back with `FromStr`, so a
/// value the code does not know fails the read loudly instead of turning into a default.
macro_rules! text_column {
    ($type:ty) => {
        impl sqlx::Type<sqlx::Any> for $type {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $type {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str().to_string(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $type {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(text.parse::<$type>()?)
            }
        }
    };
}
pub(crate) use text_column;

/// A stored value the code does not know (a newer version wrote it, or the row was edited).
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?} in the database")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// `($1, $2), ($3, $4), …` for `rows` rows of `columns` parameters each, each row's list
/// passed through `row` (to add shared parameters).
pub fn placeholders(rows: usize, columns: usize, row: impl Fn(String) -> String) -> String {
    (0..rows)
        .map(|r| {
            let list = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({})", row(list))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_in_the_order_they_were_made() {
        let first = new_ordered_id("vis");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_ordered_id("vis");
        assert!(first < second, "{first} {second}");
        // As long as a random one, hex after the prefix, and unlike each other.
        assert_eq!(first.len(), new_id("vis").len());
        assert!(first[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_ordered_id("vis"), new_ordered_id("vis"));
    }

    #[test]
    fn a_database_that_is_away_is_told_apart_from_a_wrong_statement() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        for away in [
            sqlx::Error::Io(io()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert!(is_unavailable(&away), "{away}");
        }
        for code in ["57P01", "57P02", "57P03", "08006", "08001", "53300"] {
            assert!(is_unavailable(&sqlstate(code)), "{code}");
        }
        for wrong in [
            sqlstate("23505"),
            sqlstate("22021"),
            sqlstate("40001"),
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
            sqlx::Error::Configuration("bad url".into()),
        ] {
            assert!(!is_unavailable(&wrong), "{wrong}");
        }
    }

    /// A database's refusal with its SQLSTATE, as the driver reports it.
    fn sqlstate(code: &'static str) -> sqlx::Error {
        #[derive(Debug, thiserror::Error)]
        #[error("SQLSTATE {0}")]
        struct Refusal(&'static str);

        impl sqlx::error::DatabaseError for Refusal {
            fn message(&self) -> &str {
                "refused"
            }
            fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
                Some(self.0.into())
            }
            fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
                self
            }
            fn kind(&self) -> sqlx::error::ErrorKind {
                sqlx::error::ErrorKind::Other
            }
        }

        sqlx::Error::Database(Box::new(Refusal(code)))
    }
}
