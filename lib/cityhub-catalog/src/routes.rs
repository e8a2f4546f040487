//! The HTTP routes of the catalogue, each opened with an extractor of `cityhub_http::extract`
//! so the one access decision covers it:
//!
//! | route | extractor | what access control should ask |
//! |---|---|---|
//! | `POST /cityhub/v1/models`, `POST /cityhub/v1/datasets` | `Write` | manage the catalogue |
//! | `PUT`/`DELETE /cityhub/v1/models/{type}`, `/cityhub/v1/datasets/{name}` | `Update` | manage the catalogue |
//! | `GET /cityhub/v1/models[/{type}]` | `Read` | read the tenant |
//! | `GET /cityhub/v1/datasets[/{name}]`, `GET /catalog`, `/api/3/action/*`, `/api/action/*` | `Read` | read the catalogue (public metadata) |
//! | `GET /cityhub/v1/datasets/{name}/download` | `Read` | open data: the handler decides by the dataset's access level ([`crate::grant::may_download`]) |
//! | `/cityhub/v1/access-requests...` | see [`crate::requests`] | |
//!
//! Errors are ProblemDetails, except under the CKAN API, which answers CKAN's error envelope.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use cityhub_http::extract::{JsonBody, Read, Update, Write};
use cityhub_http::{ApiError, SharedState};
use cityhub_storage::{modify_one, Modified, RecordKind};
use ngsild_core::error::ErrorKind;
use ngsild_core::NgsiLdError;
use serde_json::{json, Map, Value};

use crate::ckan::{self, CkanError, Search};
use crate::dataset::{Dataset, DownloadFormat, Part};
use crate::dcat::{self, CatalogInfo};
use crate::model::DataModel;

pub use crate::state::{Catalog, CatalogConfig};
use crate::state::{CkanParams, DownloadParams, NoParams};

/// The routes, for `cityhub_http::app_with`.
pub fn routes(catalog: Arc<Catalog>) -> Router<SharedState> {
    Router::new()
        .route("/cityhub/v1/models", get(list_models).post(create_model))
        .route("/cityhub/v1/models/{type}", get(get_model).put(replace_model).delete(delete_model))
        .route("/cityhub/v1/datasets", get(list_datasets).post(create_dataset))
        .route("/cityhub/v1/datasets/{name}", get(get_dataset).put(replace_dataset).delete(delete_dataset))
        .route("/cityhub/v1/datasets/{name}/download", get(download))
        .route("/catalog", get(catalog_graph))
        .route("/api/3/action/{action}", get(ckan_action).post(ckan_action))
        .route("/api/action/{action}", get(ckan_action).post(ckan_action))
        .merge(crate::requests::routes())
        .layer(Extension(catalog))
}

type Answer = Result<Response, ApiError>;

fn json_answer(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(body).unwrap_or_default()).into_response()
}

fn type_iri(name: &str) -> String {
    ngsild_jsonld::core_context().expand_term(name).into_owned()
}

async fn find_model(c: &Catalog, tenant: &str, name: &str) -> Result<DataModel, NgsiLdError> {
    let iri = type_iri(name);
    for doc in c.store.list_records(tenant, RecordKind::DataModel).await? {
        let model: DataModel = serde_json::from_value(doc)
            .map_err(|e| NgsiLdError::internal(format!("a stored data model does not read back: {e}")))?;
        if model.type_iri == iri {
            return Ok(model);
        }
    }
    Err(NgsiLdError::not_found(format!("no data model for the type {name:?}: POST /cityhub/v1/models registers one")))
}

fn model_summary(m: &DataModel) -> Value {
    json!({
        "type": m.entity_type, "typeIri": m.type_iri,
        "title": m.schema.get("title"), "description": m.schema.get("description"), "$id": m.schema.get("$id"),
        "resources": m.resources.keys().collect::<Vec<_>>(),
    })
}

