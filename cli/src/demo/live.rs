//! The live demo city: a week of history for the demo's air-quality stations and parking spots,
//! then new observations every few seconds, all through the normal write path (the temporal
//! write of `POST /temporal/entities` for the history, the attribute update of `PATCH
//! /entities/{id}/attrs` for the live values), so history, subscriptions and the live channel
//! see them as they see any client's writes.
//!
//! Values are made up but plausible and repeatable: a daily rhythm (traffic hours) around each
//! station's own level, with noise from a hash of the station and the hour. At start only the
//! hours not yet recorded are written: a restart fills the gap since the last run.

use std::time::Duration;

use cityhub_storage::{DynStore, Modified, TemporalWrite, DEFAULT_TENANT};
use ngsild_core::expand::{expand_fragment, expand_temporal_entity};
use ngsild_core::time::{format_time, from_micros, micros, now};
use ngsild_jsonld::core_context;
use serde_json::{json, Map, Value};

const HOUR: i64 = 3_600_000_000;
/// How far back the history goes.
const WEEK_HOURS: i64 = 7 * 24;

/// One demo entity that the live city moves: its id and its own base level.
struct Sensor {
    id: String,
    parking: bool,
    base: f64,
}

fn sensors() -> anyhow::Result<Vec<Sensor>> {
    let items: Vec<Value> = serde_json::from_str(super::CITY_DATA)?;
    let mut out = Vec::new();
    for item in items {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("AirQualityObserved") => {
                let base = item["pm25"]["value"].as_f64().unwrap_or(12.0);
                out.push(Sensor { id, parking: false, base });
            }
            Some("ParkingSpot") => out.push(Sensor { id, parking: true, base: 0.0 }),
            _ => {}
        }
    }
    Ok(out)
}

