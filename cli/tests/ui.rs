//! The browser UI (issue 18): its files, the live channel, dashboards, the live demo city, and
//! the dashboard itself in a real headless Chromium (`ui/tests/browser.mjs`, driven by Node with
//! playwright-core on Debian's /usr/bin/chromium). These tests fail, never skip, when Node or
//! Chromium is missing (`.ci/run` installs them).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cityhub(hub: &Hub, path: &str) -> String {
    format!("{}{path}", hub.base)
}

#[test]
fn the_ui_is_served_at_the_root_with_its_assets_and_catalogues() {
    let hub = Hub::start();
    let page = hub.client.get(cityhub(&hub, "/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().unwrap();
    let script =
        html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("a script in the page").to_owned();
    assert!(script.starts_with("/ui/assets/") && script.ends_with(".js"), "{script}");
    let js = hub.client.get(cityhub(&hub, &script)).send().unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(js.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    for (lang, word) in [("ko", "지도"), ("vi", "Bản đồ"), ("zh-Hans", "地图"), ("en", "Map")] {
        let (status, catalogue) =
            json_of(hub.client.get(cityhub(&hub, &format!("/ui/i18n/{lang}.json"))).send().unwrap());
        assert_eq!(status, 200);
        assert_eq!(catalogue["nav.map"], word, "{lang}");
    }
    let (status, config) = json_of(hub.client.get(cityhub(&hub, "/ui/config.json")).send().unwrap());
    assert_eq!((status, config), (200, json!({"basemap": null})));
    let missing = hub.client.get(cityhub(&hub, "/ui/nothing.js")).send().unwrap();
    let body = assert_problem(missing, 404, "ResourceNotFound");
    assert!(body["detail"].as_str().unwrap().contains("open / for the dashboard"), "{body}");
}

#[test]
fn basemap_reaches_the_ui_config() {
    let hub = Hub::start_with(&["--basemap", "https://tiles.city.example/{z}/{x}/{y}.png"]);
    let (_, config) = json_of(hub.client.get(cityhub(&hub, "/ui/config.json")).send().unwrap());
    assert_eq!(config["basemap"], "https://tiles.city.example/{z}/{x}/{y}.png");
}

#[test]
fn the_live_channel_tells_each_write_of_its_tenant_and_types() {
    let hub = Hub::start();
    let entity = json!({"id": "urn:ngsi-ld:Sensor:live:1", "type": "Sensor", "pm25": {"type": "Property", "value": 1}});
    assert_eq!(hub.post("/entities", &entity).status(), 201);
    let live = hub
        .client
        .get(cityhub(&hub, "/cityhub/v1/live?type=Sensor"))
        .header("Accept", "text/event-stream")
        .send()
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    // Written after the listener is connected: another tenant's, another type's, then ours.
    let other_tenant = hub
        .send_json(Method::POST, "/entities", &json!({"id": "urn:ngsi-ld:Sensor:live:9", "type": "Sensor"}))
        .header("NGSILD-Tenant", "elsewhere")
        .send()
        .unwrap();
    assert_eq!(other_tenant.status(), 201);
    assert_eq!(hub.post("/entities", &json!({"id": "urn:ngsi-ld:Car:1", "type": "Car"})).status(), 201);
    let patch = hub
        .send_json(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Sensor:live:1/attrs",
            &json!({"pm25": {"type": "Property", "value": 42}}),
        )
        .send()
        .unwrap();
    assert_eq!(patch.status(), 204);
    let mut lines = BufReader::new(live).lines();
    let mut event = None;
    for _ in 0..50 {
        let line = lines.next().expect("the stream goes on").unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            event = Some(serde_json::from_str::<Value>(data).unwrap());
            break;
        }
    }
    let event = event.expect("a change event");
    assert_eq!(event["id"], "urn:ngsi-ld:Sensor:live:1", "only this tenant's Sensors: {event}");
    assert_eq!(event["deleted"], false);
    assert_eq!(event["entity"]["pm25"], 42, "the entity in keyValues form: {event}");
}

#[test]
fn the_live_channel_is_a_read_with_known_parameters() {
    let hub = Hub::start();
    let unknown = hub.client.get(cityhub(&hub, "/cityhub/v1/live?typo=Sensor")).send().unwrap();
    let body = assert_problem(unknown, 400, "InvalidRequest");
    assert!(body["detail"].as_str().unwrap().contains("typo"), "{body}");
    let nowhere = hub.client.get(cityhub(&hub, "/cityhub/v1/live")).header("NGSILD-Tenant", "nobody").send().unwrap();
    assert_problem(nowhere, 404, "NonexistentTenant");
}

#[test]
fn dashboards_are_kept_replaced_shared_read_only_and_deleted() {
    let hub = Hub::start();
    let base = cityhub(&hub, "/cityhub/v1/dashboards");
    let post = |body: &Value| {
        hub.client.post(&base).header("Content-Type", "application/json").body(body.to_string()).send().unwrap()
    };
    let untitled = assert_problem(post(&json!({"widgets": []})), 400, "BadRequestData");
    assert!(untitled["detail"].as_str().unwrap().contains("\"title\""), "{untitled}");
    let odd = assert_problem(post(&json!({"title": "x", "widgets": [{"kind": "pie"}]})), 400, "BadRequestData");
    assert!(odd["detail"].as_str().unwrap().contains("count, gauge, latest, map, series, table"), "{odd}");

    let created = post(&json!({"title": "Air", "widgets": [{"kind": "count", "type": "Sensor"}]}));
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let (status, dash) = json_of(hub.client.get(cityhub(&hub, &location)).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(dash["title"], "Air");
    assert!(dash["id"].as_str().unwrap().starts_with("urn:cityhub:Dashboard:"));
    let share = dash["share"].as_str().unwrap().to_owned();

    let replaced = hub
        .client
        .put(cityhub(&hub, &location))
        .header("Content-Type", "application/json")
        .body(json!({"title": "Air quality", "widgets": [{"kind": "gauge"}], "share": "stolen"}).to_string())
        .send()
        .unwrap();
    assert_eq!(replaced.status(), 204);
    let (_, shared) = json_of(hub.client.get(cityhub(&hub, &format!("/cityhub/v1/shared/{share}"))).send().unwrap());
    assert_eq!((shared["title"].clone(), shared["readOnly"].clone()), (json!("Air quality"), json!(true)), "{shared}");
    assert_eq!(shared["widgets"], json!([{"kind": "gauge"}]));
    assert_eq!(shared["share"], share.as_str(), "the share token is the hub's, not the client's");
    let (_, list) = json_of(hub.client.get(&base).send().unwrap());
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert_eq!(hub.client.delete(cityhub(&hub, &location)).send().unwrap().status(), 204);
    let gone = assert_problem(hub.client.get(cityhub(&hub, &location)).send().unwrap(), 404, "ResourceNotFound");
    assert!(gone["detail"].as_str().unwrap().contains("GET /cityhub/v1/dashboards"), "{gone}");
    let unshared = hub.client.get(cityhub(&hub, &format!("/cityhub/v1/shared/{share}"))).send().unwrap();
    assert_problem(unshared, 404, "ResourceNotFound");
    let (_, tenants) = json_of(hub.client.get(cityhub(&hub, "/cityhub/v1/tenants")).send().unwrap());
    assert_eq!(tenants[0], "", "the default tenant is listed: {tenants}");
}

#[test]
fn the_demo_city_has_a_week_of_history_and_keeps_observing() {
    let hub = Hub::start_with(&["--demo", "--demo-interval", "0.2"]);
    let station = "/entities/urn:ngsi-ld:AirQualityObserved:Seoul:Jongno-gu:1";
    let (_, first) = hub.get_json(station);
    let first_at = first["pm25"]["observedAt"].as_str().unwrap().to_owned();
    // A week of hourly observations, counted by the store per day.
    let path =
        format!("/temporal{station}?attrs=pm25&options=aggregatedValues&aggrMethods=totalCount&aggrPeriodDuration=P1D");
    let (status, history) = hub.get_json(&path);
    assert_eq!(status, 200, "{history}");
    let total: f64 = history["pm25"]["totalCount"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()).sum();
    assert!(total >= 7.0 * 24.0, "a week of hourly history, got {total}: {history}");
    // New observations keep coming through the normal write path.
    let mut later = first_at.clone();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (_, now) = hub.get_json(station);
        later = now["pm25"]["observedAt"].as_str().unwrap().to_owned();
        if later != first_at {
            break;
        }
    }
    assert!(later > first_at, "a new observation after {first_at}, got {later}");
}

#[test]
fn the_dashboard_in_a_browser() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is missing: the browser tests need it (apt-get install nodejs npm)"
    );
    let chromium = std::env::var("CITYHUB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: the browser tests need it (apt-get install chromium chromium-driver)"
    );
    let ui = workspace().join("ui");
    assert!(ui.join("node_modules/playwright-core").exists(), "ui/node_modules is missing: cargo build runs npm ci");
    let artefacts = workspace().join("target/ui-artefacts");
    let hub = Hub::start_with(&["--demo", "--demo-interval", "3600"]);
    let run = Command::new("node")
        .arg(ui.join("tests/browser.mjs"))
        .arg(&hub.base)
        .arg(&artefacts)
        .env("CITYHUB_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report: Value = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        run.status.success() && report["ok"] == true,
        "the browser checks failed (screenshots in {}): {}\n{}",
        artefacts.display(),
        report["error"],
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(report["blocked"], json!([]), "no request may leave the loopback");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 30 && checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    for page in
        ["home", "map", "entity", "browse", "admin", "dashboards", "dashboard", "home-ko", "home-vi", "home-zh-Hans"]
    {
        let serious: Vec<&Value> = report["axe"][page]
            .as_array()
            .unwrap_or_else(|| panic!("axe ran on {page}"))
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect();
        assert!(serious.is_empty(), "{page}: {serious:?}");
    }
    assert_eq!(report["timings"]["chart100k"]["points"], 100_000);
    assert_eq!(report["timings"]["map10k"]["entities"], 10_000);
    for name in ["home-en", "home-ko", "home-vi", "home-zh-Hans", "map", "map-detail", "entity", "dashboard", "map-10k"]
    {
        assert!(artefacts.join(format!("{name}.png")).exists(), "screenshot {name}");
    }
    eprintln!("browser timings: {}", report["timings"]);
}
