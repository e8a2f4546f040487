//! The entities the benchmark writes, and what every query over them must answer.
//!
//! Every seeded entity is a pure function of its index, so the expected answer of a query is
//! computed by walking the indices instead of being read back from the hub under test.

use serde_json::{json, Value};

/// The seeded entities are spread round-robin over these types; queries ask for the first.
pub const TYPES: [&str; 4] = ["BeeHive", "WeatherStation", "ParkingSpot", "StreetLight"];
pub const QUERIED_TYPE: &str = TYPES[0];
/// How many apiaries the `belongs` relationships point to.
pub const APIARIES: u64 = 50;
/// Centre of the square the seeded locations fill (Seoul City Hall), and its half side in degrees.
pub const CENTRE: (f64, f64) = (126.978, 37.5665);
pub const HALF_SIDE_DEG: f64 = 0.1;
/// Where entities created by the write scenarios live: far from every geo-query (Busan).
const ELSEWHERE: (f64, f64) = (129.0756, 35.1796);

pub const TEMPERATURE_DATASETS: [&str; 2] =
    ["urn:ngsi-ld:Dataset:temperature:inner", "urn:ngsi-ld:Dataset:temperature:outer"];
pub const HUMIDITY_DATASETS: [&str; 2] = ["urn:ngsi-ld:Dataset:humidity:inner", "urn:ngsi-ld:Dataset:humidity:outer"];

/// A well-mixed 64-bit hash (SplitMix64's finaliser): cheap, deterministic pseudo-randomness
/// without a dependency.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rounds to the 6 decimals written in the JSON, so distances computed here match the stored ones.
fn micro_degrees(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub fn apiary_id(k: u64) -> String {
    format!("urn:ngsi-ld:Apiary:{k}")
}

/// What a seeded entity is made of, derived from its index.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub index: u64,
    pub ty: &'static str,
    /// Both temperature instances are above 20 °C when warm and below when not, so a q over the
    /// multi-instance attribute has one answer whichever instance the hub looks at.
    pub warm: bool,
    pub ok: bool,
    pub apiary: u64,
    pub lon: f64,
    pub lat: f64,
}

impl Seeded {
    pub fn new(index: u64) -> Seeded {
        let h = mix(index);
        let unit = |bits: u64| (bits & 0xFFFF) as f64 / 65535.0 - 0.5;
        Seeded {
            index,
            ty: TYPES[(index % TYPES.len() as u64) as usize],
            warm: (h >> 32) % 5 < 2,
            ok: !(h >> 40).is_multiple_of(3),
            apiary: (h >> 48) % APIARIES,
            lon: micro_degrees(CENTRE.0 + 2.0 * HALF_SIDE_DEG * unit(h)),
            lat: micro_degrees(CENTRE.1 + 2.0 * HALF_SIDE_DEG * unit(h >> 16)),
        }
    }

    pub fn id(&self) -> String {
        format!("urn:ngsi-ld:{}:{:07}", self.ty, self.index)
    }

    pub fn entity(&self) -> Value {
        let (t1, t2) = if self.warm { (24.5, 21.25) } else { (12.5, 9.75) };
        template(
            &self.id(),
            self.ty,
            [t1, t2],
            if self.ok { "ok" } else { "warning" },
            &apiary_id(self.apiary),
            (self.lon, self.lat),
            self.index,
        )
    }
}

/// An entity for the create scenarios: same template, matched by none of the queries (status
/// "new", an apiary no query names, a location far from every geo-query).
pub fn fresh_entity(id: &str, seq: u64) -> Value {
    template(id, QUERIED_TYPE, [18.0, 17.5], "new", "urn:ngsi-ld:Apiary:none", ELSEWHERE, seq)
}

/// The ~1.4 KB entity of Stellio's load tests, in our own words: two multi-instance properties
/// told apart by `datasetId`, each with `observedAt` and `unitCode`, a sub-property, two
/// relationships and a Point `location`.
fn template(id: &str, ty: &str, temps: [f64; 2], status: &str, apiary: &str, at: (f64, f64), seq: u64) -> Value {
    let observed = timestamp(seq);
    let humidity = 40.0 + (seq % 400) as f64 / 10.0;
    json!({
        "id": id,
        "type": ty,
        "name": {"type": "Property", "value": format!("hive {seq}")},
        "description": {"type": "Property", "value": "Connected beehive of the city apiary network: hive weight, brood temperature and humidity"},
        "status": {"type": "Property", "value": status},
        "batteryLevel": {"type": "Property", "value": 0.93, "unitCode": "P1", "observedAt": observed},
        "weight": {"type": "Property", "value": 30.0 + (seq % 200) as f64 / 10.0, "unitCode": "KGM", "observedAt": observed},
        "temperature": [
            {
                "type": "Property", "value": temps[0], "unitCode": "CEL", "observedAt": observed,
                "datasetId": TEMPERATURE_DATASETS[0],
                "accuracy": {"type": "Property", "value": 0.5, "unitCode": "CEL"}
            },
            {
                "type": "Property", "value": temps[1], "unitCode": "CEL", "observedAt": observed,
                "datasetId": TEMPERATURE_DATASETS[1]
            }
        ],
        "humidity": [
            {
                "type": "Property", "value": humidity, "unitCode": "P1", "observedAt": observed,
                "datasetId": HUMIDITY_DATASETS[0]
            },
            {
                "type": "Property", "value": humidity + 12.5, "unitCode": "P1", "observedAt": observed,
                "datasetId": HUMIDITY_DATASETS[1]
            }
        ],
        "belongs": {"type": "Relationship", "object": apiary},
        "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Beekeeper:cityhub-bench"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [at.0, at.1]}}
    })
}

