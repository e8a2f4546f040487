//! Subscriptions and notifications (clauses 5.2.12, 5.3, 5.8, 5.11): the Subscription data type
//! (`subscription`, pure), what a change notifies (`matching`, pure; `csource` for the
//! registrations csource subscriptions watch), the notifier that tails the
//! store's change journal into per-endpoint outboxes (`notifier`), and sending (`delivery`: HTTP
//! and MQTT).
//!
//! Delivery is at least once: a change and its journal entry commit together; the journal entries
//! and the outbox rows they produce are exchanged in one commit with the notifier's cursor; an
//! outbox row goes only once its notification was delivered (or given up and counted).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod csource;
pub mod delivery;
pub mod matching;
pub mod notifier;
pub mod subscription;

pub use csource::TriggerReason;
pub use matching::Compiled;
pub use notifier::{Audience, ContextResolver, Notifier, NotifyConfig, LEASE};
pub use subscription::{Subscriber, Subscription};
