//! The provisioning this hub knows: service groups and devices kept in the store as records
//! (`RecordKind::IngestService` by apikey, `RecordKind::IngestDevice` by device_id, per tenant)
//! and cached in memory for the southbounds.
//!
//! The cache is loaded at start, reloaded for a tenant after each write made here, and follows
//! `StoreEvent::Records` of those kinds (writes by other hubs on the same store); after missed
//! events everything is reloaded. An apikey names one service group in the whole hub, since a
//! device's message names no tenant, only its apikey.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use cityhub_storage::{DynStore, RecordKind, StoreError, StoreEvent};
use parking_lot::RwLock;
use serde_json::Value;

use crate::provision::{Device, ServiceGroup};

#[derive(Default)]
struct Cache {
    /// By apikey.
    groups: HashMap<String, ServiceGroup>,
    /// By (tenant, device_id).
    devices: HashMap<(String, String), Device>,
}

pub struct Registry {
    store: DynStore,
    cache: RwLock<Cache>,
    limits: Limits,
}

/// How much provisioning one tenant may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-service-groups-per-tenant`
    pub groups_per_tenant: usize,
    /// `--max-devices-per-tenant`
    pub devices_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { groups_per_tenant: 1000, devices_per_tenant: 100_000 }
    }
}

/// Why a provisioning write was refused, as the IoT Agents name it (`name`) with a sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Duplicate {
        name: &'static str,
        message: String,
    },
    NotFound {
        name: &'static str,
        message: String,
    },
    Syntax(String),
    /// A bound of [`Limits`], named with its flag.
    Full(String),
    Store(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e.to_string())
    }
}

impl Registry {
    /// Loads every tenant's provisioning and follows the store's events from now on.
    pub async fn open(store: DynStore, limits: Limits) -> Result<Arc<Registry>, StoreError> {
        let events = store.events();
        let registry = Arc::new(Registry { store, cache: RwLock::new(Cache::default()), limits });
        registry.reload_all().await?;
        tokio::spawn(follow(Arc::downgrade(&registry), events));
        Ok(registry)
    }

    async fn reload_all(&self) -> Result<(), StoreError> {
        let mut tenants = self.store.tenants().await?;
        if !tenants.iter().any(String::is_empty) {
            tenants.push(String::new());
        }
        for tenant in tenants {
            self.reload(&tenant, RecordKind::IngestService).await?;
            self.reload(&tenant, RecordKind::IngestDevice).await?;
        }
        Ok(())
    }

    /// Reads a tenant's records of `kind` again (records that no longer read are logged and
    /// skipped: they were written by a newer hub or damaged).
    async fn reload(&self, tenant: &str, kind: RecordKind) -> Result<(), StoreError> {
        let docs = self.store.list_records(tenant, kind).await?;
        let mut cache = self.cache.write();
        match kind {
            RecordKind::IngestService => {
                cache.groups.retain(|_, g| g.service != tenant);
                for doc in docs {
                    match serde_json::from_value::<ServiceGroup>(doc) {
                        Ok(g) => {
                            cache.groups.insert(g.apikey.clone(), g);
                        }
                        Err(e) => tracing::warn!(tenant, error = %e, "a stored service group does not read back"),
                    }
                }
            }
            RecordKind::IngestDevice => {
                cache.devices.retain(|(t, _), _| t != tenant);
                for doc in docs {
                    match serde_json::from_value::<Device>(doc) {
                        Ok(d) => {
                            cache.devices.insert((tenant.to_owned(), d.device_id.clone()), d);
                        }
                        Err(e) => tracing::warn!(tenant, error = %e, "a stored device does not read back"),
                    }
                }
            }
            // Kinds that are not provisioning.
            _ => {}
        }
        Ok(())
    }

    /// The service group of an apikey.
    pub fn group(&self, apikey: &str) -> Option<ServiceGroup> {
        self.cache.read().groups.get(apikey).cloned()
    }

    /// A provisioned device of a tenant.
    pub fn device(&self, tenant: &str, device_id: &str) -> Option<Device> {
        self.cache.read().devices.get(&(tenant.to_owned(), device_id.to_owned())).cloned()
    }

