//! Requests to a test app as Hint's iframe and htmx make them, and their pages parsed (`Page`).

use super::TestApp;

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// GET a surface with the key in the query, as Hint's iframe does.
    pub async fn surface(&self, surface: &str, key: &str) -> reqwest::Response {
        self.get(&format!("/hint/{surface}?session_key={key}"))
            .await
    }

    /// A surface as Hint's iframe loads it, parsed; it must answer 200.
    pub async fn page(&self, surface: &str, key: &str) -> Page {
        let (status, page) = Page::of(self.surface(surface, key).await).await;
        assert_eq!(status, 200, "/hint/{surface} answers");
        page
    }

    /// An htmx-style GET with the key in the header.
    pub async fn htmx_get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .header("x-hint-session-key", key)
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
    }

    /// Posts as htmx does from one of our pages: the key in the header, no body.
    pub async fn htmx_post(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("x-hint-session-key", key)
            .header("hx-request", "true")
            .header("origin", &self.address)
            .send()
            .await
            .unwrap()
    }

    /// Posts a form from one of our pages: the key in its hidden `session_key` field.
    pub async fn post_form(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut keyed = vec![("session_key", key)];
        keyed.extend_from_slice(form);
        self.http
            .post(format!("{}{path}", self.address))
            .form(&keyed)
            .send()
            .await
            .unwrap()
    }
}

/// A client on `source` (any 127.x address: loopback holds the whole range).
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// An HTML answer, parsed: assertions read what a browser would show, not the raw markup.
pub struct Page {
    html: scraper::Html,
    source: String,
}

impl Page {
    pub fn parse(html: &str) -> Self {
        Self {
            html: scraper::Html::parse_document(html),
            source: html.to_string(),
        }
    }

    /// The markup as sent (for what must never be in it at all, like a secret).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The response's status and its page.
    pub async fn of(response: reqwest::Response) -> (reqwest::StatusCode, Page) {
        let status = response.status();
        (status, Page::parse(&response.text().await.unwrap()))
    }

    fn select(&self, selector: &str) -> Vec<scraper::ElementRef<'_>> {
        let selector = scraper::Selector::parse(selector).expect("a valid CSS selector");
        self.html.select(&selector).collect()
    }

    /// All the text of the page, entities decoded, white space folded.
    pub fn text(&self) -> String {
        fold(self.html.root_element().text())
    }

    /// The text of each element `selector` matches.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        self.select(selector)
            .into_iter()
            .map(|e| fold(e.text()))
            .collect()
    }

    /// The text of the first element `selector` matches (empty when none does).
    pub fn text_of(&self, selector: &str) -> String {
        self.texts(selector).into_iter().next().unwrap_or_default()
    }

    pub fn has(&self, selector: &str) -> bool {
        !self.select(selector).is_empty()
    }

    pub fn count(&self, selector: &str) -> usize {
        self.select(selector).len()
    }

    /// Attribute `name` of each element `selector` matches.
    pub fn attrs(&self, selector: &str, name: &str) -> Vec<String> {
        self.select(selector)
            .into_iter()
            .filter_map(|e| e.value().attr(name).map(String::from))
            .collect()
    }

    /// Attribute `name` of the first element `selector` matches.
    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        self.attrs(selector, name).into_iter().next()
    }
}

fn fold<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
