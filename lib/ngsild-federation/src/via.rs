//! The `Via` header (RFC 9110 clause 7.6.3, GS CIM 009 clause 6.3.18): every hub a distributed
//! request passed through appends itself, and no hub forwards to one already listed. That is
//! what keeps two hubs that register each other from asking each other forever.

/// The `received-by` members of `Via` header values: `1.1 seoul.example:1026, 1.1 busan:1026`
/// gives `["seoul.example:1026", "busan:1026"]`, lowercased.
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

/// Whether a request that already passed `hops` may go to `endpoint`: never to a hub it crossed.
pub fn may_forward(endpoint: &str, hops: &[String]) -> bool {
    authority(endpoint).is_none_or(|a| !hops.contains(&a))
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
        assert_eq!(hops(["1.1 Seoul:1026, 1.1 busan:2000", "HTTP/1.1 x:1"]), vec!["seoul:1026", "busan:2000", "x:1"]);
        assert!(hops(["garbage"]).is_empty());
    }

    #[test]
    fn a_hub_already_crossed_is_never_asked_again() {
        let crossed = hops(["1.1 127.0.0.1:4001"]);
        assert!(!may_forward("http://127.0.0.1:4001", &crossed));
        assert!(!may_forward("http://127.0.0.1:4001/ngsi-ld/v1", &crossed));
        assert!(may_forward("http://127.0.0.1:4002", &crossed));
        assert_eq!(authority("http://Busan.example"), Some("busan.example:80".into()));
        assert_eq!(onward(&crossed, "127.0.0.1:4002"), "1.1 127.0.0.1:4001, 1.1 127.0.0.1:4002");
    }
}
