//! The indexed query must equal the definition: over seeded random entities (several types,
//! numbers, strings, booleans, nested values, datasetIds, relationships, arrays, scopes, points and
//! polygons), some changed and some deleted after they were written, random filters (ids, id
//! patterns, type expressions, attrs, `q` with comparisons, ranges, value lists, patterns, paths
//! into compound values and metadata, existence, `;` and `|`, `scopeQ`, geo-queries, some with an
//! `orderBy`) must answer from `Store::query` exactly the entities `EntityFilter::matches` accepts
//! over all of them: the same ids, in the same order (by id, or as `OrderBy::sort` puts them),
//! with the same count, on several pages.

use cityhub_storage::{DynStore, Modifier, Paging};
use ngsild_core::Entity;
use ngsild_query::{EntityFilter, GeoQuery, OrderBy, QExpr, ScopeExpr, TypeExpr};
use serde_json::{json, Map, Value};

use crate::support::*;

const ENTITIES: usize = 240;
const FILTERS: usize = 160;
const TYPES: [&str; 3] = ["Sensor", "Parking", "Bin"];

fn point(rng: &mut Rng) -> (f64, f64) {
    // About 9 km by 11 km, so that distances of a few km select some and not all.
    let lon = (rng.float(126.0, 126.1) * 1e5).round() / 1e5;
    let lat = (rng.float(37.0, 37.1) * 1e5).round() / 1e5;
    (lon, lat)
}

fn square(lon: f64, lat: f64, d: f64) -> Value {
    json!([[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]])
}

/// A number that compares exactly: an integer or a half.
fn number(rng: &mut Rng, max: usize) -> Value {
    if rng.chance(0.7) {
        json!(rng.below(max) as i64)
    } else {
        json!(rng.below(max) as f64 + 0.5)
    }
}

fn body(rng: &mut Rng, i: usize, version: usize) -> Value {
    let t = TYPES[rng.below(TYPES.len())];
    let mut b = Map::new();
    b.insert("id".into(), json!(format!("urn:ngsi-ld:{t}:{i:04}")));
    b.insert("type".into(), if rng.chance(0.2) { json!([t, "Device"]) } else { json!(t) });
    if rng.chance(0.8) {
        let mut n = json!({"type": "Property", "value": number(rng, 50)});
        if rng.chance(0.4) {
            n["observedAt"] = json!(format!("2026-01-{:02}T{:02}:00:00Z", 1 + rng.below(28), rng.below(24)));
        }
        b.insert("n".into(), n);
    }
    if rng.chance(0.7) {
        let s = *rng.pick(&["free", "occupied", "broken", "Free", "free lane"]);
        b.insert("s".into(), json!({"type": "Property", "value": s}));
    }
    if rng.chance(0.5) {
        b.insert("b".into(), json!({"type": "Property", "value": rng.chance(0.5)}));
    }
    if rng.chance(0.4) {
        let v = json!({"a": number(rng, 10), "b": rng.pick(&["x", "y"]), "c": {"d": rng.chance(0.5)}});
        b.insert("nested".into(), json!({"type": "Property", "value": v}));
    }
    if rng.chance(0.4) {
        let mut instances = Vec::new();
        for dataset in [None, Some("urn:d:1"), Some("urn:d:2")] {
            if rng.chance(0.6) {
                let mut inst = json!({"type": "Property", "value": number(rng, 20)});
                if let Some(d) = dataset {
                    inst["datasetId"] = json!(d);
                }
                instances.push(inst);
            }
        }
        if !instances.is_empty() {
            b.insert("ds".into(), Value::Array(instances));
        }
    }
    if rng.chance(0.3) {
        b.insert(
            "rel".into(),
            json!({"type": "Relationship", "object": format!("urn:ngsi-ld:Owner:{}", rng.below(4))}),
        );
    }
    if rng.chance(0.3) {
        let tags: Vec<&str> = ["t1", "t2", "t3"].into_iter().filter(|_| rng.chance(0.5)).collect();
        b.insert("tags".into(), json!({"type": "Property", "value": tags}));
    }
    if rng.chance(0.85) {
        let (lon, lat) = point(rng);
        let geometry = if rng.chance(0.2) {
            json!({"type": "Polygon", "coordinates": square(lon, lat, rng.float(0.001, 0.02))})
        } else {
            json!({"type": "Point", "coordinates": [lon, lat]})
        };
        b.insert("location".into(), json!({"type": "GeoProperty", "value": geometry}));
    }
    if rng.chance(0.4) {
        let scopes: Vec<&str> = ["/city/seoul", "/city/busan", "/city/seoul/north", "/zone"]
            .into_iter()
            .filter(|_| rng.chance(0.4))
            .collect();
        if !scopes.is_empty() {
            b.insert("scope".into(), json!(scopes));
        }
    }
    b.insert("version".into(), json!({"type": "Property", "value": version}));
    Value::Object(b)
}

