//! gRPC over HTTP/2 (cleartext with prior knowledge, or TLS with ALPN h2 and a required bearer
//! token), just enough for one bidirectional streaming method:
//! `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`.
//! Messages are length-prefixed (1 byte compression flag, 4 bytes big-endian length); the
//! response ends with `grpc-status` trailers. Clients are Envoy and istioctl-style debug
//! clients (a first request of type `istio.io/debug/*`, answered once, no proxy); neither
//! compresses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::proto::DiscoveryRequest;
use super::server::Shared;

pub const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// The type URLs of istiod's debug requests (`StatusGen`).
pub const DEBUG_PREFIX: &str = "istio.io/debug/";

/// gRPC status codes used here.
pub const UNIMPLEMENTED: u32 = 12;
pub const UNAVAILABLE: u32 = 14;
pub const INVALID_ARGUMENT: u32 = 3;
pub const INTERNAL: u32 = 13;
pub const UNAUTHENTICATED: u32 = 16;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
/// Frames of one response stream, in order; the last one should be [`trailers`].
pub type FrameSender = mpsc::UnboundedSender<Frame<Bytes>>;

/// Accepts connections until dropped (the JoinSet aborts every connection with it). With
/// `tls`, every connection is TLS (ALPN h2) and every stream needs a bearer token.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let secure = tls.is_some();
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(shared, req, secure)) }
            });
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// A response that is only headers carrying the gRPC status (trailers-only).
fn trailers_only(code: u32, message: &'static str) -> Response<Body> {
    let mut resp = Response::new(Empty::new().boxed_unsync());
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert("grpc-message", HeaderValue::from_static(message));
    resp
}

/// A non-empty `authorization: Bearer <token>`.
fn has_token(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty())
}

fn route(shared: Arc<Shared>, req: Request<Incoming>, secure: bool) -> Response<Body> {
    if req.uri().path() != ADS_PATH {
        return trailers_only(
            UNIMPLEMENTED,
            "meshsim serves only StreamAggregatedResources",
        );
    }
    if secure && !has_token(req.headers()) {
        return trailers_only(UNAUTHENTICATED, "authentication failure");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(read_stream(shared, req.into_body(), tx));
    let frames =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|f| (Ok(f), rx)) },
        );
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

/// The trailers that end a response stream.
pub fn trailers(code: u32, message: &str) -> Frame<Bytes> {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(
        &message.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " "),
    ) {
        h.insert("grpc-message", v);
    }
    Frame::trailers(h)
}

/// One length-prefixed message.
pub fn message(msg: &impl prost::Message) -> Frame<Bytes> {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode_raw(&mut buf);
    Frame::data(buf.freeze())
}

/// Reads DiscoveryRequests and hands them to the server state until the client goes away or
/// the server cancels the stream.
async fn read_stream(shared: Arc<Shared>, mut body: Incoming, tx: FrameSender) {
    let (cancel_tx, mut cancel_rx) = oneshot::channel::<()>();
    let mut cancel_tx = Some(cancel_tx);
    let stream_id = shared.next_stream_id();
    let mut node_id: Option<String> = None;
    let mut debug = false;
    let mut buf = BytesMut::new();
    'read: loop {
        let frame = tokio::select! {
            _ = &mut cancel_rx => break,
            f = body.frame() => f,
        };
        match frame {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => break,
        }
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 5 + len {
                break;
            }
            let compressed = buf[0] != 0;
            buf.advance(5);
            let msg = buf.split_to(len);
            if compressed {
                let _ = tx.send(trailers(INTERNAL, "compressed messages are not supported"));
                break 'read;
            }
            let req = match DiscoveryRequest::decode(msg) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(trailers(
                        INVALID_ARGUMENT,
                        &format!("bad DiscoveryRequest: {e}"),
                    ));
                    break 'read;
                }
            };
            // istioctl's debug request: answered once, never a proxy of its own
            if node_id.is_none() && req.type_url.starts_with(DEBUG_PREFIX) {
                debug = true;
            }
            if debug {
                if req.response_nonce.is_empty() {
                    match shared.debug_response(&req.type_url) {
                        Ok(resp) => {
                            let _ = tx.send(message(&resp));
                        }
                        Err(e) => {
                            let _ = tx.send(trailers(INVALID_ARGUMENT, &format!("{e:#}")));
                            break 'read;
                        }
                    }
                }
                continue;
            }
            let id = match &node_id {
                Some(id) => id.clone(),
                None => match shared.open(stream_id, &req.node, tx.clone(), cancel_tx.take()) {
                    Ok(id) => {
                        node_id = Some(id.clone());
                        id
                    }
                    Err(e) => {
                        let _ = tx.send(trailers(INVALID_ARGUMENT, &format!("{e:#}")));
                        break 'read;
                    }
                },
            };
            shared.handle(stream_id, &id, req);
        }
    }
    if let Some(id) = node_id {
        shared.close(stream_id, &id);
    }
}

