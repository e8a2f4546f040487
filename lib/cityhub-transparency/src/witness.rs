//! The witness (`cityhub serve --witness-of URL`): every `--ledger-checkpoint-secs` it fetches
//! each peer's key and checkpoint, and co-signs the checkpoint (a C2SP cosignature line) only
//! when it is signed by the peer's key — pinned at first contact — and consistent with the last
//! one it co-signed for that origin, as the peer's consistency proof shows. Anything else is
//! refused: logged, and kept (the last 20) beside the origin's record, which
//! `GET /ledger/witness/refusals` shows. State: one `WitnessedCheckpoint` record per origin in
//! the default tenant, `{id: origin, url, key, note, size}`, so a restarted witness goes on from
//! what it co-signed.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cityhub_egress::{ClientOptions, Egress, EgressClient};
use cityhub_ledger::merkle::{verify_consistency, Hash};
use cityhub_ledger::note::{Checkpoint, Note, Verifier};
use cityhub_storage::{DynStore, RecordKind};
use serde_json::{json, Value};

use crate::Ledger;

const KEPT_REFUSALS: usize = 20;

/// Starts witnessing `peers` (base URLs of other hubs).
pub fn start(store: DynStore, ledger: Ledger, egress: &Egress, peers: Vec<String>, every: Duration) {
    if peers.is_empty() {
        return;
    }
    let client = egress.client(&ClientOptions { timeout: Duration::from_secs(20), ..ClientOptions::default() });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(200)));
        loop {
            tick.tick().await;
            for peer in &peers {
                let peer = peer.trim_end_matches('/');
                match witness_once(&store, &ledger, &client, peer).await {
                    Ok(Outcome::Cosigned { origin, size }) => tracing::debug!(%origin, size, "cosigned a checkpoint"),
                    Ok(Outcome::Refused { origin, reason }) => {
                        tracing::warn!(%origin, peer, %reason, "refused to co-sign a checkpoint")
                    }
                    Err(why) => tracing::warn!(peer, %why, "could not witness the peer"),
                }
            }
        }
    });
}

/// What one round did with one peer.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Cosigned { origin: String, size: u64 },
    Refused { origin: String, reason: String },
}

async fn fetch(client: &EgressClient, url: &str) -> Result<String, String> {
    let response = client.execute(client.get(url)).await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    Ok(body)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Fetches the peer's checkpoint and co-signs or refuses it.
pub async fn witness_once(
    store: &DynStore,
    ledger: &Ledger,
    client: &EgressClient,
    peer: &str,
) -> Result<Outcome, String> {
    let key_text = fetch(client, &format!("{peer}/ledger/key")).await?;
    let key = Verifier::parse(&key_text).map_err(|e| format!("the peer's key: {e}"))?;
    let note_text = fetch(client, &format!("{peer}/ledger/checkpoint")).await?;
    let note = Note::parse(&note_text).map_err(|e| format!("the peer's checkpoint: {e}"))?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| format!("the peer's checkpoint: {e}"))?;
    let origin = checkpoint.origin.clone();
    let docs = store.list_records("", RecordKind::WitnessedCheckpoint).await.map_err(|e| e.to_string())?;
    let existing = docs.into_iter().find(|d| d.get("id").and_then(Value::as_str) == Some(origin.as_str()));
    let pinned = match existing.as_ref().and_then(|d| d.get("key")).and_then(Value::as_str) {
        Some(k) => Verifier::parse(k).map_err(|e| format!("the pinned key of {origin}: {e}"))?,
        None => key.clone(),
    };
    let refusal = if pinned != key {
        Some(format!("the peer now shows the key {key}, not {pinned} it had at first contact"))
    } else if !note.signed_by(&pinned) {
        Some(format!("the checkpoint is not signed by {}", pinned.name))
    } else {
        let last = existing.as_ref().and_then(|d| d.get("note")).and_then(Value::as_str);
        match last {
            None => None,
            Some(last) => {
                let last = Note::parse(last).and_then(|n| Checkpoint::parse(&n.text)).map_err(|e| e.to_string())?;
                consistent(client, peer, &last, &checkpoint).await?
            }
        }
    };
    let mut doc = existing.unwrap_or_else(|| json!({"id": origin, "refusals": []}));
    doc["url"] = json!(peer);
    doc["key"] = json!(pinned.to_string());
    let outcome = match refusal {
        Some(reason) => {
            let mut refusals = doc.get("refusals").and_then(Value::as_array).cloned().unwrap_or_default();
            refusals.push(json!({
                "at": now_secs(),
                "size": checkpoint.size,
                "root": B64.encode(checkpoint.root),
                "reason": reason,
                "checkpoint": note_text,
            }));
            let skip = refusals.len().saturating_sub(KEPT_REFUSALS);
            doc["refusals"] = Value::Array(refusals.into_iter().skip(skip).collect());
            Outcome::Refused { origin: origin.clone(), reason }
        }
        None => {
            let mut cosigned = note.clone();
            cosigned.signatures.retain(|s| s.name != ledger.signer.name());
            cosigned.signatures.push(ledger.signer.cosign(&note.text, now_secs()));
            doc["note"] = json!(cosigned.to_string());
            doc["size"] = json!(checkpoint.size);
            Outcome::Cosigned { origin: origin.clone(), size: checkpoint.size }
        }
    };
    let replaced = store
        .replace_record("", RecordKind::WitnessedCheckpoint, &origin, doc.clone())
        .await
        .map_err(|e| e.to_string())?;
    if !replaced {
        store
            .create_record("", RecordKind::WitnessedCheckpoint, &origin, doc)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(outcome)
}

/// None when `new` extends `last` (the peer's consistency proof shows it), else why not.
async fn consistent(
    client: &EgressClient,
    peer: &str,
    last: &Checkpoint,
    new: &Checkpoint,
) -> Result<Option<String>, String> {
    if new.size < last.size {
        return Ok(Some(format!(
            "the log shrank: size {} after the co-signed size {} (its history was rewritten)",
            new.size, last.size
        )));
    }
    if new.size == last.size {
        return Ok((new.root != last.root).then(|| {
            format!("a different root at the co-signed size {}: the history of the same length differs", new.size)
        }));
    }
    let url = format!("{peer}/ledger/proof/consistency?from={}&to={}", last.size, new.size);
    let body: Value = serde_json::from_str(&fetch(client, &url).await?).map_err(|e| format!("GET {url}: {e}"))?;
    let proof: Vec<Hash> = body
        .get("hashes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().and_then(|s| B64.decode(s).ok()).and_then(|b| <[u8; 32]>::try_from(b).ok()))
                .collect()
        })
        .unwrap_or_default();
    Ok((!verify_consistency(last.size, new.size, &last.root, &new.root, &proof)).then(|| {
        format!(
            "the checkpoint of size {} is not consistent with the co-signed one of size {}: the peer's consistency proof fails (its history was rewritten)",
            new.size, last.size
        )
    }))
}
