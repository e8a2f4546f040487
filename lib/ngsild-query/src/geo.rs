//! Geo-queries (clause 4.10). Placeholder until the full implementation lands.

use ngsild_core::Entity;

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum GeoQuery {}

impl GeoQuery {
    pub fn parse(georel: &str, _geometry: &str, _coordinates: &str, _geoproperty: &str) -> Result<GeoQuery, ParseError> {
        Err(ParseError { position: 0, message: format!("geo-queries are not supported yet: {georel}") })
    }

    pub fn matches(&self, _entity: &Entity) -> bool {
        match *self {}
    }
}
