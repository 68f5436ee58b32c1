//! The PHI audit trail (HIPAA §164.312(b): record and examine). Every access to or change of
//! patient data, and every change to how a practice is connected, leaves one [`Entry`]: who
//! ([`Actor`]: the Hint user, their roles, whether Hint platform support; or a partner, or
//! Chartbridge itself), did what ([`Action`]), for which patient and visit, when, under which
//! request id.
//!
//! Entries are written on the action's own transaction where it has one ([`Recorder::record_in`]), else by
//! the [`Recorder`] (group commit) before the action's answer: an action that happened is
//! never missing from the trail. They
//! form one chain per practice: each entry's hash is a MAC, under a key that is not in the
//! database ([`key`]), of its fields and the previous entry's hash, and `audit_heads` keeps the
//! last sequence number and hash, so [`verify`] finds any changed, inserted or deleted entry.
//! What a chain cannot show by itself (its last entries cut off, or a practice's trail
//! deleted whole) the signed [`checkpoints`] published outside the database show. Entries hold
//! ids, never names or report text.

mod chain;
pub mod checkpoints;
pub mod key;
mod search;
pub mod verify;
mod views;

pub use chain::Hashed;
use chain::record_many;
pub use key::{ChainKey, ChainKeys};

pub use search::{Before, Event, Filter, search};

use crate::group_commit::GroupCommit;
use sqlx::AnyConnection;

use crate::{db::Db, ids::clean_text, tenancy::PracticeId};

/// What was done. Stored as text (`as_str`); the list is the trail's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Visits were listed (patients' names): the practice's recent ones, or one patient's.
    VisitsListed,
    /// Patients were searched (the query is not kept: it is a name).
    PatientsSearched,
    /// A patient's chart page (their visits) was opened.
    ChartViewed,
    /// A visit's page, with its result, was opened.
    ResultViewed,
    /// A visit was started (a partner tool launched for the patient).
    VisitLaunched,
    /// A clinician cancelled an open visit.
    VisitCancelled,
    /// The visit's result came in (or a clinician finished it).
    VisitFinished,
    /// A partner corrected a signed visit's result (the earlier one kept).
    VisitAddended,
    /// The visit could not complete.
    VisitFailed,
    /// An admin changed a partner's settings.
    SettingsChanged,
    /// An admin opened a partner delivery kept unmatched (it holds patient data).
    UnmatchedViewed,
    /// An admin dismissed a kept delivery.
    UnmatchedDismissed,
    /// An admin put a failed job back in the queue.
    JobRetried,
    /// An admin exported the trail.
    AuditExported,
    /// Hint destroyed a patient: their data was erased from Chartbridge.
    PatientErased,
    /// An admin downloaded the practice's archive.
    PracticeExported,
    /// A form showing the patient's contact details (name, email, phone from Hint) was
    /// opened: a launch form of a partner that needs them.
    ContactDetailsViewed,
    /// An action of one partner's own, declared by that partner
    /// (`PartnerTool::audit_actions`).
    Partner(PartnerAction),
}

/// An action a partner records of its own (a sign-in into its system, files sent to it): its
/// stored code, never changed once live, and its words for the admin reading the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerAction {
    pub code: &'static str,
    pub label: &'static str,
}

