//! The catalogue (issue 19) on a real hub: data models refusing invalid writes, the CKAN API as
//! the real `ckanapi` client reads it, `/catalog` as rdflib reads it, streamed downloads, and
//! retention. The Python clients must be installed (`.ci/run` does): a missing one fails.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Command;

use common::{assert_problem, json_of, Hub};
use reqwest::Method;
use serde_json::{json, Value};

const COMMON: &str = "https://smart-data-models.github.io/data-models/common-schema.json";

/// A schema shaped like Smart Data Models' `schema.json`: `allOf` with `$ref`s to the common
/// schema's GSMA-Commons, then the type's own properties.
fn air_quality_model() -> Value {
    let common = json!({
        "$schema": "http://json-schema.org/schema#",
        "$id": COMMON,
        "title": "Common definitions",
        "definitions": {
            "EntityIdentifierType": {"type": "string", "minLength": 1, "maxLength": 256},
            "GSMA-Commons": {"type": "object", "properties": {
                "id": {"$ref": "#/definitions/EntityIdentifierType"},
                "dataProvider": {"type": "string", "description": "A sequence of characters identifying the provider"},
                "name": {"type": "string"}
            }},
            "Location-Commons": {"type": "object", "properties": {"location": {"type": "object", "required": ["type", "coordinates"]}}}
        }
    });
    let schema = json!({
        "$schema": "http://json-schema.org/schema#",
        "$schemaVersion": "0.1.0",
        "$id": "https://smart-data-models.github.io/dataModel.Environment/AirQualityObserved/schema.json",
        "title": "Smart Data Models - Air quality observed",
        "description": "An observation of air quality conditions at a certain place and time.",
        "type": "object",
        "allOf": [
            {"$ref": format!("{COMMON}#/definitions/GSMA-Commons")},
            {"$ref": format!("{COMMON}#/definitions/Location-Commons")},
            {"properties": {
                "type": {"type": "string", "enum": ["AirQualityObserved"]},
                "pm25": {"type": "number", "minimum": 0},
                "airQualityLevel": {"type": "string", "enum": ["good", "moderate", "unhealthy"]},
                "refPointOfInterest": {"type": "string", "pattern": "^urn:ngsi-ld:PointOfInterest:"}
            }}
        ],
        "required": ["id", "type", "pm25"]
    });
    json!({"type": "AirQualityObserved", "schema": schema, "resources": {COMMON: common}})
}

fn station(n: u32, extra: Value) -> Value {
    let mut e = json!({
        "id": format!("urn:ngsi-ld:AirQualityObserved:test:{n}"),
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 12},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}}
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn refused(hub: &Hub, body: &Value, named: &[&str]) {
    let response = hub.post("/entities", body);
    let problem = assert_problem(response, 400, "BadRequestData");
    let detail = problem["detail"].as_str().unwrap();
    for n in named {
        assert!(detail.contains(n), "the detail names {n:?}: {detail}");
    }
    let (status, _) = hub.get_json(&format!("/entities/{}", body["id"].as_str().unwrap()));
    assert_eq!(status, 404, "nothing of a refused entity is stored");
}

