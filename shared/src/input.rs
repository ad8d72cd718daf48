//! `-f FILE` input: a saved file or stdin (`-`), read whole, with errors that name the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::Hint;

/// Reading an input file failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON we expected.
    #[error("{} is not valid {what} (at line {line}, column {column}, byte {offset})", path.display())]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What we expected, e.g. `Envoy config_dump JSON`.
        what: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// 0-based byte offset.
        offset: usize,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Read { .. } => None,
            Error::Parse { .. } => Some(
                "is the file complete? save it again, e.g. kubectl envoy-dump POD > dump.json"
                    .into(),
            ),
        }
    }
}

/// Read a file, or stdin for `-`.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })
}

/// Parse JSON from `bytes` read from `path`, with the byte offset of a syntax error.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(
    path: &Path,
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        let (line, column) = (source.line(), source.column());
        Error::Parse {
            path: path.into(),
            what,
            line,
            column,
            offset: byte_offset(bytes, line, column),
            source,
        }
    })
}

/// 0-based byte offset of a 1-based line/column position.
pub fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut l = 1;
    for (i, b) in bytes.iter().enumerate() {
        if l == line {
            return (i + column.saturating_sub(1)).min(bytes.len());
        }
        if *b == b'\n' {
            l += 1;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_file_and_offset() {
        let e = parse_json::<serde_json::Value>(
            Path::new("d.json"),
            "Envoy config_dump JSON",
            b"{\n  \"a\": tru",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("d.json is not valid Envoy config_dump JSON (at line 2"),
            "{s}"
        );
        assert!(s.contains("byte 1"), "{s}");
    }

    #[test]
    fn offsets() {
        assert_eq!(byte_offset(b"ab\ncd", 2, 2), 4);
        assert_eq!(byte_offset(b"ab", 1, 1), 0);
    }
}
