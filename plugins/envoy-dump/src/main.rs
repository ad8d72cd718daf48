//! `kubectl envoy-dump`: a sidecar's Envoy config, raw or as istioctl-grade tables, plus what no
//! tool shows (JWT keys, RBAC). Parses flags, calls `meshdebug::dump`, exits.

mod args;

use std::io::Write;
use std::process::ExitCode;

use meshdebug::ExitStatus;

use crate::args::{Args, Invocation, parse_from};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(code) = meshdebug::complete::intercept(meshdebug::complete::Plugin::EnvoyDump).await
    {
        return code;
    }
    let args = match parse_from(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    meshdebug::logging::init(args.output.verbose);
    meshdebug::exit::report(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let invocation = args.into_invocation()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let status = match &invocation {
        Invocation::View(opts) => meshdebug::dump::run(opts, &mut out, &mut err).await?,
        Invocation::Diff(opts) => meshdebug::dump::diff::run(opts, &mut out, &mut err).await?,
    };
    out.flush()?;
    Ok(status)
}
