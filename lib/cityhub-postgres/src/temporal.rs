//! The history of entities: every attribute instance ever written (`attr_history`, partitioned by
//! month), the temporal representation of each entity (`temporal_entities`, `temporal_types`), the
//! temporal writes and queries. The NGSI-LD rules are `ngsild_core::history`'s (which instances a
//! change records, how temporal instances fold into the entity, the aggregation accumulator):
//! this module only stores, indexes and streams rows into them.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Datelike;
use cityhub_storage::{Change, StoreError, TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite};
use ngsild_core::history;
use ngsild_core::model::Attribute;
use ngsild_core::temporal::{AggrMethod, AggregateSeries, Instance, TemporalEntity, TimeProperty};
use ngsild_core::time::{datetime_of_micros, format_time, micros, micros_of, now};
use ngsild_core::{Entity, NgsiLdError};
use tokio_postgres::types::{Json, ToSql};

use crate::pipeline::Batch;
use crate::{OrBackend, PostgresStore, Tx as Transaction};

type Params<'a> = Vec<Box<dyn ToSql + Sync + Send + 'a>>;

fn refs<'a>(params: &'a Params<'_>) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn bad(why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(why.to_string())
}

fn column(property: TimeProperty) -> &'static str {
    match property {
        TimeProperty::ObservedAt => "t_observed",
        TimeProperty::CreatedAt => "t_created",
        TimeProperty::ModifiedAt => "t_modified",
        TimeProperty::DeletedAt => "t_deleted",
    }
}

// ---- partitions -------------------------------------------------------------------------------

/// Months (year * 12 + month - 1) get a partition of their own from this many back...
const PARTITION_MONTHS_BACK: i64 = 120;
/// ...to this many ahead of the current month; instances of other times go to the default one.
const PARTITION_MONTHS_AHEAD: i64 = 12;
/// Serialises partition creation across hubs ("cityprt").
const PARTITION_LOCK: i64 = 0x0063_6974_7970_7274;

fn month_of(t: i64) -> Option<i64> {
    let d = chrono::DateTime::from_timestamp_micros(t)?;
    Some(i64::from(d.year()) * 12 + i64::from(d.month0()))
}

fn month_start(month: i64) -> Option<i64> {
    let year = i32::try_from(month.div_euclid(12)).ok()?;
    let month0 = u32::try_from(month.rem_euclid(12)).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Inside `tx`, before it reads or writes the history: makes sure the months of `times` that get
/// a partition have one. A partition that cannot be made (its rows already in the default one)
/// leaves them there.
pub(crate) async fn ensure_partitions(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    times: &[i64],
) -> Result<(), StoreError> {
    let current = month_of(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
    let wanted: BTreeSet<i64> = times
        .iter()
        .filter_map(|t| month_of(*t))
        .filter(|m| (current - PARTITION_MONTHS_BACK..=current + PARTITION_MONTHS_AHEAD).contains(m))
        .filter(|m| !store.partition_known(*m))
        .collect();
    for month in wanted {
        let (Some(from), Some(to)) = (month_start(month), month_start(month + 1)) else { continue };
        let name = format!("attr_history_p{:04}{:02}", month.div_euclid(12), month.rem_euclid(12) + 1);
        let exists: Option<String> = tx.query_one("SELECT to_regclass($1)::text", &[&name]).await.or_backend()?.get(0);
        if exists.is_none() {
            tx.batch_execute("SAVEPOINT cityhub_partition").await.or_backend()?;
            let made = async {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK]).await?;
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF attr_history FOR VALUES FROM ({from}) TO ({to})"
                ))
                .await
            }
            .await;
            match made {
                Ok(()) => tx.batch_execute("RELEASE SAVEPOINT cityhub_partition").await.or_backend()?,
                Err(e) => {
                    tracing::warn!(partition = %name, error = %crate::describe(&e), "history partition not created; its instances stay in the default partition");
                    tx.batch_execute("ROLLBACK TO SAVEPOINT cityhub_partition").await.or_backend()?;
                    continue;
                }
            }
        }
        store.remember_partition(month);
    }
    Ok(())
}

// ---- writing instances ------------------------------------------------------------------------

/// One instance's row: its series (entity and attribute), its document and the columns
/// `ngsild_core::history` says it keeps.
struct InstanceRow {
    entity_id: String,
    attr: String,
    doc: String,
    cols: history::InstanceColumns,
}

impl InstanceRow {
    fn of(entity_id: &str, name: &str, attr: &Attribute, deleted_at: Option<&str>) -> Result<InstanceRow, StoreError> {
        let now = chrono::Utc::now().timestamp_micros();
        Ok(InstanceRow {
            entity_id: entity_id.to_owned(),
            attr: name.to_owned(),
            doc: serde_json::to_string(attr).or_backend()?,
            cols: history::InstanceColumns::of(attr, deleted_at, now),
        })
    }

    fn part(&self) -> i64 {
        self.cols.observed.unwrap_or(self.cols.created)
    }
}

