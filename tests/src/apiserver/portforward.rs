//! `pods/portforward` over websocket, subprotocol `v4.channel.k8s.io`, framed as the kubelet
//! does: port i uses data channel 2i and error channel 2i+1; both get a 3-byte
//! `[ch, port_lo, port_hi]` init frame; one TCP connection per port per websocket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::Shared;
use super::faults::Backends;
use super::rest::{Query, ensure_running};
use super::status::ApiError;

pub(crate) const PROTOCOL: &str = "v4.channel.k8s.io";

/// Parses `ports=15000,15090` (kube-rs) and repeated `port=` (kubelet style).
pub(crate) fn parse_ports(q: &Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for v in q.all("ports").into_iter().chain(q.all("port")) {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port number: {p}")))?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified"));
    }
    Ok(ports)
}

/// A websocket upgrade from the request, or the apiserver's 400.
pub(crate) async fn upgrade(
    parts: &mut Parts,
    protocols: &[&'static str],
) -> Result<WebSocketUpgrade, ApiError> {
    let ws = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::bad_request("Upgrade request required"))?;
    let offered: Vec<String> = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok().map(str::to_string))
        .collect();
    let ws = ws.protocols(protocols.iter().copied());
    if ws.selected_protocol().is_none() {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: no supported websocket subprotocol in {offered:?}, supported: {protocols:?}"
        )));
    }
    Ok(ws)
}

pub(crate) async fn serve(
    sh: &Arc<Shared>,
    ns: &str,
    pod: &Value,
    q: &Query,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let ports = parse_ports(q)?;
    ensure_running(pod)?;
    let ws = upgrade(&mut parts, &[PROTOCOL]).await?;
    let session = Session {
        ns: ns.to_string(),
        pod: pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        uid: pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        ports,
        backends: sh.backends.clone(),
        drop_after: sh.faults.take_drop(),
        shutdown: sh.shutdown.subscribe(),
    };
    Ok(ws.on_upgrade(move |socket| run(socket, session)))
}

struct Session {
    ns: String,
    pod: String,
    uid: String,
    ports: Vec<u16>,
    backends: Backends,
    drop_after: Option<usize>,
    shutdown: watch::Receiver<bool>,
}

enum FromPod {
    Data(usize, Bytes),
    Error(usize, String),
    Done(usize),
}

fn frame(ch: usize, payload: &[u8]) -> Message {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(ch as u8);
    v.extend_from_slice(payload);
    Message::Binary(Bytes::from(v))
}

async fn read_pod(i: usize, mut r: OwnedReadHalf, tx: mpsc::Sender<FromPod>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx
                    .send(FromPod::Data(i, Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(FromPod::Error(i, format!("read: {e}"))).await;
                break;
            }
        }
    }
    let _ = tx.send(FromPod::Done(i)).await;
}

/// Close with 1000 (normal closure): client-go's wsstream reports anything else, even 1005
/// "no status", as an error ("error reading from error stream").
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    }))
}

/// Send Close, then read and discard until the client answers (or 5 s pass), so that bytes
/// still in flight from the client don't make the kernel reset the connection and lose the
/// last frames (PROTOCOL.md §5.4).
pub(crate) async fn close_and_drain(socket: &mut WebSocket, shutdown: &mut watch::Receiver<bool>) {
    if socket.send(normal_close()).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(5), drain) => {}
        _ = shutdown.changed() => {}
    }
}

/// After the client's Close: keep reading so tungstenite flushes its Close reply.
pub(crate) async fn finish_after_client_close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

async fn run(mut socket: WebSocket, mut s: Session) {
    let n = s.ports.len();
    for (i, port) in s.ports.iter().enumerate() {
        let p = port.to_le_bytes();
        for ch in [2 * i, 2 * i + 1] {
            if socket.send(frame(ch, &p)).await.is_err() {
                return;
            }
        }
    }
    let (tx, mut rx) = mpsc::channel::<FromPod>(64);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(n);
    let mut done = vec![false; n];
    let mut readers = JoinSet::new();
    let backend = s.backends.get(&s.ns, &s.pod);
    for (i, &port) in s.ports.iter().enumerate() {
        let addr = backend.as_ref().and_then(|b| b.ports.get(&port).copied());
        let conn = match addr {
            None => Err("connect: connection refused".to_string()),
            Some(a) => {
                match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(a)).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(format!("connect: {e}")),
                    Err(_) => Err("i/o timeout".to_string()),
                }
            }
        };
        match conn {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                let (r, w) = c.into_split();
                writers.push(Some(w));
                readers.spawn(read_pod(i, r, tx.clone()));
            }
            Err(reason) => {
                writers.push(None);
                done[i] = true;
                let msg = format!(
                    "error forwarding port {port} to pod {pod}, uid {uid}: failed to execute portforward in network \
                     namespace \"/var/run/netns/cni-{uid}\": failed to connect to localhost:{port} inside namespace \
                     \"{pod}\", IPv4: dial tcp4 127.0.0.1:{port}: {reason} ",
                    pod = s.pod,
                    uid = s.uid,
                );
                if socket.send(frame(2 * i + 1, msg.as_bytes())).await.is_err() {
                    return;
                }
            }
        }
    }
    drop(tx);
    let mut sent = 0usize;
    loop {
        if done.iter().all(|d| *d) {
            close_and_drain(&mut socket, &mut s.shutdown).await;
            return;
        }
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Some((&ch, data)) = b.split_first() {
                        let ch = usize::from(ch);
                        if ch % 2 == 0 && ch / 2 < n && !data.is_empty()
                            && let Some(w) = writers[ch / 2].as_mut()
                            && w.write_all(data).await.is_err()
                        {
                            writers[ch / 2] = None;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    finish_after_client_close(&mut socket).await;
                    return;
                }
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            ev = rx.recv() => match ev {
                Some(FromPod::Data(i, bytes)) => {
                    if let Some(budget) = s.drop_after {
                        let left = budget.saturating_sub(sent);
                        if bytes.len() >= left {
                            if left > 0 {
                                let _ = socket.send(frame(2 * i, &bytes[..left])).await;
                            }
                            // Cut: Close right behind the data, then the connection goes away
                            // without waiting for the client's reply. (Without the Close frame,
                            // kube-rs fails its message loop and drops data already received.)
                            let _ = socket.send(normal_close()).await;
                            return;
                        }
                    }
                    sent += bytes.len();
                    if socket.send(frame(2 * i, &bytes)).await.is_err() {
                        return;
                    }
                }
                Some(FromPod::Error(i, m)) => {
                    let msg = format!(
                        "error forwarding port {} to pod {}, uid {}: {m}",
                        s.ports[i], s.pod, s.uid
                    );
                    if socket.send(frame(2 * i + 1, msg.as_bytes())).await.is_err() {
                        return;
                    }
                }
                Some(FromPod::Done(i)) => {
                    done[i] = true;
                    writers[i] = None;
                }
                None => {
                    done.iter_mut().for_each(|d| *d = true);
                }
            },
            _ = s.shutdown.changed() => return,
        }
    }
}
