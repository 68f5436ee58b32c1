//! The settings form every partner shares: save (validated, tested with the partner, stored;
//! refused credentials only "anyway"), test, and the section drawn again after each.

use axum::{
    Router,
    extract::{RawForm, State},
    http::StatusCode,
    response::Html,
    routing::post,
};
use serde::Deserialize;

use super::{
    Connection, Panel, SaveOutcome, SectionView, Tested,
    store::{load, store},
};
use crate::{
    audit::Actor,
    error::AppError,
    hint::{PracticeSession, Role},
    tenancy::PracticeId,
    visits::{
        AppState, PartnerState,
        health::{self},
    },
};

/// The settings routes of connection `C`, served with its partner:
/// `POST /hint/settings/{partner}` (save) and `POST /hint/settings/{partner}/test`.
pub fn routes<C: Connection>(
    partner: std::sync::Arc<C::Partner>,
    app: AppState,
) -> Router<AppState> {
    Router::new()
        .route(
            &format!("/hint/settings/{}", C::PARTNER),
            post(save_form::<C>),
        )
        .route(
            &format!("/hint/settings/{}/test", C::PARTNER),
            post(test_form::<C>),
        )
        .with_state(PartnerState::new(app, partner))
}

/// The one field every settings form may carry besides its own: the admin's "Save anyway".
#[derive(Deserialize)]
struct SaveAnyway {
    #[serde(default)]
    save_anyway: Option<String>,
}

/// `POST /hint/settings/{partner}` (admins, htmx): validates, tests with the partner, saves,
/// answers the section again (422 with the reason when refused; what was entered is kept in
/// the form).
async fn save_form<C: Connection>(
    State(state): State<PartnerState<C::Partner>>,
    session: PracticeSession,
    RawForm(body): RawForm,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let unreadable = |e: serde_urlencoded::de::Error| {
        AppError::Unprocessable(format!("The settings form could not be read: {e}."))
    };
    let form: C::Form = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
    let anyway: SaveAnyway = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
    let anyway = anyway.save_anyway.is_some_and(|v| v == "1");
    let app = &state.app;
    let practice_id = &session.practice_id;
    let stored = load::<C>(app, practice_id).await?;
    let outcome = save(
        app,
        &*state.partner,
        practice_id,
        &form,
        anyway,
        stored.as_ref(),
        &session.actor(),
    )
    .await?;
    let (status, stored, entered) = if outcome.stored() {
        (StatusCode::OK, load::<C>(app, practice_id).await?, None)
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, stored, Some(&form))
    };
    let html = render::<C>(
        app,
        practice_id,
        stored.as_ref(),
        entered,
        Some(outcome),
        None,
    )
    .await?;
    Ok((status, Html(html)))
}

/// `POST /hint/settings/{partner}/test` (admins, htmx): tests the saved connection with the
/// partner, records what it found, answers the section with the answer.
async fn test_form<C: Connection>(
    State(state): State<PartnerState<C::Partner>>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let app = &state.app;
    let practice_id = &session.practice_id;
    let stored = load::<C>(app, practice_id).await?;
    let tested = match &stored {
        Some(connection) => test(app, &*state.partner, practice_id, connection).await,
        None => Tested::Failed("Nothing is saved yet: save the settings first.".into()),
    };
    let html = render::<C>(app, practice_id, stored.as_ref(), None, None, Some(tested)).await?;
    Ok(Html(html))
}

/// Tests `connection` with the partner and records what the test found.
pub async fn test<C: Connection>(
    app: &AppState,
    partner: &C::Partner,
    practice_id: &PracticeId,
    connection: &C,
) -> Tested {
    let tested = connection.test(partner, app, practice_id).await;
    if let Some(observed) = tested.observation() {
        health::record(app, practice_id, C::PARTNER, &observed).await;
    }
    tested
}

/// Validates `form` against what is stored, tests it with the partner, and saves it; a
/// refusal changes nothing. Credentials the partner refuses are saved only `anyway`.
pub async fn save<C: Connection>(
    app: &AppState,
    partner: &C::Partner,
    practice_id: &PracticeId,
    form: &C::Form,
    anyway: bool,
    stored: Option<&C>,
    actor: &Actor,
) -> Result<SaveOutcome, AppError> {
    let connection = match C::from_form(form, stored) {
        Ok(connection) => connection,
        Err(why) => return Ok(SaveOutcome::Refused(why)),
    };
    if let Err(why) = connection.check(app).await {
        return Ok(SaveOutcome::Refused(why));
    }
    // Tested before it is stored; recorded only once it is (the health is the stored one's).
    let tested = connection.test(partner, app, practice_id).await;
    if let Tested::Failed(why) = &tested {
        if !anyway {
            return Ok(SaveOutcome::Untested(why.clone()));
        }
    }
    store(app, practice_id, &connection, actor).await?;
    if let Some(observed) = tested.observation() {
        health::record(app, practice_id, C::PARTNER, &observed).await;
    }
    Ok(match tested {
        Tested::Failed(why) => SaveOutcome::SavedAnyway(why),
        Tested::Worked | Tested::Inbound => SaveOutcome::Saved,
    })
}

/// A partner's section of the settings page as it stands.
pub async fn section<C: Connection>(
    app: &AppState,
    session: &PracticeSession,
) -> Result<String, AppError> {
    let stored = load::<C>(app, &session.practice_id).await?;
    render::<C>(app, &session.practice_id, stored.as_ref(), None, None, None).await
}

async fn render<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
    stored: Option<&C>,
    entered: Option<&C::Form>,
    outcome: Option<SaveOutcome>,
    tested: Option<Tested>,
) -> Result<String, AppError> {
    let health = health::load(app, practice_id, C::PARTNER).await?;
    let partner = app.partners.get(C::PARTNER.as_str())?;
    let panel = Panel {
        partner: C::PARTNER,
        name: partner.name(),
        configured: stored.is_some(),
        status: health.status(stored.is_some()),
        inbound: partner.launch_style() == crate::visits::LaunchStyle::InboundOnly,
        health,
        answer: tested.is_some() || outcome.is_some(),
        tested,
        outcome,
    };
    C::render_section(SectionView {
        app,
        practice_id,
        stored,
        entered,
        panel,
    })
}

/// The entered value, or the stored one when the field was left blank.
pub fn keep_blank(entered: &str, stored: Option<&str>) -> String {
    match (entered, stored) {
        ("", Some(stored)) => stored.to_string(),
        (entered, _) => entered.to_string(),
    }
}