async fn series(tx: &Transaction<'_>, tenant: &str, entity_id: &str, attr: &str) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT sid FROM attr_series WHERE tenant = $1 AND entity_id = $2 AND attr = $3",
            &[&tenant, &entity_id, &attr],
        )
        .await
        .or_backend()?
        .map(|r| r.get(0)))
}

/// Appends instances to the history (after `ensure_partitions` for their times).
async fn insert_instances(tx: &Transaction<'_>, tenant: &str, rows: Vec<InstanceRow>) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    let known = vec![None; rows.len()];
    insert_instances_into(&mut batch, tenant, rows, known);
    batch.run(tx).await.map(drop)
}

/// History rows with every series id known: no lookup in `attr_series` at all.
const INSERT_KNOWN_SQL: &str = "INSERT INTO attr_history (tenant, sid, t_part, dataset_id, doc, val, num, t_observed, t_created, t_modified, t_deleted)
     SELECT $1, u.sid, u.part, u.ds, u.doc::json, u.val, u.num, u.tobs, u.tcre, u.tmod, u.tdel
     FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::int8[], $9::int8[],
                 $10::int8[], $11::int8[]) WITH ORDINALITY AS u(sid, part, ds, doc, val, num, tobs, tcre, tmod, tdel, n)
     ORDER BY u.n";

/// History rows some of whose series ids are to be found (or made): answers (entity, attribute,
/// sid, this transaction's id) of each series it found or made, for `series::SeriesIds::learn`.
/// Existing series: one primary-key probe per pair (LATERAL, kept from being flattened by LIMIT):
/// a plain join let the planner hash the whole table instead, a scan of every series of the
/// tenant on every write (80 ms of a 200-entity upsert over 10k entities). Missing ones are
/// created (the entity lock keeps any other writer of them out). ORDINALITY keeps the order of
/// the rows in the order of their seq.
const INSERT_FINDING_SQL: &str = "WITH p AS (SELECT * FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS p(e, a, k)),
      f AS MATERIALIZED (
          SELECT p.k, s.sid FROM p CROSS JOIN LATERAL (
              SELECT s.sid FROM attr_series s WHERE s.tenant = $1 AND s.entity_id = p.e AND s.attr = p.a LIMIT 1) s),
      m AS (INSERT INTO attr_series (tenant, entity_id, attr)
            SELECT $1, p.e, p.a FROM p WHERE NOT EXISTS (SELECT 1 FROM f WHERE f.k = p.k) ORDER BY p.k
            RETURNING entity_id, attr, sid),
      s AS MATERIALIZED (SELECT f.k, f.sid FROM f
            UNION ALL SELECT p.k, m.sid FROM m JOIN p ON p.e = m.entity_id AND p.a = m.attr),
      h AS (INSERT INTO attr_history (tenant, sid, t_part, dataset_id, doc, val, num, t_observed, t_created, t_modified, t_deleted)
            SELECT $1, COALESCE(u.sid, s.sid), u.part, u.ds, u.doc::json, u.val, u.num, u.tobs, u.tcre, u.tmod, u.tdel
            FROM unnest($4::int8[], $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::int8[],
                        $12::int8[], $13::int8[], $14::int8[])
                 WITH ORDINALITY AS u(k, sid, part, ds, doc, val, num, tobs, tcre, tmod, tdel, n)
            LEFT JOIN s ON s.k = u.k
            ORDER BY u.n)
 SELECT p.e, p.a, s.sid, pg_current_xact_id()::text::bigint FROM s JOIN p ON p.k = s.k";

/// `insert_instances` as one statement added to `batch`; `known` holds the series id of each row
/// where this hub knows it (`series`). Needs no answer from an earlier statement, so it is
/// pipelined with the rest of the write. Answers the statement's place in the batch when it
/// returns series ids found or made.
fn insert_instances_into<'a>(
    batch: &mut Batch<'a>,
    tenant: &'a str,
    rows: Vec<InstanceRow>,
    known: Vec<Option<i64>>,
) -> Option<usize> {
    if rows.is_empty() {
        return None;
    }
    let all_known = known.iter().all(Option::is_some);
    // The distinct series to find, in (entity, attribute) order (the order new series get their
    // sid); each row names its series by position in them (1-based, as ORDINALITY counts), 0
    // when its id is known.
    let pairs: BTreeSet<(&str, &str)> = rows
        .iter()
        .zip(&known)
        .filter(|(_, k)| k.is_none())
        .map(|(r, _)| (r.entity_id.as_str(), r.attr.as_str()))
        .collect();
    let position: HashMap<(&str, &str), i64> =
        pairs.iter().enumerate().map(|(k, pair)| (*pair, i64::try_from(k).unwrap_or(i64::MAX) + 1)).collect();
    let series: Vec<i64> =
        rows.iter().map(|r| position.get(&(r.entity_id.as_str(), r.attr.as_str())).copied().unwrap_or(0)).collect();
    let (entity_ids, attrs): (Vec<String>, Vec<String>) =
        pairs.iter().map(|(e, a)| ((*e).to_owned(), (*a).to_owned())).unzip();
    drop(position);
    let part: Vec<i64> = rows.iter().map(InstanceRow::part).collect();
    let observed: Vec<Option<i64>> = rows.iter().map(|r| r.cols.observed).collect();
    let created: Vec<i64> = rows.iter().map(|r| r.cols.created).collect();
    let modified: Vec<i64> = rows.iter().map(|r| r.cols.modified).collect();
    let deleted: Vec<Option<i64>> = rows.iter().map(|r| r.cols.deleted).collect();
    let num: Vec<Option<f64>> = rows.iter().map(|r| r.cols.num).collect();
    let (mut dataset, mut doc, mut val) =
        (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    for r in rows {
        dataset.push(r.cols.dataset_id);
        doc.push(r.doc);
        val.push(r.cols.val);
    }
    let columns: Vec<crate::pipeline::Param<'a>> = vec![
        Box::new(part),
        Box::new(dataset),
        Box::new(doc),
        Box::new(val),
        Box::new(num),
        Box::new(observed),
        Box::new(created),
        Box::new(modified),
        Box::new(deleted),
    ];
    if all_known {
        let sids: Vec<i64> = known.into_iter().flatten().collect();
        let mut params: Vec<crate::pipeline::Param<'a>> = vec![Box::new(tenant), Box::new(sids)];
        params.extend(columns);
        batch.push(INSERT_KNOWN_SQL, params);
        return None;
    }
    let mut params: Vec<crate::pipeline::Param<'a>> =
        vec![Box::new(tenant), Box::new(entity_ids), Box::new(attrs), Box::new(series), Box::new(known)];
    params.extend(columns);
    Some(batch.push_rows(INSERT_FINDING_SQL, params))
}

