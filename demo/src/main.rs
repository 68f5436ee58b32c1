//! `chartbridge-demo`: the app on the embedded SQLite default, wired to sandbox Hint and every
//! sandbox partner on loopback. A practice of twenty patients installs Chartbridge through
//! Instant On, and its admin connects each partner through the settings surface, as a real
//! admin would. Prints the sandbox Hint URL to open.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use chartbridge::{
    Application, Settings,
    config::{ConfigArgs, DatabaseSettings, SecretKey},
    partners::{Pace, PartnerArgs, PartnerSettings},
    startup::shutdown_signal,
    telemetry,
};
use chartbridge_sandbox::{
    Partners, Practice,
    hint::{SandboxHint, SandboxHintConfig},
};

const WEBHOOK_SECRET: &str = "sandbox-hint-webhook-secret-0001";
const PARTNER_API_KEY: &str = "sandbox-partner-api-key";
const PRODUCT_ID: &str = "ppro-chartbridge-sandbox";
/// Reads `/metrics` in the demo (a real deployment sets its own `CHARTBRIDGE_METRICS_TOKEN`).
const DEMO_METRICS_TOKEN: &str = "demo-metrics-token-0001";

#[derive(Parser, Debug)]
#[command(name = "chartbridge-demo", version, about)]
struct DemoArgs {
    /// Port of the sandbox Hint page (the one to open).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of Chartbridge itself.
    #[arg(long, default_value_t = 8081)]
    app_port: u16,
    /// First port of the sandbox partners (Tiep, MediQuo, HCW@Home, Haidy: this one and the
    /// ones after it).
    #[arg(long, default_value_t = 8082)]
    partners_port: u16,
    /// Folder for the demo database (started afresh each run, like the sandboxes).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Per-client budgets of the handshake, Instant On and the webhooks, as
    /// `CHARTBRIDGE_RATE_LIMITS` takes them.
    #[arg(long, env = "CHARTBRIDGE_RATE_LIMITS", default_value = "")]
    rate_limits: String,
    /// An empty PostgreSQL database to run on instead of the SQLite file (the load benchmark
    /// runs both).
    #[arg(long)]
    database_url: Option<String>,
    /// More practices set up the same way ("Bench Practice 1"…), each with every partner
    /// connected and its patient list loaded: a benchmark spreads its traffic over them, as
    /// Hint's and the partners' servers carry every practice's.
    #[arg(long, default_value_t = 0)]
    bench_practices: usize,
}

/// What to say when a demo port cannot be bound.
fn in_use(port: u16, flag: &str) -> String {
    format!("could not listen on 127.0.0.1:{port} (in use?); choose another port with {flag}")
}

