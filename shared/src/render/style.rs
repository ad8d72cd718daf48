//! Colour, decided once; and stripping of control characters from remote strings.

use std::borrow::Cow;
use std::io::IsTerminal;

use owo_colors::OwoColorize;

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always colour tables.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Resolve against the environment and whether stdout is a terminal.
    pub fn resolve(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                !no_color && std::io::stdout().is_terminal()
            }
        }
    }
}

/// The meaning of a cell, mapped to a colour only when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tone {
    /// No colour.
    #[default]
    Plain,
    /// All is well (SYNCED, OK).
    Good,
    /// Needs a look (STALE, a changed level).
    Warn,
    /// Broken (ERROR, UNTRUSTED CA).
    Bad,
    /// Secondary text.
    Dim,
    /// Stands out from its neighbours (a logger level differing from the default).
    Highlight,
}

pub(crate) fn paint(text: &str, tone: Tone) -> String {
    match tone {
        Tone::Plain => text.to_string(),
        Tone::Good => text.green().to_string(),
        Tone::Warn => text.yellow().to_string(),
        Tone::Bad => text.red().to_string(),
        Tone::Dim => text.dimmed().to_string(),
        Tone::Highlight => text.bold().to_string(),
    }
}

/// Remove control characters (ESC, BEL, CR, ...) from a remote string before it reaches a
/// terminal; tabs become spaces. Newlines are removed too: a cell is one line.
pub fn sanitize(s: &str) -> String {
    sanitized(s).into_owned()
}

/// [`sanitize`], borrowing `s` when there is nothing to strip (the usual case).
pub fn sanitized(s: &str) -> Cow<'_, str> {
    // Control characters are C0 (< 0x20), DEL and C1 (U+0080..U+009F, UTF-8 0xC2 0x80..0x9F):
    // a byte scan rules them out for almost every cell.
    let maybe = |b: &u8| *b < 0x20 || *b == 0x7f || *b == 0xc2;
    if !s.as_bytes().iter().any(maybe) || !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_borrows_clean_text_and_strips_every_control_character() {
        for clean in [
            "",
            "reviews-v1.shop",
            "café",
            "a\u{a0}b (NBSP)",
            "ñ ü ø 漢字",
        ] {
            assert!(
                matches!(sanitized(clean), Cow::Borrowed(s) if s == clean),
                "{clean}"
            );
        }
        assert_eq!(sanitized("a\tb"), "a b");
        assert_eq!(sanitized("x\u{1b}[31my\r\n"), "x[31my");
        assert_eq!(sanitized("del\u{7f}!"), "del!");
        // C1 controls (UTF-8 0xC2 0x80..0x9F), e.g. NEL and CSI
        assert_eq!(sanitized("a\u{85}b\u{9b}31mc"), "ab31mc");
        assert_eq!(sanitize("é\u{9b}"), "é");
    }
}
