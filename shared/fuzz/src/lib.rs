//! The bodies of the fuzz targets in `fuzz_targets/` (one per parser). Each takes the raw bytes
//! libFuzzer made, goes through meshdebug's public parser for that input the way a plugin does
//! (parse, build the view's rows, render them as a table, wide and JSON), and ignores the
//! `Err`s: a parser may reject any input, but must never panic, hang or blow the stack.
//!
//! `Corpus::Reject` keeps inputs that belong to another target (the other syncz form) out of
//! the corpus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::Corpus;
use meshdebug::dump::bootstrap::{bootstrap_fields, envoy_version};
use meshdebug::dump::clusters::{ClusterFilter, SubsetKey, cluster_rows};
use meshdebug::dump::endpoints::{ClusterStatuses, EndpointFilter, endpoint_rows};
use meshdebug::dump::jwt::{detect_placeholder, jwt_rows, placeholder_warning, summarize_keys};
use meshdebug::dump::listeners::{ListenerFilter, listener_rows};
use meshdebug::dump::rbac::rbac_rows;
use meshdebug::dump::routes::{RouteFilter, route_rows};
use meshdebug::dump::secrets::{SpiffeSecretRow, redact, secret_rows};
use meshdebug::dump::stats::stat_rows;
use meshdebug::dump::{ConfigDump, model::not_an_object};
use meshdebug::jwks::command::TokenReport;
use meshdebug::jwks::outcome::public_jwks;
use meshdebug::jwks::provider::providers_in_config_dump;
use meshdebug::jwks::trust::{
    HeldKeys, ProviderKeys, compare_keys, diagnose_token, key_label, key_matches, placeholder_in,
    placeholder_key, thumbprint,
};
use meshdebug::jwks::{Jwks, Jwt};
use meshdebug::loggers::controlz::{self, ScopeRow};
use meshdebug::loggers::follow::from_logger;
use meshdebug::loggers::plan;
use meshdebug::loggers::{Change, Level, Loggers, StartLevels};
use meshdebug::render::{OutputFormat, RenderOptions, Tabular, sanitize, write_rows};
use meshdebug::sync::model::{Syncz, parse_syncz};
use meshdebug::sync::{diff, view, xds};
use serde::Serialize;

/// A fixed "now" (2025-06-15T15:06:40Z): views are pure functions of it.
pub const NOW: i64 = 1_750_000_000;

fn now_ts() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(NOW).unwrap_or_default()
}

