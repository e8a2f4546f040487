//! How a provision request on one entity splits between the hub and the registered context
//! sources (clause 4.3.6.3).
//!
//! * An `inclusive` registration gets a copy of the attributes it covers; the hub keeps them too.
//! * An `exclusive` registration takes the attributes it covers away from the hub.
//! * A `redirect` registration takes what it covers away from the hub as well (all of the entity
//!   when it names no attributes).
//! * An `auxiliary` registration never sees a write (left out by [`crate::matching::targets`]).
//!
//! [`combine_write`] makes one answer of what the hub and each source did with their parts.

use ngsild_core::ops::UpdateReport;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde_json::{json, Value};

use ngsild_query::EntityFilter;

use crate::matching::{targets, Operation, Request, Target};
use crate::registration::{Mode, Registration};

/// One registration's share of a provision request.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePart<'r> {
    pub registration: &'r Registration,
    /// The attributes (expanded) it gets; None: all that the request carries.
    pub attrs: Option<Vec<String>>,
}

/// The parts of a provision request on one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<'r> {
    pub remote: Vec<RemotePart<'r>>,
    /// Whether the hub applies its part.
    pub local: bool,
    /// The attributes (expanded) the hub applies; None: all that the request carries.
    pub local_attrs: Option<Vec<String>>,
}

impl Split<'_> {
    /// Nothing forwarded: the hub does it all.
    pub fn local_only() -> Split<'static> {
        Split { remote: Vec::new(), local: true, local_attrs: None }
    }
}

/// Splits a request carrying `attrs` (expanded names; empty for an operation on the whole entity
/// without attributes, such as a delete) among `targets`, the registrations that serve it.
pub fn split<'r>(targets: Vec<Target<'r>>, attrs: &[String]) -> Split<'r> {
    let mut taken_all = false;
    let mut taken: Vec<String> = Vec::new();
    let mut remote = Vec::with_capacity(targets.len());
    for target in targets {
        let takes = matches!(target.registration.mode, Mode::Exclusive | Mode::Redirect);
        // Only the attributes the request carries matter.
        let part_attrs = target.attrs.map(|names| {
            if attrs.is_empty() {
                names
            } else {
                names.into_iter().filter(|n| attrs.contains(n)).collect::<Vec<_>>()
            }
        });
        if takes {
            match &part_attrs {
                None => taken_all = true,
                Some(names) => taken.extend(names.iter().cloned()),
            }
        }
        remote.push(RemotePart { registration: target.registration, attrs: part_attrs });
    }
    if taken_all {
        return Split { remote, local: false, local_attrs: Some(Vec::new()) };
    }
    if taken.is_empty() {
        return Split { remote, local: true, local_attrs: None };
    }
    if attrs.is_empty() {
        // An operation on the whole entity: the hub keeps its own part of it.
        return Split { remote, local: true, local_attrs: None };
    }
    let kept: Vec<String> = attrs.iter().filter(|n| !taken.contains(n)).cloned().collect();
    Split { remote, local: !kept.is_empty(), local_attrs: Some(kept) }
}

/// Splits a request as [`split`] does, then leaves out the sources the request already crossed
/// (`hops`: their `contextSourceAlias`, or endpoint, is in `Via`; clause 5.12): they sent it, so
/// they hold their part already. What the hub keeps is decided with them still counted — a
/// source's exclusive attributes do not become the hub's because the request came from there.
///
/// When that leaves nothing to do — the request's data is held only in crossed exclusive or
/// redirect sources, such as a single one registered to redirect back to where the request came
/// from — the request is a loop (clause 6.3.17: 508 LoopDetected): the answer is one such
/// registration.
pub fn split_unless_looping<'r>(
    targets: Vec<Target<'r>>,
    attrs: &[String],
    hops: &[String],
) -> Result<Split<'r>, &'r Registration> {
    let crossed = |r: &Registration| crate::via::crossed(r.context_source_alias.as_deref(), &r.endpoint, hops);
    let looping: Vec<&'r Registration> = targets.iter().map(|t| t.registration).filter(|r| crossed(r)).collect();
    let mut whole = split(targets, attrs);
    if looping.is_empty() {
        return Ok(whole);
    }
    whole.remote.retain(|p| !crossed(p.registration));
    if whole.remote.is_empty() && !whole.local {
        if let Some(reg) = looping.into_iter().find(|r| matches!(r.mode, Mode::Exclusive | Mode::Redirect)) {
            return Err(reg);
        }
    }
    Ok(whole)
}

