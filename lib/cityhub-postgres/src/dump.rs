//! Export and import of the whole store for `cityhub migrate` ([`cityhub_storage::dump`]).
//!
//! Export reads each section in its order (keyset pages; the resume token is the last item's key
//! as a JSON array). Import writes one call's items in one transaction: entities through
//! `rows::save` (so their type, facet and geometry indexes are built as for any write),
//! histories as rows of `temporal_entities`, `attr_series` and `attr_history` whose instances keep
//! the ids they had in the source store (`legacy_instance_id`), subscriptions with their status,
//! records in order, outbox rows in order (new ids), and journal entries not yet consumed (new
//! sequence numbers, under the journal lock as every journal writer).

use async_trait::async_trait;
use cityhub_storage::dump::{Dump, DumpPage, Dumped, Section};
use cityhub_storage::{
    JournalEntry, OutboxItem, RecordKind, StoreError, StoredContext, SubscriptionKind, TemporalEntity,
};
use indexmap::IndexMap;
use ngsild_core::model::Attribute;
use ngsild_core::temporal::Instance;
use ngsild_core::time::{format_time, from_micros, parse_datetime};
use ngsild_core::Entity;
use serde_json::Value;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use crate::{OrBackend, PostgresStore, Tx as Transaction};

const INSTANCE_PREFIX: &str = "urn:ngsi-ld:Instance:";

fn micros(t: Option<&str>) -> Option<i64> {
    t.and_then(parse_datetime).map(|t| t.timestamp_micros())
}

fn bad(why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(why.to_string())
}

/// The resume key of a section: the values of its order columns, as text or integers.
enum Key {
    Text(String),
    Int(i64),
}

fn resume(after: Option<&str>, width: usize) -> Result<Option<Vec<Key>>, StoreError> {
    let Some(after) = after else { return Ok(None) };
    let values: Vec<Value> = serde_json::from_str(after).or_backend()?;
    if values.len() != width {
        return Err(bad(format!("the resume token {after} does not belong to this section")));
    }
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(Key::Text(s)),
            Value::Number(n) => n.as_i64().map(Key::Int).ok_or_else(|| bad("a resume key is not an integer")),
            other => Err(bad(format!("a resume key {other} is neither text nor integer"))),
        })
        .map(|k| k.map(Some))
        .collect::<Result<Vec<_>, _>>()
        .map(|keys| Some(keys.into_iter().flatten().collect()))
}

/// One page of `SELECT * FROM ({sql})` ordered by `key`, after the resume key.
async fn rows(
    store: &PostgresStore,
    sql: &str,
    key: &[&str],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    let start = resume(after, key.len())?;
    let cols = key.join(", ");
    let (filter, params): (String, Vec<Box<dyn ToSql + Sync + Send>>) = match start {
        None => (String::new(), Vec::new()),
        Some(keys) => {
            let marks: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| match k {
                    Key::Text(_) => format!("${}::text COLLATE \"C\"", i + 1),
                    Key::Int(_) => format!("${}::int8", i + 1),
                })
                .collect();
            let params = keys
                .into_iter()
                .map(|k| -> Box<dyn ToSql + Sync + Send> {
                    match k {
                        Key::Text(s) => Box::new(s),
                        Key::Int(n) => Box::new(n),
                    }
                })
                .collect();
            (format!("WHERE ({cols}) > ({})", marks.join(", ")), params)
        }
    };
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let client = store.client().await?;
    client
        .query(&format!("SELECT * FROM ({sql}) AS s {filter} ORDER BY {cols} LIMIT {limit}"), &refs)
        .await
        .or_backend()
}

fn page(items: Vec<(Dumped, Vec<Value>)>, limit: usize) -> DumpPage {
    let full = items.len() == limit;
    let mut out = DumpPage::default();
    let mut last = None;
    for (item, key) in items {
        out.items.push(item);
        last = Some(key);
    }
    if full {
        out.next = last.map(|k| Value::Array(k).to_string());
    }
    out
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).or_backend()
}

fn subscription_kind(name: &str) -> Result<SubscriptionKind, StoreError> {
    SubscriptionKind::parse(name).ok_or_else(|| bad(format!("unknown subscription kind {name:?}")))
}

fn record_kind(name: &str) -> Result<RecordKind, StoreError> {
    RecordKind::parse(name).ok_or_else(|| bad(format!("unknown record kind {name:?}")))
}

