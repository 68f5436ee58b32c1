//! Identifiers and text that come from outside (Hint, partners, the browser), checked once at
//! the edge so that nothing malformed reaches a query (our own `VisitId` too: partners echo
//! it back): an `ExternalId` refuses the empty
//! string, more than 128 characters, whitespace and control characters (PostgreSQL refuses NUL
//! in text; SQLite would store it).

use serde::{Deserialize, Serialize};

use crate::{
    db::{UnknownValue, new_ordered_id},
    error::AppError,
};

const MAX_ID_LEN: usize = 128;

/// An id from outside: `pra-…`, `pat-…`, `inter-…`, our `vis_…`, a partner's session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExternalId(String);

impl ExternalId {
    /// Checks `value`; the error is a 400 that says what is wrong.
    pub fn parse(value: &str) -> Result<Self, AppError> {
        Self::try_from(value.to_string()).map_err(AppError::BadRequest)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ExternalId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() {
            return Err("an id is empty".into());
        }
        if value.chars().count() > MAX_ID_LEN {
            return Err(format!("an id is longer than {MAX_ID_LEN} characters"));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("an id contains spaces or control characters".into());
        }
        Ok(Self(value))
    }
}

impl From<ExternalId> for String {
    fn from(id: ExternalId) -> Self {
        id.0
    }
}

impl std::ops::Deref for ExternalId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ExternalId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Our id for a visit (`vis_…`): in Hint's `integration_record_id`, the link back, jobs and
/// partners' contexts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VisitId(ExternalId);

crate::db::text_column!(VisitId);

impl VisitId {
    /// A new id: its time, then random (`db::new_ordered_id`).
    pub fn generate() -> Self {
        Self(ExternalId::try_from(new_ordered_id("vis")).expect("generated ids are well-formed"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<ExternalId> for VisitId {
    fn from(id: ExternalId) -> Self {
        Self(id)
    }
}

impl std::str::FromStr for VisitId {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExternalId::try_from(s.to_string())
            .map(Self)
            .map_err(|_| UnknownValue {
                what: "visit id",
                value: s.chars().take(40).collect(),
            })
    }
}

impl std::fmt::Display for VisitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Free text from outside (names, emails) as we store and show it: control characters other
/// than newline and tab removed, at most `max` characters.
pub fn clean_text(value: &str, max: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(ExternalId::parse("pat-123").is_ok());
        assert!(ExternalId::parse("60c478df-2e8d-4317-90af-d801c217a034").is_ok());
        for bad in ["", "a b", "nul\0", "tab\t", &"x".repeat(129)] {
            assert!(ExternalId::parse(bad).is_err(), "{bad:?}");
        }
        let parsed: Result<ExternalId, _> = serde_json::from_str("\"pra-\\u0000\"");
        assert!(parsed.is_err());
    }

    #[test]
    fn text_is_cleaned() {
        assert_eq!(clean_text("Ava\0 Thompson\u{7}", 100), "Ava Thompson");
        assert_eq!(clean_text("line\nnext", 100), "line\nnext");
        assert_eq!(clean_text("abcdef", 3), "abc");
    }
}
