//! `spawn_app()`: a fresh database (SQLite, or PostgreSQL with `TEST_DATABASE_URL`), sandbox
//! Hint and the four sandbox partners on their own loopback sockets, and the real app built by
//! `Application::build` on port 0. The job queue runs when a test says so (`run_jobs`).
//! Pages are read parsed (`Page`). Quiet unless `TEST_LOG`.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use std::ops::{Deref, DerefMut};

use chartbridge::{
    Application, Settings,
    config::{ConfigArgs, DatabaseSettings, SecretKey},
    crypto::sign_hmac_sha256,
    partners::{PartnerArgs, PartnerSettings},
    upstream::guarded::{HostLookup, LookupHost},
    visits::{AppState, StoredVisit, VISIT_COLUMNS, Visit},
};
use chartbridge_sandbox::{
    FakePartner, Partners, Practice,
    hint::{SandboxHint, SandboxHintConfig},
};
use reqwest::redirect::Policy;
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing_subscriber::fmt::MakeWriter;

/// Reads `/metrics` of a test app.
pub const METRICS_TOKEN: &str = "test-metrics-token-0001";
pub const WEBHOOK_SECRET: &str = "test-hint-webhook-secret-000001";
pub const PARTNER_API_KEY: &str = "test-partner-api-key";
pub const PRODUCT_ID: &str = "ppro-chartbridge-test";
pub const TIEP_HOOK_SECRET: &str = chartbridge_sandbox::tiep::HOOK_SECRET;
pub const MEDIQUO_SIGNATURE: &str = chartbridge_sandbox::mediquo::SIGNATURE;
pub const HCW_SSO_SECRET: &str = chartbridge_sandbox::hcw::SSO_SECRET;

/// Everything logged while `CAPTURING` is on (the logging test reads it).
pub static CAPTURED: LazyLock<Captured> = LazyLock::new(Captured::default);
pub static CAPTURING: AtomicBool = AtomicBool::new(false);

/// A log sink in memory.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One global subscriber for the whole test binary (thread-local ones race with other tests'
/// threads over callsite interest): a JSON capture layer, on only while `CAPTURING`, and with
/// `TEST_LOG` set, readable logs on stdout.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    use tracing_subscriber::{filter, fmt, prelude::*};
    let capture = fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(CAPTURED.clone())
        .with_filter(filter::dynamic_filter_fn(|meta, _| {
            // The tests' own HTML parser (scraper) reads pages aloud at DEBUG: not the app's.
            let test_side = ["html5ever", "markup5ever", "selectors"]
                .iter()
                .any(|t| meta.target().starts_with(t));
            CAPTURING.load(Ordering::Relaxed)
                && *meta.level() <= tracing::Level::DEBUG
                && !test_side
        }));
    let stdout = std::env::var("TEST_LOG")
        .is_ok()
        .then(|| fmt::layer().with_filter(filter::EnvFilter::new("debug,sqlx=warn")));
    tracing_subscriber::registry()
        .with(capture)
        .with(stdout)
        .init();
});

pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub hint: SandboxHint,
    /// Every sandbox partner (`app.tiep`, `app.hcw`… read through).
    pub partners: Partners,
    /// Follows no redirects, like a test that wants to see them.
    pub http: reqwest::Client,
    config: Config,
    server: JoinHandle<anyhow::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The test's own database (SQLite file, or a fresh PostgreSQL database).
    pub database: TestDatabase,
    /// What host names resolve to for the app's guarded calls.
    pub dns: Dns,
}

/// The name lookup the app's guarded client uses in tests: a table the test fills (no test
/// asks a real resolver). Unknown names do not resolve.
#[derive(Clone, Default)]
pub struct Dns(Arc<Mutex<HashMap<String, Vec<IpAddr>>>>);

impl Dns {
    /// `name` resolves to `addresses` from now on.
    pub fn set(&self, name: &str, addresses: &[&str]) {
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        self.0
            .lock()
            .unwrap()
            .insert(name.to_lowercase(), addresses);
    }
}

