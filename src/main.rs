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
    }
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