/// A valid, varying `observedAt`.
pub fn timestamp(seq: u64) -> String {
    let s = seq % 86_400;
    format!("2024-05-01T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The body of a partial attribute update of one `humidity` instance.
pub fn humidity_patch(seq: u64) -> Value {
    json!({
        "value": 30.0 + (seq % 600) as f64 / 10.0,
        "observedAt": timestamp(seq),
        "datasetId": HUMIDITY_DATASETS[(seq % 2) as usize]
    })
}

/// The body of an update of five attributes, none of which a query of the benchmark reads.
pub fn five_attributes(seq: u64) -> Value {
    let observed = timestamp(seq);
    json!({
        "name": {"type": "Property", "value": format!("hive {seq} (renamed)")},
        "description": {"type": "Property", "value": "Connected beehive, serviced"},
        "batteryLevel": {"type": "Property", "value": (seq % 100) as f64 / 100.0, "unitCode": "P1", "observedAt": observed},
        "managedBy": {"type": "Relationship", "object": format!("urn:ngsi-ld:Beekeeper:{}", seq % 7)},
        "humidity": [
            {"type": "Property", "value": 51.5, "unitCode": "P1", "observedAt": observed, "datasetId": HUMIDITY_DATASETS[0]},
            {"type": "Property", "value": 63.0, "unitCode": "P1", "observedAt": observed, "datasetId": HUMIDITY_DATASETS[1]}
        ]
    })
}

/// The history entities span this many days, so an aggregation by day has fewer periods than
/// the hub's default temporal page (30).
pub const HISTORY_DAYS: u64 = 25;
pub const HISTORY_START: &str = "2024-05-01T00:00:00Z";
pub const HISTORY_END: &str = "2024-05-27T00:00:00Z";

/// The j-th of `n` temperature instances spread evenly over the history span.
pub fn history_instance(j: u64, n: u64) -> Value {
    let ms = j * (HISTORY_DAYS * 86_400_000 / n.max(1));
    let (day, rest) = (ms / 86_400_000, ms % 86_400_000);
    let observed = format!(
        "2024-05-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        day + 1,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    );
    json!({
        "type": "Property", "value": 10.0 + (j % 200) as f64 / 10.0, "unitCode": "CEL",
        "observedAt": observed, "datasetId": TEMPERATURE_DATASETS[0]
    })
}

/// Great-circle distance in metres on the mean Earth sphere.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let (lat1, lat2) = (a.1.to_radians(), b.1.to_radians());
    let (dlat, dlon) = (lat2 - lat1, (b.0 - a.0).to_radians());
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_about_1_4_kb() {
        let len = Seeded::new(12_345).entity().to_string().len();
        assert!((1300..=1500).contains(&len), "template is {len} bytes");
    }

    #[test]
    fn traits_are_spread() {
        let seeded: Vec<Seeded> = (0..10_000).map(Seeded::new).collect();
        let warm = seeded.iter().filter(|s| s.warm).count();
        let ok = seeded.iter().filter(|s| s.ok).count();
        assert!((3500..4500).contains(&warm), "{warm}");
        assert!((6200..7100).contains(&ok), "{ok}");
        assert!(seeded.iter().all(|s| (s.lon - CENTRE.0).abs() <= HALF_SIDE_DEG + 1e-6));
    }

    #[test]
    fn history_stays_within_its_span() {
        let last = history_instance(99_999, 100_000);
        let observed = last["observedAt"].as_str().unwrap();
        assert!(observed.starts_with("2024-05-25T23:59:38"), "{observed}");
        assert!(observed < HISTORY_END);
    }

    #[test]
    fn distance_of_one_degree_of_latitude() {
        let d = distance_m((0.0, 0.0), (0.0, 1.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
    }
}
