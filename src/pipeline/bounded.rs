//! Bounded echoes of input. Whatever a message holds, what pipedemo repeats of it (a
//! dead-letter reason, a log line, a copied header, a dashboard row) has a fixed ceiling, so
//! that one hostile message cannot make a record the broker refuses or a log line of
//! megabytes. Each cut says how long the original was.

use std::borrow::Cow;

/// The most bytes of input a reason or a log line repeats.
pub const ECHO_LIMIT: usize = 1024;

/// `text` as it is when it fits in `max` bytes; otherwise its first `max` bytes (cut at a
/// character boundary) and `… (N bytes in all)`.
pub fn prefix(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// The most bytes of one input value an error message quotes, so that what the message says
/// after the value (why it is wrong) survives any cut of the whole reason.
pub const VALUE_ECHO: usize = 80;

/// One input value as an error message quotes it: [`prefix`] at [`VALUE_ECHO`].
pub fn value(text: &str) -> Cow<'_, str> {
    prefix(text, VALUE_ECHO)
}

/// [`prefix`] at [`ECHO_LIMIT`], owned: the form reasons are kept in.
pub fn echo(text: String) -> String {
    match prefix(&text, ECHO_LIMIT) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// Bytes that may be anything, for a person: UTF-8 as text, other bytes escaped, cut at
/// `max` bytes of input with the original length.
pub fn bytes(raw: &[u8], max: usize) -> String {
    let shown = &raw[..raw.len().min(max)];
    let mut out = String::from_utf8_lossy(shown).into_owned();
    if raw.len() > max {
        out.push_str(&format!("… ({} bytes in all)", raw.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut_with_its_length() {
        assert_eq!(prefix("abc", 3), "abc");
        assert!(matches!(prefix("abc", 3), Cow::Borrowed(_)));
        assert_eq!(prefix("abcdef", 3), "abc… (6 bytes in all)");
        let big = "x".repeat(600_000);
        let cut = echo(big);
        assert!(cut.len() < ECHO_LIMIT + 40, "{}", cut.len());
        assert!(cut.ends_with("… (600000 bytes in all)"), "{cut}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: a cut at 3 would fall inside the second one.
        assert_eq!(prefix("éé", 3), "é… (4 bytes in all)");
        assert_eq!(prefix("ééé", 4), "éé… (6 bytes in all)");
    }

    #[test]
    fn any_bytes_show_as_text() {
        assert_eq!(bytes(b"id", 10), "id");
        assert_eq!(bytes(&[0xff, b'a'], 10), "\u{fffd}a");
        assert_eq!(bytes(&[b'a'; 20], 4), "aaaa… (20 bytes in all)");
    }
}
