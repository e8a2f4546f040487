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
