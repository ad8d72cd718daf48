//! The flags of `kubectl envoy-dump`: shared ones flattened from `meshdebug::cli`, the raw dump's
//! own, and one subcommand per view with its filters; converted once into `dump::Options`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{
    ArgAction, Args as ClapArgs, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};
use meshdebug::cli::{ClusterArgs, InputArgs, OutputArgs, ProxyArgs};
use meshdebug::dump::clusters::ClusterFilter;
use meshdebug::dump::diff::{DiffOptions, DiffSection, Side};
use meshdebug::dump::endpoints::EndpointFilter;
use meshdebug::dump::listeners::ListenerFilter;
use meshdebug::dump::routes::RouteFilter;
use meshdebug::dump::{DashboardOptions, Options, RawOptions, Source, View};

const EXAMPLES: &str = "\
Examples:
  kubectl envoy-dump productpage-v1-6b746f74dc-9stvs > dump.json   # raw, streamed
  kubectl envoy-dump clusters deploy/reviews -n bookinfo            # POD column per pod
  kubectl envoy-dump listeners POD --port 15006
  kubectl envoy-dump routes -f dump.json                            # offline
  kubectl envoy-dump jwt POD                                        # providers and keys
  kubectl envoy-dump stats POD --filter 'rbac.*denied'
  kubectl envoy-dump -l app=reviews --output-dir dumps/             # DIR/<ns>/<pod>.json
  kubectl envoy-dump dashboard POD --browser                        # 127.0.0.1:15000
  kubectl envoy-dump diff reviews-v1-abc reviews-v1-def             # two replicas
  kubectl envoy-dump diff -f before.json POD                        # before/after an apply";

const DIFF_EXAMPLES: &str = "\
Each side is a pod (NAME, pod/NAME, deploy/NAME with one pod), a saved dump (-f FILE, repeatable
here) or --admin-url URL, in the order given: '-' lines come from the first, '+' from the second.
Resources are sorted, versions and timestamps dropped, enum defaults ignored; secrets are
compared by name, type, trust domain and CA serial only. Exit 0 when all match, 1 when not.

Examples:
  kubectl envoy-dump diff reviews-v1-abc reviews-v1-def -n bookinfo   # two replicas
  kubectl envoy-dump POD > before.json; kubectl apply -f vs.yaml
  kubectl envoy-dump diff -f before.json POD                          # what the apply changed
  kubectl envoy-dump diff -f a.json -f b.json --section clusters,routes
  kubectl envoy-dump diff POD --admin-url http://127.0.0.1:15000 -o json";

const USAGE: &str = "\
kubectl envoy-dump [OPTIONS] TARGET         (the raw /config_dump)
       kubectl envoy-dump VIEW [TARGET] [OPTIONS]
       kubectl envoy-dump VIEW -f FILE [OPTIONS]
       kubectl envoy-dump diff A B [OPTIONS]      (A, B: pods, -f FILE or --admin-url)";

/// Show a sidecar's Envoy config: the raw /config_dump, or istioctl-grade tables
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-envoy-dump",
    bin_name = "kubectl envoy-dump",
    version,
    long_about = None,
    override_usage = USAGE,
    subcommand_value_name = "VIEW",
    subcommand_help_heading = "Views (without a VIEW: the raw /config_dump)",
    after_help = EXAMPLES,
)]
pub(crate) struct Args {
    /// Pod as NAME, pod/NAME or deploy/NAME (or choose pods with -l / -A)
    target: Option<String>,
    #[command(flatten)]
    raw: RawArgs,
    #[command(subcommand)]
    view: Option<ViewCmd>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// How many times -f was given.
    #[arg(skip)]
    files: usize,
    /// `diff`'s sides (pods, files, admin URLs) in command-line order.
    #[arg(skip)]
    sides: Vec<Side>,
}

