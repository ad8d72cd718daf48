//! istiod's xDS debug path, used when its HTTP debug endpoints are off
//! (`ENABLE_DEBUG_ON_HTTP=false`): one `DiscoveryRequest{type_url: "istio.io/debug/syncz"}` on
//! an ADS stream to port 15012 (TLS, certificate not verified as istioctl does, bearer token
//! of a TokenRequest for audience `istio-ca`), one `DiscoveryResponse` back.
//!
//! The few protobuf messages involved are encoded and decoded by hand (field numbers of
//! `envoy/service/discovery/v3/discovery.proto`, `envoy/service/status/v3/csds.proto`,
//! `envoy/config/core/v3/base.proto`, `google/protobuf/struct.proto`) into the same
//! [`DiscoveryResponse`] model the JSON form parses into.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::model::{
    ClientConfig, ControlPlane, DiscoveryResponse, GenericXdsConfig, Metadata, Node, PerXdsConfig,
    UpdateFailureState,
};

/// The debug type istiod answers with one `ClientConfig` per connected proxy.
pub const SYNCZ_TYPE: &str = "istio.io/debug/syncz";
/// istiod's xDS port (TLS).
pub const XDS_PORT: u16 = 15012;
/// The audience of the token istiod accepts.
pub const TOKEN_AUDIENCE: &str = "istio-ca";
const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const CLIENT_CONFIG: &str = "type.googleapis.com/envoy.service.status.v3.ClientConfig";
const CONFIG_STATUS: [&str; 5] = ["UNKNOWN", "SYNCED", "NOT_SENT", "STALE", "ERROR"];

/// What went wrong on the xDS path.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The TLS handshake failed.
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    /// HTTP/2 failed.
    #[error("HTTP/2 failed")]
    H2(#[source] h2::Error),
    /// The answer was not HTTP 200.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// gRPC ended with a non-zero status.
    #[error("gRPC status {code}: {message}")]
    Grpc {
        /// The gRPC code (16 = Unauthenticated, 7 = PermissionDenied).
        code: u32,
        /// `grpc-message`.
        message: String,
    },
    /// The stream ended without a response.
    #[error("the stream ended without a response")]
    NoResponse,
    /// No response within --request-timeout.
    #[error("no response within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The response is not a `DiscoveryResponse`.
    #[error("malformed protobuf ({what}) at byte {offset}")]
    Decode {
        /// The message being decoded.
        what: &'static str,
        /// Where in it.
        offset: usize,
    },
}

// ---- encoding ---------------------------------------------------------------------------------

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_len(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(buf, u64::from(field) << 3 | 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_len(buf, field, s.as_bytes());
    }
}

/// A `google.protobuf.Struct` of string values.
fn encode_struct(fields: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        let mut value = Vec::new();
        put_len(&mut value, 3, v.as_bytes()); // string_value
        let mut entry = Vec::new();
        put_str(&mut entry, 1, k);
        put_len(&mut entry, 2, &value);
        put_len(&mut out, 1, &entry);
    }
    out
}

/// The `DiscoveryRequest` istioctl sends: node metadata `GENERATOR=event`,
/// `SERVICE_ACCOUNT=default`, `NAMESPACE=<istio namespace>`.
pub fn encode_request(istio_namespace: &str, type_url: &str, resource_names: &[String]) -> Vec<u8> {
    let meta: BTreeMap<String, String> = [
        ("GENERATOR", "event"),
        ("SERVICE_ACCOUNT", "default"),
        ("NAMESPACE", istio_namespace),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut node = Vec::new();
    put_str(
        &mut node,
        1,
        &format!("sidecar~0.0.0.0~meshdebug.{istio_namespace}~{istio_namespace}.svc.cluster.local"),
    );
    put_len(&mut node, 3, &encode_struct(&meta));
    let mut req = Vec::new();
    put_len(&mut req, 2, &node);
    for n in resource_names {
        put_str(&mut req, 3, n);
    }
    put_str(&mut req, 4, type_url);
    req
}

// ---- decoding ---------------------------------------------------------------------------------

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn bad(&self) -> Failure {
        Failure::Decode {
            what: self.what,
            offset: self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, Failure> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.bad())?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.bad())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Failure> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.bad())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.bad())?;
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Field<'a>)>, Failure> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| self.bad())?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Field::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| self.bad())?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return Err(self.bad()),
        };
        Ok(Some((field, f)))
    }
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Decode a `DiscoveryResponse` for [`SYNCZ_TYPE`] into the JSON model.
pub fn decode_response(bytes: &[u8]) -> Result<DiscoveryResponse<'static>, Failure> {
    let mut r = Reader::new(bytes, "DiscoveryResponse");
    let mut out = DiscoveryResponse::default();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (2, Field::Bytes(any)) => {
                let (type_url, value) = decode_any(any)?;
                if type_url == CLIENT_CONFIG {
                    out.resources.push(decode_client_config(value)?);
                }
            }
            (6, Field::Bytes(cp)) => {
                let mut c = Reader::new(cp, "ControlPlane");
                let mut identifier = String::new();
                while let Some((n, f)) = c.next()? {
                    if let (1, Field::Bytes(b)) = (n, f) {
                        identifier = string(b);
                    }
                }
                out.control_plane = Some(ControlPlane { identifier });
            }
            _ => {}
        }
    }
    Ok(out)
}

