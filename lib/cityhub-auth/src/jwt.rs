//! Bearer JWTs checked against the issuer's JWKS.
//!
//! Only asymmetric signatures are accepted: RS256, ES256 and EdDSA. A token whose header names
//! `alg: none`, an HMAC algorithm (a JWKS is public: anyone could sign with it as a shared
//! secret) or any other is refused before a key is looked at, and a key is used only for the
//! algorithm of its family (an RSA key for RS256, a P-256 key for ES256, an Ed25519 key for
//! EdDSA), and only for the one its `alg` names when it names one.
//!
//! The JWKS comes from a file or an http(s) URL (`--auth-jwks`): read at start (the hub does
//! not start without it), again every five minutes, and at once when a token names a `kid` the
//! hub does not know (the issuer rotated its keys) — but at most once per
//! [`MIN_REFRESH_INTERVAL`], so a flood of tokens with made-up kids costs the issuer one fetch
//! per interval. A fetch that fails keeps the keys known before.
//!
//! Claims: `exp` is required, `nbf` is checked when present, both with [`LEEWAY_SECS`] of leeway
//! for clock skew; `iss` must be `--auth-issuer` and `aud` hold `--auth-audience` when they are
//! given. Roles are read at `--auth-roles-claim` (a dotted path, default `roles`): strings
//! `ROLE` or `TENANT:ROLE`; those that are no role are ignored (logged at debug).
//!
//! A verified token is cached ([`crate::cache`]: at most [`CACHE_ENTRIES`] tokens and
//! [`CACHE_BYTES`] bytes, keyed by the token's own bytes, for at most five minutes and never past
//! its `exp`), so a client sending the same token on every request costs one map lookup per
//! request and shares the cached `Arc<Identity>`, not a signature check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cityhub_access::{Grant, Identity, Via};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::cache::{Limits, TokenCache};
use crate::{AuthConfig, Unauthorized};

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The fewest seconds between two fetches of the JWKS caused by unknown kids.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How often the JWKS is read again regardless.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Verified tokens kept.
pub const CACHE_ENTRIES: usize = 10_000;
/// Bytes of verified tokens kept.
pub const CACHE_BYTES: usize = 16 << 20;
/// How long a verified token is kept at most.
pub const CACHE_SECS: i64 = 300;
/// The longest token read; a longer one is refused before it is hashed or decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

