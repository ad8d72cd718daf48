//! One result value, four ways to draw it: `table`, `wide`, `json`, `yaml`.
//!
//! Commands return rows that implement [`Tabular`] and `Serialize`; [`write_rows`] is the single
//! entry point. Structured output is wrapped in a versioned envelope
//! (`apiVersion: meshdebug.io/v1`, `kind: <Kind>List`, `items: [...]`) so that scripts can rely on
//! its shape (see docs/output.md).

mod structured;
mod style;
mod table;

use std::io::{self, Write};

use serde::Serialize;

pub use structured::{API_VERSION, Envelope, write_json, write_yaml};
pub use style::{ColorChoice, Tone, sanitize, sanitized};
pub use table::{Cell, write_table};

/// How a command's result is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// kubectl-style table (default).
    #[default]
    Table,
    /// Table with extra columns appended.
    Wide,
    /// The typed result as pretty JSON.
    Json,
    /// The typed result as YAML.
    Yaml,
}

impl OutputFormat {
    /// True for `table` and `wide`.
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

/// Everything a renderer needs to know, decided once from the flags and the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// The output format.
    pub format: OutputFormat,
    /// Whether table cells may be coloured (already resolved against `--color`, TTY and `NO_COLOR`).
    pub color: bool,
}

/// A row type that can be drawn as a table.
pub trait Tabular {
    /// The `kind` of one item in structured output, e.g. `Cluster` (the list is `ClusterList`).
    const KIND: &'static str;
    /// Column headers, UPPERCASE. `wide` may only append columns.
    fn headers(wide: bool) -> Vec<&'static str>;
    /// The cells of this row, in header order (borrowing from the row where they can).
    fn row(&self, wide: bool) -> Vec<Cell<'_>>;
}

/// Errors while writing output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing to the output failed (a closed pipe included).
    #[error("writing output failed")]
    Io(#[from] io::Error),
    /// The value could not be serialized as JSON.
    #[error("encoding JSON output failed")]
    Json(#[source] serde_json::Error),
    /// The value could not be serialized as YAML.
    #[error("encoding YAML output failed")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// Draw `rows` in the chosen format: a table, or a `<KIND>List` envelope for json/yaml.
pub fn write_rows<T: Tabular + Serialize>(
    rows: &[T],
    opts: &RenderOptions,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match opts.format {
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = opts.format == OutputFormat::Wide;
            let cells: Vec<Vec<Cell<'_>>> = rows.iter().map(|r| r.row(wide)).collect();
            write_table(&T::headers(wide), &cells, opts.color, out)?;
            Ok(())
        }
        OutputFormat::Json => write_json(&Envelope::list(T::KIND, rows), out),
        OutputFormat::Yaml => write_yaml(&Envelope::list(T::KIND, rows), out),
    }
}

/// A row that belongs to one pod: tables gain a leading `POD` column, json/yaml a `pod` field.
#[derive(Debug, Clone, Serialize)]
pub struct PodRow<T> {
    /// `namespace/name` of the pod the row came from.
    pub pod: String,
    /// The row itself.
    #[serde(flatten)]
    pub row: T,
}

impl<T: Tabular> Tabular for PodRow<T> {
    const KIND: &'static str = T::KIND;
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["POD"];
        h.extend(T::headers(wide));
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let mut r = vec![Cell::plain(&self.pod)];
        r.extend(self.row.row(wide));
        r
    }
}

/// True when `err` (anywhere in its chain) is a closed pipe on our output: we then stop quietly.
pub fn is_broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cur = e.source();
    }
    false
}
