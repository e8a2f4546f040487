//! Which context source registrations a csource subscription matches, and the
//! CSourceNotification it sends (clauses 5.11.2, 5.11.7, 5.12, 5.3.2). Pure: registrations and a
//! compiled subscription in, a notification body out.

use ngsild_federation::registration::{as_entity, geo_matches, render_registration, EntitySpec, Information};
use ngsild_federation::Registration;
use serde_json::{json, Value};

use crate::matching::Compiled;

/// Why a registration is notified (CSourceNotification `triggerReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerReason {
    NewlyMatching,
    Updated,
    NoLongerMatching,
}

impl TriggerReason {
    pub fn name(self) -> &'static str {
        match self {
            TriggerReason::NewlyMatching => "newlyMatching",
            TriggerReason::Updated => "updated",
            TriggerReason::NoLongerMatching => "noLongerMatching",
        }
    }
}

impl Compiled {
    /// The attribute names a registration must offer one of (clause 5.12): the watched ones and
    /// those to be notified together; none given means any.
    fn wanted_attributes(&self) -> Vec<&String> {
        self.sub.watched_attributes.iter().chain(&self.sub.notification.attributes).collect()
    }

    fn wants(&self, info: &Information) -> bool {
        let specs: Vec<EntitySpec<'_>> = self
            .selectors
            .iter()
            .map(|s| EntitySpec { types: s.types.as_ref(), ids: s.id.as_slice(), id_pattern: s.id_pattern.as_ref() })
            .collect();
        info.matches(&specs, &self.wanted_attributes())
    }

    /// The part of a registration this csource subscription is about: the registration with only
    /// its matching RegistrationInfo elements (clause 5.11.7), or None when it does not match —
    /// no RegistrationInfo matches, or `q`/`csf` on its properties, `scopeQ` on its scopes or
    /// `geoQ` on its geo-properties says no, or it expired.
    pub fn relevant(&self, reg: &Registration, now: &str) -> Option<Registration> {
        if reg.expired(now) {
            return None;
        }
        let information: Vec<Information> = reg.information.iter().filter(|i| self.wants(i)).cloned().collect();
        if information.is_empty() {
            return None;
        }
        let properties_ok = match (&self.q, &self.csf) {
            (None, None) => true,
            (q, csf) => {
                let entity = as_entity(reg);
                q.as_ref().is_none_or(|q| q.matches(&entity)) && csf.as_ref().is_none_or(|c| c.matches(&entity))
            }
        };
        let scope_ok = self.scope_q.as_ref().is_none_or(|s| s.matches(&reg.scope));
        let geo_ok = self.geo.as_ref().is_none_or(|g| geo_matches(reg, g));
        (properties_ok && scope_ok && geo_ok).then(|| Registration { information, ..reg.clone() })
    }

    /// What a change of one registration notifies (clause 5.11.7): `before`/`after` are its
    /// versions (None: it did not exist / no longer exists). A registration that matched before
    /// and no longer does is shown as it matched.
    pub fn on_registration_change(
        &self,
        before: Option<&Registration>,
        after: Option<&Registration>,
        now: &str,
    ) -> Option<(TriggerReason, Registration)> {
        let was = before.and_then(|r| self.relevant(r, now));
        let is = after.and_then(|r| self.relevant(r, now));
        match (was, is) {
            (None, Some(reg)) => Some((TriggerReason::NewlyMatching, reg)),
            (Some(_), Some(reg)) => Some((TriggerReason::Updated, reg)),
            (Some(reg), None) => Some((TriggerReason::NoLongerMatching, reg)),
            (None, None) => None,
        }
    }

