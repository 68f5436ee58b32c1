//! Configuration from the environment, typed and validated at start.
//!
//! `ConfigArgs` is what clap reads (every field names its variable); `Settings::from_args`
//! validates it into the typed `Settings` the app runs on, failing with the variable's name.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod keys;
mod server;

pub use keys::{KeyArgs, KeySettings};
pub use server::{AddressList, Budget, RateLimitSettings, ServerSettings, TrustedProxies};

use crate::upstream::{address::AddressPolicy, guarded::HostLookup};

/// Raw configuration as read from the environment (or flags). Each partner reads its own
/// (`partners::PartnerArgs`).
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Hint's API base URL.
    #[arg(long, env = "HINT_API_URL", default_value = "https://api.hint.com")]
    pub hint_api_url: String,
    /// Partner-wide Hint API key (only for /api/partner/* and the OAuth code exchange).
    #[arg(long, env = "HINT_API_KEY", hide_env_values = true)]
    pub hint_api_key: Option<String>,
    /// The partner id Hint assigned. One of Hint's reserved variables: accepted, not needed.
    #[arg(long, env = "HINT_PARTNER_ID")]
    pub hint_partner_id: Option<String>,
    /// The product id (`ppro-…`) of this app in Hint.
    #[arg(long, env = "HINT_PRODUCT_ID")]
    pub hint_product_id: Option<String>,
    /// Secret that signs the handshake and Hint's webhooks.
    #[arg(long, env = "HINT_WEBHOOK_SECRET", hide_env_values = true)]
    pub hint_webhook_secret: Option<String>,
    /// Database URL; without it an SQLite file under ./data/ is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "CHARTBRIDGE_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Public base URL of this app, used in links written to Hint and webhook URLs. Without
    /// it, a server listening on a loopback address uses that address (demo, tests).
    #[arg(long, env = "CHARTBRIDGE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Base64 of 32 random bytes; encrypts secrets at rest.
    #[arg(long, env = "CHARTBRIDGE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Origins allowed to frame the app (space separated).
    #[arg(
        long,
        env = "CHARTBRIDGE_FRAME_ANCESTORS",
        default_value = "https://app.hint.com https://*.hint.com"
    )]
    pub frame_ancestors: String,
    /// Number of background jobs run at once.
    #[arg(long, env = "CHARTBRIDGE_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Hosts and ranges Chartbridge may call although a practice admin typed them and they
    /// are not public (comma separated: `10.2.0.0/16, hcw.clinic.internal`). Empty: public
    /// addresses only.
    #[arg(long, env = "CHARTBRIDGE_OUTBOUND_ALLOW", default_value = "")]
    pub outbound_allow: String,
    /// Proxies in front of Chartbridge whose `X-Forwarded-For` names the client (comma
    /// separated addresses or ranges). Empty: the connection's peer is the client.
    #[arg(long, env = "CHARTBRIDGE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Whether an Instant On install activates the integration at once (`true`) or leaves it
    /// pending until Hint sends `integration.activated` (`false`: a practice that must finish
    /// set-up in Hint first).
    #[arg(long, env = "CHARTBRIDGE_ACTIVATE_ON_INSTALL", default_value_t = true, action = clap::ArgAction::Set)]
    pub activate_on_install: bool,
    /// Bearer token that reads `/metrics` (Prometheus). Unset: `/metrics` does not exist.
    #[arg(long, env = "CHARTBRIDGE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Days a practice's data is kept after Hint deactivates Chartbridge for it, before it is
    /// purged (the audit trail is kept). Reactivation within them keeps everything.
    #[arg(long, env = "CHARTBRIDGE_PURGE_AFTER_DAYS", default_value_t = 30)]
    pub purge_after_days: u64,
    /// Per-client budgets of the unauthenticated doors, `door=per_minute/burst` (doors:
    /// handshake, install, webhooks); unnamed doors keep their defaults (300/60, 20/5, 1200/300).
    #[arg(long, env = "CHARTBRIDGE_RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    /// Seconds an instance told to stop (SIGTERM, Ctrl-C) keeps serving with `/readyz` at 503
    /// and `Connection: close` on every answer, before it stops accepting: the time a load
    /// balancer needs to stop sending it work. 0: stop at once.
    #[arg(long, env = "CHARTBRIDGE_DRAIN_DELAY", default_value_t = 5)]
    pub drain_delay: u64,
    /// A file the audit trail's signed checkpoints are appended to (they are logged too); ship
    /// it, or the log, to append-only storage: `chartbridge audit verify --checkpoints` reads
    /// either.
    #[arg(long, env = "CHARTBRIDGE_AUDIT_CHECKPOINTS")]
    pub audit_checkpoints: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Validated settings the application runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: IpAddr,
    pub port: u16,
    pub database: DatabaseSettings,
    /// Where Hint and the partners reach us; `None`: the address the server is bound to
    /// (allowed on loopback only, see `Application::build`).
    pub public_url: Option<Url>,
    /// What seals data at rest and chains the audit trail.
    pub keys: KeySettings,
    /// The audit trail's checkpoints.
    pub audit: AuditSettings,
    pub frame_ancestors: String,
    /// Who may read `/metrics`; `None`: nobody (the route answers 404).
    pub metrics_token: Option<SecretString>,
    pub hint: HintSettings,
    pub jobs: JobSettings,
    pub sessions: SessionSettings,
    /// Timeout applied to every outbound HTTP request.
    pub http_timeout: Duration,
    /// Which admin-entered addresses may be called, and how names are looked up.
    pub outbound: OutboundSettings,
    /// Connection timeouts and caps.
    pub server: ServerSettings,
    /// Per-client budgets of the handshake, Instant On and the webhooks.
    pub rate_limits: RateLimitSettings,
    /// A visit still launching after this long (the app died mid-launch, or the partner never
    /// answered) fails with a reason instead of waiting forever.
    pub launch_timeout: Duration,
    /// When partners' results are acknowledged from a receipt and filed after a burst.
    pub results: ResultSettings,
    /// How long a deactivated practice's data is kept before it is purged.
    pub purge_grace: Duration,
    /// How long an instance reuses opened partner secrets; a secret rotated on another
    /// instance stops being accepted here after at most this long (the new one works at once).
    pub secrets_cache_ttl: Duration,
}

