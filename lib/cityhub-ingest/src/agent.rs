//! The device agent: a message from a device (MQTT or HTTP) becomes NGSI-LD updates written
//! through the core write path, many messages per store commit.
//!
//! # A message's way in
//!
//! [`Agent::submit`] finds the service group of the message's apikey and the device (a device
//! not provisioned takes its group's defaults when the group `autoprovision`s, as IoT Agents do;
//! otherwise the message is refused), parses the payload ([`crate::payload`]), maps each reading
//! ([`crate::provision::measurement_entity`]) and expands it in the core @context
//! (`ngsild_core::expand`). A refusal at any step is counted and kept as a dead letter with its
//! reason ([`crate::status`]); nothing of the message is written.
//!
//! A message that reads goes to the writer task, a bounded queue (a full queue makes the
//! southbound wait: MQTT stops reading from the broker, HTTP answers later). The writer takes
//! every message queued (up to [`MAX_BATCH`], waiting [`GATHER`] for more when few are there)
//! and hands them to `Store::modify` in one call per tenant: one modifier per reading, each an
//! `ngsild_core::ops` append on the entity's current state (the entity is created, with the
//! static attributes, by its first reading), so every reading is its own change — its own
//! history instances, its own notifications — and the whole batch costs one durable commit.
//! Only then is the message counted stored and its sender (HTTP) answered.
//!
//! Known limits: a message of several readings whose later reading the store refuses is counted
//! rejected though its earlier readings were stored (each reading is its own change); and MQTT
//! messages are acknowledged to the broker when read, so what is queued here (at most
//! [`QUEUE`] messages) is lost if the hub is killed.

use std::sync::Arc;
use std::time::Duration;

use cityhub_storage::{DynStore, Modified, Modifier};
use ngsild_core::expand::{expand_entity, expand_fragment, EntityInput};
use ngsild_core::{ops, Entity, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::payload::{self, Format, Reading};
use crate::provision::{self, Target};
use crate::registry::Registry;
use crate::status::{SourceKey, StatusBook};

/// The most readings one store call takes.
pub const MAX_BATCH: usize = 2048;
/// How long the writer waits for more messages when fewer than [`FEW`] are queued.
pub const GATHER: Duration = Duration::from_millis(2);
const FEW: usize = 64;
/// Messages queued for the writer at most.
pub const QUEUE: usize = 8192;

/// A message from a device.
pub struct Message<'a> {
    pub apikey: &'a str,
    pub device_id: &'a str,
    /// None: JSON when it starts like JSON, else UltraLight.
    pub format: Option<Format>,
    /// `/<apikey>/<device>/attrs/<attr>`: the payload is this one attribute's value.
    pub single: Option<&'a str>,
    pub payload: &'a [u8],
    /// Where it came from, for the dead-letter list (a topic, a URL).
    pub source: String,
    /// The tenant the sender named, if any: it must be its group's.
    pub tenant: Option<&'a str>,
}

/// Why a message was not stored (already counted and kept as a dead letter).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub kind: ngsild_core::ErrorKind,
    /// IoT Agent name of the error (`DEVICE_GROUP_NOT_FOUND`, ...).
    pub name: &'static str,
    pub reason: String,
}

/// A message read and expanded, on its way to the writer.
struct Batch {
    tenant: String,
    entity_id: String,
    readings: Vec<(Entity, EntityInput)>,
    statics: Option<EntityInput>,
    keys: Vec<SourceKey>,
    source: String,
    payload: Vec<u8>,
    done: Option<oneshot::Sender<Result<(), Rejected>>>,
}

pub struct Agent {
    pub registry: Arc<Registry>,
    pub status: Arc<StatusBook>,
    queue: mpsc::Sender<Batch>,
}

/// What the sender of a message may wait for: its readings stored, or why not.
pub type Pending = oneshot::Receiver<Result<(), Rejected>>;

