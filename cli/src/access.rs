//! The `serve` flags of access control (issue 16 item 2): whose credentials a request forwarded
//! to a context source carries.

use cityhub_http::FederationAuth;

#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// Whose credentials a request forwarded to a context source carries: `caller` (the
    /// caller's own Authorization / X-API-Key, so the source decides on the caller) or `hub`
    /// (the hub's, --federation-token).
    #[arg(long, value_enum, default_value = "caller", env = "CITYHUB_FEDERATION_AUTH")]
    federation_auth: Forwarded,

    /// With --federation-auth hub: the bearer token the hub sends to context sources.
    #[arg(long, env = "CITYHUB_FEDERATION_TOKEN", hide_env_values = true)]
    federation_token: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    Caller,
    Hub,
}

impl AccessArgs {
    pub fn federation_auth(&self) -> anyhow::Result<FederationAuth> {
        match (self.federation_auth, &self.federation_token) {
            (Forwarded::Caller, Some(_)) => {
                anyhow::bail!("--federation-token is sent only with --federation-auth hub: give both, or neither")
            }
            (Forwarded::Caller, None) => Ok(FederationAuth::Caller),
            (Forwarded::Hub, token) => Ok(FederationAuth::Hub { token: token.clone() }),
        }
    }
}
