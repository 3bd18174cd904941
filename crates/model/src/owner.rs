//! Lease owners: names that a human reads in a table and compares by eye, so two owners
//! that look alike must not both be accepted.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::InvalidValue;

/// The longest owner name, in characters (not bytes: `é` is one).
pub const MAX_OWNER_CHARS: usize = 256;

const OWNER_ALLOWED: &str = "1 to 256 visible characters, no leading or trailing \
whitespace, no control, zero-width, bidi or other invisible characters";

/// Letters that the Unicode database files as letters or symbols but that show as blank
/// (Hangul fillers, the blank Braille pattern): "vm-2" + U+3164 reads "vm-2".
const BLANK_LETTERS: [char; 5] = ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}', '\u{2800}'];

/// Whether `c` shows nothing (or reorders what is around it) in a table: control
/// characters, format characters (category Cf: zero-width spaces and joiners, bidi
/// controls, the BOM, word joiners ...), separators other than the plain space, private
/// use and unassigned code points, and letters that print blank.
pub fn is_invisible(c: char) -> bool {
    if c == ' ' {
        return false;
    }
    BLANK_LETTERS.contains(&c)
        || matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::SpaceSeparator
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::Unassigned
        )
}

/// Checks a lease owner's name: 1 to [`MAX_OWNER_CHARS`] characters, no leading or
/// trailing whitespace, nothing invisible ([`is_invisible`]). The error shows the value
/// with its invisible characters escaped (`'vm-2\u{200b}'`).
pub fn validate_owner(owner: &str) -> Result<(), InvalidValue> {
    let bad = |why: &str| {
        Err(InvalidValue::new(
            "owner",
            owner,
            format!("{why}; allowed: {OWNER_ALLOWED}"),
        ))
    };
    if owner.trim().is_empty() {
        return bad("empty or only whitespace");
    }
    if owner.trim() != owner {
        return bad("leading or trailing whitespace");
    }
    let n = owner.chars().count();
    if n > MAX_OWNER_CHARS {
        return bad(&format!("{n} characters"));
    }
    if let Some(c) = owner.chars().find(|c| is_invisible(*c)) {
        return bad(&format!("contains {}", describe(c)));
    }
    Ok(())
}

/// `U+200B (format)`: a character that cannot be shown, named by code point and kind.
fn describe(c: char) -> String {
    let kind = match c.general_category() {
        GeneralCategory::Control => "control character",
        GeneralCategory::Format => match c {
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                "bidi control"
            }
            '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' => "zero-width character",
            _ => "invisible format character",
        },
        GeneralCategory::SpaceSeparator => "space other than U+0020",
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            "line or paragraph separator"
        }
        GeneralCategory::PrivateUse => "private-use character",
        GeneralCategory::Unassigned => "unassigned code point",
        _ => "blank character",
    };
    format!("U+{:04X} ({kind})", u32::from(c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn plain_and_international_names_pass() {
        for ok in [
            "vm-1",
            "pod/ns-1",
            "a b",
            "café",
            "Грузия-1",
            "名前",
            "x🙂",
            &"é".repeat(256),
        ] {
            validate_owner(ok).unwrap();
        }
    }

    #[test]
    fn look_alikes_are_refused_and_the_error_shows_what_is_hidden() {
        let cases: [(&str, &str); 16] = [
            ("", "empty or only whitespace"),
            (" ", "empty or only whitespace"),
            ("\t\n", "empty or only whitespace"),
            ("vm-2 ", "leading or trailing whitespace"),
            (" vm-2", "leading or trailing whitespace"),
            ("vm-2\u{a0}", "leading or trailing whitespace"),
            ("vm-2\u{200b}", "U+200B (zero-width character)"),
            ("vm\u{200d}-2", "U+200D (zero-width character)"),
            ("vm-\u{202e}2", "U+202E (bidi control)"),
            ("vm-\u{2066}2", "U+2066 (bidi control)"),
            ("\u{feff}vm-2", "U+FEFF (zero-width character)"),
            ("vm-2\u{2064}", "U+2064 (invisible format character)"),
            ("vm\u{0}2", "U+0000 (control character)"),
            ("vm\u{1b}[31m2", "U+001B (control character)"),
            ("vm\u{a0}2", "U+00A0 (space other than U+0020)"),
            ("vm-2\u{3164}", "U+3164 (blank character)"),
        ];
        for (owner, why) in cases {
            let e = validate_owner(owner).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("invalid owner '"), "{owner:?}: {text}");
            assert!(text.contains(why), "{owner:?}: {text}");
            assert!(
                text.contains("allowed: 1 to 256 visible characters"),
                "{text}"
            );
            assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
            // Nothing invisible is printed: it is escaped.
            assert!(!text.chars().any(is_invisible), "{owner:?}: {text:?}");
        }
        let e = validate_owner("vm-2\u{200b}").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid owner 'vm-2\\u{200b}'"),
            "{e}"
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        // 256 two-byte characters (512 bytes) pass; 257 one-byte ones do not.
        validate_owner(&"é".repeat(256)).unwrap();
        let e = validate_owner(&"a".repeat(257)).unwrap_err().to_string();
        assert!(e.contains("257 characters"), "{e}");
        // The value echoed in the error is cut.
        assert!(e.len() < 300, "{}", e.len());
    }
}
