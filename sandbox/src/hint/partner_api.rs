//! Hint's partner API: Instant On code exchanges, app configuration, webhook endpoints.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use super::SandboxHint;
use crate::hint_error;

#[derive(Deserialize)]
pub(super) struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    activate: Option<bool>,
}

pub(super) async fn oauth_tokens(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> Response {
    sandbox.world().code_exchanges += 1;
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    let Some(Json(request)) = body else {
        return hint_error(StatusCode::BAD_REQUEST, "Body must be JSON");
    };
    if request.grant_type.as_deref() != Some("authorization_code") {
        return hint_error(
            StatusCode::BAD_REQUEST,
            "grant_type must be authorization_code",
        );
    }
    if request.activate.is_none() {
        return hint_error(StatusCode::BAD_REQUEST, "activate is required");
    }
    let activate = request.activate != Some(false);
    let redeemed = request
        .code
        .and_then(|code| sandbox.world().redeem(&code, activate));
    let Some((practice, token)) = redeemed else {
        return hint_error(StatusCode::BAD_REQUEST, "Invalid or used code");
    };
    Json(json!({
        "id": practice.integration_id,
        "access_token": token,
        "token_type": "bearer",
        "expires_in": null,
        "practice": {"id": practice.id, "name": practice.name},
    }))
    .into_response()
}

/// `POST /api/partner/installations/connect {code, activate}` (newer stacks): exactly those two
/// fields, the partner key, a one-use code. Answers the integration with the practice's token
/// in `api_keys[0].token`; `activate: false` leaves it pending (its token refused) until
/// [`SandboxHint::activate`].
pub(super) async fn connect_installation(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    {
        let mut world = sandbox.world();
        if world.legacy_install_only {
            return hint_error(StatusCode::NOT_FOUND, "Not found");
        }
        world.code_exchanges += 1;
        world.connect_calls += 1;
    }
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConnectRequest {
        code: String,
        activate: bool,
    }
    let request: ConnectRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return hint_error(
                StatusCode::BAD_REQUEST,
                &format!("Body must be {{code, activate}}: {e}"),
            );
        }
    };
    let mut world = sandbox.world();
    let Some((practice, token)) = world.redeem(&request.code, request.activate) else {
        return hint_error(StatusCode::BAD_REQUEST, "Invalid or used code");
    };
    let key_id = world.next("key");
    Json(json!({
        "id": practice.integration_id,
        "status": if request.activate { "active" } else { "pending" },
        "practice": {"id": practice.id, "name": practice.name},
        "api_keys": [{"id": key_id, "token": token, "created_at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()}],
    }))
    .into_response()
}

/// Refuses a `/api/partner/*` call without the partner key.
fn partner_key(sandbox: &SandboxHint, headers: &HeaderMap) -> Result<(), Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer == Some(sandbox.config.partner_api_key.as_str()) {
        Ok(())
    } else {
        Err(hint_error(
            StatusCode::UNAUTHORIZED,
            "The partner API needs the partner API key",
        ))
    }
}

/// `PATCH /api/partner/products/{id}/app`: `partner_roles` (a non-empty list of
/// `{name, description}` with distinct names) and the two default roles, which must be among
/// them. Only our own product.
pub(super) async fn configure_app(
    State(sandbox): State<SandboxHint>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    if product_id != sandbox.config.product_id {
        return hint_error(StatusCode::NOT_FOUND, "No such product");
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Role {
        name: String,
        description: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AppConfig {
        partner_roles: Vec<Role>,
        default_admin_role: String,
        default_non_admin_role: String,
    }
    let config: AppConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return hint_error(StatusCode::BAD_REQUEST, &format!("Invalid app config: {e}")),
    };
    let mut names: Vec<&str> = config
        .partner_roles
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    if config.partner_roles.is_empty()
        || names.len() != config.partner_roles.len()
        || config
            .partner_roles
            .iter()
            .any(|r| r.name.trim().is_empty() || r.description.trim().is_empty())
    {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "partner_roles must be distinct named roles with descriptions",
        );
    }
    for default in [&config.default_admin_role, &config.default_non_admin_role] {
        if !names.contains(&default.as_str()) {
            return hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "default roles must be among partner_roles",
            );
        }
    }
    let stored: Value = serde_json::from_slice(&body).unwrap_or_default();
    sandbox.world().app_config = Some(stored.clone());
    Json(json!({"product_id": product_id, "app": stored})).into_response()
}

pub(super) async fn list_webhook_endpoints(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    let world = sandbox.world();
    let list: Vec<Value> = world
        .webhook_endpoints
        .iter()
        .enumerate()
        .map(|(n, url)| json!({"id": format!("whe-{n:04}"), "webhook_url": url}))
        .collect();
    Json(list).into_response()
}

/// `POST /api/partner/webhook_endpoints {webhook_url}`: an absolute http(s) URL, once.
pub(super) async fn add_webhook_endpoint(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewEndpoint {
        webhook_url: String,
    }
    let request: NewEndpoint = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return hint_error(
                StatusCode::BAD_REQUEST,
                &format!("Body must be {{webhook_url}}: {e}"),
            );
        }
    };
    if !Url::parse(&request.webhook_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url must be an absolute URL",
        );
    }
    let mut world = sandbox.world();
    if world.webhook_endpoints.contains(&request.webhook_url) {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url is already registered",
        );
    }
    world.webhook_endpoints.push(request.webhook_url.clone());
    let id = format!("whe-{:04}", world.webhook_endpoints.len() - 1);
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "webhook_url": request.webhook_url})),
    )
        .into_response()
}
