//! Geo-queries (clause 4.10): a relation between an entity's GeoProperty and a reference
//! geometry. Topological relations use DE-9IM (`geo::Relate`) on longitude/latitude; `near`
//! measures great-circle distance in metres.

use geo::{
    Closest, ClosestPoint, Coord, Distance, Geometry, Haversine, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon, Relate,
};
use ngsild_core::expand::validate_geometry;
use ngsild_core::model::AttributeKind;
use ngsild_core::Entity;
use serde_json::{json, Value};

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum GeoRel {
    Near { max_distance: Option<f64>, min_distance: Option<f64> },
    Within,
    Contains,
    Intersects,
    Overlaps,
    Equals,
    Disjoint,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    pub rel: GeoRel,
    pub reference: Geometry<f64>,
    /// Expanded name of the GeoProperty tested.
    pub geoproperty: String,
}

fn error(position: usize, message: impl Into<String>) -> ParseError {
    ParseError { position, message: message.into() }
}

impl GeoQuery {
    /// Parses the `georel`, `geometry` and `coordinates` parameters; positions in errors are
    /// offsets into `georel` (or 0 for the geometry).
    pub fn parse(georel: &str, geometry: &str, coordinates: &str, geoproperty: &str) -> Result<GeoQuery, ParseError> {
        let rel = parse_georel(georel)?;
        let coordinates: Value = serde_json::from_str(coordinates.trim())
            .map_err(|e| error(0, format!("coordinates are not a JSON array: {e}")))?;
        let value = json!({"type": geometry, "coordinates": coordinates});
        validate_geometry(&value).map_err(|why| error(0, format!("invalid reference geometry: {why}")))?;
        let reference = to_geometry(&value).ok_or_else(|| error(0, format!("unsupported geometry {geometry}")))?;
        if matches!(rel, GeoRel::Near { .. }) && !matches!(reference, Geometry::Point(_)) {
            return Err(error(0, "near needs a Point as reference geometry"));
        }
        Ok(GeoQuery { rel, reference, geoproperty: geoproperty.to_owned() })
    }

    pub fn matches(&self, entity: &Entity) -> bool {
        entity
            .attrs
            .get(&self.geoproperty)
            .into_iter()
            .flatten()
            .filter(|a| a.kind == AttributeKind::GeoProperty)
            .filter_map(|a| to_geometry(&a.value))
            .any(|g| self.holds(&g))
    }

    /// Whether a GeoProperty at this point satisfies the query (what a spatial index that kept
    /// the point's exact position can decide without the entity).
    pub fn matches_point(&self, lon: f64, lat: f64) -> bool {
        self.holds(&Geometry::Point(Point::new(lon, lat)))
    }

    fn holds(&self, target: &Geometry<f64>) -> bool {
        match &self.rel {
            GeoRel::Near { max_distance, min_distance } => {
                let Geometry::Point(reference) = &self.reference else { return false };
                let d = distance_m(*reference, target);
                max_distance.is_none_or(|max| d <= max) && min_distance.is_none_or(|min| d >= min)
            }
            GeoRel::Within => target.relate(&self.reference).is_within(),
            GeoRel::Contains => target.relate(&self.reference).is_contains(),
            GeoRel::Intersects => target.relate(&self.reference).is_intersects(),
            GeoRel::Overlaps => target.relate(&self.reference).is_overlaps(),
            // Identical coordinates are equal even where the outline is not a valid simple
            // polygon, which DE-9IM does not promise to handle; otherwise equal as point sets.
            GeoRel::Equals => target == &self.reference || target.relate(&self.reference).is_equal_topo(),
            GeoRel::Disjoint => target.relate(&self.reference).is_disjoint(),
        }
    }
}

