//! `kubectl envoy-log`: read and change Envoy logger levels on one or many sidecars, revert
//! safely; istiod's logging scopes too.

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use meshdebug::ExitStatus;
use meshdebug::cli::{ClusterArgs, EXIT_CODES_HELP, OutputArgs, ProxyArgs, parse_duration};
use meshdebug::cluster::ClusterOptions;
use meshdebug::fanout::DEFAULT_CONCURRENCY;
use meshdebug::loggers::plan::{looks_like_spec, parse_specs};
use meshdebug::loggers::{Change, Level, command, controlz, istiod};

const EXAMPLES: &str = "\
Examples:
  kubectl envoy-log customer-6f8c9d7b5-x2x7k                    # loggers and levels
  kubectl envoy-log customer-6f8c9d7b5-x2x7k rbac=debug jwt=trace
  kubectl envoy-log deploy/customer rbac=debug --for 5m         # put the old levels back after 5m
  kubectl envoy-log -l app=recommendation --level debug --follow --for 1m
  kubectl envoy-log customer-6f8c9d7b5-x2x7k rbac=debug --follow --only-changed
  kubectl envoy-log customer-6f8c9d7b5-x2x7k --reset            # back to the start level
  kubectl envoy-log --admin-url http://127.0.0.1:15000 http=debug
  kubectl envoy-log --istiod                                    # istiod scopes, every replica
  kubectl envoy-log --istiod ads=debug --revision canary";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-envoy-log",
    bin_name = "kubectl envoy-log",
    version,
    about = "Read and change Envoy logger levels on one or many sidecars, revert safely; istiod scopes too",
    long_about = None,
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}")
)]
struct Args {
    /// Pod as NAME, pod/NAME or deploy/NAME (or use -l / -A); with --istiod an istiod pod
    #[arg(value_name = "TARGET")]
    target: Option<String>,
    /// Loggers to set, e.g. rbac=debug jwt:trace (with --istiod: scopes, e.g. ads=debug)
    #[arg(value_name = "LOGGER=LEVEL")]
    specs: Vec<String>,
    /// Set every logger: trace, debug, info, warning (warn), error, critical, off
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    level: Option<Level>,
    /// Set every logger back to the level the pod was started with (its --proxyLogLevel and
    /// --proxyComponentLogLevel args, else the sidecar.istio.io/logLevel annotation, else warning;
    /// with --admin-url: warning)
    #[arg(long, conflicts_with = "level")]
    reset: bool,
    /// Put each logger's previous level back after DURATION (e.g. 30s, 5m); Ctrl-C restores at once
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    restore_after: Option<Duration>,
    /// After the change, stream the sidecar's log until Ctrl-C (or until --for is up)
    #[arg(long, conflicts_with = "admin_url")]
    follow: bool,
    /// With --follow: only the log lines of the loggers that were set
    #[arg(long, requires = "follow")]
    only_changed: bool,
    /// How many pods to work on at once
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    max_concurrency: usize,
    /// Work on istiod's logging scopes (ControlZ) on every replica, instead of Envoy loggers
    #[arg(long, conflicts_with_all = ["level", "reset", "restore_after", "follow"])]
    istiod: bool,
    /// With --istiod: istiod's namespace (default: wherever istiod pods are found)
    #[arg(short = 'i', long, value_name = "NS", requires = "istiod")]
    istio_namespace: Option<String>,
    /// With --istiod: only replicas of this revision (label istio.io/rev)
    #[arg(long, value_name = "REV", requires = "istiod")]
    revision: Option<String>,
    /// With --istiod: the ControlZ port
    #[arg(long, value_name = "PORT", default_value_t = controlz::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    ctrlz_port: u16,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse()
        .map_err(|e: meshdebug::loggers::Error| e.to_string())
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a number of at least 1")),
    }
}

/// What to do, after the positionals are sorted into TARGET and specs.
#[derive(Debug)]
enum Mode {
    Envoy(command::Options),
    Istiod(istiod::Options),
}

impl Args {
    /// A positional `rbac=debug` in TARGET's place (with -l, -A or --admin-url) is a spec.
    fn split_positionals(&self) -> (Option<String>, Vec<String>) {
        let mut specs = self.specs.clone();
        let target = match &self.target {
            Some(t) if looks_like_spec(t) => {
                specs.insert(0, t.clone());
                None
            }
            t => t.clone(),
        };
        (target, specs)
    }

    fn usage(msg: impl std::fmt::Display) -> clap::Error {
        Args::command().error(clap::error::ErrorKind::ArgumentConflict, msg)
    }

