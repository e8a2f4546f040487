//! A batch operation split among context sources (clause 4.3.6.3, 5.6.7-5.6.10): the items each
//! registration gets, what a source's BatchOperationResult says back, and the one result of the
//! whole batch from the hub's outcome and the sources'.

use std::sync::Arc;

use ngsild_core::expand::{expand_fragment, EntityInput};
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde_json::{json, Value};

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

/// An entity id of a batch with why it failed.
pub type Failure = (String, NgsiLdError);

/// The id a batch item names (`id` or `@id`); empty when it names none.
pub fn item_id(item: &Value) -> String {
    item.get("id").or_else(|| item.get("@id")).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Expands every item of a batch with its active @context (or the error getting it): the items
/// that expand go on (with their ids), each one that does not is an error of its id — not an
/// object, no id, or (`need_type`) no type.
pub fn expand_items(
    items: Vec<(Value, Result<Arc<Context>, NgsiLdError>)>,
    need_type: bool,
) -> (Vec<(String, EntityInput)>, Vec<Failure>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (item, ctx) in items {
        let id = item_id(&item);
        let result = ctx.and_then(|ctx| {
            let map = item.as_object().ok_or_else(|| NgsiLdError::bad_request("a batch item must be a JSON object"))?;
            let input = expand_fragment(map, &ctx)?;
            if input.id.is_none() {
                return Err(NgsiLdError::bad_request("the entity has no id"));
            }
            if need_type && input.types.is_empty() {
                return Err(NgsiLdError::bad_request("the entity has no type"));
            }
            Ok(input)
        });
        match result {
            Ok(input) => ok.push((id, input)),
            Err(e) => failed.push((id, e)),
        }
    }
    (ok, failed)
}

/// Splits the outcomes of a batch's entities into the successes and the errors, after `errors`
/// (those that failed before reaching the store).
pub fn split<T>(results: Vec<Result<T, Failure>>, mut errors: Vec<Failure>) -> (Vec<T>, Vec<Failure>) {
    let mut ok = Vec::new();
    for r in results {
        match r {
            Ok(x) => ok.push(x),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// The BatchOperationResult body (clause 5.2.16): each error a BatchEntityError.
pub fn batch_result(successes: &[String], errors: &[EntityError]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| crate::provision::batch_entity_error(Some(&e.entity_id), e.registration_id.as_deref(), &e.error))
        .collect();
    json!({"success": successes, "errors": errors})
}

/// What a context source answered to its part of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceReply<'a> {
    /// A 2xx answer, its body when it was JSON.
    Accepted { status: u16, body: Option<&'a Value> },
    /// No answer, or one that refused the part: the error it stands for.
    Failed(NgsiLdError),
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
    /// Takes in what the source of `registration_id` answered to its part (the entities `ids`):
    /// a 207's errors, a 201's created ids, or every entity as failed with the source's error.
    /// Answers, when the source accepted its part, the entities it failed on.
    pub fn read(&mut self, registration_id: &str, ids: &[String], reply: SourceReply<'_>) -> Option<Vec<String>> {
        let null = Value::Null;
        match reply {
            SourceReply::Accepted { status: 207, body } => {
                let errors = source_errors(registration_id, body.unwrap_or(&null));
                let failed = errors.iter().map(|e| e.entity_id.clone()).collect();
                self.errors.extend(errors);
                Some(failed)
            }
            SourceReply::Accepted { status, body } => {
                if status == 201 {
                    self.created.extend(created_ids(body.unwrap_or(&null), ids));
                }
                Some(Vec::new())
            }
            SourceReply::Failed(error) => {
                self.errors.extend(ids.iter().map(|id| EntityError {
                    entity_id: id.clone(),
                    error: error.clone(),
                    registration_id: Some(registration_id.to_owned()),
                }));
                None
            }
        }
    }

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

    #[test]
    fn each_item_that_does_not_expand_is_an_error_of_its_id() {
        let core = || Ok(ngsild_jsonld::core_context());
        let items = vec![
            (json!({"id": "urn:e:1", "type": "T"}), core()),
            (json!({"id": "urn:e:2"}), core()),
            (json!({"type": "T"}), core()),
            (json!("urn:e:4"), core()),
            (json!({"id": "urn:e:5", "type": "T"}), Err(NgsiLdError::bad_request("no such @context"))),
        ];
        let (ok, failed) = expand_items(items, true);
        assert_eq!(ok.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["urn:e:1"]);
        let failed: Vec<(&str, &str)> = failed.iter().map(|(id, e)| (id.as_str(), e.detail.as_str())).collect();
        assert_eq!(
            failed,
            [
                ("urn:e:2", "the entity has no type"),
                ("", "the entity has no id"),
                ("", "a batch item must be a JSON object"),
                ("urn:e:5", "no such @context"),
            ]
        );
        let (ok, _) = expand_items(vec![(json!({"@id": "urn:e:2"}), core())], false);
        assert_eq!(ok[0].0, "urn:e:2", "an update batch needs no type");
    }

    #[test]
    fn outcomes_split_after_the_earlier_errors() {
        let early = vec![("urn:e:0".to_owned(), NgsiLdError::bad_request("bad"))];
        let results = vec![Ok(1), Err(("urn:e:2".to_owned(), NgsiLdError::not_found("gone"))), Ok(3)];
        let (ok, errors) = split(results, early);
        assert_eq!(ok, [1, 3]);
        assert_eq!(errors.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["urn:e:0", "urn:e:2"]);
    }

    #[test]
    fn a_batch_result_lists_each_error_as_a_batch_entity_error() {
        let errors = [EntityError {
            entity_id: "urn:e:1".to_owned(),
            error: NgsiLdError::not_found("gone"),
            registration_id: Some("urn:reg:a".to_owned()),
        }];
        let body = batch_result(&["urn:e:2".to_owned()], &errors);
        assert_eq!(body["success"], json!(["urn:e:2"]));
        assert_eq!(body["errors"][0]["entityId"], "urn:e:1");
        assert_eq!(body["errors"][0]["registrationId"], "urn:reg:a");
        assert_eq!(body["errors"][0]["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound");
        assert_eq!(body["errors"][0]["error"]["detail"], "gone");
    }

    #[test]
    fn a_source_s_reply_becomes_created_ids_or_entity_errors() {
        let ids = vec!["urn:e:1".to_owned(), "urn:e:2".to_owned()];
        let mut remote = Remote::default();
        let created = json!(["urn:e:1"]);
        let reply = SourceReply::Accepted { status: 201, body: Some(&created) };
        assert_eq!(remote.read("urn:reg:a", &ids, reply), Some(Vec::new()));
        assert_eq!(remote.created, ["urn:e:1"]);
        let partial = json!({"success": ["urn:e:1"], "errors": [
            {"entityId": "urn:e:2", "error": {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "status": 404, "detail": "none"}}
        ]});
        let reply = SourceReply::Accepted { status: 207, body: Some(&partial) };
        assert_eq!(remote.read("urn:reg:a", &ids, reply), Some(vec!["urn:e:2".to_owned()]));
        assert_eq!(remote.errors[0].error.kind, ErrorKind::ResourceNotFound);
        assert_eq!(remote.errors[0].registration_id.as_deref(), Some("urn:reg:a"));
        let refused = NgsiLdError::bad_request("source urn:reg:b refused");
        assert_eq!(remote.read("urn:reg:b", &ids, SourceReply::Failed(refused.clone())), None);
        let failed: Vec<(&str, Option<&str>, &str)> = remote.errors[1..]
            .iter()
            .map(|e| (e.entity_id.as_str(), e.registration_id.as_deref(), e.error.detail.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                ("urn:e:1", Some("urn:reg:b"), "source urn:reg:b refused"),
                ("urn:e:2", Some("urn:reg:b"), "source urn:reg:b refused")
            ]
        );
    }
}
