use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Error;

type TunnelError = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// A client of one Envoy's admin API, over one keep-alive HTTP/1.1 connection.
pub struct AdminClient {
    target: String,
    sender: http1::SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<()>,
    tunnel_error: Option<TunnelError>,
    tunnel: Option<kube::api::Portforwarder>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Drop for AdminClient {
    fn drop(&mut self) {
        self.conn.abort();
        if let Some(t) = &self.tunnel {
            t.abort();
        }
    }
}

/// Query parameters of `GET /config_dump`.
#[derive(Debug, Clone, Default)]
pub struct ConfigDumpQuery {
    /// `resource=` (e.g. `dynamic_active_clusters`).
    pub resource: Option<String>,
    /// `mask=` (a field mask).
    pub mask: Option<String>,
    /// `name_regex=`.
    pub name_regex: Option<String>,
    /// `include_eds`.
    pub include_eds: bool,
}

impl ConfigDumpQuery {
    /// `config_dump?...`, percent-encoded.
    pub fn path(&self) -> String {
        let mut q = Vec::new();
        if let Some(r) = &self.resource {
            q.push(format!("resource={}", encode(r)));
        }
        if let Some(m) = &self.mask {
            q.push(format!("mask={}", encode(m)));
        }
        if let Some(n) = &self.name_regex {
            q.push(format!("name_regex={}", encode(n)));
        }
        if self.include_eds {
            q.push("include_eds".into());
        }
        if q.is_empty() {
            "config_dump".into()
        } else {
            format!("config_dump?{}", q.join("&"))
        }
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl AdminClient {
    /// Speak HTTP/1.1 over `stream`. `target` names the other end in errors (`pod ns/name`, a URL).
    pub async fn over_stream<S>(
        stream: S,
        target: impl Into<String>,
        timeout: Option<Duration>,
    ) -> Result<Self, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let target = target.into();
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| Error::Http {
                target: target.clone(),
                method: "CONNECT",
                path: String::new(),
                source,
            })?;
        let conn = tokio::spawn(async move {
            // Errors surface on the request side; nothing to do with them here.
            let _ = conn.await;
        });
        Ok(Self {
            target,
            sender,
            conn,
            tunnel_error: None,
            tunnel: None,
            timeout,
        })
    }

    /// Attach the port-forward tunnel (kept alive with the client) and its error channel.
    pub(crate) fn with_tunnel(
        mut self,
        tunnel: kube::api::Portforwarder,
        error: TunnelError,
    ) -> Self {
        self.tunnel = Some(tunnel);
        self.tunnel_error = Some(error);
        self
    }

    /// Who this client talks to (`pod ns/name` or a URL).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The kubelet's error-channel message, if one arrives shortly.
    async fn tunnel_message(&mut self) -> Option<String> {
        let fut = self.tunnel_error.take()?;
        tokio::time::timeout(Duration::from_millis(500), fut)
            .await
            .ok()
            .flatten()
    }

    async fn fail_http(&mut self, method: &'static str, path: &str, source: hyper::Error) -> Error {
        match self.tunnel_message().await {
            Some(message) => Error::Tunnel {
                target: self.target.clone(),
                method,
                path: path.into(),
                message,
            },
            None => Error::Http {
                target: self.target.clone(),
                method,
                path: path.into(),
                source,
            },
        }
    }

