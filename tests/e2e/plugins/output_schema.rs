//! docs/output.md is the contract of `-o json`: every field it lists for a kind is in the
//! output (nothing renamed or removed), and every top-level field of the output is listed there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use meshsim::world::World;

use crate::support::{PluginPath, run, show};

struct Documented {
    required: BTreeSet<String>,
    all: BTreeSet<String>,
}

fn documented() -> BTreeMap<String, Documented> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/output.md"))
            .unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            current = Some(h.split_whitespace().next().unwrap().to_string());
            out.insert(
                current.clone().unwrap(),
                Documented {
                    required: BTreeSet::new(),
                    all: BTreeSet::new(),
                },
            );
            continue;
        }
        let (Some(kind), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.splitn(2, " | ").collect();
        let optional = cells.get(1).is_some_and(|m| m.contains("*optional*"));
        let d = out.get_mut(kind).unwrap();
        for name in cells[0]
            .split('`')
            .filter(|n| !n.trim().is_empty() && !n.contains(',') && !n.contains('|'))
        {
            d.all.insert(name.to_string());
            if !optional {
                d.required.insert(name.to_string());
            }
        }
    }
    out
}

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/istio")
        .join(p)
        .display()
        .to_string()
}

#[test]
fn json_output_matches_docs_output_md() {
    let docs = documented();
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let ns = "olaf-customer";
    let pod = world.pod(ns, "customer").unwrap().name;
    let spire = fixture("current/pc-secret/spire/config_dump.json");
    let syncz = fixture("current/ps-xds/multiXdsStatusSinglePilot.json");
    let dump = world.temp_dir().join("customer.json");
    let out = run(&pp, &world, &["envoy-dump", &pod, "-n", ns]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(&dump, &out.stdout).unwrap();
    let dump = dump.display().to_string();
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuY29tIiwiYXVkIjoieCJ9.c2ln";
    let commands: Vec<Vec<&str>> = vec![
        vec!["envoy-dump", "clusters", &pod, "-n", ns],
        vec![
            "envoy-dump",
            "clusters",
            "-l",
            "app=recommendation",
            "-n",
            ns,
        ],
        vec!["envoy-dump", "listeners", &pod, "-n", ns],
        vec!["envoy-dump", "routes", &pod, "-n", ns],
        vec!["envoy-dump", "endpoints", &pod, "-n", ns],
        vec!["envoy-dump", "secrets", "-f", &spire],
        vec!["envoy-dump", "bootstrap", &pod, "-n", ns],
        vec!["envoy-dump", "jwt", &pod, "-n", ns],
        vec!["envoy-dump", "rbac", &pod, "-n", ns],
        vec!["envoy-dump", "stats", &pod, "-n", ns, "--filter", "server"],
        vec!["envoy-log", &pod, "-n", ns],
        vec![
            "envoy-log",
            "-l",
            "app=recommendation",
            "-n",
            ns,
            "rbac=info",
        ],
        vec!["envoy-log", "--istiod"],
        vec!["mesh-sync", "-A"],
        vec!["mesh-sync", "-f", &syncz],
        vec!["mesh-sync", &pod, "-n", ns],
        vec!["jwks-trust", "check", "-A"],
        vec!["jwks-trust", "token", token, "-f", &dump],
        vec!["envoy-dump", "diff", "-f", &dump, &pod, "-n", ns],
    ];
    let mut seen: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for cmd in &commands {
        let mut args = cmd.clone();
        args.extend(["-o", "json"]);
        let out = run(&pp, &world, &args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("kubectl {}: not JSON ({e}): {}", args.join(" "), show(&out))
        });
        assert_eq!(
            v["apiVersion"],
            "meshdebug.io/v1",
            "kubectl {}",
            args.join(" ")
        );
        let kind = v["kind"].as_str().unwrap().to_string();
        if kind == "ConfigDiff" {
            for f in ["from", "to", "match", "sections"] {
                assert!(v.get(f).is_some(), "ConfigDiff has {f}: {v}");
            }
            continue;
        }
        let entry = seen.entry(kind.clone()).or_default();
        for item in v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} has items"))
        {
            entry.1 += 1;
            entry.0.extend(item.as_object().unwrap().keys().cloned());
        }
    }
    for (kind, (fields, items)) in &seen {
        let d = docs
            .get(kind)
            .unwrap_or_else(|| panic!("kind {kind} is not in docs/output.md"));
        let undocumented: Vec<_> = fields.difference(&d.all).collect();
        assert!(
            undocumented.is_empty(),
            "{kind}: fields {undocumented:?} are not in docs/output.md"
        );
        if *items > 0 {
            let missing: Vec<_> = d.required.difference(fields).collect();
            assert!(
                missing.is_empty(),
                "{kind}: documented fields {missing:?} are missing (renamed or removed?)"
            );
        }
    }
    for kind in [
        "ClusterList",
        "ListenerList",
        "RouteList",
        "EndpointList",
        "SecretList",
        "JwtProviderList",
        "LoggerList",
        "LoggerChangeList",
        "ScopeList",
        "ProxyStatusList",
        "ProxyConfigComparisonList",
        "JwtRuleCheckList",
        "TokenDiagnosisList",
    ] {
        assert!(
            seen.get(kind).is_some_and(|(_, n)| *n > 0),
            "{kind} was exercised with at least one item: {:?}",
            seen.keys()
        );
    }
}
