//! The Content-Security-Policy of every answer. Forms may post to ourselves only
//! (`form-action 'self'`), plus the partner origins a form's answer really redirects to: the
//! partners that open straight from a launch form (`PartnerTool::launch_origin`, on every
//! page), and what one page adds for itself ([`FormTargets`], e.g. the practice's HCW@Home
//! server behind the doctor's sign-in).
//!
//! Scripts come from ourselves, and from Hint one file: its JS SDK (`$HINT_API_URL/hint-sdk.js`),
//! which the layout loads from `hint::frame::hint_sdk_url`, the same URL the policy allows.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};
use url::Url;

use crate::hint::frame::{self, FormTargets};

/// The policy, before a page's own form targets.
#[derive(Debug, Clone)]
pub struct Csp {
    /// `script-src`'s sources.
    script_src: String,
    /// Every directive after `script-src` but `form-action`.
    rest: String,
    /// `form-action`'s sources for every page.
    form_action: String,
    /// Hint's JS SDK, also in `script_src`.
    hint_sdk: Option<String>,
    /// The header of a page that adds no form target (made on first use).
    plain: std::sync::OnceLock<HeaderValue>,
}

impl Csp {
    /// `frame_ancestors` are validated at start; `form_origins` are serialized origins.
    pub fn new(frame_ancestors: &str, form_origins: &[String]) -> Self {
        let rest = format!(
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
             frame-ancestors {frame_ancestors}"
        );
        let mut form_action = String::from("'self'");
        for origin in form_origins.iter().filter(|o| is_source(o)) {
            form_action.push(' ');
            form_action.push_str(origin);
        }
        Csp {
            script_src: String::from("'self'"),
            rest,
            form_action,
            hint_sdk: None,
            plain: std::sync::OnceLock::new(),
        }
    }

    /// Allows (and has pages load) Hint's JS SDK, `hint-sdk.js` under Hint's API URL. A URL the
    /// policy could not hold as a source is left out: the pages then go without the SDK.
    pub fn with_hint_sdk(mut self, hint_api_url: &Url) -> Self {
        let mut url = hint_api_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let path = format!("{}/hint-sdk.js", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let url = String::from(url);
        if is_source(&url) {
            self.script_src = format!("'self' {url}");
            self.hint_sdk = Some(url);
        }
        self
    }

    fn header(&self, extra: Option<&FormTargets>) -> HeaderValue {
        // Most answers add no form target: the same header every time, made once.
        let plain = extra.is_none_or(|t| t.0.is_empty());
        if plain && let Some(header) = self.plain.get() {
            return header.clone();
        }
        let mut form_action = self.form_action.clone();
        for origin in extra.iter().flat_map(|t| &t.0).filter(|o| is_source(o)) {
            form_action.push(' ');
            form_action.push_str(origin);
        }
        let header = HeaderValue::from_str(&format!(
            "default-src 'none'; script-src {}; {}; form-action {form_action}",
            self.script_src, self.rest
        ))
        .expect("checked sources");
        if plain {
            let _ = self.plain.set(header.clone());
        }
        header
    }
}

/// An http(s) origin or URL, and nothing that could end a source or a directive.
fn is_source(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.bytes().any(|b| {
            b.is_ascii_whitespace() || matches!(b, b';' | b',' | b'\'') || b.is_ascii_control()
        })
}

/// The middleware: sets the policy, with the page's own form targets. The request is answered
/// with the SDK's URL at hand (`hint::frame::hint_sdk_url`).
pub async fn set(State(csp): State<Arc<Csp>>, request: Request, next: Next) -> Response {
    let mut response = frame::with_hint_sdk(csp.hint_sdk.clone(), next.run(request)).await;
    let value = csp.header(response.extensions().get::<FormTargets>());
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_go_to_ourselves_and_the_named_origins_only() {
        let csp = Csp::new("https://app.hint.com", &["https://app.tiep.ai".into()]);
        let plain = csp.header(None);
        assert!(plain.to_str().unwrap().ends_with(
            "frame-ancestors https://app.hint.com; form-action 'self' https://app.tiep.ai"
        ));
        let page = FormTargets(vec![
            "https://hcw.clinic.example".into(),
            "https://evil.example; script-src *".into(),
            "javascript:alert(1)".into(),
        ]);
        let with_page = csp.header(Some(&page));
        assert!(
            with_page
                .to_str()
                .unwrap()
                .ends_with("form-action 'self' https://app.tiep.ai https://hcw.clinic.example")
        );
        assert!(plain.to_str().unwrap().contains("script-src 'self';"));
        assert_eq!(frame::hint_sdk_url(), None, "outside a request");
    }

    #[test]
    fn scripts_come_from_ourselves_and_hints_sdk_file_only() {
        let sdk = |api: &str| {
            let csp =
                Csp::new("https://app.hint.com", &[]).with_hint_sdk(&Url::parse(api).unwrap());
            let header = csp.header(None).to_str().unwrap().to_owned();
            (csp.hint_sdk, header)
        };
        let (url, header) = sdk("https://api.hint.com");
        assert_eq!(url.as_deref(), Some("https://api.hint.com/hint-sdk.js"));
        assert!(
            header.starts_with(
                "default-src 'none'; script-src 'self' https://api.hint.com/hint-sdk.js; style-src"
            ),
            "{header}"
        );
        let (url, _) = sdk("http://127.0.0.1:18280/sandbox/?x=1#y");
        assert_eq!(
            url.as_deref(),
            Some("http://127.0.0.1:18280/sandbox/hint-sdk.js")
        );
        // A URL that could end the source: no SDK, and the policy as before.
        let (url, header) = sdk("https://api.hint.com/a;b,c");
        assert_eq!(url, None);
        assert!(header.contains("script-src 'self';"), "{header}");
    }

    #[tokio::test]
    async fn a_request_has_the_sdk_url_at_hand() {
        let seen = frame::with_hint_sdk(Some("https://api.hint.com/hint-sdk.js".into()), async {
            frame::hint_sdk_url()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("https://api.hint.com/hint-sdk.js"));
    }
}