async fn history(store: &PostgresStore, tenant: &str, row: &Row) -> Result<TemporalEntity, StoreError> {
    let id: String = get(row, 1)?;
    let mut entity = TemporalEntity {
        id: id.clone(),
        types: get::<Json<Vec<String>>>(row, 2)?.0,
        scope: get::<Json<Vec<String>>>(row, 3)?.0,
        created_at: Some(get(row, 4)?),
        modified_at: Some(get(row, 5)?),
        deleted_at: get(row, 6)?,
        ..Default::default()
    };
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT s.attr, h.doc, h.seq, h.legacy_instance_id, h.t_deleted
             FROM attr_series s JOIN attr_history h ON h.tenant = s.tenant AND h.sid = s.sid
             WHERE s.tenant = $1 AND s.entity_id = $2 ORDER BY s.sid, h.seq",
            &[&tenant, &id],
        )
        .await
        .or_backend()?;
    let mut attrs: IndexMap<String, Vec<Instance>> = IndexMap::new();
    for r in &rows {
        let attribute: Attribute = get::<Json<Attribute>>(r, 1)?.0;
        let seq: i64 = get(r, 2)?;
        let instance_id = get::<Option<String>>(r, 3)?.unwrap_or_else(|| format!("{INSTANCE_PREFIX}{seq}"));
        let deleted_at = get::<Option<i64>>(r, 4)?.and_then(from_micros).map(format_time);
        attrs.entry(get(r, 0)?).or_default().push(Instance { attribute, instance_id, deleted_at });
    }
    entity.attrs = attrs;
    Ok(entity)
}

