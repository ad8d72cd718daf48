//! The application container of a pod: a tiny HTTP server answering like the Istio tutorial
//! (`customer => preference => recommendation v1 from 'recommendation-v1-…': 1`), logging every
//! request to its container log file.
//!
//! An app with an upstream (`calls: preference:8080`) calls it on every request, through its
//! sidecar's outbound listener when it has one, else straight to an endpoint, and prefixes the
//! answer with `<app> => `.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// Where an app sends its upstream call.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `Host` header, e.g. `preference:8080`.
    pub host: String,
    /// Address to connect to (sidecar outbound listener, or an endpoint); set once known.
    pub via: Arc<Mutex<Option<SocketAddr>>>,
}

#[derive(Debug)]
struct AppState {
    app: String,
    version: Option<String>,
    pod: String,
    upstream: Option<Upstream>,
    count: AtomicU64,
    log: Mutex<std::fs::File>,
}

/// A running app server; aborted on drop.
#[derive(Debug)]
pub struct AppServer {
    addr: SocketAddr,
    log_path: PathBuf,
    task: JoinHandle<()>,
}

impl AppServer {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start(
        app: &str,
        version: Option<&str>,
        pod: &str,
        upstream: Option<Upstream>,
        log_path: &Path,
    ) -> Result<AppServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "{} INFO  {app} started, listening on {addr}",
            now_rfc3339()
        )?;
        let state = Arc::new(AppState {
            app: app.to_owned(),
            version: version.map(str::to_owned),
            pod: pod.to_owned(),
            upstream,
            count: AtomicU64::new(0),
            log: Mutex::new(log),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), peer, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(AppServer {
            addr,
            log_path: log_path.to_path_buf(),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<bytes::Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    let (status, body) = answer(&state).await;
    if let Ok(mut log) = state.log.lock() {
        let _ = writeln!(
            log,
            "{} INFO  {method} {path} from {peer} -> {status}: {}",
            now_rfc3339(),
            body.trim_end()
        );
    }
    let resp = Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap_or_default();
    Ok(resp)
}

async fn answer(state: &AppState) -> (u16, String) {
    let Some(up) = &state.upstream else {
        let n = state.count.fetch_add(1, Ordering::SeqCst) + 1;
        let v = state
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        return (200, format!("{}{v} from '{}': {n}\n", state.app, state.pod));
    };
    let via = up.via.lock().ok().and_then(|g| *g);
    let Some(via) = via else {
        return (
            503,
            format!("{} => Error: 503 - no route to {}\n", state.app, up.host),
        );
    };
    match crate::envoy::http_request(via, "GET", "/", &[("host", up.host.as_str())], None).await {
        Ok((200, body)) => (200, format!("{} => {body}", state.app)),
        Ok((code, body)) => (
            503,
            format!("{} => Error: {code} - {}\n", state.app, body.trim_end()),
        ),
        Err(e) => (503, format!("{} => Error: 503 - {e}\n", state.app)),
    }
}

/// Current UTC time as RFC 3339 with seconds (`2026-11-24T22:31:05Z`).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59Z"
        );
    }

    #[tokio::test]
    async fn chain_of_two_apps() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = AppServer::start(
            "recommendation",
            Some("v1"),
            "rec-1",
            None,
            &dir.path().join("a.log"),
        )
        .await
        .unwrap();
        let up = Upstream {
            host: "recommendation:8080".into(),
            via: Arc::new(Mutex::new(Some(leaf.addr()))),
        };
        let front = AppServer::start(
            "preference",
            None,
            "pref-1",
            Some(up),
            &dir.path().join("b.log"),
        )
        .await
        .unwrap();
        let (s, body) = crate::envoy::http_get(front.addr(), "/").await.unwrap();
        assert_eq!(
            (s, body.as_str()),
            (200, "preference => recommendation v1 from 'rec-1': 1\n")
        );
        let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
        assert!(log.contains("GET / from"), "{log}");
    }
}
