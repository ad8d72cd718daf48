//! `pods/log`: a container's log is a file the world names in the pod backend. Supports
//! `container`, `follow`, `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes`.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::Shared;
use super::clock;
use super::rest::{Query, pick_container};
use super::status::ApiError;

#[derive(Debug, Clone)]
struct LogOptions {
    tail_lines: Option<usize>,
    since: Option<SystemTime>,
    timestamps: bool,
    limit_bytes: Option<usize>,
}

/// The time a log line carries at its start: `[2026-11-24 10:00:00.123][...]` (Envoy) or
/// `2026-11-24T10:00:00.123Z\tinfo...` (istio-agent).
fn line_time(line: &str) -> Option<SystemTime> {
    clock::parse_prefix(line.strip_prefix('[').unwrap_or(line)).map(|(t, _)| t)
}

fn render_line(line: &str, opts: &LogOptions, out: &mut Vec<u8>) {
    if opts.timestamps {
        let t = line_time(line).unwrap_or_else(SystemTime::now);
        out.extend_from_slice(clock::rfc3339_nanos(t).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

/// Renders the complete lines of `text` (a trailing partial line too when `include_partial`);
/// returns the rendered bytes and how many input bytes were consumed.
fn render(
    text: &[u8],
    opts: &LogOptions,
    include_partial: bool,
    apply_tail: bool,
) -> (Vec<u8>, usize) {
    let consumed = if include_partial {
        text.len()
    } else {
        text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
    };
    let s = String::from_utf8_lossy(&text[..consumed]);
    let mut lines: Vec<&str> = s.split_terminator('\n').collect();
    if let Some(since) = opts.since {
        lines.retain(|l| line_time(l).is_none_or(|t| t >= since));
    }
    if apply_tail && let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out = Vec::new();
    for l in lines {
        render_line(l.strip_suffix('\r').unwrap_or(l), opts, &mut out);
    }
    (out, consumed)
}

pub(crate) async fn serve(
    sh: &Arc<Shared>,
    ns: &str,
    pod: &Value,
    q: &Query,
) -> Result<Response, ApiError> {
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let container = pick_container(pod, q.get("container"))?;
    if q.flag("previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
        )));
    }
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        match q.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid {k} parameter {v:?}"))),
        }
    };
    let since = match (num("sinceSeconds")?, q.get("sinceTime")) {
        (Some(s), _) if s > 0 => Some(SystemTime::now() - Duration::from_secs(s as u64)),
        (_, Some(t)) => Some(
            clock::parse(t)
                .ok_or_else(|| ApiError::bad_request(format!("invalid sinceTime {t:?}")))?,
        ),
        _ => None,
    };
    let opts = LogOptions {
        tail_lines: num("tailLines")?.and_then(|n| usize::try_from(n).ok()),
        since,
        timestamps: q.flag("timestamps"),
        limit_bytes: num("limitBytes")?.and_then(|n| usize::try_from(n).ok()),
    };
    let path: Option<PathBuf> = sh
        .backends
        .get(ns, &pod_name)
        .and_then(|b| b.logs.get(&container).cloned());
    let follow = q.flag("follow");
    let content = match &path {
        Some(p) => tokio::fs::read(p).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let (mut first, consumed) = render(&content, &opts, !follow, true);
    if let Some(limit) = opts.limit_bytes {
        first.truncate(limit);
    }
    if !follow {
        return Ok(text_response(Body::from(first)));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut shutdown = sh.shutdown.subscribe();
    let mut sent = first.len();
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut pos = consumed as u64;
        loop {
            if opts.limit_bytes.is_some_and(|l| sent >= l) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
            }
            let Some(p) = &path else { continue };
            let Ok(meta) = tokio::fs::metadata(p).await else {
                continue;
            };
            if meta.len() < pos {
                pos = 0;
            }
            if meta.len() == pos {
                continue;
            }
            let Ok(mut f) = tokio::fs::File::open(p).await else {
                continue;
            };
            if f.seek(SeekFrom::Start(pos)).await.is_err() {
                continue;
            }
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).await.is_err() {
                continue;
            }
            let (mut out, used) = render(&buf, &opts, false, false);
            pos += used as u64;
            if let Some(l) = opts.limit_bytes {
                out.truncate(l.saturating_sub(sent));
            }
            sent += out.len();
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(text_response(Body::from_stream(stream)))
}

fn text_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_partial_lines() {
        let opts = LogOptions {
            tail_lines: Some(2),
            since: None,
            timestamps: false,
            limit_bytes: None,
        };
        let (out, used) = render(b"a\nb\nc\npart", &opts, false, true);
        assert_eq!((out.as_slice(), used), (&b"b\nc\n"[..], 6));
        let (out, _) = render(b"a\nb\nc\npart", &opts, true, true);
        assert_eq!(out, b"c\npart\n");
    }

    #[test]
    fn envoy_timestamps() {
        let t = line_time("[2026-11-24 10:00:00.123][15][info][main] hi").unwrap();
        assert_eq!(clock::rfc3339(t), "2026-11-24T10:00:00Z");
    }
}