/// The types of the temporal representation of these entities, for `touch_entities_into`.
async fn temporal_types(
    tx: &Transaction<'_>,
    tenant: &str,
    ids: &[&str],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    Ok(tx
        .query("SELECT id, types FROM temporal_entities WHERE tenant = $1 AND id = ANY($2)", &[&tenant, &ids])
        .await
        .or_backend()?
        .into_iter()
        .map(|r| (r.get(0), r.get::<_, Json<Vec<String>>>(1).0))
        .collect())
}

/// Creates or refreshes the temporal representation of these entities (None: it was deleted).
async fn touch_entities(
    tx: &Transaction<'_>,
    tenant: &str,
    states: &[(&str, Option<&Entity>)],
    now: &str,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
    let stored = temporal_types(tx, tenant, &ids).await?;
    let mut batch = Batch::default();
    touch_entities_into(&mut batch, tenant, states, &stored, now);
    batch.run(tx).await.map(drop)
}

/// `touch_entities` as statements added to `batch`; `stored` holds the types each entity's
/// temporal representation had (none: it had none).
fn touch_entities_into<'a>(
    batch: &mut Batch<'a>,
    tenant: &'a str,
    states: &[(&'a str, Option<&'a Entity>)],
    stored: &HashMap<String, Vec<String>>,
    now: &'a str,
) {
    let live: Vec<&Entity> = states.iter().filter_map(|(_, e)| *e).collect();
    if !live.is_empty() {
        let ids: Vec<&str> = live.iter().map(|e| e.id.as_str()).collect();
        let types: Vec<Json<&Vec<String>>> = live.iter().map(|e| Json(&e.types)).collect();
        let scopes: Vec<Json<&Vec<String>>> = live.iter().map(|e| Json(&e.scope)).collect();
        batch.push(
            "INSERT INTO temporal_entities (tenant, id, types, scope, created_at, modified_at, deleted_at)
             SELECT $1, u.id, u.types, u.scope, $5, $5, NULL FROM unnest($2::text[], $3::json[], $4::json[]) AS u(id, types, scope)
             ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types, scope = excluded.scope,
                 modified_at = excluded.modified_at, deleted_at = NULL",
            vec![Box::new(tenant), Box::new(ids), Box::new(types), Box::new(scopes), Box::new(now)],
        );
        // Most writes keep the types; rewriting the type index on each would double their work.
        let changed: Vec<&Entity> =
            live.iter().copied().filter(|e| stored.get(&e.id).is_none_or(|t| *t != e.types)).collect();
        if !changed.is_empty() {
            let ids: Vec<&str> = changed.iter().map(|e| e.id.as_str()).collect();
            let (mut t, mut i) = (Vec::new(), Vec::new());
            for e in &changed {
                for ty in &e.types {
                    t.push(ty.as_str());
                    i.push(e.id.as_str());
                }
            }
            batch.push(
                "DELETE FROM temporal_types WHERE tenant = $1 AND id = ANY($2)",
                vec![Box::new(tenant), Box::new(ids)],
            );
            batch.push(
                "INSERT INTO temporal_types (tenant, type, id) SELECT $1, u.t, u.id FROM unnest($2::text[], $3::text[]) AS u(t, id)
                 ON CONFLICT DO NOTHING",
                vec![Box::new(tenant), Box::new(t), Box::new(i)],
            );
        }
    }
    let gone: Vec<&str> = states.iter().filter(|(_, e)| e.is_none()).map(|(id, _)| *id).collect();
    if !gone.is_empty() {
        batch.push(
            "UPDATE temporal_entities SET deleted_at = $3, modified_at = $3 WHERE tenant = $1 AND id = ANY($2)",
            vec![Box::new(tenant), Box::new(gone), Box::new(now)],
        );
    }
}

