//! Query parameters as a request carries them: name/value pairs in order, read by name, with
//! the checks every endpoint shares (unknown names, lists, flags, numbers, `options`).

use crate::NgsiLdError;

/// Query parameters, checked against what the endpoint understands.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

/// The detail of a refused parameter: its name and what the operation takes instead (the
/// same words every endpoint's refusal uses, so a client, or a test, can read the list).
pub fn unknown(name: &str, allowed: &[&str]) -> String {
    if allowed.is_empty() {
        format!("unknown query parameter {name:?}: this operation takes no query parameter")
    } else {
        format!("unknown query parameter {name:?}: this operation takes {}", allowed.join(", "))
    }
}

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, NgsiLdError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect();
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !allowed.contains(&name.as_str())) {
            return Err(NgsiLdError::invalid_request(unknown(name, allowed)));
        }
        Ok(Params(pairs))
    }

    /// Parameters as they are, unchecked (for limits applied before an endpoint reads them).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn push(&mut self, pair: (String, String)) {
        self.0.push(pair);
    }

    pub fn retain(&mut self, keep: impl FnMut(&(String, String)) -> bool) {
        self.0.retain(keep);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A comma-separated list parameter; empty items are an error.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, NgsiLdError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let items: Vec<String> = raw.split(',').map(|s| s.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(NgsiLdError::bad_request(format!("{name} has an empty item")));
        }
        Ok(Some(items))
    }

    pub fn flag(&self, name: &str) -> Result<bool, NgsiLdError> {
        match self.get(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(NgsiLdError::bad_request(format!("{name} must be true or false, not {other:?}"))),
        }
    }

    pub fn usize(&self, name: &str) -> Result<Option<usize>, NgsiLdError> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    NgsiLdError::bad_request(format!(
                        "{name} must be a non-negative integer of at most {}, not {v:?}",
                        usize::MAX
                    ))
                })
            })
            .transpose()
    }

    /// These parameters as a query string, without the named ones (to build paging links).
    pub fn query_string_without(&self, skip: &[&str]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.0.iter().filter(|(n, _)| !skip.contains(&n.as_str())) {
            out.append_pair(name, value);
        }
        out.finish()
    }

    /// The `options` list (comma-separated).
    pub fn options(&self) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == "options").flat_map(|(_, v)| v.split(',')).map(str::trim).collect()
    }

    /// Whether `options` asks for `sysAttrs`, for the subscription APIs, which show one
    /// representation: the format options are accepted and change nothing, any other is refused.
    pub fn sys_attrs_only(&self) -> Result<bool, NgsiLdError> {
        let mut sys_attrs = false;
        for option in self.options() {
            match option {
                "sysAttrs" => sys_attrs = true,
                "" | "normalized" | "keyValues" | "concise" => {}
                other => return Err(NgsiLdError::bad_request(format!("unknown option {other:?}"))),
            }
        }
        Ok(sys_attrs)
    }

    pub fn has_option(&self, option: &str) -> bool {
        self.options().contains(&option)
    }

    /// Without a temporal representation (`format=temporalValues`, `aggregatedValues`,
    /// `simplified`), which the rendering of an entity must not see; any other `format` stays.
    pub fn without_temporal_format(&self) -> Params {
        let mut cleaned = self.clone();
        cleaned.retain(|(name, value)| {
            !(name == "format" && matches!(value.as_str(), "temporalValues" | "aggregatedValues" | "simplified"))
        });
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        let err = Params::parse(Some("type=A&tpye=B"), &["type"]).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidRequest);
        assert!(err.detail.contains("\"tpye\""), "{}", err.detail);
    }

    #[test]
    fn the_last_value_wins_and_lists_refuse_empty_items() {
        let params =
            Params::parse(Some("attrs=a&attrs=b,c&options=keyValues,%20sysAttrs"), &["attrs", "options"]).unwrap();
        assert_eq!(params.get("attrs"), Some("b,c"));
        assert_eq!(params.list("attrs").unwrap(), Some(vec!["b".to_owned(), "c".to_owned()]));
        assert_eq!(params.options(), vec!["keyValues", "sysAttrs"]);
        let empty = Params::from_pairs(vec![("attrs".into(), "a,,b".into())]);
        assert!(empty.list("attrs").unwrap_err().detail.contains("empty item"));
    }

    #[test]
    fn flags_and_numbers_say_what_they_accept() {
        let params = Params::from_pairs(vec![("count".into(), "yes".into()), ("limit".into(), "-1".into())]);
        assert!(params.flag("count").unwrap_err().detail.contains("true or false"));
        assert!(params.usize("limit").unwrap_err().detail.contains("non-negative integer"));
        assert_eq!(params.query_string_without(&["limit"]), "count=yes");
    }

    #[test]
    fn a_temporal_format_is_left_out_and_the_rest_stays() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let params =
            Params::from_pairs(vec![pair("format", "temporalValues"), pair("attrs", "a"), pair("format", "keyValues")]);
        assert_eq!(params.without_temporal_format().pairs(), [pair("attrs", "a"), pair("format", "keyValues")]);
    }
}
