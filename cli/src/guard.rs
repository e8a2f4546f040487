//! The `serve` flags of issue 16's guard: the egress rules (where the hub may send requests)
//! and the audit log.

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
}

impl GuardArgs {
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
