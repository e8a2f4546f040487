//! The live channel: `GET /cityhub/v1/live`, Server-Sent Events of a tenant's entity changes,
//! which the dashboard follows so values and markers change within a second of a write.
//!
//! # Where changes come from
//!
//! [`watch`] wraps the hub's store in [`Watched`], a store [`Layer`] that forwards every call and,
//! after a successful `modify` or `temporal_write` commit, tells the change on a bounded
//! broadcast channel ([`Live`]). Every write of this hub goes through that store — the NGSI-LD
//! API, batches, the temporal API, the notifier's writes, `serve --demo` — so no write path can
//! forget to tell. A hub tells only the writes made through it: with several hubs on one
//! PostgreSQL store, a listener sees the changes made at its own hub (following other hubs'
//! writes needs a journal the notifier does not consume; see ARCHITECTURE.md).
//!
//! # One listener
//!
//! The request is a [`Read`] (no parameter but `type`, the tenant must exist, `extract::admit`
//! decides), so access control covers it as every read. Each event is `event: change` with
//! `{"id", "type", "deleted", "entity"}` — the entity in keyValues form in the core @context,
//! only changes of the tenant asked for (and of the types asked, when `type` is given). A client
//! that falls [`CLIENT_BACKLOG`] changes behind is sent `event: lagged` and dropped (its
//! connection ends; it reconnects and reads the current state again): nothing is buffered
//! without limit. A comment line every 15 s keeps proxies from closing an idle connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use cityhub_storage::*;
use ngsild_core::{Entity, NgsiLdError};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use cityhub_access::Scope;

use crate::extract::{params, Read};
use crate::ApiError;

/// How many changes a listener may fall behind before it is dropped.
pub const CLIENT_BACKLOG: usize = 1024;

/// One committed change, as the live channel tells it.
#[derive(Debug, Clone)]
pub struct LiveChange {
    pub tenant: String,
    pub id: String,
    /// The entity before the change (None: it was new, or a temporal write, which does not
    /// read it): whether a listener saw it decides whether it hears of its deletion.
    pub before: Option<Entity>,
    /// The entity after the change; None when it was deleted.
    pub after: Option<Entity>,
}

/// The sending side of the live channel, shared by every listener of this hub.
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<Arc<LiveChange>>,
}

impl Live {
    /// Follows the changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveChange>> {
        self.sender.subscribe()
    }

    fn tell(&self, change: LiveChange) {
        // Nobody listening is no error.
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Arc::new(change));
        }
    }
}

/// Wraps `store` so that its commits are told on the returned [`Live`].
pub fn watch(store: DynStore) -> (DynStore, Live) {
    let (sender, _) = broadcast::channel(CLIENT_BACKLOG);
    let live = Live { sender };
    (Arc::new(Watched { inner: store, live: live.clone() }), live)
}

/// A [`Store`] that tells [`Live`] about every committed entity change.
pub struct Watched {
    inner: DynStore,
    live: Live,
}

#[async_trait]
impl Layer for Watched {
    fn inner(&self) -> &DynStore {
        &self.inner
    }

    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
        // Before the commit: the notifier may read the journal before this call returns.
        cityhub_metrics::trace::note_writes(tenant, modifications.iter().map(|(id, _)| id.as_str()));
        // Nothing is copied for the live channel while nobody listens.
        if self.live.sender.receiver_count() == 0 {
            return self.inner.modify(tenant, modifications).await;
        }
        let ids: Vec<String> = modifications.iter().map(|(id, _)| id.clone()).collect();
        let results = self.inner.modify(tenant, modifications).await?;
        for (id, result) in ids.into_iter().zip(&results) {
            if let Ok(change) = result {
                if change.before != change.after {
                    self.live.tell(LiveChange {
                        tenant: tenant.to_owned(),
                        id,
                        before: change.before.clone(),
                        after: change.after.clone(),
                    });
                }
            }
        }
        Ok(results)
    }

    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
        cityhub_metrics::trace::note_writes(tenant, [id]);
        let outcome = self.inner.temporal_write(tenant, id, write).await?;
        if outcome.is_ok() && self.live.sender.receiver_count() > 0 {
            let after = self.inner.get_entity(tenant, id).await?;
            self.live.tell(LiveChange { tenant: tenant.to_owned(), id: id.to_owned(), before: None, after });
        }
        Ok(outcome)
    }
}