/// Partners' deliveries under a burst (`visits/burst.rs`: visit results and visits that arrive
/// finished): a delivery is acknowledged once it is stored, and filing it (the visit completed
/// or created, its write-back queued, its trail entry) costs several times more than storing
/// it. In a burst, deliveries are stored as receipts and filed once it passes; otherwise they
/// are filed at once.
#[derive(Debug, Clone)]
pub struct ResultSettings {
    /// A batch of at least this many results is a burst (1: every result goes through a
    /// receipt).
    pub receipts_from: usize,
    /// Receipts are filed once no result has come for this long…
    pub file_when_quiet: Duration,
    /// …and, while a burst does not pause, a few at least this often.
    pub file_at_least_every: Duration,
    /// With this many receipts waiting, results are filed at once again: the burst then waits
    /// on the database instead of growing the backlog. High, so that a burst of tens of
    /// seconds is still answered at the receipts' pace (their write-backs wait on Hint's
    /// per-practice budget far longer anyway; docs/performance.md).
    pub max_waiting: usize,
    /// How often an instance that knows of no receipt looks for some (another instance stored
    /// them and died before filing them).
    pub look_for_left: Duration,
}

impl Default for ResultSettings {
    fn default() -> Self {
        Self {
            receipts_from: 8,
            file_when_quiet: Duration::from_millis(5),
            file_at_least_every: Duration::from_secs(1),
            max_waiting: 1_000_000,
            look_for_left: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// An SQLite file (created when missing).
    Sqlite(PathBuf),
    /// Any URL sqlx understands (postgres://…, sqlite://…).
    Url(SecretString),
}

#[derive(Debug, Clone)]
pub struct HintSettings {
    pub api_url: Url,
    pub api_key: SecretString,
    pub product_id: String,
    pub webhook_secret: SecretString,
    /// Most Provider API calls in flight per practice.
    pub max_concurrency_per_practice: usize,
    /// Calls per second per practice we pace ourselves to (Hint allows about 20 per key).
    pub requests_per_second: f64,
    /// How often a 429 is retried in place before the call fails.
    pub rate_limit_retries: u32,
    /// First back-off after a 429; doubles with jitter.
    pub rate_limit_backoff: Duration,
    /// How often a call that may be repeated safely (a read, or a patch to the same fields) is
    /// tried again in place after a 5xx, a timeout or no connection, before the job's back-off.
    pub failure_retries: u32,
    /// First wait before such a retry; doubles with jitter.
    pub failure_backoff: Duration,
    /// Instant On activates the integration (`false`: pending until `integration.activated`).
    pub activate_on_install: bool,
    /// Count each practice's budget in the database, shared by every instance on it (on by
    /// default on PostgreSQL, where several instances run; SQLite serves one instance).
    pub shared_budget: bool,
    /// Longest a call waits for one of the practice's in-flight slots before it gives up
    /// ("Hint is busy"): a clinician is answered, never left to the request timeout.
    pub slot_wait: Duration,
    /// Longest a person waits on Hint within one request, every try and both tokens together:
    /// past it they are told Hint is slow, well before the 30 s request timeout.
    pub user_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub workers: usize,
    /// Whether `serve` runs the job loop. Off, jobs run only when asked
    /// (`JobRunner::run_until_empty`): tests that want the queue's effects at a known moment.
    pub run_in_background: bool,
    /// How often an idle worker looks for due jobs.
    pub poll_interval: Duration,
    /// How long a claimed job is leased before another worker may take it over. The running
    /// worker renews it every third of this, so it bounds how long a dead worker's jobs wait,
    /// not how long a job may run.
    pub lease: Duration,
    /// First retry delay; doubles per attempt with jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: i64,
    /// How long shutdown waits for jobs in flight.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct OutboundSettings {
    /// Beyond public addresses, what the operator allows.
    pub allow: AddressPolicy,
    /// The system's resolver; tests answer from a table.
    pub lookup: HostLookup,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// A handshake timestamp older (or further ahead) than this is refused.
    pub handshake_max_age: Duration,
    /// Live sessions one user may hold; a new one ends the oldest beyond it.
    pub max_per_user: usize,
}

/// Where and how often the audit trail's heads are published as signed checkpoints.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The file they are appended to (they are logged either way).
    pub checkpoints: Option<PathBuf>,
    /// How often the heads that moved are published (and once more at shutdown).
    pub checkpoint_every: Duration,
}

/// The 32-byte key that seals secrets at rest. `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// Parses base64 (standard or URL-safe) of exactly 32 bytes.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(value))
            .map_err(|_| "is not base64".to_string())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must decode to 32 bytes, got {}", b.len()))?;
        Ok(Self(key))
    }

    /// A fresh random key, base64-encoded (for `chartbridge demo` and tests).
    pub fn generate() -> (Self, String) {
        let key: [u8; 32] = rand::random();
        (
            Self(key),
            base64::engine::general_purpose::STANDARD.encode(key),
        )
    }
}

