//! `cityhub import`: files generated here at run time (never committed) imported into a stopped
//! hub's store and into a running hub; bad rows reported with their lines, a second run changing
//! nothing (no new history), a run killed midway resumed to every row stored exactly once.
//!
//! `CITYHUB_IMPORT_TEST_ROWS` sets the size of the large CSV (default 20,000, lean for debug
//! builds; the 1M-row figures of the report were measured with it set).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn rows() -> usize {
    std::env::var("CITYHUB_IMPORT_TEST_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

fn cityhub() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cityhub"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cityhub().args(args).output().expect("cityhub import runs");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A CSV of `n` stations (`id` s1..sn); row `i` is on line `i + 1`.
fn write_csv(path: &Path, n: usize, mut bad: impl FnMut(usize) -> Option<String>) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,pm10,no2,lat,lon,observedAt").unwrap();
    for i in 1..=n {
        match bad(i) {
            Some(row) => writeln!(f, "{row}").unwrap(),
            None => writeln!(f, "s{i},{},{},37.5,127.0,2024-05-01T09:00:00Z", i % 90, i as f64 / 1000.0).unwrap(),
        }
    }
}

fn count(hub: &Hub, entity_type: &str) -> usize {
    let response = hub.get(&format!("/entities?type={entity_type}&count=true&limit=0")).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.headers()["NGSILD-Results-Count"].to_str().unwrap().parse().unwrap()
}

/// The recorded instances of `attr` of the station `s<i>`, and its modifiedAt.
fn history(hub: &Hub, i: usize, attr: &str) -> (usize, String) {
    let id = format!("urn:ngsi-ld:AirQualityObserved:s{i}");
    let (status, temporal) = hub.get_json(&format!("/temporal/entities/{id}?attrs={attr}"));
    assert_eq!(status, 200, "{temporal}");
    let (_, entity) = hub.get_json(&format!("/entities/{id}?options=sysAttrs"));
    let instances = match &temporal[attr] {
        Value::Array(a) => a.len(),
        Value::Object(_) => 1,
        _ => 0,
    };
    (instances, entity[attr]["modifiedAt"].as_str().unwrap_or_default().to_owned())
}

/// Where `cityhub import` writes into the store of the (stopped) hub on `data`.
fn store_args(data: &Path) -> Vec<String> {
    match test_store(data) {
        Some(url) => vec!["--store".into(), url],
        None => vec!["--data".into(), data.display().to_string()],
    }
}

