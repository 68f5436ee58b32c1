//! The one front door: `Application::build` binds the listener, connects and migrates the
//! database, and wires the router and the job runner. `main`, the demo and the tests all use it.

use std::{future::Future, time::Duration};

use anyhow::Context as _;

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, Request, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{
    config::Settings,
    db::Db,
    hint::{HintState, session},
    partners::{self, PartnerSettings},
    visits::AppState,
};

/// Largest request body accepted (Haidy's upload routes set their own).
const BODY_LIMIT: usize = 2 * 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Binds first (port 0 picks a free port), then connects and migrates, and builds every
    /// partner with its settings. Without a configured public URL, a loopback server is
    /// reached at the address it is bound to.
    pub async fn build(settings: Settings, partners: PartnerSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.public_url.is_some() || settings.bind.is_loopback(),
            "CHARTBRIDGE_PUBLIC_URL is required when listening on {} (Hint must reach us there)",
            settings.bind
        );
        let listener = TcpListener::bind((settings.bind, settings.port))
            .await
            .with_context(|| {
                format!(
                    "could not listen on {}:{} (PORT, CHARTBRIDGE_BIND)",
                    settings.bind, settings.port
                )
            })?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{bound}/"))?,
        };
        let db = Db::connect(&settings.database).await?;
        let hint_state = HintState::new(settings, db, public_url)?;
        let registry = partners::registry(&partners, &hint_state.upstream);
        let state = AppState::new(hint_state, registry);
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves and runs jobs until `shutdown` completes; then stops accepting, finishes
    /// requests and jobs in flight, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let router = router(self.state.clone());
        let runner = {
            let (state, stop) = (self.state.clone(), stop_rx.clone());
            async move {
                if state.settings.jobs.run_in_background {
                    state.job_runner().run(stop).await;
                }
            }
        };
        let sweeper = session::sweep_periodically(self.state.hint_state.clone(), stop_rx.clone());
        let mut server_stop = stop_rx.clone();
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        });
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        };
        tracing::info!(port = self.port, "chartbridge listening");
        let (served, (), (), ()) = tokio::join!(server.into_future(), runner, sweeper, signal);
        self.state.db.close().await;
        served?;
        Ok(())
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState) -> Router {
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; frame-ancestors {}",
        state.settings.frame_ancestors
    );
    let csp = HeaderValue::from_str(&csp).expect("frame ancestors are validated at start");
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // The path only: queries carry session keys and patient ids.
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, REQUEST_TIMEOUT))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));

    let partner_routes = state
        .partners
        .iter()
        .fold(Router::new(), |router, partner| {
            router.merge(partner.clone().routes(state.clone()))
        });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(crate::hint::router())
        .merge(crate::visits::routes::router())
        .merge(crate::surfaces::router())
        .merge(partner_routes)
        .fallback(|| async { crate::error::AppError::NotFound })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware)
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id: [u8; 8] = rand::random();
        HeaderValue::from_str(&hex::encode(id))
            .ok()
            .map(RequestId::new)
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
