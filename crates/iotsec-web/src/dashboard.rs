//! The dashboard: one HTML page, one script, one style sheet, embedded in the binary (no
//! external assets, works offline). They hold no fleet data: the script signs in with a token
//! (kept in `sessionStorage`), then reads everything from the API with it.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

/// `GET /app.js`.
pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// `GET /app.css`.
pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_self_contained() {
        for text in [INDEX, SCRIPT, STYLE] {
            // The only absolute URL allowed is the SVG namespace name (an identifier, not loaded).
            let rest = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !rest.contains("http://") && !rest.contains("https://"),
                "external reference"
            );
        }
        assert!(INDEX.contains("src=\"/app.js\"") && INDEX.contains("href=\"/app.css\""));
        // No inline script or style: the CSP forbids them.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
    }
}