impl Action {
    /// Chartbridge's own actions (partners declare theirs).
    pub const ALL: [Action; 17] = [
        Action::VisitsListed,
        Action::PatientsSearched,
        Action::ChartViewed,
        Action::ResultViewed,
        Action::VisitLaunched,
        Action::VisitCancelled,
        Action::VisitFinished,
        Action::VisitAddended,
        Action::VisitFailed,
        Action::SettingsChanged,
        Action::UnmatchedViewed,
        Action::UnmatchedDismissed,
        Action::JobRetried,
        Action::AuditExported,
        Action::PatientErased,
        Action::PracticeExported,
        Action::ContactDetailsViewed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::VisitsListed => "visits_listed",
            Action::PatientsSearched => "patients_searched",
            Action::ChartViewed => "chart_viewed",
            Action::ResultViewed => "result_viewed",
            Action::VisitLaunched => "visit_launched",
            Action::VisitCancelled => "visit_cancelled",
            Action::VisitFinished => "visit_finished",
            Action::VisitAddended => "visit_addended",
            Action::VisitFailed => "visit_failed",
            Action::SettingsChanged => "settings_changed",
            Action::UnmatchedViewed => "unmatched_viewed",
            Action::UnmatchedDismissed => "unmatched_dismissed",
            Action::JobRetried => "job_retried",
            Action::AuditExported => "audit_exported",
            Action::PatientErased => "patient_erased",
            Action::PracticeExported => "practice_exported",
            Action::ContactDetailsViewed => "contact_details_viewed",
            Action::Partner(action) => action.code,
        }
    }

    /// Words for the admin reading the trail.
    pub fn label(self) -> &'static str {
        match self {
            Action::VisitsListed => "Listed visits",
            Action::PatientsSearched => "Searched patients",
            Action::ChartViewed => "Opened the patient's chart",
            Action::ResultViewed => "Opened a visit's result",
            Action::VisitLaunched => "Started a visit",
            Action::VisitCancelled => "Cancelled a visit",
            Action::VisitFinished => "Visit finished",
            Action::VisitAddended => "Visit result corrected",
            Action::VisitFailed => "Visit failed",
            Action::SettingsChanged => "Changed partner settings",
            Action::UnmatchedViewed => "Opened a kept delivery",
            Action::UnmatchedDismissed => "Dismissed a kept delivery",
            Action::JobRetried => "Retried failed work",
            Action::AuditExported => "Exported the audit trail",
            Action::PatientErased => "Erased a patient Hint removed",
            Action::PracticeExported => "Downloaded the practice's archive",
            Action::ContactDetailsViewed => "Opened the patient's contact details",
            Action::Partner(action) => action.label,
        }
    }

    /// One of Chartbridge's own actions by its stored code.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The Hint user's id; `partner:<id>` for a partner's delivery; `chartbridge` for our own
    /// decisions (a timeout, a refusal).
    pub id: String,
    /// Their Chartbridge roles, space separated (empty for partners and Chartbridge).
    pub roles: String,
    /// Hint staff acting on the practice's behalf.
    pub platform_support: bool,
    /// The request it happened in, when it was one.
    pub request_id: Option<String>,
}

impl Actor {
    /// Chartbridge itself (a job, a timeout).
    pub fn chartbridge() -> Self {
        Actor {
            id: "chartbridge".into(),
            roles: String::new(),
            platform_support: false,
            request_id: None,
        }
    }

    /// A partner's server, delivering a result.
    pub fn partner(partner: &str) -> Self {
        Actor {
            id: format!("partner:{partner}"),
            ..Actor::chartbridge()
        }
    }
}

/// One entry: the action, and the patient, visit and detail it concerns (ids and short words
/// only, never names or report text).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub action: Action,
    pub patient_id: Option<&'a str>,
    pub visit_id: Option<&'a str>,
    /// E.g. the partner whose settings changed, the filters of an export.
    pub detail: &'a str,
}

impl<'a> Entry<'a> {
    pub fn new(action: Action) -> Self {
        Entry {
            action,
            patient_id: None,
            visit_id: None,
            detail: "",
        }
    }

    pub fn patient(mut self, patient_id: &'a str) -> Self {
        self.patient_id = Some(patient_id);
        self
    }

    pub fn visit(mut self, visit_id: &'a str) -> Self {
        self.visit_id = Some(visit_id);
        self
    }

    pub fn detail(mut self, detail: &'a str) -> Self {
        self.detail = detail;
        self
    }
}

/// An entry waiting to be written, with who and for which practice.
#[derive(Debug, Clone)]
pub struct Pending {
    pub practice_id: PracticeId,
    pub actor: Actor,
    pub action: Action,
    pub patient_id: Option<String>,
    pub visit_id: Option<String>,
    pub detail: String,
}

impl Pending {
    pub fn new(practice_id: &PracticeId, actor: &Actor, entry: Entry<'_>) -> Self {
        Pending {
            practice_id: practice_id.clone(),
            actor: actor.clone(),
            action: entry.action,
            patient_id: entry.patient_id.map(String::from),
            visit_id: entry.visit_id.map(String::from),
            detail: clean_text(entry.detail, 300),
        }
    }
}

