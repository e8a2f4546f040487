//! The index tables of current state, kept by difference on every write: `entity_types`,
//! `facets` (attribute present; each scalar of its values) and `geometries` (PostGIS, one row per
//! GeoProperty instance). Queries read them (see `query`); nothing reads into a document.

use std::collections::BTreeSet;

use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::Entity;
use serde_json::Value;

use crate::pipeline::Batch;

/// A row of `facets`: the attribute is there, or one scalar its values hold.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Present,
    Num(f64),
    Str(String),
}

/// The facet rows of one attribute, over all its instances: present, and each scalar that
/// `cityhub_storage::plan::indexed_scalars` says a scalar index holds.
fn attribute_scalars(instances: &[Attribute]) -> Vec<Scalar> {
    let mut out = vec![Scalar::Present];
    out.extend(cityhub_storage::plan::indexed_scalars(instances).into_iter().map(|s| match s {
        cityhub_storage::plan::Scalar::Num(n) => Scalar::Num(n),
        cityhub_storage::plan::Scalar::Str(s) => Scalar::Str(s),
    }));
    out
}

fn geo_values(instances: &[Attribute]) -> Vec<&Value> {
    instances
        .iter()
        .filter(|a| a.kind == AttributeKind::GeoProperty)
        .map(|a| &a.value)
        .filter(|v| ngsild_query::geo::bounding_box(v).is_some())
        .collect()
}

/// A scalar's `num` and `str` columns (both NULL: the attribute is present).
fn columns(scalar: &Scalar) -> (Option<f64>, Option<String>) {
    match scalar {
        Scalar::Present => (None, None),
        Scalar::Num(n) => (Some(*n), None),
        Scalar::Str(s) => (None, Some(s.clone())),
    }
}

/// Whether no scalar is there twice.
fn distinct(scalars: &[Scalar]) -> bool {
    scalars.iter().enumerate().all(|(i, s)| !scalars[..i].contains(s))
}

/// Facet rows of one value as columns: id, attr, num, str.
type DroppedFacets<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<Option<f64>>, Vec<Option<String>>);

/// Facet rows as columns: attr, type, id, num, str.
type FacetRows<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<Option<f64>>, Vec<Option<String>>);

/// The index rows to delete and insert for a batch of writes, sent as a few array statements.
#[derive(Default)]
pub(crate) struct Delta<'a> {
    /// Entities whose every index row goes.
    wipe: Vec<&'a str>,
    /// (id, attr) whose facets go.
    wipe_facets: (Vec<&'a str>, Vec<&'a str>),
    /// (id, attr, num, str): the facet rows of one scalar an attribute no longer holds (of
    /// every type), when the rest of its rows stay.
    drop_facets: DroppedFacets<'a>,
    /// (id, attr) whose geometries go.
    wipe_geo: (Vec<&'a str>, Vec<&'a str>),
    types: (Vec<&'a str>, Vec<&'a str>),
    facets: FacetRows<'a>,
    geo: (Vec<&'a str>, Vec<&'a str>, Vec<i32>, Vec<String>),
}

impl<'a> Delta<'a> {
    /// The facet rows of one scalar of attribute `name`, one per type of `entity`.
    fn add_scalar(&mut self, entity: &'a Entity, name: &'a str, scalar: &Scalar) {
        for ty in &entity.types {
            let (num, str) = columns(scalar);
            self.facets.0.push(name);
            self.facets.1.push(ty);
            self.facets.2.push(&entity.id);
            self.facets.3.push(num);
            self.facets.4.push(str);
        }
    }

    fn add_attr(&mut self, entity: &'a Entity, name: &'a str, instances: &'a [Attribute], facets: bool, geo: bool) {
        if instances.is_empty() {
            return;
        }
        if facets {
            for scalar in attribute_scalars(instances) {
                self.add_scalar(entity, name, &scalar);
            }
        }
        if geo {
            for (n, value) in geo_values(instances).into_iter().enumerate() {
                self.geo.0.push(&entity.id);
                self.geo.1.push(name);
                self.geo.2.push(i32::try_from(n).unwrap_or(i32::MAX));
                self.geo.3.push(value.to_string());
            }
        }
    }

