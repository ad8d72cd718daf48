//! `meshsim-bench`: the driver of `make bench` (see `docs/benchmarks.md`).
//!
//! Generates the inputs under `--cache` (config dumps of 10/100/300 MB, syncz answers of 10k
//! proxies over 3 replicas), then runs each command several times as a whole process and
//! prints the median wall time and peak RSS (GNU `time -f %M`) of each next to its references
//! measured in the same run: the floor (`meshsim-floor`: read + serde_json into `IgnoredAny`)
//! and `jq` computing the same cluster table. With the world (default), it also starts the
//! `tests/bench/mesh50.yaml` mesh (50 real Envoys) for `envoy-log -l` and the raw dump through
//! a port-forward: from a file server standing in for a 100 MB+ admin endpoint, and from a real
//! Envoy holding a generated mesh pushed over ADS.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use meshsim::apiserver::PodBackend;
use meshsim::r#gen::MeshSpec;
use meshsim::r#gen::dump::{services_for_size, write_config_dump};
use meshsim::r#gen::envoy::LoadedEnvoy;
use meshsim::r#gen::syncz::{SynczForm, SynczSpec, write_syncz};
use meshsim::scenario::Scenario;
use meshsim::sidecar::XdsMode;
use meshsim::{World, WorldOptions};

/// Bumped when the generator's output changes, so cached inputs are made again.
const GEN_VERSION: u32 = 1;
const MB: f64 = 1e6;

#[derive(Parser)]
#[command(
    name = "meshsim-bench",
    about = "Whole-process benchmarks of the plugins"
)]
struct Args {
    /// Where the plugins and meshsim-floor are (release builds).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Generated inputs and outputs.
    #[arg(long, default_value = ".cache/bench")]
    cache: PathBuf,
    /// Runs per command (the median is shown).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Dump sizes in MB.
    #[arg(long, value_delimiter = ',', default_value = "10,100,300")]
    sizes: Vec<u64>,
    /// The size (MB) the speed goals are checked at.
    #[arg(long, default_value_t = 100)]
    goal_size: u64,
    #[arg(long, default_value = "jq")]
    jq: String,
    /// GNU time.
    #[arg(long, default_value = "/usr/bin/time")]
    time: String,
    /// Proxies (across --replicas istiods) for mesh-sync -f.
    #[arg(long, default_value_t = 10_000)]
    proxies: usize,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Services of the mesh loaded into a real Envoy for the raw dump (0: skip).
    #[arg(long, default_value_t = 10_000)]
    envoy_services: usize,
    /// Skip everything that needs the world (envoy-log, raw dumps through port-forward).
    #[arg(long)]
    skip_world: bool,
    /// Run only these parts (default: all): tables, sync, help, world.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the report (markdown) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "meshsim-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// What to run.
#[derive(Clone)]
struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    /// stdout goes here (else /dev/null).
    stdout: Option<PathBuf>,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Cmd {
        Cmd {
            program: program.into(),
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            stdout: None,
        }
    }

    fn to(mut self, path: PathBuf) -> Cmd {
        self.stdout = Some(path);
        self
    }

    fn describe(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!("{name} {}", args.join(" "))
    }
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    wall: Duration,
    /// User + system time.
    cpu: Duration,
    rss_kb: u64,
}

impl Stat {
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
    fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 * 1024.0 / MB
    }
}

struct Bench<'a> {
    args: &'a Args,
    rss_file: PathBuf,
}

