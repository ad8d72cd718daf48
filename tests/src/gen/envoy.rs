//! A real Envoy holding a generated mesh's config, pushed over ADS by the istiod stand-in
//! ([`XdsServer`]): the source of a large, genuine `/config_dump`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::MeshSpec;
use super::resources::proxy_resources;
use crate::envoy::{EnvoyCommand, EnvoyProcess};
use crate::xds::{self, TYPES, XdsServer};

/// The node id the generated config is served to.
pub const NODE_ID: &str = "bench-5d8f7c9b6-x2x9k.ns-0";

/// The Envoy, its ADS server and its directory; everything stops on drop.
pub struct LoadedEnvoy {
    // Field order: Envoy first, so it is killed before its ADS server and directory go.
    pub envoy: EnvoyProcess,
    pub xds: XdsServer,
    pub dir: tempfile::TempDir,
    /// Resources pushed: clusters, listeners, routes, endpoints.
    pub counts: [usize; 4],
}

impl LoadedEnvoy {
    /// Starts an Envoy that takes everything over ADS, pushes `spec`'s resources (with
    /// `bind_ports` forced off: nothing binds a port) and waits until it has acknowledged all
    /// four types. Must run inside a tokio runtime.
    pub async fn start(spec: &MeshSpec, timeout: Duration) -> Result<LoadedEnvoy> {
        let spec = MeshSpec {
            bind_ports: false,
            ..spec.clone()
        };
        let xds = XdsServer::start().await?;
        let res = proxy_resources(&spec);
        let counts = [
            res.clusters.len(),
            res.listeners.len(),
            res.routes.len(),
            res.endpoints.len(),
        ];
        xds.set_resources(NODE_ID, res)
            .context("encoding the generated resources")?;
        let dir = tempfile::Builder::new().prefix("meshsim-gen-").tempdir()?;
        let mut bootstrap = xds::ads_bootstrap_fragment(xds.addr());
        bootstrap["node"] = json!({
            "id": NODE_ID,
            "cluster": "bench.ns-0",
            "metadata": {"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.24.2", "NAMESPACE": "ns-0"},
        });
        bootstrap["admin"] =
            json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}});
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&bootstrap)?)?;
        let cmd = EnvoyCommand {
            config_path,
            run_dir: dir.path().to_path_buf(),
            log_path: dir.path().join("envoy.log"),
            log_level: "warning".into(),
            component_log_level: String::new(),
            log_format: None,
            service_node: NODE_ID.into(),
            service_cluster: "bench.ns-0".into(),
            concurrency: 1,
        };
        let envoy = EnvoyProcess::start(&cmd, timeout).await?;
        xds.wait_synced(NODE_ID, TYPES, timeout)
            .await
            .with_context(|| {
                format!(
                    "Envoy did not take the generated config; its log:\n{}",
                    crate::envoy::tail(&dir.path().join("envoy.log"), 30)
                )
            })?;
        Ok(LoadedEnvoy {
            envoy,
            xds,
            dir,
            counts,
        })
    }

    /// Envoy's admin address.
    pub fn admin(&self) -> SocketAddr {
        self.envoy.admin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated resources are valid Envoy config: a real Envoy ACKs every type.
    #[tokio::test]
    async fn a_real_envoy_takes_the_generated_config() {
        let loaded = LoadedEnvoy::start(&MeshSpec::new(30), Duration::from_secs(60))
            .await
            .map_err(|e| format!("{e:#}"))
            .unwrap();
        let (status, body) = crate::envoy::http_get(loaded.admin(), "/config_dump")
            .await
            .unwrap();
        assert_eq!(status, 200);
        let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
        let clusters = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["@type"].as_str().unwrap().ends_with("ClustersConfigDump"))
            .unwrap();
        let active = clusters["dynamic_active_clusters"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(active, loaded.counts[0]);
    }
}
