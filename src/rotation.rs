//! `chartbridge keys rotate`: seals every sealed value again under the current secret key, so
//! that an older key (a leaked one) can be removed. Column by column, a batch at a time in its
//! own short transaction, while instances keep serving: each value is opened under whichever
//! key sealed it (`CHARTBRIDGE_OLD_SECRET_KEYS`) and written back only if the row still holds
//! what was read (a value written meanwhile is already under the current key). Values already
//! under the current key are skipped, so a rotation that stopped half way is run again to
//! finish it. A value that opens under no key held is counted and left as it is.

use sqlx::Row;

use crate::{
    crypto::{SecretBox, row_aad},
    db::Db,
    hint::{installations::token_aad, session::access_token_aad},
};

/// One sealed column: its table, the columns that name a row, and the associated data it
/// was sealed with, from those columns' values.
struct SealedColumn {
    table: &'static str,
    column: &'static str,
    keys: &'static [&'static str],
    aad: fn(&[String]) -> String,
    /// Most rows read at once (a file's column holds up to 25 MB a row).
    most: i64,
}

/// A visit's patient-data column (the visit's row, its receipts).
fn visit_column(column: &'static str) -> fn(&[String]) -> String {
    match column {
        "patient_name" => |k| row_aad("visits", "patient_name", &k[0], &k[1]),
        "launch" => |k| row_aad("visits", "launch", &k[0], &k[1]),
        "result" => |k| row_aad("visits", "result", &k[0], &k[1]),
        _ => |k| row_aad("visits", "error_message", &k[0], &k[1]),
    }
}

/// Every sealed column. A new one must be added here (the rotation test reads every table's
/// columns against this list).
fn sealed_columns() -> Vec<SealedColumn> {
    let mut columns = vec![
        SealedColumn {
            table: "hint_installations",
            column: "token_sealed",
            keys: &["product_id", "practice_id"],
            aad: |k| token_aad(&k[0], &k[1]),
            most: BATCH,
        },
        SealedColumn {
            table: "hint_sessions",
            column: "access_token_sealed",
            keys: &["key_hash", "practice_id", "user_id"],
            aad: |k| access_token_aad(&k[1], &k[2]),
            most: BATCH,
        },
        SealedColumn {
            table: "partner_connections",
            column: "secrets_sealed",
            keys: &["practice_id", "partner"],
            aad: |k| format!("partner_connections|{}|{}", k[0], k[1]),
            most: BATCH,
        },
        SealedColumn {
            table: "unmatched_deliveries",
            column: "body_sealed",
            keys: &["practice_id", "id"],
            aad: |k| format!("unmatched_deliveries|{}|{}", k[0], k[1]),
            most: BATCH,
        },
        SealedColumn {
            table: "patient_index",
            column: "sealed",
            keys: &["practice_id", "patient_id"],
            aad: |k| row_aad("patient_index", "sealed", &k[0], &k[1]),
            most: BATCH,
        },
        SealedColumn {
            table: "visit_files",
            column: "bytes_sealed",
            keys: &["practice_id", "id"],
            aad: |k| row_aad("visit_files", "bytes_sealed", &k[0], &k[1]),
            most: 4,
        },
        SealedColumn {
            table: "visit_versions",
            column: "result_sealed",
            keys: &["practice_id", "id"],
            aad: |k| row_aad("visit_versions", "result_sealed", &k[0], &k[1]),
            most: BATCH,
        },
        SealedColumn {
            table: "result_receipts",
            column: "result",
            keys: &["practice_id", "visit_id"],
            aad: visit_column("result"),
            most: BATCH,
        },
    ];
    for column in ["patient_name", "launch", "result", "error_message"] {
        columns.push(SealedColumn {
            table: "visits",
            column,
            keys: &["practice_id", "id"],
            aad: visit_column(column),
            most: BATCH,
        });
    }
    for column in ["patient_name", "launch", "result"] {
        columns.push(SealedColumn {
            table: "recording_receipts",
            column,
            keys: &["practice_id", "visit_id"],
            aad: visit_column(column),
            most: BATCH,
        });
    }
    columns
}

