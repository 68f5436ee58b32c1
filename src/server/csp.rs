//! The Content-Security-Policy of every answer. Forms may post to ourselves only
//! (`form-action 'self'`), plus the partner origins a form's answer really redirects to: the
//! partners that open straight from a launch form (`PartnerTool::launch_origin`, on every
//! page), and what one page adds for itself ([`FormTargets`], e.g. the practice's HCW@Home
//! server behind the doctor's sign-in).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// Origins a form on this page posts to, or is redirected to after posting (a response
/// extension; origins as `Url::origin().ascii_serialization()` writes them).
#[derive(Debug, Clone, Default)]
pub struct FormTargets(pub Vec<String>);

/// The policy, before a page's own form targets.
#[derive(Debug, Clone)]
pub struct Csp {
    /// Every directive but `form-action`.
    rest: String,
    /// `form-action`'s sources for every page.
    form_action: String,
}

impl Csp {
    /// `frame_ancestors` are validated at start; `form_origins` are serialized origins.
    pub fn new(frame_ancestors: &str, form_origins: &[String]) -> Self {
        let rest = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
        );
        let mut form_action = String::from("'self'");
        for origin in form_origins.iter().filter(|o| is_origin(o)) {
            form_action.push(' ');
            form_action.push_str(origin);
        }
        Csp { rest, form_action }
    }

    fn header(&self, extra: Option<&FormTargets>) -> HeaderValue {
        let mut form_action = self.form_action.clone();
        for origin in extra.iter().flat_map(|t| &t.0).filter(|o| is_origin(o)) {
            form_action.push(' ');
            form_action.push_str(origin);
        }
        HeaderValue::from_str(&format!("{}; form-action {form_action}", self.rest))
            .expect("checked sources")
    }
}

/// `scheme://host[:port]` and nothing that could end a directive.
fn is_origin(origin: &str) -> bool {
    (origin.starts_with("https://") || origin.starts_with("http://"))
        && !origin.bytes().any(|b| {
            b.is_ascii_whitespace() || matches!(b, b';' | b',' | b'\'') || b.is_ascii_control()
        })
}

/// The middleware: sets the policy, with the page's own form targets.
pub async fn set(State(csp): State<Arc<Csp>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
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
    }
}
