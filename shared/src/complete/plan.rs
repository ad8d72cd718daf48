//! Which words to offer for what was typed: a pure function of the typed words.

use std::path::PathBuf;

use super::words::*;
use super::{Candidate, Completion, DEADLINE, Plugin, directive};
use crate::cluster::ClusterOptions;

/// Cluster and proxy flags typed so far: they scope the lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scope {
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) context: Option<String>,
    pub(super) cluster: Option<String>,
    pub(super) user: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) container: Option<String>,
    pub(super) admin_port: Option<u16>,
    pub(super) admin_url: Option<String>,
    /// `-l` given: the target is a selector, not a positional pod.
    pub(super) selector: bool,
    /// `-f` given: offline, no pod.
    pub(super) file: bool,
    /// envoy-log `--istiod`.
    pub(super) istiod: bool,
}

impl Scope {
    fn set(&mut self, flag: &Flag, value: &str) {
        let v = Some(value.to_string());
        match flag.long {
            "kubeconfig" => self.kubeconfig = Some(PathBuf::from(value)),
            "context" => self.context = v,
            "cluster" => self.cluster = v,
            "user" => self.user = v,
            "namespace" => self.namespace = v,
            "container" => self.container = v,
            "admin-port" => self.admin_port = value.parse().ok(),
            "admin-url" => self.admin_url = v,
            "selector" => self.selector = true,
            "file" => self.file = true,
            "istiod" => self.istiod = true,
            _ => {}
        }
    }

    pub(super) fn cluster_options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            namespace: self.namespace.clone(),
            all_namespaces: false,
            selector: None,
            request_timeout: Some(DEADLINE),
        }
    }
}

/// Where candidates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// Fixed words with descriptions.
    Words(Words),
    /// The flag names of a plugin.
    Flags(Plugin),
    /// Pod names in the namespace.
    Pods,
    /// Deployment names in the namespace.
    Deployments,
    /// Namespace names.
    Namespaces,
    /// kubeconfig contexts / clusters / users.
    Contexts,
    Clusters,
    Users,
    /// RequestAuthentications and legacy authentication Policies in the namespace.
    Policies,
    /// The Envoy loggers of this pod (or of `--admin-url`), else [`ENVOY_LOGGERS`].
    EnvoyLoggers {
        pod: Option<String>,
    },
    /// [`ISTIOD_SCOPES`].
    IstiodScopes,
}

/// What to look up and how to shape the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) scope: Scope,
    pub(super) sources: Vec<Source>,
    /// Put before each looked-up value (`--namespace=`, `deploy/`, `rbac=`).
    pub(super) prefix: String,
    /// Put after each looked-up value (`=` after a logger name).
    pub(super) suffix: String,
    /// The word being completed: candidates must start with it.
    pub(super) current: String,
    pub(super) directive: u32,
}

impl Plan {
    fn new(scope: Scope, current: &str) -> Self {
        Plan {
            scope,
            sources: Vec::new(),
            prefix: String::new(),
            suffix: String::new(),
            current: current.to_string(),
            directive: directive::NO_FILE_COMP,
        }
    }

    fn with(mut self, sources: Vec<Source>) -> Self {
        self.sources = sources;
        self
    }