impl LookupHost for Dns {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let found = self.0.lock().unwrap().get(&host.to_lowercase()).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
        })
    }
}

/// A partner delivery kept for review, as stored.
pub struct Kept {
    pub id: String,
    pub partner: String,
    /// Why it matched nothing.
    pub reason: String,
}

/// One practice in sandbox Hint, installed in the app.
pub struct TestPractice {
    pub id: String,
    pub admin: String,
    pub clinician: String,
    pub patients: Vec<String>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app's settings and its partners' (`config.partners.tiep…`); the app's own read
/// through (`config.jobs…`).
#[derive(Clone)]
pub struct Config {
    pub app: Settings,
    pub partners: PartnerSettings,
}

impl Deref for Config {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.app
    }
}

impl DerefMut for Config {
    fn deref_mut(&mut self) -> &mut Settings {
        &mut self.app
    }
}

/// Like `spawn_app`, letting the test adjust settings first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    LazyLock::force(&TRACING);
    let hint = SandboxHint::start(
        SandboxHintConfig {
            webhook_secret: WEBHOOK_SECRET.into(),
            partner_api_key: PARTNER_API_KEY.into(),
            product_id: PRODUCT_ID.into(),
            rate_limit_per_second: 1000,
        },
        0,
    )
    .await
    .expect("sandbox hint starts");
    let fakes = Partners::start(0)
        .await
        .expect("the sandbox partners start");
    let database = test_database().await;
    let (_, secret_key) = SecretKey::generate();
    let mut settings = Settings::from_args(ConfigArgs {
        hint_api_url: hint.base_url().to_string(),
        hint_api_key: Some(PARTNER_API_KEY.into()),
        hint_partner_id: None,
        hint_product_id: Some(PRODUCT_ID.into()),
        hint_webhook_secret: Some(WEBHOOK_SECRET.into()),
        database_url: None,
        port: 0,
        bind: "127.0.0.1".into(),
        public_url: None,
        secret_key: Some(secret_key),
        frame_ancestors: "https://app.hint.com https://*.hint.com".into(),
        workers: 4,
        // The sandbox's HCW@Home is on loopback: an address no practice admin may enter live.
        outbound_allow: "127.0.0.0/8, ::1".into(),
        trusted_proxies: String::new(),
        rate_limits: String::new(),
        activate_on_install: true,
        metrics_token: Some(METRICS_TOKEN.into()),
    })
    .expect("test settings are valid");
    let mut partners = PartnerSettings::from_args(
        PartnerArgs::from_flags(fakes.app_flags()).expect("the sandbox's flags are Chartbridge's"),
    )
    .expect("test partner settings are valid");
    settings.database = database.settings.clone();
    // Several instances share PostgreSQL: count Hint's budget there (as production does).
    settings.hint.shared_budget = matches!(database.settings, DatabaseSettings::Url(_));
    settings.http_timeout = Duration::from_millis(1500);
    settings.jobs.poll_interval = Duration::from_millis(50);
    settings.jobs.base_backoff = Duration::from_millis(100);
    settings.jobs.max_backoff = Duration::from_millis(500);
    settings.jobs.lease = Duration::from_secs(3);
    settings.jobs.max_attempts = 8;
    settings.jobs.shutdown_grace = Duration::from_secs(2);
    // The queue runs when a test says so (`run_jobs`); tests of the runner itself turn it on.
    settings.jobs.run_in_background = false;
    settings.hint.rate_limit_backoff = Duration::from_millis(50);
    settings.hint.failure_backoff = Duration::from_millis(50);
    let dns = Dns::default();
    // A name a test may save: loopback (allowed here), where nothing answers https, so the
    // connection test of a save reaches nothing and no test ever calls a public address.
    dns.set("hcw.example.org", &["127.0.0.1"]);
    settings.outbound.lookup = HostLookup(Arc::new(dns.clone()));
    partners.tiep.poll_after = Duration::from_secs(3600);
    partners.hcw.poll_every = Duration::from_secs(3600);
    partners.haidy.poll_every = Duration::from_secs(3600);
    let mut config = Config {
        app: settings,
        partners,
    };
    adjust(&mut config);
    start(config, hint, fakes, database, dns).await
}

