//! Shell completion through the real kubectl: kubectl ≥ 1.26 runs `kubectl_complete-<plugin>`
//! from PATH with the words typed after the plugin name; `krew/completion-shims.sh` writes those
//! helpers, each running `kubectl-<plugin> __complete ARGS` (`meshdebug::complete::intercept`).
//! `kubectl __complete envoy-dump ""` is what a shell asks when the user presses TAB.

use std::path::Path;

use meshsim::world::World;

use crate::support::{PluginPath, show};

/// The plugins on a temporary PATH, plus the completion helpers krew/completion-shims.sh writes.
fn plugins_with_completion() -> PluginPath {
    let pp = PluginPath::install();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../krew/completion-shims.sh");
    let out = std::process::Command::new("sh")
        .arg(script)
        .arg(pp.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "completion-shims.sh: {}", show(&out));
    pp
}

/// The candidates (descriptions dropped) and the directive of `kubectl __complete ARGS`.
fn complete(pp: &PluginPath, kubeconfig: Option<&Path>, args: &[&str]) -> (Vec<String>, u32) {
    let mut argv = vec!["__complete"];
    argv.extend_from_slice(args);
    let out = pp.kubectl(kubeconfig, &argv).output().unwrap();
    assert!(out.status.success(), "kubectl {argv:?}: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let directive = lines
        .pop()
        .and_then(|l| l.strip_prefix(':'))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no :<directive> line from kubectl {argv:?}: {}", show(&out)));
    let candidates = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    (candidates, directive)
}

fn has(candidates: &[String], want: &[&str]) -> bool {
    want.iter().all(|w| candidates.iter().any(|c| c == w))
}

#[test]
fn views_flags_subcommands_and_levels_complete_without_a_cluster() {
    let pp = plugins_with_completion();
    let views = [
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
        "diff",
    ];
    // No kubeconfig at all: the pod lookup fails silently, the views remain.
    let (c, d) = complete(&pp, None, &["envoy-dump", ""]);
    assert_eq!(c, views, "kubectl envoy-dump <TAB>");
    assert_eq!(d, 4, "no file names");

    let (c, _) = complete(&pp, None, &["envoy-dump", "-o", ""]);
    assert_eq!(c, ["table", "wide", "json", "yaml"]);
    let (c, _) = complete(&pp, None, &["mesh-sync", "--color", ""]);
    assert_eq!(c, ["auto", "always", "never"]);
    let (c, _) = complete(&pp, None, &["envoy-log", "--na"]);
    assert_eq!(c, ["--namespace"]);

    let (c, _) = complete(&pp, None, &["jwks-trust", ""]);
    assert_eq!(
        c,
        ["check", "inline", "refresh", "add-ca", "remove-ca", "token"]
    );

    let (c, d) = complete(&pp, None, &["envoy-log", "web-1", "rbac="]);
    assert_eq!(
        c,
        [
            "rbac=trace",
            "rbac=debug",
            "rbac=info",
            "rbac=warning",
            "rbac=error",
            "rbac=critical",
            "rbac=off"
        ]
    );
    assert_eq!(d, 4);
    // Logger names (the static list without a cluster), completed up to `=` with no space.
    let (c, d) = complete(&pp, None, &["envoy-log", "web-1", "rb"]);
    assert_eq!(c, ["rbac="]);
    assert_eq!(d, 6);
}

#[test]
fn pods_namespaces_and_loggers_come_from_the_cluster() {
    let world = World::start_blocking("minimal").unwrap();
    let kc = Some(world.kubeconfig());
    let web = world.pod("demo", "web").unwrap().name;
    let istiod = world.pod("istio-system", "istiod").unwrap().name;
    let pp = plugins_with_completion();

    // The context's namespace (demo): views first, then its pods.
    let (c, d) = complete(&pp, kc, &["envoy-dump", ""]);
    assert!(has(&c, &["clusters", "diff", &web]), "{c:?}");
    assert_eq!(d, 4);
    let (c, _) = complete(&pp, kc, &["envoy-dump", "clusters", ""]);
    assert_eq!(c, [web.as_str()]);
    // -n typed so far is honoured.
    let (c, _) = complete(&pp, kc, &["mesh-sync", "-n", "istio-system", ""]);
    assert_eq!(c, [istiod.as_str()]);
    let (c, _) = complete(&pp, kc, &["envoy-log", "--namespace=istio-system", "is"]);
    assert_eq!(c, [istiod.as_str()]);
    // Namespaces after -n.
    let (c, _) = complete(&pp, kc, &["envoy-dump", "-n", ""]);
    assert!(has(&c, &["demo", "istio-system"]), "{c:?}");
    // deploy/NAME.
    let (c, _) = complete(&pp, kc, &["envoy-dump", "routes", "deploy/"]);
    assert_eq!(c, ["deploy/web"]);

    // Logger names from the pod's own Envoy through the admin port-forward: Envoy 1.40 has
    // `a2a`, which the static fallback list does not.
    let (c, d) = complete(&pp, kc, &["envoy-log", &web, "a"]);
    assert!(has(&c, &["a2a=", "admin="]), "{c:?}");
    assert_eq!(d, 6);
}

#[test]
fn jwks_trust_inline_completes_policy_names() {
    // The seed has a RequestAuthentication and a legacy Policy, both `customerjwt`.
    let world = World::start_blocking("seed").unwrap();
    let kc = Some(world.kubeconfig());
    let pp = plugins_with_completion();
    let (c, d) = complete(
        &pp,
        kc,
        &["jwks-trust", "inline", "-n", "olaf-customer", ""],
    );
    assert_eq!(c, ["customerjwt"]);
    assert_eq!(d, 4);
}

/// The long flags a `--help` lists: option lines `  -n, --namespace <NS>  ...` or
/// `      --color <WHEN>  ...` (clap writes `--verbose...` for counted flags).
fn help_flags(help: &str) -> Vec<String> {
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let first = words.next()?;
            let long = if first.starts_with("--") {
                first
            } else if first.len() == 3 && first.starts_with('-') && first.ends_with(',') {
                words.next()?
            } else {
                return None;
            };
            let long = long.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
            let name = long.strip_prefix("--")?;
            let kebab = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            kebab.then(|| long.to_string())
        })
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn help_flags_reads_clap_option_lines() {
    let help = "Options:\n  -n, --namespace <NS>  Namespace\n      --color <WHEN>  When\n  -v, --verbose...  More\n  --proxyComponentLogLevel is prose\n";
    assert_eq!(help_flags(help), ["--color", "--namespace", "--verbose"]);
}

#[test]
fn every_flag_in_help_completes() {
    let pp = plugins_with_completion();
    for p in crate::support::PLUGINS {
        let out = pp.kubectl(None, &[p, "--help"]).output().unwrap();
        assert!(out.status.success(), "kubectl {p} --help: {}", show(&out));
        let (offered, _) = complete(&pp, None, &[p, "--"]);
        for f in help_flags(&String::from_utf8_lossy(&out.stdout)) {
            assert!(
                offered.contains(&f),
                "kubectl {p} --help lists {f}, completion does not offer it (shared/src/complete/words.rs)"
            );
        }
    }
}
