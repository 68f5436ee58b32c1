//! Partners set up for a practice (Tiep, HCW@Home, Haidy, MediQuo), visits started and launched
//! with them, their reports and webhooks.

use chartbridge::{crypto::sign_hmac_sha256, visits::Visit};
use chartbridge_sandbox::{FakePartner, Practice};
use serde_json::Value;

use super::{Page, TestApp, TestPractice};

impl TestApp {
    /// Connects `fake` for a practice as its admin would: the fake readies its side and the
    /// admin saves the fields it answers. Answers those fields.
    pub async fn connect(
        &self,
        practice: &TestPractice,
        fake: &dyn FakePartner,
    ) -> Vec<(&'static str, String)> {
        let (user_emails, patients) = {
            let world = self.hint.world();
            let emails: Vec<String> = world
                .users
                .iter()
                .filter(|u| u.practice_id == practice.id)
                .map(|u| u.email.clone())
                .collect();
            let patients: Vec<(String, String)> = world
                .patients
                .iter()
                .filter(|p| p.practice_id == practice.id)
                .map(|p| (p.id.clone(), format!("{} {}", p.first_name, p.last_name)))
                .collect();
            (emails, patients)
        };
        let app_url = url::Url::parse(&self.address).unwrap();
        let fields = fake.connect(&Practice {
            id: &practice.id,
            name: &practice.id,
            app_url: &app_url,
            user_emails: &user_emails,
            patients: &patients,
        });
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let saved = self.save_settings(practice, fake.id(), &form).await;
        assert_eq!(saved.status(), 200, "saving the {} settings", fake.id());
        fields
    }

    /// Tiep set up for a practice; answers the facility's API key.
    pub async fn setup_tiep(&self, practice: &TestPractice) -> String {
        let fields = self.connect(practice, &self.partners.tiep).await;
        field(&fields, "api_key")
    }

    /// MediQuo set up for a practice; answers the sandbox integration's id.
    pub async fn setup_mediquo(&self, practice: &TestPractice) -> String {
        self.connect(practice, &self.partners.mediquo).await;
        self.mediquo
            .integration_of(&practice.id)
            .expect("the practice's integration")
    }

    /// HCW@Home set up for a practice, routed to the clinician (`queue: None`) or to `queue`;
    /// answers the service account's email.
    pub async fn setup_hcw(&self, practice: &TestPractice, queue: Option<&str>) -> String {
        let fields = self.connect(practice, &self.partners.hcw).await;
        if let Some(queue) = queue {
            let mut routed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            routed.retain(|(k, _)| !["routing", "queue"].contains(k));
            routed.extend([("routing", "queue"), ("queue", queue)]);
            let saved = self.save_settings(practice, "hcw", &routed).await;
            assert_eq!(saved.status(), 200, "routing HCW invitations to {queue}");
        }
        field(&fields, "service_email")
    }

    /// Haidy set up for a practice; answers the API token.
    pub async fn setup_haidy(&self, practice: &TestPractice) -> String {
        let fields = self.connect(practice, &self.partners.haidy).await;
        field(&fields, "api_token")
    }

    /// Saves one partner's settings section as the practice's admin; answers the response.
    pub async fn save_settings(
        &self,
        practice: &TestPractice,
        partner: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let admin = self.session(&practice.admin, None).await;
        self.post_form(&format!("/hint/settings/{partner}"), &admin, fields)
            .await
    }

    /// A practice with Tiep set up and one visit started by its clinician for its first patient;
    /// answers the practice, the clinician's session key and the visit.
    pub async fn open_tiep_visit(&self, name: &str) -> (TestPractice, String, Visit) {
        let practice = self.new_practice(name).await;
        self.setup_tiep(&practice).await;
        let key = self.session(&practice.clinician, None).await;
        assert_eq!(
            self.start_visit(&key, &practice.patients[0]).await.status(),
            303
        );
        let visit = self.only_visit(&practice.id).await;
        (practice, key, visit)
    }

