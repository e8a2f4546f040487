//! Throwaway PostgreSQL + PostGIS clusters for cityhub's tests.
//!
//! [`cluster()`] starts one cluster per test process, on first use, and [`Cluster::database`]
//! hands out a fresh, empty database with PostGIS installed, as a connection URL:
//!
//! ```no_run
//! let url = cityhub_pgtest::database(); // postgres://postgres@127.0.0.1:PORT/cityhub_t_...
//! ```
//!
//! How the cluster is made:
//! - `initdb` into a new directory under the temp dir; as the `postgres` user through
//!   `runuser -u postgres --` when the process runs as root (PostgreSQL refuses root; CI runs as
//!   root), as oneself otherwise. Superuser `postgres`, trust authentication, UTF-8, C locale.
//! - The server listens on a free port of 127.0.0.1 only, its unix socket lives in that
//!   directory, `fsync` stays on (tests check durability), buffers are small, JIT is off.
//! - A template database with `CREATE EXTENSION postgis` is made once; every new database is a
//!   copy of it, which costs a file copy instead of loading PostGIS again.
//! - A watchdog (`sh`, in its own process group so Ctrl-C at the terminal reaches only the test)
//!   waits for the test process to end, however it ends (normal exit, panic, `kill -9`), then
//!   stops the server with `pg_ctl stop -m immediate` and removes the directory.
//!
//! `CITYHUB_TEST_PG=postgres://USER@HOST:PORT/DB` uses that server instead (USER must be allowed
//! to create databases; the template `cityhub_pgtest_template` is created there once and reused).
//!
//! Nothing here skips: without PostgreSQL the first call panics and names the Debian packages
//! (`postgresql postgresql-15-postgis-3`). Every failure is a panic, since this serves tests.

use std::future::Future;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Debian packages a missing PostgreSQL or PostGIS is installed from.
pub const DEBIAN_PACKAGES: &str = "postgresql postgresql-15-postgis-3";

/// The environment variable naming a server to use instead of a throwaway cluster.
pub const ENV_SERVER: &str = "CITYHUB_TEST_PG";

const TEMPLATE: &str = "cityhub_pgtest_template";
/// Advisory lock key serialising template creation across processes sharing one server.
const TEMPLATE_LOCK: i64 = 0x6369_7479_6875_6201;

/// What starting the cluster cost, step by step (zero for steps that did not run).
#[derive(Clone, Copy, Debug, Default)]
pub struct StartCost {
    /// `initdb` of the data directory.
    pub initdb: Duration,
    /// `pg_ctl start -w`, until the server accepts connections.
    pub start: Duration,
    /// Creating the PostGIS template database (or finding it present).
    pub template: Duration,
}

impl StartCost {
    pub fn total(&self) -> Duration {
        self.initdb + self.start + self.template
    }
}

/// A running PostgreSQL server that hands out fresh databases.
pub struct Cluster {
    /// `postgres://USER@HOST:PORT` (plus credentials), without a database.
    prefix: String,
    /// The URL's query string including its `?`, or empty.
    query: String,
    /// The database administrative connections use.
    admin_db: String,
    /// Present when this process started the server.
    owned: Option<Owned>,
    cost: StartCost,
    counter: AtomicU64,
}

struct Owned {
    dir: PathBuf,
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster of this test process, started on first use (or the `CITYHUB_TEST_PG` server).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var(ENV_SERVER) {
        Ok(url) if !url.trim().is_empty() => Cluster::external(url.trim()),
        _ => Cluster::throwaway(),
    })
}

/// A fresh, empty database with PostGIS, as a connection URL (see [`Cluster::database`]).
pub fn database() -> String {
    cluster().database()
}

/// Connects to `url` and drives the connection on the current tokio runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cityhub-pgtest: cannot connect to {url}: {e}"));
    tokio::spawn(async move {
        // The connection ends when the client is dropped; an error then is no news.
        let _ = connection.await;
    });
    client
}

