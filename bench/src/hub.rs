//! The hub under test: built with cargo, run as a child process on a fresh data directory (and,
//! on PostgreSQL, a fresh database), observed through /proc (and the database's own size).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Builds the `cityhub` binary with the given cargo profile and answers its path, as cargo
/// reports it (so CARGO_TARGET_DIR and any build.target-dir setting are respected).
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    // Set by `cargo run`; the compile-time value covers running the binary directly.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", "cityhub", "--bin", "cityhub", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest);
    if release {
        command.arg("--release");
    }
    eprintln!("building the hub: {command:?}");
    let output = command.stderr(Stdio::inherit()).output().context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build of the hub failed ({})", output.status);
    }
    let messages = String::from_utf8_lossy(&output.stdout);
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cityhub")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no cityhub executable")
}

/// What the hub process has consumed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    /// Bytes the process caused to be written to storage.
    pub written: u64,
}

impl Usage {
    /// What two processes consumed together.
    pub fn plus(self, other: Usage) -> Usage {
        Usage { cpu: self.cpu + other.cpu, written: self.written + other.written }
    }

    pub fn since(self, earlier: Usage) -> Usage {
        Usage { cpu: self.cpu.saturating_sub(earlier.cpu), written: self.written.saturating_sub(earlier.written) }
    }
}

/// A running hub; stopped with SIGTERM (and killed if it does not stop) when dropped.
pub struct Hub {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// The `--store` URL of a hub on PostgreSQL; None on SQLite (the store is in `data`).
    pub store: Option<String>,
}

impl Hub {
    pub fn start(bin: &Path, data: &Path, store: Option<&str>) -> anyhow::Result<Hub> {
        Hub::start_with(bin, data, store, &[])
    }

    /// [`Hub::start`] with more `serve` flags.
    pub fn start_with(bin: &Path, data: &Path, store: Option<&str>, extra: &[&str]) -> anyhow::Result<Hub> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(store.iter().flat_map(|url| ["--store", url]))
            .args(["--log", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the address line, then keeps draining so the hub never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("cityhub listening on http://") {
                    let _ = tx.send(url.trim_end_matches("/ngsi-ld/v1").to_owned());
                }
            }
        });
        let mut hub = Hub {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: data.to_path_buf(),
            store: store.map(str::to_owned),
        };
        let announced = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(announced) => announced,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the hub closed its output without announcing its address")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("the hub did not announce its address in 60 s"),
        };
        hub.addr = announced.parse().with_context(|| format!("the hub announced {announced:?}"))?;
        Ok(hub)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes (VmRSS).
    pub fn rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmRSS:").map(|kib| kib * 1024)
    }

    /// Peak resident set size in bytes (VmHWM).
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// CPU time and disk writes of the hub so far; the difference over a run says how busy the
    /// hub was and how much it wrote per request, which tells CPU-bound from I/O-bound.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces; the fields after it are fixed (proc(5)): utime and
        // stime are the 12th and 13th after the closing parenthesis.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("cannot read /proc/PID/stat");
        // SAFETY: sysconf only reads a configuration value.
        #[allow(unsafe_code, reason = "libc::sysconf has no safe wrapper in std")]
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
        let cpu = Duration::from_secs_f64((ticks(11)? + ticks(12)?) as f64 / per_second as f64);
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid()))?;
        let written = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no write_bytes in /proc/PID/io")?;
        Ok(Usage { cpu, written })
    }

    /// Bytes of all the files in the data directory (database, WAL, shared memory); on
    /// PostgreSQL, the database's size (`pg_database_size`).
    pub fn disk_bytes(&self) -> anyhow::Result<u64> {
        match &self.store {
            Some(url) => pg_database_bytes(url),
            None => dir_bytes(&self.data, &|_| true),
        }
    }

    /// Bytes of the SQLite write-ahead logs in the data directory: they grow between
    /// checkpoints, so they are reported apart from the database itself. 0 on PostgreSQL,
    /// whose WAL belongs to the whole cluster.
    pub fn wal_bytes(&self) -> anyhow::Result<u64> {
        match &self.store {
            Some(_) => Ok(0),
            None => dir_bytes(&self.data, &|name| name.ends_with("-wal")),
        }
    }

    /// Stops the hub with SIGTERM, as an operator would, and waits up to 30 s for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("the hub had already exited");
        }
        let pid = libc::pid_t::try_from(self.pid())?;
        // SAFETY: sends a signal to our own child, whose pid is not reaped before `wait` below.
        #[allow(unsafe_code, reason = "std has no way to send SIGTERM to a child")]
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            bail!("cannot signal the hub: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() { Ok(()) } else { bail!("the hub exited with {status}") };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the hub did not stop within 30 s of SIGTERM; killed")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read /proc/PID/status")?;
    let line =
        status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line[field.len()..].trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("cannot read {line:?}"))
}

/// The size of the database `url` names, asked on a thread of its own (callers are async).
fn pg_database_bytes(url: &str) -> anyhow::Result<u64> {
    let url = url.to_owned();
    let asked = std::thread::spawn(move || -> anyhow::Result<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .with_context(|| format!("cannot connect to {url}"))?;
            let driver = tokio::spawn(connection);
            let row = client.query_one("SELECT pg_database_size(current_database())", &[]).await?;
            drop(client);
            if let Ok(Err(e)) = driver.await {
                eprintln!("the size query's connection ended with an error: {e}");
            }
            let bytes: i64 = row.get(0);
            Ok(u64::try_from(bytes)?)
        })
    });
    asked.join().map_err(|_| anyhow::anyhow!("the database size query panicked"))?
}

fn dir_bytes(dir: &Path, counts: &dyn Fn(&str) -> bool) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path(), counts)?;
        } else if counts(&entry.file_name().to_string_lossy()) {
            total += meta.len();
        }
    }
    Ok(total)
}

/// What the report says about the machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().map(|l| l.trim_start_matches("MemTotal:").trim().to_owned()))
        .unwrap_or_default();
    format!("{cores} cores ({model}), {mem} RAM")
}
