//! Registration queries (clause 5.10.2): what `GET /csourceRegistrations` asks, read from its
//! parameters, and the registrations it selects — by id, or by the entities they cover (clause
//! 5.12), then `q` and `csf` on the registration's own properties, its location against a
//! geo-query and its observation or management interval against a temporal query.

use ngsild_core::params::Params;
use ngsild_core::time::parse_datetime;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use ngsild_query::params::entity_filter;
use ngsild_query::{EntityFilter, QExpr, TypeExpr};
use serde_json::Value;

use crate::registration::{as_entity, EntitySpec};
use crate::Registration;

/// What a registration query (clause 5.10.2) asks, read from its parameters.
pub struct RegistrationQuery {
    /// The entity selection; its `ids` are those that name no registration.
    filter: EntityFilter,
    /// `id`: registrations themselves, or the entities they cover.
    ids: Vec<String>,
    csf: Option<QExpr>,
    time: Option<TimeFilter>,
    types: Option<TypeExpr>,
}

impl RegistrationQuery {
    pub fn parse(params: &Params, ctx: &Context) -> Result<RegistrationQuery, NgsiLdError> {
        // Clause 5.10.2: a query names what it looks for.
        let names_something = ["id", "idPattern", "type", "attrs", "csf", "georel", "timerel", "q"]
            .iter()
            .any(|p| params.get(p).is_some());
        if !names_something {
            return Err(NgsiLdError::bad_request(
                "a registration query needs at least one of type, attrs, id, idPattern, q, csf, a geo-query (georel, \
                 geometry, coordinates) or a temporal query (timerel, timeAt)",
            ));
        }
        let mut filter = entity_filter(params, ctx)?;
        let ids = std::mem::take(&mut filter.ids);
        let csf = params
            .get("csf")
            .map(|raw| QExpr::parse(raw, ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid csf: {e}"))))
            .transpose()?;
        let time = TimeFilter::parse(params)?;
        let types = params
            .get("type")
            .map(|t| TypeExpr::parse(t, ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid type: {e}"))))
            .transpose()?;
        Ok(RegistrationQuery { filter, ids, csf, time, types })
    }

    /// The registrations of `regs` the query selects: those its `id` names, else those covering
    /// its entities; then q and csf on the registration's own properties (clause 5.10.2.4), its
    /// location against the geo-query, its time intervals against the temporal query.
    pub fn select(mut self, regs: &[Registration]) -> Vec<&Registration> {
        let (named, entity_ids): (Vec<&String>, Vec<&String>) =
            self.ids.iter().partition(|id| regs.iter().any(|r| &r.id == *id));
        self.filter.ids = entity_ids.into_iter().cloned().collect();
        let (filter, types) = (&self.filter, self.types.as_ref());
        regs.iter()
            .filter(|r| if named.is_empty() { selects(r, filter, types) } else { named.contains(&&r.id) })
            .filter(|r| filter.q.as_ref().is_none_or(|q| q.matches(&as_entity(r))))
            .filter(|r| self.csf.as_ref().is_none_or(|q| q.matches(&as_entity(r))))
            .filter(|r| filter.geo.as_ref().is_none_or(|g| g.matches(&as_entity(r))))
            .filter(|r| self.time.as_ref().is_none_or(|t| t.matches(r)))
            .collect()
    }
}

/// Whether a registration covers the ids, types and attributes a query names (clauses 5.10.2.4,
/// 5.12).
fn selects(reg: &Registration, filter: &EntityFilter, types: Option<&TypeExpr>) -> bool {
    let spec = EntitySpec { types, ids: &filter.ids, id_pattern: filter.id_pattern.as_ref() };
    let names_entities = spec.types.is_some() || !spec.ids.is_empty() || spec.id_pattern.is_some();
    let specs = if names_entities { vec![spec] } else { Vec::new() };
    let attrs: Vec<&String> = filter.attrs.iter().collect();
    reg.information.iter().any(|info| info.matches(&specs, &attrs))
}

/// A temporal filter on a registration's observation or management interval.
struct TimeFilter {
    management: bool,
    rel: String,
    at: chrono::DateTime<chrono::Utc>,
    end: Option<chrono::DateTime<chrono::Utc>>,
}

impl TimeFilter {
    fn parse(params: &Params) -> Result<Option<TimeFilter>, NgsiLdError> {
        let Some(rel) = params.get("timerel") else {
            return Ok(None);
        };
        let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, NgsiLdError> {
            params
                .get(name)
                .map(|v| {
                    parse_datetime(v).ok_or_else(|| NgsiLdError::bad_request(format!("{name} is not a date-time")))
                })
                .transpose()
        };
        let at = time("timeAt")?.ok_or_else(|| NgsiLdError::bad_request("timerel needs timeAt"))?;
        let end = time("endTimeAt")?;
        if !matches!(rel, "before" | "after" | "between") || (rel == "between" && end.is_none()) {
            return Err(NgsiLdError::bad_request(format!("invalid timerel {rel:?}")));
        }
        let management = match params.get("timeproperty") {
            // observedAt is about observations; createdAt and modifiedAt about management.
            None | Some("observationInterval") | Some("observedAt") => false,
            Some("managementInterval") | Some("createdAt") | Some("modifiedAt") => true,
            Some(other) => return Err(NgsiLdError::bad_request(format!("invalid timeproperty {other:?}"))),
        };
        Ok(Some(TimeFilter { management, rel: rel.to_owned(), at, end }))
    }

    fn matches(&self, reg: &Registration) -> bool {
        let interval = if self.management { &reg.management_interval } else { &reg.observation_interval };
        let Some(interval) = interval else { return false };
        let bound = |name: &str| interval.get(name).and_then(Value::as_str).and_then(parse_datetime);
        let (start, end) = (bound("startAt"), bound("endAt"));
        match self.rel.as_str() {
            "before" => start.is_some_and(|s| s < self.at),
            "after" => end.is_none_or(|e| e > self.at),
            _ => start.is_some_and(|s| self.end.is_some_and(|t| s < t)) && end.is_none_or(|e| e > self.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::parse_registration;
    use serde_json::json;

    fn reg(id: &str, body: Value) -> Registration {
        let mut body = body;
        body["type"] = json!("ContextSourceRegistration");
        body["id"] = json!(id);
        body["endpoint"] = json!("http://busan:1026");
        parse_registration(body.as_object().unwrap(), &ngsild_jsonld::core_context(), "2024-01-01T00:00:00Z").unwrap()
    }

    fn ask(pairs: &[(&str, &str)]) -> Result<RegistrationQuery, NgsiLdError> {
        let params = Params::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
        RegistrationQuery::parse(&params, &ngsild_jsonld::core_context())
    }

    fn regs() -> Vec<Registration> {
        vec![
            reg(
                "urn:r:1",
                json!({"information": [{"entities": [{"type": "Vehicle"}]}],
                       "observationInterval": {"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-02-01T00:00:00Z"}}),
            ),
            reg("urn:r:2", json!({"information": [{"entities": [{"type": "Building"}], "propertyNames": ["height"]}]})),
        ]
    }

    fn ids(selected: Vec<&Registration>) -> Vec<&str> {
        selected.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn a_query_must_name_what_it_looks_for() {
        let err = ask(&[("limit", "3")]).err().unwrap();
        assert!(err.detail.contains("needs at least one of type"), "{}", err.detail);
    }

    #[test]
    fn registrations_are_selected_by_id_or_by_what_they_cover() {
        let regs = regs();
        assert_eq!(ids(ask(&[("id", "urn:r:2")]).unwrap().select(&regs)), vec!["urn:r:2"]);
        assert_eq!(ids(ask(&[("type", "Vehicle")]).unwrap().select(&regs)), vec!["urn:r:1"]);
        // A registration naming no attributes covers every attribute of its entities (clause 5.12).
        assert_eq!(ids(ask(&[("attrs", "height")]).unwrap().select(&regs)), vec!["urn:r:1", "urn:r:2"]);
        assert_eq!(ids(ask(&[("type", "Building"), ("attrs", "speed")]).unwrap().select(&regs)), Vec::<&str>::new());
        assert!(ask(&[("type", "Tree")]).unwrap().select(&regs).is_empty());
    }

    #[test]
    fn a_temporal_query_meets_the_observation_interval() {
        let regs = regs();
        let at = |rel: &str, at: &str| ids(ask(&[("timerel", rel), ("timeAt", at)]).unwrap().select(&regs));
        assert_eq!(at("before", "2024-01-15T00:00:00Z"), vec!["urn:r:1"]);
        assert!(at("after", "2024-03-01T00:00:00Z").is_empty());
        let err = ask(&[("timerel", "between"), ("timeAt", "2024-01-01T00:00:00Z")]).err().unwrap();
        assert!(err.detail.contains("invalid timerel"), "{}", err.detail);
        let err = ask(&[("timerel", "before")]).err().unwrap();
        assert!(err.detail.contains("timerel needs timeAt"), "{}", err.detail);
        let err = ask(&[("timerel", "before"), ("timeAt", "x"), ("timeproperty", "observedAt")]).err().unwrap();
        assert!(err.detail.contains("timeAt is not a date-time"), "{}", err.detail);
    }
}
