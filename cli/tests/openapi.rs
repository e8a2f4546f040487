//! `/openapi.json` judged by real validators (issue 21): `openapi-spec-validator` validates the
//! served document as OpenAPI 3.1, and schemathesis, run against a real hub for a bounded number
//! of cases, finds no server error and no answer that contradicts the document.
//!
//! The Python tools come from PyPI (`pip install openapi-spec-validator schemathesis`, as
//! `.ci/run` does); `CITYHUB_PYTHON` names another interpreter (a venv's). A missing tool fails
//! the test with how to install it — never a silent skip.

mod common;

use std::process::Command;

use common::Hub;

const INSTALL: &str = "pip install openapi-spec-validator schemathesis (or point CITYHUB_PYTHON at a \
                       Python that has them, e.g. a venv's bin/python)";

fn python() -> String {
    std::env::var("CITYHUB_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn require(module: &str) {
    let out = Command::new(python()).args(["-c", &format!("import {module}")]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            panic!("the Python module {module} is missing ({}): {INSTALL}", String::from_utf8_lossy(&o.stderr).trim())
        }
        Err(e) => panic!("cannot run {} ({e}): {INSTALL}", python()),
    }
}

#[test]
fn the_served_document_validates_as_openapi_3_1() {
    require("openapi_spec_validator");
    let hub = Hub::start();
    let response = hub.client.get(format!("{}/openapi.json", hub.base)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: serde_json::Value = response.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Some operations of each part, with their schemas.
    let entities = &doc["paths"]["/ngsi-ld/v1/entities"];
    assert!(entities["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["$ref"] == "#/components/parameters/q.q"));
    assert_eq!(
        entities["post"]["requestBody"]["content"]["application/ld+json"]["schema"]["$ref"],
        "#/components/schemas/EntityIn"
    );
    assert_eq!(doc["components"]["parameters"]["q.limit"]["schema"]["type"], "integer");
    for path in ["/iot/devices/{id}", "/api/3/action/{action}", "/cityhub/v1/audit", "/ui/{path}", "/health"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert_eq!(
        entities["get"]["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ProblemDetails"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let script = "import json, sys\n\
                  from openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
                  validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
                  print('valid')";
    let out = Command::new(python()).args(["-c", script]).arg(file.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.trim() == "valid", "openapi-spec-validator refused the document: {stderr}");

    // A broken document is refused by the same call (the validator is really judging).
    let mut broken = doc.clone();
    broken["paths"]["/health"]["get"]["responses"] = serde_json::json!("none");
    std::fs::write(file.path(), serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new(python()).args(["-c", script]).arg(file.path()).output().unwrap();
    assert!(!out.status.success(), "the validator accepted a document whose responses are a string");
}

/// schemathesis against a hub that may send nowhere (every outgoing address denied), so what it
/// generates (notification endpoints, context sources, poller URLs) reaches no one.
#[test]
fn schemathesis_finds_no_server_error_and_no_contradiction() {
    require("schemathesis");
    let hub = Hub::start_with(&["--egress-deny", "0.0.0.0/0,::/0"]);
    let report = tempfile::tempdir().unwrap();
    let junit = report.path().join("junit.xml");
    let max_examples = std::env::var("CITYHUB_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "15".to_owned());
    // Run in the temporary directory: schemathesis keeps files in its working directory.
    let out = Command::new(python())
        .current_dir(report.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/openapi.json", hub.base))
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", &max_examples, "--max-time", "120", "--request-timeout", "20"])
        // One worker: with two, hypothesis's lambda descriptions parse source in two threads at
        // once, and CPython 3.11's parser then fails ("AST constructor recursion depth
        // mismatch"), a runtime error of the tool, not of the hub (seen once in CI).
        .args(["--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "21"])
        .args(["--generation-database", "none", "--no-color", "--suppress-health-check", "all"])
        // The live channel streams forever (Server-Sent Events): no answer to judge.
        .args(["--exclude-path", "/cityhub/v1/live"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: String =
        stdout.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    eprintln!("schemathesis:\n{tail}");
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    // It really ran: the report names the operations it tested.
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    let tested = xml.matches("<testcase").count();
    assert!(tested >= 80, "schemathesis tested only {tested} operations:\n{stdout}");
    // Its summary line: "N generated, N passed" (or "..., K found K unique failures").
    let cases = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" generated"))
        .unwrap_or("(no count printed)")
        .to_owned();
    assert!(!cases.contains("found"), "schemathesis found failures: {cases}\n{stdout}");
    eprintln!("schemathesis: {tested} operations, test cases: {cases}");
    // The hub is still healthy after it.
    assert_eq!(hub.client.get(format!("{}/health", hub.base)).send().unwrap().status().as_u16(), 200);
}

/// Each operation's documented query parameters are those its handler takes: a request of every
/// operation with a parameter no operation has is refused 400 with a detail naming exactly the
/// parameters the document lists for it (`ngsild_core::params::unknown`'s words), so the
/// document cannot drift from the handlers, whichever crate serves the route.
#[test]
fn every_operation_documents_exactly_the_query_parameters_its_handler_takes() {
    let hub = Hub::start();
    let client = reqwest::blocking::Client::new();
    let document: serde_json::Value =
        client.get(format!("{}/openapi.json", hub.base)).send().expect("the document").json().expect("JSON");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let documented: std::collections::BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let p = match p.get("$ref").and_then(serde_json::Value::as_str) {
                        Some(r) => &document["components"]["parameters"][r.rsplit('/').next().unwrap_or_default()],
                        None => p,
                    };
                    (p["in"] == "query").then(|| p["name"].as_str().unwrap_or_default().to_owned())
                })
                .collect();
            let concrete = path
                .replace("{id}", "urn:ngsi-ld:T:1")
                .replace("{instance}", "urn:ngsi-ld:Instance:1")
                .replace("{action}", "package_list")
                .replace(['{', '}'], "");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let response = client
                .request(method.clone(), format!("{}{concrete}?cityhubNoSuchParameter=1", hub.base))
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .expect("an answer");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().unwrap_or_default();
            let detail = body["detail"].as_str().unwrap_or_default();
            let taken: Option<std::collections::BTreeSet<String>> =
                if detail.ends_with("this operation takes no query parameter") {
                    Some(Default::default())
                } else {
                    detail
                        .split_once("this operation takes ")
                        .map(|(_, list)| list.split(", ").map(str::to_owned).collect())
                };
            checked += 1;
            // What takes no parameter may ignore a query string (health probes, static files
            // behind cache-busting `?v=`): documented with none, and not refused.
            let ignores = documented.is_empty() && status != 400 && !detail.contains("query parameter");
            if !ignores && (status != 400 || taken.as_ref() != Some(&documented)) {
                wrong.push(format!("{method} {path}: {status} {detail:?}, documented {documented:?}"));
            }
        }
    }
    assert!(checked >= 100, "only {checked} operations in the document");
    assert!(wrong.is_empty(), "{} of {checked} operations differ:\n{}", wrong.len(), wrong.join("\n"));
}
