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

#[cfg(test)]
mod catalogues {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn ui() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui")
    }

    fn keys(lang: &str) -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(ui().join(format!("public/i18n/{lang}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The message keys the code names literally: `t('section.name'`.
    fn used() -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut dirs = vec![ui().join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "js") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for piece in text.split("t('").skip(1) {
                        let key: String =
                            piece.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                        if piece[key.len()..].starts_with('\'') && key.contains('.') && !key.ends_with('.') {
                            found.insert(key);
                        }
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_language_has_every_message_and_the_code_names_only_known_ones() {
        let english = keys("en");
        let used = used();
        assert!(used.len() > 100, "the scan finds the code's messages: {used:?}");
        for key in used {
            assert!(english.contains_key(&key), "the code uses {key}, which en.json lacks");
        }
        for lang in ["ko", "vi", "zh-Hans"] {
            let other = keys(lang);
            let missing: Vec<&String> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<&String> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{lang}: missing {missing:?}, extra {extra:?}");
            for (key, text) in &other {
                let text = text.as_str().unwrap_or("");
                assert!(!text.trim().is_empty(), "{lang}: {key} is empty");
                // The same placeholders as in English, so no value goes missing in a translation.
                let holes = |s: &str| {
                    s.split('{').skip(1).filter_map(|p| p.split('}').next()).map(str::to_owned).collect::<BTreeSet<_>>()
                };
                assert_eq!(holes(text), holes(english[key].as_str().unwrap()), "{lang}: {key}");
            }
        }
        // Korean, Vietnamese and Chinese are really translated, not English copies.
        for (lang, key, text) in
            [("ko", "nav.map", "지도"), ("vi", "nav.map", "Bản đồ"), ("zh-Hans", "nav.map", "地图")]
        {
            assert_eq!(keys(lang)[key], text);
        }
    }
}