fn parse_georel(georel: &str) -> Result<GeoRel, ParseError> {
    let mut parts = georel.split(';');
    // Offsets count the parts as written (untrimmed), so they stay character boundaries.
    let first = parts.next().unwrap_or("");
    let name = first.trim();
    let rel = match name {
        "near" => {
            let (mut max_distance, mut min_distance) = (None, None);
            let mut offset = first.len() + 1;
            for part in parts {
                let (key, value) =
                    part.split_once("==").ok_or_else(|| error(offset, "expected maxDistance==N or minDistance==N"))?;
                let metres: f64 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| error(offset + key.len() + 2, "expected a distance in metres"))?;
                match key.trim() {
                    "maxDistance" => max_distance = Some(metres),
                    "minDistance" => min_distance = Some(metres),
                    _ => return Err(error(offset, "expected maxDistance or minDistance")),
                }
                offset += part.len() + 1;
            }
            if max_distance.is_none() && min_distance.is_none() {
                return Err(error(georel.len(), "near needs maxDistance or minDistance"));
            }
            return Ok(GeoRel::Near { max_distance, min_distance });
        }
        "within" => GeoRel::Within,
        "contains" => GeoRel::Contains,
        "intersects" => GeoRel::Intersects,
        "overlaps" => GeoRel::Overlaps,
        "equals" => GeoRel::Equals,
        "disjoint" => GeoRel::Disjoint,
        other => return Err(error(0, format!("unknown georel {other:?}"))),
    };
    if parts.next().is_some() {
        return Err(error(first.len(), format!("{name} takes no modifiers")));
    }
    Ok(rel)
}

/// Great-circle distance in metres from a point to the closest point of a geometry (zero inside).
fn distance_m(reference: Point<f64>, target: &Geometry<f64>) -> f64 {
    if let Geometry::Point(p) = target {
        return Haversine.distance(reference, *p);
    }
    if target.relate(&reference).is_intersects() {
        return 0.0;
    }
    match target.closest_point(&reference) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(p) => Haversine.distance(reference, p),
        Closest::Indeterminate => f64::INFINITY,
    }
}

fn coord(v: &Value) -> Option<Coord<f64>> {
    let items = v.as_array()?;
    Some(Coord { x: items.first()?.as_f64()?, y: items.get(1)?.as_f64()? })
}

fn line(v: &Value) -> Option<LineString<f64>> {
    v.as_array()?.iter().map(coord).collect::<Option<Vec<_>>>().map(LineString::new)
}

fn polygon(v: &Value) -> Option<Polygon<f64>> {
    let mut rings = v.as_array()?.iter().map(line);
    let exterior = rings.next()??;
    let interiors = rings.collect::<Option<Vec<_>>>()?;
    Some(Polygon::new(exterior, interiors))
}

/// A longitude/latitude box: `(min_lon, max_lon, min_lat, max_lat)`.
pub type BoundingBox = (f64, f64, f64, f64);

/// The bounding box of a GeoJSON geometry.
pub fn bounding_box(value: &Value) -> Option<BoundingBox> {
    let rect = geo::BoundingRect::bounding_rect(&to_geometry(value)?)?;
    Some((rect.min().x, rect.max().x, rect.min().y, rect.max().y))
}

/// Metres in one degree of latitude (and of longitude at the equator), on the mean sphere.
const METRES_PER_DEGREE: f64 = 111_195.0;

impl GeoQuery {
    /// A box that every matching geometry intersects, for a spatial index; `None` when the
    /// relation can match anywhere (`disjoint`, `near` with only a minimum distance).
    pub fn search_box(&self) -> Option<BoundingBox> {
        match &self.rel {
            GeoRel::Disjoint | GeoRel::Near { max_distance: None, .. } => None,
            GeoRel::Near { max_distance: Some(d), .. } => {
                let Geometry::Point(p) = &self.reference else { return None };
                // A little slack so rounding never drops a point right on the circle.
                let dlat = d / METRES_PER_DEGREE * 1.01 + 1e-9;
                let cos = p.y().to_radians().cos();
                let dlon = if cos < 1e-6 { 180.0 } else { (dlat / cos).min(180.0) };
                Some((p.x() - dlon, p.x() + dlon, (p.y() - dlat).max(-90.0), (p.y() + dlat).min(90.0)))
            }
            _ => {
                let rect = geo::BoundingRect::bounding_rect(&self.reference)?;
                Some((rect.min().x, rect.max().x, rect.min().y, rect.max().y))
            }
        }
    }
}

