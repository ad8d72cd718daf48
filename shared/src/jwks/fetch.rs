//! Fetch a `jwksUri` the way istiod does, with a GIVEN trust (system roots + `extra.pem`
//! + `--ca-file`), a timeout, a size cap and a redirect limit; classify what went wrong.
//!
//! TLS is always verified. To name the issuer of an untrusted chain, the rustls verifier is
//! wrapped: [`Recorder`] keeps the presented certificates and the verdict, then returns the verdict
//! of the real `WebPkiServerVerifier` unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::Error;
use super::cert::{CertInfo, parse_pem};
use super::model::{Jwks, OpenIdConfiguration};
use super::verifier::{Handshake, Recorder};

use super::outcome::classify_tls;
pub use super::outcome::{FetchResult, Outcome, public_jwks};

/// Default size cap of a JWKS response.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Default redirect limit (Go's http.Client follows 10).
pub const MAX_REDIRECTS: usize = 10;
/// Default timeout (istiod's per-rule default, 1.22+).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The CAs a fetch trusts.
#[derive(Clone)]
pub struct Trust {
    roots: Vec<CertificateDer<'static>>,
    sources: Vec<String>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let r = rustls_native_certs::load_native_certs();
        for e in &r.errors {
            tracing::debug!("system trust store: {e}");
        }
        r.certs
    })
}

impl Trust {
    /// Trust nothing (every https fetch is UNTRUSTED CA until CAs are added).
    pub fn empty() -> Self {
        Trust {
            roots: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// The machine's trust store (as istiod ≥1.8 uses Go's `SystemCertPool`; honours
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn system() -> Self {
        let mut t = Self::empty();
        let roots = system_roots();
        t.roots.extend(roots.iter().cloned());
        t.sources.push(format!("system roots ({})", roots.len()));
        t
    }

    /// Add the certificates of a PEM bundle; returns how many. `what` names it in messages.
    pub fn add_pem(&mut self, pem: &[u8], what: &str) -> Result<usize, Error> {
        let certs = parse_pem(pem, what)?;
        let n = certs.len();
        self.add_certs(certs, what);
        Ok(n)
    }

    /// Add DER certificates.
    pub fn add_certs(&mut self, certs: Vec<CertificateDer<'static>>, what: &str) {
        self.sources.push(format!("{what} ({})", certs.len()));
        self.roots.extend(certs);
    }

    /// Where the CAs came from, e.g. `system roots (140)`, `extra.pem of secret x (1)`.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub(crate) fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(self.roots.iter().cloned());
        tracing::debug!("trust: {added} CAs ({ignored} unusable)");
        store
    }
}

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Whole-request timeout (connect, TLS, headers, body).
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Redirects followed.
    pub max_redirects: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: TIMEOUT,
            max_bytes: MAX_BYTES,
            max_redirects: MAX_REDIRECTS,
        }
    }
}

/// A one-shot HTTPS client with a recording verifier.
struct Client {
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    looped: Arc<AtomicBool>,
    opts: FetchOptions,
}

