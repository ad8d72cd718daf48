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
    // We retry 429/5xx a bounded number of times ourselves (Cluster::call); kube's own default
    // policy retries up to 15 times with growing waits, which looks like a hang.
    config.default_retry = false;
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

/// Default request parameters, for calls built inside a retry closure (which may not return
/// references to temporaries).
pub static POST_PARAMS: std::sync::LazyLock<kube::api::PostParams> =
    std::sync::LazyLock::new(Default::default);
/// See [`POST_PARAMS`].
pub static LIST_ALL: std::sync::LazyLock<kube::api::ListParams> =
    std::sync::LazyLock::new(Default::default);
/// See [`POST_PARAMS`].
pub static DELETE_PARAMS: std::sync::LazyLock<kube::api::DeleteParams> =
    std::sync::LazyLock::new(Default::default);

/// How often a call the apiserver answered 429 or 5xx is retried, and the first wait.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl Cluster {
    /// Run a cluster call under --request-timeout, mapping kube errors to ours. A 429 or 5xx
    /// answer is retried a few times with exponential backoff (250 ms, 500 ms, 1 s); `make` builds
    /// the request anew for each try.
    pub async fn call<T, F, Fut>(&self, action: impl Into<String>, mut make: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let action = action.into();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let result = match self.timeout {
                Some(t) => match tokio::time::timeout(t, make()).await {
                    Ok(r) => r.map_err(|e| Error::from_kube(action.clone(), e)),
                    Err(_) => return Err(Error::Timeout { action, timeout: t }),
                },
                None => make()
                    .await
                    .map_err(|e| Error::from_kube(action.clone(), e)),
            };
            match result {
                Err(e) if attempt < RETRIES && e.status_code().is_some_and(is_retryable) => {
                    attempt += 1;
                    tracing::info!(
                        "{e}; retry {attempt}/{RETRIES} in {}ms",
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
    }
}

/// 429 Too Many Requests and 5xx: the apiserver may answer the same request later.
fn is_retryable(code: u16) -> bool {
    code == 429 || (500..=599).contains(&code)
}
