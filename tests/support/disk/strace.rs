//! Reading strace's text: a line's pid, a call's arguments, numbers, string literals and `writev`
//! vectors, and paths made lexically normal. Used by the model in `mod.rs` and `syscalls.rs`.

use std::path::{Component, Path, PathBuf};

/// `"1234 rest"` → (1234, "rest"); a line without a pid is process 0.
pub(crate) fn split_pid(line: &str) -> (u32, &str) {
    match line.split_once(' ') {
        Some((pid, rest)) if !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()) => {
            (pid.parse().expect("pid"), rest.trim_start())
        }
        _ => (0, line),
    }
}

/// The comma-separated arguments of a call, split outside strings, brackets and braces.
pub(crate) fn split_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut depth = 0_i32;
    let mut in_string = false;
    let mut escaped = false;
    for character in text.chars() {
        if in_string {
            current.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
            continue;
        }
        match character {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                arguments.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    if !current.trim().is_empty() {
        arguments.push(current.trim().to_owned());
    }
    arguments
}

/// A decimal or `0x` number (strace prints some results and flags in hex).
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    text.parse().ok()
}

/// A strace string literal (`"\x53\x51"`, or with C escapes) → (bytes, whether `...` follows,
/// that is, strace cut it short).
pub(crate) fn decode_string(text: &str) -> Option<(Vec<u8>, bool)> {
    let inner = text.strip_prefix('"')?;
    let bytes = inner.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len() / 4);
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => return Some((decoded, inner[index + 1..].starts_with("..."))),
            b'\\' => {
                let escape = *bytes.get(index + 1)?;
                index += 2;
                match escape {
                    b'x' => {
                        let hex = std::str::from_utf8(bytes.get(index..index + 2)?).ok()?;
                        decoded.push(u8::from_str_radix(hex, 16).ok()?);
                        index += 2;
                    }
                    b'0'..=b'7' => {
                        let mut value = u32::from(escape - b'0');
                        for _ in 0..2 {
                            match bytes.get(index) {
                                Some(digit @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(digit - b'0');
                                    index += 1;
                                }
                                _ => break,
                            }
                        }
                        decoded.push(value as u8);
                    }
                    b'n' => decoded.push(b'\n'),
                    b't' => decoded.push(b'\t'),
                    b'r' => decoded.push(b'\r'),
                    b'v' => decoded.push(0x0b),
                    b'f' => decoded.push(0x0c),
                    other => decoded.push(other),
                }
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    None
}

/// The bytes of a `writev` vector `[{iov_base="…", iov_len=N}, …]`, in order.
pub(crate) fn vectors(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (index, _) in text.match_indices("iov_base=") {
        let (part, truncated) = decode_string(&text[index + "iov_base=".len()..]).expect("iov_base string");
        assert!(!truncated, "strace truncated a vector; raise -s");
        bytes.extend(part);
    }
    bytes
}

pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}
