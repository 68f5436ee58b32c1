//! Hint's partner-app audit, run by us against a deployed Chartbridge (`chartbridge hint
//! check`, and read-only on the settings surface): what Hint's review probes, each with its
//! outcome.
//!
//! It speaks to the app over HTTP like Hint does: unsigned and forged handshakes must be
//! refused (401), a minimal signed one accepted (200 with a session key), every surface must
//! answer with a session and refuse without one, the pages must be framable by Hint only, and
//! two practices must not see each other (the tenancy probe: practice A opens a chart, practice
//! B's admin must find no trace of it). The probe's practices are Chartbridge's own
//! (`pra-chartbridge-check-a`, `-b`): a run leaves their sessions and audit entries, never
//! anything in a real practice.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use crate::crypto::sign_hmac_sha256;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Acceptable here (a loopback demo), not on a live listing.
    Warn,
    Fail,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        }
    }

    /// The badge's CSS class on the settings page.
    pub fn class(self) -> &'static str {
        match self {
            Outcome::Pass => "status-ok",
            Outcome::Warn => "status-warn",
            Outcome::Fail => "status-failing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

impl Finding {
    fn new(check: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            check,
            outcome,
            detail: detail.into(),
        }
    }

    fn expect(check: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        let outcome = if ok { Outcome::Pass } else { Outcome::Fail };
        Self::new(check, outcome, detail)
    }
}

/// Hint's reserved variables as the instance being checked sees them (names → values; secrets
/// only as "set").
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    pub hint_api_url: Option<String>,
    pub hint_product_id: Option<String>,
    pub hint_api_key_set: bool,
    pub hint_webhook_secret_set: bool,
}

/// The surfaces Hint frames, and the role each is opened with by the audit.
const SURFACES: [(&str, &str); 4] = [
    ("core_page", "clinician"),
    ("clinical_chart", "clinician"),
    ("clinical_interaction", "clinician"),
    ("settings", "admin"),
];

const PROBE_A: &str = "pra-chartbridge-check-a";
const PROBE_B: &str = "pra-chartbridge-check-b";
const PROBE_PATIENT: &str = "pat-chartbridge-check-a";

/// Runs every check against the app at `app_url`, signing with Hint's webhook secret.
pub async fn run(app_url: &Url, secret: &SecretString, reserved: &Reserved) -> Vec<Finding> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds");
    let probe = Probe {
        http,
        app_url,
        secret,
    };
    let mut findings = vec![https(app_url), reserved_variables(reserved)];
    findings.extend(probe.handshakes().await);
    findings.extend(probe.surfaces().await);
    findings.push(probe.tenancy().await);
    findings
}

/// Whether every finding passed or only warned.
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.outcome != Outcome::Fail)
}

/// A URL on this machine (a demo, a test): plain http is expected there.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn https(app_url: &Url) -> Finding {
    const CHECK: &str = "https everywhere";
    match app_url.scheme() {
        "https" => Finding::new(CHECK, Outcome::Pass, format!("{app_url} is https")),
        _ if is_loopback(app_url) => Finding::new(
            CHECK,
            Outcome::Warn,
            format!("{app_url} is plain http on loopback (a demo); Hint lists https only"),
        ),
        _ => Finding::new(
            CHECK,
            Outcome::Fail,
            format!("{app_url} is not https: Hint loads apps over https only"),
        ),
    }
}

fn reserved_variables(reserved: &Reserved) -> Finding {
    const CHECK: &str = "reserved variables";
    let mut problems = Vec::new();
    match reserved.hint_api_url.as_deref().map(Url::parse) {
        Some(Ok(url)) if url.scheme() == "https" || is_loopback(&url) => {}
        Some(_) => problems.push("HINT_API_URL is not an https URL"),
        None => problems.push("HINT_API_URL is not set"),
    }
    if !reserved
        .hint_product_id
        .as_deref()
        .is_some_and(|p| p.starts_with("ppro-"))
    {
        problems.push("HINT_PRODUCT_ID is not a ppro-… id");
    }
    if !reserved.hint_api_key_set {
        problems.push("HINT_API_KEY is not set");
    }
    if !reserved.hint_webhook_secret_set {
        problems.push("HINT_WEBHOOK_SECRET is not set");
    }
    if problems.is_empty() {
        Finding::new(
            CHECK,
            Outcome::Pass,
            format!(
                "read from Hint's own variables: HINT_API_URL={}, HINT_PRODUCT_ID={}, HINT_API_KEY and HINT_WEBHOOK_SECRET set (Chartbridge has no variable of its own for them)",
                reserved.hint_api_url.as_deref().unwrap_or_default(),
                reserved.hint_product_id.as_deref().unwrap_or_default()
            ),
        )
    } else {
        Finding::new(CHECK, Outcome::Fail, problems.join("; "))
    }
}

