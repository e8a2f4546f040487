//! The page of a temporal answer (clauses 5.5.9 and 6.3.10): where the instances are cut, and the
//! `Content-Range` that tells the client where to go on from.
//!
//! [`crate::temporal::cut_instances`] cuts the hub's own instances to the instance limit;
//! [`page_cut`] adds the cut of a context source that answered 206 (past it the page would show
//! the hub's instances without the source's), [`earliest_cut`] keeps the cut that stops first
//! among several sources, [`content_range`] writes the header of a cut page and
//! [`content_range_end`] reads a source's header back.

use crate::temporal::{cut_instances, time_span, TemporalEntity, TimeProperty, TimeRel};
use crate::time::parse_datetime;

/// Cuts `entities` to one page: at most `limit` instances (each attribute at most `last_n`, the
/// newest, when asked), and none past `source_cut`, where a source stopped. Answers where the
/// page stops, if it was cut.
pub fn page_cut(
    entities: &mut [TemporalEntity],
    limit: usize,
    last_n: Option<usize>,
    property: TimeProperty,
    source_cut: Option<String>,
) -> Option<String> {
    if let Some(at) = source_cut.as_deref().and_then(parse_datetime) {
        let newest_first = last_n.is_some();
        for instances in entities.iter_mut().flat_map(|e| e.attrs.values_mut()) {
            instances.retain(|i| {
                let time = i.time(property).or(i.attribute.created_at.as_deref()).and_then(parse_datetime);
                time.is_none_or(|t| if newest_first { t >= at } else { t <= at })
            });
        }
    }
    cut_instances(entities, limit, last_n, property).or(source_cut)
}

