//! The test's own database (`TestDatabase`, removed when the test ends) and the rows tests read
//! from it: visits, deliveries kept for review, connections, a practice's token.

use std::{ops::Deref, sync::Arc};

use chartbridge::{
    config::DatabaseSettings,
    visits::{StoredVisit, VISIT_COLUMNS, Visit},
};
use serde_json::Value;

use super::{PRODUCT_ID, TestApp};

/// A test's own database: an SQLite file, or, when `TEST_DATABASE_URL` names a PostgreSQL
/// server, a new database on it. Removed once the last handle to it is dropped (the test has
/// ended), so a run of the suite leaves neither files nor databases behind.
#[derive(Clone)]
pub struct TestDatabase(Arc<OwnedDatabase>);

pub struct OwnedDatabase {
    /// What the app connects with: on PostgreSQL, as the app's role, which may only insert
    /// into and read the audit trail (`docs/postgresql-roles.sql`).
    pub settings: DatabaseSettings,
    /// The server's URL it was created through (PostgreSQL), and its name there.
    created_on: Option<(String, String)>,
    /// The database as its owner (PostgreSQL): what tests that tamper with it use.
    owner_url: Option<String>,
}

/// The role the app serves under in the PostgreSQL pass.
const APP_ROLE: &str = "chartbridge_app";

impl Deref for TestDatabase {
    type Target = OwnedDatabase;
    fn deref(&self) -> &OwnedDatabase {
        &self.0
    }
}

impl Drop for OwnedDatabase {
    fn drop(&mut self) {
        match (&self.settings, self.created_on.take()) {
            (DatabaseSettings::Sqlite(path), _) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            (DatabaseSettings::Url(_), Some((admin_url, name))) => {
                // On a thread of its own: the test's runtime cannot wait for a future here. The
                // app's connections are closed by the drop (FORCE).
                let dropped = std::thread::spawn(move || {
                    use sqlx::Connection;
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async {
                        if let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await {
                            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = sqlx::query(&drop).execute(&mut admin).await;
                        }
                    });
                });
                let _ = dropped.join();
            }
            _ => {}
        }
    }
}

pub(super) async fn test_database() -> TestDatabase {
    let name = chartbridge::db::new_id("cbtest");
    let owned = match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if admin_url.starts_with("postgres") => {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut admin = sqlx::AnyConnection::connect(&admin_url)
                .await
                .expect("the test PostgreSQL answers");
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&format!("/{name}"));
            let owner_url = url.to_string();
            // The owner applies the migrations and the grants; the app serves as its role.
            let owner =
                chartbridge::db::Db::connect(&DatabaseSettings::Url(owner_url.clone().into()))
                    .await
                    .expect("migrations apply");
            grant_app_role(&mut admin, owner.writer(), &name).await;
            owner.close().await;
            url.set_username(APP_ROLE).expect("a user name");
            url.set_password(None).expect("no password");
            OwnedDatabase {
                settings: DatabaseSettings::Url(url.to_string().into()),
                created_on: Some((admin_url, name)),
                owner_url: Some(owner_url),
            }
        }
        _ => OwnedDatabase {
            settings: DatabaseSettings::Sqlite(std::env::temp_dir().join(format!("{name}.sqlite"))),
            created_on: None,
            owner_url: None,
        },
    };
    TestDatabase(Arc::new(owned))
}

