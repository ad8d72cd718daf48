//! Envoy logger levels (`POST /logging`) on one or many sidecars, changed safely and put back;
//! and istiod's logging scopes over ControlZ (`/scopej/`).
//!
//! `model` parses Envoy's `active loggers:` list and knows the level a sidecar started with;
//! `plan` turns `name=level` specs into `/logging` requests after checking every name against the
//! pod's own list; `apply` talks to one Envoy; `command` fans that out over pods (validate all,
//! then apply, then optionally wait (`wait`: signals, countdown) and put the old levels back
//! (`restore`); `follow` streams the sidecar's log;
//! `controlz` and `istiod` do the same for istiod's scopes.

pub mod apply;
pub mod command;
pub mod controlz;
pub mod follow;
pub mod istiod;
pub mod model;
pub mod plan;
pub mod restore;
pub mod wait;

pub use model::{Level, LoggerRow, Loggers, StartLevels, StartSource};
pub use plan::{Change, LevelSpec, Step, Unknown};

use crate::error::Hint;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Envoy's `/logging` answer is not an `active loggers:` list.
    #[error("cannot read the logger list of {target}: line {line}: {text:?}")]
    Parse {
        /// Which Envoy.
        target: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A level name Envoy does not know.
    #[error("unknown log level {level:?}")]
    BadLevel {
        /// What was given.
        level: String,
    },
    /// A positional argument that is not `LOGGER=LEVEL`.
    #[error("invalid logger setting {0:?}: expected LOGGER=LEVEL, e.g. rbac=debug")]
    BadSpec(String),
    /// Logger names the pod does not have.
    #[error("{} on {target}", unknown_text("logger", unknown))]
    UnknownLoggers {
        /// Which Envoy.
        target: String,
        /// The names and their suggestions.
        unknown: Vec<Unknown>,
    },
    /// A pod could not be read before any change; nothing was changed anywhere.
    #[error("{failed} of {total} {what} could not be checked, so nothing was changed")]
    NotValidated {
        /// How many failed.
        failed: usize,
        /// Of how many.
        total: usize,
        /// `pods` or `istiod replicas`.
        what: &'static str,
        /// The first failure.
        #[source]
        source: Box<crate::Error>,
    },
    /// Envoy answered 200 but the levels are not what was asked.
    #[error("{target} did not take the new levels: {}", mismatch_text(mismatches))]
    NotApplied {
        /// Which Envoy.
        target: String,
        /// `(logger, wanted, actual)`.
        mismatches: Vec<(String, Level, Option<Level>)>,
    },
    /// Putting back the previous levels failed.
    #[error("restoring the previous log levels on {target} failed")]
    Restore {
        /// Which Envoy.
        target: String,
        /// The command that sets them back by hand.
        command: String,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
    /// Opening the sidecar's log stream failed.
    #[error("following the log of container {container} of pod {pod} failed")]
    Logs {
        /// `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: Box<crate::cluster::Error>,
    },
    /// The log stream broke and could not be reopened.
    #[error("reading the log of container {container} of pod {pod} failed")]
    LogRead {
        /// `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// The last read error.
        #[source]
        source: std::io::Error,
    },
    /// The signal handler could not be installed.
    #[error("cannot listen for Ctrl-C/SIGTERM, so no change was made that would need restoring")]
    Signal(#[source] std::io::Error),
    /// `/scopej/` did not answer a scope list.
    #[error("cannot read the ControlZ scopes of {target}")]
    Scopes {
        /// Which istiod.
        target: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// istiod's ControlZ endpoint could not be reached.
    #[error("cannot reach ControlZ of {target} on port {port}")]
    ControlZ {
        /// Which istiod.
        target: String,
        /// The ControlZ port.
        port: u16,
        /// Why.
        #[source]
        source: Box<crate::admin::Error>,
    },
    /// A ControlZ level name istiod does not know.
    #[error("unknown istiod scope level {level:?}")]
    BadScopeLevel {
        /// What was given.
        level: String,
    },
    /// A positional argument that is not `SCOPE=LEVEL`.
    #[error("invalid scope setting {0:?}: expected SCOPE=LEVEL, e.g. ads=debug")]
    BadScopeSpec(String),
    /// Scope names an istiod replica does not have.
    #[error("{} on {target}", unknown_text("scope", unknown))]
    UnknownScopes {
        /// Which istiod.
        target: String,
        /// The names and their suggestions.
        unknown: Vec<Unknown>,
        /// The scopes it has.
        valid: Vec<String>,
    },
    /// The JSON body of a scope update could not be built.
    #[error("encoding the ControlZ update of scope {scope} failed")]
    Encode {
        /// The scope.
        scope: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No istiod pods matched.
    #[error("no running istiod pods found{}{}", namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " in any namespace".into()), revision.as_ref().map(|r| format!(" with revision {r}")).unwrap_or_default())]
    NoIstiod {
        /// `-i`, if given.
        namespace: Option<String>,
        /// `--revision`, if given.
        revision: Option<String>,
    },
    /// The named istiod pod is not an istiod pod we found.
    #[error("istiod pod {name} not found{}", namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_default())]
    IstiodNotFound {
        /// The name given.
        name: String,
        /// `-i`, if given.
        namespace: Option<String>,
        /// The istiod pods there are.
        found: Vec<String>,
    },
}

fn unknown_text(what: &str, unknown: &[Unknown]) -> String {
    let names: Vec<String> = unknown.iter().map(|u| format!("{:?}", u.name)).collect();
    let s = if names.len() == 1 { "" } else { "s" };
    format!("unknown {what}{s} {}", names.join(", "))
}

fn mismatch_text(m: &[(String, Level, Option<Level>)]) -> String {
    m.iter()
        .map(|(n, want, got)| match got {
            Some(g) => format!("{n} is {g}, not {want}"),
            None => format!("{n} is missing"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn suggestion_text(unknown: &[Unknown]) -> Option<String> {
    let parts: Vec<String> = unknown
        .iter()
        .filter(|u| !u.suggestions.is_empty())
        .map(|u| format!("{} → {}", u.name, u.suggestions.join(" | ")))
        .collect();
    (!parts.is_empty()).then(|| format!("did you mean: {}", parts.join("; ")))
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Parse { .. } => {
                Some("is this an Envoy admin endpoint? (check --admin-port / --admin-url)".into())
            }
            Error::BadLevel { .. } => Some(format!("levels: {}", Level::NAMES)),
            Error::BadSpec(_) => Some("e.g. kubectl envoy-log POD rbac=debug jwt:trace".into()),
            Error::UnknownLoggers { unknown, .. } => Some(match suggestion_text(unknown) {
                Some(s) => format!("{s} (kubectl envoy-log POD lists the loggers)"),
                None => "kubectl envoy-log POD lists the loggers of that pod's Envoy".into(),
            }),
            Error::NotApplied { .. } => {
                Some("is Envoy running with --enable-fine-grain-logging? list the loggers first".into())
            }
            Error::Restore { command, .. } => Some(format!("set them back by hand: {command}")),
            Error::ControlZ { port, .. } => Some(format!(
                "istiod serves ControlZ on localhost:{port} unless started with another --ctrlz_port (pass --ctrlz-port); is the discovery container ready?"
            )),
            Error::BadScopeLevel { .. } => Some(format!("levels: {}", controlz::ScopeLevel::NAMES)),
            Error::BadScopeSpec(_) => Some("e.g. kubectl envoy-log --istiod ads=debug".into()),
            Error::UnknownScopes { unknown, valid, .. } => {
                let list = format!("valid scopes: {}", valid.join(", "));
                Some(match suggestion_text(unknown) {
                    Some(s) => format!("{s}; {list}"),
                    None => list,
                })
            }
            Error::NoIstiod { .. } => Some(
                "pods are looked up by label app=istiod (or istio=pilot); pass -i NAMESPACE or --revision REV"
                    .into(),
            ),
            Error::IstiodNotFound { found, .. } if !found.is_empty() => {
                Some(format!("istiod pods: {}", found.join(", ")))
            }
            Error::Logs { source, .. } => source.hint(),
            Error::LogRead { .. } => Some("the connection to the apiserver broke; run again".into()),
            Error::NotValidated { source, .. } => source.hint(),
            Error::Signal(_)
            | Error::Scopes { .. }
            | Error::Encode { .. }
            | Error::IstiodNotFound { .. } => None,
        }
    }
}
