//! `kubectl jwks-trust`: why istiod cannot fetch a JWT policy's jwksUri, which sidecars got a
//! placeholder key instead, and the two fixes (inline the keys, or give istiod the CA).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use meshdebug::ExitStatus;
use meshdebug::cli::{
    ClusterArgs, EXIT_CODES_HELP, InputArgs, OutputArgs, ProxyArgs, parse_duration,
};
use meshdebug::jwks::FetchOptions;
use meshdebug::jwks::command::{
    AddCaOptions, CaSource, CheckOptions, CommonOptions, InlineOptions, ProviderSource,
    RefreshOptions, RemoveCaOptions, TokenOptions,
};

const EXAMPLES: &str = "\
Examples:
  # every JWT rule in namespace olaf: can istiod fetch its keys? do the sidecars hold them?
  kubectl jwks-trust check -n olaf
  # fix 1: put the keys in the policy (TLS verified; --ca-file if the CA is private)
  kubectl jwks-trust inline jwt-olaf -n olaf --dry-run
  # fix 2: give istiod the CA of the JWKS server (restarts istiod)
  kubectl jwks-trust add-ca --from-url https://keycloak-olaf-sso.apps.example.com -i istio-system
  # why is this token rejected by that pod's sidecar?
  kubectl jwks-trust token \"$TOKEN\" --pod customer-6f8c9d7b5-x2x7k -n olaf";

const CHECK_HELP: &str = "\
Statuses: OK, INLINE (keys in the policy), INLINE (STALE), UNTRUSTED CA (the chain's issuer is
named), HOSTNAME MISMATCH, EXPIRED, NOT YET VALID, TLS ERROR, HTTP <code>, NOT A JWKS, TOO LARGE,
TOO MANY REDIRECTS, UNREACHABLE, TIMEOUT, BAD URI. The keys are fetched with the trust istiod has:
the system roots plus the extra.pem its Deployment mounts at /cacerts (plus --ca-file).
istiod's log lines about each URI, the sidecars holding a placeholder or stale keys, and the
commands that would fix each problem go to stderr after the table.

Examples:
  kubectl jwks-trust check -n olaf
  kubectl jwks-trust check -A -o json
  kubectl jwks-trust check -n olaf --ca-file olaf-root-ca.pem --no-proxies

Exit codes:
  0    every rule is fine
  1    a problem was found (a fetch failed, a sidecar holds a placeholder or stale keys)
  2    error (usage, cluster access), or some sidecars could not be read
  130  interrupted (Ctrl-C)";

const INLINE_HELP: &str = "\
Fetches the keys (TLS verified; there is no insecure switch: pass --ca-file, or --jwks-file with
keys you saved yourself), replaces jwksUri by jwks in the rule, and records the source URI and
the time in the annotations meshdebug.io/jwks-source and meshdebug.io/jwks-fetched-at, so that
`refresh` can update the keys after a rotation. Works on RequestAuthentication (v1, v1beta1)
and the legacy authentication.istio.io/v1alpha1 Policy (inline jwks needs Istio >= 1.3). A
plain NAME fixes every policy of that name (during a migration the RequestAuthentication and
the legacy Policy often share one); KIND/NAME picks one, as in the POLICY column of `check`.

Examples:
  kubectl jwks-trust inline jwt-olaf -n olaf --dry-run
  kubectl jwks-trust inline jwt-olaf -n olaf --ca-file olaf-root-ca.pem
  kubectl jwks-trust inline jwt-olaf -n olaf --jwks-file certs.json
  kubectl jwks-trust inline requestauthentication/jwt-olaf -n olaf --ca-file olaf-root-ca.pem

Exit codes:
  0    the policy was updated (or --dry-run printed the diff)
  2    error: policy not found, fetch failed, conflict, usage
  130  interrupted (Ctrl-C)";

const REFRESH_HELP: &str = "\
Re-fetches the keys of policies `inline` wrote (annotation meshdebug.io/jwks-source) and
updates only those whose keys changed.

Examples:
  kubectl jwks-trust refresh -n olaf
  kubectl jwks-trust refresh -A --dry-run

Exit codes:
  0    every policy is current (or was updated)
  2    error: a fetch or an update failed, usage
  130  interrupted (Ctrl-C)";

