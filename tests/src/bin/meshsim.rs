//! `meshsim`: run a simulated cluster from a laptop shell.
//!
//! ```text
//! meshsim up --scenario seed [--kubeconfig-out PATH] [--ready-file F]
//! meshsim scenarios
//! ```
//! `up` prints `export KUBECONFIG=<path>` on stdout and a summary on stderr, then runs until
//! Ctrl-C or SIGTERM and stops every Envoy it started. The sidecars get their config over ADS
//! from the world's istiod (`--static`: in their bootstrap instead).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meshsim::scenario::Scenario;
use meshsim::sidecar::XdsMode;
use meshsim::{World, WorldOptions};

#[derive(Parser)]
#[command(
    name = "meshsim",
    version,
    about = "A simulated Istio mesh: fake kube-apiserver + real Envoy sidecars"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a world and keep it running until Ctrl-C / SIGTERM.
    Up {
        /// A built-in scenario name (see `meshsim scenarios`) or a scenario YAML file.
        #[arg(long, short, default_value = "seed")]
        scenario: String,
        /// Also copy the kubeconfig here.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Write this file (containing the kubeconfig path) once the world is ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Put the sidecars' listeners/clusters/routes/endpoints in their bootstrap instead of
        /// pushing them over ADS (faster start; istiod's syncz stays empty).
        #[arg(long, conflicts_with = "xds_files")]
        r#static: bool,
        /// Load the sidecars' resources as dynamic resources from files instead of ADS (about
        /// 20 inotify instances per Envoy).
        #[arg(long)]
        xds_files: bool,
    },
    /// List the built-in scenarios.
    Scenarios,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = match cli.command {
        Cmd::Up {
            scenario,
            kubeconfig_out,
            ready_file,
            r#static,
            xds_files,
        } => {
            let mode = if r#static {
                XdsMode::Static
            } else if xds_files {
                XdsMode::Files
            } else {
                XdsMode::Ads
            };
            rt.block_on(up(&scenario, kubeconfig_out, ready_file, mode))
        }
        Cmd::Scenarios => scenarios(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "meshsim: error: {e:#}");
    ExitCode::FAILURE
}

fn scenarios() -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (name, description) in Scenario::builtin() {
        writeln!(out, "{name:<10} {description}")?;
    }
    Ok(())
}

async fn up(
    scenario: &str,
    kubeconfig_out: Option<PathBuf>,
    ready_file: Option<PathBuf>,
    xds_mode: XdsMode,
) -> Result<()> {
    let started = std::time::Instant::now();
    let scenario = Scenario::load(scenario)?;
    let opts = WorldOptions {
        xds_mode,
        ..WorldOptions::default()
    };
    let world = World::start_with(scenario, opts).await?;
    let mut kubeconfig = world.kubeconfig().to_path_buf();
    if let Some(out) = &kubeconfig_out {
        std::fs::copy(world.kubeconfig(), out)
            .with_context(|| format!("writing {}", out.display()))?;
        kubeconfig = std::path::absolute(out)?;
    }
    {
        let mut err = std::io::stderr().lock();
        let s = world.scenario();
        writeln!(
            err,
            "meshsim: world {:?} up in {:.1?} ({} {})",
            s.name,
            started.elapsed(),
            s.istio.flavour,
            s.istio.version
        )?;
        writeln!(
            err,
            "  apiserver {}   temp dir {}",
            world.apiserver().url(),
            world.temp_dir().display()
        )?;
        let pods = world.pods();
        let envoys = pods.iter().filter(|p| p.admin.is_some()).count();
        writeln!(err, "  {} pods, {} with a real Envoy", pods.len(), envoys)?;
        for p in pods.iter().filter(|p| p.admin.is_some()).take(20) {
            let admin = p.admin.map(|a| a.to_string()).unwrap_or_default();
            let inbound = p
                .inbound
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into());
            let istiod = p.istiod.as_deref().unwrap_or("static config");
            writeln!(
                err,
                "    {}/{}  admin {admin}  inbound {inbound}  ({istiod})",
                p.namespace, p.name
            )?;
        }
        for r in world.control_plane().replicas() {
            if r.is_down() {
                writeln!(
                    err,
                    "  istiod {}/{} (rev {}): down",
                    r.namespace(),
                    r.pod(),
                    r.revision()
                )?;
                continue;
            }
            let ports = r.ports();
            let addr = |p: u16| ports.get(&p).map(|a| a.to_string()).unwrap_or_default();
            writeln!(
                err,
                "  istiod {}/{} (rev {}): xds {}  debug {}  ctrlz {}",
                r.namespace(),
                r.pod(),
                r.revision(),
                addr(15010),
                addr(15014),
                addr(9876)
            )?;
        }
        if let Some(j) = world.jwks() {
            writeln!(
                err,
                "  JWKS server {} (CA {:?}, not trusted by istiod)",
                j.jwks_uri(),
                meshsim::jwks_server::CA_NAME
            )?;
        }
        writeln!(err, "  Ctrl-C to stop")?;
    }
    writeln!(
        std::io::stdout(),
        "export KUBECONFIG={}",
        kubeconfig.display()
    )?;
    std::io::stdout().flush()?;
    if let Some(f) = &ready_file {
        std::fs::write(f, format!("{}\n", kubeconfig.display()))
            .with_context(|| format!("writing {}", f.display()))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = writeln!(std::io::stderr(), "meshsim: stopping");
    world.stop().await;
    if let Some(f) = &ready_file {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}
