//! (being built)

use crate::error::Hint;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        None
    }
}
