//! Keeping secret numbers out of everything the tool writes: the one redaction function.
//!
//! Card and account numbers are masked where they enter (see [`crate::refund::Payee::masked`]),
//! and the API key and bearer token live in `SecretString`s whose `Debug` prints a placeholder.
//! The one way a number could still slip into the ledger, the results or a log is text that comes
//! back from the network — a problem `detail` that quotes the field it disliked — so every such
//! text passes through [`redact_digit_runs`] before it is stored or shown.

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
}
