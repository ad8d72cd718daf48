//! Shell completion for `kubectl <plugin> <TAB>` (kubectl ≥ 1.26).
//!
//! kubectl looks on PATH for `kubectl_complete-<plugin>` and runs it with the words typed after
//! the plugin name plus the word being completed (`""` for a new word). Our shim for it is two
//! lines, `exec kubectl-<plugin> __complete "$@"`, and [`intercept`] answers in Cobra's
//! `__complete` protocol before clap parses anything: one candidate per line
//! (`value<TAB>description`), then `:<directive>` as the last line.
//!
//! Completion never fails loudly: a missing kubeconfig, an unreachable cluster, a forbidden
//! list or a slow Envoy give fewer candidates, never a message. All cluster and Envoy lookups of
//! one completion share one [`DEADLINE`].
//!
//! `words` holds the flags and fixed words per plugin; `plan` decides what to offer for what was
//! typed (a pure function, unit-tested); `lookup` does the I/O (pods, deployments, namespaces,
//! kubeconfig contexts, Istio policies, Envoy loggers), called only from [`complete`].

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::Instant;

mod lookup;
mod plan;
mod words;

/// How long one completion may spend on cluster and Envoy lookups, all together.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Cobra's `ShellCompDirective` bits, printed as the last line (`:4`).
pub mod directive {
    /// Let the shell complete file names when there are no candidates.
    pub const DEFAULT: u32 = 0;
    /// Don't add a space after the completed word (`rbac=` then the level).
    pub const NO_SPACE: u32 = 2;
    /// Never fall back to file names.
    pub const NO_FILE_COMP: u32 = 4;
}

/// The four plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// `kubectl envoy-dump`.
    EnvoyDump,
    /// `kubectl envoy-log`.
    EnvoyLog,
    /// `kubectl mesh-sync`.
    MeshSync,
    /// `kubectl jwks-trust`.
    JwksTrust,
}

impl Plugin {
    /// The plugin name as typed after `kubectl`.
    pub fn name(self) -> &'static str {
        match self {
            Plugin::EnvoyDump => "envoy-dump",
            Plugin::EnvoyLog => "envoy-log",
            Plugin::MeshSync => "mesh-sync",
            Plugin::JwksTrust => "jwks-trust",
        }
    }
}

/// One completion candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The word the shell inserts.
    pub value: String,
    /// Shown next to it by shells that show descriptions (zsh, fish).
    pub description: Option<String>,
}

/// The answer to one `__complete` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Candidates in the order shown.
    pub candidates: Vec<Candidate>,
    /// Cobra directive bits (see [`directive`]).
    pub directive: u32,
}

impl Completion {
    /// Write the Cobra `__complete` answer: candidates one per line, then `:<directive>`.
    pub fn write(&self, out: &mut dyn Write, descriptions: bool) -> std::io::Result<()> {
        for c in &self.candidates {
            match (&c.description, descriptions) {
                (Some(d), true) => writeln!(out, "{}\t{}", c.value, d)?,
                _ => writeln!(out, "{}", c.value)?,
            }
        }
        writeln!(out, ":{}", self.directive)?;
        out.flush()
    }

    /// The candidate values only.
    pub fn values(&self) -> Vec<&str> {
        self.candidates.iter().map(|c| c.value.as_str()).collect()
    }
}

/// Answer `kubectl-<plugin> __complete ARGS...` (what the `kubectl_complete-<plugin>` shim
/// runs). Call it at the very top of `main`, before clap: returns `None` when the first
/// argument is not `__complete`/`__completeNoDesc`, else prints the answer on stdout and returns
/// the exit code (always success: errors are silent, see the module docs).
pub async fn intercept(plugin: Plugin) -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let first = args.next()?;
    let descriptions = match first.to_str() {
        Some("__complete") => true,
        Some("__completeNoDesc") => false,
        _ => return None,
    };
    let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    // kube's TLS needs a process-wide rustls provider; main has not run logging::init yet.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = complete(plugin, &words).await;
    let mut out = std::io::stdout().lock();
    let _ = answer.write(&mut out, descriptions);
    Some(ExitCode::SUCCESS)
}

/// Complete the last of `words` (the words after the plugin name; the last one is the word
/// being completed, `""` for a new word), looking up pods, namespaces, policies and Envoy
/// loggers as needed, within [`DEADLINE`].
pub async fn complete(plugin: Plugin, words: &[String]) -> Completion {
    let plan = plan::plan(plugin, words);
    let deadline = Instant::now() + DEADLINE;
    let mut lookup = lookup::Lookup::new(&plan.scope, deadline);
    let mut found = Vec::new();
    for source in &plan.sources {
        found.extend(lookup.fetch(source).await);
    }
    plan.finish(found)
}

#[cfg(test)]
mod tests {
    use super::words::VIEWS;
    use super::*;

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answer_format() {
        let c = Completion {
            candidates: vec![
                Candidate {
                    value: "clusters".into(),
                    description: Some("Envoy clusters".into()),
                },
                Candidate {
                    value: "pod-1".into(),
                    description: None,
                },
            ],
            directive: 4,
        };
        let mut out = Vec::new();
        c.write(&mut out, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "clusters\tEnvoy clusters\npod-1\n:4\n"
        );
        let mut out = Vec::new();
        c.write(&mut out, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "clusters\npod-1\n:4\n");
    }

    #[tokio::test]
    async fn lookups_fail_silently_to_static_words() {
        // No cluster behind this kubeconfig: views only, loggers from the static list.
        let dir = tempfile::tempdir().unwrap();
        let kc = dir.path().join("missing");
        let kc = kc.to_str().unwrap();
        let c = complete(Plugin::EnvoyDump, &w(&["--kubeconfig", kc, ""])).await;
        assert_eq!(c.values().len(), VIEWS.len());
        assert_eq!(c.directive, directive::NO_FILE_COMP);
        let c = complete(Plugin::EnvoyLog, &w(&["--kubeconfig", kc, "p", "r"])).await;
        assert_eq!(
            c.values(),
            vec!["rbac=", "rds=", "redis=", "router=", "runtime="]
        );
        assert_eq!(c.directive, 6);
        let c = complete(Plugin::JwksTrust, &w(&["--kubeconfig", kc, "inline", ""])).await;
        assert!(c.candidates.is_empty());
    }

    #[tokio::test]
    async fn loggers_from_a_real_admin_endpoint_shape() {
        // An admin endpoint that answers like Envoy's POST /logging.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            let body = "active loggers:\n  admin: info\n  jwt: info\n  rbac: info\n";
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let url = format!("http://{addr}");
        let c = complete(Plugin::EnvoyLog, &w(&["--admin-url", &url, ""])).await;
        assert_eq!(c.values(), vec!["admin=", "jwt=", "rbac="]);
    }
}
