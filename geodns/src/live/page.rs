//! The page itself: one HTML document with its styles, script and the
//! world's country outlines embedded (no request leaves for anything but
//! this listener's `/events` and, with controls, its outage and restore
//! routes).

use axum::http::header;
use axum::response::IntoResponse;
use std::sync::LazyLock;

/// The page, with `<!-- world -->` standing for the map.
const TEMPLATE: &str = include_str!("page.html");

/// Country outlines, Natural Earth 110m via world-atlas (public domain);
/// see `assets/PROVENANCE.md`.
const WORLD: &str = include_str!("assets/world-110m.svg");

static PAGE: LazyLock<String> = LazyLock::new(|| TEMPLATE.replace("<!-- world -->", WORLD));

/// What a browser may do with the page: run its own inline script and
/// styles, connect back to this listener only, and never be framed (its
/// buttons cause outages: no clickjacking).
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_the_map_and_asks_nothing_elsewhere() {
        assert!(!PAGE.contains("<!-- world -->"));
        assert!(PAGE.contains("data-country=\"Ireland\""));
        assert!(PAGE.matches("<path").count() > 150, "every country");
        // The SVG namespace is a name, not a request.
        let template = TEMPLATE.replace("\"http://www.w3.org/2000/svg\"", "");
        for outside in ["http://", "https://", "//cdn", "src=\""] {
            assert!(!template.contains(outside), "the page names {outside}");
        }
    }
}
