//! Black-box tests of the temporal API: history recording, timerel, lastN, representations,
//! aggregation checked against sums done by hand, instance pagination, instance edits.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const STATION: &str = "urn:ngsi-ld:AirQualityObserved:Jongno";

/// PM2.5 readings at uneven times: 08:00, 08:20, 08:50, 09:10, 10:40 on 2026-11-01.
fn seed(hub: &Hub) {
    let reading = |value: f64, time: &str| json!({"type": "Property", "value": value, "observedAt": format!("2026-11-01T{time}:00Z"), "unitCode": "GQ"});
    let body = json!({
        "id": STATION, "type": "AirQualityObserved",
        "pm25": [reading(10.0, "08:00"), reading(20.0, "08:20"), reading(30.0, "08:50"), reading(5.0, "09:10"), reading(7.0, "10:40")],
        "level": [{"type": "Property", "value": "good", "observedAt": "2026-11-01T08:00:00Z"},
                  {"type": "Property", "value": "moderate", "observedAt": "2026-11-01T09:10:00Z"}]
    });
    let response = hub.post("/temporal/entities", &body);
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], format!("/ngsi-ld/v1/temporal/entities/{STATION}"));
}

fn values(body: &Value, attr: &str) -> Vec<Value> {
    body[attr].as_array().unwrap_or_else(|| panic!("{attr} in {body}")).iter().map(|i| i["value"].clone()).collect()
}