/// The instances a change through the entity API records (`ngsild_core::history::recorded`).
fn change_rows(before: Option<&Entity>, after: Option<&Entity>, now: &str) -> Result<Vec<InstanceRow>, StoreError> {
    let Some(id) = after.or(before).map(|e| e.id.as_str()) else { return Ok(Vec::new()) };
    history::recorded(before, after, now)
        .iter()
        .map(|r| InstanceRow::of(id, &r.attr, &r.attribute, r.deleted_at.as_deref()))
        .collect()
}

/// Inside the transaction of `changes` (in the order they happened): adds to `batch` what
/// records the instances each one made new or changed, and the temporal representation of each
/// entity; `loaded` holds the types and the series generations of the temporal representations
/// before the transaction (`rows::lock_and_load`). Answers the place in
/// `batch` of the statement whose rows are series ids to learn once committed ([`learn`]).
pub(crate) async fn record_changes<'a>(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    batch: &mut Batch<'a>,
    tenant: &'a str,
    changes: &[&'a Change],
    now: &'a str,
    loaded: &crate::rows::Loaded,
) -> Result<Option<usize>, StoreError> {
    let (stored, gens) = (&loaded.types, &loaded.gens);
    let mut rows = Vec::new();
    // The temporal representation follows each entity's last state in this transaction.
    let mut last: Vec<(&str, Option<&Entity>)> = Vec::new();
    for change in changes {
        rows.extend(change_rows(change.before.as_ref(), change.after.as_ref(), now)?);
        let Some(id) = change.after.as_ref().or(change.before.as_ref()).map(|e| e.id.as_str()) else { continue };
        match last.iter_mut().find(|(l, _)| *l == id) {
            Some(slot) => slot.1 = change.after.as_ref(),
            None => last.push((id, change.after.as_ref())),
        }
    }
    let times: Vec<i64> = rows.iter().map(InstanceRow::part).collect();
    ensure_partitions(store, tx, &times).await?;
    // An entity created and deleted in one transaction: its row exists before it is marked.
    let mut created: Vec<(&str, Option<&Entity>)> = Vec::new();
    for e in changes.iter().filter_map(|c| c.after.as_ref()) {
        if last.iter().any(|(id, state)| *id == e.id && state.is_none()) && !created.iter().any(|(id, _)| *id == e.id) {
            created.push((e.id.as_str(), Some(e)));
        }
    }
    if !created.is_empty() {
        touch_entities_into(batch, tenant, &created, stored, now);
    }
    touch_entities_into(batch, tenant, &last, stored, now);
    // Series ids this hub knows, for entities whose series generation this transaction read
    // under their locks (one without a temporal representation has its series found).
    let wanted: Vec<(usize, (&str, &str, i64))> = rows
        .iter()
        .enumerate()
        .filter_map(|(n, r)| gens.get(&r.entity_id).map(|g| (n, (r.entity_id.as_str(), r.attr.as_str(), *g))))
        .collect();
    let mut known = vec![None; rows.len()];
    let asked: Vec<(&str, &str, i64)> = wanted.iter().map(|(_, w)| *w).collect();
    for ((n, _), sid) in wanted.iter().zip(store.series.resolve(tenant, &asked)) {
        known[*n] = sid;
    }
    drop(asked);
    drop(wanted);
    Ok(insert_instances_into(batch, tenant, rows, known))
}

/// After the commit of a transaction whose history insert answered `rows` (entity, attribute,
/// sid, transaction id): keeps those series ids, each under the entity's generation, `gens`' when
/// the entity had a temporal representation before, else the transaction's (which made it).
pub(crate) fn learn(store: &PostgresStore, tenant: &str, rows: Vec<tokio_postgres::Row>, gens: &HashMap<String, i64>) {
    let learnt = rows
        .into_iter()
        .map(|r| {
            let entity_id: String = r.get(0);
            let gen = gens.get(&entity_id).copied().unwrap_or_else(|| r.get(3));
            crate::series::Learnt { entity_id, attr: r.get(1), sid: r.get(2), gen }
        })
        .collect();
    store.series.learn(tenant, learnt);
}

// ---- the temporal API's writes ----------------------------------------------------------------

