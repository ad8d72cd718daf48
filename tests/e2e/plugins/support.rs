//! Shared helpers: where the plugins are, a PATH with them installed, running kubectl.

use std::path::{Path, PathBuf};
use std::process::Output;

pub const PLUGINS: [&str; 4] = ["envoy-dump", "envoy-log", "mesh-sync", "jwks-trust"];

/// The folder holding the built `kubectl-<plugin>` binaries.
pub fn plugin_bin_dir() -> PathBuf {
    let dir = std::env::var_os("PLUGIN_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    for p in PLUGINS {
        let bin = dir.join(format!("kubectl-{p}"));
        assert!(
            bin.exists(),
            "{} is missing: build the plugins first (`make build`) or set PLUGIN_BIN_DIR",
            bin.display()
        );
    }
    dir
}

/// The real kubectl on this machine.
pub fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl is not on PATH")
}

/// A temporary bin folder with the plugins installed as krew/`make install` does
/// (`kubectl-envoy_dump`, ...), plus kubectl itself.
pub struct PluginPath {
    pub dir: tempfile::TempDir,
}

impl PluginPath {
    pub fn install() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bins = plugin_bin_dir();
        for p in PLUGINS {
            let dst = dir.path().join(format!("kubectl-{}", p.replace('-', "_")));
            std::os::unix::fs::symlink(bins.join(format!("kubectl-{p}")), &dst).unwrap();
        }
        std::os::unix::fs::symlink(kubectl_path(), dir.path().join("kubectl")).unwrap();
        Self { dir }
    }

    /// PATH holding only our bin folder and the system folders.
    pub fn path_env(&self) -> String {
        format!("{}:/usr/bin:/bin", self.dir.path().display())
    }

    /// `kubectl ARGS` with this PATH, the given kubeconfig and a clean environment.
    pub fn kubectl(&self, kubeconfig: Option<&Path>, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(self.dir.path().join("kubectl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", self.path_env())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1");
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        cmd
    }
}

/// Output as text, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl ARGS` against a world; returns the output.
pub fn run(pp: &PluginPath, world: &meshsim::world::World, args: &[&str]) -> Output {
    pp.kubectl(Some(world.kubeconfig()), args).output().unwrap()
}

/// stdout as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw HTTP/1.1 request straight to a local address (an Envoy admin port, a listener),
/// bypassing the plugins: how tests check what really happened.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// The current level of each logger of an Envoy, read straight from its admin port.
pub fn envoy_levels(admin: std::net::SocketAddr) -> std::collections::BTreeMap<String, String> {
    let (status, body) = http(admin, "POST", "/logging", &[]);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
