//! Load generator for `benches/load.sh`: drives a running `chartbridge demo` (release build) on
//! loopback and prints throughput and latency for signed handshakes, a framed page with a
//! session, signed Tiep webhooks, a visit's result page (each view an audit entry) and MediQuo
//! consultations; then checks in the database that nothing was lost.
//!
//! Env: APP_URL, HINT_URL (sandbox Hint), DATABASE (the demo's database: `sqlite:…` or
//! `postgres://…`), SECONDS (per phase), CONCURRENCY, WEBHOOKS (distinct visits to complete),
//! CONSULTATIONS (MediQuo deliveries).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chartbridge::crypto::sign_hmac_sha256;
use sqlx::{Row, any::AnyPoolOptions};

const HINT_SECRET: &str = "sandbox-hint-webhook-secret-0001";
const TIEP_SECRET: &str = chartbridge_sandbox::tiep::HOOK_SECRET;
const MEDIQUO_SIGNATURE: &str = chartbridge_sandbox::mediquo::SIGNATURE;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Report {
    name: &'static str,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn print(&mut self) {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies_us.len() as f64 * p) as usize)
                .min(self.latencies_us.len().saturating_sub(1));
            self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        println!(
            "{:<22} {:>8} ok {:>5} failed {:>9.0} req/s   p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
            self.name,
            self.ok,
            self.failed,
            self.ok as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// Runs `make(i)` from `concurrency` tasks until `limit` requests or `seconds` pass.
async fn run<F, Fut>(
    name: &'static str,
    concurrency: usize,
    seconds: u64,
    limit: usize,
    make: F,
) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, next, failed, latencies) = (
            make.clone(),
            next.clone(),
            failed.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let t = Instant::now();
                if make(i).await {
                    mine.push(t.elapsed().as_micros() as u64);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Report {
        name,
        ok: latencies_us.len(),
        failed: failed.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies_us,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = env("APP_URL", "http://127.0.0.1:18081");
    let hint = env("HINT_URL", "http://127.0.0.1:18080");
    let database = env("DATABASE", "sqlite:data/bench/demo.sqlite");
    let seconds: u64 = env("SECONDS", "5").parse()?;
    let concurrency: usize = env("CONCURRENCY", "32").parse()?;
    let webhooks: usize = env("WEBHOOKS", "20000").parse()?;
    let consultations: usize = env("CONSULTATIONS", "5000").parse()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    // 1. Signed handshakes (fresh timestamp, the sandbox's secret).
    let h = http.clone();
    let url = format!("{app}/hint/handshake");
    let mut report = run("signed handshakes", concurrency, seconds, usize::MAX, move |i| {
        let (h, url) = (h.clone(), url.clone());
        async move {
            let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
            let body = format!(
                r#"{{"timestamp":"{now}","user":{{"id":"user-bench-{i}","email":"b@x.y","partner_roles":["clinician"]}},"practice":{{"id":"pra-bench","name":"Bench"}}}}"#
            );
            let signature = sign_hmac_sha256(HINT_SECRET.as_bytes(), body.as_bytes());
            h.post(&url).header("x-hint-signature", signature).header("content-type", "application/json").body(body).send().await.is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    report.print();

    // 2. A framed page with a session (the sandbox Hint's own handshake gives the key).
    let embed = http
        .get(format!("{hint}/embed/core_page?as=clinician"))
        .send()
        .await?
        .text()
        .await?;
    let key = embed
        .split("session_key=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    for (name, clients) in [("core_page, 4 clients", 4), ("core_page, 16 clients", 16)] {
        let h = http.clone();
        let url = format!("{app}/hint/core_page?session_key={key}");
        let mut report = run(name, clients, seconds, usize::MAX, move |_| {
            let (h, url) = (h.clone(), url.clone());
            async move { h.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        report.print();
    }

    // 3. Signed Tiep webhooks, one per distinct open visit (the fixture writes the visits).
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&database)
        .await?;
    let practice: String = sqlx::query("SELECT id FROM practices WHERE id <> 'pra-bench' LIMIT 1")
        .fetch_one(&pool)
        .await?
        .try_get("id")?;
    let launch =
        serde_json::json!({"form": chartbridge::partners::tiep::default_form()}).to_string();
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(webhooks);
    for i in 0..webhooks {
        let id = format!("vis_bench_{i:06}");
        sqlx::query(
            "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, launch, created_at, updated_at) \
             VALUES ($1, $2, 'pat-bench', 'Bench Patient', 'user-bench', 'Bench', 'tiep', 'in_progress', $3, 0, 0)",
        )
        .bind(&id)
        .bind(&practice)
        .bind(&launch)
        .execute(&mut *tx)
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    let ids = Arc::new(ids);
    let dup_ids = ids.clone();
    let h = http.clone();
    let url = format!("{app}/webhooks/tiep/{practice}");
    let mut report = run(
        "signed Tiep webhooks",
        concurrency,
        120,
        webhooks,
        move |i| {
            let (h, url, ids) = (h.clone(), url.clone(), ids.clone());
            async move { post_signed(&h, &url, tiep_report(&ids[i])).await }
        },
    )
    .await;
    report.print();
    let completed = stored_then_filed(
        &pool,
        report.ok,
        "SELECT (SELECT COUNT(*) FROM visits WHERE id LIKE 'vis_bench_%' AND state = 'completed') \
         + (SELECT COUNT(*) FROM result_receipts WHERE visit_id LIKE 'vis_bench_%') AS n",
        "SELECT COUNT(*) AS n FROM visits WHERE id LIKE 'vis_bench_%' AND state = 'completed'",
    )
    .await?;
    let queued: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM jobs WHERE dedupe_key LIKE 'sync_interaction:vis_bench_%'",
    )
    .fetch_one(&pool)
    .await?
    .try_get("n")?;
    println!(
        "webhook visits completed: {completed}/{webhooks}; write-back jobs queued for them: {queued}"
    );

    // 3b. A visit's page with its result: each opening is written to the audit trail, on its
    //     own transaction, before the page is answered (compare with core_page, which is not).
    for (name, clients) in [
        ("result page, 4 clients", 4),
        ("result page, 16 clients", 16),
    ] {
        let h = http.clone();
        let url =
            format!("{app}/hint/clinical_interaction?visit_id=vis_bench_000000&session_key={key}");
        let mut report = run(name, clients, seconds, usize::MAX, move |_| {
            let (h, url) = (h.clone(), url.clone());
            async move { h.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        report.print();
    }

    // 4. The same reports again (partners retry): answered as duplicates, nothing written.
    let h = http.clone();
    let url = format!("{app}/webhooks/tiep/{practice}");
    let mut report = run(
        "duplicate webhooks",
        concurrency,
        seconds,
        usize::MAX,
        move |i| {
            let (h, url, ids) = (h.clone(), url.clone(), dup_ids.clone());
            async move {
                let body = tiep_report(&ids[i % ids.len()]);
                post_signed(&h, &url, body).await
            }
        },
    )
    .await;
    report.print();

    // 5. MediQuo consultations, each a new completed visit (after a clinician's search loaded
    //    the practice's patients, so no delivery waits on Hint), all checked in the database.
    let found = http
        .get(format!("{app}/hint/patients/search?q=Ava"))
        .header("x-hint-session-key", &key)
        .send()
        .await?
        .text()
        .await?;
    let patient = found
        .split("name=\"patient_id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("the search found no patient"))?
        .to_string();
    let h = http.clone();
    let url = format!("{app}/webhooks/mediquo/{practice}");
    let mut report = run(
        "MediQuo consultations",
        concurrency,
        120,
        consultations,
        move |i| {
            let (h, url, patient) = (h.clone(), url.clone(), patient.clone());
            async move {
                let body = serde_json::json!({"type": "patient_consultation_finished", "occurred_on": 1_700_000_000,
                    "payload": {"consultation": {"id": format!("bench-{i}"), "type": "chat"},
                        "reports": [{"id": format!("r-{i}"), "type": "soap", "content": {"plan": "load test"}}],
                        "patient": {"code": patient}}});
                h.post(&url)
                    .header("x-webhook-signature", MEDIQUO_SIGNATURE)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        },
    )
    .await;
    report.print();
    let stored = stored_then_filed(
        &pool,
        report.ok,
        "SELECT (SELECT COUNT(*) FROM visits WHERE partner = 'mediquo' AND partner_ref LIKE 'consultation:bench-%') \
         + (SELECT COUNT(*) FROM recording_receipts WHERE partner_ref LIKE 'consultation:bench-%') AS n",
        "SELECT COUNT(*) AS n FROM visits WHERE partner = 'mediquo' AND partner_ref LIKE 'consultation:bench-%'",
    )
    .await?;
    println!("MediQuo visits stored: {stored}/{consultations}");
    Ok(())
}

/// A burst is acknowledged from receipts and filed behind it: checks that each of the `ok`
/// deliveries answered 200 is stored (as a receipt or filed: `stored_sql`) right after the run,
/// then waits until each is filed (`filed_sql`); answers how many were filed.
async fn stored_then_filed(
    pool: &sqlx::AnyPool,
    ok: usize,
    stored_sql: &'static str,
    filed_sql: &'static str,
) -> anyhow::Result<i64> {
    let ended = Instant::now();
    let count = |sql: &'static str| async move {
        sqlx::query(sql)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>("n")
    };
    let stored = count(stored_sql).await?;
    anyhow::ensure!(
        stored as usize == ok,
        "a 200 was answered for a delivery that was not stored ({stored} stored, {ok} answered)"
    );
    let mut filed = count(filed_sql).await?;
    while (filed as usize) < ok && ended.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        filed = count(filed_sql).await?;
    }
    println!("filed {} ms after the run", ended.elapsed().as_millis());
    anyhow::ensure!(
        filed as usize == ok,
        "a delivery acknowledged was not filed within two minutes"
    );
    Ok(filed)
}

/// A SIMPLE-type Tiep report for `visit_id`.
fn tiep_report(visit_id: &str) -> String {
    serde_json::json!({"context": {"visit_id": visit_id}, "payload": {"reason": "load test", "pain-level": 3}})
        .to_string()
}

/// Posts `body` signed as sandbox Tiep signs it; true on 200.
async fn post_signed(h: &reqwest::Client, url: &str, body: String) -> bool {
    let signature = sign_hmac_sha256(TIEP_SECRET.as_bytes(), body.as_bytes());
    h.post(url)
        .header("x-signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}
