//! The catalogue in the command line: its `serve` flags ([`CatalogArgs`]), how `serve` wires it
//! (data models enforced on the store, routes, retention), the demo datasets, and
//! `cityhub models import DIR`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cityhub_catalog::dataset::Dataset;
use cityhub_catalog::routes::{Catalog, CatalogConfig};
use cityhub_catalog::validating::ValidatingStore;
use cityhub_storage::{DynStore, DEFAULT_TENANT};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args, Debug, Clone)]
pub struct CatalogArgs {
    /// The hub's URL as clients reach it, for the links of the catalogue (/catalog, CKAN
    /// resources, distributions); default: http:// and the request's Host header.
    #[arg(long, env = "CITYHUB_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The catalogue's title (dct:title of the dcat:Catalog).
    #[arg(long, default_value = "cityhub open data", env = "CITYHUB_CATALOG_TITLE")]
    pub catalog_title: String,

    /// Who publishes the catalogue (its dct:publisher's foaf:name).
    #[arg(long, default_value = "cityhub", env = "CITYHUB_CATALOG_PUBLISHER")]
    pub catalog_publisher: String,

    /// Seconds between two runs of the datasets' retention rules (only one hub of a shared
    /// store runs them: the holder of the lease "retention").
    #[arg(long, default_value_t = 3600.0, env = "CITYHUB_RETENTION_EVERY")]
    pub retention_every: f64,
}

impl CatalogArgs {
    fn config(&self) -> CatalogConfig {
        CatalogConfig {
            public_url: self.public_url.clone(),
            title: [("en".to_owned(), self.catalog_title.clone())].into(),
            publisher_name: self.catalog_publisher.clone(),
            ..CatalogConfig::default()
        }
    }
}

/// The store with data models enforced on every write: what everything else of the hub uses.
pub fn enforce_models(store: DynStore) -> (DynStore, Arc<ValidatingStore>) {
    let models = ValidatingStore::wrap(store);
    (models.clone(), models)
}

/// The catalogue's routes, and its retention schedule started.
pub fn start(args: &CatalogArgs, models: Arc<ValidatingStore>) -> anyhow::Result<Arc<Catalog>> {
    if !(0.05..=86_400.0 * 30.0).contains(&args.retention_every) {
        anyhow::bail!("--retention-every {} is out of range: give seconds from 0.05 to 2592000", args.retention_every);
    }
    let catalog = Catalog::new(models, args.config());
    cityhub_catalog::retention::spawn(catalog.store.clone(), Duration::from_secs_f64(args.retention_every));
    Ok(catalog)
}

/// One dataset per demo data type (air quality, parking, districts), published in the default
/// tenant unless it is there already.
pub async fn publish_demo_datasets(catalog: &Catalog, base: &str) -> anyhow::Result<usize> {
    let existing = catalog.datasets(DEFAULT_TENANT).await.map_err(|e| anyhow::anyhow!(e.detail))?;
    let seoul = json!({"id": "cityhub-demo", "name": {"en": "cityhub demo cities", "ko": "cityhub 데모 도시"}});
    let contact = json!({"name": "cityhub open data desk", "email": "opendata@cityhub.example"});
    let demos = [
        json!({
            "name": "air-quality",
            "title": {"en": "Air quality observations", "ko": "대기질 관측", "vi": "Quan trắc chất lượng không khí", "zh": "空气质量观测"},
            "description": {"en": "PM2.5, PM10, NO2 and temperature at air-quality stations in Seoul, Busan, Ho Chi Minh City and Shenzhen.",
                "ko": "서울, 부산, 호찌민, 선전 대기질 측정소의 PM2.5, PM10, NO2 및 기온.",
                "vi": "PM2.5, PM10, NO2 và nhiệt độ tại các trạm quan trắc.", "zh": "空气质量监测站的 PM2.5、PM10、NO2 和温度。"},
            "keywords": {"en": ["air quality", "pm25", "environment"], "ko": ["대기질"], "vi": ["không khí"], "zh": ["空气质量"]},
            "theme": ["ENVI"], "updateFrequency": "hourly",
            "selection": {"types": ["AirQualityObserved"]},
            "retention": {"maxAge": "P365D", "action": "downsample", "period": "PT1H"},
        }),
        json!({
            "name": "parking-spots",
            "title": {"en": "Parking spots", "ko": "주차면", "vi": "Chỗ đỗ xe", "zh": "停车位"},
            "description": {"en": "On-street parking spots and whether they are free.", "ko": "노상 주차면과 이용 가능 여부.",
                "vi": "Chỗ đỗ xe trên đường và tình trạng trống.", "zh": "路边停车位及其空闲状态。"},
            "keywords": {"en": ["parking", "mobility"], "ko": ["주차"], "vi": ["đỗ xe"], "zh": ["停车"]},
            "theme": ["TRAN"], "updateFrequency": "continuous",
            "selection": {"types": ["ParkingSpot"]},
        }),
        json!({
            "name": "districts",
            "title": {"en": "Districts", "ko": "행정구역", "vi": "Quận", "zh": "行政区"},
            "description": {"en": "Administrative districts with their boundaries.", "ko": "행정구역과 경계.",
                "vi": "Các quận hành chính và ranh giới.", "zh": "行政区及其边界。"},
            "keywords": {"en": ["districts", "boundaries"], "ko": ["행정구역"], "vi": ["quận"], "zh": ["行政区"]},
            "theme": ["REGI"], "updateFrequency": "annual",
            "selection": {"types": ["AdministrativeArea"]},
        }),
    ];
    let mut published = 0;
    for mut body in demos {
        body["publisher"] = seoul.clone();
        body["contactPoint"] = contact.clone();
        body["license"] = json!("CC-BY-4.0");
        body["accessLevel"] = json!("public");
        let dataset = Dataset::read(&body, &ngsild_core::time::now()).map_err(|e| anyhow::anyhow!(e.detail))?;
        if existing.iter().any(|d| d.name == dataset.name) {
            continue;
        }
        catalog.publish(DEFAULT_TENANT, &dataset, base, false).await.map_err(|e| anyhow::anyhow!(e.detail))?;
        published += 1;
    }
    Ok(published)
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Register every data model of a checkout of Smart Data Models repositories: each
    /// `dataModel.X/Y/schema.json` for the entity type Y, with the JSON documents of the checkout
    /// its `$ref`s point to (by their `$id`: common-schema.json, the GSMA-Commons...). Nothing
    /// is fetched from the network; a registered type is replaced.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The checkout: a directory holding dataModel.* repositories and the common schemas.
    pub dir: PathBuf,

    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:1026", env = "CITYHUB_URL")]
    pub hub: String,

    /// Tenant to register the models in.
    #[arg(long)]
    pub tenant: Option<String>,
}