/// A repeatable number in [0, 1) from a text and a step.
fn noise(id: &str, step: i64) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(step.to_le_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The observations of `sensor` at `at` (µs since the epoch), as NGSI-LD attributes.
fn observation(sensor: &Sensor, at: i64) -> Map<String, Value> {
    let time = from_micros(at).map(format_time).unwrap_or_else(now);
    let step = at / 1_000_000;
    let hour_of_day = ((at / HOUR) % 24) as f64;
    let mut attrs = Map::new();
    if sensor.parking {
        let busy = if (7.0..20.0).contains(&hour_of_day) { 0.7 } else { 0.25 };
        let status = if noise(&sensor.id, step) < busy { "occupied" } else { "free" };
        attrs.insert("status".into(), json!({"type": "Property", "value": status, "observedAt": time}));
        return attrs;
    }
    // Two traffic peaks a day, local to the city roughly (+8 h from UTC for these four cities).
    let local = (hour_of_day + 8.0) % 24.0;
    let rush = (-((local - 8.5) / 2.0).powi(2)).exp() + (-((local - 18.5) / 2.5).powi(2)).exp();
    let n = noise(&sensor.id, step) - 0.5;
    let pm25 = (sensor.base * (0.7 + 0.9 * rush) + 6.0 * n).max(1.0);
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let temperature = 12.0 + 6.0 * ((local - 9.0) / 24.0 * std::f64::consts::TAU).sin() + 2.0 * n;
    for (name, value, unit) in [
        ("pm25", round1(pm25), "GQ"),
        ("pm10", round1(pm25 * 1.6 + 3.0 * n), "GQ"),
        ("no2", round1(15.0 + 25.0 * rush + 5.0 * n), "GQ"),
        ("temperature", round1(temperature), "CEL"),
    ] {
        attrs.insert(name.into(), json!({"type": "Property", "value": value, "unitCode": unit, "observedAt": time}));
    }
    let level = match pm25 {
        v if v <= 15.0 => "good",
        v if v <= 35.0 => "moderate",
        v if v <= 75.0 => "unhealthy",
        _ => "hazardous",
    };
    attrs.insert("airQualityLevel".into(), json!({"type": "Property", "value": level, "observedAt": time}));
    attrs.insert("dateObserved".into(), json!({"type": "Property", "value": time}));
    attrs
}

/// The time of the latest observation the store holds for `sensor`, in µs.
async fn latest(store: &DynStore, sensor: &Sensor) -> anyhow::Result<Option<i64>> {
    let entity = store.get_entity(DEFAULT_TENANT, &sensor.id).await?;
    let name = if sensor.parking { "status" } else { "pm25" };
    let iri = format!("https://uri.etsi.org/ngsi-ld/default-context/{name}");
    let observed =
        entity.and_then(|e| e.attrs.get(&iri).and_then(|list| list.first().and_then(|a| a.observed_at.clone())));
    Ok(observed.as_deref().and_then(micros))
}

/// Writes the hourly history from a week ago (or the latest recorded hour) up to now. Answers
/// how many instances were written.
pub async fn history(store: &DynStore) -> anyhow::Result<usize> {
    let ctx = core_context();
    let now_us = micros(&now()).unwrap_or_default();
    let first = (now_us / HOUR - WEEK_HOURS) * HOUR;
    let mut written = 0;
    for sensor in sensors()? {
        let from = match latest(store, &sensor).await? {
            Some(at) if at >= first => (at / HOUR + 1) * HOUR,
            _ => first,
        };
        let mut body = Map::new();
        body.insert("id".into(), json!(sensor.id));
        body.insert("type".into(), json!(if sensor.parking { "ParkingSpot" } else { "AirQualityObserved" }));
        let mut hour = from;
        while hour <= now_us {
            for (name, attr) in observation(&sensor, hour) {
                match body.get_mut(&name) {
                    Some(Value::Array(list)) => list.push(attr),
                    _ => {
                        body.insert(name, json!([attr]));
                    }
                }
                written += 1;
            }
            hour += HOUR;
        }
        if body.len() <= 2 {
            continue;
        }
        let entity = expand_temporal_entity(&body, &ctx, true).map_err(|e| anyhow::anyhow!("demo history: {e}"))?;
        store
            .temporal_write(DEFAULT_TENANT, &sensor.id, TemporalWrite::AddInstances { entity, must_exist: false })
            .await?
            .map_err(|e| anyhow::anyhow!("demo history of {}: {e}", sensor.id))?;
    }
    Ok(written)
}

/// One round of new observations for every sensor, as attribute updates.
pub async fn observe(store: &DynStore) -> anyhow::Result<()> {
    let ctx = core_context();
    let at = micros(&now()).unwrap_or_default();
    let mut modifications = Vec::new();
    for sensor in sensors()? {
        let input = expand_fragment(&observation(&sensor, at), &ctx).map_err(|e| anyhow::anyhow!("demo: {e}"))?;
        modifications.push((
            sensor.id.clone(),
            Box::new(move |current: Option<ngsild_core::Entity>| {
                let Some(mut entity) = current else { return Ok(Modified::from(None)) };
                ngsild_core::ops::update_attributes(&mut entity, &input, &now())?;
                Ok(Modified::entity(entity))
            }) as cityhub_storage::Modifier,
        ));
    }
    store.modify(DEFAULT_TENANT, modifications).await?;
    Ok(())
}

/// The live city: the missing history written now, then new observations every `every`.
pub async fn start(store: DynStore, every: Duration) -> anyhow::Result<()> {
    let began = std::time::Instant::now();
    let instances = history(&store).await?;
    tracing::info!(instances, ms = began.elapsed().as_millis() as u64, "demo city history written");
    keep_observing(store, every);
    Ok(())
}

/// Writes new observations every `every` until the process ends.
pub fn keep_observing(store: DynStore, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = observe(&store).await {
                tracing::warn!(error = %e, "the demo city could not write its observations");
            }
        }
    });
}
