//! Characters an id must not hold because they are invisible or read like another: with them,
//! `VAR-1` and `VAR‐1` (a Unicode hyphen) or `VAR-1` with a zero-width space in it look like one
//! order on a screen and in a spreadsheet, but are two orders to Payroc, so two refunds.
//!
//! Refused in `processing_terminal_id` and `order_id`: control and format characters (Unicode
//! categories Cc and Cf: zero-width spaces and joiners, bidi marks and overrides, the byte order
//! mark, the soft hyphen…), other invisible fillers and variation selectors, every space but the
//! ASCII one, and the dashes and minus signs that look like `-`, each named. Every other
//! non-ASCII character is refused too, by the row check, as not plain ASCII.
//!
//! The names come from a table here, so no Unicode name database is needed: the characters a
//! person is likely to meet are named, the rest described by kind.

/// `U+XXXX NAME` (or `U+XXXX (a kind of character)`) when `character` is refused in an id.
pub(super) fn refused_in_ids(character: char) -> Option<String> {
    let code = u32::from(character);
    if let Some(name) = name(code) {
        return Some(format!("U+{code:04X} {name}"));
    }
    kind(character).map(|kind| format!("U+{code:04X} ({kind})"))
}

/// The name of a refused character a person is likely to meet.
fn name(code: u32) -> Option<&'static str> {
    Some(match code {
        0x00A0 => "NO-BREAK SPACE",
        0x00AD => "SOFT HYPHEN",
        0x034F => "COMBINING GRAPHEME JOINER",
        0x061C => "ARABIC LETTER MARK",
        0x115F => "HANGUL CHOSEONG FILLER",
        0x1160 => "HANGUL JUNGSEONG FILLER",
        0x1680 => "OGHAM SPACE MARK",
        0x180E => "MONGOLIAN VOWEL SEPARATOR",
        0x2000 => "EN QUAD",
        0x2001 => "EM QUAD",
        0x2002 => "EN SPACE",
        0x2003 => "EM SPACE",
        0x2004 => "THREE-PER-EM SPACE",
        0x2005 => "FOUR-PER-EM SPACE",
        0x2006 => "SIX-PER-EM SPACE",
        0x2007 => "FIGURE SPACE",
        0x2008 => "PUNCTUATION SPACE",
        0x2009 => "THIN SPACE",
        0x200A => "HAIR SPACE",
        0x200B => "ZERO WIDTH SPACE",
        0x200C => "ZERO WIDTH NON-JOINER",
        0x200D => "ZERO WIDTH JOINER",
        0x200E => "LEFT-TO-RIGHT MARK",
        0x200F => "RIGHT-TO-LEFT MARK",
        0x2010 => "HYPHEN",
        0x2011 => "NON-BREAKING HYPHEN",
        0x2012 => "FIGURE DASH",
        0x2013 => "EN DASH",
        0x2014 => "EM DASH",
        0x2015 => "HORIZONTAL BAR",
        0x2028 => "LINE SEPARATOR",
        0x2029 => "PARAGRAPH SEPARATOR",
        0x202A => "LEFT-TO-RIGHT EMBEDDING",
        0x202B => "RIGHT-TO-LEFT EMBEDDING",
        0x202C => "POP DIRECTIONAL FORMATTING",
        0x202D => "LEFT-TO-RIGHT OVERRIDE",
        0x202E => "RIGHT-TO-LEFT OVERRIDE",
        0x202F => "NARROW NO-BREAK SPACE",
        0x2043 => "HYPHEN BULLET",
        0x205F => "MEDIUM MATHEMATICAL SPACE",
        0x2060 => "WORD JOINER",
        0x2061 => "FUNCTION APPLICATION",
        0x2062 => "INVISIBLE TIMES",
        0x2063 => "INVISIBLE SEPARATOR",
        0x2064 => "INVISIBLE PLUS",
        0x2066 => "LEFT-TO-RIGHT ISOLATE",
        0x2067 => "RIGHT-TO-LEFT ISOLATE",
        0x2068 => "FIRST STRONG ISOLATE",
        0x2069 => "POP DIRECTIONAL ISOLATE",
        0x2212 => "MINUS SIGN",
        0x2800 => "BRAILLE PATTERN BLANK",
        0x2E3A => "TWO-EM DASH",
        0x2E3B => "THREE-EM DASH",
        0x3000 => "IDEOGRAPHIC SPACE",
        0x3164 => "HANGUL FILLER",
        0xFE58 => "SMALL EM DASH",
        0xFE63 => "SMALL HYPHEN-MINUS",
        0xFEFF => "ZERO WIDTH NO-BREAK SPACE (a byte order mark)",
        0xFF0D => "FULLWIDTH HYPHEN-MINUS",
        0xFFA0 => "HALFWIDTH HANGUL FILLER",
        _ => return None,
    })
}

