//! Queries over the current state of entities.
//!
//! Each part of a filter that an index table answers becomes an `EXISTS` on it (ids on the
//! primary key, types on `entity_types`, attributes and q comparisons on an attribute's own
//! value on `facets`, geo-queries on `geometries` through GiST); PostgreSQL joins them. When every
//! part was answered exactly, the database pages (`ORDER BY id LIMIT/OFFSET`) and counts; otherwise
//! the candidates stream out in id order and the whole filter (`EntityFilter::matches`, the
//! definition) decides. Geo-queries always leave the last word to it: PostGIS narrows with a
//! bounding box, or with `ST_DWithin` on geography for `near` (a little wider than asked, since
//! PostGIS measures on the spheroid and NGSI-LD on the sphere).

use cityhub_storage::{EntityFilter, Page, Paging, StoreError};
use futures_util::{pin_mut, TryStreamExt};
use ngsild_core::Entity;
use ngsild_query::geo::GeoRel;
use ngsild_query::q::{Literal, Op, Operand, QExpr, QTerm};
use tokio_postgres::types::{Json, ToSql};

use crate::{OrBackend, PostgresStore};

type Param = Box<dyn ToSql + Sync + Send>;

/// The SQL of a filter: conditions on `e` (a row of `entities`) and their parameters ($1 is the
/// tenant), and whether a residual match must judge the candidates.
pub(crate) struct Sql {
    conditions: Vec<String>,
    params: Vec<Param>,
    residual: bool,
}