impl Client {
    fn new(trust: &Trust, opts: FetchOptions) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let recorder = Arc::new(Recorder::new(trust, provider.clone())?);
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Tls {
                what: "the HTTPS client".into(),
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        let looped = Arc::new(AtomicBool::new(false));
        let flag = looped.clone();
        let max = opts.max_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().iter().any(|u| u == attempt.url()) {
                flag.store(true, Ordering::SeqCst);
                attempt.error("redirect loop")
            } else if attempt.previous().len() > max {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .redirect(policy)
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .pool_max_idle_per_host(0)
            .user_agent(concat!("kubectl-jwks-trust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Client {
            http,
            recorder,
            looped,
            opts,
        })
    }

    async fn get(&self, uri: &str) -> (Result<Vec<u8>, Outcome>, Handshake) {
        let r = match tokio::time::timeout(self.opts.timeout, self.get_inner(uri)).await {
            Ok(r) => r,
            Err(_) => Err(Outcome::Timeout {
                after_ms: self.opts.timeout.as_millis() as u64,
            }),
        };
        (r, self.recorder.take())
    }

    async fn get_inner(&self, uri: &str) -> Result<Vec<u8>, Outcome> {
        let mut resp = self
            .http
            .get(uri)
            .send()
            .await
            .map_err(|e| self.classify(uri, &e))?;
        if resp.status().as_u16() != 200 {
            return Err(Outcome::Http {
                code: resp.status().as_u16(),
            });
        }
        let limit = self.opts.max_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Outcome::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(uri, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(Outcome::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Map a reqwest error (the TLS verdict, if any, is classified from the recorder later).
    fn classify(&self, uri: &str, e: &reqwest::Error) -> Outcome {
        if e.is_redirect() {
            return Outcome::TooManyRedirects {
                limit: self.opts.max_redirects,
                looped: self.looped.load(Ordering::SeqCst),
            };
        }
        if e.is_timeout() {
            return Outcome::Timeout {
                after_ms: self.opts.timeout.as_millis() as u64,
            };
        }
        if e.is_builder() {
            return Outcome::BadUri {
                reason: format!("cannot fetch {uri:?}: {}", innermost(e)),
            };
        }
        if let Some(tls) = find_rustls_error(e) {
            return Outcome::TlsError {
                reason: tls.to_string(),
            };
        }
        Outcome::Unreachable {
            reason: innermost(e),
        }
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(r) = x.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = x.source();
    }
    None
}

fn host_of(uri: &str) -> Result<(String, String), Outcome> {
    let url = reqwest::Url::parse(uri).map_err(|e| Outcome::BadUri {
        reason: format!("{uri:?} is not a URL: {e}"),
    })?;
    match url.scheme() {
        "https" | "http" => {}
        s => {
            return Err(Outcome::BadUri {
                reason: format!("scheme {s:?}: istiod only fetches http and https"),
            });
        }
    }
    let host = url
        .host_str()
        .ok_or_else(|| Outcome::BadUri {
            reason: format!("{uri:?} has no host"),
        })?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((url.scheme().to_string(), host))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn get_bytes(
    client: &Client,
    uri: &str,
) -> (Result<Vec<u8>, Outcome>, Vec<CertificateDer<'static>>) {
    let (_, host) = match host_of(uri) {
        Ok(h) => h,
        Err(o) => return (Err(o), vec![]),
    };
    let (r, hs) = client.get(uri).await;
    let infos: Vec<CertInfo> = hs
        .chain
        .iter()
        .filter_map(|c| CertInfo::from_der(c))
        .collect();
    let r = match (r, &hs.error) {
        // A verification failure explains any connection error that followed it.
        (Err(Outcome::TlsError { .. } | Outcome::Unreachable { .. }), Some(err)) => {
            Err(classify_tls(err, &infos, &host, now_unix()))
        }
        (r, _) => r,
    };
    (r, hs.chain)
}

/// Fetch a JWKS from `uri` with `trust`.
pub async fn fetch_jwks(
    uri: &str,
    trust: &Trust,
    opts: FetchOptions,
) -> Result<FetchResult, Error> {
    let client = Client::new(trust, opts)?;
    Ok(fetch_with(&client, uri).await)
}

async fn fetch_with(client: &Client, uri: &str) -> FetchResult {
    let (r, chain_der) = get_bytes(client, uri).await;
    let outcome = match r {
        Ok(body) => match Jwks::parse(&body) {
            Ok(jwks) if jwks.keys.is_empty() => Outcome::NotAJwks {
                reason: "the key set is empty".into(),
            },
            Ok(jwks) => Outcome::Ok { jwks, body },
            Err(e) => Outcome::NotAJwks {
                reason: not_a_jwks_reason(&body, &e),
            },
        },
        Err(o) => o,
    };
    FetchResult {
        uri: uri.to_string(),
        outcome,
        chain: chain_der
            .iter()
            .filter_map(|c| CertInfo::from_der(c))
            .collect(),
        chain_der,
    }
}

fn not_a_jwks_reason(body: &[u8], e: &serde_json::Error) -> String {
    let start = String::from_utf8_lossy(&body[..body.len().min(40)])
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    if e.is_syntax() || e.is_eof() {
        format!("not JSON (starts with {start:?})")
    } else {
        format!("JSON but not a key set: {e}")
    }
}

/// istiod's OIDC discovery: `<issuer>/.well-known/openid-configuration` → `jwks_uri` → keys.
/// The result names the JWKS URI it found (or the discovery URL when discovery failed).
pub async fn fetch_jwks_for_issuer(
    issuer: &str,
    trust: &Trust,
    opts: FetchOptions,
) -> Result<FetchResult, Error> {
    let client = Client::new(trust, opts)?;
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (r, chain_der) = get_bytes(&client, &discovery).await;
    let chain: Vec<CertInfo> = chain_der
        .iter()
        .filter_map(|c| CertInfo::from_der(c))
        .collect();
    let fail = |outcome| FetchResult {
        uri: discovery.clone(),
        outcome,
        chain: chain.clone(),
        chain_der: chain_der.clone(),
    };
    let body = match r {
        Ok(b) => b,
        Err(o) => return Ok(fail(o)),
    };
    match serde_json::from_slice::<OpenIdConfiguration>(&body) {
        Ok(cfg) => Ok(fetch_with(&client, &cfg.jwks_uri).await),
        Err(e) => Ok(fail(Outcome::NotAJwks {
            reason: format!(
                "discovery document has no jwks_uri: {}",
                not_a_jwks_reason(&body, &e)
            ),
        })),
    }
}

/// `openssl s_client -showcerts`: connect to `https://HOST[:PORT]` and return the chain the
/// server presents, verified against `trust` (the verdict is in the outcome; an untrusted chain
/// is still returned — that is the point).
pub async fn capture_chain(
    url: &str,
    trust: &Trust,
    opts: FetchOptions,
) -> Result<FetchResult, Error> {
    let (scheme, _) = host_of(url).map_err(|o| Error::BadUrl {
        url: url.to_string(),
        reason: o.detail(),
    })?;
    if scheme != "https" {
        return Err(Error::BadUrl {
            url: url.to_string(),
            reason: "only https:// has a certificate chain".into(),
        });
    }
    let client = Client::new(trust, opts)?;
    let (r, chain_der) = get_bytes(&client, url).await;
    let outcome = match r {
        // Any HTTP answer means TLS worked: the chain is trusted already.
        Ok(_)
        | Err(Outcome::Http { .. } | Outcome::TooLarge { .. } | Outcome::TooManyRedirects { .. }) => {
            Outcome::Ok {
                jwks: Jwks { keys: vec![] },
                body: vec![],
            }
        }
        Err(o) => o,
    };
    if chain_der.is_empty() {
        return Err(Error::Capture {
            url: url.to_string(),
            status: outcome.status(),
            detail: outcome.detail(),
        });
    }
    Ok(FetchResult {
        uri: url.to_string(),
        outcome,
        chain: chain_der
            .iter()
            .filter_map(|c| CertInfo::from_der(c))
            .collect(),
        chain_der,
    })
}

/// The certificates of a captured chain that `extra.pem` should get: the CA certificates the
/// server presented, else the top of the chain (a leaf issued by an absent CA, or self-signed).
pub fn anchors_of(chain: &[CertificateDer<'static>]) -> Vec<CertificateDer<'static>> {
    let cas: Vec<CertificateDer<'static>> = chain
        .iter()
        .skip(1)
        .filter(|c| CertInfo::from_der(c).is_some_and(|i| i.is_ca))
        .cloned()
        .collect();
    if !cas.is_empty() {
        return cas;
    }
    chain.last().cloned().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(matches!(host_of("ftp://x/y"), Err(Outcome::BadUri { .. })));
        assert_eq!(host_of("https://[::1]:8443/x").unwrap().1, "::1");
        assert_eq!(
            host_of("https://sso.example.com/x").unwrap().1,
            "sso.example.com"
        );
    }
}