impl Bench<'_> {
    fn command(&self, cmd: &Cmd, wrapped: bool) -> Command {
        let mut c = if wrapped {
            let mut c = Command::new(&self.args.time);
            c.arg("-f").arg("%U %S %M").arg("-o").arg(&self.rss_file);
            c.arg(&cmd.program);
            c
        } else {
            Command::new(&cmd.program)
        };
        c.args(&cmd.args);
        for v in ["KUBECONFIG", "NO_COLOR", "RUST_LOG", "CLICOLOR_FORCE"] {
            c.env_remove(v);
        }
        c.stdin(Stdio::null()).stderr(Stdio::piped());
        match &cmd.stdout {
            Some(p) => match std::fs::File::create(p) {
                Ok(f) => c.stdout(f),
                Err(_) => c.stdout(Stdio::null()),
            },
            None => c.stdout(Stdio::null()),
        };
        c
    }

    /// One run: wall time, and the CPU time and peak RSS (KB) when wrapped in GNU time.
    fn once(&self, cmd: &Cmd, wrapped: bool) -> Result<(Duration, Option<(Duration, u64)>)> {
        let _ = std::fs::remove_file(&self.rss_file);
        let mut c = self.command(cmd, wrapped);
        let start = Instant::now();
        let out = c
            .output()
            .with_context(|| format!("running {}", cmd.describe()))?;
        let wall = start.elapsed();
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}",
                cmd.describe(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let usage = if wrapped {
            let text = std::fs::read_to_string(&self.rss_file).context("reading time's output")?;
            let last = text.lines().next_back().unwrap_or_default();
            let f: Vec<&str> = last.split_whitespace().collect();
            let (Some(user), Some(sys), Some(rss)) = (
                f.first().and_then(|x| x.parse::<f64>().ok()),
                f.get(1).and_then(|x| x.parse::<f64>().ok()),
                f.get(2).and_then(|x| x.parse::<u64>().ok()),
            ) else {
                bail!("unexpected output of time: {text:?}");
            };
            Some((Duration::from_secs_f64(user + sys), rss))
        } else {
            None
        };
        Ok((wall, usage))
    }

    /// Median wall time and median peak RSS over `runs`. Fast commands (< 0.5 s) are timed
    /// without the GNU time wrapper (its fork and exec would count), and wrapped separately for
    /// their RSS.
    fn measure(&self, label: &str, cmd: &Cmd, runs: usize) -> Result<Stat> {
        Ok(self.measure_all(&[(label, cmd, runs)])?[0])
    }

    /// [`Bench::measure`] for several commands, run in turns (one run of each, then the next
    /// round) so that a change in the machine's load affects them alike.
    fn measure_all(&self, cmds: &[(&str, &Cmd, usize)]) -> Result<Vec<Stat>> {
        #[derive(Default)]
        struct Samples {
            walls: Vec<Duration>,
            cpus: Vec<Duration>,
            rss: Vec<u64>,
            fast: bool,
        }
        let mut samples: Vec<Samples> = cmds.iter().map(|_| Samples::default()).collect();
        let rounds = cmds.iter().map(|c| c.2.max(1)).max().unwrap_or(1);
        for round in 0..rounds {
            for ((_, cmd, runs), s) in cmds.iter().zip(&mut samples) {
                if round >= (*runs).max(1) {
                    continue;
                }
                let (w, u) = self.once(cmd, true)?;
                s.cpus.extend(u.map(|u| u.0));
                s.rss.extend(u.map(|u| u.1));
                if round == 0 {
                    s.fast = w < Duration::from_millis(500);
                }
                if s.fast {
                    // Timed without the wrapper (the first unwrapped run warms up).
                    let extra = if round == 0 { 2 } else { 1 };
                    let mut last = Duration::ZERO;
                    for _ in 0..extra {
                        last = self.once(cmd, false)?.0;
                    }
                    s.walls.push(last);
                } else {
                    s.walls.push(w);
                }
            }
        }
        let mut out = Vec::new();
        for ((label, _, _), mut s) in cmds.iter().zip(samples) {
            let stat = Stat {
                wall: median(&mut s.walls),
                cpu: median(&mut s.cpus),
                rss_kb: median(&mut s.rss),
            };
            let _ = writeln!(
                std::io::stderr(),
                "  {label:<52} {:>9} (cpu {:>9})  {:>8.1} MB",
                fmt_secs(stat.secs()),
                fmt_cpu(stat.cpu),
                stat.rss_mb()
            );
            out.push(stat);
        }
        Ok(out)
    }
}

/// CPU time spent per run of a command, by who spent it.
struct CpuSplit {
    runs: usize,
    /// The plugin process.
    plugin: Duration,
    /// This process: the world's apiserver and istiod stand-in (and the bench's own waiting).
    apiserver: Duration,
    /// Every `envoy` process.
    envoys: Duration,
}

