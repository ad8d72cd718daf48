//! Colour, decided once; and stripping of control characters from remote strings.

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
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}