    /// The service groups of a tenant, by apikey.
    pub fn groups(&self, tenant: &str) -> Vec<ServiceGroup> {
        let mut groups: Vec<ServiceGroup> =
            self.cache.read().groups.values().filter(|g| g.service == tenant).cloned().collect();
        groups.sort_by(|a, b| a.apikey.cmp(&b.apikey));
        groups
    }

    /// The devices of a tenant, by device_id.
    pub fn devices(&self, tenant: &str) -> Vec<Device> {
        let mut devices: Vec<Device> =
            self.cache.read().devices.iter().filter(|((t, _), _)| t == tenant).map(|(_, d)| d.clone()).collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        devices
    }

    /// Creates service groups (all or none: the first refusal stops before anything is written
    /// that a later item would refuse).
    pub async fn create_groups(&self, groups: Vec<ServiceGroup>) -> Result<(), Refusal> {
        if let Some(g) = groups.first() {
            let (held, max) = (self.groups(&g.service).len(), self.limits.groups_per_tenant);
            if held + groups.len() > max {
                return Err(Refusal::Full(format!(
                    "the tenant holds {held} service groups and this would add {}, past the most one tenant keeps \
                     (--max-service-groups-per-tenant is {max}): delete groups no longer needed first",
                    groups.len()
                )));
            }
        }
        for (i, g) in groups.iter().enumerate() {
            if self.group(&g.apikey).is_some() || groups[..i].iter().any(|o| o.apikey == g.apikey) {
                return Err(Refusal::Duplicate {
                    name: "DUPLICATE_GROUP",
                    message: format!(
                        "a service group with apikey {:?} already exists; choose another apikey",
                        g.apikey
                    ),
                });
            }
        }
        for g in &groups {
            let doc = serde_json::to_value(g).map_err(|e| Refusal::Store(e.to_string()))?;
            if let Err(e) = self.store.create_record(&g.service, RecordKind::IngestService, &g.apikey, doc).await? {
                return Err(Refusal::Duplicate { name: "DUPLICATE_GROUP", message: e.detail });
            }
            self.reload(&g.service, RecordKind::IngestService).await?;
        }
        Ok(())
    }

    /// Replaces the fields `patch` names in the group of `apikey` in `tenant`.
    pub async fn update_group(&self, tenant: &str, apikey: &str, patch: &Value) -> Result<(), Refusal> {
        let current = self.group(apikey).filter(|g| g.service == tenant).ok_or_else(|| group_not_found(apikey))?;
        let mut doc = serde_json::to_value(&current).map_err(|e| Refusal::Store(e.to_string()))?;
        overlay(&mut doc, patch, &["apikey", "service", "subservice"])?;
        let next = crate::provision::read_group(doc.clone()).map_err(Refusal::Syntax)?;
        let doc = serde_json::to_value(&next).map_err(|e| Refusal::Store(e.to_string()))?;
        if !self.store.replace_record(tenant, RecordKind::IngestService, apikey, doc).await? {
            return Err(group_not_found(apikey));
        }
        Ok(self.reload(tenant, RecordKind::IngestService).await?)
    }

    pub async fn delete_group(&self, tenant: &str, apikey: &str) -> Result<(), Refusal> {
        if self.group(apikey).is_none_or(|g| g.service != tenant)
            || !self.store.delete_record(tenant, RecordKind::IngestService, apikey).await?
        {
            return Err(group_not_found(apikey));
        }
        Ok(self.reload(tenant, RecordKind::IngestService).await?)
    }

