//! Keeping secret numbers out of everything the tool writes: the one redaction function.
//!
//! Card and account numbers are masked where they enter (see [`crate::refund::Payee::masked`]),
//! and the API key and bearer token live in `SecretString`s whose `Debug` prints a placeholder.
//! A number can still slip into the ledger, the results or a log in two ways: typed into the
//! wrong column of the input (refused by the reader, which finds it with [`card_numbers`]), or in
//! text that comes back from the network — a problem `detail` that quotes the field it disliked.
//! Every such text passes through [`redact_digit_runs`] before it is stored or shown.

use std::ops::Range;

/// The characters a card number may be written with between its groups of digits.
const SEPARATORS: [u8; 4] = [b' ', b'-', b'.', b'/'];

/// How many separator characters in a row still join two groups (`4539 - 8588` is three).
const MAX_SEPARATORS: usize = 3;

/// Where the card numbers in `text` are, as byte ranges from a number's first digit to its last:
/// the one definition both the reader (which refuses such a cell outside the payee columns) and
/// [`redact_digit_runs`] (which masks it wherever a text is echoed) use.
///
/// A card number is 12–19 digits that pass the Luhn check digit, written either
/// - as one run of digits, wherever it stands (`4539858876047062`, `x4539858876047062`), or
/// - as groups of 3 or more digits joined by one to three spaces, dashes, dots or slashes, in
///   any grouping (`4539 8588 7604 7062`, `4539-8588-7604-7062`, `3782 822463 10005`,
///   `45398588/76047062`, `refund 4539.8588.7604.7062 ok`, `4539 - 8588 - 7604 - 7062`).
///
/// Dates (`2024-07-02`, a range `2024-07-02 - 2024-07-05`) and phone numbers (`+44 20 7946
/// 0958`) have groups of one or two digits, which no card is written with, so they are never
/// read as one. Two exceptions keep ids and addresses readable: groups glued to a letter
/// (`I20261123-0001`, an id whose digits are part of a word) count only when every group is
/// 3–6 digits, the way cards are written; and four groups of three digits joined by dots
/// (`192.168.100.200`) are an IPv4 address.
pub fn card_numbers(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    if bytes.iter().filter(|byte| byte.is_ascii_digit()).count() < 12 {
        return found;
    }
    for chain in chains(bytes) {
        let glued_before = chain[0].start > 0 && bytes[chain[0].start - 1].is_ascii_alphabetic();
        let last = chain.len() - 1;
        let glued_after = bytes.get(chain[last].end).is_some_and(u8::is_ascii_alphabetic);
        let mut first = 0;
        while first < chain.len() {
            let mut longest = None;
            let mut digits = 0;
            for end in first..chain.len() {
                digits += chain[end].len();
                if digits > 19 {
                    break;
                }
                let separated = end > first;
                if separated && chain[first..=end].iter().any(|group| group.len() < 3) {
                    break;
                }
                let glued = (first == 0 && glued_before) || (end == last && glued_after);
                let card_style = chain[first..=end].iter().all(|group| group.len() <= 6);
                let dotted_quad = end - first == 3
                    && chain[first..=end].iter().all(|group| group.len() == 3)
                    && (first..end).all(|index| &bytes[chain[index].end..chain[index + 1].start] == b".");
                if digits >= 12
                    && !(separated && glued && !card_style)
                    && !dotted_quad
                    && luhn_valid_groups(bytes, &chain[first..=end])
                {
                    longest = Some(end);
                }
            }
            match longest {
                Some(end) => {
                    found.push(chain[first].start..chain[end].end);
                    first = end + 1;
                }
                None => first += 1,
            }
        }
    }
    found
}

/// The runs of digits of `bytes`, gathered into chains: runs joined by one to
/// [`MAX_SEPARATORS`] separator characters belong to one chain. Each run is a byte range.
fn chains(bytes: &[u8]) -> Vec<Vec<Range<usize>>> {
    let mut chains: Vec<Vec<Range<usize>>> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        let joined = chains.last().and_then(|chain| chain.last()).is_some_and(|previous| {
            let gap = &bytes[previous.end..start];
            (1..=MAX_SEPARATORS).contains(&gap.len()) && gap.iter().all(|byte| SEPARATORS.contains(byte))
        });
        match chains.last_mut() {
            Some(chain) if joined => chain.push(start..index),
            _ => chains.push(std::iter::once(start..index).collect()),
        }
    }
    chains
}

/// The Luhn check over the digits of `groups` read as one number.
fn luhn_valid_groups(bytes: &[u8], groups: &[Range<usize>]) -> bool {
    luhn_valid(
        groups
            .iter()
            .flat_map(|group| bytes[group.clone()].iter())
            .map(|byte| u32::from(byte - b'0')),
    )
}

