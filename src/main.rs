//! `chartbridge [serve|migrate]`. The demo on the sandboxes is its own binary
//! (`cargo run -p chartbridge-demo`), so no fake ships in this one.

use clap::{Parser, Subcommand};

use chartbridge::{
    Application, Settings,
    config::ConfigArgs,
    db::Db,
    partners::{PartnerArgs, PartnerSettings},
    startup::shutdown_signal,
    telemetry,
};

#[derive(Parser)]
#[command(name = "chartbridge", version, about = "Hint marketplace partner app")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    partners: PartnerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// The PHI audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Hint's side of going live: register the app, run Hint's partner-app audit.
    Hint {
        #[command(subcommand)]
        command: HintCommand,
    },
    /// A practice's data.
    Practice {
        #[command(subcommand)]
        command: PracticeCommand,
    },
    /// The keys that seal data at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Seal every sealed value again under CHARTBRIDGE_SECRET_KEY, opening each under whichever
    /// key sealed it (CHARTBRIDGE_OLD_SECRET_KEYS). Online, in batches; run it again to resume.
    /// Exits 1 when a value opens under no key held. Then remove the old key everywhere.
    Rotate {
        /// Rows per batch (each its own transaction).
        #[arg(long, default_value_t = chartbridge::rotation::BATCH)]
        batch: i64,
    },
}

#[derive(Subcommand)]
enum HintCommand {
    /// Declare our custom roles (and the defaults new users get) in the app's Hint config,
    /// register our webhook endpoint once, and print the listing values Hint's review checks.
    /// Needs the serving configuration, CHARTBRIDGE_PUBLIC_URL included. Idempotent.
    Register,
    /// Run Hint's partner-app audit against a deployed Chartbridge and print each result;
    /// exits 1 when one fails. Signs with HINT_WEBHOOK_SECRET.
    Check {
        /// The app's public URL (default: CHARTBRIDGE_PUBLIC_URL).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum PracticeCommand {
    /// Delete every row of a practice's data (visits, results, settings, sessions, jobs, its
    /// Hint token); the audit trail stays. Refused while the practice's install is active or
    /// pending in Hint, unless `--even-if-installed`.
    Purge {
        /// The practice (`pra-…`).
        #[arg(long)]
        practice: String,
        /// Purge although Hint has not deactivated the practice.
        #[arg(long)]
        even_if_installed: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every practice's chain of entries (or one practice's); exits 1 when one is broken.
    /// Needs the keys the trail was chained under (CHARTBRIDGE_SECRET_KEY, or
    /// CHARTBRIDGE_AUDIT_KEY, and the older ones).
    Verify {
        /// Only this practice.
        #[arg(long)]
        practice: Option<String>,
        /// Published checkpoints (a checkpoint file or a shipped JSON log; repeatable): every
        /// entry they vouch for must still be there as it was.
        #[arg(long = "checkpoints")]
        checkpoints: Vec<std::path::PathBuf>,
    },
    /// Publish every practice's chain head as a signed checkpoint now (logged, and appended
    /// to CHARTBRIDGE_AUDIT_CHECKPOINTS when set): before a backup, or to close a period.
    Checkpoint {
        /// Vouch for heads chained before the chain was keyed too: once, right after upgrading
        /// to the keyed chain, before anyone else could write to the database.
        #[arg(long)]
        legacy: bool,
    },
}

// Many small allocations per request (headers, JSON, SQL binds): mimalloc spends less on them
// than glibc's malloc (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init("info,sqlx=warn,tower_http=info");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = Settings::from_args(cli.config)
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let partners = PartnerSettings::from_args(cli.partners)
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let app = Application::build(settings, partners).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate => {
            Db::connect(&database(&cli.config)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    practice,
                    checkpoints,
                },
        } => verify(&cli.config, practice.as_deref(), &checkpoints).await,
        Command::Audit {
            command: AuditCommand::Checkpoint { legacy },
        } => {
            let keys = chain_keys(&cli.config)?;
            let db = Db::connect(&database(&cli.config)).await?;
            let publisher = chartbridge::audit::checkpoints::Publisher::new(
                db,
                keys.current().clone(),
                cli.config.audit_checkpoints.clone(),
            );
            let published = publisher.publish(legacy).await?;
            println!("{published} checkpoint(s) published");
            Ok(())
        }
        Command::Hint {
            command: HintCommand::Register,
        } => register(cli.config).await,
        Command::Hint {
            command: HintCommand::Check { url },
        } => check(&cli.config, url).await,
        Command::Keys {
            command: KeysCommand::Rotate { batch },
        } => rotate(&cli.config, batch).await,
        Command::Practice {
            command:
                PracticeCommand::Purge {
                    practice,
                    even_if_installed,
                },
        } => purge(&cli.config, cli.partners, &practice, even_if_installed).await,
    }
}