impl Sql {
    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    fn where_clause(&self) -> String {
        let mut all = vec!["e.tenant = $1".to_owned()];
        all.extend(self.conditions.iter().cloned());
        all.join(" AND ")
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// The terms of `q` when it is a plain conjunction (or one term); `None` with any `|`.
fn conjunction(q: &QExpr) -> Option<Vec<&QTerm>> {
    match q {
        QExpr::Term(t) => Some(vec![t]),
        QExpr::And(all) => all.iter().map(|e| if let QExpr::Term(t) = e { Some(t) } else { None }).collect(),
        QExpr::Or(_) => None,
    }
}

/// The condition on `f` (a row of `facets`) equivalent to a q term on an attribute's own value,
/// when there is one. Every condition here is exact.
fn facet_condition(sql: &mut Sql, term: &QTerm) -> Option<String> {
    let path = term.path();
    if !path.sub.is_empty() || !path.compound.is_empty() {
        return None;
    }
    enum Col {
        Num(f64),
        Str(String),
    }
    let column = |lit: &Literal| match lit {
        Literal::Number(n) => Some(Col::Num(*n)),
        Literal::Text(t) => Some(Col::Str(t.clone())),
        _ => None,
    };
    let bind = |sql: &mut Sql, c: Col| match c {
        Col::Num(n) => ("f.num", sql.bind(Box::new(n))),
        Col::Str(s) => ("f.str", sql.bind(Box::new(s))),
    };
    match term {
        QTerm::Exists(_) => Some("f.num IS NULL AND f.str IS NULL".to_owned()),
        QTerm::Compare(_, op, Operand::One(lit)) => {
            let cmp = match op {
                Op::Eq => "=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                _ => return None,
            };
            let (col, p) = bind(sql, column(lit)?);
            Some(format!("{col} {cmp} {p}"))
        }
        QTerm::Compare(_, Op::Eq, Operand::Range(lo, hi)) => {
            let (lo, hi) = (column(lo)?, column(hi)?);
            if matches!((&lo, &hi), (Col::Num(_), Col::Str(_)) | (Col::Str(_), Col::Num(_))) {
                return None;
            }
            let (col, lo) = bind(sql, lo);
            let (_, hi) = bind(sql, hi);
            Some(format!("{col} BETWEEN {lo} AND {hi}"))
        }
        QTerm::Compare(_, Op::Eq, Operand::List(items)) => {
            let (mut numbers, mut texts) = (Vec::new(), Vec::new());
            for item in items {
                match item {
                    Literal::Number(n) => numbers.push(*n),
                    Literal::Text(t) => texts.push(t.clone()),
                    _ => return None,
                }
            }
            let mut parts = Vec::new();
            if !numbers.is_empty() {
                parts.push(format!("f.num = ANY({})", sql.bind(Box::new(numbers))));
            }
            if !texts.is_empty() {
                parts.push(format!("f.str = ANY({})", sql.bind(Box::new(texts))));
            }
            Some(format!("({})", parts.join(" OR ")))
        }
        _ => None,
    }
}

/// Translates `filter` into SQL over the index tables.
pub(crate) fn plan(tenant: &str, filter: &EntityFilter) -> Sql {
    let mut sql = Sql {
        conditions: Vec::new(),
        params: vec![Box::new(tenant.to_owned())],
        residual: filter.id_pattern.is_some() || filter.scope_q.is_some(),
    };
    let type_list = filter.types.as_ref().map(|t| t.as_type_list());
    let types: Option<Vec<String>> =
        type_list.clone().flatten().map(|list| list.into_iter().map(str::to_owned).collect());
    if type_list.is_some() && types.is_none() {
        sql.residual = true;
    }
    if !filter.ids.is_empty() {
        let p = sql.bind(Box::new(filter.ids.clone()));
        sql.conditions.push(format!("e.id = ANY({p})"));
    }
    // Facets are keyed by type: with a type list, each facet lookup is within those types.
    let type_param = types.as_ref().map(|t| sql.bind(Box::new(t.clone())));
    let of_types = |f: &str| type_param.as_ref().map(|p| format!(" AND {f}.type = ANY({p})")).unwrap_or_default();
    if let Some(p) = &type_param {
        sql.conditions.push(format!(
            "EXISTS (SELECT 1 FROM entity_types t WHERE t.tenant = $1 AND t.id = e.id AND t.type = ANY({p}))"
        ));
    }
    if let Some(q) = &filter.q {
        let terms = conjunction(q);
        if terms.is_none() {
            sql.residual = true;
        }
        for term in terms.unwrap_or_else(|| q.conjuncts()) {
            let Some(condition) = facet_condition(&mut sql, term) else {
                sql.residual = true;
                continue;
            };
            let attr = sql.bind(Box::new(term.path().attr.clone()));
            sql.conditions.push(format!(
                "EXISTS (SELECT 1 FROM facets f WHERE f.tenant = $1 AND f.attr = {attr}{} AND f.id = e.id AND {condition})",
                of_types("f")
            ));
        }
    }
    if !filter.attrs.is_empty() {
        let attrs = sql.bind(Box::new(filter.attrs.clone()));
        sql.conditions.push(format!(
            "EXISTS (SELECT 1 FROM facets f WHERE f.tenant = $1 AND f.attr = ANY({attrs}){} AND f.id = e.id
             AND f.num IS NULL AND f.str IS NULL)",
            of_types("f")
        ));
    }
    if let Some(geo) = &filter.geo {
        sql.residual = true;
        let near_point = match (&geo.rel, &geo.reference) {
            (GeoRel::Near { max_distance: Some(d), .. }, geo::Geometry::Point(p)) => Some((p.x(), p.y(), *d)),
            _ => None,
        };
        if let Some((lon, lat, d)) = near_point {
            let attr = sql.bind(Box::new(geo.geoproperty.clone()));
            let (lon, lat, d) = (sql.bind(Box::new(lon)), sql.bind(Box::new(lat)), sql.bind(Box::new(d * 1.01 + 1.0)));
            sql.conditions.push(format!(
                "EXISTS (SELECT 1 FROM geometries g WHERE g.tenant = $1 AND g.id = e.id AND g.attr = {attr}
                 AND ST_DWithin(g.geom::geography, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326)::geography, {d}))"
            ));
        } else if let Some((min_lon, max_lon, min_lat, max_lat)) = geo.search_box() {
            let attr = sql.bind(Box::new(geo.geoproperty.clone()));
            let b: Vec<String> =
                [min_lon, min_lat, max_lon, max_lat].into_iter().map(|v| sql.bind(Box::new(v))).collect();
            sql.conditions.push(format!(
                "EXISTS (SELECT 1 FROM geometries g WHERE g.tenant = $1 AND g.id = e.id AND g.attr = {attr}
                 AND g.geom && ST_MakeEnvelope({}, {}, {}, {}, 4326))",
                b[0], b[1], b[2], b[3]
            ));
        }
    }
    sql
}

