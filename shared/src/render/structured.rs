//! json and yaml: the typed value in a stable, versioned envelope.

use std::io::Write;

use serde::Serialize;

use super::Error;

/// The apiVersion of every structured output of meshdebug.
pub const API_VERSION: &str = "meshdebug.io/v1";

/// `{apiVersion, kind, items}` for lists, `{apiVersion, kind, ...fields}` for single values.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T: Serialize + ?Sized> {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// `<Kind>List` for lists.
    pub kind: String,
    /// The items (a list stays a list when it has one item).
    pub items: &'a T,
}

impl<'a, T: Serialize + ?Sized> Envelope<'a, T> {
    /// A `<kind>List` envelope.
    pub fn list(kind: &str, items: &'a T) -> Self {
        Self {
            api_version: API_VERSION,
            kind: format!("{kind}List"),
            items,
        }
    }
}

/// Pretty JSON with a trailing newline.
pub fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut dyn Write) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| {
        if e.is_io() {
            Error::Io(std::io::Error::from(e))
        } else {
            Error::Json(e)
        }
    })?;
    out.write_all(b"\n")?;
    Ok(())
}

/// YAML (serde-saphyr).
pub fn write_yaml<T: Serialize>(value: &T, out: &mut dyn Write) -> Result<(), Error> {
    let text = serde_saphyr::to_string(value).map_err(Error::Yaml)?;
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}
