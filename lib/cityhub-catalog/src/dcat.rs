//! The catalogue as DCAT-AP 3 (pure): one RDF graph of the catalog, its datasets and their
//! distributions, written as JSON-LD or as Turtle — the same triples either way.
//!
//! Every node has an IRI (no blank nodes) under the hub's public URL: the catalog is
//! `{base}/catalog`, a dataset `{base}/cityhub/v1/datasets/{name}`, its distributions, contact
//! point and coverage `…#{key}`, a publisher `{base}/cityhub/v1/publishers/{id}`. DCAT-AP 3's
//! mandatory properties are always there: Catalog `dct:title`, `dct:description`,
//! `dct:publisher`, `dcat:dataset`; Dataset `dct:title`, `dct:description`; Distribution
//! `dcat:accessURL`; Agent `foaf:name`.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::dataset::{distributions, frequency_code, license_url, Dataset, LangText};

pub const DCAT: &str = "http://www.w3.org/ns/dcat#";
pub const DCT: &str = "http://purl.org/dc/terms/";
pub const FOAF: &str = "http://xmlns.com/foaf/0.1/";
pub const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
pub const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
pub const LOCN: &str = "http://www.w3.org/ns/locn#";
const EU: &str = "http://publications.europa.eu/resource/authority/";

const PREFIXES: &[(&str, &str)] =
    &[("dcat", DCAT), ("dct", DCT), ("foaf", FOAF), ("vcard", VCARD), ("xsd", XSD), ("locn", LOCN)];

/// An object of a triple.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Term {
    Iri(String),
    Literal { value: String, lang: Option<String>, datatype: Option<String> },
}

impl Term {
    fn text(value: impl Into<String>) -> Term {
        Term::Literal { value: value.into(), lang: None, datatype: None }
    }

    fn lang(value: impl Into<String>, lang: &str) -> Term {
        Term::Literal { value: value.into(), lang: Some(lang.to_owned()), datatype: None }
    }

    fn typed(value: impl Into<String>, datatype: &str) -> Term {
        Term::Literal { value: value.into(), lang: None, datatype: Some(datatype.to_owned()) }
    }
}

/// Triples, grouped by subject in the order subjects were first described.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    subjects: Vec<(String, Vec<(String, Term)>)>,
}

impl Graph {
    fn add(&mut self, subject: &str, predicate: &str, object: Term) {
        match self.subjects.iter_mut().find(|(s, _)| s == subject) {
            Some((_, props)) => props.push((predicate.to_owned(), object)),
            None => self.subjects.push((subject.to_owned(), vec![(predicate.to_owned(), object)])),
        }
    }

    fn texts(&mut self, subject: &str, predicate: &str, text: &LangText) {
        for (lang, value) in text {
            self.add(subject, predicate, Term::lang(value.clone(), lang));
        }
    }

    /// Every triple, as (subject, predicate, object).
    pub fn triples(&self) -> impl Iterator<Item = (&str, &str, &Term)> {
        self.subjects.iter().flat_map(|(s, props)| props.iter().map(move |(p, o)| (s.as_str(), p.as_str(), o)))
    }

    /// JSON-LD: an `@graph` of node objects, properties as compact IRIs of the prefixes in the
    /// `@context`, types and IRIs written out in full.
    pub fn to_json_ld(&self) -> Value {
        let context: Map<String, Value> = PREFIXES.iter().map(|(p, iri)| (p.to_string(), json!(iri))).collect();
        let mut nodes = Vec::new();
        for (subject, props) in &self.subjects {
            let mut node = Map::new();
            node.insert("@id".into(), json!(subject));
            for (predicate, object) in props {
                if predicate == RDF_TYPE {
                    if let Term::Iri(t) = object {
                        push(&mut node, "@type", json!(t));
                    }
                    continue;
                }
                let value = match object {
                    Term::Iri(iri) => json!({"@id": iri}),
                    Term::Literal { value, lang: Some(lang), .. } => json!({"@value": value, "@language": lang}),
                    Term::Literal { value, datatype: Some(dt), .. } => json!({"@value": value, "@type": dt}),
                    Term::Literal { value, .. } => json!({"@value": value}),
                };
                push(&mut node, &compact(predicate), value);
            }
            nodes.push(Value::Object(node));
        }
        json!({"@context": context, "@graph": nodes})
    }

    /// Turtle: the prefixes, then each subject with its predicates.
    pub fn to_turtle(&self) -> String {
        let mut out = String::new();
        for (prefix, iri) in PREFIXES {
            let _ = writeln!(out, "@prefix {prefix}: <{iri}> .");
        }
        for (subject, props) in &self.subjects {
            let _ = write!(out, "\n<{}>", escape_iri(subject));
            for (i, (predicate, object)) in props.iter().enumerate() {
                let predicate = match predicate.as_str() {
                    RDF_TYPE => "a".to_owned(),
                    p => turtle_predicate(p),
                };
                let sep = if i == 0 { "\n    " } else { " ;\n    " };
                let _ = write!(out, "{sep}{predicate} {}", turtle_term(object));
            }
            out.push_str(" .\n");
        }
        out
    }
}

