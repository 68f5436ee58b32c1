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
            let database = match cli.config.database_url {
                Some(url) if !url.trim().is_empty() => {
                    chartbridge::config::DatabaseSettings::Url(url.into())
                }
                _ => {
                    chartbridge::config::DatabaseSettings::Sqlite("data/chartbridge.sqlite".into())
                }
            };
            Db::connect(&database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}