/// A configuration error that names the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn required(value: Option<String>, variable: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError {
            variable,
            problem: "is required but not set".into(),
        }),
    }
}

/// An http(s) URL with a host; the error names the variable.
pub fn parse_url(value: &str, variable: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError {
        variable,
        problem: format!("is not a valid URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError {
            variable,
            problem: "must be an http(s) URL with a host".into(),
        });
    }
    Ok(url)
}

impl Settings {
    /// Validates raw configuration; the error names the variable that is wrong.
    pub fn from_args(args: ConfigArgs) -> Result<Self, ConfigError> {
        let hint_api_url = parse_url(&args.hint_api_url, "HINT_API_URL")?;
        let api_key = required(args.hint_api_key, "HINT_API_KEY")?;
        let product_id = required(args.hint_product_id, "HINT_PRODUCT_ID")?;
        let webhook_secret = required(args.hint_webhook_secret, "HINT_WEBHOOK_SECRET")?;
        if webhook_secret.len() < 16 {
            return Err(ConfigError {
                variable: "HINT_WEBHOOK_SECRET",
                problem: "must be at least 16 characters".into(),
            });
        }
        let public_url = match args.public_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Some(parse_url(&url, "CHARTBRIDGE_PUBLIC_URL")?),
            None => None,
        };
        let keys = KeySettings::from_args(args.secret_key, &args.keys)?;
        let bind = args.bind.parse().map_err(|_| ConfigError {
            variable: "CHARTBRIDGE_BIND",
            problem: "is not an IP address".into(),
        })?;
        let metrics_token = match args.metrics_token.filter(|t| !t.trim().is_empty()) {
            Some(token) if token.len() < 16 => {
                return Err(ConfigError {
                    variable: "CHARTBRIDGE_METRICS_TOKEN",
                    problem: "must be at least 16 characters".into(),
                });
            }
            token => token.map(SecretString::from),
        };
        let frame_ancestors = args.frame_ancestors.trim().to_string();
        if frame_ancestors.is_empty()
            || frame_ancestors
                .chars()
                .any(|c| c == ';' || c == ',' || c.is_control())
        {
            return Err(ConfigError {
                variable: "CHARTBRIDGE_FRAME_ANCESTORS",
                problem: "must be a space-separated list of origins".into(),
            });
        }
        if args.workers == 0 {
            return Err(ConfigError {
                variable: "CHARTBRIDGE_WORKERS",
                problem: "must be at least 1".into(),
            });
        }
        let allow = args.outbound_allow.parse().map_err(|problem| ConfigError {
            variable: "CHARTBRIDGE_OUTBOUND_ALLOW",
            problem,
        })?;
        let trusted_proxies = args
            .trusted_proxies
            .parse()
            .map_err(|problem| ConfigError {
                variable: "CHARTBRIDGE_TRUSTED_PROXIES",
                problem,
            })?;
        let rate_limits = args.rate_limits.parse().map_err(|problem| ConfigError {
            variable: "CHARTBRIDGE_RATE_LIMITS",
            problem,
        })?;
        let database = match args.database_url {
            Some(url) if !url.trim().is_empty() => {
                if !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:"))
                {
                    return Err(ConfigError {
                        variable: "DATABASE_URL",
                        problem: "must start with postgres://, postgresql:// or sqlite:".into(),
                    });
                }
                DatabaseSettings::Url(SecretString::from(url))
            }
            _ => DatabaseSettings::Sqlite(PathBuf::from("data/chartbridge.sqlite")),
        };
        let shared_budget = matches!(&database, DatabaseSettings::Url(url) if !url.expose_secret().starts_with("sqlite:"));
        Ok(Settings {
            bind,
            port: args.port,
            database,
            public_url,
            keys,
            audit: AuditSettings {
                checkpoints: args.audit_checkpoints,
                checkpoint_every: Duration::from_secs(3600),
            },
            frame_ancestors,
            metrics_token,
            hint: HintSettings {
                api_url: hint_api_url,
                api_key: SecretString::from(api_key),
                product_id,
                webhook_secret: SecretString::from(webhook_secret),
                max_concurrency_per_practice: 3,
                requests_per_second: 18.0,
                rate_limit_retries: 4,
                rate_limit_backoff: Duration::from_millis(250),
                failure_retries: 3,
                failure_backoff: Duration::from_millis(300),
                activate_on_install: args.activate_on_install,
                shared_budget,
                slot_wait: Duration::from_secs(10),
                user_wait: Duration::from_secs(20),
            },
            jobs: JobSettings {
                workers: args.workers,
                run_in_background: true,
                poll_interval: Duration::from_millis(500),
                lease: Duration::from_secs(12),
                base_backoff: Duration::from_secs(2),
                max_backoff: Duration::from_secs(15 * 60),
                max_attempts: 15,
                shutdown_grace: Duration::from_secs(25),
            },
            sessions: SessionSettings {
                idle_timeout: Duration::from_secs(15 * 60),
                absolute_timeout: Duration::from_secs(12 * 3600),
                handshake_max_age: Duration::from_secs(5 * 60),
                max_per_user: 20,
            },
            http_timeout: Duration::from_secs(15),
            outbound: OutboundSettings {
                allow,
                lookup: HostLookup::default(),
            },
            server: ServerSettings {
                trusted_proxies,
                drain_delay: Duration::from_secs(args.drain_delay),
                ..ServerSettings::default()
            },
            rate_limits,
            secrets_cache_ttl: Duration::from_secs(5),
            purge_grace: Duration::from_secs(args.purge_after_days * 86_400),
            launch_timeout: Duration::from_secs(10 * 60),
            results: ResultSettings::default(),
        })
    }
}
