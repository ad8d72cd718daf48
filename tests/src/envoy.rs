//! Real Envoy processes: finding the binary, starting one with a config file, waiting until it is
//! ready, reading back the addresses it bound, and killing it again.
//!
//! Each Envoy runs under a tiny `sh` watchdog that holds a pipe from this process on fd 3: when
//! this process exits for any reason (even SIGKILL), the pipe closes and the watchdog kills its
//! Envoy, so a crashed test never leaves Envoys behind. Dropping an [`EnvoyProcess`] kills the
//! Envoy and reaps both processes before returning.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the Envoy binary is: `$MESHSIM_ENVOY`, else `<workspace>/.cache/envoy/envoy`.
pub fn envoy_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("MESHSIM_ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".cache/envoy/envoy"),
    };
    if !path.is_file() {
        bail!(
            "Envoy binary not found at {} — run `make envoy` in the workspace root (or set MESHSIM_ENVOY)",
            path.display()
        );
    }
    Ok(path)
}

/// Everything needed to start one Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyCommand {
    /// Bootstrap file (JSON or YAML).
    pub config_path: PathBuf,
    /// Directory for the admin address file and the pid file.
    pub run_dir: PathBuf,
    /// Envoy's stdout and stderr (logs and stdout access logs) are appended here.
    pub log_path: PathBuf,
    /// `-l`: trace, debug, info, warning, error, critical, off.
    pub log_level: String,
    /// `--component-log-level`, e.g. `misc:error`; empty for none.
    pub component_log_level: String,
    /// `--log-format`; None for Envoy's default `[%Y-%m-%d %T.%e][%t][%l][%n] %v`.
    pub log_format: Option<String>,
    pub service_node: String,
    pub service_cluster: String,
    pub concurrency: u32,
}

impl EnvoyCommand {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-c".into(),
            self.config_path.display().to_string(),
            "--admin-address-path".into(),
            self.admin_address_path().display().to_string(),
            "--use-dynamic-base-id".into(),
            "--service-node".into(),
            self.service_node.clone(),
            "--service-cluster".into(),
            self.service_cluster.clone(),
            "--local-address-ip-version".into(),
            "v4".into(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--drain-time-s".into(),
            "1".into(),
            "--parent-shutdown-time-s".into(),
            "2".into(),
            "--file-flush-interval-msec".into(),
            "250".into(),
            "-l".into(),
            envoy_level(&self.log_level).into(),
        ];
        if !self.component_log_level.is_empty() {
            a.push("--component-log-level".into());
            a.push(self.component_log_level.clone());
        }
        if let Some(f) = &self.log_format {
            a.push("--log-format".into());
            a.push(f.clone());
        }
        a
    }

    fn admin_address_path(&self) -> PathBuf {
        self.run_dir.join("admin-address")
    }

    fn pid_path(&self) -> PathBuf {
        self.run_dir.join("envoy.pid")
    }
}

/// Istio's level names to Envoy's (`warn` → `warning`).
fn envoy_level(l: &str) -> &str {
    match l {
        "warn" => "warning",
        other => other,
    }
}