pub(crate) async fn write(
    store: &PostgresStore,
    tenant: &str,
    id: &str,
    write: TemporalWrite,
) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
    let now = now();
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    crate::rows::lock(&tx, tenant, &[id]).await?;
    if let TemporalWrite::AddInstances { entity, .. } = &write {
        let mut times = vec![micros(&now).unwrap_or_default()];
        for instances in entity.attrs.values() {
            for attr in instances {
                times.extend(micros_of(attr.observed_at.as_deref()));
                times.extend(micros_of(attr.created_at.as_deref()));
            }
        }
        ensure_partitions(store, &tx, &times).await?;
    }
    let before = crate::rows::load_for_update(&tx, tenant, &[id]).await?.remove(id);
    let answer = apply_write(&tx, tenant, id, before.as_ref(), write, &now).await?;
    let mut journaled = false;
    let mut remember = false;
    if answer.is_ok() {
        let after = crate::rows::load_for_update(&tx, tenant, &[id]).await?.remove(id);
        remember = crate::tenants::touch(store, &tx, tenant).await?;
        if before != after {
            let change = Change { before, after, report: None };
            journaled = crate::feed::journal(&tx, tenant, &[&change], &now).await?;
        }
        tx.commit().await.or_backend()?;
    }
    // A refused write rolls back (dropping the transaction does).
    if remember {
        store.remember_tenant(tenant);
    }
    if journaled {
        crate::feed::journaled(store);
    }
    Ok(answer)
}

/// Writes the current state of one entity, from `before`.
async fn save_entity(
    tx: &Transaction<'_>,
    tenant: &str,
    before: Option<&Entity>,
    after: Option<&Entity>,
) -> Result<(), StoreError> {
    crate::rows::save(tx, tenant, &[(after.or(before).map_or("", |e| e.id.as_str()), before, after)]).await
}

