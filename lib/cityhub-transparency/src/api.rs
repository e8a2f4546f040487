//! The ledger's routes (see the crate doc). Every handler opens with `cityhub_http::extract`'s
//! extractors, so the hub's one access decision covers them.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cityhub_http::extract::{Allowed, Call, NoParams, Read};
use cityhub_http::response::plain_json;
use cityhub_http::ApiError;
use cityhub_ledger::merkle::{consistency_proof, inclusion_proof, ProofError};
use cityhub_ledger::note::{Checkpoint, Note};
use cityhub_ledger::Frontier;
use cityhub_storage::{DynStore, LedgerHead, LedgerLeaf, RecordKind, StoreError};
use ngsild_core::NgsiLdError;
use serde_json::{json, Value};

use crate::Ledger;

type ApiResult<T = Response> = Result<T, ApiError>;

pub struct InclusionParams;
impl Allowed for InclusionParams {
    const NAMES: &'static [&'static str] = &["leaf", "instance", "size"];
}

pub struct ConsistencyParams;
impl Allowed for ConsistencyParams {
    const NAMES: &'static [&'static str] = &["from", "to"];
}

pub struct LeavesParams;
impl Allowed for LeavesParams {
    const NAMES: &'static [&'static str] = &["from", "limit"];
}

pub struct OriginParams;
impl Allowed for OriginParams {
    const NAMES: &'static [&'static str] = &["origin"];
}

fn text(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn number(call: &Call, name: &str) -> ApiResult<Option<u64>> {
    match call.params.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            NgsiLdError::bad_request(format!("the parameter {name} is a leaf count or index (0, 1, 2 ...), not {v:?}"))
                .into()
        }),
    }
}

fn proof_refused(e: ProofError) -> ApiError {
    NgsiLdError::bad_request(format!("{e}: ask for sizes up to the log's size (GET /ledger/checkpoint)")).into()
}

fn b64_all(hashes: &[[u8; 32]]) -> Value {
    Value::Array(hashes.iter().map(|h| Value::String(B64.encode(h))).collect())
}

/// GET /ledger/key
pub async fn key(Extension(ledger): Extension<Ledger>, _read: Read<NoParams>) -> ApiResult {
    Ok(text(format!("{}\n", ledger.signer.verifier())))
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The tenant's last signed checkpoint, as kept (its `LedgerCheckpoint` record `latest`).
#[derive(Debug, Clone, Default)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// When it was signed (Unix seconds).
    pub made: u64,
    pub note: Option<String>,
}

pub async fn stored_checkpoint(store: &DynStore, tenant: &str) -> Result<Option<StoredCheckpoint>, StoreError> {
    let records = store.list_records(tenant, RecordKind::LedgerCheckpoint).await?;
    let latest = records.into_iter().find(|d| d.get("id").and_then(Value::as_str) == Some("latest"));
    Ok(latest.map(|doc| StoredCheckpoint {
        size: doc.get("size").and_then(Value::as_u64).unwrap_or(0),
        made: doc.get("madeAt").and_then(Value::as_u64).unwrap_or(0),
        note: doc.get("note").and_then(Value::as_str).map(str::to_owned),
    }))
}

/// Signs the checkpoint of `head` and keeps it as the tenant's latest.
pub async fn sign_and_keep(
    ledger: &Ledger,
    store: &DynStore,
    tenant: &str,
    head: &LedgerHead,
) -> Result<StoredCheckpoint, StoreError> {
    let frontier = Frontier::restore(head.size, &head.frontier).ok_or_else(|| {
        StoreError::Backend("the ledger's head is damaged: its right edge does not fit its size".into())
    })?;
    let checkpoint = Checkpoint { origin: ledger.origin(tenant), size: head.size, root: frontier.root() };
    let note = checkpoint.sign(&ledger.signer).to_string();
    let made = now_secs();
    let doc = json!({"id": "latest", "size": head.size, "note": note, "madeAt": made});
    if !store.replace_record(tenant, RecordKind::LedgerCheckpoint, "latest", doc.clone()).await? {
        // Another hub on the store may create it at the same time: either checkpoint is valid.
        let _ = store.create_record(tenant, RecordKind::LedgerCheckpoint, "latest", doc).await?;
    }
    Ok(StoredCheckpoint { size: head.size, made, note: Some(note) })
}

/// The tenant's current signed checkpoint: the kept one, unless the log has grown past it and
/// it is due ([`Ledger::due`]: the background task, `checkpoints`, normally signed it already).
pub async fn current_checkpoint(ledger: &Ledger, store: &DynStore, tenant: &str) -> Result<String, ApiError> {
    let head = store.ledger_head(tenant).await?;
    if let Some(kept) = stored_checkpoint(store, tenant).await? {
        if let Some(note) = &kept.note {
            if kept.size == head.size || (kept.size < head.size && !ledger.due(&kept, head.size)) {
                return Ok(note.clone());
            }
        }
    }
    Ok(sign_and_keep(ledger, store, tenant, &head).await?.note.unwrap_or_default())
}

/// GET /ledger/checkpoint
pub async fn checkpoint(Extension(ledger): Extension<Ledger>, read: Read<NoParams>) -> ApiResult {
    Ok(text(current_checkpoint(&ledger, &read.call.state.store, &read.call.tenant).await?))
}

