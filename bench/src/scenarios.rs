//! The scenarios, one function each, after stellio-hub/ngsild-load-tests and FIWARE/load-tests.
//! A scenario is a workload (an endless source of checked requests) and the requests that must
//! precede it; the runner measures it against the hub and against the ceiling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::check::{Check, Each};
use crate::data::{self, apiary_id, fresh_entity, mix, Seeded, APIARIES, CENTRE, QUERIED_TYPE};
use crate::load::{Call, Workload};

const API: &str = "/ngsi-ld/v1";
/// Entities per batch, for seeding and for the batch scenarios (the issue asks for 100-250).
pub const BATCH: u64 = 200;
/// The page size of the queries; they also ask for the total count.
const PAGE: usize = 50;
/// The radius of the geo-query, and the slack allowed for a hub that measures distances on
/// another Earth model than our sphere.
const NEAR_M: f64 = 2000.0;
const NEAR_SLACK: f64 = 0.005;

/// The scenario families, in the order the runner goes through them.
pub const FAMILIES: [&str; 14] = [
    "query-props",
    "query-rel",
    "geo-near",
    "get-by-id",
    "partial-update",
    "update-attrs",
    "create",
    "batch-create",
    "batch-upsert",
    "subscription-notify",
    "memory",
    "temporal-aggregate",
    "temporal-append",
    "two-hubs",
];

/// Scenarios of the peers' load tests that need an API the hub does not have yet. They are
/// reported as not run; each becomes a function here when its API lands (none at present:
/// `subscription-notify` lives in `notify.rs`).
pub const NOT_RUN: [(&str, &str); 0] = [];

/// The temporal scenarios, reported as not run when the hub answers no temporal query.
pub const TEMPORAL: [&str; 3] = ["memory-instances", "temporal-aggregate", "temporal-append"];

/// Entities whose temporal history the temporal scenarios write, and instances per request.
pub const HISTORY_ENTITIES: u64 = 10;
pub const HISTORY_CHUNK: u64 = 1000;

pub struct Scenario {
    pub name: String,
    pub about: String,
    /// Entities written or read per request, to turn requests into entities per second.
    pub per_call: u64,
    /// Requests whose answers the ceiling replays (one per method the workload sends; the
    /// workload's first calls, sent once before the measurements).
    pub probes: u64,
    /// Requests sent once, in order, before the measurements (not timed).
    pub setup: Vec<Call>,
    pub workload: Arc<dyn Workload>,
}

/// Ids of entities the write scenarios create: unique within the run, never seeded.
static FRESH: AtomicU64 = AtomicU64::new(0);

fn fresh(kind: &str) -> String {
    format!("urn:ngsi-ld:{QUERIED_TYPE}:{kind}:{}", FRESH.fetch_add(1, Ordering::Relaxed))
}

fn json_body(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"))
}

/// Percent-encodes all but RFC 3986's unreserved characters, for values in a query string.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// "1k", "100k", "1.5k", "750".
pub fn size_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// A counter-driven workload: `make(seq)` for seq = 0, 1, 2, ...
fn counted(make: impl Fn(u64) -> Call + Send + Sync + 'static) -> Arc<dyn Workload> {
    let seq = AtomicU64::new(0);
    Arc::new(move || make(seq.fetch_add(1, Ordering::Relaxed)))
}

/// A seeded entity picked pseudo-randomly, so requests spread over the whole store.
fn pick(seq: u64, seeded: u64, salt: u64) -> Seeded {
    Seeded::new(mix(seq ^ salt) % seeded.max(1))
}

/// Batch creates of the seeded entities `from..to`; answers the workload and how many calls
/// cover the range.
pub fn seeding(from: u64, to: u64) -> (Arc<dyn Workload>, u64) {
    let calls = (to.saturating_sub(from)).div_ceil(BATCH);
    let workload = counted(move |k| {
        let start = from + k * BATCH;
        let batch: Vec<Value> = (start..(start + BATCH).min(to)).map(|i| Seeded::new(i).entity()).collect();
        Call {
            method: Method::POST,
            path: format!("{API}/entityOperations/create"),
            body: json_body(&Value::Array(batch.clone())),
            status: StatusCode::CREATED,
            check: Check::CreatedIds(batch.len()),
        }
    });
    (workload, calls)
}

/// POST /entities with the template.
pub fn create() -> Scenario {
    Scenario {
        name: "create".into(),
        about: "POST /entities, the ~1.4 KB template".into(),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(|seq| Call {
            method: Method::POST,
            path: format!("{API}/entities"),
            body: json_body(&fresh_entity(&fresh("new"), seq)),
            status: StatusCode::CREATED,
            check: Check::Status,
        }),
    }
}

