//! A JWKS server over HTTPS with a private CA, like Keycloak behind a cluster router: the
//! realm `olaf` serves `/auth/realms/olaf/protocol/openid-connect/certs` and
//! `/.well-known/openid-configuration`, mints ES256 tokens, rotates keys, and has fault modes
//! for tests (slow, huge, redirect loop, not JSON, 404, wrong host name, expired certificate).
//!
//! It runs on its own thread and runtime, so sync and async tests can use it alike; it stops
//! when dropped. URIs use `https://localhost:PORT` (the certificate also names
//! `*.apps.example.com` and `127.0.0.1`).

mod keys;
mod pki;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use pki::{CA_NAME, SERVER_NAMES};

/// How the server misbehaves (the TLS modes apply to every path, the others to the keys path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Serve the keys.
    #[default]
    Normal,
    /// Wait this long before answering the keys path.
    Slow(Duration),
    /// A body over 1 MiB (2 MiB of JSON whitespace inside a key set).
    Huge,
    /// The keys path redirects to `/loop/a`, which redirects to `/loop/b`, and back.
    RedirectLoop,
    /// An HTML login page with status 200.
    NotJson,
    /// 404 on the keys path.
    NotFound,
    /// A certificate for `sso.other.example.org` only (same CA).
    WrongHostCert,
    /// A certificate that expired in 2021 (same CA, right names).
    ExpiredCert,
}

/// Start options.
#[derive(Debug, Clone)]
pub struct JwksServerOptions {
    /// The realm (`olaf`).
    pub realm: String,
    /// The host name used in URIs (`localhost`).
    pub host: String,
}

impl Default for JwksServerOptions {
    fn default() -> Self {
        JwksServerOptions {
            realm: "olaf".into(),
            host: "localhost".into(),
        }
    }
}

struct State {
    mode: Mode,
    keys: Vec<keys::SigningKeyPair>,
    generation: usize,
}

struct Shared {
    state: Mutex<State>,
    requests: AtomicUsize,
    realm: String,
    base: String,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server.
pub struct JwksServer {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for JwksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct CertByMode {
    shared: Arc<Shared>,
    valid: Arc<CertifiedKey>,
    wrong_host: Arc<CertifiedKey>,
    expired: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertByMode {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.shared.state().mode {
            Mode::WrongHostCert => self.wrong_host.clone(),
            Mode::ExpiredCert => self.expired.clone(),
            _ => self.valid.clone(),
        })
    }
}

impl JwksServer {
    /// Generate the CA, certificates and a first key, bind 127.0.0.1:0 and serve.
    pub fn start(opts: JwksServerOptions) -> anyhow::Result<JwksServer> {
        let pki = pki::generate()?;
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let base = format!("https://{}:{}", opts.host, addr.port());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: Mode::Normal,
                keys: vec![keys::SigningKeyPair::generate(kid(&opts.realm, 1))?],
                generation: 1,
            }),
            requests: AtomicUsize::new(0),
            realm: opts.realm.clone(),
            base,
        });
        let resolver = Arc::new(CertByMode {
            shared: shared.clone(),
            valid: pki.valid,
            wrong_host: pki.wrong_host,
            expired: pki.expired,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let srv = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jwks-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = accept_loop(listener, acceptor, srv) => {}
                    }
                });
            })?;
        ready_rx.recv().context("the JWKS server thread died")??;
        Ok(JwksServer {
            addr,
            ca_pem: pki.ca_pem,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The listening address (127.0.0.1:PORT).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate, PEM ("Olaf Private Root CA").
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `https://localhost:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }

    /// `https://localhost:PORT/auth/realms/olaf`.
    pub fn issuer(&self) -> String {
        format!("{}/auth/realms/{}", self.shared.base, self.shared.realm)
    }

    /// `https://localhost:PORT/auth/realms/olaf/protocol/openid-connect/certs`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/protocol/openid-connect/certs", self.issuer())
    }

    /// The keys currently served, as JSON text.
    pub fn jwks_json(&self) -> String {
        jwks_body(&self.shared)
    }

    /// The kids currently served.
    pub fn kids(&self) -> Vec<String> {
        self.shared
            .state()
            .keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// An ES256 token over `claims` (as given, e.g. `json!({"iss": s.issuer(), ...})`), signed
    /// with the current key; its header names the current kid.
    pub fn mint(&self, claims: impl serde::Serialize) -> String {
        let claims = serde_json::to_value(claims).expect("claims serialize to JSON");
        let st = self.shared.state();
        let key = st.keys.last().expect("the server always has a key");
        key.mint(&claims).expect("ES256 signing")
    }

    /// A token from this issuer for `sub` and `aud`, issued at `now` (seconds since the epoch)
    /// and valid for `ttl`.
    pub fn token(&self, sub: &str, aud: &str, now: i64, ttl: Duration) -> String {
        self.mint(serde_json::json!({
            "iss": self.issuer(),
            "sub": sub,
            "aud": aud,
            "iat": now,
            "exp": now + ttl.as_secs() as i64,
        }))
    }

    /// Replace the signing key with a new one (new kid, `olaf-key-2`, …); the old key is no
    /// longer served. Returns the new kid.
    pub fn rotate(&self) -> String {
        let mut st = self.shared.state();
        st.generation += 1;
        let k = keys::SigningKeyPair::generate(kid(&self.shared.realm, st.generation))
            .expect("ES256 key generation");
        let kid = k.kid.clone();
        st.keys = vec![k];
        kid
    }

    /// Change how the server behaves.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.state().mode = mode;
    }

    /// How many HTTP requests it has answered.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn kid(realm: &str, n: usize) -> String {
    format!("{realm}-key-{n}")
}

fn jwks_body(shared: &Shared) -> String {
    let st = shared.state();
    serde_json::json!({"keys": st.keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::FOUND, "text/plain", Bytes::new());
    if let Ok(v) = http::HeaderValue::from_str(to) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let realm = format!("/auth/realms/{}", shared.realm);
    let path = req.uri().path();
    let mode = shared.state().mode;
    if path == format!("{realm}/.well-known/openid-configuration") {
        let issuer = format!("{}{realm}", shared.base);
        let doc = serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
            "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
            "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        return respond(StatusCode::OK, "application/json", doc.to_string());
    }
    if path == "/loop/a" {
        return redirect("/loop/b");
    }
    if path == "/loop/b" {
        return redirect("/loop/a");
    }
    if path != format!("{realm}/protocol/openid-connect/certs") {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    }
    match mode {
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            respond(StatusCode::OK, "application/json", jwks_body(shared))
        }
        Mode::Huge => {
            let mut body = String::with_capacity(2 * 1024 * 1024 + 64);
            body.push_str("{\"keys\":[");
            body.extend(std::iter::repeat_n(' ', 2 * 1024 * 1024));
            body.push_str("]}");
            respond(StatusCode::OK, "application/json", body)
        }
        Mode::RedirectLoop => redirect("/loop/a"),
        Mode::NotJson => respond(
            StatusCode::OK,
            "text/html",
            "<html><head><title>Sign in to olaf</title></head><body>Login</body></html>\n",
        ),
        Mode::NotFound => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":\"Realm does not exist\"}",
        ),
        Mode::Normal | Mode::WrongHostCert | Mode::ExpiredCert => {
            respond(StatusCode::OK, "application/json", jwks_body(shared))
        }
    }
}