params! {
    /// The live channel: `type`, a comma-separated list of entity types to follow.
    LiveParams = &["type"];
}

/// GET /cityhub/v1/live: the tenant's changes from now on, as Server-Sent Events.
pub async fn stream(read: Read<LiveParams>) -> Result<impl IntoResponse, ApiError> {
    let types = match read.params.list("type")? {
        Some(names) => Some(ngsild_core::expand::expand_types(&json!(names), &read.ld.ctx)?),
        None => None,
    };
    let tenant = read.tenant.clone();
    let ctx = read.ld.ctx.clone();
    let scope = read.scope.clone();
    let receiver = read.state.live.subscribe();
    let events = futures_util::stream::unfold(Some(receiver), move |receiver| {
        let (tenant, types, ctx, scope) = (tenant.clone(), types.clone(), ctx.clone(), scope.clone());
        async move {
            let mut receiver = receiver?;
            match next(&mut receiver, &tenant, types.as_deref(), &scope).await? {
                Next::Change(change) => Some((Ok::<_, Infallible>(change_event(&change, &ctx)), Some(receiver))),
                // The last event of a listener that fell behind: its stream ends after it.
                Next::Lagged(missed) => {
                    let event = Event::default().event("lagged").data(json!({ "missed": missed }).to_string());
                    Some((Ok(event), None))
                }
            }
        }
    });
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15)).text("");
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Sse::new(events).keep_alive(keep_alive)))
}

/// What a listener is sent next.
#[derive(Debug)]
enum Next {
    Change(Arc<LiveChange>),
    /// It fell this many changes behind: it is dropped.
    Lagged(u64),
}

