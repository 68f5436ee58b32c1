//! The HTTP surface as a whole: every route with the middleware in front of it
//! ([`router`]), served by our own connection loop ([`serve()`]: timeouts and caps). Requests
//! are traced by route, never by path (paths carry codes and ids a client chose), under a
//! request id that is ours or checked ([`request_id`]).

pub mod client_addr;
pub mod csp;
pub mod observe;
pub mod rate_limit;
pub mod request_id;
pub mod same_origin;
pub mod serve;

pub use serve::{Draining, ServerSettings, serve};

use std::time::Duration;

use axum::{
    Router,
    extract::MatchedPath,
    http::{HeaderValue, Request, StatusCode, header},
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use std::sync::Arc;

use self::{csp::Csp, rate_limit::RateLimits, same_origin::OwnOrigin};
use crate::visits::AppState;

/// Largest request body accepted (Haidy's upload routes set their own).
const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Headers a response carries once every layer has added its own.
const RESPONSE_HEADERS: usize = 12;

/// Longest a request may take once its headers are in.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP surface with its middleware; `limits` are the unauthenticated doors';
/// `draining` turns `/readyz` to 503 once the instance is told to stop.
pub fn router(state: AppState, limits: RateLimits, draining: Draining) -> Router {
    let launch_origins: Vec<String> = state
        .partners
        .iter()
        .filter_map(|p| p.launch_origin())
        .collect();
    let csp = Arc::new(
        Csp::new(&state.settings.frame_ancestors, &launch_origins)
            .with_hint_sdk(&state.settings.hint.api_url),
    );
    let own_origin = OwnOrigin(state.public_url.origin().ascii_serialization().into());
    let middleware = ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::record,
        ))
        .map_request(request_id::set_callers_aside)
        .layer(SetRequestIdLayer::x_request_id(request_id::Random))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                // The route, not the path: paths carry Instant On codes and ids a client chose.
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("(none)");
                let request_id = request_id::of(request).unwrap_or_default();
                let caller_request_id = request_id::callers(request).unwrap_or_default();
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    route,
                    request_id,
                    caller_request_id
                )
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn_with_state(
            limits,
            rate_limit::limit,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(csp, csp::set))
        .layer(axum::middleware::from_fn_with_state(
            own_origin,
            same_origin::check,
        ))
        .layer(axum::middleware::from_fn(
            crate::hint::session::key_from_form,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // Room for the headers the layers above add: the map grew three times per response.
        .map_response(|mut response: axum::response::Response| {
            response.headers_mut().reserve(RESPONSE_HEADERS);
            response
        });

    let partner_routes = state
        .partners
        .iter()
        .fold(Router::new(), |router, partner| {
            router.merge(partner.clone().routes(state.clone()))
        });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move |state| observe::readyz(state, draining.clone())),
        )
        .route("/metrics", get(observe::scrape))
        .merge(crate::hint::router())
        .merge(crate::visits::routes::router())
        .merge(crate::visits::files::router())
        .merge(crate::surfaces::router())
        .merge(partner_routes)
        .fallback(|| async { crate::error::AppError::NotFound })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware)
        .with_state(state)
}
