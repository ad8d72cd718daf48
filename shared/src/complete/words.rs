//! The flags and fixed words completion knows: per plugin, and the values of each flag.

use super::Plugin;

/// What a flag's value is, for completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// A switch: no value.
    Bool,
    /// A value we cannot suggest (selector, duration, URL, token).
    Free,
    /// A path: let the shell complete files.
    File,
    Namespace,
    Context,
    Cluster,
    User,
    Output,
    Color,
    Container,
    AdminPort,
    Pod,
    /// An Envoy log level.
    Level,
}

#[derive(Debug)]
pub(super) struct Flag {
    pub(super) long: &'static str,
    pub(super) short: Option<char>,
    pub(super) value: Value,
    pub(super) help: &'static str,
}

pub(super) const fn flag(
    long: &'static str,
    short: Option<char>,
    value: Value,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        short,
        value,
        help,
    }
}

/// `cli::ClusterArgs`, `cli::OutputArgs` and clap's own flags (a unit test keeps this in step
/// with `cli`).
pub(super) const SHARED_FLAGS: &[Flag] = &[
    flag(
        "kubeconfig",
        None,
        Value::File,
        "path to the kubeconfig file",
    ),
    flag(
        "context",
        None,
        Value::Context,
        "the kubeconfig context to use",
    ),
    flag(
        "cluster",
        None,
        Value::Cluster,
        "the kubeconfig cluster to use",
    ),
    flag("user", None, Value::User, "the kubeconfig user to use"),
    flag("namespace", Some('n'), Value::Namespace, "namespace"),
    flag(
        "all-namespaces",
        Some('A'),
        Value::Bool,
        "span all namespaces",
    ),
    flag("selector", Some('l'), Value::Free, "label selector"),
    flag(
        "request-timeout",
        None,
        Value::Free,
        "timeout of each call, e.g. 30s",
    ),
    flag("output", Some('o'), Value::Output, "output format"),
    flag("color", None, Value::Color, "when to colour tables"),
    flag("verbose", Some('v'), Value::Bool, "more logs on stderr"),
    flag("help", Some('h'), Value::Bool, "print help"),
    flag("version", Some('V'), Value::Bool, "print version"),
];

/// `cli::ProxyArgs`.
pub(super) const PROXY_FLAGS: &[Flag] = &[
    flag(
        "container",
        Some('c'),
        Value::Container,
        "the sidecar container",
    ),
    flag("admin-port", None, Value::AdminPort, "Envoy admin port"),
    flag(
        "admin-url",
        None,
        Value::Free,
        "talk to an Envoy admin endpoint directly",
    ),
];

/// `cli::InputArgs`.
pub(super) const INPUT_FLAGS: &[Flag] = &[flag(
    "file",
    Some('f'),
    Value::File,
    "read a saved file instead of the cluster",
)];

// The plugins' own flags, as their `main.rs` define them (kept in step by hand: a flag missing
// here is only a flag completion can't offer, and a value it can't complete).

pub(super) const DUMP_FLAGS: &[Flag] = &[
    flag("include-eds", None, Value::Bool, "include EDS endpoints"),
    flag(
        "resource",
        None,
        Value::Free,
        "only this config_dump resource",
    ),
    flag(
        "name-regex",
        None,
        Value::Free,
        "only resources whose name matches",
    ),
    flag("output-dir", None, Value::File, "write one file per pod"),
    flag("fqdn", None, Value::Free, "only this service FQDN"),
    flag("port", None, Value::Free, "only this port"),
    flag("subset", None, Value::Free, "only this subset"),
    flag("direction", None, Value::Free, "inbound or outbound"),
    flag("address", None, Value::Free, "only this address"),
    flag("type", None, Value::Free, "only this listener type"),
    flag("name", None, Value::Free, "only this route name"),
    flag(
        "status",
        None,
        Value::Free,
        "only endpoints with this health",
    ),
    flag(
        "filter",
        None,
        Value::Free,
        "only stats matching this regex",
    ),
    flag("browser", None, Value::Bool, "open a browser"),
];