    fn mode(&self) -> Result<Mode, clap::Error> {
        let (target, specs) = self.split_positionals();
        if let Some(s) = specs.iter().find(|s| !looks_like_spec(s)) {
            return Err(Self::usage(format!(
                "{s:?} is not LOGGER=LEVEL (only one TARGET may be given)"
            )));
        }
        if target.is_some() && self.proxy.admin_url.is_some() {
            return Err(Self::usage("TARGET cannot be combined with --admin-url"));
        }
        let cluster = ClusterOptions::from(&self.cluster);
        let render = self.output.render_options();
        if self.istiod {
            let specs = controlz::parse_specs(&specs).map_err(Self::usage)?;
            return Ok(Mode::Istiod(istiod::Options {
                cluster,
                istio_namespace: self.istio_namespace.clone(),
                revision: self.revision.clone(),
                target,
                admin_url: self.proxy.admin_url.clone(),
                port: self.ctrlz_port,
                specs,
                concurrency: self.max_concurrency,
                render,
            }));
        }
        if self.reset && !specs.is_empty() {
            return Err(Self::usage("--reset cannot be combined with LOGGER=LEVEL"));
        }
        let loggers = parse_specs(&specs).map_err(|e| {
            let hint = meshdebug::Hint::hint(&e)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            Self::usage(format!("{e}{hint}"))
        })?;
        let change = if self.reset {
            Some(Change::Reset)
        } else if self.level.is_some() || !loggers.is_empty() {
            Some(Change::Set {
                all: self.level,
                loggers,
            })
        } else {
            None
        };
        if change.is_none() && self.restore_after.is_some() {
            return Err(Self::usage(
                "--for needs a change: LOGGER=LEVEL, --level or --reset",
            ));
        }
        Ok(Mode::Envoy(command::Options {
            cluster,
            target,
            container: self.proxy.container.clone(),
            admin_port: self.proxy.admin_port,
            admin_url: self.proxy.admin_url.clone(),
            change,
            restore_after: self.restore_after,
            follow: self.follow,
            only_changed: self.only_changed,
            concurrency: self.max_concurrency,
            render,
            tty: std::io::stderr().is_terminal(),
        }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(code) = meshdebug::complete::intercept(meshdebug::complete::Plugin::EnvoyLog).await
    {
        return code;
    }
    let args = Args::parse();
    meshdebug::logging::init(args.output.verbose);
    let mode = match args.mode() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(ExitStatus::Error.code());
        }
    };
    meshdebug::exit::report(run(mode).await)
}

async fn run(mode: Mode) -> anyhow::Result<ExitStatus> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let status = match &mode {
        Mode::Envoy(o) => command::run(o, &mut out, &mut err).await?,
        Mode::Istiod(o) => istiod::run(o, &mut out, &mut err).await?,
    };
    out.flush()?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str]) -> Result<Mode, clap::Error> {
        let mut v = vec!["kubectl-envoy-log"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)?.mode()
    }

    fn envoy(args: &[&str]) -> command::Options {
        match mode(args).unwrap() {
            Mode::Envoy(o) => o,
            Mode::Istiod(_) => panic!("not envoy mode"),
        }
    }

    #[test]
    fn clap_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let o = envoy(&["pod-1"]);
        assert_eq!(o.target.as_deref(), Some("pod-1"));
        assert_eq!(o.change, None);
        assert_eq!(o.concurrency, 16);
        assert!(!o.follow && o.restore_after.is_none());
    }

    #[test]
    fn specs_in_target_position_with_a_selector() {
        let o = envoy(&["-l", "app=x", "rbac=debug", "jwt:warn"]);
        assert_eq!(o.target, None);
        let Some(Change::Set { all: None, loggers }) = o.change else {
            panic!("expected a set")
        };
        assert_eq!(loggers.get("rbac"), Some(&Level::Debug));
        assert_eq!(loggers.get("jwt"), Some(&Level::Warning));
    }

    #[test]
    fn level_reset_for() {
        let o = envoy(&["p", "--level", "warn", "--for", "5m"]);
        assert_eq!(o.change, Some(Change::all(Level::Warning)));
        assert_eq!(o.restore_after, Some(Duration::from_secs(300)));
        assert_eq!(envoy(&["p", "--reset"]).change, Some(Change::Reset));
    }

    #[test]
    fn usage_errors() {
        use clap::error::ErrorKind;
        let kind = |a: &[&str]| mode(a).err().map(|e| e.kind());
        assert_eq!(
            kind(&["p", "--reset", "--level", "debug"]),
            Some(ErrorKind::ArgumentConflict)
        );
        assert!(kind(&["p", "--reset", "rbac=debug"]).is_some());
        assert!(kind(&["p", "--level", "loud"]).is_some());
        assert!(kind(&["p", "rbac"]).is_some());
        assert!(kind(&["p", "rbac=loud"]).is_some());
        assert!(kind(&["p", "--for", "5m"]).is_some());
        assert!(kind(&["p", "--for", "5x", "rbac=debug"]).is_some());
        assert!(kind(&["p", "--only-changed", "rbac=debug"]).is_some());
        assert!(kind(&["--admin-url", "http://x:1", "--follow", "rbac=debug"]).is_some());
        assert!(kind(&["--admin-url", "http://x:1", "pod", "rbac=debug"]).is_some());
        assert!(kind(&["--istiod", "--level", "debug"]).is_some());
        assert!(kind(&["-i", "istio-system"]).is_some());
        assert!(kind(&["p", "--max-concurrency", "0"]).is_some());
    }

    #[test]
    fn istiod_mode() {
        let Mode::Istiod(o) = mode(&["--istiod", "ads=debug", "-i", "istio-system"]).unwrap()
        else {
            panic!("expected istiod mode")
        };
        assert_eq!(o.target, None);
        assert_eq!(o.istio_namespace.as_deref(), Some("istio-system"));
        assert_eq!(o.port, 9876);
        assert_eq!(o.specs.get("ads"), Some(&controlz::ScopeLevel::Debug));
        let Mode::Istiod(o) = mode(&["--istiod", "istiod-1"]).unwrap() else {
            panic!("expected istiod mode")
        };
        assert_eq!(o.target.as_deref(), Some("istiod-1"));
        assert!(o.specs.is_empty());
    }
}
