//! Export of the embedded store for `cityhub migrate` ([`cityhub_storage::dump`]): each section
//! read straight from its tables on a read connection, in the section's order, one keyset page at
//! a time (the resume token is the last item's key as a JSON array), so a large store is copied
//! without holding it in memory and without OFFSET scans.
//!
//! Import is not offered: the embedded store is what a city migrates *from*.

use async_trait::async_trait;
use cityhub_storage::dump::{Dump, DumpPage, Dumped, Section};
use cityhub_storage::{
    DeliveryStatus, JournalEntry, OutboxItem, RecordKind, StoreError, StoredContext, StoredSubscription,
    SubscriptionKind,
};
use indexmap::IndexMap;
use ngsild_core::model::Attribute;
use ngsild_core::temporal::{Instance, TemporalEntity};
use ngsild_core::time::format_time;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, Row};
use serde_json::Value;

use crate::{backend, SqliteStore};

/// The instance ids the history gives (see `temporal.rs`).
const INSTANCE_PREFIX: &str = "urn:ngsi-ld:Instance:";

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("a stored document does not decode: {e}")))
}

/// The resume key of a page: the values of the section's order columns of its last item.
fn resume(after: Option<&str>, width: usize) -> Result<Option<Vec<SqlValue>>, StoreError> {
    let Some(after) = after else { return Ok(None) };
    let values: Vec<Value> = decode(after)?;
    if values.len() != width {
        return Err(StoreError::Backend(format!("the resume token {after} does not belong to this section")));
    }
    Ok(Some(
        values
            .into_iter()
            .map(|v| match v {
                Value::Number(n) => SqlValue::Integer(n.as_i64().unwrap_or_default()),
                Value::String(s) => SqlValue::Text(s),
                _ => SqlValue::Null,
            })
            .collect(),
    ))
}

fn token(values: Vec<Value>) -> String {
    Value::Array(values).to_string()
}

