//! Static assets, compiled into the binary: the pinned htmx (its version is in its name, so it
//! is cached for a year) and our CSS and script (cached for five minutes: their name does not
//! change between releases).

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// The pinned htmx file name; templates link to it.
pub const HTMX: &str = "htmx-2.0.4.min.js";

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        HTMX => (
            include_bytes!("../../static/htmx-2.0.4.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (
            include_bytes!("../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_bytes!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                if file == HTMX {
                    "public, max-age=31536000, immutable"
                } else {
                    "public, max-age=300"
                },
            ),
        ],
        body,
    )
        .into_response()
}
