//! What a response must be for a request to count as answered correctly.

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::data::distance_m;

/// A response as the load generator received it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The body check of one request; the status is checked for every request.
#[derive(Debug, Clone)]
pub enum Check {
    /// The status is all there is to check.
    Status,
    /// The entity with this id and type.
    Entity { id: String, ty: &'static str },
    /// A batch create: a JSON array with the ids of this many created entities.
    CreatedIds(usize),
    /// A query with `count=true`: the NGSILD-Results-Count header within `total`, a page of
    /// `min(total, limit)` entities of type `ty`, each passing `each`.
    Query { total: (usize, usize), limit: usize, ty: &'static str, each: Each },
    /// An aggregated temporal representation of `id` whose `totalCount` periods of `attr` add up
    /// to `total` instances.
    Aggregated { id: String, attr: &'static str, total: u64 },
}

/// A condition every entity of a query result must meet.
#[derive(Debug, Clone)]
pub enum Each {
    /// Every temperature instance above `threshold` and `status` equal to `status`.
    AboveAndStatus { threshold: f64, status: &'static str },
    /// `belongs` points to this object.
    Belongs(String),
    /// The Point `location` within `max_m` metres of `centre`.
    Near { centre: (f64, f64), max_m: f64 },
}

impl Check {
    /// Checks a reply. `strict` is false for the ceiling server, whose canned body belongs to
    /// another request: it gets the same status check and the same JSON parsing (so the client
    /// does the same work against both servers) but no content check.
    pub fn verify(&self, expected: StatusCode, reply: &Reply, strict: bool) -> Result<(), String> {
        if reply.status != expected {
            return Err(format!("status {} (expected {expected}): {}", reply.status, excerpt(&reply.body)));
        }
        let body: Option<Value> = if reply.body.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&reply.body)
                    .map_err(|e| format!("body is not JSON ({e}): {}", excerpt(&reply.body)))?,
            )
        };
        if !strict {
            return Ok(());
        }
        match (self, body) {
            (Check::Status, _) => Ok(()),
            (Check::Entity { id, ty }, Some(entity)) => {
                if entity["id"] != id.as_str() || entity["type"] != *ty {
                    return Err(format!(
                        "expected entity {id} of type {ty}, got id {} type {}",
                        entity["id"], entity["type"]
                    ));
                }
                Ok(())
            }
            (Check::CreatedIds(n), Some(Value::Array(ids))) if ids.len() == *n => Ok(()),
            (Check::CreatedIds(n), Some(other)) => {
                Err(format!("expected {n} created ids, got {}", excerpt_value(&other)))
            }
            (Check::Query { total, limit, ty, each }, Some(Value::Array(entities))) => {
                let counted = results_count(&reply.headers)?;
                if counted < total.0 || counted > total.1 {
                    return Err(format!("NGSILD-Results-Count {counted}, expected {}..={}", total.0, total.1));
                }
                if entities.len() != counted.min(*limit) {
                    return Err(format!("{} entities in the page, expected {}", entities.len(), counted.min(*limit)));
                }
                entities.iter().try_for_each(|entity| {
                    if entity["type"] != *ty {
                        return Err(format!("entity {} has type {}, expected {ty}", entity["id"], entity["type"]));
                    }
                    each.holds(entity).map_err(|why| format!("entity {}: {why}", entity["id"]))
                })
            }
            (Check::Aggregated { id, attr, total }, Some(entity)) => {
                if entity["id"] != id.as_str() {
                    return Err(format!("expected entity {id}, got {}", entity["id"]));
                }
                let series = match &entity[*attr] {
                    Value::Array(items) => items.iter().collect(),
                    single @ Value::Object(_) => vec![single],
                    other => return Err(format!("{attr} is {other}")),
                };
                let counted: u64 = series
                    .iter()
                    .filter_map(|s| s["totalCount"].as_array())
                    .flatten()
                    .filter_map(|period| period[0].as_u64())
                    .sum();
                if counted != *total {
                    return Err(format!("the totalCount periods add up to {counted}, expected {total}"));
                }
                Ok(())
            }
            (_, body) => Err(format!("unexpected body: {}", body.as_ref().map(excerpt_value).unwrap_or_default())),
        }
    }
}

impl Each {
    fn holds(&self, entity: &Value) -> Result<(), String> {
        match self {
            Each::AboveAndStatus { threshold, status } => {
                if entity["status"]["value"] != *status {
                    return Err(format!("status is {}", entity["status"]["value"]));
                }
                let instances = match &entity["temperature"] {
                    Value::Array(items) => items.iter().collect(),
                    single @ Value::Object(_) => vec![single],
                    other => return Err(format!("temperature is {other}")),
                };
                match instances.iter().find(|i| i["value"].as_f64().is_none_or(|v| v <= *threshold)) {
                    Some(low) => Err(format!("temperature {} is not above {threshold}", low["value"])),
                    None => Ok(()),
                }
            }
            Each::Belongs(object) if entity["belongs"]["object"] == object.as_str() => Ok(()),
            Each::Belongs(object) => Err(format!("belongs to {}, expected {object}", entity["belongs"]["object"])),
            Each::Near { centre, max_m } => {
                let at = &entity["location"]["value"]["coordinates"];
                let (Some(lon), Some(lat)) = (at[0].as_f64(), at[1].as_f64()) else {
                    return Err(format!("location is {}", entity["location"]));
                };
                let d = distance_m(*centre, (lon, lat));
                if d > *max_m {
                    return Err(format!("location is {d:.0} m away, more than {max_m} m"));
                }
                Ok(())
            }
        }
    }
}

fn results_count(headers: &HeaderMap) -> Result<usize, String> {
    let value = headers.get("ngsild-results-count").ok_or("no NGSILD-Results-Count header")?;
    value.to_str().ok().and_then(|v| v.parse().ok()).ok_or_else(|| format!("NGSILD-Results-Count is {value:?}"))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

fn excerpt_value(value: &Value) -> String {
    excerpt(value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, count: Option<usize>, body: &Value) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(n) = count {
            headers.insert("ngsild-results-count", n.to_string().parse().unwrap());
        }
        Reply { status: StatusCode::from_u16(status).unwrap(), headers, body: Bytes::from(body.to_string()) }
    }

    #[test]
    fn entity_check_compares_id_and_type() {
        let check = Check::Entity { id: "urn:a".into(), ty: "T" };
        let good = reply(200, None, &json!({"id": "urn:a", "type": "T"}));
        let bad = reply(200, None, &json!({"id": "urn:b", "type": "T"}));
        assert!(check.verify(StatusCode::OK, &good, true).is_ok());
        assert!(check.verify(StatusCode::OK, &bad, true).is_err());
        assert!(check.verify(StatusCode::OK, &bad, false).is_ok(), "the ceiling is not checked for content");
        assert!(check.verify(StatusCode::CREATED, &good, false).is_err(), "the status always is");
    }

    #[test]
    fn query_check_counts_and_tests_each_entity() {
        let each = Each::AboveAndStatus { threshold: 20.0, status: "ok" };
        let check = Check::Query { total: (2, 2), limit: 1, ty: "T", each };
        let warm = json!([{"id": "urn:a", "type": "T", "status": {"value": "ok"},
                           "temperature": [{"value": 21.0}, {"value": 25.0}]}]);
        let cold = json!([{"id": "urn:a", "type": "T", "status": {"value": "ok"},
                           "temperature": [{"value": 21.0}, {"value": 5.0}]}]);
        assert!(check.verify(StatusCode::OK, &reply(200, Some(2), &warm), true).is_ok());
        assert!(check.verify(StatusCode::OK, &reply(200, Some(2), &cold), true).is_err());
        assert!(check.verify(StatusCode::OK, &reply(200, Some(3), &warm), true).is_err());
        assert!(check.verify(StatusCode::OK, &reply(200, None, &warm), true).is_err());
    }

    #[test]
    fn aggregated_check_adds_the_counts() {
        let check = Check::Aggregated { id: "urn:a".into(), attr: "t", total: 5 };
        let body = json!({"id": "urn:a", "t": {"totalCount": [[2, "s", "e"], [3, "s", "e"]]}});
        assert!(check.verify(StatusCode::OK, &reply(200, None, &body), true).is_ok());
        let body = json!({"id": "urn:a", "t": {"totalCount": [[2, "s", "e"]]}});
        assert!(check.verify(StatusCode::OK, &reply(200, None, &body), true).is_err());
    }

    #[test]
    fn near_check_measures_the_distance() {
        let each = Each::Near { centre: (126.978, 37.5665), max_m: 1000.0 };
        let at = |lat: f64| json!({"location": {"value": {"type": "Point", "coordinates": [126.978, lat]}}});
        assert!(each.holds(&at(37.5715)).is_ok());
        assert!(each.holds(&at(37.5865)).is_err());
    }
}
