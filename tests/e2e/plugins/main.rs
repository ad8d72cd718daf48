//! End-to-end tests: the built plugins, installed under the names kubectl resolves, run through
//! the real `kubectl` against a `meshsim` world, as a user runs them.
//!
//! `make test` builds the binaries first and passes their folder in `PLUGIN_BIN_DIR`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod beyond;
mod completion;
mod envoy_dump;
mod envoy_log;
mod faults;
mod install;
mod jwks_trust;
mod krew;
mod mesh_sync;
mod mesh_sync_xds;
mod output_schema;
mod rbac;
mod support;
