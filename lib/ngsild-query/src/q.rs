//! The NGSI-LD query language `q` (clause 4.9).
//!
//! A hand-written recursive-descent parser: the grammar is small, and writing it by hand gives
//! every error the byte position where the input stops making sense. `;` (AND) binds tighter than
//! `|` (OR); parentheses group, at most [`crate::MAX_NESTING`] deep.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::time::parse_datetime;
use ngsild_core::Entity;
use ngsild_jsonld::Context;
use serde_json::Value;

use crate::{one_or, ParseError};

#[derive(Debug, Clone)]
pub enum QExpr {
    And(Vec<QExpr>),
    Or(Vec<QExpr>),
    Term(QTerm),
}

/// Where a term looks: an attribute, then sub-attributes or metadata (`a.b`), then members of a
/// compound value (`a[k][l]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Expanded attribute name.
    pub attr: String,
    /// Expanded sub-attribute names, or one of the metadata members (`observedAt`, ...).
    pub sub: Vec<String>,
    /// Keys into a compound value, not expanded.
    pub compound: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Bool(bool),
    Text(String),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    Time(NaiveTime),
}

#[derive(Debug, Clone)]
pub enum Operand {
    One(Literal),
    List(Vec<Literal>),
    Range(Literal, Literal),
    Pattern(regex::Regex),
}

#[derive(Debug, Clone)]
pub enum QTerm {
    /// The attribute (path) exists.
    Exists(AttrPath),
    /// `!attr`: it does not.
    NotExists(AttrPath),
    Compare(AttrPath, Op, Operand),
}

impl QTerm {
    pub fn path(&self) -> &AttrPath {
        match self {
            QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _) => p,
        }
    }
}

const METADATA: &[&str] = &["observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "objectType", "lang"];

impl QExpr {
    /// Parses `q`, expanding attribute names with `ctx`.
    pub fn parse(input: &str, ctx: &Context) -> Result<QExpr, ParseError> {
        let mut parser = Parser { input, pos: 0, ctx, depth: 0 };
        parser.skip_spaces();
        if parser.at_end() {
            return Err(parser.error("an empty query"));
        }
        let expr = parser.or_expr()?;
        parser.skip_spaces();
        if !parser.at_end() {
            return Err(parser.error("an operator, ';', '|' or the end of the query"));
        }
        Ok(expr)
    }

    pub fn matches(&self, entity: &Entity) -> bool {
        match self {
            QExpr::And(all) => all.iter().all(|e| e.matches(entity)),
            QExpr::Or(any) => any.iter().any(|e| e.matches(entity)),
            QExpr::Term(term) => term_matches(term, entity),
        }
    }

    /// The expanded attribute names the query refers to.
    pub fn attribute_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.visit_terms(&mut |t| {
            if !names.contains(&t.path().attr.as_str()) {
                names.push(t.path().attr.as_str());
            }
        });
        names
    }

    /// The terms that must all hold (the top-level conjunction), for a backend that can serve
    /// some of them from an index.
    pub fn conjuncts(&self) -> Vec<&QTerm> {
        match self {
            QExpr::Term(t) => vec![t],
            QExpr::And(all) => all.iter().filter_map(|e| if let QExpr::Term(t) = e { Some(t) } else { None }).collect(),
            QExpr::Or(_) => Vec::new(),
        }
    }

    fn visit_terms<'a>(&'a self, f: &mut impl FnMut(&'a QTerm)) {
        match self {
            QExpr::And(es) | QExpr::Or(es) => es.iter().for_each(|e| e.visit_terms(f)),
            QExpr::Term(t) => f(t),
        }
    }
}

