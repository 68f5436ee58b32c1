//! The keys Chartbridge holds outside its database: the secret key that seals data at rest
//! (and the older ones that still open what they sealed), and the key the audit trail is
//! chained under (its own, or derived from the secret key).

use super::{ConfigError, SecretKey, required};

/// The keys as read from the environment (or flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Older secret keys (comma separated base64), kept while `chartbridge keys rotate` seals
    /// everything again under `CHARTBRIDGE_SECRET_KEY`; values they sealed still open.
    #[arg(
        long,
        env = "CHARTBRIDGE_OLD_SECRET_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    pub old_secret_keys: String,
    /// Base64 of 32 random bytes that chains the audit trail and signs its checkpoints. Unset:
    /// derived from `CHARTBRIDGE_SECRET_KEY`. Setting one of its own lets the secret key be
    /// rotated while the trail keeps one key.
    #[arg(long, env = "CHARTBRIDGE_AUDIT_KEY", hide_env_values = true)]
    pub audit_key: Option<String>,
    /// Older audit keys (comma separated base64): entries and checkpoints made under them
    /// still verify.
    #[arg(
        long,
        env = "CHARTBRIDGE_OLD_AUDIT_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    pub old_audit_keys: String,
}

/// The keys, validated.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// What new values are sealed under.
    pub secret: SecretKey,
    /// What older values may still be sealed under.
    pub old_secrets: Vec<SecretKey>,
    /// The audit trail's own key, if set.
    pub audit: Option<SecretKey>,
    pub old_audit: Vec<SecretKey>,
}

impl KeySettings {
    pub fn from_args(secret_key: Option<String>, args: &KeyArgs) -> Result<Self, ConfigError> {
        let secret = parse(
            &required(secret_key, "CHARTBRIDGE_SECRET_KEY")?,
            "CHARTBRIDGE_SECRET_KEY",
        )?;
        let audit = match args.audit_key.as_deref().filter(|k| !k.trim().is_empty()) {
            Some(key) => Some(parse(key, "CHARTBRIDGE_AUDIT_KEY")?),
            None => None,
        };
        Ok(KeySettings {
            secret,
            old_secrets: list(&args.old_secret_keys, "CHARTBRIDGE_OLD_SECRET_KEYS")?,
            audit,
            old_audit: list(&args.old_audit_keys, "CHARTBRIDGE_OLD_AUDIT_KEYS")?,
        })
    }
}

fn parse(value: &str, variable: &'static str) -> Result<SecretKey, ConfigError> {
    SecretKey::parse(value).map_err(|problem| ConfigError {
        variable,
        problem: format!("{problem} (generate one with `openssl rand -base64 32`)"),
    })
}

fn list(value: &str, variable: &'static str) -> Result<Vec<SecretKey>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| parse(k, variable))
        .collect()
}