/// Entities matching `filter`, ordered by id (or by its `orderBy`), one page of them.
pub(crate) async fn query(
    store: &PostgresStore,
    tenant: &str,
    filter: &EntityFilter,
    paging: Paging,
) -> Result<Page, StoreError> {
    let mut sql = plan(tenant, filter);
    let mut client = store.client().await?;
    // One snapshot for the page and its count.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .or_backend()?;
    let by_id = filter.order.as_ref().is_none_or(|o| o.is_by_id());
    if !sql.residual && by_id {
        let mut page = Page::default();
        if paging.count {
            let count: i64 = tx
                .query_one(&format!("SELECT count(*) FROM entities e WHERE {}", sql.where_clause()), &sql.refs())
                .await
                .or_backend()?
                .get(0);
            page.total = Some(usize::try_from(count).unwrap_or(0));
        }
        if paging.limit > 0 {
            let limit = sql.bind(Box::new(i64::try_from(paging.limit).unwrap_or(i64::MAX)));
            let offset = sql.bind(Box::new(i64::try_from(paging.offset).unwrap_or(i64::MAX)));
            let rows = tx
                .query(
                    &format!(
                        "SELECT e.doc FROM entities e WHERE {} ORDER BY e.id LIMIT {limit} OFFSET {offset}",
                        sql.where_clause()
                    ),
                    &sql.refs(),
                )
                .await
                .or_backend()?;
            page.entities = rows.into_iter().map(|r| r.get::<_, Json<Entity>>(0).0).collect();
        }
        tx.commit().await.or_backend()?;
        return Ok(page);
    }
    // Stream the candidates in id order; stop as soon as the page is full unless counting.
    let text = format!("SELECT e.doc FROM entities e WHERE {} ORDER BY e.id", sql.where_clause());
    let stream = tx.query_raw(&text, sql.refs()).await.or_backend()?;
    pin_mut!(stream);
    let page = judge_stream(filter, paging, by_id, stream).await?;
    tx.commit().await.or_backend()?;
    Ok(page)
}

async fn judge_stream(
    filter: &EntityFilter,
    paging: Paging,
    by_id: bool,
    mut rows: std::pin::Pin<&mut tokio_postgres::RowStream>,
) -> Result<Page, StoreError> {
    let mut matched = 0usize;
    if !by_id {
        let Some(order) = filter.order.as_ref() else { return Ok(Page::default()) };
        let mut first = ngsild_query::order::FirstInOrder::new(order, paging.offset.saturating_add(paging.limit));
        while let Some(row) = rows.try_next().await.or_backend()? {
            let entity = row.get::<_, Json<Entity>>(0).0;
            if filter.matches(&entity) {
                matched += 1;
                first.push(order.key(&entity), entity);
            }
        }
        let entities = first.finish().into_iter().skip(paging.offset).collect();
        return Ok(Page { entities, total: paging.count.then_some(matched) });
    }
    let mut page = Page::default();
    while let Some(row) = rows.try_next().await.or_backend()? {
        let entity = row.get::<_, Json<Entity>>(0).0;
        if !filter.matches(&entity) {
            continue;
        }
        if matched >= paging.offset && page.entities.len() < paging.limit {
            page.entities.push(entity);
        }
        matched += 1;
        if !paging.count && page.entities.len() >= paging.limit {
            break;
        }
    }
    if paging.count {
        page.total = Some(matched);
    }
    Ok(page)
}