    /// A practice with Tiep set up and one open Tiep visit for each of its three patients.
    pub async fn open_tiep_visit_per_patient(&self, name: &str) -> (TestPractice, Vec<Visit>) {
        let practice = self.new_practice(name).await;
        self.setup_tiep(&practice).await;
        let key = self.session(&practice.clinician, None).await;
        for patient in &practice.patients {
            assert_eq!(self.start_visit(&key, patient).await.status(), 303);
        }
        let visits = self.visits_of(&practice.id).await;
        assert_eq!(visits.len(), 3);
        (practice, visits)
    }

    /// Sends one file to Haidy for `patient` as the launch form does (the key in the header,
    /// as htmx sends it); answers the launch's response.
    pub async fn launch_haidy(
        &self,
        key: &str,
        patient: &str,
        file: (&str, &[u8], &str),
    ) -> reqwest::Response {
        let (name, bytes, content_type) = file;
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(name.to_string())
            .mime_str(content_type)
            .unwrap();
        let form = reqwest::multipart::Form::new()
            .text("patient_id", patient.to_string())
            .text("haidy_email", "casey@haidy.example")
            .part("files", part);
        self.http
            .post(format!("{}/hint/partners/haidy/launch", self.address))
            .header("x-hint-session-key", key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Starts an HCW@Home video visit for `patient` (English, routed as set up); answers the
    /// visit.
    pub async fn launch_hcw(&self, practice_id: &str, key: &str, patient: &str) -> Visit {
        let launched = self
            .post_form(
                "/hint/partners/hcw/launch",
                key,
                &[("patient_id", patient), ("language", "en")],
            )
            .await;
        assert_eq!(launched.status(), 303, "the invite is created");
        self.visits_of(practice_id)
            .await
            .into_iter()
            .find(|v| v.partner == "hcw")
            .expect("the HCW@Home visit")
    }

    /// The doctor's SSO sign-in into HCW@Home for a visit, as the visit page's button does;
    /// answers where the browser is sent.
    pub async fn hcw_sign_in(&self, key: &str, visit: &Visit) -> String {
        let signed_in = self
            .post_form(
                &format!("/hint/partners/hcw/visits/{}/sign-in", visit.id),
                key,
                &[],
            )
            .await;
        assert_eq!(signed_in.status(), 303, "the sign-in is minted");
        signed_in.headers()["location"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Starts a visit as a clinician; answers the redirect location (the partner URL).
    pub async fn start_visit(&self, key: &str, patient_id: &str) -> reqwest::Response {
        self.post_form(
            "/hint/visits",
            key,
            &[("patient_id", patient_id), ("partner", "tiep")],
        )
        .await
    }

    /// Starts a Tiep visit for `patient` (303 expected) and answers its id.
    pub async fn started_visit_id(&self, practice_id: &str, key: &str, patient: &str) -> String {
        let before = self.visit_ids(practice_id).await;
        assert_eq!(self.start_visit(key, patient).await.status(), 303);
        self.visit_since(practice_id, &before).await
    }

    /// Opens the Tiep launch URL and saves the report with `answers`, as the doctor would.
    pub async fn save_tiep_report(
        &self,
        launch_url: &str,
        answers: &[(&str, &str)],
    ) -> reqwest::Response {
        let (status, page) = Page::of(self.http.get(launch_url).send().await.unwrap()).await;
        assert_eq!(status, 200, "the Tiep page opens");
        let action = page
            .attr("form", "action")
            .expect("the Tiep page has a form");
        let secret = page
            .attr("input[name=page_secret]", "value")
            .expect("the form has its secret");
        let mut form = vec![("page_secret", secret.as_str())];
        form.extend_from_slice(answers);
        let url = url::Url::parse(launch_url).unwrap().join(&action).unwrap();
        self.http.post(url).form(&form).send().await.unwrap()
    }

    /// Posts a Tiep report signed with `secret` to the practice's webhook.
    pub async fn post_tiep_webhook(
        &self,
        practice_id: &str,
        body: &Value,
        secret: &str,
    ) -> reqwest::Response {
        let body = body.to_string();
        self.http
            .post(format!("{}/webhooks/tiep/{practice_id}", self.address))
            .header("content-type", "application/json")
            .header(
                "x-signature-256",
                sign_hmac_sha256(secret.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// The value of `name` among a settings section's fields.
fn field(fields: &[(&'static str, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} field"))
}
