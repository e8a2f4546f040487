//! The scope query language `scopeQ` (clause 4.19). Placeholder until the full grammar lands.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeExpr {}

impl ScopeExpr {
    pub fn parse(input: &str) -> Result<ScopeExpr, ParseError> {
        Err(ParseError { position: 0, message: format!("scopeQ is not supported yet: {input}") })
    }

    pub fn matches(&self, _scopes: &[String]) -> bool {
        match *self {}
    }
}
