//! The history series ids this hub has seen committed, so that an entity write names the series
//! of its history rows itself instead of making the database probe `attr_series` once per
//! (entity, attribute) (2,000 probes per 200-entity upsert, ~30 % of its history insert).
//!
//! **Why a cached id cannot go stale, at any hub.** A series id is only ever taken from this cache
//! under the entity's advisory lock, with the entity's *series generation* read in the same
//! transaction after the lock was granted (`temporal_entities.series_gen`, read with the types of
//! its temporal representation, in the round trip that loads the entity). Every way a series
//! disappears changes that generation in the deleting transaction: deleting an attribute's whole
//! history sets it to the deleting transaction's id, deleting an entity's temporal representation
//! deletes the row (a new row takes the id of the transaction that makes it; rows from before
//! migration 0005 read 0, which no new row can take). Transaction ids are never reused, so a
//! generation read under the lock equals the cached one only if no series of that entity was
//! deleted since the ids were cached — whichever hub deleted it, without waiting for any
//! notification. A generation that differs drops what this hub knew of the entity.
//!
//! **What is learnt.** Only ids of committed transactions: the history insert returns the ids it
//! had to look up or create, and `entities::modify` hands them here after its commit.
//!
//! **Bounded.** Two generations of at most [`CAPACITY`] / 2 ids each: an entity found in the older
//! one moves to the newer; when the newer is full the older is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

/// Series ids kept at most (of entities written lately), ~100 bytes each.
pub(crate) const CAPACITY: usize = 1 << 18;

/// One entity's series, valid while its generation is `gen`.
struct Known {
    gen: i64,
    sids: Vec<(String, i64)>,
}

/// tenant -> entity -> its series.
type Ids = HashMap<String, HashMap<String, Known>>;

#[derive(Default)]
struct Generations {
    current: Ids,
    previous: Ids,
    /// Series ids held in `current`.
    len: usize,
}

/// This hub's series ids (see the module docs).
pub(crate) struct SeriesIds {
    inner: Mutex<Generations>,
    capacity: usize,
}

impl Default for SeriesIds {
    fn default() -> Self {
        SeriesIds::with_capacity(CAPACITY)
    }
}

/// A series id learnt from a committed write.
pub(crate) struct Learnt {
    pub entity_id: String,
    pub attr: String,
    pub sid: i64,
    /// The entity's series generation in that write.
    pub gen: i64,
}

impl SeriesIds {
    pub(crate) fn with_capacity(capacity: usize) -> SeriesIds {
        SeriesIds { inner: Mutex::new(Generations::default()), capacity: capacity.max(2) }
    }

    /// The id of the series of each (entity, attribute, the entity's generation now) of
    /// `wanted`, where known; an entity whose generation changed is forgotten.
    pub(crate) fn resolve(&self, tenant: &str, wanted: &[(&str, &str, i64)]) -> Vec<Option<i64>> {
        let Ok(mut g) = self.inner.lock() else { return vec![None; wanted.len()] };
        let g = &mut *g;
        wanted
            .iter()
            .map(|&(entity, attr, gen)| {
                if !g.current.get(tenant).is_some_and(|t| t.contains_key(entity)) {
                    // Promote from the older generation, if it is there.
                    let moved = g.previous.get_mut(tenant).and_then(|t| t.remove(entity))?;
                    g.len += moved.sids.len();
                    g.current.entry(tenant.to_owned()).or_default().insert(entity.to_owned(), moved);
                }
                let entities = g.current.get_mut(tenant)?;
                let known = entities.get(entity)?;
                if known.gen != gen {
                    g.len -= known.sids.len();
                    entities.remove(entity);
                    return None;
                }
                known.sids.iter().find(|(a, _)| a == attr).map(|(_, sid)| *sid)
            })
            .collect()
    }

    /// Keeps ids that a committed write looked up or made.
    pub(crate) fn learn(&self, tenant: &str, learnt: Vec<Learnt>) {
        if learnt.is_empty() {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        let g = &mut *g;
        for l in learnt {
            if g.len >= self.capacity / 2 {
                g.previous = std::mem::take(&mut g.current);
                g.len = 0;
            }
            let entities = g.current.entry(tenant.to_owned()).or_default();
            let known = entities.entry(l.entity_id).or_insert_with(|| Known { gen: l.gen, sids: Vec::new() });
            if known.gen != l.gen {
                g.len -= known.sids.len();
                known.gen = l.gen;
                known.sids.clear();
            }
            match known.sids.iter_mut().find(|(a, _)| *a == l.attr) {
                Some(slot) => slot.1 = l.sid,
                None => {
                    known.sids.push((l.attr, l.sid));
                    g.len += 1;
                }
            }
        }
    }

    /// Series ids held (both generations), for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        [&g.current, &g.previous]
            .iter()
            .flat_map(|ids| ids.values())
            .flat_map(|t| t.values())
            .map(|k| k.sids.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(entity: &str, attr: &str, sid: i64, gen: i64) -> Learnt {
        Learnt { entity_id: entity.into(), attr: attr.into(), sid, gen }
    }

    #[test]
    fn an_id_is_answered_only_for_the_generation_it_was_learnt_in() {
        let ids = SeriesIds::default();
        ids.learn("t", vec![learnt("e", "a", 7, 1), learnt("e", "b", 8, 1)]);
        assert_eq!(ids.resolve("t", &[("e", "a", 1), ("e", "b", 1), ("e", "c", 1)]), [Some(7), Some(8), None]);
        assert_eq!(ids.resolve("other", &[("e", "a", 1)]), [None], "tenants apart");
        assert_eq!(ids.resolve("t", &[("e", "a", 2)]), [None], "a series of e was deleted since");
        assert_eq!(ids.resolve("t", &[("e", "b", 1)]), [None], "and what was known of e is forgotten");
        ids.learn("t", vec![learnt("e", "a", 9, 2)]);
        assert_eq!(ids.resolve("t", &[("e", "a", 2), ("e", "b", 2)]), [Some(9), None]);
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_keeps_what_is_used() {
        let ids = SeriesIds::with_capacity(100);
        ids.learn("t", vec![learnt("hot", "a", 1, 0)]);
        for n in 0..1000 {
            ids.learn("t", vec![learnt(&format!("e{n}"), "a", n + 10, 0)]);
            // The entity written all along stays known through every turn of the generations.
            assert_eq!(ids.resolve("t", &[("hot", "a", 0)]), [Some(1)], "after {n}");
            assert!(ids.held() <= 100, "{} held after {n}", ids.held());
        }
        assert_eq!(ids.resolve("t", &[("e999", "a", 0), ("e0", "a", 0)]), [Some(1009), None]);
    }
}
