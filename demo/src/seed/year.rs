//! What a year of a large deployment holds, row by row, made with the app's own pieces: visit
//! ids (`VisitId::generate`), each partner's launch and result types, values sealed by the
//! app's `SecretBox` for their row, trail entries chained by `audit::Hashed` under the trail's
//! key. Day by day, every practice in turn, so that tables hold a year's interleaving.

use std::collections::VecDeque;

use chartbridge::{
    audit::{ChainKey, Hashed},
    crypto::{SecretBox, row_aad},
    db::Moment,
    ids::VisitId,
    partners::{
        haidy::{HaidyLaunch, HaidyResult, StoredReport, UploadOutcome},
        hcw::{HcwLaunch, HcwResult, InviteSummary, client::Consultation as HcwConsultation},
        mediquo::{
            MediquoLaunch,
            event::{Consultation, MediquoResult, Named, Report, SoapContent},
        },
        tiep::{TiepLaunch, TiepResult, default_form},
    },
};
use rand::Rng;
use serde_json::json;

use super::sink::{Batch, Val};

const DAY_MS: i64 = 86_400_000;
pub const DAYS: i64 = 365;

/// How large the year is. `Plan::full()` is the issue's; `scaled` divides every count.
#[derive(Debug, Clone)]
pub struct Plan {
    pub practices: usize,
    pub visits: u64,
    pub large_visits: u64,
    pub large_patients: u64,
    pub patients: u64,
    pub entries: u64,
    pub users: u64,
    pub sessions_per_user_day: u64,
    pub hint_events_per_day: u64,
}

impl Plan {
    pub fn scaled(scale: f64) -> Plan {
        let n = |v: f64| ((v * scale).round() as u64).max(1);
        Plan {
            practices: n(500.0) as usize,
            visits: n(2_000_000.0),
            large_visits: n(200_000.0),
            large_patients: n(50_000.0),
            patients: 1_000,
            entries: n(20_000_000.0),
            users: 10,
            sessions_per_user_day: 4,
            hint_events_per_day: 300,
        }
    }

    /// Practice `p`'s share: the first is the large one.
    pub fn practice(&self, p: usize) -> Share {
        let others = (self.practices - 1).max(1) as u64;
        let (visits, patients) = if p == 0 {
            (self.large_visits, self.large_patients)
        } else {
            ((self.visits - self.large_visits) / others, self.patients)
        };
        // Trail entries in proportion to visits.
        let entries = self.entries * visits / self.visits;
        Share {
            id: practice_id(p),
            visits,
            patients,
            entries,
            users: if p == 0 { self.users * 10 } else { self.users },
        }
    }
}

pub fn practice_id(p: usize) -> String {
    format!("pra-year-{p}")
}

pub struct Share {
    pub id: String,
    pub visits: u64,
    pub patients: u64,
    pub entries: u64,
    pub users: u64,
}

/// One practice's state while its year is written.
pub struct Practice {
    pub share: Share,
    visits_made: u64,
    entries_made: u64,
    /// The last few visits (an entry names one made about when it was).
    recent: VecDeque<(String, String, &'static str)>,
    seq: i64,
    head: String,
}

impl Practice {
    pub fn new(share: Share) -> Self {
        Practice {
            share,
            visits_made: 0,
            entries_made: 0,
            recent: VecDeque::new(),
            seq: 0,
            head: String::new(),
        }
    }

    pub fn head(&self) -> (i64, &str) {
        (self.seq, &self.head)
    }
}

pub struct Writer<'a> {
    pub secrets: &'a SecretBox,
    pub chain: &'a ChainKey,
    /// The year's first millisecond.
    pub start: i64,
    pub now: i64,
}

pub const VISIT_COLUMNS: &[&str] = &[
    "id",
    "practice_id",
    "patient_id",
    "patient_name",
    "user_id",
    "user_name",
    "partner",
    "state",
    "partner_ref",
    "launch",
    "result",
    "error_message",
    "hint_interaction_id",
    "hint_status",
    "hint_document_id",
    "created_at",
    "updated_at",
    "completed_at",
];
pub const AUDIT_COLUMNS: &[&str] = &[
    "practice_id",
    "seq",
    "at",
    "actor_id",
    "actor_roles",
    "platform_support",
    "action",
    "patient_id",
    "visit_id",
    "detail",
    "request_id",
    "prev_hash",
    "hash",
    "key_id",
];
pub const JOB_COLUMNS: &[&str] = &[
    "id",
    "practice_id",
    "kind",
    "dedupe_key",
    "payload",
    "state",
    "attempts",
    "max_attempts",
    "run_at",
    "rerun",
    "last_error",
    "created_at",
    "updated_at",
];