fn report_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_csv_imports_into_a_stopped_hubs_store_with_bad_rows_reported_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Hub::spawn(&data, &[]).terminate();
    let n = rows();
    let csv = dir.path().join("stations.csv");
    write_csv(&csv, n, |i| match i {
        10 => Some("s10,1,2,37.5".into()),
        500 => Some("s500,1,2,91,127,2024-05-01T09:00:00Z".into()),
        777 => Some(",1,2,37.5,127,2024-05-01T09:00:00Z".into()),
        900 => Some("s900,1,2,37.5,127,yesterday".into()),
        _ => None,
    });
    let report = dir.path().join("report.ndjson");
    let mut args: Vec<String> =
        ["import", csv.to_str().unwrap(), "--type", "AirQualityObserved", "--id", "id"].map(String::from).to_vec();
    args.extend(store_args(&data));
    args.extend(["--report".into(), report.display().to_string(), "--batch".into(), "500".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 3, "exit 3: done with rejected rows; {stdout} {stderr}");
    let stored = n - 4;
    assert!(stdout.contains(&format!("imported {n} records: {stored} stored, 0 unchanged, 4 rejected")), "{stdout}");
    assert_eq!(
        report_lines(&report),
        vec![
            json!({"line": 11, "id": null, "error": "the row has 4 fields, the header 6"}),
            json!({"line": 501, "id": null, "error": "column \"lat\": \"91\" is not a coordinate between -90 and 90"}),
            json!({"line": 778, "id": null, "error": "no id: \"id\" is empty"}),
            json!({"line": 901, "id": null, "error": "column \"observedAt\": \"yesterday\" is not a DateTime (RFC 3339, e.g. 2024-05-01T09:00:00Z)"}),
        ]
    );
    assert!(!csv.with_extension("csv.import-checkpoint").exists(), "a finished import leaves no checkpoint");

    let mut hub = Hub::spawn(&data, &[]);
    assert_eq!(count(&hub, "AirQualityObserved"), stored);
    let (_, s1) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:s1");
    assert_eq!(
        s1,
        json!({
            "id": "urn:ngsi-ld:AirQualityObserved:s1",
            "type": "AirQualityObserved",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}},
            "pm10": {"type": "Property", "value": 1, "observedAt": "2024-05-01T09:00:00.000000Z"},
            "no2": {"type": "Property", "value": 0.001, "observedAt": "2024-05-01T09:00:00.000000Z"},
        })
    );
    let samples = [1, 499, n / 2, n];
    let before: Vec<_> = samples.iter().map(|i| history(&hub, *i, "pm10")).collect();
    assert!(before.iter().all(|(instances, _)| *instances == 1), "{before:?}");
    hub.terminate();

    let (code, stdout, _) = run(&args);
    assert_eq!(code, 3);
    assert!(stdout.contains(&format!("imported {n} records: 0 stored, {stored} unchanged, 4 rejected")), "{stdout}");
    assert_eq!(report_lines(&report).len(), 4, "the report is rewritten, not appended to");
    let hub = Hub::spawn(&data, &[]);
    let after: Vec<_> = samples.iter().map(|i| history(&hub, *i, "pm10")).collect();
    assert_eq!(after, before, "no new history, no new modifiedAt");
    assert_eq!(count(&hub, "AirQualityObserved"), stored);
}

/// Reads the records count of a checkpoint file, if it is there.
fn checkpointed(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["cursor"]["records"].as_u64()
}

#[test]
fn an_import_into_a_running_hub_killed_midway_resumes_and_stores_every_row_exactly_once() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let csv = dir.path().join("stations.csv");
    write_csv(&csv, n, |_| None);
    let checkpoint: PathBuf = dir.path().join("stations.csv.import-checkpoint");
    let args = [
        "import",
        csv.to_str().unwrap(),
        "--type",
        "AirQualityObserved",
        "--id",
        "id",
        "--hub",
        &hub.base,
        "--batch",
        "50",
    ];
    let mut child = cityhub().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut killed_at = None;
    let mut running_at_kill = false;
    for _ in 0..600 {
        if let Some(records) = checkpointed(&checkpoint).filter(|r| *r >= 500) {
            running_at_kill = matches!(child.try_wait(), Ok(None));
            killed_at = Some(records);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(running_at_kill, "still running when killed");
    let killed_at = killed_at.expect("the import checkpointed 500 records within 30 s");
    assert!(killed_at < n as u64, "killed midway");
    let resumed_from = checkpointed(&checkpoint).unwrap();

    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stderr.contains(&format!("resuming after {resumed_from} records")), "{stderr}");
    assert!(stdout.contains(&format!("imported {n} records:")) && stdout.contains(", 0 rejected"), "{stdout}");
    assert_eq!(count(&hub, "AirQualityObserved"), n);
    let near_kill = resumed_from as usize;
    for i in [1, near_kill.saturating_sub(1).max(1), near_kill, (near_kill + 1).min(n), n] {
        assert_eq!(history(&hub, i, "pm10").0, 1, "station s{i} stored exactly once");
    }

    let (code, stdout, _) = run(&args);
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("imported {n} records: 0 stored, {n} unchanged, 0 rejected")), "{stdout}");
    assert_eq!(history(&hub, n, "pm10").0, 1);
}