/// GET /entities/{id} over the seeded entities.
pub fn get_by_id(seeded: u64) -> Scenario {
    Scenario {
        name: "get-by-id".into(),
        about: format!("GET /entities/{{id}}, random among {} entities", size_label(seeded)),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| {
            let entity = pick(seq, seeded, 0x6e7);
            let id = entity.id();
            Call {
                method: Method::GET,
                path: format!("{API}/entities/{id}"),
                body: Bytes::new(),
                status: StatusCode::OK,
                check: Check::Entity { id, ty: entity.ty },
            }
        }),
    }
}

/// PATCH /entities/{id}/attrs/humidity: one instance of a multi-instance property, by datasetId.
pub fn partial_update(seeded: u64) -> Scenario {
    Scenario {
        name: "partial-update".into(),
        about: "PATCH /entities/{id}/attrs/humidity (one datasetId instance)".into(),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| Call {
            method: Method::PATCH,
            path: format!("{API}/entities/{}/attrs/humidity", pick(seq, seeded, 0x9a7).id()),
            body: json_body(&data::humidity_patch(seq)),
            status: StatusCode::NO_CONTENT,
            check: Check::Status,
        }),
    }
}

/// PATCH /entities/{id}/attrs with five attributes.
pub fn update_attrs(seeded: u64) -> Scenario {
    Scenario {
        name: "update-attrs".into(),
        about: "PATCH /entities/{id}/attrs, 5 attributes".into(),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| Call {
            method: Method::PATCH,
            path: format!("{API}/entities/{}/attrs", pick(seq, seeded, 0x5a5).id()),
            body: json_body(&data::five_attributes(seq)),
            status: StatusCode::NO_CONTENT,
            check: Check::Status,
        }),
    }
}

fn seeded_beehives(seeded: u64) -> impl Iterator<Item = Seeded> {
    (0..seeded).map(Seeded::new).filter(|s| s.ty == QUERIED_TYPE)
}

fn query_call(query: String, total: (usize, usize), each: Each) -> Call {
    Call {
        method: Method::GET,
        path: format!("{API}/entities?type={QUERIED_TYPE}&{query}&limit={PAGE}&count=true"),
        body: Bytes::new(),
        status: StatusCode::OK,
        check: Check::Query { total, limit: PAGE, ty: QUERIED_TYPE, each },
    }
}

/// GET /entities?type=BeeHive&q=temperature>20;status=="ok" over `seeded` entities of 4 types.
pub fn query_props(seeded: u64) -> Scenario {
    let expected = seeded_beehives(seeded).filter(|s| s.warm && s.ok).count();
    let q = encode("temperature>20;status==\"ok\"");
    Scenario {
        name: format!("query-props-{}", size_label(seeded)),
        about: format!("type + q on two properties, {} entities ({expected} match)", size_label(seeded)),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |_| {
            let each = Each::AboveAndStatus { threshold: 20.0, status: "ok" };
            query_call(format!("q={q}"), (expected, expected), each)
        }),
    }
}

/// GET /entities?type=BeeHive&q=belongs=="urn:ngsi-ld:Apiary:K", K cycling over the apiaries.
pub fn query_rel(seeded: u64) -> Scenario {
    let mut per_apiary = vec![0usize; APIARIES as usize];
    for s in seeded_beehives(seeded) {
        per_apiary[s.apiary as usize] += 1;
    }
    let mean = per_apiary.iter().sum::<usize>() as f64 / APIARIES as f64;
    Scenario {
        name: format!("query-rel-{}", size_label(seeded)),
        about: format!("type + q on a relationship, {} entities (~{mean:.0} match)", size_label(seeded)),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| {
            let k = seq % APIARIES;
            let apiary = apiary_id(k);
            let q = encode(&format!("belongs==\"{apiary}\""));
            let n = per_apiary[k as usize];
            query_call(format!("q={q}"), (n, n), Each::Belongs(apiary))
        }),
    }
}