/// Over the wire with a hyper HTTP/2 client: the TLS port's token check and the
/// `istio.io/debug/syncz` answer.
#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use futures::StreamExt as _;
    use http::{Request, Response};
    use http_body_util::{BodyExt as _, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use prost::Message as _;

    use super::super::proto::{ClientConfig, DiscoveryRequest, DiscoveryResponse, StatusNode};
    use super::super::{CLIENT_CONFIG, CLUSTER, SYNCZ, XdsServer, tls_identity};
    use super::{ADS_PATH, UNAUTHENTICATED, message};

    fn request(node_id: &str, type_url: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            node: StatusNode {
                id: node_id.to_owned(),
                metadata: None,
            }
            .encode_to_vec(),
            type_url: type_url.to_owned(),
            ..DiscoveryRequest::default()
        }
    }

    /// Opens a stream, sends `req` and keeps the request side open.
    async fn open<IO>(io: IO, token: Option<&str>, req: &DiscoveryRequest) -> Response<Incoming>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        let frames = futures::stream::iter([Ok::<Frame<Bytes>, Infallible>(message(req))])
            .chain(futures::stream::pending());
        let mut b = Request::post(format!("https://istiod.istio-system.svc:15012{ADS_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        send.send_request(b.body(StreamBody::new(frames)).unwrap())
            .await
            .unwrap()
    }

    async fn first_message(resp: Response<Incoming>) -> DiscoveryResponse {
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        loop {
            if buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() >= 5 + len {
                    return DiscoveryResponse::decode(&buf[5..5 + len]).unwrap();
                }
            }
            let f = body.frame().await.unwrap().unwrap();
            if let Ok(d) = f.into_data() {
                buf.extend_from_slice(&d);
            }
        }
    }

    async fn tls(server: &XdsServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let (_, cert) = tls_identity().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(server.tls_addr())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("istiod.istio-system.svc").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_tls_port_needs_a_token_and_answers_syncz() {
        let server = XdsServer::start().await.unwrap();
        // a proxy on the plaintext port, watching CDS (nothing set: NOT_SENT)
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let _proxy = open(
            tcp,
            None,
            &request(
                "sidecar~10.0.0.1~web-1.demo~demo.svc.cluster.local",
                CLUSTER,
            ),
        )
        .await;
        server
            .wait_for(Duration::from_secs(5), |s| {
                s.first().filter(|p| !p.types.is_empty()).map(|_| ())
            })
            .await
            .unwrap();

        let debug = request("sidecar~0.0.0.0~meshdebug.istio-system~x", SYNCZ);
        let resp = open(tls(&server).await, None, &debug).await;
        assert_eq!(
            resp.headers()["grpc-status"],
            UNAUTHENTICATED.to_string().as_str()
        );

        let resp = open(tls(&server).await, Some("tok"), &debug).await;
        let answer = first_message(resp).await;
        assert_eq!(answer.type_url, CLIENT_CONFIG);
        assert!(
            answer
                .control_plane
                .unwrap()
                .identifier
                .contains("\"Component\":\"istiod\"")
        );
        assert_eq!(answer.resources.len(), 1);
        assert_eq!(answer.resources[0].type_url, CLIENT_CONFIG);
        let cc = ClientConfig::decode(answer.resources[0].value.as_slice()).unwrap();
        assert_eq!(cc.node.unwrap().id, "web-1.demo");
        let got: Vec<(&str, i32)> = cc
            .generic_xds_configs
            .iter()
            .map(|g| (g.type_url.as_str(), g.config_status))
            .collect();
        assert_eq!(got, [(CLUSTER, 2)]);
        // the debug client is no proxy
        assert_eq!(server.status().len(), 1);
    }
}