/// Writes entries for actions that write nothing else (a page opened, a sign-in minted), with
/// group commit: requests arriving together share one transaction, and each caller waits until
/// its entry is committed, so a page is never answered with its entry unwritten.
#[derive(Clone, Debug)]
pub struct Recorder {
    writer: GroupCommit<Pending>,
    /// The key entries are chained under.
    key: ChainKey,
    /// Views recorded lately, so that a page polled or reopened is recorded once a while
    /// (`views.rs`).
    recent_views: views::RecentViews,
}

/// Most entries committed together, and how many may wait.
const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

impl Recorder {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn spawn(db: Db, key: ChainKey) -> Self {
        let chain = key.clone();
        let writer = GroupCommit::spawn(
            "the audit trail",
            MAX_BATCH,
            QUEUE,
            move |pending: Vec<Pending>| {
                let db = db.clone();
                let key = chain.clone();
                async move {
                    let mut tx = db.begin().await?;
                    record_many(&mut tx, &key, &pending).await?;
                    tx.commit().await
                }
            },
        );
        Recorder {
            writer,
            key,
            recent_views: views::RecentViews::default(),
        }
    }

    /// Appends an entry to the practice's chain on the caller's transaction (the action's
    /// own): both commit, or neither.
    pub async fn record_in(
        &self,
        conn: &mut AnyConnection,
        practice_id: &PracticeId,
        actor: &Actor,
        entry: Entry<'_>,
    ) -> Result<(), sqlx::Error> {
        record_many(conn, &self.key, &[Pending::new(practice_id, actor, entry)]).await
    }

    /// Appends entries, in order, on the caller's transaction.
    pub async fn record_all_in(
        &self,
        conn: &mut AnyConnection,
        pending: &[Pending],
    ) -> Result<(), sqlx::Error> {
        record_many(conn, &self.key, pending).await
    }

    /// Appends an entry and waits until it is committed.
    pub async fn record(
        &self,
        practice_id: &PracticeId,
        actor: &Actor,
        entry: Entry<'_>,
    ) -> Result<(), AuditError> {
        self.writer
            .submit(Pending::new(practice_id, actor, entry))
            .await
            .map_err(AuditError)
    }
}

/// An entry could not be written (the action it records must not go ahead unrecorded).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AuditError(crate::group_commit::GroupCommitError);

impl From<AuditError> for crate::error::AppError {
    fn from(e: AuditError) -> Self {
        crate::error::AppError::from(anyhow::Error::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_and_the_hash_covers_every_field() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("deleted_everything"), None);
        let base = Hashed {
            practice_id: "pra-1",
            seq: 1,
            at: 5,
            actor_id: "user-1",
            actor_roles: "clinician",
            platform_support: false,
            action: "result_viewed",
            patient_id: Some("pat-1"),
            visit_id: Some("vis-1"),
            detail: "",
            request_id: Some("abc"),
            prev_hash: "",
        };
        let key = ChainKey::new(&crate::config::SecretKey([7; 32]));
        let hash = base.hash(Some(&key));
        // Keyed: neither the plain hash nor another key's MAC matches.
        assert_ne!(base.hash(None), hash);
        let other_key = ChainKey::new(&crate::config::SecretKey([8; 32]));
        assert_ne!(base.hash(Some(&other_key)), hash);
        let changed = [
            Hashed {
                practice_id: "pra-2",
                ..base
            },
            Hashed { seq: 2, ..base },
            Hashed { at: 6, ..base },
            Hashed {
                actor_id: "user-2",
                ..base
            },
            Hashed {
                actor_roles: "admin",
                ..base
            },
            Hashed {
                platform_support: true,
                ..base
            },
            Hashed {
                action: "chart_viewed",
                ..base
            },
            Hashed {
                patient_id: Some("pat-2"),
                ..base
            },
            Hashed {
                visit_id: None,
                ..base
            },
            Hashed {
                detail: "x",
                ..base
            },
            Hashed {
                request_id: None,
                ..base
            },
            Hashed {
                prev_hash: "00",
                ..base
            },
        ];
        for other in changed {
            assert_ne!(other.hash(Some(&key)), hash);
        }
    }
}
