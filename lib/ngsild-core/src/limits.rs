//! Hard limits on the shape of what a client may send, so that no input can exhaust a thread's
//! stack or make one request unboundedly expensive. Each is named in the error a client gets when
//! it is exceeded (`detail` says the limit and where it was hit).
//!
//! Why these values: real queries nest a handful of levels (the ETSI suite never goes past 3);
//! 64 leaves plenty of room for generated expressions while a parser at that depth uses a few
//! tens of KB of stack even in a debug build, far below the 2 MB of a tokio worker thread.

use crate::params::Params;
use crate::{ErrorKind, NgsiLdError};

/// Nesting (parentheses in `q`, `scopeQ`, type expressions; braces in `pick`/`omit`; nested
/// `GeometryCollection`s) that any parser accepts.
pub const MAX_NESTING: usize = 64;

/// The largest `joinLevel` of Linked Entity retrieval (queries, retrieval, notifications). Each
/// level is one store query, and an inline join nests up to three JSON levels per hop
/// (`entityList: [ {...} ]`): at 8 the deepest answer the limits allow is 110 levels, under the
/// 128 serde_json reads back (a notification's message is stored and read again). The ETSI
/// suite asks for 2 at most.
pub const MAX_JOIN_LEVEL: u32 = 8;

/// Sub-attributes nested in sub-attributes: at most this many levels below an attribute.
pub const MAX_SUB_ATTRIBUTE_NESTING: usize = 16;

/// Arrays and objects nested in an attribute's value (a compound value, a JSON property, a
/// language map). Together with [`MAX_SUB_ATTRIBUTE_NESTING`] this keeps every stored document
/// (entity, journal row, history instance) well under the 128 levels serde_json reads back: a
/// body serde accepted could otherwise be stored and then never read again.
pub const MAX_VALUE_NESTING: usize = 64;

/// How deeply arrays and objects nest in `value` (a scalar is 0), without recursion.
pub fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(members) => Box::new(members.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// The list parameters bounded by `--max-list-items`, and the characters that separate their
/// items (a `type` expression and a projection also nest).
const LISTS: &[(&str, &[char])] = &[
    ("attrs", &[',']),
    ("id", &[',']),
    ("type", &[',', ';', '|', '(', ')']),
    ("pick", &[',', '|', '{', '}']),
    ("omit", &[',', '|', '{', '}']),
];

/// Refuses a request whose (query string or `Query` body, as `params`) `attrs`, `pick`, `omit`, `id` or `type` names more than `max` items.
pub fn check_lists(params: &Params, max: usize) -> Result<(), NgsiLdError> {
    for (name, value) in params.pairs() {
        let Some((_, separators)) = LISTS.iter().find(|(list, _)| list == name) else { continue };
        let items = value.split(*separators).filter(|item| !item.trim().is_empty()).count();
        if items > max {
            return Err(NgsiLdError::new(
                ErrorKind::TooComplexQuery,
                format!(
                    "{name} names {items} items; the hub accepts at most {max} in one {name} list \
                     (set by --max-list-items): split the request into several"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_counted_by_their_items() {
        let params = |pairs: &[(&str, &str)]| {
            Params::from_pairs(pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect())
        };
        assert!(check_lists(&params(&[("attrs", "a,b,c"), ("type", "(A|B);C")]), 3).is_ok());
        let e = check_lists(&params(&[("attrs", "a,b,c,d")]), 3).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooComplexQuery);
        assert_eq!(
            e.detail,
            "attrs names 4 items; the hub accepts at most 3 in one attrs list (set by --max-list-items): split the \
             request into several"
        );
        assert!(check_lists(&params(&[("type", "(A|B);(C|D)")]), 3).is_err());
        assert!(check_lists(&params(&[("pick", "a,b{c,d}")]), 3).is_err());
        assert!(check_lists(&params(&[("q", "a==1,b==2,c==3,d==4")]), 3).is_ok(), "q is no list");
    }
}
