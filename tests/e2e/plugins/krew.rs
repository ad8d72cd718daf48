//! The krew path: release archives made by `krew/dist.sh` (what `make dist` runs, here on the
//! debug binaries: no release build in `make test`), manifests rendered from
//! `krew/templates/` with the archives' sha256 (what `make krew` runs), the krew-index rules on
//! those and on the committed `krew/*.yaml`, and an install laid out as krew lays it out, run
//! through the real kubectl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{PLUGINS, kubectl_path, plugin_bin_dir, show};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The offline krew-index validator (python3 + PyYAML), beside the repository.
fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/validate-krew-manifest")
}

/// `v` + the workspace version: the tag `krew/dist.sh` uses by default.
fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// krew's os/arch names for this machine.
fn platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", show(&out));
    out
}

/// `krew/dist.sh SUBCOMMAND` with a clean release environment.
fn dist(sub: &str, dist_dir: &Path) -> Output {
    run(Command::new("bash")
        .arg(root().join("krew/dist.sh"))
        .arg(sub)
        .env("BIN_DIR", plugin_bin_dir())
        .env("DIST_DIR", dist_dir)
        .env("DIST_GZIP_LEVEL", "1")
        .env_remove("VERSION")
        .env_remove("DIST_OS")
        .env_remove("DIST_ARCH")
        .env_remove("KREW_URL_BASE")
        .env_remove("KREW_OUT")
        .env_remove("PLUGINS"))
}

/// Archives + manifests for this machine, from the built (debug) plugins.
fn build_dist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    dist("archives", dir.path());
    dist("krew", dir.path());
    dir
}

