use std::time::Duration;

use tokio::net::TcpStream;

use super::{AdminClient, Error};
use crate::cluster::{Cluster, ProxyPod, forward};

/// Where an Envoy admin API is.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per pod, never stored in bulk
pub enum Endpoint {
    /// A pod's admin port, through a port-forward.
    Pod(ProxyPod),
    /// `--admin-url http://host:port`.
    Url(String),
}

impl Endpoint {
    /// How errors and multi-pod tables name it: `namespace/name` or the URL.
    pub fn label(&self) -> String {
        match self {
            Endpoint::Pod(p) => p.id(),
            Endpoint::Url(u) => u.clone(),
        }
    }
}

/// Connect to an admin endpoint. A pod needs the cluster.
pub async fn open(
    cluster: Option<&Cluster>,
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> Result<AdminClient, Error> {
    match endpoint {
        Endpoint::Url(url) => open_url(url, timeout).await,
        Endpoint::Pod(pod) => {
            let target = format!("pod {}", pod.id());
            let Some(cluster) = cluster else {
                return Err(Error::Url { url: target });
            };
            let fwd = forward(cluster, &pod.namespace, &pod.name, pod.admin_port)
                .await
                .map_err(|source| Error::Forward {
                    target: target.clone(),
                    source,
                })?;
            let client = AdminClient::over_stream(fwd.stream, target, timeout).await?;
            Ok(client.with_tunnel(fwd.tunnel, fwd.error))
        }
    }
}

async fn open_url(url: &str, timeout: Option<Duration>) -> Result<AdminClient, Error> {
    let hostport = host_port(url).ok_or_else(|| Error::Url {
        url: url.to_string(),
    })?;
    let connect = TcpStream::connect(hostport.clone());
    let stream = match timeout {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| Error::Connect {
                target: url.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?,
        None => connect.await,
    }
    .map_err(|source| Error::Connect {
        target: url.to_string(),
        source,
    })?;
    AdminClient::over_stream(stream, url.trim_end_matches('/').to_string(), timeout).await
}

/// `http://host:port[/]` → `host:port` (port 80 if absent). https is refused: Envoy's admin
/// API is plain HTTP.
fn host_port(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| (!url.contains("://")).then_some(url))?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        assert_eq!(
            host_port("http://127.0.0.1:15000").unwrap(),
            "127.0.0.1:15000"
        );
        assert_eq!(
            host_port("http://localhost:15000/").unwrap(),
            "localhost:15000"
        );
        assert_eq!(host_port("127.0.0.1:9901").unwrap(), "127.0.0.1:9901");
        assert_eq!(host_port("http://envoy").unwrap(), "envoy:80");
        assert!(host_port("https://x:1").is_none());
        assert!(host_port("http://").is_none());
    }
}
