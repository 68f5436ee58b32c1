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
    /// A practice's data.
    Practice {
        #[command(subcommand)]
        command: PracticeCommand,
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
    Verify {
        /// Only this practice.
        #[arg(long)]
        practice: Option<String>,
    },
}

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
            command: AuditCommand::Verify { practice },
        } => {
            let db = Db::connect(&database(&cli.config)).await?;
            let report = chartbridge::audit::verify::verify(&db, practice.as_deref()).await?;
            for broken in &report.broken {
                println!(
                    "BROKEN practice {} at entry {}: {}",
                    broken.practice_id, broken.seq, broken.problem
                );
            }
            println!(
                "{} practice(s), {} entr{} checked, {} broken chain(s)",
                report.practices,
                report.entries,
                if report.entries == 1 { "y" } else { "ies" },
                report.broken.len()
            );
            if !report.broken.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Practice {
            command:
                PracticeCommand::Purge {
                    practice,
                    even_if_installed,
                },
        } => purge(&cli.config, &practice, even_if_installed).await,
    }
}

/// `chartbridge practice purge`.
async fn purge(config: &ConfigArgs, practice: &str, even_if_installed: bool) -> anyhow::Result<()> {
    let practice_id = chartbridge::ids::ExternalId::parse(practice)
        .map_err(|e| anyhow::anyhow!("--practice: {e}"))?;
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
    let deleted = chartbridge::tenancy::purge(&db, &practice_id).await?;
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
