//! `cityhub migrate --from DIR --to postgres://...`: copies a hub's whole embedded store into a
//! fresh PostgreSQL database, then checks the copy.
//!
//! The hub on `DIR` must be stopped. The copy goes section by section
//! ([`cityhub_storage::dump::Section::ALL`]: tenants, contexts, entities, history, subscriptions
//! with their delivery status, registrations, pending notifications, unconsumed journal), one
//! page per transaction, under a progress bar on stderr. Then it compares the number of items of
//! every section on both sides and, item by item, the first `--sample` items of each (both stores
//! export in the same order); any difference is listed and the command exits non-zero. A target
//! that already holds anything is refused before anything is written.

use std::path::PathBuf;

use anyhow::Context as _;
use cityhub_postgres::PostgresStore;
use cityhub_sqlite::SqliteStore;
use cityhub_storage::dump::{Dump, Dumped, Section};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Args)]
pub struct MigrateArgs {
    /// The data directory of the (stopped) hub to copy, as given to `cityhub serve --data`.
    #[arg(long)]
    from: PathBuf,

    /// The PostgreSQL database to copy into (empty; the schema is created):
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
    #[arg(long, env = "CITYHUB_STORE")]
    to: String,

    /// Items per transaction.
    #[arg(long, default_value_t = 500)]
    batch: usize,

    /// Items of each section compared one by one after the copy (all of them when 0).
    #[arg(long, default_value_t = 1000)]
    sample: usize,
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    if !args.from.join("cityhub.sqlite").is_file() {
        anyhow::bail!(
            "--from {}: no hub store there (no cityhub.sqlite): give the hub's --data directory",
            args.from.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let source = SqliteStore::open(&args.from)
            .with_context(|| format!("cannot open the store in {}", args.from.display()))?;
        let target = PostgresStore::connect(&args.to).await.context("cannot connect to the --to database")?;
        for section in Section::ALL {
            let held = target.dump_count(section).await?;
            if held > 0 {
                anyhow::bail!(
                    "the --to database is not empty (it holds {held} {}): migrate into a new, empty database",
                    section.name()
                );
            }
        }
        let mut counts = Vec::new();
        for section in Section::ALL {
            counts.push(source.dump_count(section).await?);
        }
        let bar = ProgressBar::with_draw_target(Some(counts.iter().sum()), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} items, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        for section in Section::ALL {
            bar.set_message(section.name());
            let mut after = None;
            loop {
                let page = source.export(section, after.take(), args.batch.max(1)).await?;
                let n = page.items.len() as u64;
                if n > 0 {
                    target.import(page.items).await.with_context(|| format!("cannot copy the {}", section.name()))?;
                }
                bar.inc(n);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        bar.finish_with_message("copied");

        let mut differences = Vec::new();
        println!("{:<14} {:>10} {:>10}", "section", "source", "copy");
        for (section, &expected) in Section::ALL.iter().zip(&counts) {
            let copied = target.dump_count(*section).await?;
            println!("{:<14} {expected:>10} {copied:>10}", section.name());
            if copied != expected {
                differences.push(format!("{}: {expected} in the source, {copied} in the copy", section.name()));
            }
            differences.extend(compare(&source, &target, *section, args.sample).await?);
        }
        if !differences.is_empty() {
            for d in &differences {
                eprintln!("difference: {d}");
            }
            anyhow::bail!("the copy differs from the source in {} place(s)", differences.len());
        }
        println!(
            "the copy holds the same items as the source (counts of every section, {} compared one by one)",
            if args.sample == 0 { "all items".to_owned() } else { format!("up to {} items per section", args.sample) }
        );
        anyhow::Ok(())
    })
}

/// The first `sample` items (0: all) of a section on both sides, compared in order.
async fn compare(
    source: &SqliteStore,
    target: &PostgresStore,
    section: Section,
    sample: usize,
) -> anyhow::Result<Vec<String>> {
    let (mut a, mut b) = (read(source, section, sample).await?, read(target, section, sample).await?);
    let mut differences = Vec::new();
    if a.len() != b.len() {
        differences.push(format!(
            "{}: {} items read from the source, {} from the copy",
            section.name(),
            a.len(),
            b.len()
        ));
    }
    for (i, (x, y)) in a.drain(..).zip(b.drain(..)).enumerate() {
        if x.comparable() != y.comparable() {
            differences.push(format!("{} item {i}: {x:?} became {y:?}", section.name()));
            if differences.len() >= 10 {
                break;
            }
        }
    }
    Ok(differences)
}

async fn read(store: &dyn Dump, section: Section, sample: usize) -> anyhow::Result<Vec<Dumped>> {
    let (mut items, mut after) = (Vec::new(), None);
    loop {
        let want = if sample == 0 { 500 } else { (sample - items.len()).min(500) };
        if want == 0 {
            return Ok(items);
        }
        let page = store.export(section, after.take(), want).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(items),
        }
    }
}
