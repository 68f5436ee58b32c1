//! `chartbridge-seed`: writes a year of a large deployment into an empty database, for
//! `benches/scale.sh`. Not part of the production binary. The rows are the app's own: its
//! migrations make the schema, its sealing seals, its ids name, its chain hashing chains the
//! trail under the key `chartbridge serve` will hold (the same `CHARTBRIDGE_SECRET_KEY` and
//! `CHARTBRIDGE_AUDIT_KEY`), so the app reads, verifies and exports them as its own.
//!
//! At `--scale 1`: 500 practices, 2,000,000 visits over the four partners (one practice of
//! 50,000 patients holds 200,000), 20,000,000 chained trail entries, a week of sessions, the
//! last 72 hours of Hint's event ids, every practice's patient list. Finished jobs are not
//! kept by the app (a job row is deleted when it succeeds), so only open polls and dead
//! write-backs are written. Prints the time it took and the size on disk per visit and entry.

mod sink;
mod year;

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

use chartbridge::{
    audit::ChainKeys,
    config::{DatabaseSettings, KeyArgs, KeySettings},
    crypto::SecretBox,
    db::{Db, now_ms},
};
use sink::{Batch, Sink};
use year::{AUDIT_COLUMNS, DAYS, JOB_COLUMNS, Plan, Practice, VISIT_COLUMNS, Writer};

#[derive(Parser, Debug)]
#[command(name = "chartbridge-seed", about)]
struct SeedArgs {
    /// An empty database: postgres://… or sqlite:…
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The year's size: 1 is the deployment, 0.1 a tenth of every count.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, env = "CHARTBRIDGE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[command(flatten)]
    keys: KeyArgs,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Days a batch of the year carries (fewer, larger COPYs).
const DAYS_PER_BATCH: i64 = 7;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = SeedArgs::parse();
    let keys = KeySettings::from_args(args.secret_key.clone(), &args.keys)
        .context("the keys the app will serve with")?;
    let plan = Plan::scaled(args.scale);
    let began = Instant::now();
    let db = Db::connect(&DatabaseSettings::Url(args.database_url.clone().into())).await?;
    db.migrate().await?;
    db.close().await;
    let mut sink = Sink::connect(&args.database_url).await?;
    let now = now_ms();
    let start = now - DAYS * 86_400_000;
    let postgres = matches!(sink, Sink::Postgres(_));

    eprintln!("seeding {plan:?}");
    let secrets = SecretBox::from_settings(&keys);
    let chain_keys = ChainKeys::from_settings(&keys);
    let chain = chain_keys.current().clone();