fn decode_any(b: &[u8]) -> Result<(String, &[u8]), Failure> {
    let mut r = Reader::new(b, "Any");
    let (mut type_url, mut value) = (String::new(), &b[..0]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(t)) => type_url = string(t),
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((type_url, value))
}

fn decode_client_config(b: &[u8]) -> Result<ClientConfig<'static>, Failure> {
    let mut r = Reader::new(b, "ClientConfig");
    let mut c = ClientConfig::default();
    let mut generic = Vec::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(node)) => c.node = decode_node(node)?,
            (2, Field::Bytes(x)) => c.xds_config.push(decode_per_xds(x)?),
            (3, Field::Bytes(g)) => generic.push(decode_generic(g)?),
            _ => {}
        }
    }
    if !generic.is_empty() {
        c.generic_xds_configs = Some(generic);
    }
    Ok(c)
}

fn decode_node(b: &[u8]) -> Result<Node<'static>, Failure> {
    let mut r = Reader::new(b, "Node");
    let mut node = Node::default();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(id)) => node.id = string(id).into(),
            (3, Field::Bytes(s)) => {
                node.metadata = Metadata(
                    decode_struct(s, 0)?
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            Value::String(v) => Some((k.into(), v.into())),
                            _ => None,
                        })
                        .collect(),
                )
            }
            _ => {}
        }
    }
    Ok(node)
}

/// How deep `Struct`s and `Value`s may nest (protobuf's default recursion limit): deeper input is
/// refused rather than overflowing the stack.
const MAX_DEPTH: usize = 100;

fn too_deep(what: &'static str, depth: usize) -> Result<(), Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::Decode { what, offset: 0 });
    }
    Ok(())
}