impl Cluster {
    /// A fresh, empty database with PostGIS installed, as a connection URL. Blocking (it runs
    /// its statements on a thread of its own, so it may be called from async tests too).
    pub fn database(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Unique across processes and runs that share one server.
        let name = format!("cityhub_t_{}_{}_{n}", std::process::id(), unique_suffix());
        let admin = self.url(&self.admin_db);
        let sql = format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}");
        run_blocking(async move {
            let client = connect(&admin).await;
            // Bounded retry: another process may be connected to the template for a moment
            // (SQLSTATE 55006, object_in_use) while it creates it on a shared server.
            for attempt in 0.. {
                match client.batch_execute(&sql).await {
                    Ok(()) => break,
                    Err(e) if attempt < 100 && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cityhub-pgtest: {sql}: {e}"),
                }
            }
        });
        self.url(&name)
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.prefix, self.query)
    }

    /// What starting this cluster cost.
    pub fn start_cost(&self) -> StartCost {
        self.cost
    }

    /// True when this process started the server (false with `CITYHUB_TEST_PG`).
    pub fn is_throwaway(&self) -> bool {
        self.owned.is_some()
    }

    /// The data directory's parent of a throwaway cluster (removed when the process ends).
    pub fn dir(&self) -> Option<&Path> {
        self.owned.as_ref().map(|o| o.dir.as_path())
    }

    /// The TCP port of a throwaway cluster.
    pub fn port(&self) -> Option<u16> {
        self.owned.as_ref().map(|o| o.port)
    }

    fn external(url: &str) -> Cluster {
        let (prefix, admin_db, query) = split_url(url);
        let mut cluster =
            Cluster { prefix, query, admin_db, owned: None, cost: StartCost::default(), counter: AtomicU64::new(0) };
        let t = Instant::now();
        cluster.ensure_template();
        cluster.cost.template = t.elapsed();
        cluster
    }

    fn throwaway() -> Cluster {
        let bin = find_bindir();
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!("cityhub-pgtest-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cityhub-pgtest: cannot create {}: {e}", dir.display()));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .unwrap_or_else(|e| panic!("cityhub-pgtest: chown: {e}"));
            assert!(
                status.success(),
                "cityhub-pgtest: cannot hand {} to the `postgres` user (is the Debian package \
                 `postgresql` installed? it creates that user): {status}",
                dir.display()
            );
        }
        // Before anything can fail half-way: whatever happens next, the directory goes away
        // (and a server started in it stops) when this process ends.
        spawn_watchdog(&bin, &dir, as_postgres);

        let data = dir.join("data");
        let mut cost = StartCost::default();
        let t = Instant::now();
        let out = pg_command(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"])
            // initdb's own syncs only; the server runs with fsync on.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cityhub-pgtest: cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "cityhub-pgtest: initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cost.initdb = t.elapsed();

        let conf = format!(
            "\n# cityhub-pgtest\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nshared_buffers = 32MB\nmax_connections = 300\n\
             jit = off\nlogging_collector = off\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);

        let t = Instant::now();
        let log = dir.join("server.log");
        // A port found free may be taken before the server binds it: a bounded retry.
        let mut port = 0;
        for attempt in 0..5 {
            port = free_port();
            let status = pg_command(&bin, "pg_ctl", as_postgres)
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!("-p {port}"))
                // The server must not hold the test harness's pipes open.
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cityhub-pgtest: cannot run pg_ctl: {e}"));
            if status.success() {
                break;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                attempt < 4 && text.contains("could not bind"),
                "cityhub-pgtest: pg_ctl start failed ({status}); server log:\n{text}"
            );
        }
        cost.start = t.elapsed();

        let mut cluster = Cluster {
            prefix: format!("postgres://postgres@127.0.0.1:{port}"),
            query: String::new(),
            admin_db: "postgres".into(),
            owned: Some(Owned { dir, port }),
            cost,
            counter: AtomicU64::new(0),
        };
        let t = Instant::now();
        cluster.ensure_template();
        cluster.cost.template = t.elapsed();
        cluster
    }

    /// Creates the PostGIS template database unless it is there (under an advisory lock, so
    /// that processes sharing one server make it once).
    fn ensure_template(&self) {
        let admin = self.url(&self.admin_db);
        let template = self.url(TEMPLATE);
        run_blocking(async move {
            let client = connect(&admin).await;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
                .await
                .unwrap_or_else(|e| panic!("cityhub-pgtest: advisory lock: {e}"));
            let present = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE])
                .await
                .unwrap_or_else(|e| panic!("cityhub-pgtest: pg_database: {e}"))
                .is_some();
            if !present {
                client
                    .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                    .await
                    .unwrap_or_else(|e| panic!("cityhub-pgtest: CREATE DATABASE {TEMPLATE}: {e}"));
                let t = connect(&template).await;
                t.batch_execute("CREATE EXTENSION IF NOT EXISTS postgis").await.unwrap_or_else(|e| {
                    panic!(
                        "cityhub-pgtest: CREATE EXTENSION postgis failed ({e}); is PostGIS \
                             installed? Debian: apt-get install {DEBIAN_PACKAGES}"
                    )
                });
                drop(t);
            }
            // Closing the client releases the lock. The template's own connection is closed
            // first: a database being copied must have no other session.
        });
    }
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own, so that it works the
/// same from synchronous code and from inside a tokio runtime.
fn run_blocking<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cityhub-pgtest: tokio runtime: {e}"));
        let out = rt.block_on(f);
        // Let the connection tasks see their clients dropped before the runtime goes.
        rt.shutdown_timeout(Duration::from_secs(1));
        out
    });
    match handle.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Splits `postgres://auth@host:port/db?query` into its prefix, database and query string.
