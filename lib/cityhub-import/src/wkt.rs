//! Well-Known Text geometries (`POINT (127 37.5)`, `LINESTRING`, `POLYGON`, their `MULTI`
//! forms; an optional `SRID=4326;` prefix) read into GeoJSON geometries.

use serde_json::{json, Value};

/// A WKT geometry as GeoJSON, or what is wrong with it.
pub fn parse(text: &str) -> Result<Value, String> {
    let text = text.trim();
    let text = match text.split_once(';') {
        Some((srid, rest)) if srid.trim().to_ascii_uppercase().starts_with("SRID=") => rest.trim(),
        _ => text,
    };
    let open = text.find('(').ok_or_else(|| format!("{text:?} is not WKT: no coordinates in parentheses"))?;
    let kind = text[..open].trim().to_ascii_uppercase();
    let (kind, depth) = match kind.as_str() {
        "POINT" => ("Point", 1),
        "LINESTRING" => ("LineString", 1),
        "POLYGON" => ("Polygon", 2),
        "MULTIPOINT" => ("MultiPoint", 1),
        "MULTILINESTRING" => ("MultiLineString", 2),
        "MULTIPOLYGON" => ("MultiPolygon", 3),
        other => {
            return Err(format!(
                "{other:?} is not a WKT geometry type this hub reads (POINT, LINESTRING, POLYGON, MULTI...)"
            ))
        }
    };
    let mut rest = &text[open..];
    let mut coordinates = list(&mut rest, depth)?;
    if !rest.trim().is_empty() {
        return Err(format!("WKT {text:?}: unexpected {:?} after the coordinates", rest.trim()));
    }
    if kind == "Point" {
        coordinates = match coordinates {
            Value::Array(mut points) if points.len() == 1 => points.remove(0),
            _ => return Err(format!("WKT {text:?}: a POINT has exactly one position")),
        };
    }
    Ok(json!({"type": kind, "coordinates": coordinates}))
}

/// `( ... )` holding positions (`depth` 1) or lists of lists (`depth` > 1); MULTIPOINT's
/// positions may also be parenthesised one by one.
fn list(rest: &mut &str, depth: usize) -> Result<Value, String> {
    *rest = rest.trim_start();
    let Some(after) = rest.strip_prefix('(') else { return Err(format!("expected '(' at {:?}", head(rest))) };
    *rest = after;
    let mut items = Vec::new();
    loop {
        *rest = rest.trim_start();
        let item = if depth > 1 || rest.starts_with('(') {
            if depth == 1 {
                // MULTIPOINT ((1 2), (3 4))
                match list(rest, 1)? {
                    Value::Array(mut one) if one.len() == 1 => one.remove(0),
                    _ => return Err("a parenthesised point holds one position".into()),
                }
            } else {
                list(rest, depth - 1)?
            }
        } else {
            position(rest)?
        };
        items.push(item);
        *rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            *rest = after;
        } else if let Some(after) = rest.strip_prefix(')') {
            *rest = after;
            return Ok(Value::Array(items));
        } else {
            return Err(format!("expected ',' or ')' at {:?}", head(rest)));
        }
    }
}

fn position(rest: &mut &str) -> Result<Value, String> {
    let end = rest.find([',', ')']).unwrap_or(rest.len());
    let numbers: Result<Vec<f64>, _> = rest[..end].split_whitespace().map(str::parse::<f64>).collect();
    let numbers = numbers.map_err(|_| format!("{:?} is not a position of numbers", rest[..end].trim()))?;
    if !(2..=3).contains(&numbers.len()) || numbers.iter().any(|n| !n.is_finite()) {
        return Err(format!("{:?} is not a position (two or three numbers)", rest[..end].trim()));
    }
    *rest = &rest[end..];
    Ok(json!(numbers))
}

fn head(s: &str) -> String {
    s.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkt_reads_as_geojson() {
        assert_eq!(parse("POINT (127 37.5)").unwrap(), json!({"type": "Point", "coordinates": [127.0, 37.5]}));
        assert_eq!(parse("SRID=4326;point(1 2)").unwrap(), json!({"type": "Point", "coordinates": [1.0, 2.0]}));
        assert_eq!(
            parse("LINESTRING (0 0, 1 1)").unwrap(),
            json!({"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]})
        );
        assert_eq!(
            parse("POLYGON ((0 0, 1 0, 1 1, 0 0))").unwrap(),
            json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]})
        );
        assert_eq!(
            parse("MULTIPOINT ((1 2), (3 4))").unwrap(),
            json!({"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.0, 4.0]]})
        );
        assert_eq!(parse("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))").unwrap()["coordinates"][0][0][2], json!([1.0, 1.0]));
    }

    #[test]
    fn bad_wkt_says_where() {
        assert_eq!(parse("POINT 1 2").unwrap_err(), "\"POINT 1 2\" is not WKT: no coordinates in parentheses");
        assert_eq!(parse("POINT (1 x)").unwrap_err(), "\"1 x\" is not a position of numbers");
        assert_eq!(
            parse("POINT (1 2, 3 4)").unwrap_err(),
            "WKT \"POINT (1 2, 3 4)\": a POINT has exactly one position"
        );
        assert!(parse("CIRCLE (1 2)").unwrap_err().contains("not a WKT geometry type"));
        assert_eq!(
            parse("POINT (1 2) x").unwrap_err(),
            "WKT \"POINT (1 2) x\": unexpected \"x\" after the coordinates"
        );
    }

    proptest::proptest! {
        #[test]
        fn wkt_never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }
    }
}
