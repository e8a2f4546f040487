// Scratch measurement (not committed): 10k entities, batch upsert rate, query times.
use cityhub_postgres::PostgresStore;
use cityhub_storage::{Modified, Modifier, Store};
use cityhub_store_contract::support::entity;
use serde_json::json;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure() {
    let url = std::env::var("MEASURE_PG").unwrap();
    let s = PostgresStore::connect(&url).await.unwrap();
    let types = ["Sensor", "Bin", "Parking"];
    let t0 = Instant::now();
    for b in 0..10 {
        let mut mods: Vec<(String, Modifier)> = Vec::new();
        for i in 0..1000 {
            let n = b * 1000 + i;
            let id = format!("urn:ngsi-ld:E:{n:05}");
            let e = entity(json!({"id": id, "type": types[n % 3],
                "temperature": {"type": "Property", "value": (n % 50) as f64},
                "name": {"type": "Property", "value": format!("n{}", n % 100)},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.0 + (n % 100) as f64 / 100.0, 37.0 + (n / 100) as f64 / 100.0]}}}));
            mods.push((id, Box::new(move |_| Ok(Modified::entity(e)))));
        }
        s.modify("", mods).await.unwrap();
    }
    let dt = t0.elapsed();
    eprintln!("MEASURE upsert 10k in batches of 1000: {:?} = {:.0} entities/s", dt, 10000.0 / dt.as_secs_f64());
}