async fn start(
    config: Config,
    hint: SandboxHint,
    partners: Partners,
    database: TestDatabase,
    dns: Dns,
) -> TestApp {
    let app = Application::build(config.app.clone(), config.partners.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    hint.set_app_url(url::Url::parse(&address).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // A browser on our pages: its POSTs say they come from our origin.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::ORIGIN,
            address.parse().unwrap(),
        )]))
        .build()
        .unwrap();
    TestApp {
        address,
        state,
        hint,
        partners,
        http,
        config,
        server,
        stop: Some(stop),
        database,
        dns,
    }
}

/// A test's own database: an SQLite file, or, when `TEST_DATABASE_URL` names a PostgreSQL
/// server, a new database on it. Removed once the last handle to it is dropped (the test has
/// ended), so a run of the suite leaves neither files nor databases behind.
#[derive(Clone)]
pub struct TestDatabase(Arc<OwnedDatabase>);

pub struct OwnedDatabase {
    pub settings: DatabaseSettings,
    /// The server's URL it was created through (PostgreSQL), and its name there.
    created_on: Option<(String, String)>,
}

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

async fn test_database() -> TestDatabase {
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
            OwnedDatabase {
                settings: DatabaseSettings::Url(url.to_string().into()),
                created_on: Some((admin_url, name)),
            }
        }
        _ => OwnedDatabase {
            settings: DatabaseSettings::Sqlite(std::env::temp_dir().join(format!("{name}.sqlite"))),
            created_on: None,
        },
    };
    TestDatabase(Arc::new(owned))
}

