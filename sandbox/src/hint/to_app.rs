//! What Hint sends the app: Instant On installs, signed events, handshakes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use super::SandboxHint;
use crate::{random_token, sign_hmac_sha256};

impl SandboxHint {
    /// Mints a one-use Instant On code for a practice.
    pub fn new_install_code(&self, practice_id: &str) -> String {
        let code = random_token();
        self.world()
            .oauth_codes
            .insert(code.clone(), practice_id.to_string());
        code
    }

    /// Runs Instant On for a practice: mints a code and posts it to the app.
    pub async fn install(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        let code = self.new_install_code(practice_id);
        let app_url = self
            .world()
            .app_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
        let url = app_url.join(&format!("/hint/connect/{code}"))?;
        Ok(self.http.post(url).send().await?.status())
    }

    /// Like [`SandboxHint::install`], from the admin's browser at `from` (a loopback address of
    /// its own: each practice's admin installs from their own machine).
    pub async fn install_from(
        &self,
        practice_id: &str,
        from: std::net::IpAddr,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let code = self.new_install_code(practice_id);
        let app_url = self
            .world()
            .app_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
        let url = app_url.join(&format!("/hint/connect/{code}"))?;
        let browser = reqwest::Client::builder()
            .local_address(from)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(browser.post(url).send().await?.status())
    }

    /// Signs and posts an event to the app's `/webhooks/hint` as Hint does; answers the status.
    pub async fn send_event(
        &self,
        kind: &str,
        practice_id: &str,
        object: Value,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let (id, app_url) = {
            let mut world = self.world();
            let app_url = world
                .app_url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
            (world.next("evt"), app_url)
        };
        let body = json!({
            "id": id, "type": kind, "practice_id": practice_id,
            "created_at": OffsetDateTime::now_utc().format(&Rfc3339)?, "object": object,
        })
        .to_string();
        let signature = sign_hmac_sha256(self.config.webhook_secret.as_bytes(), body.as_bytes());
        Ok(self
            .http
            .post(app_url.join("/webhooks/hint")?)
            .header("content-type", "application/json")
            .header("x-hint-signature", signature)
            .body(body)
            .send()
            .await?
            .status())
    }

    /// Hint activates the practice's integration (its token works again) and tells the app.
    pub async fn activate(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        self.world().inactive_integrations.remove(practice_id);
        self.send_event("integration.activated", practice_id, json!({}))
            .await
    }

    /// Hint deactivates the practice's integration (its token is refused) and tells the app.
    pub async fn deactivate(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        self.world()
            .inactive_integrations
            .insert(practice_id.to_string());
        self.send_event("integration.deactivated", practice_id, json!({}))
            .await
    }

    /// Signs and posts a handshake for `user_id` as Hint does; answers the session key.
    pub async fn handshake(
        &self,
        user_id: &str,
        patient_id: Option<&str>,
        interaction_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let (body, app_url) = self.handshake_body(user_id, patient_id, interaction_id)?;
        let url = app_url.join("/hint/handshake")?;
        let signature = sign_hmac_sha256(self.config.webhook_secret.as_bytes(), body.as_bytes());
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-hint-signature", signature)
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!(
                "the app refused the handshake with HTTP {}",
                response.status()
            );
        }
        let answer: Value = response.json().await?;
        answer
            .get("session_key")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("the app answered no session_key"))
    }

    fn handshake_body(
        &self,
        user_id: &str,
        patient_id: Option<&str>,
        interaction_id: Option<&str>,
    ) -> anyhow::Result<(String, Url)> {
        let mut world = self.world();
        let app_url = world
            .app_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
        let user = world
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no such user"))?;
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == user.practice_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no practice"))?;
        let access_token = random_token();
        world.access_tokens.insert(
            access_token.clone(),
            (
                practice.id.clone(),
                Instant::now() + Duration::from_secs(3600),
            ),
        );
        let mut body = json!({
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339)?,
            "user": {
                "id": user.id, "email": user.email, "first_name": user.first_name, "last_name": user.last_name,
                "name": format!("{} {}", user.first_name, user.last_name), "partner_roles": user.partner_roles,
                "phones": [],
            },
            "practice": {"id": practice.id, "name": practice.name},
            "integration": {"id": practice.integration_id},
            "access_token": access_token,
            "access_context": user.access_context,
        });
        if let Some(patient_id) = patient_id {
            body["patient"] = json!({"id": patient_id});
        }
        if let Some(interaction_id) = interaction_id {
            body["interaction"] = json!({"id": interaction_id});
        }
        Ok((body.to_string(), app_url))
    }
}
