//! kubectl mesh-sync against the world's istiod stand-ins: their `/debug/syncz` and
//! `/debug/config_dump?proxyID=` mirror a real ADS server that real Envoys are connected to.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use meshsim::scenario::{Down, Scenario};
use meshsim::world::{World, WorldOptions};
use meshsim::xds::{LISTENER, ProxyResources, TYPES};
use serde_json::Value;

use crate::support::{PluginPath, run, show, stdout};

const NS: &str = "olaf-customer";
const WAIT: Duration = Duration::from_secs(30);

/// A kubectl table as rows of header → cell, cut at the columns' start in the header line
/// (cells such as `NOT SENT` contain spaces).
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return vec![];
    };
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' '))
        .collect();
    lines
        .map(|l| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &s)| {
                    let end = starts.get(n + 1).copied().unwrap_or(l.len()).min(l.len());
                    let name = header[s..].split_whitespace().next().unwrap().to_string();
                    (
                        name,
                        l.get(s.min(end)..end).unwrap_or("").trim().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The row of a proxy (`<pod>.<namespace>`).
fn row<'a>(rows: &'a [BTreeMap<String, String>], proxy: &str) -> &'a BTreeMap<String, String> {
    rows.iter()
        .find(|r| r["NAME"] == proxy)
        .unwrap_or_else(|| panic!("no row for {proxy} in {rows:#?}"))
}

/// Every pod with a proxy connected to an istiod, by proxy id → its istiod pod.
fn connected(world: &World) -> BTreeMap<String, String> {
    world
        .pods()
        .into_iter()
        .filter_map(|p| Some((p.proxy_id.clone(), p.istiod.clone()?)))
        .collect()
}

/// The seed with `replicas` istio-pilot pods (the ones listed in `down` not serving).
fn seed_with_replicas(replicas: u32, down: Down) -> World {
    let mut s = Scenario::load("seed").unwrap();
    let pilot = s
        .workloads
        .iter_mut()
        .find(|w| w.name == "istio-pilot")
        .unwrap();
    pilot.replicas = replicas;
    pilot.down = down;
    start(s)
}

fn start(s: Scenario) -> World {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(World::start_with(s, WorldOptions::default()))
        .unwrap()
}