async fn list_models(Extension(c): Extension<Arc<Catalog>>, r: Read<NoParams>) -> Answer {
    let mut all = Vec::new();
    for doc in c.store.list_records(&r.tenant, RecordKind::DataModel).await? {
        if let Ok(m) = serde_json::from_value::<DataModel>(doc) {
            all.push(model_summary(&m));
        }
    }
    Ok(json_answer(StatusCode::OK, &Value::Array(all)))
}

async fn create_model(Extension(c): Extension<Arc<Catalog>>, w: Write<NoParams>, body: JsonBody) -> Answer {
    let model = DataModel::read(&body.value, &ngsild_jsonld::core_context())?;
    let doc = serde_json::to_value(&model).map_err(|e| NgsiLdError::internal(e.to_string()))?;
    c.store.create_record(&w.tenant, RecordKind::DataModel, &model.type_iri, doc).await??;
    c.models.forget(&w.tenant);
    let location = format!("/cityhub/v1/models/{}", model.entity_type);
    let mut response = json_answer(StatusCode::CREATED, &model_summary(&model));
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn get_model(Extension(c): Extension<Arc<Catalog>>, Path(name): Path<String>, r: Read<NoParams>) -> Answer {
    let model = find_model(&c, &r.tenant, &name).await?;
    Ok(json_answer(StatusCode::OK, &serde_json::to_value(&model).unwrap_or(Value::Null)))
}

async fn replace_model(
    Extension(c): Extension<Arc<Catalog>>,
    Path(name): Path<String>,
    u: Update<NoParams>,
    body: JsonBody,
) -> Answer {
    let existing = find_model(&c, &u.tenant, &name).await?;
    let mut value = body.value;
    if value.get("type").is_none() {
        value["type"] = json!(existing.entity_type);
    }
    let model = DataModel::read(&value, &ngsild_jsonld::core_context())?;
    if model.type_iri != existing.type_iri {
        return Err(NgsiLdError::bad_request(format!(
            "the body's type {:?} is not the type of the path {name:?}",
            model.entity_type
        ))
        .into());
    }
    let doc = serde_json::to_value(&model).map_err(|e| NgsiLdError::internal(e.to_string()))?;
    c.store.replace_record(&u.tenant, RecordKind::DataModel, &model.type_iri, doc).await?;
    c.models.forget(&u.tenant);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_model(Extension(c): Extension<Arc<Catalog>>, Path(name): Path<String>, u: Update<NoParams>) -> Answer {
    let model = find_model(&c, &u.tenant, &name).await?;
    c.store.delete_record(&u.tenant, RecordKind::DataModel, &model.type_iri).await?;
    c.models.forget(&u.tenant);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn dataset_view(d: &Dataset, base: &str) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    v["id"] = json!(d.entity_id());
    let dists: Vec<Value> = crate::dataset::distributions(d, base)
        .into_iter()
        .map(|x| json!({"key": x.key, "title": x.title, "accessURL": x.access_url, "mediaType": x.media_type, "format": x.format}))
        .collect();
    v["distributions"] = json!(dists);
    v
}

async fn list_datasets(Extension(c): Extension<Arc<Catalog>>, r: Read<NoParams>) -> Answer {
    let base = c.base(&r.headers);
    let all: Vec<Value> = c.datasets(&r.tenant).await?.iter().map(|d| dataset_view(d, &base)).collect();
    Ok(json_answer(StatusCode::OK, &Value::Array(all)))
}

async fn get_dataset(Extension(c): Extension<Arc<Catalog>>, Path(name): Path<String>, r: Read<NoParams>) -> Answer {
    let d = c.dataset(&r.tenant, &name).await?;
    Ok(json_answer(StatusCode::OK, &dataset_view(&d, &c.base(&r.headers))))
}

async fn create_dataset(Extension(c): Extension<Arc<Catalog>>, w: Write<NoParams>, body: JsonBody) -> Answer {
    let mut value = body.value;
    if let Some(map) = value.as_object_mut() {
        map.remove("id");
        map.remove("distributions");
    }
    let d = Dataset::read(&value, &ngsild_core::time::now())?;
    let base = c.base(&w.headers);
    c.publish(&w.tenant, &d, &base, false).await?;
    let mut response = json_answer(StatusCode::CREATED, &dataset_view(&d, &base));
    if let Ok(v) = HeaderValue::from_str(&format!("/cityhub/v1/datasets/{}", d.name)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn replace_dataset(
    Extension(c): Extension<Arc<Catalog>>,
    Path(name): Path<String>,
    u: Update<NoParams>,
    body: JsonBody,
) -> Answer {
    let existing = c.dataset(&u.tenant, &name).await?;
    let mut value = body.value;
    if let Some(map) = value.as_object_mut() {
        map.remove("id");
        map.remove("distributions");
        map.entry("name").or_insert(json!(name));
    }
    let mut d = Dataset::read(&value, &ngsild_core::time::now())?;
    if d.name != name {
        return Err(NgsiLdError::bad_request(format!("the body's name {:?} is not the path's {name:?}", d.name)).into());
    }
    d.created_at = existing.created_at;
    c.publish(&u.tenant, &d, &c.base(&u.headers), true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_dataset(
    Extension(c): Extension<Arc<Catalog>>,
    Path(name): Path<String>,
    u: Update<NoParams>,
) -> Answer {
    let d = c.dataset(&u.tenant, &name).await?;
    c.store.delete_record(&u.tenant, RecordKind::Dataset, &name).await?;
    c.forget(&u.tenant);
    modify_one(c.store.as_ref(), &u.tenant, &d.entity_id(), Box::new(|_| Ok(Modified::delete()))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn download(Extension(c): Extension<Arc<Catalog>>, Path(name): Path<String>, r: Read<DownloadParams>) -> Answer {
    let d = c.dataset(&r.tenant, &name).await?;
    let requests = crate::requests::requests(&c.store, &r.tenant).await?;
    crate::grant::may_download(&d, &r.caller, &r.tenant, &requests, &ngsild_core::time::now())?;
    let format_name = r.params.get("format").unwrap_or("csv");
    let format = DownloadFormat::parse(format_name).ok_or_else(|| {
        NgsiLdError::bad_request(format!("format {format_name:?} is not one of csv, geojson, ndjson"))
    })?;
    let part_name = r.params.get("part").unwrap_or("current");
    let part = Part::parse(part_name)
        .ok_or_else(|| NgsiLdError::bad_request(format!("part {part_name:?} is neither current nor history")))?;
    let version = crate::download::version(&c.store, &r.tenant, &d, part, format).await?;
    let mut headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(header::ETAG, &version.etag);
    if !version.last_modified.is_empty() {
        put(header::LAST_MODIFIED, &version.last_modified);
    }
    let matches = r
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == version.etag || tag.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    let ext = match format {
        DownloadFormat::Csv => "csv",
        DownloadFormat::GeoJson => "geojson",
        DownloadFormat::NdJson => "ndjson",
    };
    put(header::CONTENT_TYPE, format.media_type());
    put(header::CONTENT_DISPOSITION, &format!("attachment; filename=\"{}-{}.{ext}\"", d.name, part.name()));
    // Usage is counted per dataset and consumer (an identified caller: a key or a token).
    let done = crate::grant::consumer(&r.caller).map(|consumer| {
        let (store, tenant, dataset) = (c.store.clone(), r.tenant.clone(), d.name.clone());
        Box::new(move |rows, bytes| {
            tokio::spawn(async move {
                crate::requests::count(&store, &tenant, &dataset, &consumer, rows, bytes).await;
            });
        }) as crate::download::Done
    });
    let body = crate::download::stream(c.store.clone(), r.tenant.clone(), d, part, format, done);
    Ok((StatusCode::OK, headers, body).into_response())
}

async fn catalog_graph(Extension(c): Extension<Arc<Catalog>>, r: Read<NoParams>) -> Answer {
    let accept = r.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*").to_ascii_lowercase();
    let turtle = accept.contains("text/turtle");
    let json_ok =
        ["application/ld+json", "application/json", "*/*", "application/*"].iter().any(|m| accept.contains(m));
    if !turtle && !json_ok {
        return Err(NgsiLdError::new(
            ErrorKind::NotAcceptable,
            format!("the catalogue is served as application/ld+json or text/turtle, not {accept}"),
        )
        .into());
    }
    let c2 = &c.config;
    let info = CatalogInfo {
        base: c.base(&r.headers),
        title: c2.title.clone(),
        description: c2.description.clone(),
        publisher_id: c2.publisher_id.clone(),
        publisher_name: c2.publisher_name.clone(),
    };
    let graph = dcat::catalog(&info, &c.datasets(&r.tenant).await?);
    Ok(match turtle {
        true => ([(header::CONTENT_TYPE, "text/turtle; charset=utf-8")], graph.to_turtle()).into_response(),
        false => {
            let body = serde_json::to_vec(&graph.to_json_ld()).unwrap_or_default();
            ([(header::CONTENT_TYPE, "application/ld+json")], body).into_response()
        }
    })
}

/// Every CKAN action this hub answers.
const ACTIONS: &[&str] = &[
    "package_list",
    "package_show",
    "package_search",
    "organization_list",
    "organization_show",
    "status_show",
    "site_read",
];

async fn ckan_action(
    Extension(c): Extension<Arc<Catalog>>,
    Path(action): Path<String>,
    r: Read<CkanParams>,
    body: Bytes,
) -> Response {
    let base = c.base(&r.headers);
    let help = format!("{base}/api/3/action/help_show?name={action}");
    let answer = async {
        let mut params: Map<String, Value> =
            r.params.pairs().iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => params.extend(m),
                _ => {
                    return Err(CkanError {
                        status: 400,
                        kind: "Bad request",
                        message: "Bad request - JSON Error: the body must be a JSON object of the action's parameters"
                            .into(),
                        field: None,
                    })
                }
            }
        }
        let datasets = c.datasets(&r.tenant).await.map_err(|e| CkanError {
            status: 500,
            kind: "Internal Server Error",
            message: e.detail,
            field: None,
        })?;
        ckan_answer(&action, &params, &datasets, &base)
    };
    match answer.await {
        Ok(result) => json_answer(StatusCode::OK, &ckan::ok(&help, result)),
        Err(e) => json_answer(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), &e.body(&help)),
    }
}

fn flag(params: &Map<String, Value>, name: &str) -> bool {
    match params.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

fn ckan_answer(
    action: &str,
    params: &Map<String, Value>,
    datasets: &[Dataset],
    base: &str,
) -> Result<Value, CkanError> {
    let id = || -> Result<String, CkanError> {
        params
            .get("id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| CkanError::validation("id", "Missing value"))
    };
    match action {
        "package_list" => {
            let mut names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
            names.sort();
            let number = |n: &str| params.get(n).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
            let offset = number("offset").unwrap_or(0) as usize;
            let limit = number("limit").map(|l| l as usize).unwrap_or(usize::MAX);
            Ok(json!(names.into_iter().skip(offset).take(limit).collect::<Vec<_>>()))
        }
        "package_show" => {
            let id = id()?;
            datasets
                .iter()
                .find(|d| d.name == id || d.entity_id() == id)
                .map(|d| ckan::package(d, base))
                .ok_or_else(|| CkanError::not_found("Not found"))
        }
        "package_search" => Search::read(params)?.run(datasets, base),
        "organization_list" => Ok(json!(ckan::organizations(datasets, flag(params, "all_fields")))),
        "organization_show" => ckan::organization_show(datasets, &id()?, base, flag(params, "include_datasets")),
        "status_show" => {
            Ok(json!({"site_title": "cityhub", "site_url": base, "ckan_version": "2.10.0", "extensions": []}))
        }
        "site_read" => Ok(json!(true)),
        other => Err(CkanError {
            status: 400,
            kind: "Bad request",
            message: format!("Bad request - Action name not known: {other} (this hub answers {})", ACTIONS.join(", ")),
            field: None,
        }),
    }
}
