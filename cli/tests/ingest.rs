//! Device ingestion, black-box (issue 17): the IoT Agent provisioning API, a device publishing
//! JSON and UltraLight through a real mosquitto (started here on a free port; the test fails
//! when mosquitto is missing), the HTTP southbound, dead letters, a restart, and an Orion NGSIv2
//! notification. Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::blocking::Response;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const TENANT: &str = "city";

struct Mosquitto {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto() -> Mosquitto {
    mosquitto_on(free_port())
}

fn mosquitto_on(port: u16) -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mosquitto is installed (apt-get install mosquitto)");
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto { child, port, _dir: dir }
}

/// A publisher: publishes at QoS 1 and waits for each PubAck.
struct Publisher {
    client: rumqttc::Client,
    acks: std::sync::mpsc::Receiver<()>,
}

impl Publisher {
    #[expect(clippy::disallowed_methods, reason = "the test is a device, not the hub")]
    fn connect(port: u16) -> Publisher {
        let name = format!("ingest-test-device-{}", free_port());
        let mut options = rumqttc::MqttOptions::new(name, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let (tx, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Publisher { client, acks }
    }

    fn publish(&self, topic: &str, payload: &str) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).unwrap();
        self.acks.recv_timeout(WAIT).expect("the broker acknowledges the publish");
    }
}

fn at(hub: &Hub, path: &str) -> String {
    format!("{}{path}", hub.base)
}

fn iot(hub: &Hub, method: reqwest::Method, path: &str, body: Option<&Value>) -> Response {
    let mut request = hub.client.request(method, at(hub, path)).header("fiware-service", TENANT);
    request = request.header("fiware-servicepath", "/district1");
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    request.send().unwrap()
}

fn get(hub: &Hub, path: &str) -> Value {
    let (status, body) = json_of(hub.client.get(at(hub, path)).header("NGSILD-Tenant", TENANT).send().unwrap());
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn provision(hub: &Hub) {
    let group = json!({"services": [{
        "apikey": "k1", "entity_type": "WeatherObserved", "resource": "/iot/json", "cbroker": "http://ignored:1026",
        "attributes": [{"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"}],
        "static_attributes": [{"name": "source", "type": "Text", "value": "city sensors"}]}]});
    let response = iot(hub, reqwest::Method::POST, "/iot/services", Some(&group));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let device = json!({"devices": [{
        "device_id": "d1", "entity_name": "urn:ngsi-ld:WeatherObserved:station1", "entity_type": "WeatherObserved",
        "protocol": "IoTA-UL", "transport": "MQTT",
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
            {"object_id": "ts", "name": "TimeInstant", "type": "DateTime"}],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "37.5665, 126.978"}]}]});
    let response = iot(hub, reqwest::Method::POST, "/iot/devices", Some(&device));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let strict = json!({"services": [{"apikey": "strict", "entity_type": "Meter", "autoprovision": false}]});
    assert_eq!(iot(hub, reqwest::Method::POST, "/iot/services", Some(&strict)).status(), 201);
}