/// The most directory levels `models import` descends.
const MAX_DEPTH: usize = 8;

fn json_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            json_files(&path, depth + 1, out)?;
        } else if name.ends_with(".json") {
            out.push(path);
        }
    }
    Ok(())
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.split('#').next().unwrap_or("").to_owned()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// A data model found in a checkout: its type, its schema, the documents its `$ref`s need by URL.
pub type Found = (String, Value, BTreeMap<String, Value>);

/// The data models of a checkout.
pub fn read_checkout(dir: &Path) -> anyhow::Result<Vec<Found>> {
    let mut files = Vec::new();
    json_files(dir, 0, &mut files)?;
    files.sort();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    let mut schemas = Vec::new();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let Ok(doc) = serde_json::from_str::<Value>(&text) else { continue };
        if let Some(id) = doc.get("$id").and_then(Value::as_str) {
            by_id.insert(id.trim_end_matches('#').to_owned(), doc.clone());
        }
        let parent = path.parent().and_then(|p| p.parent()).and_then(|p| p.file_name()).and_then(|n| n.to_str());
        if path.file_name().and_then(|n| n.to_str()) == Some("schema.json")
            && parent.is_some_and(|p| p.starts_with("dataModel."))
        {
            let ty = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("").to_owned();
            schemas.push((ty, doc));
        }
    }
    let mut models = Vec::new();
    for (ty, schema) in schemas {
        let mut resources = BTreeMap::new();
        let mut todo = Vec::new();
        refs(&schema, &mut todo);
        let own = schema.get("$id").and_then(Value::as_str).unwrap_or("").trim_end_matches('#').to_owned();
        // Bounded: each document is added once.
        while let Some(url) = todo.pop() {
            if url.is_empty() || url == own || resources.contains_key(&url) {
                continue;
            }
            if let Some(doc) = by_id.get(&url) {
                refs(doc, &mut todo);
                resources.insert(url, doc.clone());
            }
        }
        models.push((ty, schema, resources));
    }
    Ok(models)
}

/// `cityhub models import DIR`.
#[expect(
    clippy::disallowed_methods,
    reason = "a command-line client of the hub the operator names, not the hub's egress"
)]
pub fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let ModelsCommand::Import(args) = args.command;
    let models = read_checkout(&args.dir)?;
    if models.is_empty() {
        anyhow::bail!("no dataModel.*/*/schema.json under {}", args.dir.display());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hub = args.hub.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let (mut done, mut failed) = (0, 0);
        for (ty, schema, resources) in models {
            let body = json!({"type": ty, "schema": schema, "resources": resources}).to_string();
            let send = |request: reqwest::RequestBuilder| {
                let request = request.header("Content-Type", "application/json").body(body.clone());
                match &args.tenant {
                    Some(t) => request.header("NGSILD-Tenant", t),
                    None => request,
                }
            };
            let mut response = send(client.post(format!("{hub}/cityhub/v1/models"))).send().await?;
            if response.status().as_u16() == 409 {
                response = send(client.put(format!("{hub}/cityhub/v1/models/{ty}"))).send().await?;
            }
            let status = response.status();
            if status.is_success() {
                done += 1;
                println!("registered {ty}");
            } else {
                failed += 1;
                let text = response.text().await.unwrap_or_default();
                eprintln!("refused {ty}: {status} {text}");
            }
        }
        println!("{done} data models registered, {failed} refused");
        if failed > 0 {
            anyhow::bail!("{failed} data models were refused");
        }
        anyhow::Ok(())
    })
}