/// Run `cmd` `runs` times (unwrapped) and split the CPU time the machine spent on it, from
/// `/proc/<pid>/stat` (utime + stime; the plugin's as this process's waited-for children).
fn cpu_split(bench: &Bench<'_>, cmd: &Cmd, runs: usize) -> Result<CpuSplit> {
    let tick = clock_tick()?;
    let envoys = || -> u64 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        dir.flatten()
            .filter_map(|e| proc_stat(&e.path().join("stat")))
            .filter(|st| st.comm == "envoy")
            .map(|st| st.own)
            .sum()
    };
    let me = || proc_stat(Path::new("/proc/self/stat")).context("reading /proc/self/stat");
    let (before, envoy_before) = (me()?, envoys());
    for _ in 0..runs {
        bench.once(cmd, false)?;
    }
    let (after, envoy_after) = (me()?, envoys());
    let per_run = |ticks: u64| tick.mul_f64(ticks as f64 / runs as f64);
    Ok(CpuSplit {
        runs,
        plugin: per_run(after.children - before.children),
        apiserver: per_run(after.own - before.own),
        envoys: per_run(envoy_after.saturating_sub(envoy_before)),
    })
}

struct ProcStat {
    comm: String,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime, in clock ticks.
    children: u64,
}

/// `/proc/<pid>/stat`: the command name and CPU times.
fn proc_stat(path: &Path) -> Option<ProcStat> {
    let text = std::fs::read_to_string(path).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    // Fields after the name, from field 3 (state): utime is field 14, cstime field 17.
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Some(ProcStat {
        comm,
        own: f.first()? + f.get(1)?,
        children: f.get(2)? + f.get(3)?,
    })
}

/// The length of one clock tick of `/proc/<pid>/stat` (`getconf CLK_TCK`).
fn clock_tick() -> Result<Duration> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    let hz: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")?;
    Ok(Duration::from_secs(1) / hz.max(1))
}

