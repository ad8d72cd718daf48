//! The Envoy admin API (port 15000): HTTP/1.1 over any byte stream — a port-forward, a TCP
//! connection for `--admin-url`, or an in-memory pipe in tests.

mod client;
mod error;
mod open;

pub use client::{AdminClient, ConfigDumpQuery};
pub use error::Error;
pub use open::{Endpoint, open};