const ADD_CA_HELP: &str = "\
Shows the certificates (as openssl s_client -showcerts would), appends them to the bundle istiod
reads at /cacerts/extra.pem (Secret jwks-extra-cacerts, key extra.pem, created if needed; an
existing bundle mounted there is appended to, never replaced; certificates already present are
skipped) and mounts it in the discovery container of the istiod/istio-pilot Deployment. istiod
reads the bundle only at start: the patch restarts it. When an operator or Helm manages the
Deployment, the permanent setting is printed (pilot.jwksResolverExtraRootCA, or the SMCP field
spec.security.jwksResolverCA). Nothing is half-applied: the Deployment update is checked
(server-side dry run) before the bundle is written, and if the update still fails the
certificates just added are taken out again (and a Secret just created deleted).

Examples:
  kubectl jwks-trust add-ca --from-url https://keycloak-olaf-sso.apps.example.com --dry-run
  kubectl jwks-trust add-ca --cert olaf-root-ca.pem -i istio-system --yes

Exit codes:
  0    done (or nothing to do, or --dry-run)
  2    error: no istiod, cluster access, declined, no terminal and no --yes, usage
  130  interrupted (Ctrl-C)";

const REMOVE_CA_HELP: &str = "\
Undoes add-ca: removes the /cacerts volume and mount it added and deletes the Secret; with
--cert, removes only those certificates from the bundle (put back if istiod's Deployment cannot
then be updated to restart it). istiod restarts.

Examples:
  kubectl jwks-trust remove-ca --cert olaf-root-ca.pem --yes
  kubectl jwks-trust remove-ca --dry-run

Exit codes:
  0    done (or nothing to do, or --dry-run)
  2    error: no istiod, a bundle this command did not create, declined, usage
  130  interrupted (Ctrl-C)";

const TOKEN_HELP: &str = "\
Decodes the JWT (the signature is not checked and the token is never logged) and says why a
sidecar rejects it: issuer not configured, kid not among the keys the proxy holds (istiod's
placeholder, or stale keys after a rotation), expired, audience mismatch. The sidecar's
jwt_authn providers come from --pod (admin port-forward), --admin-url or -f (a saved
config_dump). TOKEN may be '-' to read it from stdin (keeps it out of the shell history).

Examples:
  kubectl jwks-trust token \"$TOKEN\" --pod customer-6f8c9d7b5-x2x7k -n olaf
  kubectl jwks-trust token - -f dump.json < token.txt

Exit codes:
  0    the sidecar would accept it (or it decodes and is not expired)
  1    rejected
  2    error: not a JWT, cluster or admin access, bad dump, usage
  130  interrupted (Ctrl-C)";

/// Diagnose and fix istiod failing to fetch a JWT policy's jwksUri
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-jwks-trust",
    bin_name = "kubectl jwks-trust",
    version,
    long_about = None,
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"),
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// The namespace of istiod (and Istio's root namespace); default: where the istiod/istio-pilot pods run, else istio-system
    #[arg(short = 'i', long, value_name = "NS", global = true)]
    istio_namespace: Option<String>,
    /// Timeout of each key fetch, e.g. 5s (istiod's default)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s", global = true)]
    fetch_timeout: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check every JWT rule: fetch its jwksUri with istiod's trust, look at the sidecars
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Fix 1: replace a rule's jwksUri by the keys themselves (jwks)
    #[command(after_help = INLINE_HELP)]
    Inline(InlineArgs),
    /// Re-fetch the keys of inlined policies and update those that changed
    #[command(after_help = REFRESH_HELP)]
    Refresh(RefreshArgs),
    /// Fix 2: give istiod a CA (Secret jwks-extra-cacerts mounted at /cacerts)
    #[command(after_help = ADD_CA_HELP)]
    AddCa(AddCaArgs),
    /// Undo add-ca
    #[command(after_help = REMOVE_CA_HELP)]
    RemoveCa(RemoveCaArgs),
    /// Decode a JWT and say why a sidecar rejects it
    #[command(after_help = TOKEN_HELP)]
    Token(TokenArgs),
}

