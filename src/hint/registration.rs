//! `chartbridge hint register`: what a partner otherwise does by hand in Hint before going
//! live. Declares our custom roles in the app's config (with the roles a new practice's admins
//! and other users get by default, so a practice works on day one), registers our webhook
//! endpoint once, and lists the values Hint's review checks on the listing.

use url::Url;

use super::{
    HintClient, HintError,
    review::{Finding, Outcome, is_loopback},
};

/// Our custom roles, as Hint shows them to a practice admin assigning them.
pub const ROLES: [(&str, &str); 3] = [
    (
        "admin",
        "Practice settings, partner connections and the audit trail; also starts visits",
    ),
    ("clinician", "Starts partner visits and reads their results"),
    ("staff", "Reads visits and their results (read-only)"),
];
/// The role a practice's Hint admins get unless an admin assigns another.
pub const DEFAULT_ADMIN_ROLE: &str = "admin";
/// The role every other user gets unless an admin assigns another.
pub const DEFAULT_NON_ADMIN_ROLE: &str = "clinician";

/// What `register` did.
#[derive(Debug)]
pub struct Registered {
    /// Whether the webhook endpoint was added now (`false`: Hint had it already).
    pub webhook_added: bool,
    pub webhook_url: Url,
}

/// Declares the roles and registers the webhook endpoint (idempotent: run it on every deploy).
pub async fn register(
    hint: &HintClient,
    product_id: &str,
    public_url: &Url,
) -> Result<Registered, HintError> {
    let config = serde_json::json!({
        "partner_roles": ROLES
            .iter()
            .map(|(name, description)| serde_json::json!({"name": name, "description": description}))
            .collect::<Vec<_>>(),
        "default_admin_role": DEFAULT_ADMIN_ROLE,
        "default_non_admin_role": DEFAULT_NON_ADMIN_ROLE,
    });
    hint.configure_app(product_id, &config).await?;
    let webhook_url = crate::upstream::endpoint(public_url, &["webhooks", "hint"]);
    let registered = hint.webhook_endpoints().await?;
    let webhook_added = !registered.iter().any(|u| u == webhook_url.as_str());
    if webhook_added {
        hint.add_webhook_endpoint(webhook_url.as_str()).await?;
    }
    Ok(Registered {
        webhook_added,
        webhook_url,
    })
}

/// The listing's URLs, each with whether Hint's review will accept it.
pub fn listing(public_url: &Url) -> Vec<(&'static str, Url, Finding)> {
    let at = |segments: &[&str]| crate::upstream::endpoint(public_url, segments);
    let mut redirect_url = at(&["hint", "connect"]);
    redirect_url.set_path(&format!("{}/", redirect_url.path().trim_end_matches('/')));
    let origin = public_url.origin();
    let judge = |name: &'static str, url: &Url, extra: Option<(bool, &str)>| {
        let mut problems = Vec::new();
        if url.scheme() != "https" {
            problems.push("not https".to_string());
        }
        if url.origin() != origin {
            problems.push("not on the app's origin".to_string());
        }
        if let Some((false, why)) = extra {
            problems.push(why.to_string());
        }
        let outcome = match (problems.as_slice(), url.scheme()) {
            ([], _) => Outcome::Pass,
            ([only], "http") if only == "not https" && is_loopback(url) => Outcome::Warn,
            _ => Outcome::Fail,
        };
        Finding {
            check: name,
            outcome,
            detail: if problems.is_empty() {
                "as Hint's review wants it".into()
            } else {
                problems.join(", ")
            },
        }
    };
    let mut values = vec![(
        "redirect_url",
        redirect_url.clone(),
        judge(
            "redirect_url",
            &redirect_url,
            Some((
                redirect_url.path().ends_with("/hint/connect/"),
                "must end with /hint/connect/",
            )),
        ),
    )];
    for (name, segments) in [
        ("handshake_url", &["hint", "handshake"][..]),
        ("webhook_url", &["webhooks", "hint"][..]),
        ("core_page anchor", &["hint", "core_page"][..]),
        ("clinical_chart anchor", &["hint", "clinical_chart"][..]),
        (
            "clinical_interaction anchor",
            &["hint", "clinical_interaction"][..],
        ),
        ("settings anchor", &["hint", "settings"][..]),
    ] {
        let url = at(segments);
        let finding = judge(name, &url, None);
        values.push((name, url, finding));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_deployment_passes_the_listing_review() {
        let listing = listing(&Url::parse("https://chartbridge.example.org/").unwrap());
        let redirect = &listing[0];
        assert_eq!(redirect.0, "redirect_url");
        assert_eq!(
            redirect.1.as_str(),
            "https://chartbridge.example.org/hint/connect/"
        );
        assert!(listing.iter().all(|(_, _, f)| f.outcome == Outcome::Pass));
        assert!(listing.iter().any(|(name, url, _)| *name == "handshake_url"
            && url.as_str() == "https://chartbridge.example.org/hint/handshake"));

        let plain = listing_of("http://chartbridge.example.org/");
        assert!(plain.iter().all(|o| *o == Outcome::Fail));
        let demo = listing_of("http://127.0.0.1:8080/");
        assert!(demo.iter().all(|o| *o == Outcome::Warn));
    }

    fn listing_of(url: &str) -> Vec<Outcome> {
        listing(&Url::parse(url).unwrap())
            .into_iter()
            .map(|(_, _, f)| f.outcome)
            .collect()
    }
}
