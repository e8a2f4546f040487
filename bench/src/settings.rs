//! The settings of a run: how hard, how long and what to load. A leaf module: every other module
//! of the bench reads it, and it reads only `load::Limits`.

use std::time::Duration;

use crate::load::Limits;

/// How hard and how long to load.
#[derive(Debug, Clone)]
pub struct Settings {
    pub closed: Limits,
    /// A closed-loop run against the hub before each measured one, not recorded: warms the
    /// hub's caches and lets the machine settle.
    pub warmup: Duration,
    pub open: Limits,
    /// The open-loop rate, as a fraction of the hub's closed-loop throughput.
    pub open_fraction: f64,
    /// Store sizes to seed and query, ascending; the last is the size of the memory measurement
    /// and of the scenarios after the queries.
    pub sizes: Vec<u64>,
    /// Scenario families to run (all when empty).
    pub only: Vec<String>,
    /// Temperature instances in the history of each of the temporal scenarios' entities.
    pub history_per_entity: u64,
    /// Connections used to seed.
    pub seed_connections: usize,
    /// The hub's default body limit, which the ceiling copies.
    pub max_body_bytes: usize,
    /// Updates per second of the notification scenarios (open loop).
    pub notify_rate: f64,
    /// How long the notification scenarios wait for the last notifications after the last update.
    pub notify_drain: Duration,
}

impl Settings {
    pub fn wants(&self, family: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == family)
    }
}

/// Where the hubs of a pass store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The embedded SQLite store in the hub's `--data` directory (the hub's default).
    Sqlite,
    /// PostgreSQL: every hub phase gets a fresh database (`cityhub_pgtest`), on a throwaway
    /// cluster started by the bench (`None`) or on the server of the given URL, whose user may
    /// create databases.
    Postgres(Option<String>),
}

impl Store {
    /// `sqlite`, `postgres` (a throwaway cluster) or `postgres://USER@HOST:PORT/DB`.
    pub fn parse(text: &str) -> Result<Store, String> {
        match text {
            "sqlite" => Ok(Store::Sqlite),
            "postgres" | "postgresql" => Ok(Store::Postgres(None)),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(Some(url.to_owned())))
            }
            other => Err(format!("--store {other:?}: use sqlite, postgres or postgres://USER@HOST:PORT/DB")),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_named_or_given_by_url() {
        assert_eq!(Store::parse("sqlite"), Ok(Store::Sqlite));
        assert_eq!(Store::parse("postgres"), Ok(Store::Postgres(None)));
        let url = "postgres://postgres@127.0.0.1:5499/x";
        assert_eq!(Store::parse(url), Ok(Store::Postgres(Some(url.into()))));
        let why = Store::parse("mysql://x").unwrap_err();
        assert!(why.contains("use sqlite, postgres or postgres://"), "{why}");
    }
}