/// Parses one attribute path as `q` writes it (`a`, `a.b`, `a.observedAt`, `a[k]`), the whole
/// input; `orderBy` shares it.
pub(crate) fn parse_path(input: &str, ctx: &Context) -> Result<AttrPath, ParseError> {
    let mut parser = Parser { input, pos: 0, ctx, depth: 0 };
    let path = parser.path()?;
    if !parser.at_end() {
        return Err(parser.error("'.', '[' or the end of the attribute path"));
    }
    Ok(path)
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    ctx: &'a Context,
    /// Open parentheses around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, expected: &str) -> ParseError {
        let found = self.rest().chars().next().map(|c| format!("{c:?}")).unwrap_or_else(|| "the end".into());
        ParseError { position: self.pos, message: format!("expected {expected}, found {found}") }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            // Whitespace is not all ASCII (U+00A0, U+3000): step over the whole character.
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Result<QExpr, ParseError> {
        let mut terms = vec![self.and_expr()?];
        loop {
            self.skip_spaces();
            if !self.eat("|") {
                break;
            }
            terms.push(self.and_expr()?);
        }
        Ok(one_or(terms, QExpr::Or))
    }

    fn and_expr(&mut self) -> Result<QExpr, ParseError> {
        let mut terms = vec![self.primary()?];
        loop {
            self.skip_spaces();
            if !self.eat(";") {
                break;
            }
            terms.push(self.primary()?);
        }
        Ok(one_or(terms, QExpr::And))
    }

    fn primary(&mut self) -> Result<QExpr, ParseError> {
        self.skip_spaces();
        let open = self.pos;
        if self.eat("(") {
            if self.depth >= crate::MAX_NESTING {
                return Err(ParseError::too_deep(open));
            }
            self.depth += 1;
            let inner = self.or_expr()?;
            self.skip_spaces();
            if !self.eat(")") {
                return Err(self.error("')'"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        if self.eat("!") && !self.rest().starts_with('=') {
            let path = self.path()?;
            return Ok(QExpr::Term(QTerm::NotExists(path)));
        }
        let path = self.path()?;
        self.skip_spaces();
        let op = if self.eat("==") {
            Op::Eq
        } else if self.eat("!=") {
            Op::Ne
        } else if self.eat(">=") {
            Op::Ge
        } else if self.eat("<=") {
            Op::Le
        } else if self.eat(">") {
            Op::Gt
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat("~=") {
            Op::Matches
        } else if self.eat("!~=") {
            Op::NotMatches
        } else {
            return Ok(QExpr::Term(QTerm::Exists(path)));
        };
        self.skip_spaces();
        let operand = match op {
            Op::Matches | Op::NotMatches => {
                let start = self.pos;
                let pattern = self.literal_text()?;
                let regex = regex::Regex::new(&pattern)
                    .map_err(|e| ParseError { position: start, message: format!("invalid regular expression: {e}") })?;
                Operand::Pattern(regex)
            }
            _ => self.operand(op)?,
        };
        Ok(QExpr::Term(QTerm::Compare(path, op, operand)))
    }

    fn name(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| c.is_whitespace() || "=!<>~;|()[].,\"'".contains(c))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("an attribute name"));
        }
        self.pos += len;
        Ok(&self.input[start..self.pos])
    }

    fn path(&mut self) -> Result<AttrPath, ParseError> {
        self.skip_spaces();
        let attr = self.name()?;
        let mut path =
            AttrPath { attr: self.ctx.expand_term(attr).into_owned(), sub: Vec::new(), compound: Vec::new() };
        loop {
            if self.eat(".") {
                let sub = self.name()?;
                let sub = if METADATA.contains(&sub) { sub.to_owned() } else { self.ctx.expand_term(sub).into_owned() };
                path.sub.push(sub);
            } else if self.eat("[") {
                // `a[b.c]` and `a[b][c]` both walk into the compound value.
                let start = self.pos;
                let end = self.rest().find(']').ok_or_else(|| self.error("']'"))?;
                let inner = &self.input[start..start + end];
                if inner.is_empty() {
                    return Err(self.error("a member name"));
                }
                path.compound.extend(inner.split('.').map(str::to_owned));
                self.pos += end + 1;
            } else {
                return Ok(path);
            }
        }
    }

    fn operand(&mut self, op: Op) -> Result<Operand, ParseError> {
        let first = self.literal()?;
        if self.eat("..") {
            let second = self.literal()?;
            return Ok(Operand::Range(first, second));
        }
        if self.rest().starts_with(',') {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(self.error("a single value (lists go with == and != only)"));
            }
            let mut items = vec![first];
            while self.eat(",") {
                items.push(self.literal()?);
            }
            return Ok(Operand::List(items));
        }
        Ok(Operand::One(first))
    }

    /// The text of a quoted string or of a bare token.
    fn literal_text(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') || self.peek() == Some('\'') {
            return self.quoted();
        }
        let start = self.pos;
        let len = self.rest().find(|c: char| ";|)".contains(c)).unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("a value"));
        }
        self.pos += len;
        Ok(self.input[start..self.pos].to_owned())
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let quote = self.peek().unwrap_or('"');
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => out.push(escaped),
                    None => break,
                },
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(ParseError { position: start, message: "unterminated string".into() })
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        self.skip_spaces();
        if self.peek() == Some('"') || self.peek() == Some('\'') {
            let text = self.quoted()?;
            return Ok(typed_text(text));
        }
        let start = self.pos;
        // A bare value ends at a logical operator, a closing parenthesis, a list comma or a range.
        let mut end = self.rest().len();
        for (i, c) in self.rest().char_indices() {
            if ";|),".contains(c) || self.rest()[i..].starts_with("..") {
                end = i;
                break;
            }
        }
        let token = self.rest()[..end].trim_end();
        if token.is_empty() || token.starts_with(['=', '<', '>', '!', '~']) {
            return Err(self.error("a value"));
        }
        self.pos += end;
        Ok(match token {
            "true" => Literal::Bool(true),
            "false" => Literal::Bool(false),
            _ => match token.parse::<f64>() {
                Ok(n) if n.is_finite() => Literal::Number(n),
                _ => {
                    if token.contains(char::is_whitespace) {
                        return Err(ParseError {
                            position: start,
                            message: format!("unquoted value {token:?} contains spaces"),
                        });
                    }
                    typed_text(token.to_owned())
                }
            },
        })
    }
}