impl Agent {
    pub fn start(store: DynStore, registry: Arc<Registry>, status: Arc<StatusBook>) -> Arc<Agent> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, status.clone(), receiver));
        Arc::new(Agent { registry, status, queue })
    }

    /// Reads a message and queues it for the writer; `wait`: the answer comes on the
    /// [`Pending`] once stored. Refused messages are counted and kept as dead letters here.
    pub async fn submit(&self, message: Message<'_>, wait: bool) -> Result<Option<Pending>, Rejected> {
        let at = ngsild_core::time::now();
        let tenant_hint = message.tenant.unwrap_or("");
        let Some(group) = self.registry.group(message.apikey).filter(|g| message.tenant.is_none_or(|t| t == g.service))
        else {
            let keys = [SourceKey::new(tenant_hint, "service", message.apikey)];
            let reason = format!(
                "no service group has apikey {:?}{}; provision one with POST /iot/services",
                message.apikey,
                if message.tenant.is_some() { " in this tenant" } else { "" }
            );
            return Err(self.refuse(
                &keys,
                &at,
                &message,
                ngsild_core::ErrorKind::ResourceNotFound,
                "DEVICE_GROUP_NOT_FOUND",
                reason,
            ));
        };
        let tenant = group.service.clone();
        let keys = vec![
            SourceKey::new(&tenant, "service", &group.apikey),
            SourceKey::new(&tenant, "device", message.device_id),
        ];
        self.status.received(&keys, &at);
        let device = self.registry.device(&tenant, message.device_id);
        if device.is_none() && group.autoprovision == Some(false) {
            let reason = format!(
                "device {:?} is not provisioned and service group {:?} does not autoprovision; provision it with POST /iot/devices",
                message.device_id, group.apikey
            );
            return Err(self.refuse(
                &keys,
                &at,
                &message,
                ngsild_core::ErrorKind::ResourceNotFound,
                "DEVICE_NOT_FOUND",
                reason,
            ));
        }
        let target = provision::target(&group, device.as_ref(), message.device_id);
        let read = read(&target, &message, &at);
        let (readings, statics) = match read {
            Ok(read) => read,
            Err(reason) => {
                return Err(self.refuse(
                    &keys,
                    &at,
                    &message,
                    ngsild_core::ErrorKind::BadRequestData,
                    "WRONG_SYNTAX",
                    reason,
                ))
            }
        };
        let (done, pending) = match wait {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let batch = Batch {
            tenant,
            entity_id: target.entity_id,
            readings,
            statics: Some(statics),
            keys,
            source: message.source,
            payload: message.payload.to_vec(),
            done,
        };
        if self.queue.send(batch).await.is_err() {
            return Err(Rejected {
                kind: ngsild_core::ErrorKind::InternalError,
                name: "INTERNAL_ERROR",
                reason: "the ingestion writer stopped; the hub is shutting down".into(),
            });
        }
        Ok(pending)
    }

    fn refuse(
        &self,
        keys: &[SourceKey],
        at: &str,
        message: &Message<'_>,
        kind: ngsild_core::ErrorKind,
        name: &'static str,
        reason: String,
    ) -> Rejected {
        if keys.len() == 1 {
            self.status.received(keys, at);
        }
        self.status.rejected(keys, at, &message.source, &reason, message.payload);
        Rejected { kind, name, reason }
    }
}