async fn apply_write(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
    current: Option<&Entity>,
    write: TemporalWrite,
    now: &str,
) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
    let exists = tx
        .query_opt("SELECT 1 FROM temporal_entities WHERE tenant = $1 AND id = $2", &[&tenant, &id])
        .await
        .or_backend()?
        .is_some();
    let not_found = || Ok(Err(NgsiLdError::not_found(format!("no temporal representation of {id}"))));
    match write {
        TemporalWrite::AddInstances { entity: input, must_exist } => {
            if must_exist && !exists {
                return not_found();
            }
            let fold = history::fold_instances(current, input, now);
            let mut rows: Vec<InstanceRow> = Vec::new();
            let mut sids: HashMap<String, Option<i64>> = HashMap::new();
            for (name, attr) in &fold.instances {
                // An observation of the same series at the same time replaces the earlier one,
                // recorded before or earlier in this write.
                if let Some(observed) = micros_of(attr.observed_at.as_deref()) {
                    let sid = match sids.get(name) {
                        Some(sid) => *sid,
                        None => {
                            let sid = series(tx, tenant, id, name).await?;
                            sids.insert(name.clone(), sid);
                            sid
                        }
                    };
                    if let Some(sid) = sid {
                        tx.execute(
                            "DELETE FROM attr_history WHERE tenant = $1 AND sid = $2 AND t_observed = $3
                             AND dataset_id IS NOT DISTINCT FROM $4",
                            &[&tenant, &sid, &observed, &attr.dataset_id],
                        )
                        .await
                        .or_backend()?;
                    }
                    rows.retain(|r| {
                        !(r.attr == *name && r.cols.observed == Some(observed) && r.cols.dataset_id == attr.dataset_id)
                    });
                }
                rows.push(InstanceRow::of(id, name, attr, None)?);
            }
            insert_instances(tx, tenant, rows).await?;
            save_entity(tx, tenant, current, Some(&fold.entity)).await?;
            touch_entities(tx, tenant, &[(id, Some(&fold.entity))], now).await?;
            Ok(Ok(if exists { TemporalOutcome::Updated } else { TemporalOutcome::Created }))
        }
        TemporalWrite::DeleteEntity => {
            if !exists {
                return not_found();
            }
            tx.execute(
                "DELETE FROM attr_history WHERE tenant = $1 AND sid IN (SELECT sid FROM attr_series WHERE tenant = $1 AND entity_id = $2)",
                &[&tenant, &id],
            )
            .await
            .or_backend()?;
            tx.execute("DELETE FROM attr_series WHERE tenant = $1 AND entity_id = $2", &[&tenant, &id])
                .await
                .or_backend()?;
            for table in ["temporal_entities", "temporal_types"] {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1 AND id = $2"), &[&tenant, &id])
                    .await
                    .or_backend()?;
            }
            if current.is_some() {
                save_entity(tx, tenant, current, None).await?;
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteAttribute { attr, dataset_id, all } => {
            if !exists {
                return not_found();
            }
            let deleted = match series(tx, tenant, id, &attr).await? {
                None => 0,
                Some(sid) if all => {
                    tx.execute("DELETE FROM attr_series WHERE tenant = $1 AND sid = $2", &[&tenant, &sid])
                        .await
                        .or_backend()?;
                    // A series is gone: every hub's memory of this entity's series ids is void.
                    tx.execute(
                        "UPDATE temporal_entities SET series_gen = pg_current_xact_id()::text::bigint
                         WHERE tenant = $1 AND id = $2",
                        &[&tenant, &id],
                    )
                    .await
                    .or_backend()?;
                    tx.execute("DELETE FROM attr_history WHERE tenant = $1 AND sid = $2", &[&tenant, &sid])
                        .await
                        .or_backend()?
                }
                Some(sid) => tx
                    .execute(
                        "DELETE FROM attr_history WHERE tenant = $1 AND sid = $2 AND dataset_id IS NOT DISTINCT FROM $3",
                        &[&tenant, &sid, &dataset_id],
                    )
                    .await
                    .or_backend()?,
            };
            if deleted == 0 {
                return Ok(Err(NgsiLdError::not_found(format!("{id} has no history of attribute {attr}"))));
            }
            if let Some(current) = current {
                let mut entity = current.clone();
                if entity.remove_instances(&attr, dataset_id.as_deref(), all) > 0 {
                    entity.modified_at = Some(now.to_owned());
                    save_entity(tx, tenant, Some(current), Some(&entity)).await?;
                }
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::ReplaceInstance { attr, instance_id, mut attribute } => {
            let not_found = || Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            let Some(sid) = series(tx, tenant, id, &attr).await? else { return not_found() };
            let Some((seq, part, old)) = find_instance(tx, tenant, sid, &instance_id).await? else {
                return not_found();
            };
            attribute.created_at = old.created_at.clone();
            attribute.modified_at = Some(now.to_owned());
            if attribute.dataset_id.is_none() {
                attribute.dataset_id = old.dataset_id.clone();
            }
            let row = InstanceRow::of(id, &attr, &attribute, None)?;
            // Into the partition of its new time first, so that an update moving it finds one.
            // In place otherwise, so that the instance keeps its id.
            tx.execute(
                "UPDATE attr_history SET t_part = $4, dataset_id = $5, doc = $6::text::json, val = $7, num = $8,
                     t_observed = $9, t_created = $10, t_modified = $11, t_deleted = $12
                 WHERE tenant = $1 AND seq = $2 AND t_part = $3",
                &[
                    &tenant,
                    &seq,
                    &part,
                    &row.part(),
                    &row.cols.dataset_id,
                    &row.doc,
                    &row.cols.val,
                    &row.cols.num,
                    &row.cols.observed,
                    &row.cols.created,
                    &row.cols.modified,
                    &row.cols.deleted,
                ],
            )
            .await
            .or_backend()?;
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteInstance { attr, instance_id } => {
            let found = match series(tx, tenant, id, &attr).await? {
                Some(sid) => find_instance(tx, tenant, sid, &instance_id).await?,
                None => None,
            };
            let Some((seq, part, _)) = found else {
                return Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            };
            tx.execute(
                "DELETE FROM attr_history WHERE tenant = $1 AND seq = $2 AND t_part = $3",
                &[&tenant, &seq, &part],
            )
            .await
            .or_backend()?;
            Ok(Ok(TemporalOutcome::Updated))
        }
    }
}

/// The row (seq, partition key, content) of the instance `instance_id` of the series `sid`.
async fn find_instance(
    tx: &Transaction<'_>,
    tenant: &str,
    sid: i64,
    instance_id: &str,
) -> Result<Option<(i64, i64, Attribute)>, StoreError> {
    let row = match instance_id.strip_prefix(history::INSTANCE_PREFIX).and_then(|n| n.parse::<i64>().ok()) {
        Some(seq) => tx
            .query_opt(
                "SELECT seq, t_part, doc FROM attr_history WHERE tenant = $1 AND seq = $2 AND sid = $3
                 AND legacy_instance_id IS NULL",
                &[&tenant, &seq, &sid],
            )
            .await
            .or_backend()?,
        None => tx
            .query_opt(
                "SELECT seq, t_part, doc FROM attr_history WHERE tenant = $1 AND legacy_instance_id = $2 AND sid = $3",
                &[&tenant, &instance_id, &sid],
            )
            .await
            .or_backend()?,
    };
    Ok(row.map(|r| (r.get(0), r.get(1), r.get::<_, Json<Attribute>>(2).0)))
}

// ---- queries ----------------------------------------------------------------------------------

/// Runs a temporal query on one snapshot of the database.
pub(crate) async fn query(store: &PostgresStore, tenant: &str, q: &TemporalQuery) -> Result<TemporalPage, StoreError> {
    let mut client = store.client().await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .or_backend()?;
    let mut ids = matching_ids(&tx, tenant, q).await?;
    if let Some(order) = q.filter.order.as_ref().filter(|o| !o.is_by_id()) {
        ids = ordered_ids(&tx, tenant, ids, order, q.paging.offset.saturating_add(q.paging.limit)).await?;
    }
    let total = q.paging.count.then_some(ids.len());
    let mut entities = Vec::new();
    for id in ids.into_iter().skip(q.paging.offset).take(q.paging.limit) {
        if let Some(entity) = load(&tx, tenant, &id, q).await? {
            if !(q.skip_empty && entity.attrs.is_empty() && entity.aggregates.is_empty()) {
                entities.push(entity);
            }
        }
    }
    tx.commit().await.or_backend()?;
    Ok(TemporalPage { entities, total })
}

async fn current_entities(
    tx: &Transaction<'_>,
    tenant: &str,
    ids: &[String],
) -> Result<HashMap<String, Entity>, StoreError> {
    let rows = tx
        .query("SELECT id, doc FROM entities WHERE tenant = $1 AND id = ANY($2)", &[&tenant, &ids])
        .await
        .or_backend()?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get::<_, Json<Entity>>(1).0)).collect())
}

/// The first `wanted` of `ids` in an `orderBy`, judged on each entity's current state (an entity
/// with only a history has no values and goes last); the rest follow in id order.
async fn ordered_ids(
    tx: &Transaction<'_>,
    tenant: &str,
    ids: Vec<String>,
    order: &ngsild_query::OrderBy,
    wanted: usize,
) -> Result<Vec<String>, StoreError> {
    let current = current_entities(tx, tenant, &ids).await?;
    let mut first = ngsild_query::order::FirstInOrder::new(order, wanted);
    for id in &ids {
        let key = match current.get(id) {
            Some(e) => order.key(e),
            None => order.key(&Entity::new(id.clone(), Vec::new())),
        };
        first.push(key, id.clone());
    }
    let mut out = first.finish();
    let taken: HashSet<&String> = out.iter().collect();
    let rest: Vec<String> = ids.iter().filter(|id| !taken.contains(id)).cloned().collect();
    out.extend(rest);
    Ok(out)
}

/// Ids of entities with a history that the query selects, in id order.
async fn matching_ids(tx: &Transaction<'_>, tenant: &str, q: &TemporalQuery) -> Result<Vec<String>, StoreError> {
    let f = &q.filter;
    let mut sql = String::from("SELECT id, types FROM temporal_entities WHERE tenant = $1");
    let mut params: Params = vec![Box::new(tenant.to_owned())];
    if !f.ids.is_empty() {
        params.push(Box::new(f.ids.clone()));
        sql.push_str(&format!(" AND id = ANY(${})", params.len()));
    }
    if let Some(names) = f.types.as_ref().and_then(|t| t.as_type_list()) {
        let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        params.push(Box::new(names));
        sql.push_str(&format!(
            " AND id IN (SELECT id FROM temporal_types WHERE tenant = $1 AND type = ANY(${}))",
            params.len()
        ));
    }
    sql.push_str(" ORDER BY id");
    let rows = tx.query(&sql, &refs(&params)).await.or_backend()?;
    let mut ids = Vec::new();
    for row in rows {
        let id: String = row.get(0);
        let types: Json<Vec<String>> = row.get(1);
        if f.id_pattern.as_ref().is_some_and(|re| !re.is_match(&id))
            || f.types.as_ref().is_some_and(|t| !t.matches(&types.0))
        {
            continue;
        }
        ids.push(id);
    }
    if f.q.is_some() || f.scope_q.is_some() || f.geo.is_some() {
        let current = current_entities(tx, tenant, &ids).await?;
        ids.retain(|id| {
            current.get(id).is_some_and(|e| {
                f.q.as_ref().is_none_or(|q| q.matches(e))
                    && f.scope_q.as_ref().is_none_or(|s| s.matches(&e.scope))
                    && f.geo.as_ref().is_none_or(|g| g.matches(e))
            })
        });
    }
    Ok(ids)
}

/// A bound of a time window, as the history stores times.
fn bound(t: &str) -> Result<i64, StoreError> {
    micros(t).ok_or_else(|| bad(format!("not a DateTime: {t}")))
}

/// Loads one entity's history (or aggregates) as the query asks.
async fn load(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
    q: &TemporalQuery,
) -> Result<Option<TemporalEntity>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT types, scope, created_at, modified_at, deleted_at FROM temporal_entities WHERE tenant = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await
        .or_backend()?;
    let Some(row) = row else { return Ok(None) };
    let mut entity = TemporalEntity {
        id: id.to_owned(),
        types: row.get::<_, Json<Vec<String>>>(0).0,
        scope: row.get::<_, Json<Vec<String>>>(1).0,
        created_at: Some(row.get(2)),
        modified_at: Some(row.get(3)),
        deleted_at: row.get(4),
        ..Default::default()
    };
    // Series in the order their attributes first appeared, those with instances left.
    let attrs: Vec<(String, i64)> = if q.attrs.is_empty() {
        tx.query(
            "SELECT attr, sid FROM attr_series s WHERE tenant = $1 AND entity_id = $2
             AND EXISTS (SELECT 1 FROM attr_history h WHERE h.tenant = $1 AND h.sid = s.sid) ORDER BY sid",
            &[&tenant, &id],
        )
        .await
        .or_backend()?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    } else {
        let mut found = Vec::new();
        for attr in &q.attrs {
            if let Some(sid) = series(tx, tenant, id, attr).await? {
                found.push((attr.clone(), sid));
            }
        }
        found
    };
    let col = column(q.time_property);
    // $1 tenant, $2 sid, then the window's arguments.
    let mut window = String::new();
    let mut window_args: Vec<Arg> = Vec::new();
    let next = |args: &mut Vec<Arg>, value: Arg| {
        args.push(value);
        format!("${}", args.len() + 2)
    };
    if let Some(timerel) = &q.timerel {
        let (from, to) = timerel.bounds();
        if let Some(from) = from {
            let p = next(&mut window_args, Arg::Int(bound(from)?));
            window.push_str(&format!(" AND {col} >= {p}"));
            if col == "t_observed" {
                // The partition key equals t_observed wherever that is set: prunes partitions.
                window.push_str(&format!(" AND t_part >= {p}"));
            }
        }
        if let Some(to) = to {
            let p = next(&mut window_args, Arg::Int(bound(to)?));
            window.push_str(&format!(" AND {col} < {p}"));
            if col == "t_observed" {
                window.push_str(&format!(" AND t_part < {p}"));
            }
        }
    } else if q.time_property == TimeProperty::DeletedAt {
        window.push_str(" AND t_deleted IS NOT NULL");
    }
    if let Some(ids) = &q.dataset_ids {
        let named: Vec<String> = ids.iter().flatten().cloned().collect();
        let mut parts = Vec::new();
        if !named.is_empty() {
            let p = next(&mut window_args, Arg::Texts(named));
            parts.push(format!("dataset_id = ANY({p})"));
        }
        if ids.iter().any(Option::is_none) {
            parts.push("dataset_id IS NULL".to_owned());
        }
        if parts.is_empty() {
            parts.push("false".to_owned());
        }
        window.push_str(&format!(" AND ({})", parts.join(" OR ")));
    }
    let sort = format!("COALESCE({col}, t_created)");
    for (attr, sid) in attrs {
        let mut params: Params = vec![Box::new(tenant.to_owned()), Box::new(sid)];
        params.extend(window_args.iter().map(Arg::boxed));
        if let Some((methods, period)) = &q.aggregation {
            let series = aggregate(tx, &window, &params, col, methods, *period, q).await?;
            if !series.is_empty() {
                entity.aggregates.insert(attr, series);
            }
            continue;
        }
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT doc, seq, legacy_instance_id, t_deleted FROM attr_history
             WHERE tenant = $1 AND sid = $2{window}
             ORDER BY {sort} {order}, seq {order} LIMIT {}",
            q.per_attribute
        );
        let rows = tx.query(&sql, &refs(&params)).await.or_backend()?;
        let mut instances = Vec::new();
        for r in rows {
            let attribute = r.get::<_, Json<Attribute>>(0).0;
            let deleted_at = r.get::<_, Option<i64>>(3).map(|t| format_time(datetime_of_micros(t)));
            instances.push(Instance { attribute, instance_id: history::instance_id(r.get(1), r.get(2)), deleted_at });
        }
        if !instances.is_empty() {
            entity.attrs.insert(attr, instances);
        }
    }
    Ok(Some(entity))
}

