//! kubectl envoy-log against real sidecar Envoys in the `seed` world.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use meshsim::world::World;

use crate::support::{PluginPath, envoy_levels, http, run, show, stdout};

const NS: &str = "olaf-customer";

#[test]
fn sets_a_logger_on_the_real_envoy() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    let admin = customer.admin.unwrap();
    assert_ne!(envoy_levels(admin)["rbac"], "debug");

    let out = run(
        &pp,
        &world,
        &["envoy-log", &customer.name, "-n", NS, "rbac=debug"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("rbac"), "{}", show(&out));
    let levels = envoy_levels(admin);
    assert_eq!(levels["rbac"], "debug");
    assert_ne!(levels["jwt"], "debug", "only the named logger changes");

    // listing shows it
    let out = run(&pp, &world, &["envoy-log", &customer.name, "-n", NS]);
    assert!(out.status.success(), "{}", show(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("rbac "))
        .map(str::to_string)
        .unwrap();
    assert!(line.ends_with("debug"), "{line}");
}

#[test]
fn unknown_logger_changes_no_pod() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let pods: Vec<_> = ["customer", "recommendation-v1", "recommendation-v2"]
        .iter()
        .map(|p| world.pod(NS, p).unwrap())
        .collect();
    let before: Vec<_> = pods
        .iter()
        .map(|p| envoy_levels(p.admin.unwrap()))
        .collect();

    let out = run(
        &pp,
        &world,
        &[
            "envoy-log",
            "-n",
            NS,
            "-l",
            "app in (customer,recommendation)",
            "rbac=debug",
            "rbacc=debug",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rbacc") && err.contains("rbac"),
        "names the unknown logger and suggests: {err}"
    );
    for (p, b) in pods.iter().zip(&before) {
        assert_eq!(
            &envoy_levels(p.admin.unwrap()),
            b,
            "{} must be unchanged",
            p.name
        );
    }
}

#[test]
fn selector_hits_both_versions() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let out = run(
        &pp,
        &world,
        &[
            "envoy-log",
            "-n",
            NS,
            "-l",
            "app=recommendation",
            "rbac=debug",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for v in ["recommendation-v1", "recommendation-v2"] {
        let p = world.pod(NS, v).unwrap();
        assert!(text.contains(&p.name), "{v} in the result table:\n{text}");
        assert_eq!(envoy_levels(p.admin.unwrap())["rbac"], "debug");
    }
    assert_ne!(
        envoy_levels(world.pod(NS, "customer").unwrap().admin.unwrap())["rbac"],
        "debug"
    );
}

#[test]
fn reset_after_level_debug_gives_the_start_level() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let p = world.pod(NS, "preference").unwrap();
    let start = envoy_levels(p.admin.unwrap());
    let out = run(
        &pp,
        &world,
        &["envoy-log", &p.name, "-n", NS, "--level", "debug"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        envoy_levels(p.admin.unwrap())
            .values()
            .all(|l| l == "debug")
    );
    let out = run(&pp, &world, &["envoy-log", &p.name, "-n", NS, "--reset"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(envoy_levels(p.admin.unwrap()), start);
}

#[test]
fn for_duration_restores_exact_previous_levels() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let p = world.pod(NS, "preference").unwrap();
    let admin = p.admin.unwrap();
    // a non-uniform starting point: one logger already changed by hand
    http(admin, "POST", "/logging?jwt=error", &[]);
    let before = envoy_levels(admin);
    let out = run(
        &pp,
        &world,
        &[
            "envoy-log",
            &p.name,
            "-n",
            NS,
            "rbac=debug",
            "jwt=trace",
            "--for",
            "1s",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(envoy_levels(admin), before);
}

#[test]
fn sigint_during_for_restores_and_exits_130() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let p = world.pod(NS, "preference").unwrap();
    let admin = p.admin.unwrap();
    let before = envoy_levels(admin);
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &["envoy-log", &p.name, "-n", NS, "rbac=debug", "--for", "5m"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until it says it applied and is waiting
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "stderr closed early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("restoring in") {
            break;
        }
    }
    assert_eq!(envoy_levels(admin)["rbac"], "debug");
    // kubectl passes the signal's effect to its child through the process group: signal both.
    let kubectl_pid = child.id() as i32;
    for pid in child_pids(kubectl_pid).into_iter().chain([kubectl_pid]) {
        unsafe_free_kill(pid);
    }
    let status = child.wait().unwrap();
    assert_eq!(
        envoy_levels(admin),
        before,
        "restored after Ctrl-C; stderr: {seen}"
    );
    assert_eq!(status.code(), Some(130), "{seen}");
}

/// Direct children of a pid (from /proc).
fn child_pids(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGINT through the `kill` command (the crate forbids unsafe code).
fn unsafe_free_kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

#[test]
fn follow_shows_rbac_debug_lines_of_a_real_request() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let p = world.pod(NS, "recommendation-v1").unwrap();
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "envoy-log",
                &p.name,
                "-n",
                NS,
                "rbac=debug",
                "--follow",
                "--only-changed",
                "--for",
                "30s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the plugin says when the log stream is open: a request after that must show up
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "stderr closed early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("following the istio-proxy log") {
            break;
        }
    }
    assert_eq!(envoy_levels(p.admin.unwrap())["rbac"], "debug");
    let (status, _) = http(p.inbound.unwrap(), "GET", "/", &[]);
    assert_eq!(status, 200);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    assert!(
        out.read_line(&mut line).unwrap() > 0,
        "stdout closed; stderr: {seen}"
    );
    for pid in child_pids(child.id() as i32)
        .into_iter()
        .chain([child.id() as i32])
    {
        unsafe_free_kill(pid);
    }
    let status = child.wait().unwrap();
    assert!(
        line.contains("[rbac]"),
        "a [rbac] debug line from the request: {line}"
    );
    assert!(
        line.contains("checking request") || line.contains("allowed"),
        "{line}"
    );
    assert_eq!(status.code(), Some(130));
    assert_ne!(
        envoy_levels(p.admin.unwrap())["rbac"],
        "debug",
        "restored on Ctrl-C"
    );
}

#[test]
fn istiod_scopes_are_listed_and_set_on_every_replica() {
    let world = World::start_blocking(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/two-istiods.yaml"
    ))
    .unwrap();
    let pp = PluginPath::install();
    let replicas = world.control_plane().replicas();
    assert_eq!(replicas.len(), 2, "the scenario has two istiod replicas");
    let level = |r: &meshsim::control_plane::Replica| {
        r.istiod()
            .unwrap()
            .scopes()
            .into_iter()
            .find(|s| s.name == "model")
            .map(|s| s.output_level)
            .unwrap()
    };
    assert!(replicas.iter().all(|r| level(r) != "debug"));

    let out = run(&pp, &world, &["envoy-log", "--istiod"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for r in replicas {
        assert!(
            text.contains(r.pod()),
            "replica {} listed:\n{text}",
            r.pod()
        );
    }
    assert!(text.lines().next().unwrap().contains("SCOPE"), "{text}");

    let out = run(&pp, &world, &["envoy-log", "--istiod", "model=debug"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        replicas.iter().all(|r| level(r) == "debug"),
        "set on every replica, not only the first"
    );

    // an unknown scope changes nothing on any replica
    let out = run(
        &pp,
        &world,
        &["envoy-log", "--istiod", "model=info", "nosuchscope=debug"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(replicas.iter().all(|r| level(r) == "debug"));
}
