//! Doctor sign-in to HCW@Home: a JWT (HS256, the practice's `SHARED_EXTERNAL_AUTH_SECRET`)
//! minted on the server with the Hint user's email and the time in seconds, and the
//! `external-auth-callback` URL carrying it. HCW refuses tokens older than five minutes, so the
//! URL is minted at the click and never stored; the secret never leaves the server.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

/// The claims HCW reads.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoClaims<'a> {
    pub email: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
}

impl<'a> SsoClaims<'a> {
    /// Claims for `email` now; names only when the full name splits plainly in two.
    pub fn new(email: &'a str, full_name: &'a str, now: i64) -> Self {
        let parts: Vec<&str> = full_name.split_whitespace().collect();
        let (first_name, last_name) = match parts.as_slice() {
            [first, last] => (Some(*first), Some(*last)),
            _ => (None, None),
        };
        Self {
            email,
            timestamp: now,
            first_name,
            last_name,
        }
    }
}

pub fn mint(secret: &SecretString, claims: &SsoClaims<'_>) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .expect("HS256 signing of plain claims cannot fail")
}

/// `{base}/api/v1/external-auth-callback?token=…&returnUrl=…`; `return_path` must be relative.
pub fn callback_url(base: &Url, token: &str, return_path: &str) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}/api/v1/external-auth-callback",
        base.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("token", token)
        .append_pair("returnUrl", return_path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn the_token_verifies_with_the_shared_secret_and_carries_email_and_seconds() {
        let secret = SecretString::from("a-shared-secret-of-length".to_string());
        let token = mint(
            &secret,
            &SsoClaims::new("dr@example.org", "Casey Jones", 1_700_000_000),
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let decoded = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"a-shared-secret-of-length"),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["email"], "dr@example.org");
        assert_eq!(decoded.claims["timestamp"], 1_700_000_000);
        assert_eq!(decoded.claims["firstName"], "Casey");
        assert!(
            decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"wrong"), &validation)
                .is_err()
        );
        let url = callback_url(
            &"https://hcw.example.org/".parse().unwrap(),
            &token,
            "/dashboard",
        );
        assert!(
            url.as_str()
                .starts_with("https://hcw.example.org/api/v1/external-auth-callback?token=")
        );
        assert!(url.as_str().ends_with("&returnUrl=%2Fdashboard"));
    }

    #[test]
    fn names_are_sent_only_when_they_split_plainly() {
        assert!(
            SsoClaims::new("a@b.c", "Ana María de la Cruz", 1)
                .first_name
                .is_none()
        );
        assert!(SsoClaims::new("a@b.c", "", 1).last_name.is_none());
    }
}
