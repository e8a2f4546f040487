//! `GET /openapi.json`: the OpenAPI 3.1 document of every route (built once by
//! `cityhub_openapi`), public like `/health`. The unit test below proves the document and the
//! access table name the same operations, both ways; `access::every_route_has_an_action`
//! proves the access table and the router agree, so the document matches the router.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::SharedState;

static DOCUMENT: LazyLock<bytes::Bytes> =
    LazyLock::new(|| bytes::Bytes::from(serde_json::to_vec(&cityhub_openapi::document()).unwrap_or_default()));

pub fn routes() -> Router<SharedState> {
    Router::new().route("/openapi.json", get(serve))
}

async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn the_document_and_the_access_table_name_the_same_operations() {
        // The router writes a catch-all `{*rest}`; OpenAPI has no such template, `{rest}`.
        let table: BTreeSet<(String, String)> =
            crate::access::rows().map(|(m, p, _)| (m.to_owned(), p.replace("{*", "{"))).collect();
        let doc = cityhub_openapi::document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = BTreeSet::new();
        for (path, item) in paths {
            for method in item.as_object().expect("a path item").keys() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let undocumented: Vec<_> = table.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes of the access table missing from the OpenAPI document: {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&table).collect();
        assert!(unrouted.is_empty(), "documented operations no access-table row (so no route) has: {unrouted:?}");
        assert!(table.len() > 100, "only {} operations", table.len());
    }
}
