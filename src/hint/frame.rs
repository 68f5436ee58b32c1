//! The chrome every framed page shows around its content: practice, user, roles, navigation,
//! and the session key that links, forms and htmx requests carry (there are no cookies).

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
