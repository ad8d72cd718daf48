//! kubectl-style tables: UPPERCASE headers, no borders, left-aligned, three spaces between columns.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;

use super::style::{Tone, paint, sanitized};

/// One table cell: text plus an optional tone used only when colour is on. The text borrows
/// from the row it describes where it can (a 10k-row table is not copied cell by cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell<'a> {
    /// The text shown (sanitized when drawn).
    pub text: Cow<'a, str>,
    /// How the cell is coloured when colour is on.
    #[serde(skip)]
    pub tone: Tone,
}

impl<'a> Cell<'a> {
    /// A cell with no colour.
    pub fn plain(text: impl Into<Cow<'a, str>>) -> Self {
        Self {
            text: text.into(),
            tone: Tone::Plain,
        }
    }
    /// A cell with a tone.
    pub fn toned(text: impl Into<Cow<'a, str>>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
    /// `<none>` for an empty value, as kubectl prints it.
    pub fn or_none(text: impl Into<Cow<'a, str>>) -> Self {
        let t = text.into();
        if t.is_empty() {
            Self::plain("<none>")
        } else {
            Self::plain(t)
        }
    }
}

impl From<String> for Cell<'static> {
    fn from(s: String) -> Self {
        Self::plain(s)
    }
}
impl<'a> From<&'a str> for Cell<'a> {
    fn from(s: &'a str) -> Self {
        Self::plain(s)
    }
}

const GAP: usize = 3;

/// Display width of a sanitized cell: one column per character.
fn width_of(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

/// Write a table. The last column is never padded (no trailing spaces); an empty table prints
/// nothing, so callers say "No resources found" on stderr as kubectl does.
pub fn write_table(
    headers: &[&str],
    rows: &[Vec<Cell<'_>>],
    color: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let cols = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| width_of(h)).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(width_of(&sanitized(&c.text)));
        }
    }
    let mut line = String::new();
    push_line(
        &mut line,
        headers.iter().map(|h| (Cow::Borrowed(*h), Tone::Plain)),
        cols,
        &width,
        false,
    );
    out.write_all(line.as_bytes())?;
    for cells in rows {
        line.clear();
        let texts = (0..cols).map(|i| match cells.get(i) {
            Some(c) => (sanitized(&c.text), c.tone),
            None => (Cow::Borrowed(""), Tone::Plain),
        });
        push_line(&mut line, texts, cols, &width, color);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

fn push_line<'t>(
    line: &mut String,
    cells: impl Iterator<Item = (Cow<'t, str>, Tone)>,
    cols: usize,
    width: &[usize],
    color: bool,
) {
    for (i, (text, tone)) in cells.enumerate() {
        if color && tone != Tone::Plain {
            line.push_str(&paint(&text, tone));
        } else {
            line.push_str(&text);
        }
        if i + 1 < cols {
            line.extend(std::iter::repeat_n(' ', width[i] - width_of(&text) + GAP));
        }
    }
    // Trim trailing spaces of a row whose last cells are empty.
    let trimmed = line.trim_end_matches(' ').len();
    line.truncate(trimmed);
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_and_never_pads_the_last() {
        let mut out = Vec::new();
        let rows = vec![
            vec![Cell::plain("a"), Cell::plain("bbbbbb"), Cell::plain("c")],
            vec![Cell::plain("aaaa"), Cell::plain(""), Cell::plain("cc")],
        ];
        write_table(&["ONE", "TWO", "THREE"], &rows, false, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        insta::assert_snapshot!(s, @r"
        ONE    TWO      THREE
        a      bbbbbb   c
        aaaa            cc
        ");
    }

    #[test]
    fn empty_table_prints_nothing() {
        let mut out = Vec::new();
        write_table(&["A"], &[], false, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn control_characters_are_stripped() {
        let mut out = Vec::new();
        write_table(
            &["A"],
            &[vec![Cell::plain("x\u{1b}[31my")]],
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A\nx[31my\n");
    }
}
