//! `SandboxHint`'s hands on the world for the demo and tests: practices, users, patients.

use serde_json::Value;
use time::OffsetDateTime;

use super::{Document, Interaction, Patient, Practice, SandboxHint, User};

impl SandboxHint {
    /// Adds a practice with an admin and a clinician; answers the practice id.
    pub fn add_practice(&self, name: &str) -> String {
        let mut world = self.world();
        let id = world.next("pra");
        let integration_id = world.next("int");
        world.practices.push(Practice {
            id: id.clone(),
            name: name.to_string(),
            products: vec![self.config.product_id.clone()],
            integration_id,
        });
        let slug: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        for (role, first, last) in [
            ("admin", "Alex", "Admin"),
            ("clinician", "Casey", "Clinician"),
        ] {
            let user_id = world.next("user");
            world.users.push(User {
                id: user_id,
                practice_id: id.clone(),
                email: format!("{}.{role}@{slug}.example", first.to_lowercase()),
                first_name: first.into(),
                last_name: last.into(),
                partner_roles: vec![role.into()],
                access_context: "standard".into(),
            });
        }
        id
    }

    /// Adds a user with the given roles and access context; answers the user id.
    pub fn add_user(
        &self,
        practice_id: &str,
        first_name: &str,
        roles: &[&str],
        access_context: &str,
    ) -> String {
        let mut world = self.world();
        let id = world.next("user");
        world.users.push(User {
            id: id.clone(),
            practice_id: practice_id.into(),
            email: format!("{}@sandbox.example", first_name.to_lowercase()),
            first_name: first_name.into(),
            last_name: "Tester".into(),
            partner_roles: roles.iter().map(|r| r.to_string()).collect(),
            access_context: access_context.into(),
        });
        id
    }

    /// The user of `practice_id` holding `role`.
    pub fn user_with_role(&self, practice_id: &str, role: &str) -> Option<String> {
        self.world()
            .users
            .iter()
            .find(|u| u.practice_id == practice_id && u.partner_roles.iter().any(|r| r == role))
            .map(|u| u.id.clone())
    }

    /// Adds a patient; answers the id.
    pub fn add_patient(
        &self,
        practice_id: &str,
        first: &str,
        last: &str,
        dob: &str,
        sex: &str,
    ) -> String {
        let mut world = self.world();
        let id = world.next("pat");
        world.patients.push(Patient {
            practice_id: practice_id.into(),
            id: id.clone(),
            first_name: first.into(),
            last_name: last.into(),
            dob: dob.into(),
            sex: sex.into(),
            email: Some(format!(
                "{}.{}@patients.example",
                first.to_lowercase(),
                last.to_lowercase()
            )),
            phone: Some("+15555550100".into()),
            updated_at: OffsetDateTime::now_utc(),
        });
        id
    }