fn split_url(url: &str) -> (String, String, String) {
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], url[i..].to_string()),
        None => (url, String::new()),
    };
    let authority_start = base
        .find("://")
        .map(|i| i + 3)
        .unwrap_or_else(|| panic!("cityhub-pgtest: {ENV_SERVER}={url} is not a postgres://USER@HOST:PORT/DB URL"));
    match base[authority_start..].find('/') {
        Some(i) => {
            let cut = authority_start + i;
            let db = &base[cut + 1..];
            let db = if db.is_empty() { "postgres" } else { db };
            (base[..cut].to_string(), db.to_string(), query)
        }
        None => (base.to_string(), "postgres".to_string(), query),
    }
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective user.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `CITYHUB_PG_BIN`, else the newest
/// Debian `/usr/lib/postgresql/N/bin`, else `PATH`.
fn find_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("CITYHUB_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("initdb").exists(), "cityhub-pgtest: CITYHUB_PG_BIN={} has no initdb", dir.display());
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return dir;
            }
        }
    }
    panic!(
        "cityhub-pgtest: no PostgreSQL found (initdb neither in /usr/lib/postgresql/*/bin nor \
         on PATH). Install it: apt-get install {DEBIAN_PACKAGES} (Debian), or point \
         {ENV_SERVER}=postgres://USER@HOST:PORT/DB at a server with PostGIS"
    )
}

fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

/// Starts the watchdog that stops the server and removes `dir` once this process has ended.
fn spawn_watchdog(bin: &Path, dir: &Path, as_postgres: bool) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        "runuser -u postgres -- \"$2\" stop -D \"$3/data\" -m immediate"
    } else {
        "\"$2\" stop -D \"$3/data\" -m immediate"
    };
    // The outer shell starts the loop in the background and exits at once: the watchdog is
    // then no child of this process (nothing to reap) and outlives it, reparented to init.
    let script = format!(
        "(while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
         if [ -f \"$3/data/postmaster.pid\" ]; then {stop} >/dev/null 2>&1; fi; \
         rm -rf \"$3\") </dev/null >/dev/null 2>&1 &"
    );
    use std::os::unix::process::CommandExt;
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("cityhub-pgtest-watchdog")
        .arg(std::process::id().to_string())
        .arg(&pg_ctl)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C meant for the tests must not kill the cleanup.
        .process_group(0)
        .status()
        .unwrap_or_else(|e| panic!("cityhub-pgtest: cannot start the watchdog: {e}"));
    assert!(status.success(), "cityhub-pgtest: the watchdog did not start: {status}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cityhub-pgtest: no free port on 127.0.0.1: {e}"))
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cityhub-pgtest: cannot write {}: {e}", path.display()));
}

fn unique_suffix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64 % 1_000_000_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_prefix_database_and_query() {
        assert_eq!(
            split_url("postgres://u:p@h:5/db?sslmode=disable"),
            ("postgres://u:p@h:5".into(), "db".into(), "?sslmode=disable".into())
        );
        assert_eq!(split_url("postgres://u@h:5"), ("postgres://u@h:5".into(), "postgres".into(), String::new()));
        assert_eq!(split_url("postgresql://u@h/"), ("postgresql://u@h".into(), "postgres".into(), String::new()));
    }

    #[tokio::test]
    async fn two_fresh_databases_with_postgis() {
        let cluster = cluster();
        let cost = cluster.start_cost();
        eprintln!(
            "cityhub-pgtest: cluster start {:?} (initdb {:?}, start {:?}, template {:?})",
            cost.total(),
            cost.initdb,
            cost.start,
            cost.template
        );
        let t = Instant::now();
        let a = cluster.database();
        let per_db = t.elapsed();
        let b = cluster.database();
        eprintln!("cityhub-pgtest: one database {per_db:?}");
        assert_ne!(a, b);
        if let Some(port) = cluster.port() {
            assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{port}/")), "{a}");
        }

        let ca = connect(&a).await;
        let cb = connect(&b).await;
        for c in [&ca, &cb] {
            let v: String = c.query_one("SELECT postgis_version()", &[]).await.unwrap().get(0);
            assert!(v.starts_with('3'), "PostGIS 3 expected, got {v}");
            let fsync: String = c.query_one("SHOW fsync", &[]).await.unwrap().get(0);
            assert_eq!(fsync, "on");
        }
        // Fresh and separate: a table made in one is not in the other.
        ca.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)").await.unwrap();
        let x: i32 = ca.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
        assert_eq!(x, 7);
        let err = cb.query_one("SELECT x FROM t", &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE), "{err}");
        // Geography distance in metres, as the backend's `near` will use.
        let d: f64 = cb
            .query_one(
                "SELECT ST_Distance('SRID=4326;POINT(0 0)'::geography, \
                 'SRID=4326;POINT(0 0.001)'::geography)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!((d - 110.57).abs() < 1.0, "{d}");
    }

    #[test]
    fn listens_on_loopback_only() {
        let cluster = cluster();
        let Some(port) = cluster.port() else {
            eprintln!("cityhub-pgtest: {ENV_SERVER} server, not checked");
            return;
        };
        let url = cluster.url("postgres");
        let addr: String = run_blocking(async move {
            let c = connect(&url).await;
            c.query_one("SHOW listen_addresses", &[]).await.unwrap().get(0)
        });
        assert_eq!(addr, "127.0.0.1");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
}
