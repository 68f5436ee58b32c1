//! One error type for the app, mapped to responses in one place.
//!
//! `AppError` renders as an HTML page (the surfaces); `ApiError` wraps it as JSON for the
//! machine endpoints (handshake, Instant On, webhooks). Client errors keep their exact status
//! and a message meant for people; a database that is away for a moment (a restart, a
//! failover, this instance stopping) is a 503 with `Retry-After`, whichever error carried it;
//! anything else unexpected is logged with its cause chain and answered with a bare 500.

use askama::Template;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No valid session (missing, unknown or expired key), or a forged signature.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The session is valid but its roles do not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The session has no Chartbridge role at all.
    #[error("the user has no Chartbridge role")]
    NoRole,
    /// Not found, or not this practice's (the two are indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// The thing changed meanwhile (a visit ended while its launch was still under way).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An outside party failed or refused; the message is written for the clinician, the
    /// cause (the party's answer) is kept for the log.
    #[error("upstream refused or failed")]
    Upstream {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The database is away for a moment: the request may be sent again in a second.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// A practice's signed traffic is over its budget (`practice_limits.rs`): sent again after
    /// the wait, it is taken.
    #[error("over the practice's budget")]
    TooMany { wait: std::time::Duration },
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Seconds a client is asked to wait before sending again a request the database was away for.
const RETRY_AFTER_SECONDS: &str = "1";

/// A cause of any kind, kept with its chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl AppError {
    /// A partner or Hint could not do it; `message` is for the clinician.
    pub fn upstream(message: impl Into<String>) -> Self {
        AppError::Upstream {
            message: message.into(),
            source: None,
        }
    }

    /// Like [`AppError::upstream`], keeping the party's answer as the cause.
    pub fn upstream_because(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        AppError::Upstream {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL refuses text it cannot store (NUL, bad encoding): the client's input was
        // wrong, so say so. Edges check ids (`ids::ExternalId`); this is the net under them.
        if let sqlx::Error::Database(db) = &e {
            if matches!(db.code().as_deref(), Some("22021" | "22P05")) {
                return AppError::BadRequest(
                    "The request contains characters that cannot be stored.".into(),
                );
            }
        }
        if crate::db::is_unavailable(&e) {
            return AppError::Unavailable(Box::new(e));
        }
        AppError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e).settled()
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e).context("template"))
    }
}

impl AppError {
    /// An unexpected error whose cause is a database away for a moment (however deep in the
    /// chain: a batch writer's error, a session store's) becomes [`AppError::Unavailable`].
    fn settled(self) -> Self {
        match self {
            AppError::Internal(e) if database_away(&e) => AppError::Unavailable(e.into()),
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::NoRole => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person (or peer) is told. Internal errors say nothing of their cause.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Unauthorized(_) => {
                "Your Chartbridge session is missing or has expired. Reopen Chartbridge from Hint."
                    .into()
            }
            AppError::Forbidden(m)
            | AppError::BadRequest(m)
            | AppError::Unprocessable(m)
            | AppError::Conflict(m)
            | AppError::Upstream { message: m, .. } => m.clone(),
            AppError::NoRole => {
                "You have no Chartbridge role yet. Ask a practice admin to give you \
                 the Chartbridge admin or clinician role in Hint, then reopen this page."
                    .into()
            }
            AppError::NotFound => {
                "There is nothing here for this practice: the page or visit does not exist, or \
                 belongs to another practice. Go back, or reopen Chartbridge from Hint."
                    .into()
            }
            AppError::Unavailable(_) => {
                "Chartbridge cannot reach its database for a moment. Please try again in a few \
                 seconds."
                    .into()
            }
            AppError::TooMany { wait } => format!(
                "Too many requests for this practice right now; try again in {} s.",
                wait_seconds(*wait)
            ),
            AppError::Internal(_) => {
                "Something went wrong on our side. It has been logged; please try again.".into()
            }
        }
    }

    fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "request failed"),
            AppError::Unavailable(e) => {
                tracing::warn!(cause = %error_chain(e.as_ref()), "database unavailable; answered 503")
            }
            // A message over a cause may quote the party: the cause (the party and its status)
            // is logged instead. Without a cause the message is our own words.
            AppError::Upstream { message, source } => {
                let cause = match source.as_deref() {
                    Some(e) => error_chain(e),
                    None => message.clone(),
                };
                tracing::warn!(%cause, "upstream refused or failed")
            }
            AppError::Unauthorized(reason) => tracing::info!(%reason, "unauthorized"),
            _ => {}
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let this = self.settled();
        this.log();
        let mut response = this.page();
        retry_after(&this, &mut response);
        response
    }
}

/// A 503 and a 429 say when to come back.
fn retry_after(error: &AppError, response: &mut Response) {
    let seconds = match error {
        AppError::Unavailable(_) => RETRY_AFTER_SECONDS.to_string(),
        AppError::TooMany { wait } => wait_seconds(*wait).to_string(),
        _ => return,
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&seconds).expect("digits"),
    );
}

/// Whole seconds to wait, rounded up, at least one.
fn wait_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Whether a database error that means "away for a moment" is in `e`'s cause chain.
fn database_away(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(crate::db::is_unavailable)
            || cause.is::<crate::db::DatabaseAway>()
    })
}

impl AppError {
    /// The error page (in the frame's chrome) with the error's status.
    fn page(&self) -> Response {
        let status = self.status();
        let title = match self {
            AppError::Unauthorized(_) => "Session expired",
            AppError::Forbidden(_) => "Not allowed",
            AppError::NoRole => "Ask a practice admin",
            AppError::NotFound => "Not found",
            AppError::BadRequest(_) | AppError::Unprocessable(_) => "Please check your input",
            AppError::Conflict(_) => "This visit moved on",
            AppError::Upstream { .. } => "A partner service did not answer as expected",
            AppError::Unavailable(_) => "Briefly unavailable",
            AppError::TooMany { .. } => "Too many requests",
            AppError::Internal(_) => "Something went wrong",
        };
        let page = ErrorPage {
            title,
            message: self.public_message(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, page.message).into_response(),
        }
    }
}

/// A stored value the code does not know: our fault, not the client's: logged, answered with a
/// bare 500.
impl From<crate::db::UnknownValue> for AppError {
    fn from(e: crate::db::UnknownValue) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

/// `AppError` answered as JSON `{"error": "..."}` for machine endpoints.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0.settled();
        error.log();
        let message = match &error {
            AppError::Unauthorized(_) => "invalid or missing signature".to_string(),
            AppError::Unavailable(_) => "database briefly unavailable; try again".to_string(),
            other => other.public_message(),
        };
        let mut response = (
            error.status(),
            Json(serde_json::json!({ "error": message })),
        )
            .into_response();
        retry_after(&error, &mut response);
        response
    }
}

/// Formats an error with its whole cause chain on one line (for logs and job records).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer's error that carries the database's as its cause (as the batch writers do).
    #[derive(Debug, thiserror::Error)]
    #[error("writing a batch")]
    struct Batch(#[source] sqlx::Error);

    #[test]
    fn a_database_away_is_a_503_with_retry_after_wherever_it_came_from() {
        let away = [
            AppError::from(sqlx::Error::PoolTimedOut),
            AppError::from(anyhow::Error::new(Batch(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionReset.into(),
            )))),
            AppError::Internal(anyhow::Error::new(Batch(sqlx::Error::PoolClosed))),
            AppError::Internal(anyhow::Error::new(crate::db::DatabaseAway("gone".into()))),
        ];
        for error in away {
            let page = error.into_response();
            assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(page.headers()[header::RETRY_AFTER], "1");
        }
        let api = ApiError(AppError::from(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.headers()[header::RETRY_AFTER], "1");

        let wrong = AppError::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(wrong.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(wrong.headers().get(header::RETRY_AFTER).is_none());
    }
}
