//! The NGSI-LD query language `q` (clause 4.9). Placeholder until the full grammar lands.

use ngsild_core::Entity;
use ngsild_jsonld::Context;

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum QExpr {}

impl QExpr {
    pub fn parse(input: &str, _ctx: &Context) -> Result<QExpr, ParseError> {
        Err(ParseError { position: 0, message: format!("q is not supported yet: {input}") })
    }

    pub fn matches(&self, _entity: &Entity) -> bool {
        match *self {}
    }
}