/// The Luhn check every card number (and no typo of one digit in it) passes, over a number's
/// digits given most significant first: the one implementation the reader, the masking and the
/// id rule share.
pub fn luhn_valid<Digits>(digits: Digits) -> bool
where
    Digits: IntoIterator<Item = u32>,
    Digits::IntoIter: DoubleEndedIterator,
{
    let sum: u32 = digits
        .into_iter()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The value of a decimal digit: ASCII, or the full-width digits (`４５３９`) some keyboards
/// and exports produce.
fn digit_value(character: char) -> Option<u32> {
    match character {
        '0'..='9' => character.to_digit(10),
        '\u{ff10}'..='\u{ff19}' => Some(u32::from(character) - 0xff10),
        _ => None,
    }
}

/// Card numbers in any spelling, for masking: 12–19 digits passing the Luhn check, in groups of
/// any size (one digit or more, ASCII or full-width) joined by up to four characters that are
/// neither letters nor digits (`4539_8588_7604_7062`, `45-39-85-88-76-04-70-62`,
/// `4539 -  8588-7604-7062`), except where a date stands among the groups (`2024-07-02`: four
/// digits from 19 or 20, then two and two) or an IPv4 address, and where the digits are glued to a letter and not
/// grouped the way cards are (3–6 digits a group): an id such as `I20261123-0006`. Looser than [`card_numbers`], which decides what the reader
/// refuses: masking a date or a phone number that happens to pass the check costs nothing, while
/// an unmasked card number on disk is what must never happen.
pub fn card_numbers_in_any_spelling(text: &str) -> Vec<Range<usize>> {
    // Groups of consecutive digits: (byte start, byte end, digit values).
    let mut groups: Vec<(usize, usize, Vec<u32>)> = Vec::new();
    // Whether each group is joined to the one before it.
    let mut joined: Vec<bool> = Vec::new();
    let mut separators = 0_usize;
    let mut broken = true;
    for (offset, character) in text.char_indices() {
        match digit_value(character) {
            Some(value) => {
                let end = offset + character.len_utf8();
                match groups.last_mut() {
                    Some(group) if separators == 0 && !broken && group.1 == offset => {
                        group.1 = end;
                        group.2.push(value);
                    }
                    _ => {
                        joined.push(!broken && separators <= 4 && !groups.is_empty());
                        groups.push((offset, end, vec![value]));
                    }
                }
                separators = 0;
                broken = false;
            }
            None if character.is_alphanumeric() => broken = true,
            None => separators += 1,
        }
    }
    let mut found = Vec::new();
    let mut first = 0;
    while first < groups.len() {
        let mut digits: Vec<u32> = Vec::new();
        let mut last = first;
        let mut matched = None;
        while last < groups.len() && (last == first || joined[last]) && digits.len() <= 19 {
            digits.extend(&groups[last].2);
            let is_date = |index: usize| {
                groups.get(index..index + 3).is_some_and(|date| {
                    date[0].2.len() == 4
                        && matches!(date[0].2[..2], [1, 9] | [2, 0])
                        && date[1].2.len() == 2
                        && date[2].2.len() == 2
                })
            };
            let holds_a_date = (first..=last).any(is_date);
            // Four groups of 1–3 digits joined by dots: an IPv4 address (`192.168.100.209:443`).
            let is_address = |index: usize| {
                groups.get(index..index + 4).is_some_and(|address| {
                    address.iter().all(|group| (1..=3).contains(&group.2.len()))
                        && address.windows(2).all(|pair| &text[pair[0].1..pair[1].0] == ".")
                })
            };
            let holds_a_date = holds_a_date || (first..=last).any(is_address);
            // Glued to a letter, the digits may be part of an id (`I20261123-0006`): then only
            // groups of 3–6, the way cards are written, count.
            let glued = |at: Option<char>| at.is_some_and(char::is_alphanumeric);
            let glued =
                glued(text[..groups[first].0].chars().next_back()) || glued(text[groups[last].1..].chars().next());
            let card_like = (first..=last).all(|index| (3..=6).contains(&groups[index].2.len()));
            if (12..=19).contains(&digits.len()) && luhn_valid_digits(&digits) && !holds_a_date && (!glued || card_like)
            {
                matched = Some(last);
            }
            last += 1;
        }
        match matched {
            Some(end) => {
                found.push(groups[first].0..groups[end].1);
                first = end + 1;
            }
            None => first += 1,
        }
    }
    found
}

/// The Luhn check over `digits`.
fn luhn_valid_digits(digits: &[u32]) -> bool {
    luhn_valid(digits.iter().copied())
}

/// Whether an id (`processing_terminal_id`, `order_id`) hides a card number however it is
/// written: its digits alone, whatever stands between them — spaces, punctuation, letters
/// (`4539x8588x7604x7062`) — are 12–19 long, pass the Luhn check and begin the way card numbers
/// do (Visa 4; Mastercard 51–55 and 2221–2720; American Express 34, 37; Discover 6011, 644–649,
/// 65; JCB 3528–3589; Diners 300–305, 36, 38; UnionPay 62). Ids are stored and echoed, so they are
/// held to this stricter rule; the prefixes keep ids with a date in them (`R20240702-0001`) out.
pub fn id_hides_a_card_number(id: &str) -> bool {
    let digits: Vec<u32> = id.chars().filter_map(digit_value).collect();
    if !(12..=19).contains(&digits.len()) || !luhn_valid_digits(&digits) {
        return false;
    }
    let prefix = |count: usize| {
        digits
            .iter()
            .take(count)
            .fold(0_u32, |number, digit| number * 10 + digit)
    };
    matches!(prefix(1), 4)
        || matches!(prefix(2), 34 | 36 | 37 | 38 | 51..=55 | 62 | 65)
        || matches!(prefix(3), 300..=305 | 644..=649)
        || matches!(prefix(4), 2221..=2720 | 3528..=3589 | 6011)
}

/// [`redact_digit_runs`] for an id cell echoed from an invalid row, which is also masked whole
/// when [`id_hides_a_card_number`] (its digits, whatever stands between them, are a card number).
pub fn redact_id(text: &str) -> String {
    if id_hides_a_card_number(text) {
        masked(
            text.chars()
                .filter_map(|character| digit_value(character).and_then(|value| char::from_digit(value, 10))),
        )
    } else {
        redact_digit_runs(text)
    }
}

/// How a hidden number is shown: `[redacted …7062]`, the last four of its digits.
pub fn masked(digits: impl IntoIterator<Item = char>) -> String {
    let digits: Vec<char> = digits.into_iter().filter(char::is_ascii_digit).collect();
    let last_four: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("[redacted …{last_four}]")
}

/// The one redaction function: every cell copied from the input into a message, the ledger or
/// the results (an invalid row's cells, whatever they hold), and every text that comes back from
/// the network, passes through it before it is stored or shown.
///
/// It replaces each number that could be a card, account or routing number with
/// `[redacted …1234]`, keeping the last four digits so a person can still match it up:
/// - a run of 9 or more digits (a routing number is 9, a card 12–19);
/// - digits grouped the way cards are written, groups of 3–6 joined by one space or dash, that
///   total 12 or more (`4539 8588 7604 7062`, even with a typo in it);
/// - every card number [`card_numbers`] finds: 12–19 digits passing the Luhn check, in any
///   grouping of 3 or more digits joined by spaces, dashes, dots or slashes
///   (`4539.8588.7604.7062`, `45398588/76047062`).
///
/// Amounts, dates (`2024-07-02`), years, HTTP statuses and ids such as `I20261123-0001` are left
/// alone.
pub fn redact_digit_runs(text: &str) -> String {
    let bytes = text.as_bytes();
    if !text.chars().any(|character| digit_value(character).is_some()) {
        return text.to_owned();
    }
    let mut hidden: Vec<Range<usize>> = Vec::new();
    for chain in chains(bytes) {
        hidden.extend(chain.iter().filter(|group| group.len() >= 9).cloned());
        // Stretches of 3–6-digit groups joined by exactly one space or dash.
        let mut stretch_start = 0;
        while stretch_start < chain.len() {
            let mut end = stretch_start;
            let mut digits = 0;
            while end < chain.len() && (3..=6).contains(&chain[end].len()) {
                digits += chain[end].len();
                let joined_to_next = chain
                    .get(end + 1)
                    .is_some_and(|next| matches!(&bytes[chain[end].end..next.start], b" " | b"-"));
                if !joined_to_next {
                    end += 1;
                    break;
                }
                end += 1;
            }
            if end > stretch_start && digits >= 12 {
                hidden.push(chain[stretch_start].start..chain[end - 1].end);
            }
            stretch_start = end.max(stretch_start + 1);
        }
    }
    hidden.extend(card_numbers(text));
    hidden.extend(card_numbers_in_any_spelling(text));
    hidden.sort_by_key(|range| range.start);
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;
    while index < hidden.len() {
        let start = hidden[index].start;
        let mut end = hidden[index].end;
        index += 1;
        while index < hidden.len() && hidden[index].start < end {
            end = end.max(hidden[index].end);
            index += 1;
        }
        output.push_str(&text[copied..start]);
        output.push_str(&masked(text[start..end].chars()));
        copied = end;
    }
    output.push_str(&text[copied..]);
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

    /// Finds a card number however it is written, and nothing else: the spans in `text`.
    fn found(text: &str) -> Vec<&str> {
        card_numbers(text).into_iter().map(|range| &text[range]).collect()
    }

    #[test]
    fn card_numbers_are_found_through_separators_in_any_grouping() {
        for text in [
            "4539858876047062",
            "4539 8588 7604 7062",
            "4539-8588-7604-7062",
            "4539.8588.7604.7062",
            "4539/8588/7604/7062",
            "4539 - 8588 - 7604 - 7062",
            "45398588 76047062",
            "453985 8876047062",
            "4539 8588-7604.7062",
        ] {
            assert_eq!(found(text), [text], "{text}");
            assert_eq!(found(&format!("refund {text} ok")), [text], "{text} in a sentence");
        }
        assert_eq!(found("amex 3782 822463 10005."), ["3782 822463 10005"]);
        assert_eq!(found("x4539-8588-7604-7062"), ["4539-8588-7604-7062"]);
        assert_eq!(found("ref 1 4539 8588 7604 7062"), ["4539 8588 7604 7062"]);
        assert_eq!(
            found("4539858876047062 and 4111-1111-1111-1111"),
            ["4539858876047062", "4111-1111-1111-1111"]
        );
    }

    #[test]
    fn dates_ids_amounts_phones_and_addresses_are_not_card_numbers() {
        // Each of these has 12 or more digits that pass the Luhn check once the separators go.
        for text in [
            "2024-07-02 2024-07-00",
            "+44 20 7946 0956",
            "I20261123-0006",
            "192.168.100.209",
            "45 39 85 88 76 04 70 62",
            "4539  8588    7604 7062",
        ] {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            let check_digit_passes =
                digits.len() >= 12 && luhn_valid_groups(digits.as_bytes(), std::slice::from_ref(&(0..digits.len())));
            assert!(
                check_digit_passes || text.contains("    "),
                "{text} is a fair test only when its digits pass the check"
            );
            assert_eq!(found(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn separated_card_numbers_are_masked_in_any_grouping() {
        assert_eq!(
            redact_digit_runs("refund 4539.8588.7604.7062 ok"),
            "refund [redacted …7062] ok"
        );
        assert_eq!(redact_digit_runs("4539/8588/7604/7062"), "[redacted …7062]");
        assert_eq!(redact_digit_runs("(45398588 76047062)"), "([redacted …7062])");
        assert_eq!(redact_digit_runs("4539 - 8588 - 7604 - 7062!"), "[redacted …7062]!");
        assert_eq!(
            redact_digit_runs("a 4539.8588.7604.7062, b 4111 1111 1111 1111"),
            "a [redacted …7062], b [redacted …1111]"
        );
        // Still readable: dates, a date range, an id, an IPv4 address, an amount.
        for kept in [
            "stay 2024-07-02 - 2024-07-00",
            "I20261123-0006",
            "from 192.168.100.209:443",
            "49.99 USD",
        ] {
            assert_eq!(redact_digit_runs(kept), kept);
        }
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short", 8), "short");
        assert_eq!(excerpt("éééééééééé", 3), "ééé…");
        assert_eq!(excerpt("", 3), "");
    }

    #[test]
    fn any_spelling_of_a_card_number_is_masked() {
        for spelled in [
            "4539_8588_7604_7062",
            "4539:8588:7604:7062",
            "4539,8588,7604,7062",
            "4539+8588+7604+7062",
            "4539|8588|7604|7062",
            "4539~8588~7604~7062",
            "4539'8588'7604'7062",
            "45-39-85-88-76-04-70-62",
            "4539 -  8588-7604-7062",
            "\u{ff14}\u{ff15}\u{ff13}\u{ff19}\u{ff18}\u{ff15}\u{ff18}\u{ff18}\u{ff17}\u{ff16}\u{ff10}\u{ff14}\u{ff17}\u{ff10}\u{ff16}\u{ff12}",
        ] {
            let message = format!("\"{spelled}\" is not a currency");
            let redacted = redact_digit_runs(&message);
            assert!(redacted.contains("[redacted"), "{spelled}: {redacted}");
            let digits: String = redacted.chars().filter(char::is_ascii_digit).collect();
            assert!(!digits.contains("45398588"), "{spelled}: {redacted}");
        }
        // Ordinary text keeps its numbers.
        assert_eq!(
            redact_digit_runs("refund of 49.99 on 2024-07-02"),
            "refund of 49.99 on 2024-07-02"
        );
    }

    #[test]
    fn an_id_hides_a_card_number_whatever_stands_between_its_digits() {
        for id in [
            "4539x8588x7604x7062",
            "4539_8588_7604_7062",
            "45-39-85-88-76-04-70-62",
            "C4539858876047062",
        ] {
            assert!(id_hides_a_card_number(id), "{id}");
        }
        // Ids with dates in them, and numbers that fail the check or begin like no card.
        for id in [
            "R20240702-0001",
            "I20261123-0001",
            "4539858876047063",
            "1234001",
            "9999-2024-0702-0001",
        ] {
            assert!(!id_hides_a_card_number(id), "{id}");
        }
    }
}