/// Flags of the raw dump (no VIEW).
#[derive(Debug, Clone, Default, ClapArgs)]
struct RawArgs {
    /// Include EDS endpoints in the dump (Envoy's include_eds)
    #[arg(long)]
    include_eds: bool,
    /// Dump only this resource, e.g. dynamic_active_clusters (Envoy's resource=)
    #[arg(long, value_name = "FIELD")]
    resource: Option<String>,
    /// Dump only resources whose name matches (Envoy's name_regex=)
    #[arg(long, value_name = "REGEX")]
    name_regex: Option<String>,
    /// Write one file per pod, DIR/NAMESPACE/POD.json (needed for several pods)
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ViewCmd {
    /// SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE (istioctl pc cluster)
    #[command(visible_alias = "cluster")]
    Clusters(ClustersCmd),
    /// ADDRESSES, PORT, MATCH, DESTINATION per filter chain (istioctl pc listener)
    #[command(visible_alias = "listener")]
    Listeners(ListenersCmd),
    /// NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE (istioctl pc route)
    #[command(visible_alias = "route")]
    Routes(RoutesCmd),
    /// ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER from /clusters (istioctl pc endpoint)
    #[command(visible_alias = "endpoint")]
    Endpoints(EndpointsCmd),
    /// Certificates: RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE
    #[command(visible_alias = "secret")]
    Secrets(TargetCmd),
    /// Istio, proxy and Envoy versions and the node; -o json prints the bootstrap itself
    Bootstrap(TargetCmd),
    /// Every table above, in order
    All(TargetCmd),
    /// JWT providers per listener with the keys the proxy holds (and istiod's placeholder keys)
    Jwt(TargetCmd),
    /// RBAC policies (AuthorizationPolicies) per listener: action, permissions, principals
    Rbac(TargetCmd),
    /// Envoy stats (GET /stats), e.g. --filter 'jwt_authn.*denied'
    Stats(StatsCmd),
    /// Port-forward the admin UI to 127.0.0.1 until Ctrl-C (istioctl dashboard envoy)
    Dashboard(DashboardCmd),
    /// Compare two proxies' config (pods, -f FILEs, --admin-url): Match / Don't Match per section
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffCmd),
}

impl ViewCmd {
    fn target(&self) -> Option<&String> {
        match self {
            ViewCmd::Clusters(c) => c.target.as_ref(),
            ViewCmd::Listeners(c) => c.target.as_ref(),
            ViewCmd::Routes(c) => c.target.as_ref(),
            ViewCmd::Endpoints(c) => c.target.as_ref(),
            ViewCmd::Secrets(c)
            | ViewCmd::Bootstrap(c)
            | ViewCmd::All(c)
            | ViewCmd::Jwt(c)
            | ViewCmd::Rbac(c) => c.target.as_ref(),
            ViewCmd::Stats(c) => c.target.as_ref(),
            ViewCmd::Dashboard(c) => c.target.as_ref(),
            ViewCmd::Diff(c) => c.targets.first(),
        }
    }
}

/// Just a target.
#[derive(Debug, Clone, ClapArgs)]
struct TargetCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f FILE, or --admin-url)
    target: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct ClustersCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f FILE, or --admin-url)
    target: Option<String>,
    /// Only clusters whose name contains this FQDN
    #[arg(long)]
    fqdn: Option<String>,
    /// Only clusters of this port (|PORT| in the name)
    #[arg(long)]
    port: Option<u32>,
    /// Only clusters whose name contains this subset
    #[arg(long)]
    subset: Option<String>,
    /// Only clusters whose name contains this direction (inbound, outbound)
    #[arg(long)]
    direction: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct ListenersCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f FILE, or --admin-url)
    target: Option<String>,
    /// Only listeners on this address
    #[arg(long)]
    address: Option<String>,
    /// Only listeners on this port
    #[arg(long)]
    port: Option<u32>,
    /// Only listeners of this type: HTTP, TCP, HTTP+TCP, UNKNOWN
    #[arg(long = "type", value_name = "TYPE")]
    listener_type: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct RoutesCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f FILE, or --admin-url)
    target: Option<String>,
    /// Only the route configuration with this name
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct EndpointsCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f CLUSTERS.json, or --admin-url)
    target: Option<String>,
    /// Only endpoints of this cluster
    #[arg(long)]
    cluster: Option<String>,
    /// Only endpoints with this address
    #[arg(long)]
    address: Option<String>,
    /// Only endpoints with this port
    #[arg(long)]
    port: Option<u32>,
    /// Only endpoints with this status: HEALTHY, UNHEALTHY, DRAINING, TIMEOUT, DEGRADED, UNKNOWN
    #[arg(long)]
    status: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct StatsCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or -l / -A, or -f STATS.txt, or --admin-url)
    target: Option<String>,
    /// Only stats whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
}

