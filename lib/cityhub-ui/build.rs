//! Builds the browser UI (`ui/` at the workspace root) with npm into `OUT_DIR/dist`, which
//! `src/lib.rs` embeds. Cheap when nothing changed: cargo reruns this only when a file under
//! `ui/src`, `ui/index.html`, `ui/package.json`, `ui/package-lock.json` or `ui/vite.config.js`
//! changed; `npm ci` runs only when `ui/node_modules` is missing or older than the lockfile.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let ui = manifest.join("../../ui");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("dist");
    for watched in ["src", "public", "index.html", "package.json", "package-lock.json", "vite.config.js"] {
        println!("cargo:rerun-if-changed={}", ui.join(watched).display());
    }
    if let Err(why) = build(&ui, &out) {
        panic!(
            "cityhub-ui: the browser UI could not be built: {why}\n\
             The UI in ui/ is built with Node.js 20+ and npm (Debian: apt-get install nodejs npm). \
             Run `cd ui && npm ci && npm run build` to see the whole error."
        );
    }
}

fn build(ui: &Path, out: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    match Command::new(npm).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("npm was not found on PATH".into()),
    }
    let lock = ui.join("package-lock.json");
    let marker = ui.join("node_modules/.package-lock.json");
    let stale = match (modified(&marker), modified(&lock)) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    };
    if stale {
        run(Command::new(npm).args(["ci", "--no-audit", "--no-fund"]).current_dir(ui), "npm ci")?;
    }
    let out_dir = out.to_str().ok_or("OUT_DIR is not UTF-8")?;
    run(
        Command::new(npm)
            .args(["run", "build", "--", "--outDir", out_dir, "--emptyOutDir", "--logLevel", "warn"])
            .current_dir(ui),
        "npm run build",
    )
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{what} could not start: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("{what} failed ({status})")),
    }
}
