//! API keys: issued by the hub, kept as records, looked up by their hash.
//!
//! A key is `chk_` and 32 random bytes (256 bits, from the operating system's generator) in
//! unpadded base64url; it is shown once, when it is issued, and never stored. The store keeps a
//! record per key (`RecordKind::ApiKey`, in the default tenant so that every hub on a shared
//! store sees every key) with its id, name, tenant, role, rate, created, expires and revoked
//! times and the SHA-256 of the key.
//!
//! Why SHA-256 and not a slow password hash (argon2, bcrypt): those exist to make guessing a
//! *low-entropy* secret from its hash expensive. A key of 256 random bits cannot be guessed
//! whatever the hash costs (2^255 tries on average), so a fast preimage-resistant hash is as safe
//! and lets every request be checked with one map lookup instead of a deliberately slow
//! computation per request (which would itself be a way to overload the hub).
//!
//! Each hub holds a [`KeyRing`]: every key record by hash, loaded at start and read again on each
//! `StoreEvent::Records` of kind `ApiKey` (another hub's revoke takes effect here as soon as the
//! event arrives), after missed events, and once a minute besides.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use cityhub_access::{Grant, Identity, Role, Via};
use cityhub_storage::{RecordKind, Store, StoreError, StoreEvent, DEFAULT_TENANT};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::Unauthorized;

/// What every key starts with: a bearer token that starts so is a key, not a JWT.
pub const KEY_PREFIX: &str = "chk_";

/// One issued key as the store keeps it (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The tenant the key's role holds in; `None`: every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// A role name (`admin`, `editor`, `reader`, `public`).
    pub role: String,
    /// Requests per second this key may send (its own token bucket); `None`: the hub's default.
    #[serde(default)]
    pub rate: Option<f64>,
    pub created: String,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub revoked: Option<String>,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
}

impl ApiKey {
    /// The grant this key gives, when its role reads.
    pub fn grant(&self) -> Option<Grant> {
        let role: Role = self.role.parse().ok()?;
        Some(Grant { tenant: self.tenant.clone(), role })
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.as_deref().and_then(|e| DateTime::parse_from_rfc3339(e).ok()).is_some_and(|e| e <= now)
    }
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| StoreError::Backend("the operating system's random generator failed".into()))?;
    Ok(bytes)
}

/// Issues a key: stores its record and answers `(id, key)`. The key is in no record: show it to
/// whoever asked for it now, it cannot be read back. `tenant` `None`: the role holds in every
/// tenant.
pub async fn issue_key(
    store: &dyn Store,
    tenant: Option<&str>,
    role: Role,
    expires: Option<DateTime<Utc>>,
    name: Option<&str>,
    rate: Option<f64>,
) -> Result<(String, String), StoreError> {
    use base64::Engine as _;
    let secret = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?));
    let id: String = random::<8>()?.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("key-{id}");
    let key = ApiKey {
        id: id.clone(),
        name: name.map(str::to_owned),
        tenant: tenant.map(str::to_owned),
        role: role.name().to_owned(),
        rate,
        created: now_text(),
        expires: expires.map(|e| e.to_rfc3339_opts(SecondsFormat::Secs, true)),
        revoked: None,
        sha256: sha256_hex(&secret),
    };
    let doc = serde_json::to_value(&key).map_err(|e| StoreError::Backend(e.to_string()))?;
    store
        .create_record(DEFAULT_TENANT, RecordKind::ApiKey, &id, doc)
        .await?
        .map_err(|e| StoreError::Backend(format!("key id {id} taken: {e}")))?;
    Ok((id, secret))
}

/// Every issued key (revoked and expired ones too), in the order they were issued.
pub async fn list_keys(store: &dyn Store) -> Result<Vec<ApiKey>, StoreError> {
    let docs = store.list_records(DEFAULT_TENANT, RecordKind::ApiKey).await?;
    Ok(docs
        .into_iter()
        .filter_map(|doc| match serde_json::from_value::<ApiKey>(doc) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(error = %e, "an API key record does not read; it is ignored");
                None
            }
        })
        .collect())
}

/// Revokes a key: answers the key as revoked, or `None` when there is no key with this id. A
/// key revoked already keeps its first revocation time.
pub async fn revoke_key(store: &dyn Store, id: &str) -> Result<Option<ApiKey>, StoreError> {
    let Some(mut key) = list_keys(store).await?.into_iter().find(|k| k.id == id) else {
        return Ok(None);
    };
    if key.revoked.is_none() {
        key.revoked = Some(now_text());
        let doc = serde_json::to_value(&key).map_err(|e| StoreError::Backend(e.to_string()))?;
        if !store.replace_record(DEFAULT_TENANT, RecordKind::ApiKey, id, doc).await? {
            return Ok(None);
        }
    }
    Ok(Some(key))
}

/// Every key record by hash, following the store.
#[derive(Default)]
pub struct KeyRing {
    by_hash: RwLock<HashMap<String, ApiKey>>,
}

impl KeyRing {
    /// Reads every key of the store.
    pub async fn load(store: &dyn Store) -> Result<KeyRing, StoreError> {
        let ring = KeyRing::default();
        ring.reload(store).await?;
        Ok(ring)
    }

    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let keys = list_keys(store).await?;
        *self.by_hash.write() = keys.into_iter().map(|k| (k.sha256.clone(), k)).collect();
        Ok(())
    }

    /// Keeps the ring true to the store while it lives: reads the keys again on each API key
    /// event, after missed events, and every minute.
    pub fn follow(self: &Arc<Self>, store: cityhub_storage::DynStore) {
        use cityhub_storage::Heard;
        let ring = Arc::downgrade(self);
        let mut events = store.events();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let reload = tokio::select! {
                    event = events.recv() => match cityhub_storage::heard(event) {
                        Heard::Event(StoreEvent::Records { kind: RecordKind::ApiKey, .. }) | Heard::Missed => true,
                        Heard::Event(_) => false,
                        Heard::Closed => return,
                    },
                    _ = tick.tick() => true,
                };
                let Some(ring) = ring.upgrade() else { return };
                if reload {
                    if let Err(e) = ring.reload(store.as_ref()).await {
                        tracing::warn!(error = %e, "the API keys could not be read again; the known ones stay in force");
                    }
                }
            }
        });
    }

    /// The identity of the holder of `secret` and the key's own rate, or why the key is refused.
    pub fn identify(&self, secret: &str) -> Result<(Identity, Option<f64>), Unauthorized> {
        let hash = sha256_hex(secret);
        let keys = self.by_hash.read();
        let Some(key) = keys.get(&hash) else {
            return Err(Unauthorized::token(
                "the API key is not one this hub issued: send a key printed by `cityhub keys create`",
            ));
        };
        if let Some(when) = &key.revoked {
            return Err(Unauthorized::token(format!(
                "the API key {} was revoked at {when}: ask the hub's administrator for a new key",
                key.id
            )));
        }
        if key.expired(Utc::now()) {
            return Err(Unauthorized::token(format!(
                "the API key {} expired at {}: ask the hub's administrator for a new key",
                key.id,
                key.expires.as_deref().unwrap_or("")
            )));
        }
        let Some(grant) = key.grant() else {
            return Err(Unauthorized::token(format!("the API key {} names no known role", key.id)));
        };
        Ok((Identity { subject: Some(key.id.clone()), via: Via::Key, grants: vec![grant] }, key.rate))
    }
}