pub(super) const LOG_FLAGS: &[Flag] = &[
    flag(
        "level",
        None,
        Value::Level,
        "set every logger to this level",
    ),
    flag(
        "reset",
        None,
        Value::Bool,
        "back to the levels the pod started with",
    ),
    flag(
        "for",
        None,
        Value::Free,
        "restore the levels after this long",
    ),
    flag("follow", None, Value::Bool, "stream the proxy log"),
    flag(
        "only-changed",
        None,
        Value::Bool,
        "only the loggers that changed",
    ),
    flag(
        "max-concurrency",
        None,
        Value::Free,
        "pods worked on at once",
    ),
    flag("istiod", None, Value::Bool, "istiod ControlZ scopes"),
    flag(
        "istio-namespace",
        Some('i'),
        Value::Namespace,
        "the Istio control plane namespace",
    ),
    flag("revision", None, Value::Free, "the istiod revision"),
    flag("ctrlz-port", None, Value::Free, "istiod's ControlZ port"),
];

pub(super) const SYNC_FLAGS: &[Flag] = &[
    flag(
        "istiod-file",
        None,
        Value::File,
        "a saved istiod syncz/config_dump",
    ),
    flag("proxy-file", None, Value::File, "a saved proxy config_dump"),
    flag(
        "istio-namespace",
        Some('i'),
        Value::Namespace,
        "the Istio control plane namespace",
    ),
    flag("revision", Some('r'), Value::Free, "the istiod revision"),
    flag("check", None, Value::Bool, "exit 1 on drift"),
    flag(
        "wait",
        None,
        Value::Bool,
        "wait until every proxy is in sync",
    ),
    flag("timeout", None, Value::Free, "how long --wait waits"),
];

pub(super) const JWKS_FLAGS: &[Flag] = &[
    flag(
        "istio-namespace",
        Some('i'),
        Value::Namespace,
        "the Istio control plane namespace",
    ),
    flag(
        "fetch-timeout",
        None,
        Value::Free,
        "timeout of each JWKS fetch",
    ),
    flag(
        "ca-file",
        None,
        Value::File,
        "another CA to trust when fetching",
    ),
    flag("no-proxies", None, Value::Bool, "don't read the sidecars"),
    flag("no-logs", None, Value::Bool, "don't read istiod's log"),
    flag(
        "log-lines",
        None,
        Value::Free,
        "lines of istiod's log per pod",
    ),
    flag("jwks-file", None, Value::File, "the JWKS to inline"),
    flag("issuer", None, Value::Free, "only this issuer's rule"),
    flag(
        "dry-run",
        None,
        Value::Bool,
        "show the change, write nothing",
    ),
    flag("cert", None, Value::File, "CA certificate(s), PEM"),
    flag(
        "from-url",
        None,
        Value::Free,
        "take the CA from this server",
    ),
    flag("deployment", None, Value::Free, "the istiod deployment"),
    flag("yes", Some('y'), Value::Bool, "don't ask"),
    flag("pod", None, Value::Pod, "check against this pod's proxy"),
];

pub(super) fn flags(plugin: Plugin) -> Vec<&'static Flag> {
    let own: &[&[Flag]] = match plugin {
        Plugin::EnvoyDump => &[PROXY_FLAGS, INPUT_FLAGS, DUMP_FLAGS],
        Plugin::EnvoyLog => &[PROXY_FLAGS, LOG_FLAGS],
        Plugin::MeshSync => &[PROXY_FLAGS, INPUT_FLAGS, SYNC_FLAGS],
        Plugin::JwksTrust => &[PROXY_FLAGS, INPUT_FLAGS, JWKS_FLAGS],
    };
    SHARED_FLAGS
        .iter()
        .chain(own.iter().flat_map(|f| f.iter()))
        .collect()
}

pub(super) type Words = &'static [(&'static str, &'static str)];