enum Source {
    File(PathBuf),
    Url(String),
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct Verifier {
    source: Source,
    keys: RwLock<Arc<Vec<Key>>>,
    last_fetch: Mutex<Instant>,
    fetching: tokio::sync::Mutex<()>,
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: Vec<String>,
    cache: TokenCache,
    client: Option<cityhub_egress::EgressClient>,
}

impl Verifier {
    /// Reads the JWKS of `source` now (an error if it cannot be read or holds no usable key) and
    /// keeps reading it every [`REFRESH_EVERY`].
    pub async fn start(source: &str, config: &AuthConfig) -> Result<Arc<Verifier>, String> {
        let source = match source.starts_with("http://") || source.starts_with("https://") {
            true => Source::Url(source.to_owned()),
            false => Source::File(PathBuf::from(source)),
        };
        // Only a URL needs a client (its TLS provider is the process's: the hub installs ring).
        let client = match &source {
            Source::Url(_) => Some(cityhub_egress::Egress::operator().client(&cityhub_egress::ClientOptions {
                max_redirects: 3,
                ..cityhub_egress::ClientOptions::default()
            })),
            Source::File(_) => None,
        };
        let claim = if config.roles_claim.is_empty() { "roles" } else { config.roles_claim.as_str() };
        let verifier = Arc::new(Verifier {
            source,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: Mutex::new(Instant::now()),
            fetching: tokio::sync::Mutex::new(()),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            roles_claim: claim.split('.').map(str::to_owned).collect(),
            cache: TokenCache::new(Limits { entries: CACHE_ENTRIES, bytes: CACHE_BYTES }),
            client,
        });
        let keys = verifier.fetch().await.map_err(|e| format!("--auth-jwks {}: {e}", verifier.source()))?;
        *verifier.keys.write() = Arc::new(keys);
        let weak = Arc::downgrade(&verifier);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(verifier) = weak.upgrade() else { return };
                verifier.refresh().await;
            }
        });
        Ok(verifier)
    }

    /// Where the keys come from, for the log.
    pub fn source(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Url(url) => url.clone(),
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let bytes = match &self.source {
            Source::File(path) => std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?,
            Source::Url(url) => {
                let client = self.client.as_ref().ok_or("no HTTP client")?;
                let response = client.execute(client.get(url)).await.map_err(|e| format!("GET failed: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("GET answered {}", response.status()));
                }
                let bytes = response.bytes().await.map_err(|e| format!("the answer could not be read: {e}"))?;
                bytes.to_vec()
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err("the JWKS holds no RSA, P-256 or Ed25519 key".to_owned());
        }
        Ok(keys)
    }

    /// Reads the JWKS again; a failure keeps the keys known.
    async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        *self.last_fetch.lock() = Instant::now();
        match self.fetch().await {
            Ok(keys) => *self.keys.write() = Arc::new(keys),
            Err(e) => {
                tracing::warn!(source = %self.source(), error = %e, "the JWKS could not be read again; the keys known stay in force")
            }
        }
    }

    /// Reads the JWKS again for an unknown kid, unless it was read less than
    /// [`MIN_REFRESH_INTERVAL`] ago.
    async fn refresh_for_unknown_kid(&self) {
        let since = self.last_fetch.lock().elapsed();
        if since >= MIN_REFRESH_INTERVAL {
            let last = *self.last_fetch.lock();
            let _one_at_a_time = self.fetching.lock().await;
            // Another request refreshed while this one waited: its keys are as new.
            if *self.last_fetch.lock() != last {
                return;
            }
            drop(_one_at_a_time);
            self.refresh().await;
        }
    }

    /// The identity a token proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, Unauthorized> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Unauthorized::token(format!(
                "the bearer token is {} bytes, longer than the {MAX_TOKEN_BYTES} this hub reads: send the token the \
                 issuer made",
                token.len()
            )));
        }
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = self.cache.get(token, now) {
            return Ok(hit);
        }
        let (alg, kid) = header(token)?;
        let keys = match self.candidates(alg, kid.as_deref()) {
            Some(keys) => keys,
            None => {
                self.refresh_for_unknown_kid().await;
                self.candidates(alg, kid.as_deref()).ok_or_else(|| {
                    Unauthorized::token(format!(
                        "the token's kid {:?} is not a key of the issuer's JWKS ({}): send a token signed by a \
                         current key of the issuer",
                        kid.as_deref().unwrap_or(""),
                        self.source()
                    ))
                })?
            }
        };
        let validation = self.validation(alg);
        let mut last = None;
        for key in keys.iter().filter(|k| k.alg == alg && (kid.is_none() || k.kid == kid)) {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => {
                    let identity = Arc::new(self.identity(&data.claims));
                    let exp = data.claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
                    let until = (exp + LEEWAY_SECS as i64).min(now + CACHE_SECS);
                    self.cache.insert(token, identity.clone(), until);
                    return Ok(identity);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Unauthorized::token(match last {
            Some(e) => refusal(&e, self),
            None => format!("no key of the issuer's JWKS is for {alg:?}: send a token signed by a current key"),
        }))
    }

    /// The keys a token of `alg` and `kid` may be checked with; `None` when its kid is unknown.
    fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Option<Arc<Vec<Key>>> {
        let keys = self.keys.read().clone();
        let known = match kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => keys.iter().any(|k| k.alg == alg),
        };
        known.then_some(keys)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn identity(&self, claims: &Value) -> Identity {
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let mut at = Some(claims);
        for step in &self.roles_claim {
            at = at.and_then(|v| v.get(step));
        }
        let names: Vec<&str> = match at {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split_whitespace().collect(),
            _ => Vec::new(),
        };
        let grants = names
            .into_iter()
            .filter_map(|name| match name.parse::<Grant>() {
                Ok(grant) => Some(grant),
                Err(e) => {
                    tracing::debug!(role = name, why = %e, "a role of a token is ignored");
                    None
                }
            })
            .collect();
        Identity { subject, via: Via::Token, grants }
    }
}

/// A key of the JWKS the hub can use, with the one algorithm it is for.
fn usable(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Key> {
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => return None,
    };
    if let Some(named) = jwk.common.key_algorithm {
        let named = format!("{named:?}");
        if named != format!("{alg:?}") {
            tracing::debug!(kid = ?jwk.common.key_id, alg = named, "a JWKS key for another algorithm is ignored");
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), alg, key })
}

/// The algorithm and kid a token's header names, when it is one the hub accepts.
fn header(token: &str) -> Result<(Algorithm, Option<String>), Unauthorized> {
    let bad = || Unauthorized::token("the bearer token is not a JWT (three base64url parts): send a JWT or an API key");
    let first = token.split('.').next().ok_or_else(bad)?;
    if token.split('.').count() != 3 {
        return Err(bad());
    }
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first.trim_end_matches('=')).map_err(|_| bad())?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(Unauthorized::token(format!(
                "the token's algorithm {other:?} is not accepted: this hub takes RS256, ES256 or EdDSA signatures \
                 only (never none or HS*)"
            )))
        }
    };
    Ok((alg, header.get("kid").and_then(Value::as_str).map(str::to_owned)))
}

