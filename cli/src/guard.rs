//! The `serve` flags of issue 16's guard: the egress rules (where the hub may send requests)
//! and the audit log (how long it is kept, how much may wait for the store).

use std::net::SocketAddr;

use cityhub_egress::{Egress, Rule, Rules};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct GuardArgs {
    /// Destinations the hub may send requests to (@contexts, notifications, context sources)
    /// although their kind of address is refused: HOST[:PORT], IP[:PORT], [IPv6]:PORT or CIDR,
    /// comma-separated or repeated. On a hub listening on a non-loopback address, loopback,
    /// link-local (metadata services), private and CGNAT addresses are refused unless allowed
    /// here; on a loopback-only hub, loopback is allowed. The hub's own address never is.
    #[arg(long, value_delimiter = ',', env = "CITYHUB_EGRESS_ALLOW")]
    pub egress_allow: Vec<Rule>,

    /// Destinations the hub never sends requests to, in the form of --egress-allow; deny wins
    /// over allow.
    #[arg(long, value_delimiter = ',', env = "CITYHUB_EGRESS_DENY")]
    pub egress_deny: Vec<Rule>,

    /// Days audit entries (every write and refusal, read at GET /cityhub/v1/audit) are kept;
    /// older ones are deleted hourly.
    #[arg(long, default_value_t = 90, env = "CITYHUB_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: u32,

    /// Audit entries waiting to be stored at most; when the store falls behind, more are dropped
    /// (counted and logged) rather than slowing requests.
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_AUDIT_QUEUE")]
    pub audit_queue: usize,
}

impl GuardArgs {
    /// `--audit-retention-days` as a duration (at least one day).
    pub fn audit_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.audit_retention_days.max(1)) * 86_400)
    }

    /// The egress rules of a hub bound to `listen`.
    pub fn egress(&self, listen: SocketAddr) -> Egress {
        let egress = Egress::new(Rules::new(self.egress_allow.clone(), self.egress_deny.clone(), vec![listen]));
        let mode = if egress.rules().loopback_only() {
            "loopback-only: loopback destinations allowed"
        } else {
            "non-loopback: loopback, link-local, private and CGNAT destinations refused"
        };
        tracing::info!(
            mode,
            allow = ?self.egress_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            deny = ?self.egress_deny.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "egress rules (the hub's own address is always refused)"
        );
        egress
    }
}
