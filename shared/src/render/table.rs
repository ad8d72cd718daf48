//! kubectl-style tables: UPPERCASE headers, no borders, left-aligned, three spaces between columns.

use std::io::{self, Write};

use serde::Serialize;

use super::style::{Tone, paint, sanitize};

/// One table cell: text plus an optional tone used only when colour is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// The text shown (sanitized when drawn).
    pub text: String,
    /// How the cell is coloured when colour is on.
    #[serde(skip)]
    pub tone: Tone,
}

impl Cell {
    /// A cell with no colour.
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tone: Tone::Plain,
        }
    }
    /// A cell with a tone.
    pub fn toned(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
    /// `<none>` for an empty value, as kubectl prints it.
    pub fn or_none(text: impl Into<String>) -> Self {
        let t = text.into();
        if t.is_empty() {
            Self::plain("<none>")
        } else {
            Self::plain(t)
        }
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Self::plain(s)
    }
}
impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Self::plain(s)
    }
}

const GAP: usize = 3;

/// Write a table. The last column is never padded (no trailing spaces); an empty table prints
/// nothing, so callers say "No resources found" on stderr as kubectl does.
pub fn write_table(
    headers: &[&str],
    rows: &[Vec<Cell>],
    color: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let cols = headers.len();
    let texts: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..cols)
                .map(|i| r.get(i).map(|c| sanitize(&c.text)).unwrap_or_default())
                .collect()
        })
        .collect();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &texts {
        for (i, t) in r.iter().enumerate() {
            width[i] = width[i].max(t.chars().count());
        }
    }
    let mut line = String::new();
    push_line(
        &mut line,
        headers.iter().map(|h| (h.to_string(), Tone::Plain)),
        &width,
        false,
    );
    out.write_all(line.as_bytes())?;
    for (r, cells) in texts.into_iter().zip(rows) {
        line.clear();
        let tones = (0..cols).map(|i| cells.get(i).map(|c| c.tone).unwrap_or_default());
        push_line(&mut line, r.into_iter().zip(tones), &width, color);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

fn push_line(
    line: &mut String,
    cells: impl Iterator<Item = (String, Tone)>,
    width: &[usize],
    color: bool,
) {
    let cells: Vec<(String, Tone)> = cells.collect();
    let last = cells.len().saturating_sub(1);
    for (i, (text, tone)) in cells.into_iter().enumerate() {
        let n = text.chars().count();
        if color {
            line.push_str(&paint(&text, tone));
        } else {
            line.push_str(&text);
        }
        if i < last {
            line.extend(std::iter::repeat_n(' ', width[i] - n + GAP));
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