    /// Adds `count` patients with made-up names (a large practice for search); answers the
    /// first one's id. Names repeat in combinations, ids never.
    pub fn add_many_patients(&self, practice_id: &str, count: usize) -> Option<String> {
        const FIRST: [&str; 24] = [
            "Ava", "Liam", "Noah", "Emma", "Olivia", "Elijah", "Sofía", "Mateo", "Zoë", "Lucas",
            "Amira", "Kenji", "Chloé", "Omar", "Ingrid", "Tomás", "Leila", "Hugo", "Nadia",
            "Felix", "Yara", "Jonas", "Maëlle", "Dmitri",
        ];
        const LAST: [&str; 20] = [
            "Thompson",
            "Carter",
            "Martínez",
            "Okafor",
            "Nguyen",
            "Schmidt",
            "Rossi",
            "Kowalski",
            "Haddad",
            "Tanaka",
            "Fischer",
            "Dubois",
            "Larsen",
            "Moreau",
            "Petrov",
            "Silva",
            "Andersson",
            "Novak",
            "Brennan",
            "Yilmaz",
        ];
        let mut world = self.world();
        let now = OffsetDateTime::now_utc();
        let mut first_id = None;
        for n in 0..count {
            let id = world.next("pat");
            first_id.get_or_insert_with(|| id.clone());
            let (first, last) = (FIRST[n % FIRST.len()], LAST[(n / FIRST.len()) % LAST.len()]);
            world.patients.push(Patient {
                practice_id: practice_id.into(),
                id,
                first_name: first.into(),
                // A number makes every name its own, as in a real practice's list.
                last_name: format!("{last}-{n}"),
                dob: format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28),
                sex: if n % 2 == 0 { "female" } else { "male" }.into(),
                email: None,
                phone: None,
                updated_at: now,
            });
        }
        first_id
    }

    /// Renames a patient in Hint (its `updated_at` moves on); answers whether it exists.
    pub fn rename_patient(&self, patient_id: &str, first: &str, last: &str) -> bool {
        let mut world = self.world();
        let Some(patient) = world.patients.iter_mut().find(|p| p.id == patient_id) else {
            return false;
        };
        patient.first_name = first.into();
        patient.last_name = last.into();
        patient.updated_at = OffsetDateTime::now_utc();
        true
    }

    /// Removes a patient from Hint (it leaves the list); answers whether it existed.
    pub fn remove_patient(&self, patient_id: &str) -> bool {
        let mut world = self.world();
        let before = world.patients.len();
        world.patients.retain(|p| p.id != patient_id);
        world.patients.len() < before
    }

    /// A patient as Hint's API and webhooks show it.
    pub fn patient_json(&self, patient_id: &str) -> Option<Value> {
        let world = self.world();
        world
            .patients
            .iter()
            .find(|p| p.id == patient_id)
            .map(Patient::to_json)
    }

    /// Adds twenty demo patients to a practice.
    pub fn seed_patients(&self, practice_id: &str) {
        const NAMES: [(&str, &str, &str, &str); 20] = [
            ("Ava", "Thompson", "1984-03-12", "female"),
            ("Liam", "Carter", "1979-11-02", "male"),
            ("Sofia", "Martinez", "1992-06-25", "female"),
            ("Noah", "Bennett", "1967-01-30", "male"),
            ("Mia", "Nguyen", "2001-09-14", "female"),
            ("Ethan", "Okafor", "1988-04-08", "male"),
            ("Isabella", "Rossi", "1975-12-19", "female"),
            ("Lucas", "Schmidt", "1990-07-03", "male"),
            ("Amara", "Haddad", "1983-02-27", "female"),
            ("Mateo", "Silva", "1996-10-11", "male"),
            ("Chloé", "Dubois", "1971-05-16", "female"),
            ("Kenji", "Tanaka", "1986-08-21", "male"),
            ("Zara", "Ahmed", "1999-03-05", "female"),
            ("Oliver", "Novak", "1958-11-28", "male"),
            ("Priya", "Raman", "1993-01-09", "female"),
            ("Jonas", "Berg", "1980-06-17", "male"),
            ("Leila", "Karimi", "1977-09-30", "female"),
            ("Samuel", "Adeyemi", "2004-02-14", "male"),
            ("Riley", "Morgan", "1989-12-01", "unknown"),
            ("Elena", "Popescu", "1962-04-22", "female"),
        ];
        for (first, last, dob, sex) in NAMES {
            self.add_patient(practice_id, first, last, dob, sex);
        }
    }

    /// Document interactions held for a patient (tests assert on these).
    pub fn documents_for(&self, patient_id: &str) -> Vec<Document> {
        self.world()
            .documents
            .iter()
            .filter(|d| d.patient_id == patient_id)
            .cloned()
            .collect()
    }

    /// Interactions held for a practice's patient (tests assert on these).
    pub fn interactions_for(&self, patient_id: &str) -> Vec<Interaction> {
        self.world()
            .interactions
            .iter()
            .filter(|i| i.patient_id == patient_id)
            .cloned()
            .collect()
    }
}
