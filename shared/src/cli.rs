//! The flags every plugin shares, defined once and flattened into each binary.
//!
//! This is the only module that knows clap. Each `*Args` converts once into a plain option type
//! that the rest of the library uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use crate::cluster::ClusterOptions;
use crate::render::{ColorChoice, OutputFormat, RenderOptions};

/// Exit codes, shown at the end of every plugin's `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (also when no resources were found; a note goes to stderr)
  1    the command ran and the answer is negative (drift, untrusted, mismatch)
  2    any error: usage, not found, forbidden, unreachable, bad input
  130  interrupted (Ctrl-C)";

/// Which cluster, namespace and pods.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, value_name = "NAME", global = true)]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, value_name = "NAME", global = true)]
    pub user: Option<String>,
    /// Namespace (default: the context's namespace)
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        global = true,
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Span all namespaces
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=reviews,version in (v1,v2)
    #[arg(short = 'l', long, value_name = "SELECTOR", global = true)]
    pub selector: Option<String>,
    /// Timeout of each call to the cluster or a proxy, e.g. 30s, 1m (0 = none)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s", global = true)]
    pub request_timeout: Duration,
}

impl From<&ClusterArgs> for ClusterOptions {
    fn from(a: &ClusterArgs) -> Self {
        ClusterOptions {
            kubeconfig: a.kubeconfig.clone(),
            context: a.context.clone(),
            cluster: a.cluster.clone(),
            user: a.user.clone(),
            namespace: a.namespace.clone(),
            all_namespaces: a.all_namespaces,
            selector: a.selector.clone(),
            request_timeout: (!a.request_timeout.is_zero()).then_some(a.request_timeout),
        }
    }
}

/// How to reach the Envoy inside a pod.
#[derive(Debug, Clone, Default, Args)]
pub struct ProxyArgs {
    /// The sidecar container (default: istio-proxy, else the pod's one Envoy container)
    #[arg(short = 'c', long, value_name = "NAME", global = true)]
    pub container: Option<String>,
    /// Envoy admin port (default: from the pod's proxy.istio.io/config annotation, else 15000)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..), global = true)]
    pub admin_port: Option<u16>,
    /// Talk to an Envoy admin endpoint directly (local Envoy, existing port-forward); no cluster
    #[arg(long, value_name = "URL", global = true)]
    pub admin_url: Option<String>,
}

/// Offline input.
#[derive(Debug, Clone, Default, Args)]
pub struct InputArgs {
    /// Read a saved file instead of asking the cluster ('-' = stdin)
    #[arg(short = 'f', long = "file", value_name = "PATH", global = true)]
    pub file: Option<PathBuf>,
}

/// Output format, colour and verbosity.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(
        short = 'o',
        long,
        value_enum,
        ignore_case = true,
        default_value = "table",
        global = true
    )]
    pub output: OutputArg,
    /// When to colour tables (auto honours NO_COLOR and whether stdout is a terminal)
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "WHEN",
        global = true
    )]
    pub color: ColorArg,
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG wins
    #[arg(short = 'v', long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl OutputArgs {
    /// Resolve into render options (colour decided once, here).
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            format: self.output.into(),
            color: ColorChoice::from(self.color).resolve(),
        }
    }
}

/// `-o` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// kubectl-style table
    #[default]
    Table,
    /// table with extra columns
    Wide,
    /// the typed result as JSON
    Json,
    /// the typed result as YAML
    Yaml,
}

impl From<OutputArg> for OutputFormat {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Table => OutputFormat::Table,
            OutputArg::Wide => OutputFormat::Wide,
            OutputArg::Json => OutputFormat::Json,
            OutputArg::Yaml => OutputFormat::Yaml,
        }
    }
}

/// `--color` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// colour on a terminal unless NO_COLOR is set
    #[default]
    Auto,
    /// always colour tables
    Always,
    /// never colour
    Never,
}

impl From<ColorArg> for ColorChoice {
    fn from(c: ColorArg) -> Self {
        match c {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Always => ColorChoice::Always,
            ColorArg::Never => ColorChoice::Never,
        }
    }
}

/// Parse `30s`, `5m`, `1h`, `250ms`, `1m30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected e.g. 30s, 5m, 1h"));
        }
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid number {num:?} in duration {s:?}"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ms, s, m, h)"
                ));
            }
            u => {
                return Err(format!(
                    "invalid unit {u:?} in duration {s:?}: use ms, s, m or h"
                ));
            }
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestArgs {
        target: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        proxy: ProxyArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        output: OutputArgs,
    }

    #[test]
    fn shared_flags_are_consistent() {
        use clap::CommandFactory;
        TestArgs::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let a = TestArgs::try_parse_from(["x"]).unwrap();
        assert_eq!(a.cluster.request_timeout, Duration::from_secs(30));
        assert_eq!(a.output.output, OutputArg::Table);
        assert_eq!(a.proxy.admin_port, None);
        assert!(
            a.cluster.namespace.is_none(),
            "namespace comes from the context, not 'default'"
        );
    }

    #[test]
    fn kubectl_style_flags() {
        let a = TestArgs::try_parse_from([
            "x",
            "pod/a",
            "-n",
            "ns1",
            "--context=ctx",
            "-l",
            "app in (a,b)",
            "-c",
            "envoy",
            "-o",
            "JSON",
            "-vv",
            "--request-timeout",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(a.target.as_deref(), Some("pod/a"));
        assert_eq!(a.cluster.namespace.as_deref(), Some("ns1"));
        assert_eq!(a.cluster.context.as_deref(), Some("ctx"));
        assert_eq!(a.cluster.selector.as_deref(), Some("app in (a,b)"));
        assert_eq!(a.proxy.container.as_deref(), Some("envoy"));
        assert_eq!(a.output.output, OutputArg::Json);
        assert_eq!(a.output.verbose, 2);
        assert_eq!(a.cluster.request_timeout, Duration::from_secs(90));
    }

    #[test]
    fn namespace_conflicts_with_all_namespaces() {
        assert!(TestArgs::try_parse_from(["x", "-n", "a", "-A"]).is_err());
    }

    #[test]
    fn admin_port_zero_is_rejected() {
        assert!(TestArgs::try_parse_from(["x", "--admin-port", "0"]).is_err());
        assert!(TestArgs::try_parse_from(["x", "--admin-port", "70000"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
