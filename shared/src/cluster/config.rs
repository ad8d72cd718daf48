use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::Error;

/// Where and how to talk to the cluster; built once from the shared flags.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// --kubeconfig (else $KUBECONFIG, else ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// --context.
    pub context: Option<String>,
    /// --cluster.
    pub cluster: Option<String>,
    /// --user.
    pub user: Option<String>,
    /// -n; `None` = the context's namespace.
    pub namespace: Option<String>,
    /// -A.
    pub all_namespaces: bool,
    /// -l.
    pub selector: Option<String>,
    /// --request-timeout (`None` = no limit).
    pub request_timeout: Option<Duration>,
}

/// A connected client and the namespace commands default to.
#[derive(Clone)]
pub struct Cluster {
    /// The one client of this process.
    pub client: kube::Client,
    /// -n, else the context's namespace.
    pub namespace: String,
    /// -A.
    pub all_namespaces: bool,
    /// --request-timeout.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Load the kubeconfig (file + context/cluster/user overrides; exec credential plugins and
/// `oc login` tokens work as kube handles them) or the in-cluster config, and build the client.
pub async fn connect(opts: &ClusterOptions) -> Result<Cluster, Error> {
    let kopts = KubeConfigOptions {
        context: opts.context.clone(),
        cluster: opts.cluster.clone(),
        user: opts.user.clone(),
    };
    let mut config = match &opts.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: Some(path.clone()),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kopts)
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: Some(path.clone()),
                    source,
                })?
        }
        None if opts.context.is_some() || opts.cluster.is_some() || opts.user.is_some() => {
            kube::Config::from_kubeconfig(&kopts)
                .await
                .map_err(|source| Error::Kubeconfig { path: None, source })?
        }
        None => kube::Config::infer().await.map_err(Error::Infer)?,
    };
    if let Some(t) = opts.request_timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
    }
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|source| Error::Client { url, source })?;
    Ok(Cluster {
        client,
        namespace,
        all_namespaces: opts.all_namespaces,
        timeout: opts.request_timeout,
    })
}

impl Cluster {
    /// Run a cluster call under --request-timeout, mapping kube errors to ours.
    pub async fn call<T, F>(&self, action: impl Into<String>, fut: F) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let action = action.into();
        match self.timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r.map_err(|e| Error::from_kube(action, e)),
                Err(_) => Err(Error::Timeout { action, timeout: t }),
            },
            None => fut.await.map_err(|e| Error::from_kube(action, e)),
        }
    }
}