/// A string literal that spells a date, a time or a date-time compares as one.
fn typed_text(text: String) -> Literal {
    if text.contains('T') {
        if let Some(dt) = parse_datetime(&text) {
            return Literal::DateTime(dt);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return Literal::Date(d);
    }
    if let Ok(t) = NaiveTime::parse_from_str(text.trim_end_matches('Z'), "%H:%M:%S%.f") {
        return Literal::Time(t);
    }
    Literal::Text(text)
}

fn term_matches(term: &QTerm, entity: &Entity) -> bool {
    match term {
        QTerm::Exists(path) => exists(entity, path),
        QTerm::NotExists(path) => !exists(entity, path),
        QTerm::Compare(path, op, operand) => {
            let values = values_at(entity, path);
            if values.is_empty() {
                return false;
            }
            match op {
                // "Not equal" holds when no value equals; the others when some value satisfies.
                Op::Ne => !values.iter().any(|v| equals_operand(v, operand)),
                Op::NotMatches => values.iter().all(|v| !pattern_matches(v, operand)),
                Op::Eq => values.iter().any(|v| equals_operand(v, operand)),
                Op::Matches => values.iter().any(|v| pattern_matches(v, operand)),
                Op::Gt | Op::Ge | Op::Lt | Op::Le => values.iter().any(|v| match operand {
                    Operand::One(lit) => compare(v, lit).is_some_and(|o| ordering_holds(*op, o)),
                    _ => false,
                }),
            }
        }
    }
}

/// An attribute exists when the entity has an instance of it, whatever its value (even `[]`); a
/// path into it exists when it leads to a value.
fn exists(entity: &Entity, path: &AttrPath) -> bool {
    if path.sub.is_empty() && path.compound.is_empty() {
        return entity.attrs.get(&path.attr).is_some_and(|instances| !instances.is_empty());
    }
    !values_at(entity, path).is_empty()
}

fn ordering_holds(op: Op, o: Ordering) -> bool {
    match op {
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        _ => false,
    }
}

fn equals_operand(v: &Value, operand: &Operand) -> bool {
    match operand {
        Operand::One(lit) => compare(v, lit) == Some(Ordering::Equal),
        Operand::List(items) => items.iter().any(|lit| compare(v, lit) == Some(Ordering::Equal)),
        Operand::Range(lo, hi) => {
            compare(v, lo).is_some_and(|o| o != Ordering::Less)
                && compare(v, hi).is_some_and(|o| o != Ordering::Greater)
        }
        Operand::Pattern(_) => false,
    }
}

fn pattern_matches(v: &Value, operand: &Operand) -> bool {
    match (v, operand) {
        (Value::String(s), Operand::Pattern(re)) => re.is_match(s),
        _ => false,
    }
}

/// Compares a stored value with a literal of the query; values of different kinds do not compare.
fn compare(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::Number(n), Literal::Number(l)) => n.as_f64()?.partial_cmp(l),
        (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (Value::String(s), Literal::Text(l)) => Some(s.as_str().cmp(l.as_str())),
        (Value::String(s), Literal::DateTime(l)) => parse_datetime(s).map(|d| d.cmp(l)),
        (Value::String(s), Literal::Date(l)) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.cmp(l)),
        (Value::String(s), Literal::Time(l)) => {
            NaiveTime::parse_from_str(s.trim_end_matches('Z'), "%H:%M:%S%.f").ok().map(|t| t.cmp(l))
        }
        _ => None,
    }
}