#[test]
fn create_retrieve_and_time_windows() {
    let hub = Hub::start();
    seed(&hub);
    let path = format!("/temporal/entities/{STATION}");
    let (status, body) = hub.get_json(&path);
    assert_eq!(status, 200);
    assert_eq!(values(&body, "pm25"), vec![json!(10.0), json!(20.0), json!(30.0), json!(5.0), json!(7.0)]);
    assert!(body["pm25"][0]["instanceId"].as_str().unwrap().starts_with("urn:ngsi-ld:Instance:"));
    assert_eq!(body["pm25"][0]["unitCode"], "GQ");

    // The current entity holds the latest observation of each attribute.
    let (_, current) = hub.get_json(&format!("/entities/{STATION}?options=keyValues"));
    assert_eq!(current["pm25"], json!(7.0));
    assert_eq!(current["level"], "moderate");

    let window = |q: &str| hub.get_json(&format!("{path}?attrs=pm25&{q}")).1;
    assert_eq!(values(&window("timerel=before&timeAt=2026-11-01T08:50:00Z"), "pm25"), vec![json!(10.0), json!(20.0)]);
    assert_eq!(
        values(&window("timerel=after&timeAt=2026-11-01T08:50:00Z"), "pm25"),
        vec![json!(30.0), json!(5.0), json!(7.0)]
    );
    assert_eq!(
        values(&window("timerel=between&timeAt=2026-11-01T08:10:00Z&endTimeAt=2026-11-01T09:10:00Z"), "pm25"),
        vec![json!(20.0), json!(30.0)]
    );
    let last_two = window("lastN=2");
    assert_eq!(values(&last_two, "pm25"), vec![json!(5.0), json!(7.0)]);
    assert!(last_two.get("level").is_none(), "attrs selects attributes");

    let (_, simplified) = hub.get_json(&format!("{path}?options=temporalValues&attrs=level"));
    assert_eq!(
        simplified["level"],
        json!({"type": "Property", "values": [["good", "2026-11-01T08:00:00Z"], ["moderate", "2026-11-01T09:10:00Z"]]})
    );

    assert_problem(
        hub.get(&format!("{path}?timerel=around&timeAt=2026-11-01T08:00:00Z")).send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get(&format!("{path}?timerel=between&timeAt=2026-11-01T08:00:00Z")).send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(hub.get(&format!("{path}?timerel=after&timeAt=noon")).send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get(&format!("{path}?lastN=0")).send().unwrap(), 400, "BadRequestData");
    assert_problem(
        hub.get("/temporal/entities/urn:ngsi-ld:AirQualityObserved:none").send().unwrap(),
        404,
        "ResourceNotFound",
    );
    assert_problem(hub.get("/temporal/entities/not-a-uri").send().unwrap(), 400, "BadRequestData");

    // Adding instances to an existing temporal entity answers 204 and keeps the earlier ones.
    let more = json!({"id": STATION, "type": "AirQualityObserved",
        "pm25": [{"type": "Property", "value": 9.0, "observedAt": "2026-11-01T11:00:00Z"}]});
    assert_eq!(hub.post("/temporal/entities", &more).status(), 204);
    assert_eq!(values(&hub.get_json(&path).1, "pm25").len(), 6);
    // An observation of the same series at the same time replaces the earlier one.
    let corrected = json!({"id": STATION, "type": "AirQualityObserved",
        "pm25": [{"type": "Property", "value": 11.0, "observedAt": "2026-11-01T08:00:00Z"}]});
    assert_eq!(hub.post("/temporal/entities", &corrected).status(), 204);
    let pm25 = values(&hub.get_json(&path).1, "pm25");
    assert_eq!((pm25.len(), &pm25[0]), (6, &json!(11.0)));
}

#[test]
fn aggregation_matches_sums_done_by_hand() {
    let hub = Hub::start();
    seed(&hub);
    let (status, body) = hub.get_json(&format!(
        "/temporal/entities/{STATION}?attrs=pm25&options=aggregatedValues\
         &aggrMethods=totalCount,distinctCount,sum,avg,min,max,stddev,sumsq&aggrPeriodDuration=PT1H"
    ));
    assert_eq!(status, 200, "{body}");
    let pm25 = &body["pm25"];
    // Periods start at the first instance (08:00): [08:00, 09:00) holds 10, 20, 30;
    // [09:00, 10:00) holds 5; [10:00, 11:00) holds 7.
    let periods = [("08:00", "09:00"), ("09:00", "10:00"), ("10:00", "11:00")];
    let samples: [&[f64]; 3] = [&[10.0, 20.0, 30.0], &[5.0], &[7.0]];
    for (i, (sample, (start, end))) in samples.iter().zip(periods).enumerate() {
        let n = sample.len() as f64;
        let sum: f64 = sample.iter().sum();
        let mean = sum / n;
        let sumsq: f64 = sample.iter().map(|v| v * v).sum();
        let stddev = (sample.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let at = |method: &str| {
            let triple = &pm25[method][i];
            assert_eq!(triple[1], format!("2026-11-01T{start}:00Z"), "{method} period {i}");
            assert_eq!(triple[2], format!("2026-11-01T{end}:00Z"), "{method} period {i}");
            triple[0].as_f64().unwrap()
        };
        assert_eq!(at("totalCount"), n);
        assert_eq!(at("distinctCount"), n);
        assert_eq!(at("sum"), sum);
        assert!((at("avg") - mean).abs() < 1e-9);
        assert_eq!(at("min"), sample.iter().cloned().fold(f64::MAX, f64::min));
        assert_eq!(at("max"), sample.iter().cloned().fold(f64::MIN, f64::max));
        assert_eq!(at("sumsq"), sumsq);
        assert!((at("stddev") - stddev).abs() < 1e-9, "stddev {} vs {stddev}", at("stddev"));
    }
    assert_eq!(pm25["sum"].as_array().unwrap().len(), 3, "no empty periods");

    // Periods inside a window start at its start and stop at its end: [08:10, 09:10) holds 20
    // and 30, [09:10, 10:00) holds 5; 10:40 is past the window.
    let (_, windowed) = hub.get_json(&format!(
        "/temporal/entities/{STATION}?attrs=pm25&options=aggregatedValues&aggrMethods=sum,totalCount\
         &aggrPeriodDuration=PT1H&timerel=between&timeAt=2026-11-01T08:10:00Z&endTimeAt=2026-11-01T10:00:00Z"
    ));
    let sums: Vec<(f64, String)> = windowed["pm25"]["sum"]
        .as_array()
        .unwrap_or_else(|| panic!("{windowed}"))
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        sums,
        vec![(50.0, "2026-11-01T08:10:00Z".to_owned()), (5.0, "2026-11-01T09:10:00Z".to_owned())],
        "{windowed}"
    );

    // PT0S: the whole window as one period.
    let (_, whole) = hub.get_json(&format!(
        "/temporal/entities/{STATION}?attrs=pm25&options=aggregatedValues&aggrMethods=sum,max\
         &aggrPeriodDuration=PT0S&timerel=after&timeAt=2026-11-01T08:10:00Z"
    ));
    assert_eq!(whole["pm25"]["sum"], json!([[62.0, "2026-11-01T08:10:00Z", "2026-11-01T10:40:00Z"]]));
    assert_eq!(whole["pm25"]["max"][0][0], json!(30.0));
    // Strings count and compare too.
    let (_, level) = hub.get_json(&format!(
        "/temporal/entities/{STATION}?attrs=level&options=aggregatedValues&aggrMethods=distinctCount,max&aggrPeriodDuration=P1D"
    ));
    assert_eq!(level["level"]["distinctCount"][0][0], json!(2));
    assert_eq!(level["level"]["max"][0][0], json!("moderate"));

    assert_problem(
        hub.get(&format!("/temporal/entities/{STATION}?options=aggregatedValues&aggrMethods=median")).send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get(&format!(
            "/temporal/entities/{STATION}?options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=1H"
        ))
        .send()
        .unwrap(),
        400,
        "BadRequestData",
    );
}

#[test]
fn entity_api_changes_are_recorded_with_deletions() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:ParkingSpot:Busan-7";
    let spot = json!({"id": id, "type": "ParkingSpot", "status": {"type": "Property", "value": "free"},
                      "name": {"type": "Property", "value": "Haeundae 7"}});
    assert_eq!(hub.post("/entities", &spot).status(), 201);
    let patch = json!({"value": "occupied"});
    let response = hub.send_json(Method::PATCH, &format!("/entities/{id}/attrs/status"), &patch).send().unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(hub.delete(&format!("/entities/{id}/attrs/name")).send().unwrap().status(), 204);

    let (_, history) = hub.get_json(&format!("/temporal/entities/{id}?timeproperty=modifiedAt"));
    assert_eq!(values(&history, "status"), vec![json!("free"), json!("occupied")]);
    assert_eq!(values(&history, "name"), vec![json!("Haeundae 7"), json!("urn:ngsi-ld:null")]);
    assert!(history["name"][1]["deletedAt"].is_string());

    let (_, deleted) = hub.get_json(&format!("/temporal/entities/{id}?timeproperty=deletedAt"));
    assert_eq!(deleted["name"].as_array().unwrap().len(), 1);
    assert!(deleted.get("status").is_none(), "only deletions have a deletedAt");

    // Deleting the entity keeps its history, marked deleted.
    assert_eq!(hub.delete(&format!("/entities/{id}")).send().unwrap().status(), 204);
    let (status, gone) = hub.get_json(&format!("/temporal/entities/{id}"));
    assert_eq!(status, 200);
    assert!(gone["deletedAt"].is_string());
    assert_eq!(values(&gone, "status").last(), Some(&json!("urn:ngsi-ld:null")));
}