    // Practices and their patient lists.
    let mut practices = Batch::new("practices", &["id", "name", "created_at", "updated_at"]);
    let mut index = Batch::new(
        "patient_index",
        &["practice_id", "patient_id", "sealed", "indexed_at"],
    );
    let mut index_state = Batch::new(
        "patient_index_state",
        &["practice_id", "fill_offset", "filled_at"],
    );
    // What writes the rows outside the year (the year's own maker has its copy of the keys).
    let w = Writer {
        secrets: &secrets,
        chain: &chain,
        start,
        now,
    };
    {
        for p in 0..plan.practices {
            let share = plan.practice(p);
            practices.push(vec![
                share.id.as_str().into(),
                format!("Year Clinic {p}").into(),
                start.into(),
                start.into(),
            ]);
            year::patient_index(&w, p, &share, &mut index);
            index_state.push(vec![
                share.id.as_str().into(),
                (share.patients as i64).into(),
                now.into(),
            ]);
        }
    }
    // What the app's first start on the empty database recorded.
    let mut passes = Batch::new("maintenance_passes", &["name", "done_at"]);
    passes.push(vec![chartbridge::visits::SEALED_PASS.into(), start.into()]);
    sink.write(passes).await?;
    sink.write(practices).await?;
    sink.write(index).await?;
    sink.write(index_state).await?;
    eprintln!(
        "practices and patient lists: {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let indexes = sink
        .drop_indexes(&["visits", "audit_events", "jobs"])
        .await?;
    // The year, a week at a time: made on a thread of its own while the week before is written.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i64, Batch, Batch, Batch)>(2);
    let maker = {
        let plan = plan.clone();
        let secrets = secrets.clone();
        let chain = chain.clone();
        std::thread::spawn(move || {
            let w = Writer {
                secrets: &secrets,
                chain: &chain,
                start,
                now,
            };
            let mut all: Vec<Practice> = (0..plan.practices)
                .map(|p| Practice::new(plan.practice(p)))
                .collect();
            let mut day = 0;
            while day < DAYS {
                let mut visits = Batch::new("visits", VISIT_COLUMNS);
                let mut audit = Batch::new("audit_events", AUDIT_COLUMNS);
                let mut jobs = Batch::new("jobs", JOB_COLUMNS);
                for d in day..(day + DAYS_PER_BATCH).min(DAYS) {
                    for (p, practice) in all.iter_mut().enumerate() {
                        w.day(p, practice, d, &mut visits, &mut audit, &mut jobs);
                    }
                }
                day += DAYS_PER_BATCH;
                if tx.blocking_send((day, visits, audit, jobs)).is_err() {
                    break;
                }
            }
            all
        })
    };
    let (mut visits_written, mut entries_written) = (0u64, 0u64);
    while let Some((day, visits, audit, jobs)) = rx.recv().await {
        visits_written += visits.rows.len() as u64;
        entries_written += audit.rows.len() as u64;
        sink.write(visits).await?;
        sink.write(audit).await?;
        sink.write(jobs).await?;
        eprintln!(
            "day {:>3}: {visits_written} visits, {entries_written} trail entries, {:.0} s",
            day.min(DAYS),
            began.elapsed().as_secs_f64()
        );
    }
    let all = maker.join().expect("the year's maker finished");
    let indexing = Instant::now();
    sink.restore_indexes(&indexes).await?;
    eprintln!(
        "{} indexes built again in {:.0} s",
        indexes.len(),
        indexing.elapsed().as_secs_f64()
    );
    let mut heads = Batch::new("audit_heads", &["practice_id", "seq", "hash"]);
    for practice in &all {
        let (seq, hash) = practice.head();
        if seq > 0 {
            heads.push(vec![
                practice.share.id.as_str().into(),
                seq.into(),
                hash.into(),
            ]);
        }
    }
    sink.write(heads).await?;

    // The last week's sessions and the last 72 hours of Hint's event ids.
    let mut sessions = Batch::new(
        "hint_sessions",
        &[
            "key_hash",
            "practice_id",
            "user_id",
            "user_email",
            "user_name",
            "roles",
            "access_context",
            "patient_id",
            "interaction_id",
            "access_token_sealed",
            "created_at",
            "last_seen_at",
            "expires_at",
        ],
    );
    let mut events = Batch::new(
        "inbound_events",
        &["practice_id", "source", "event_key", "received_at"],
    );
    {
        for p in 0..plan.practices {
            year::week(&w, &plan, p, &plan.practice(p), &mut sessions, &mut events);
        }
    }
    let (session_rows, event_rows) = (sessions.rows.len(), events.rows.len());
    sink.write(sessions).await?;
    sink.write(events).await?;
    sink.execute(if postgres {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    })
    .await?;
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "seeded {} practices, {visits_written} visits, {entries_written} trail entries, {session_rows} sessions, \
         {event_rows} Hint event ids in {seconds:.0} s",
        plan.practices
    );
    if let Sink::Postgres(conn) = &mut sink {
        for (table, rows) in [
            ("visits", visits_written),
            ("audit_events", entries_written),
        ] {
            let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                .bind(table)
                .fetch_one(&mut *conn)
                .await?;
            println!(
                "{table}: {:.0} MiB with its indexes, {:.0} bytes a row",
                bytes as f64 / 1048576.0,
                bytes as f64 / rows.max(1) as f64
            );
        }
    }
    Ok(())
}
