//! A [`Visibility`] applied: to an entity (whether it is seen, and without what), to a type or
//! attribute name (discovery), and to a query's filter, narrowed *before* it reaches the store so
//! that paging and counts never count what the caller may not see.

use ngsild_core::temporal::TemporalEntity;
use ngsild_core::Entity;
use ngsild_query::order::OrderPath;
use ngsild_query::q::QTerm;
use ngsild_query::{EntityFilter, QExpr, ScopeExpr, TypeExpr};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{Scope, Visibility};

/// A query that names what the caller may not see (a hidden attribute), or asks for an id
/// pattern beside the policy's: what the client must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unseen(pub String);

type Memo<T> = std::sync::LazyLock<Mutex<HashMap<String, Arc<T>>>>;

static ID_PATTERNS: Memo<Option<regex::Regex>> = std::sync::LazyLock::new(Mutex::default);
static SCOPES: Memo<Option<ScopeExpr>> = std::sync::LazyLock::new(Mutex::default);
static QS: Memo<Option<Result<QExpr, Unseen>>> = std::sync::LazyLock::new(Mutex::default);

/// The parsed form of a policy's expression `text`, made once: policies are few and their texts
/// repeat on every entity checked. Bounded: forgotten past 1,024 texts (a policy edited many
/// times), so a changed policy is parsed again and an old text costs memory only until then.
fn parsed<T>(memo: &Memo<T>, text: &str, make: impl FnOnce() -> T) -> Arc<T> {
    let mut map = memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = map.get(text) {
        return found.clone();
    }
    if map.len() >= 1024 {
        map.clear();
    }
    let made = Arc::new(make());
    map.insert(text.to_owned(), made.clone());
    made
}

impl Scope {
    /// Whether the entity is seen at all.
    pub fn sees(&self, entity: &Entity) -> bool {
        match self {
            Scope::All => true,
            Scope::Limited(v) => v.sees(entity),
        }
    }

    /// The entity as the caller may see it: None when it is not seen, else without the
    /// attributes it may not see.
    pub fn redact(&self, mut entity: Entity) -> Option<Entity> {
        match self {
            Scope::All => Some(entity),
            Scope::Limited(v) => {
                if !v.sees(&entity) {
                    return None;
                }
                entity.attrs.retain(|name, _| v.shows_attr(name));
                Some(entity)
            }
        }
    }

    /// A temporal entity as the caller may see it (as [`Scope::redact`]): None when the entity
    /// is not seen, else without the histories and aggregates of attributes it may not see.
    pub fn redact_history(&self, mut history: TemporalEntity) -> Option<TemporalEntity> {
        let Scope::Limited(v) = self else { return Some(history) };
        let mut head = Entity::new(history.id.clone(), history.types.clone());
        head.scope = history.scope.clone();
        if !v.sees(&head) {
            return None;
        }
        history.attrs.retain(|name, _| v.shows_attr(name));
        history.aggregates.retain(|name, _| v.shows_attr(name));
        Some(history)
    }

    pub fn shows_type(&self, ty: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Limited(v) => v.shows_type(ty),
        }
    }

    pub fn shows_attr(&self, attr: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Limited(v) => v.shows_attr(attr),
        }
    }

    /// The filter narrowed to what the caller sees, or why the query cannot be answered.
    pub fn narrow(&self, filter: EntityFilter) -> Result<EntityFilter, Unseen> {
        match self {
            Scope::All => Ok(filter),
            Scope::Limited(v) => v.narrow(filter),
        }
    }
}

impl Visibility {
    /// Whether the entity is seen. Called for every entity of an answer (a page, a download, a
    /// live change), so the policy's id pattern, scopes and `q` are parsed once per text
    /// ([`parsed`]), not once per entity.
    pub fn sees(&self, entity: &Entity) -> bool {
        self.types.as_ref().is_none_or(|ts| entity.types.iter().any(|t| ts.contains(t)))
            && !entity.types.iter().any(|t| self.hidden_types.contains(t))
            && self.id_pattern.as_ref().is_none_or(|p| {
                parsed(&ID_PATTERNS, p, || regex::Regex::new(p).ok())
                    .as_ref()
                    .as_ref()
                    .is_some_and(|re| re.is_match(&entity.id))
            })
            && self.scopes.as_ref().is_none_or(|scopes| {
                let key = scopes.join("\u{0}");
                parsed(&SCOPES, &key, || self.scope_expr()).as_ref().as_ref().is_none_or(|s| s.matches(&entity.scope))
            })
            && self.q.as_ref().is_none_or(|q| {
                parsed(&QS, q, || self.q_expr())
                    .as_ref()
                    .as_ref()
                    .is_some_and(|q| q.as_ref().is_ok_and(|q| q.matches(entity)))
            })
    }

