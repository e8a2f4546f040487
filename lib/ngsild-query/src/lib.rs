//! NGSI-LD query languages, parsed and evaluated without I/O.
//!
//! A request's filters are parsed once into an [`EntityFilter`] whose names are already expanded
//! with the request's @context; storage backends push what they can into their indexes and call
//! [`EntityFilter::matches`] for the rest.
//!
//! Every parser is bounded: nesting deeper than [`MAX_NESTING`] is a [`ParseError`] at the
//! opening parenthesis or brace that went too deep, so a parsed tree is never deeper than that
//! and evaluating it (recursively) is safe. Positions are byte offsets that always fall on a
//! character boundary of the input.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod geo;
pub mod order;
pub mod params;
pub mod projection;
pub mod q;
pub mod scope;
pub mod types;

use ngsild_core::Entity;

/// The one operand of a connective alone, or the connective over all of them: the shape every
/// parser here gives `a`, `a;b` and `a|b`.
pub(crate) fn one_or<T>(mut items: Vec<T>, all: impl FnOnce(Vec<T>) -> T) -> T {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    all(items)
}

pub use geo::GeoQuery;
pub use order::OrderBy;
pub use q::QExpr;
pub use scope::ScopeExpr;
pub use types::TypeExpr;

/// Where a query string failed to parse: a byte offset into the input and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The deepest nesting any parser here accepts (parentheses, braces); see [`ngsild_core::limits`].
pub use ngsild_core::limits::MAX_NESTING;

impl ParseError {
    /// The error of an opening parenthesis or brace at `position` that goes past [`MAX_NESTING`].
    pub(crate) fn too_deep(position: usize) -> ParseError {
        ParseError {
            position,
            message: format!("nesting deeper than {MAX_NESTING} levels, the limit of this hub; flatten the expression"),
        }
    }
}

/// Everything that selects entities in a query, names expanded.
#[derive(Debug, Clone, Default)]
pub struct EntityFilter {
    /// Entity ids; empty = any.
    pub ids: Vec<String>,
    pub id_pattern: Option<regex::Regex>,
    pub types: Option<TypeExpr>,
    /// Expanded attribute names; an entity matches when it has at least one (empty = any).
    pub attrs: Vec<String>,
    pub q: Option<QExpr>,
    pub scope_q: Option<ScopeExpr>,
    pub geo: Option<GeoQuery>,
    /// `orderBy`: the order of the results (None = by id). It selects nothing.
    pub order: Option<OrderBy>,
    /// Keyset paging: only entities whose id sorts after this one (byte order, the order the
    /// stores answer in), so a reader walking a large selection in id order starts each page
    /// where the last ended instead of skipping an offset. No query parameter sets it.
    pub id_after: Option<String>,
}

impl EntityFilter {
    pub fn matches(&self, entity: &Entity) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|id| id == &entity.id))
            && self.id_pattern.as_ref().is_none_or(|re| re.is_match(&entity.id))
            && self.types.as_ref().is_none_or(|t| t.matches(&entity.types))
            && (self.attrs.is_empty() || self.attrs.iter().any(|a| entity.attrs.contains_key(a)))
            && self.q.as_ref().is_none_or(|q| q.matches(entity))
            && self.scope_q.as_ref().is_none_or(|s| s.matches(&entity.scope))
            && self.geo.as_ref().is_none_or(|g| g.matches(entity))
            && self.id_after.as_ref().is_none_or(|after| entity.id.as_str() > after.as_str())
    }
}