fn median<T: Ord + Copy + Default>(v: &mut [T]) -> T {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// CPU time as GNU time reports it (10 ms steps).
fn fmt_cpu(d: Duration) -> String {
    if d.is_zero() {
        "< 10 ms".into()
    } else {
        fmt_secs(d.as_secs_f64())
    }
}

fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

fn dump_file(cache: &Path, size_mb: u64) -> Result<(PathBuf, u64)> {
    let path = cache.join(format!("dump-{size_mb}MB.json"));
    let stamp = cache.join(format!("dump-{size_mb}MB.stamp"));
    let want = format!("gen v{GEN_VERSION}\n");
    if path.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok((path.clone(), std::fs::metadata(&path)?.len()));
    }
    let started = Instant::now();
    let services = services_for_size(size_mb * 1_000_000)?;
    let file = std::fs::File::create(&path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let bytes = write_config_dump(&MeshSpec::new(services), &mut w)?;
    w.flush()?;
    std::fs::write(&stamp, want)?;
    let _ = writeln!(
        std::io::stderr(),
        "  generated {} ({services} services, {bytes} bytes) in {:.1?}",
        path.display(),
        started.elapsed()
    );
    Ok((path, bytes))
}

fn syncz_files(cache: &Path, spec: &SynczSpec, form: SynczForm) -> Result<Vec<PathBuf>> {
    let (dir, ext) = match form {
        SynczForm::Http => ("syncz-http", "syncz.json"),
        SynczForm::Xds => ("syncz-xds", "xds.json"),
    };
    let dir = cache.join(format!(
        "{dir}-{}x{}-v{GEN_VERSION}",
        spec.proxies, spec.replicas
    ));
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for r in 0..spec.replicas.max(1) {
        let path = dir.join(format!("{}.{ext}", spec.istiod(r)));
        if !path.is_file() {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            write_syncz(spec, r, form, &mut w)?;
            w.flush()?;
        }
        files.push(path);
    }
    Ok(files)
}

/// The cluster table with jq: the same rows as `envoy-dump clusters`, sorted.
const JQ_CLUSTERS: &str = r#"[.configs[] | select(."@type" | endswith(".ClustersConfigDump"))
 | ((.dynamic_active_clusters // []) + (.static_clusters // [])) | .[] | .cluster
 | (.name | split("|")) as $p
 | (if ($p | length) == 4 then [$p[3], $p[1], $p[2], $p[0]] else [.name, "-", "-", "-"] end)
   + [(.type // "STATIC"),
      ((.metadata.filter_metadata.istio.config // "") | split("/")
        | if length == 8 then "\(.[7]).\(.[5])" else "" end)]]
 | sort | .[] | @tsv"#;

// ---------------------------------------------------------------------------------------------
// The report

struct Row {
    size: String,
    command: String,
    stat: Stat,
    vs_floor: Option<f64>,
    jq_over: Option<f64>,
    rss_over_file: Option<f64>,
}

struct Goal {
    what: String,
    measured: String,
    reference: String,
    goal: String,
    met: bool,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    goals: Vec<Goal>,
    notes: Vec<String>,
}

impl Report {
    fn goal(&mut self, what: &str, measured: String, reference: String, goal: &str, met: bool) {
        self.goals.push(Goal {
            what: what.into(),
            measured,
            reference,
            goal: goal.into(),
            met,
        });
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| input | command | wall (median) | CPU (median) | peak RSS | wall ÷ floor | jq ÷ wall | RSS ÷ file |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
        let opt = |v: Option<f64>, suffix: &str| {
            v.map(|x| format!("{x:.2}{suffix}"))
                .unwrap_or_else(|| "".into())
        };
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} MB | {} | {} | {} |",
                r.size,
                r.command,
                fmt_secs(r.stat.secs()),
                fmt_cpu(r.stat.cpu),
                r.stat.rss_mb(),
                opt(r.vs_floor, "×"),
                opt(r.jq_over, "×"),
                opt(r.rss_over_file, "×"),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "| goal | measured | reference | target | |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for g in &self.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                g.what,
                g.measured,
                g.reference,
                g.goal,
                if g.met { "met" } else { "**missed**" }
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "\n{n}");
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmarks

fn run(args: &Args) -> Result<()> {
    std::fs::create_dir_all(&args.cache)?;
    let cache = std::path::absolute(&args.cache)?;
    let bin = |name: &str| -> Result<PathBuf> {
        let p = std::path::absolute(args.bin_dir.join(name))?;
        if !p.is_file() {
            bail!(
                "{} not found: build it first (cargo build --release ...)",
                p.display()
            );
        }
        Ok(p)
    };
    let (dump, log, sync, floor) = (
        bin("kubectl-envoy-dump")?,
        bin("kubectl-envoy-log")?,
        bin("kubectl-mesh-sync")?,
        bin("meshsim-floor")?,
    );
    let bench = Bench {
        args,
        rss_file: cache.join("time.out"),
    };
    let mut report = Report::default();
    let load_before = load_average();
    let _ = writeln!(
        std::io::stderr(),
        "meshsim-bench: inputs in {}",
        cache.display()
    );

    let part = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);

    // 1. Table views of large dumps against the floor and jq.
    let sizes: &[u64] = if part("tables") { &args.sizes } else { &[] };
    for &size in sizes {
        let (file, bytes) = dump_file(&cache, size)?;
        let label = format!("{size} MB");
        let _ = writeln!(
            std::io::stderr(),
            "dump {label} ({bytes} bytes, {} runs each):",
            args.runs
        );
        let jq_runs = if size >= 300 {
            args.runs.min(3)
        } else {
            args.runs
        };
        let jq_out = cache.join("jq.out");
        const VIEWS: [&str; 3] = ["clusters", "listeners", "routes"];
        let floor_cmd = Cmd::new(&floor, &[&file]);
        let jq_cmd = Cmd::new(&args.jq, &[&"-r", &JQ_CLUSTERS, &file]).to(jq_out.clone());
        let view_cmds: Vec<(String, Cmd)> = VIEWS
            .iter()
            .map(|view| {
                let cmd =
                    Cmd::new(&dump, &[view, &"-f", &file]).to(cache.join(format!("{view}.out")));
                (format!("envoy-dump {view} -f"), cmd)
            })
            .collect();
        let mut cmds: Vec<(&str, &Cmd, usize)> = vec![
            ("floor", &floor_cmd, args.runs),
            ("jq (cluster table)", &jq_cmd, jq_runs),
        ];
        cmds.extend(view_cmds.iter().map(|(l, c)| (l.as_str(), c, args.runs)));
        let stats = bench.measure_all(&cmds)?;
        let (floor_stat, jq_stat) = (stats[0], stats[1]);
        report.rows.push(Row {
            size: label.clone(),
            command: "floor: read + serde_json `IgnoredAny`".into(),
            stat: floor_stat,
            vs_floor: None,
            jq_over: None,
            rss_over_file: Some(floor_stat.rss_kb as f64 * 1024.0 / bytes as f64),
        });
        report.rows.push(Row {
            size: label.clone(),
            command: "jq: cluster table".into(),
            stat: jq_stat,
            vs_floor: Some(jq_stat.secs() / floor_stat.secs()),
            jq_over: None,
            rss_over_file: Some(jq_stat.rss_kb as f64 * 1024.0 / bytes as f64),
        });
        for (view, stat) in VIEWS.into_iter().zip(stats[2..].iter().copied()) {
            let out = cache.join(format!("{view}.out"));
            if view == "clusters" {
                let rows = count_lines(&out)?.saturating_sub(1);
                let jq_rows = count_lines(&jq_out)?;
                if rows != jq_rows {
                    report.notes.push(format!(
                        "Warning: at {label}, envoy-dump clusters printed {rows} rows and jq {jq_rows}."
                    ));
                }
            }
            let row = Row {
                size: label.clone(),
                command: format!("`envoy-dump {view} -f`"),
                stat,
                vs_floor: Some(stat.secs() / floor_stat.secs()),
                jq_over: Some(jq_stat.secs() / stat.secs()),
                rss_over_file: Some(stat.rss_kb as f64 * 1024.0 / bytes as f64),
            };
            let rss_ok = row.rss_over_file.is_some_and(|x| x <= 1.5);
            if size == args.goal_size {
                let (f, j) = (row.vs_floor.unwrap_or(0.0), row.jq_over.unwrap_or(0.0));
                report.goal(
                    &format!("`envoy-dump {view} -f`, {label}: speed"),
                    format!(
                        "{} ({f:.2}× floor, {j:.1}× faster than jq)",
                        fmt_secs(stat.secs())
                    ),
                    format!(
                        "floor {}, jq {}",
                        fmt_secs(floor_stat.secs()),
                        fmt_secs(jq_stat.secs())
                    ),
                    "≤ 2.0× floor, ≥ 5× faster than jq",
                    f <= 2.0 && j >= 5.0,
                );
            }
            // The process itself takes ~6 MB: the ratio means something for large files.
            if size >= args.goal_size {
                report.goal(
                    &format!("`envoy-dump {view} -f`, {label}: peak RSS"),
                    format!(
                        "{:.1} MB ({:.2}× file)",
                        stat.rss_mb(),
                        row.rss_over_file.unwrap_or(0.0)
                    ),
                    format!("file {:.1} MB", bytes as f64 / MB),
                    "≤ 1.5× file",
                    rss_ok,
                );
            }
            report.rows.push(row);
        }
    }

    // 2. mesh-sync -f with N proxies across R replicas, both forms.
    let spec = SynczSpec {
        proxies: args.proxies,
        replicas: args.replicas,
    };
    if part("sync") {
        let _ = writeln!(
            std::io::stderr(),
            "mesh-sync -f, {} proxies over {} istiods:",
            spec.proxies,
            spec.replicas
        );
    }
    let forms: &[(SynczForm, &str)] = if part("sync") {
        &[
            (SynczForm::Http, "HTTP /debug/syncz"),
            (SynczForm::Xds, "xDS"),
        ]
    } else {
        &[]
    };
    for &(form, name) in forms {
        let files = syncz_files(&cache, &spec, form)?;
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut cmd = Cmd::new(&sync, &[&"-A"]);
        for f in &files {
            cmd.args.push("-f".into());
            cmd.args.push(f.into());
        }
        let stat = bench.measure(&format!("mesh-sync -f ({name})"), &cmd, args.runs)?;
        let label = format!("{} proxies, {name}", spec.proxies);
        report.rows.push(Row {
            size: format!("{label} ({:.1} MB)", bytes as f64 / MB),
            command: format!("`mesh-sync -A -f` ×{}", files.len()),
            stat,
            vs_floor: None,
            jq_over: None,
            rss_over_file: None,
        });
        report.goal(
            &format!("`mesh-sync -f`, {label}"),
            fmt_secs(stat.secs()),
            format!("{} files, {:.1} MB", files.len(), bytes as f64 / MB),
            "≤ 100 ms",
            stat.wall <= Duration::from_millis(100),
        );
    }

    // 3. --help of each plugin.
    if part("help") {
        let _ = writeln!(std::io::stderr(), "--help:");
    }
    let helps = [
        ("envoy-dump", &dump),
        ("envoy-log", &log),
        ("mesh-sync", &sync),
    ];
    for (name, path) in helps.into_iter().filter(|_| part("help")) {
        let stat = bench.measure(
            &format!("{name} --help"),
            &Cmd::new(path, &[&"--help"]),
            args.runs.max(11),
        )?;
        report.rows.push(Row {
            size: "".into(),
            command: format!("`{name} --help`"),
            stat,
            vs_floor: None,
            jq_over: None,
            rss_over_file: None,
        });
        report.goal(
            &format!("`{name} --help`"),
            fmt_secs(stat.secs()),
            "".into(),
            "≤ 10 ms",
            stat.wall <= Duration::from_millis(10),
        );
    }

    // 4. The world: envoy-log across 50 real sidecars, raw dumps through port-forward.
    if !args.skip_world && part("world") {
        world_benchmarks(args, &bench, &cache, &dump, &log, &mut report)?;
    }

    report.notes.push(format!(
        "Machine: {} CPUs; load average (1 min) {} at the start, {} at the end. Wall times \
         include waiting for a CPU when other processes run; the CPU column does not.",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_average()
    ));
    let text = report.markdown();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{text}")?;
    let path = args
        .report
        .clone()
        .unwrap_or_else(|| cache.join("results.md"));
    std::fs::write(&path, &text)?;
    let _ = writeln!(
        std::io::stderr(),
        "meshsim-bench: report in {}",
        path.display()
    );
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn count_lines(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.iter().filter(|b| **b == b'\n').count())
}

fn world_benchmarks(
    args: &Args,
    bench: &Bench<'_>,
    cache: &Path,
    dump: &Path,
    log: &Path,
    report: &mut Report,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/mesh50.yaml");
    let _ = writeln!(
        std::io::stderr(),
        "world {} (50 real Envoys, static config):",
        scenario.display()
    );
    let started = Instant::now();
    let world = rt.block_on(World::start_with(
        Scenario::load(&scenario.display().to_string())?,
        WorldOptions {
            xds_mode: XdsMode::Static,
            envoy_timeout: Duration::from_secs(120),
            ..WorldOptions::default()
        },
    ))?;
    let _ = writeln!(std::io::stderr(), "  up in {:.1?}", started.elapsed());
    let kubeconfig = world.kubeconfig().to_path_buf();
    let pods = world.pods();
    let web: Vec<_> = pods
        .iter()
        .filter(|p| p.app_label == "web" && p.admin.is_some())
        .collect();
    let one = web.first().context("no web pod with an Envoy")?;
    let pod_named = |app: &str| {
        pods.iter()
            .find(|p| p.app_label == app)
            .map(|p| p.name.clone())
            .with_context(|| format!("no {app} pod"))
    };
    let (bigdump, bigenvoy) = (pod_named("bigdump")?, pod_named("bigenvoy")?);

    // envoy-log: one pod, then all 50 with -l.
    let kc: &dyn AsRef<std::ffi::OsStr> = &kubeconfig;
    let base: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"--kubeconfig", kc, &"-n", &"bench"];
    let log_cmd = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let all: Vec<&dyn AsRef<std::ffi::OsStr>> = base.iter().chain(extra).copied().collect();
        Cmd::new(log, &all)
    };
    let cmds = [
        log_cmd(&[&one.name]),
        log_cmd(&[&"-l", &"app=web"]),
        log_cmd(&[&one.name, &"--level", &"warning"]),
        log_cmd(&[&"-l", &"app=web", &"--level", &"warning"]),
    ];
    let many_label = format!("envoy-log -l app=web ({} pods)", web.len());
    let stats = bench.measure_all(&[
        ("envoy-log POD", &cmds[0], args.runs),
        (&many_label, &cmds[1], args.runs),
        ("envoy-log POD --level warning", &cmds[2], args.runs),
        ("envoy-log -l app=web --level warning", &cmds[3], args.runs),
    ])?;
    let (single, many, set_one, set_many) = (stats[0], stats[1], stats[2], stats[3]);
    for (what, s, m) in [("list", single, many), ("--level", set_one, set_many)] {
        let label = if what == "list" {
            ""
        } else {
            " --level warning"
        };
        report.rows.push(Row {
            size: "1 sidecar".into(),
            command: format!("`envoy-log POD{label}`"),
            stat: s,
            vs_floor: None,
            jq_over: None,
            rss_over_file: None,
        });
        report.rows.push(Row {
            size: format!("{} sidecars", web.len()),
            command: format!("`envoy-log -l app=web{label}`"),
            stat: m,
            vs_floor: None,
            jq_over: None,
            rss_over_file: None,
        });
        let ratio = m.secs() / s.secs();
        report.goal(
            &format!("`envoy-log -l …{label}` on {} real sidecars", web.len()),
            format!("{} ({ratio:.2}× one)", fmt_secs(m.secs())),
            format!("one sidecar {}", fmt_secs(s.secs())),
            "≤ 3× one",
            ratio <= 3.0,
        );
    }

    // Where the CPU of the 50-pod run goes: the plugin, the simulated apiserver (inside this
    // process), the Envoys. All share this machine's CPUs, so their sum bounds the wall time.
    let split = cpu_split(bench, &cmds[1], args.runs.max(5))?;
    let total = split.plugin + split.apiserver + split.envoys;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let per_pod = |d: Duration| fmt_secs(d.as_secs_f64() / web.len() as f64);
    report.notes.push(format!(
        "CPU per run of `envoy-log -l app=web` ({n} pods, mean of {runs} runs, from /proc): \
         plugin {p} ({pp} per pod), simulated apiserver {a} ({ap} per pod), the {n} Envoys {e} \
         ({ep} per pod): {t} in all, which needs at least {w} of wall time on this machine's \
         {cpus} CPUs. One pod (`envoy-log POD`) took {one} of wall time.",
        n = web.len(),
        runs = split.runs,
        p = fmt_secs(split.plugin.as_secs_f64()),
        pp = per_pod(split.plugin),
        a = fmt_secs(split.apiserver.as_secs_f64()),
        ap = per_pod(split.apiserver),
        e = fmt_secs(split.envoys.as_secs_f64()),
        ep = per_pod(split.envoys),
        t = fmt_secs(total.as_secs_f64()),
        w = fmt_secs(total.as_secs_f64() / cpus as f64),
        one = fmt_secs(single.secs()),
    ));
    // The fan-out itself: the same run one pod at a time, and all 50 at once.
    let serial = log_cmd(&[&"-l", &"app=web", &"--max-concurrency", &"1"]);
    let all = log_cmd(&[&"-l", &"app=web", &"--max-concurrency", &"50"]);
    let sweep = bench.measure_all(&[
        (
            "envoy-log -l app=web --max-concurrency 1",
            &serial,
            args.runs,
        ),
        ("envoy-log -l app=web (default 16)", &cmds[1], args.runs),
        ("envoy-log -l app=web --max-concurrency 50", &all, args.runs),
    ])?;
    for (label, stat) in [
        ("`envoy-log -l app=web --max-concurrency 1`", sweep[0]),
        ("`envoy-log -l app=web --max-concurrency 50`", sweep[2]),
    ] {
        report.rows.push(Row {
            size: format!("{} sidecars", web.len()),
            command: label.into(),
            stat,
            vs_floor: None,
            jq_over: None,
            rss_over_file: None,
        });
    }

    // Raw dump through port-forward from a file server (the largest dump ≥ 100 MB).
    let big = args
        .sizes
        .iter()
        .copied()
        .filter(|s| *s >= 100)
        .max()
        .unwrap_or(100);
    let (file, bytes) = dump_file(cache, big)?;
    let server = rt.block_on(serve_file(file.clone()))?;
    world.apiserver().set_pod_backend(
        "bench",
        &bigdump,
        PodBackend {
            ports: HashMap::from([(15000, server)]),
            logs: HashMap::new(),
        },
    );
    let out = cache.join("raw.out");
    let stat = bench.measure(
        &format!("envoy-dump POD > file ({big} MB, file server)"),
        &Cmd::new(dump, &[&"--kubeconfig", kc, &"-n", &"bench", &bigdump]).to(out.clone()),
        args.runs.min(3),
    )?;
    let got = std::fs::metadata(&out)?.len();
    let _ = std::fs::remove_file(&out);
    if got != bytes {
        report.notes.push(format!(
            "Warning: the raw dump through port-forward wrote {got} bytes of {bytes}."
        ));
    }
    report.rows.push(Row {
        size: format!("{:.0} MB (file server)", bytes as f64 / MB),
        command: "`envoy-dump POD > file` (port-forward)".into(),
        stat,
        vs_floor: None,
        jq_over: None,
        rss_over_file: Some(stat.rss_kb as f64 * 1024.0 / bytes as f64),
    });
    report.goal(
        &format!(
            "raw `envoy-dump POD > file`, {:.0} MB through port-forward",
            bytes as f64 / MB
        ),
        format!("peak RSS {:.1} MB", stat.rss_mb()),
        format!("{} wall", fmt_secs(stat.secs())),
        "peak RSS ≤ 64 MB",
        stat.rss_mb() <= 64.0,
    );

    // Raw dump through port-forward from a real Envoy holding a generated mesh.
    if args.envoy_services > 0 {
        let started = Instant::now();
        let spec = MeshSpec::new(args.envoy_services);
        let loaded = rt.block_on(LoadedEnvoy::start(&spec, Duration::from_secs(600)))?;
        let _ = writeln!(
            std::io::stderr(),
            "  real Envoy with {} services ({} clusters, {} listeners) loaded over ADS in {:.1?}",
            args.envoy_services,
            loaded.counts[0],
            loaded.counts[1],
            started.elapsed()
        );
        world.apiserver().set_pod_backend(
            "bench",
            &bigenvoy,
            PodBackend {
                ports: HashMap::from([(15000, loaded.admin())]),
                logs: HashMap::new(),
            },
        );
        let out = cache.join("raw-envoy.out");
        let stat = bench.measure(
            &format!(
                "envoy-dump POD > file (real Envoy, {} services)",
                args.envoy_services
            ),
            &Cmd::new(dump, &[&"--kubeconfig", kc, &"-n", &"bench", &bigenvoy]).to(out.clone()),
            args.runs.min(3),
        )?;
        let got = std::fs::metadata(&out)?.len();
        let _ = std::fs::remove_file(&out);
        report.rows.push(Row {
            size: format!(
                "{:.0} MB (real Envoy, {} services)",
                got as f64 / MB,
                args.envoy_services
            ),
            command: "`envoy-dump POD > file` (port-forward)".into(),
            stat,
            vs_floor: None,
            jq_over: None,
            rss_over_file: Some(stat.rss_kb as f64 * 1024.0 / got as f64),
        });
        report.goal(
            &format!(
                "raw `envoy-dump POD > file`, real Envoy ({:.0} MB) through port-forward",
                got as f64 / MB
            ),
            format!("peak RSS {:.1} MB", stat.rss_mb()),
            format!("{} wall", fmt_secs(stat.secs())),
            "peak RSS ≤ 64 MB",
            stat.rss_mb() <= 64.0,
        );
        let _guard = rt.enter();
        drop(loaded);
    }
    let _guard = rt.enter();
    drop(world);
    Ok(())
}

/// A stand-in admin endpoint: answers every request with the file, streamed from disk.
async fn serve_file(path: PathBuf) -> Result<SocketAddr> {
    use axum::body::Body;
    use axum::response::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move || {
        let path = path.clone();
        async move {
            match tokio::fs::File::open(&path).await {
                Ok(f) => Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(tokio_util_stream(f)))
                    .unwrap_or_default(),
                Err(_) => Response::builder()
                    .status(500)
                    .body(Body::empty())
                    .unwrap_or_default(),
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// The file as a stream of 64 KiB chunks.
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