struct Probe<'a> {
    http: reqwest::Client,
    app_url: &'a Url,
    secret: &'a SecretString,
}

/// Now as Hint signs it in a handshake (RFC 3339, to the nanosecond: each body differs).
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Probe<'_> {
    fn url(&self, path: &str) -> Url {
        self.app_url.join(path).expect("a path joins")
    }

    async fn post_handshake(
        &self,
        body: &str,
        signature: Option<String>,
    ) -> Option<reqwest::Response> {
        let mut request = self
            .http
            .post(self.url("/hint/handshake"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("x-hint-signature", signature);
        }
        request.send().await.ok()
    }

    fn sign(&self, body: &str) -> String {
        sign_hmac_sha256(self.secret.expose_secret().as_bytes(), body.as_bytes())
    }

    /// A session key from a signed handshake of the probe's practice `practice`.
    async fn session(&self, practice: &str, role: &str, patient: Option<&str>) -> Option<String> {
        let mut body = json!({
            "timestamp": now(),
            "user": {"id": format!("user-chartbridge-check-{role}"), "email": "check@chartbridge.invalid",
                     "partner_roles": [role]},
            "practice": {"id": practice, "name": "Chartbridge self-check"},
        });
        if let Some(patient) = patient {
            body["patient"] = json!({"id": patient});
        }
        let body = body.to_string();
        let response = self.post_handshake(&body, Some(self.sign(&body))).await?;
        let answer: serde_json::Value = response.json().await.ok()?;
        answer["session_key"].as_str().map(String::from)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Option<reqwest::Response> {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.header("x-hint-session-key", key);
        }
        request.send().await.ok()
    }

    async fn handshakes(&self) -> Vec<Finding> {
        let minimal = json!({"timestamp": now(),
                             "user": {"id": "user-chartbridge-check", "email": "check@chartbridge.invalid"},
                             "practice": {"id": PROBE_A, "name": "Chartbridge self-check"}})
        .to_string();
        let status = |r: Option<reqwest::Response>| r.map(|r| r.status().as_u16());
        let unsigned = status(self.post_handshake(&minimal, None).await);
        let forged = status(
            self.post_handshake(&minimal, Some(format!("sha256={}", "0".repeat(64))))
                .await,
        );
        let valid = self
            .post_handshake(&minimal, Some(self.sign(&minimal)))
            .await;
        let valid_status = valid.as_ref().map(|r| r.status().as_u16());
        let key = match valid {
            Some(r) if r.status() == 200 => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["session_key"].as_str().map(String::from)),
            _ => None,
        };
        // The same signed body again, as whoever recorded it would send it.
        let replayed = status(
            self.post_handshake(&minimal, Some(self.sign(&minimal)))
                .await,
        );
        let said = |s: Option<u16>| s.map_or("no answer".to_string(), |s| format!("HTTP {s}"));
        vec![
            Finding::expect(
                "unsigned handshake refused",
                unsigned == Some(401),
                format!("{} (401 expected)", said(unsigned)),
            ),
            Finding::expect(
                "forged handshake refused",
                forged == Some(401),
                format!("a signature of 64 zeros: {} (401 expected)", said(forged)),
            ),
            Finding::expect(
                "signed handshake accepted",
                valid_status == Some(200) && key.is_some(),
                format!(
                    "a minimal signed body: {}{}",
                    said(valid_status),
                    if key.is_some() {
                        ", with a session key"
                    } else {
                        ", without a session key"
                    }
                ),
            ),
            Finding::expect(
                "replayed handshake refused",
                replayed == Some(401),
                format!(
                    "the same signed body again: {} (401 expected)",
                    said(replayed)
                ),
            ),
        ]
    }

    async fn surfaces(&self) -> Vec<Finding> {
        let mut reachable = Vec::new();
        let mut problems = Vec::new();
        let mut framing = Vec::new();
        for (surface, role) in SURFACES {
            let path = format!("/hint/{surface}");
            let Some(key) = self.session(PROBE_A, role, Some(PROBE_PATIENT)).await else {
                problems.push(format!("{surface}: no session"));
                continue;
            };
            let path = if surface == "clinical_interaction" {
                format!("{path}?visit_id=vis-chartbridge-check")
            } else {
                path
            };
            match self.get(&path, Some(&key)).await {
                // An interaction the practice does not have is a 404 page, still the surface.
                Some(r)
                    if r.status() == 200
                        || (surface == "clinical_interaction" && r.status() == 404) =>
                {
                    let csp = r
                        .headers()
                        .get("content-security-policy")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if !csp.contains("frame-ancestors")
                        || r.headers().contains_key("x-frame-options")
                    {
                        framing.push(surface);
                    }
                    reachable.push(surface);
                }
                Some(r) => problems.push(format!("{surface}: HTTP {}", r.status().as_u16())),
                None => problems.push(format!("{surface}: no answer")),
            }
            match self.get(&path, None).await {
                Some(r) if r.status() == 401 => {}
                Some(r) => problems.push(format!(
                    "{surface} without a session: HTTP {} (401 expected)",
                    r.status().as_u16()
                )),
                None => problems.push(format!("{surface} without a session: no answer")),
            }
        }
        vec![
            Finding::expect(
                "surfaces reachable",
                problems.is_empty(),
                if problems.is_empty() {
                    format!(
                        "{} answer with a session and 401 without",
                        reachable.join(", ")
                    )
                } else {
                    problems.join("; ")
                },
            ),
            Finding::expect(
                "framable by Hint only",
                framing.is_empty() && !reachable.is_empty(),
                if framing.is_empty() {
                    "Content-Security-Policy frame-ancestors on every surface, no X-Frame-Options"
                        .to_string()
                } else {
                    format!(
                        "missing frame-ancestors or X-Frame-Options set on {}",
                        framing.join(", ")
                    )
                },
            ),
        ]
    }

    /// Practice A opens a patient's chart; practice B's admin must find no trace of it.
    async fn tenancy(&self) -> Finding {
        const CHECK: &str = "two-practice tenancy probe";
        let Some(a) = self
            .session(PROBE_A, "clinician", Some(PROBE_PATIENT))
            .await
        else {
            return Finding::new(CHECK, Outcome::Fail, "practice A got no session");
        };
        let chart = self.get("/hint/clinical_chart", Some(&a)).await;
        if chart.is_none_or(|r| r.status() != 200) {
            return Finding::new(CHECK, Outcome::Fail, "practice A could not open the chart");
        }
        let Some(b) = self.session(PROBE_B, "admin", None).await else {
            return Finding::new(CHECK, Outcome::Fail, "practice B got no session");
        };
        let mut leaks = Vec::new();
        for path in [
            "/hint/core_page",
            "/hint/audit",
            "/hint/audit.csv",
            "/hint/visits",
        ] {
            match self.get(path, Some(&b)).await {
                Some(r) if r.status().is_success() => {
                    let text = r.text().await.unwrap_or_default();
                    if text.contains(PROBE_PATIENT) || text.contains(PROBE_A) {
                        leaks.push(format!("{path} shows practice A's data"));
                    }
                }
                Some(r) => leaks.push(format!("{path}: HTTP {}", r.status().as_u16())),
                None => leaks.push(format!("{path}: no answer")),
            }
        }
        Finding::expect(
            CHECK,
            leaks.is_empty(),
            if leaks.is_empty() {
                "practice A opened a chart; practice B's core page, visit list and audit trail show none of it".to_string()
            } else {
                leaks.join("; ")
            },
        )
    }
}
