//! Where imported entities go: a running hub over HTTP, or a stopped hub's store through
//! `Store::modify` (see `import.rs` for the whole flow), and what the import commands share:
//! their outcome as an exit code, usage errors, the outgoing HTTP client.
//!
//! Over HTTP a batch's entities are read back first (`GET /entities?id=...&local=true`); those
//! the hub does not hold are created (`POST /entityOperations/create`: one committed meanwhile
//! answers AlreadyExists and is compared again, so it is never stored twice) and of the others
//! only the attributes that differ are sent (`POST /entityOperations/upsert?options=update`), so
//! an unchanged value records no history at the hub; into a store, `cityhub_import::upsert`'s
//! modifier keeps unchanged instances as they are. Transient failures (network, 5xx, 429) are
//! retried five times with backoff; anything else fails the batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cityhub_postgres::PostgresStore;
use cityhub_sqlite::SqliteStore;
use cityhub_storage::DynStore;
use serde_json::{Map, Value};

/// Where to write: one of a hub, a data directory or a store URL, with a hub's credentials.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub hub: Option<String>,
    pub data: Option<PathBuf>,
    pub store: Option<String>,
    pub api_key: Option<String>,
    pub token: Option<String>,
}

/// How an import ended, as the process's exit code.
pub enum Outcome {
    Complete,
    Rejected,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Complete => 0,
            Outcome::Rejected => 3,
        }
    }
}

/// A usage error: exit code 2, as clap's.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(why.into()))
}

/// Where batches go.
pub enum Sink {
    Hub(Hub),
    Store(DynStore),
}

/// A running hub's batch endpoints.
pub struct Hub {
    base: String,
    client: reqwest::Client,
    api_key: Option<String>,
    token: Option<String>,
}

/// What one batch did.
#[derive(Default)]
pub struct Written {
    pub stored: u64,
    pub unchanged: u64,
    /// (line, id, reason).
    pub rejected: Vec<(u64, Option<String>, String)>,
}

impl Sink {
    /// The sink `target` names.
    pub async fn open(args: &Target) -> anyhow::Result<Sink> {
        if let Some(hub) = &args.hub {
            let base = hub.trim_end_matches('/').trim_end_matches("/ngsi-ld/v1").to_owned();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(usage(format!("--hub must be an http(s) URL, not {hub:?}")));
            }
            let client = outgoing_client(Duration::from_secs(60))?;
            return Ok(Sink::Hub(Hub { base, client, api_key: args.api_key.clone(), token: args.token.clone() }));
        }
        let store: DynStore = match (&args.data, &args.store) {
            (_, Some(url)) => Arc::new(
                PostgresStore::connect(url)
                    .await
                    .with_context(|| format!("cannot open the store {}", crate::redact(url)))?,
            ),
            (Some(dir), None) => {
                if !dir.join("cityhub.sqlite").is_file() {
                    return Err(usage(format!(
                        "--data {}: no hub store there (no cityhub.sqlite): give a hub's --data directory",
                        dir.display()
                    )));
                }
                Arc::new(SqliteStore::open(dir).with_context(|| {
                    format!(
                        "cannot open the store in {} (is a hub running on it? stop it, or use --hub)",
                        dir.display()
                    )
                })?)
            }
            (None, None) => return Err(usage("say where to import to: --hub URL, --data DIR or --store URL")),
        };
        Ok(Sink::Store(store))
    }

    /// Upserts a batch of `(line, entity)`; an `Err` is a failure of the whole batch (nothing of
    /// it is counted; run again to resume).
    ///
    /// A record whose id an earlier record of the batch has is written after it, in a later
    /// part: each part is compared with what the hub holds *after* the parts before it, so the
    /// file's last record of an id is what stays, on the first import and on every one after.
    pub async fn write(&self, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
        let mut written = Written::default();
        for part in distinct_ids(batch) {
            let w = match self {
                Sink::Hub(hub) => hub.write(tenant, part).await?,
                Sink::Store(store) => write_store(store, tenant, part).await?,
            };
            written.stored += w.stored;
            written.unchanged += w.unchanged;
            written.rejected.extend(w.rejected);
        }
        Ok(written)
    }
}

async fn write_store(store: &DynStore, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut lines = Vec::with_capacity(batch.len());
    let mut modifications = Vec::with_capacity(batch.len());
    for (line, entity) in &batch {
        match cityhub_import::upsert::modifier(entity) {
            Ok((id, modifier)) => {
                lines.push((*line, id.clone()));
                modifications.push((id, modifier));
            }
            Err(e) => written.rejected.push((*line, entity_id(entity), e.detail)),
        }
    }
    if modifications.is_empty() {
        return Ok(written);
    }
    let results = store.modify(tenant, modifications).await.context("the store failed")?;
    for ((line, id), result) in lines.into_iter().zip(results) {
        match result {
            Ok(change) if change.before == change.after => written.unchanged += 1,
            Ok(_) => written.stored += 1,
            Err(e) => written.rejected.push((line, Some(id), e.detail)),
        }
    }
    Ok(written)
}

