//! The chrome every framed page shows around its content: practice, user, roles, navigation,
//! and the session key that links, forms and htmx requests carry (there are no cookies); and
//! what the page may load and post to beyond ourselves (Hint's JS SDK, a page's own form
//! targets), which the server's Content-Security-Policy allows.

use super::session::{PracticeSession, Role};

/// What every framed page shows around its content.
#[derive(Clone, Debug)]
pub struct Frame {
    pub session_key: String,
    pub practice_name: String,
    pub user_name: String,
    pub role_names: String,
    pub is_admin: bool,
    pub is_clinician: bool,
    pub platform_support: bool,
    /// Which nav entry is current.
    pub surface: &'static str,
}

impl Frame {
    pub fn new(session: &PracticeSession, surface: &'static str) -> Self {
        Self {
            session_key: session.key.clone(),
            practice_name: session.practice_name.clone(),
            user_name: session.user_name.clone(),
            role_names: session.role_names(),
            is_admin: session.has(Role::Admin),
            is_clinician: session.has(Role::Clinician),
            platform_support: session.is_platform_support(),
            surface,
        }
    }
}

tokio::task_local! {
    /// The Hint SDK's URL while a request is answered (see [`hint_sdk_url`]).
    static HINT_SDK: Option<String>;
}

/// Runs `answer` with the Hint SDK's URL at hand for the layout ([`hint_sdk_url`]).
pub async fn with_hint_sdk<F: std::future::Future>(sdk: Option<String>, answer: F) -> F::Output {
    HINT_SDK.scope(sdk, answer).await
}

/// The URL of Hint's JS SDK for the page being rendered, when the policy allows it (in a
/// request answered behind [`with_hint_sdk`]; `None` elsewhere). The layout loads it; the app
/// works without it.
pub fn hint_sdk_url() -> Option<String> {
    HINT_SDK.try_with(Clone::clone).ok().flatten()
}

/// Origins a form on this page posts to, or is redirected to after posting (a response
/// extension the server's policy reads; origins as `Url::origin().ascii_serialization()`
/// writes them).
#[derive(Debug, Clone, Default)]
pub struct FormTargets(pub Vec<String>);
