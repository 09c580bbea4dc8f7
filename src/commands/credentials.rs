//! The API key: read from `--api-key-file` (refused when others can read it) or `PAYROC_API_KEY`,
//! never from the command line, and kept in a `SecretString` from then on so it never reaches a
//! log, a message or a file.

use std::path::Path;

use secrecy::SecretString;

/// Errors loading the API key.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// Neither `PAYROC_API_KEY` nor `--api-key-file` was given.
    #[error("no API key: set PAYROC_API_KEY or pass --api-key-file PATH (a key is never taken on the command line)")]
    Missing,
    /// The key file could not be read.
    #[error("cannot read the API key file {path}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file can be read by other users.
    #[error("the API key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key is empty.
    #[error("the API key is empty")]
    Empty,
}

/// Loads the API key from `--api-key-file` (refused when group- or world-readable) or from the
/// `PAYROC_API_KEY` value given. The file wins when both are given: it was asked for explicitly.
pub fn load_api_key(file: Option<&Path>, environment_value: Option<String>) -> Result<SecretString, ApiKeyError> {
    let key = match file {
        Some(path) => {
            let display = path.display().to_string();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let metadata = std::fs::metadata(path).map_err(|source| ApiKeyError::Unreadable {
                    path: display.clone(),
                    source,
                })?;
                let mode = metadata.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(ApiKeyError::TooOpen { path: display, mode });
                }
            }
            std::fs::read_to_string(path).map_err(|source| ApiKeyError::Unreadable { path: display, source })?
        }
        None => environment_value.ok_or(ApiKeyError::Missing)?,
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiKeyError::Empty);
    }
    Ok(SecretString::from(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("key");
        std::fs::write(&path, "secret-key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load_api_key(Some(&path), None),
                Err(ApiKeyError::TooOpen { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        use secrecy::ExposeSecret;
        assert_eq!(load_api_key(Some(&path), None).unwrap().expose_secret(), "secret-key");
        assert!(matches!(load_api_key(None, None), Err(ApiKeyError::Missing)));
        assert!(matches!(load_api_key(None, Some("  ".into())), Err(ApiKeyError::Empty)));
    }
}