    fn prefixed(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Shape looked-up candidates: prefix/suffix, keep those matching the current word, drop
    /// duplicates (first wins).
    pub(super) fn finish(&self, found: Vec<Candidate>) -> Completion {
        let mut seen = std::collections::BTreeSet::new();
        let candidates = found
            .into_iter()
            .map(|c| Candidate {
                value: format!("{}{}{}", self.prefix, c.value, self.suffix),
                description: c.description.filter(|d| !d.is_empty()),
            })
            .filter(|c| c.value.starts_with(&self.current))
            .filter(|c| seen.insert(c.value.clone()))
            .collect();
        Completion {
            candidates,
            directive: self.directive,
        }
    }
}

/// Parse the typed words into the scope and the positionals; a flag still waiting for its
/// value is returned too (the word being completed is that value).
pub(super) fn parse(
    plugin: Plugin,
    typed: &[String],
) -> (Scope, Vec<String>, Option<&'static Flag>) {
    let known = flags(plugin);
    let by_long = |n: &str| known.iter().copied().find(|f| f.long == n);
    let by_short = |c: char| known.iter().copied().find(|f| f.short == Some(c));
    let mut scope = Scope::default();
    let mut positionals = Vec::new();
    let mut pending: Option<&'static Flag> = None;
    let mut only_positionals = false;
    for w in typed {
        if let Some(f) = pending.take() {
            scope.set(f, w);
            continue;
        }
        if only_positionals || w == "-" || !w.starts_with('-') {
            positionals.push(w.clone());
            continue;
        }
        if w == "--" {
            only_positionals = true;
            continue;
        }
        if let Some(body) = w.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            match (by_long(name), value) {
                (Some(f), Some(v)) => scope.set(f, v),
                (Some(f), None) if f.value == Value::Bool => scope.set(f, ""),
                (Some(f), None) => pending = Some(f),
                (None, _) => {}
            }
            continue;
        }
        // -n NS, -nNS, -n=NS, -Av
        let body = &w[1..];
        for (i, c) in body.char_indices() {
            let Some(f) = by_short(c) else { break };
            if f.value == Value::Bool {
                scope.set(f, "");
                continue;
            }
            let rest = &body[i + c.len_utf8()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            if rest.is_empty() {
                pending = Some(f);
            } else {
                scope.set(f, rest);
            }
            break;
        }
    }
    (scope, positionals, pending)
}

/// Decide what to offer for `words` (the last one is being completed).
pub(super) fn plan(plugin: Plugin, words: &[String]) -> Plan {
    let (current, typed) = match words.split_last() {
        Some((c, t)) => (c.as_str(), t),
        None => ("", words),
    };
    let (scope, positionals, pending) = parse(plugin, typed);
    if let Some(f) = pending {
        return value_plan(Plan::new(scope, current), f.value);
    }
    if let Some(body) = current.strip_prefix("--")
        && let Some((name, _)) = body.split_once('=')
    {
        if let Some(f) = flags(plugin).into_iter().find(|f| f.long == name) {
            return value_plan(Plan::new(scope, current), f.value).prefixed(&format!("--{name}="));
        }
        return Plan::new(scope, current);
    }
    if let Some(body) = current.strip_prefix('-')
        && !body.starts_with('-')
        && let Some(c) = body.chars().next()
        && body.len() > c.len_utf8()
        && let Some(f) = flags(plugin)
            .into_iter()
            .find(|f| f.short == Some(c) && f.value != Value::Bool)
    {
        return value_plan(Plan::new(scope, current), f.value).prefixed(&format!("-{c}"));
    }
    if current.starts_with('-') {
        let mut p = Plan::new(scope, current);
        p.sources = vec![Source::Flags(plugin)];
        return p;
    }
    positional_plan(plugin, Plan::new(scope, current), &positionals)
}

/// The flag names of a plugin as candidates (`--namespace`, then `-n`).
pub(super) fn flag_candidates(plugin: Plugin) -> Vec<Candidate> {
    let all = flags(plugin);
    let long = all.iter().map(|f| (format!("--{}", f.long), f.help));
    let short = all
        .iter()
        .filter_map(|f| f.short.map(|c| (format!("-{c}"), f.help)));
    long.chain(short)
        .map(|(value, help)| Candidate {
            value,
            description: Some(help.to_string()),
        })
        .collect()
}

pub(super) fn value_plan(p: Plan, value: Value) -> Plan {
    match value {
        Value::Bool | Value::Free => p,
        Value::File => {
            let mut p = p;
            p.directive = directive::DEFAULT;
            p
        }
        Value::Namespace => p.with(vec![Source::Namespaces]),
        Value::Context => p.with(vec![Source::Contexts]),
        Value::Cluster => p.with(vec![Source::Clusters]),
        Value::User => p.with(vec![Source::Users]),
        Value::Output => p.with(vec![Source::Words(OUTPUTS)]),
        Value::Color => p.with(vec![Source::Words(COLORS)]),
        Value::Container => p.with(vec![Source::Words(CONTAINERS)]),
        Value::AdminPort => p.with(vec![Source::Words(ADMIN_PORTS)]),
        Value::Pod => target_plan(p),
        Value::Level => p.with(vec![Source::Words(ENVOY_LEVELS)]),
    }
}

/// A pod target: `NAME`, `pod/NAME` or `deploy/NAME`.
pub(super) fn target_plan(p: Plan) -> Plan {
    let kind = p.current.split_once('/').map(|(k, _)| k.to_string());
    match kind.as_deref() {
        Some(k @ ("deploy" | "deployment" | "deployments")) => {
            let prefix = format!("{k}/");
            p.with(vec![Source::Deployments]).prefixed(&prefix)
        }
        Some(k @ ("pod" | "pods" | "po")) => {
            let prefix = format!("{k}/");
            p.with(vec![Source::Pods]).prefixed(&prefix)
        }
        Some(_) => p,
        None => p.with(vec![Source::Pods]),
    }
}

pub(super) fn positional_plan(plugin: Plugin, p: Plan, pos: &[String]) -> Plan {
    let offline = p.scope.file || p.scope.admin_url.is_some();
    let by_selector = p.scope.selector;
    match plugin {
        Plugin::EnvoyDump => {
            let is_view = |w: &str| VIEWS.iter().any(|(v, _)| *v == w);
            match pos {
                [] if offline || by_selector => p.with(vec![Source::Words(VIEWS)]),
                [] => {
                    let mut t = target_plan(p);
                    if t.prefix.is_empty() {
                        t.sources.insert(0, Source::Words(VIEWS));
                    }
                    t
                }
                [view, rest @ ..] if is_view(view) => {
                    let pods_wanted = if view == "diff" { 2 } else { 1 };
                    if rest.len() < pods_wanted && !offline && !(by_selector && view != "diff") {
                        target_plan(p)
                    } else {
                        p
                    }
                }
                _ => p,
            }
        }
        Plugin::EnvoyLog => {
            let has_pod = pos.first().is_some_and(|w| !w.contains('='));
            if p.scope.istiod {
                return logger_plan(p, Source::IstiodScopes, ISTIOD_LEVELS);
            }
            if !has_pod && !by_selector && p.scope.admin_url.is_none() {
                return target_plan(p);
            }
            let pod = pos
                .first()
                .filter(|w| (!w.contains('=') && !w.contains('/')) || w.starts_with("pod/"))
                .map(|w| w.trim_start_matches("pod/").to_string());
            logger_plan(p, Source::EnvoyLoggers { pod }, ENVOY_LEVELS)
        }
        Plugin::MeshSync => match pos {
            [] if !offline && !by_selector => target_plan(p),
            _ => p,
        },
        Plugin::JwksTrust => match pos {
            [] => p.with(vec![Source::Words(JWKS_COMMANDS)]),
            [cmd] if cmd == "inline" => p.with(vec![Source::Policies]),
            _ => p,
        },
    }
}

/// `name=level` words: a logger name (then `=`, no space), or after `name=` its levels.
pub(super) fn logger_plan(p: Plan, names: Source, levels: Words) -> Plan {
    match p.current.split_once('=') {
        Some((name, _)) => {
            let prefix = format!("{name}=");
            p.with(vec![Source::Words(levels)]).prefixed(&prefix)
        }
        None => {
            let mut p = p.with(vec![names]);
            p.suffix = "=".to_string();
            p.directive = directive::NO_FILE_COMP | directive::NO_SPACE;
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::complete::lookup::{plain, words};

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn p(plugin: Plugin, words: &[&str]) -> Plan {
        plan(plugin, &w(words))
    }

    /// The values a plan gives when every lookup answers `looked_up`.
    fn offered(plan: &Plan, looked_up: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for s in &plan.sources {
            match s {
                Source::Words(ws) => found.extend(words(ws)),
                Source::Flags(plugin) => found.extend(flag_candidates(*plugin)),
                _ => found.extend(plain(looked_up.iter().map(|s| s.to_string()))),
            }
        }
        plan.finish(found)
            .values()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn envoy_dump_first_word_is_a_view_or_a_pod() {
        let plan = p(Plugin::EnvoyDump, &[""]);
        assert_eq!(plan.sources, vec![Source::Words(VIEWS), Source::Pods]);
        assert_eq!(plan.directive, directive::NO_FILE_COMP);
        let got = offered(&plan, &["customer-1"]);
        assert_eq!(
            got[..12],
            w(&[
                "clusters",
                "listeners",
                "routes",
                "endpoints",
                "secrets",
                "bootstrap",
                "all",
                "jwt",
                "rbac",
                "stats",
                "dashboard",
                "diff"
            ])
        );
        assert_eq!(got[12], "customer-1");
        assert_eq!(
            offered(&p(Plugin::EnvoyDump, &["r"]), &["reviews-1"]),
            w(&["routes", "rbac", "reviews-1"])
        );
    }

    #[test]
    fn envoy_dump_after_a_view_completes_pods_in_the_typed_namespace() {
        let plan = p(
            Plugin::EnvoyDump,
            &["clusters", "-n", "olaf", "--context=prod", ""],
        );
        assert_eq!(plan.sources, vec![Source::Pods]);
        assert_eq!(plan.scope.namespace.as_deref(), Some("olaf"));
        assert_eq!(plan.scope.context.as_deref(), Some("prod"));
        // a pod is already there: nothing more
        let plan = p(Plugin::EnvoyDump, &["clusters", "customer-1", ""]);
        assert!(plan.sources.is_empty());
        // diff takes two pods
        assert_eq!(
            p(Plugin::EnvoyDump, &["diff", "a", ""]).sources,
            vec![Source::Pods]
        );
        // -f: offline, views only
        assert_eq!(
            p(Plugin::EnvoyDump, &["-f", "dump.json", ""]).sources,
            vec![Source::Words(VIEWS)]
        );
        assert!(
            p(Plugin::EnvoyDump, &["-f", "dump.json", "routes", ""])
                .sources
                .is_empty()
        );
    }

    #[test]
    fn short_flags_attached_and_combined() {
        let (s, pos, pending) = parse(
            Plugin::EnvoyDump,
            &w(&["-nolaf", "-Av", "--kubeconfig", "/k", "x"]),
        );
        assert_eq!(s.namespace.as_deref(), Some("olaf"));
        assert_eq!(s.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(pos, w(&["x"]));
        assert!(pending.is_none());
        let (s, _, _) = parse(Plugin::EnvoyDump, &w(&["-n=olaf"]));
        assert_eq!(s.namespace.as_deref(), Some("olaf"));
        let (_, _, pending) = parse(Plugin::EnvoyDump, &w(&["-Ao"]));
        assert_eq!(pending.map(|f| f.long), Some("output"));
    }

    #[test]
    fn flag_values() {
        assert_eq!(
            offered(&p(Plugin::EnvoyDump, &["-o", ""]), &[]),
            w(&["table", "wide", "json", "yaml"])
        );
        assert_eq!(
            offered(&p(Plugin::MeshSync, &["--output", "y"]), &[]),
            w(&["yaml"])
        );
        assert_eq!(
            offered(&p(Plugin::EnvoyLog, &["--output=j"]), &[]),
            w(&["--output=json"])
        );
        assert_eq!(offered(&p(Plugin::EnvoyLog, &["-oj"]), &[]), w(&["-ojson"]));
        assert_eq!(
            offered(&p(Plugin::JwksTrust, &["--color", ""]), &[]),
            w(&["auto", "always", "never"])
        );
        let plan = p(Plugin::EnvoyDump, &["-n", ""]);
        assert_eq!(plan.sources, vec![Source::Namespaces]);
        assert_eq!(
            offered(
                &p(Plugin::EnvoyDump, &["--namespace=ol"]),
                &["olaf", "other", "x"]
            ),
            w(&["--namespace=olaf"])
        );
        assert_eq!(
            p(Plugin::EnvoyDump, &["--context", ""]).sources,
            vec![Source::Contexts]
        );
        // a path: the shell completes files
        let plan = p(Plugin::EnvoyDump, &["-f", ""]);
        assert!(plan.sources.is_empty());
        assert_eq!(plan.directive, directive::DEFAULT);
        // free values: nothing, and no file names either
        let plan = p(Plugin::EnvoyDump, &["-l", ""]);
        assert!(plan.sources.is_empty());
        assert_eq!(plan.directive, directive::NO_FILE_COMP);
    }

    #[test]
    fn flag_names() {
        let got = offered(&p(Plugin::EnvoyLog, &["--na"]), &[]);
        assert_eq!(got, w(&["--namespace"]));
        let got = offered(&p(Plugin::EnvoyLog, &["-"]), &[]);
        assert!(got.contains(&"--for".to_string()) && got.contains(&"-n".to_string()));
        assert!(!offered(&p(Plugin::EnvoyDump, &["--"]), &[]).contains(&"--for".to_string()));
    }

    #[test]
    fn pod_targets_with_kind_prefix() {
        let plan = p(Plugin::MeshSync, &["deploy/cu"]);
        assert_eq!(plan.sources, vec![Source::Deployments]);
        assert_eq!(
            offered(&plan, &["customer", "other"]),
            w(&["deploy/customer"])
        );
        assert_eq!(
            offered(&p(Plugin::EnvoyDump, &["pod/"]), &["a", "b"]),
            w(&["pod/a", "pod/b"])
        );
    }

    #[test]
    fn envoy_log_pod_then_loggers_then_levels() {
        assert_eq!(p(Plugin::EnvoyLog, &[""]).sources, vec![Source::Pods]);
        let plan = p(Plugin::EnvoyLog, &["customer-1", "rb"]);
        assert_eq!(
            plan.sources,
            vec![Source::EnvoyLoggers {
                pod: Some("customer-1".into())
            }]
        );
        assert_eq!(
            plan.directive,
            directive::NO_FILE_COMP | directive::NO_SPACE
        );
        assert_eq!(offered(&plan, &["rbac", "rds", "router"]), w(&["rbac="]));
        let plan = p(Plugin::EnvoyLog, &["customer-1", "rbac="]);
        assert_eq!(
            offered(&plan, &[]),
            w(&[
                "rbac=trace",
                "rbac=debug",
                "rbac=info",
                "rbac=warning",
                "rbac=error",
                "rbac=critical",
                "rbac=off"
            ])
        );
        assert_eq!(
            offered(&p(Plugin::EnvoyLog, &["x", "jwt=d"]), &[]),
            w(&["jwt=debug"])
        );
        // -l: the first word is already a logger
        let plan = p(Plugin::EnvoyLog, &["-l", "app=x", ""]);
        assert_eq!(plan.sources, vec![Source::EnvoyLoggers { pod: None }]);
        // --istiod: ControlZ scopes and istiod's levels
        let plan = p(Plugin::EnvoyLog, &["--istiod", "ads=w"]);
        assert_eq!(offered(&plan, &[]), w(&["ads=warn"]));
        assert_eq!(
            p(Plugin::EnvoyLog, &["--istiod", ""]).sources,
            vec![Source::IstiodScopes]
        );
    }

    #[test]
    fn jwks_trust_subcommands_then_policies() {
        assert_eq!(
            offered(&p(Plugin::JwksTrust, &[""]), &[]),
            w(&["check", "inline", "refresh", "add-ca", "remove-ca", "token"])
        );
        assert_eq!(
            offered(&p(Plugin::JwksTrust, &["re"]), &[]),
            w(&["refresh", "remove-ca"])
        );
        let plan = p(Plugin::JwksTrust, &["inline", "-n", "olaf-customer", ""]);
        assert_eq!(plan.sources, vec![Source::Policies]);
        assert_eq!(plan.scope.namespace.as_deref(), Some("olaf-customer"));
        assert_eq!(
            p(Plugin::JwksTrust, &["token", "x", "--pod", ""]).sources,
            vec![Source::Pods]
        );
        assert!(p(Plugin::JwksTrust, &["add-ca", ""]).sources.is_empty());
    }
}
