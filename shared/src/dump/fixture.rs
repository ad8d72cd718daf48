//! Test access to istioctl's own fixtures (`shared/fixtures/istio`, beside the repository) and to
//! our captures from the real Envoy (`shared/tests/fixtures`), plus a reader for golden tables.

use std::path::PathBuf;

use crate::render::Tabular;

/// `<repo>/../shared/fixtures/istio/<rel>`; fails loudly when the folder is missing.
pub fn istio_path(rel: &str) -> PathBuf {
    let base = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/istio"
    ));
    assert!(
        base.is_dir(),
        "istioctl fixtures not found at {}: the folder `shared` (with fixtures/istio) must sit beside the repository",
        base.display()
    );
    base.join(rel)
}

/// The bytes of an istio fixture.
pub fn istio(rel: &str) -> Vec<u8> {
    let p = istio_path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

/// The text of an istio fixture.
pub fn istio_text(rel: &str) -> String {
    String::from_utf8(istio(rel)).expect("fixture is UTF-8")
}

/// A capture from the real Envoy, under `shared/tests/fixtures/envoy-dump/` (see its README).
pub fn capture(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/envoy-dump"
    ))
    .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

/// A parsed config_dump fixture.
pub fn dump(rel: &str) -> super::ConfigDump {
    super::ConfigDump::from_slice(&istio(rel))
        .unwrap_or_else(|e| panic!("{rel}: {} at byte {}: {}", e.what, e.offset, e.source))
}

/// A golden table: headers and rows of cells, columns located by header offsets (a header is
/// a run of words separated by single spaces), as `shared/tools/conformance` reads them.
pub fn golden(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some(header) = lines.first() else {
        return (vec![], vec![]);
    };
    let mut cols: Vec<(usize, String)> = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i] != ' ' || (i + 1 < chars.len() && chars[i + 1] != ' ')) {
            i += 1;
        }
        cols.push((start, chars[start..i].iter().collect()));
    }
    let rows = lines[1..]
        .iter()
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            cols.iter()
                .enumerate()
                .map(|(k, (start, _))| {
                    let end = cols.get(k + 1).map(|c| c.0).unwrap_or(chars.len());
                    let (s, e) = ((*start).min(chars.len()), end.min(chars.len()));
                    chars[s..e].iter().collect::<String>().trim().to_string()
                })
                .collect()
        })
        .collect();
    (cols.into_iter().map(|c| c.1).collect(), rows)
}

/// A golden table whose columns are separated by single spaces (tabwriter padding 1, as the
/// listeners table has): every header is one word.
pub fn golden_words(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (vec![], vec![]);
    };
    let mut cols: Vec<(usize, String)> = Vec::new();
    let mut start = None;
    for (i, c) in header.char_indices().chain([(header.len(), ' ')]) {
        match (c == ' ', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                cols.push((s, header[s..i].to_string()));
                start = None;
            }
            _ => {}
        }
    }
    let rows = lines
        .map(|line| {
            cols.iter()
                .enumerate()
                .map(|(k, (s, _))| {
                    let end = cols
                        .get(k + 1)
                        .map(|c| c.0)
                        .unwrap_or(line.len())
                        .min(line.len());
                    line[(*s).min(line.len())..end].trim().to_string()
                })
                .collect()
        })
        .collect();
    (cols.into_iter().map(|c| c.1).collect(), rows)
}

/// A section of a multi-table golden (tables separated by blank lines), 0-based.
pub fn section(text: &str, n: usize) -> String {
    text.split("\n\n").nth(n).unwrap_or_default().to_string()
}

/// Drop the golden columns not in `keep` (e.g. `pc all`'s NAME column).
pub fn only(
    golden: (Vec<String>, Vec<Vec<String>>),
    keep: &[&str],
) -> (Vec<String>, Vec<Vec<String>>) {
    let idx: Vec<usize> = golden
        .0
        .iter()
        .enumerate()
        .filter(|(_, h)| keep.contains(&h.as_str()))
        .map(|(i, _)| i)
        .collect();
    (
        idx.iter().map(|i| golden.0[*i].clone()).collect(),
        golden
            .1
            .iter()
            .map(|r| {
                idx.iter()
                    .map(|i| r.get(*i).cloned().unwrap_or_default())
                    .collect()
            })
            .collect(),
    )
}

/// Our rows as cells, restricted to the golden's columns (by header name), to compare with
/// [`golden`].
pub fn cells<T: Tabular>(rows: &[T], wide: bool, columns: &[String]) -> Vec<Vec<String>> {
    let headers = T::headers(wide);
    let idx: Vec<usize> = columns
        .iter()
        .map(|c| {
            let c = if c == "ADDRESS" {
                "ADDRESSES"
            } else {
                c.as_str()
            };
            headers
                .iter()
                .position(|h| *h == c)
                .unwrap_or_else(|| panic!("no column {c} in {headers:?}"))
        })
        .collect();
    rows.iter()
        .map(|r| {
            let row = r.row(wide);
            idx.iter().map(|i| row[*i].text.to_string()).collect()
        })
        .collect()
}

/// Assert that `rows` show what the golden table shows, cell by cell, in order.
pub fn assert_table<T: Tabular>(rows: &[T], golden_text: &str) {
    let (headers, want) = golden(golden_text);
    let got = cells(rows, false, &headers);
    assert_eq!(got, want, "columns {headers:?}");
}
