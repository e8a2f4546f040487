//! The CKAN action API's read side (pure): datasets as CKAN packages, publishers as
//! organizations, `package_search`'s `q`, `fq`, `rows`, `start` and `sort`, and CKAN's response
//! envelope `{help, success, result}` and error shape (`{"__type": "Not Found Error", ...}`), so
//! CKAN clients (ckanapi) and harvesters read the catalogue as they read a CKAN site.

use serde_json::{json, Map, Value};

use crate::dataset::{distributions, license_url, Dataset};

/// The most rows one `package_search` answers (CKAN's default `ckan.search.rows_max`).
pub const MAX_ROWS: usize = 1000;

/// A CKAN error: its `__type`, HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct CkanError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    /// For a Validation Error: the field at fault.
    pub field: Option<String>,
}

impl CkanError {
    pub fn not_found(message: impl Into<String>) -> CkanError {
        CkanError { status: 404, kind: "Not Found Error", message: message.into(), field: None }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> CkanError {
        CkanError { status: 409, kind: "Validation Error", message: message.into(), field: Some(field.to_owned()) }
    }

    pub fn search(message: impl Into<String>) -> CkanError {
        CkanError { status: 409, kind: "Search Query Error", message: message.into(), field: None }
    }

    /// CKAN's error envelope.
    pub fn body(&self, help: &str) -> Value {
        let mut error = json!({"__type": self.kind, "message": self.message});
        if let Some(field) = &self.field {
            error[field.as_str()] = json!([self.message]);
        }
        json!({"help": help, "success": false, "error": error})
    }
}

/// CKAN's success envelope.
pub fn ok(help: &str, result: Value) -> Value {
    json!({"help": help, "success": true, "result": result})
}

fn organization(d: &Dataset, count: Option<usize>) -> Value {
    let p = &d.publisher;
    let mut org = json!({
        "id": p.id, "name": p.id, "title": Dataset::text(&p.name), "display_name": Dataset::text(&p.name),
        "description": "", "image_url": "", "created": d.created_at, "state": "active", "type": "organization",
        "is_organization": true, "approval_status": "approved",
    });
    if let Some(n) = count {
        org["package_count"] = json!(n);
    }
    org
}

/// A dataset as a CKAN package dict, its distributions as resources.
pub fn package(d: &Dataset, base: &str) -> Value {
    let resources: Vec<Value> = distributions(d, base)
        .into_iter()
        .enumerate()
        .map(|(i, dist)| {
            json!({
                "id": format!("{}-{}", d.name, dist.key), "package_id": d.name, "name": dist.title,
                "url": dist.download_url.unwrap_or(dist.access_url), "format": dist.format,
                "mimetype": dist.media_type, "description": "", "position": i, "state": "active",
                "created": d.created_at, "last_modified": d.modified_at,
            })
        })
        .collect();
    let tags: Vec<Value> = d
        .all_keywords()
        .into_iter()
        .map(|k| json!({"name": k, "display_name": k, "id": k, "state": "active"}))
        .collect();
    let mut extras: Vec<Value> = vec![
        json!({"key": "access_level", "value": d.access_level.name()}),
        json!({"key": "entity_types", "value": d.selection.types.join(",")}),
    ];
    if let Some(f) = &d.update_frequency {
        extras.push(json!({"key": "update_frequency", "value": f}));
    }
    if let Some(s) = &d.spatial_coverage {
        extras.push(json!({"key": "spatial", "value": s.to_string()}));
    }
    if let Some(p) = &d.temporal_coverage {
        if let Some(s) = &p.start {
            extras.push(json!({"key": "temporal_start", "value": s}));
        }
        if let Some(e) = &p.end {
            extras.push(json!({"key": "temporal_end", "value": e}));
        }
    }
    if !d.theme.is_empty() {
        extras.push(json!({"key": "theme", "value": d.theme.join(",")}));
    }
    for (lang, t) in &d.title {
        extras.push(json!({"key": format!("title_{lang}"), "value": t}));
    }
    for (lang, t) in &d.description {
        extras.push(json!({"key": format!("notes_{lang}"), "value": t}));
    }
    let contact = d.contact_point.clone().unwrap_or_default();
    json!({
        "id": d.name, "name": d.name, "title": Dataset::text(&d.title), "notes": Dataset::text(&d.description),
        "type": "dataset", "state": "active", "private": false,
        "license_id": d.license, "license_title": d.license, "license_url": license_url(&d.license).unwrap_or_default(),
        "url": format!("{base}/cityhub/v1/datasets/{}", d.name),
        "author": Dataset::text(&d.publisher.name), "author_email": d.publisher.email,
        "maintainer": if contact.name.is_empty() { Value::Null } else { json!(contact.name) },
        "maintainer_email": contact.email,
        "metadata_created": d.created_at, "metadata_modified": d.modified_at,
        "organization": organization(d, None), "owner_org": d.publisher.id,
        "resources": resources.clone(), "num_resources": resources.len(),
        "tags": tags.clone(), "num_tags": tags.len(), "groups": [], "extras": extras,
        "version": Value::Null, "relationships_as_object": [], "relationships_as_subject": [],
    })
}

/// `organization_list`: names, or dicts with `all_fields`.
pub fn organizations(datasets: &[Dataset], all_fields: bool) -> Vec<Value> {
    let mut seen: Vec<(&str, &Dataset, usize)> = Vec::new();
    for d in datasets {
        match seen.iter_mut().find(|(id, _, _)| *id == d.publisher.id) {
            Some(entry) => entry.2 += 1,
            None => seen.push((&d.publisher.id, d, 1)),
        }
    }
    seen.sort_by(|a, b| a.0.cmp(b.0));
    seen.into_iter().map(|(id, d, n)| if all_fields { organization(d, Some(n)) } else { json!(id) }).collect()
}

/// `organization_show`: the organization, with its packages when `include_datasets`.
pub fn organization_show(
    datasets: &[Dataset],
    id: &str,
    base: &str,
    include_datasets: bool,
) -> Result<Value, CkanError> {
    let theirs: Vec<&Dataset> = datasets.iter().filter(|d| d.publisher.id == id).collect();
    let first = theirs.first().ok_or_else(|| CkanError::not_found(format!("Organization not found: {id}")))?;
    let mut org = organization(first, Some(theirs.len()));
    if include_datasets {
        org["packages"] = json!(theirs.iter().map(|d| package(d, base)).collect::<Vec<_>>());
    }
    Ok(org)
}

/// What `package_search` is asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub q: Option<String>,
    pub fq: Option<String>,
    pub rows: Option<usize>,
    pub start: usize,
    pub sort: Option<String>,
}

