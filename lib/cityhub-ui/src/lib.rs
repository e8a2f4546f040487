//! The cityhub dashboard in the browser: the bundle built from `ui/` (by `build.rs`, with npm)
//! embedded in the binary and served at `/` (the page) and `/ui/*` (its assets), so the UI works
//! air-gapped: nothing is fetched from the internet at run time.
//!
//! What this crate may do: serve the embedded files and the UI's configuration
//! (`/ui/config.json`: the optional `--basemap` tile URL). What it may never do: read or write
//! data — the UI is a client of the hub's own APIs (NGSI-LD under `/ngsi-ld/v1`, the live channel
//! `/cityhub/v1/live`), so access control covers it like any other client.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "$OUT_DIR/dist"]
struct Bundle;

/// What the UI is told about the hub it runs in.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// A tile server URL template (`https://tiles.example/{z}/{x}/{y}.png`) for the map's base
    /// layer; none: the offline base layer (a graticule and the hub's own area entities).
    pub basemap: Option<String>,
}

/// The routes of the UI: `/`, `/ui/config.json` and `/ui/{*path}`.
pub fn routes<S: Clone + Send + Sync + 'static>(config: &UiConfig) -> Router<S> {
    let body = serde_json::json!({ "basemap": config.basemap }).to_string();
    Router::new()
        .route("/", get(index))
        .route(
            "/ui/config.json",
            get(move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body) }
            }),
        )
        .route("/ui/{*path}", get(asset))
}

async fn index() -> Response {
    file("index.html", "no-cache")
}

async fn asset(Path(path): Path<String>) -> Response {
    // Vite names bundled assets by content hash: they never change under one name.
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    file(&path, cache)
}

fn file(path: &str, cache: &'static str) -> Response {
    match Bundle::get(path) {
        Some(content) => {
            ([(header::CONTENT_TYPE, mime(path)), (header::CACHE_CONTROL, cache)], content.data.into_owned())
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                "title": "No such file in the UI",
                "detail": format!("the UI has no file {path:?}; open / for the dashboard"),
            })
            .to_string(),
        )
            .into_response(),
    }
}

/// The media type of a bundled file, by its extension.
pub fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_holds_the_page_and_its_catalogues() {
        let index = Bundle::get("index.html").map(|f| String::from_utf8_lossy(&f.data).into_owned());
        assert!(index.as_deref().is_some_and(|html| html.contains("/ui/assets/")), "{index:?}");
        for lang in ["en", "ko", "vi", "zh-Hans"] {
            assert!(Bundle::get(&format!("i18n/{lang}.json")).is_some(), "no catalogue for {lang}");
        }
    }

    #[test]
    fn media_types_follow_extensions() {
        assert_eq!(mime("assets/index-abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime("i18n/ko.json"), "application/json");
        assert_eq!(mime("x"), "application/octet-stream");
    }
}
