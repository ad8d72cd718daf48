//! docs/rbac.md is true: each documented Role is enough for its commands, and each rule in it is
//! needed — taking it away makes a command fail with a message that names the rule.

use std::path::Path;

use meshsim::world::World;

use crate::support::{PluginPath, run, show};

const APP_NS: &str = "olaf-customer";
const ISTIO_NS: &str = "olaf";

/// (verb, resource with group suffix, namespace) triples of one Role.
type Grant = (String, String, Option<String>);

struct Role {
    name: String,
    commands: Vec<String>,
    grants: Vec<Grant>,
}

fn roles() -> Vec<Role> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rbac.md"))
            .unwrap();
    let mut out = Vec::new();
    for block in doc.split("```yaml").skip(1) {
        let yaml = block.split("```").next().unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let ns = v["metadata"]["namespace"]
            .as_str()
            .map(|n| subst_ns(n).to_string());
        let mut grants = Vec::new();
        for rule in v["rules"].as_array().unwrap() {
            let group = rule["apiGroups"][0].as_str().unwrap_or("");
            for r in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let res = if group.is_empty() {
                        r.as_str().unwrap().to_string()
                    } else {
                        format!("{}.{group}", r.as_str().unwrap())
                    };
                    grants.push((verb.as_str().unwrap().to_string(), res, ns.clone()));
                }
            }
        }
        let commands = v["metadata"]["annotations"]["meshdebug.io/commands"]
            .as_str()
            .unwrap()
            .split("; ")
            .map(str::to_string)
            .collect();
        out.push(Role {
            name: v["metadata"]["name"].as_str().unwrap().to_string(),
            commands,
            grants,
        });
    }
    assert!(out.len() >= 4, "docs/rbac.md has its Roles");
    out
}

fn subst_ns(n: &str) -> &str {
    match n {
        "APP_NAMESPACE" => APP_NS,
        "ISTIO_NAMESPACE" => ISTIO_NS,
        other => other,
    }
}

fn grant(world: &World, grants: &[Grant]) {
    world.apiserver().faults().grant_only(
        grants
            .iter()
            .map(|(v, r, ns)| (vec![v.clone()], vec![r.clone()], ns.clone()))
            .collect(),
    );
}

fn argv(world: &World, cmd: &str) -> Vec<String> {
    let pod = world.pod(APP_NS, "customer").unwrap().name;
    let mut args: Vec<String> = cmd
        .replace("ISTIO_NAMESPACE", ISTIO_NS)
        .replace("DEPLOYMENT", "customer")
        .replace("APP", "recommendation")
        .split_whitespace()
        .map(|w| {
            if w == "POD" {
                pod.clone()
            } else {
                w.to_string()
            }
        })
        .collect();
    if !args.iter().any(|a| a == "-i" || a == "-n") {
        args.extend(["-n".to_string(), APP_NS.to_string()]);
    }
    args
}

fn check_role(role: &Role) {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    grant(&world, &role.grants);
    for cmd in &role.commands {
        let args = argv(&world, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&pp, &world, &args);
        assert!(
            out.status.success(),
            "{}: `kubectl {cmd}` with exactly its Role: {}",
            role.name,
            show(&out)
        );
    }
    for (i, (verb, res, _)) in role.grants.iter().enumerate() {
        let mut fewer = role.grants.clone();
        fewer.remove(i);
        grant(&world, &fewer);
        let resource = res.split('.').next().unwrap();
        let named = role.commands.iter().any(|cmd| {
            let args = argv(&world, cmd);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&pp, &world, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            out.status.code() == Some(2) && err.contains(&format!("'{verb}' on {resource}"))
        });
        assert!(
            named,
            "{}: without '{verb}' on {res} a command must fail and name the rule",
            role.name
        );
    }
}

#[test]
fn envoy_dump_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-envoy-dump")
            .unwrap(),
    );
}

#[test]
fn envoy_log_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-envoy-log")
            .unwrap(),
    );
}

#[test]
fn envoy_log_istiod_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-envoy-log-istiod")
            .unwrap(),
    );
}

#[test]
fn mesh_sync_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-mesh-sync")
            .unwrap(),
    );
}
