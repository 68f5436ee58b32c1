//! `chartbridge-demo`: the app on the embedded SQLite default, wired to sandbox Hint and the
//! four sandbox partners on loopback. A practice of twenty patients installs Chartbridge
//! through Instant On, and its admin sets up every partner through the settings surface, as a
//! real admin would. Prints the sandbox Hint URL to open.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;

use chartbridge::{
    Application, Settings,
    config::{ConfigArgs, DatabaseSettings, SecretKey},
    partners::{PartnerArgs, PartnerSettings, haidy::HaidyArgs, tiep::TiepArgs},
    startup::shutdown_signal,
    telemetry,
};
use chartbridge_sandbox::{
    haidy::SandboxHaidy,
    hcw::SandboxHcw,
    hint::{SandboxHint, SandboxHintConfig},
    mediquo::SandboxMediquo,
    tiep::{PayloadType, SandboxTiep},
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

#[derive(Parser, Debug)]
#[command(name = "chartbridge-demo", version, about)]
struct DemoArgs {
    /// Port of the sandbox Hint page (the one to open).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of Chartbridge itself.
    #[arg(long, default_value_t = 8081)]
    app_port: u16,
    /// Port of sandbox Tiep.
    #[arg(long, default_value_t = 8082)]
    tiep_port: u16,
    /// Port of sandbox MediQuo (its page sends consultations).
    #[arg(long, default_value_t = 8083)]
    mediquo_port: u16,
    /// Port of sandbox HCW@Home (API, patient and doctor pages).
    #[arg(long, default_value_t = 8084)]
    hcw_port: u16,
    /// Port of sandbox Haidy (API and the integration page).
    #[arg(long, default_value_t = 8085)]
    haidy_port: u16,
    /// Folder for the demo database (started afresh each run, like the sandboxes).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

/// What to say when a demo port cannot be bound.
fn in_use(port: u16, flag: &str) -> String {
    format!("could not listen on 127.0.0.1:{port} (in use?); choose another port with {flag}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = DemoArgs::parse();
    telemetry::init("info,sqlx=warn,tower_http=info");
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
    let tiep = SandboxTiep::start(args.tiep_port)
        .await
        .with_context(|| in_use(args.tiep_port, "--tiep-port"))?;
    let mediquo = SandboxMediquo::start(args.mediquo_port)
        .await
        .with_context(|| in_use(args.mediquo_port, "--mediquo-port"))?;
    let hcw = SandboxHcw::start(args.hcw_port, HCW_SSO_SECRET)
        .await
        .with_context(|| in_use(args.hcw_port, "--hcw-port"))?;
    let haidy = SandboxHaidy::start(args.haidy_port)
        .await
        .with_context(|| in_use(args.haidy_port, "--haidy-port"))?;
    haidy.add_organisation(HAIDY_TOKEN, HAIDY_GROUP, HAIDY_INTEGRATION);

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
        hint_partner_id: None,
        hint_product_id: Some(PRODUCT_ID.into()),
        hint_webhook_secret: Some(WEBHOOK_SECRET.into()),
        database_url: None,
        port: args.app_port,
        bind: "127.0.0.1".into(),
        public_url: Some(format!("http://127.0.0.1:{}/", args.app_port)),
        secret_key: Some(secret_key),
        frame_ancestors: hint_origin,
        workers: 4,
    };
    let mut settings = Settings::from_args(config)?;
    settings.database = DatabaseSettings::Sqlite(database);
    let mut partners = PartnerSettings::from_args(PartnerArgs {
        tiep: TiepArgs {
            tiep_api_url: tiep.base_url().to_string(),
            tiep_app_url: tiep.base_url().to_string(),
        },
        haidy: HaidyArgs {
            haidy_api_url: haidy.base_url().to_string(),
            haidy_app_url: haidy.app_url().to_string(),
        },
    })?;
    // A demo should show the polling backstop within a minute, not two.
    partners.tiep.poll_after = Duration::from_secs(30);
    partners.tiep.poll_every = Duration::from_secs(15);
    partners.hcw.poll_every = Duration::from_secs(10);
    partners.haidy.poll_every = Duration::from_secs(5);
    let app = Application::build(settings, partners)
        .await
        .with_context(|| in_use(args.app_port, "--app-port"))?;
    let app_url = url::Url::parse(&format!("http://127.0.0.1:{}/", app.port()))?;
    hint.set_app_url(app_url.clone());
    let server = tokio::spawn(app.run_until_stopped(shutdown_signal()));

    // The practice installs Chartbridge (Instant On), then its admin sets up each partner.
    let practice_id = hint.add_practice("Riverside Family Medicine");
    hint.seed_patients(&practice_id);
    let installed = hint.install(&practice_id).await?;
    anyhow::ensure!(
        installed.is_success(),
        "Instant On failed with HTTP {installed}"
    );
    let admin_id = hint
        .user_with_role(&practice_id, "admin")
        .context("the sandbox practice has an admin")?;
    let admin = Admin {
        http: reqwest::Client::new(),
        app_url: app_url.clone(),
        session_key: hint.handshake(&admin_id, None, None).await?,
    };

    let tiep_hook = app_url.join(&format!("webhooks/tiep/{practice_id}"))?;
    tiep.add_facility(
        TIEP_API_KEY,
        TIEP_HOOK_SECRET,
        Some(tiep_hook.to_string()),
        PayloadType::Simple,
    );
    let tiep_form = chartbridge::partners::tiep::default_form().to_string();
    admin
        .save(
            "tiep",
            &[
                ("api_key", TIEP_API_KEY),
                ("hook_secret", TIEP_HOOK_SECRET),
                ("form", &tiep_form),
            ],
        )
        .await?;
    admin
        .save("mediquo", &[("signature", MEDIQUO_SIGNATURE)])
        .await?;
    admin
        .save(
            "haidy",
            &[
                ("api_token", HAIDY_TOKEN),
                ("patient_group", HAIDY_GROUP),
                ("integration_id", HAIDY_INTEGRATION),
            ],
        )
        .await?;
    hcw.add_account(HCW_SERVICE_EMAIL, HCW_SERVICE_PASSWORD, "scheduler");
    let doctors: Vec<String> = hint
        .world()
        .users
        .iter()
        .filter(|u| u.practice_id == practice_id)
        .map(|u| u.email.clone())
        .collect();
    doctors.iter().for_each(|d| hcw.add_doctor(d));
    admin
        .save(
            "hcw",
            &[
                ("base_url", hcw.base_url().as_str()),
                ("service_email", HCW_SERVICE_EMAIL),
                ("service_password", HCW_SERVICE_PASSWORD),
                ("sso_secret", HCW_SSO_SECRET),
                ("routing", "doctor_email"),
                ("queue", ""),
            ],
        )
        .await?;

    let patients = hint
        .world()
        .patients
        .iter()
        .filter(|p| p.practice_id == practice_id)
        .map(|p| (p.id.clone(), format!("{} {}", p.first_name, p.last_name)))
        .collect();
    let mediquo_hook = app_url.join(&format!("webhooks/mediquo/{practice_id}"))?;
    mediquo.add_integration(
        "Riverside Family Medicine",
        mediquo_hook.as_str(),
        MEDIQUO_SIGNATURE,
        patients,
    );
    {
        let mut world = hint.world();
        world.demo_note = format!(
            "Sandbox Tiep facility (already entered in Chartbridge settings):\n  API key: {TIEP_API_KEY}\n  hook secret: {TIEP_HOOK_SECRET}\n  webhook URL: {tiep_hook}\nSandbox MediQuo signature value (already entered): {MEDIQUO_SIGNATURE}\nSandbox HCW@Home (already entered): {}, service account {HCW_SERVICE_EMAIL}, routed to the clinician\nSandbox Haidy (already entered): token {HAIDY_TOKEN}, patient group {HAIDY_GROUP}, integration {HAIDY_INTEGRATION}",
            hcw.base_url()
        );
        world.demo_links = vec![(
            "Sandbox MediQuo: finish a consultation for any patient".into(),
            mediquo.base_url().to_string(),
        )];
    }

    println!();
    println!("  Chartbridge demo is running.");
    println!("  Open the sandbox Hint:  {}", hint.base_url());
    println!(
        "  (Chartbridge {app_url}; sandboxes: Tiep {}, MediQuo {}, HCW@Home {}, Haidy {}; Ctrl-C stops)",
        tiep.base_url(),
        mediquo.base_url(),
        hcw.base_url(),
        haidy.base_url()
    );
    println!();
    server.await??;
    Ok(())
}

/// The practice admin in the settings surface, with a session from a signed handshake.
struct Admin {
    http: reqwest::Client,
    app_url: url::Url,
    session_key: String,
}

impl Admin {
    /// Saves one partner's section of the settings surface, as the admin's form would.
    async fn save(&self, partner: &str, fields: &[(&str, &str)]) -> anyhow::Result<()> {
        let url = self.app_url.join(&format!("hint/settings/{partner}"))?;
        let response = self
            .http
            .post(url)
            .header("x-hint-session-key", &self.session_key)
            .form(fields)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "saving the {partner} settings failed with HTTP {}",
            response.status()
        );
        Ok(())
    }
}
