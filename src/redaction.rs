//! Keeping secrets out of everything the tool writes: the API key, and digits echoed back in errors.
//!
//! Card and account numbers are masked where they enter (see [`crate::input::Payee::masked`]),
//! and the API key and bearer token live in `SecretString`s whose `Debug` prints a placeholder.
//! The one way a number could still slip into the ledger, the results or a log is text that comes
//! back from the network — a problem `detail` that quotes the field it disliked — so every such
//! text passes through [`redact_digit_runs`] before it is stored or shown.

use std::path::Path;

use secrecy::SecretString;

/// The one redaction function: every cell copied from the input into a message, the ledger or
/// the results (an invalid row's cells, whatever they hold), and every text that comes back from
/// the network, passes through it before it is stored or shown.
///
/// It replaces each number that could be a card, account or routing number with
/// `[redacted …1234]`, keeping the last four digits so a person can still match it up: a run of
/// 9 or more digits (a routing number is 9, a card 12–19), or digits grouped the way cards are
/// written (`4539 8588 7604 7062`, `4539-8588-7604-7062`: groups of 3–6 separated by one space
/// or dash) that total 12 or more. Amounts, dates (`2024-07-02`), years, HTTP statuses and ids
/// such as `I20261123-0001` (groups of 8 and 4 are not how a card is written) are left alone.
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
        let start = index;
        let run_end = |from: usize| {
            let mut end = from;
            while end < characters.len() && characters[end].is_ascii_digit() {
                end += 1;
            }
            end
        };
        let first_end = run_end(start);
        // Follow card-style groups: separator, then 3–6 digits, while every group is 3–6 long.
        let mut end = first_end;
        let mut digits = first_end - start;
        let grouped = (3..=6).contains(&digits);
        while grouped
            && end + 1 < characters.len()
            && matches!(characters[end], ' ' | '-')
            && characters[end + 1].is_ascii_digit()
        {
            let group_end = run_end(end + 1);
            let group = group_end - (end + 1);
            if !(3..=6).contains(&group) {
                break;
            }
            digits += group;
            end = group_end;
        }
        let (end, digits) = if end > first_end && digits >= 12 {
            (end, digits)
        } else {
            (first_end, first_end - start)
        };
        if digits >= 9 {
            let last_four: String = characters[start..end]
                .iter()
                .filter(|character| character.is_ascii_digit())
                .skip(digits - 4)
                .collect();
            output.push_str("[redacted …");
            output.push_str(&last_four);
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
        assert_eq!(redact_digit_runs("é 123456789"), "é [redacted …6789]");
        assert_eq!(redact_digit_runs("card 4539-8588-7604-7062!"), "card [redacted …7062]!");
        assert_eq!(redact_digit_runs("amex 3782 822463 10005"), "amex [redacted …0005]");
        assert_eq!(redact_digit_runs("account 1234567890123"), "account [redacted …0123]");
        // Ids and dates a finance team writes are not numbers to hide.
        assert_eq!(redact_digit_runs("order I20261123-0001"), "order I20261123-0001");
        assert_eq!(
            redact_digit_runs("R20240702-0001 on 2024-07-02"),
            "R20240702-0001 on 2024-07-02"
        );
        assert_eq!(redact_digit_runs("12345678"), "12345678");
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
