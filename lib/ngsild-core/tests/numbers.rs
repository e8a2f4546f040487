//! Numbers survive the JSON the hub reads and writes exactly (serde_json's `float_roundtrip`):
//! what a client wrote is the double it reads back, so a `q` with the value it sent finds it.

use serde_json::Value;

/// Parses `text` as the hub parses a body and writes it back as the hub writes one.
fn round_trip(text: &str) -> (Value, String) {
    let value: Value = serde_json::from_str(text).expect("a JSON number");
    let written = serde_json::to_string(&value).expect("written");
    (value, written)
}

#[test]
fn awkward_values_come_back_as_the_same_double() {
    for text in [
        "1671165464.3779979",
        "43.462879859445884",
        "5e-324",
        "1.7976931348623157e308",
        "0.30000000000000004",
        "-0.0",
        "1e21",
        "2.2250738585072014e-308",
        "0.1",
        "123456789.12345679",
    ] {
        let (value, written) = round_trip(text);
        let exact: f64 = text.parse().expect("Rust's parser is exact");
        assert_eq!(value.as_f64().map(f64::to_bits), Some(exact.to_bits()), "{text} read as {value}");
        let again: f64 = written.parse().expect("a number");
        assert_eq!(again.to_bits(), exact.to_bits(), "{text} written as {written}");
        if !text.contains('e') {
            assert_eq!(written, text, "decimal notation is kept");
        }
    }
    // Integers are kept as integers, beyond 2^53 as well.
    for text in ["9007199254740993", "18446744073709551615", "-9223372036854775808"] {
        assert_eq!(round_trip(text).1, text);
    }
}

/// A property test over 200 000 pseudo-random bit patterns (every finite double is a candidate):
/// the shortest representation written parses back to the same bits.
#[test]
fn every_double_survives_write_and_read() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut checked = 0;
    for _ in 0..200_000 {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let x = f64::from_bits(bits);
        if !x.is_finite() {
            continue;
        }
        let written = serde_json::to_string(&x).expect("finite");
        let back: Value = serde_json::from_str(&written).expect("JSON");
        let back = back.as_f64().expect("a number");
        assert_eq!(back.to_bits(), x.to_bits(), "{x:e} written as {written} read as {back:e}");
        checked += 1;
    }
    assert!(checked > 190_000);
}

#[test]
fn stored_times_and_instance_ids_read_back_the_same_on_every_backend() {
    use ngsild_core::history::instance_id;
    use ngsild_core::time::{datetime_of_micros, format_time, max_datetime, micros, micros_of};
    let t = "2026-12-01T13:45:00.123456Z";
    let m = micros(t).expect("a DateTime");
    assert_eq!(format_time(datetime_of_micros(m)), t);
    assert_eq!(micros("yesterday"), None);
    assert_eq!(micros_of(None), None);
    assert_eq!(micros("10000-01-01T00:00:00Z"), None, "years past 9999 are no DateTimes");
    // A period end past the last DateTime reads as the last DateTime, never the epoch.
    assert_eq!(datetime_of_micros(i64::MAX), max_datetime());
    assert_eq!(instance_id(42, None), "urn:ngsi-ld:Instance:42");
    assert_eq!(instance_id(42, Some("urn:x:kept".into())), "urn:x:kept");
}

#[test]
fn a_history_row_keeps_the_same_columns_on_every_backend() {
    use ngsild_core::history::InstanceColumns;
    use ngsild_core::model::{Attribute, AttributeKind};
    use ngsild_core::time::micros;
    let mut on = Attribute::new(AttributeKind::Property, serde_json::json!(true));
    on.observed_at = Some("2026-12-01T10:00:00Z".into());
    on.created_at = Some("2026-12-01T10:00:01Z".into());
    on.dataset_id = Some("urn:ds:1".into());
    let cols = InstanceColumns::of(&on, Some("2026-12-01T11:00:00Z"), 7);
    assert_eq!(cols.num, Some(1.0), "a boolean counts as 1 in sums and averages");
    assert_eq!(cols.val, "true");
    assert_eq!(cols.dataset_id.as_deref(), Some("urn:ds:1"));
    assert_eq!(cols.observed, micros("2026-12-01T10:00:00Z"));
    assert_eq!(Some(cols.created), micros("2026-12-01T10:00:01Z"));
    assert_eq!(cols.modified, 7, "a missing modifiedAt reads as now");
    assert_eq!(cols.deleted, micros("2026-12-01T11:00:00Z"));
    let text = InstanceColumns::of(&Attribute::new(AttributeKind::Property, serde_json::json!("a")), None, 7);
    assert_eq!((text.num, text.val.as_str(), text.deleted), (None, "\"a\"", None));
}