/// The (table, column) pairs the rotation covers.
pub fn covered() -> Vec<(&'static str, &'static str)> {
    sealed_columns()
        .iter()
        .map(|c| (c.table, c.column))
        .collect()
}

/// What a rotation did to one column.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub table: &'static str,
    pub column: &'static str,
    /// Sealed again under the current key.
    pub resealed: u64,
    /// Written meanwhile by an instance (already under the current key).
    pub raced: u64,
    /// Open under no key held: left as they are.
    pub unopened: u64,
    /// Not under the current key after the pass (unopened ones, and values an instance
    /// still on the old key wrote behind it): run it again once every instance has the new key.
    pub remaining: u64,
}

/// Rows read per batch.
pub const BATCH: i64 = 500;

/// Seals every value not under the current key again under it; answers what it did per
/// column.
pub async fn rotate(db: &Db, secrets: &SecretBox, batch: i64) -> Result<Vec<Rotated>, sqlx::Error> {
    let mut report = Vec::new();
    for column in sealed_columns() {
        report.push(rotate_column(db, secrets, &column, batch).await?);
    }
    Ok(report)
}

async fn rotate_column(
    db: &Db,
    secrets: &SecretBox,
    c: &SealedColumn,
    batch: i64,
) -> Result<Rotated, sqlx::Error> {
    let mut done = Rotated {
        table: c.table,
        column: c.column,
        ..Rotated::default()
    };
    let n = c.keys.len();
    let keys = c.keys.join(", ");
    let after: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    // Keyset pages over the row's key: every row is looked at once, unopened ones included.
    let select = format!(
        "SELECT {keys}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} <> '' \
         AND {col} NOT LIKE ${prefix} AND ({keys}) > ({after}) ORDER BY {keys} LIMIT ${limit}",
        col = c.column,
        table = c.table,
        prefix = n + 1,
        after = after.join(", "),
        limit = n + 2,
    );
    let matches: Vec<String> = c
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", i + 3))
        .collect();
    let update = format!(
        "UPDATE {table} SET {col} = $1 WHERE {col} = $2 AND {matches}",
        table = c.table,
        col = c.column,
        matches = matches.join(" AND "),
    );
    let mut last: Vec<String> = vec![String::new(); n];
    loop {
        let mut query = sqlx::query(&select);
        for value in &last {
            query = query.bind(value);
        }
        let rows = query
            .bind(format!("{}%", secrets.current_prefix()))
            .bind(batch.min(c.most))
            .fetch_all(db.writer())
            .await?;
        if rows.is_empty() {
            let remaining: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE {col} IS NOT NULL AND {col} <> '' \
                 AND {col} NOT LIKE $1",
                table = c.table,
                col = c.column,
            ))
            .bind(format!("{}%", secrets.current_prefix()))
            .fetch_one(db.writer())
            .await?;
            done.remaining = remaining.max(0) as u64;
            return Ok(done);
        }
        let mut tx = db.begin().await?;
        for row in &rows {
            let key: Vec<String> = (0..n)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<_, _>>()?;
            let stored: String = row.try_get(n)?;
            let aad = (c.aad)(&key);
            let Ok(plain) = secrets.open(&stored, &aad) else {
                tracing::warn!(
                    table = c.table,
                    column = c.column,
                    "a sealed value opens under no key held"
                );
                done.unopened += 1;
                last = key;
                continue;
            };
            let mut query = sqlx::query(&update)
                .bind(secrets.seal(&plain, &aad))
                .bind(&stored);
            for value in &key {
                query = query.bind(value);
            }
            match query.execute(&mut *tx).await?.rows_affected() {
                0 => done.raced += 1,
                _ => done.resealed += 1,
            }
            last = key;
        }
        tx.commit().await?;
    }
}