fn push(node: &mut Map<String, Value>, key: &str, value: Value) {
    match node.get_mut(key) {
        Some(Value::Array(items)) => items.push(value),
        Some(one) => {
            let first = one.take();
            *one = Value::Array(vec![first, value]);
        }
        None => {
            node.insert(key.to_owned(), value);
        }
    }
}

fn compact(iri: &str) -> String {
    for (prefix, ns) in PREFIXES {
        if let Some(local) = iri.strip_prefix(ns) {
            if !local.is_empty() && local.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return format!("{prefix}:{local}");
            }
        }
    }
    iri.to_owned()
}

fn turtle_predicate(iri: &str) -> String {
    let compacted = compact(iri);
    match compacted == iri {
        true => format!("<{}>", escape_iri(iri)),
        false => compacted,
    }
}

fn escape_iri(iri: &str) -> String {
    let mut out = String::with_capacity(iri.len());
    for c in iri.chars() {
        match c {
            '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\' | ' ' | '\u{0}'..='\u{20}' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn turtle_term(term: &Term) -> String {
    match term {
        Term::Iri(iri) => format!("<{}>", escape_iri(iri)),
        Term::Literal { value, lang, datatype } => {
            let mut out = String::from("\"");
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            if let Some(lang) = lang {
                let _ = write!(out, "@{lang}");
            } else if let Some(dt) = datatype {
                let _ = write!(out, "^^<{}>", escape_iri(dt));
            }
            out
        }
    }
}

/// What the catalogue itself says of itself.
#[derive(Debug, Clone)]
pub struct CatalogInfo {
    pub base: String,
    pub title: LangText,
    pub description: LangText,
    pub publisher_id: String,
    pub publisher_name: String,
}

fn iri(s: impl Into<String>) -> Term {
    Term::Iri(s.into())
}

/// The catalogue graph of `datasets`.
pub fn catalog(info: &CatalogInfo, datasets: &[Dataset]) -> Graph {
    let mut g = Graph::default();
    let base = &info.base;
    let cat = format!("{base}/catalog");
    g.add(&cat, RDF_TYPE, iri(format!("{DCAT}Catalog")));
    g.texts(&cat, &format!("{DCT}title"), &info.title);
    g.texts(&cat, &format!("{DCT}description"), &info.description);
    let hub_agent = agent(&mut g, base, &info.publisher_id, &[("en".to_owned(), info.publisher_name.clone())].into());
    g.add(&cat, &format!("{DCT}publisher"), iri(hub_agent));
    g.add(&cat, &format!("{FOAF}homepage"), iri(format!("{base}/")));
    for d in datasets {
        let ds = format!("{base}/cityhub/v1/datasets/{}", d.name);
        g.add(&cat, &format!("{DCAT}dataset"), iri(ds.clone()));
        dataset(&mut g, base, &ds, d);
    }
    g
}

fn agent(g: &mut Graph, base: &str, id: &str, name: &LangText) -> String {
    let a = format!("{base}/cityhub/v1/publishers/{id}");
    if !g.subjects.iter().any(|(s, _)| *s == a) {
        g.add(&a, RDF_TYPE, iri(format!("{FOAF}Agent")));
        g.texts(&a, &format!("{FOAF}name"), name);
    }
    a
}

fn dataset(g: &mut Graph, base: &str, ds: &str, d: &Dataset) {
    g.add(ds, RDF_TYPE, iri(format!("{DCAT}Dataset")));
    g.texts(ds, &format!("{DCT}title"), &d.title);
    g.texts(ds, &format!("{DCT}description"), &d.description);
    g.add(ds, &format!("{DCT}identifier"), Term::text(d.entity_id()));
    for (lang, words) in &d.keywords {
        for w in words {
            g.add(ds, &format!("{DCAT}keyword"), Term::lang(w.clone(), lang));
        }
    }
    let publisher = agent(g, base, &d.publisher.id, &d.publisher.name);
    g.add(ds, &format!("{DCT}publisher"), iri(publisher));
    if let Some(c) = &d.contact_point {
        let cp = format!("{ds}#contact");
        g.add(ds, &format!("{DCAT}contactPoint"), iri(cp.clone()));
        g.add(&cp, RDF_TYPE, iri(format!("{VCARD}Kind")));
        g.add(&cp, &format!("{VCARD}fn"), Term::text(c.name.clone()));
        if let Some(email) = &c.email {
            g.add(&cp, &format!("{VCARD}hasEmail"), iri(format!("mailto:{email}")));
        }
        if let Some(url) = &c.url {
            g.add(&cp, &format!("{VCARD}hasURL"), iri(url.clone()));
        }
    }
    if let Some(code) = d.update_frequency.as_deref().and_then(|f| frequency_code(f).ok()) {
        g.add(ds, &format!("{DCT}accrualPeriodicity"), iri(format!("{EU}frequency/{code}")));
    }
    for t in &d.theme {
        g.add(ds, &format!("{DCAT}theme"), iri(format!("{EU}data-theme/{t}")));
    }
    g.add(ds, &format!("{DCT}accessRights"), iri(format!("{EU}access-right/{}", d.access_level.access_right())));
    if let Some(geometry) = &d.spatial_coverage {
        let loc = format!("{ds}#spatial");
        g.add(ds, &format!("{DCT}spatial"), iri(loc.clone()));
        g.add(&loc, RDF_TYPE, iri(format!("{DCT}Location")));
        g.add(
            &loc,
            &format!("{LOCN}geometry"),
            Term::typed(geometry.to_string(), "https://www.iana.org/assignments/media-types/application/vnd.geo+json"),
        );
    }
    if let Some(p) = &d.temporal_coverage {
        let per = format!("{ds}#temporal");
        g.add(ds, &format!("{DCT}temporal"), iri(per.clone()));
        g.add(&per, RDF_TYPE, iri(format!("{DCT}PeriodOfTime")));
        if let Some(s) = &p.start {
            g.add(&per, &format!("{DCAT}startDate"), Term::typed(s.clone(), &format!("{XSD}dateTime")));
        }
        if let Some(e) = &p.end {
            g.add(&per, &format!("{DCAT}endDate"), Term::typed(e.clone(), &format!("{XSD}dateTime")));
        }
    }
    if !d.created_at.is_empty() {
        g.add(ds, &format!("{DCT}issued"), Term::typed(d.created_at.clone(), &format!("{XSD}dateTime")));
        g.add(ds, &format!("{DCT}modified"), Term::typed(d.modified_at.clone(), &format!("{XSD}dateTime")));
    }
    g.add(ds, &format!("{DCAT}landingPage"), iri(ds.to_owned()));
    let license = license_url(&d.license).ok();
    for dist in distributions(d, base) {
        let di = format!("{ds}#{}", dist.key);
        g.add(ds, &format!("{DCAT}distribution"), iri(di.clone()));
        g.add(&di, RDF_TYPE, iri(format!("{DCAT}Distribution")));
        g.add(&di, &format!("{DCT}title"), Term::lang(dist.title.clone(), "en"));
        g.add(&di, &format!("{DCAT}accessURL"), iri(dist.access_url.clone()));
        if let Some(url) = &dist.download_url {
            g.add(&di, &format!("{DCAT}downloadURL"), iri(url.clone()));
        }
        g.add(
            &di,
            &format!("{DCAT}mediaType"),
            iri(format!("https://www.iana.org/assignments/media-types/{}", dist.media_type)),
        );
        g.add(&di, &format!("{DCT}format"), iri(format!("{EU}file-type/{}", dist.format.replace('-', "_"))));
        if let Some(l) = &license {
            g.add(&di, &format!("{DCT}license"), iri(l.clone()));
        }
    }
    if let Some(l) = license {
        g.add(&l, RDF_TYPE, iri(format!("{DCT}LicenseDocument")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_has_every_mandatory_property_in_both_forms() {
        let d = Dataset::read(&crate::dataset::tests::sample(), "2026-01-01T00:00:00Z").unwrap();
        let info = CatalogInfo {
            base: "http://hub".into(),
            title: [("en".into(), "Catalog".into())].into(),
            description: [("en".into(), "All data".into())].into(),
            publisher_id: "city".into(),
            publisher_name: "The city".into(),
        };
        let g = catalog(&info, &[d]);
        let has = |s: &str, p: &str| g.triples().any(|(ts, tp, _)| ts == s && tp == p);
        for p in ["title", "description", "publisher"] {
            assert!(has("http://hub/catalog", &format!("{DCT}{p}")), "{p}");
        }
        assert!(has("http://hub/catalog", &format!("{DCAT}dataset")));
        assert!(has("http://hub/cityhub/v1/datasets/air-quality", &format!("{DCT}title")));
        assert!(has("http://hub/cityhub/v1/datasets/air-quality#current-csv", &format!("{DCAT}accessURL")));
        let ttl = g.to_turtle();
        assert!(ttl.contains("dct:title \"대기질\"@ko"), "{ttl}");
        let ld = g.to_json_ld();
        assert!(ld["@graph"].as_array().unwrap().len() > 5);
    }

    #[test]
    fn literals_are_escaped_in_turtle() {
        assert_eq!(turtle_term(&Term::text("a \"b\"\n\\")), "\"a \\\"b\\\"\\n\\\\\"");
        assert_eq!(escape_iri("http://x/a b"), "http://x/a%20b");
    }
}