pub(super) const VIEWS: Words = &[
    ("clusters", "Envoy clusters (CDS)"),
    ("listeners", "listeners (LDS)"),
    ("routes", "routes (RDS)"),
    ("endpoints", "cluster endpoints and health (EDS)"),
    ("secrets", "certificates and trust bundles (SDS)"),
    ("bootstrap", "the bootstrap config"),
    ("all", "every section"),
    ("jwt", "JWT providers and the keys the proxy holds"),
    ("rbac", "RBAC filters and policies"),
    ("stats", "Envoy stats"),
    ("dashboard", "open the Envoy admin page"),
    ("diff", "compare the config of two pods"),
];

pub(super) const JWKS_COMMANDS: Words = &[
    ("check", "fetch every jwksUri with istiod's trust"),
    ("inline", "put a policy's JWKS inline"),
    ("refresh", "re-fetch the JWKS of an inlined policy"),
    ("add-ca", "make istiod trust a CA"),
    ("remove-ca", "undo add-ca"),
    ("token", "check a JWT against a proxy's keys"),
];

pub(super) const OUTPUTS: Words = &[
    ("table", "kubectl-style table"),
    ("wide", "table with extra columns"),
    ("json", "the typed result as JSON"),
    ("yaml", "the typed result as YAML"),
];

pub(super) const COLORS: Words = &[
    ("auto", "when stdout is a terminal and NO_COLOR is unset"),
    ("always", "always"),
    ("never", "never"),
];

pub(super) const CONTAINERS: Words = &[("istio-proxy", "the Istio sidecar")];

pub(super) const ADMIN_PORTS: Words =
    &[("15000", "Istio"), ("19000", "Consul, Envoy Gateway, Gloo")];

pub(super) const ENVOY_LEVELS: Words = &[
    ("trace", ""),
    ("debug", ""),
    ("info", ""),
    ("warning", ""),
    ("error", ""),
    ("critical", ""),
    ("off", ""),
];

pub(super) const ISTIOD_LEVELS: Words = &[
    ("debug", ""),
    ("info", ""),
    ("warn", ""),
    ("error", ""),
    ("none", ""),
];

/// Envoy loggers offered when the pod's own list cannot be read (Envoy 1.2x–1.40 names).
pub(super) const ENVOY_LOGGERS: &[&str] = &[
    "admin",
    "aws",
    "client",
    "config",
    "connection",
    "conn_handler",
    "dns",
    "envoy_bug",
    "ext_authz",
    "ext_proc",
    "file",
    "filter",
    "grpc",
    "hc",
    "health_checker",
    "http",
    "http2",
    "init",
    "jwt",
    "lua",
    "main",
    "misc",
    "oauth2",
    "pool",
    "quic",
    "rbac",
    "rds",
    "redis",
    "router",
    "runtime",
    "secret",
    "stats",
    "tracing",
    "upstream",
    "wasm",
];

/// istiod ControlZ scopes common to recent releases.
pub(super) const ISTIOD_SCOPES: &[&str] = &[
    "ads",
    "authorization",
    "default",
    "delta",
    "grpcgen",
    "kube",
    "model",
    "security",
    "serviceentry",
    "spiffe",
    "status",
    "telemetry",
    "validation",
    "wle",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `cli`'s shared structs is known here, with the same short name and the
    /// same value-or-switch shape.
    #[test]
    fn shared_flags_match_cli() {
        use clap::Args as _;
        let cmd = clap::Command::new("t");
        let cmd = crate::cli::ClusterArgs::augment_args(cmd);
        let cmd = crate::cli::ProxyArgs::augment_args(cmd);
        let cmd = crate::cli::InputArgs::augment_args(cmd);
        let cmd = crate::cli::OutputArgs::augment_args(cmd);
        let ours: Vec<&Flag> = SHARED_FLAGS
            .iter()
            .chain(PROXY_FLAGS)
            .chain(INPUT_FLAGS)
            .collect();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            let f = ours
                .iter()
                .find(|f| f.long == long)
                .unwrap_or_else(|| panic!("--{long} is missing from complete.rs"));
            assert_eq!(f.short, a.get_short(), "--{long} short");
            assert_eq!(
                f.value != Value::Bool,
                a.get_action().takes_values(),
                "--{long} takes a value?"
            );
        }
    }
}