#[test]
fn instance_pages_hold_a_bounded_number_of_instances_cut_at_one_time() {
    let hub = Hub::start_with(&["--temporal-instance-limit", "4"]);
    let reading = |minute: u32| json!({"type": "Property", "value": minute, "observedAt": format!("2026-11-01T08:{minute:02}:00Z")});
    let pm25: Vec<Value> = (0..10).map(reading).collect();
    let no2: Vec<Value> = [0, 1, 7, 8, 9].into_iter().map(reading).collect();
    let body = json!({"id": STATION, "type": "AirQualityObserved", "pm25": pm25, "no2": no2});
    assert_eq!(hub.post("/temporal/entities", &body).status(), 201);

    // Four instances per response in all: the earliest four times are 08:00, 08:00, 08:01, 08:01.
    let response = hub.get(&format!("/temporal/entities/{STATION}")).send().unwrap();
    assert_eq!(response.status(), 206);
    let range = response.headers()["content-range"].to_str().unwrap().to_owned();
    assert_eq!(range, "date-time 2026-11-01T08:00:00.000000Z-2026-11-01T08:01:00.000000Z/*");
    let (_, page) = json_of(response);
    assert_eq!(values(&page, "pm25"), vec![json!(0), json!(1)]);
    assert_eq!(values(&page, "no2"), vec![json!(0), json!(1)]);

    // The next page continues after the cut; no2 has nothing before the new cut and stays, empty.
    let response =
        hub.get(&format!("/temporal/entities/{STATION}?timerel=after&timeAt=2026-11-01T08:01:30Z")).send().unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        "date-time 2026-11-01T08:01:30.000000Z-2026-11-01T08:05:00.000000Z/*"
    );
    let (_, next) = json_of(response);
    assert_eq!(values(&next, "pm25"), vec![json!(2), json!(3), json!(4), json!(5)]);
    assert_eq!(next["no2"], json!([]));

    // lastN alone is not paging: the three newest, 200.
    let (status, last) = hub.get_json(&format!("/temporal/entities/{STATION}?lastN=3&attrs=pm25"));
    assert_eq!(status, 200);
    assert_eq!(values(&last, "pm25"), vec![json!(7), json!(8), json!(9)]);
    // lastN over both attributes holds six, more than four: cut from the newest, range backwards.
    let response = hub.get(&format!("/temporal/entities/{STATION}?lastN=3")).send().unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        "date-time 2026-11-01T08:09:00.000000Z-2026-11-01T08:08:00.000000Z/3"
    );
    let (_, last) = json_of(response);
    assert_eq!(values(&last, "pm25"), vec![json!(8), json!(9)]);
    assert_eq!(values(&last, "no2"), vec![json!(8), json!(9)]);

    // Everything fits: 200.
    let response = hub
        .get(&format!("/temporal/entities/{STATION}?attrs=no2&timerel=after&timeAt=2026-11-01T08:05:00Z"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn instances_attributes_and_entities_are_edited_and_deleted() {
    let hub = Hub::start();
    seed(&hub);
    let path = format!("/temporal/entities/{STATION}");
    let (_, body) = hub.get_json(&path);
    let instance = body["pm25"][1]["instanceId"].as_str().unwrap().to_owned();

    let fix = json!({"pm25": {"type": "Property", "value": 21.5, "observedAt": "2026-11-01T08:20:00Z"}});
    let response = hub.send_json(Method::PATCH, &format!("{path}/attrs/pm25/{instance}"), &fix).send().unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(values(&hub.get_json(&path).1, "pm25")[1], json!(21.5));
    let missing = format!("{path}/attrs/pm25/urn:ngsi-ld:Instance:none");
    assert_problem(hub.send_json(Method::PATCH, &missing, &fix).send().unwrap(), 404, "ResourceNotFound");

    assert_eq!(hub.delete(&format!("{path}/attrs/pm25/{instance}")).send().unwrap().status(), 204);
    assert_eq!(values(&hub.get_json(&path).1, "pm25").len(), 4);
    assert_problem(hub.delete(&format!("{path}/attrs/pm25/{instance}")).send().unwrap(), 404, "ResourceNotFound");

    let add = json!({"no2": [{"type": "Property", "value": 31, "observedAt": "2026-11-01T08:00:00Z"}]});
    assert_eq!(hub.post(&format!("{path}/attrs"), &add).status(), 204);
    assert_eq!(values(&hub.get_json(&path).1, "no2"), vec![json!(31)]);
    assert_problem(
        hub.send_json(Method::POST, "/temporal/entities/urn:ngsi-ld:X:none/attrs", &add).send().unwrap(),
        404,
        "ResourceNotFound",
    );

    assert_eq!(hub.delete(&format!("{path}/attrs/level")).send().unwrap().status(), 204);
    assert!(hub.get_json(&path).1.get("level").is_none());
    assert_problem(hub.delete(&format!("{path}/attrs/level")).send().unwrap(), 404, "ResourceNotFound");

    assert_eq!(hub.delete(&path).send().unwrap().status(), 204);
    assert_problem(hub.get(&path).send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.get(&format!("/entities/{STATION}")).send().unwrap(), 404, "ResourceNotFound");
}

#[test]
fn temporal_queries_select_entities() {
    let hub = Hub::start();
    seed(&hub);
    let other = json!({"id": "urn:ngsi-ld:AirQualityObserved:Busan", "type": "AirQualityObserved",
        "pm25": [{"type": "Property", "value": 50.0, "observedAt": "2026-11-01T08:00:00Z"}]});
    assert_eq!(hub.post("/temporal/entities", &other).status(), 201);
    let ids = |body: &Value| {
        body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (status, all) =
        hub.get_json("/temporal/entities?type=AirQualityObserved&timerel=after&timeAt=2026-11-01T00:00:00Z");
    assert_eq!(status, 200);
    assert_eq!(ids(&all), vec!["urn:ngsi-ld:AirQualityObserved:Busan", STATION]);
    let (_, polluted) = hub.get_json("/temporal/entities?type=AirQualityObserved&q=pm25>20");
    assert_eq!(ids(&polluted), vec!["urn:ngsi-ld:AirQualityObserved:Busan"]);
    let (_, by_id) = hub.get_json("/temporal/entities?idPattern=.*Jongno&attrs=level&lastN=1");
    assert_eq!(
        by_id,
        json!([{"id": STATION, "type": "AirQualityObserved",
        "level": [{"type": "Property", "value": "moderate", "observedAt": "2026-11-01T09:10:00Z",
                   "instanceId": by_id[0]["level"][0]["instanceId"].clone()}]}])
    );
    let query = json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}], "attrs": ["pm25"],
        "temporalQ": {"timerel": "before", "timeAt": "2026-11-01T08:10:00Z"}});
    let (status, posted) =
        json_of(hub.send_json(Method::POST, "/temporal/entityOperations/query", &query).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        posted.as_array().unwrap().iter().map(|e| values(e, "pm25")).collect::<Vec<_>>(),
        vec![vec![json!(50.0)], vec![json!(10.0)]]
    );
    assert_problem(
        hub.get("/temporal/entities?timerel=after&timeAt=2026-11-01T00:00:00Z").send().unwrap(),
        400,
        "BadRequestData",
    );
}