/// Every scalar the path reaches in the entity (over all instances, into arrays).
pub(crate) fn values_at(entity: &Entity, path: &AttrPath) -> Vec<Value> {
    let mut out = Vec::new();
    for instance in entity.attrs.get(&path.attr).into_iter().flatten() {
        collect_from_attribute(instance, &path.sub, &path.compound, &mut out);
    }
    out
}

fn collect_from_attribute(attr: &Attribute, sub: &[String], compound: &[String], out: &mut Vec<Value>) {
    if let Some((first, rest)) = sub.split_first() {
        let metadata = match first.as_str() {
            "observedAt" => attr.observed_at.clone().map(Value::String),
            "unitCode" => attr.unit_code.clone().map(Value::String),
            "datasetId" => attr.dataset_id.clone().map(Value::String),
            "createdAt" => attr.created_at.clone().map(Value::String),
            "modifiedAt" => attr.modified_at.clone().map(Value::String),
            "objectType" => attr.object_type.clone(),
            _ => {
                if let Some(sub_attr) = attr.sub.get(first) {
                    collect_from_attribute(sub_attr, rest, compound, out);
                }
                return;
            }
        };
        if let Some(m) = metadata {
            out.push(m);
        }
        return;
    }
    let base = match attr.kind {
        AttributeKind::LanguageProperty => {
            // Any text of the language map, or the one of a language named in brackets.
            if let (Some(lang), Value::Object(map)) = (compound.first(), &attr.value) {
                if let Some(text) = map.get(lang) {
                    flatten(text, out);
                }
                return;
            }
            if let Value::Object(map) = &attr.value {
                map.values().for_each(|t| flatten(t, out));
            }
            return;
        }
        AttributeKind::ListRelationship => {
            for item in attr.value.as_array().into_iter().flatten() {
                out.push(item.get("object").unwrap_or(item).clone());
            }
            return;
        }
        _ => &attr.value,
    };
    let mut target = base;
    for key in compound {
        match target.get(key) {
            Some(next) => target = next,
            None => return,
        }
    }
    flatten(target, out);
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::expand::expand_entity;
    use ngsild_jsonld::core_context;
    use serde_json::json;

    fn building() -> Entity {
        let body = json!({
            "id": "urn:ngsi-ld:Building:1", "type": "Building",
            "name": {"type": "Property", "value": "Eiffel Tower", "source": {"type": "Property", "value": "GPS"}},
            "height": {"type": "Property", "value": 300, "unitCode": "MTR", "observedAt": "2024-05-01T10:00:00Z"},
            "almostFull": {"type": "Property", "value": false},
            "address": {"type": "Property", "value": {"city": "Paris", "zip": {"code": "75007"}}},
            "tags": {"type": "Property", "value": ["iron", "tower"]},
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"},
            "street": {"type": "LanguageProperty", "languageMap": {"fr": "Avenue Gustave Eiffel", "en": "Gustave Eiffel Avenue"}},
            "opened": {"type": "Property", "value": "1889-03-31T00:00:00Z"}
        });
        expand_entity(body.as_object().unwrap(), &core_context()).unwrap().0
    }

    fn q(input: &str) -> bool {
        QExpr::parse(input, &core_context()).unwrap_or_else(|e| panic!("{input}: {e}")).matches(&building())
    }

    fn error_at(input: &str) -> usize {
        QExpr::parse(input, &core_context()).unwrap_err().position
    }

    #[test]
    fn comparisons() {
        assert!(q("height==300"));
        assert!(q("height>299;height<301"));
        assert!(q("height>=300;height<=300"));
        assert!(!q("height>300"));
        assert!(q("height!=3"));
        assert!(q(r#"name=="Eiffel Tower""#));
        assert!(q("almostFull==false"));
        assert!(!q("almostFull==true"));
        assert!(!q(r#"height=="300""#), "a number does not equal a string");
        assert!(!q("missing!=1"), "comparisons need the attribute");
    }

    #[test]
    fn ranges_lists_and_patterns() {
        assert!(q("height==200..400"));
        assert!(!q("height==301..400"));
        assert!(q("height!=301..400"));
        assert!(q("height==1,2,300"));
        assert!(q(r#"name=="Big Ben","Eiffel Tower""#));
        assert!(!q("height!=1,300"));
        assert!(q("name~=Eif+el"));
        assert!(q("name!~=^Big"));
        assert!(q("tags==tower"), "any element of an array value");
    }

    #[test]
    fn relationships_languages_dates() {
        assert!(q("locatedAt==urn:ngsi-ld:City:Paris"));
        assert!(q(r#"locatedAt=="urn:ngsi-ld:City:Paris""#));
        assert!(q(r#"street=="Gustave Eiffel Avenue""#));
        assert!(q(r#"street[fr]=="Avenue Gustave Eiffel""#));
        assert!(q("opened<1900-01-01T00:00:00Z"));
        assert!(q("height.observedAt>2024-01-01T00:00:00Z"));
        assert!(q(r#"height.unitCode=="MTR""#));
    }

    #[test]
    fn paths_existence_and_precedence() {
        assert!(q("name"));
        assert!(q("!missing"));
        assert!(!q("!name"));
        assert!(q(r#"name.source=="GPS""#));
        assert!(q(r#"address[city]=="Paris""#));
        assert!(q(r#"address[zip.code]=="75007""#));
        assert!(q(r#"address[zip][code]=="75007""#));
        // AND binds tighter: false;x | true  ==  (false;x) | true
        assert!(q("height==1;name|almostFull==false"));
        assert!(!q("height==1;(name|almostFull==false)"));
        assert!(q("(height==1|height==300);(name)"));
    }

    #[test]
    fn escapes_and_errors_name_their_position() {
        let e = QExpr::parse(r#"name=="say \"hi\"""#, &core_context()).unwrap();
        match e {
            QExpr::Term(QTerm::Compare(_, Op::Eq, Operand::One(Literal::Text(t)))) => assert_eq!(t, r#"say "hi""#),
            other => panic!("{other:?}"),
        }
        assert_eq!(error_at(""), 0);
        assert_eq!(error_at("height=="), 8);
        assert_eq!(error_at("(height==1"), 10);
        assert_eq!(error_at(r#"name=="open"#), 6);
        assert_eq!(error_at("height>1,2"), 8);
        assert_eq!(error_at("name~=("), 6);
        assert_eq!(error_at("a==1)"), 4);
        assert_eq!(error_at("a>>1"), 2);
    }

    #[test]
    fn nesting_is_bounded_and_named() {
        let ok = format!("{}height==300{}", "(".repeat(crate::MAX_NESTING), ")".repeat(crate::MAX_NESTING));
        assert!(q(&ok));
        let deep = format!("{}a==1{}", "(".repeat(5000), ")".repeat(5000));
        let err = QExpr::parse(&deep, &core_context()).unwrap_err();
        assert_eq!(err.position, crate::MAX_NESTING, "the first parenthesis past the limit");
        assert!(err.message.contains("64 levels"), "{}", err.message);
    }

    #[test]
    fn multi_byte_characters_next_to_operators() {
        // A non-breaking space, an ideographic space and Korean text around names and operators.
        assert!(q("height\u{a0}==\u{a0}300"));
        assert!(q("\u{3000}height==300\u{3000};\u{3000}name"));
        assert!(!q("이름==\"서울\""));
        for input in
            ["height==\u{a0}", "높이\u{3000}>\u{3000}", "(\u{a0}", "a==\"\u{3000}", "a[\u{a0}", "\u{a0}!\u{a0}"]
        {
            let err = QExpr::parse(input, &core_context()).unwrap_err();
            assert!(input.is_char_boundary(err.position), "{input:?}: {err}");
        }
    }

    #[test]
    fn conjuncts_and_names() {
        let e = QExpr::parse("height>1;name==\"x\"", &core_context()).unwrap();
        assert_eq!(e.conjuncts().len(), 2);
        assert_eq!(
            e.attribute_names(),
            vec![
                "https://uri.etsi.org/ngsi-ld/default-context/height",
                "https://uri.etsi.org/ngsi-ld/default-context/name"
            ]
        );
    }
}