/// The watchdog: runs Envoy in the background, writes its pid, kills it when fd 3 (a pipe from
/// the parent) reaches EOF, and exits with Envoy's status when Envoy exits by itself.
const WATCHDOG: &str = r#"
"$@" </dev/null 3<&- &
p=$!
echo "$p" > "$MESHSIM_PIDFILE"
( read -r _ <&3; kill -9 "$p" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$p"; s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// A running Envoy (and its watchdog), killed on drop.
#[derive(Debug)]
pub struct EnvoyProcess {
    watchdog: Option<Child>,
    lifeline: Option<ChildStdin>,
    envoy_pid: u32,
    admin: SocketAddr,
    log_path: PathBuf,
}

impl EnvoyProcess {
    /// Starts Envoy and waits until its admin answers `/ready` with 200, or fails with the tail of
    /// its log.
    pub async fn start(cmd: &EnvoyCommand, timeout: Duration) -> Result<EnvoyProcess> {
        let envoy = envoy_binary()?;
        std::fs::create_dir_all(&cmd.run_dir)?;
        let _ = std::fs::remove_file(cmd.admin_address_path());
        let _ = std::fs::remove_file(cmd.pid_path());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cmd.log_path)
            .with_context(|| format!("opening {}", cmd.log_path.display()))?;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("exec 3<&0\n{WATCHDOG}"))
            .arg("meshsim-envoy")
            .arg(&envoy)
            .args(cmd.args())
            .env("MESHSIM_PIDFILE", cmd.pid_path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = command.spawn().context("spawning sh for envoy")?;
        let lifeline = child.stdin.take();
        let mut proc = EnvoyProcess {
            watchdog: Some(child),
            lifeline,
            envoy_pid: 0,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: cmd.log_path.clone(),
        };
        let deadline = Instant::now() + timeout;
        // 1. the pid file and the admin address file
        loop {
            if proc.envoy_pid == 0
                && let Ok(s) = std::fs::read_to_string(cmd.pid_path())
            {
                proc.envoy_pid = s.trim().parse().unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(cmd.admin_address_path())
                && let Ok(addr) = s.trim().parse::<SocketAddr>()
                && proc.envoy_pid != 0
            {
                proc.admin = addr;
                break;
            }
            proc.check_alive(deadline, "to write its admin address")?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // 2. /ready
        loop {
            if let Ok((200, _)) = http_get(proc.admin, "/ready").await {
                break;
            }
            proc.check_alive(deadline, "to become ready")?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(proc)
    }

    fn check_alive(&mut self, deadline: Instant, what: &str) -> Result<()> {
        if let Some(child) = self.watchdog.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.watchdog = None;
            bail!(
                "envoy exited ({status}) before {what}; log tail:\n{}",
                tail(&self.log_path, 30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "envoy did not manage {what} in time; log tail:\n{}",
                tail(&self.log_path, 30)
            );
        }
        Ok(())
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Pids of Envoy and of its watchdog shell.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.envoy_pid];
        if let Some(c) = &self.watchdog {
            v.push(c.id());
        }
        v
    }

    pub fn envoy_pid(&self) -> u32 {
        self.envoy_pid
    }

    /// Bound addresses of the listeners, by name, from admin `/listeners?format=json`.
    pub async fn listener_addresses(&self) -> Result<Vec<(String, SocketAddr)>> {
        let (status, body) = http_get(self.admin, "/listeners?format=json").await?;
        if status != 200 {
            bail!("/listeners answered {status}");
        }
        let v: Value = serde_json::from_str(&body)?;
        let mut out = Vec::new();
        for l in v
            .get("listener_statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = l
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let sa = l.pointer("/local_address/socket_address");
            let addr = sa.and_then(|s| s.get("address")).and_then(Value::as_str);
            let port = sa.and_then(|s| s.get("port_value")).and_then(Value::as_u64);
            if let (Some(a), Some(p)) = (addr, port) {
                out.push((name, format!("{a}:{p}").parse()?));
            }
        }
        Ok(out)
    }

    /// Kills Envoy and reaps it and its watchdog (blocking for at most a few milliseconds).
    pub fn kill(&mut self) {
        // Closing the lifeline makes the watchdog kill Envoy and exit.
        self.lifeline = None;
        let Some(mut child) = self.watchdog.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break,
            }
        }
        // The watchdog did not do its job: kill both directly.
        if self.envoy_pid != 0 {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(self.envoy_pid.to_string())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Is a process with this pid still running (not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|r| !r.starts_with('Z')),
        Err(_) => false,
    }
}

/// A bound port that was free a moment ago (bind 127.0.0.1:0, read, close).
pub fn reserve_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// GET over HTTP/1.1 with a 10 s timeout; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    http_request(addr, "GET", path, &[], None).await
}

/// One HTTP/1.1 request on a fresh connection; returns status and body text.
/// `Host` defaults to the address; pass a `host` header to override it.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<(u16, String)> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", addr.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        drop(sender);
        conn.abort();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow!("{method} http://{addr}{path}: timed out"))?
}