    /// Creates devices in `tenant` (all or none, as [`Registry::create_groups`]).
    pub async fn create_devices(&self, tenant: &str, devices: Vec<Device>) -> Result<(), Refusal> {
        let (held, max) = (self.devices(tenant).len(), self.limits.devices_per_tenant);
        if held + devices.len() > max {
            return Err(Refusal::Full(format!(
                "the tenant holds {held} devices and this would add {}, past the most one tenant keeps \
                 (--max-devices-per-tenant is {max}): delete devices no longer needed first",
                devices.len()
            )));
        }
        for (i, d) in devices.iter().enumerate() {
            if self.device(tenant, &d.device_id).is_some() || devices[..i].iter().any(|o| o.device_id == d.device_id) {
                return Err(Refusal::Duplicate {
                    name: "DUPLICATE_DEVICE_ID",
                    message: format!("a device with device_id {:?} already exists in this tenant", d.device_id),
                });
            }
        }
        for d in &devices {
            let doc = serde_json::to_value(d).map_err(|e| Refusal::Store(e.to_string()))?;
            if let Err(e) = self.store.create_record(tenant, RecordKind::IngestDevice, &d.device_id, doc).await? {
                return Err(Refusal::Duplicate { name: "DUPLICATE_DEVICE_ID", message: e.detail });
            }
        }
        Ok(self.reload(tenant, RecordKind::IngestDevice).await?)
    }

    pub async fn update_device(&self, tenant: &str, device_id: &str, patch: &Value) -> Result<(), Refusal> {
        let current = self.device(tenant, device_id).ok_or_else(|| device_not_found(device_id))?;
        let mut doc = serde_json::to_value(&current).map_err(|e| Refusal::Store(e.to_string()))?;
        overlay(&mut doc, patch, &["device_id", "service", "subservice"])?;
        let next = crate::provision::read_device(doc).map_err(Refusal::Syntax)?;
        let doc = serde_json::to_value(&next).map_err(|e| Refusal::Store(e.to_string()))?;
        if !self.store.replace_record(tenant, RecordKind::IngestDevice, device_id, doc).await? {
            return Err(device_not_found(device_id));
        }
        Ok(self.reload(tenant, RecordKind::IngestDevice).await?)
    }

    pub async fn delete_device(&self, tenant: &str, device_id: &str) -> Result<(), Refusal> {
        if !self.store.delete_record(tenant, RecordKind::IngestDevice, device_id).await? {
            return Err(device_not_found(device_id));
        }
        Ok(self.reload(tenant, RecordKind::IngestDevice).await?)
    }
}

pub fn group_not_found(apikey: &str) -> Refusal {
    Refusal::NotFound {
        name: "DEVICE_GROUP_NOT_FOUND",
        message: format!("no service group has apikey {apikey:?} in this tenant; provision it with POST /iot/services"),
    }
}

pub fn device_not_found(device_id: &str) -> Refusal {
    Refusal::NotFound {
        name: "DEVICE_NOT_FOUND",
        message: format!("no device {device_id:?} in this tenant; provision it with POST /iot/devices"),
    }
}

/// `patch`'s fields over `doc`'s, refusing changes to the `fixed` ones.
fn overlay(doc: &mut Value, patch: &Value, fixed: &[&str]) -> Result<(), Refusal> {
    let (Some(doc), Some(patch)) = (doc.as_object_mut(), patch.as_object()) else {
        return Err(Refusal::Syntax("an update must be a JSON object of the fields to change".into()));
    };
    for (k, v) in patch {
        if fixed.contains(&k.as_str()) {
            if doc.get(k) != Some(v) {
                return Err(Refusal::Syntax(format!("{k} cannot be changed; delete and provision again")));
            }
            continue;
        }
        doc.insert(k.clone(), v.clone());
    }
    Ok(())
}

async fn follow(registry: Weak<Registry>, mut events: tokio::sync::broadcast::Receiver<StoreEvent>) {
    use cityhub_storage::Heard;
    loop {
        let event = cityhub_storage::heard(events.recv().await);
        let Some(registry) = registry.upgrade() else { return };
        let outcome = match event {
            Heard::Event(StoreEvent::Records {
                tenant,
                kind: kind @ (RecordKind::IngestService | RecordKind::IngestDevice),
            }) => registry.reload(&tenant, kind).await,
            Heard::Event(_) => Ok(()),
            Heard::Missed => registry.reload_all().await,
            Heard::Closed => return,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "the provisioning cache could not be reloaded; it is reloaded on the next change");
        }
    }
}