/// An instance started by [`TestApp::spawn_instance`].
pub struct Instance {
    pub address: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    /// Ends it at once, mid-flight, as `kill -9` would: no shutdown, leases left to run out.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApp {
    /// Runs the `chartbridge` binary with `args` on this app's database (as an operator would
    /// beside it); answers its exit status and what it printed (stdout, then stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String) {
        self.cli_with(args, &[]).await
    }

    /// Like [`TestApp::cli`], with more of the environment set (`env`). The binary runs beside
    /// the app (which keeps serving meanwhile: the command may call it).
    pub async fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        use secrecy::ExposeSecret;
        let url = match &self.database.settings {
            DatabaseSettings::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseSettings::Url(url) => url.expose_secret().to_string(),
        };
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chartbridge"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("the chartbridge binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }

    /// Kills the app mid-flight (server and workers, no graceful shutdown) and starts a new one
    /// on the same database and port, as a crash and restart would.
    pub async fn crash_and_restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like `crash_and_restart`, with the settings adjusted first (an operator's change).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        self.server.abort();
        let _ = self.server.await;
        // The same address again: the listener died with the server task.
        let port: u16 = self.address.rsplit(':').next().unwrap().parse().unwrap();
        self.config.port = port;
        self.config.public_url = Some(url::Url::parse(&self.address).unwrap());
        adjust(&mut self.config);
        tokio::time::sleep(Duration::from_millis(100)).await;
        start(
            self.config,
            self.hint,
            self.partners,
            self.database,
            self.dns,
        )
        .await
    }

    /// A second instance on the same database (as several instances share PostgreSQL);
    /// answers its base URL. It stops when the test ends.
    pub async fn another_instance(&self) -> String {
        let mut config = self.config.clone();
        // Its own port; the public URL all instances share (as behind a load balancer).
        config.port = 0;
        config.public_url = Some(url::Url::parse(&self.address).unwrap());
        let app = Application::build(config.app, config.partners)
            .await
            .expect("second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        address
    }

    /// Another instance on the same database, with its own job runner (as Hint's hosting runs
    /// several behind one address); `adjust` its settings first. Killed with [`Instance::kill`]
    /// or when the test ends.
    pub async fn spawn_instance(&self, adjust: impl FnOnce(&mut Config)) -> Instance {
        let mut config = self.config.clone();
        config.port = 0;
        config.public_url = Some(url::Url::parse(&self.address).unwrap());
        adjust(&mut config);
        let app = Application::build(config.app, config.partners)
            .await
            .expect("the instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let task = tokio::spawn(app.run_until_stopped(std::future::pending()));
        Instance { address, task }
    }

    /// Asks the app to shut down gracefully and waits until it has.
    pub async fn stop_gracefully(mut self) -> AppState {
        let _ = self.stop.take().expect("running").send(());
        self.server
            .await
            .expect("server task")
            .expect("clean shutdown");
        self.state
    }

    /// A practice with three patients, installed through Instant On.
    pub async fn new_practice(&self, name: &str) -> TestPractice {
        let id = self.hint.add_practice(name);
        let patients = vec![
            self.hint
                .add_patient(&id, "Ava", "Thompson", "1984-03-12", "female"),
            self.hint
                .add_patient(&id, "Liam", "Carter", "1979-11-02", "male"),
            self.hint
                .add_patient(&id, "Riley", "Morgan", "1989-12-01", "unknown"),
        ];
        let status = self.hint.install(&id).await.expect("install runs");
        assert_eq!(status, 200, "Instant On should succeed");
        // The install starts the practice's patient index: read it now, as the app's own
        // runner would at once.
        self.run_jobs().await;
        TestPractice {
            admin: self.hint.user_with_role(&id, "admin").unwrap(),
            clinician: self.hint.user_with_role(&id, "clinician").unwrap(),
            id,
            patients,
        }
    }

    /// A patient added in Hint after the install; Hint tells the app (`patient.created`), as
    /// it does live. Answers the patient's id.
    pub async fn add_patient(
        &self,
        practice_id: &str,
        first: &str,
        last: &str,
        dob: &str,
        sex: &str,
    ) -> String {
        let id = self.hint.add_patient(practice_id, first, last, dob, sex);
        let object = self.hint.patient_json(&id).expect("the patient exists");
        let told = self
            .hint
            .send_event("patient.created", practice_id, object)
            .await
            .expect("the event is sent");
        assert_eq!(told, 200, "the app takes patient.created");
        id
    }

    /// Waits (up to `limit`) until Hint holds every visit of `visits` (patient, visit id)
    /// signed, then checks each is held exactly once: nothing lost, nothing doubled.
    pub async fn wait_each_signed_once(&self, limit: Duration, visits: &[(String, String)]) {
        let signed = |patient: &str, id: &str| {
            self.hint
                .interactions_for(patient)
                .iter()
                .any(|i| i.integration_record_id.as_deref() == Some(id) && i.status == "signed")
        };
        eventually(limit, "every visit signed in Hint", || async {
            visits.iter().all(|(patient, id)| signed(patient, id))
        })
        .await;
        for (patient, id) in visits {
            let held = self
                .hint
                .interactions_for(patient)
                .into_iter()
                .filter(|i| i.integration_record_id.as_deref() == Some(id.as_str()))
                .count();
            assert_eq!(held, 1, "visit {id} is held once");
        }
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

    /// Starts a Tiep visit for `patient` (303 expected) and answers its id.
    pub async fn started_visit_id(&self, practice_id: &str, key: &str, patient: &str) -> String {
        let before = self.visit_ids(practice_id).await;
        assert_eq!(self.start_visit(key, patient).await.status(), 303);
        self.visit_since(practice_id, &before).await
    }

    /// A session key from a real signed handshake by sandbox Hint.
    pub async fn session(&self, user_id: &str, patient_id: Option<&str>) -> String {
        self.hint
            .handshake(user_id, patient_id, None)
            .await
            .expect("handshake succeeds")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// GET a surface with the key in the query, as Hint's iframe does.
    pub async fn surface(&self, surface: &str, key: &str) -> reqwest::Response {
        self.get(&format!("/hint/{surface}?session_key={key}"))
            .await
    }

    /// A surface as Hint's iframe loads it, parsed; it must answer 200.
    pub async fn page(&self, surface: &str, key: &str) -> Page {
        let (status, page) = Page::of(self.surface(surface, key).await).await;
        assert_eq!(status, 200, "/hint/{surface} answers");
        page
    }

    /// An htmx-style GET with the key in the header.
    pub async fn htmx_get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .header("x-hint-session-key", key)
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
    }

    /// Posts as htmx does from one of our pages: the key in the header, no body.
    pub async fn htmx_post(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("x-hint-session-key", key)
            .header("hx-request", "true")
            .header("origin", &self.address)
            .send()
            .await
            .unwrap()
    }

    /// Posts a form from one of our pages: the key in its hidden `session_key` field.
    pub async fn post_form(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut keyed = vec![("session_key", key)];
        keyed.extend_from_slice(form);
        self.http
            .post(format!("{}{path}", self.address))
            .form(&keyed)
            .send()
            .await
            .unwrap()
    }

    /// Posts a raw body to the handshake with the given signature header.
    pub async fn handshake_raw(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hint/handshake", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("x-hint-signature", s);
        }
        request.send().await.unwrap()
    }

    /// Connects `fake` for a practice as its admin would: the fake readies its side and the
    /// admin saves the fields it answers. Answers those fields.
    pub async fn connect(
        &self,
        practice: &TestPractice,
        fake: &dyn FakePartner,
    ) -> Vec<(&'static str, String)> {
        let (user_emails, patients) = {
            let world = self.hint.world();
            let emails: Vec<String> = world
                .users
                .iter()
                .filter(|u| u.practice_id == practice.id)
                .map(|u| u.email.clone())
                .collect();
            let patients: Vec<(String, String)> = world
                .patients
                .iter()
                .filter(|p| p.practice_id == practice.id)
                .map(|p| (p.id.clone(), format!("{} {}", p.first_name, p.last_name)))
                .collect();
            (emails, patients)
        };
        let app_url = url::Url::parse(&self.address).unwrap();
        let fields = fake.connect(&Practice {
            id: &practice.id,
            name: &practice.id,
            app_url: &app_url,
            user_emails: &user_emails,
            patients: &patients,
        });
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let saved = self.save_settings(practice, fake.id(), &form).await;
        assert_eq!(saved.status(), 200, "saving the {} settings", fake.id());
        fields
    }

    /// Tiep set up for a practice; answers the facility's API key.
    pub async fn setup_tiep(&self, practice: &TestPractice) -> String {
        let fields = self.connect(practice, &self.partners.tiep).await;
        field(&fields, "api_key")
    }

    /// MediQuo set up for a practice; answers the sandbox integration's id.
    pub async fn setup_mediquo(&self, practice: &TestPractice) -> String {
        self.connect(practice, &self.partners.mediquo).await;
        self.mediquo
            .integration_of(&practice.id)
            .expect("the practice's integration")
    }

    /// HCW@Home set up for a practice, routed to the clinician (`queue: None`) or to `queue`;
    /// answers the service account's email.
    pub async fn setup_hcw(&self, practice: &TestPractice, queue: Option<&str>) -> String {
        let fields = self.connect(practice, &self.partners.hcw).await;
        if let Some(queue) = queue {
            let mut routed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            routed.retain(|(k, _)| !["routing", "queue"].contains(k));
            routed.extend([("routing", "queue"), ("queue", queue)]);
            let saved = self.save_settings(practice, "hcw", &routed).await;
            assert_eq!(saved.status(), 200, "routing HCW invitations to {queue}");
        }
        field(&fields, "service_email")
    }

    /// Haidy set up for a practice; answers the API token.
    pub async fn setup_haidy(&self, practice: &TestPractice) -> String {
        let fields = self.connect(practice, &self.partners.haidy).await;
        field(&fields, "api_token")
    }

    /// A practice with Tiep set up and one visit started by its clinician for its first patient;
    /// answers the practice, the clinician's session key and the visit.
    pub async fn open_tiep_visit(&self, name: &str) -> (TestPractice, String, Visit) {
        let practice = self.new_practice(name).await;
        self.setup_tiep(&practice).await;
        let key = self.session(&practice.clinician, None).await;
        assert_eq!(
            self.start_visit(&key, &practice.patients[0]).await.status(),
            303
        );
        let visit = self.only_visit(&practice.id).await;
        (practice, key, visit)
    }

    /// A practice with Tiep set up and one open Tiep visit for each of its three patients.
    pub async fn open_tiep_visit_per_patient(&self, name: &str) -> (TestPractice, Vec<Visit>) {
        let practice = self.new_practice(name).await;
        self.setup_tiep(&practice).await;
        let key = self.session(&practice.clinician, None).await;
        for patient in &practice.patients {
            assert_eq!(self.start_visit(&key, patient).await.status(), 303);
        }
        let visits = self.visits_of(&practice.id).await;
        assert_eq!(visits.len(), 3);
        (practice, visits)
    }

    /// Sends one file to Haidy for `patient` as the launch form does (the key in the header,
    /// as htmx sends it); answers the launch's response.
    pub async fn launch_haidy(
        &self,
        key: &str,
        patient: &str,
        file: (&str, &[u8], &str),
    ) -> reqwest::Response {
        let (name, bytes, content_type) = file;
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(name.to_string())
            .mime_str(content_type)
            .unwrap();
        let form = reqwest::multipart::Form::new()
            .text("patient_id", patient.to_string())
            .text("haidy_email", "casey@haidy.example")
            .part("files", part);
        self.http
            .post(format!("{}/hint/partners/haidy/launch", self.address))
            .header("x-hint-session-key", key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Starts an HCW@Home video visit for `patient` (English, routed as set up); answers the
    /// visit.
    pub async fn launch_hcw(&self, practice_id: &str, key: &str, patient: &str) -> Visit {
        let launched = self
            .post_form(
                "/hint/partners/hcw/launch",
                key,
                &[("patient_id", patient), ("language", "en")],
            )
            .await;
        assert_eq!(launched.status(), 303, "the invite is created");
        self.visits_of(practice_id)
            .await
            .into_iter()
            .find(|v| v.partner == "hcw")
            .expect("the HCW@Home visit")
    }

    /// The doctor's SSO sign-in into HCW@Home for a visit, as the visit page's button does;
    /// answers where the browser is sent.
    pub async fn hcw_sign_in(&self, key: &str, visit: &Visit) -> String {
        let signed_in = self
            .post_form(
                &format!("/hint/partners/hcw/visits/{}/sign-in", visit.id),
                key,
                &[],
            )
            .await;
        assert_eq!(signed_in.status(), 303, "the sign-in is minted");
        signed_in.headers()["location"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Starts a visit as a clinician; answers the redirect location (the partner URL).
    pub async fn start_visit(&self, key: &str, patient_id: &str) -> reqwest::Response {
        self.post_form(
            "/hint/visits",
            key,
            &[("patient_id", patient_id), ("partner", "tiep")],
        )
        .await
    }

    /// Opens the Tiep launch URL and saves the report with `answers`, as the doctor would.
    pub async fn save_tiep_report(
        &self,
        launch_url: &str,
        answers: &[(&str, &str)],
    ) -> reqwest::Response {
        let (status, page) = Page::of(self.http.get(launch_url).send().await.unwrap()).await;
        assert_eq!(status, 200, "the Tiep page opens");
        let action = page
            .attr("form", "action")
            .expect("the Tiep page has a form");
        let secret = page
            .attr("input[name=page_secret]", "value")
            .expect("the form has its secret");
        let mut form = vec![("page_secret", secret.as_str())];
        form.extend_from_slice(answers);
        let url = url::Url::parse(launch_url).unwrap().join(&action).unwrap();
        self.http.post(url).form(&form).send().await.unwrap()
    }

    /// Posts a Tiep report signed with `secret` to the practice's webhook.
    pub async fn post_tiep_webhook(
        &self,
        practice_id: &str,
        body: &Value,
        secret: &str,
    ) -> reqwest::Response {
        let body = body.to_string();
        self.http
            .post(format!("{}/webhooks/tiep/{practice_id}", self.address))
            .header("content-type", "application/json")
            .header(
                "x-signature-256",
                sign_hmac_sha256(secret.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs every due job now, in the test's task; answers how many ran. Results a burst left
    /// as receipts are filed first (the result writer does it in the background, within
    /// moments: their write-backs are jobs only then).
    pub async fn run_jobs(&self) -> usize {
        eventually(Duration::from_secs(10), "result receipts filed", || async {
            chartbridge::visits::receipts_waiting(&self.state.db)
                .await
                .expect("receipts counted")
                == 0
        })
        .await;
        self.state
            .job_runner()
            .run_until_empty()
            .await
            .expect("the queue runs")
    }

    /// Sandbox Hint holds an interaction with `status` for `patient_id`: after running the
    /// queue, or, with the job loop on, once it has got there.
    pub async fn wait_for_interaction(&self, patient_id: &str, status: &str) {
        let holds = || {
            self.hint
                .interactions_for(patient_id)
                .iter()
                .any(|i| i.status == status)
        };
        if !self.config.jobs.run_in_background {
            self.run_jobs().await;
            assert!(
                holds(),
                "Hint holds no {status} interaction for {patient_id}"
            );
            return;
        }
        eventually(
            Duration::from_secs(20),
            &format!("a {status} interaction in Hint"),
            || async { holds() },
        )
        .await;
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

    /// Saves one partner's settings section as the practice's admin; answers the response.
    pub async fn save_settings(
        &self,
        practice: &TestPractice,
        partner: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let admin = self.session(&practice.admin, None).await;
        self.post_form(&format!("/hint/settings/{partner}"), &admin, fields)
            .await
    }
}

/// Polls `check` until it is true (or fails the test after `limit`).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A signed minimal handshake body.
pub fn sign(body: &[u8]) -> String {
    sign_hmac_sha256(WEBHOOK_SECRET.as_bytes(), body)
}

/// The value of `name` among a settings section's fields.
fn field(fields: &[(&'static str, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} field"))
}

impl Deref for TestApp {
    type Target = Partners;
    fn deref(&self) -> &Partners {
        &self.partners
    }
}

/// A client on `source` (any 127.x address: loopback holds the whole range).
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A visit's stored result, as JSON.
pub fn stored_result(visit: &Visit) -> Value {
    serde_json::from_str(visit.result.as_deref().expect("the visit has a result"))
        .expect("the result is JSON")
}

/// An HTML answer, parsed: assertions read what a browser would show, not the raw markup.
pub struct Page {
    html: scraper::Html,
    source: String,
}

impl Page {
    pub fn parse(html: &str) -> Self {
        Self {
            html: scraper::Html::parse_document(html),
            source: html.to_string(),
        }
    }

    /// The markup as sent (for what must never be in it at all, like a secret).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The response's status and its page.
    pub async fn of(response: reqwest::Response) -> (reqwest::StatusCode, Page) {
        let status = response.status();
        (status, Page::parse(&response.text().await.unwrap()))
    }

    fn select(&self, selector: &str) -> Vec<scraper::ElementRef<'_>> {
        let selector = scraper::Selector::parse(selector).expect("a valid CSS selector");
        self.html.select(&selector).collect()
    }

    /// All the text of the page, entities decoded, white space folded.
    pub fn text(&self) -> String {
        fold(self.html.root_element().text())
    }

    /// The text of each element `selector` matches.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        self.select(selector)
            .into_iter()
            .map(|e| fold(e.text()))
            .collect()
    }

    /// The text of the first element `selector` matches (empty when none does).
    pub fn text_of(&self, selector: &str) -> String {
        self.texts(selector).into_iter().next().unwrap_or_default()
    }

    pub fn has(&self, selector: &str) -> bool {
        !self.select(selector).is_empty()
    }

    pub fn count(&self, selector: &str) -> usize {
        self.select(selector).len()
    }

    /// Attribute `name` of each element `selector` matches.
    pub fn attrs(&self, selector: &str, name: &str) -> Vec<String> {
        self.select(selector)
            .into_iter()
            .filter_map(|e| e.value().attr(name).map(String::from))
            .collect()
    }

    /// Attribute `name` of the first element `selector` matches.
    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        self.attrs(selector, name).into_iter().next()
    }
}

fn fold<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
