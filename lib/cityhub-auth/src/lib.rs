//! Who sends a request: the I/O side of identities (issue 16).
//!
//! The hub's HTTP layer hands [`Auth::identify`] the headers of each request once and gets an
//! [`Identity`] (for `cityhub_access` to decide on) or an [`Unauthorized`] to answer 401 with.
//!
//! - **Open mode** (no identity source: neither `--auth-jwks` nor `--auth-keys`): every caller is
//!   an admin in every tenant, whatever it sends; the hub behaves as before identities existed.
//! - **Enforced mode**: no credentials is [`Identity::anonymous`] (the `public` role); a bearer
//!   JWT is checked against the issuer's keys ([`jwt`]); an API key (`Authorization: Bearer
//!   chk_...` or `X-API-Key: chk_...`) is looked up by its hash ([`keys`]); bad, expired or
//!   revoked credentials are refused, never read as anonymous.
//!
//! [`Auth::admit_rate`] takes a token from the caller's bucket ([`limit`]).
//!
//! This crate may read credentials, fetch the issuer's JWKS and read and write API key records
//! through `cityhub_storage::Store`. It may never decide what an identity may do (that is
//! `cityhub_access`), answer HTTP itself, or keep a key or a token anywhere but in memory.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod cache;
pub mod jwt;
pub mod keys;
pub mod limit;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cityhub_access::{Grant, Identity, Role, Via};
use cityhub_storage::DynStore;
use http::HeaderMap;

pub use keys::{issue_key, list_keys, revoke_key, ApiKey, KeyRing, KEY_PREFIX};

/// Where identities come from, and the default rate.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// A JWKS file or an http(s) URL of one.
    pub jwks: Option<String>,
    /// The `iss` every token must carry.
    pub issuer: Option<String>,
    /// An `aud` every token must carry (one of its audiences).
    pub audience: Option<String>,
    /// Where a token's roles are: a dotted path into its claims (`roles`, `realm_access.roles`).
    pub roles_claim: String,
    /// Whether API keys the hub issued are accepted.
    pub keys: bool,
    /// Requests per second and burst for callers without a rate of their own.
    pub rate: Option<(f64, u32)>,
}

/// Why credentials were refused: 401, with a detail saying what is wrong and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized {
    pub detail: String,
    /// A credential was sent (RFC 6750: `error="invalid_token"`).
    pub token_sent: bool,
}

impl Unauthorized {
    pub fn token(detail: impl Into<String>) -> Unauthorized {
        Unauthorized { detail: detail.into(), token_sent: true }
    }
}

/// An identity and the rate of its own it has (an API key's `--rate`).
#[derive(Debug, Clone)]
pub struct Verified {
    /// Shared: a cached token's identity is handed out, not built again, on every request.
    pub identity: Arc<Identity>,
    pub rate: Option<f64>,
}

/// The identity sources of a hub and its rate limits.
pub struct Auth {
    keys: Option<Arc<KeyRing>>,
    jwt: Option<Arc<jwt::Verifier>>,
    limits: limit::RateLimits,
    /// The identity of every caller in open mode, and of a caller without credentials in
    /// enforced mode: built once.
    admin: Arc<Identity>,
    anonymous: Arc<Identity>,
}

fn everyone_admin() -> Arc<Identity> {
    Arc::new(Identity { subject: None, via: Via::Anonymous, grants: vec![Grant { tenant: None, role: Role::Admin }] })
}

impl Auth {
    /// Open mode without rate limits: every caller an admin.
    pub fn open() -> Auth {
        Auth {
            keys: None,
            jwt: None,
            limits: limit::RateLimits::new(None),
            admin: everyone_admin(),
            anonymous: Arc::new(Identity::anonymous()),
        }
    }

    /// The sources `config` names, read once now (a JWKS that cannot be read, or the store's
    /// keys, fail the start), then followed.
    pub async fn start(store: DynStore, config: &AuthConfig) -> Result<Auth, String> {
        let keys = match config.keys {
            true => {
                let ring = Arc::new(
                    KeyRing::load(store.as_ref()).await.map_err(|e| format!("the API keys could not be read: {e}"))?,
                );
                ring.follow(store);
                Some(ring)
            }
            false => None,
        };
        let jwt = match &config.jwks {
            Some(source) => Some(jwt::Verifier::start(source, config).await?),
            None => None,
        };
        Ok(Auth {
            keys,
            jwt,
            limits: limit::RateLimits::new(config.rate),
            admin: everyone_admin(),
            anonymous: Arc::new(Identity::anonymous()),
        })
    }

    /// Reads the keys again now, after this hub issued or revoked one: the store's event would
    /// do it too, but on a shared store it arrives a moment later, and a key revoked here must
    /// be refused here from the answer on.
    pub async fn keys_changed(&self, store: &dyn cityhub_storage::Store) -> Result<(), cityhub_storage::StoreError> {
        match &self.keys {
            Some(ring) => ring.reload(store).await,
            None => Ok(()),
        }
    }

    /// Whether an identity source is configured (enforced mode).
    pub fn enforced(&self) -> bool {
        self.keys.is_some() || self.jwt.is_some()
    }

