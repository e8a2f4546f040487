//! RFC 8785 (JSON Canonicalization Scheme): the one byte string of a JSON value.
//!
//! Objects' members sorted by their names as UTF-16 code units, no whitespace, strings with the
//! shortest escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`,
//! everything else as UTF-8), numbers as ECMAScript's `Number.prototype.toString` writes the
//! IEEE-754 double they denote (so integers past 2^53 are rounded, as RFC 8785 §3.2.2.3 says).

use serde_json::Value;

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_value(value, &mut out);
    out.into_bytes()
}

/// The canonical form of `value` as a string.
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push('{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// The order of two names as UTF-16 code units. Below U+E000 it is the order of code points,
/// which is UTF-8's byte order: only names with a character from U+E000 on (a UTF-8 byte from
/// 0xEE on) need their UTF-16 units compared.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let high = |s: &str| s.bytes().any(|b| b >= 0xEE);
    if high(a) || high(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// Appends `s` as a canonical JSON string to `out`.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A double as ECMAScript's `Number.prototype.toString` (ECMA-262 §7.1.12.1) writes it: the
/// shortest digits that read back as the same double (Rust's float formatting gives those),
/// placed by the exponent rules of the standard. JSON has no NaN or infinity; they write `null`.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "null".to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    // An integer below 2^53: its shortest digits are all of its digits, and no tie is possible
    // (the common case of sensor data; the general path below may cost an exact expansion).
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        return (v as i64).to_string();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    // `{:e}` is the shortest round-trip form: d[.ddd]e[-]x.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp10 = exp.parse::<i32>().unwrap_or(0);
    if let Some(even) = even_of_tie(v.abs(), &digits, exp10) {
        digits = even;
    }
    let k = digits.len() as i32;
    // The value is 0.d1d2...dk × 10^n.
    let n = exp10 + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{e_sign}{}", e.abs())
        } else {
            format!("{}.{}e{e_sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    format!("{sign}{body}")
}

/// When the double lies exactly halfway between two shortest digit strings, ECMA-262 takes the
/// one whose last digit is even; Rust's formatting may take the other (0x43143ff3c1cb0959 is
/// 1424953923781206.25: ECMAScript writes ...206.2, Rust ...206.3). The exact decimal expansion
/// (a double has at most 767 significant digits) tells a tie.
fn even_of_tie(v: f64, digits: &str, exp10: i32) -> Option<String> {
    // A tie's exact expansion is the shortest digits (at most 17) and a 5: at most 18 digits,
    // which 18 significant digits show exactly. Nearly every value fails this cheap test, and
    // is spared the 800-digit expansion below.
    let short = format!("{v:.17e}");
    let (mantissa, exp) = short.split_once('e')?;
    if exp.parse::<i32>().ok()? != exp10 {
        return None;
    }
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let rest = all.get(digits.len()..)?;
    if !(rest.starts_with('5') && rest[1..].bytes().all(|b| b == b'0')) {
        return None;
    }
    let exact = format!("{v:.800e}");
    let (mantissa, exp) = exact.split_once('e')?;
    if exp.parse::<i32>().ok()? != exp10 {
        return None;
    }
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len();
    let rest = all.get(k..)?;
    if !(rest.starts_with('5') && rest[1..].bytes().all(|b| b == b'0')) {
        return None;
    }
    let lower = &all[..k];
    let last = lower.bytes().last()?;
    let even = if (last - b'0').is_multiple_of(2) {
        lower.to_owned()
    } else {
        if last == b'9' {
            return None;
        }
        format!("{}{}", &lower[..k - 1], (last + 1) as char)
    };
    let back: f64 = format!("{}.{}e{exp10}", &even[..1], &even[1..]).parse().ok()?;
    (back == v).then_some(even)
}

#[cfg(test)]
mod fast_paths {
    use super::number;

    /// The integer and no-tie shortcuts write what ECMAScript writes.
    #[test]
    fn shortcuts_write_what_ecmascript_writes() {
        for v in [1.0, -7.0, 1e15, 9_007_199_254_740_991.0, -9_007_199_254_740_991.0, 123456.0] {
            assert_eq!(number(v), format!("{}", v as i64), "{v}");
        }
        // Past 2^53 the shortest digits, not the exact integer: 2^60 is 1152921504606847000.
        assert_eq!(number(1_152_921_504_606_846_976.0), "1152921504606847000");
        assert_eq!(number(9_007_199_254_740_994.0), "9007199254740994");
        assert_eq!(number(5e-324), "5e-324");
        assert_eq!(number(23.5), "23.5");
        assert_eq!(number(-0.1 - 0.2), "-0.30000000000000004");
    }
}
