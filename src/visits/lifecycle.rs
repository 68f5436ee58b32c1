//! The states of a visit and the one table of moves between them.
//!
//! ```text
//! launching ──launched──▶ in_progress ──result──▶ completed   (Hint: draft → signed)
//!     │                       │                      ▲
//!     ├───────────────────────┴──error──▶ failed ────┘ a late result still completes it
//!     └───────────────────────┴──cancel─▶ cancelled              (Hint: failed + reason / deleted)
//! ```
//!
//! [`VisitState::may_become`] is that table. Every statement that moves a visit takes its
//! "from" states from [`guard`], so the SQL and the table cannot disagree; a CHECK constraint
//! in the database keeps unknown states out, and reading one fails loudly.

use std::str::FromStr;

use serde::Serialize;

use crate::{db::UnknownValue, hint::client::InteractionStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    Launching,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

crate::db::text_column!(VisitState);

impl VisitState {
    pub const ALL: [VisitState; 5] = [
        VisitState::Launching,
        VisitState::InProgress,
        VisitState::Completed,
        VisitState::Failed,
        VisitState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Launching => "launching",
            VisitState::InProgress => "in_progress",
            VisitState::Completed => "completed",
            VisitState::Failed => "failed",
            VisitState::Cancelled => "cancelled",
        }
    }

    /// Whether a visit in this state may move to `to`: the one table of the lifecycle.
    pub fn may_become(self, to: VisitState) -> bool {
        use VisitState::*;
        match to {
            Launching => false,
            InProgress => self == Launching,
            // A result completes an open visit, and a failed one (nothing is thrown away).
            Completed => matches!(self, Launching | InProgress | Failed),
            Failed | Cancelled => self.is_open(),
        }
    }

    /// The states a visit may reach `to` from.
    pub fn sources(to: VisitState) -> impl Iterator<Item = VisitState> {
        Self::ALL
            .into_iter()
            .filter(move |from| from.may_become(to))
    }

    /// Still waiting for the partner: launching or in progress.
    pub fn is_open(self) -> bool {
        matches!(self, VisitState::Launching | VisitState::InProgress)
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            VisitState::Launching => "Starting",
            VisitState::InProgress => "In progress",
            VisitState::Completed => "Completed",
            VisitState::Failed => "Failed",
            VisitState::Cancelled => "Cancelled",
        }
    }

    /// What Hint's partner interaction should say for this state.
    pub fn interaction_status(self) -> InteractionStatus {
        match self {
            VisitState::Launching | VisitState::InProgress => InteractionStatus::Draft,
            VisitState::Completed => InteractionStatus::Signed,
            VisitState::Failed => InteractionStatus::Failed,
            VisitState::Cancelled => InteractionStatus::Deleted,
        }
    }
}

impl FromStr for VisitState {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "visit state",
                value: s.chars().take(40).collect(),
            })
    }
}

/// `visits.state IN (…)` for the states that may become `to` (`table` names the visits table
/// in the statement). The only source of the lifecycle's SQL guards.
pub fn guard(table: &str, to: VisitState) -> String {
    in_list(table, VisitState::sources(to))
}

/// `visits.state IN (…)` for the open states (work that only an open visit accepts).
pub fn open_guard(table: &str) -> String {
    in_list(table, VisitState::ALL.into_iter().filter(|s| s.is_open()))
}

fn in_list(table: &str, states: impl Iterator<Item = VisitState>) -> String {
    // The values are our own constants, never input.
    let list: Vec<String> = states.map(|s| format!("'{}'", s.as_str())).collect();
    if list.is_empty() {
        return "1 = 0".into();
    }
    format!("{table}.state IN ({})", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::{VisitState::*, *};

    #[test]
    fn the_whole_table_of_moves() {
        // Rows: from; columns: to (launching, in_progress, completed, failed, cancelled).
        let expected = [
            (Launching, [false, true, true, true, true]),
            (InProgress, [false, false, true, true, true]),
            (Completed, [false, false, false, false, false]),
            (Failed, [false, false, true, false, false]),
            (Cancelled, [false, false, false, false, false]),
        ];
        for (from, row) in expected {
            for (to, allowed) in VisitState::ALL.into_iter().zip(row) {
                assert_eq!(from.may_become(to), allowed, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn guards_come_from_the_table() {
        assert_eq!(
            guard("visits", Completed),
            "visits.state IN ('launching', 'in_progress', 'failed')"
        );
        assert_eq!(
            guard("visits", Failed),
            "visits.state IN ('launching', 'in_progress')"
        );
        assert_eq!(guard("visits", InProgress), "visits.state IN ('launching')");
        assert_eq!(
            open_guard("visits"),
            "visits.state IN ('launching', 'in_progress')"
        );
        assert_eq!(
            guard("visits", Launching),
            "1 = 0",
            "nothing moves back to launching"
        );
    }

    #[test]
    fn states_read_back_or_fail_loudly() {
        for state in VisitState::ALL {
            assert_eq!(state.as_str().parse::<VisitState>().unwrap(), state);
        }
        assert!("done".parse::<VisitState>().is_err());
        assert!("".parse::<VisitState>().is_err());
    }
}
