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
    /// Commands with the exit code they end with when allowed (`CMD => N`, default 0).
    commands: Vec<(String, i32)>,
    grants: Vec<Grant>,
}

fn roles() -> Vec<Role> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rbac.md"))
            .unwrap();
    let mut out: Vec<Role> = Vec::new();
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
        let commands: Vec<(String, i32)> = v["metadata"]["annotations"]["meshdebug.io/commands"]
            .as_str()
            .unwrap()
            .split("; ")
            .map(|c| match c.split_once(" => ") {
                Some((c, code)) => (c.to_string(), code.parse().unwrap()),
                None => (c.to_string(), 0),
            })
            .collect();
        // Roles that document the same commands are bound together (e.g. one per namespace).
        if let Some(r) = out.iter_mut().find(|r| r.commands == commands) {
            r.grants.extend(grants);
            continue;
        }
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
    let ca = world.temp_dir().join("rbac-ca.pem");
    if let Some(j) = world.jwks() {
        std::fs::write(&ca, j.ca_pem()).unwrap();
    }
    let mut args: Vec<String> = cmd
        .replace("CA_FILE", &ca.display().to_string())
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
    if !args.iter().any(|a| a == "-n")
        && !cmd.starts_with("envoy-log --istiod")
        && !cmd.starts_with("mesh-sync")
    {
        args.extend(["-n".to_string(), APP_NS.to_string()]);
    }
    args
}

fn check_role(role: &Role) {
    // each command on a fresh world with exactly the Role: writes must not leak between runs
    for (cmd, code) in &role.commands {
        let world = World::start_blocking("seed").unwrap();
        let pp = PluginPath::install();
        grant(&world, &role.grants);
        let args = argv(&world, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&pp, &world, &args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{}: `kubectl {cmd}` with exactly its Role: {}",
            role.name,
            show(&out)
        );
    }
    for (i, (verb, res, _)) in role.grants.iter().enumerate() {
        let mut fewer = role.grants.clone();
        fewer.remove(i);
        let resource = res.split('.').next().unwrap();
        let named = role.commands.iter().any(|(cmd, _)| {
            let world = World::start_blocking("seed").unwrap();
            let pp = PluginPath::install();
            grant(&world, &fewer);
            let args = argv(&world, cmd);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&pp, &world, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            // an error naming the rule in its hint, or a warning quoting the apiserver's 403
            (out.status.code() == Some(2) && err.contains(&format!("'{verb}' on {resource}")))
                || err.contains(&format!("cannot {verb} resource \"{resource}\""))
        });
        assert!(
            named,
            "{}: without '{verb}' on {res} a command must fail or warn, naming the rule",
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

#[test]
fn jwks_trust_check_roles_are_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-jwks-trust-check")
            .unwrap(),
    );
}

#[test]
fn jwks_trust_inline_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-jwks-trust-inline")
            .unwrap(),
    );
}

#[test]
fn jwks_trust_add_ca_role_is_enough_and_minimal() {
    check_role(
        roles()
            .iter()
            .find(|r| r.name == "meshdebug-jwks-trust-add-ca")
            .unwrap(),
    );
}