async fn export(
    store: &PostgresStore,
    section: Section,
    after: Option<&str>,
    limit: usize,
) -> Result<DumpPage, StoreError> {
    let limit = limit.max(1);
    let mut items = Vec::new();
    match section {
        Section::Tenants => {
            for r in rows(store, "SELECT tenant FROM tenants", &["tenant"], after, limit).await? {
                let name: String = get(&r, 0)?;
                items.push((Dumped::Tenant(name.clone()), vec![name.into()]));
            }
        }
        Section::Contexts => {
            let sql = "SELECT id, kind, url, document, created_at, last_used_at, hits, tenant FROM contexts";
            for r in rows(store, sql, &["id"], after, limit).await? {
                let context = StoredContext {
                    id: get(&r, 0)?,
                    kind: get(&r, 1)?,
                    url: get(&r, 2)?,
                    document: get(&r, 3)?,
                    created_at: get(&r, 4)?,
                    last_used_at: get(&r, 5)?,
                    number_of_hits: get::<i64>(&r, 6)?.max(0) as u64,
                    tenant: get(&r, 7)?,
                };
                let key = vec![context.id.clone().into()];
                items.push((Dumped::Context(context), key));
            }
        }
        Section::Entities => {
            for r in rows(store, "SELECT tenant, id, doc FROM entities", &["tenant", "id"], after, limit).await? {
                let (tenant, id): (String, String) = (get(&r, 0)?, get(&r, 1)?);
                let entity: Entity = get::<Json<Entity>>(&r, 2)?.0;
                items.push((Dumped::Entity { tenant: tenant.clone(), entity }, vec![tenant.into(), id.into()]));
            }
        }
        Section::History => {
            let sql = "SELECT tenant, id, types, scope, created_at, modified_at, deleted_at FROM temporal_entities";
            for r in rows(store, sql, &["tenant", "id"], after, limit).await? {
                let tenant: String = get(&r, 0)?;
                let history = history(store, &tenant, &r).await?;
                let key = vec![tenant.clone().into(), history.id.clone().into()];
                items.push((Dumped::History { tenant, history }, key));
            }
        }
        Section::Subscriptions => {
            let sql = format!("SELECT {} FROM subscriptions", crate::subscriptions::COLUMNS);
            for r in rows(store, &sql, &["tenant", "kind", "id"], after, limit).await? {
                let sub = crate::subscriptions::from_row(&r)?;
                let key = vec![sub.tenant.clone().into(), sub.kind.name().into(), sub.id.clone().into()];
                items.push((Dumped::Subscription(sub), key));
            }
        }
        Section::Records => {
            let sql = "SELECT tenant, kind, position, id, doc FROM records";
            for r in rows(store, sql, &["tenant", "kind", "position"], after, limit).await? {
                let (tenant, kind, position): (String, String, i64) = (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
                let item = Dumped::Record {
                    tenant: tenant.clone(),
                    kind: record_kind(&kind)?,
                    id: get(&r, 3)?,
                    doc: get::<Json<Value>>(&r, 4)?.0,
                };
                items.push((item, vec![tenant.into(), kind.into(), position.into()]));
            }
        }
        Section::Outbox => {
            let sql = format!("SELECT {} FROM outbox", crate::feed::OUTBOX_COLUMNS);
            for r in rows(store, &sql, &["id"], after, limit).await? {
                let kind: String = get(&r, 2)?;
                let item = OutboxItem {
                    id: get::<i64>(&r, 0)? as u64,
                    endpoint: get(&r, 1)?,
                    kind: subscription_kind(&kind)?,
                    tenant: get(&r, 3)?,
                    subscription_id: get(&r, 4)?,
                    message: get::<Json<Value>>(&r, 5)?.0,
                    created_at: get(&r, 6)?,
                    attempts: get::<i32>(&r, 7)?.max(0) as u32,
                };
                let key = vec![(item.id as i64).into()];
                items.push((Dumped::Outbox(item), key));
            }
        }
        Section::Journal => {
            let sql = "SELECT seq, tenant, before, after, at FROM journal
                       WHERE seq > (SELECT value FROM notifier_state WHERE name = 'cursor')";
            for r in rows(store, sql, &["seq"], after, limit).await? {
                let entry = JournalEntry {
                    seq: get::<i64>(&r, 0)? as u64,
                    tenant: get(&r, 1)?,
                    before: get::<Option<Json<Entity>>>(&r, 2)?.map(|j| j.0),
                    after: get::<Option<Json<Entity>>>(&r, 3)?.map(|j| j.0),
                    at: get(&r, 4)?,
                };
                let key = vec![(entry.seq as i64).into()];
                items.push((Dumped::Journal(entry), key));
            }
        }
    }
    Ok(page(items, limit))
}

async fn count(store: &PostgresStore, section: Section) -> Result<u64, StoreError> {
    let sql = match section {
        Section::Tenants => "SELECT count(*) FROM tenants",
        Section::Contexts => "SELECT count(*) FROM contexts",
        Section::Entities => "SELECT count(*) FROM entities",
        Section::History => "SELECT count(*) FROM temporal_entities",
        Section::Subscriptions => "SELECT count(*) FROM subscriptions",
        Section::Records => "SELECT count(*) FROM records",
        Section::Outbox => "SELECT count(*) FROM outbox",
        Section::Journal => {
            "SELECT count(*) FROM journal WHERE seq > (SELECT value FROM notifier_state WHERE name = 'cursor')"
        }
    };
    let client = store.client().await?;
    let n: i64 = client.query_one(sql, &[]).await.or_backend()?.get(0);
    Ok(n.max(0) as u64)
}

/// Writes one entity's history: its head, its types, and every instance in order, with the ids
/// the source gave them.
async fn import_history(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    tenant: &str,
    history: &TemporalEntity,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO temporal_entities (tenant, id, types, scope, created_at, modified_at, deleted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types, scope = excluded.scope,
             created_at = excluded.created_at, modified_at = excluded.modified_at, deleted_at = excluded.deleted_at",
        &[
            &tenant,
            &history.id,
            &Json(&history.types),
            &Json(&history.scope),
            &history.created_at.clone().unwrap_or_default(),
            &history.modified_at.clone().unwrap_or_default(),
            &history.deleted_at,
        ],
    )
    .await
    .or_backend()?;
    tx.execute(
        "INSERT INTO temporal_types (tenant, type, id) SELECT $1, t, $2 FROM unnest($3::text[]) AS t ON CONFLICT DO NOTHING",
        &[&tenant, &history.id, &history.types],
    )
    .await
    .or_backend()?;
    let fallback = chrono::Utc::now().timestamp_micros();
    let mut times = Vec::new();
    for (name, instances) in &history.attrs {
        let sid: i64 = tx
            .query_one(
                "INSERT INTO attr_series (tenant, entity_id, attr) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, entity_id, attr) DO UPDATE SET attr = excluded.attr RETURNING sid",
                &[&tenant, &history.id, name],
            )
            .await
            .or_backend()?
            .get(0);
        let (mut part, mut dataset, mut doc, mut val, mut num) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut observed, mut created, mut modified, mut deleted, mut legacy) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for instance in instances {
            let attr = &instance.attribute;
            let t_observed = micros(attr.observed_at.as_deref());
            let t_created = micros(attr.created_at.as_deref()).unwrap_or(fallback);
            part.push(t_observed.unwrap_or(t_created));
            dataset.push(attr.dataset_id.clone());
            doc.push(serde_json::to_string(attr).or_backend()?);
            val.push(attr.value.to_string());
            num.push(match &attr.value {
                Value::Number(n) => n.as_f64(),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                _ => None,
            });
            observed.push(t_observed);
            created.push(t_created);
            modified.push(micros(attr.modified_at.as_deref()).unwrap_or(fallback));
            deleted.push(micros(instance.deleted_at.as_deref()));
            legacy.push(instance.instance_id.clone());
        }
        times.extend(part.iter().copied());
        crate::temporal::ensure_partitions(store, tx, &times).await?;
        tx.execute(
            "INSERT INTO attr_history (tenant, sid, t_part, dataset_id, doc, val, num, t_observed, t_created, t_modified,
                                       t_deleted, legacy_instance_id)
             SELECT $1, $2, u.part, u.ds, u.doc::json, u.val, u.num, u.tobs, u.tcre, u.tmod, u.tdel, u.legacy
             FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::int8[], $9::int8[],
                         $10::int8[], $11::int8[], $12::text[])
                  WITH ORDINALITY AS u(part, ds, doc, val, num, tobs, tcre, tmod, tdel, legacy, n)
             ORDER BY u.n",
            &[&tenant, &sid, &part, &dataset, &doc, &val, &num, &observed, &created, &modified, &deleted, &legacy],
        )
        .await
        .or_backend()?;
        times.clear();
    }
    Ok(())
}