#[test]
fn geojson_and_ndjson_import_with_a_mapping_and_bad_records_by_line() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("parks.toml");
    std::fs::write(
        &mapping,
        r#"
type = "Park"
id = "code"
idPrefix = "urn:ngsi-ld:Park:seoul:"
[[attributes]]
name = "name"
[[attributes]]
name = "area"
valueType = "number"
unitCode = "MTK"
"#,
    )
    .unwrap();
    let geojson = dir.path().join("parks.geojson");
    std::fs::write(
        &geojson,
        r#"{"type": "FeatureCollection", "features": [
{"type": "Feature", "properties": {"code": "p1", "name": "Namsan", "area": "2.9e6"}, "geometry": {"type": "Point", "coordinates": [126.99, 37.55]}},
{"type": "Feature", "properties": {"code": "p2", "name": "Broken", "area": "big"}, "geometry": null},
{"type": "Feature", "properties": {"code": "p3", "name": "Seoul Forest"}, "geometry": {"type": "Polygon", "coordinates": [[[127.03, 37.54], [127.05, 37.54], [127.05, 37.55], [127.03, 37.54]]]}}
]}"#,
    )
    .unwrap();
    let report = dir.path().join("report.ndjson");
    let map = mapping.to_str().unwrap();
    let (code, stdout, stderr) = run(&[
        "import",
        geojson.to_str().unwrap(),
        "--mapping",
        map,
        "--hub",
        &hub.base,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stdout} {stderr}");
    assert_eq!(
        report_lines(&report),
        vec![json!({"line": 3, "id": null, "error": "column \"area\": \"big\" is not a number"})]
    );
    let (_, p1) = hub.get_json("/entities/urn:ngsi-ld:Park:seoul:p1");
    assert_eq!(
        p1,
        json!({
            "id": "urn:ngsi-ld:Park:seoul:p1",
            "type": "Park",
            "name": {"type": "Property", "value": "Namsan"},
            "area": {"type": "Property", "value": 2900000.0, "unitCode": "MTK"},
        }),
        "listed attributes only: the geometry is not mapped without a location"
    );

    // With a location, the feature's geometry is the entity's location.
    let with_location = format!("{}\n[location]\ngeojson = \"geometry\"\n", std::fs::read_to_string(&mapping).unwrap());
    std::fs::write(&mapping, with_location).unwrap();
    let (code, _, _) = run(&["import", geojson.to_str().unwrap(), "--mapping", map, "--hub", &hub.base, "--restart"]);
    assert_eq!(code, 3);
    let (_, p3) = hub.get_json("/entities/urn:ngsi-ld:Park:seoul:p3");
    assert_eq!(p3["location"]["value"]["type"], "Polygon");
    assert_eq!(p3["name"]["value"], "Seoul Forest");

    let ndjson = dir.path().join("parks.ndjson");
    std::fs::write(&ndjson, "{\"code\": \"n1\", \"name\": \"Boramae\", \"area\": 420000}\n\n{\"code\": \"n2\", oops}\n{\"name\": \"no code\"}\n").unwrap();
    let (code, _, stderr) = run(&["import", ndjson.to_str().unwrap(), "--mapping", map, "--hub", &hub.base]);
    assert_eq!(code, 3);
    assert!(stderr.contains("line 3: the line is not JSON"), "{stderr}");
    assert!(stderr.contains("line 4: no id: the record has no \"code\""), "{stderr}");
    let (_, n1) = hub.get_json("/entities/urn:ngsi-ld:Park:seoul:n1");
    assert_eq!(n1["area"], json!({"type": "Property", "value": 420000, "unitCode": "MTK"}));

    // Usage errors say what to give, with exit code 2.
    let (code, _, stderr) = run(&["import", ndjson.to_str().unwrap(), "--hub", &hub.base]);
    assert_eq!((code, stderr.trim()), (2, "error: no entity type: give --type or \"type\" in the mapping"));
    let (code, _, stderr) = run(&["import", "x.txt", "--type", "T", "--id", "id", "--hub", &hub.base]);
    assert_eq!(code, 2);
    assert!(stderr.contains("give --format csv, geojson, ndjson or ngsild"), "{stderr}");
}

