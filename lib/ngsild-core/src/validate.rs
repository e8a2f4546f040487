//! Syntactic rules for identifiers and names.

use crate::error::{NgsiLdError, Result};

/// An entity id, datasetId or relationship object must be an absolute URI: a scheme, a colon and
/// no white space or characters that RFC 3986 forbids.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

pub fn check_uri(s: &str, what: &str) -> Result<()> {
    if is_uri(s) {
        Ok(())
    } else {
        Err(NgsiLdError::bad_request(format!("{what} is not a valid URI: {s:?}")))
    }
}

/// RFC 7230 `tchar`: a character of a token (header names, methods, `Via` pseudonyms, aliases).
pub fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A key-value pair the hub will send as an HTTP header (`receiverInfo`, `notifierInfo`,
/// `contextSourceInfo`): the key must be an RFC 9110 field name (a token: letters, digits and
/// ``!#$%&'*+-.^_`|~``), the value visible ASCII with inner spaces or tabs only. Anything else
/// (spaces or colons in a key, CR/LF, control or non-ASCII characters, leading or trailing white
/// space, which HTTP strips) could never be sent as written, so it is refused when it is given
/// rather than failing at every delivery.
pub fn check_header_field(key: &str, value: &str, what: &str) -> Result<()> {
    if key.is_empty() || !key.chars().all(is_tchar) {
        return Err(NgsiLdError::bad_request(format!(
            "{what} key {key:?} cannot be an HTTP header name: use letters, digits and !#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
        )));
    }
    let is_field_char = |c: char| c.is_ascii_graphic() || c == ' ' || c == '\t';
    if let Some(c) = value.chars().find(|c| !is_field_char(*c)) {
        return Err(NgsiLdError::bad_request(format!(
            "{what} key {key:?}: its value cannot be an HTTP header value: it holds {c:?}; use visible ASCII characters, spaces and tabs only (percent-encode others)"
        )));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(NgsiLdError::bad_request(format!(
            "{what} key {key:?}: its value starts or ends with white space, which HTTP would strip; remove it"
        )));
    }
    Ok(())
}

/// Attribute and type names (clause 4.6.2): no characters that would break the query language or
/// URLs. Expanded IRIs pass too.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('@')
        && !s.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '<' | '>'
                        | '"'
                        | '\''
                        | '='
                        | ';'
                        | '('
                        | ')'
                        | '{'
                        | '}'
                        | '['
                        | ']'
                        | '\\'
                        | '|'
                        | '^'
                        | '`'
                        | '&'
                        | '!'
                        | ','
                )
        })
}

pub fn check_name(s: &str, what: &str) -> Result<()> {
    if is_valid_name(s) {
        Ok(())
    } else {
        Err(NgsiLdError::bad_request(format!("invalid {what} name: {s:?}")))
    }
}

/// A scope is a path: `/` followed by `/`-separated non-empty segments.
pub fn is_valid_scope(s: &str) -> bool {
    s.starts_with('/')
        && (s == "/" || s[1..].split('/').all(|seg| !seg.is_empty() && is_valid_name(seg) && !seg.contains('#')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        assert!(check_header_field("X-Auth-Token", "Bearer abc", "receiverInfo").is_ok());
        assert!(check_header_field("MQTT-QoS", "1", "notifierInfo").is_ok());
        for (key, value) in [("X Auth", "v"), ("X:y", "v"), ("", "v"), ("X\r\nEvil", "v"), ("Ключ", "v")] {
            let e = check_header_field(key, value, "receiverInfo").unwrap_err();
            assert!(e.detail.contains("HTTP header name"), "{}", e.detail);
        }
        for value in ["a\r\nX-Evil: 1", "nul\0", "tab\u{7f}", "\u{a0}x", " lead", "trail "] {
            let e = check_header_field("X-K", value, "receiverInfo").unwrap_err();
            assert!(e.detail.contains("\"X-K\""), "{}", e.detail);
        }
    }

    #[test]
    fn uris() {
        assert!(is_uri("urn:ngsi-ld:Vehicle:A1"));
        assert!(is_uri("http://example.org/a"));
        assert!(!is_uri("Vehicle1"));
        assert!(!is_uri("urn:a b"));
        assert!(!is_uri("1urn:x"));
        assert!(!is_uri("urn:"));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("speed"));
        assert!(is_valid_name("https://example.org/speed"));
        assert!(is_valid_name("ex:speed"));
        assert!(!is_valid_name("sp eed"));
        assert!(!is_valid_name("speed(1)"));
        assert!(!is_valid_name(""));
    }

    #[test]
    fn scopes() {
        assert!(is_valid_scope("/Madrid/Gardens"));
        assert!(!is_valid_scope("Madrid"));
        assert!(!is_valid_scope("/Madrid//x"));
    }
}
