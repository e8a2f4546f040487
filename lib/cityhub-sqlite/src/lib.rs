//! The embedded storage backend of cityhub: one SQLite file in WAL mode.
//!
//! Writes go through a single writer thread that owns the write connection and commits in groups:
//! it takes every modification queued while the previous commit was running, applies them all in
//! one transaction and answers each caller only after that transaction is durable. Under load one
//! fsync serves many requests; alone, a request pays exactly one. Reads run on a pool of read-only
//! connections, concurrently with the writer (WAL).
//!
//! # History with every write
//!
//! Every modification also records history: in the same transaction, the writer compares the
//! entity before and after and appends to `attr_history` each instance that is new or changed, and a
//! deletion (`urn:ngsi-ld:null`, `deletedAt`) for each that went. The `/temporal` API writes
//! instances directly (`TemporalWrite`) and brings the current entity up to date with the latest
//! observation of each attribute.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

// From the bottom up: codec (row encoding), the table modules (each owns its DDL: index,
// contexts, records, subscriptions; entities over index; temporal over entities), migrate on top.
mod audit;
mod codec;
mod contexts;
mod dump;
mod entities;
mod index;
pub mod ledger;
mod migrate;
mod records;
mod stats;
mod subscriptions;
mod temporal;
mod unsaved;

use parking_lot::Mutex;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use cityhub_storage::{
    AuditEntry, AuditFilter, AuditPage, Change, DeliveryOutcome, EntityFilter, JournalEntry, Modification, Modifier,
    NotifierCommit, OutboxItem, Page, Paging, RecordKind, Store, StoreError, StoreEvent, StoredContext,
    StoredSubscription, SubscriptionKind, TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite, Tenant,
};
use ngsild_core::{Entity, NgsiLdError};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

/// How many modifications one commit takes at most; the rest wait for the next one.
const MAX_GROUP: usize = 1024;
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;
/// Store events a receiver may fall behind by before it lags (and must assume everything changed).
const EVENT_CAPACITY: usize = 1024;

type ModifyAnswer = Result<Vec<Result<Change, NgsiLdError>>, StoreError>;

