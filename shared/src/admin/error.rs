use std::time::Duration;

use crate::error::Hint;

/// What went wrong talking to an Envoy admin endpoint. `target` is `pod NS/NAME` or the URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--admin-url` is not an `http://host:port` URL.
    #[error("invalid admin URL {url:?}: expected http://HOST:PORT")]
    Url {
        /// What was given.
        url: String,
    },
    /// TCP connect to the admin URL failed.
    #[error("cannot connect to Envoy admin at {target}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the port-forward failed.
    #[error("cannot reach the Envoy admin port of {target}")]
    Forward {
        /// Which pod.
        target: String,
        /// Why.
        #[source]
        source: crate::cluster::Error,
    },
    /// The kubelet reported an error on the port-forward error channel.
    #[error("{method} /{path} on {target} failed: {message}")]
    Tunnel {
        /// Which pod.
        target: String,
        /// HTTP method.
        method: &'static str,
        /// Admin path.
        path: String,
        /// The kubelet's message, e.g. `error forwarding port 15000 to pod ...: connection refused`.
        message: String,
    },
    /// The HTTP exchange failed below the status line.
    #[error("{method} /{path} on {target} failed")]
    Http {
        /// Where.
        target: String,
        /// HTTP method.
        method: &'static str,
        /// Admin path.
        path: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The admin endpoint answered with a non-2xx status.
    #[error(
        "{method} /{path} on {target} answered HTTP {status}{}",
        body_excerpt(body)
    )]
    Status {
        /// Where.
        target: String,
        /// HTTP method.
        method: &'static str,
        /// Admin path.
        path: String,
        /// Status code.
        status: u16,
        /// First part of the body.
        body: String,
    },
    /// No answer within --request-timeout.
    #[error("{method} /{path} on {target} timed out after {}s", timeout.as_secs_f64())]
    Timeout {
        /// Where.
        target: String,
        /// HTTP method.
        method: &'static str,
        /// Admin path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The connection closed in the middle of a response body.
    #[error("connection to {target} lost after {bytes} bytes of /{path}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Lost {
        /// Where.
        target: String,
        /// Admin path.
        path: String,
        /// Body bytes received before the loss.
        bytes: u64,
        /// The kubelet's error-channel message, if any.
        message: Option<String>,
    },
    /// Writing the streamed body to our output failed.
    #[error("writing the response of /{path} from {target} failed")]
    Write {
        /// Where.
        target: String,
        /// Admin path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn body_excerpt(body: &str) -> String {
    let t = crate::render::sanitize(body.trim());
    if t.is_empty() {
        String::new()
    } else {
        let cut: String = t.chars().take(200).collect();
        format!(": {cut}")
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Url { .. } => Some("e.g. --admin-url http://127.0.0.1:15000".into()),
            Error::Connect { .. } => Some("is Envoy running there? is the admin port right (--admin-port)?".into()),
            Error::Forward { source, .. } => source.hint(),
            Error::Tunnel { .. } => Some(
                "the sidecar is not listening on its admin port: is the istio-proxy container running? \
                 (kubectl get pod; if the admin port is not 15000, pass --admin-port)"
                    .into(),
            ),
            Error::Status { status: 404, path, .. } => Some(format!(
                "this Envoy has no /{} endpoint (too old a version?)",
                path.split('?').next().unwrap_or(path)
            )),
            Error::Status { status: 503, .. } => Some("Envoy is not ready yet (still starting or draining)".into()),
            Error::Timeout { .. } => Some("raise --request-timeout, or check the proxy is healthy".into()),
            Error::Lost { .. } => Some("the port-forward or the sidecar went away; retry".into()),
            _ => None,
        }
    }
}
