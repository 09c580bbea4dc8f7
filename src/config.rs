//! The optional config file, `refund-batch.toml`: the settings a team fixes once.
//!
//! Precedence, highest first: a command-line option, its environment variable, the config
//! file, the built-in default. The file is applied by turning its values into clap defaults
//! before parsing (see [`apply`]), so clap itself enforces that order and `--help` shows the
//! value in force. Where it is looked for: `--config PATH` or `REFUND_BATCH_CONFIG`, else
//! `./refund-batch.toml`, else `<config dir>/refund-batch/refund-batch.toml`.
//!
//! It never holds the API key: the file is refused if it tries, because config files get
//! committed, copied and shared.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file's contents. Every key is optional; unknown keys are an error, so a typo is noticed.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// `sandbox`, `uat` or `production`.
    pub env: Option<String>,
    /// The ledger path.
    pub ledger: Option<PathBuf>,
    /// Requests per second for `run`.
    pub rate: Option<u32>,
    /// Requests in flight for `run`.
    pub concurrency: Option<usize>,
    /// The key namespace.
    pub key_namespace: Option<String>,
    /// API base URL.
    pub api_url: Option<String>,
    /// Identity base URL.
    pub identity_url: Option<String>,
    /// Retries per request.
    pub max_retries: Option<u32>,
    /// Per-request timeout, seconds.
    pub timeout: Option<u64>,
    /// Not allowed: present only to give a clear refusal.
    pub api_key: Option<toml::Value>,
}

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("the config file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Finds the config file: the explicit path (which must exist), else the first default found.
pub fn locate(explicit: Option<PathBuf>) -> Option<PathBuf> {
    if explicit.is_some() {
        return explicit;
    }
    let local = PathBuf::from("refund-batch.toml");
    if local.is_file() {
        return Some(local);
    }
    dirs::config_dir()
        .map(|directory| directory.join("refund-batch").join("refund-batch.toml"))
        .filter(|path| path.is_file())
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let config: ConfigFile = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
        path: path.to_owned(),
        message: error.to_string(),
    })?;
    if config.api_key.is_some() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: "api-key is not allowed in a config file; set PAYROC_API_KEY or use --api-key-file".into(),
        });
    }
    Ok(config)
}

/// Makes the file's values the defaults of the clap command, so the command line and the
/// environment still win.
pub fn apply(config: &ConfigFile, command: clap::Command) -> clap::Command {
    let mut command = command;
    let global: [(&str, Option<String>); 4] = [
        ("environment", config.env.clone()),
        ("ledger", config.ledger.as_ref().map(|path| path.display().to_string())),
        ("api_url", config.api_url.clone()),
        ("identity_url", config.identity_url.clone()),
    ];
    for (id, value) in global {
        if let Some(value) = value {
            command = command.mut_arg(id, |argument| argument.default_value(value));
        }
    }
    let per_command: [(&str, &str, Option<String>); 8] = [
        ("run", "rate", config.rate.map(|value| value.to_string())),
        ("run", "concurrency", config.concurrency.map(|value| value.to_string())),
        ("run", "key_namespace", config.key_namespace.clone()),
        ("run", "max_retries", config.max_retries.map(|value| value.to_string())),
        ("run", "timeout", config.timeout.map(|value| value.to_string())),
        ("reconcile", "key_namespace", config.key_namespace.clone()),
        (
            "reconcile",
            "max_retries",
            config.max_retries.map(|value| value.to_string()),
        ),
        ("status", "key_namespace", config.key_namespace.clone()),
    ];
    for (subcommand, id, value) in per_command {
        if let Some(value) = value {
            command = command.mut_subcommand(subcommand, |sub| {
                sub.mut_arg(id, |argument| argument.default_value(value))
            });
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_is_read_and_an_api_key_in_it_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("refund-batch.toml");
        std::fs::write(
            &path,
            "env = \"uat\"\nrate = 50\nconcurrency = 4\nledger = \"/var/lib/refunds.sqlite\"\n",
        )
        .unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.env.as_deref(), Some("uat"));
        assert_eq!(config.rate, Some(50));
        std::fs::write(&path, "api-key = \"secret\"\n").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("not allowed") && !error.contains("secret\""), "{error}");
        std::fs::write(&path, "rat = 5\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("unknown field"));
    }
}