/// Deleting an entity's scope (`DELETE /entities/{id}/attrs/scope`) is history too: the deletion
/// shows as an instance of `scope` with the empty list, selected by `timeproperty=deletedAt`.
#[test]
fn scope_deletion_is_recorded() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:scoped";
    let body = json!({
        "id": id, "type": "Vehicle", "scope": ["/Seoul/Jongno", "/Busan"],
        "speed": [{"type": "Property", "value": 30, "observedAt": "2026-11-01T08:00:00Z"}]
    });
    assert_eq!(hub.post("/temporal/entities", &body).status(), 201);
    let (_, before) = hub.get_json(&format!("/temporal/entities/{id}?timeproperty=deletedAt"));
    assert!(before.get("scope").is_none_or(|s| s.is_array() && s[0].is_string()), "no deleted scope yet: {before}");

    let response = hub.delete(&format!("/entities/{id}/attrs/scope")).send().unwrap();
    assert_eq!(response.status(), 204);
    let (status, history) = hub.get_json(&format!("/temporal/entities/{id}?timeproperty=deletedAt"));
    assert_eq!(status, 200);
    let scope = history["scope"].as_array().unwrap_or_else(|| panic!("scope history in {history}"));
    assert_eq!(scope.len(), 1, "{history}");
    assert_eq!(scope[0]["type"], "Property");
    assert_eq!(scope[0]["value"], json!([]));
    assert!(scope[0]["deletedAt"].as_str().unwrap().starts_with("20"), "{history}");
    assert!(history.get("speed").is_none(), "no speed instance was deleted: {history}");

    let (_, simplified) =
        hub.get_json(&format!("/temporal/entities/{id}?timeproperty=deletedAt&options=temporalValues"));
    assert_eq!(simplified["scope"]["values"][0][0], json!([]), "{simplified}");
    assert_eq!(simplified["scope"]["values"][0][1], scope[0]["deletedAt"]);
}