/// The keys the trail is chained under (only the key settings are needed).
fn chain_keys(config: &ConfigArgs) -> anyhow::Result<chartbridge::audit::ChainKeys> {
    let keys = chartbridge::config::KeySettings::from_args(config.secret_key.clone(), &config.keys)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    Ok(chartbridge::audit::ChainKeys::from_settings(&keys))
}

/// `chartbridge keys rotate`.
async fn rotate(config: &ConfigArgs, batch: i64) -> anyhow::Result<()> {
    let keys = chartbridge::config::KeySettings::from_args(config.secret_key.clone(), &config.keys)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let secrets = chartbridge::crypto::SecretBox::from_settings(&keys);
    let db = Db::connect(&database(config)).await?;
    let report = chartbridge::rotation::rotate(&db, &secrets, batch.max(1)).await?;
    let mut remaining = 0;
    for r in &report {
        remaining += r.remaining;
        if r.resealed + r.raced + r.unopened + r.remaining > 0 {
            println!(
                "{}.{}: {} sealed again, {} written meanwhile, {} open under no key held, {} still not under the current key",
                r.table, r.column, r.resealed, r.raced, r.unopened, r.remaining
            );
        }
    }
    let resealed: u64 = report.iter().map(|r| r.resealed).sum();
    println!(
        "{resealed} value(s) now sealed under key {}; {remaining} not under it",
        secrets.key_id()
    );
    if remaining > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// `chartbridge audit verify`.
async fn verify(
    config: &ConfigArgs,
    practice: Option<&str>,
    checkpoints: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    use chartbridge::audit::checkpoints::Published;
    let keys = chain_keys(config)?;
    let published = Published::read(checkpoints, &keys)
        .map_err(|e| anyhow::anyhow!("the checkpoints could not be read: {e}"))?;
    let db = Db::connect(&database(config)).await?;
    let report = chartbridge::audit::verify::verify(&db, &keys, practice, &published).await?;
    for refused in &published.refused {
        println!("REFUSED checkpoint {refused}");
    }
    for broken in &report.broken {
        println!(
            "BROKEN practice {} at entry {}: {}",
            broken.practice_id, broken.seq, broken.problem
        );
    }
    if report.unkeyed > 0 {
        println!(
            "{} entr{} chained before the chain was keyed",
            report.unkeyed,
            if report.unkeyed == 1 {
                "y was"
            } else {
                "ies were"
            }
        );
    }
    if !checkpoints.is_empty() {
        println!("{} checkpoint(s) held against the chains", published.count);
    }
    println!(
        "{} practice(s), {} entr{} checked, {} broken chain(s)",
        report.practices,
        report.entries,
        if report.entries == 1 { "y" } else { "ies" },
        report.broken.len()
    );
    if !report.broken.is_empty() || !published.refused.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// `chartbridge hint register`.
async fn register(config: ConfigArgs) -> anyhow::Result<()> {
    let settings =
        Settings::from_args(config).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let public_url = settings.public_url.clone().ok_or_else(|| {
        anyhow::anyhow!("CHARTBRIDGE_PUBLIC_URL is required: Hint must reach us there")
    })?;
    let upstream = chartbridge::upstream::Upstream::with_policy(
        settings.http_timeout,
        settings.outbound.allow.clone(),
        settings.outbound.lookup.clone(),
    )?;
    let hint = chartbridge::hint::HintClient::new(
        upstream,
        settings.hint.clone(),
        chartbridge::metrics::Metrics::default(),
        None,
    );
    use chartbridge::hint::registration;
    let done = registration::register(&hint, &settings.hint.product_id, &public_url)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "Hint refused the registration: {}",
                chartbridge::error::error_chain(&e)
            )
        })?;
    let roles: Vec<&str> = registration::ROLES.iter().map(|(name, _)| *name).collect();
    println!(
        "roles declared: {} (new admins get {}, other users {})",
        roles.join(", "),
        registration::DEFAULT_ADMIN_ROLE,
        registration::DEFAULT_NON_ADMIN_ROLE
    );
    println!(
        "webhook endpoint {}: {}",
        if done.webhook_added {
            "registered"
        } else {
            "already registered"
        },
        done.webhook_url
    );
    println!("listing values:");
    let mut failed = false;
    for (name, url, finding) in registration::listing(&public_url) {
        failed |= finding.outcome == chartbridge::hint::review::Outcome::Fail;
        println!(
            "  {:<28} {url}  {} {}",
            name,
            finding.outcome.label(),
            finding.detail
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// `chartbridge hint check`.
async fn check(config: &ConfigArgs, url: Option<String>) -> anyhow::Result<()> {
    use chartbridge::hint::review;
    let url = url
        .or_else(|| config.public_url.clone())
        .ok_or_else(|| anyhow::anyhow!("--url or CHARTBRIDGE_PUBLIC_URL names the app to check"))?;
    let url = chartbridge::config::parse_url(&url, "--url").map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = config.hint_webhook_secret.clone().ok_or_else(|| {
        anyhow::anyhow!("HINT_WEBHOOK_SECRET is required to sign the audit's handshakes")
    })?;
    let reserved = review::Reserved {
        hint_api_url: Some(config.hint_api_url.clone()),
        hint_product_id: config.hint_product_id.clone(),
        hint_api_key_set: config
            .hint_api_key
            .as_deref()
            .is_some_and(|k| !k.is_empty()),
        hint_webhook_secret_set: true,
    };
    println!("Hint partner-app audit of {url}");
    let findings = review::run(&url, &secret.into(), &reserved).await;
    for finding in &findings {
        println!(
            "  {} {:<30} {}",
            finding.outcome.label(),
            finding.check,
            finding.detail
        );
    }
    if !review::passed(&findings) {
        std::process::exit(1);
    }
    Ok(())
}

/// `chartbridge practice purge`.
async fn purge(
    config: &ConfigArgs,
    partners: PartnerArgs,
    practice: &str,
    even_if_installed: bool,
) -> anyhow::Result<()> {
    let practice_id = chartbridge::ids::ExternalId::parse(practice)
        .map_err(|e| anyhow::anyhow!("--practice: {e}"))?;
    // Every table of practice data, the partners' own included, as the registry declares them.
    let partners =
        PartnerSettings::from_args(partners).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let upstream = chartbridge::upstream::Upstream::new(std::time::Duration::from_secs(1))?;
    let tables = chartbridge::partners::registry(&partners, &upstream).practice_tables();
    let db = Db::connect(&database(config)).await?;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM hint_installations WHERE practice_id = $1")
            .bind(practice_id.as_str())
            .fetch_all(db.reader())
            .await?;
    if let Some(status) = statuses.iter().find(|s| *s != "deactivated")
        && !even_if_installed
    {
        anyhow::bail!(
            "practice {practice_id} is {status} in Hint: purge only after Hint deactivates it \
             (or pass --even-if-installed)"
        );
    }
    let deleted = chartbridge::tenancy::purge(&db, &practice_id, &tables).await?;
    for (table, rows) in &deleted {
        println!("{table}: {rows} row(s) deleted");
    }
    println!("practice {practice_id} purged; its audit trail is kept");
    Ok(())
}

/// The database `DATABASE_URL` names (the other variables are not needed to reach it).
fn database(config: &ConfigArgs) -> chartbridge::config::DatabaseSettings {
    match &config.database_url {
        Some(url) if !url.trim().is_empty() => {
            chartbridge::config::DatabaseSettings::Url(url.clone().into())
        }
        _ => chartbridge::config::DatabaseSettings::Sqlite("data/chartbridge.sqlite".into()),
    }
}
