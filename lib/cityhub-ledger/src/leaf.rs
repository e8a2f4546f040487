//! What one leaf of a tenant's log holds: one committed change of the NGSI-LD history (an
//! attribute instance recorded, a deletion recorded, or an instance of the temporal API replaced
//! or removed), as an RFC 8785 canonical JSON object:
//!
//! ```json
//! {"at":"<commit time>","attr":"<expanded attribute name>","datasetId":null,
//!  "deletedAt":null,"entity":"<entity id>","instance":{<the stored instance, or null when removed>},
//!  "instanceId":"urn:ngsi-ld:Instance:<n>","op":"record|replace|remove","tenant":"<tenant>"}
//! ```
//!
//! The leaf hash is [`crate::merkle::leaf_hash`] of those bytes. Which changes are leaves is what
//! `ngsild_core::history` records (a backend appends one leaf per history row it writes).

use serde_json::{json, Value};

use crate::canon::{write_string, write_value};

/// What a leaf records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// An instance appended to the history (a new or changed value, or a deletion, whose instance
    /// carries `deletedAt`).
    Record,
    /// An instance of the temporal API replaced in place (clause 5.6.14 style writes).
    Replace,
    /// An instance removed through the temporal API (one leaf per instance, also when a whole
    /// attribute's or entity's history goes): `instance` is null.
    Remove,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Record => "record",
            Op::Replace => "replace",
            Op::Remove => "remove",
        }
    }
}

/// One change, as a backend hands it in.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<'a> {
    pub tenant: &'a str,
    pub entity: &'a str,
    /// Expanded attribute name.
    pub attr: Option<&'a str>,
    pub dataset_id: Option<&'a str>,
    /// The instance's id.
    pub instance_id: Option<&'a str>,
    /// The stored instance document (`None` for [`Op::Remove`]).
    pub instance: Option<Value>,
    pub op: Op,
    /// For a recorded deletion: when the instance was deleted (the history keeps it beside the
    /// instance's document).
    pub deleted_at: Option<&'a str>,
    /// The commit time (RFC 3339).
    pub at: &'a str,
}

impl Change<'_> {
    /// The leaf as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "tenant": self.tenant,
            "entity": self.entity,
            "attr": self.attr,
            "datasetId": self.dataset_id,
            "instanceId": self.instance_id,
            "instance": self.instance.clone().unwrap_or(Value::Null),
            "op": self.op.name(),
            "deletedAt": self.deleted_at,
            "at": self.at,
        })
    }

    /// The leaf's bytes (canonical JSON): `canonical(&self.to_json())`, written directly, the
    /// members in their canonical order (no object built, sorted or cloned per leaf).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let text = |out: &mut String, name: &str, v: Option<&str>| {
            out.push_str(name);
            match v {
                Some(v) => write_string(v, out),
                None => out.push_str("null"),
            }
        };
        out.push('{');
        text(&mut out, "\"at\":", Some(self.at));
        text(&mut out, ",\"attr\":", self.attr);
        text(&mut out, ",\"datasetId\":", self.dataset_id);
        text(&mut out, ",\"deletedAt\":", self.deleted_at);
        text(&mut out, ",\"entity\":", Some(self.entity));
        out.push_str(",\"instance\":");
        match &self.instance {
            Some(v) => write_value(v, &mut out),
            None => out.push_str("null"),
        }
        text(&mut out, ",\"instanceId\":", self.instance_id);
        text(&mut out, ",\"op\":", Some(self.op.name()));
        text(&mut out, ",\"tenant\":", Some(self.tenant));
        out.push('}');
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::canonical;

    /// The leaf written directly is the canonical form of its JSON object, whatever it holds.
    #[test]
    fn bytes_are_the_canonical_json_of_the_leaf() {
        let instance =
            json!({"value": 0.1, "type": "Property", "\u{e000}x": [1.5e300, "\u{1F600}"], "datasetId": "urn:d"});
        for (instance, attr, dataset_id, deleted_at, op) in [
            (Some(instance.clone()), Some("https://example.org/p\"q\\"), Some("urn:d\n"), None, Op::Record),
            (None, None, None, Some("2026-01-01T00:00:00.000001Z"), Op::Remove),
            (Some(json!({})), Some("\u{fb33}"), None, None, Op::Replace),
        ] {
            let change = Change {
                tenant: "t\u{7}",
                entity: "urn:e:\u{10000}",
                attr,
                dataset_id,
                instance_id: Some("urn:ngsi-ld:Instance:1"),
                instance,
                op,
                deleted_at,
                at: "2026-01-01T00:00:00.000000Z",
            };
            assert_eq!(
                String::from_utf8(change.bytes()).unwrap(),
                String::from_utf8(canonical(&change.to_json())).unwrap()
            );
        }
    }

    #[test]
    fn a_leaf_is_its_canonical_json() {
        let change = Change {
            tenant: "",
            entity: "urn:e:1",
            attr: Some("https://example.org/p"),
            dataset_id: None,
            instance_id: Some("urn:ngsi-ld:Instance:7"),
            instance: Some(json!({"value": 7.0, "type": "Property"})),
            op: Op::Record,
            deleted_at: None,
            at: "2026-01-01T00:00:00Z",
        };
        assert_eq!(
            String::from_utf8(change.bytes()).unwrap(),
            r#"{"at":"2026-01-01T00:00:00Z","attr":"https://example.org/p","datasetId":null,"deletedAt":null,"entity":"urn:e:1","instance":{"type":"Property","value":7},"instanceId":"urn:ngsi-ld:Instance:7","op":"record","tenant":""}"#
        );
    }
}