/// The HTTP client of the command's outgoing requests (to the hub, to an NGSIv2 broker): one
/// place to build it.
#[expect(clippy::disallowed_methods, reason = "a command-line client of URLs the operator names, not the hub's egress")]
pub fn outgoing_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(timeout).build()?)
}

/// `batch` cut, in order, into parts in which no id is there twice (a record without an id
/// repeats nothing).
fn distinct_ids(batch: Vec<(u64, Map<String, Value>)>) -> Vec<Vec<(u64, Map<String, Value>)>> {
    let (mut parts, mut part) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for record in batch {
        if let Some(id) = entity_id(&record.1) {
            if !seen.insert(id) {
                seen.clear();
                seen.extend(entity_id(&record.1));
                parts.push(std::mem::take(&mut part));
            }
        }
        part.push(record);
    }
    parts.push(part);
    parts
}

fn entity_id(entity: &Map<String, Value>) -> Option<String> {
    entity.get("id").and_then(Value::as_str).map(str::to_owned)
}

impl Hub {
    fn request(&self, method: reqwest::Method, path: &str, tenant: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}/ngsi-ld/v1{path}", self.base));
        if !tenant.is_empty() {
            request = request.header("NGSILD-Tenant", tenant);
        }
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request, retrying (with backoff, five times) what the network or a busy hub
    /// failed; answers the status and the body.
    async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=6 {
            let failure = match build().send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.unwrap_or_default();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if status < 500 && status != 429 {
                        return Ok((status, body));
                    }
                    format!("the hub answered {status} {}", body_detail(&body))
                }
                Err(e) => format!("the hub cannot be reached: {e}"),
            };
            if attempt == 6 {
                anyhow::bail!("{failure} (tried 6 times)");
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        anyhow::bail!("unreachable")
    }

    /// Writes a batch: entities the hub does not hold are created, those it holds get the
    /// attributes that differ. An entity seen absent is *created*, never upserted, so that a
    /// write of it the hub commits between the read and this batch (a killed import's batch still
    /// in flight, another writer) answers AlreadyExists instead of being stored a second time:
    /// those are read again and only what still differs is sent.
    async fn write(&self, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
        let mut written = Written::default();
        if batch.is_empty() {
            return Ok(written);
        }
        let held = self.held(tenant, &batch).await?;
        let mut lines: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for (line, entity) in batch {
            let Some(id) = entity_id(&entity) else {
                written.rejected.push((line, None, "the entity has no id".into()));
                continue;
            };
            let listed = held.contains_key(&id) || id.contains(',');
            match changed_part(entity, held.get(&id)) {
                Some(part) => {
                    lines.insert(id, line);
                    // An id with a comma cannot be read back by `id=`: it is upserted whole.
                    if listed {
                        changed.push(part)
                    } else {
                        new.push(part)
                    }
                }
                None => written.unchanged += 1,
            }
        }
        let exists = self.send_batch(tenant, "create", new, &lines, &mut written).await?;
        if !exists.is_empty() {
            let again = self.held(tenant, &exists).await?;
            for (_, entity) in exists {
                let id = entity_id(&entity).unwrap_or_default();
                match changed_part(entity, again.get(&id)) {
                    Some(part) => changed.push(part),
                    None => written.unchanged += 1,
                }
            }
        }
        let exists = self.send_batch(tenant, "upsert?options=update", changed, &lines, &mut written).await?;
        debug_assert!(exists.is_empty(), "an upsert never answers AlreadyExists");
        Ok(written)
    }

    /// Sends `items` to `/entityOperations/{operation}` and counts what was stored and rejected;
    /// answers the items refused as AlreadyExists (only a create refuses so), not counted yet.
    async fn send_batch(
        &self,
        tenant: &str,
        operation: &str,
        items: Vec<Map<String, Value>>,
        lines: &std::collections::HashMap<String, u64>,
        written: &mut Written,
    ) -> anyhow::Result<Vec<(u64, Map<String, Value>)>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sent = items.len() as u64;
        let body = Value::Array(items.iter().cloned().map(Value::Object).collect()).to_string();
        let (status, answer) = self
            .send(|| {
                self.request(reqwest::Method::POST, &format!("/entityOperations/{operation}"), tenant)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
            })
            .await?;
        let mut exists = Vec::new();
        match status {
            200..=206 => written.stored += sent,
            207 => {
                let errors = answer.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut by_id: std::collections::HashMap<String, Map<String, Value>> =
                    items.into_iter().filter_map(|e| Some((entity_id(&e)?, e))).collect();
                let mut refused = 0;
                for e in &errors {
                    let id = e.get("entityId").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let line = lines.get(&id).copied().unwrap_or(0);
                    let error = e.get("error").unwrap_or(&Value::Null);
                    refused += 1;
                    let already =
                        error.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("/AlreadyExists"));
                    match by_id.remove(&id) {
                        Some(entity) if already => exists.push((line, entity)),
                        _ => written.rejected.push((line, Some(id), body_detail(error))),
                    }
                }
                written.stored += sent.saturating_sub(refused);
            }
            _ => anyhow::bail!("the hub refused the batch: {status} {}", body_detail(&answer)),
        }
        Ok(exists)
    }

    /// The batch's entities as the hub holds them now (normalized, in the core @context), by id.
    async fn held(
        &self,
        tenant: &str,
        batch: &[(u64, Map<String, Value>)],
    ) -> anyhow::Result<std::collections::HashMap<String, Map<String, Value>>> {
        let mut ids: Vec<String> = batch.iter().filter_map(|(_, e)| entity_id(e)).collect();
        ids.sort();
        ids.dedup();
        let mut held = std::collections::HashMap::new();
        // Ids with a comma cannot be listed in `id=`: they are upserted without comparison.
        ids.retain(|id| !id.contains(','));
        if ids.is_empty() {
            return Ok(held);
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &ids.join(","))
            .append_pair("limit", &ids.len().to_string())
            // The hub's own entities, which the upsert writes (a registered source is not asked).
            .append_pair("local", "true")
            .finish();
        let path = format!("/entities?{query}");
        let (status, answer) = self
            .send(|| self.request(reqwest::Method::GET, &path, tenant).header("Accept", "application/json"))
            .await?;
        match status {
            200 => {}
            // A tenant that does not exist yet holds nothing.
            404 if answer.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("NonexistentTenant")) => {
                return Ok(held)
            }
            _ => anyhow::bail!("the hub refused to read the batch's entities: {status} {}", body_detail(&answer)),
        }
        for entity in answer.as_array().into_iter().flatten() {
            if let (Some(id), Some(m)) = (entity.get("id").and_then(Value::as_str), entity.as_object()) {
                held.insert(id.to_owned(), m.clone());
            }
        }
        Ok(held)
    }
}