/// The next change of `tenant` (of one of `types`, when given) on `receiver`, as `scope` lets
/// the listener see it; None once the hub stops telling.
///
/// What the caller's policies hide is hidden here as in every read (`Scope::redact`): an
/// entity it does not see is not told, its hidden attributes are left out, and an entity that
/// leaves its view (deleted, or changed out of a policy's `q`) is told as a deletion only when
/// it saw it before.
async fn next(
    receiver: &mut broadcast::Receiver<Arc<LiveChange>>,
    tenant: &str,
    types: Option<&[String]>,
    scope: &Scope,
) -> Option<Next> {
    loop {
        match receiver.recv().await {
            Ok(change) if change.tenant != tenant => continue,
            Ok(change) => {
                if let (Some(types), Some(after)) = (types, &change.after) {
                    if !after.types.iter().any(|t| types.contains(t)) {
                        continue;
                    }
                }
                if matches!(scope, Scope::All) {
                    return Some(Next::Change(change));
                }
                let after = change.after.clone().and_then(|a| scope.redact(a));
                let saw = change.before.as_ref().is_some_and(|b| scope.sees(b));
                if after.is_none() && !saw {
                    continue;
                }
                return Some(Next::Change(Arc::new(LiveChange {
                    tenant: change.tenant.clone(),
                    id: change.id.clone(),
                    before: None,
                    after,
                })));
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => return Some(Next::Lagged(missed)),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn change_event(change: &LiveChange, ctx: &ngsild_jsonld::Context) -> Event {
    let options =
        ngsild_core::render::RenderOptions { format: ngsild_core::render::Format::KeyValues, ..Default::default() };
    let (entity, types) = match &change.after {
        Some(after) => (
            Value::Object(ngsild_core::render::render_entity(after, ctx, &options)),
            ngsild_core::render::compact_types(&after.types, ctx),
        ),
        None => (Value::Null, Value::Null),
    };
    let data = json!({ "id": change.id, "type": types, "deleted": change.after.is_none(), "entity": entity });
    Event::default().event("change").data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tenant: &str, id: &str, ty: &str) -> LiveChange {
        LiveChange {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            before: None,
            after: Some(Entity::new(id, vec![ty.to_owned()])),
        }
    }

    #[tokio::test]
    async fn a_listener_gets_its_tenants_changes_of_its_types() {
        let (sender, _) = broadcast::channel(CLIENT_BACKLOG);
        let live = Live { sender };
        let mut receiver = live.subscribe();
        live.tell(change("other", "urn:a", "T"));
        live.tell(change("", "urn:b", "U"));
        live.tell(change("", "urn:c", "T"));
        live.tell(LiveChange { tenant: String::new(), id: "urn:d".into(), before: None, after: None });
        let types = ["T".to_owned()];
        match next(&mut receiver, "", Some(&types), &Scope::All).await {
            Some(Next::Change(c)) => assert_eq!(c.id, "urn:c"),
            other => panic!("{other:?}"),
        }
        // A deletion has no type left to filter on: every listener of the tenant is told.
        match next(&mut receiver, "", Some(&types), &Scope::All).await {
            Some(Next::Change(c)) => assert!(c.id == "urn:d" && c.after.is_none()),
            other => panic!("{other:?}"),
        }
    }

    /// A listener whose policy limits it to type T, without attribute `secret`, with `q=open==true`.
    #[tokio::test]
    async fn a_listener_hears_only_what_its_policies_let_it_see() {
        let (sender, _) = broadcast::channel(CLIENT_BACKLOG);
        let live = Live { sender };
        let mut receiver = live.subscribe();
        let core = ngsild_jsonld::Context::core();
        let scope = Scope::Limited(cityhub_access::Visibility {
            types: Some(["T".to_owned()].into()),
            hidden: [core.expand_term("secret").into_owned()].into(),
            q: Some("open==true".to_owned()),
            ..Default::default()
        });
        let entity = |id: &str, ty: &str, open: bool| {
            let mut e = Entity::new(id, vec![ty.to_owned()]);
            let attr = |v: Value| serde_json::from_value(json!({"type": "Property", "value": v})).unwrap();
            e.attrs.insert(ngsild_jsonld::Context::core().expand_term("open").into_owned(), vec![attr(json!(open))]);
            e.attrs.insert(ngsild_jsonld::Context::core().expand_term("secret").into_owned(), vec![attr(json!(1))]);
            e
        };
        let tell = |id: &str, before: Option<Entity>, after: Option<Entity>| {
            live.tell(LiveChange { tenant: String::new(), id: id.into(), before, after })
        };
        tell("urn:u", None, Some(entity("urn:u", "U", true)));
        tell("urn:closed", None, Some(entity("urn:closed", "T", false)));
        tell("urn:gone-unseen", Some(entity("urn:gone-unseen", "U", true)), None);
        tell("urn:t", None, Some(entity("urn:t", "T", true)));
        tell("urn:t", Some(entity("urn:t", "T", true)), Some(entity("urn:t", "T", false)));
        tell("urn:t", Some(entity("urn:t", "T", false)), None);
        let mut heard = Vec::new();
        for _ in 0..2 {
            match next(&mut receiver, "", None, &scope).await {
                Some(Next::Change(c)) => heard.push(c),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(heard[0].id, "urn:t", "U, a closed T and an unseen deletion are not told");
        let after = heard[0].after.as_ref().unwrap();
        assert_eq!(after.attrs.len(), 1, "the hidden attribute is left out: {after:?}");
        assert!(after.attrs.keys().all(|k| !k.ends_with("secret")));
        assert!(
            heard[1].id == "urn:t" && heard[1].after.is_none(),
            "changed out of the policy's q: told as gone, once (the deletion after it was not seen)"
        );
        live.tell(change("", "urn:last", "T"));
        match tokio::time::timeout(Duration::from_millis(200), next(&mut receiver, "", None, &scope)).await {
            Ok(Some(Next::Change(c))) => panic!("{c:?} has no `open`, so the q does not select it"),
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_and_dropped_not_buffered() {
        let (sender, _) = broadcast::channel(CLIENT_BACKLOG);
        let live = Live { sender };
        let mut slow = live.subscribe();
        for i in 0..CLIENT_BACKLOG + 10 {
            live.tell(change("", &format!("urn:{i}"), "T"));
        }
        match next(&mut slow, "", None, &Scope::All).await {
            Some(Next::Lagged(missed)) => assert_eq!(missed, 10),
            other => panic!("{other:?}"),
        }
    }
}