/// A loopback broker shaped like Orion v2: `GET /v2/entities?limit&offset&options=count` pages
/// through `entities` with `Fiware-Total-Count`; answers the request lines and service headers
/// it saw.
fn orion(entities: Vec<Value>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut service = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                // Header names are case-insensitive (HTTP/1.1 clients send them lower-case).
                if lower.starts_with("fiware-service") {
                    service.push(lower.trim().to_owned());
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            log.lock().unwrap().push(format!("{target} {}", service.join(" ")));
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let (limit, offset) = (param("limit").unwrap_or(20), param("offset").unwrap_or(0));
            let page: Vec<Value> = entities.iter().skip(offset).take(limit).cloned().collect();
            let body = Value::Array(page).to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nFiware-Total-Count: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                entities.len(),
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (base, seen)
}

#[test]
fn an_orion_v2_brokers_entities_are_copied_page_by_page_and_copying_again_changes_nothing() {
    let hub = Hub::start();
    let room = |id: &str, t: f64| {
        json!({
            "id": id, "type": "Room",
            "temperature": {"type": "Number", "value": t, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2024-05-01T09:00:00.000Z"}}},
            "location": {"type": "geo:json", "value": {"type": "Point", "coordinates": [127.0, 37.5]}, "metadata": {}}
        })
    };
    let (orion, seen) = orion(vec![
        room("Room1", 23.5),
        room("Room2", 21.0),
        json!({"type": "Room"}),
        room("Room4", 19.0),
        room("Room5", 20.0),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.ndjson");
    let args = [
        "import",
        "--from-ngsiv2",
        &orion,
        "--fiware-service",
        "smartcity",
        "--fiware-servicepath",
        "/seoul",
        "--hub",
        &hub.base,
        "--batch",
        "2",
        "--report",
        report.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 3, "{stdout} {stderr}");
    assert!(stdout.contains("imported 5 records: 4 stored, 0 unchanged, 1 rejected"), "{stdout}");
    let rejected = report_lines(&report);
    assert_eq!((rejected.len(), &rejected[0]["line"]), (1, &json!(3)), "{rejected:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [0, 2, 4].map(|o| format!(
            "/v2/entities?limit=2&offset={o}&options=count fiware-service: smartcity fiware-servicepath: /seoul"
        ))
    );
    let (status, room1) = hub.get_json("/entities/urn:ngsi-ld:Room:Room1");
    assert_eq!(status, 200, "{room1}");
    assert_eq!(room1["type"], "Room");
    assert_eq!(room1["temperature"]["value"], 23.5);
    assert!(room1["temperature"]["observedAt"].as_str().unwrap().starts_with("2024-05-01T09:00:00"), "{room1}");
    assert_eq!(
        room1["location"],
        json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}})
    );
    assert_eq!(count(&hub, "Room"), 4);

    let (code, stdout, _) = run(&args);
    assert_eq!(code, 3);
    assert!(stdout.contains("imported 5 records: 0 stored, 4 unchanged, 1 rejected"), "{stdout}");
}

/// A file may give one id twice in one batch: the later record is what stays, on the first
/// import and on the one after, into a running hub and into a stopped hub's store alike.
#[test]
fn the_last_record_of_an_id_repeated_in_one_batch_is_what_stays_import_after_import() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("repeated.csv");
    std::fs::write(&csv, "id,pm10\ns1,10\ns2,20\ns1,11\n").unwrap();
    let base = ["import", csv.to_str().unwrap(), "--type", "AirQualityObserved", "--id", "id", "--restart"];
    let value = |hub: &Hub| hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:s1").1["pm10"]["value"].clone();

    let hub = Hub::start();
    let mut args = base.to_vec();
    args.extend(["--hub", &hub.base]);
    for round in 0..2 {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stdout} {stderr}");
        assert!(stdout.contains("imported 3 records:") && stdout.contains(", 0 rejected"), "{stdout}");
        assert_eq!(value(&hub), json!(11), "round {round}: the file's last pm10 of s1");
    }
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:s2").1["pm10"]["value"], json!(20));

    let data = dir.path().join("data");
    Hub::spawn(&data, &[]).terminate();
    let mut args: Vec<String> = base.map(String::from).to_vec();
    args.extend(store_args(&data));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..2 {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stdout} {stderr}");
    }
    let hub = Hub::spawn(&data, &[]);
    assert_eq!(value(&hub), json!(11), "into the store too");
}