fn q_atom(rng: &mut Rng) -> String {
    let n = |rng: &mut Rng| number(rng, 50).to_string();
    match rng.below(25) {
        0 => format!("n>{}", n(rng)),
        1 => format!("n>={}", n(rng)),
        2 => format!("n<{}", n(rng)),
        3 => format!("n<={}", n(rng)),
        4 => format!("n=={}", n(rng)),
        5 => format!("n!={}", n(rng)),
        6 => {
            let lo = rng.below(40);
            format!("n=={lo}..{}", lo + rng.below(15))
        }
        7 => format!("n=={},{},{}", n(rng), n(rng), n(rng)),
        8 => format!("s=={:?}", rng.pick(&["free", "occupied", "broken", "Free", "gone"])),
        9 => format!("s!={:?}", rng.pick(&["free", "occupied"])),
        10 => "s==\"free\",\"broken\"".into(),
        11 => format!("s~={:?}", rng.pick(&["fr.*", "^o", "e$", "(?i)free"])),
        12 => format!("b=={}", rng.chance(0.5)),
        13 => format!("nested[a]>{}", rng.below(10)),
        14 => format!("nested[b]=={:?}", rng.pick(&["x", "y"])),
        15 => format!("nested[c][d]=={}", rng.chance(0.5)),
        16 => format!("ds>{}", rng.below(20)),
        17 => format!("ds=={}", rng.below(20)),
        18 => format!("rel==\"urn:ngsi-ld:Owner:{}\"", rng.below(4)),
        19 => format!("tags=={:?}", rng.pick(&["t1", "t2", "t3"])),
        20 => rng.pick(&["n", "s", "rel", "nested[a]", "ds", "tags"]).to_string(),
        21 => format!("!{}", rng.pick(&["n", "s", "rel", "b"])),
        22 => format!("version=={}", rng.below(2)),
        23 => format!("n.observedAt{}2026-01-{:02}T12:00:00Z", rng.pick(&[">=", "<", "=="]), 1 + rng.below(28)),
        _ => format!("n>{};n<{}", rng.below(25), 25 + rng.below(25)),
    }
}

fn q_text(rng: &mut Rng) -> String {
    let terms = 1 + rng.below(3);
    let mut text = q_atom(rng);
    for _ in 1..terms {
        let op = if rng.chance(0.5) { ";" } else { "|" };
        let atom = q_atom(rng);
        text = if rng.chance(0.3) { format!("({text}){op}{atom}") } else { format!("{text}{op}{atom}") };
    }
    text
}

fn geo(rng: &mut Rng) -> (String, String, String) {
    let (lon, lat) = point(rng);
    let at = format!("[{lon},{lat}]");
    let d = rng.float(0.005, 0.05);
    let area = square(lon - d / 2.0, lat - d / 2.0, d).to_string();
    match rng.below(8) {
        0 | 1 => (format!("near;maxDistance=={}", 500 + rng.below(4500)), "Point".into(), at),
        2 => (format!("near;minDistance=={}", 2000 + rng.below(6000)), "Point".into(), at),
        3 => ("within".into(), "Polygon".into(), area),
        4 => ("intersects".into(), "Polygon".into(), area),
        5 => ("disjoint".into(), "Polygon".into(), area),
        6 => ("overlaps".into(), "Polygon".into(), area),
        _ => ("contains".into(), "Point".into(), at),
    }
}

