//! Entity type selection (clause 4.17): `A,B` and `A|B` either, `A;B` both, parentheses (at most
//! [`crate::MAX_NESTING`] deep).

use ngsild_jsonld::Context;

use crate::{one_or, ParseError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeExpr {
    Type(String),
    And(Vec<TypeExpr>),
    Or(Vec<TypeExpr>),
    /// Not this selection. No request parses to it: access control (`cityhub-access`) adds it
    /// to hide the types a deny policy names.
    Not(Box<TypeExpr>),
}

impl TypeExpr {
    /// Parses a type selection, expanding each type name with `ctx`.
    pub fn parse(input: &str, ctx: &Context) -> Result<TypeExpr, ParseError> {
        let mut p = Parser { input, pos: 0, ctx, depth: 0 };
        let expr = p.or_expr()?;
        if p.pos < input.len() {
            return Err(ParseError { position: p.pos, message: "expected ',', '|', ';' or the end".into() });
        }
        Ok(expr)
    }

    pub fn matches(&self, types: &[String]) -> bool {
        match self {
            TypeExpr::Type(t) => types.iter().any(|x| x == t),
            TypeExpr::And(all) => all.iter().all(|e| e.matches(types)),
            TypeExpr::Or(any) => any.iter().any(|e| e.matches(types)),
            TypeExpr::Not(not) => !not.matches(types),
        }
    }

    /// The plain list of type IRIs when the expression is a disjunction of single types (what an
    /// index lookup can serve directly).
    pub fn as_type_list(&self) -> Option<Vec<&str>> {
        match self {
            TypeExpr::Type(t) => Some(vec![t.as_str()]),
            TypeExpr::Or(any) => {
                any.iter().map(|e| if let TypeExpr::Type(t) = e { Some(t.as_str()) } else { None }).collect()
            }
            TypeExpr::And(_) | TypeExpr::Not(_) => None,
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    ctx: &'a Context,
    /// Open parentheses around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        let rest = &self.input[self.pos..];
        let trimmed = rest.trim_start();
        if trimmed.starts_with(c) {
            self.pos += rest.len() - trimmed.len() + c.len_utf8();
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Result<TypeExpr, ParseError> {
        let mut items = vec![self.and_expr()?];
        while self.eat(',') || self.eat('|') {
            items.push(self.and_expr()?);
        }
        Ok(one_or(items, TypeExpr::Or))
    }

    fn and_expr(&mut self) -> Result<TypeExpr, ParseError> {
        let mut items = vec![self.primary()?];
        while self.eat(';') {
            items.push(self.primary()?);
        }
        Ok(one_or(items, TypeExpr::And))
    }

    fn primary(&mut self) -> Result<TypeExpr, ParseError> {
        let rest = &self.input[self.pos..];
        let open = self.pos + (rest.len() - rest.trim_start().len());
        if self.eat('(') {
            if self.depth >= crate::MAX_NESTING {
                return Err(ParseError::too_deep(open));
            }
            self.depth += 1;
            let inner = self.or_expr()?;
            if !self.eat(')') {
                return Err(ParseError { position: self.pos, message: "expected ')'".into() });
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let rest = &self.input[self.pos..];
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let len = self.input[start..].find([',', '|', ';', '(', ')']).unwrap_or(self.input.len() - start);
        let name = self.input[start..start + len].trim();
        if name.is_empty() || !ngsild_core::validate::is_valid_name(name) {
            return Err(ParseError { position: start, message: format!("expected a type name, found {name:?}") });
        }
        self.pos = start + len;
        Ok(TypeExpr::Type(self.ctx.expand_term(name).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_jsonld::core_context;

    const D: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("{D}{n}")).collect()
    }

    #[test]
    fn selections() {
        let ctx = core_context();
        let t = |s: &str| TypeExpr::parse(s, &ctx).unwrap();
        assert!(t("A,B").matches(&types(&["B"])));
        assert!(t("A|B").matches(&types(&["A"])));
        assert!(!t("A;B").matches(&types(&["A"])));
        assert!(t("A;B").matches(&types(&["A", "B"])));
        assert!(t("(A;B)|C").matches(&types(&["C"])));
        assert!(!t("(A;B)|C").matches(&types(&["B"])));
        assert_eq!(t("A,B").as_type_list().unwrap().len(), 2);
        assert!(t("A;B").as_type_list().is_none());
    }

    #[test]
    fn errors() {
        let ctx = core_context();
        assert_eq!(TypeExpr::parse("", &ctx).unwrap_err().position, 0);
        assert_eq!(TypeExpr::parse("A,", &ctx).unwrap_err().position, 2);
        assert_eq!(TypeExpr::parse("(A", &ctx).unwrap_err().position, 2);
        assert!(TypeExpr::parse("A B", &ctx).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ctx = core_context();
        let n = crate::MAX_NESTING;
        assert!(TypeExpr::parse(&format!("{}A{}", "(".repeat(n), ")".repeat(n)), &ctx).is_ok());
        let err = TypeExpr::parse(&format!(" {}A{}", "( ".repeat(3000), ")".repeat(3000)), &ctx).unwrap_err();
        assert_eq!(err.position, 1 + 2 * n, "the first parenthesis past the limit");
        assert!(err.message.contains("64 levels"));
        assert!(TypeExpr::parse("\u{3000}건물\u{a0},\u{a0}B", &ctx).is_ok());
    }
}
