//! `cityhub serve --config cityhub.toml`: every `serve` flag from a file.
//!
//! The file's keys are the long names of the flags (`listen = "0.0.0.0:1026"`, `auth-keys =
//! true`, `max_body_bytes = 1048576`: `_` and `-` alike); a key that names no flag is an error
//! naming it, so a typo never leaves a setting silently at its default. A `true` switch is the
//! flag given, `false` the flag left out; an array gives a flag once per item.
//!
//! Order, from the strongest: the command line, then the file, then the `CITYHUB_*` environment,
//! then the defaults. The file's settings are read as if written on the command line before
//! the ones actually there (the serve command lets a later flag override an earlier one), and
//! clap takes a value from the environment only for a flag given nowhere on the line.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{ArgAction, Args};

/// `argv` with the settings of the `--config` file of a `serve` command (or of
/// `CITYHUB_CONFIG`) inserted right after `serve`; any other command is left as it is.
pub fn expand(argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(serve_at) = argv.iter().position(|a| a == "serve") else { return Ok(argv) };
    // Only the subcommand position counts (a value equal to "serve" later is not it).
    if serve_at != 1 {
        return Ok(argv);
    }
    let Some(file) = config_path(&argv[serve_at + 1..]) else { return Ok(argv) };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read --config {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("--config {} is not TOML", file.display()))?;
    let settings = flags(&table).map_err(|why| anyhow::anyhow!("--config {}: {why}", file.display()))?;
    let mut out: Vec<OsString> = argv[..=serve_at].to_vec();
    out.extend(settings.into_iter().map(OsString::from));
    out.extend(argv[serve_at + 1..].iter().cloned());
    Ok(out)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os("CITYHUB_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The command-line flags a config table stands for.
fn flags(table: &toml::Table) -> Result<Vec<String>, String> {
    let command = crate::ServeArgs::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(name.as_str()) && !a.is_hide_set())
        else {
            return Err(format!(
                "unknown key `{key}`: the keys are the long names of `cityhub serve`'s flags (cityhub serve --help), \
                 e.g. listen = \"0.0.0.0:1026\""
            ));
        };
        if name == "config" {
            return Err("`config` names the file itself: a config file cannot name another".to_owned());
        }
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let items: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in items {
            match (item, switch) {
                (toml::Value::Boolean(true), true) => out.push(format!("--{name}")),
                (toml::Value::Boolean(false), true) => {}
                (_, true) => return Err(format!("`{key}` is a switch: give true or false")),
                (toml::Value::String(s), false) => out.push(format!("--{name}={s}")),
                (toml::Value::Integer(n), false) => out.push(format!("--{name}={n}")),
                (toml::Value::Float(x), false) => out.push(format!("--{name}={x}")),
                (toml::Value::Boolean(b), false) => out.push(format!("--{name}={b}")),
                (other, false) => {
                    return Err(format!("`{key}` = {other}: give a string, a number or an array of them"))
                }
            }
        }
    }
    Ok(out)
}

/// Whether the `serve` command parses (used by the tests of this module).
#[cfg(test)]
fn parses(argv: &[&str]) -> Result<crate::ServeArgs, String> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let matches = crate::Cli::command().try_get_matches_from(argv).map_err(|e| e.to_string())?;
    let (_, sub) = matches.subcommand().ok_or("no subcommand")?;
    crate::ServeArgs::from_arg_matches(sub).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_becomes_flags_and_an_unknown_key_is_named() {
        let table: toml::Table =
            toml::from_str("listen = \"0.0.0.0:1026\"\nauth_keys = true\ndemo = false\nmax-body-bytes = 1024\n")
                .unwrap();
        let mut got = flags(&table).unwrap();
        got.sort();
        assert_eq!(got, ["--auth-keys", "--listen=0.0.0.0:1026", "--max-body-bytes=1024"]);
        let typo: toml::Table = toml::from_str("lisen = \"x\"").unwrap();
        assert!(flags(&typo).unwrap_err().contains("unknown key `lisen`"));
        let switch: toml::Table = toml::from_str("auth-keys = \"yes\"").unwrap();
        assert!(flags(&switch).unwrap_err().contains("switch"));
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let args =
            parses(&["cityhub", "serve", "--max-body-bytes=1024", "--log=debug", "--max-body-bytes", "2048"]).unwrap();
        assert_eq!(args.max_body_bytes, 2048);
        assert_eq!(args.log, "debug");
    }
}
