//! Helpers of the cases: modifiers, entity builders, the test vocabulary. Everything that depends
//! on the shape of a `Modifier`'s answer is here, so that the cases do not.

use std::sync::Arc;

use cityhub_storage::{Change, Modified, Modifier, Paging, Store};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::{json, Value};

/// The vocabulary of the cases: `@vocab` of the core context (`n` is
/// `https://uri.etsi.org/ngsi-ld/default-context/n`), `location` the core GeoProperty.
pub fn ctx() -> Arc<Context> {
    ngsild_jsonld::core_context()
}

pub const VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
pub const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

/// The expanded name of a term of the default vocabulary.
pub fn iri(term: &str) -> String {
    format!("{VOCAB}{term}")
}

/// An entity from a normalized or concise JSON body in the default vocabulary.
pub fn entity(body: Value) -> Entity {
    let body = body.as_object().unwrap_or_else(|| panic!("an entity body is an object: {body}"));
    ngsild_core::expand::expand_entity(body, &ctx()).unwrap_or_else(|e| panic!("{e:?}: {body:?}")).0
}

/// `{id, type, n}`: a counter.
pub fn counter(id: &str, n: i64) -> Entity {
    let mut e = Entity::new(id, vec![iri("Counter")]);
    e.attrs.insert(iri("n"), vec![Attribute::new(AttributeKind::Property, json!(n))]);
    e
}

/// The value of `n` of a counter.
pub fn n_of(e: &Entity) -> i64 {
    e.attrs[&iri("n")][0].value.as_i64().unwrap_or_else(|| panic!("n is an integer: {e:?}"))
}

/// Creates `entity`; AlreadyExists when there is one.
pub fn create(entity: Entity) -> Modifier {
    Box::new(move |current| match current {
        Some(_) => Err(NgsiLdError::already_exists("exists")),
        None => Ok(Modified::entity(entity)),
    })
}

/// Puts `entity` in place of whatever is there.
pub fn put(entity: Entity) -> Modifier {
    Box::new(move |_| Ok(Modified::entity(entity)))
}

/// Deletes the entity; ResourceNotFound when there is none.
pub fn delete() -> Modifier {
    Box::new(|current| match current {
        Some(_) => Ok(Modified::delete()),
        None => Err(NgsiLdError::not_found("missing")),
    })
}

/// Adds one to `n`; ResourceNotFound when there is no entity.
pub fn increment() -> Modifier {
    Box::new(|current| {
        let mut e = current.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        let n = n_of(&e);
        e.attrs.insert(iri("n"), vec![Attribute::new(AttributeKind::Property, json!(n + 1))]);
        Ok(Modified::entity(e))
    })
}

/// Refuses with BadRequestData.
pub fn refuse() -> Modifier {
    Box::new(|_| Err(NgsiLdError::bad_request("refused by the modifier")))
}

/// The entity after one successful change.
pub fn after(change: &Result<Change, NgsiLdError>) -> &Entity {
    match change {
        Ok(Change { after: Some(e), .. }) => e,
        other => panic!("a change with an entity after it, got {other:?}"),
    }
}

/// Every entity of a tenant, by id.
pub async fn all(store: &dyn Store, tenant: &str) -> Vec<Entity> {
    let filter = ngsild_query::EntityFilter::default();
    store.query(tenant, &filter, Paging { offset: 0, limit: 1_000_000, count: true }).await.unwrap().entities
}

pub fn ids(entities: &[Entity]) -> Vec<&str> {
    entities.iter().map(|e| e.id.as_str()).collect()
}

/// A small deterministic generator (xorshift64*): the same seed, the same data, on every backend.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Uniform in `[lo, hi)`.
    pub fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}