fn refusal(e: &jsonwebtoken::errors::Error, verifier: &Verifier) -> String {
    use jsonwebtoken::errors::ErrorKind as E;
    match e.kind() {
        E::ExpiredSignature => "the token has expired (exp): get a new token from the issuer".to_owned(),
        E::ImmatureSignature => "the token is not valid yet (nbf): check the clocks, or wait".to_owned(),
        E::InvalidSignature => {
            "the token's signature does not verify with the issuer's key: send the token as the issuer made it"
                .to_owned()
        }
        E::InvalidIssuer => format!(
            "the token's issuer (iss) is not {}: send a token of this hub's issuer",
            verifier.issuer.as_deref().unwrap_or("")
        ),
        E::InvalidAudience => format!(
            "the token's audience (aud) does not hold {}: ask the issuer for a token for this hub",
            verifier.audience.as_deref().unwrap_or("")
        ),
        E::MissingRequiredClaim(claim) => format!("the token has no {claim} claim: send a token that has one"),
        _ => format!("the token was refused ({e}): send a valid JWT of this hub's issuer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_access::Role;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// An Ed25519 key: its PKCS#8 document and its public JWK.
    fn ed25519(kid: &str, alg: &str) -> (Vec<u8>, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": alg, "x": b64(pair.public_key().as_ref())});
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn token(pkcs8: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(pkcs8)).unwrap()
    }

    async fn verifier(keys: &[Value], roles_claim: &str) -> Arc<Verifier> {
        let file = std::env::temp_dir().join(format!("cityhub-auth-jwks-{}.json", uuid_like()));
        std::fs::write(&file, json!({"keys": keys}).to_string()).unwrap();
        let config = AuthConfig { roles_claim: roles_claim.to_owned(), ..AuthConfig::default() };
        let verifier = Verifier::start(file.to_str().unwrap(), &config).await.unwrap();
        let _ = std::fs::remove_file(&file);
        verifier
    }

    fn uuid_like() -> String {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test]
    async fn eddsa_tokens_verify_and_their_roles_are_read_at_a_dotted_path() {
        let (pkcs8, jwk) = ed25519("ed-1", "EdDSA");
        let verifier = verifier(&[jwk], "realm_access.roles").await;
        let exp = chrono::Utc::now().timestamp() + 600;
        let claims =
            json!({"sub": "bob", "exp": exp, "realm_access": {"roles": ["seoul:editor", "uma_authorization"]}});
        let signed = token(&pkcs8, "ed-1", &claims);
        let first = verifier.verify(&signed).await.unwrap();
        // The second time from the cache: the same identity, shared, not built again.
        assert!(Arc::ptr_eq(&first, &verifier.verify(&signed).await.unwrap()));
        // The cached token with its signature's last character changed is checked, not found.
        let mut tampered = signed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verifier.verify(&tampered).await.is_err());
        for _ in 0..2 {
            let id = verifier.verify(&signed).await.unwrap();
            assert_eq!(id.subject.as_deref(), Some("bob"));
            assert_eq!(id.via, Via::Token);
            assert_eq!(id.role_in("seoul"), Role::Editor);
            assert_eq!(id.role_in("busan"), Role::Public);
        }
        let huge = "e".repeat(MAX_TOKEN_BYTES + 1);
        assert!(verifier.verify(&huge).await.unwrap_err().detail.contains("longer than the 16384"));
        let no_exp = token(&pkcs8, "ed-1", &json!({"sub": "bob"}));
        assert!(verifier.verify(&no_exp).await.unwrap_err().detail.contains("no exp claim"));
    }

    #[tokio::test]
    async fn a_key_whose_alg_names_another_algorithm_is_not_used() {
        let (pkcs8, jwk) = ed25519("ed-1", "EdDSA");
        let (_, mismatched) = ed25519("ed-2", "RS256");
        // A JWKS of only unusable keys does not start.
        let file = std::env::temp_dir().join(format!("cityhub-auth-jwks-{}.json", uuid_like()));
        std::fs::write(&file, json!({"keys": [mismatched.clone(), {"kty": "oct", "k": "c2VjcmV0"}]}).to_string())
            .unwrap();
        let refused = Verifier::start(file.to_str().unwrap(), &AuthConfig::default()).await.err().unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(refused.contains("holds no RSA, P-256 or Ed25519 key"), "{refused}");
        let verifier = verifier(&[jwk, mismatched], "roles").await;
        let claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "roles": "admin"});
        assert_eq!(verifier.verify(&token(&pkcs8, "ed-1", &claims)).await.unwrap().role_in("x"), Role::Admin);
        let other = verifier.verify(&token(&pkcs8, "ed-2", &claims)).await.unwrap_err();
        assert!(other.detail.contains("kid \"ed-2\" is not a key"), "{}", other.detail);
    }
}
