//! The NGSIv2 intake's write: converted entities ([`crate::ngsiv2`]) expanded in the core
//! @context and upserted — created when new, else their attributes appended, overwriting
//! (`ngsild_core::ops::upsert` in update mode), as batch upsert with `options=update` does.

use cityhub_storage::{Modified, Modifier};
use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::ngsiv2::ConversionError;

/// Entities to write, each with its modifier.
pub type Upserts = Vec<(String, Modifier)>;
/// Entities that could not be read: where (id or `data[i]`) and why.
pub type Failures = Vec<(String, NgsiLdError)>;

/// The modifiers of the entities that read, by id, and the errors of those that did not, named
/// `data[i]` by their place in the notification.
pub fn upserts(converted: Vec<Result<Value, ConversionError>>) -> (Upserts, Failures) {
    let ctx = ngsild_jsonld::Context::core();
    let mut errors = Vec::new();
    let mut modifications: Upserts = Vec::new();
    for (i, item) in converted.into_iter().enumerate() {
        let expanded = item.map_err(|e| NgsiLdError::bad_request(e.0)).and_then(|v| match v {
            Value::Object(map) => ngsild_core::expand::expand_entity(&map, &ctx),
            _ => Err(NgsiLdError::bad_request("not an entity")),
        });
        match expanded {
            Ok((entity, input)) => {
                let id = entity.id.clone();
                let modifier: Modifier = Box::new(move |current| {
                    let now = ngsild_core::time::now();
                    Ok(Modified::entity(ngsild_core::ops::upsert(current, entity, &input, true, &now)?))
                });
                modifications.push((id, modifier));
            }
            Err(e) => errors.push((format!("data[{i}]"), e)),
        }
    }
    (modifications, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entity_that_does_not_expand_is_an_error_named_by_its_place() {
        let (ok, errors) = upserts(vec![
            Ok(json!({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": 1}})),
            Ok(json!({"id": "urn:ngsi-ld:T:2", "type": "T", "bad name": {"type": "Property", "value": 1}})),
            Err(ConversionError("entity x: broken".into())),
        ]);
        assert_eq!(ok.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["urn:ngsi-ld:T:1"]);
        assert_eq!(errors.iter().map(|(at, _)| at.as_str()).collect::<Vec<_>>(), ["data[1]", "data[2]"]);
        assert!(errors[1].1.detail.contains("broken"));
        let (_, modifier) = ok.into_iter().next().unwrap();
        let created = modifier(None).unwrap().next.unwrap();
        assert_eq!(created.attrs.len(), 1);
    }
}
