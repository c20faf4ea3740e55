//! Showing text nobody signed. Names in a foreign volume's label, tar entry names and link
//! targets, file names found on the media, comments of signature files: any of it may be
//! crafted to forge a report line or drive the terminal (colours, hidden text, cursor
//! moves). [`untrusted`] is the one way such a string enters a message: every character
//! that is not plain printable text is escaped (`\n`, `\u{1b}`, …) and the result is cut
//! to a sane length. The output gate applies [`terminal_safe`] to every human line as a
//! second fence.

use std::fmt;

/// Longest untrusted string shown, in characters (the rest is replaced by `…`).
pub const SHOWN_MAX: usize = 120;

/// An untrusted string, escaped and cut, ready to be put in a message.
pub fn untrusted(s: &str) -> String {
    Untrusted(s).to_string()
}

/// Untrusted bytes (not necessarily UTF-8): invalid sequences are shown as `\xNN`.
pub fn untrusted_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut count = 0;
    for chunk in bytes.utf8_chunks() {
        let shown = chunk.valid().chars().map(Shown::Char).chain(chunk.invalid().iter().map(|&b| Shown::Byte(b)));
        for piece in shown {
            if count >= SHOWN_MAX {
                out.push('…');
                return out;
            }
            match piece {
                Shown::Char(c) => push_escaped(&mut out, c),
                Shown::Byte(b) => out.push_str(&format!("\\x{b:02x}")),
            }
            count += 1;
        }
    }
    out
}

enum Shown {
    Char(char),
    Byte(u8),
}

/// An untrusted string escaped like [`untrusted`] but not cut, for fields shown in full
/// (image references in an unverified manifest).
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    s.chars().for_each(|c| push_escaped(&mut out, c));
    out
}

/// Display adapter: escapes and cuts like [`untrusted`].
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, c) in self.0.chars().enumerate() {
            if i >= SHOWN_MAX {
                out.push('…');
                break;
            }
            push_escaped(&mut out, c);
        }
        f.write_str(&out)
    }
}

fn push_escaped(out: &mut String, c: char) {
    if c == '\\' {
        out.push_str("\\\\");
    } else if is_plain(c) {
        out.push(c);
    } else {
        out.extend(c.escape_default());
    }
}

/// Printable characters that cannot change how the terminal shows what follows.
fn is_plain(c: char) -> bool {
    !(c.is_control() || is_format_control(c))
}

/// Unicode format controls that reorder or hide text (bidi overrides and isolates, zero
/// width characters, the BOM).
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A human line made safe for a terminal: line breaks and tabs stay, every other control
/// character (ESC and the rest of C0, DEL, C1, the format controls) is escaped.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(|c| c == '\n' || c == '\t' || is_plain(c)) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c == '\n' || c == '\t' || is_plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_drive_a_terminal_or_forge_a_line() {
        let forged = "x\n\u{1b}[32mOK: every volume\u{1b}[8m\r\u{7f}\u{9b}2J\u{202e}evil";
        let shown = untrusted(forged);
        assert!(!shown.chars().any(|c| c.is_control() || is_format_control(c)), "{shown:?}");
        assert!(shown.contains("\\n"), "{shown}");
        assert!(shown.contains("\\u{1b}[32mOK"), "{shown}");
        assert!(shown.contains("\\u{202e}"), "{shown}");
        assert_eq!(untrusted("plain name-1.0 é"), "plain name-1.0 é");
        assert_eq!(untrusted("a\\nb"), "a\\\\nb", "a literal backslash is not an escape");
    }

    #[test]
    fn cuts_long_strings() {
        let long = "a".repeat(10_000);
        let shown = untrusted(&long);
        assert_eq!(shown.chars().count(), SHOWN_MAX + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(untrusted_bytes(b"ok\xff\x1b"), "ok\\xff\\u{1b}");
        assert_eq!(untrusted_bytes(&[b'z'; 500]).chars().count(), SHOWN_MAX + 1);
    }

    #[test]
    fn terminal_lines_keep_breaks_but_lose_escapes() {
        assert_eq!(terminal_safe("a\n\tb"), "a\n\tb");
        assert_eq!(terminal_safe("\u{1b}[8mhidden"), "\\u{1b}[8mhidden");
    }
}