// Many small allocations per request (headers, JSON, SQL binds): mimalloc spends less on them
// than glibc's malloc (`benches/webhooks.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let partners = Partners::start(args.partners_port)
        .await
        .context("choose other ports with --partners-port")?;

    std::fs::create_dir_all(&args.data_dir)?;
    let database = args.data_dir.join("demo.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    // A new key each run, unless one is given (a benchmark running the demo on a database it
    // filled before, `benches/scale.sh`, gives the key that database was sealed under).
    let secret_key = std::env::var("CHARTBRIDGE_SECRET_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| SecretKey::generate().1);
    let config = ConfigArgs {
        hint_api_url: hint.base_url().to_string(),
        hint_api_key: Some(PARTNER_API_KEY.into()),
        hint_partner_id: None,
        hint_product_id: Some(PRODUCT_ID.into()),
        hint_webhook_secret: Some(WEBHOOK_SECRET.into()),
        database_url: None,
        port: args.app_port,
        bind: "127.0.0.1".into(),
        public_url: None,
        secret_key: Some(secret_key),
        frame_ancestors: hint.base_url().as_str().trim_end_matches('/').to_string(),
        workers: 4,
        // The sandbox's HCW@Home is on loopback: an address no practice admin may enter live.
        outbound_allow: "127.0.0.0/8, ::1".into(),
        trusted_proxies: String::new(),
        rate_limits: args.rate_limits.clone(),
        purge_after_days: 30,
        activate_on_install: true,
        metrics_token: Some(DEMO_METRICS_TOKEN.into()),
        // No balancer in front of the demo: Ctrl-C stops it at once.
        drain_delay: 0,
        audit_checkpoints: Some(args.data_dir.join("audit-checkpoints.jsonl")),
        keys: Default::default(),
    };
    let mut settings = Settings::from_args(config)?;
    settings.database = match &args.database_url {
        Some(url) => DatabaseSettings::Url(url.clone().into()),
        None => DatabaseSettings::Sqlite(database),
    };
    settings.hint.shared_budget = args.database_url.is_some();
    // A demo should show the polling backstops within seconds, not minutes.
    let partner_settings =
        PartnerSettings::from_args(PartnerArgs::from_flags(partners.app_flags())?)?
            .paced(Pace::Demo);
    let app = Application::build(settings, partner_settings)
        .await
        .with_context(|| in_use(args.app_port, "--app-port"))?;
    let app_url = url::Url::parse(&format!("http://127.0.0.1:{}/", app.port()))?;
    hint.set_app_url(app_url.clone());
    let server = tokio::spawn(app.run_until_stopped(shutdown_signal()));

    // The practice installs Chartbridge (Instant On), then its admin connects every partner.
    let mut note = Vec::new();
    let riverside = "Riverside Family Medicine";
    set_up_practice(&hint, &partners, &app_url, riverside, None, &mut note).await?;
    for n in 1..=args.bench_practices {
        let name = format!("Bench Practice {n}");
        // Each admin installs from a machine of their own (127.1.x.y).
        let from = std::net::Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        set_up_practice(
            &hint,
            &partners,
            &app_url,
            &name,
            Some(from.into()),
            &mut Vec::new(),
        )
        .await?;
    }
    {
        let mut world = hint.world();
        world.demo_note = note.join("\n");
        world.demo_links = partners
            .all()
            .iter()
            .filter_map(|p| p.console())
            .map(|(label, url)| (label.to_string(), url.to_string()))
            .collect();
    }

    println!();
    println!("  Chartbridge demo is running.");
    println!("  Open the sandbox Hint:  {}", hint.base_url());
    let sandboxes: Vec<String> = partners
        .all()
        .iter()
        .map(|p| format!("{} {}", p.name(), p.base_url()))
        .collect();
    println!(
        "  (Chartbridge {app_url}; sandboxes: {}; Ctrl-C stops)",
        sandboxes.join(", ")
    );
    println!("  Metrics: curl -H 'Authorization: Bearer {DEMO_METRICS_TOKEN}' {app_url}metrics");
    println!();
    server.await??;
    Ok(())
}

/// A practice installs Chartbridge (Instant On), its admin connects every partner, and a
/// clinician's search loads its patients; `note` gets a line per partner.
async fn set_up_practice(
    hint: &SandboxHint,
    partners: &Partners,
    app_url: &url::Url,
    name: &str,
    from: Option<std::net::IpAddr>,
    note: &mut Vec<String>,
) -> anyhow::Result<String> {
    let practice_id = hint.add_practice(name);
    hint.seed_patients(&practice_id);
    let installed = match from {
        Some(from) => hint.install_from(&practice_id, from).await?,
        None => hint.install(&practice_id).await?,
    };
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
    let (user_emails, patients) = {
        let world = hint.world();
        let emails: Vec<String> = world
            .users
            .iter()
            .filter(|u| u.practice_id == practice_id)
            .map(|u| u.email.clone())
            .collect();
        let patients: Vec<(String, String)> = world
            .patients
            .iter()
            .filter(|p| p.practice_id == practice_id)
            .map(|p| (p.id.clone(), format!("{} {}", p.first_name, p.last_name)))
            .collect();
        (emails, patients)
    };
    let practice = Practice {
        id: &practice_id,
        name,
        app_url,
        user_emails: &user_emails,
        patients: &patients,
    };
    for partner in partners.all() {
        let fields = partner.connect(&practice);
        admin.save(partner.id(), &fields).await?;
        note.push(format!(
            "Sandbox {} at {} (already connected in Chartbridge settings)",
            partner.name(),
            partner.base_url()
        ));
    }
    // A search loads the practice's patients: a partner's delivery need not wait on Hint for
    // the patient's name.
    let searched = admin
        .http
        .get(app_url.join("hint/patients/search?q=a")?)
        .header("x-hint-session-key", &admin.session_key)
        .send()
        .await?;
    anyhow::ensure!(
        searched.status().is_success(),
        "the patient search failed with HTTP {}",
        searched.status()
    );
    Ok(practice_id)
}

/// The practice admin in the settings surface, with a session from a signed handshake.
struct Admin {
    http: reqwest::Client,
    app_url: url::Url,
    session_key: String,
}

impl Admin {
    /// Saves one partner's section of the settings surface, as the admin's form would.
    async fn save(&self, partner: &str, fields: &[(&str, String)]) -> anyhow::Result<()> {
        let url = self.app_url.join(&format!("hint/settings/{partner}"))?;
        let response = self
            .http
            .post(url)
            // As the admin's browser on our settings page says.
            .header("origin", self.app_url.origin().ascii_serialization())
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
