//! `cityhub backup` and `cityhub restore`: one point in time of a hub's store in one file, taken
//! while the hub runs, and put back into a new data directory or database.
//!
//! # What is copied
//!
//! - Embedded store (`--data DIR`): `VACUUM INTO` on a connection of its own to
//!   `DIR/cityhub.sqlite`. It reads inside one read transaction, so it copies exactly what was
//!   committed when it began — the hub commits every `Store::modify` call (a whole batch) in one
//!   transaction, so a batch is in the copy whole or not at all — while the hub goes on writing
//!   (WAL: readers and the writer do not block each other).
//! - PostgreSQL (`--store postgres://...`): `pg_dump --format=custom` of the database, which
//!   reads everything in one REPEATABLE READ snapshot (the same point-in-time guarantee); restored
//!   with `pg_restore --single-transaction` (all or nothing).
//!
//! # The file
//!
//! A text header, then the payload (the SQLite database file or the pg_dump archive):
//!
//! ```text
//! CITYHUB-BACKUP 1
//! backend: sqlite
//! created: 2026-12-01T18:30:00Z
//! bytes: 123456
//! sha256: <64 hex digits of the payload>
//!
//! <payload>
//! ```
//!
//! `restore` reads the whole payload and checks its length and SHA-256 before it writes
//! anything: a file that does not match is refused (exit 1) and the target is left as it was. A
//! target that holds anything (a non-empty directory, a database with tables) is refused unless
//! `--force`. The file is written beside `--to` under a temporary name and renamed when whole,
//! so an interrupted backup never leaves a file that looks complete.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Args;
use sha2::{Digest, Sha256};

const MAGIC: &str = "CITYHUB-BACKUP 1";

#[derive(Args)]
pub struct BackupArgs {
    /// The hub's data directory (embedded store), as given to `cityhub serve --data`. The hub may
    /// be running.
    #[arg(long, conflicts_with = "store", required_unless_present = "store")]
    data: Option<PathBuf>,

    /// The hub's PostgreSQL store instead: postgres://USER[:PASSWORD]@HOST[:PORT]/DB (pg_dump
    /// must be installed).
    #[arg(long)]
    store: Option<String>,

    /// The backup file to write (replaced if it exists).
    #[arg(long)]
    to: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup file, as written by `cityhub backup`.
    #[arg(long)]
    from: PathBuf,

    /// The data directory to restore an embedded-store backup into (new or empty; the hub on it
    /// must not be running).
    #[arg(long, conflicts_with = "store", required_unless_present = "store")]
    data: Option<PathBuf>,

    /// The PostgreSQL database to restore a PostgreSQL backup into (empty; pg_restore must be
    /// installed).
    #[arg(long)]
    store: Option<String>,

    /// Restore over a target that already holds a store (its contents are replaced).
    #[arg(long)]
    force: bool,
}

/// What a backup file says of itself.
struct Header {
    backend: String,
    bytes: u64,
    sha256: String,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let parent = args.to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = args.to.file_name().context("--to must name a file")?.to_string_lossy().into_owned();
    let payload = parent.join(format!(".{name}.payload-{}", std::process::id()));
    let _ = std::fs::remove_file(&payload);
    let backend = match (&args.data, &args.store) {
        (Some(dir), _) => {
            snapshot_sqlite(dir, &payload)?;
            "sqlite"
        }
        (None, Some(url)) => {
            let out = Command::new(pg_tool("pg_dump"))
                .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(&payload)
                .args(["--dbname", url])
                .output()
                .context(
                    "cannot run pg_dump (install the PostgreSQL client tools, e.g. apt-get install postgresql-client)",
                )?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&payload);
                bail!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            "postgres"
        }
        (None, None) => bail!("give --data DIR (embedded store) or --store postgres://... (PostgreSQL)"),
    };
    let written = write_file(&payload, &args.to, backend);
    let _ = std::fs::remove_file(&payload);
    let (bytes, sha) = written?;
    println!("backup of the {backend} store written to {}: {bytes} bytes, sha256 {sha}", args.to.display());
    Ok(())
}