async fn import(store: &PostgresStore, items: Vec<Dumped>) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    for item in &items {
        match item {
            Dumped::Tenant(tenant) => {
                tx.execute("INSERT INTO tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING", &[tenant])
                    .await
                    .or_backend()?;
            }
            Dumped::Context(c) => {
                let hits = i64::try_from(c.number_of_hits).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO contexts (id, kind, url, document, created_at, last_used_at, hits, tenant)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, url = excluded.url,
                         document = excluded.document, created_at = excluded.created_at,
                         last_used_at = excluded.last_used_at, hits = excluded.hits, tenant = excluded.tenant",
                    &[&c.id, &c.kind, &c.url, &c.document, &c.created_at, &c.last_used_at, &hits, &c.tenant],
                )
                .await
                .or_backend()?;
            }
            Dumped::Entity { tenant, entity } => {
                crate::rows::lock(&tx, tenant, &[entity.id.as_str()]).await?;
                let before = crate::rows::load_for_update(&tx, tenant, &[entity.id.as_str()]).await?;
                crate::rows::save(&tx, tenant, &[(entity.id.as_str(), before.get(&entity.id), Some(entity))]).await?;
            }
            Dumped::History { tenant, history } => import_history(store, &tx, tenant, history).await?,
            Dumped::Subscription(s) => {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO subscriptions (kind, tenant, id, doc, times_sent, times_failed, dropped,
                                                last_notification, last_success, last_failure)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (tenant, kind, id) DO UPDATE SET doc = excluded.doc, times_sent = excluded.times_sent,
                         times_failed = excluded.times_failed, dropped = excluded.dropped,
                         last_notification = excluded.last_notification, last_success = excluded.last_success,
                         last_failure = excluded.last_failure",
                    &[
                        &s.kind.name(),
                        &s.tenant,
                        &s.id,
                        &Json(&s.doc),
                        &count(s.status.times_sent),
                        &count(s.status.times_failed),
                        &count(s.status.dropped),
                        &s.status.last_notification,
                        &s.status.last_success,
                        &s.status.last_failure,
                    ],
                )
                .await
                .or_backend()?;
            }
            Dumped::Record { tenant, kind, id, doc } => {
                tx.execute(
                    "INSERT INTO records (tenant, kind, id, doc) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, kind, id) DO UPDATE SET doc = excluded.doc",
                    &[tenant, &kind.name(), id, &Json(doc)],
                )
                .await
                .or_backend()?;
            }
            Dumped::Outbox(o) => {
                tx.execute(
                    "INSERT INTO outbox (tenant, endpoint, kind, subscription_id, message, created_at, attempts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &o.tenant,
                        &o.endpoint,
                        &o.kind.name(),
                        &o.subscription_id,
                        &Json(&o.message),
                        &o.created_at,
                        &i32::try_from(o.attempts).unwrap_or(i32::MAX),
                    ],
                )
                .await
                .or_backend()?;
            }
            Dumped::Journal(entry) => {
                let before = [entry.before.as_ref().map(Json)];
                let after = [entry.after.as_ref().map(Json)];
                crate::feed::append_journal(&tx, &entry.tenant, &before, &after, &[entry.at.as_str()]).await?;
            }
        }
    }
    tx.commit().await.or_backend()
}

#[async_trait]
impl Dump for PostgresStore {
    async fn dump_count(&self, section: Section) -> Result<u64, StoreError> {
        count(self, section).await
    }

    async fn export(&self, section: Section, after: Option<String>, limit: usize) -> Result<DumpPage, StoreError> {
        export(self, section, after.as_deref(), limit).await
    }

    async fn import(&self, items: Vec<Dumped>) -> Result<(), StoreError> {
        import(self, items).await
    }
}