/// Creates the app's role once per server and grants it, on database `name`, what
/// `docs/postgresql-roles.sql` grants.
async fn grant_app_role(admin: &mut sqlx::AnyConnection, owner: &sqlx::AnyPool, name: &str) {
    sqlx::query(&format!(
        "DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .execute(&mut *admin)
    .await
    .expect("the app's role exists");
    sqlx::query(&format!(
        "GRANT CONNECT ON DATABASE \"{name}\" TO {APP_ROLE}"
    ))
    .execute(&mut *admin)
    .await
    .expect("the app's role may connect");
    let script = include_str!("../../../docs/postgresql-roles.sql");
    let sql: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(":\"app_role\"", APP_ROLE);
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(statement)
            .execute(owner)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// A backup of `source` restored into a new database, as an operator's restore drill does it:
/// on PostgreSQL `pg_dump` (custom format) then `pg_restore` into a new, empty database and the
/// app's role granted again; on SQLite `VACUUM INTO` a new file (a consistent copy of a live
/// database).
pub async fn restored_copy(source: &TestDatabase) -> TestDatabase {
    let name = chartbridge::db::new_id("cbtest");
    match (&source.settings, &source.owner_url, &source.created_on) {
        (DatabaseSettings::Sqlite(path), _, _) => {
            let copy = std::env::temp_dir().join(format!("{name}.sqlite"));
            let db = sqlx::AnyPool::connect(&format!("sqlite:{}", path.display()))
                .await
                .unwrap();
            sqlx::query(&format!("VACUUM INTO '{}'", copy.display()))
                .execute(&db)
                .await
                .expect("the backup is written");
            db.close().await;
            TestDatabase(Arc::new(OwnedDatabase {
                settings: DatabaseSettings::Sqlite(copy),
                created_on: None,
                owner_url: None,
            }))
        }
        (DatabaseSettings::Url(_), Some(owner_url), Some((admin_url, _))) => {
            use sqlx::Connection;
            let dump = std::env::temp_dir().join(format!("{name}.dump"));
            let ran = tokio::process::Command::new("pg_dump")
                .args(["--format=custom", "--file"])
                .arg(&dump)
                .arg(owner_url)
                .status()
                .await
                .expect("pg_dump runs");
            assert!(ran.success(), "pg_dump");
            let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await
                .unwrap();
            let mut url = url::Url::parse(admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            let restored_owner = url.to_string();
            let ran = tokio::process::Command::new("pg_restore")
                .args(["--exit-on-error", "--no-owner", "--dbname"])
                .arg(&restored_owner)
                .arg(&dump)
                .status()
                .await
                .expect("pg_restore runs");
            assert!(ran.success(), "pg_restore");
            let _ = std::fs::remove_file(&dump);
            let owner = sqlx::AnyPool::connect(&restored_owner).await.unwrap();
            grant_app_role(&mut admin, &owner, &name).await;
            owner.close().await;
            url.set_username(APP_ROLE).unwrap();
            TestDatabase(Arc::new(OwnedDatabase {
                settings: DatabaseSettings::Url(url.to_string().into()),
                created_on: Some((admin_url.clone(), name)),
                owner_url: Some(restored_owner),
            }))
        }
        _ => panic!("a test database"),
    }
}

impl TestApp {
    /// The database as its owner: for tests that do what the app's role may not (tampering
    /// with the trail). On SQLite, the app's own pool.
    pub async fn owner_db(&self) -> sqlx::AnyPool {
        match &self.database.owner_url {
            Some(url) => sqlx::AnyPool::connect(url)
                .await
                .expect("the owner connects"),
            None => self.state.db.writer().clone(),
        }
    }
}

/// A partner delivery kept for review, as stored.
pub struct Kept {
    pub id: String,
    pub partner: String,
    /// Why it matched nothing.
    pub reason: String,
}

impl TestApp {
    /// Cuts the app off its database, as a restart of the database server would for a moment:
    /// its pool closes and, on PostgreSQL, every connection to the test's database is ended by
    /// the server (the writers' own ones too).
    pub async fn cut_off_database(&self) {
        self.state.db.close().await;
        self.end_database_connections().await;
    }

    /// On PostgreSQL, has the server end every connection to the test's database, as a
    /// restart does (the app's pool stays open; its connections are dead). On SQLite, nothing.
    pub async fn end_database_connections(&self) {
        if let Some((admin_url, name)) = &self.database.created_on {
            use sqlx::Connection;
            let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
            sqlx::query(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        }
    }

    /// A visit's trail: (action, detail), oldest first.
    pub async fn visit_trail(&self, practice_id: &str, visit_id: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT action, detail FROM audit_events WHERE practice_id = $1 AND visit_id = $2 ORDER BY seq",
        )
        .bind(practice_id)
        .bind(visit_id)
        .fetch_all(self.state.db.reader())
        .await
        .unwrap()
    }

    /// How many earlier results of a visit are kept (`visit_versions`).
    pub async fn versions_of(&self, visit_id: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM visit_versions WHERE visit_id = $1")
            .bind(visit_id)
            .fetch_one(self.state.db.reader())
            .await
            .unwrap()
    }

    /// The ids of the practice's visits.
    pub async fn visit_ids(&self, practice_id: &str) -> Vec<String> {
        self.visits_of(practice_id)
            .await
            .into_iter()
            .map(|v| v.id.to_string())
            .collect()
    }

    /// The practice's visit that is not among `before` (the one just started).
    pub async fn visit_since(&self, practice_id: &str, before: &[String]) -> String {
        self.visit_ids(practice_id)
            .await
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("the new visit")
    }

    /// One visit row as stored, by id (practice filter included).
    pub async fn visit(&self, practice_id: &str, visit_id: &impl ToString) -> Visit {
        sqlx::query_as::<_, StoredVisit>(&format!(
            "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 AND id = $2"
        ))
        .bind(practice_id)
        .bind(visit_id.to_string())
        .fetch_optional(self.state.db.writer())
        .await
        .unwrap()
        .expect("visit exists")
        .open(&self.state.secrets, practice_id)
        .expect("its patient data opens")
    }

    /// A practice's stored visits, newest first.
    pub async fn visits_of(&self, practice_id: &str) -> Vec<Visit> {
        sqlx::query_as::<_, StoredVisit>(&format!(
            "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 ORDER BY created_at DESC"
        ))
        .bind(practice_id)
        .fetch_all(self.state.db.writer())
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            row.open(&self.state.secrets, practice_id)
                .expect("its patient data opens")
        })
        .collect()
    }

    /// The only visit of a practice.
    pub async fn only_visit(&self, practice_id: &str) -> Visit {
        let visits = self.visits_of(practice_id).await;
        assert_eq!(visits.len(), 1, "exactly one visit expected");
        visits.into_iter().next().unwrap()
    }

    /// A practice's partner deliveries kept for review and not dismissed, newest first.
    pub async fn unmatched_of(&self, practice_id: &str) -> Vec<Kept> {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT id, partner, reason FROM unmatched_deliveries \
             WHERE practice_id = $1 AND dismissed_at IS NULL ORDER BY received_at DESC",
        )
        .bind(practice_id)
        .fetch_all(self.state.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|(id, partner, reason)| Kept {
            id,
            partner,
            reason,
        })
        .collect()
    }

    /// Whether a practice has a stored connection to `partner`.
    pub async fn has_connection(&self, practice_id: &str, partner: &str) -> bool {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM partner_connections WHERE practice_id = $1 AND partner = $2",
        )
        .bind(practice_id)
        .bind(partner)
        .fetch_one(self.state.db.reader())
        .await
        .unwrap()
            == 1
    }

    /// The practice's Instant On token, opened from its sealed row.
    pub async fn practice_token(&self, practice_id: &str) -> Option<String> {
        let sealed: Option<String> = sqlx::query_scalar(
            "SELECT token_sealed FROM hint_installations WHERE product_id = $1 AND practice_id = $2",
        )
        .bind(PRODUCT_ID)
        .bind(practice_id)
        .fetch_optional(self.state.db.reader())
        .await
        .unwrap();
        sealed.map(|sealed| {
            let aad = chartbridge::hint::installations::token_aad(PRODUCT_ID, practice_id);
            let token = self.state.secrets.open_str(&sealed, &aad).unwrap();
            secrecy::ExposeSecret::expose_secret(&token).to_string()
        })
    }
}

/// A visit's stored result, as JSON.
pub fn stored_result(visit: &Visit) -> Value {
    serde_json::from_str(visit.result.as_deref().expect("the visit has a result"))
        .expect("the result is JSON")
}
