//! Keeping secrets out of everything the tool writes: the API key, and digits echoed back in errors.
//!
//! Card and account numbers are masked where they enter (see [`crate::input::Payee::masked`]),
//! and the API key and bearer token live in `SecretString`s whose `Debug` prints a placeholder.
//! The one way a number could still slip into the ledger, the results or a log is text that comes
//! back from the network — a problem `detail` that quotes the field it disliked — so every such
//! text passes through [`redact_digit_runs`] before it is stored or shown.

use std::path::Path;

use secrecy::SecretString;

/// Replaces every run of 8 or more digits (or 12 or more when grouped by spaces or dashes) with
/// `[redacted …1234]`, keeping the last four digits so a person can still match it up.
///
/// Eight is below the shortest card number (12) and the routing number (9), and above the
/// lengths of amounts, years and HTTP statuses that error texts normally quote.
pub fn redact_digit_runs(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut output = String::with_capacity(text.len());
    let mut index = 0;
    while index < characters.len() {
        if !characters[index].is_ascii_digit() {
            output.push(characters[index]);
            index += 1;
            continue;
        }
        // Extend the run over digits and single separators between digits.
        let start = index;
        let mut end = index;
        let mut digits = String::new();
        let mut separated = false;
        while end < characters.len() {
            let character = characters[end];
            if character.is_ascii_digit() {
                digits.push(character);
                end += 1;
            } else if (character == ' ' || character == '-')
                && characters.get(end + 1).is_some_and(char::is_ascii_digit)
            {
                separated = true;
                end += 1;
            } else {
                break;
            }
        }
        // Grouped digits ("4539 8588 7604 7062") are a number only at card length, so a date
        // such as 2024-07-02 is left alone.
        let threshold = if separated { 12 } else { 8 };
        if digits.len() >= threshold {
            output.push_str("[redacted …");
            output.push_str(&digits[digits.len() - 4..]);
            output.push(']');
        } else {
            output.extend(&characters[start..end]);
        }
        index = end;
    }
    output
}

/// The first `max_characters` characters of `text`, with `…` when it was longer: what a message
/// repeats of a cell it refuses. A hostile or runaway cell (megabytes, a whole pasted document)
/// must not come back as a message of the same size on the terminal and in the results.
pub fn excerpt(text: &str, max_characters: usize) -> String {
    match text.char_indices().nth(max_characters) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

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
    fn long_digit_runs_are_redacted_and_short_numbers_kept() {
        assert_eq!(
            redact_digit_runs("cardNumber 4539858876047062 is invalid"),
            "cardNumber [redacted …7062] is invalid"
        );
        assert_eq!(redact_digit_runs("card 4539 8588 7604 7062."), "card [redacted …7062].");
        assert_eq!(redact_digit_runs("routing 011000015"), "routing [redacted …0015]");
        assert_eq!(
            redact_digit_runs("amount 4999 on 2024-07-02, status 400"),
            "amount 4999 on 2024-07-02, status 400"
        );
        assert_eq!(redact_digit_runs(""), "");
        assert_eq!(redact_digit_runs("é 12345678"), "é [redacted …5678]");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short", 8), "short");
        assert_eq!(excerpt("éééééééééé", 3), "ééé…");
        assert_eq!(excerpt("", 3), "");
    }

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
