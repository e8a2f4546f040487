//! The entities a write group has changed and not yet saved: one load and one save per entity
//! per group, however many modifiers of the group change it.
//!
//! A group that modifies one entity k times (a device's readings queued while the previous
//! commit ran, a batch whose ids repeat, an import) used to load, decode, encode, save and
//! re-index the whole entity k times. Here the first modifier's state comes from the `entities`
//! table and every later one from memory (the state the one before it left); the stored document
//! and its index, facet and geo rows are written once, for the last state, by [`Unsaved::save`]
//! before anything else of the group could read them (a temporal-API write, any other job) and
//! before the commit. What every change records on its own — its history instances, its journal
//! entry, its answer — is still written change by change by the writer, from the states held here.
//! The entity's row of the temporal representation (`temporal_entities`: types, scope, created
//! and modified times) is refreshed once too, with the times of the group's first and last
//! change, and at once before a deletion is recorded, so that the deletion marks a row that
//! exists ([`Unsaved::changed`]).
//!
//! Nothing here outlives its group: a group that rolls back drops it with everything else.

use std::collections::HashMap;

use ngsild_core::Entity;
use rusqlite::Connection;

use crate::entities;
use crate::index::Keys;
use crate::temporal;

/// One entity the group changed: its stored state (what its rows in the tables say) and its
/// state after the group's last successful modifier.
struct Slot {
    tenant: String,
    stored: Option<Entity>,
    current: Option<Entity>,
    /// The times (first, last) of the changes whose refresh of the temporal row is pending.
    touch: Option<(String, String)>,
}

/// The group's changed entities, in the order of their first change (so new entities get their
/// keys in that order, as they did when each change was saved at once).
#[derive(Default)]
pub struct Unsaved {
    slots: Vec<Slot>,
    /// (tenant, id) -> index in `slots`.
    at: HashMap<(String, String), usize>,
}

impl Unsaved {
    /// The entity's state as the group has left it so far: from memory when the group changed
    /// it, else as stored.
    pub fn load(&self, conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Entity>> {
        match self.at.get(&(tenant.to_owned(), id.to_owned())) {
            Some(&i) => Ok(self.slots[i].current.clone()),
            None => entities::load_entity(conn, tenant, id),
        }
    }

    /// Notes a change of the entity, made at `now`, from `before` (what [`Unsaved::load`]
    /// answered) to `after`, to be saved by [`Unsaved::save`]. A change that leaves the entity
    /// existing puts off the refresh of its temporal row to the save; a deletion first makes the
    /// refresh put off so far (from `before`, the state those changes left), since the deletion
    /// marks that row.
    pub fn changed(
        &mut self,
        conn: &Connection,
        tenant: &str,
        id: &str,
        before: &Option<Entity>,
        after: Option<Entity>,
        now: &str,
    ) -> rusqlite::Result<()> {
        let key = (tenant.to_owned(), id.to_owned());
        let i = match self.at.get(&key) {
            Some(&i) => i,
            None => {
                self.at.insert(key, self.slots.len());
                let slot = Slot { tenant: tenant.to_owned(), stored: before.clone(), current: None, touch: None };
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        let pending = slot.touch.take();
        if after.is_some() {
            let first = pending.map_or_else(|| now.to_owned(), |(first, _)| first);
            slot.touch = Some((first, now.to_owned()));
        } else if let (Some((first, last)), Some(entity)) = (pending, before) {
            temporal::touch_entity(conn, tenant, entity, &first, &last)?;
        }
        slot.current = after;
        Ok(())
    }

    /// Writes every changed entity's last state with its index rows (from its stored state to
    /// its last one, so an entity changed k times is re-indexed once) and its temporal row,
    /// then holds nothing.
    pub fn save(&mut self, conn: &Connection, keys: &mut Keys) -> rusqlite::Result<()> {
        self.at.clear();
        for slot in self.slots.drain(..) {
            if let (Some((first, last)), Some(entity)) = (&slot.touch, &slot.current) {
                temporal::touch_entity(conn, &slot.tenant, entity, first, last)?;
            }
            match (&slot.stored, &slot.current) {
                (stored, Some(entity)) => entities::save_entity(conn, keys, &slot.tenant, stored.as_ref(), entity)?,
                (Some(stored), None) => entities::delete_entity(conn, keys, &slot.tenant, stored)?,
                // Created and deleted inside the group: never stored.
                (None, None) => {}
            }
        }
        Ok(())
    }
}
