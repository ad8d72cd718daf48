//! `pods/exec` over websocket (`v5.channel.k8s.io`, then `v4.channel.k8s.io`). No processes
//! run: `pilot-agent request METHOD PATH [BODY]` and `pilot-discovery request METHOD PATH [BODY]`
//! are emulated with an HTTP/1.1 request to the pod's port 15000 (resp. 15014, else 8080)
//! backend; anything else is "executable file not found" (exit 127).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use super::faults::PodBackend;
use super::portforward::{close_and_drain, finish_after_client_close, upgrade};
use super::rest::{Query, ensure_running, pick_container};
use super::status::ApiError;

pub(crate) const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub(crate) async fn serve(
    sh: &Arc<Shared>,
    ns: &str,
    pod: &Value,
    q: &Query,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let argv: Vec<String> = q.all("command").into_iter().map(str::to_string).collect();
    if argv.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let (stdin, stdout, stderr) = (q.flag("stdin"), q.flag("stdout"), q.flag("stderr"));
    if !(stdin || stdout || stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    pick_container(pod, q.get("container"))?;
    ensure_running(pod)?;
    let ws = upgrade(&mut parts, &PROTOCOLS).await?;
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let session = Session {
        argv,
        stdout,
        stderr,
        backend: sh.backends.get(ns, pod_name).unwrap_or_default(),
        shutdown: sh.shutdown.subscribe(),
    };
    Ok(ws.on_upgrade(move |socket| run(socket, session)))
}

struct Session {
    argv: Vec<String>,
    stdout: bool,
    stderr: bool,
    backend: PodBackend,
    shutdown: watch::Receiver<bool>,
}

fn frame(ch: u8, payload: &[u8]) -> Message {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(ch);
    v.extend_from_slice(payload);
    Message::Binary(Bytes::from(v))
}

/// The channel-3 status kube-rs parses.
pub(crate) fn exit_status(argv: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            argv.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

async fn run(mut socket: WebSocket, mut s: Session) {
    if socket.send(frame(1, &[])).await.is_err() {
        return;
    }
    let cmd = run_command(&s.backend, &s.argv);
    tokio::pin!(cmd);
    let (out, err, code) = loop {
        tokio::select! {
            r = &mut cmd => break r,
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) => {
                    finish_after_client_close(&mut socket).await;
                    return;
                }
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = s.shutdown.changed() => return,
        }
    };
    const CHUNK: usize = 64 * 1024;
    if s.stdout {
        for c in out.chunks(CHUNK) {
            if socket.send(frame(1, c)).await.is_err() {
                return;
            }
        }
    }
    if s.stderr {
        for c in err.chunks(CHUNK) {
            if socket.send(frame(2, c)).await.is_err() {
                return;
            }
        }
    }
    let status = exit_status(&s.argv, code).to_string();
    if socket.send(frame(3, status.as_bytes())).await.is_err() {
        return;
    }
    close_and_drain(&mut socket, &mut s.shutdown).await;
}

/// (stdout, stderr, exit code)
pub(crate) async fn run_command(backend: &PodBackend, argv: &[String]) -> (Vec<u8>, Vec<u8>, i32) {
    let prog = argv[0].rsplit('/').next().unwrap_or(&argv[0]);
    match (prog, argv.get(1).map(String::as_str)) {
        ("pilot-agent", Some("request")) => {
            let addr = backend.ports.get(&15000).copied();
            request_command(addr, 15000, &argv[2..]).await
        }
        ("pilot-discovery", Some("request")) => {
            let addr = backend
                .ports
                .get(&15014)
                .or_else(|| backend.ports.get(&8080))
                .copied();
            request_command(addr, 15014, &argv[2..]).await
        }
        _ => (
            Vec::new(),
            format!(
                "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{}\": \
                 executable file not found in $PATH: unknown\n",
                argv[0]
            )
            .into_bytes(),
            127,
        ),
    }
}

fn go_method(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// istio's `request` subcommand: prints the body and exits 0, or prints
/// `Error: received unsuccessful status code N: BODY` and exits 255 (os.Exit(-1)).
async fn request_command(
    addr: Option<SocketAddr>,
    port: u16,
    args: &[String],
) -> (Vec<u8>, Vec<u8>, i32) {
    if !(2..=3).contains(&args.len()) {
        return (
            Vec::new(),
            format!(
                "Error: accepts between 2 and 3 arg(s), received {}\n",
                args.len()
            )
            .into_bytes(),
            255,
        );
    }
    let method = args[0].to_ascii_uppercase();
    let path = format!("/{}", args[1].trim_start_matches('/'));
    let body = args.get(2).map(String::as_str).unwrap_or_default();
    let url = format!("http://localhost:{port}{path}");
    let refused = || {
        (
            Vec::new(),
            format!(
                "Error: {} \"{url}\": dial tcp 127.0.0.1:{port}: connect: connection refused\n",
                go_method(&method)
            )
            .into_bytes(),
            255,
        )
    };
    let Some(addr) = addr else { return refused() };
    match http_request(addr, &method, &path, body, port).await {
        Err(_) => refused(),
        Ok((code, resp)) if code >= 400 => {
            let mut e = format!("Error: received unsuccessful status code {code}: ").into_bytes();
            e.extend_from_slice(&resp);
            e.push(b'\n');
            (Vec::new(), e, 255)
        }
        Ok((_, mut resp)) => {
            resp.push(b'\n');
            (resp, Vec::new(), 0)
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and de-chunked body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    port: u16,
) -> std::io::Result<(u16, Vec<u8>)> {
    let io_err = |m: &str| std::io::Error::other(m.to_string());
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| io_err("connect timeout"))??;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .map_err(|_| io_err("read timeout"))??;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io_err("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let code: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io_err("malformed status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        dechunk(rest).ok_or_else(|| io_err("malformed chunked body"))?
    } else if let Some(n) = length {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((code, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size {
            out.extend_from_slice(data);
            return Some(out);
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert_eq!(go_method("POST"), "Post");
    }
}
