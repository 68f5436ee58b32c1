//! Practices in sandbox Hint (`TestPractice`: installed through Instant On, with patients),
//! handshakes and session keys.

use chartbridge::crypto::sign_hmac_sha256;

use super::{TestApp, WEBHOOK_SECRET};

/// One practice in sandbox Hint, installed in the app.
pub struct TestPractice {
    pub id: String,
    pub admin: String,
    pub clinician: String,
    pub patients: Vec<String>,
}

impl TestApp {
    /// A practice with three patients, installed through Instant On.
    pub async fn new_practice(&self, name: &str) -> TestPractice {
        let id = self.hint.add_practice(name);
        let patients = vec![
            self.hint
                .add_patient(&id, "Ava", "Thompson", "1984-03-12", "female"),
            self.hint
                .add_patient(&id, "Liam", "Carter", "1979-11-02", "male"),
            self.hint
                .add_patient(&id, "Riley", "Morgan", "1989-12-01", "unknown"),
        ];
        let status = self.hint.install(&id).await.expect("install runs");
        assert_eq!(status, 200, "Instant On should succeed");
        // The install starts the practice's patient index: read it now, as the app's own
        // runner would at once.
        self.run_jobs().await;
        TestPractice {
            admin: self.hint.user_with_role(&id, "admin").unwrap(),
            clinician: self.hint.user_with_role(&id, "clinician").unwrap(),
            id,
            patients,
        }
    }

    /// A patient added in Hint after the install; Hint tells the app (`patient.created`), as
    /// it does live. Answers the patient's id.
    pub async fn add_patient(
        &self,
        practice_id: &str,
        first: &str,
        last: &str,
        dob: &str,
        sex: &str,
    ) -> String {
        let id = self.hint.add_patient(practice_id, first, last, dob, sex);
        let object = self.hint.patient_json(&id).expect("the patient exists");
        let told = self
            .hint
            .send_event("patient.created", practice_id, object)
            .await
            .expect("the event is sent");
        assert_eq!(told, 200, "the app takes patient.created");
        id
    }

    /// A session key from a real signed handshake by sandbox Hint.
    pub async fn session(&self, user_id: &str, patient_id: Option<&str>) -> String {
        self.hint
            .handshake(user_id, patient_id, None)
            .await
            .expect("handshake succeeds")
    }

    /// Posts a raw body to the handshake with the given signature header.
    pub async fn handshake_raw(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hint/handshake", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("x-hint-signature", s);
        }
        request.send().await.unwrap()
    }
}

/// A signed minimal handshake body.
/// Now as Hint puts it in a handshake (RFC 3339, to the nanosecond).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn sign(body: &[u8]) -> String {
    sign_hmac_sha256(WEBHOOK_SECRET.as_bytes(), body)
}
