//! kubectl envoy-dump against real sidecar Envoys in the `seed` world: the raw dump is Envoy's
//! own, every view reads a real sidecar, several pods go to one file each, the dashboard
//! tunnels to the admin port, and `diff` tells two replicas apart.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;

use meshsim::world::World;
use serde_json::Value;

use crate::support::{PluginPath, http, run, show, stdout};

const NS: &str = "olaf-customer";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The row of a table whose cells are exactly `cells`.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

#[test]
fn raw_dump_is_the_sidecars_own_config_dump() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    let out = run(&pp, &world, &["envoy-dump", &customer.name, "-n", NS]);
    assert!(out.status.success(), "{}", show(&out));
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (status, body) = http(customer.admin.unwrap(), "GET", "/config_dump", &[]);
    assert_eq!(status, 200, "{body}");
    let theirs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ours, theirs, "the plugin's dump is Envoy's /config_dump");
    assert!(stderr(&out).is_empty(), "{}", show(&out));
}

#[test]
fn every_view_reads_the_real_sidecar() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    let view = |args: &[&str]| {
        let mut argv = vec!["envoy-dump"];
        argv.extend(args);
        argv.extend([customer.name.as_str(), "-n", NS]);
        let out = run(&pp, &world, &argv);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        out
    };

    let out = view(&["clusters"]);
    let t = stdout(&out);
    assert!(
        has_row(
            &t,
            &[
                "preference.olaf-customer.svc.cluster.local",
                "8080",
                "-",
                "outbound",
                "EDS"
            ]
        ),
        "{}",
        show(&out)
    );
    assert!(
        has_row(
            &t,
            &[
                "customer.olaf-customer.svc.cluster.local",
                "8080",
                "http",
                "inbound",
                "STATIC"
            ]
        ),
        "{}",
        show(&out)
    );

    let out = view(&["listeners"]);
    assert_eq!(
        stdout(&out)
            .lines()
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["ADDRESSES", "PORT", "MATCH", "DESTINATION"]),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out)
            .contains("Cluster: inbound|8080|http|customer.olaf-customer.svc.cluster.local"),
        "{}",
        show(&out)
    );
    // the listeners bind their real ports on the pod's own (loopback) address, as in its
    // network namespace; TCP services are `<cluster IP>:<port>`, not bound, as Istio writes them
    let table = stdout(&out);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let row = |port: &str, dest: &str| {
        rows.iter()
            .any(|r| r.get(1) == Some(&port) && r.last().is_some_and(|d| d.contains(dest)))
    };
    assert!(
        row("15006", "Cluster: inbound|8080|http|customer"),
        "{}",
        show(&out)
    );
    assert!(row("15001", "PassthroughCluster"), "{}", show(&out));
    assert!(row("8080", "Route: 8080"), "{}", show(&out));
    assert!(
        row("443", "Cluster: outbound|443||istio-ingressgateway.olaf"),
        "{}",
        show(&out)
    );
    assert!(
        !rows.iter().any(|r| r.get(1) == Some(&"0")),
        "{}",
        show(&out)
    );

    let out = view(&["routes"]);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("8080 ")
            && l.contains("preference.olaf-customer.svc.cluster.local:8080")),
        "{}",
        show(&out)
    );

    let preference = world.pod(NS, "preference").unwrap();
    let cluster = "outbound|8080||preference.olaf-customer.svc.cluster.local";
    let out = view(&["endpoints", "--cluster", cluster]);
    let t = stdout(&out);
    let rows: Vec<Vec<&str>> = t
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let app = preference.app.unwrap().to_string();
    assert_eq!(
        rows,
        [[app.as_str(), "HEALTHY", "OK", cluster]],
        "{}",
        show(&out)
    );

    let out = view(&["secrets"]);
    let (data, note) = (stdout(&out), stderr(&out));
    assert!(
        data.starts_with("RESOURCE NAME") || note.contains("No active or warming secrets found."),
        "{}",
        show(&out)
    );

    let out = view(&["bootstrap"]);
    let t = stdout(&out);
    let node = customer.node_id.clone().unwrap();
    assert!(
        t.lines()
            .any(|l| l.starts_with("Node ID") && l.ends_with(&node)),
        "{}",
        show(&out)
    );
    assert!(t.contains("\nEnvoy Version         1.40"), "{}", show(&out));
    assert!(
        t.contains("\nNamespace             olaf-customer\n"),
        "{}",
        show(&out)
    );

    // The seed policy's issuer (the private-CA Keycloak), and istiod's placeholder key because
    // istiod could not fetch its JWKS.
    let issuer = world.jwks().unwrap().issuer();
    let out = view(&["jwt"]);
    let t = stdout(&out);
    let row = t
        .lines()
        .find(|l| l.contains(&issuer))
        .unwrap_or_else(|| panic!("issuer {issuer}: {}", show(&out)));
    assert!(row.contains("istiod placeholder"), "{}", show(&out));
    let warning = stderr(&out);
    assert!(
        warning.starts_with("warning: ") && warning.contains("placeholder"),
        "{}",
        show(&out)
    );
    assert!(
        warning.contains("kubectl jwks-trust check"),
        "{}",
        show(&out)
    );
    let out = view(&["jwt", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"][0]["issuer"], issuer.as_str(), "{}", show(&out));

    let out = view(&["rbac"]);
    assert!(
        stdout(&out).starts_with("LISTENER") || stderr(&out).contains("No RBAC policies found."),
        "{}",
        show(&out)
    );

    // A request with a token the sidecar cannot verify is denied by jwt_authn; stats sees it.
    let (status, body) = http(
        customer.inbound.unwrap(),
        "GET",
        "/",
        &[("Authorization", "Bearer e30.e30.sig")],
    );
    assert_eq!(status, 401, "{body}");
    let out = view(&["stats", "--filter", r"jwt_authn\.denied$"]);
    let t = stdout(&out);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2, "{}", show(&out));
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "VALUE"]
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(cells[0].ends_with("jwt_authn.denied"), "{}", show(&out));
    assert_eq!(cells[1], "1", "{}", show(&out));
}