/// What of `entity` differs from what the hub `held`: its id and type with the attributes that
/// are new or differ; None when nothing does.
fn changed_part(mut entity: Map<String, Value>, held: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let Some(held) = held else { return Some(entity) };
    let same_type = match (entity.get("type"), held.get("type")) {
        (Some(Value::String(t)), Some(Value::String(h))) => t == h,
        (Some(Value::String(t)), Some(Value::Array(h))) => h.iter().any(|x| x == t),
        (given, h) => given == h,
    };
    entity.retain(|name, value| matches!(name.as_str(), "id" | "type") || held.get(name) != Some(value));
    (!same_type || entity.len() > 2).then_some(entity)
}

/// A ProblemDetails' title and detail, for messages.
pub fn body_detail(body: &Value) -> String {
    let title = body.get("title").and_then(Value::as_str).unwrap_or_default();
    let detail = body.get("detail").and_then(Value::as_str).unwrap_or_default();
    match (title, detail) {
        ("", "") if body.is_null() => String::new(),
        ("", "") => body.to_string(),
        (t, "") => t.to_owned(),
        ("", d) => d.to_owned(),
        (t, d) => format!("{t}: {d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_differs_from_the_hub_is_sent() {
        let entity = |v: Value| v.as_object().cloned().unwrap();
        let mine = entity(
            json!({"id": "urn:a", "type": "T", "a": {"type": "Property", "value": 1}, "b": {"type": "Property", "value": 2}}),
        );
        assert_eq!(changed_part(mine.clone(), None), Some(mine.clone()));
        let held = entity(
            json!({"id": "urn:a", "type": "T", "a": {"type": "Property", "value": 1}, "b": {"type": "Property", "value": 3}}),
        );
        assert_eq!(
            changed_part(mine.clone(), Some(&held)),
            Some(entity(json!({"id": "urn:a", "type": "T", "b": {"type": "Property", "value": 2}})))
        );
        let same = entity(
            json!({"id": "urn:a", "type": ["T", "U"], "b": {"type": "Property", "value": 2}, "a": {"type": "Property", "value": 1}, "c": {"type": "Property", "value": 0}}),
        );
        assert_eq!(changed_part(mine, Some(&same)), None, "attribute order and other attributes do not count");
    }

    #[test]
    fn a_batch_is_cut_before_each_id_it_has_already() {
        let record = |line: u64, id: Option<&str>| {
            let mut m = Map::new();
            if let Some(id) = id {
                m.insert("id".into(), json!(id));
            }
            (line, m)
        };
        let batch = vec![
            record(1, Some("a")),
            record(2, Some("b")),
            record(3, None),
            record(4, Some("a")),
            record(5, Some("c")),
            record(6, Some("c")),
        ];
        let lines: Vec<Vec<u64>> =
            distinct_ids(batch).into_iter().map(|p| p.into_iter().map(|(l, _)| l).collect()).collect();
        assert_eq!(lines, vec![vec![1, 2, 3], vec![4, 5], vec![6]]);
        assert_eq!(distinct_ids(Vec::new()).len(), 1, "an empty batch is one empty part");
    }
}
