//! Rate limits: a token bucket per identity (governor), in a bounded cache.
//!
//! The bucket of a request is named by who sends it: an API key by its id, a token by its
//! subject, anyone else by the client's IP address. A key issued with its own rate (`cityhub
//! keys create --rate`) gets a bucket of that rate (burst: one second of it); every other caller
//! the hub's default (`--rate-limit PER_SEC --rate-burst N`), when there is one. Buckets idle
//! for ten minutes are dropped, and at most [`MAX_BUCKETS`] are kept (the least recently used
//! go first), so a flood of new addresses costs bounded memory.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The most buckets kept at once.
pub const MAX_BUCKETS: u64 = 100_000;

/// A rate as a quota: `per_second` requests a second, `burst` at once.
fn quota(per_second: f64, burst: u32) -> Option<Quota> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64((1.0 / per_second).max(1e-9));
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?))
}

pub struct RateLimits {
    default: Option<(f64, u32)>,
    buckets: moka::sync::Cache<(String, u64), Arc<DefaultDirectRateLimiter>>,
}

impl RateLimits {
    /// `default`: requests per second and burst for callers without a rate of their own.
    pub fn new(default: Option<(f64, u32)>) -> RateLimits {
        let buckets =
            moka::sync::Cache::builder().max_capacity(MAX_BUCKETS).time_to_idle(Duration::from_secs(600)).build();
        RateLimits { default, buckets }
    }

    /// Whether any caller is limited at all.
    pub fn default_rate(&self) -> Option<(f64, u32)> {
        self.default
    }

    /// Takes one token from the bucket of `who`; `Err(wait)` when it is empty: how long until
    /// the next request would be served.
    pub fn check(&self, who: &str, own_rate: Option<f64>) -> Result<(), Duration> {
        let (rate, burst) = match own_rate {
            Some(rate) => (rate, rate.ceil().clamp(1.0, u32::MAX as f64) as u32),
            None => match self.default {
                Some(default) => default,
                None => return Ok(()),
            },
        };
        let Some(quota) = quota(rate, burst) else { return Ok(()) };
        // The rate is part of the bucket's name: a caller whose rate changes gets a new bucket.
        let name = (who.to_owned(), rate.to_bits() ^ u64::from(burst));
        let bucket = self.buckets.get_with(name, || Arc::new(RateLimiter::direct(quota)));
        bucket.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_over_its_rate_waits_while_another_is_served() {
        let limits = RateLimits::new(Some((1.0, 2)));
        assert!(limits.check("ip:10.0.0.1", None).is_ok());
        assert!(limits.check("ip:10.0.0.1", None).is_ok());
        let wait = limits.check("ip:10.0.0.1", None).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check("ip:10.0.0.2", None).is_ok());
        // A key's own rate wins over the default.
        assert!(limits.check("key:k1", Some(1.0)).is_ok());
        assert!(limits.check("key:k1", Some(1.0)).is_err());
    }

    #[test]
    fn no_default_means_no_limit_but_own_rates_still_hold() {
        let limits = RateLimits::new(None);
        for _ in 0..100 {
            assert!(limits.check("ip:10.0.0.1", None).is_ok());
        }
        assert!(limits.check("key:k1", Some(1.0)).is_ok());
        assert!(limits.check("key:k1", Some(1.0)).is_err());
    }
}
