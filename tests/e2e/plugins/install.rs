//! `make install` puts the plugins where kubectl and oc find them.

use std::path::Path;

use crate::support::{PLUGINS, PluginPath, plugin_bin_dir, show};

#[test]
fn make_install_names_are_found_by_kubectl_plugin_list() {
    let prefix = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(&root)
        .arg("install-bins")
        .arg(format!("PREFIX={}", prefix.path().display()))
        .arg(format!("BIN_DIR={}", plugin_bin_dir().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let bin = prefix.path().join("bin");
    for p in PLUGINS {
        let name = format!("kubectl-{}", p.replace('-', "_"));
        assert!(bin.join(&name).is_file(), "{name} not installed");
        assert!(
            bin.join(format!("kubectl_complete-{}", p.replace('-', "_")))
                .is_file()
        );
    }
    let pp = PluginPath::install();
    let mut cmd = pp.kubectl(None, &["plugin", "list"]);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    // kubectl itself must stay reachable: run it by absolute path.
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    for p in PLUGINS {
        let expected = bin.join(format!("kubectl-{}", p.replace('-', "_")));
        assert!(
            listed.contains(&expected.display().to_string()),
            "{p} not listed:\n{listed}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        show(&out)
    );
}

#[test]
fn kubectl_dispatches_each_plugin_help() {
    let pp = PluginPath::install();
    for p in PLUGINS {
        let out = pp.kubectl(None, &[p, "--help"]).output().unwrap();
        assert!(out.status.success(), "kubectl {p} --help: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("kubectl {p}")),
            "usage names `kubectl {p}`:\n{text}"
        );
        assert!(
            text.contains("Exit codes"),
            "--help documents exit codes:\n{text}"
        );
    }
}
