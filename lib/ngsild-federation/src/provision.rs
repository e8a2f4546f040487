//! How a provision request on one entity splits between the hub and the registered context
//! sources (clause 4.3.6.3).
//!
//! * An `inclusive` registration gets a copy of the attributes it covers; the hub keeps them too.
//! * An `exclusive` registration takes the attributes it covers away from the hub.
//! * A `redirect` registration takes what it covers away from the hub as well (all of the entity
//!   when it names no attributes).
//! * An `auxiliary` registration never sees a write (left out by [`crate::matching::targets`]).

use crate::matching::Target;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::{targets, Operation, Request};
    use crate::registration::parse_registration;
    use ngsild_query::EntityFilter;
    use serde_json::json;

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
        let request = Request { operation: Operation::UPDATE_ATTRS, filter: &filter, entity_types: &types };
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
        let request = Request { operation: Operation::UPDATE_ATTRS, filter: &filter, entity_types: &types };
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
}
