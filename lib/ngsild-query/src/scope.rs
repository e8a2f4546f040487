//! The scope query language `scopeQ` (clause 4.19): `/a/b` that scope exactly, `/a/#` it and
//! everything below, `/a/+` exactly one level below; `;` AND, `,` and `|` OR, parentheses (at
//! most [`crate::MAX_NESTING`] deep).

use crate::{one_or, ParseError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeExpr {
    And(Vec<ScopeExpr>),
    Or(Vec<ScopeExpr>),
    /// Path segments; `+` and a final `#` are wildcards.
    Scope(Vec<String>),
}

impl ScopeExpr {
    pub fn parse(input: &str) -> Result<ScopeExpr, ParseError> {
        let mut p = Parser { input, pos: 0, depth: 0 };
        let expr = p.or_expr()?;
        if p.pos < input.len() {
            return Err(p.error("';', ',', '|' or the end of the query"));
        }
        Ok(expr)
    }

    /// Whether an entity with these scopes matches.
    pub fn matches(&self, scopes: &[String]) -> bool {
        match self {
            ScopeExpr::And(all) => all.iter().all(|e| e.matches(scopes)),
            ScopeExpr::Or(any) => any.iter().any(|e| e.matches(scopes)),
            ScopeExpr::Scope(pattern) => scopes.iter().any(|s| scope_matches(pattern, s)),
        }
    }
}

fn scope_matches(pattern: &[String], scope: &str) -> bool {
    let segments: Vec<&str> = scope.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let mut i = 0;
    for (n, p) in pattern.iter().enumerate() {
        match p.as_str() {
            "#" if n == pattern.len() - 1 => return true,
            "+" => {
                if i >= segments.len() {
                    return false;
                }
            }
            literal => {
                if segments.get(i) != Some(&literal) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == segments.len()
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> ParseError {
        ParseError { position: self.pos, message: format!("expected {expected}") }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.input[self.pos..].starts_with(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Result<ScopeExpr, ParseError> {
        let mut items = vec![self.and_expr()?];
        while self.eat('|') || self.eat(',') {
            items.push(self.and_expr()?);
        }
        Ok(one_or(items, ScopeExpr::Or))
    }

    fn and_expr(&mut self) -> Result<ScopeExpr, ParseError> {
        let mut items = vec![self.primary()?];
        while self.eat(';') {
            items.push(self.primary()?);
        }
        Ok(one_or(items, ScopeExpr::And))
    }

    fn primary(&mut self) -> Result<ScopeExpr, ParseError> {
        let open = self.pos;
        if self.eat('(') {
            if self.depth >= crate::MAX_NESTING {
                return Err(ParseError::too_deep(open));
            }
            self.depth += 1;
            let inner = self.or_expr()?;
            if !self.eat(')') {
                return Err(self.error("')'"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        if !self.input[self.pos..].starts_with('/') {
            return Err(self.error("a scope starting with '/'"));
        }
        let start = self.pos;
        let len = self.input[self.pos..].find([';', ',', '|', '(', ')']).unwrap_or(self.input.len() - self.pos);
        let text = &self.input[start..start + len];
        let segments: Vec<String> = text[1..].split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if text.len() > 1 && text[1..].split('/').any(str::is_empty) {
            return Err(ParseError { position: start, message: format!("empty segment in scope {text:?}") });
        }
        if let Some(n) = segments.iter().position(|s| s == "#") {
            if n != segments.len() - 1 {
                return Err(ParseError { position: start, message: "'#' may only end a scope".into() });
            }
        }
        self.pos += len;
        Ok(ScopeExpr::Scope(segments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str, scopes: &[&str]) -> bool {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        ScopeExpr::parse(q).unwrap().matches(&scopes)
    }

    #[test]
    fn exact_plus_and_hash() {
        assert!(m("/Madrid/Gardens", &["/Madrid/Gardens"]));
        assert!(!m("/Madrid/Gardens", &["/Madrid/Gardens/ParqueNorte"]));
        assert!(m("/Madrid/#", &["/Madrid/Gardens/ParqueNorte"]));
        assert!(m("/Madrid/#", &["/Madrid"]));
        assert!(m("/Madrid/+", &["/Madrid/Gardens"]));
        assert!(!m("/Madrid/+", &["/Madrid/Gardens/ParqueNorte"]));
        assert!(m("/#", &["/anything"]));
        assert!(!m("/#", &[]), "an entity without scope matches no scope query");
    }

    #[test]
    fn logic() {
        assert!(m("/A;/B", &["/A", "/B"]));
        assert!(!m("/A;/B", &["/A"]));
        assert!(m("/A,/B", &["/B"]));
        assert!(m("/A|/B", &["/B"]));
        assert!(m("(/A|/B);/C", &["/B", "/C"]));
    }

    #[test]
    fn errors() {
        assert_eq!(ScopeExpr::parse("Madrid").unwrap_err().position, 0);
        assert_eq!(ScopeExpr::parse("/A;").unwrap_err().position, 3);
        assert_eq!(ScopeExpr::parse("(/A").unwrap_err().position, 3);
        assert_eq!(ScopeExpr::parse("/A//B").unwrap_err().position, 0);
        assert!(ScopeExpr::parse("/A/#/B").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let n = crate::MAX_NESTING;
        assert!(ScopeExpr::parse(&format!("{}/A{}", "(".repeat(n), ")".repeat(n))).is_ok());
        let err = ScopeExpr::parse(&format!("{}/A{}", "(".repeat(3000), ")".repeat(3000))).unwrap_err();
        assert_eq!(err.position, n);
        assert!(err.message.contains("64 levels"));
        assert!(ScopeExpr::parse("/서울\u{3000};/A").is_ok());
        let err = ScopeExpr::parse("/서울;\u{3000}/A").unwrap_err();
        assert_eq!(err.position, "/서울;".len());
    }
}