/// Draw `rows` as a table, a wide table and JSON (with colours, so the tones are used too).
fn render<T: Tabular + Serialize>(rows: &[T]) {
    for format in [OutputFormat::Table, OutputFormat::Wide, OutputFormat::Json] {
        let opts = RenderOptions {
            format,
            color: true,
        };
        let _ = write_rows(rows, &opts, &mut std::io::sink());
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `/config_dump` → every view's rows (bootstrap, clusters, listeners, routes, secrets, jwt,
/// rbac), the dump re-serialized, the jwt_authn providers jwks-trust reads, and redaction.
pub fn config_dump(data: &[u8]) -> Corpus {
    if let Ok(dump) = ConfigDump::from_slice(data) {
        if let Some(b) = dump.bootstrap() {
            render(&bootstrap_fields(b));
            if let Some(node) = b.bootstrap.as_ref().and_then(|b| b.node.as_ref()) {
                let _ = envoy_version(node);
            }
        }
        if let Some(c) = dump.clusters() {
            let rows = cluster_rows(c, &ClusterFilter::default());
            for r in &rows {
                let _ = SubsetKey::parse(&r.name);
            }
            render(&rows);
            let port = ClusterFilter {
                port: Some(8080),
                direction: Some("outbound".into()),
                ..Default::default()
            };
            render(&cluster_rows(c, &port));
        }
        if let Some(l) = dump.listeners() {
            render(&listener_rows(l, &ListenerFilter::default()));
            let filtered = ListenerFilter {
                address: Some("0.0.0.0".into()),
                port: Some(15006),
                listener_type: Some("HTTP".into()),
            };
            render(&listener_rows(l, &filtered));
            let jwt = jwt_rows(l);
            for row in &jwt {
                let _ = placeholder_warning("fuzz: ", row);
            }
            render(&jwt);
            render(&rbac_rows(l));
        }
        if let Some(r) = dump.routes() {
            render(&route_rows(r, &RouteFilter::default()));
            let named = RouteFilter {
                name: Some("80".into()),
            };
            render(&route_rows(r, &named));
        }
        if let Some(s) = dump.secrets() {
            let rows = secret_rows(s, NOW);
            render(&rows);
            let spiffe: Vec<SpiffeSecretRow> = rows.into_iter().map(SpiffeSecretRow).collect();
            render(&spiffe);
        }
        let _ = serde_json::to_vec(&dump);
    }
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        let providers = providers_in_config_dump(&v);
        let _ = serde_json::to_vec(&providers);
        redact(&mut v);
    }
    Corpus::Keep
}

/// `GET /clusters?format=json` → endpoint rows (all, and filtered).
pub fn clusters_json(data: &[u8]) -> Corpus {
    if not_an_object(data).is_some() {
        return Corpus::Keep;
    }
    let Ok(doc) = serde_json::from_slice::<ClusterStatuses>(data) else {
        return Corpus::Keep;
    };
    let _ = doc.is_config_dump();
    let rows = endpoint_rows(&doc, &EndpointFilter::default());
    render(&rows);
    let filter = EndpointFilter {
        cluster: rows.first().map(|r| r.cluster.clone()),
        address: Some("10.0.0.1".into()),
        port: Some(8080),
        status: Some("HEALTHY".into()),
    };
    render(&endpoint_rows(&doc, &filter));
    Corpus::Keep
}

/// One or more syncz answers → merged, sorted status rows, laggards, rendering.
fn syncz_rows(answers: &[Syncz]) {
    let rows = view::merge(answers.to_vec(), None, now_ts());
    for p in view::laggards(&rows) {
        let _ = view::describe_laggard(p);
    }
    render(&rows);
    if let Some(ns) = rows.first().map(|p| p.namespace.clone()) {
        render(&view::merge(answers.to_vec(), Some(&ns), now_ts()));
    }
}

/// The first byte that is not whitespace.
fn first_byte(data: &[u8]) -> Option<u8> {
    data.iter().find(|b| !b.is_ascii_whitespace()).copied()
}

/// istiod's HTTP `/debug/syncz`: the JSON array form (or `null`).
pub fn syncz_http(data: &[u8]) -> Corpus {
    if !matches!(first_byte(data), Some(b'[' | b'n')) {
        return Corpus::Reject;
    }
    if let Ok(answers) = parse_syncz(Path::new("istiod-0.json"), "istiod-0", data) {
        syncz_rows(&answers);
    }
    Corpus::Keep
}

/// The xDS `DiscoveryResponse` form of syncz: JSON object(s) as `istioctl ps -o json` prints
/// them, or YAML (`-o yaml`).
pub fn syncz_xds(data: &[u8]) -> Corpus {
    if matches!(first_byte(data), Some(b'[' | b'n') | None) {
        return Corpus::Reject;
    }
    if let Ok(answers) = parse_syncz(Path::new("ps.json"), "-", data) {
        syncz_rows(&answers);
    }
    Corpus::Keep
}

/// The protobuf `DiscoveryResponse` of istiod's gRPC `istio.io/debug/syncz` answer.
pub fn syncz_proto(data: &[u8]) -> Corpus {
    if let Ok(r) = xds::decode_response(data) {
        syncz_rows(&[Syncz::Xds(r)]);
    }
    Corpus::Keep
}

/// mesh-sync's config_dump comparison: normalise (clusters, listeners, routes) and diff the
/// dump with itself and with an empty one.
pub fn sync_diff(data: &[u8]) -> Corpus {
    let Ok(n) = diff::normalise(Path::new("dump.json"), data) else {
        return Corpus::Keep;
    };
    let Ok(empty) = diff::normalise(Path::new("empty.json"), b"{}") else {
        return Corpus::Keep;
    };
    let same = diff::compare("istiod-0", &n, "proxy.ns", &n);
    assert!(same.matches(), "a dump differs from itself");
    let c = diff::compare("istiod-0", &empty, "proxy.ns", &n);
    let _ = diff::write_text(&c, true, &mut std::io::sink());
    let _ = serde_json::to_vec(&c);
    Corpus::Keep
}

/// JWKS JSON → keys, kids, thumbprints, labels, placeholder detection (both detectors), the
/// public-only copy, key comparison and the envoy-dump key summaries.
pub fn jwks(data: &[u8]) -> Corpus {
    let inline = text(data);
    let _ = placeholder_in(&inline);
    let _ = detect_placeholder(&inline);
    let _ = summarize_keys(&inline);
    let _ = HeldKeys::classify(Some(&inline), None);
    if let Ok((public, _removed)) = public_jwks(data) {
        let _ = Jwks::parse(public.as_bytes());
    }
    if let Ok(keys) = Jwks::parse(data) {
        let _ = keys.kids();
        for k in &keys.keys {
            let _ = (k.kid(), k.alg(), k.kty());
            let _ = thumbprint(k);
            let _ = key_label(k);
            let _ = placeholder_key(k);
            let _ = key_matches(k, Some("kid"), Some("RS256"));
        }
        let cmp = compare_keys(&keys, &keys);
        assert!(!cmp.is_stale(), "a JWKS misses keys of itself");
        let _ = Jwks::parse(br#"{"keys":[]}"#).map(|none| compare_keys(&keys, &none));
        let _ = serde_json::to_vec(&keys);
    }
    Corpus::Keep
}

/// Encode base64url without padding (the JWT parts).
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A JWT → decoded header and claims, the sidecar's verdict with a few providers, the
/// `jwks-trust token` row. Input starting with `{` is `HEADER-JSON\nCLAIMS-JSON`, made into a
/// token here (so that the fuzzer mutates the JSON, not its base64); anything else is the token.
pub fn jwt(data: &[u8]) -> Corpus {
    let token = match data.split(|b| *b == b'\n').collect::<Vec<_>>().as_slice() {
        [header, claims] if header.first() == Some(&b'{') => {
            format!("{}.{}.c2ln", b64url(header), b64url(claims))
        }
        _ => text(data),
    };
    let Ok(jwt) = Jwt::decode(&token) else {
        return Corpus::Keep;
    };
    let issuer = jwt.claims.iss.clone().unwrap_or_default();
    let providers = vec![
        ProviderKeys {
            name: "origins-0".into(),
            issuer: issuer.clone(),
            audiences: vec!["aud".into()],
            keys: HeldKeys::classify(
                Some(r#"{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","e":"AQAB","n":"xyz"}]}"#),
                None,
            ),
        },
        ProviderKeys {
            name: "origins-1".into(),
            issuer,
            audiences: vec![],
            keys: HeldKeys::classify(Some(""), None),
        },
        ProviderKeys {
            name: "other".into(),
            issuer: "https://other.example".into(),
            audiences: vec![],
            keys: HeldKeys::classify(None, Some("https://other.example/jwks")),
        },
    ];
    let rejections = diagnose_token(&jwt, &providers, NOW);
    let _ = diagnose_token(&jwt, &[], NOW);
    let verdict = if rejections.is_empty() {
        "ACCEPTED"
    } else {
        "REJECTED"
    };
    let report = TokenReport {
        header: jwt.header.clone(),
        claims: jwt.claims.clone(),
        sidecar: Some("pod ns/name".into()),
        providers,
        rejections,
        verdict: verdict.into(),
        now: NOW,
    };
    render(&[report]);
    Corpus::Keep
}

/// Envoy's `active loggers:` text → loggers, rows against start levels read from the same text
/// (as args and annotations), a change plan and its restore; istiod's ControlZ `/scopej/` JSON;
/// `LOGGER=LEVEL` specs.
pub fn logging_text(data: &[u8]) -> Corpus {
    let body = text(data);
    let args: Vec<String> = body.split_whitespace().map(str::to_string).collect();
    let mut annotations = BTreeMap::new();
    let mut lines = body.lines();
    if let Some(l) = lines.next() {
        annotations.insert("sidecar.istio.io/logLevel".to_string(), l.to_string());
    }
    if let Some(l) = lines.next() {
        annotations.insert(
            "sidecar.istio.io/componentLogLevel".to_string(),
            l.to_string(),
        );
    }
    let start = StartLevels::detect(&args, &annotations);
    let _ = plan::parse_specs(&args);
    let _ = controlz::parse_specs(&args);
    if let Ok(loggers) = Loggers::parse(&body, "fuzz") {
        render(&loggers.rows(&start));
        let wanted: BTreeMap<String, Level> = loggers
            .0
            .keys()
            .take(3)
            .map(|n| (n.clone(), Level::Debug))
            .chain([("no_such_logger".to_string(), Level::Trace)])
            .collect();
        let _ = plan::unknown_loggers(wanted.keys(), &loggers);
        for change in [Change::loggers(wanted), Change::all(Level::Debug)] {
            let steps = plan::steps(&change, &loggers, &start);
            for s in &steps {
                let _ = (s.params(), s.describe());
            }
            let after = plan::expected(&loggers, &steps);
            let _ = plan::mismatches(&after, &loggers);
            let touched = plan::touched(&change, &loggers);
            let _ = plan::restore_plan(&loggers, &after);
            let _ = plan::restore_args(&loggers, &touched);
        }
    }
    if let Ok(scopes) = controlz::parse_scopes(data, "istiod") {
        let rows: Vec<ScopeRow> = scopes.iter().map(ScopeRow::from).collect();
        render(&rows);
    }
    Corpus::Keep
}

/// Envoy log lines: the first line names loggers (comma-separated), the rest is log. Runs the
/// `--only-changed` filter and sanitizing of `envoy-log --follow`, and jwks-trust's scan of
/// istiod's log for a JWKS URI.
pub fn envoy_log_line(data: &[u8]) -> Corpus {
    let body = text(data);
    let (head, log) = body.split_once('\n').unwrap_or((&body, ""));
    let loggers: Vec<String> = head.split(',').map(str::to_string).collect();
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    for line in &lines {
        if from_logger(line, &loggers) {
            let _ = sanitize(line);
        }
    }
    let uri = loggers.first().map(String::as_str).unwrap_or_default();
    let issuer = loggers.get(1).map(String::as_str).unwrap_or_default();
    let hits = meshdebug::jwks::istiod::matching_log_lines(&lines, uri, issuer, 5);
    let _ = meshdebug::jwks::istiod::has_fetch_error(&hits);
    Corpus::Keep
}

/// Envoy's `/stats` text → rows, unfiltered and filtered.
pub fn stats_text(data: &[u8]) -> Corpus {
    let body = text(data);
    static FILTER: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new("cx_|rq_").ok());
    render(&stat_rows(&body, None));
    render(&stat_rows(&body, FILTER.as_ref()));
    Corpus::Keep
}