/// `VACUUM INTO`: one read transaction, a compact copy.
fn snapshot_sqlite(dir: &Path, into: &Path) -> anyhow::Result<()> {
    let db = dir.join("cityhub.sqlite");
    if !db.is_file() {
        bail!("--data {}: no hub store there (no cityhub.sqlite): give the hub's --data directory", dir.display());
    }
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = into.to_str().context("the --to path must be valid UTF-8")?;
    conn.execute("VACUUM INTO ?1", [target]).with_context(|| format!("cannot copy {}", db.display()))?;
    Ok(())
}

/// Writes header + payload to a temporary name beside `to`, then renames it.
fn write_file(payload: &Path, to: &Path, backend: &str) -> anyhow::Result<(u64, String)> {
    let (bytes, sha) = digest(&mut File::open(payload)?, u64::MAX)?;
    let partial = to.with_extension("partial");
    let mut out = File::create(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
    let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    write!(out, "{MAGIC}\nbackend: {backend}\ncreated: {created}\nbytes: {bytes}\nsha256: {sha}\n\n")?;
    std::io::copy(&mut File::open(payload)?, &mut out)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
    Ok((bytes, sha))
}

/// The length and SHA-256 (hex) of at most `limit` bytes of `r`.
fn digest(r: &mut impl Read, limit: u64) -> anyhow::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut r) = (0u64, r.take(limit));
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, hex))
}

fn read_header(r: &mut impl BufRead, from: &Path) -> anyhow::Result<Header> {
    let not_ours = || format!("{} is not a cityhub backup (it does not start with {MAGIC:?})", from.display());
    let mut line = String::new();
    let mut next = |line: &mut String| -> anyhow::Result<String> {
        line.clear();
        r.take(4096).read_line(line)?;
        Ok(line.trim_end_matches('\n').to_owned())
    };
    if next(&mut line).ok().as_deref() != Some(MAGIC) {
        bail!(not_ours());
    }
    let (mut backend, mut bytes, mut sha256) = (None, None, None);
    loop {
        let l = next(&mut line)?;
        if l.is_empty() {
            break;
        }
        match l.split_once(": ") {
            Some(("backend", v)) => backend = Some(v.to_owned()),
            Some(("bytes", v)) => bytes = v.parse::<u64>().ok(),
            Some(("sha256", v)) => sha256 = Some(v.to_owned()),
            Some(("created", _)) => {}
            _ => bail!("{}: its header is damaged (line {l:?}): the file is corrupted", from.display()),
        }
    }
    match (backend, bytes, sha256) {
        (Some(backend), Some(bytes), Some(sha256)) => Ok(Header { backend, bytes, sha256 }),
        _ => bail!("{}: its header lacks backend, bytes or sha256: the file is corrupted", from.display()),
    }
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<(Header, BufReader<File>)> {
        let mut r =
            BufReader::new(File::open(&args.from).with_context(|| format!("cannot open {}", args.from.display()))?);
        let header = read_header(&mut r, &args.from)?;
        Ok((header, r))
    };
    // First pass: the whole payload checked before anything is written.
    let (header, mut r) = open()?;
    let (bytes, sha) = digest(&mut r, u64::MAX)?;
    if bytes != header.bytes || sha != header.sha256 {
        bail!(
            "{} is corrupted: its payload is {bytes} bytes with sha256 {sha}, its header says {} bytes with sha256 {}; \
             nothing was restored (take the backup again or use another copy)",
            args.from.display(),
            header.bytes,
            header.sha256
        );
    }
    match (header.backend.as_str(), &args.data, &args.store) {
        ("sqlite", Some(dir), _) => restore_sqlite(&args, dir, open()?.1),
        ("postgres", _, Some(url)) => restore_postgres(&args, url, open()?.1),
        ("sqlite", None, _) => {
            bail!("{} is a backup of an embedded store: restore it with --data DIR", args.from.display())
        }
        ("postgres", _, None) => {
            bail!("{} is a backup of a PostgreSQL store: restore it with --store postgres://...", args.from.display())
        }
        (other, _, _) => bail!("{}: unknown backend {other:?} in its header", args.from.display()),
    }?;
    println!("restored {} ({} bytes, sha256 checked)", args.from.display(), header.bytes);
    Ok(())
}

