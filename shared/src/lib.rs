//! meshdebug: the library behind the kubectl/oc plugins `envoy-dump`, `envoy-log`, `mesh-sync`
//! and `jwks-trust`. Binaries parse flags (`cli`), call into these modules, and render.
//!
//! See DESIGN in the repository README: sources (cluster port-forward, `--admin-url`, `-f`) feed
//! typed models; views are pure functions from models to rows; `render` draws rows.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod complete;
pub mod dump;
pub mod error;
pub mod exit;
pub mod fanout;
pub mod input;
pub mod jwks;
pub mod loggers;
pub mod logging;
pub mod render;
pub mod sync;

pub use error::{Error, Hint};
pub use exit::ExitStatus;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