fn status_of(hub: &Hub, kind: &str, name: &str) -> Value {
    let status = get(hub, "/cityhub/v1/ingest/status");
    status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_stored(hub: &Hub, device: &str, stored: u64, rejected: u64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = status_of(hub, "device", device);
        if s["stored"] == stored && s["rejected"] == rejected {
            return s;
        }
        assert!(Instant::now() < deadline, "device {device} reaches stored {stored}, rejected {rejected}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dead_letters(hub: &Hub, tenant: Option<&str>) -> Vec<Value> {
    let mut request = hub.client.get(at(hub, "/cityhub/v1/ingest/dead-letters"));
    if let Some(t) = tenant {
        request = request.header("NGSILD-Tenant", t);
    }
    let (status, body) = json_of(request.send().unwrap());
    assert_eq!(status, 200, "{body}");
    body["deadLetters"].as_array().unwrap().clone()
}

fn subscribe(hub: &Hub, receiver: &Receiver) {
    let body = json!({"id": "urn:ngsi-ld:Subscription:weather", "type": "Subscription",
        "entities": [{"type": "WeatherObserved"}], "watchedAttributes": ["temperature"],
        "notification": {"endpoint": {"uri": receiver.url("/notify")}}});
    let response = hub
        .client
        .post(hub.url("/subscriptions"))
        .header("NGSILD-Tenant", TENANT)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
}

const STATION: &str = "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:station1";

fn temperatures(hub: &Hub) -> Vec<(Value, Value)> {
    let history = get(hub, "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:WeatherObserved:station1?attrs=temperature");
    let instances = history["temperature"].as_array().cloned().unwrap_or_default();
    instances.into_iter().map(|i| (i["value"].clone(), i["observedAt"].clone())).collect()
}

#[test]
fn devices_publish_over_mqtt_and_http_and_the_provisioning_survives_a_restart() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mqtt = format!("mqtt://127.0.0.1:{}", broker.port);
    let mut hub = Hub::spawn(&data, &["--mqtt-ingest", &mqtt]);
    provision(&hub);
    let receiver = Receiver::start();
    subscribe(&hub, &receiver);

    // The provisioning API answers as IoT Agents do.
    let response = iot(&hub, reqwest::Method::GET, "/iot/services", None);
    let (status, services) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(services["count"], 2);
    assert_eq!(services["services"][0]["apikey"], "k1");
    assert_eq!(services["services"][0]["subservice"], "/district1");
    let (_, devices) = json_of(iot(&hub, reqwest::Method::GET, "/iot/devices", None));
    assert_eq!(devices["count"], 1);
    assert_eq!(devices["devices"][0]["protocol"], "IoTA-UL", "fields the hub does not read are kept");
    let again = json!({"services": [{"apikey": "k1"}]});
    let problem = assert_problem(iot(&hub, reqwest::Method::POST, "/iot/services", Some(&again)), 409, "AlreadyExists");
    assert_eq!(problem["name"], "DUPLICATE_GROUP");
    assert!(problem["detail"].as_str().unwrap().contains("k1"), "{problem}");
    let commands = json!({"devices": [{"device_id": "d9", "commands": [{"name": "ping", "type": "command"}]}]});
    let problem =
        assert_problem(iot(&hub, reqwest::Method::POST, "/iot/devices", Some(&commands)), 422, "OperationNotSupported");
    assert!(problem["detail"].as_str().unwrap().contains("commands are not supported"), "{problem}");

    // The hub subscribes to the broker on its own time: probe with an apikey nobody has until
    // its dead letter shows up.
    let device = Publisher::connect(broker.port);
    let deadline = Instant::now() + WAIT;
    while dead_letters(&hub, Some("")).is_empty() {
        assert!(Instant::now() < deadline, "the hub reads the broker");
        device.publish("/probe/x/attrs", "t|1");
        std::thread::sleep(Duration::from_millis(100));
    }
    let probe = &dead_letters(&hub, Some(""))[0];
    assert!(probe["reason"].as_str().unwrap().contains("no service group has apikey \"probe\""), "{probe}");
    assert_eq!(probe["source"], "mqtt /probe/x/attrs");

    // JSON, a malformed UltraLight, UltraLight with a leading timestamp, a single attribute.
    device.publish("/json/k1/d1/attrs", r#"{"t": 21.5, "h": 40, "ts": "2026-05-01T10:00:00Z"}"#);
    device.publish("/ul/k1/d1/attrs", "t|warm|h|41");
    device.publish("/k1/d1/attrs", "2026-05-01T10:01:00Z|t|22.5|h|42");
    device.publish("/k1/d1/attrs/t", "23");
    let status = wait_stored(&hub, "d1", 3, 1);
    assert_eq!(status["received"], 4);
    assert!(status["lastError"].as_str().unwrap().contains("\"t\": \"warm\" is not a Number"), "{status}");
    let group = get(&hub, "/cityhub/v1/ingest/status?kind=service&name=k1");
    assert_eq!(group["sources"].as_array().unwrap().len(), 1, "{group}");
    assert_eq!((group["sources"][0]["received"].clone(), group["sources"][0]["stored"].clone()), (json!(4), json!(3)));

    let station = get(&hub, STATION);
    assert_eq!(station["temperature"]["value"], 23);
    assert_eq!(station["temperature"]["unitCode"], "CEL");
    assert_eq!(
        station["relativeHumidity"],
        json!({"type": "Property", "value": 42, "unitCode": "P1", "observedAt": "2026-05-01T10:01:00Z"})
    );
    assert_eq!(
        station["location"],
        json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.978, 37.5665]}})
    );
    assert_eq!(station["source"], json!({"type": "Property", "value": "city sensors"}));
    assert!(station.get("TimeInstant").is_none() && station.get("ts").is_none(), "{station}");
    let history = temperatures(&hub);
    assert_eq!(history.len(), 3, "every stored measurement is in the history: {history:?}");
    assert!(history.contains(&(json!(21.5), json!("2026-05-01T10:00:00Z"))), "{history:?}");
    assert!(history.contains(&(json!(22.5), json!("2026-05-01T10:01:00Z"))), "{history:?}");
    assert!(history.iter().any(|(v, _)| *v == json!(23)), "{history:?}");

    let notified = receiver.wait_for("urn:ngsi-ld:Subscription:weather", 3, WAIT);
    let values: Vec<Value> = notified.iter().map(|n| n["data"][0]["temperature"]["value"].clone()).collect();
    assert!(values.contains(&json!(21.5)) && values.contains(&json!(23)), "{values:?}");

    let letters = dead_letters(&hub, Some(TENANT));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["payload"], "t|warm|h|41");
    assert_eq!(letters[0]["source"], "mqtt /ul/k1/d1/attrs");
    assert!(letters[0]["reason"].as_str().unwrap().contains("not a Number"), "{}", letters[0]);

    // The HTTP southbound: JSON and UltraLight, answered once stored.
    let post = |path: &str, body: &str| {
        hub.client.post(at(&hub, path)).header("fiware-service", TENANT).body(body.to_owned()).send().unwrap()
    };
    assert_eq!(post("/iot/json?k=k1&i=d1", r#"{"t": 24.5, "ts": "2026-05-01T10:03:00Z"}"#).status(), 200);
    assert_eq!(get(&hub, STATION)["temperature"]["observedAt"], "2026-05-01T10:03:00Z");
    assert_eq!(post("/iot/d?k=k1&i=d1", "2026-05-01T10:04:00Z|t|25").status(), 200);
    assert_eq!(get(&hub, STATION)["temperature"]["value"], 25);
    let notified = receiver.wait_for("urn:ngsi-ld:Subscription:weather", 5, WAIT);
    let pairs: Vec<(Value, Value)> = notified
        .iter()
        .map(|n| (n["data"][0]["temperature"]["value"].clone(), n["data"][0]["temperature"]["observedAt"].clone()))
        .collect();
    assert!(pairs.contains(&(json!(25), json!("2026-05-01T10:04:00Z"))), "the HTTP southbound notifies too: {pairs:?}");
    let problem = assert_problem(post("/iot/d?k=k1&i=d1", "t|1|h"), 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap().contains("odd number of fields"), "{problem}");
    assert_eq!(problem["name"], "WRONG_SYNTAX");
    let problem = assert_problem(post("/iot/d?k=nobody&i=d1", "t|1"), 404, "ResourceNotFound");
    assert_eq!(problem["name"], "DEVICE_GROUP_NOT_FOUND");
    let problem = assert_problem(post("/iot/d?k=strict&i=m7", "p|1"), 404, "ResourceNotFound");
    assert!(problem["detail"].as_str().unwrap().contains("does not autoprovision"), "{problem}");
    let problem = assert_problem(post("/iot/d?k=k1&i=d1&bogus=1", "t|1"), 400, "InvalidRequest");
    assert!(problem["detail"].as_str().unwrap().contains("bogus"), "{problem}");
    // An unprovisioned device of an autoprovisioning group gets its entity on the fly.
    assert_eq!(post("/iot/json?k=k1&i=d2", r#"{"h": 55}"#).status(), 200);
    let d2 = get(&hub, "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:d2");
    assert_eq!(d2["relativeHumidity"]["value"], 55);
    assert_eq!(d2["source"]["value"], "city sensors");
    assert_eq!(temperatures(&hub).len(), 5);
    assert_eq!(dead_letters(&hub, Some(TENANT)).len(), 4);

    // Restarted, the hub keeps its provisioning and goes on mapping.
    hub.terminate();
    let hub = Hub::spawn(&data, &["--mqtt-ingest", &mqtt]);
    let (_, devices) = json_of(iot(&hub, reqwest::Method::GET, "/iot/devices/d1", None));
    assert_eq!(devices["entity_name"], "urn:ngsi-ld:WeatherObserved:station1");
    let response = hub.client.post(at(&hub, "/iot/d?k=k1&i=d1")).body("t|26|ts|2026-05-01T10:05:00Z").send().unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    let station = get(&hub, STATION);
    assert_eq!(
        station["temperature"],
        json!({"type": "Property", "value": 26, "unitCode": "CEL", "observedAt": "2026-05-01T10:05:00Z"})
    );
    assert_eq!(temperatures(&hub).len(), 6);
    // Updating provisioning: the group's humidity now maps to another attribute.
    let patch = json!({"attributes": [{"object_id": "h", "name": "humidity", "type": "Number", "unitCode": "P1"}]});
    let response = iot(&hub, reqwest::Method::PUT, "/iot/services?apikey=k1&resource=/iot/json", Some(&patch));
    assert_eq!(response.status(), 204, "{}", response.text().unwrap());
    let response = hub.client.post(at(&hub, "/iot/json?k=k1&i=d1")).body(r#"{"h": 61}"#).send().unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    assert_eq!(get(&hub, STATION)["humidity"]["value"], 61);
    let renamed = json!({"entity_name": "station1"});
    let problem = assert_problem(
        iot(&hub, reqwest::Method::PUT, "/iot/devices/d1", Some(&json!({"device_id": "d7"}))),
        400,
        "BadRequestData",
    );
    assert!(problem["detail"].as_str().unwrap().contains("device_id cannot be changed"), "{problem}");
    assert_eq!(iot(&hub, reqwest::Method::PUT, "/iot/devices/d1", Some(&renamed)).status(), 204);
    let (_, device) = json_of(iot(&hub, reqwest::Method::GET, "/iot/devices/d1", None));
    assert_eq!(device["entity_name"], "station1");
    // Deleting provisioning: the device goes, then its measures take the group's defaults.
    assert_eq!(iot(&hub, reqwest::Method::DELETE, "/iot/devices/d1", None).status(), 204);
    let problem = assert_problem(iot(&hub, reqwest::Method::GET, "/iot/devices/d1", None), 404, "ResourceNotFound");
    assert_eq!(problem["name"], "DEVICE_NOT_FOUND");
    assert_eq!(iot(&hub, reqwest::Method::DELETE, "/iot/services?apikey=strict&resource=", None).status(), 204);
    let (_, services) = json_of(iot(&hub, reqwest::Method::GET, "/iot/services", None));
    assert_eq!(services["count"], 1);
}

#[test]
fn an_orion_ngsiv2_notification_becomes_the_ngsi_ld_entity_written_by_hand() {
    let hub = Hub::start();
    let notification = json!({
        "subscriptionId": "5fd7b1a9c0d4f0e6a8b1c2d3",
        "data": [{
            "id": "Room1", "type": "Room",
            "temperature": {"type": "Number", "value": 23.5, "metadata": {
                "TimeInstant": {"type": "DateTime", "value": "2026-05-01T10:00:00.000Z"},
                "unitCode": {"type": "Text", "value": "CEL"},
                "accuracy": {"type": "Number", "value": 0.5}}},
            "pressure": {"type": "Number", "value": 720, "metadata": {}},
            "location": {"type": "geo:json", "value": {"type": "Point", "coordinates": [126.978, 37.5665]}, "metadata": {}},
            "refBuilding": {"type": "Relationship", "value": "Building7", "metadata": {}},
            "name": {"type": "Text", "value": "Meeting room", "metadata": {}},
            "TimeInstant": {"type": "DateTime", "value": "2026-05-01T09:59:00.000Z", "metadata": {}}
        }]
    });
    let response = hub
        .client
        .post(at(&hub, "/cityhub/v1/ngsiv2/notify"))
        .header("Fiware-Service", "orion")
        .header("Fiware-ServicePath", "/")
        .header("content-type", "application/json")
        .body(notification.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().unwrap());
    let (status, entity) = json_of(
        hub.client.get(hub.url("/entities/urn:ngsi-ld:Room:Room1")).header("NGSILD-Tenant", "orion").send().unwrap(),
    );
    assert_eq!(status, 200, "{entity}");
    assert_eq!(
        entity,
        json!({
            "id": "urn:ngsi-ld:Room:Room1",
            "type": "Room",
            "temperature": {"type": "Property", "value": 23.5, "unitCode": "CEL", "observedAt": "2026-05-01T10:00:00.000Z",
                "accuracy": {"type": "Property", "value": 0.5}},
            "pressure": {"type": "Property", "value": 720, "observedAt": "2026-05-01T09:59:00.000Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.978, 37.5665]},
                "observedAt": "2026-05-01T09:59:00.000Z"},
            "refBuilding": {"type": "Relationship", "object": "urn:ngsi-ld:Building:Building7",
                "observedAt": "2026-05-01T09:59:00.000Z"},
            "name": {"type": "Property", "value": "Meeting room", "observedAt": "2026-05-01T09:59:00.000Z"}
        })
    );

    // A second notification updates; an entity that cannot be read is reported, the rest stored.
    let update = json!({"subscriptionId": "s2", "data": [
        {"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 24, "metadata": {}}},
        {"id": "Room2", "type": "Room", "location": {"type": "geo:point", "value": "north"}}]});
    let response = hub
        .client
        .post(at(&hub, "/cityhub/v1/ngsiv2/notify"))
        .header("Fiware-Service", "orion")
        .header("content-type", "application/json")
        .body(update.to_string())
        .send()
        .unwrap();
    let (status, body) = json_of(response);
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["success"], json!(["urn:ngsi-ld:Room:Room1"]));
    assert!(
        body["errors"][0]["error"]["detail"].as_str().unwrap().contains("entity Room2, attribute location"),
        "{body}"
    );
    let (_, entity) = json_of(
        hub.client.get(hub.url("/entities/urn:ngsi-ld:Room:Room1")).header("NGSILD-Tenant", "orion").send().unwrap(),
    );
    assert_eq!(entity["temperature"], json!({"type": "Property", "value": 24}));
    assert_eq!(entity["name"]["value"], "Meeting room", "an update keeps what it does not name");
    let problem = assert_problem(
        hub.client
            .post(at(&hub, "/cityhub/v1/ngsiv2/notify"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap(),
        400,
        "BadRequestData",
    );
    assert!(problem["detail"].as_str().unwrap().contains("\"data\""), "{problem}");
    let letters = dead_letters(&hub, Some("orion"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0]["source"].as_str().unwrap().contains("subscription s2"), "{}", letters[0]);
}

#[test]
fn provisioning_is_bounded_per_tenant_and_by_max_tenants() {
    let hub = Hub::start_with(&["--max-devices-per-tenant", "1", "--max-tenants", "1"]);
    let device = |id: &str| json!({"devices": [{"device_id": id}]});
    assert_eq!(iot(&hub, reqwest::Method::POST, "/iot/devices", Some(&device("a"))).status(), 201);
    let problem = assert_problem(
        iot(&hub, reqwest::Method::POST, "/iot/devices", Some(&device("b"))),
        422,
        "OperationNotSupported",
    );
    assert!(problem["detail"].as_str().unwrap().contains("--max-devices-per-tenant is 1"), "{problem}");
    let other = hub
        .client
        .post(at(&hub, "/iot/services"))
        .header("fiware-service", "another")
        .header("content-type", "application/json")
        .body(json!({"services": [{"apikey": "k"}]}).to_string())
        .send()
        .unwrap();
    let problem = assert_problem(other, 422, "OperationNotSupported");
    assert!(problem["detail"].as_str().unwrap().contains("--max-tenants"), "{problem}");
    let (_, devices) = json_of(iot(&hub, reqwest::Method::GET, "/iot/devices", None));
    assert_eq!(devices["count"], 1, "the refused device was not kept");
}

/// Publishes `/probe/<n>/attrs` (an apikey nobody has) until the hub has dead-lettered `n`
/// probes: the hub reads the broker.
fn probe_until_read(hub: &Hub, port: u16, n: usize) {
    let device = Publisher::connect(port);
    let deadline = Instant::now() + WAIT;
    while dead_letters(hub, Some("")).len() < n {
        assert!(Instant::now() < deadline, "the hub reads the broker on {port}");
        device.publish(&format!("/probe/{n}/attrs"), "t|1");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_mqtt_southbound_reconnects_to_a_restarted_broker() {
    let broker = mosquitto();
    let port = broker.port;
    let hub = Hub::start_with(&["--mqtt-ingest", &format!("mqtt://127.0.0.1:{port}")]);
    probe_until_read(&hub, port, 1);
    drop(broker);
    let _broker = mosquitto_on(port);
    // The first probes after the restart may reach the broker before the hub is back; each
    // is repeated until one is read.
    let before = dead_letters(&hub, Some("")).len();
    probe_until_read(&hub, port, before + 1);
    let last = dead_letters(&hub, Some("")).pop().unwrap();
    assert!(last["reason"].as_str().unwrap().contains("no service group has apikey \"probe\""), "{last}");
}

/// Publishes every message at QoS 1 before waiting for any acknowledgement: a burst.
fn publish_burst(device: &Publisher, messages: &[(String, String)]) {
    for (topic, payload) in messages {
        device.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).unwrap();
    }
    for _ in messages {
        device.acks.recv_timeout(WAIT).expect("the broker acknowledges every publish of the burst");
    }
}

#[test]
fn a_burst_of_many_devices_is_stored_reading_by_reading_with_each_observed_at() {
    const DEVICES: usize = 40;
    const EACH: usize = 5;
    let broker = mosquitto();
    let hub = Hub::start_with(&["--mqtt-ingest", &format!("mqtt://127.0.0.1:{}", broker.port)]);
    let group = json!({"services": [{"apikey": "burst", "entity_type": "Meter",
        "attributes": [{"object_id": "v", "name": "reading", "type": "Number"}]}]});
    assert_eq!(iot(&hub, reqwest::Method::POST, "/iot/services", Some(&group)).status(), 201);
    let device = Publisher::connect(broker.port);
    probe_until_read(&hub, broker.port, 1);

    // Every device sends EACH readings, JSON and UltraLight alternating, interleaved with the
    // other devices', all published before the first acknowledgement is awaited.
    let observed = |d: usize, i: usize| format!("2026-06-01T{:02}:{:02}:{i:02}Z", d / 60, d % 60);
    let mut messages = Vec::new();
    for i in 0..EACH {
        for d in 0..DEVICES {
            let (topic, payload) = match (d + i) % 2 {
                0 => (
                    format!("/json/burst/m{d}/attrs"),
                    format!(r#"{{"v": {}, "TimeInstant": "{}"}}"#, d * 100 + i, observed(d, i)),
                ),
                _ => (format!("/ul/burst/m{d}/attrs"), format!("{}|v|{}", observed(d, i), d * 100 + i)),
            };
            messages.push((topic, payload));
        }
    }
    publish_burst(&device, &messages);

    let total = (DEVICES * EACH) as u64;
    let deadline = Instant::now() + WAIT;
    let group_status = loop {
        let s = status_of(&hub, "service", "burst");
        if s["stored"].as_u64().unwrap_or(0) + s["rejected"].as_u64().unwrap_or(0) >= total {
            break s;
        }
        assert!(Instant::now() < deadline, "the burst's {total} readings are all counted: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (group_status["received"].clone(), group_status["stored"].clone()),
        (json!(total), json!(total)),
        "{group_status}"
    );
    assert_eq!(group_status["rejected"], 0, "{group_status}");

    for d in 0..DEVICES {
        let id = format!("urn:ngsi-ld:Meter:m{d}");
        let entity = get(&hub, &format!("/ngsi-ld/v1/entities/{id}"));
        let last = EACH - 1;
        assert_eq!(
            entity["reading"],
            json!({"type": "Property", "value": d * 100 + last, "observedAt": observed(d, last)}),
            "{id}: the last reading is the entity's"
        );
        let history = get(&hub, &format!("/ngsi-ld/v1/temporal/entities/{id}?attrs=reading"));
        let mut instances: Vec<(Value, Value)> = history["reading"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has a history: {history}"))
            .iter()
            .map(|i| (i["value"].clone(), i["observedAt"].clone()))
            .collect();
        instances.sort_by_key(|(v, _)| v.as_u64());
        let expected: Vec<(Value, Value)> = (0..EACH).map(|i| (json!(d * 100 + i), json!(observed(d, i)))).collect();
        assert_eq!(instances, expected, "{id}: every reading of the burst is in the history, with its observedAt");
    }
}
