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
    pub fn kubectl(&self, kubeconfig: Option<&Path>, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.dir.path().join("kubectl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", self.path_env())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
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