#[test]
fn several_pods_one_file_each_and_a_pod_column() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let pods: Vec<_> = ["recommendation-v1", "recommendation-v2"]
        .iter()
        .map(|p| world.pod(NS, p).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "-n",
            NS,
            "-l",
            "app=recommendation",
            "--output-dir",
            dir_arg,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        out.stdout.is_empty(),
        "data goes to the files: {}",
        show(&out)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join(NS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = pods.iter().map(|p| format!("{}.json", p.name)).collect();
    assert_eq!(names, want, "exactly one file per pod, no temp files left");
    let top: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(top.len(), 1, "only DIR/{NS}");
    for p in &pods {
        let path = dir.path().join(NS).join(format!("{}.json", p.name));
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(v["configs"].as_array().is_some_and(|c| !c.is_empty()));
        assert!(
            stderr(&out).contains(&path.display().to_string()),
            "{}",
            show(&out)
        );
    }

    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "clusters",
            "-n",
            NS,
            "-l",
            "app=recommendation",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let t = stdout(&out);
    assert!(t.starts_with("POD "), "{}", show(&out));
    for p in &pods {
        assert!(
            has_row(
                &t,
                &[
                    &format!("{NS}/{}", p.name),
                    "recommendation.olaf-customer.svc.cluster.local",
                    "8080",
                    "http",
                    "inbound",
                    "STATIC"
                ]
            ),
            "{}: {}",
            p.name,
            show(&out)
        );
    }
}

/// Kills the dashboard when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dashboard_tunnels_to_the_admin_port() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    let child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "envoy-dump",
                "dashboard",
                &customer.name,
                "-n",
                NS,
                "--port",
                "0",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    // kubectl execs the plugin: this PID is the dashboard.
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("first stdout line is the URL: {first:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (status, body) = http(addr, "GET", "/server_info", &[]);
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["state"], "LIVE", "{body}");
    let node_ids = [
        info["node"]["id"].as_str(),
        info["command_line_options"]["service_node"].as_str(),
    ];
    assert!(
        node_ids.contains(&customer.node_id.as_deref()),
        "the tunnel reaches the customer's Envoy: {body}"
    );
    // a second connection through the same dashboard
    let (status, _) = http(addr, "GET", "/ready", &[]);
    assert_eq!(status, 200);
    child.0.kill().unwrap();
    assert!(!child.0.wait().unwrap().success());
}

#[test]
fn diff_of_two_replicas_and_of_a_pod_with_its_saved_dump() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let v1 = world.pod(NS, "recommendation-v1").unwrap();
    let v2 = world.pod(NS, "recommendation-v2").unwrap();

    let out = run(
        &pp,
        &world,
        &["envoy-dump", "diff", &v1.name, &v2.name, "-n", NS],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let t = stdout(&out);
    assert!(
        t.starts_with(&format!(
            "Clusters Don't Match\n--- {NS}/{}\n+++ {NS}/{}\n@@ ",
            v1.name, v2.name
        )),
        "{}",
        show(&out)
    );
    assert!(t.contains("\nListeners "), "{}", show(&out));
    assert!(t.contains("\nSecrets "), "{}", show(&out));

    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "diff",
            &v1.name,
            &v2.name,
            "-n",
            NS,
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "ConfigDiff");
    assert_eq!(v["match"], false);

    // before/after: a pod against its own saved dump
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("before.json");
    let out = run(&pp, &world, &["envoy-dump", &v1.name, "-n", NS]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(&saved, &out.stdout).unwrap();
    let saved = saved.to_str().unwrap();
    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "diff",
            "-f",
            saved,
            "deploy/recommendation-v1",
            "-n",
            NS,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        "Clusters Match\nListeners Match\nRoutes Match\nSecrets Match\n",
        "{}",
        show(&out)
    );
    assert!(out.stderr.is_empty(), "{}", show(&out));
}
