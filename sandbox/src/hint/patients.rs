//! The Provider API's patients: the filtered, paged list and one patient.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::provider::{counted_page, paging, provider_gate, refuse_unknown_params};
use super::{Patient, SandboxHint, World};
use crate::hint_error;

pub(super) async fn list_patients(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients".into(),
        false,
    )
    .await?;
    refuse_unknown_params(
        &query,
        &[
            "limit",
            "offset",
            "first_name",
            "last_name",
            "email",
            "dob",
            "updated_at[gt]",
        ],
    )?;
    let (limit, offset) = paging(&query)?;
    let updated_after = match query.get("updated_at[gt]") {
        None => None,
        Some(v) => Some(OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
            hint_error(
                StatusCode::BAD_REQUEST,
                "updated_at[gt] must be an RFC 3339 time",
            )
        })?),
    };
    let mut world = sandbox.world();
    if let Some(since) = query.get("updated_at[gt]") {
        world.patients_asked_since.push(since.clone());
    }
    let matching: Vec<&Patient> = world
        .patients
        .iter()
        .filter(|p| p.practice_id == practice_id)
        .filter(|p| query.get("first_name").is_none_or(|v| *v == p.first_name))
        .filter(|p| query.get("last_name").is_none_or(|v| *v == p.last_name))
        .filter(|p| query.get("dob").is_none_or(|v| *v == p.dob))
        .filter(|p| {
            query
                .get("email")
                .is_none_or(|v| Some(v) == p.email.as_ref())
        })
        .filter(|p| updated_after.is_none_or(|after| p.updated_at > after))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(Patient::to_json)
        .collect();
    Ok(counted_page(page, total))
}

pub(super) fn find_patient(
    world: &World,
    practice_id: &str,
    patient_id: &str,
) -> Result<Patient, Response> {
    world
        .patients
        .iter()
        .find(|p| p.id == patient_id && p.practice_id == practice_id)
        .cloned()
        .ok_or_else(|| hint_error(StatusCode::NOT_FOUND, "Patient not found"))
}

pub(super) async fn get_patient(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}".into(),
        false,
    )
    .await?;
    let patient = find_patient(&sandbox.world(), &practice_id, &id)?;
    Ok(Json(patient.to_json()).into_response())
}