fn decode_struct(b: &[u8], depth: usize) -> Result<BTreeMap<String, Value>, Failure> {
    too_deep("Struct nested too deep", depth)?;
    let mut r = Reader::new(b, "Struct");
    let mut out = BTreeMap::new();
    while let Some((n, f)) = r.next()? {
        if let (1, Field::Bytes(entry)) = (n, f) {
            let mut e = Reader::new(entry, "Struct entry");
            let (mut k, mut v) = (String::new(), Value::Null);
            while let Some((n, f)) = e.next()? {
                match (n, f) {
                    (1, Field::Bytes(key)) => k = string(key),
                    (2, Field::Bytes(val)) => v = decode_value(val, depth + 1)?,
                    _ => {}
                }
            }
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn decode_value(b: &[u8], depth: usize) -> Result<Value, Failure> {
    too_deep("Value nested too deep", depth)?;
    let mut r = Reader::new(b, "Value");
    let mut v = Value::Null;
    while let Some((n, f)) = r.next()? {
        v = match (n, f) {
            (2, Field::Fixed64(bits)) => serde_json::Number::from_f64(f64::from_bits(bits))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            (3, Field::Bytes(s)) => Value::String(string(s)),
            (4, Field::Varint(x)) => Value::Bool(x != 0),
            (5, Field::Bytes(s)) => {
                Value::Object(decode_struct(s, depth + 1)?.into_iter().collect())
            }
            (6, Field::Bytes(l)) => {
                let mut lr = Reader::new(l, "ListValue");
                let mut items = Vec::new();
                while let Some((n, f)) = lr.next()? {
                    if let (1, Field::Bytes(x)) = (n, f) {
                        items.push(decode_value(x, depth + 1)?);
                    }
                }
                Value::Array(items)
            }
            _ => v,
        };
    }
    Ok(v)
}

fn decode_generic(b: &[u8]) -> Result<GenericXdsConfig<'static>, Failure> {
    let mut r = Reader::new(b, "GenericXdsConfig");
    let mut g = GenericXdsConfig::default();
    let mut status = 0u64;
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(t)) => g.type_url = string(t).into(),
            (5, Field::Bytes(ts)) => g.last_updated = decode_timestamp(ts)?.map(Cow::Owned),
            (6, Field::Varint(s)) => status = s,
            (8, Field::Bytes(e)) => {
                let mut er = Reader::new(e, "UpdateFailureState");
                let mut details = None;
                while let Some((n, f)) = er.next()? {
                    if let (3, Field::Bytes(d)) = (n, f) {
                        details = Some(string(d).into());
                    }
                }
                g.error_state = Some(UpdateFailureState { details });
            }
            _ => {}
        }
    }
    g.config_status = status_name(status).map(Cow::Owned);
    Ok(g)
}

/// `ConfigStatus` as its enum name; UNKNOWN (0, the proto3 default) is left out, as protojson does.
fn status_name(s: u64) -> Option<String> {
    match usize::try_from(s) {
        Ok(0) => None,
        Ok(i) => Some(
            CONFIG_STATUS
                .get(i)
                .map_or_else(|| s.to_string(), |n| n.to_string()),
        ),
        Err(_) => Some(s.to_string()),
    }
}

fn decode_per_xds(b: &[u8]) -> Result<PerXdsConfig, Failure> {
    let mut r = Reader::new(b, "PerXdsConfig");
    let mut p = PerXdsConfig::default();
    let present = Some(serde::de::IgnoredAny);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Varint(s)) => p.status = status_name(s),
            (2, Field::Bytes(_)) => p.listener_config = present,
            (3, Field::Bytes(_)) => p.cluster_config = present,
            (4, Field::Bytes(_)) => p.route_config = present,
            (6, Field::Bytes(_)) => p.endpoint_config = present,
            _ => {}
        }
    }
    Ok(p)
}

fn decode_timestamp(b: &[u8]) -> Result<Option<String>, Failure> {
    let mut r = Reader::new(b, "Timestamp");
    let (mut secs, mut nanos) = (0i64, 0i32);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Varint(s)) => secs = s as i64,
            (2, Field::Varint(ns)) => nanos = ns as i32,
            _ => {}
        }
    }
    Ok(Timestamp::new(secs, nanos).ok().map(|t| t.to_string()))
}

// ---- transport --------------------------------------------------------------------------------

/// TLS without certificate verification (istioctl: "always get certificate signed by unknown
/// authority"), ALPN h2.
pub async fn tls<S>(io: S, server_name: &str) -> Result<tokio_rustls::client::TlsStream<S>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Tls(std::io::Error::other(e)))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| Failure::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
        .map_err(Failure::Tls)
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn grpc_error(headers: &http::HeaderMap) -> Option<Failure> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    (code != 0).then(|| Failure::Grpc {
        code,
        message: headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Open an ADS stream over `io` (already TLS if needed), send one request, return the first
/// response message (protobuf bytes), then cancel the stream.
pub async fn ask<S>(
    io: S,
    authority: &str,
    token: Option<&str>,
    request: &[u8],
    timeout: Option<Duration>,
) -> Result<Vec<u8>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (client, conn) = h2::client::handshake(io).await.map_err(Failure::H2)?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = exchange(client, authority, token, request).await;
        conn.abort();
        result
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .map_err(|_| Failure::Timeout(t))?,
        None => exchange.await,
    }
}