fn restore_sqlite(args: &RestoreArgs, dir: &Path, mut payload: BufReader<File>) -> anyhow::Result<()> {
    let held = std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0);
    if held > 0 && !args.force {
        bail!(
            "--data {} is not empty ({held} entries): restore into a new directory, or give --force to replace \
             the store there (stop its hub first)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let partial = dir.join("cityhub.sqlite.restoring");
    let mut out = File::create(&partial)?;
    std::io::copy(&mut payload, &mut out)?;
    out.sync_all()?;
    drop(out);
    let check = rusqlite::Connection::open(&partial)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0)));
    match check {
        Ok(ok) if ok == "ok" => {}
        other => {
            let _ = std::fs::remove_file(&partial);
            bail!("the restored database fails SQLite's integrity check ({other:?}); nothing was restored");
        }
    }
    for stale in ["cityhub.sqlite-wal", "cityhub.sqlite-shm", "cityhub.sqlite"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    std::fs::rename(&partial, dir.join("cityhub.sqlite"))?;
    Ok(())
}

fn restore_postgres(args: &RestoreArgs, url: &str, mut payload: BufReader<File>) -> anyhow::Result<()> {
    let out = Command::new(pg_tool("psql"))
        .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys'")
        .arg(url)
        .output()
        .context("cannot run psql (install the PostgreSQL client tools)")?;
    if !out.status.success() {
        bail!("cannot read the --store database: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let tables: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    if tables > 0 && !args.force {
        bail!(
            "the --store database is not empty ({tables} tables): restore into a new database, or give --force to \
             replace what it holds (stop its hubs first)"
        );
    }
    let archive = std::env::temp_dir().join(format!("cityhub-restore-{}.dump", std::process::id()));
    let mut file = File::create(&archive)?;
    std::io::copy(&mut payload, &mut file)?;
    drop(file);
    let out = if args.force && tables > 0 {
        // `pg_restore --clean` cannot drop the partitions of the history table one by one, so the
        // old store goes whole: its schema dropped, then the archive's SQL, in ONE transaction.
        let script = archive.with_extension("sql");
        let made = Command::new(pg_tool("pg_restore"))
            .args(["--no-owner", "--no-privileges", "--file"])
            .arg(&script)
            .arg(&archive)
            .output()
            .context("cannot run pg_restore");
        let run = made.and_then(|made| {
            if !made.status.success() {
                bail!("pg_restore cannot read the archive: {}", String::from_utf8_lossy(&made.stderr).trim());
            }
            let mut sql = b"DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n".to_vec();
            sql.extend(std::fs::read(&script)?);
            std::fs::write(&script, sql)?;
            Command::new(pg_tool("psql"))
                .args(["-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&script)
                .arg(url)
                .output()
                .context("cannot run psql")
        });
        let _ = std::fs::remove_file(&script);
        run
    } else {
        Command::new(pg_tool("pg_restore"))
            .args(["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--dbname", url])
            .arg(&archive)
            .output()
            .context("cannot run pg_restore")
    };
    let _ = std::fs::remove_file(&archive);
    let out = out?;
    if !out.status.success() {
        bail!(
            "the restore failed (nothing was restored: one transaction): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A PostgreSQL client tool: the newest Debian `/usr/lib/postgresql/N/bin` has it, else PATH.
fn pg_tool(name: &str) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let tool = e.path().join("bin").join(name);
            tool.exists().then_some((v, tool))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| PathBuf::from(name), |(_, tool)| tool)
}
