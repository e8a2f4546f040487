//! A batch operation split among context sources (clause 4.3.6.3, 5.6.7-5.6.10): the items each
//! registration gets, what a source's BatchOperationResult says back, and the one result of the
//! whole batch from the hub's outcome and the sources'.

use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::forward::source_error;
use crate::registration::Registration;

/// An entity of a batch that failed, at the hub or at a context source (its registration).
#[derive(Debug, Clone, PartialEq)]
pub struct EntityError {
    pub entity_id: String,
    pub error: NgsiLdError,
    pub registration_id: Option<String>,
}

/// The items of a batch each registration gets, in the order the registrations first appear.
#[derive(Debug, Default)]
pub struct Groups {
    /// (registration, items sent, entity ids of the items).
    pub parts: Vec<(Registration, Vec<Value>, Vec<String>)>,
}

impl Groups {
    /// Adds `item`, the part of entity `id` that `reg` gets.
    pub fn add(&mut self, reg: &Registration, item: Value, id: &str) {
        match self.parts.iter_mut().find(|(r, ..)| r.id == reg.id) {
            Some((_, items, ids)) => {
                items.push(item);
                ids.push(id.to_owned());
            }
            None => self.parts.push((reg.clone(), vec![item], vec![id.to_owned()])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The errors of a source's 207 BatchOperationResult, each as the hub reports it on: of the
/// type the source named (else of its status), the detail naming the registration.
pub fn source_errors(registration_id: &str, result: &Value) -> Vec<EntityError> {
    let items = result.get("errors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let problem = item.get("error");
            let status = problem.and_then(|p| p.get("status")).and_then(Value::as_u64).unwrap_or(400);
            let detail = problem.and_then(|p| p.get("detail")).and_then(Value::as_str).unwrap_or("failed");
            let status = u16::try_from(status).unwrap_or(400);
            EntityError {
                entity_id: item.get("entityId").and_then(Value::as_str).unwrap_or("").to_owned(),
                error: source_error(registration_id, status, problem, detail),
                registration_id: Some(registration_id.to_owned()),
            }
        })
        .collect()
}

/// The ids a source's 201 answer lists as created; all of `sent` when it lists none.
pub fn created_ids(body: &Value, sent: &[String]) -> Vec<String> {
    body.as_array()
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_else(|| sent.to_vec())
}

/// What the registered context sources did with their parts of a batch.
#[derive(Debug, Default)]
pub struct Remote {
    /// Entities handled by the sources alone (the hub keeps nothing of them).
    pub remote_only: Vec<String>,
    /// Entities a source failed on.
    pub errors: Vec<EntityError>,
    /// Entities a source answered as created.
    pub created: Vec<String>,
}

impl Remote {
    /// Successes and errors of the whole batch from the hub's own: every entity a part of
    /// failed on is an error, the hub's own error first.
    pub fn combine(
        &self,
        mut successes: Vec<String>,
        errors: Vec<(String, NgsiLdError)>,
    ) -> (Vec<String>, Vec<EntityError>) {
        for id in &self.remote_only {
            if !successes.contains(id) {
                successes.push(id.clone());
            }
        }
        let mut errors: Vec<EntityError> = errors
            .into_iter()
            .map(|(entity_id, error)| EntityError { entity_id, error, registration_id: None })
            .collect();
        for remote in &self.errors {
            if !errors.iter().any(|e| e.entity_id == remote.entity_id) {
                errors.push(remote.clone());
            }
        }
        // An entity a source refused did not fully succeed. A local error does not undo a local
        // success of the same id: the second copy of an id in one batch fails, the first stands.
        successes.retain(|id| !self.errors.iter().any(|e| &e.entity_id == id));
        (successes, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::parse_registration;
    use ngsild_core::ErrorKind;
    use serde_json::json;

    fn registration(id: &str) -> Registration {
        let body = json!({
            "id": id,
            "type": "ContextSourceRegistration",
            "endpoint": "http://busan:1026",
            "information": [{"entities": [{"type": "Vehicle"}]}],
        });
        let body = body.as_object().expect("an object");
        parse_registration(body, &ngsild_jsonld::core_context(), "2026-01-01T00:00:00Z").expect("a registration")
    }

    #[test]
    fn items_group_by_registration_in_first_seen_order() {
        let (a, b) = (registration("urn:reg:a"), registration("urn:reg:b"));
        let mut groups = Groups::default();
        assert!(groups.is_empty());
        groups.add(&b, json!(1), "urn:e:1");
        groups.add(&a, json!(2), "urn:e:2");
        groups.add(&b, json!(3), "urn:e:3");
        let summary: Vec<(&str, Vec<Value>, Vec<String>)> =
            groups.parts.iter().map(|(r, items, ids)| (r.id.as_str(), items.clone(), ids.clone())).collect();
        assert_eq!(
            summary,
            vec![
                ("urn:reg:b", vec![json!(1), json!(3)], vec!["urn:e:1".to_owned(), "urn:e:3".to_owned()]),
                ("urn:reg:a", vec![json!(2)], vec!["urn:e:2".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_sources_batch_result_reads_back_as_its_errors() {
        let result = json!({"success": ["urn:e:1"], "errors": [
            {"entityId": "urn:e:2", "error": {"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists", "status": 409, "detail": "taken"}},
            {"entityId": "urn:e:3", "error": {"status": 404, "detail": "gone"}},
        ]});
        let errors = source_errors("urn:reg:a", &result);
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].entity_id.as_str(), errors[0].error.kind), ("urn:e:2", ErrorKind::AlreadyExists));
        assert_eq!(errors[0].error.detail, "context source urn:reg:a: taken");
        assert_eq!((errors[1].entity_id.as_str(), errors[1].error.kind), ("urn:e:3", ErrorKind::ResourceNotFound));
        assert_eq!(errors[1].registration_id.as_deref(), Some("urn:reg:a"));
        assert!(source_errors("urn:reg:a", &json!({"success": []})).is_empty());
        assert_eq!(created_ids(&json!(["urn:e:1"]), &["x".to_owned()]), ["urn:e:1"]);
        assert_eq!(created_ids(&Value::Null, &["x".to_owned()]), ["x"]);
    }

    #[test]
    fn the_batch_result_unites_the_hub_and_the_sources() {
        let remote = Remote {
            remote_only: vec!["urn:e:r".to_owned()],
            errors: vec![
                EntityError {
                    entity_id: "urn:e:1".to_owned(),
                    error: NgsiLdError::bad_request("source refused"),
                    registration_id: Some("urn:reg:a".to_owned()),
                },
                EntityError {
                    entity_id: "urn:e:2".to_owned(),
                    error: NgsiLdError::bad_request("source refused too"),
                    registration_id: Some("urn:reg:a".to_owned()),
                },
            ],
            created: Vec::new(),
        };
        let local_errors = vec![("urn:e:2".to_owned(), NgsiLdError::not_found("hub has none"))];
        let (successes, errors) = remote.combine(vec!["urn:e:1".to_owned(), "urn:e:3".to_owned()], local_errors);
        assert_eq!(successes, ["urn:e:3", "urn:e:r"], "what a source refused did not succeed");
        let errors: Vec<(&str, Option<&str>)> =
            errors.iter().map(|e| (e.entity_id.as_str(), e.registration_id.as_deref())).collect();
        assert_eq!(errors, [("urn:e:2", None), ("urn:e:1", Some("urn:reg:a"))], "the hub's own error first, once");
    }
}