    /// The policy's `q`, read in the core @context; one that does not parse matches nothing.
    fn q_expr(&self) -> Option<Result<QExpr, Unseen>> {
        let q = self.q.as_ref()?;
        Some(
            QExpr::parse(q, &ngsild_jsonld::Context::core())
                .map_err(|e| Unseen(format!("a policy's q does not parse: {e}"))),
        )
    }

    pub fn shows_type(&self, ty: &str) -> bool {
        self.types.as_ref().is_none_or(|ts| ts.contains(ty)) && !self.hidden_types.contains(ty)
    }

    pub fn shows_attr(&self, attr: &str) -> bool {
        !self.hidden.contains(attr) && self.attributes.as_ref().is_none_or(|a| a.contains(attr))
    }

    /// The scopes as one `scopeQ` (any of them); a scope that does not parse matches nothing.
    fn scope_expr(&self) -> Option<ScopeExpr> {
        let scopes = self.scopes.as_ref()?;
        let parsed: Vec<ScopeExpr> = scopes.iter().filter_map(|s| ScopeExpr::parse(s).ok()).collect();
        Some(ScopeExpr::Or(parsed))
    }

    fn check_attr(&self, attr: &str, how: &str) -> Result<(), Unseen> {
        if self.shows_attr(attr) {
            Ok(())
        } else {
            Err(Unseen(format!(
                "the query names attribute {attr} in {how}, which this caller may not see in this tenant: \
                 leave it out of {how}"
            )))
        }
    }

    pub fn narrow(&self, mut filter: EntityFilter) -> Result<EntityFilter, Unseen> {
        if let Some(q) = &filter.q {
            let mut attrs = Vec::new();
            q_attrs(q, &mut attrs);
            attrs.iter().try_for_each(|a| self.check_attr(a, "q"))?;
        }
        filter.attrs.iter().try_for_each(|a| self.check_attr(a, "attrs"))?;
        if let Some(geo) = &filter.geo {
            self.check_attr(&geo.geoproperty, "geoproperty")?;
        }
        for key in filter.order.iter().flat_map(|o| &o.keys) {
            if let OrderPath::Attribute(path) = &key.path {
                self.check_attr(&path.attr, "orderBy")?;
            }
        }
        if let Some(types) = &self.types {
            filter.types = Some(match filter.types.take() {
                None => TypeExpr::Or(types.iter().cloned().map(TypeExpr::Type).collect()),
                Some(asked) => match asked.as_type_list() {
                    // A plain list stays a list (an index answers it exactly): the asked types seen.
                    Some(list) => TypeExpr::Or(
                        list.into_iter().filter(|t| types.contains(*t)).map(|t| TypeExpr::Type(t.to_owned())).collect(),
                    ),
                    None => {
                        TypeExpr::And(vec![asked, TypeExpr::Or(types.iter().cloned().map(TypeExpr::Type).collect())])
                    }
                },
            });
        }
        if !self.hidden_types.is_empty() {
            let not =
                TypeExpr::Not(Box::new(TypeExpr::Or(self.hidden_types.iter().cloned().map(TypeExpr::Type).collect())));
            filter.types = Some(match filter.types.take() {
                None => not,
                Some(asked) => TypeExpr::And(vec![asked, not]),
            });
        }
        if let Some(pattern) = &self.id_pattern {
            if filter.id_pattern.is_some() {
                return Err(Unseen(
                    "this caller sees only the entity ids a policy's idPattern names, which an idPattern of the \
                     query cannot be combined with: query by type, id or q instead"
                        .to_owned(),
                ));
            }
            let re = regex::Regex::new(pattern)
                .map_err(|e| Unseen(format!("a policy's idPattern does not compile: {e}")))?;
            filter.id_pattern = Some(re);
        }
        if let Some(q) = self.q_expr() {
            let q = q?;
            filter.q = Some(match filter.q.take() {
                None => q,
                Some(asked) => QExpr::And(vec![asked, q]),
            });
        }
        if let Some(scopes) = self.scope_expr() {
            filter.scope_q = Some(match filter.scope_q.take() {
                None => scopes,
                Some(asked) => ScopeExpr::And(vec![asked, scopes]),
            });
        }
        Ok(filter)
    }
}

fn q_attrs(q: &QExpr, out: &mut Vec<String>) {
    match q {
        QExpr::And(all) | QExpr::Or(all) => all.iter().for_each(|e| q_attrs(e, out)),
        QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => out.push(p.attr.clone()),
    }
}