#[derive(Debug, Clone, ClapArgs)]
struct DashboardCmd {
    /// Pod as NAME, pod/NAME or deploy/NAME (or --admin-url)
    target: Option<String>,
    /// Local port (0 = any free port)
    #[arg(long, default_value_t = 15000)]
    port: u16,
    /// Open the URL in a browser (xdg-open / open)
    #[arg(long)]
    browser: bool,
}

#[derive(Debug, Clone, ClapArgs)]
struct DiffCmd {
    /// Pods as NAME, pod/NAME or deploy/NAME (one pod each); the other side may be -f FILE or --admin-url
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// Only these sections (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTION")]
    section: Vec<SectionArg>,
}

/// `diff --section` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SectionArg {
    /// static and dynamic active clusters
    Clusters,
    /// static listeners and the active state of dynamic ones
    Listeners,
    /// static and dynamic route configs
    Routes,
    /// secrets by name, type, trust domain and CA serial (never key material)
    Secrets,
}

impl From<SectionArg> for DiffSection {
    fn from(s: SectionArg) -> Self {
        match s {
            SectionArg::Clusters => DiffSection::Clusters,
            SectionArg::Listeners => DiffSection::Listeners,
            SectionArg::Routes => DiffSection::Routes,
            SectionArg::Secrets => DiffSection::Secrets,
        }
    }
}

/// What to run: a view, or `diff`.
#[derive(Debug)]
pub(crate) enum Invocation {
    /// A view (or the raw dump).
    View(Options),
    /// `diff A B`.
    Diff(DiffOptions),
}

/// Parse the command line into [`Args`] and check the rules clap cannot express.
///
/// `diff` orders its sides by their positions after `diff` (clap copies a global flag's value
/// between the levels, so a `-f` before `diff` could not be placed, or would be lost).
pub(crate) fn parse_from(argv: Vec<OsString>) -> Result<Args, clap::Error> {
    let m = command().try_get_matches_from(&argv)?;
    let mut args = Args::from_arg_matches(&m)?;
    if let Some(sub) = m.subcommand_matches("diff") {
        let mut before_diff = argv
            .iter()
            .skip(1)
            .take_while(|a| a.as_os_str() != "diff")
            .filter_map(|a| a.to_str());
        if before_diff.any(names_a_side) {
            return Err(command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "give diff's sources after diff: kubectl envoy-dump diff A B (-f FILE, --admin-url URL)",
            ));
        }
        let mut sides: Vec<(usize, Side)> = Vec::new();
        let files = sub.get_many::<PathBuf>("file").into_iter().flatten();
        let at = sub.indices_of("file").into_iter().flatten();
        sides.extend(at.zip(files).map(|(i, v)| (i, Side::File(v.clone()))));
        let urls = sub.get_many::<String>("admin_url").into_iter().flatten();
        let at = sub.indices_of("admin_url").into_iter().flatten();
        sides.extend(at.zip(urls).map(|(i, v)| (i, Side::AdminUrl(v.clone()))));
        let pods = sub.get_many::<String>("targets").into_iter().flatten();
        let at = sub.indices_of("targets").into_iter().flatten();
        sides.extend(at.zip(pods).map(|(i, v)| (i, Side::Pod(v.clone()))));
        sides.sort_by_key(|(i, _)| *i);
        args.sides = sides.into_iter().map(|(_, s)| s).collect();
    }
    if let Some(ViewCmd::Endpoints(e)) = &mut args.view {
        // `endpoints --cluster` (istioctl's filter) and the kubeconfig's `--cluster` share clap's
        // id, so clap copies one value to both: where it was given decides which it is.
        let kubeconfig_cluster = argv
            .iter()
            .skip(1)
            .filter_map(|a| a.to_str())
            .take_while(|a| !matches!(*a, "endpoints" | "endpoint"))
            .any(|a| a == "--cluster" || a.starts_with("--cluster="));
        if kubeconfig_cluster {
            e.cluster = None;
        } else {
            args.cluster.cluster = None;
        }
    }
    args.files = m.get_many::<PathBuf>("file").map_or(0, |f| f.count());
    args.validate()?;
    Ok(args)
}