/// GET /entities?type=BeeHive&georel=near;maxDistance==2000&geometry=Point&coordinates=[..]
/// around 16 points of the seeded square.
pub fn geo_near(seeded: u64) -> Scenario {
    let centres: Vec<(f64, f64)> = (0..16u64)
        .map(|k| {
            let h = mix(k ^ 0x9e0);
            let offset = |bits: u64| ((bits & 0xFFFF) as f64 / 65535.0 - 0.5) * data::HALF_SIDE_DEG;
            let round = |x: f64| (x * 1e5).round() / 1e5;
            (round(CENTRE.0 + offset(h)), round(CENTRE.1 + offset(h >> 16)))
        })
        .collect();
    let hives: Vec<(f64, f64)> = seeded_beehives(seeded).map(|s| (s.lon, s.lat)).collect();
    let bounds: Vec<(usize, usize)> = centres
        .iter()
        .map(|&c| {
            let within = |m: f64| hives.iter().filter(|&&at| data::distance_m(c, at) <= m).count();
            (within(NEAR_M * (1.0 - NEAR_SLACK)), within(NEAR_M * (1.0 + NEAR_SLACK)))
        })
        .collect();
    let mean = bounds.iter().map(|b| b.0).sum::<usize>() / bounds.len();
    Scenario {
        name: format!("geo-near-{}", size_label(seeded)),
        about: format!("type + georel=near;maxDistance==2000, {} entities (~{mean} match)", size_label(seeded)),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| {
            let k = (seq % centres.len() as u64) as usize;
            let (lon, lat) = centres[k];
            let georel = encode(&format!("near;maxDistance=={NEAR_M}"));
            let coordinates = encode(&format!("[{lon},{lat}]"));
            let query = format!("georel={georel}&geometry=Point&coordinates={coordinates}");
            let each = Each::Near { centre: (lon, lat), max_m: NEAR_M * (1.0 + NEAR_SLACK) };
            query_call(query, bounds[k], each)
        }),
    }
}

fn batch_of(ids: impl Iterator<Item = String>, seq: u64) -> Value {
    Value::Array(ids.map(|id| fresh_entity(&id, seq)).collect())
}

/// POST /entityOperations/create of new entities.
pub fn batch_create() -> Scenario {
    Scenario {
        name: format!("batch-create-{BATCH}"),
        about: format!("POST /entityOperations/create, {BATCH} new entities per request"),
        per_call: BATCH,
        probes: 1,
        setup: Vec::new(),
        workload: counted(|seq| Call {
            method: Method::POST,
            path: format!("{API}/entityOperations/create"),
            body: json_body(&batch_of((0..BATCH).map(|_| fresh("batch")), seq)),
            status: StatusCode::CREATED,
            check: Check::CreatedIds(BATCH as usize),
        }),
    }
}

/// POST /entityOperations/upsert of existing entities (replacing them), cycling over a pool
/// created in the setup, so every request is an update and answers 204.
pub fn batch_upsert() -> Scenario {
    const POOL: u64 = 8;
    let ids = |b: u64| (0..BATCH).map(move |j| format!("urn:ngsi-ld:{QUERIED_TYPE}:upsert:{b}:{j}"));
    let setup = (0..POOL)
        .map(|b| Call {
            method: Method::POST,
            path: format!("{API}/entityOperations/create"),
            body: json_body(&batch_of(ids(b), 0)),
            status: StatusCode::CREATED,
            check: Check::CreatedIds(BATCH as usize),
        })
        .collect();
    Scenario {
        name: format!("batch-upsert-{BATCH}"),
        about: format!("POST /entityOperations/upsert, {BATCH} existing entities per request"),
        per_call: BATCH,
        probes: 1,
        setup,
        workload: counted(move |seq| Call {
            method: Method::POST,
            path: format!("{API}/entityOperations/upsert"),
            body: json_body(&batch_of(ids(seq % POOL), seq)),
            status: StatusCode::NO_CONTENT,
            check: Check::Status,
        }),
    }
}

/// Queries and writes in turn: `query-props` and `partial-update` over `seeded` entities, for one
/// hub against two hubs on one database (`name` tells which). The update touches `humidity`
/// only, so every query keeps its count and its check.
pub fn mixed(seeded: u64, name: &str) -> Scenario {
    let query = query_props(seeded).workload;
    let update = partial_update(seeded).workload;
    let turn = AtomicU64::new(0);
    Scenario {
        name: name.to_owned(),
        about: format!(
            "query-props and partial-update in turn, {} entities on one PostgreSQL database",
            size_label(seeded)
        ),
        per_call: 1,
        probes: 2,
        setup: Vec::new(),
        workload: Arc::new(move || {
            if turn.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                query.next()
            } else {
                update.next()
            }
        }),
    }
}

/// A request that succeeds only if the hub has a temporal API.
pub fn temporal_probe() -> Call {
    Call {
        method: Method::GET,
        path: format!("{API}/temporal/entities?type={QUERIED_TYPE}&timerel=before&timeAt=2000-01-01T00:00:00Z"),
        body: Bytes::new(),
        status: StatusCode::OK,
        check: Check::Status,
    }
}

pub fn history_id(k: u64) -> String {
    format!("urn:ngsi-ld:{QUERIED_TYPE}:history:{k}")
}