/// What one source did with its part of a write on one entity.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceOutcome {
    /// Took all of it (2xx other than 207).
    Took,
    /// Took part of it (207): its UpdateResult.
    Partly(Value),
    /// Did not take it: the status it answered (None: no answer) and why.
    Failed { status: Option<u16>, reason: String },
}

/// One source's part of a write on one entity and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePart {
    pub registration_id: String,
    /// The attributes (expanded) it was sent; None: all of the request.
    pub attrs: Option<Vec<String>>,
    pub outcome: SourceOutcome,
}

/// The one answer to a write on one entity.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteAnswer {
    /// Every part was done: the operation's own success.
    Done,
    /// Nothing was done: this error.
    Failed(NgsiLdError),
    /// Some of it was done: 207 with this UpdateResult (clause 5.2.18).
    Partial(Value),
}

/// Combines the hub's outcome (`local`: None when it had no part; its report when the operation
/// makes one) with the sources' into one answer. `attrs` are the request's attributes (expanded),
/// `local_attrs` the hub's share of them (None: all). Nobody took anything: the hub's error, or
/// 404/409 when every source answered that, else an UpdateResult of what each failed on.
pub fn combine_write(
    local: Option<Result<Option<UpdateReport>, NgsiLdError>>,
    remote: &[SourcePart],
    local_attrs: Option<&[String]>,
    attrs: &[String],
) -> WriteAnswer {
    if remote.is_empty() {
        return match local {
            Some(Ok(Some(report))) if !report.is_complete() => WriteAnswer::Partial(report.to_json(str::to_owned)),
            Some(Err(e)) => WriteAnswer::Failed(e),
            _ => WriteAnswer::Done,
        };
    }
    let failed = |p: &&SourcePart| matches!(p.outcome, SourceOutcome::Failed { .. });
    let any_accepted = !remote.iter().all(|p| failed(&p)) || matches!(local, Some(Ok(_)));
    if !any_accepted {
        if let Some(Err(e)) = local {
            return WriteAnswer::Failed(e);
        }
        if let Some(e) = unanimous_refusal(remote) {
            return WriteAnswer::Failed(e);
        }
    }
    let local_complete = match &local {
        None => true,
        Some(Ok(report)) => report.as_ref().is_none_or(UpdateReport::is_complete),
        Some(Err(_)) => false,
    };
    if local_complete && remote.iter().all(|p| p.outcome == SourceOutcome::Took) {
        return WriteAnswer::Done;
    }
    let (mut updated, mut not_updated) = (Vec::new(), Vec::new());
    let local_attrs: Vec<String> = local_attrs.map_or_else(|| attrs.to_vec(), <[String]>::to_vec);
    match local {
        Some(Ok(Some(report))) => {
            updated.extend(report.updated.iter().map(|n| json!(n)));
            not_updated
                .extend(report.not_updated.iter().map(|(n, reason)| json!({"attributeName": n, "reason": reason})));
        }
        Some(Ok(None)) => updated.extend(local_attrs.iter().map(|n| json!(n))),
        Some(Err(e)) => {
            if local_attrs.is_empty() {
                not_updated.push(json!({"reason": e.detail}));
            }
            not_updated.extend(local_attrs.iter().map(|n| json!({"attributeName": n, "reason": e.detail})));
        }
        None => {}
    }
    for part in remote {
        part.report_into(attrs, &mut updated, &mut not_updated);
    }
    WriteAnswer::Partial(json!({"updated": updated, "notUpdated": not_updated}))
}