/// What kind of refused character `character` is, for those without a name in the table.
fn kind(character: char) -> Option<&'static str> {
    if character.is_control() {
        return Some("a control character");
    }
    Some(match u32::from(character) {
        // Format characters (Cf) not named above.
        0x0600..=0x0605
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x2065..=0x206F
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F => "a format character",
        0x180B..=0x180D | 0x180F | 0xFE00..=0xFE0F | 0xE0100..=0xE01EF => "a variation selector, invisible",
        // Every other space (Zs) but U+0020.
        0x2000..=0x200A => "a space other than the ASCII one",
        // Dashes (Pd) and minus signs that read like `-`.
        0x02D7 | 0x058A | 0x05BE | 0x1400 | 0x1806 | 0x207B | 0x208B | 0x2796 | 0x2E17 | 0x2E1A | 0x2E40 | 0x2E5D
        | 0x301C | 0x3030 | 0x30A0 | 0xFE31 | 0xFE32 | 0x10EAD => "a dash or minus that reads like -",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_characters_are_named() {
        assert_eq!(refused_in_ids('\u{200B}').as_deref(), Some("U+200B ZERO WIDTH SPACE"));
        assert_eq!(refused_in_ids('\u{2010}').as_deref(), Some("U+2010 HYPHEN"));
        assert_eq!(refused_in_ids('\u{00A0}').as_deref(), Some("U+00A0 NO-BREAK SPACE"));
        assert_eq!(
            refused_in_ids('\u{202E}').as_deref(),
            Some("U+202E RIGHT-TO-LEFT OVERRIDE")
        );
        assert_eq!(
            refused_in_ids('\u{FF0D}').as_deref(),
            Some("U+FF0D FULLWIDTH HYPHEN-MINUS")
        );
        assert_eq!(
            refused_in_ids('\u{E0041}').as_deref(),
            Some("U+E0041 (a format character)")
        );
        assert_eq!(
            refused_in_ids('\u{FE0F}').as_deref(),
            Some("U+FE0F (a variation selector, invisible)")
        );
        assert_eq!(
            refused_in_ids('\u{0085}').as_deref(),
            Some("U+0085 (a control character)")
        );
        assert_eq!(
            refused_in_ids('\u{2E3A}').as_deref(),
            Some("U+2E3A TWO-EM DASH"),
            "named before its kind"
        );
    }

    #[test]
    fn every_space_dash_and_invisible_the_rule_lists_is_refused() {
        let listed = [
            0x00A0, 0x00AD, 0x1680, 0x180E, 0x2000, 0x2005, 0x200A, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2010,
            0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x202F, 0x2043, 0x205F,
            0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0x2212, 0x3000, 0xFE58, 0xFE63, 0xFEFF, 0xFF0D,
        ];
        for code in listed {
            let character = char::from_u32(code).expect("a character");
            assert!(refused_in_ids(character).is_some(), "U+{code:04X}");
        }
        // Unicode's own list of white space: every one but the ASCII ones is refused.
        for character in (0x80..0x3001).filter_map(char::from_u32).filter(|c| c.is_whitespace()) {
            assert!(refused_in_ids(character).is_some(), "U+{:04X}", u32::from(character));
        }
    }

    #[test]
    fn ordinary_characters_of_ids_are_allowed() {
        for character in "ABCxyz0123456789-_./#:é€ÅßДж中文".chars() {
            assert_eq!(refused_in_ids(character), None, "{character}");
        }
    }
}
