//! `kubectl mesh-sync`: is every proxy in sync with istiod, and what differs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use meshdebug::ExitStatus;
use meshdebug::cli::{ClusterArgs, EXIT_CODES_HELP, OutputArgs, ProxyArgs, parse_duration};
use meshdebug::sync::Options;

const EXAMPLES: &str = "\
Examples:
  # every proxy istiod knows (all namespaces unless -n), and whether it acknowledged what
  # istiod sent; every istiod replica is asked and the answers merged
  kubectl mesh-sync
  # only the proxies in namespace shop; exit 1 if any is STALE or ERROR
  kubectl mesh-sync -n shop --check
  # wait (at most 2m) until every proxy has acknowledged its config, e.g. after a rollout
  kubectl mesh-sync -A --wait --timeout 2m
  # compare istiod's config for a pod with what its sidecar runs
  kubectl mesh-sync productpage-v1-6987489c74-wchxv -n shop
  # offline: saved /debug/syncz answers (ISTIOD = file name up to the first '.'), or
  # `istioctl ps -o json` output
  kubectl mesh-sync -f istiod-7d4f9.json -f istiod-x2kq9.json
  # offline comparison of two saved dumps
  kubectl mesh-sync --istiod-file istiod-dump.json --proxy-file envoy-dump.json

Statuses: SYNCED (acknowledged), NOT SENT (nothing pushed), STALE (a newer push is not
acknowledged yet), STALE (Never Acknowledged), ERROR (the proxy rejected the push), IGNORED
(the proxy does not watch that type). --check and --wait treat STALE and ERROR as drift.";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-mesh-sync",
    bin_name = "kubectl mesh-sync",
    version,
    about = "Show whether every Istio proxy is in sync with istiod, and what differs for one",
    long_about = None,
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}")
)]
struct Args {
    /// Compare istiod's config for this pod (NAME or pod/NAME) with the sidecar's own config_dump
    #[arg(value_name = "POD", conflicts_with_all = ["file", "wait"])]
    pod: Option<String>,
    /// Read saved syncz answers instead of asking istiod (repeatable; '-' = stdin): the HTTP
    /// /debug/syncz array or the xDS DiscoveryResponse
    #[arg(short = 'f', long = "file", value_name = "PATH", conflicts_with_all = ["istiod_file", "proxy_file", "wait"])]
    file: Vec<PathBuf>,
    /// istiod's side of a comparison: a saved /debug/config_dump?proxyID=... answer
    #[arg(long, value_name = "PATH")]
    istiod_file: Option<PathBuf>,
    /// The proxy's side of a comparison: a saved Envoy /config_dump
    #[arg(long, value_name = "PATH", conflicts_with = "admin_url")]
    proxy_file: Option<PathBuf>,
    /// The control-plane namespace (default: found by the labels app=istiod, else istio=pilot)
    #[arg(short = 'i', long, value_name = "NS")]
    istio_namespace: Option<String>,
    /// Only the istiod replicas of this revision (label istio.io/rev)
    #[arg(short = 'r', long, value_name = "REV")]
    revision: Option<String>,
    /// Exit 1 when a proxy is not in sync (some type STALE or ERROR)
    #[arg(long)]
    check: bool,
    /// Poll until every proxy is in sync (exit 0) or --timeout passes (exit 1)
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 90s, 2m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2m", requires = "wait")]
    timeout: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl Args {
    fn options(&self) -> Options {
        Options {
            cluster: (&self.cluster).into(),
            pod: self.pod.clone(),
            container: self.proxy.container.clone(),
            admin_port: self.proxy.admin_port,
            admin_url: self.proxy.admin_url.clone(),
            files: self.file.clone(),
            istiod_file: self.istiod_file.clone(),
            proxy_file: self.proxy_file.clone(),
            istio_namespace: self.istio_namespace.clone(),
            revision: self.revision.clone(),
            render: self.output.render_options(),
            check: self.check,
            wait: self.wait.then_some(self.timeout),
            poll_interval: Duration::from_secs(2),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if let Some(code) = meshdebug::complete::intercept(meshdebug::complete::Plugin::MeshSync).await
    {
        return code;
    }
    let args = Args::parse();
    meshdebug::logging::init(args.output.verbose);
    meshdebug::exit::report(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let opts = args.options();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let status = tokio::select! {
        r = meshdebug::sync::run(&opts, &mut out, &mut err) => r?,
        _ = tokio::signal::ctrl_c() => return Err(meshdebug::Error::Interrupted.into()),
    };
    out.flush()?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_and_overrides() {
        let a = Args::try_parse_from(["x"]).unwrap();
        let o = a.options();
        assert!(o.pod.is_none() && o.files.is_empty() && o.wait.is_none() && !o.check);
        let a =
            Args::try_parse_from(["x", "-f", "a.json", "-f", "b.json", "-n", "shop", "--check"])
                .unwrap();
        assert_eq!(a.file.len(), 2);
        assert_eq!(a.options().cluster.namespace.as_deref(), Some("shop"));
        let a = Args::try_parse_from([
            "x",
            "--wait",
            "--timeout",
            "30s",
            "-i",
            "istio-system",
            "-r",
            "canary",
        ])
        .unwrap();
        let o = a.options();
        assert_eq!(o.wait, Some(Duration::from_secs(30)));
        assert_eq!(o.istio_namespace.as_deref(), Some("istio-system"));
        assert_eq!(o.revision.as_deref(), Some("canary"));
        assert_eq!(
            Args::try_parse_from(["x", "--wait"])
                .unwrap()
                .options()
                .wait,
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn conflicting_sources_are_usage_errors() {
        assert!(Args::try_parse_from(["x", "pod-1", "-f", "a.json"]).is_err());
        assert!(Args::try_parse_from(["x", "-f", "a.json", "--wait"]).is_err());
        assert!(Args::try_parse_from(["x", "--timeout", "1m"]).is_err());
        assert!(
            Args::try_parse_from(["x", "--proxy-file", "a", "--admin-url", "http://x:1"]).is_err()
        );
    }
}
