//! `meshsim-gen`: large generated inputs for benchmarks.
//!
//! ```text
//! meshsim-gen dump --services 10000 -o dump.json     # a sidecar's /config_dump?include_eds
//! meshsim-gen dump --size 100MB -o dump.json         # as many services as make ~100 MB
//! meshsim-gen syncz --proxies 10000 --replicas 3 --form http --out-dir DIR
//! ```
//! `syncz` writes one file per istiod replica: `<istiod pod>.syncz.json` (HTTP `/debug/syncz`
//! array; the file name names the replica) or `<istiod pod>.xds.json` (xDS DiscoveryResponse).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use meshsim::r#gen::MeshSpec;
use meshsim::r#gen::dump::{services_for_size, write_config_dump};
use meshsim::r#gen::syncz::{SynczForm, SynczSpec, write_syncz};

#[derive(Parser)]
#[command(
    name = "meshsim-gen",
    version,
    about = "Generate Istio-like config dumps and syncz answers of a given size"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A sidecar's /config_dump?include_eds for a mesh of N services.
    Dump {
        /// Services in the mesh (each: 1 + subsets clusters, endpoints, a virtual host or a TCP
        /// listener).
        #[arg(long, conflicts_with = "size", required_unless_present = "size")]
        services: Option<usize>,
        /// Approximate file size instead, e.g. 10MB, 300MB, 1GB.
        #[arg(long)]
        size: Option<String>,
        /// Subsets of each service that has a DestinationRule (every second one).
        #[arg(long, default_value_t = 2)]
        subsets: usize,
        /// Endpoints per service.
        #[arg(long, default_value_t = 3)]
        endpoints: usize,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// istiod's syncz answers about N proxies across R replicas, one file per replica.
    Syncz {
        #[arg(long)]
        proxies: usize,
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        #[arg(long, value_enum, default_value_t = Form::Http)]
        form: Form,
        /// Directory for the files (created).
        #[arg(long)]
        out_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Form {
    /// HTTP /debug/syncz array.
    Http,
    /// xDS istio.io/debug/syncz DiscoveryResponse.
    Xds,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "meshsim-gen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Dump {
            services,
            size,
            subsets,
            endpoints,
            output,
        } => {
            let services = match (services, size) {
                (Some(n), _) => n,
                (None, Some(s)) => services_for_size(parse_size(&s)?)?,
                (None, None) => bail!("give --services or --size"),
            };
            let spec = MeshSpec {
                subsets,
                endpoints,
                ..MeshSpec::new(services)
            };
            let bytes = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                    write_config_dump(&spec, &mut w)?
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    write_config_dump(&spec, &mut w)?
                }
            };
            let _ = writeln!(
                std::io::stderr(),
                "meshsim-gen: {services} services, {bytes} bytes"
            );
        }
        Cmd::Syncz {
            proxies,
            replicas,
            form,
            out_dir,
        } => {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let spec = SynczSpec { proxies, replicas };
            let (form, ext) = match form {
                Form::Http => (SynczForm::Http, "syncz.json"),
                Form::Xds => (SynczForm::Xds, "xds.json"),
            };
            for r in 0..replicas.max(1) {
                let path = out_dir.join(format!("{}.{ext}", spec.istiod(r)));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut w = std::io::BufWriter::new(file);
                write_syncz(&spec, r, form, &mut w)?;
                w.flush()?;
                let _ = writeln!(std::io::stderr(), "meshsim-gen: wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// `300MB`, `1.5GB`, `64KB`, `1000` (bytes); decimal units.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = [("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)]
        .iter()
        .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim().to_owned(), *m)))
        .unwrap_or((t.clone(), 1.0));
    let n: f64 = num.parse().with_context(|| format!("not a size: {s}"))?;
    Ok((n * mult) as u64)
}