/// GET /ledger/proof/inclusion?leaf=N&size=S (or instance=urn:ngsi-ld:Instance:n)
pub async fn inclusion(read: Read<InclusionParams>) -> ApiResult {
    let call = &read.call;
    let store = &call.state.store;
    let head = store.ledger_head(&call.tenant).await?;
    let size = number(call, "size")?.unwrap_or(head.size);
    let index = match (number(call, "leaf")?, call.params.get("instance")) {
        (Some(leaf), None) => leaf,
        (None, Some(instance)) => {
            let found = store.ledger_find(&call.tenant, instance).await?;
            *found.last().ok_or_else(|| {
                NgsiLdError::not_found(format!("no leaf of the ledger records the instance {instance} in this tenant"))
            })?
        }
        _ => return Err(NgsiLdError::bad_request("name one leaf: either leaf=<index> or instance=<instanceId>").into()),
    };
    if size > head.size {
        return Err(proof_refused(ProofError::SizeOutOfRange { size, have: head.size }));
    }
    let hashes = store.ledger_hashes(&call.tenant, size).await?;
    let proof = inclusion_proof(&hashes, index, size).map_err(proof_refused)?;
    Ok(plain_json(
        StatusCode::OK,
        &json!({
            "leafIndex": index,
            "treeSize": size,
            "leafHash": B64.encode(hashes[index as usize]),
            "hashes": b64_all(&proof),
        }),
    ))
}

/// GET /ledger/proof/consistency?from=M&to=N
pub async fn consistency(read: Read<ConsistencyParams>) -> ApiResult {
    let call = &read.call;
    let store = &call.state.store;
    let head = store.ledger_head(&call.tenant).await?;
    let from = number(call, "from")?
        .ok_or_else(|| NgsiLdError::bad_request("from=<size> is the size of the older checkpoint"))?;
    let to = number(call, "to")?.unwrap_or(head.size);
    if to > head.size {
        return Err(proof_refused(ProofError::SizeOutOfRange { size: to, have: head.size }));
    }
    let hashes = store.ledger_hashes(&call.tenant, to).await?;
    let proof = consistency_proof(&hashes, from, to).map_err(proof_refused)?;
    Ok(plain_json(StatusCode::OK, &json!({"from": from, "to": to, "hashes": b64_all(&proof)})))
}

/// One export line: `{"index":i,"hash":"<base64 hash stored at commit>","leaf":{...}}`, the
/// leaf showing the history row it records as the history holds it now (see
/// `cityhub_storage::ledger`): an edit of the history changes the leaf, and it fails to verify.
pub fn export_line(leaf: &LedgerLeaf) -> Result<Value, StoreError> {
    let mut value: Value = serde_json::from_slice(&leaf.bytes)
        .map_err(|e| StoreError::Backend(format!("leaf {} is not JSON: {e}", leaf.index)))?;
    let recorded = matches!(value.get("op").and_then(Value::as_str), Some("record" | "replace"));
    if leaf.latest_of_instance && recorded {
        value["instance"] = match &leaf.instance_now {
            Some(doc) => serde_json::from_str(doc).unwrap_or(Value::Null),
            None => Value::Null,
        };
    }
    Ok(json!({"index": leaf.index, "hash": B64.encode(leaf.hash), "leaf": value}))
}

/// GET /ledger/leaves?from=&limit= (NDJSON; admins)
pub async fn leaves(read: Read<LeavesParams>) -> ApiResult {
    let call = &read.call;
    let from = number(call, "from")?.unwrap_or(0);
    let limit = number(call, "limit")?.unwrap_or(1000).clamp(1, 10_000) as usize;
    let leaves = call.state.store.ledger_leaves(&call.tenant, from, limit).await?;
    let mut body = String::new();
    for leaf in &leaves {
        body.push_str(&export_line(leaf)?.to_string());
        body.push('\n');
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// GET /ledger/witnessed?origin=O
pub async fn witnessed(read: Read<OriginParams>) -> ApiResult {
    let origin = read
        .call
        .params
        .get("origin")
        .ok_or_else(|| NgsiLdError::bad_request("origin=<the first line of the peer's checkpoint> is needed"))?;
    let docs = read.call.state.store.list_records("", RecordKind::WitnessedCheckpoint).await?;
    let doc = docs.iter().find(|d| d.get("id").and_then(Value::as_str) == Some(origin));
    let note = doc.and_then(|d| d.get("note")).and_then(Value::as_str).ok_or_else(|| {
        NgsiLdError::not_found(format!("this hub has co-signed no checkpoint of origin {origin}: is it its witness?"))
    })?;
    Note::parse(note).map_err(|e| NgsiLdError::internal(format!("the stored cosigned checkpoint is damaged: {e}")))?;
    Ok(text(note.to_owned()))
}

/// GET /ledger/witness/refusals
pub async fn refusals(read: Read<NoParams>) -> ApiResult {
    let docs = read.call.state.store.list_records("", RecordKind::WitnessedCheckpoint).await?;
    let out: Vec<Value> = docs
        .iter()
        .flat_map(|d| {
            let origin = d.get("id").cloned().unwrap_or(Value::Null);
            let list = d.get("refusals").and_then(Value::as_array).cloned().unwrap_or_default();
            list.into_iter().map(move |mut r| {
                r["origin"] = origin.clone();
                r
            })
        })
        .collect();
    Ok(plain_json(StatusCode::OK, &Value::Array(out)))
}