    /// The mode, for the start-up log: `open`, or `enforced` and its sources.
    pub fn mode(&self) -> String {
        let mut sources = Vec::new();
        if let Some(jwt) = &self.jwt {
            sources.push(format!("JWTs of {}", jwt.source()));
        }
        if self.keys.is_some() {
            sources.push("API keys".to_owned());
        }
        match sources.is_empty() {
            true => "open (no identity source: every caller is an admin)".to_owned(),
            false => format!("enforced ({}; no credentials: public)", sources.join(", ")),
        }
    }

    /// The identity of the sender of `headers`.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Verified, Unauthorized> {
        if !self.enforced() {
            return Ok(Verified { identity: self.admin.clone(), rate: None });
        }
        match credential(headers)? {
            None => Ok(Verified { identity: self.anonymous.clone(), rate: None }),
            Some(Credential::Key(secret)) => {
                let Some(ring) = &self.keys else {
                    return Err(Unauthorized::token(
                        "this hub accepts no API keys (it was started without --auth-keys): send a bearer JWT of \
                         its issuer, or no credentials",
                    ));
                };
                let (identity, rate) = ring.identify(secret)?;
                Ok(Verified { identity: Arc::new(identity), rate })
            }
            Some(Credential::Bearer(token)) => {
                let Some(jwt) = &self.jwt else {
                    return Err(Unauthorized::token(
                        "this hub checks no JWTs (it was started without --auth-jwks): send an API key it issued \
                         (chk_...), or no credentials",
                    ));
                };
                let identity = jwt.verify(token).await?;
                Ok(Verified { identity, rate: None })
            }
        }
    }

    /// Takes a token from the bucket of `who`: `Err(wait)` when it is over its rate.
    pub fn admit_rate(&self, who: &Verified, peer: Option<IpAddr>) -> Result<(), Duration> {
        if who.rate.is_none() && self.limits.default_rate().is_none() {
            return Ok(());
        }
        let name = match (&who.identity.subject, who.identity.via) {
            (Some(subject), Via::Key) => format!("key:{subject}"),
            (Some(subject), _) => format!("sub:{subject}"),
            (None, _) => match peer {
                Some(ip) => format!("ip:{ip}"),
                None => "ip:unknown".to_owned(),
            },
        };
        self.limits.check(&name, who.rate)
    }
}

enum Credential<'a> {
    Key(&'a str),
    Bearer(&'a str),
}

/// The one credential of a request, if any: `X-API-Key: KEY` or `Authorization: Bearer X`.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, Unauthorized> {
    let text = |name: &str| -> Result<Option<&str>, Unauthorized> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
                Unauthorized::token(format!("the {name} header is not visible ASCII: send it as ASCII text"))
            }),
        }
    };
    let (key, authorization) = (text("x-api-key")?, text("authorization")?);
    if key.is_some() && authorization.is_some() {
        return Err(Unauthorized::token(
            "the request carries both X-API-Key and Authorization: send one credential only",
        ));
    }
    if let Some(key) = key {
        return Ok(Some(Credential::Key(key)));
    }
    let Some(authorization) = authorization else { return Ok(None) };
    let Some((scheme, token)) = authorization.split_once(' ') else {
        return Err(Unauthorized::token(
            "the Authorization header is not `Bearer TOKEN`: send `Authorization: Bearer` and a JWT or an API key",
        ));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Unauthorized::token(format!(
            "the Authorization scheme {scheme} is not one this hub reads: send `Authorization: Bearer` and a JWT or \
             an API key"
        )));
    }
    let token = token.trim();
    match token.starts_with(KEY_PREFIX) {
        true => Ok(Some(Credential::Key(token))),
        false => Ok(Some(Credential::Bearer(token))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn credentials_are_read_from_either_header_and_never_both() {
        assert!(matches!(credential(&headers(&[])), Ok(None)));
        assert!(matches!(credential(&headers(&[("x-api-key", "chk_a")])), Ok(Some(Credential::Key("chk_a")))));
        assert!(matches!(
            credential(&headers(&[("authorization", "Bearer chk_a")])),
            Ok(Some(Credential::Key("chk_a")))
        ));
        assert!(matches!(
            credential(&headers(&[("authorization", "bearer ey.x.y")])),
            Ok(Some(Credential::Bearer("ey.x.y")))
        ));
        let both = credential(&headers(&[("authorization", "Bearer x"), ("x-api-key", "chk_a")])).err().unwrap();
        assert!(both.detail.contains("one credential"), "{}", both.detail);
        let basic = credential(&headers(&[("authorization", "Basic dXNlcg==")])).err().unwrap();
        assert!(basic.detail.contains("Basic") && basic.detail.contains("Bearer"), "{}", basic.detail);
    }

    #[tokio::test]
    async fn open_mode_makes_everyone_an_admin() {
        let auth = Auth::open();
        let v = auth.identify(&headers(&[("authorization", "Bearer garbage")])).await.unwrap();
        assert_eq!(v.identity.role_in("any"), Role::Admin);
        assert!(!auth.enforced());
        assert!(auth.mode().starts_with("open"));
    }
}