enum Job {
    Modify {
        tenant: String,
        modifications: Vec<(String, Modifier)>,
        reply: oneshot::Sender<ModifyAnswer>,
    },
    PutContext {
        context: StoredContext,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteContext {
        id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Temporal {
        tenant: String,
        id: String,
        write: Box<TemporalWrite>,
        reply: oneshot::Sender<TemporalAnswer>,
    },
    /// Any other write: runs inside the group's transaction and answers (through the closure it
    /// returns) only after the commit.
    Exec(WriteJob),
}

/// A write run by the writer thread inside the group's transaction.
type WriteJob = Box<dyn FnOnce(&Connection, &mut WriterState) -> rusqlite::Result<AfterCommit> + Send>;

/// What a job does once its transaction has committed (typically: answer its caller).
type AfterCommit = Box<dyn FnOnce() + Send>;

/// What the writer thread knows between transactions.
struct WriterState {
    /// Tenants with at least one subscription: only their entity changes are journaled, so a hub
    /// without subscriptions pays nothing for notifications.
    journaled_tenants: HashSet<String>,
    /// What the current group changed, told (`StoreEvent`) once it has committed.
    events: Vec<StoreEvent>,
    /// Facet keys and history series looked up or made (forgotten when a group rolls back).
    keys: index::Keys,
}

impl WriterState {
    /// Notes an event of the current group (once per group).
    fn tell(&mut self, event: StoreEvent) {
        if !self.events.contains(&event) {
            self.events.push(event);
        }
    }

    /// Records that `tenant` holds something (the default tenant always exists).
    fn note_tenant(&mut self, conn: &Connection, tenant: &str) -> rusqlite::Result<()> {
        if entities::note_tenant(conn, tenant)? {
            self.tell(StoreEvent::Tenant { tenant: tenant.to_owned() });
        }
        Ok(())
    }
}

type TemporalAnswer = Result<Result<TemporalOutcome, NgsiLdError>, StoreError>;

impl Job {
    fn size(&self) -> usize {
        match self {
            Job::Modify { modifications, .. } => modifications.len().max(1),
            _ => 1,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    commits: Arc<AtomicU64>,
    checkpointer: Mutex<Option<Checkpointer>>,
    events: broadcast::Sender<StoreEvent>,
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir/cityhub.sqlite`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("cityhub.sqlite");
        let mut conn = Connection::open(&path).map_err(backend)?;
        migrate::configure_writer(&conn).map_err(backend)?;
        migrate::migrate(&mut conn).map_err(backend)?;
        // The embedded store serves one process at a time (its writer thread is the only
        // writer): leases a previous process held died with it, so this one need not wait
        // for them to expire.
        conn.execute("DELETE FROM leases", []).map_err(backend)?;
        // The ledger's tables come with every schema version (issue 22; no migration of their own).
        ledger::open(&conn).map_err(backend)?;
        let state = WriterState {
            journaled_tenants: subscriptions::journaled_tenants(&conn).map_err(backend)?,
            events: Vec::new(),
            keys: index::Keys::default(),
        };
        let (sender, receiver) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let thread_commits = commits.clone();
        let thread_events = events.clone();
        // After each commit SQLite tells how many pages the WAL holds; the checkpointer reads it.
        let wal_pages = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let seen_pages = wal_pages.clone();
        let writer_pages = wal_pages.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            seen_pages.store(pages as i64, Ordering::Relaxed);
            Ok(())
        }))
        .map_err(backend)?;
        let handle = std::thread::Builder::new()
            .name("cityhub-sqlite-writer".into())
            .spawn(move || writer_loop(conn, state, receiver, thread_commits, thread_events, writer_pages))
            .map_err(backend)?;
        let checkpointer = Checkpointer::start(&path, commits.clone(), wal_pages).map_err(backend)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(Some(sender)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            commits,
            events,
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    /// How many transactions the writer has committed (group commit makes this smaller than the
    /// number of modifications under concurrent load).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The figures `/metrics` shows of this store (see `stats`): a few counts over the tables,
    /// for a caller that refreshes them every so often.
    pub async fn stats(&self) -> Result<cityhub_metrics::StoreStats, StoreError> {
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.read(move |conn| stats::read(conn, &dir).map_err(backend)).await
    }

    /// Stops the writer after the work already queued.
    pub fn close(&self) {
        self.writer.lock().take();
        if let Some(handle) = self.writer_thread.lock().take() {
            if handle.join().is_err() {
                tracing::error!(
                    "the writer thread panicked; writes queued after the panic were answered with an error"
                );
            }
        }
        if let Some(checkpointer) = self.checkpointer.lock().take() {
            checkpointer.stop();
        }
    }

    /// Runs `f` inside a write transaction and answers its result after the commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Exec(Box::new(move |conn, state| {
            let result = f(conn, state)?;
            Ok(Box::new(move || {
                let _ = reply.send(result);
            }) as AfterCommit)
        })))?;
        answer.await.map_err(|_| backend("the write was rolled back"))
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.writer.lock();
        let sender = guard.as_ref().ok_or_else(|| backend("the store is closed"))?;
        sender.send(job).map_err(|_| backend("the writer thread has stopped"))
    }

    /// Runs `f` on a read-only connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().pop() {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    migrate::configure_reader(&conn).map_err(backend)?;
                    conn
                }
            };
            let result = f(&conn);
            let mut idle = readers.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(backend)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies the WAL back into the database file on its own thread and connection, so that the
/// writer thread, which answers requests, only ever appends to the WAL and syncs it. SQLite's
/// automatic checkpoint would run inside a commit, on the writer thread, and make the request
/// that crossed the threshold wait for random writes all over the database file.
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

/// WAL pages (4 KiB) past which a checkpoint runs; between two runs, a page written many times
/// reaches the database file once.
const CHECKPOINT_PAGES: i64 = 8192;

/// WAL pages past which the writer completes a checkpoint itself (see `writer_loop`).
const WRITER_CHECKPOINT_PAGES: i64 = 4 * CHECKPOINT_PAGES;

impl Checkpointer {
    fn start(
        path: &Path,
        commits: Arc<AtomicU64>,
        wal_pages: Arc<std::sync::atomic::AtomicI64>,
    ) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cityhub-sqlite-checkpoint".into())
            .spawn(move || {
                let mut seen = commits.load(Ordering::Relaxed);
                let mut idle_rounds = 0u32;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let now = commits.load(Ordering::Relaxed);
                    let busy = now != seen;
                    seen = now;
                    idle_rounds = if busy { 0 } else { idle_rounds + 1 };
                    // PASSIVE never waits for the writer or readers: it copies what it can.
                    // Run it when the WAL is large, and once the hub has gone quiet (so that
                    // the WAL restarts from its beginning at the next write).
                    let wal_pages = wal_pages.load(Ordering::Relaxed);
                    if wal_pages >= CHECKPOINT_PAGES || (idle_rounds == 4 && wal_pages > 0) {
                        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                            tracing::warn!(error = %e, "checkpoint failed");
                        }
                    }
                }
                // On the way out: the WAL folded back so the directory is one file again. A
                // failure loses nothing (the WAL is replayed at the next open), but says why.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "the final checkpoint failed; the WAL is replayed at the next open");
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the checkpointer thread panicked; the WAL is replayed at the next open");
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    mut state: WriterState,
    receiver: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
    events: broadcast::Sender<StoreEvent>,
    wal_pages: Arc<std::sync::atomic::AtomicI64>,
) {
    while let Ok(first) = receiver.recv() {
        // Under writes without pause the background checkpoint never catches the WAL's end, and
        // SQLite restarts the WAL only after a checkpoint that did: past this size the writer
        // finishes the job itself, between two groups (cheap: the checkpointer already copied
        // nearly everything), and its next transaction starts the WAL over.
        if wal_pages.load(Ordering::Relaxed) >= WRITER_CHECKPOINT_PAGES {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
        let mut group = vec![first];
        let mut size = group[0].size();
        while size < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => {
                    size += job.size();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // The set of journaled tenants changes inside transactions; a rolled-back group must not
        // leave it changed.
        let saved = state.journaled_tenants.clone();
        state.events.clear();
        let committed = run_group(&mut conn, &mut state, group, &commits, &events);
        ledger::settle(committed);
        if !committed {
            state.journaled_tenants = saved;
            state.keys.forget();
        }
        state.events.clear();
    }
}

/// An answer computed inside the transaction, sent only after it commits.
enum Pending {
    Modify(oneshot::Sender<ModifyAnswer>, Vec<Result<Change, NgsiLdError>>),
    PutContext(oneshot::Sender<Result<(), StoreError>>),
    DeleteContext(oneshot::Sender<Result<bool, StoreError>>, bool),
    Temporal(oneshot::Sender<TemporalAnswer>, Result<TemporalOutcome, NgsiLdError>),
    Exec(AfterCommit),
}

/// Runs one group in one transaction; answers whether it committed.
/// The group's events are sent after the commit and before any caller is answered: by the time
/// a caller hears of its write, every listener has the event queued.
fn run_group(
    conn: &mut Connection,
    state: &mut WriterState,
    group: Vec<Job>,
    commits: &AtomicU64,
    events: &broadcast::Sender<StoreEvent>,
) -> bool {
    let outcome = (|| -> Result<Vec<Pending>, rusqlite::Error> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut pending = Vec::with_capacity(group.len());
        // The entities the group's modifiers changed, saved once each (`unsaved`): before any
        // other kind of job, which may read them from their tables, and before the commit.
        let mut unsaved = unsaved::Unsaved::default();
        for job in group {
            if !matches!(job, Job::Modify { .. }) {
                unsaved.save(&tx, &mut state.keys)?;
            }
            match job {
                Job::Modify { tenant, modifications, reply } => {
                    let mut answers = Vec::with_capacity(modifications.len());
                    let mut wrote = false;
                    for (id, modifier) in modifications {
                        let answer = apply(&tx, state, &mut unsaved, &tenant, &id, modifier)?;
                        wrote |= answer.is_ok();
                        answers.push(answer);
                    }
                    if wrote {
                        state.note_tenant(&tx, &tenant)?;
                    }
                    pending.push(Pending::Modify(reply, answers));
                }
                Job::PutContext { context, reply } => {
                    contexts::put_context(&tx, &context)?;
                    state.tell(StoreEvent::Context { id: context.id.clone() });
                    pending.push(Pending::PutContext(reply));
                }
                Job::DeleteContext { id, reply } => {
                    let deleted = contexts::delete_context(&tx, &id)?;
                    if deleted {
                        state.tell(StoreEvent::Context { id });
                    }
                    pending.push(Pending::DeleteContext(reply, deleted));
                }
                Job::Temporal { tenant, id, write, reply } => {
                    let journaled = state.journaled_tenants.contains(&tenant);
                    let before = if journaled { entities::load_entity(&tx, &tenant, &id)? } else { None };
                    let sp = tx.savepoint()?;
                    let ledger_mark = ledger::mark(&tenant);
                    let answer = temporal::apply_write(&sp, &tenant, &id, *write)?;
                    // It keeps keys of its own, and may have deleted series the cache names.
                    state.keys.forget_series();
                    if answer.is_ok() {
                        sp.commit()?;
                        if journaled {
                            let after = entities::load_entity(&tx, &tenant, &id)?;
                            if before != after {
                                let now = ngsild_core::time::now();
                                subscriptions::journal(&tx, &tenant, before.as_ref(), after.as_ref(), &now)?;
                                state.tell(StoreEvent::Journal);
                            }
                        }
                        state.note_tenant(&tx, &tenant)?;
                    } else {
                        ledger::rewind(&tenant, ledger_mark);
                    }
                    pending.push(Pending::Temporal(reply, answer));
                }
                Job::Exec(f) => {
                    let sp = tx.savepoint()?;
                    let after = f(&sp, state)?;
                    sp.commit()?;
                    pending.push(Pending::Exec(after));
                }
            }
        }
        unsaved.save(&tx, &mut state.keys)?;
        // Each tenant's ledger head once per group, not once per leaf.
        ledger::flush(&tx)?;
        tx.commit()?;
        Ok(pending)
    })();
    match outcome {
        Ok(pending) => {
            commits.fetch_add(1, Ordering::Relaxed);
            let writes: usize = pending
                .iter()
                .map(|p| match p {
                    Pending::Modify(_, answers) => answers.iter().filter(|a| a.is_ok()).count(),
                    Pending::Temporal(_, Ok(_)) => 1,
                    _ => 0,
                })
                .sum();
            metrics::counter!("cityhub_store_commits_total").increment(1);
            metrics::counter!("cityhub_store_writes_total").increment(writes as u64);
            metrics::histogram!("cityhub_store_group_commit_size").record(pending.len() as f64);
            for event in state.events.drain(..) {
                // No receiver: nobody listens yet, which is no error.
                let _ = events.send(event);
            }
            for answer in pending {
                match answer {
                    Pending::Modify(reply, answers) => {
                        let _ = reply.send(Ok(answers));
                    }
                    Pending::PutContext(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Pending::DeleteContext(reply, deleted) => {
                        let _ = reply.send(Ok(deleted));
                    }
                    Pending::Temporal(reply, answer) => {
                        let _ = reply.send(Ok(answer));
                    }
                    Pending::Exec(after) => after(),
                }
            }
            true
        }
        Err(e) => {
            // The transaction rolled back: nothing of this group was written. The replies were
            // moved into the closure and dropped with it, which their receivers see as an error.
            tracing::error!(error = %e, "a write group failed and was rolled back");
            false
        }
    }
}

/// Applies one modifier inside the transaction, on the state the group's previous modifiers of
/// the entity left (`unsaved`, which saves the entity's last state once, later). Its history and
/// journal entry are written now, from its own before and after. The outer error is a storage
/// failure (aborts the group); the inner one is the modifier's refusal (this entity only).
fn apply(
    tx: &rusqlite::Transaction<'_>,
    state: &mut WriterState,
    unsaved: &mut unsaved::Unsaved,
    tenant: &str,
    id: &str,
    modifier: Modifier,
) -> Result<Result<Change, NgsiLdError>, rusqlite::Error> {
    let before = unsaved.load(tx, tenant, id)?;
    let result: Modification = match catch_unwind(AssertUnwindSafe(|| modifier(before.clone()))) {
        Ok(result) => result,
        Err(_) => Err(NgsiLdError::internal(format!("the modification of {id} failed unexpectedly"))),
    };
    let (after, report) = match result {
        Ok(modified) => (modified.next, modified.report),
        Err(e) => return Ok(Err(e)),
    };
    if after.as_ref().is_some_and(|entity| entity.id != id) {
        return Ok(Err(NgsiLdError::internal("a modification changed the entity id")));
    }
    if before.is_some() || after.is_some() {
        let now = ngsild_core::time::now();
        unsaved.changed(tx, tenant, id, &before, after.clone(), &now)?;
        temporal::record_change(tx, &mut state.keys, tenant, before.as_ref(), after.as_ref(), &now)?;
        // Same transaction as the change: a change is never acknowledged without its journal
        // entry, and never journaled without being committed.
        if state.journaled_tenants.contains(tenant) {
            subscriptions::journal(tx, tenant, before.as_ref(), after.as_ref(), &now)?;
            state.tell(StoreEvent::Journal);
        }
    }
    Ok(Ok(Change { before, after, report }))
}

#[async_trait]
impl Store for SqliteStore {
    async fn tenant_exists(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        if tenant.is_empty() {
            return Ok(true);
        }
        let tenant = tenant.to_owned();
        self.read(move |conn| entities::tenant_exists(conn, &tenant).map_err(backend)).await
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| entities::tenants(conn).map_err(backend)).await
    }

    async fn get_entity(&self, tenant: &Tenant, id: &str) -> Result<Option<Entity>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |conn| entities::load_entity(conn, &tenant, &id).map_err(backend)).await
    }

    async fn modify(&self, tenant: &Tenant, modifications: Vec<(String, Modifier)>) -> ModifyAnswer {
        if modifications.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Job::Modify { tenant: tenant.to_owned(), modifications, reply })?;
        answer.await.map_err(|_| backend("the write was rolled back"))?
    }

    async fn query(&self, tenant: &Tenant, filter: &EntityFilter, paging: Paging) -> Result<Page, StoreError> {
        let (tenant, filter) = (tenant.to_owned(), filter.clone());
        self.read(move |conn| index::query(conn, &tenant, &filter, paging).map_err(backend)).await
    }

    async fn temporal_write(&self, tenant: &Tenant, id: &str, write: TemporalWrite) -> TemporalAnswer {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Temporal { tenant: tenant.to_owned(), id: id.to_owned(), write: Box::new(write), reply })?;
        answer.await.map_err(|_| backend("the write was rolled back"))?
    }

    async fn temporal_query(&self, tenant: &Tenant, query: &TemporalQuery) -> Result<TemporalPage, StoreError> {
        let (tenant, query) = (tenant.to_owned(), query.clone());
        self.read(move |conn| temporal::query(conn, &tenant, &query).map_err(backend)).await
    }

    async fn put_context(&self, context: StoredContext) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::PutContext { context, reply })?;
        answer.await.map_err(|_| backend("the write was rolled back"))?
    }

    async fn get_context(&self, id: &str) -> Result<Option<StoredContext>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| contexts::get_context(conn, &id).map_err(backend)).await
    }

    async fn list_contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        self.read(|conn| contexts::list_contexts(conn).map_err(backend)).await
    }

    async fn delete_context(&self, id: &str) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::DeleteContext { id: id.to_owned(), reply })?;
        answer.await.map_err(|_| backend("the write was rolled back"))?
    }

    async fn create_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            if !subscriptions::create(conn, kind, &tenant, &id, &doc)? {
                return Ok(Err(NgsiLdError::already_exists(format!("subscription {id} already exists"))));
            }
            state.note_tenant(conn, &tenant)?;
            if kind == SubscriptionKind::Entity {
                state.journaled_tenants.insert(tenant.clone());
            }
            state.tell(StoreEvent::Subscription { kind, tenant, id });
            Ok(Ok(()))
        })
        .await
    }

    async fn replace_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            let replaced = subscriptions::replace(conn, kind, &tenant, &id, &doc)?;
            if replaced {
                state.tell(StoreEvent::Subscription { kind, tenant, id });
            }
            Ok(replaced)
        })
        .await
    }

    async fn delete_subscription(&self, kind: SubscriptionKind, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            let deleted = subscriptions::delete(conn, kind, &tenant, &id)?;
            if subscriptions::list(conn, Some(SubscriptionKind::Entity), Some(&tenant))?.is_empty() {
                state.journaled_tenants.remove(&tenant);
            }
            if deleted {
                state.tell(StoreEvent::Subscription { kind, tenant, id });
            }
            Ok(deleted)
        })
        .await
    }

    async fn get_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |conn| subscriptions::get(conn, kind, &tenant, &id).map_err(backend)).await
    }

    async fn list_subscriptions(
        &self,
        kind: Option<SubscriptionKind>,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        self.read(move |conn| subscriptions::list(conn, kind, tenant.as_deref()).map_err(backend)).await
    }

    async fn journal_after(&self, cursor: u64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |conn| subscriptions::journal_after(conn, cursor, limit).map_err(backend)).await
    }

    async fn notifier_cursor(&self) -> Result<u64, StoreError> {
        self.read(|conn| subscriptions::cursor(conn).map_err(backend)).await
    }

    async fn commit_notifications(&self, commit: NotifierCommit) -> Result<Vec<OutboxItem>, StoreError> {
        self.write(move |conn, _| subscriptions::commit_notifications(conn, commit)).await?
    }

    async fn outbox_endpoints(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| subscriptions::outbox_endpoints(conn).map_err(backend)).await
    }

    async fn outbox(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.read(move |conn| subscriptions::outbox(conn, &endpoint, limit).map_err(backend)).await
    }

    async fn record_delivery(&self, item: &OutboxItem, outcome: DeliveryOutcome, at: &str) -> Result<(), StoreError> {
        let (item, at) = (item.clone(), at.to_owned());
        self.write(move |conn, _| subscriptions::record_delivery(conn, &item, outcome, &at)).await
    }

    fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn, _| subscriptions::try_lease(conn, &name, &holder, ttl)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn, _| subscriptions::release_lease(conn, &name, &holder)).await
    }

    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            if !records::create(conn, &tenant, kind, &id, &doc)? {
                return Ok(Err(NgsiLdError::already_exists(format!("{} {id} already exists", kind.what()))));
            }
            state.note_tenant(conn, &tenant)?;
            state.tell(StoreEvent::Records { tenant, kind });
            Ok(Ok(()))
        })
        .await
    }

    async fn replace_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            let replaced = records::replace(conn, &tenant, kind, &id, &doc)?;
            if replaced {
                state.tell(StoreEvent::Records { tenant, kind });
            }
            Ok(replaced)
        })
        .await
    }

    async fn list_records(&self, tenant: &Tenant, kind: RecordKind) -> Result<Vec<Value>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |conn| records::list(conn, &tenant, kind).map_err(backend)).await
    }

    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, state| {
            let deleted = records::delete(conn, &tenant, kind, &id)?;
            if deleted {
                state.tell(StoreEvent::Records { tenant, kind });
            }
            Ok(deleted)
        })
        .await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.write(move |conn, _| audit::append(conn, &entries)).await
    }

    async fn read_audit(&self, filter: &AuditFilter, offset: usize, limit: usize) -> Result<AuditPage, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| audit::read(conn, &filter, offset, limit).map_err(backend)).await
    }

    async fn purge_audit(&self, before_micros: i64) -> Result<u64, StoreError> {
        self.write(move |conn, _| audit::purge(conn, before_micros)).await
    }

    async fn ledger_head(&self, tenant: &Tenant) -> Result<cityhub_storage::LedgerHead, StoreError> {
        let tenant = tenant.to_owned();
        ledger_kept()?;
        self.read(move |conn| ledger::head(conn, &tenant).map_err(backend)).await
    }

    async fn ledger_hashes(&self, tenant: &Tenant, to: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let tenant = tenant.to_owned();
        ledger_kept()?;
        self.read(move |conn| ledger::hashes(conn, &tenant, to).map_err(backend)).await
    }

    async fn ledger_leaves(
        &self,
        tenant: &Tenant,
        from: u64,
        limit: usize,
    ) -> Result<Vec<cityhub_storage::LedgerLeaf>, StoreError> {
        ledger_kept()?;
        let tenant = tenant.to_owned();
        self.read(move |conn| ledger::leaves(conn, &tenant, from, limit).map_err(backend)).await
    }

    async fn ledger_find(&self, tenant: &Tenant, instance_id: &str) -> Result<Vec<u64>, StoreError> {
        let (tenant, instance_id) = (tenant.to_owned(), instance_id.to_owned());
        ledger_kept()?;
        self.read(move |conn| ledger::find(conn, &tenant, &instance_id).map_err(backend)).await
    }
}

#[cfg(test)]
mod tests;

/// The ledger's reads answer only while its leaves are written: a log that missed writes (the
/// hub runs with `--ledger off`, the default) would prove a history that is not the store's.
fn ledger_kept() -> Result<(), StoreError> {
    if ledger::enabled() {
        Ok(())
    } else {
        Err(StoreError::Unsupported(
            "this hub keeps no ledger: it runs with `--ledger off` (the default); start it with `--ledger on`".into(),
        ))
    }
}