    /// Adds what brings the indexes of one entity from `before` to `after` (either may be absent).
    pub(crate) fn change(&mut self, id: &'a str, before: Option<&'a Entity>, after: Option<&'a Entity>) {
        let no_types: &[String] = &[];
        let old_types = before.map_or(no_types, |e| &e.types[..]);
        let new_types = after.map_or(no_types, |e| &e.types[..]);
        if old_types != new_types {
            // Facets are keyed by type: start again from nothing.
            if before.is_some() {
                self.wipe.push(id);
            }
            if let Some(entity) = after {
                let mut seen = BTreeSet::new();
                for t in &entity.types {
                    if seen.insert(t) {
                        self.types.0.push(t);
                        self.types.1.push(&entity.id);
                    }
                }
                for (name, instances) in &entity.attrs {
                    self.add_attr(entity, name, instances, true, true);
                }
            }
            return;
        }
        let (Some(before), Some(after)) = (before, after) else { return };
        let names: BTreeSet<&'a str> = before.attrs.keys().chain(after.attrs.keys()).map(String::as_str).collect();
        let empty: &[Attribute] = &[];
        for name in names {
            let old = before.attrs.get(name).map_or(empty, Vec::as_slice);
            let new = after.attrs.get(name).map_or(empty, Vec::as_slice);
            let old_scalars = if old.is_empty() { Vec::new() } else { attribute_scalars(old) };
            let new_scalars = if new.is_empty() { Vec::new() } else { attribute_scalars(new) };
            let facets = old_scalars != new_scalars;
            // Only the rows of the scalars that went or came, when the attribute stays and each
            // side holds every scalar once (a value written again keeps its row): most updates
            // change one value of an attribute, and its presence row and other values stay.
            let exact =
                facets && !old.is_empty() && !new.is_empty() && distinct(&old_scalars) && distinct(&new_scalars);
            let geo = geo_values(old) != geo_values(new);
            if exact {
                for gone in old_scalars.iter().filter(|s| !new_scalars.contains(s)) {
                    let (num, str) = columns(gone);
                    self.drop_facets.0.push(id);
                    self.drop_facets.1.push(name);
                    self.drop_facets.2.push(num);
                    self.drop_facets.3.push(str);
                }
                for came in new_scalars.iter().filter(|s| !old_scalars.contains(s)) {
                    self.add_scalar(after, name, came);
                }
            } else if facets {
                self.wipe_facets.0.push(id);
                self.wipe_facets.1.push(name);
            }
            if geo {
                self.wipe_geo.0.push(id);
                self.wipe_geo.1.push(name);
            }
            if (facets && !exact) || geo {
                self.add_attr(after, name, new, facets && !exact, geo);
            }
        }
    }

    /// Adds the statements that write the delta to `batch`.
    pub(crate) fn apply(self, batch: &mut Batch<'a>, tenant: &'a str) {
        if !self.wipe.is_empty() {
            for table in ["entity_types", "facets", "geometries"] {
                batch.push(
                    format!("DELETE FROM {table} WHERE tenant = $1 AND id = ANY($2)"),
                    vec![Box::new(tenant), Box::new(self.wipe.clone())],
                );
            }
        }
        for (table, (ids, attrs)) in [("facets", self.wipe_facets), ("geometries", self.wipe_geo)] {
            if !ids.is_empty() {
                batch.push(
                    // The rows found by index probes per (id, attr) (LATERAL, kept from being
                    // flattened by OFFSET), deleted by their ctid: a join with the pairs let the
                    // planner hash the whole table instead, a scan of it on every write.
                    format!(
                        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                             SELECT x.ctid FROM unnest($2::text[], $3::text[]) AS u(id, attr)
                             CROSS JOIN LATERAL (SELECT t.ctid FROM {table} t
                                                 WHERE t.tenant = $1 AND t.id = u.id AND t.attr = u.attr OFFSET 0) x))"
                    ),
                    vec![Box::new(tenant), Box::new(ids), Box::new(attrs)],
                );
            }
        }
        let d = self.drop_facets;
        if !d.0.is_empty() {
            batch.push(
                // As above, one probe of the entity's index per row; a row of that value of every type.
                "DELETE FROM facets WHERE ctid = ANY(ARRAY(
                     SELECT x.ctid FROM unnest($2::text[], $3::text[], $4::float8[], $5::text[]) AS u(id, attr, num, str)
                     CROSS JOIN LATERAL (SELECT t.ctid FROM facets t
                                         WHERE t.tenant = $1 AND t.id = u.id AND t.attr = u.attr
                                         AND t.num IS NOT DISTINCT FROM u.num AND t.str IS NOT DISTINCT FROM u.str
                                         OFFSET 0) x))",
                vec![Box::new(tenant), Box::new(d.0), Box::new(d.1), Box::new(d.2), Box::new(d.3)],
            );
        }
        if !self.types.0.is_empty() {
            batch.push(
                "INSERT INTO entity_types (tenant, type, id) SELECT $1, u.t, u.id FROM unnest($2::text[], $3::text[]) AS u(t, id)
                 ON CONFLICT DO NOTHING",
                vec![Box::new(tenant), Box::new(self.types.0), Box::new(self.types.1)],
            );
        }
        let f = self.facets;
        if !f.0.is_empty() {
            batch.push(
                "INSERT INTO facets (tenant, attr, type, id, num, str)
                 SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::text[]) AS u",
                vec![Box::new(tenant), Box::new(f.0), Box::new(f.1), Box::new(f.2), Box::new(f.3), Box::new(f.4)],
            );
        }
        let g = self.geo;
        if !g.0.is_empty() {
            // A geometry PostGIS cannot read is left out of the index (cityhub_geometry answers
            // NULL) instead of failing the write.
            batch.push(
                "WITH u AS MATERIALIZED (
                     SELECT u.id, u.attr, u.n, cityhub_geometry(u.g) AS geom
                     FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[]) AS u(id, attr, n, g))
                 INSERT INTO geometries (tenant, id, attr, n, geom)
                 SELECT $1, u.id, u.attr, u.n, u.geom FROM u WHERE u.geom IS NOT NULL",
                vec![Box::new(tenant), Box::new(g.0), Box::new(g.1), Box::new(g.2), Box::new(g.3)],
            );
        }
    }
}