impl Search {
    /// Reads the parameters of a request (query string and JSON body merged).
    pub fn read(params: &Map<String, Value>) -> Result<Search, CkanError> {
        let text = |name: &str| -> Option<String> {
            params.get(name).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let number = |name: &str| -> Result<Option<usize>, CkanError> {
            match text(name) {
                None => Ok(None),
                Some(s) => s
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| CkanError::validation(name, format!("Invalid integer: {name}={s:?}"))),
            }
        };
        let rows = number("rows")?;
        if rows.is_some_and(|r| r > MAX_ROWS) {
            return Err(CkanError::validation("rows", format!("Must be less than or equal to {MAX_ROWS}")));
        }
        Ok(Search { q: text("q"), fq: text("fq"), rows, start: number("start")?.unwrap_or(0), sort: text("sort") })
    }

    /// The matching packages (their count, and the page of them).
    pub fn run(&self, datasets: &[Dataset], base: &str) -> Result<Value, CkanError> {
        let terms: Vec<String> = match self.q.as_deref().map(str::trim) {
            None | Some("") | Some("*:*") => Vec::new(),
            Some(q) => q.split_whitespace().map(str::to_lowercase).collect(),
        };
        let filters = parse_fq(self.fq.as_deref().unwrap_or(""))?;
        let mut hits: Vec<&Dataset> = datasets
            .iter()
            .filter(|d| {
                let (text_terms, field_terms): (Vec<&String>, Vec<&String>) =
                    terms.iter().partition(|t| !t.contains(':'));
                let field_terms: Vec<(String, String)> = field_terms
                    .iter()
                    .filter_map(|t| t.split_once(':').map(|(f, v)| (f.to_owned(), v.trim_matches('"').to_owned())))
                    .collect();
                let haystack = searchable(d);
                text_terms.iter().all(|t| haystack.contains(t.as_str()))
                    && field_terms.iter().all(|(f, v)| field_matches(d, f, v))
                    && filters.iter().all(|(f, v)| field_matches(d, f, v))
            })
            .collect();
        let sort = self.sort.clone().unwrap_or_else(|| "score desc, metadata_modified desc".to_owned());
        sort_hits(&mut hits, &sort)?;
        let count = hits.len();
        let rows = self.rows.unwrap_or(10);
        let results: Vec<Value> = hits.into_iter().skip(self.start).take(rows).map(|d| package(d, base)).collect();
        Ok(json!({"count": count, "sort": sort, "results": results, "facets": {}, "search_facets": {}}))
    }
}

/// Lower-cased text of every searchable field, every language.
fn searchable(d: &Dataset) -> String {
    let mut parts: Vec<String> = vec![d.name.clone(), d.publisher.id.clone()];
    parts.extend(d.title.values().cloned());
    parts.extend(d.description.values().cloned());
    parts.extend(d.all_keywords());
    parts.extend(d.publisher.name.values().cloned());
    parts.extend(d.selection.types.iter().cloned());
    parts.join(" ").to_lowercase()
}