fn archive_name(plugin: &str) -> String {
    let (os, arch) = platform();
    format!("{plugin}_{}_{os}_{arch}.tar.gz", version())
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn archive_entries(path: &Path) -> Vec<String> {
    let out = run(Command::new("tar").arg("-tzf").arg(path));
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn manifest(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run the krew-index validator; every file must pass.
fn validate(files: &[PathBuf]) {
    let out = Command::new(validator()).args(files).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "validate-krew-manifest: {}",
        show(&out)
    );
    assert!(!text.contains("ERROR"), "{text}");
    assert_eq!(
        text.matches("structural validation OK").count(),
        files.len(),
        "{text}"
    );
}

fn selector(platform: &Value) -> (String, String) {
    let labels = &platform["selector"]["matchLabels"];
    (
        labels["os"].as_str().unwrap().to_string(),
        labels["arch"].as_str().unwrap().to_string(),
    )
}

#[test]
fn release_archives_and_manifests_follow_the_krew_index_rules() {
    let dist_dir = build_dist();
    let v = version();
    let (os, arch) = platform();
    let sums = std::fs::read_to_string(dist_dir.path().join("SHA256SUMS")).unwrap();
    let generated: Vec<PathBuf> = PLUGINS
        .iter()
        .map(|p| dist_dir.path().join("krew").join(format!("{p}.yaml")))
        .collect();
    validate(&generated);
    let committed: Vec<PathBuf> = PLUGINS
        .iter()
        .map(|p| root().join("krew").join(format!("{p}.yaml")))
        .collect();
    validate(&committed);

    for (i, p) in PLUGINS.iter().enumerate() {
        let bin = format!("kubectl-{p}");
        // The archive: the binary, LICENSE and README, nothing else.
        let archive = dist_dir.path().join(archive_name(p));
        assert!(archive.is_file(), "{} missing", archive.display());
        assert_eq!(
            archive_entries(&archive),
            ["LICENSE", "README.md", bin.as_str()]
        );
        let sha = sha256(&archive);
        assert!(
            sums.contains(&format!("{sha}  {}", archive_name(p))),
            "{sums}"
        );

        // The generated manifest: this machine's platform, with the archive's real sha256.
        let m = manifest(&generated[i]);
        assert_eq!(m["metadata"]["name"], *p);
        assert_eq!(m["spec"]["version"], v.as_str());
        let platforms = m["spec"]["platforms"].as_array().unwrap();
        assert_eq!(platforms.len(), 1, "only what was built here");
        let pl = &platforms[0];
        assert_eq!(selector(pl), (os.to_string(), arch.to_string()));
        assert_eq!(
            pl["uri"],
            format!(
                "https://github.com/meshdebug/meshdebug/releases/download/{v}/{}",
                archive_name(p)
            )
            .as_str()
        );
        assert_eq!(pl["sha256"], sha.as_str());
        assert_eq!(pl["bin"], bin.as_str());
        assert!(pl.get("files").is_none(), "the whole archive is extracted");

        // The committed manifest: the same plugin text, all five platforms once each, the
        // release naming, a bin that names a real workspace binary.
        let c = manifest(&committed[i]);
        for key in ["homepage", "shortDescription", "description", "caveats"] {
            assert_eq!(c["spec"][key], m["spec"][key], "{p}: spec.{key}");
        }
        let short = c["spec"]["shortDescription"].as_str().unwrap();
        assert!(short.len() <= 50, "{p}: `krew search` cuts {short:?}");
        let caveats = c["spec"]["caveats"].as_str().unwrap();
        assert!(caveats.contains("pods/portforward"), "{p}: RBAC in caveats");
        let cv = c["spec"]["version"].as_str().unwrap();
        let mut seen: Vec<(String, String)> = Vec::new();
        for pl in c["spec"]["platforms"].as_array().unwrap() {
            let (pos, parch) = selector(pl);
            let exe = if pos == "windows" { ".exe" } else { "" };
            assert_eq!(pl["bin"], format!("{bin}{exe}").as_str());
            assert_eq!(
                pl["uri"],
                format!(
                    "https://github.com/meshdebug/meshdebug/releases/download/{cv}/{p}_{cv}_{pos}_{parch}.tar.gz"
                )
                .as_str()
            );
            assert!(!seen.contains(&(pos.clone(), parch.clone())));
            seen.push((pos, parch));
        }
        seen.sort();
        let want: Vec<(String, String)> = [
            ("darwin", "amd64"),
            ("darwin", "arm64"),
            ("linux", "amd64"),
            ("linux", "arm64"),
            ("windows", "amd64"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(seen, want, "{p}");
        let cargo =
            std::fs::read_to_string(root().join(format!("plugins/{p}/Cargo.toml"))).unwrap();
        assert!(
            cargo.contains(&format!("name = \"{bin}\"")),
            "{p}: no binary {bin}"
        );
    }

    // The committed manifests are the templates rendered (`make krew-check`).
    run(Command::new("bash")
        .arg(root().join("krew/dist.sh"))
        .arg("check")
        .env("VALIDATOR", validator()));
}

#[test]
fn a_krew_install_runs_through_kubectl() {
    let dist_dir = build_dist();
    let v = version();
    let krew_root = tempfile::tempdir().unwrap();
    let bin_dir = krew_root.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    for p in PLUGINS {
        // krew: unpack into store/<plugin>/<version>/, link bin/kubectl-<plugin with _> to `bin`.
        let m = manifest(&dist_dir.path().join("krew").join(format!("{p}.yaml")));
        let pl = &m["spec"]["platforms"][0];
        let uri = pl["uri"].as_str().unwrap();
        let archive = dist_dir.path().join(uri.rsplit('/').next().unwrap());
        assert_eq!(sha256(&archive), pl["sha256"].as_str().unwrap());
        let store = krew_root.path().join("store").join(p).join(&v);
        std::fs::create_dir_all(&store).unwrap();
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&store));
        assert!(store.join("LICENSE").is_file(), "LICENSE extracted");
        let target = store.join(pl["bin"].as_str().unwrap());
        assert!(target.is_file());
        std::os::unix::fs::symlink(
            &target,
            bin_dir.join(format!("kubectl-{}", p.replace('-', "_"))),
        )
        .unwrap();
    }
    // kubectl itself from a folder of its own, so PATH holds nothing else.
    let kubectl_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(kubectl_path(), kubectl_dir.path().join("kubectl")).unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        bin_dir.display(),
        kubectl_dir.path().display()
    );
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new(kubectl_dir.path().join("kubectl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", krew_root.path())
            .env("NO_COLOR", "1");
        cmd
    };

    let listed = run(&mut kubectl(&["plugin", "list", "--name-only"]));
    let listed = String::from_utf8_lossy(&listed.stdout);
    for p in PLUGINS {
        let name = format!("kubectl-{}", p.replace('-', "_"));
        assert!(listed.lines().any(|l| l == name), "{name}:\n{listed}");
        let out = run(&mut kubectl(&[p, "--help"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("kubectl {p}")),
            "usage names `kubectl {p}`:\n{text}"
        );
    }

    // The completion helpers krew cannot install: krew/completion-shims.sh writes them.
    run(Command::new("sh")
        .arg(root().join("krew/completion-shims.sh"))
        .env("KREW_ROOT", krew_root.path()));
    for p in PLUGINS {
        let u = p.replace('-', "_");
        let shim = bin_dir.join(format!("kubectl_complete-{u}"));
        let text = std::fs::read_to_string(&shim).unwrap();
        let link = bin_dir.join(format!("kubectl-{u}"));
        assert!(
            text.contains(&format!("exec \"{}\" __complete \"$@\"", link.display())),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_ne!(
            std::fs::metadata(&shim).unwrap().permissions().mode() & 0o111,
            0
        );
    }
}
