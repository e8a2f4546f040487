//! The tamper-evident history in the binary (issue 22): the `serve` flags of the ledger and the
//! witness, and `cityhub ledger export` / `cityhub ledger verify`.
//!
//! `verify` needs nothing but the export, a signed checkpoint and the hub's verifier key: it
//! recomputes every leaf's hash from its canonical JSON, the tree's root at the checkpoint's
//! size, and names the first bad leaf (a line out of place, or whose content differs from the
//! hash recorded at commit); docs/ledger.md gives the formats.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cityhub_ledger::canon::canonical;
use cityhub_ledger::merkle::{leaf_hash, root, Hash};
use cityhub_ledger::note::{Checkpoint, Verifier};
use cityhub_storage::{DynStore, Store};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// The ledger's signing key (a signed-note signer key, `PRIVATE+KEY+...`); default: ledger.key
    /// in --data, made on first run. Never logged.
    #[arg(long, env = "CITYHUB_LEDGER_KEY")]
    pub ledger_key: Option<PathBuf>,

    /// Seconds a signed checkpoint is served before a grown log gets a new one, signed in the
    /// background (0: every read of GET /ledger/checkpoint signs the current tree); also how
    /// often a witness polls.
    #[arg(long, default_value_t = 10, env = "CITYHUB_LEDGER_CHECKPOINT_SECS")]
    pub ledger_checkpoint_secs: u64,

    /// Leaves the log may grow by before a new checkpoint is signed in the background, however
    /// young the last one (checked every second; 0: only --ledger-checkpoint-secs counts).
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_LEDGER_CHECKPOINT_LEAVES")]
    pub ledger_checkpoint_leaves: u64,

    /// Whether each history row gets its ledger leaf. Off by default: measured in release, the
    /// ledger costs batch upserts about 22 % more hub CPU per request (over the 10 % budget;
    /// partial updates within the noise, bytes written within 7 %; docs/ledger.md). A log with writes
    /// made while it was off misses them for good: turn it on from a hub's first start.
    #[arg(long, default_value = "off", value_parser = ["on", "off"], env = "CITYHUB_LEDGER")]
    pub ledger: String,

    /// Witness another hub's ledger: co-sign its checkpoints when consistent with the last one
    /// co-signed (GET /ledger/witnessed?origin=), refuse them otherwise (repeatable).
    #[arg(long = "witness-of", value_delimiter = ',', env = "CITYHUB_WITNESS_OF")]
    pub witness_of: Vec<String>,
}

impl LedgerArgs {
    /// Turns the embedded store's leaves on or off (before anything is written).
    pub fn apply(&self) {
        cityhub_sqlite::ledger::set_enabled(self.ledger == "on");
    }

    /// The key, the routes' state and the witness.
    pub fn start(
        &self,
        data: &Path,
        alias: &str,
        store: DynStore,
        egress: &cityhub_egress::Egress,
    ) -> anyhow::Result<cityhub_transparency::Ledger> {
        let path = self.ledger_key.clone().unwrap_or_else(|| data.join("ledger.key"));
        let signer = cityhub_transparency::keys::load_or_create(&path, &cityhub_transparency::keys::name_of(alias))
            .map_err(|why| anyhow!(why))?;
        tracing::info!(key = %signer.verifier(), "the ledger signs with this verifier key");
        let every = Duration::from_secs(self.ledger_checkpoint_secs);
        let ledger = cityhub_transparency::Ledger {
            signer: Arc::new(signer),
            checkpoint_every: every,
            checkpoint_leaves: self.ledger_checkpoint_leaves,
        };
        if self.ledger == "on" {
            cityhub_transparency::checkpoints::start(store.clone(), ledger.clone());
        }
        let poll = if every.is_zero() { Duration::from_secs(1) } else { every };
        cityhub_transparency::witness::start(store, ledger.clone(), egress, self.witness_of.clone(), poll);
        Ok(ledger)
    }
}

