//! `chartbridge demo`: the app on the embedded SQLite default, wired to sandbox Hint and
//! sandbox Tiep on loopback, with a practice of twenty patients installed and Tiep set up.
//! Prints the sandbox Hint URL to open.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;

use super::{
    haidy::SandboxHaidy,
    hcw::SandboxHcw,
    hint::{SandboxHint, SandboxHintConfig},
    mediquo::SandboxMediquo,
    tiep::{PayloadType, SandboxTiep},
};
use crate::{
    Application, Settings,
    config::{ConfigArgs, DatabaseSettings, SecretKey},
    partners::{
        haidy::HaidyConnection,
        hcw::{HcwConnection, HcwSettingsInput},
        mediquo,
        tiep::{self, TiepConnection},
    },
    startup::shutdown_signal,
};

const WEBHOOK_SECRET: &str = "sandbox-hint-webhook-secret-0001";
const PARTNER_API_KEY: &str = "sandbox-partner-api-key";
const PRODUCT_ID: &str = "ppro-chartbridge-sandbox";
const TIEP_API_KEY: &str = "tiep-sandbox-facility-key";
const TIEP_HOOK_SECRET: &str = "tiep-sandbox-hook-secret-2026";
const MEDIQUO_SIGNATURE: &str = "mediquo-sandbox-signature-2026";
const HCW_SSO_SECRET: &str = "hcw-sandbox-shared-sso-secret";
const HCW_SERVICE_EMAIL: &str = "scheduler@hcw.sandbox.example";
const HCW_SERVICE_PASSWORD: &str = "hcw-sandbox-scheduler-password";
const HAIDY_TOKEN: &str = "haidy-sandbox-api-token";
const HAIDY_GROUP: &str = "grp-riverside";
const HAIDY_INTEGRATION: &str = "int-chartbridge-sandbox";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Port of the sandbox Hint page (the one to open).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of Chartbridge itself.
    #[arg(long, default_value_t = 8081)]
    pub app_port: u16,
    /// Port of sandbox Tiep.
    #[arg(long, default_value_t = 8082)]
    pub tiep_port: u16,
    /// Port of sandbox MediQuo (its page sends consultations).
    #[arg(long, default_value_t = 8083)]
    pub mediquo_port: u16,
    /// Port of sandbox HCW@Home (API, patient and doctor pages).
    #[arg(long, default_value_t = 8084)]
    pub hcw_port: u16,
    /// Port of sandbox Haidy (API and the integration page).
    #[arg(long, default_value_t = 8085)]
    pub haidy_port: u16,
    /// Folder for the demo database (started afresh each run, like the sandbox).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

