//! Sandbox Hint: a practice with patients and users, the handshake initiator and iframe page,
//! the Provider API (patients, partner interactions), and the Instant On token exchange.
//!
//! Strict like Hint: Bearer practice tokens only (the partner key gets 428), bare-array lists
//! with `limit` ≤ 100 and `offset`, `X-Count`/`X-Total-Count`, exact-match filters, required
//! `status`, unknown fields refused, signed interactions final, 429 "Enhance your calm" when a
//! key calls faster than its rate. Faults (500s, hangs) can be switched on for tests.

mod documents;
mod interactions;
mod pages;
mod partner_api;
mod patients;
mod provider;
mod setup;
mod to_app;
mod world;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    routing::{get, patch, post},
};
use url::Url;

use crate::{bind, serve};

pub use documents::render_markdown;
pub use world::{Document, Faults, Interaction, Patient, Practice, User, World};

/// How the sandbox is set up (what real Hint would know about our app).
#[derive(Clone, Debug)]
pub struct SandboxHintConfig {
    pub webhook_secret: String,
    pub partner_api_key: String,
    pub product_id: String,
    /// Provider API calls allowed per key per second before 429.
    pub rate_limit_per_second: usize,
}

#[derive(Clone)]
pub struct SandboxHint {
    world: Arc<Mutex<World>>,
    config: Arc<SandboxHintConfig>,
    base_url: Url,
    http: reqwest::Client,
}

impl SandboxHint {
    /// Starts serving on 127.0.0.1:`port` (0 for any).
    pub async fn start(config: SandboxHintConfig, port: u16) -> anyhow::Result<Self> {
        let (listener, base_url) = bind(port).await?;
        let world = World {
            rate_limit_per_second: config.rate_limit_per_second,
            ..World::default()
        };
        let sandbox = Self {
            world: Arc::new(Mutex::new(world)),
            config: Arc::new(config),
            base_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        let app = router(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The world, locked (for tests and the demo).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("sandbox world lock")
    }

    /// Where Chartbridge runs (handshakes and installs go there).
    pub fn set_app_url(&self, url: Url) {
        self.world().app_url = Some(url);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.world().faults = faults;
    }

    /// Every handshake's access token runs out now (they are short-lived in Hint; practice
    /// tokens from Instant On are not).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for (_, expires) in self.world().access_tokens.values_mut() {
            *expires = now;
        }
    }
}

fn router(sandbox: SandboxHint) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/patients/{id}", get(pages::chart))
        .route("/embed/{surface}", get(pages::embed))
        .route("/hint-sdk.js", get(pages::sdk_js))
        .route("/install", post(pages::install_button))
        .route("/api/oauth/tokens", post(partner_api::oauth_tokens))
        .route(
            "/api/partner/installations/connect",
            post(partner_api::connect_installation),
        )
        .route(
            "/api/partner/products/{product_id}/app",
            patch(partner_api::configure_app),
        )
        .route(
            "/api/partner/webhook_endpoints",
            get(partner_api::list_webhook_endpoints).post(partner_api::add_webhook_endpoint),
        )
        .route("/api/provider/patients", get(patients::list_patients))
        .route("/api/provider/patients/{id}", get(patients::get_patient))
        .route(
            "/api/provider/patients/{id}/interactions/partner",
            get(interactions::list_interactions).post(interactions::create_interaction),
        )
        .route(
            "/api/provider/patients/{id}/interactions/document",
            get(documents::list_documents).post(documents::create_document),
        )
        .route(
            "/api/provider/patients/{id}/interactions/document/{document_id}",
            axum::routing::patch(documents::patch_document),
        )
        .route(
            "/api/provider/patients/{id}/interactions/partner/{interaction_id}",
            get(interactions::get_interaction).patch(interactions::patch_interaction),
        )
        .with_state(sandbox)
}
