//! A sidecar's Envoy configuration: `/config_dump` as typed sections (v3 and the v2alpha of
//! Istio ≤1.4), and the views of `kubectl envoy-dump` — pure functions from those models to rows,
//! cell for cell like `istioctl proxy-config` where istioctl has the table.
//!
//! - [`model`]: the dump, dispatched on `@type`; unknown sections kept raw.
//! - [`clusters`], [`listeners`], [`routes`], [`secrets`], [`bootstrap`]: istioctl's tables.
//! - [`endpoints`]: `/clusters?format=json` host health.
//! - [`filter`]: network and HTTP filters, current and Istio 1.3/1.4-era names.
//! - [`jwt`], [`rbac`]: what no other tool shows — JWT providers with the keys the proxy really
//!   holds (and istiod's placeholder keys), RBAC policies.
//! - [`stats`]: `/stats`, filtered.
//! - [`diff`]: two proxies' config compared section by section (`diff A B`).
//! - [`command`]: fetch (file, `--admin-url`, pods), view, render.

pub mod bootstrap;
pub mod clusters;
pub mod command;
mod dashboard;
pub mod diff;
mod draw;
pub mod endpoints;
pub mod filter;
#[cfg(test)]
mod fixture;
pub mod jwt;
pub mod listeners;
pub mod model;
pub mod proto_json;
mod raw;
pub mod rbac;
pub mod routes;
pub mod secrets;
pub mod stats;
mod view;

use std::path::PathBuf;

pub use command::{DashboardOptions, Options, RawOptions, Source, View, run};
pub use model::{ConfigDump, SectionKind};

use crate::error::Hint;

/// What went wrong reading or showing a proxy's configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config_dump, `/clusters` document or one of its sections has an unexpected shape.
    #[error("{origin}: {what} is not valid (at line {line}, column {column}, byte {offset})")]
    Decode {
        /// The file, pod or URL it came from.
        origin: String,
        /// What was being read: `Envoy config_dump`, a section's `@type`, ...
        what: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// 0-based byte offset.
        offset: usize,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// The dump lacks the section a view needs.
    #[error("{origin} has no {section} section")]
    MissingSection {
        /// The file, pod or URL.
        origin: String,
        /// e.g. `ClustersConfigDump`.
        section: &'static str,
    },
    /// The file given to `endpoints -f` is a config_dump.
    #[error("{origin} is a config_dump; endpoints reads Envoy's GET /clusters?format=json")]
    NotClusterStatuses {
        /// The file.
        origin: String,
    },
    /// `--filter` / `--name-regex` is not a valid regular expression.
    #[error("invalid regular expression {pattern:?}")]
    Regex {
        /// The expression.
        pattern: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
    /// Both a file and a live source were named.
    #[error("give one source: -f FILE, --admin-url URL, or a pod (pod, deploy/NAME, -l, -A)")]
    ConflictingSources,
    /// The view needs a live proxy.
    #[error("{view} needs a running proxy: give a pod or --admin-url, not -f")]
    NeedsLiveProxy {
        /// The view.
        view: &'static str,
    },
    /// The raw dump of several pods needs a directory.
    #[error("{count} pods matched; the raw config_dump of several pods needs --output-dir DIR")]
    NeedsOutputDir {
        /// How many pods.
        count: usize,
    },
    /// `--output-dir` with a source that is not pods.
    #[error(
        "--output-dir writes one file per pod: give pods (pod, deploy/NAME, -l, -A), not -f or --admin-url"
    )]
    OutputDirNeedsPods,
    /// Writing a file under `--output-dir` failed.
    #[error("cannot write {}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A side of `diff` names more (or fewer) than one pod.
    #[error("{target} matched {} pods{}; diff compares one pod with one other", pods.len(), list(pods))]
    NotOnePod {
        /// The target as given, e.g. `deploy/reviews`.
        target: String,
        /// The pods it matched.
        pods: Vec<String>,
    },
    /// The dashboard's local port could not be opened.
    #[error("cannot listen on {address}")]
    Listen {
        /// `127.0.0.1:PORT`.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Decode { .. } => Some(
                "is it complete and what the view reads? views read a /config_dump \
                 (kubectl envoy-dump POD > dump.json); endpoints reads /clusters?format=json; stats reads /stats"
                    .into(),
            ),
            Error::MissingSection { section, .. } => Some(format!(
                "views other than endpoints and stats read a whole /config_dump with a {section} \
                 (kubectl envoy-dump POD > dump.json, without --resource or --name-regex)"
            )),
            Error::NotClusterStatuses { .. } => Some(
                "run kubectl envoy-dump endpoints POD, or save Envoy's GET /clusters?format=json to a file"
                    .into(),
            ),
            Error::Regex { .. } => Some("e.g. --filter 'jwt_authn.*denied'".into()),
            Error::NeedsOutputDir { .. } => {
                Some("e.g. --output-dir dumps/ (one file per pod), or name one pod".into())
            }
            Error::NotOnePod { pods, .. } => Some(match pods.as_slice() {
                [a, b, ..] => format!("name the pods, e.g. kubectl envoy-dump diff {a} {b}"),
                _ => "name the pods: kubectl envoy-dump diff POD_A POD_B".into(),
            }),
            Error::Listen { .. } => {
                Some("is the port taken? choose another with --port (0 = any free port)".into())
            }
            _ => None,
        }
    }
}

/// ` (a, b)` for a message, or nothing.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}