/// Every source answered 404 (or every one 409): the write fails as they did, with the first
/// one's reason.
fn unanimous_refusal(remote: &[SourcePart]) -> Option<NgsiLdError> {
    let statuses: Vec<u16> = remote
        .iter()
        .filter_map(|p| match &p.outcome {
            SourceOutcome::Failed { status, .. } => *status,
            _ => None,
        })
        .collect();
    let reason = remote.iter().find_map(|p| match &p.outcome {
        SourceOutcome::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let all = |code: u16| !statuses.is_empty() && statuses.iter().all(|s| *s == code);
    match () {
        _ if all(404) => Some(NgsiLdError::not_found(reason.unwrap_or_default())),
        _ if all(409) => Some(NgsiLdError::already_exists(reason.unwrap_or_default())),
        _ => None,
    }
}

impl SourcePart {
    /// Adds what this source did to an UpdateResult: its own 207 (each notUpdated item with
    /// its registrationId), all it was sent, or all it was sent as not updated.
    fn report_into(&self, attrs: &[String], updated: &mut Vec<Value>, not_updated: &mut Vec<Value>) {
        let sent: Vec<String> = self.attrs.clone().unwrap_or_else(|| attrs.to_vec());
        let id = &self.registration_id;
        match &self.outcome {
            SourceOutcome::Partly(result) => {
                updated.extend(result.get("updated").and_then(Value::as_array).cloned().unwrap_or_default());
                for mut item in result.get("notUpdated").and_then(Value::as_array).cloned().unwrap_or_default() {
                    if let Some(map) = item.as_object_mut() {
                        map.insert("registrationId".into(), json!(id));
                    }
                    not_updated.push(item);
                }
            }
            SourceOutcome::Took => updated.extend(sent.iter().map(|n| json!(n))),
            SourceOutcome::Failed { reason, .. } => {
                if sent.is_empty() {
                    not_updated.push(json!({"reason": reason, "registrationId": id}));
                }
                not_updated
                    .extend(sent.iter().map(|n| json!({"attributeName": n, "reason": reason, "registrationId": id})));
            }
        }
    }
}

/// An entity (fragment) with only the attributes `attrs` (expanded) of it; None keeps them all.
pub fn narrow_body(body: &Value, attrs: Option<&[String]>, ctx: &Context) -> Value {
    let (Some(attrs), Some(map)) = (attrs, body.as_object()) else {
        return body.clone();
    };
    let kept = map
        .iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "id" | "@id" | "type" | "@type" | "scope" | "@context")
                || attrs.iter().any(|a| a.as_str() == ctx.expand_term(k).as_ref())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

/// The parts of a provision request on one entity, owned: what each registration gets and what
/// the hub keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each registration with the attributes (expanded) it gets; None: all of the request.
    pub remote: Vec<(Registration, Option<Vec<String>>)>,
    /// Whether the hub applies its part.
    pub local: bool,
    /// The attributes (expanded) the hub applies; None: all that the request carries.
    pub local_attrs: Option<Vec<String>>,
}

impl Plan {
    /// Nothing forwarded: the hub does it all.
    pub fn local_only() -> Plan {
        Plan { remote: Vec::new(), local: true, local_attrs: None }
    }

    /// Whether the hub keeps attribute `name` (expanded).
    pub fn keeps(&self, name: &str) -> bool {
        self.local_attrs.as_ref().is_none_or(|kept| kept.iter().any(|k| k == name))
    }
}

/// Plans a provision request on entity `id` (of `types`, when known) carrying `attrs` (expanded)
/// among the tenant's registrations `regs` that serve `operation` at `now`, leaving out the
/// sources the request crossed (`hops`, from `Via`; [`split_unless_looping`]). A request only
/// crossed exclusive or redirect sources hold is 508 LoopDetected (clause 6.3.17), naming the
/// source and what to change.
pub fn plan_among(
    regs: &[Registration],
    id: &str,
    types: &[String],
    attrs: &[String],
    operation: Operation,
    hops: &[String],
    now: &str,
) -> Result<Plan, NgsiLdError> {
    if regs.is_empty() {
        return Ok(Plan::local_only());
    }
    let filter = EntityFilter { ids: vec![id.to_owned()], attrs: attrs.to_vec(), ..Default::default() };
    let request = Request { operation, filter: &filter, entity_types: types };
    match split_unless_looping(targets(regs, &request, now), attrs, hops) {
        Ok(split) => Ok(Plan {
            remote: split.remote.into_iter().map(|p| (p.registration.clone(), p.attrs)).collect(),
            local: split.local,
            local_attrs: split.local_attrs,
        }),
        Err(reg) => Err(NgsiLdError::new(
            ngsild_core::ErrorKind::LoopDetected,
            format!(
                "{id} is held by context source {} ({}, registration {}), and the request already passed \
                 through it (Via): it is registered to redirect back here. Give its registration here the \
                 right contextSourceAlias, or remove one of the two registrations",
                reg.context_source_alias.as_deref().unwrap_or(&reg.endpoint),
                reg.mode.name(),
                reg.id
            ),
        )),
    }
}

/// One BatchEntityError (clause 5.2.17): the entity, the registration of the context source that
/// failed on it (none for the hub's own failure), and the error as ProblemDetails.
pub fn batch_entity_error(entity_id: Option<&str>, registration_id: Option<&str>, error: &NgsiLdError) -> Value {
    let mut item = serde_json::Map::new();
    if let Some(id) = entity_id {
        item.insert("entityId".into(), json!(id));
    }
    if let Some(reg) = registration_id {
        item.insert("registrationId".into(), json!(reg));
    }
    item.insert("error".into(), error.problem_details());
    Value::Object(item)
}

/// The answer to an operation on a whole entity (create, delete) split among the hub and sources.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityAnswer {
    /// Every part was done: the operation's own success.
    Done,
    /// The only part failed: its error is the answer.
    Failed(NgsiLdError),
    /// Some part failed: 207 with this BatchOperationResult.
    Partial(Value),
}