/// A GeoJSON geometry as a `geo` geometry (positions are longitude, latitude).
pub fn to_geometry(value: &Value) -> Option<Geometry<f64>> {
    let coordinates = value.get("coordinates")?;
    let items = || coordinates.as_array();
    Some(match value.get("type")?.as_str()? {
        "Point" => Geometry::Point(Point(coord(coordinates)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint::new(
            items()?.iter().map(|c| coord(c).map(Point)).collect::<Option<Vec<_>>>()?,
        )),
        "LineString" => Geometry::LineString(line(coordinates)?),
        "MultiLineString" => {
            Geometry::MultiLineString(MultiLineString::new(items()?.iter().map(line).collect::<Option<Vec<_>>>()?))
        }
        "Polygon" => Geometry::Polygon(polygon(coordinates)?),
        "MultiPolygon" => {
            Geometry::MultiPolygon(MultiPolygon::new(items()?.iter().map(polygon).collect::<Option<Vec<_>>>()?))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::expand::expand_entity;
    use ngsild_jsonld::core_context;

    const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

    fn at(geometry: Value) -> Entity {
        let body = json!({"id": "urn:x:1", "type": "T", "location": {"type": "GeoProperty", "value": geometry}});
        expand_entity(body.as_object().unwrap(), &core_context()).unwrap().0
    }

    fn query(georel: &str, geometry: &str, coordinates: &str) -> GeoQuery {
        GeoQuery::parse(georel, geometry, coordinates, LOCATION).unwrap()
    }

    // A square of about 11 km around (0.05, 0.05), with a hole in its middle.
    const SQUARE_WITH_HOLE: &str =
        "[[[0,0],[0.1,0],[0.1,0.1],[0,0.1],[0,0]],[[0.04,0.04],[0.06,0.04],[0.06,0.06],[0.04,0.06],[0.04,0.04]]]";

    #[test]
    fn near_in_metres() {
        // 0.01 degree of latitude is about 1112 m.
        let e = at(json!({"type": "Point", "coordinates": [0.0, 0.01]}));
        assert!(query("near;maxDistance==1200", "Point", "[0,0]").matches(&e));
        assert!(!query("near;maxDistance==1000", "Point", "[0,0]").matches(&e));
        assert!(query("near;minDistance==1000", "Point", "[0,0]").matches(&e));
        assert!(!query("near;minDistance==1200", "Point", "[0,0]").matches(&e));
        let area = at(
            json!({"type": "Polygon", "coordinates": [[[0.0, 0.02], [0.01, 0.02], [0.01, 0.03], [0.0, 0.03], [0.0, 0.02]]]}),
        );
        assert!(query("near;maxDistance==2300", "Point", "[0,0]").matches(&area), "distance to the closest edge");
        assert!(!query("near;maxDistance==2000", "Point", "[0,0]").matches(&area));
    }

    #[test]
    fn polygon_with_hole_and_boundaries() {
        let inside = at(json!({"type": "Point", "coordinates": [0.02, 0.02]}));
        let in_hole = at(json!({"type": "Point", "coordinates": [0.05, 0.05]}));
        let on_edge = at(json!({"type": "Point", "coordinates": [0.0, 0.05]}));
        let outside = at(json!({"type": "Point", "coordinates": [1.0, 1.0]}));
        let within = query("within", "Polygon", SQUARE_WITH_HOLE);
        assert!(within.matches(&inside));
        assert!(!within.matches(&in_hole));
        assert!(!within.matches(&on_edge), "a point on the boundary is not within");
        assert!(query("intersects", "Polygon", SQUARE_WITH_HOLE).matches(&on_edge));
        assert!(query("disjoint", "Polygon", SQUARE_WITH_HOLE).matches(&outside));
        assert!(query("disjoint", "Polygon", SQUARE_WITH_HOLE).matches(&in_hole));
        assert!(!query("disjoint", "Polygon", SQUARE_WITH_HOLE).matches(&inside));
    }

    #[test]
    fn contains_overlaps_equals() {
        let area = at(json!({"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]}));
        assert!(query("contains", "Point", "[1,1]").matches(&area));
        assert!(!query("contains", "Point", "[3,3]").matches(&area));
        assert!(query("overlaps", "Polygon", "[[[1,1],[3,1],[3,3],[1,3],[1,1]]]").matches(&area));
        assert!(!query("overlaps", "Polygon", "[[[5,5],[6,5],[6,6],[5,6],[5,5]]]").matches(&area));
        assert!(query("equals", "Polygon", "[[[0,0],[2,0],[2,2],[0,2],[0,0]]]").matches(&area));
        // A real district outline (from the ETSI suite's data): equal to itself, coordinate for coordinate.
        let ring = "[[[13.2865906,52.5648645],[13.2879639,52.5648645],[13.2797241,52.4988679],\
                    [13.477478,52.4712703],[13.5049438,52.5373084],[13.2865906,52.5648645]]]";
        let coordinates: Value = serde_json::from_str(ring).unwrap();
        let district = at(json!({"type": "Polygon", "coordinates": coordinates}));
        assert!(query("equals", "Polygon", ring).matches(&district));
        let line = at(json!({"type": "LineString", "coordinates": [[-1, 1], [3, 1]]}));
        assert!(query("intersects", "Polygon", "[[[0,0],[2,0],[2,2],[0,2],[0,0]]]").matches(&line));
    }

    #[test]
    fn search_boxes_cover_every_match() {
        let near = query("near;maxDistance==1200", "Point", "[0,0]");
        let (min_lon, max_lon, min_lat, max_lat) = near.search_box().unwrap();
        assert!(min_lat < -0.0107 && max_lat > 0.0107 && min_lon < -0.0107 && max_lon > 0.0107);
        assert!(max_lat < 0.012, "not much wider than 1200 m");
        assert_eq!(query("within", "Polygon", SQUARE_WITH_HOLE).search_box(), Some((0.0, 0.1, 0.0, 0.1)));
        assert_eq!(query("disjoint", "Polygon", SQUARE_WITH_HOLE).search_box(), None);
        assert_eq!(query("near;minDistance==5", "Point", "[0,0]").search_box(), None);
        assert_eq!(
            bounding_box(&json!({"type": "LineString", "coordinates": [[1, 2], [3, -4]]})),
            Some((1.0, 3.0, -4.0, 2.0))
        );
    }

    #[test]
    fn invalid_queries_are_refused() {
        let err = |r: &str, g: &str, c: &str| GeoQuery::parse(r, g, c, LOCATION).unwrap_err();
        assert!(err("near", "Point", "[0,0]").message.contains("maxDistance"));
        assert_eq!(err("near;maxDistance==x", "Point", "[0,0]").position, 18);
        assert!(err("close", "Point", "[0,0]").message.contains("unknown georel"));
        assert!(err("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]").message.contains("closed"));
        assert!(err("within", "Point", "[200,0]").message.contains("invalid"));
        assert!(err("within", "Point", "not json").message.contains("JSON"));
        assert!(err("near;maxDistance==5", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]").message.contains("Point"));
        // Found by fuzzing: positions after multi-byte white space were counted on the trimmed name.
        assert_eq!(err("near\u{3000};maxDi==2000", "Point", "[0,0]").position, "near\u{3000};".len());
        assert_eq!(err("within\u{a0};x", "Point", "[0,0]").position, "within\u{a0}".len());
    }
}