#[test]
fn the_seed_world_is_in_sync() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let all = connected(&world);
    assert_eq!(all.len(), 6, "{all:?}");

    for args in [
        &["mesh-sync", "-A"][..],
        &["mesh-sync", "-i", "olaf"],
        &["mesh-sync", "-n", NS],
    ] {
        let out = run(&pp, &world, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", show(&out));
        let rows = table(&stdout(&out));
        let expected: Vec<&String> = all
            .keys()
            .filter(|id| !args.contains(&"-n") || id.ends_with(&format!(".{NS}")))
            .collect();
        let names: Vec<&String> = rows.iter().map(|r| &r["NAME"]).collect();
        assert_eq!(names, expected, "{args:?}\n{}", show(&out));
        for r in &rows {
            for t in ["CDS", "LDS", "EDS"] {
                assert_eq!(r[t], "SYNCED", "{args:?} {t} of {}", r["NAME"]);
            }
            // gateways have no routes: nothing sent is not a lag
            let rds = if r["NAME"].contains("gateway") {
                "NOT SENT"
            } else {
                "SYNCED"
            };
            assert_eq!(r["RDS"], rds, "{args:?} RDS of {}", r["NAME"]);
            assert_eq!(r["ISTIOD"], pilot.name);
            assert_eq!(r["VERSION"], "1.4.8");
        }
    }
    // a healthy world passes --check and --wait at once
    let out = run(&pp, &world, &["mesh-sync", "-A", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = run(
        &pp,
        &world,
        &["mesh-sync", "-A", "--wait", "--timeout", "20s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // -o json: the ProxyStatusList envelope, one item per proxy, whatever the count
    let out = run(&pp, &world, &["mesh-sync", "-A", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "meshdebug.io/v1");
    assert_eq!(v["kind"], "ProxyStatusList");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    let customer = items
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with("customer-"))
        .unwrap();
    assert_eq!(customer["namespace"], NS);
    assert_eq!(customer["istiod"], pilot.name.as_str());
    assert_eq!(customer["lds"]["state"], "SYNCED");
    assert_eq!(customer["lds"]["sent"], customer["lds"]["acked"]);
    let out = run(&pp, &world, &["mesh-sync", "-n", "olaf", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "ProxyStatusList");
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "the gateways");
    // nothing there: still the envelope, an empty list
    let out = run(&pp, &world, &["mesh-sync", "-n", "nowhere", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "ProxyStatusList");
    assert_eq!(v["items"], serde_json::json!([]));
}

/// A push the Envoy rejects (runtime `push_invalid`): only that proxy lags; --check and
/// --wait say so; once istiod pushes a valid config again, a waiting --wait returns 0.
#[test]
fn a_nacked_push_is_reported_for_that_proxy_only() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    let node = customer.node_id.clone().unwrap();
    let xds = world.xds_for(NS, "customer").unwrap();
    xds.push_invalid(&node, LISTENER);
    world
        .handle()
        .block_on(xds.wait_for(WAIT, |all| {
            all.iter()
                .find(|p| p.node_id == node)?
                .type_status(LISTENER)?
                .last_error
                .clone()
        }))
        .unwrap();

    let out = run(&pp, &world, &["mesh-sync", "-A"]);
    assert_eq!(out.status.code(), Some(0), "no --check: {}", show(&out));
    let rows = table(&stdout(&out));
    assert_eq!(rows.len(), 6, "{}", show(&out));
    let lds = &row(&rows, &customer.proxy_id)["LDS"];
    assert!(
        lds.starts_with("STALE") || lds == "ERROR",
        "customer LDS: {lds}\n{}",
        show(&out)
    );
    for r in rows.iter().filter(|r| r["NAME"] != customer.proxy_id) {
        assert_eq!(r["LDS"], "SYNCED", "{}", r["NAME"]);
        assert_eq!(r["CDS"], "SYNCED", "{}", r["NAME"]);
    }
    assert_eq!(row(&rows, &customer.proxy_id)["CDS"], "SYNCED");

    let out = run(&pp, &world, &["mesh-sync", "-A", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&customer.proxy_id), "{err}");
    assert!(err.contains("LDS"), "{err}");
    assert!(!err.contains("preference"), "only the laggard: {err}");

    let started = Instant::now();
    let out = run(
        &pp,
        &world,
        &["mesh-sync", "-A", "--wait", "--timeout", "2s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains(&customer.proxy_id), "lists the laggard: {err}");
    assert!(
        table(&stdout(&out)).len() == 6,
        "the table is printed: {}",
        show(&out)
    );

    // --wait started while the proxy lags; istiod then pushes a valid config: exit 0
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &["mesh-sync", "-A", "--wait", "--timeout", "60s", "-v"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    // its first poll saw the lag (it logs that it polls again)
    loop {
        let line = rx.recv_timeout(WAIT).expect("--wait -v logs its polls");
        if line.contains("not in sync") && line.contains("polling again") {
            break;
        }
    }
    xds.clear_invalid(&node, LISTENER);
    world
        .handle()
        .block_on(xds.wait_synced(&node, TYPES, WAIT))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{err}", stdout(&out));
    let rows = table(&stdout(&out));
    assert_eq!(row(&rows, &customer.proxy_id)["LDS"], "SYNCED");
}

/// The scenario knob `nack: [LDS]`: the Envoy NACKs every listener push after the first.
#[test]
fn the_nack_knob_makes_one_proxy_stale() {
    let mut s = Scenario::load("seed").unwrap();
    s.workloads
        .iter_mut()
        .find(|w| w.name == "preference")
        .unwrap()
        .nack = vec!["LDS".into()];
    let world = start(s);
    let pp = PluginPath::install();
    let preference = world.pod(NS, "preference").unwrap();

    let out = run(&pp, &world, &["mesh-sync", "-n", NS, "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = table(&stdout(&out));
    assert_eq!(rows.len(), 4, "{}", show(&out));
    for r in &rows {
        let lds = &r["LDS"];
        if r["NAME"] == preference.proxy_id {
            assert!(lds.starts_with("STALE") || lds == "ERROR", "{lds}");
        } else {
            assert_eq!(lds, "SYNCED", "{}", r["NAME"]);
        }
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 4 proxies not in sync"), "{err}");
    assert!(err.contains(&preference.proxy_id), "{err}");

    let out = run(
        &pp,
        &world,
        &["mesh-sync", "-n", NS, "--wait", "--timeout", "2s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&preference.proxy_id), "{err}");
    assert!(!err.contains("customer-"), "{err}");
}

/// `mesh-sync POD`: istiod's config for the proxy against the Envoy's own config_dump.
#[test]
fn comparing_one_proxy_with_istiod() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();

    let out = run(&pp, &world, &["mesh-sync", &customer.name, "-n", NS]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "Clusters Match");
    assert_eq!(lines[1], "Listeners Match");
    assert!(lines[2].starts_with("Routes Match"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&customer.istiod.clone().unwrap()), "{err}");
    // pod/NAME and the current namespace of the kubeconfig work too
    let out = run(
        &pp,
        &world,
        &["mesh-sync", &format!("pod/{}", customer.name)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // istiod's view loses a cluster the Envoy still has: a unified diff, exit 1
    let mut view: ProxyResources = world.envoy_resources(NS, "customer").unwrap().into();
    let before = view.clusters.len();
    view.clusters.retain(|c| c["name"] != "BlackHoleCluster");
    assert_eq!(view.clusters.len(), before - 1);
    world.set_istiod_view(NS, "customer", view).unwrap();
    let out = run(&pp, &world, &["mesh-sync", &customer.name, "-n", NS]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Clusters Don't Match\n"), "{text}");
    assert!(text.contains("\n--- Istiod Clusters\n"), "{text}");
    assert!(text.contains("\n+++ Envoy Clusters\n"), "{text}");
    assert!(text.contains("\n@@ "), "a unified diff hunk: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('+') && l.contains("BlackHoleCluster")),
        "the Envoy's extra cluster is an added line: {text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with('-') && !l.starts_with("---")),
        "nothing only istiod has: {text}"
    );
    assert!(text.contains("\nListeners Match\n"), "{text}");

    // -o json: the comparison as data
    let out = run(
        &pp,
        &world,
        &["mesh-sync", &customer.name, "-n", NS, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "ProxyConfigComparisonList");

    // another proxy is untouched; clearing the view makes them match again
    let out = run(
        &pp,
        &world,
        &["mesh-sync", "preference-5b8c6c9d4f-q7wbn", "-n", NS],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    world.clear_istiod_view(NS, "customer").unwrap();
    let out = run(&pp, &world, &["mesh-sync", &customer.name, "-n", NS]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// Two istiod replicas: each answers for its own proxies; the table merges both.
#[test]
fn two_replicas_are_merged() {
    let world = seed_with_replicas(2, Down::default());
    let pp = PluginPath::install();
    let all = connected(&world);
    assert_eq!(all.len(), 6);
    let replicas: std::collections::BTreeSet<&String> = all.values().collect();
    assert_eq!(replicas.len(), 2, "proxies spread over both: {all:?}");

    let out = run(&pp, &world, &["mesh-sync", "-A"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = table(&stdout(&out));
    assert_eq!(rows.len(), 6, "{}", show(&out));
    for (proxy, istiod) in &all {
        let r = row(&rows, proxy);
        assert_eq!(&r["ISTIOD"], istiod, "{proxy}");
        assert_eq!(r["LDS"], "SYNCED", "{proxy}");
    }
    // comparing a proxy asks every replica; the one holding it answers
    let (proxy, istiod) = all
        .iter()
        .find(|(p, i)| p.ends_with(&format!(".{NS}")) && Some(*i) == replicas.last().copied())
        .unwrap();
    let pod = proxy.strip_suffix(&format!(".{NS}")).unwrap();
    let out = run(&pp, &world, &["mesh-sync", pod, "-n", NS]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(istiod.as_str()), "{err}");
}

/// One replica of three is down: named on stderr, the others' proxies still listed, exit 2.
#[test]
fn a_down_replica_is_reported_and_the_rest_shown() {
    let world = seed_with_replicas(3, Down::Replicas(vec![2]));
    let pp = PluginPath::install();
    let pilots: Vec<String> = world
        .pods()
        .into_iter()
        .filter(|p| p.namespace == "olaf" && p.name.starts_with("istio-pilot-"))
        .map(|p| p.name)
        .collect();
    assert_eq!(pilots.len(), 3);
    let down: Vec<&String> = pilots
        .iter()
        .filter(|p| world.replica_for("olaf", p).unwrap().is_down())
        .collect();
    assert_eq!(down.len(), 1);
    let down = down[0];
    let all = connected(&world);
    assert_eq!(all.len(), 6);
    assert!(all.values().all(|i| i != down));

    let out = run(&pp, &world, &["mesh-sync", "-A"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(down.as_str()), "names the down replica: {err}");
    let rows = table(&stdout(&out));
    assert_eq!(rows.len(), 6, "{}", show(&out));
    for (proxy, istiod) in &all {
        assert_eq!(&row(&rows, proxy)["ISTIOD"], istiod);
    }
    for p in pilots.iter().filter(|p| *p != down) {
        assert!(!err.contains(p.as_str()), "only the down one: {err}");
    }
}