/// What to say when a demo port cannot be bound.
fn in_use(port: u16, flag: &str) -> String {
    format!("could not listen on 127.0.0.1:{port} (in use?); choose another port with {flag}")
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let hint = SandboxHint::start(
        SandboxHintConfig {
            webhook_secret: WEBHOOK_SECRET.into(),
            partner_api_key: PARTNER_API_KEY.into(),
            product_id: PRODUCT_ID.into(),
            rate_limit_per_second: 20,
        },
        args.port,
    )
    .await
    .with_context(|| in_use(args.port, "--port"))?;
    let tiep_sandbox = SandboxTiep::start(args.tiep_port)
        .await
        .with_context(|| in_use(args.tiep_port, "--tiep-port"))?;

    let mediquo_sandbox = SandboxMediquo::start(args.mediquo_port)
        .await
        .with_context(|| in_use(args.mediquo_port, "--mediquo-port"))?;

    let hcw_sandbox = SandboxHcw::start(args.hcw_port, HCW_SSO_SECRET)
        .await
        .with_context(|| in_use(args.hcw_port, "--hcw-port"))?;

    let haidy_sandbox = SandboxHaidy::start(args.haidy_port)
        .await
        .with_context(|| in_use(args.haidy_port, "--haidy-port"))?;
    haidy_sandbox.add_organisation(HAIDY_TOKEN, HAIDY_GROUP, HAIDY_INTEGRATION);

    std::fs::create_dir_all(&args.data_dir)?;
    let database = args.data_dir.join("demo.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let (_, secret_key) = SecretKey::generate();
    let hint_origin = hint.base_url().as_str().trim_end_matches('/').to_string();
    let config = ConfigArgs {
        hint_api_url: hint.base_url().to_string(),
        hint_api_key: Some(PARTNER_API_KEY.into()),
        hint_partner_id: Some("partner-sandbox".into()),
        hint_product_id: Some(PRODUCT_ID.into()),
        hint_webhook_secret: Some(WEBHOOK_SECRET.into()),
        database_url: None,
        port: args.app_port,
        bind: "127.0.0.1".into(),
        public_url: Some(format!("http://127.0.0.1:{}/", args.app_port)),
        secret_key: Some(secret_key),
        frame_ancestors: hint_origin.clone(),
        tiep_api_url: tiep_sandbox.base_url().to_string(),
        tiep_app_url: tiep_sandbox.base_url().to_string(),
        haidy_api_url: haidy_sandbox.base_url().to_string(),
        haidy_app_url: haidy_sandbox.app_url().to_string(),
        workers: 4,
    };
    let mut settings = Settings::from_args(config)?;
    settings.database = DatabaseSettings::Sqlite(database);
    // A demo should show the polling backstop within a minute, not two.
    settings.tiep.poll_after = Duration::from_secs(30);
    settings.tiep.poll_every = Duration::from_secs(15);
    settings.hcw.poll_every = Duration::from_secs(10);
    settings.haidy.poll_every = Duration::from_secs(5);
    let app = Application::build(settings)
        .await
        .with_context(|| in_use(args.app_port, "--app-port"))?;
    let state = app.state();
    let app_url = url::Url::parse(&format!("http://127.0.0.1:{}/", app.port()))?;
    hint.set_app_url(app_url.clone());
    let server = tokio::spawn(app.run_until_stopped(shutdown_signal()));

    let practice_id = hint.add_practice("Riverside Family Medicine");
    hint.seed_patients(&practice_id);
    let installed = hint.install(&practice_id).await?;
    anyhow::ensure!(
        installed.is_success(),
        "Instant On failed with HTTP {installed}"
    );
    let hook_url = tiep::webhook_url(&state, &practice_id);
    tiep_sandbox.add_facility(
        TIEP_API_KEY,
        TIEP_HOOK_SECRET,
        Some(hook_url.clone()),
        PayloadType::Simple,
    );
    TiepConnection::save(
        &state,
        &practice_id,
        TIEP_API_KEY,
        TIEP_HOOK_SECRET,
        tiep::default_form(),
        "demo",
    )
    .await?;
    mediquo::save(&state, &practice_id, MEDIQUO_SIGNATURE, "demo").await?;
    HaidyConnection::save(
        &state,
        &practice_id,
        HAIDY_TOKEN,
        HAIDY_GROUP,
        HAIDY_INTEGRATION,
        "demo",
    )
    .await?;
    hcw_sandbox.add_account(HCW_SERVICE_EMAIL, HCW_SERVICE_PASSWORD, "scheduler");
    let doctors: Vec<String> = hint
        .world()
        .users
        .iter()
        .filter(|u| u.practice_id == practice_id)
        .map(|u| u.email.clone())
        .collect();
    doctors.iter().for_each(|d| hcw_sandbox.add_doctor(d));
    HcwConnection::save(
        &state,
        &practice_id,
        HcwSettingsInput {
            base_url: hcw_sandbox.base_url().as_str(),
            service_email: HCW_SERVICE_EMAIL,
            service_password: HCW_SERVICE_PASSWORD,
            sso_secret: HCW_SSO_SECRET,
            routing: "doctor_email",
            queue: "",
        },
        "demo",
    )
    .await?;
    let patients = hint
        .world()
        .patients
        .iter()
        .filter(|p| p.practice_id == practice_id)
        .map(|p| (p.id.clone(), format!("{} {}", p.first_name, p.last_name)))
        .collect();
    mediquo_sandbox.add_integration(
        "Riverside Family Medicine",
        &mediquo::webhook_url(&state, &practice_id),
        MEDIQUO_SIGNATURE,
        patients,
    );
    {
        let mut world = hint.world();
        world.demo_note = format!(
            "Sandbox Tiep facility (already entered in Chartbridge settings):\n  API key: {TIEP_API_KEY}\n  hook secret: {TIEP_HOOK_SECRET}\n  webhook URL: {hook_url}\nSandbox MediQuo signature value (already entered): {MEDIQUO_SIGNATURE}\nSandbox HCW@Home (already entered): {}, service account {HCW_SERVICE_EMAIL}, routed to the clinician\nSandbox Haidy (already entered): token {HAIDY_TOKEN}, patient group {HAIDY_GROUP}, integration {HAIDY_INTEGRATION}",
            hcw_sandbox.base_url()
        );
        world.demo_links = vec![(
            "Sandbox MediQuo: finish a consultation for any patient".into(),
            mediquo_sandbox.base_url().to_string(),
        )];
    }

    println!();
    println!("  Chartbridge demo is running.");
    println!("  Open the sandbox Hint:  {}", hint.base_url());
    println!(
        "  (Chartbridge {app_url}; sandboxes: Tiep {}, MediQuo {}, HCW@Home {}, Haidy {}; Ctrl-C stops)",
        tiep_sandbox.base_url(),
        mediquo_sandbox.base_url(),
        hcw_sandbox.base_url(),
        haidy_sandbox.base_url()
    );
    println!();
    server.await??;
    Ok(())
}