/// `-f`, `--file`, `--admin-url` (or `-vf`, `--file=X`, ...).
fn names_a_side(arg: &str) -> bool {
    let short = arg
        .strip_prefix('-')
        .filter(|rest| !rest.starts_with('-'))
        .is_some_and(|flags| flags.trim_start_matches(['A', 'v']).starts_with('f'));
    short
        || ["--file", "--admin-url"]
            .iter()
            .any(|f| arg == *f || arg.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
}

impl Args {
    /// Rules clap cannot express across a subcommand: the raw dump's flags need no VIEW, and the
    /// target is given once (before or after the VIEW).
    pub(crate) fn validate(&self) -> Result<(), clap::Error> {
        let conflict =
            |msg: &str| Err(command().error(clap::error::ErrorKind::ArgumentConflict, msg));
        let is_diff = matches!(self.view, Some(ViewCmd::Diff(_)));
        if self.files > 1 && !is_diff {
            return conflict("-f is given once (more than once only with diff)");
        }
        let Some(view) = &self.view else {
            return Ok(());
        };
        if is_diff {
            if self.target.is_some() {
                return conflict("give both sides after diff: kubectl envoy-dump diff A B");
            }
            if self.cluster.selector.is_some() || self.cluster.all_namespaces {
                return conflict(
                    "diff compares two single pods: name them (NAME, pod/NAME, deploy/NAME), not -l or -A",
                );
            }
            if self.sides.len() != 2 {
                let kind = if self.sides.len() < 2 {
                    clap::error::ErrorKind::TooFewValues
                } else {
                    clap::error::ErrorKind::TooManyValues
                };
                return Err(command().error(
                    kind,
                    format!(
                        "diff compares two sources, {} given: pods, -f FILE or --admin-url URL, e.g. kubectl envoy-dump diff POD -f before.json",
                        self.sides.len()
                    ),
                ));
            }
        }
        let raw = &self.raw;
        if raw.include_eds
            || raw.resource.is_some()
            || raw.name_regex.is_some()
            || raw.output_dir.is_some()
        {
            return conflict(
                "--include-eds, --resource, --name-regex and --output-dir apply to the raw dump (no VIEW)",
            );
        }
        if self.target.is_some() && view.target().is_some() {
            return conflict("give the target once: kubectl envoy-dump VIEW TARGET");
        }
        Ok(())
    }

    /// Convert once into what to run.
    pub(crate) fn into_invocation(self) -> Result<Invocation, meshdebug::Error> {
        let Some(ViewCmd::Diff(d)) = &self.view else {
            return self.into_options().map(Invocation::View);
        };
        let cluster = meshdebug::cluster::ClusterOptions::from(&self.cluster);
        let mut sides = self.sides.into_iter();
        let (Some(a), Some(b)) = (sides.next(), sides.next()) else {
            // `validate` checked there are two.
            return Err(meshdebug::cluster::Error::NoTarget.into());
        };
        Ok(Invocation::Diff(DiffOptions {
            sides: [a, b],
            sections: d.section.iter().map(|s| DiffSection::from(*s)).collect(),
            timeout: cluster.request_timeout,
            cluster,
            container: self.proxy.container,
            admin_port: self.proxy.admin_port,
            render: self.output.render_options(),
        }))
    }

    /// Convert once into the library's plain options of a view.
    pub(crate) fn into_options(self) -> Result<Options, meshdebug::Error> {
        let outer_target = self.target.clone();
        let (target, view) = match self.view {
            None => (
                self.target,
                View::Raw(RawOptions {
                    include_eds: self.raw.include_eds,
                    resource: self.raw.resource,
                    name_regex: self.raw.name_regex,
                    output_dir: self.raw.output_dir,
                }),
            ),
            Some(ViewCmd::Clusters(c)) => (
                c.target,
                View::Clusters(ClusterFilter {
                    fqdn: c.fqdn,
                    port: c.port,
                    subset: c.subset,
                    direction: c.direction,
                }),
            ),
            Some(ViewCmd::Listeners(c)) => (
                c.target,
                View::Listeners(ListenerFilter {
                    address: c.address,
                    port: c.port,
                    listener_type: c.listener_type,
                }),
            ),
            Some(ViewCmd::Routes(c)) => (c.target, View::Routes(RouteFilter { name: c.name })),
            Some(ViewCmd::Endpoints(c)) => (
                c.target,
                View::Endpoints(EndpointFilter {
                    cluster: c.cluster,
                    address: c.address,
                    port: c.port,
                    status: c.status,
                }),
            ),
            Some(ViewCmd::Secrets(c)) => (c.target, View::Secrets),
            Some(ViewCmd::Bootstrap(c)) => (c.target, View::Bootstrap),
            Some(ViewCmd::All(c)) => (c.target, View::All),
            Some(ViewCmd::Jwt(c)) => (c.target, View::Jwt),
            Some(ViewCmd::Rbac(c)) => (c.target, View::Rbac),
            Some(ViewCmd::Stats(c)) => (c.target, View::Stats { filter: c.filter }),
            Some(ViewCmd::Dashboard(c)) => (
                c.target,
                View::Dashboard(DashboardOptions {
                    port: c.port,
                    browser: c.browser,
                }),
            ),
            Some(ViewCmd::Diff(_)) => return Err(meshdebug::cluster::Error::NoTarget.into()),
        };
        let target = target.or(outer_target);
        let cluster = meshdebug::cluster::ClusterOptions::from(&self.cluster);
        let timeout = cluster.request_timeout;
        let source = Source::from_flags(
            self.input.file,
            self.proxy.admin_url,
            target.as_deref(),
            cluster,
            self.proxy.container,
            self.proxy.admin_port,
        )?;
        Ok(Options {
            view,
            source,
            render: self.output.render_options(),
            timeout,
        })
    }
}

/// The command with the long help's examples and exit codes.
/// `-f` may be repeated (for `diff`; [`Args::validate`] rejects it elsewhere).
pub(crate) fn command() -> clap::Command {
    Args::command()
        .mut_arg("file", |a| a.action(ArgAction::Append))
        .after_long_help(format!("{EXAMPLES}\n\n{}", meshdebug::cli::EXIT_CODES_HELP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let mut full = vec![OsString::from("kubectl-envoy-dump")];
        full.extend(argv.iter().map(OsString::from));
        parse_from(full)
    }

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn raw_dump_of_a_pod() {
        let a = parse(&["productpage-1", "-n", "bookinfo", "--include-eds"]).unwrap();
        assert_eq!(a.target.as_deref(), Some("productpage-1"));
        assert!(a.view.is_none());
        let o = a.into_options().unwrap();
        assert!(matches!(
            o.view,
            View::Raw(RawOptions {
                include_eds: true,
                ..
            })
        ));
        assert!(matches!(o.source, Source::Pods { .. }));
    }

    #[test]
    fn views_take_their_own_target_and_filters() {
        let a = parse(&["clusters", "deploy/reviews", "--port", "9080", "-o", "json"]).unwrap();
        let o = a.into_options().unwrap();
        let View::Clusters(f) = o.view else {
            panic!("{:?}", o.view)
        };
        assert_eq!(f.port, Some(9080));
        let Source::Pods { target, .. } = o.source else {
            panic!()
        };
        assert_eq!(
            target.kind,
            meshdebug::cluster::TargetKind::Deployment("reviews".into())
        );
        let a = parse(&["listeners", "-f", "d.json", "--type", "HTTP"]).unwrap();
        let o = a.into_options().unwrap();
        assert!(matches!(o.source, Source::File(_)));
        let a = parse(&["-n", "x", "stats", "p", "--filter", "rbac"]).unwrap();
        assert_eq!(a.cluster.namespace.as_deref(), Some("x"));
        let a = parse(&["pod-1", "routes", "-o", "yaml"]).unwrap();
        let o = a.into_options().unwrap();
        assert!(matches!(o.view, View::Routes(_)));
        let Source::Pods { target, .. } = o.source else {
            panic!()
        };
        assert_eq!(
            target.kind,
            meshdebug::cluster::TargetKind::Pod("pod-1".into())
        );
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["clusters", "p", "--include-eds"]).is_err());
        assert!(parse(&["--include-eds", "clusters", "p"]).is_err());
        assert!(parse(&["p", "clusters", "q"]).is_err());
        assert!(parse(&["clusters", "p", "--bogus"]).is_err());
        assert!(parse(&["dashboard", "p", "--port", "70000"]).is_err());
        let a = parse(&["routes", "p", "-f", "d.json"]).unwrap();
        assert!(a.into_options().is_err(), "a pod and a file");
        let a = parse(&["routes"]).unwrap();
        assert!(a.into_options().is_err(), "no source");
    }

    fn diff(argv: &[&str]) -> DiffOptions {
        match parse(argv).unwrap().into_invocation().unwrap() {
            Invocation::Diff(d) => d,
            Invocation::View(v) => panic!("{v:?}"),
        }
    }

    #[test]
    fn diff_sides_keep_the_command_line_order() {
        let d = diff(&["diff", "pod-a", "deploy/b", "-n", "x"]);
        assert_eq!(
            d.sides,
            [Side::Pod("pod-a".into()), Side::Pod("deploy/b".into())]
        );
        assert_eq!(d.cluster.namespace.as_deref(), Some("x"));
        assert!(d.sections.is_empty());
        let d = diff(&["diff", "pod-a", "-f", "before.json"]);
        assert_eq!(
            d.sides,
            [Side::Pod("pod-a".into()), Side::File("before.json".into())]
        );
        let d = diff(&["diff", "-f", "before.json", "pod-a"]);
        assert_eq!(
            d.sides,
            [Side::File("before.json".into()), Side::Pod("pod-a".into())]
        );
        let d = diff(&["-o", "json", "diff", "-f", "a.json", "-f", "b.json"]);
        assert_eq!(
            d.sides,
            [Side::File("a.json".into()), Side::File("b.json".into())]
        );
        let d = diff(&["-n", "diff", "diff", "p", "--file=x.json"]);
        assert_eq!(
            d.sides,
            [Side::Pod("p".into()), Side::File("x.json".into())]
        );
        let d = diff(&[
            "diff",
            "--admin-url",
            "http://h:1",
            "p",
            "--section",
            "routes,clusters",
        ]);
        assert_eq!(
            d.sides,
            [Side::AdminUrl("http://h:1".into()), Side::Pod("p".into())]
        );
        assert_eq!(d.sections, vec![DiffSection::Routes, DiffSection::Clusters]);
    }

    #[test]
    fn diff_usage_errors() {
        assert!(parse(&["diff", "p"]).is_err(), "one side");
        assert!(parse(&["diff"]).is_err(), "no side");
        assert!(parse(&["diff", "a", "b", "c"]).is_err(), "three sides");
        assert!(parse(&["diff", "a", "-f", "x", "-f", "y"]).is_err());
        assert!(parse(&["a", "diff", "b"]).is_err(), "target before diff");
        assert!(parse(&["diff", "a", "b", "-l", "app=x"]).is_err());
        assert!(parse(&["diff", "a", "b", "-A"]).is_err());
        assert!(parse(&["diff", "a", "b", "--section", "bogus"]).is_err());
        assert!(parse(&["diff", "a", "b", "--include-eds"]).is_err());
        let e = parse(&["clusters", "-f", "a", "-f", "b"]).unwrap_err();
        assert!(
            e.to_string().contains("more than once only with diff"),
            "{e}"
        );
        assert!(parse(&["-f", "a", "-f", "b"]).is_err());
        for before in [
            &["-f", "a"][..],
            &["--file=a"],
            &["-vf", "a"],
            &["--admin-url", "u"],
        ] {
            let mut argv = before.to_vec();
            argv.extend(["diff", "p"]);
            let e = parse(&argv).unwrap_err();
            assert!(
                e.to_string().contains("sources after diff"),
                "{argv:?}: {e}"
            );
        }
        assert!(names_a_side("-f") && names_a_side("-Afx") && !names_a_side("-n"));
        assert!(!names_a_side("--filex") && !names_a_side("-nf"));
    }

    #[test]
    fn endpoints_cluster_filter_is_not_the_kubeconfig_cluster() {
        let a = parse(&["endpoints", "p", "--cluster", "outbound|80||x"]).unwrap();
        assert_eq!(a.cluster.cluster, None);
        let Some(ViewCmd::Endpoints(e)) = &a.view else {
            panic!()
        };
        assert_eq!(e.cluster.as_deref(), Some("outbound|80||x"));
        let a = parse(&["--cluster", "kind-a", "endpoint", "p"]).unwrap();
        assert_eq!(a.cluster.cluster.as_deref(), Some("kind-a"));
        let Some(ViewCmd::Endpoints(e)) = &a.view else {
            panic!()
        };
        assert_eq!(e.cluster, None);
        let a = parse(&["--cluster=kind-a", "clusters", "p"]).unwrap();
        assert_eq!(a.cluster.cluster.as_deref(), Some("kind-a"));
    }

    #[test]
    fn dashboard_defaults_to_port_15000() {
        let a = parse(&["dashboard", "p"]).unwrap();
        let o = a.into_options().unwrap();
        assert!(matches!(
            o.view,
            View::Dashboard(DashboardOptions {
                port: 15000,
                browser: false
            })
        ));
    }
}
