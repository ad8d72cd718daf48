#![allow(clippy::unwrap_used, clippy::expect_used)]
//! meshsim: the simulated cluster meshdebug is tested against — a fake kube-apiserver, real
//! Envoy sidecars started from a scenario, and the `meshsim up` binary.
//!
//! Written against the Kubernetes, Envoy and Istio wire formats only; it does not depend on
//! `meshdebug`, so a misunderstanding in the plugins cannot hide in both.

pub mod apiserver;
pub mod app;
pub mod control_plane;
pub mod envoy;
pub mod r#gen;
pub mod istiod;
pub mod jwks_server;
pub mod scenario;
pub mod sidecar;
pub mod world;
pub mod xds;

pub use world::{PodInfo, World, WorldOptions};