/// The readings of a message, expanded, and its target's static attributes.
fn read(target: &Target, message: &Message<'_>, at: &str) -> Result<(Vec<(Entity, EntityInput)>, EntityInput), String> {
    let readings: Vec<Reading> = match message.single {
        Some(attr) => vec![payload::single(attr, message.payload)?],
        None => {
            let format = message.format.unwrap_or_else(|| payload::sniff(message.payload));
            payload::parse(format, message.payload)?
        }
    };
    let ctx = Context::core();
    let expanded = readings
        .iter()
        .map(|r| {
            let doc = provision::measurement_entity(target, r, at)?;
            let Value::Object(map) = doc else { return Err("a reading did not map to an entity".to_owned()) };
            expand_entity(&map, &ctx).map_err(|e| e.detail)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let statics = match provision::statics_entity(target)? {
        Value::Object(map) => {
            expand_fragment(&map, &ctx).map_err(|e| format!("the static attributes: {}", e.detail))?
        }
        _ => return Err("the static attributes did not map to attributes".into()),
    };
    Ok((expanded, statics))
}

/// One reading as a modifier: appended to the entity, which its first reading creates with the
/// static attributes.
fn modifier(entity: Entity, input: EntityInput, statics: Option<EntityInput>) -> Modifier {
    Box::new(move |current| {
        let now = ngsild_core::time::now();
        match current {
            Some(mut existing) => {
                ops::append_attributes(&mut existing, &input, false, &now)?;
                Ok(Modified::entity(existing))
            }
            None => {
                let mut entity = entity;
                ops::stamp_new_entity(&mut entity, &now);
                if let Some(statics) = statics {
                    ops::append_attributes(&mut entity, &statics, true, &now)?;
                }
                Ok(Modified::entity(entity))
            }
        }
    })
}

/// The writer task: batches of queued messages, one store call per tenant each.
async fn write(store: DynStore, status: Arc<StatusBook>, mut receiver: mpsc::Receiver<Batch>) {
    while let Some(first) = receiver.recv().await {
        let mut batches = vec![first];
        let mut readings = batches[0].readings.len();
        gather(&mut receiver, &mut batches, &mut readings).await;
        let mut tenants: Vec<String> = batches.iter().map(|b| b.tenant.clone()).collect();
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            let (mine, rest): (Vec<Batch>, Vec<Batch>) = batches.into_iter().partition(|b| b.tenant == tenant);
            batches = rest;
            commit(store.as_ref(), &status, &tenant, mine).await;
        }
    }
}

async fn gather(receiver: &mut mpsc::Receiver<Batch>, batches: &mut Vec<Batch>, readings: &mut usize) {
    let mut waited = false;
    while *readings < MAX_BATCH {
        let next = match receiver.try_recv() {
            Ok(next) => next,
            Err(_) if waited || *readings >= FEW => return,
            Err(_) => {
                waited = true;
                match tokio::time::timeout(GATHER, receiver.recv()).await {
                    Ok(Some(next)) => next,
                    _ => return,
                }
            }
        };
        *readings += next.readings.len();
        batches.push(next);
    }
}

async fn commit(store: &dyn cityhub_storage::Store, status: &StatusBook, tenant: &str, batches: Vec<Batch>) {
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    let mut counts = Vec::with_capacity(batches.len());
    let mut batches = batches;
    for b in &mut batches {
        counts.push(b.readings.len());
        let mut statics = b.statics.take();
        for (entity, input) in std::mem::take(&mut b.readings) {
            modifications.push((b.entity_id.clone(), modifier(entity, input, statics.take())));
        }
    }
    let (readings, started) = (modifications.len(), std::time::Instant::now());
    let outcome = store.modify(tenant, modifications).await;
    tracing::debug!(tenant, messages = counts.len(), readings, ms = started.elapsed().as_millis() as u64, "ingested");
    let at = ngsild_core::time::now();
    let mut results = match outcome {
        Ok(results) => results.into_iter().map(|r| r.err()).collect::<Vec<Option<NgsiLdError>>>(),
        Err(e) => {
            let failure = NgsiLdError::internal(format!("the store failed: {e}"));
            counts.iter().flat_map(|n| std::iter::repeat_n(Some(failure.clone()), *n)).collect()
        }
    }
    .into_iter();
    for (b, n) in batches.into_iter().zip(counts) {
        let first_error = results.by_ref().take(n).flatten().next();
        let answer = match first_error {
            None => {
                status.stored(&b.keys, &at);
                Ok(())
            }
            Some(e) => {
                let reason = format!("not stored: {}", e.detail);
                status.rejected(&b.keys, &at, &b.source, &reason, &b.payload);
                Err(Rejected { kind: e.kind, name: "NOT_STORED", reason })
            }
        };
        if let Some(done) = b.done {
            let _ = done.send(answer);
        }
    }
}
