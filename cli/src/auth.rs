//! Identities on the command line: the `serve` flags of identity sources, rate limits and the
//! in-flight bound ([`AuthArgs`]), the safe-default check, and `cityhub keys create|list|revoke`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cityhub_access::Role;
use cityhub_auth::AuthConfig;
use cityhub_storage::DynStore;
use clap::{Args, Subcommand};

/// The default rate of callers without one of their own in enforced mode.
const ENFORCED_DEFAULT_RATE: f64 = 100.0;

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// The issuer's JWKS, a file or an http(s) URL: bearer JWTs signed by its keys (RS256, ES256,
    /// EdDSA) are accepted. Any identity source makes the hub enforce identities.
    #[arg(long, env = "CITYHUB_AUTH_JWKS")]
    pub auth_jwks: Option<String>,

    /// The `iss` every JWT must carry.
    #[arg(long, env = "CITYHUB_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// An `aud` every JWT must carry.
    #[arg(long, env = "CITYHUB_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Where a JWT's roles are: a dotted path into its claims, e.g. realm_access.roles. Each role
    /// is ROLE (every tenant) or TENANT:ROLE (one tenant).
    #[arg(long, default_value = "roles", env = "CITYHUB_AUTH_ROLES_CLAIM")]
    pub auth_roles_claim: String,

    /// Accept the API keys made with `cityhub keys create` (Authorization: Bearer KEY or
    /// X-API-Key: KEY). Any identity source makes the hub enforce identities.
    #[arg(long, env = "CITYHUB_AUTH_KEYS")]
    pub auth_keys: bool,

    /// Serve other machines (a non-loopback --listen) without any identity source: everyone may
    /// do everything.
    #[arg(long, env = "CITYHUB_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Requests per second one caller (a key, a token's subject, or else a client address) may
    /// send, unless its key has a rate of its own; 0: no limit. Default: none in open mode, 100
    /// when identities are enforced.
    #[arg(long, env = "CITYHUB_RATE_LIMIT")]
    pub rate_limit: Option<f64>,

    /// Requests one caller may send at once above its rate (default: twice the rate).
    #[arg(long, env = "CITYHUB_RATE_BURST")]
    pub rate_burst: Option<u32>,

    /// The most requests served at once; one more answers 503 with Retry-After at once.
    #[arg(long, default_value_t = 512, env = "CITYHUB_MAX_IN_FLIGHT")]
    pub max_in_flight: usize,
}

impl AuthArgs {
    fn enforced(&self) -> bool {
        self.auth_jwks.is_some() || self.auth_keys
    }

    pub fn config(&self) -> AuthConfig {
        let rate = match self.rate_limit {
            Some(rate) if rate > 0.0 => Some(rate),
            Some(_) => None,
            None if self.enforced() => Some(ENFORCED_DEFAULT_RATE),
            None => None,
        };
        let rate = rate.map(|r| (r, self.rate_burst.unwrap_or((2.0 * r).ceil().clamp(1.0, u32::MAX as f64) as u32)));
        AuthConfig {
            jwks: self.auth_jwks.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            roles_claim: self.auth_roles_claim.clone(),
            keys: self.auth_keys,
            rate,
        }
    }

    /// A hub that serves other machines without any identity source gives everyone every right:
    /// only when asked for in so many words.
    pub fn check_safe(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if !listen.ip().is_loopback() && !self.enforced() && !self.allow_anonymous {
            anyhow::bail!(
                "--listen {listen} serves other machines, but no identity source is configured, so anyone could \
                 read, change and purge every tenant's data: give --auth-jwks FILE|URL (bearer JWTs of your \
                 issuer) and/or --auth-keys (API keys of `cityhub keys create`), or --allow-anonymous to serve \
                 everyone as an admin anyway"
            );
        }
        Ok(())
    }
}

/// Where `cityhub keys` finds the store.
#[derive(Args)]
pub struct KeysArgs {
    /// The embedded store's directory, as given to `cityhub serve --data` (the hub must be
    /// stopped: one process per directory). Unused with --store.
    #[arg(long, default_value = "./cityhub-data", env = "CITYHUB_DATA", global = true)]
    data: PathBuf,

    /// The PostgreSQL database of the hubs (they may keep running: they see the change at once).
    #[arg(long, env = "CITYHUB_STORE", global = true)]
    store: Option<String>,

    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key; it is printed once, as the last line, and cannot be shown again.
    Create {
        /// The tenant the key's role holds in ('*': every tenant).
        #[arg(long)]
        tenant: String,
        /// admin, editor, reader or public.
        #[arg(long)]
        role: Role,
        /// When the key stops working: a date (2027-01-31, the start of that day UTC) or an
        /// RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// A name to know the key by (who holds it).
        #[arg(long)]
        name: Option<String>,
        /// Requests per second this key may send (its own limit instead of --rate-limit).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// List the keys (never the keys themselves): id, tenant, role, name, created, expires,
    /// revoked.
    List,
    /// Revoke a key by id: it is refused from then on, at every hub of the store.
    Revoke { id: String },
}

async fn open_store(args: &KeysArgs) -> anyhow::Result<DynStore> {
    Ok(match &args.store {
        Some(url) => Arc::new(
            cityhub_postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("cannot open the store {}", crate::redact(url)))?,
        ),
        None => Arc::new(
            cityhub_sqlite::SqliteStore::open(&args.data)
                .with_context(|| format!("cannot open the store in {}", args.data.display()))?,
        ),
    })
}

fn expiry(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("--expires {text:?} is no date: give 2027-01-31 or 2027-01-31T12:00:00Z"))?;
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

pub fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = open_store(&args).await?;
        match &args.command {
            KeysCommand::Create { tenant, role, expires, name, rate } => {
                let expires = expires.as_deref().map(expiry).transpose()?;
                if let Some(rate) = rate {
                    if !(rate.is_finite() && *rate > 0.0) {
                        anyhow::bail!("--rate {rate} is not a rate: give requests per second above 0, e.g. 5");
                    }
                }
                let tenant = (tenant != "*").then_some(tenant.as_str());
                let (id, secret) =
                    cityhub_auth::issue_key(store.as_ref(), tenant, *role, expires, name.as_deref(), *rate).await?;
                println!("key {id} issued ({} in {}); it is shown this once:", role, tenant.unwrap_or("every tenant"));
                println!("{secret}");
            }
            KeysCommand::List => {
                for key in cityhub_auth::list_keys(store.as_ref()).await? {
                    println!(
                        "{}\ttenant={}\trole={}\tname={}\tcreated={}\texpires={}\trevoked={}\trate={}",
                        key.id,
                        key.tenant.as_deref().unwrap_or("*"),
                        key.role,
                        key.name.as_deref().unwrap_or("-"),
                        key.created,
                        key.expires.as_deref().unwrap_or("never"),
                        key.revoked.as_deref().unwrap_or("no"),
                        key.rate.map(|r| r.to_string()).unwrap_or_else(|| "default".into()),
                    );
                }
            }
            KeysCommand::Revoke { id } => match cityhub_auth::revoke_key(store.as_ref(), id).await? {
                Some(key) => println!("key {} revoked at {}", key.id, key.revoked.as_deref().unwrap_or("")),
                None => anyhow::bail!("there is no key {id}: see `cityhub keys list`"),
            },
        }
        anyhow::Ok(())
    })
}
