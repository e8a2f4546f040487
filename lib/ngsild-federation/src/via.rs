//! The `Via` header (RFC 9110 clause 7.6.3, GS CIM 009 clause 6.3.18) and the names in it: every
//! hub a distributed request passed through appends its `contextSourceAlias` (clause 5.2.40), and
//! a registration whose source is already listed does not match the request (clause 5.12, last
//! paragraph; clause 4.3.6.4). That is what keeps hubs that register each other from asking each
//! other forever, and from asking each other twice.
//!
//! Clause 6.3.17 adds one error: a write whose data only a source already crossed holds (a single
//! exclusive or redirect registration pointing back the way the request came) cannot be done, and
//! is answered 508 LoopDetected ([`crate::provision::split_unless_looping`]).

use ngsild_core::validate;

/// The `received-by` members of `Via` header values: `1.1 seoul, 1.1 busan:1026 (cityhub)`
/// gives `["seoul", "busan:1026"]`, lowercased.
pub fn hops<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|hop| {
            let mut parts = hop.split_whitespace();
            let _protocol = parts.next()?;
            parts.next().map(str::to_ascii_lowercase)
        })
        .collect()
}

/// The `host:port` of an endpoint URL, lowercased, with the scheme's default port made explicit.
pub fn authority(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?.to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !authority.ends_with(']');
    Some(if has_port {
        authority
    } else {
        let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
        format!("{authority}:{port}")
    })
}

/// Checks a `contextSourceAlias` (Tables 5.2.9-1 and 5.2.40-1): a non-empty RFC 7230 token, so
/// that it can stand as the pseudonym of a `Via` hop. The error says what is wrong, to follow
/// "contextSourceAlias \"x\" …".
pub fn check_alias(alias: &str) -> Result<(), String> {
    if alias.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = alias.chars().find(|c| !validate::is_tchar(*c)) {
        return Err(format!(
            "is not an RFC 7230 token: {c:?} is not allowed (use letters, digits and !#$%&'*+-.^_`|~; \
             a host:port is not an alias)"
        ));
    }
    Ok(())
}

/// A default alias for a hub on `host` listening on `port`: the host name with every character
/// that cannot be in a token made `-`, then `-<port>` so that two hubs on one machine differ.
/// Never contains `:`.
pub fn default_alias(host: &str, port: u16) -> String {
    let name: String =
        host.trim().trim_end_matches('.').chars().map(|c| if validate::is_tchar(c) { c } else { '-' }).collect();
    let name = name.trim_matches('-').to_ascii_lowercase();
    let name = if name.is_empty() { "cityhub".to_owned() } else { name };
    format!("{name}-{port}")
}

/// Whether a request that already passed `hops` crossed the source of a registration: its
/// `contextSourceAlias` is listed or, for a registration without one, its endpoint's
/// `host:port` (how hubs named themselves before aliases).
pub fn crossed(alias: Option<&str>, endpoint: &str, hops: &[String]) -> bool {
    match alias {
        Some(alias) => hops.iter().any(|h| h.eq_ignore_ascii_case(alias)),
        None => authority(endpoint).is_some_and(|a| hops.contains(&a)),
    }
}

/// Whether a request that already passed `hops` may go to a registration's source: never to one
/// it crossed (clause 5.12).
pub fn may_forward(alias: Option<&str>, endpoint: &str, hops: &[String]) -> bool {
    !crossed(alias, endpoint, hops)
}

/// The `Via` value to send onwards: the hops so far, then this hub.
pub fn onward(hops: &[String], me: &str) -> String {
    hops.iter()
        .map(String::as_str)
        .chain(std::iter::once(me))
        .map(|h| format!("1.1 {h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_read_from_every_value_and_list_item() {
        assert_eq!(hops(["1.1 Seoul, 1.1 busan:2000 (cityhub)", "HTTP/1.1 x:1"]), vec!["seoul", "busan:2000", "x:1"]);
        assert!(hops(["garbage"]).is_empty());
    }

    #[test]
    fn a_registration_whose_alias_was_crossed_does_not_match() {
        let crossed_hops = hops(["1.1 busan, 1.1 seoul"]);
        // The alias decides, whatever the endpoint.
        assert!(!may_forward(Some("busan"), "http://10.0.0.7:1026", &crossed_hops));
        assert!(!may_forward(Some("Busan"), "http://10.0.0.7:1026", &crossed_hops), "aliases compare ignoring case");
        assert!(may_forward(Some("daegu"), "http://busan:80", &crossed_hops), "an alias is not an endpoint");
        // Without an alias, the endpoint's host:port.
        let old_style = hops(["1.1 127.0.0.1:4001"]);
        assert!(!may_forward(None, "http://127.0.0.1:4001", &old_style));
        assert!(!may_forward(None, "http://127.0.0.1:4001/ngsi-ld/v1", &old_style));
        assert!(may_forward(None, "http://127.0.0.1:4002", &old_style));
        assert!(may_forward(None, "http://busan:1026", &crossed_hops));
        assert_eq!(authority("http://Busan.example"), Some("busan.example:80".into()));
        assert_eq!(onward(&crossed_hops, "daegu"), "1.1 busan, 1.1 seoul, 1.1 daegu");
        assert_eq!(onward(&[], "daegu"), "1.1 daegu");
    }

    #[test]
    fn an_alias_is_a_token() {
        for good in ["seoul", "busan-1026", "a.b_c~d", "X!#$%&'*+^`|"] {
            assert_eq!(check_alias(good), Ok(()), "{good}");
        }
        assert_eq!(check_alias(""), Err("must not be empty".to_owned()));
        for bad in ["127.0.0.1:1026", "seoul city", "a,b", "a/b", "(x)", "séoul", "a\"b"] {
            let why = check_alias(bad).unwrap_err();
            assert!(why.contains("RFC 7230 token") && why.contains("is not allowed"), "{bad}: {why}");
        }
        assert!(check_alias("127.0.0.1:1026").unwrap_err().contains("':'"));
    }

    #[test]
    fn the_default_alias_comes_from_the_host_name_and_port() {
        assert_eq!(default_alias("Seoul-Hub.example.", 1026), "seoul-hub.example-1026");
        assert_eq!(default_alias("odd name:x", 80), "odd-name-x-80");
        assert_eq!(default_alias("", 1026), "cityhub-1026");
        assert_eq!(default_alias(":::", 9), "cityhub-9");
        for host in ["h", "a b", "[::1]", "x:y", "ünï"] {
            let alias = default_alias(host, 1026);
            assert_eq!(check_alias(&alias), Ok(()), "{host} -> {alias}");
        }
    }
}