/// `fq`: space-separated `field:value` terms (quotes allowed), all required.
fn parse_fq(fq: &str) -> Result<Vec<(String, String)>, CkanError> {
    let mut out = Vec::new();
    let mut rest = fq.trim();
    while !rest.is_empty() {
        let (field, after) = rest.split_once(':').ok_or_else(|| {
            CkanError::search(format!("fq term {rest:?} is not field:value (e.g. tags:air organization:seoul)"))
        })?;
        let field = field.trim_start_matches('+').trim().to_owned();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or_else(|| CkanError::search(format!("unclosed quote in fq {fq:?}")))?;
                (quoted[..end].to_owned(), &quoted[end + 1..])
            }
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        out.push((field, value));
        rest = tail.trim();
    }
    Ok(out)
}

fn field_matches(d: &Dataset, field: &str, value: &str) -> bool {
    let eq = |a: &str| a.eq_ignore_ascii_case(value);
    match field {
        "name" | "id" => eq(&d.name),
        "tags" => d.all_keywords().iter().any(|k| eq(k)),
        "organization" | "owner_org" => eq(&d.publisher.id),
        "license_id" => eq(&d.license),
        "res_format" => distributions(d, "").iter().any(|r| eq(&r.format)),
        "access_level" => eq(d.access_level.name()),
        "theme" | "groups" => d.theme.iter().any(|t| eq(t)),
        "entity_type" | "entity_types" => d.selection.types.iter().any(|t| eq(t)),
        "title" => d.title.values().any(|t| t.to_lowercase().contains(&value.to_lowercase())),
        _ => false,
    }
}

fn sort_hits(hits: &mut [&Dataset], sort: &str) -> Result<(), CkanError> {
    let mut keys = Vec::new();
    for clause in sort.split(',') {
        let mut words = clause.split_whitespace();
        let field = words.next().unwrap_or("");
        let desc = match words.next().unwrap_or("asc") {
            "asc" => false,
            "desc" => true,
            other => return Err(CkanError::search(format!("sort direction {other:?} is neither asc nor desc"))),
        };
        match field {
            "score" | "name" | "title_string" | "title" | "metadata_modified" | "metadata_created" => {
                keys.push((field.to_owned(), desc))
            }
            "" => {}
            other => {
                return Err(CkanError::search(format!(
                    "cannot sort by {other:?}: sort by name, title_string, metadata_modified, metadata_created or score"
                )))
            }
        }
    }
    hits.sort_by(|a, b| {
        for (field, desc) in &keys {
            let ord = match field.as_str() {
                "name" => a.name.cmp(&b.name),
                "title_string" | "title" => Dataset::text(&a.title).cmp(&Dataset::text(&b.title)),
                "metadata_modified" => a.modified_at.cmp(&b.modified_at),
                "metadata_created" => a.created_at.cmp(&b.created_at),
                _ => std::cmp::Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        a.name.cmp(&b.name)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datasets() -> Vec<Dataset> {
        let a = Dataset::read(&crate::dataset::tests::sample(), "2026-01-01T00:00:00Z").unwrap();
        let mut body = crate::dataset::tests::sample();
        body["name"] = json!("parking");
        body["title"] = json!({"en": "Parking spots"});
        body["keywords"] = json!({"en": ["parking"]});
        body["publisher"] = json!({"id": "busan", "name": {"en": "Busan"}});
        let b = Dataset::read(&body, "2026-01-02T00:00:00Z").unwrap();
        vec![a, b]
    }

    fn search(params: Value) -> Value {
        Search::read(params.as_object().unwrap()).unwrap().run(&datasets(), "http://hub").unwrap()
    }

    #[test]
    fn search_reads_q_fq_rows_start_and_sort() {
        assert_eq!(search(json!({}))["count"], 2);
        assert_eq!(search(json!({"q": "parking"}))["results"][0]["name"], "parking");
        assert_eq!(search(json!({"q": "대기질"}))["results"][0]["name"], "air-quality");
        assert_eq!(search(json!({"fq": "organization:busan"}))["count"], 1);
        assert_eq!(search(json!({"fq": "tags:\"pm25\" res_format:CSV"}))["results"][0]["name"], "air-quality");
        let page = search(json!({"sort": "name desc", "rows": 1, "start": 1}));
        assert_eq!((page["count"].clone(), page["results"][0]["name"].clone()), (json!(2), json!("air-quality")));
        let err = Search::read(json!({"rows": "many"}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.kind, "Validation Error");
        let err =
            Search::read(json!({"sort": "color asc"}).as_object().unwrap()).unwrap().run(&datasets(), "").unwrap_err();
        assert!(err.message.contains("cannot sort by"), "{}", err.message);
    }

    #[test]
    fn organizations_come_from_publishers() {
        assert_eq!(organizations(&datasets(), false), vec![json!("busan"), json!("seoul")]);
        let org = organization_show(&datasets(), "seoul", "http://hub", true).unwrap();
        assert_eq!(org["packages"][0]["name"], "air-quality");
        assert_eq!(organization_show(&datasets(), "nowhere", "", false).unwrap_err().status, 404);
    }
}
