//! What a temporal retrieval or query asks beyond the entity selection (clauses 5.6.12, 5.7.3,
//! 6.3.10): the representation (`options`/`format`: normalized, `temporalValues`,
//! `aggregatedValues`), the time window (`timerel`, `timeAt`, `endTimeAt`, `timeproperty`),
//! `lastN`, the aggregation (`aggrMethods`, `aggrPeriodDuration`), and which attributes and
//! datasetIds, read from the request's parameters in its @context.

use ngsild_jsonld::Context;

use crate::expand::expand_attribute_name;
use crate::params::Params;
use crate::temporal::{parse_duration, AggrMethod, TemporalFormat, TimeProperty, TimeRel};
use crate::NgsiLdError;

/// The temporal parameters of one request, checked.
#[derive(Debug, Clone)]
pub struct TemporalAsk {
    pub format: TemporalFormat,
    /// Only these attributes (expanded names; empty = all).
    pub attrs: Vec<String>,
    /// Only instances with one of these datasetIds (`@none`, None inside, the default instance).
    pub dataset_ids: Option<Vec<Option<String>>>,
    pub timerel: Option<TimeRel>,
    pub time_property: TimeProperty,
    /// `lastN`: the newest this many instances per attribute.
    pub last_n: Option<usize>,
    /// The methods and the period in seconds (0 = the whole window) of `aggregatedValues`.
    pub aggregation: Option<(Vec<AggrMethod>, f64)>,
    /// The most instances one response holds.
    pub limit: usize,
}

impl TemporalAsk {
    /// Reads the parameters; `instance_limit` is the hub's most instances per response.
    pub fn parse(params: &Params, ctx: &Context, instance_limit: usize) -> Result<TemporalAsk, NgsiLdError> {
        let format = format(params)?;
        let timerel = TimeRel::parse(params.get("timerel"), params.get("timeAt"), params.get("endTimeAt"))?;
        let time_property = params.get("timeproperty").map(TimeProperty::parse).transpose()?.unwrap_or_default();
        let last_n = match params.get("lastN") {
            None => None,
            Some(n) => Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| NgsiLdError::bad_request(format!("lastN must be a positive integer, not {n:?}")))?,
            ),
        };
        let aggregation = if format == TemporalFormat::Aggregated {
            let methods = params
                .get("aggrMethods")
                .ok_or_else(|| NgsiLdError::bad_request("aggregatedValues needs aggrMethods"))?;
            let methods = AggrMethod::parse_list(methods)?;
            let period = params.get("aggrPeriodDuration").map(parse_duration).transpose()?.unwrap_or(0.0);
            Some((methods, period))
        } else {
            None
        };
        let attrs = match params.get("attrs") {
            Some(list) => {
                list.split(',').map(|a| expand_attribute_name(a.trim(), ctx)).collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        let dataset_ids = params
            .list("datasetId")?
            .map(|ids| ids.into_iter().map(|id| if id == "@none" { None } else { Some(id) }).collect());
        Ok(TemporalAsk {
            format,
            attrs,
            dataset_ids,
            timerel,
            time_property,
            last_n,
            aggregation,
            limit: instance_limit,
        })
    }

    /// How many instances per attribute to read: one more than may be shown tells whether an
    /// attribute was cut.
    pub fn per_attribute(&self) -> usize {
        self.last_n.unwrap_or(self.limit).min(self.limit) + 1
    }
}

fn format(params: &Params) -> Result<TemporalFormat, NgsiLdError> {
    let mut format = TemporalFormat::Normalized;
    for option in params.options() {
        match option {
            "temporalValues" => format = TemporalFormat::TemporalValues,
            "aggregatedValues" => format = TemporalFormat::Aggregated,
            "sysAttrs" | "normalized" | "" => {}
            other => return Err(NgsiLdError::invalid_request(format!("unknown option {other:?}"))),
        }
    }
    match params.get("format") {
        Some("temporalValues" | "simplified" | "keyValues") => format = TemporalFormat::TemporalValues,
        Some("aggregatedValues") => format = TemporalFormat::Aggregated,
        Some("normalized") | None => {}
        Some(other) => return Err(NgsiLdError::invalid_request(format!("unknown format {other:?}"))),
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn ask(pairs: &[(&str, &str)], limit: usize) -> Result<TemporalAsk, NgsiLdError> {
        let params = Params::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
        TemporalAsk::parse(&params, &Context::core(), limit)
    }

    #[test]
    fn the_format_comes_from_options_then_format() {
        assert_eq!(ask(&[("options", "temporalValues")], 10).unwrap().format, TemporalFormat::TemporalValues);
        assert_eq!(ask(&[("format", "simplified")], 10).unwrap().format, TemporalFormat::TemporalValues);
        let err = ask(&[("options", "keyValues")], 10).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.detail.contains("unknown option \"keyValues\""), "{}", err.detail);
    }

    #[test]
    fn aggregation_needs_its_methods() {
        let err = ask(&[("format", "aggregatedValues")], 10).unwrap_err();
        assert!(err.detail.contains("needs aggrMethods"), "{}", err.detail);
        let asked =
            ask(&[("format", "aggregatedValues"), ("aggrMethods", "sum"), ("aggrPeriodDuration", "PT1M")], 10).unwrap();
        let (methods, period) = asked.aggregation.unwrap();
        assert_eq!((methods.len(), period), (1, 60.0));
    }

    #[test]
    fn last_n_bounds_the_instances_read_one_past_what_is_shown() {
        assert_eq!(ask(&[("lastN", "3")], 10).unwrap().per_attribute(), 4);
        assert_eq!(ask(&[("lastN", "30")], 10).unwrap().per_attribute(), 11);
        assert_eq!(ask(&[], 10).unwrap().per_attribute(), 11);
        let err = ask(&[("lastN", "0")], 10).unwrap_err();
        assert!(err.detail.contains("lastN must be a positive integer"), "{}", err.detail);
    }

    #[test]
    fn attributes_expand_and_none_names_the_default_instance() {
        let asked = ask(&[("attrs", "speed"), ("datasetId", "@none,urn:d:1")], 10).unwrap();
        assert_eq!(asked.attrs, vec![Context::core().expand_term("speed").into_owned()]);
        assert_eq!(asked.dataset_ids, Some(vec![None, Some("urn:d:1".to_owned())]));
    }
}
