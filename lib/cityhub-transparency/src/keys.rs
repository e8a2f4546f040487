//! The hub's ledger key: read from `--ledger-key FILE`, or from `ledger.key` in the data
//! directory, made there (mode 0600) on first run. The file holds one signer key line
//! (`PRIVATE+KEY+name+hash+key`); nothing here logs it.

use std::io::Write;
use std::path::Path;

use cityhub_ledger::note::Signer;

/// Reads the key at `path`, or makes one named `name` there when the file does not exist.
pub fn load_or_create(path: &Path, name: &str) -> Result<Signer, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Signer::parse(&text).map_err(|e| format!("the ledger key {} is not a signer key: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = Signer::generate(name).map_err(|e| e.to_string())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            writeln!(file, "{}", signer.to_key()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            file.sync_all().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(signer)
        }
        Err(e) => Err(format!("cannot read the ledger key {}: {e}", path.display())),
    }
}

/// A key name from the hub's alias: what a signed-note key name may hold (no whitespace, no
/// `+`), `cityhub` when nothing is left.
pub fn name_of(alias: &str) -> String {
    let name: String = alias.chars().filter(|c| !c.is_whitespace() && !c.is_control() && *c != '+').collect();
    if name.is_empty() {
        "cityhub".to_owned()
    } else {
        name
    }
}