const PARTNERS: [&str; 4] = ["tiep", "haidy", "hcw", "mediquo"];
const FIRST: [&str; 8] = [
    "Ada", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gus", "Hana",
];
const LAST: [&str; 8] = [
    "Okafor",
    "Lindqvist",
    "García",
    "Nakamura",
    "Byrne",
    "Haddad",
    "Kowalski",
    "Mbeki",
];
const ACTIONS: [&str; 10] = [
    "visit_launched",
    "chart_viewed",
    "result_viewed",
    "visit_finished",
    "result_viewed",
    "visits_listed",
    "patients_searched",
    "result_viewed",
    "chart_viewed",
    "result_viewed",
];

pub fn patient_id(p: usize, n: u64) -> String {
    format!("pat-y{p}-{n}")
}

fn patient_name(n: u64) -> String {
    format!(
        "{} {}",
        FIRST[(n % 8) as usize],
        LAST[((n / 8) % 8) as usize]
    )
}

impl Writer<'_> {
    fn seal(&self, table: &str, column: &str, practice: &str, row: &str, plain: &str) -> String {
        self.secrets
            .seal_text(plain, &row_aad(table, column, practice, row))
    }

    /// Practice `index`'s visits and trail entries of `day`, appended to the batches.
    pub fn day(
        &self,
        index: usize,
        practice: &mut Practice,
        day: i64,
        visits: &mut Batch,
        audit: &mut Batch,
        jobs: &mut Batch,
    ) {
        let share = &practice.share;
        let until = |total: u64| (total as i128 * (day as i128 + 1) / DAYS as i128) as u64;
        let mut rng = rand::thread_rng();
        while practice.visits_made < until(share.visits) {
            let k = practice.visits_made;
            let at =
                self.start + (k as i128 * (DAYS * DAY_MS) as i128 / share.visits as i128) as i64;
            let row = self.visit(index, &practice.share, k, at, &mut rng, jobs);
            practice
                .recent
                .push_back((row.0.clone(), row.1.clone(), row.2));
            if practice.recent.len() > 64 {
                practice.recent.pop_front();
            }
            visits.push(row.3);
            practice.visits_made += 1;
        }
        let share = &practice.share;
        while practice.entries_made < until(share.entries) {
            let j = practice.entries_made;
            let at =
                self.start + (j as i128 * (DAYS * DAY_MS) as i128 / share.entries as i128) as i64;
            let action = ACTIONS[(j % ACTIONS.len() as u64) as usize];
            let (visit_id, patient, partner) = practice
                .recent
                .get(rng.gen_range(0..practice.recent.len().max(1)))
                .cloned()
                .unwrap_or_default();
            let (patient_id, visit_id) = match action {
                "patients_searched" => (None, None),
                "chart_viewed" | "visits_listed" => (Some(patient), None),
                _ => (Some(patient), Some(visit_id)),
            };
            let detail = if action == "visit_launched" {
                partner
            } else {
                ""
            };
            let actor = format!("usr-y{index}-{}", j % share.users);
            let request_id = format!("req_{:016x}", rng.r#gen::<u64>());
            practice.seq += 1;
            let hash = Hashed {
                practice_id: &share.id,
                seq: practice.seq,
                at,
                actor_id: &actor,
                actor_roles: "clinician",
                platform_support: false,
                action,
                patient_id: patient_id.as_deref(),
                visit_id: visit_id.as_deref(),
                detail,
                request_id: Some(&request_id),
                prev_hash: &practice.head,
            }
            .hash(Some(self.chain));
            audit.push(vec![
                share.id.as_str().into(),
                practice.seq.into(),
                at.into(),
                actor.into(),
                "clinician".into(),
                0.into(),
                action.into(),
                patient_id.into(),
                visit_id.into(),
                detail.into(),
                request_id.into(),
                std::mem::replace(&mut practice.head, hash.clone()).into(),
                hash.into(),
                self.chain.id().into(),
            ]);
            practice.entries_made += 1;
        }
    }

    /// Visit `k` of a practice: (id, patient, partner, row).
    fn visit(
        &self,
        index: usize,
        share: &Share,
        k: u64,
        at: i64,
        rng: &mut impl Rng,
        jobs: &mut Batch,
    ) -> (String, String, &'static str, Vec<Val>) {
        let id = VisitId::generate();
        let id = id.as_str().to_string();
        let practice = share.id.as_str();
        let patient_n = (k * 7919) % share.patients;
        let patient = patient_id(index, patient_n);
        let partner = PARTNERS[(k % 4) as usize];
        // The year's last days hold visits still open; a few fail or are cancelled.
        let open = k + share.visits / 200 >= share.visits;
        let state = match (open, k % 100) {
            (true, _) => "in_progress",
            (_, 0 | 1) => "failed",
            (_, 2) => "cancelled",
            _ => "completed",
        };
        let (launch, result, partner_ref) = partner_data(partner, k, at, rng);
        let done = at + 20 * 60_000;
        let (result, error, hint_status, completed_at) = match state {
            "completed" => (Some(result), None, "signed", Some(done)),
            "failed" => (
                None,
                Some("The partner did not send a result within 24 hours.".to_string()),
                "failed",
                Some(done),
            ),
            "cancelled" => (None, None, "deleted", Some(done)),
            _ => (None, None, "draft", None),
        };
        let seal = |column: &str, plain: &str| self.seal("visits", column, practice, &id, plain);
        let row = vec![
            id.as_str().into(),
            practice.into(),
            patient.as_str().into(),
            seal("patient_name", &patient_name(patient_n)).into(),
            format!("usr-y{index}-{}", k % share.users).into(),
            "Dr. Year".into(),
            partner.into(),
            state.into(),
            partner_ref.into(),
            seal("launch", &launch).into(),
            result.map(|r| seal("result", &r)).into(),
            error.map(|e| seal("error_message", &e)).into(),
            Some(format!("int-{:016x}", rng.r#gen::<u64>())).into(),
            hint_status.into(),
            (state == "completed")
                .then(|| format!("doc-{:016x}", rng.r#gen::<u64>()))
                .into(),
            at.into(),
            completed_at.unwrap_or(at).into(),
            completed_at.map_or(Val::Null, Val::Int),
        ];
        // An open visit waits on its poll; one in ten failed ones left its write-back dead.
        let job = match state {
            "in_progress" => Some(("poll_partner", "queued", self.now + 3_600_000, None)),
            "failed" if k % 1000 == 0 => Some((
                "sync_interaction",
                "dead",
                done,
                Some("Hint answered 503 eight times.".to_string()),
            )),
            _ => None,
        };
        if let Some((kind, job_state, run_at, last_error)) = job {
            jobs.push(vec![
                format!("job_{:032x}", rng.r#gen::<u128>()).into(),
                practice.into(),
                kind.into(),
                format!("{kind}:{id}").into(),
                json!({ "visit_id": id }).to_string().into(),
                job_state.into(),
                0.into(),
                8.into(),
                run_at.into(),
                0.into(),
                last_error.into(),
                at.into(),
                at.into(),
            ]);
        }
        (id, patient, partner, row)
    }
}

/// A partner's launch, result and reference for visit `k`, as its own types write them.
fn partner_data(partner: &str, k: u64, at: i64, rng: &mut impl Rng) -> (String, String, String) {
    let when = Moment(at).iso();
    let text = |what: &str| {
        format!(
            "{what}: patient reports {} days of symptoms; examined, vitals within normal limits. \
             Discussed findings and options; follow-up in two weeks or sooner if worse.",
            k % 14 + 1
        )
    };
    let reference = format!("{:016x}", rng.r#gen::<u64>());
    match partner {
        "tiep" => {
            let launch = TiepLaunch {
                form: default_form(),
                tiep_session_id: Some(format!("ts-{reference}")),
            };
            let mut answers = serde_json::Map::new();
            answers.insert("reason".into(), json!(text("Reason")));
            answers.insert("pain-level".into(), json!(k % 11));
            answers.insert("assessment".into(), json!(text("Assessment")));
            answers.insert("plan".into(), json!(text("Plan")));
            let result = TiepResult::Simple { answers };
            (
                to_json(&launch),
                to_json(&result),
                format!("ts-{reference}"),
            )
        }
        "haidy" => {
            let launch = HaidyLaunch {
                haidy_email: "clinician@example.org".into(),
                context_id: Some(format!("ctx-{reference}")),
                deep_link: None,
                uploads: vec![UploadOutcome::sent("lab.pdf".into(), "51 bytes".into())],
            };
            let result = HaidyResult {
                consultation_id: format!("hc-{reference}"),
                approved_at: Some(when),
                report: StoredReport::Json(json!({
                    "summary": text("Summary"),
                    "history": text("History"),
                    "plan": text("Plan"),
                })),
            };
            (
                to_json(&launch),
                to_json(&result),
                format!("hc-{reference}"),
            )
        }
        "hcw" => {
            let launch = HcwLaunch {
                language: "en".into(),
                scheduled_for: None,
                routing: Some("Sent to the practice's queue".into()),
                invite: Some(InviteSummary {
                    id: format!("inv-{reference}"),
                    patient_url: None,
                    status: Some("SENT".into()),
                    sent: true,
                    asked_to_send: true,
                }),
                consultation_status: Some("closed".into()),
            };
            let result = HcwResult {
                consultation: HcwConsultation {
                    id: Some(format!("hcwc-{reference}")),
                    status: Some("closed".into()),
                    accepted_at: Some(at),
                    closed_at: Some(at + 15 * 60_000),
                    doctor_comment: Some(text("Comment")),
                    doctor_rating: Some("good".into()),
                    patient_comment: Some("Thank you.".into()),
                    patient_rating: Some("good".into()),
                },
            };
            (
                to_json(&launch),
                to_json(&result),
                format!("inv-{reference}"),
            )
        }
        _ => {
            let launch = MediquoLaunch {
                event: "consultation_finished".into(),
            };
            let result = MediquoResult {
                event: "consultation_finished".into(),
                occurred_on: Some(at / 1000),
                consultation: Some(Consultation {
                    id: Some(reference.clone()),
                    kind: Some("chat".into()),
                    start_date: Some(when.clone()),
                    end_date: Some(when),
                    speciality: Some(Named {
                        id: Some("1".into()),
                        name: Some("General medicine".into()),
                    }),
                }),
                professional: Some(Named {
                    id: Some("pro-1".into()),
                    name: Some("Dr. MediQuo".into()),
                }),
                reports: vec![Report {
                    id: Some(format!("r-{reference}")),
                    kind: Some("soap".into()),
                    content: SoapContent {
                        subjective: Some(text("Subjective")),
                        objective: Some(text("Objective")),
                        assessment: Some(text("Assessment")),
                        plan: Some(text("Plan")),
                    },
                }],
                prescriptions: Vec::new(),
                allergies: Vec::new(),
                diseases: Vec::new(),
                medications: Vec::new(),
            };
            (
                to_json(&launch),
                to_json(&result),
                format!("consultation:{reference}"),
            )
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("a partner's own types serialise")
}

/// Practice `p`'s patients in its search index, sealed as the index seals them.
pub fn patient_index(w: &Writer<'_>, p: usize, share: &Share, batch: &mut Batch) {
    for n in 0..share.patients {
        let id = patient_id(p, n);
        let name = patient_name(n);
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        let sealed =
            json!({ "first_name": first, "last_name": last, "dob": "1980-01-01" }).to_string();
        batch.push(vec![
            share.id.as_str().into(),
            id.as_str().into(),
            w.seal("patient_index", "sealed", &share.id, &id, &sealed)
                .into(),
            w.now.into(),
        ]);
    }
}

/// A week of sessions (all but the last idle window's long expired, as the sweep finds them),
/// and the last 72 hours of Hint's event ids.
pub fn week(
    w: &Writer<'_>,
    plan: &Plan,
    p: usize,
    share: &Share,
    sessions: &mut Batch,
    events: &mut Batch,
) {
    let mut rng = rand::thread_rng();
    let per_week = share.users * plan.sessions_per_user_day * 7;
    for s in 0..per_week {
        let created = w.now - 7 * DAY_MS + (s as i64 * 7 * DAY_MS / per_week as i64);
        let last_seen = created + 10 * 60_000;
        sessions.push(vec![
            format!("{:064x}", rng.r#gen::<u128>()).into(),
            share.id.as_str().into(),
            format!("usr-y{p}-{}", s % share.users).into(),
            Val::Null,
            "Dr. Year".into(),
            "clinician".into(),
            "core_page".into(),
            Val::Null,
            Val::Null,
            Val::Null,
            created.into(),
            last_seen.into(),
            (created + 12 * 3_600_000).into(),
        ]);
    }
    let per_window = plan.hint_events_per_day * 3;
    for e in 0..per_window {
        events.push(vec![
            share.id.as_str().into(),
            "hint".into(),
            format!("evt-{:024x}", rng.r#gen::<u128>()).into(),
            (w.now - 3 * DAY_MS + (e as i64 * 3 * DAY_MS / per_window as i64)).into(),
        ]);
    }
}
