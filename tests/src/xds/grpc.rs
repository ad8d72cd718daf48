//! gRPC over HTTP/2 cleartext (prior knowledge), just enough for one bidirectional streaming
//! method: `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`.
//! Messages are length-prefixed (1 byte compression flag, 4 bytes big-endian length); the
//! response ends with `grpc-status` trailers. Envoy is the only client, and it never
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

use super::proto::DiscoveryRequest;
use super::server::Shared;

pub const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// gRPC status codes used here.
pub const UNIMPLEMENTED: u32 = 12;
pub const UNAVAILABLE: u32 = 14;
pub const INVALID_ARGUMENT: u32 = 3;
pub const INTERNAL: u32 = 13;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
/// Frames of one response stream, in order; the last one should be [`trailers`].
pub type FrameSender = mpsc::UnboundedSender<Frame<Bytes>>;

/// Accepts connections until dropped (the JoinSet aborts every connection with it).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(shared, req)) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != ADS_PATH {
        let mut resp = Response::new(Empty::new().boxed_unsync());
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(UNIMPLEMENTED));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("meshsim serves only StreamAggregatedResources"),
        );
        return resp;
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