#[derive(Debug, ClapArgs)]
struct CaFiles {
    /// More CAs to trust when fetching (PEM; repeatable)
    #[arg(long, value_name = "FILE")]
    ca_file: Vec<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct CheckArgs {
    #[command(flatten)]
    ca: CaFiles,
    /// Do not read the sidecars' config (no port-forward)
    #[arg(long)]
    no_proxies: bool,
    /// Do not read istiod's log
    #[arg(long)]
    no_logs: bool,
    /// Lines of istiod's log to read per pod
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(i64).range(1..))]
    log_lines: i64,
}

#[derive(Debug, ClapArgs)]
struct InlineArgs {
    /// NAME (every RequestAuthentication and legacy Policy of that name) or KIND/NAME (requestauthentication/NAME, policy/NAME)
    #[arg(value_name = "POLICY")]
    policy: String,
    #[command(flatten)]
    ca: CaFiles,
    /// Use these keys (a JWKS file) instead of fetching
    #[arg(long, value_name = "FILE", conflicts_with = "ca_file")]
    jwks_file: Option<PathBuf>,
    /// Only the rule of this issuer
    #[arg(long, value_name = "ISSUER")]
    issuer: Option<String>,
    /// Print the diff and change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct RefreshArgs {
    #[command(flatten)]
    ca: CaFiles,
    /// Print the diffs and change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["cert", "from_url"]))]
struct AddCaArgs {
    /// The CA certificate(s), PEM
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Capture the chain the server presents: https://HOST or https://HOST:PORT
    #[arg(long, value_name = "URL")]
    from_url: Option<String>,
    /// The istiod Deployment, when there are several (revisions)
    #[arg(long, value_name = "NAME")]
    deployment: Option<String>,
    /// Show the change and make none
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    yes: bool,
}

#[derive(Debug, ClapArgs)]
struct RemoveCaArgs {
    /// Remove only these certificates (PEM) from the bundle
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The istiod Deployment, when there are several (revisions)
    #[arg(long, value_name = "NAME")]
    deployment: Option<String>,
    /// Show the change and make none
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    yes: bool,
}

#[derive(ClapArgs)]
struct TokenArgs {
    /// The JWT ('-' = read it from stdin)
    #[arg(value_name = "TOKEN")]
    token: String,
    /// The pod whose sidecar judges it (NAME, pod/NAME, deploy/NAME)
    #[arg(long, value_name = "POD", conflicts_with_all = ["file", "admin_url"])]
    pod: Option<String>,
    #[command(flatten)]
    input: InputArgs,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A bearer token is a credential: never in debug output.
        f.debug_struct("TokenArgs")
            .field("token", &"<redacted>")
            .field("pod", &self.pod)
            .field("input", &self.input)
            .finish()
    }
}

impl Args {
    fn common(&self, ca: Option<&CaFiles>) -> CommonOptions {
        CommonOptions {
            cluster: (&self.cluster).into(),
            render: self.output.render_options(),
            istio_namespace: self.istio_namespace.clone(),
            fetch: FetchOptions {
                timeout: self.fetch_timeout,
                ..FetchOptions::default()
            },
            ca_files: ca.map(|c| c.ca_file.clone()).unwrap_or_default(),
            container: self.proxy.container.clone(),
            admin_port: self.proxy.admin_port,
        }
    }
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the token from stdin")?;
    Ok(s.trim().to_string())
}