#[test]
fn a_data_model_refuses_each_kind_of_invalid_write_naming_the_attribute() {
    let hub = Hub::start();
    let models = format!("{}/cityhub/v1/models", hub.base);
    // A $ref to a document not given is refused at registration, naming what to add.
    let mut missing = air_quality_model();
    missing["resources"] = json!({});
    let response =
        hub.client.post(&models).header("Content-Type", "application/json").body(missing.to_string()).send().unwrap();
    let problem = assert_problem(response, 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap().contains("resources"), "{problem}");

    let response = hub
        .client
        .post(&models)
        .header("Content-Type", "application/json")
        .body(air_quality_model().to_string())
        .send()
        .unwrap();
    let (status, body) = json_of(response);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["type"], "AirQualityObserved");
    let (_, listed) = json_of(hub.client.get(&models).send().unwrap());
    assert_eq!(listed[0]["resources"][0], COMMON, "{listed}");

    // A valid write is stored.
    assert_eq!(hub.post("/entities", &station(1, json!({}))).status().as_u16(), 201);
    let (status, stored) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:test:1?options=keyValues");
    assert_eq!((status, stored["pm25"].clone()), (200, json!(12)));

    // Each kind of rule, the attribute and the rule named, nothing stored.
    let p = |v: Value| json!({"type": "Property", "value": v});
    refused(&hub, &station(2, json!({"pm25": p(json!("high"))})), &["pm25", "is not of type \"number\""]);
    refused(&hub, &station(3, json!({"pm25": p(json!(-3))})), &["pm25: -3 is less than the minimum of 0"]);
    refused(&hub, &station(4, json!({"airQualityLevel": p(json!("awful"))})), &["airQualityLevel", "is not one of"]);
    let no_pm25 = json!({"id": "urn:ngsi-ld:AirQualityObserved:test:5", "type": "AirQualityObserved"});
    refused(&hub, &no_pm25, &["\"pm25\" is a required property"]);
    refused(
        &hub,
        &station(6, json!({"refPointOfInterest": p(json!("poi-7"))})),
        &["refPointOfInterest", "does not match"],
    );
    // dataProvider's rule comes from the common schema's GSMA-Commons, through $ref.
    refused(&hub, &station(7, json!({"dataProvider": p(json!(42))})), &["dataProvider", "is not of type \"string\""]);

    // An update that would make the stored entity invalid is refused and changes nothing.
    let response = hub
        .send_json(
            Method::PATCH,
            "/entities/urn:ngsi-ld:AirQualityObserved:test:1/attrs",
            &json!({"pm25": p(json!(-1))}),
        )
        .send()
        .unwrap();
    let problem = assert_problem(response, 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap().contains("pm25: -1 is less than the minimum of 0"), "{problem}");
    let (_, stored) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:test:1?options=keyValues");
    assert_eq!(stored["pm25"], 12);

    // In a batch, the invalid entity fails and the others go on.
    let batch = json!([station(10, json!({})), station(11, json!({"pm25": p(json!(-9))}))]);
    let (status, result) = json_of(hub.post("/entityOperations/create", &batch));
    assert_eq!(status, 207, "{result}");
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:test:10"]), "{result}");
    assert_eq!(result["errors"][0]["entityId"], "urn:ngsi-ld:AirQualityObserved:test:11");
    let detail = result["errors"][0]["error"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("pm25: -9 is less than the minimum of 0"), "{result}");
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:test:11").0, 404);

    // Temporal writes are checked too.
    let instances = json!({"pm25": [{"type": "Property", "value": -5, "observedAt": "2026-01-01T00:00:00Z"}]});
    let response = hub
        .send_json(Method::POST, "/temporal/entities/urn:ngsi-ld:AirQualityObserved:test:1/attrs", &instances)
        .send()
        .unwrap();
    let problem = assert_problem(response, 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap().contains("pm25: -5"), "{problem}");

    // Without the model, the same write passes.
    let one = format!("{models}/AirQualityObserved");
    assert_eq!(hub.client.delete(&one).send().unwrap().status().as_u16(), 204);
    assert_eq!(hub.post("/entities", &station(3, json!({"pm25": p(json!(-3))}))).status().as_u16(), 201);
    let (status, problem) = json_of(hub.client.get(&one).send().unwrap());
    assert_eq!((status, problem["type"].clone()), (404, json!("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")));
}

/// Runs a Python script; fails (not skips) when Python or its packages are missing.
fn python(script: &str, args: &[&str]) -> Value {
    let output = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client failed (pip install ckanapi rdflib): {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("the script printed no JSON ({e}): {stderr}"))
}

const CKANAPI: &str = r#"
import json, sys, ckanapi
ckan = ckanapi.RemoteCKAN(sys.argv[1])
out = {}
out["list"] = ckan.action.package_list()
show = ckan.action.package_show(id="air-quality")
out["show"] = {"title": show["title"], "org": show["organization"]["name"], "formats": sorted({r["format"] for r in show["resources"]}),
               "urls": [r["url"] for r in show["resources"]], "license": show["license_id"], "tags": sorted(t["name"] for t in show["tags"])}