async fn exchange(
    client: h2::client::SendRequest<Bytes>,
    authority: &str,
    token: Option<&str>,
    request: &[u8],
) -> Result<Vec<u8>, Failure> {
    let mut client = client.ready().await.map_err(Failure::H2)?;
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://{authority}{ADS_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(()).map_err(|_| Failure::Status(0))?;
    let (response, mut send) = client.send_request(req, false).map_err(Failure::H2)?;
    let mut framed = Vec::with_capacity(request.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(request);
    send.send_data(Bytes::from(framed), false)
        .map_err(Failure::H2)?;
    let response = response.await.map_err(Failure::H2)?;
    if response.status() != http::StatusCode::OK {
        return Err(Failure::Status(response.status().as_u16()));
    }
    if let Some(e) = grpc_error(response.headers()) {
        return Err(e);
    }
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() >= 5 + len {
                send.send_reset(h2::Reason::CANCEL);
                return Ok(buf[5..5 + len].to_vec());
            }
        }
        match body.data().await {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(Failure::H2(e)),
            None => {
                let trailers = body.trailers().await.map_err(Failure::H2)?;
                return Err(trailers
                    .as_ref()
                    .and_then(grpc_error)
                    .unwrap_or(Failure::NoResponse));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test-side encoders for the response messages.
    fn varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
        put_varint(buf, u64::from(field) << 3);
        put_varint(buf, v);
    }

    pub(crate) fn encode_syncz_response(istiod: &str) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert("CLUSTER_ID".to_string(), "Kubernetes".to_string());
        meta.insert("ISTIO_VERSION".to_string(), "1.24.2".to_string());
        meta.insert("NAMESPACE".to_string(), "shop".to_string());
        let mut node = Vec::new();
        put_str(&mut node, 1, "reviews-v2-1.shop");
        put_len(&mut node, 3, &encode_struct(&meta));
        let mut cc = Vec::new();
        put_len(&mut cc, 1, &node);
        for (url, status, err) in [
            (
                "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                1u64,
                None,
            ),
            (
                "type.googleapis.com/envoy.config.listener.v3.Listener",
                4,
                Some("duplicate listener"),
            ),
            (
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                3,
                None,
            ),
            (
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                2,
                None,
            ),
        ] {
            let mut g = Vec::new();
            put_str(&mut g, 1, url);
            let mut ts = Vec::new();
            varint_field(&mut ts, 1, 1_718_877_600);
            put_len(&mut g, 5, &ts);
            varint_field(&mut g, 6, status);
            if let Some(e) = err {
                let mut es = Vec::new();
                put_str(&mut es, 3, e);
                put_len(&mut g, 8, &es);
            }
            put_len(&mut cc, 3, &g);
        }
        let mut any = Vec::new();
        put_str(&mut any, 1, CLIENT_CONFIG);
        put_len(&mut any, 2, &cc);
        let mut resp = Vec::new();
        put_str(&mut resp, 1, "1.1");
        put_len(&mut resp, 2, &any);
        put_str(&mut resp, 4, CLIENT_CONFIG);
        let mut cp = Vec::new();
        put_str(
            &mut cp,
            1,
            &format!(r#"{{"Component":"istiod","ID":"{istiod}","Info":{{"version":"1.24.2"}}}}"#),
        );
        put_len(&mut resp, 6, &cp);
        resp
    }

    #[test]
    fn response_decodes_into_the_json_model() {
        let r = decode_response(&encode_syncz_response("istiod-1")).unwrap();
        assert_eq!(r.istiod_id(), "istiod-1");
        let id = r.istiod_id();
        let p = crate::sync::ProxyStatus::from_xds(&r.resources[0], &id);
        assert_eq!(p.name, "reviews-v2-1.shop");
        assert_eq!(
            (p.cluster.as_ref(), p.version.as_ref(), p.namespace.as_ref()),
            ("Kubernetes", "1.24.2", "shop")
        );
        use crate::sync::SyncState::*;
        assert_eq!(
            [
                p.cds.state,
                p.lds.state,
                p.eds.state,
                p.rds.state,
                p.ecds.state
            ],
            [Synced, Error, NotSent, Stale, Ignored]
        );
        assert_eq!(p.lds.error.as_deref(), Some("duplicate listener"));
        assert_eq!(p.cds.last_sent.as_deref(), Some("2024-06-20T10:00:00Z"));
    }

    #[test]
    fn request_has_type_and_node_metadata() {
        let req = encode_request("istio-system", SYNCZ_TYPE, &[]);
        let mut r = Reader::new(&req, "DiscoveryRequest");
        let mut seen = Vec::new();
        while let Some((n, f)) = r.next().unwrap() {
            match (n, f) {
                (2, Field::Bytes(node)) => {
                    let n = decode_node(node).unwrap();
                    assert!(n.id.starts_with("sidecar~"));
                    assert_eq!(n.meta("GENERATOR"), "event");
                    assert_eq!(n.meta("NAMESPACE"), "istio-system");
                    seen.push("node");
                }
                (4, Field::Bytes(t)) => {
                    assert_eq!(t, SYNCZ_TYPE.as_bytes());
                    seen.push("type");
                }
                _ => {}
            }
        }
        assert_eq!(seen, ["node", "type"]);
    }

    #[test]
    fn truncated_input_is_an_error_with_offset() {
        let b = encode_syncz_response("i");
        let e = decode_response(&b[..b.len() - 3]).unwrap_err();
        assert!(matches!(e, Failure::Decode { .. }), "{e}");
    }

    /// A response whose node metadata holds a `Value` in `depth` nested lists.
    fn nested_metadata(depth: usize) -> Vec<u8> {
        let mut v = Vec::new();
        put_str(&mut v, 3, "x");
        for _ in 0..depth {
            let mut list = Vec::new();
            put_len(&mut list, 1, &v);
            v.clear();
            put_len(&mut v, 6, &list);
        }
        let mut entry = Vec::new();
        put_str(&mut entry, 1, "k");
        put_len(&mut entry, 2, &v);
        let mut meta = Vec::new();
        put_len(&mut meta, 1, &entry);
        let mut node = Vec::new();
        put_str(&mut node, 1, "a.b");
        put_len(&mut node, 3, &meta);
        let mut cc = Vec::new();
        put_len(&mut cc, 1, &node);
        let mut any = Vec::new();
        put_str(&mut any, 1, CLIENT_CONFIG);
        put_len(&mut any, 2, &cc);
        let mut resp = Vec::new();
        put_len(&mut resp, 2, &any);
        resp
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Found with the shared/fuzz syncz_proto target: 10k nested lists overflowed the stack.
        let r = decode_response(&nested_metadata(50)).unwrap();
        assert_eq!(r.resources[0].node.id, "a.b");
        let e = decode_response(&nested_metadata(10_000)).unwrap_err();
        assert!(
            matches!(
                e,
                Failure::Decode {
                    what: "Value nested too deep",
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A one-stream gRPC server on an in-memory pipe, plaintext HTTP/2.
    #[tokio::test]
    async fn grpc_round_trip() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            assert_eq!(req.uri().path(), ADS_PATH);
            assert_eq!(req.headers()["authorization"], "Bearer tok");
            let mut body = req.into_body();
            let data = body.data().await.unwrap().unwrap();
            let _ = body.flow_control().release_capacity(data.len());
            let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            assert_eq!(data.len(), 5 + len);
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut send = respond.send_response(resp, false).unwrap();
            let msg = encode_syncz_response("istiod-9");
            let mut framed = vec![0u8];
            framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            framed.extend_from_slice(&msg);
            // in two pieces, to exercise reassembly
            let second = framed.split_off(7);
            send.send_data(Bytes::from(framed), false).unwrap();
            send.send_data(Bytes::from(second), false).unwrap();
            // keep the connection alive until the client is done
            let _ = futures::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        });
        let req = encode_request("istio-system", SYNCZ_TYPE, &[]);
        let msg = ask(
            client_io,
            "istiod.istio-system.svc:15012",
            Some("tok"),
            &req,
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        let r = decode_response(&msg).unwrap();
        assert_eq!(r.istiod_id(), "istiod-9");
        server.abort();
    }

    #[tokio::test]
    async fn trailers_only_grpc_error() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("grpc-status", "16")
                .header("grpc-message", "authentication failure")
                .body(())
                .unwrap();
            respond.send_response(resp, true).unwrap();
            let _ = futures::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        });
        let e = ask(client_io, "x", None, b"", Some(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "gRPC status 16: authentication failure");
    }
}