fn now() -> i64 {
    meshdebug::jwks::command::now_unix()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if let Some(code) = meshdebug::complete::intercept(meshdebug::complete::Plugin::JwksTrust).await
    {
        return code;
    }
    let args = Args::parse();
    meshdebug::logging::init(args.output.verbose);
    meshdebug::exit::report(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let interactive = std::io::stdin().is_terminal();
    let fut = async {
        let status = match &args.cmd {
            Cmd::Check(a) => {
                let opts = CheckOptions {
                    common: args.common(Some(&a.ca)),
                    proxies: !a.no_proxies,
                    logs: !a.no_logs,
                    log_lines: a.log_lines,
                };
                meshdebug::jwks::command::check(&opts, &mut out, &mut err).await?
            }
            Cmd::Inline(a) => {
                let opts = InlineOptions {
                    common: args.common(Some(&a.ca)),
                    policy: a.policy.clone(),
                    issuer: a.issuer.clone(),
                    jwks_file: a.jwks_file.clone(),
                    dry_run: a.dry_run,
                };
                meshdebug::jwks::command::inline(&opts, &mut out, &mut err).await?
            }
            Cmd::Refresh(a) => {
                let opts = RefreshOptions {
                    common: args.common(Some(&a.ca)),
                    dry_run: a.dry_run,
                };
                meshdebug::jwks::command::refresh(&opts, &mut out, &mut err).await?
            }
            Cmd::AddCa(a) => {
                let source = match (&a.cert, &a.from_url) {
                    (Some(f), _) => CaSource::File(f.clone()),
                    (None, Some(u)) => CaSource::Url(u.clone()),
                    (None, None) => anyhow::bail!("pass --cert FILE or --from-url URL"),
                };
                let opts = AddCaOptions {
                    common: args.common(None),
                    source,
                    deployment: a.deployment.clone(),
                    dry_run: a.dry_run,
                    yes: a.yes,
                    interactive,
                };
                let mut input = std::io::stdin().lock();
                meshdebug::jwks::command::add_ca(&opts, &mut out, &mut err, &mut input).await?
            }
            Cmd::RemoveCa(a) => {
                let opts = RemoveCaOptions {
                    common: args.common(None),
                    cert: a.cert.clone(),
                    deployment: a.deployment.clone(),
                    dry_run: a.dry_run,
                    yes: a.yes,
                    interactive,
                };
                let mut input = std::io::stdin().lock();
                meshdebug::jwks::command::remove_ca(&opts, &mut out, &mut err, &mut input).await?
            }
            Cmd::Token(a) => {
                let source = match (&a.pod, &a.input.file, &args.proxy.admin_url) {
                    (Some(pod), _, _) => ProviderSource::Pod {
                        cluster: (&args.cluster).into(),
                        pod: pod.clone(),
                        container: args.proxy.container.clone(),
                        admin_port: args.proxy.admin_port,
                    },
                    (None, Some(f), _) => ProviderSource::File(f.clone()),
                    (None, None, Some(u)) => ProviderSource::AdminUrl(u.clone()),
                    (None, None, None) => ProviderSource::None,
                };
                let opts = TokenOptions {
                    token: read_token(&a.token)?,
                    source,
                    render: args.output.render_options(),
                    now: now(),
                    timeout: (!args.cluster.request_timeout.is_zero())
                        .then_some(args.cluster.request_timeout),
                };
                meshdebug::jwks::command::token(&opts, &mut out, &mut err).await?
            }
        };
        anyhow::Ok(status)
    };
    let status = tokio::select! {
        r = fut => r?,
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
        let a = Args::try_parse_from(["x", "check"]).unwrap();
        assert_eq!(a.istio_namespace, None);
        assert_eq!(a.fetch_timeout, Duration::from_secs(5));
        let Cmd::Check(c) = &a.cmd else { panic!() };
        assert!(!c.no_proxies && c.log_lines == 2000);
        let a = Args::try_parse_from([
            "x",
            "inline",
            "jwt-olaf",
            "-n",
            "olaf",
            "--dry-run",
            "--ca-file",
            "a.pem",
            "-i",
            "cp",
        ])
        .unwrap();
        assert_eq!(a.istio_namespace.as_deref(), Some("cp"));
        let Cmd::Inline(i) = &a.cmd else { panic!() };
        assert!(i.dry_run);
        assert_eq!(i.ca.ca_file, vec![PathBuf::from("a.pem")]);
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let a =
            Args::try_parse_from(["x", "token", "eyJhbGciOi.secret.sig", "--pod", "p"]).unwrap();
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn usage_errors() {
        assert!(
            Args::try_parse_from(["x", "add-ca"]).is_err(),
            "needs --cert or --from-url"
        );
        assert!(
            Args::try_parse_from(["x", "add-ca", "--cert", "a", "--from-url", "https://h"])
                .is_err()
        );
        assert!(
            Args::try_parse_from(["x", "inline", "p", "--jwks-file", "k", "--ca-file", "c"])
                .is_err()
        );
        assert!(Args::try_parse_from(["x", "token", "t", "--pod", "p", "-f", "d"]).is_err());
        assert!(Args::try_parse_from(["x", "check", "-n", "a", "-A"]).is_err());
        assert!(Args::try_parse_from(["x"]).is_err());
    }
}