    /// The CSourceNotification message for the outbox (clause 5.3.2): the registrations in the
    /// subscriber's @context.
    pub fn csource_message(&self, registrations: &[Registration], reason: TriggerReason, now: &str) -> Value {
        let data: Vec<Value> = registrations
            .iter()
            .map(|r| Value::Object(render_registration(r, &self.notify_ctx, self.sub.notification.sys_attrs)))
            .collect();
        let mut body = json!({
            "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
            "type": "ContextSourceNotification",
            "subscriptionId": self.sub.id,
            "notifiedAt": now,
            "data": data,
            "triggerReason": reason.name(),
        });
        if self.wants_ld() {
            body["@context"] = self.context_value();
        }
        self.envelope(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::from_payload;
    use cityhub_storage::SubscriptionKind;
    use ngsild_federation::registration::parse_registration;
    use ngsild_jsonld::core_context;

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn subscription(extra: Value) -> Compiled {
        let mut body = json!({
            "id": "urn:ngsi-ld:Subscription:c",
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let ctx = core_context();
        let sub = from_payload(body.as_object().unwrap(), &ctx, None, NOW).unwrap();
        Compiled::new(SubscriptionKind::CSource, "", sub, &ctx, ctx.clone()).unwrap()
    }

    fn registration(body: Value) -> Registration {
        let mut body = body;
        body["type"] = json!("ContextSourceRegistration");
        body["endpoint"] = json!("http://source:1026");
        body["id"] = json!("urn:ngsi-ld:ContextSourceRegistration:r");
        parse_registration(body.as_object().unwrap(), &core_context(), NOW).unwrap()
    }

    fn types(reg: &Registration) -> Vec<&str> {
        reg.information.iter().flat_map(|i| &i.entities).flat_map(|e| &e.types).map(|t| t.as_str()).collect()
    }

    #[test]
    fn only_matching_registration_info_is_kept() {
        let reg = registration(json!({"information": [
            {"entities": [{"type": "Building"}]},
            {"entities": [{"type": "Bus"}]},
        ]}));
        let relevant = subscription(json!({})).relevant(&reg, NOW).unwrap();
        assert_eq!(types(&relevant), vec!["https://uri.etsi.org/ngsi-ld/default-context/Building"]);
        assert!(subscription(json!({"entities": [{"type": "Car"}]})).relevant(&reg, NOW).is_none());
    }

    #[test]
    fn ids_and_patterns_meet_as_clause_5_12_says() {
        let by_id = registration(json!({"information": [{"entities": [{"type": "Building", "id": "urn:b:1"}]}]}));
        let by_pattern =
            registration(json!({"information": [{"entities": [{"type": "Building", "idPattern": "^urn:b:"}]}]}));
        let wants = |selector: Value, reg: &Registration| {
            subscription(json!({"entities": [selector]})).relevant(reg, NOW).is_some()
        };
        assert!(wants(json!({"type": "Building", "id": "urn:b:1"}), &by_id));
        assert!(!wants(json!({"type": "Building", "id": "urn:b:2"}), &by_id));
        assert!(wants(json!({"type": "Building", "id": "urn:b:2"}), &by_pattern));
        assert!(wants(json!({"type": "Building", "idPattern": ":1$"}), &by_id));
        assert!(wants(json!({"type": "Building", "idPattern": ".*"}), &by_pattern), "two patterns may meet");
        assert!(!wants(json!({"type": "Building", "id": "urn:c:1"}), &by_pattern));
    }

    #[test]
    fn attributes_watched_or_notified_must_be_registered() {
        let reg = registration(json!({"information": [
            {"entities": [{"type": "Building"}], "propertyNames": ["name"]},
        ]}));
        assert!(subscription(json!({"watchedAttributes": ["name"]})).relevant(&reg, NOW).is_some());
        assert!(subscription(json!({"watchedAttributes": ["height"]})).relevant(&reg, NOW).is_none());
        let whole = registration(json!({"information": [{"entities": [{"type": "Building"}]}]}));
        assert!(subscription(json!({"watchedAttributes": ["height"]})).relevant(&whole, NOW).is_some());
    }

    #[test]
    fn geo_q_csf_and_expiry_filter_registrations() {
        let located = registration(json!({
            "information": [{"entities": [{"type": "Building"}]}],
            "location": {"type": "Point", "coordinates": [-8.521, 41.2]},
            "brand": "acme",
        }));
        let near = |coordinates: Value| {
            subscription(json!({"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point",
                "coordinates": coordinates}}))
        };
        assert!(near(json!([-8.52, 41.2])).relevant(&located, NOW).is_some());
        assert!(near(json!([2.35, 48.85])).relevant(&located, NOW).is_none());
        let unlocated = registration(json!({"information": [{"entities": [{"type": "Building"}]}]}));
        assert!(near(json!([-8.52, 41.2])).relevant(&unlocated, NOW).is_none());
        assert!(subscription(json!({"csf": "brand==\"acme\""})).relevant(&located, NOW).is_some());
        assert!(subscription(json!({"csf": "brand==\"other\""})).relevant(&located, NOW).is_none());
        let expired = Registration { expires_at: Some("2020-01-01T00:00:00Z".into()), ..located };
        assert!(subscription(json!({})).relevant(&expired, NOW).is_none());
    }

    #[test]
    fn changes_give_their_trigger_reason() {
        let c = subscription(json!({}));
        let building = registration(json!({"information": [{"entities": [{"type": "Building"}]}]}));
        let bus = registration(json!({"information": [{"entities": [{"type": "Bus"}]}]}));
        let reason = |before: Option<&Registration>, after: Option<&Registration>| {
            c.on_registration_change(before, after, NOW).map(|(r, _)| r)
        };
        assert_eq!(reason(None, Some(&building)), Some(TriggerReason::NewlyMatching));
        assert_eq!(reason(Some(&building), Some(&building)), Some(TriggerReason::Updated));
        assert_eq!(reason(Some(&building), Some(&bus)), Some(TriggerReason::NoLongerMatching));
        assert_eq!(reason(Some(&building), None), Some(TriggerReason::NoLongerMatching));
        assert_eq!(reason(None, Some(&bus)), None);
    }

    #[test]
    fn messages_are_csource_notifications() {
        let c = subscription(json!({"notification": {"endpoint": {"uri": "http://127.0.0.1:9/n",
            "accept": "application/ld+json"}}}));
        let building = registration(json!({"information": [{"entities": [{"type": "Building"}]}]}));
        let message = c.csource_message(&[building], TriggerReason::Updated, NOW);
        let body = &message["body"];
        assert_eq!(body["type"], "ContextSourceNotification");
        assert_eq!(body["triggerReason"], "updated");
        assert_eq!(body["subscriptionId"], "urn:ngsi-ld:Subscription:c");
        assert_eq!(body["data"][0]["id"], "urn:ngsi-ld:ContextSourceRegistration:r");
        assert_eq!(body["data"][0]["information"][0]["entities"][0]["type"], "Building");
        assert_eq!(body["@context"], ngsild_jsonld::CORE_CONTEXT_URL);
        assert_eq!(message["headers"]["Content-Type"], "application/ld+json");
    }
}