/// Runs `SELECT {columns} FROM {table}` in the order of `key` (its columns), after the resume key,
/// at most `limit` rows; each row mapped by `item`, whose key values make the next token.
fn page<F>(
    conn: &Connection,
    sql: &str,
    key: &[&str],
    after: Option<&str>,
    limit: usize,
    mut item: F,
) -> Result<DumpPage, StoreError>
where
    F: FnMut(&Row<'_>) -> Result<(Dumped, Vec<Value>), StoreError>,
{
    let start = resume(after, key.len())?;
    let cols = key.join(", ");
    let marks = vec!["?"; key.len()].join(", ");
    let filter = if start.is_some() { format!("WHERE ({cols}) > ({marks})") } else { String::new() };
    let sql = format!("SELECT * FROM ({sql}) {filter} ORDER BY {cols} LIMIT {limit}");
    let mut stmt = conn.prepare(&sql).map_err(backend)?;
    let mut rows = stmt.query(params_from_iter(start.unwrap_or_default())).map_err(backend)?;
    let mut out = DumpPage::default();
    let mut last = None;
    while let Some(row) = rows.next().map_err(backend)? {
        let (dumped, key) = item(row)?;
        out.items.push(dumped);
        last = Some(key);
    }
    if out.items.len() == limit {
        out.next = last.map(token);
    }
    Ok(out)
}

fn text(row: &Row<'_>, index: usize) -> Result<String, StoreError> {
    row.get(index).map_err(backend)
}

fn opt_text(row: &Row<'_>, index: usize) -> Result<Option<String>, StoreError> {
    row.get(index).map_err(backend)
}

fn int(row: &Row<'_>, index: usize) -> Result<i64, StoreError> {
    row.get(index).map_err(backend)
}

fn subscription_kind(name: &str) -> Result<SubscriptionKind, StoreError> {
    SubscriptionKind::parse(name).ok_or_else(|| StoreError::Backend(format!("unknown subscription kind {name:?}")))
}

fn record_kind(name: &str) -> Result<RecordKind, StoreError> {
    RecordKind::parse(name).ok_or_else(|| StoreError::Backend(format!("unknown record kind {name:?}")))
}

/// The whole history of one entity: its head and every instance of each series, oldest first.
fn history(conn: &Connection, tenant: &str, row: &Row<'_>) -> Result<TemporalEntity, StoreError> {
    let id = text(row, 1)?;
    let mut entity = TemporalEntity {
        id: id.clone(),
        types: decode(&text(row, 2)?)?,
        scope: decode(&text(row, 3)?)?,
        created_at: Some(text(row, 4)?),
        modified_at: Some(text(row, 5)?),
        deleted_at: opt_text(row, 6)?,
        ..Default::default()
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.attr, h.doc, h.seq, h.legacy_instance_id, h.t_deleted
             FROM attr_series s JOIN attr_history h ON h.sid = s.sid
             WHERE s.tenant = ?1 AND s.entity_id = ?2 ORDER BY s.sid, h.seq",
        )
        .map_err(backend)?;
    let mut rows = stmt.query(rusqlite::params![tenant, id]).map_err(backend)?;
    let mut attrs: IndexMap<String, Vec<Instance>> = IndexMap::new();
    while let Some(r) = rows.next().map_err(backend)? {
        let attribute: Attribute = decode(&text(r, 1)?)?;
        let seq = int(r, 2)?;
        let instance_id = opt_text(r, 3)?.unwrap_or_else(|| format!("{INSTANCE_PREFIX}{seq}"));
        let deleted: Option<i64> = r.get(4).map_err(backend)?;
        let deleted_at = deleted.and_then(ngsild_core::time::from_micros).map(format_time);
        attrs.entry(text(r, 0)?).or_default().push(Instance { attribute, instance_id, deleted_at });
    }
    entity.attrs = attrs;
    Ok(entity)
}

fn export(conn: &Connection, section: Section, after: Option<&str>, limit: usize) -> Result<DumpPage, StoreError> {
    let limit = limit.max(1);
    match section {
        Section::Tenants => page(conn, "SELECT name FROM tenants", &["name"], after, limit, |r| {
            let name = text(r, 0)?;
            Ok((Dumped::Tenant(name.clone()), vec![name.into()]))
        }),
        Section::Contexts => page(
            conn,
            "SELECT id, kind, url, document, created_at, last_used_at, hits, tenant FROM contexts",
            &["id"],
            after,
            limit,
            |r| {
                let context = StoredContext {
                    id: text(r, 0)?,
                    kind: text(r, 1)?,
                    url: text(r, 2)?,
                    document: decode(&text(r, 3)?)?,
                    created_at: text(r, 4)?,
                    last_used_at: opt_text(r, 5)?,
                    number_of_hits: int(r, 6)?.max(0) as u64,
                    tenant: text(r, 7)?,
                };
                let key = vec![context.id.clone().into()];
                Ok((Dumped::Context(context), key))
            },
        ),
        Section::Entities => page(conn, "SELECT tenant, id, doc FROM entities", &["tenant", "id"], after, limit, |r| {
            let (tenant, id) = (text(r, 0)?, text(r, 1)?);
            let entity = decode(&text(r, 2)?)?;
            Ok((Dumped::Entity { tenant: tenant.clone(), entity }, vec![tenant.into(), id.into()]))
        }),
        Section::History => page(
            conn,
            "SELECT tenant, id, types, scope, created_at, modified_at, deleted_at FROM temporal_entities",
            &["tenant", "id"],
            after,
            limit,
            |r| {
                let tenant = text(r, 0)?;
                let history = history(conn, &tenant, r)?;
                let key = vec![tenant.clone().into(), history.id.clone().into()];
                Ok((Dumped::History { tenant, history }, key))
            },
        ),
        Section::Subscriptions => page(
            conn,
            "SELECT tenant, kind, id, doc, times_sent, times_failed, dropped, last_notification, last_success,
                    last_failure FROM subscriptions",
            &["tenant", "kind", "id"],
            after,
            limit,
            |r| {
                let sub = StoredSubscription {
                    tenant: text(r, 0)?,
                    kind: subscription_kind(&text(r, 1)?)?,
                    id: text(r, 2)?,
                    doc: decode(&text(r, 3)?)?,
                    status: DeliveryStatus {
                        times_sent: int(r, 4)?.max(0) as u64,
                        times_failed: int(r, 5)?.max(0) as u64,
                        dropped: int(r, 6)?.max(0) as u64,
                        last_notification: opt_text(r, 7)?,
                        last_success: opt_text(r, 8)?,
                        last_failure: opt_text(r, 9)?,
                    },
                };
                let key = vec![sub.tenant.clone().into(), sub.kind.name().into(), sub.id.clone().into()];
                Ok((Dumped::Subscription(sub), key))
            },
        ),
        Section::Records => page(
            conn,
            "SELECT tenant, kind, rowid AS position, id, doc FROM records",
            &["tenant", "kind", "position"],
            after,
            limit,
            |r| {
                let (tenant, kind_name, position) = (text(r, 0)?, text(r, 1)?, int(r, 2)?);
                let item = Dumped::Record {
                    tenant: tenant.clone(),
                    kind: record_kind(&kind_name)?,
                    id: text(r, 3)?,
                    doc: decode(&text(r, 4)?)?,
                };
                Ok((item, vec![tenant.into(), kind_name.into(), position.into()]))
            },
        ),
        Section::Outbox => page(
            conn,
            "SELECT id, endpoint, kind, tenant, subscription_id, message, created_at, attempts FROM outbox",
            &["id"],
            after,
            limit,
            |r| {
                let item = OutboxItem {
                    id: int(r, 0)? as u64,
                    endpoint: text(r, 1)?,
                    kind: subscription_kind(&text(r, 2)?)?,
                    tenant: text(r, 3)?,
                    subscription_id: text(r, 4)?,
                    message: decode(&text(r, 5)?)?,
                    created_at: text(r, 6)?,
                    attempts: int(r, 7)?.clamp(0, i64::from(u32::MAX)) as u32,
                };
                let key = vec![(item.id as i64).into()];
                Ok((Dumped::Outbox(item), key))
            },
        ),
        Section::Journal => page(
            conn,
            "SELECT seq, tenant, before, after, at FROM journal
             WHERE seq > COALESCE((SELECT value FROM notifier_state WHERE name = 'cursor'), 0)",
            &["seq"],
            after,
            limit,
            |r| {
                let entity = |i| -> Result<_, StoreError> { opt_text(r, i)?.as_deref().map(decode).transpose() };
                let entry = JournalEntry {
                    seq: int(r, 0)? as u64,
                    tenant: text(r, 1)?,
                    before: entity(2)?,
                    after: entity(3)?,
                    at: text(r, 4)?,
                };
                let key = vec![(entry.seq as i64).into()];
                Ok((Dumped::Journal(entry), key))
            },
        ),
    }
}

fn count(conn: &Connection, section: Section) -> Result<u64, StoreError> {
    let sql = match section {
        Section::Tenants => "SELECT COUNT(*) FROM tenants",
        Section::Contexts => "SELECT COUNT(*) FROM contexts",
        Section::Entities => "SELECT COUNT(*) FROM entities",
        Section::History => "SELECT COUNT(*) FROM temporal_entities",
        Section::Subscriptions => "SELECT COUNT(*) FROM subscriptions",
        Section::Records => "SELECT COUNT(*) FROM records",
        Section::Outbox => "SELECT COUNT(*) FROM outbox",
        Section::Journal => {
            "SELECT COUNT(*) FROM journal
             WHERE seq > COALESCE((SELECT value FROM notifier_state WHERE name = 'cursor'), 0)"
        }
    };
    let n: i64 = conn.query_row(sql, [], |r| r.get(0)).map_err(backend)?;
    Ok(n.max(0) as u64)
}

#[async_trait]
impl Dump for SqliteStore {
    async fn dump_count(&self, section: Section) -> Result<u64, StoreError> {
        self.read(move |conn| count(conn, section)).await
    }

    async fn export(&self, section: Section, after: Option<String>, limit: usize) -> Result<DumpPage, StoreError> {
        self.read(move |conn| export(conn, section, after.as_deref(), limit)).await
    }

    async fn import(&self, _items: Vec<Dumped>) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "the embedded store cannot be imported into: cityhub migrate copies it to PostgreSQL".into(),
        ))
    }
}