out["search_q"] = [p["name"] for p in ckan.action.package_search(q="parking")["results"]]
out["search_ko"] = [p["name"] for p in ckan.action.package_search(q="대기질")["results"]]
out["search_fq"] = [p["name"] for p in ckan.action.package_search(fq="tags:pm25")["results"]]
page = ckan.action.package_search(rows=1, start=1, sort="name asc")
out["page"] = {"count": page["count"], "names": [p["name"] for p in page["results"]]}
out["orgs"] = ckan.action.organization_list()
org = ckan.action.organization_show(id=out["orgs"][0], include_datasets=True)
out["org"] = {"count": org["package_count"], "packages": sorted(p["name"] for p in org["packages"])}
try:
    ckan.action.package_show(id="no-such-dataset")
    out["missing"] = "found"
except ckanapi.NotFound:
    out["missing"] = "NotFound"
try:
    ckan.action.package_search(sort="colour asc")
    out["bad_sort"] = "accepted"
except ckanapi.SearchQueryError:
    out["bad_sort"] = "SearchQueryError"
print(json.dumps(out))
"#;

#[test]
fn the_ckanapi_client_lists_shows_and_searches_the_demo_datasets() {
    let hub = Hub::start_with(&["--demo"]);
    let out = python(CKANAPI, &[&hub.base]);
    assert_eq!(out["list"], json!(["air-quality", "districts", "parking-spots"]), "{out}");
    assert_eq!(out["show"]["title"], "Air quality observations");
    assert_eq!(out["show"]["org"], "cityhub-demo");
    assert_eq!(out["show"]["formats"], json!(["CSV", "GEOJSON", "JSON-LD", "NDJSON"]));
    assert_eq!(out["show"]["license"], "CC-BY-4.0");
    assert!(out["show"]["tags"].as_array().unwrap().contains(&json!("pm25")), "{out}");
    assert_eq!(out["search_q"], json!(["parking-spots"]));
    assert_eq!(out["search_ko"], json!(["air-quality"]));
    assert_eq!(out["search_fq"], json!(["air-quality"]));
    assert_eq!(out["page"], json!({"count": 3, "names": ["districts"]}));
    assert_eq!(out["orgs"], json!(["cityhub-demo"]));
    assert_eq!(out["org"], json!({"count": 3, "packages": ["air-quality", "districts", "parking-spots"]}));
    assert_eq!(out["missing"], "NotFound");
    assert_eq!(out["bad_sort"], "SearchQueryError");
    // The live NGSI-LD resource answers the dataset's entities.
    let live =
        out["show"]["urls"].as_array().unwrap().iter().find_map(|u| u.as_str().filter(|u| u.contains("/ngsi-ld/v1/")));
    let (status, entities) = json_of(hub.client.get(live.expect("an NGSI-LD resource")).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(entities.as_array().map(Vec::len), Some(16), "the demo's air-quality stations");
    // GET under /api/3/action, CKAN's envelope and error shape.
    let url = format!("{}/api/3/action/package_show?id=parking-spots", hub.base);
    let (status, body) = json_of(hub.client.get(url).send().unwrap());
    assert_eq!(
        (status, body["success"].clone(), body["result"]["name"].clone()),
        (200, json!(true), json!("parking-spots"))
    );
    assert!(body["help"].as_str().unwrap().contains("help_show"), "{body}");
    let (status, body) = json_of(hub.client.get(format!("{}/api/3/action/package_show", hub.base)).send().unwrap());
    assert_eq!(
        (status, body["success"].clone(), body["error"]["__type"].clone()),
        (409, json!(false), json!("Validation Error"))
    );
    // The Dataset entities are NGSI-LD entities too.
    let (status, entity) = hub.get_json("/entities/urn:ngsi-ld:Dataset:parking-spots?options=keyValues");
    assert_eq!(
        (status, entity["type"].clone(), entity["title"].clone()),
        (200, json!("Dataset"), json!("Parking spots"))
    );
}

const RDFLIB: &str = r#"
import json, sys, urllib.request, rdflib
from rdflib.compare import isomorphic
from rdflib.namespace import RDF, DCAT, DCTERMS, FOAF
def get(accept):
    req = urllib.request.Request(sys.argv[1] + "/catalog", headers={"Accept": accept})
    with urllib.request.urlopen(req) as r:
        return r.headers["Content-Type"], r.read().decode()
ttl_type, ttl = get("text/turtle")
ld_type, ld = get("application/ld+json")
t = rdflib.Graph().parse(data=ttl, format="turtle")
j = rdflib.Graph().parse(data=ld, format="json-ld")
out = {"types": [ttl_type, ld_type], "triples": [len(t), len(j)], "isomorphic": isomorphic(t, j), "missing": []}
def need(node, prop, what):
    if (node, prop, None) not in j:
        out["missing"].append(f"{what} {node} has no {prop}")
catalogs = list(j.subjects(RDF.type, DCAT.Catalog))
out["catalogs"] = len(catalogs)
for c in catalogs:
    for p in (DCTERMS.title, DCTERMS.description, DCTERMS.publisher, DCAT.dataset):
        need(c, p, "Catalog")
datasets = list(j.subjects(RDF.type, DCAT.Dataset))
out["datasets"] = len(datasets)
for d in datasets:
    for p in (DCTERMS.title, DCTERMS.description, DCAT.distribution):
        need(d, p, "Dataset")
distributions = list(j.subjects(RDF.type, DCAT.Distribution))
out["distributions"] = len(distributions)
for d in distributions:
    need(d, DCAT.accessURL, "Distribution")
for a in j.subjects(RDF.type, FOAF.Agent):
    need(a, FOAF.name, "Agent")
out["languages"] = sorted({o.language for o in j.objects(None, DCTERMS.title) if o.language})
print(json.dumps(out))
"#;

#[test]
fn the_catalog_in_turtle_and_json_ld_is_one_graph_with_every_mandatory_property() {
    let hub = Hub::start_with(&["--demo"]);
    let out = python(RDFLIB, &[&hub.base]);
    assert_eq!(out["types"], json!(["text/turtle; charset=utf-8", "application/ld+json"]), "{out}");
    assert_eq!(out["isomorphic"], true, "{out}");
    assert!(out["triples"][0].as_u64().unwrap() > 100, "{out}");
    assert_eq!(out["catalogs"], 1);
    assert_eq!(out["datasets"], 3);
    assert_eq!(out["distributions"], 21, "7 per dataset: {out}");
    assert_eq!(out["missing"], json!([]), "{out}");
    assert_eq!(out["languages"], json!(["en", "ko", "vi", "zh"]));
    // A media type the catalogue is not served in is refused.
    let response = hub.client.get(format!("{}/catalog", hub.base)).header("Accept", "text/html").send().unwrap();
    let problem = assert_problem(response, 406, "about:blank");
    assert!(problem["detail"].as_str().unwrap().contains("application/ld+json or text/turtle"), "{problem}");
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn publish(hub: &Hub, body: &Value) {
    let url = format!("{}/cityhub/v1/datasets", hub.base);
    let response =
        hub.client.post(url).header("Content-Type", "application/json").body(body.to_string()).send().unwrap();
    let (status, answer) = json_of(response);
    assert_eq!(status, 201, "{answer}");
}

fn dataset(name: &str, types: &[&str], retention: Option<Value>) -> Value {
    let mut d = json!({
        "name": name,
        "title": {"en": format!("Test {name}")},
        "description": {"en": "A dataset of the test"},
        "publisher": {"id": "test-city", "name": {"en": "Test city"}},
        "license": "CC-BY-4.0",
        "accessLevel": "public",
        "selection": {"types": types}
    });
    if let Some(r) = retention {
        d["retention"] = r;
    }
    d
}

/// Bulk entities on the default store through the batch API.
fn load_spots(hub: &Hub, total: usize) {
    for start in (0..total).step_by(1000) {
        let batch: Vec<Value> = (start..(start + 1000).min(total))
            .map(|i| {
                json!({"id": format!("urn:ngsi-ld:Spot:{i:07}"), "type": "Spot", "status": {"type": "Property", "value": if i % 2 == 0 { "free" } else { "occupied" }},
                       "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0 + (i % 100) as f64 * 0.001, 37.5]}}})
            })
            .collect();
        let response = hub.post("/entityOperations/create", &Value::Array(batch));
        assert_eq!(response.status().as_u16(), 201, "batch at {start}");
    }
}

#[test]
fn downloads_stream_every_row_with_validators_in_bounded_memory() {
    let hub = Hub::start();
    let total = 20_000;
    load_spots(&hub, total);
    publish(&hub, &dataset("spots", &["Spot"], None));
    let response = hub.get("/entities?type=Spot&count=true&limit=1").send().unwrap();
    let count: usize = response.headers()["NGSILD-Results-Count"].to_str().unwrap().parse().unwrap();
    assert_eq!(count, total);

    let url = |format: &str, part: &str| {
        format!("{}/cityhub/v1/datasets/spots/download?format={format}&part={part}", hub.base)
    };
    let before = rss_kb(hub.pid());
    let response = hub.client.get(url("csv", "current")).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(response.headers().contains_key("last-modified"));
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"spots-current.csv\"");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let mut peak = before;
    let mut lines = 0usize;
    let mut header = String::new();
    for (i, line) in BufReader::new(response).lines().enumerate() {
        let line = line.unwrap();
        if i == 0 {
            header = line;
        } else if !line.is_empty() {
            lines += 1;
        }
        if i % 2000 == 0 {
            peak = peak.max(rss_kb(hub.pid()));
        }
    }
    assert_eq!(header, "id,type,status,location,other");
    assert_eq!(lines, count, "one CSV row per entity the query counts");
    let grown_mb = peak.saturating_sub(before) / 1024;
    eprintln!("csv download of {total}: RSS before {before} kB, peak {peak} kB");
    assert!(grown_mb < 100, "the download grew the hub by {grown_mb} MB");

    // The same version is not sent again.
    let again = hub.client.get(url("csv", "current")).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(again.status().as_u16(), 304);
    // A change makes a new version.
    hub.post(
        "/entities",
        &json!({"id": "urn:ngsi-ld:Spot:extra", "type": "Spot", "status": {"type": "Property", "value": "free"}}),
    );
    let changed = hub.client.get(url("csv", "current")).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(changed.status().as_u16(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    drop(changed);

    // GeoJSON: one FeatureCollection, a Feature per entity with its geometry.
    let mut text = String::new();
    hub.client.get(url("geojson", "current")).send().unwrap().read_to_string(&mut text).unwrap();
    let collection: Value = serde_json::from_str(&text).expect("GeoJSON is JSON");
    assert_eq!(collection["type"], "FeatureCollection");
    let features = collection["features"].as_array().unwrap();
    assert_eq!(features.len(), total + 1);
    for f in features.iter().take(total) {
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["geometry"]["type"], "Point", "{f}");
        assert_eq!(f["geometry"]["coordinates"].as_array().map(Vec::len), Some(2));
        assert!(f["properties"]["status"].is_string(), "{f}");
    }
    // NDJSON: a JSON object per line.
    let mut text = String::new();
    hub.client.get(url("ndjson", "current")).send().unwrap().read_to_string(&mut text).unwrap();
    let objects: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), total + 1);
    assert_eq!(objects[0]["id"], "urn:ngsi-ld:Spot:0000000");

    // History: every instance of the entities, one row each.
    for i in 0..3 {
        let instances: Vec<Value> = (0..4)
            .map(|h| json!({"type": "Property", "value": h, "observedAt": format!("2026-0{}-01T0{h}:00:00Z", i + 1)}))
            .collect();
        let path = format!("/temporal/entities/urn:ngsi-ld:Spot:{i:07}/attrs");
        let response = hub.send_json(Method::POST, &path, &json!({"occupancy": instances})).send().unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
    let mut text = String::new();
    hub.client.get(url("csv", "history")).send().unwrap().read_to_string(&mut text).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(",occupancy,")).collect();
    assert_eq!(rows.len(), 12, "{}", &text[..text.len().min(2000)]);
    assert!(text.starts_with("entityId,entityType,attribute,datasetId,instanceId,observedAt"), "{}", &text[..200]);

    // A format not served is refused.
    let problem = assert_problem(hub.client.get(url("xlsx", "current")).send().unwrap(), 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap().contains("csv, geojson, ndjson"), "{problem}");
}

fn instances_of(hub: &Hub, id: &str, attr: &str) -> Vec<String> {
    let (status, body) = hub.get_json(&format!("/temporal/entities/{id}?lastN=100"));
    assert_eq!(status, 200, "{body}");
    let list = match &body[attr] {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![body[attr].clone()],
        _ => vec![],
    };
    let mut times: Vec<String> = list.iter().filter_map(|i| i["observedAt"].as_str().map(str::to_owned)).collect();
    times.sort();
    times
}

#[test]
fn retention_deletes_or_downsamples_old_history_and_leaves_the_rest() {
    let hub = Hub::start_with(&["--retention-every", "0.2"]);
    let recent = ngsild_now_minus_hours(1);
    let old = ["2020-01-01T00:00:00Z", "2020-01-01T00:20:00Z", "2020-01-01T01:10:00Z", "2020-01-01T01:40:00Z"];
    for (id, ty) in [("urn:ngsi-ld:Meter:1", "Meter"), ("urn:ngsi-ld:Gauge:1", "Gauge")] {
        let mut instances: Vec<Value> =
            old.iter().map(|t| json!({"type": "Property", "value": 1, "observedAt": t})).collect();
        instances.push(json!({"type": "Property", "value": 2, "observedAt": recent}));
        let body = json!({"id": id, "type": ty, "reading": instances});
        let response = hub.send_json(Method::POST, "/temporal/entities", &body).send().unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    // An entity of a type no dataset selects keeps its history.
    let body = json!({"id": "urn:ngsi-ld:Other:1", "type": "Other", "reading": [{"type": "Property", "value": 1, "observedAt": old[0]}]});
    assert_eq!(hub.send_json(Method::POST, "/temporal/entities", &body).send().unwrap().status().as_u16(), 201);
    publish(&hub, &dataset("meters", &["Meter"], Some(json!({"maxAge": "P30D", "action": "delete"}))));
    publish(
        &hub,
        &dataset("gauges", &["Gauge"], Some(json!({"maxAge": "P30D", "action": "downsample", "period": "PT1H"}))),
    );

    let mut meters = Vec::new();
    let mut gauges = Vec::new();
    // Bounded: the schedule runs every 0.2 s.
    for _ in 0..100 {
        meters = instances_of(&hub, "urn:ngsi-ld:Meter:1", "reading");
        gauges = instances_of(&hub, "urn:ngsi-ld:Gauge:1", "reading");
        if meters.len() == 1 && gauges.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(meters, vec![recent.clone()], "old instances deleted, the recent kept");
    assert_eq!(gauges, vec![old[0].to_owned(), old[2].to_owned(), recent.clone()], "the first of each old hour kept");
    assert_eq!(instances_of(&hub, "urn:ngsi-ld:Other:1", "reading"), vec![old[0].to_owned()]);
}

fn ngsild_now_minus_hours(hours: i64) -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - hours * 3600;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[test]
fn models_import_registers_a_smart_data_models_checkout_without_the_network() {
    let hub = Hub::start();
    let checkout = tempfile::tempdir().unwrap();
    let model = air_quality_model();
    let dir = checkout.path().join("dataModel.Environment").join("AirQualityObserved");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schema.json"), model["schema"].to_string()).unwrap();
    let common = checkout.path().join("data-models");
    std::fs::create_dir_all(&common).unwrap();
    std::fs::write(common.join("common-schema.json"), model["resources"][COMMON].to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["models", "import"])
        .arg(checkout.path())
        .args(["--hub", &hub.base])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 data models registered, 0 refused"), "{stdout}");
    let (status, stored) =
        json_of(hub.client.get(format!("{}/cityhub/v1/models/AirQualityObserved", hub.base)).send().unwrap());
    assert_eq!(status, 200);
    assert!(stored["resources"][COMMON].is_object(), "the common schema came from the checkout: {stored}");
    let p = |v: Value| json!({"type": "Property", "value": v});
    refused(&hub, &station(1, json!({"dataProvider": p(json!(7))})), &["dataProvider", "is not of type \"string\""]);
    // Importing again replaces.
    let again = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["models", "import"])
        .arg(checkout.path())
        .args(["--hub", &hub.base])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}