    /// Send one request and return the response once its status is 2xx.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Response<Incoming>, Error> {
        let path = path.trim_start_matches('/').to_string();
        let m: &'static str = method_name(&method);
        let timeout = self.timeout;
        let target = self.target.clone();
        let fut = async {
            if let Err(e) = self.sender.ready().await {
                return Err(self.fail_http(m, &path, e).await);
            }
            let mut req = Request::builder()
                .method(method)
                .uri(format!("/{path}"))
                .header(http::header::HOST, "localhost")
                .header(
                    http::header::USER_AGENT,
                    concat!("meshdebug/", env!("CARGO_PKG_VERSION")),
                );
            let body = match body {
                Some((b, ct)) => {
                    req = req.header(http::header::CONTENT_TYPE, ct);
                    Full::new(b)
                }
                None => Full::new(Bytes::new()),
            };
            let req = match req.body(body) {
                Ok(r) => r,
                Err(_) => return Err(Error::Url { url: path.clone() }),
            };
            match self.sender.send_request(req).await {
                Ok(resp) => Ok(resp),
                Err(e) => Err(self.fail_http(m, &path, e).await),
            }
        };
        let resp = match timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::Timeout {
                    target: target.clone(),
                    method: m,
                    path: path.clone(),
                    timeout: t,
                })??,
            None => fut.await?,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = self
                .collect(m, &path, resp.into_body())
                .await
                .unwrap_or_default();
            return Err(Error::Status {
                target,
                method: m,
                path,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(resp)
    }

    /// Read a whole body, with the idle timeout between chunks.
    async fn collect(
        &mut self,
        method: &'static str,
        path: &str,
        body: Incoming,
    ) -> Result<Bytes, Error> {
        let mut buf = Vec::new();
        let mut sink = |chunk: &[u8]| {
            buf.extend_from_slice(chunk);
            Ok(())
        };
        self.pump(method, path, body, &mut sink).await?;
        Ok(Bytes::from(buf))
    }

    /// Feed body chunks to `sink` as they arrive; returns the byte count.
    async fn pump(
        &mut self,
        method: &'static str,
        path: &str,
        mut body: Incoming,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let mut bytes = 0u64;
        loop {
            let next = match self.timeout {
                Some(t) => match tokio::time::timeout(t, body.frame()).await {
                    Ok(f) => f,
                    Err(_) => {
                        return Err(Error::Timeout {
                            target: self.target.clone(),
                            method,
                            path: path.into(),
                            timeout: t,
                        });
                    }
                },
                None => body.frame().await,
            };
            match next {
                None => return Ok(bytes),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes += data.len() as u64;
                        sink(&data).map_err(|source| Error::Write {
                            target: self.target.clone(),
                            path: path.into(),
                            source,
                        })?;
                    }
                }
                Some(Err(_)) => {
                    let message = self.tunnel_message().await;
                    return Err(Error::Lost {
                        target: self.target.clone(),
                        path: path.into(),
                        bytes,
                        message,
                    });
                }
            }
        }
    }

    /// `GET path`, whole body.
    pub async fn get(&mut self, path: &str) -> Result<Bytes, Error> {
        let resp = self.send(Method::GET, path, None).await?;
        self.collect("GET", path.trim_start_matches('/'), resp.into_body())
            .await
    }

    /// `POST path` (no body), whole body.
    pub async fn post(&mut self, path: &str) -> Result<Bytes, Error> {
        let resp = self.send(Method::POST, path, None).await?;
        self.collect("POST", path.trim_start_matches('/'), resp.into_body())
            .await
    }

    /// `PUT path` with a JSON body (ControlZ), whole body.
    pub async fn put_json(&mut self, path: &str, json: Bytes) -> Result<Bytes, Error> {
        let resp = self
            .send(Method::PUT, path, Some((json, "application/json")))
            .await?;
        self.collect("PUT", path.trim_start_matches('/'), resp.into_body())
            .await
    }

    /// `GET path`, streaming the body into `sink` in constant memory; returns the byte count.
    pub async fn get_streaming(
        &mut self,
        path: &str,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let resp = self.send(Method::GET, path, None).await?;
        self.pump("GET", path.trim_start_matches('/'), resp.into_body(), sink)
            .await
    }

    /// `GET /config_dump?...`.
    pub async fn config_dump(&mut self, q: &ConfigDumpQuery) -> Result<Bytes, Error> {
        self.get(&q.path()).await
    }

    /// `GET /clusters?format=json`.
    pub async fn clusters_json(&mut self) -> Result<Bytes, Error> {
        self.get("clusters?format=json").await
    }

    /// `GET /server_info`.
    pub async fn server_info(&mut self) -> Result<Bytes, Error> {
        self.get("server_info").await
    }

    /// `GET /stats` (text), or `GET /stats?format=json`, optionally `filter=REGEX`.
    pub async fn stats(&mut self, filter: Option<&str>, json: bool) -> Result<Bytes, Error> {
        let mut q = Vec::new();
        if json {
            q.push("format=json".to_string());
        }
        if let Some(f) = filter {
            q.push(format!("filter={}", encode(f)));
        }
        let path = if q.is_empty() {
            "stats".to_string()
        } else {
            format!("stats?{}", q.join("&"))
        };
        self.get(&path).await
    }

    /// `POST /logging[?k=v&...]`: no params lists the loggers.
    pub async fn logging(&mut self, params: &[(String, String)]) -> Result<String, Error> {
        let path = if params.is_empty() {
            "logging".to_string()
        } else {
            let q: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            format!("logging?{}", q.join("&"))
        };
        let body = self.post(&path).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "REQUEST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dump_query_is_encoded() {
        let q = ConfigDumpQuery {
            resource: Some("dynamic_active_clusters".into()),
            name_regex: Some(".*reviews.*".into()),
            include_eds: true,
            ..Default::default()
        };
        assert_eq!(
            q.path(),
            "config_dump?resource=dynamic_active_clusters&name_regex=.%2Areviews.%2A&include_eds"
        );
        assert_eq!(ConfigDumpQuery::default().path(), "config_dump");
    }

    /// A one-shot HTTP server on an in-memory pipe: the client must parse, de-chunk and report status.
    async fn serve_once(response: &'static [u8]) -> AdminClient {
        serve(response, true).await
    }

    async fn serve(response: &'static [u8], keep_open: bool) -> AdminClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(response).await;
            let _ = server.flush().await;
            if keep_open {
                // keep the pipe open until the client is done
                let _ = server.read(&mut buf).await;
            }
        });
        AdminClient::over_stream(client, "pod test/p", Some(Duration::from_secs(5)))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn reads_a_chunked_body() {
        let mut c = serve_once(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        assert_eq!(&c.get("x").await.unwrap()[..], b"abcde");
    }

    #[tokio::test]
    async fn non_2xx_names_path_and_target() {
        let mut c =
            serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found").await;
        let e = c.get("/foo").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "GET /foo on pod test/p answered HTTP 404: not found"
        );
    }

    #[tokio::test]
    async fn truncated_body_is_lost_with_byte_count() {
        let mut c = serve(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
            false,
        )
        .await;
        let mut seen = 0usize;
        let e = c
            .get_streaming("config_dump", &mut |b| {
                seen += b.len();
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(seen, 10);
        assert_eq!(
            e.to_string(),
            "connection to pod test/p lost after 10 bytes of /config_dump"
        );
    }
}
