//! Spawning a test app: its settings (`Config`), `spawn_app`, the `TestApp` it answers, and
//! the name lookup (`Dns`) its guarded calls use.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    ops::{Deref, DerefMut},
    pin::Pin,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use chartbridge::{
    Application, Settings,
    config::{ConfigArgs, DatabaseSettings, SecretKey},
    partners::{Pace, PartnerArgs, PartnerSettings},
    upstream::guarded::{HostLookup, LookupHost},
    visits::AppState,
};
use chartbridge_sandbox::{
    Partners,
    hint::{SandboxHint, SandboxHintConfig},
};
use reqwest::redirect::Policy;
use tokio::task::JoinHandle;

use super::{
    METRICS_TOKEN, PARTNER_API_KEY, PRODUCT_ID, WEBHOOK_SECRET,
    database::{TestDatabase, test_database},
    logs::TRACING,
};

pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub hint: SandboxHint,
    /// Every sandbox partner (`app.tiep`, `app.hcw`… read through).
    pub partners: Partners,
    /// Follows no redirects, like a test that wants to see them.
    pub http: reqwest::Client,
    pub(super) config: Config,
    pub(super) server: JoinHandle<anyhow::Result<()>>,
    pub(super) stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The test's own database (SQLite file, or a fresh PostgreSQL database).
    pub database: TestDatabase,
    /// What host names resolve to for the app's guarded calls.
    pub dns: Dns,
}

impl Deref for TestApp {
    type Target = Partners;
    fn deref(&self) -> &Partners {
        &self.partners
    }
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
        purge_after_days: 30,
        activate_on_install: true,
        metrics_token: Some(METRICS_TOKEN.into()),
        // A test that stops the app stops it at once, unless it tests the drain.
        drain_delay: 0,
        audit_checkpoints: None,
        keys: Default::default(),
    })
    .expect("test settings are valid");
    let partners = PartnerSettings::from_args(
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
    let partners = partners.paced(Pace::WhenAsked);
    let mut config = Config {
        app: settings,
        partners,
    };
    adjust(&mut config);
    start(config, hint, fakes, database, dns).await
}

pub(super) async fn start(
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
