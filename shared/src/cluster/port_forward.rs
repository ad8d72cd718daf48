use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::DuplexStream;

use super::{Cluster, Error};

/// One forwarded port: the byte stream, plus the kubelet's error channel and the tunnel itself
/// (dropping it closes the websocket).
pub struct Forward {
    /// Bytes to and from the pod's port.
    pub stream: DuplexStream,
    /// Resolves to the first error-channel message, if the kubelet sends one.
    pub error: Pin<Box<dyn Future<Output = Option<String>> + Send>>,
    /// Keeps the websocket alive.
    pub tunnel: kube::api::Portforwarder,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward").finish_non_exhaustive()
    }
}

/// Open a port-forward (websocket `v4.channel.k8s.io`) to `port` of a pod.
pub async fn forward(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<Forward, Error> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let wrap = |e: Error| Error::PortForward {
        namespace: namespace.to_string(),
        name: pod.to_string(),
        port,
        source: Box::new(e),
    };
    let mut tunnel = cluster
        .call(format!("create pods/portforward {namespace}/{pod}"), || {
            let api = api.clone();
            let pod = pod.to_string();
            async move { api.portforward(&pod, &[port]).await }
        })
        .await
        .map_err(wrap)?;
    let stream = tunnel.take_stream(port);
    let error = tunnel.take_error(port);
    match (stream, error) {
        (Some(stream), Some(error)) => Ok(Forward {
            stream,
            error: Box::pin(error),
            tunnel,
        }),
        _ => Err(wrap(Error::NoStream(port))),
    }
}