/// An argument of a time window: a bound or the datasetIds.
enum Arg {
    Int(i64),
    Texts(Vec<String>),
}

impl Arg {
    fn boxed(&self) -> Box<dyn ToSql + Sync + Send> {
        match self {
            Arg::Int(n) => Box::new(*n),
            Arg::Texts(t) => Box::new(t.clone()),
        }
    }
}

/// Aggregates one attribute's instances per datasetId and period: streams them into
/// `ngsild_core::history::SeriesAccumulator`.
async fn aggregate(
    tx: &Transaction<'_>,
    window: &str,
    params: &Params<'_>,
    col: &str,
    methods: &[AggrMethod],
    period: f64,
    q: &TemporalQuery,
) -> Result<Vec<AggregateSeries>, StoreError> {
    let (from, to) = q.timerel.as_ref().map(|t| t.bounds()).unwrap_or((None, None));
    let base =
        format!("FROM attr_history WHERE tenant = $1 AND sid = $2 AND t_deleted IS NULL AND {col} IS NOT NULL{window}");
    let args = refs(params);
    let wants = |m: AggrMethod| methods.contains(&m);
    let with_val = wants(AggrMethod::DistinctCount) || wants(AggrMethod::Min) || wants(AggrMethod::Max);
    let val = if with_val { ", val" } else { "" };
    let Some(kind_row) = tx.query_opt(&format!("SELECT doc {base} LIMIT 1"), &args).await.or_backend()? else {
        return Ok(Vec::new());
    };
    let kind = kind_row.get::<_, Json<Attribute>>(0).0.kind;
    // One pass over the window (through the (sid, t_observed) index), accumulated here
    // per datasetId and period. SQL's GROUP BY would sort every row by datasetId and period
    // first; streaming keeps one accumulator per period and is the embedded store's arithmetic.
    let rows = tx.query(&format!("SELECT dataset_id, {col}, num{val} {base}"), &args).await.or_backend()?;
    let first = rows.iter().map(|r| r.get::<_, i64>(1)).min();
    let last = rows.iter().map(|r| r.get::<_, i64>(1)).max();
    let (Some(first), Some(last)) = (first, last) else { return Ok(Vec::new()) };
    let start = match from {
        Some(from) => bound(from)?,
        None => first,
    };
    let mut acc = history::SeriesAccumulator::new(start, period);
    for row in &rows {
        let value: Option<String> = if with_val { row.get(3) } else { None };
        acc.add(row.get::<_, Option<String>>(0).as_deref(), row.get(1), row.get(2), value.as_deref());
    }
    let end = match to {
        Some(to) => bound(to)?,
        None => last,
    };
    Ok(acc.finish(kind, methods, end))
}
