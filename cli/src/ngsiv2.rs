//! `cityhub import --from-ngsiv2 URL`: copies an Orion NGSIv2 broker's entities.

use crate::import::{ImportArgs, Outcome, Sink};

pub async fn copy(_args: &ImportArgs, _url: &str, _sink: &Sink) -> anyhow::Result<Outcome> {
    anyhow::bail!("--from-ngsiv2 is not built yet")
}
