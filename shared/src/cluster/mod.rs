//! Cluster access: kubeconfig → one `kube::Client`, target resolution, port-forward.

mod config;
pub mod control_plane;
mod error;
mod port_forward;
mod target;

pub use config::{Cluster, ClusterOptions, DELETE_PARAMS, LIST_ALL, POST_PARAMS, connect};
pub use error::Error;
pub use port_forward::{Forward, forward};
pub use target::{
    DEFAULT_ADMIN_PORT, DEFAULT_CONTAINER, ProxyPod, Resolved, Skipped, Target, TargetKind,
    list_pods, proxy_pod, resolve_pods,
};