fn history_chunk(k: u64, chunk: u64, per_entity: u64) -> Value {
    let start = chunk * HISTORY_CHUNK;
    let instances = (start..(start + HISTORY_CHUNK).min(per_entity)).map(|j| data::history_instance(j, per_entity));
    let mut body = serde_json::Map::new();
    if chunk == 0 {
        body.insert("id".into(), Value::String(history_id(k)));
        body.insert("type".into(), Value::String(QUERIED_TYPE.into()));
    }
    body.insert("temperature".into(), Value::Array(instances.collect()));
    Value::Object(body)
}

/// The temporal history of the temporal scenarios: `HISTORY_ENTITIES` entities of `per_entity`
/// temperature instances each, spread over `HISTORY_DAYS` days. Answers the requests creating
/// the entities (with their first chunk, in order: 201), and a workload appending the rest (204)
/// with how many calls it takes.
pub fn history(per_entity: u64) -> (Vec<Call>, Arc<dyn Workload>, u64) {
    let creates = (0..HISTORY_ENTITIES)
        .map(|k| Call {
            method: Method::POST,
            path: format!("{API}/temporal/entities"),
            body: json_body(&history_chunk(k, 0, per_entity)),
            status: StatusCode::CREATED,
            check: Check::Status,
        })
        .collect();
    let chunks = per_entity.div_ceil(HISTORY_CHUNK);
    let appends = counted(move |c| {
        let (k, chunk) = (c % HISTORY_ENTITIES, 1 + c / HISTORY_ENTITIES);
        Call {
            method: Method::POST,
            path: format!("{API}/temporal/entities/{}/attrs", history_id(k)),
            body: json_body(&history_chunk(k, chunk, per_entity)),
            status: StatusCode::NO_CONTENT,
            check: Check::Status,
        }
    });
    (creates, appends, HISTORY_ENTITIES * chunks.saturating_sub(1))
}

/// GET /temporal/entities/{id} aggregated by day (totalCount, avg, min, max) over the whole
/// history of one entity of `per_entity` instances.
pub fn temporal_aggregate(per_entity: u64) -> Scenario {
    Scenario {
        name: format!("temporal-aggregate-{}", size_label(per_entity)),
        about: format!(
            "GET /temporal/entities/{{id}}, aggregatedValues totalCount,avg,min,max per day over {} instances",
            size_label(per_entity)
        ),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| {
            let id = history_id(seq % HISTORY_ENTITIES);
            let query = format!(
                "options=aggregatedValues&aggrMethods=totalCount,avg,min,max&aggrPeriodDuration=P1D&attrs=temperature\
                 &timerel=between&timeAt={}&endTimeAt={}",
                encode(data::HISTORY_START),
                encode(data::HISTORY_END)
            );
            Call {
                method: Method::GET,
                path: format!("{API}/temporal/entities/{id}?{query}"),
                body: Bytes::new(),
                status: StatusCode::OK,
                check: Check::Aggregated { id, attr: "temperature", total: per_entity },
            }
        }),
    }
}

/// POST /temporal/entities/{id}/attrs: one temperature instance added to a seeded entity's history.
pub fn temporal_append(seeded: u64) -> Scenario {
    Scenario {
        name: "temporal-append".into(),
        about: "POST /temporal/entities/{id}/attrs, one instance".into(),
        per_call: 1,
        probes: 1,
        setup: Vec::new(),
        workload: counted(move |seq| {
            let mut instance = data::history_instance(seq % 100_000, 100_000);
            instance["datasetId"] = Value::String(data::TEMPERATURE_DATASETS[1].into());
            Call {
                method: Method::POST,
                path: format!("{API}/temporal/entities/{}/attrs", pick(seq, seeded, 0x7e3).id()),
                body: json_body(&serde_json::json!({ "temperature": [instance] })),
                status: StatusCode::NO_CONTENT,
                check: Check::Status,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("temperature>20;status==\"ok\""), "temperature%3E20%3Bstatus%3D%3D%22ok%22");
        assert_eq!(encode("[126.97,37.56]"), "%5B126.97%2C37.56%5D");
    }

    #[test]
    fn labels_sizes() {
        assert_eq!(size_label(1000), "1k");
        assert_eq!(size_label(100_000), "100k");
        assert_eq!(size_label(1500), "1500");
    }

    #[test]
    fn seeding_covers_the_range_exactly() {
        let (workload, calls) = seeding(1000, 1450);
        assert_eq!(calls, 3);
        let sizes: Vec<usize> = (0..calls)
            .map(|_| match workload.next().check {
                Check::CreatedIds(n) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![200, 200, 50]);
    }

    #[test]
    fn geo_near_expects_some_matches_at_10k() {
        let call = geo_near(10_000).workload.next();
        let Check::Query { total, .. } = call.check else { panic!("a query check") };
        assert!(total.0 > 0 && total.0 <= total.1, "{total:?}");
    }
}