fn filter(rng: &mut Rng, known_ids: &[String]) -> (EntityFilter, String) {
    let ctx = ctx();
    let mut f = EntityFilter::default();
    let mut said = Vec::new();
    if rng.chance(0.1) {
        f.ids = (0..1 + rng.below(4)).map(|_| rng.pick(known_ids).clone()).collect();
        f.ids.push("urn:ngsi-ld:Sensor:9999".into());
        said.push(format!("ids={:?}", f.ids));
    }
    if rng.chance(0.1) {
        let p = *rng.pick(&["Sensor:00[0-4]", "Bin", ":01", "^urn:ngsi-ld:Parking:000", "[13579]$"]);
        f.id_pattern = Some(regex::Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}")));
        said.push(format!("idPattern={p}"));
    }
    if rng.chance(0.4) {
        let t = *rng.pick(&[
            "Sensor",
            "Sensor,Bin",
            "Sensor;Device",
            "(Sensor|Parking);Device",
            "Device",
            "Nope",
            "Bin,Nope",
        ]);
        f.types = Some(TypeExpr::parse(t, &ctx).unwrap_or_else(|e| panic!("type={t}: {e:?}")));
        said.push(format!("type={t}"));
    }
    if rng.chance(0.15) {
        const NAMES: [&str; 6] = ["n", "s", "rel", "ds", "nested", "nope"];
        f.attrs = (0..1 + rng.below(2)).map(|_| iri(NAMES[rng.below(NAMES.len())])).collect();
        said.push(format!("attrs={:?}", f.attrs));
    }
    if rng.chance(0.6) {
        let q = q_text(rng);
        f.q = Some(QExpr::parse(&q, &ctx).unwrap_or_else(|e| panic!("q={q}: {e:?}")));
        said.push(format!("q={q}"));
    }
    if rng.chance(0.15) {
        let s =
            *rng.pick(&["/city/seoul", "/city/#", "/city/+", "/zone,/city/busan", "/city/seoul/#;/city/seoul/north"]);
        f.scope_q = Some(ScopeExpr::parse(s).unwrap_or_else(|e| panic!("scopeQ={s}: {e:?}")));
        said.push(format!("scopeQ={s}"));
    }
    if rng.chance(0.3) {
        let (rel, geometry, coordinates) = geo(rng);
        let g = GeoQuery::parse(&rel, &geometry, &coordinates, LOCATION)
            .unwrap_or_else(|e| panic!("georel={rel} {geometry} {coordinates}: {e:?}"));
        f.geo = Some(g);
        said.push(format!("georel={rel}&geometry={geometry}&coordinates={coordinates}"));
    }
    if rng.chance(0.2) {
        let o = *rng.pick(&["n", "n;desc", "s,n;desc", "nested[a];desc", "ds", "version;desc,n", "id;desc"]);
        f.order = Some(OrderBy::parse(o, &ctx).unwrap_or_else(|e| panic!("orderBy={o}: {e:?}")));
        said.push(format!("orderBy={o}"));
    }
    (f, said.join("&"))
}

/// Seeds `store` from `seed` and checks every random filter against the definition.
pub async fn run(store: DynStore, seed: u64) {
    let s = store.as_ref();
    let mut rng = Rng::new(seed);
    let tenant = "oracle";
    let mut mods: Vec<(String, Modifier)> = Vec::new();
    for i in 0..ENTITIES {
        let e = entity(body(&mut rng, i, 0));
        mods.push((e.id.clone(), create(e)));
    }
    while !mods.is_empty() {
        let rest = mods.split_off(mods.len().min(60));
        for r in s.modify(tenant, std::mem::replace(&mut mods, rest)).await.unwrap() {
            r.unwrap();
        }
    }
    // Another tenant with entities that would match: none of them may show.
    let others: Vec<(String, Modifier)> = (0..20)
        .map(|i| {
            let e = entity(body(&mut rng, i, 0));
            (e.id.clone(), put(e))
        })
        .collect();
    s.modify("other", others).await.unwrap();
    // Change some (values, types, geometry move) and delete others, so that indexes follow.
    let current = all(s, tenant).await;
    let mut changes: Vec<(String, Modifier)> = Vec::new();
    for e in &current {
        let roll = rng.below(10);
        if roll < 3 {
            let i: usize = e.id.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let mut next = entity(body(&mut rng, i, 1));
            next.id = e.id.clone();
            changes.push((e.id.clone(), put(next)));
        } else if roll == 3 {
            changes.push((e.id.clone(), delete()));
        }
    }
    for r in s.modify(tenant, changes).await.unwrap() {
        r.unwrap();
    }
    let everything: Vec<Entity> = all(s, tenant).await;
    let known: Vec<String> = everything.iter().map(|e| e.id.clone()).collect();
    assert!(known.windows(2).all(|w| w[0] < w[1]), "all() is ordered by id");
    assert!(everything.len() > ENTITIES / 2 && everything.len() < ENTITIES, "{} entities", everything.len());

    let mut informative = 0;
    for n in 0..FILTERS {
        let (f, said) = filter(&mut rng, &known);
        let mut matching: Vec<Entity> = everything.iter().filter(|e| f.matches(e)).cloned().collect();
        if let Some(order) = &f.order {
            order.sort(&mut matching);
        }
        let expected: Vec<&str> = matching.iter().map(|e| e.id.as_str()).collect();
        if !expected.is_empty() && expected.len() < everything.len() {
            informative += 1;
        }
        let limit = 1 + rng.below(12);
        let offset = rng.below(expected.len().max(1) + 2);
        for (offset, limit) in [(0, 10_000), (offset, limit)] {
            let page = s.query(tenant, &f, Paging { offset, limit, count: true }).await.unwrap();
            let want: Vec<&str> = expected.iter().skip(offset).take(limit).copied().collect();
            assert_eq!(ids(&page.entities), want, "seed {seed}, filter #{n} ({said}), page {offset}+{limit}");
            assert_eq!(page.total, Some(expected.len()), "seed {seed}, filter #{n} ({said}): count");
            for got in &page.entities {
                let stored = everything.iter().find(|e| e.id == got.id);
                assert_eq!(Some(got), stored, "filter #{n}: the entity as stored");
            }
        }
    }
    assert!(informative >= FILTERS / 3, "only {informative} of {FILTERS} filters selected some but not all: weak data");
}