#[derive(Args, Debug)]
pub struct LedgerCmd {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Write a stopped hub's ledger (one tenant) as NDJSON, one leaf per line, each showing the
    /// history row it records as the store holds it now.
    Export {
        /// The hub's data directory (its embedded store).
        #[arg(long)]
        data: PathBuf,
        /// The tenant (default: the default tenant).
        #[arg(long, default_value = "")]
        tenant: String,
        /// Where to write.
        #[arg(long)]
        to: PathBuf,
    },
    /// Check an export against a signed checkpoint: exit 0 when its first `size` leaves are the
    /// ones the checkpoint's root commits to, else 1 naming the first bad leaf.
    Verify {
        /// The export (NDJSON).
        file: PathBuf,
        /// The signed checkpoint (as GET /ledger/checkpoint answers it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The hub's verifier key (as GET /ledger/key answers it), or a file holding it.
        #[arg(long)]
        key: String,
    },
}

pub fn run(cmd: LedgerCmd) -> anyhow::Result<()> {
    match cmd.command {
        LedgerCommand::Export { data, tenant, to } => export(&data, &tenant, &to),
        LedgerCommand::Verify { file, checkpoint, key } => {
            let summary = verify(&file, &checkpoint, &key)?;
            println!("{summary}");
            Ok(())
        }
    }
}

fn export(data: &Path, tenant: &str, to: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = cityhub_sqlite::SqliteStore::open(data)
            .with_context(|| format!("cannot open the store in {}", data.display()))?;
        let file = std::fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
        let mut out = BufWriter::new(file);
        let mut from = 0u64;
        loop {
            let page = store.ledger_leaves(tenant, from, 1000).await?;
            let Some(last) = page.last() else { break };
            from = last.index + 1;
            for leaf in &page {
                writeln!(out, "{}", cityhub_transparency::api::export_line(leaf)?)?;
            }
        }
        out.flush()?;
        store.close();
        eprintln!("{from} leaves written to {}", to.display());
        Ok(())
    })
}

fn read_key(key: &str) -> anyhow::Result<Verifier> {
    let text = match std::fs::read_to_string(key) {
        Ok(text) => text,
        Err(_) => key.to_owned(),
    };
    Verifier::parse(&text).map_err(|e| anyhow!("--key: {e}"))
}

/// Checks an export; answers a summary, or the first bad leaf as the error.
pub fn verify(file: &Path, checkpoint: &Path, key: &str) -> anyhow::Result<String> {
    let key = read_key(key)?;
    let note = std::fs::read_to_string(checkpoint).with_context(|| format!("cannot read {}", checkpoint.display()))?;
    let (cp, _) = Checkpoint::open(&note, &key).map_err(|e| anyhow!("the checkpoint: {e}"))?;
    let reader =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?);
    let mut hashes: Vec<Hash> = Vec::new();
    let mut first_bad: Option<String> = None;
    for (k, line) in reader.lines().enumerate() {
        let line = line?;
        let bad = |why: String| Some(format!("leaf {k}: {why}"));
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => bail!("leaf {k}: line {} is not JSON ({e})", k + 1),
        };
        let Some(leaf) = value.get("leaf") else { bail!("leaf {k}: line {} has no \"leaf\"", k + 1) };
        let hash = leaf_hash(&canonical(leaf));
        hashes.push(hash);
        if first_bad.is_some() {
            continue;
        }
        match value.get("index").and_then(Value::as_u64) {
            Some(i) if i == k as u64 => {}
            Some(i) => first_bad = bad(format!("line {} holds leaf {i}: a leaf is missing or out of order", k + 1)),
            None => first_bad = bad(format!("line {} has no index", k + 1)),
        }
        if first_bad.is_none() {
            let recorded = value.get("hash").and_then(Value::as_str).and_then(|h| B64.decode(h).ok());
            if recorded.as_deref().is_some_and(|r| r != hash) {
                first_bad = bad("its content differs from what was recorded at commit (changed since)".into());
            }
        }
    }
    let n = hashes.len() as u64;
    if let Some(why) = first_bad {
        bail!("{why}");
    }
    if n < cp.size {
        bail!("leaf {n}: missing (the export holds {n} leaves, the checkpoint covers {})", cp.size);
    }
    if root(&hashes[..cp.size as usize]) != cp.root {
        bail!(
            "the first {} leaves do not add up to the checkpoint's root, though each matches its recorded hash: the export's hashes were rewritten too",
            cp.size
        );
    }
    Ok(format!(
        "ok: the {} leaves of the checkpoint {} verify ({} more after it, not covered)",
        cp.size,
        cp.origin,
        n - cp.size
    ))
}
