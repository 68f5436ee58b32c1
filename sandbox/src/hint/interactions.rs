//! The Provider API's partner interactions: strict bodies, create, list, get, patch.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use super::patients::find_patient;
use super::provider::{page_response, paging, provider_gate, refuse_unknown_params};
use super::{Interaction, Practice, SandboxHint};
use crate::hint_error;

const STATUSES: [&str; 5] = ["draft", "signed", "addended", "deleted", "failed"];
const INTERACTION_FIELDS: [&str; 7] = [
    "status",
    "title",
    "integration_record_id",
    "integration_web_link",
    "integration_error_message",
    "partner_product_id",
    "type",
];

/// Validates a create or patch body strictly; answers the fields as strings.
fn interaction_body(
    body: &Value,
    practice: &Practice,
    creating: bool,
) -> Result<Map<String, Value>, Response> {
    let bad = |m: &str| hint_error(StatusCode::BAD_REQUEST, m);
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !INTERACTION_FIELDS.contains(&k.as_str()))
    {
        return Err(bad(&format!("Unknown attribute {k}")));
    }
    match obj.get("status") {
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => {}
        Some(_) => {
            return Err(hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "status must be one of draft, signed, addended, deleted, failed",
            ));
        }
        None if creating => return Err(bad("status is required")),
        None => {}
    }
    if let Some(t) = obj.get("type") {
        if t != "partner" {
            return Err(bad("type must be partner"));
        }
    }
    for field in [
        "title",
        "integration_record_id",
        "integration_error_message",
        "partner_product_id",
        "integration_web_link",
    ] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(bad(&format!("{field} must be a string")));
        }
    }
    if let Some(link) = obj.get("integration_web_link").and_then(Value::as_str) {
        match Url::parse(link) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(hint_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "integration_web_link must be an absolute http(s) URL",
                ));
            }
        }
    }
    match obj.get("partner_product_id").and_then(Value::as_str) {
        Some(p) if !practice.products.iter().any(|x| x == p) => {
            return Err(bad(
                "partner_product_id is not a product this practice has installed",
            ));
        }
        None if creating && practice.products.len() > 1 => {
            return Err(bad(
                "partner_product_id is required: this practice has several of your products",
            ));
        }
        _ => {}
    }
    // Not documented by Hint: enforced so that our failed interactions always carry the reason.
    if obj.get("status").and_then(Value::as_str) == Some("failed")
        && obj
            .get("integration_error_message")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "integration_error_message is required for failed interactions",
        ));
    }
    Ok(obj.clone())
}

fn text(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(String::from)
}

pub(super) async fn create_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "POST /api/provider/patients/{id}/interactions/partner".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let created = {
        let mut world = sandbox.world();
        find_patient(&world, &practice_id, &patient_id)?;
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("token's practice exists");
        let fields = interaction_body(&body, &practice, true)?;
        let interaction = Interaction {
            id: world.next("inter"),
            practice_id,
            patient_id,
            status: text(&fields, "status").expect("validated"),
            title: text(&fields, "title"),
            integration_record_id: text(&fields, "integration_record_id"),
            integration_web_link: text(&fields, "integration_web_link"),
            integration_error_message: text(&fields, "integration_error_message"),
            partner_product_id: text(&fields, "partner_product_id"),
            event_timestamp: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            updates: 0,
        };
        world.interactions.push(interaction.clone());
        interaction
    };
    Ok(after_write
        .answer((StatusCode::CREATED, Json(created.to_json())).into_response())
        .await)
}

pub(super) async fn list_interactions(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}/interactions/partner".into(),
        false,
    )
    .await?;
    refuse_unknown_params(
        &query,
        &["limit", "offset", "integration_record_id", "status"],
    )?;
    let (limit, offset) = paging(&query)?;
    let world = sandbox.world();
    find_patient(&world, &practice_id, &patient_id)?;
    let all = world
        .interactions
        .iter()
        .filter(|i| i.practice_id == practice_id && i.patient_id == patient_id)
        .filter(|i| {
            query
                .get("integration_record_id")
                .is_none_or(|v| Some(v) == i.integration_record_id.as_ref())
        })
        .filter(|i| query.get("status").is_none_or(|v| *v == i.status))
        .map(Interaction::to_json)
        .collect();
    Ok(page_response(all, limit, offset))
}

pub(super) async fn get_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path((patient_id, interaction_id)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}/interactions/partner/{id}".into(),
        false,
    )
    .await?;
    let world = sandbox.world();
    world
        .interactions
        .iter()
        .find(|i| {
            i.id == interaction_id && i.patient_id == patient_id && i.practice_id == practice_id
        })
        .map(|i| Json(i.to_json()).into_response())
        .ok_or_else(|| hint_error(StatusCode::NOT_FOUND, "Interaction not found"))
}

pub(super) async fn patch_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path((patient_id, interaction_id)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "PATCH /api/provider/patients/{id}/interactions/partner/{id}".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let updated = {
        let mut world = sandbox.world();
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("token's practice exists");
        let fields = interaction_body(&body, &practice, false)?;
        let Some(interaction) = world.interactions.iter_mut().find(|i| {
            i.id == interaction_id && i.patient_id == patient_id && i.practice_id == practice_id
        }) else {
            return Err(hint_error(StatusCode::NOT_FOUND, "Interaction not found"));
        };
        let new_status = text(&fields, "status");
        if interaction.status == "signed"
            && new_status
                .as_deref()
                .is_some_and(|s| s != "signed" && s != "addended")
        {
            return Err(hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A signed interaction can only be addended",
            ));
        }
        if let Some(s) = new_status {
            interaction.status = s;
        }
        for (field, slot) in [
            ("title", &mut interaction.title),
            (
                "integration_record_id",
                &mut interaction.integration_record_id,
            ),
            (
                "integration_web_link",
                &mut interaction.integration_web_link,
            ),
            (
                "integration_error_message",
                &mut interaction.integration_error_message,
            ),
            ("partner_product_id", &mut interaction.partner_product_id),
        ] {
            if fields.contains_key(field) {
                *slot = text(&fields, field);
            }
        }
        interaction.updates += 1;
        interaction.clone()
    };
    Ok(after_write
        .answer(Json(updated.to_json()).into_response())
        .await)
}