/// Of two sources' cuts, the one that stops first: the earlier, or with `newest_first` (lastN)
/// the later.
pub fn earliest_cut(a: Option<String>, b: Option<String>, newest_first: bool) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (ta, tb) = (parse_datetime(&a), parse_datetime(&b));
            Some(if (ta < tb) != newest_first { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

/// The `Content-Range` of a page cut at `cut`: `date-time <start>-<end>/<size>`. The range starts
/// where the request's window does (or where the page's instances do) and ends at the cut;
/// newest first (lastN) it starts at the newest end, and the size is lastN (`*` otherwise).
pub fn content_range(
    entities: &[TemporalEntity],
    cut: &str,
    last_n: Option<usize>,
    timerel: Option<&TimeRel>,
    property: TimeProperty,
) -> String {
    let span = time_span(entities, property);
    let (start, size) = if let Some(n) = last_n {
        let start = match timerel {
            Some(TimeRel::Before(t)) => t.clone(),
            Some(TimeRel::Between(_, end)) => end.clone(),
            _ => span.as_ref().map(|s| s.1.clone()).unwrap_or_else(|| cut.to_owned()),
        };
        (start, n.to_string())
    } else {
        let start = match timerel.map(TimeRel::bounds) {
            Some((Some(from), _)) => from.to_owned(),
            _ => span.as_ref().map(|s| s.0.clone()).unwrap_or_else(|| cut.to_owned()),
        };
        (start, "*".to_owned())
    };
    format!("date-time {start}-{cut}/{size}")
}

/// The end of a `Content-Range: date-time <start>-<end>/<size>`: where a source cut. Both ends
/// are date-times with dashes of their own; the split is where both parse.
pub fn content_range_end(value: &str) -> Option<String> {
    let range = value.strip_prefix("date-time ")?.rsplit_once('/')?.0;
    range
        .match_indices('-')
        .map(|(at, _)| (&range[..at], &range[at + 1..]))
        .find(|(start, end)| parse_datetime(start).is_some() && parse_datetime(end).is_some())
        .map(|(_, end)| end.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attribute, AttributeKind};
    use crate::temporal::Instance;

    /// One entity whose two attributes each hold an instance at each of `times`.
    fn history(times: &[&str]) -> Vec<TemporalEntity> {
        let instances = || -> Vec<Instance> {
            times
                .iter()
                .enumerate()
                .map(|(n, t)| {
                    let mut attribute = Attribute::new(AttributeKind::Property, serde_json::json!(n));
                    attribute.observed_at = Some((*t).to_owned());
                    Instance { attribute, instance_id: format!("urn:ngsi-ld:Instance:{n}"), deleted_at: None }
                })
                .collect()
        };
        let attrs = ["https://example.org/speed", "https://example.org/brake"]
            .into_iter()
            .map(|name| (name.to_owned(), instances()))
            .collect();
        vec![TemporalEntity { id: "urn:a".to_owned(), attrs, ..Default::default() }]
    }

    /// The times of the first attribute's instances.
    fn times(entities: &[TemporalEntity]) -> Vec<String> {
        let first = entities[0].attrs.values().next().expect("an attribute");
        first.iter().filter_map(|i| i.attribute.observed_at.clone()).collect()
    }

    const T: [&str; 4] = [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-02T00:00:00.000000Z",
        "2024-01-03T00:00:00.000000Z",
        "2024-01-04T00:00:00.000000Z",
    ];

    #[test]
    fn a_page_stops_at_the_limit_or_where_a_source_stopped() {
        // Three instances shown in all: both attributes are cut at one time.
        let mut entities = history(&T);
        let cut = page_cut(&mut entities, 3, None, TimeProperty::ObservedAt, None);
        assert_eq!(times(&entities), &T[..2]);
        assert_eq!(cut.as_deref(), Some(T[1]));
        let mut entities = history(&T);
        let cut = page_cut(&mut entities, 10, None, TimeProperty::ObservedAt, Some(T[2].to_owned()));
        assert_eq!(times(&entities), &T[..3], "nothing past the source's cut");
        assert_eq!(cut.as_deref(), Some(T[2]));
        let mut entities = history(&T);
        assert_eq!(page_cut(&mut entities, 10, None, TimeProperty::ObservedAt, None), None);
        assert_eq!(times(&entities), T);
    }

    #[test]
    fn the_cut_that_stops_first_wins() {
        let (a, b) = (Some(T[1].to_owned()), Some(T[2].to_owned()));
        assert_eq!(earliest_cut(a.clone(), b.clone(), false), a);
        assert_eq!(earliest_cut(a.clone(), b.clone(), true), b, "newest first, the later stops first");
        assert_eq!(earliest_cut(None, b.clone(), false), b);
        assert_eq!(earliest_cut(None, None, false), None);
    }

    #[test]
    fn content_range_names_the_window_and_the_cut() {
        let entities = history(&T[..2]);
        let range = content_range(&entities, T[1], None, None, TimeProperty::ObservedAt);
        assert_eq!(range, format!("date-time {}-{}/*", T[0], T[1]));
        let after = TimeRel::After("2023-12-31T00:00:00Z".to_owned());
        let range = content_range(&entities, T[1], None, Some(&after), TimeProperty::ObservedAt);
        assert_eq!(range, format!("date-time 2023-12-31T00:00:00Z-{}/*", T[1]));
        let before = TimeRel::Before("2024-02-01T00:00:00Z".to_owned());
        let range = content_range(&entities, T[0], Some(3), Some(&before), TimeProperty::ObservedAt);
        assert_eq!(range, format!("date-time 2024-02-01T00:00:00Z-{}/3", T[0]));
    }

    #[test]
    fn a_sources_content_range_is_read_back_at_its_end() {
        let header = format!("date-time {}-{}/*", T[0], T[2]);
        assert_eq!(content_range_end(&header).as_deref(), Some(T[2]));
        assert_eq!(content_range_end(&format!("date-time {}-{}/5", T[3], T[1])).as_deref(), Some(T[1]));
        assert_eq!(content_range_end("bytes 0-10/20"), None);
        assert_eq!(content_range_end("date-time nonsense/*"), None);
    }
}