/// One answer for an operation on entity `id` from the hub's outcome (`local`: None when it had
/// no part) and each source's (`remote`: registration id, its error when it failed): done when
/// every part was; the error itself when the only part failed; otherwise a BatchOperationResult
/// whose `errors` hold one BatchEntityError per failed part (clause 5.2.17, a source's with its
/// `registrationId`), `success` naming the entity when some part was done.
pub fn combine_entity(
    id: &str,
    local: Option<Result<(), NgsiLdError>>,
    remote: &[(String, Option<NgsiLdError>)],
) -> EntityAnswer {
    let parts = remote.len() + usize::from(local.is_some());
    let mut errors: Vec<Value> = Vec::new();
    let mut done = false;
    match local {
        Some(Err(e)) if parts == 1 => return EntityAnswer::Failed(e),
        Some(Err(e)) => errors.push(batch_entity_error(Some(id), None, &e)),
        Some(Ok(())) => done = true,
        None => {}
    }
    for (registration_id, error) in remote {
        match error {
            Some(e) if parts == 1 => return EntityAnswer::Failed(e.clone()),
            Some(e) => errors.push(batch_entity_error(Some(id), Some(registration_id), e)),
            None => done = true,
        }
    }
    if errors.is_empty() {
        return EntityAnswer::Done;
    }
    let success: Vec<&str> = if done { vec![id] } else { Vec::new() };
    EntityAnswer::Partial(json!({"success": success, "errors": errors}))
}

