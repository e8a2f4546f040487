//! Entity type selection (clause 4.17): `A,B` (either), `A;B` (both), `A|B` (either), parentheses.

use ngsild_jsonld::Context;

use crate::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeExpr {
    Type(String),
    And(Vec<TypeExpr>),
    Or(Vec<TypeExpr>),
}

impl TypeExpr {
    /// Parses a type selection, expanding each type name with `ctx`.
    pub fn parse(input: &str, ctx: &Context) -> Result<TypeExpr, ParseError> {
        // Placeholder grammar until the full parser lands: a comma/pipe separated list of names.
        let mut alternatives = Vec::new();
        for (i, part) in input.split([',', '|']).enumerate() {
            let name = part.trim();
            if name.is_empty() {
                return Err(ParseError { position: i, message: "empty type name".into() });
            }
            alternatives.push(TypeExpr::Type(ctx.expand_term(name).into_owned()));
        }
        Ok(if alternatives.len() == 1 { alternatives.pop().unwrap() } else { TypeExpr::Or(alternatives) })
    }

    pub fn matches(&self, types: &[String]) -> bool {
        match self {
            TypeExpr::Type(t) => types.iter().any(|x| x == t),
            TypeExpr::And(all) => all.iter().all(|e| e.matches(types)),
            TypeExpr::Or(any) => any.iter().any(|e| e.matches(types)),
        }
    }

    /// The plain list of type IRIs when the expression is a disjunction of single types (what an
    /// index lookup can serve directly).
    pub fn as_type_list(&self) -> Option<Vec<&str>> {
        match self {
            TypeExpr::Type(t) => Some(vec![t.as_str()]),
            TypeExpr::Or(any) => any.iter().map(|e| if let TypeExpr::Type(t) = e { Some(t.as_str()) } else { None }).collect(),
            TypeExpr::And(_) => None,
        }
    }
}
