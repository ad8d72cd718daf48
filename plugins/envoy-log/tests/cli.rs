#![allow(clippy::unwrap_used, clippy::expect_used)]
//! CLI contract of `kubectl envoy-log`: help, usage errors, and `--admin-url` against a REAL
//! Envoy (list, set, unknown logger, --level/--reset, --for restore, SIGINT/SIGTERM restore);
//! `--istiod --admin-url` against a tiny fake ControlZ server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-envoy-log");

/// The plugin with a hermetic environment.
fn cmd(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env("HOME", home)
        .stdin(Stdio::null());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A real Envoy
// ---------------------------------------------------------------------------------------------

fn envoy_binary() -> PathBuf {
    match std::env::var_os("MESHSIM_ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/envoy/envoy"),
    }
}

/// An Envoy with only an admin listener, killed on drop.
struct Envoy {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Envoy {
    fn start() -> Envoy {
        let bin = envoy_binary();
        assert!(
            bin.is_file(),
            "Envoy not found at {} (run `make envoy` or set MESHSIM_ENVOY)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(
            &config,
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n",
        )
        .unwrap();
        let addr_file = dir.path().join("admin-address");
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&addr_file)
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut envoy = Envoy {
            child,
            addr: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(s) = std::fs::read_to_string(&addr_file)
                && !s.trim().is_empty()
                && TcpStream::connect(s.trim()).is_ok()
            {
                envoy.addr = s.trim().to_string();
                break;
            }
            if let Some(status) = envoy.child.try_wait().unwrap() {
                panic!("envoy exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not write its admin address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        envoy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `POST /logging[?query]` straight to Envoy; the parsed levels.
    fn logging(&self, query: &str) -> BTreeMap<String, String> {
        let path = if query.is_empty() {
            "/logging".to_string()
        } else {
            format!("/logging?{query}")
        };
        let (status, body) = http(&self.addr, "POST", &path, None);
        assert_eq!(status, 200, "{path}: {body}");
        body.lines()
            .skip_while(|l| l.trim() != "active loggers:")
            .skip(1)
            .filter_map(|l| l.trim().split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; status and (de-chunked) body.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = text(&raw);
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn all_at(levels: &BTreeMap<String, String>, level: &str) -> bool {
    !levels.is_empty() && levels.values().all(|v| v == level)
}

// ---------------------------------------------------------------------------------------------
// help and usage
// ---------------------------------------------------------------------------------------------

#[test]
fn help_names_the_plugin_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(out.contains("Usage: kubectl envoy-log"), "{out}");
    for s in [
        "--for <DURATION>",
        "--follow",
        "--only-changed",
        "--reset",
        "--istiod",
        "--admin-url",
        "Exit codes:",
        "130",
    ] {
        assert!(out.contains(s), "--help lacks {s}:\n{out}");
    }
    let o = run(home.path(), &["-h"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("Examples:"));
    let o = run(home.path(), &["--version"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["p", "--reset", "--level", "debug"][..],
        &["p", "--reset", "rbac=debug"],
        &["p", "--level", "loud"],
        &["p", "rbac"],
        &["p", "rbac=loud"],
        &["p", "--for", "5m"],
        &["p", "rbac=debug", "--for", "5parsecs"],
        &["p", "rbac=debug", "--only-changed"],
        &[
            "--admin-url",
            "http://127.0.0.1:1",
            "--follow",
            "rbac=debug",
        ],
        &["--admin-url", "http://127.0.0.1:1", "somepod", "rbac=debug"],
        &["--istiod", "--level", "debug"],
        &["--istiod", "ads=loud"],
        &["--revision", "canary"],
        &["--bogus"],
    ] {
        let o = run(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(
            text(&o.stderr).contains("error:"),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
    let o = run(home.path(), &["p", "--reset", "--level", "debug"]);
    assert!(text(&o.stderr).contains("cannot be used with"));
}

#[test]
fn no_cluster_is_an_error_with_a_hint() {
    let home = tempfile::tempdir().unwrap();
    let o = cmd(home.path())
        .args(["somepod", "--kubeconfig"])
        .arg(home.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("error: cannot load the kubeconfig"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn unreachable_admin_url_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let o = run(
        home.path(),
        &["--admin-url", "http://127.0.0.1:1", "rbac=debug"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("cannot connect to Envoy admin at http://127.0.0.1:1"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// a real Envoy
// ---------------------------------------------------------------------------------------------

#[test]
fn lists_loggers_in_every_format() {
    let envoy = Envoy::start();
    let home = tempfile::tempdir().unwrap();
    envoy.logging("rbac=debug");
    let o = run(home.path(), &["--admin-url", &envoy.url()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("LOGGER ") && lines[0].ends_with(" LEVEL"),
        "{out}"
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
    assert_eq!(names.len(), envoy.logging("").len());
    let rbac = lines.iter().find(|l| l.starts_with("rbac ")).unwrap();
    assert_eq!(
        rbac.split_whitespace().collect::<Vec<_>>(),
        vec!["rbac", "debug"]
    );

    let o = run(home.path(), &["--admin-url", &envoy.url(), "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["apiVersion"], "meshdebug.io/v1");
    assert_eq!(v["kind"], "LoggerList");
    let rbac = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "rbac")
        .unwrap();
    assert_eq!(rbac["level"], "debug");
    assert_eq!(rbac["startLevel"], "warning");

    let o = run(home.path(), &["--admin-url", &envoy.url(), "-o", "yaml"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(
        out.starts_with("apiVersion: meshdebug.io/v1\nkind: LoggerList\nitems:\n"),
        "{out}"
    );

    // colour only when asked: the changed level is highlighted
    let o = run(
        home.path(),
        &["--admin-url", &envoy.url(), "--color", "always"],
    );
    let out = text(&o.stdout);
    let rbac = out.lines().find(|l| l.starts_with("rbac ")).unwrap();
    assert!(rbac.contains('\u{1b}'), "{rbac:?}");
    let http = out.lines().find(|l| l.starts_with("http ")).unwrap();
    assert!(!http.contains('\u{1b}'), "{http:?}");
}

#[test]
fn sets_named_loggers() {
    let envoy = Envoy::start();
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["--admin-url", &envoy.url(), "rbac=debug"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!(text(&o.stdout), @r"
    LOGGER   LEVEL
    rbac     debug
    ");
    let levels = envoy.logging("");
    assert_eq!(levels["rbac"], "debug");
    assert_eq!(levels["http"], "warning");

    // several at once, `:` and `warn` spellings
    let o = run(
        home.path(),
        &[
            "--admin-url",
            &envoy.url(),
            "jwt:trace",
            "http=warn",
            "rbac=info",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!(text(&o.stdout), @r"
    LOGGER   LEVEL
    http     warning
    jwt      trace
    rbac     info
    ");
    let levels = envoy.logging("");
    assert_eq!(
        (
            levels["jwt"].as_str(),
            levels["http"].as_str(),
            levels["rbac"].as_str()
        ),
        ("trace", "warning", "info")
    );
}

#[test]
fn unknown_logger_changes_nothing_and_suggests() {
    let envoy = Envoy::start();
    let home = tempfile::tempdir().unwrap();
    let before = envoy.logging("");
    let o = run(
        home.path(),
        &["--admin-url", &envoy.url(), "http=debug", "rbacc=debug"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = text(&o.stderr).replace(&envoy.url(), "URL");
    insta::assert_snapshot!(err, @r#"
    error: unknown logger "rbacc" on URL
    hint: did you mean: rbacc → rbac (kubectl envoy-log POD lists the loggers)
    "#);
    assert_eq!(envoy.logging(""), before, "nothing changed");
}

#[test]
fn level_then_reset_goes_back_to_warning() {
    let envoy = Envoy::start();
    let home = tempfile::tempdir().unwrap();
    let o = run(
        home.path(),
        &["--admin-url", &envoy.url(), "--level", "debug"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let levels = envoy.logging("");
    assert!(all_at(&levels, "debug"), "{levels:?}");
    assert_eq!(
        text(&o.stdout).lines().count(),
        levels.len() + 1,
        "every logger is shown"
    );

    // Without a pod there is no start level to read: Istio's default, warning.
    let o = run(home.path(), &["--admin-url", &envoy.url(), "--reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("resetting to warning"),
        "{}",
        text(&o.stderr)
    );
    assert!(all_at(&envoy.logging(""), "warning"));
}

#[test]
fn for_restores_the_exact_previous_levels() {
    let envoy = Envoy::start();
    let home = tempfile::tempdir().unwrap();
    envoy.logging("paths=rbac:info,jwt:error");
    let before = envoy.logging("");
    let o = run(
        home.path(),
        &[
            "--admin-url",
            &envoy.url(),
            "rbac=debug",
            "http=trace",
            "--for",
            "1s",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!(text(&o.stdout), @r"
    LOGGER   LEVEL
    http     trace
    rbac     debug
    ");
    let err = text(&o.stderr).replace(&envoy.url(), "URL");
    insta::assert_snapshot!(err, @r"
    restoring in 1s… (Ctrl-C restores now)
    restored http=warning rbac=info on URL
    ");
    assert_eq!(envoy.logging(""), before);

    // --level for a while: every logger comes back to its own previous level
    let o = run(
        home.path(),
        &[
            "--admin-url",
            &envoy.url(),
            "--level",
            "trace",
            "--for",
            "300ms",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(envoy.logging(""), before);
}

/// Start `args`, wait until stderr says the change is applied, send `signal`, and return the
/// exit code and all of stderr.
fn signal_while_holding(envoy: &Envoy, args: &[&str], signal: &str) -> (Option<i32>, String) {
    let home = tempfile::tempdir().unwrap();
    let mut child = cmd(home.path())
        .args(["--admin-url", &envoy.url()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "stderr closed before the change was applied: {seen}");
        seen.push_str(&line);
        if line.starts_with("restoring in ") {
            break;
        }
    }
    let started = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    seen.push_str(&rest);
    let code = child.wait().unwrap().code();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "restored at once, not after --for"
    );
    (code, seen)
}

#[test]
fn sigint_while_waiting_restores_and_exits_130() {
    let envoy = Envoy::start();
    envoy.logging("rbac=error");
    let before = envoy.logging("");
    let (code, err) =
        signal_while_holding(&envoy, &["rbac=debug", "jwt=trace", "--for", "30s"], "-INT");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("restored jwt=warning rbac=error on"), "{err}");
    assert_eq!(envoy.logging(""), before);
}

#[test]
fn sigterm_while_waiting_restores_too() {
    let envoy = Envoy::start();
    let before = envoy.logging("");
    let (code, err) = signal_while_holding(&envoy, &["--level", "debug", "--for", "30s"], "-TERM");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("restored the previous levels of"), "{err}");
    assert_eq!(envoy.logging(""), before);
}

// ---------------------------------------------------------------------------------------------
// a fake ControlZ (istiod /scopej/)
// ---------------------------------------------------------------------------------------------

/// A keep-alive HTTP/1.1 server for `GET /scopej/` and `PUT /scopej/<scope>`, recording PUTs.
struct ControlZ {
    addr: String,
    puts: Arc<Mutex<Vec<String>>>,
}

impl ControlZ {
    fn start() -> ControlZ {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scopes = Arc::new(Mutex::new(serde_json::json!([
            {"name": "ads", "description": "ads debugging", "output_level": "info", "stack_trace_level": "none", "log_callers": false},
            {"name": "default", "description": "Unscoped logging messages.", "output_level": "info", "stack_trace_level": "error", "log_callers": true},
            {"name": "model", "description": "Views and representations of Istio's model", "output_level": "info", "stack_trace_level": "none", "log_callers": false}
        ])));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let p = puts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let scopes = scopes.clone();
                let puts = p.clone();
                std::thread::spawn(move || serve(conn, &scopes, &puts));
            }
        });
        ControlZ { addr, puts }
    }
}

fn serve(conn: TcpStream, scopes: &Mutex<serde_json::Value>, puts: &Mutex<Vec<String>>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
        let (status, reply) = match (method, path) {
            ("GET", "/scopej/") => (200, scopes.lock().unwrap().to_string()),
            ("PUT", p) if p.starts_with("/scopej/") => {
                let name = &p["/scopej/".len()..];
                let update: serde_json::Value = serde_json::from_slice(&body).unwrap();
                puts.lock().unwrap().push(text(&body));
                let mut all = scopes.lock().unwrap();
                match all
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|s| s["name"] == name)
                {
                    Some(s) => {
                        s["output_level"] = update["output_level"].clone();
                        s["stack_trace_level"] = update["stack_trace_level"].clone();
                        s["log_callers"] = update["log_callers"].clone();
                        (202, String::new())
                    }
                    None => (400, format!("unknown scope name: {name}")),
                }
            }
            _ => (404, "not found".to_string()),
        };
        let reason = if status == 202 { "Accepted" } else { "OK" };
        write!(
            w,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
    }
}

#[test]
fn istiod_scopes_list_and_set() {
    let z = ControlZ::start();
    let url = format!("http://{}", z.addr);
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["--istiod", "--admin-url", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!(text(&o.stdout), @r"
    SCOPE     LEVEL   STACK TRACE   DESCRIPTION
    ads       info    none          ads debugging
    default   info    error         Unscoped logging messages.
    model     info    none          Views and representations of Istio's model
    ");

    let o = run(
        home.path(),
        &[
            "--istiod",
            "--admin-url",
            &url,
            "ads=debug",
            "default:warning",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!(text(&o.stdout), @r"
    SCOPE     LEVEL   STACK TRACE   DESCRIPTION
    ads       debug   none          ads debugging
    default   warn    error         Unscoped logging messages.
    ");
    // stack trace level and log_callers are sent back unchanged
    assert_eq!(
        *z.puts.lock().unwrap(),
        vec![
            r#"{"name":"ads","output_level":"debug","stack_trace_level":"none","log_callers":false}"#,
            r#"{"name":"default","output_level":"warn","stack_trace_level":"error","log_callers":true}"#,
        ]
    );

    let o = run(
        home.path(),
        &["--istiod", "--admin-url", &url, "-o", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "ScopeList");
    assert_eq!(v["items"][0]["level"], "debug");
}

#[test]
fn istiod_unknown_scope_changes_nothing() {
    let z = ControlZ::start();
    let url = format!("http://{}", z.addr);
    let home = tempfile::tempdir().unwrap();
    let o = run(
        home.path(),
        &["--istiod", "--admin-url", &url, "ads=debug", "modle=debug"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr).replace(&url, "URL");
    insta::assert_snapshot!(err, @r#"
    error: unknown scope "modle" on URL
    hint: did you mean: modle → model; valid scopes: ads, default, model
    "#);
    assert!(z.puts.lock().unwrap().is_empty());
}