/// The result of a purge the hub did its part of (clause 5.6.21) from each source's outcome
/// (registration id, its error when it did not purge): None when every source purged its part
/// too (204); otherwise a BatchOperationResult with one BatchEntityError per failing source.
pub fn purge_result(remote: &[(String, Option<NgsiLdError>)]) -> Option<Value> {
    let errors: Vec<Value> = remote
        .iter()
        .filter_map(|(registration_id, error)| Some(batch_entity_error(None, Some(registration_id), error.as_ref()?)))
        .collect();
    match errors.is_empty() {
        true => None,
        false => Some(json!({"success": [], "errors": errors})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::parse_registration;

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn reg(id: &str, mode: &str, attrs: &[&str]) -> Registration {
        let mut info = json!({"entities": [{"type": "Vehicle"}]});
        if !attrs.is_empty() {
            info["propertyNames"] = json!(attrs);
        }
        let body = json!({
            "id": id, "type": "ContextSourceRegistration", "information": [info],
            "endpoint": "http://busan:1026", "mode": mode, "operations": ["redirectionOps"],
        });
        parse_registration(body.as_object().unwrap(), &ngsild_jsonld::core_context(), NOW).unwrap()
    }

    fn x(name: &str) -> String {
        ngsild_jsonld::core_context().expand_term(name).into_owned()
    }

    fn split_for<'r>(regs: &'r [Registration], attrs: &[&str]) -> Split<'r> {
        let attrs: Vec<String> = attrs.iter().map(|a| x(a)).collect();
        let filter = EntityFilter { ids: vec!["urn:v:1".into()], attrs: attrs.clone(), ..Default::default() };
        let types = vec![x("Vehicle")];
        let request = Request { operation: Operation::UpdateAttrs, filter: &filter, entity_types: &types };
        split(targets(regs, &request, NOW), &attrs)
    }

    #[test]
    fn an_exclusive_attribute_leaves_the_hub() {
        let regs = vec![reg("urn:r:1", "exclusive", &["speed"])];
        let s = split_for(&regs, &["speed", "brand"]);
        assert_eq!(s.remote.len(), 1);
        assert_eq!(s.remote[0].attrs, Some(vec![x("speed")]));
        assert!(s.local);
        assert_eq!(s.local_attrs, Some(vec![x("brand")]));
        let only_speed = split_for(&regs, &["speed"]);
        assert!(!only_speed.local, "nothing left for the hub");
        assert!(split_for(&regs, &["brand"]).remote.is_empty(), "brand is not registered");
    }

    #[test]
    fn inclusive_copies_and_redirect_takes_all() {
        let inclusive = vec![reg("urn:r:1", "inclusive", &[])];
        let s = split_for(&inclusive, &["speed"]);
        assert!(s.local && s.local_attrs.is_none());
        assert_eq!(s.remote[0].attrs, None);
        let redirect = vec![reg("urn:r:1", "redirect", &[]), reg("urn:r:2", "redirect", &[])];
        let s = split_for(&redirect, &["speed"]);
        assert!(!s.local);
        assert_eq!(s.remote.len(), 2);
    }

    #[test]
    fn a_whole_entity_operation_stays_local_beside_an_exclusive_attribute() {
        let regs = vec![reg("urn:r:1", "exclusive", &["speed"])];
        let s = split_for(&regs, &[]);
        assert!(s.local);
        assert_eq!(s.remote[0].attrs, Some(vec![x("speed")]));
    }

    fn looping_split<'r>(regs: &'r [Registration], attrs: &[&str], via: &str) -> Result<Split<'r>, &'r str> {
        let attrs: Vec<String> = attrs.iter().map(|a| x(a)).collect();
        let filter = EntityFilter { ids: vec!["urn:v:1".into()], attrs: attrs.clone(), ..Default::default() };
        let types = vec![x("Vehicle")];
        let request = Request { operation: Operation::UpdateAttrs, filter: &filter, entity_types: &types };
        let hops = crate::via::hops([via]);
        split_unless_looping(targets(regs, &request, NOW), &attrs, &hops).map_err(|r| r.id.as_str())
    }

    fn aliased(id: &str, mode: &str, attrs: &[&str], alias: &str) -> Registration {
        Registration { context_source_alias: Some(alias.to_owned()), ..reg(id, mode, attrs) }
    }

    #[test]
    fn a_source_the_request_crossed_gets_no_part() {
        // Inclusive: the hub does its part, the crossed copy is left out.
        let regs = vec![aliased("urn:r:1", "inclusive", &[], "busan"), aliased("urn:r:2", "inclusive", &[], "daegu")];
        let s = looping_split(&regs, &["speed"], "1.1 busan").unwrap();
        assert!(s.local);
        assert_eq!(s.remote.iter().map(|p| p.registration.id.as_str()).collect::<Vec<_>>(), vec!["urn:r:2"]);
        // Not crossed: everyone as before.
        assert_eq!(looping_split(&regs, &["speed"], "1.1 seoul").unwrap().remote.len(), 2);
        // Without an alias, the endpoint's host:port decides.
        let plain = vec![reg("urn:r:3", "inclusive", &[])];
        assert!(looping_split(&plain, &["speed"], "1.1 busan:1026").unwrap().remote.is_empty());
    }

    #[test]
    fn the_hub_does_not_take_over_what_a_crossed_exclusive_source_owns() {
        let regs = vec![aliased("urn:r:1", "exclusive", &["speed"], "busan")];
        let s = looping_split(&regs, &["speed", "brand"], "1.1 busan").unwrap();
        assert!(s.remote.is_empty());
        assert_eq!(s.local_attrs, Some(vec![x("brand")]), "speed stays busan's");
    }

    #[test]
    fn a_write_only_a_crossed_exclusive_or_redirect_source_holds_is_a_loop() {
        // Clause 6.3.17: the single source is registered to redirect back where the request came from.
        let redirect = vec![aliased("urn:r:1", "redirect", &[], "busan")];
        assert_eq!(looping_split(&redirect, &["speed"], "1.1 busan").unwrap_err(), "urn:r:1");
        let exclusive = vec![aliased("urn:r:1", "exclusive", &["speed"], "busan")];
        assert_eq!(looping_split(&exclusive, &["speed"], "1.1 seoul, 1.1 busan").unwrap_err(), "urn:r:1");
        // An inclusive source crossed is no loop: the hub holds the data too.
        let inclusive = vec![aliased("urn:r:1", "inclusive", &[], "busan")];
        assert!(looping_split(&inclusive, &["speed"], "1.1 busan").unwrap().local);
        // Another source still takes it: no loop.
        let two = vec![aliased("urn:r:1", "redirect", &[], "busan"), aliased("urn:r:2", "redirect", &[], "daegu")];
        let s = looping_split(&two, &["speed"], "1.1 busan").unwrap();
        assert_eq!(s.remote.len(), 1);
        assert!(!s.local);
    }

    fn part(id: &str, attrs: Option<&[&str]>, outcome: SourceOutcome) -> SourcePart {
        SourcePart {
            registration_id: id.to_owned(),
            attrs: attrs.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            outcome,
        }
    }

    fn failed(status: Option<u16>, reason: &str) -> SourceOutcome {
        SourceOutcome::Failed { status, reason: reason.to_owned() }
    }

    #[test]
    fn a_write_without_sources_answers_as_the_hub_did() {
        let attrs = ["a".to_owned()];
        assert_eq!(combine_write(Some(Ok(None)), &[], None, &attrs), WriteAnswer::Done);
        let e = NgsiLdError::not_found("no entity");
        assert_eq!(combine_write(Some(Err(e.clone())), &[], None, &attrs), WriteAnswer::Failed(e));
        let report = UpdateReport { updated: vec!["a".into()], not_updated: vec![("b".into(), "no".into())] };
        assert_eq!(
            combine_write(Some(Ok(Some(report))), &[], None, &attrs),
            WriteAnswer::Partial(json!({"updated": ["a"], "notUpdated": [{"attributeName": "b", "reason": "no"}]}))
        );
    }

    #[test]
    fn a_write_everyone_took_is_done_and_one_nobody_took_fails_as_they_did() {
        let attrs = ["a".to_owned(), "b".to_owned()];
        let took = [part("r1", Some(&["b"]), SourceOutcome::Took)];
        assert_eq!(combine_write(Some(Ok(None)), &took, Some(&attrs[..1]), &attrs), WriteAnswer::Done);
        let gone =
            [part("r1", None, failed(Some(404), "r1 has none")), part("r2", None, failed(Some(404), "r2 neither"))];
        match combine_write(None, &gone, None, &attrs) {
            WriteAnswer::Failed(e) => {
                assert_eq!(e.kind, ngsild_core::ErrorKind::ResourceNotFound);
                assert_eq!(e.detail, "r1 has none");
            }
            other => panic!("expected a 404, got {other:?}"),
        }
        let taken = [part("r1", None, failed(Some(409), "exists"))];
        assert!(matches!(
            combine_write(None, &taken, None, &attrs),
            WriteAnswer::Failed(e) if e.kind == ngsild_core::ErrorKind::AlreadyExists
        ));
        let hub_error = NgsiLdError::bad_request("bad");
        assert_eq!(combine_write(Some(Err(hub_error.clone())), &gone, None, &attrs), WriteAnswer::Failed(hub_error));
    }

    #[test]
    fn a_partly_done_write_says_who_did_not_take_what() {
        let attrs = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let remote = [
            part("r1", Some(&["b"]), failed(None, "unreachable")),
            part(
                "r2",
                Some(&["c"]),
                SourceOutcome::Partly(json!({"updated": [], "notUpdated": [{"attributeName": "c", "reason": "no"}]})),
            ),
        ];
        let answer = combine_write(Some(Ok(None)), &remote, Some(&attrs[..1]), &attrs);
        assert_eq!(
            answer,
            WriteAnswer::Partial(json!({
                "updated": ["a"],
                "notUpdated": [
                    {"attributeName": "b", "reason": "unreachable", "registrationId": "r1"},
                    {"attributeName": "c", "reason": "no", "registrationId": "r2"},
                ],
            }))
        );
        // The hub failed where a source took its part: the hub's attributes are not updated.
        let remote = [part("r1", Some(&["b"]), SourceOutcome::Took)];
        let answer = combine_write(Some(Err(NgsiLdError::not_found("gone"))), &remote, Some(&attrs[..1]), &attrs);
        assert_eq!(
            answer,
            WriteAnswer::Partial(json!({"updated": ["b"], "notUpdated": [{"attributeName": "a", "reason": "gone"}]}))
        );
    }

    #[test]
    fn a_narrowed_body_keeps_the_core_members_and_the_named_attributes() {
        let ctx = ngsild_jsonld::core_context();
        let body = json!({"id": "urn:x", "type": "T", "@context": "c", "speed": 1, "name": "n"});
        let speed = ctx.expand_term("speed").into_owned();
        assert_eq!(
            narrow_body(&body, Some(&[speed]), &ctx),
            json!({"id": "urn:x", "type": "T", "@context": "c", "speed": 1})
        );
        assert_eq!(narrow_body(&body, None, &ctx), body);
    }

    #[test]
    fn a_plan_names_each_registration_s_part_and_the_hub_s() {
        let regs = vec![reg("urn:r:1", "exclusive", &["speed"])];
        let (speed, brand) = (x("speed"), x("brand"));
        let attrs = vec![speed.clone(), brand.clone()];
        let types = vec![x("Vehicle")];
        let plan = plan_among(&regs, "urn:v:1", &types, &attrs, Operation::UpdateAttrs, &[], NOW).unwrap();
        assert_eq!(plan.remote.len(), 1);
        assert_eq!(plan.remote[0].0.id, "urn:r:1");
        assert_eq!(plan.remote[0].1, Some(vec![speed.clone()]));
        assert!(plan.local && plan.keeps(&brand) && !plan.keeps(&speed));
        assert_eq!(
            plan_among(&[], "urn:v:1", &types, &attrs, Operation::UpdateAttrs, &[], NOW).unwrap(),
            Plan::local_only()
        );
    }

    #[test]
    fn a_plan_back_through_a_crossed_redirect_source_is_a_loop_that_names_it() {
        let regs = vec![aliased("urn:r:9", "redirect", &[], "busan")];
        let attrs = vec![x("speed")];
        let hops = crate::via::hops(["1.1 busan"]);
        let err =
            plan_among(&regs, "urn:v:1", &[x("Vehicle")], &attrs, Operation::UpdateAttrs, &hops, NOW).unwrap_err();
        assert_eq!(err.kind, ngsild_core::ErrorKind::LoopDetected);
        assert!(
            err.detail.starts_with("urn:v:1 is held by context source busan (redirect, registration urn:r:9)"),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("right contextSourceAlias"), "{}", err.detail);
    }

    #[test]
    fn a_batch_entity_error_names_the_entity_the_source_and_the_problem() {
        let e = NgsiLdError::not_found("urn:v:1 is not there");
        let item = batch_entity_error(Some("urn:v:1"), Some("urn:r:1"), &e);
        assert_eq!(item["entityId"], "urn:v:1");
        assert_eq!(item["registrationId"], "urn:r:1");
        assert_eq!(item["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound");
        assert_eq!(item["error"]["detail"], "urn:v:1 is not there");
        let hub = batch_entity_error(None, None, &e);
        assert!(hub.get("entityId").is_none() && hub.get("registrationId").is_none());
    }

    #[test]
    fn an_entity_answer_is_done_the_only_error_or_a_batch_result() {
        let gone = NgsiLdError::not_found("gone");
        assert_eq!(combine_entity("urn:v:1", Some(Ok(())), &[("r1".into(), None)]), EntityAnswer::Done);
        assert_eq!(combine_entity("urn:v:1", Some(Err(gone.clone())), &[]), EntityAnswer::Failed(gone.clone()));
        assert_eq!(
            combine_entity("urn:v:1", None, &[("r1".into(), Some(gone.clone()))]),
            EntityAnswer::Failed(gone.clone())
        );
        let EntityAnswer::Partial(body) = combine_entity("urn:v:1", Some(Ok(())), &[("r1".into(), Some(gone.clone()))])
        else {
            panic!("a failed source beside the hub's success is a 207")
        };
        assert_eq!(body["success"], json!(["urn:v:1"]));
        assert_eq!(body["errors"], json!([batch_entity_error(Some("urn:v:1"), Some("r1"), &gone)]));
        let EntityAnswer::Partial(body) =
            combine_entity("urn:v:1", Some(Err(gone.clone())), &[("r1".into(), Some(gone.clone()))])
        else {
            panic!("two failed parts are a 207")
        };
        assert_eq!(body["success"], json!([]));
        assert_eq!(body["errors"][0].get("registrationId"), None);
        assert_eq!(body["errors"][1]["registrationId"], "r1");
    }

    #[test]
    fn a_purge_a_source_failed_on_names_the_source() {
        assert_eq!(purge_result(&[("r1".into(), None)]), None);
        let refused = NgsiLdError::bad_request("source r2 refused the purge");
        let body = purge_result(&[("r1".into(), None), ("r2".into(), Some(refused.clone()))]).unwrap();
        assert_eq!(
            body,
            json!({"success": [], "errors": [{"registrationId": "r2", "error": refused.problem_details()}]})
        );
        assert_eq!(body["errors"][0]["error"]["detail"], "source r2 refused the purge");
    }
}