#[cfg(test)]
#[allow(
    clippy::useless_conversion,
    reason = "`Some(e).into()` is a Modification both before and after the seam gave modifiers a `Modified`"
)]
mod tests {
    use cityhub_storage::{modify_one, NotifierCommit, Store};
    use ngsild_core::model::AttributeKind;
    use ngsild_core::Entity;
    use serde_json::json;

    use super::*;

    fn entity(id: &str, n: i64) -> Entity {
        let mut e = Entity::new(id, vec!["https://example.org/T".into()]);
        e.attrs.insert("https://example.org/n".into(), vec![Attribute::new(AttributeKind::Property, json!(n))]);
        e
    }

    async fn all(store: &SqliteStore, section: Section) -> Vec<Dumped> {
        let (mut items, mut after) = (Vec::new(), None);
        // Pages of one item: every item is reached through a resume token.
        for _ in 0..100 {
            let page = store.export(section, after.take(), 1).await.unwrap();
            items.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(items.len() as u64, store.dump_count(section).await.unwrap(), "{section:?}");
        items
    }

    #[tokio::test]
    async fn every_section_exports_in_its_order_through_resume_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .create_subscription(SubscriptionKind::Entity, "t1", "urn:s:1", json!({"id": "urn:s:1"}))
            .await
            .unwrap()
            .unwrap();
        for (tenant, id, n) in [("t1", "urn:e:2", 1), ("", "urn:e:9", 2), ("t1", "urn:e:1", 3)] {
            let e = entity(id, n);
            modify_one(&store, tenant, id, Box::new(move |_| Ok(Some(e).into()))).await.unwrap();
        }
        let e = entity("urn:e:1", 4);
        modify_one(&store, "t1", "urn:e:1", Box::new(move |_| Ok(Some(e).into()))).await.unwrap();
        let message = json!({"body": {"id": "n1"}});
        let item = OutboxItem {
            id: 0,
            endpoint: "http://127.0.0.1:9/n".into(),
            kind: SubscriptionKind::Entity,
            tenant: "t1".into(),
            subscription_id: "urn:s:1".into(),
            message: message.clone(),
            created_at: "2026-01-01T00:00:00Z".into(),
            attempts: 0,
        };
        let commit = NotifierCommit { notifications: vec![item], outbox_cap: 10, ..Default::default() };
        store.commit_notifications(commit).await.unwrap();
        store
            .write(|conn, _| {
                conn.execute_batch(
                    "INSERT INTO records (tenant, kind, id, doc) VALUES ('t1', 'csourceRegistration', 'urn:r:2', '{\"n\":2}');
                     INSERT INTO records (tenant, kind, id, doc) VALUES ('t1', 'csourceRegistration', 'urn:r:1', '{\"n\":1}');",
                )
            })
            .await
            .unwrap();

        assert_eq!(all(&store, Section::Tenants).await, vec![Dumped::Tenant("t1".into())]);
        let ids = |items: Vec<Dumped>| -> Vec<String> {
            items
                .into_iter()
                .map(|d| match d {
                    Dumped::Entity { tenant, entity } => format!("{tenant}/{}", entity.id),
                    Dumped::History { tenant, history } => format!("{tenant}/{}", history.id),
                    Dumped::Record { id, .. } => id,
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(ids(all(&store, Section::Entities).await), ["/urn:e:9", "t1/urn:e:1", "t1/urn:e:2"]);
        let histories = all(&store, Section::History).await;
        let Dumped::History { history, .. } = &histories[1] else { panic!("{histories:?}") };
        let instances = &history.attrs["https://example.org/n"];
        // Both instances of urn:e:1, oldest first, with the ids the temporal API shows.
        assert_eq!(instances.iter().map(|i| i.attribute.value.clone()).collect::<Vec<_>>(), [json!(3), json!(4)]);
        assert!(instances.iter().all(|i| i.instance_id.starts_with(INSTANCE_PREFIX)), "{instances:?}");
        assert_eq!(ids(histories), ["/urn:e:9", "t1/urn:e:1", "t1/urn:e:2"]);
        // Records in the order first written, not by id.
        assert_eq!(ids(all(&store, Section::Records).await), ["urn:r:2", "urn:r:1"]);
        let subs = all(&store, Section::Subscriptions).await;
        assert!(matches!(&subs[..], [Dumped::Subscription(s)] if s.id == "urn:s:1" && s.tenant == "t1"), "{subs:?}");
        let outbox = all(&store, Section::Outbox).await;
        assert!(matches!(&outbox[..], [Dumped::Outbox(o)] if o.message == message), "{outbox:?}");
        // The three changes of tenant t1 after its subscription, none consumed yet.
        let journal = all(&store, Section::Journal).await;
        assert_eq!(journal.len(), 3, "{journal:?}");
        assert!(store.import(journal).await.is_err());
    }
}
