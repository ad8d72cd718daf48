//! Server-side printing: `meta.k8s.io/v1` Table answers for `kubectl get`, with the columns
//! the real apiserver prints for the common kinds and NAME/AGE for everything else.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::clock;
use super::registry::ResourceType;

/// kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`.
pub(crate) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .any(|part| part.split(';').skip(1).any(|p| p.trim() == "as=Table"))
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let mut c =
        json!({"name": name, "type": ty, "format": "", "description": name, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
        c["description"] = json!("Name must be unique within a namespace.");
    }
    c
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    let s = |n: &str| col(n, "string", 0);
    let i = |n: &str| col(n, "integer", 0);
    let w = |n: &str| col(n, "string", 1);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => vec![
            s("Name"),
            s("Ready"),
            s("Status"),
            i("Restarts"),
            s("Age"),
            w("IP"),
            w("Node"),
            w("Nominated Node"),
            w("Readiness Gates"),
        ],
        ("apps", "Deployment") => vec![
            s("Name"),
            s("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Age"),
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        ("apps", "ReplicaSet") => vec![
            s("Name"),
            i("Desired"),
            i("Current"),
            i("Ready"),
            s("Age"),
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        ("", "Service") => vec![
            s("Name"),
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            s("Age"),
            w("Selector"),
        ],
        ("", "Namespace") => vec![s("Name"), s("Status"), s("Age")],
        ("", "Secret") => vec![s("Name"), s("Type"), i("Data"), s("Age")],
        ("", "ConfigMap") => vec![s("Name"), i("Data"), s("Age")],
        ("", "ServiceAccount") => vec![s("Name"), i("Secrets"), s("Age")],
        _ => vec![s("Name"), s("Age")],
    }
}

fn str_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or(default)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn age(obj: &Value, now: SystemTime) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(clock::parse)
        .map(|t| clock::human_duration(t, now))
        .unwrap_or_else(|| "<unknown>".into())
}

fn selector_string(sel: &Value) -> String {
    let Some(m) = sel.as_object() else {
        return "<none>".into();
    };
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

fn containers_images(template_spec: &Value) -> (String, String) {
    let cs = template_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

fn pod_cells(obj: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let total = spec["containers"].as_array().map_or(0, Vec::len);
    let statuses = status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
    let mut reason = str_or(&status["reason"], str_or(&status["phase"], "Unknown")).to_string();
    for c in statuses.iter().rev() {
        if let Some(r) = c["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
            break;
        }
        if let Some(r) = c["state"]["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
            break;
        }
    }
    if obj["metadata"]["deletionTimestamp"].is_string() {
        reason = "Terminating".into();
    }
    vec![
        obj["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(age(obj, now)),
        json!(str_or(&status["podIP"], "<none>")),
        json!(str_or(&spec["nodeName"], "<none>")),
        json!("<none>"),
        json!("<none>"),
    ]
}

fn cells(rt: &ResourceType, obj: &Value, now: SystemTime) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    let spec = &obj["spec"];
    let status = &obj["status"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => pod_cells(obj, now),
        ("apps", "Deployment") | ("apps", "ReplicaSet") => {
            let (cs, imgs) = containers_images(&spec["template"]["spec"]);
            let sel = selector_string(&spec["selector"]["matchLabels"]);
            let replicas = spec["replicas"].as_i64().unwrap_or(1);
            if rt.kind == "Deployment" {
                vec![
                    name,
                    json!(format!("{}/{replicas}", int(&status["readyReplicas"]))),
                    json!(int(&status["updatedReplicas"])),
                    json!(int(&status["availableReplicas"])),
                    json!(age(obj, now)),
                    json!(cs),
                    json!(imgs),
                    json!(sel),
                ]
            } else {
                vec![
                    name,
                    json!(replicas),
                    json!(int(&status["replicas"])),
                    json!(int(&status["readyReplicas"])),
                    json!(age(obj, now)),
                    json!(cs),
                    json!(imgs),
                    json!(sel),
                ]
            }
        }
        ("", "Service") => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let proto = str_or(&p["protocol"], "TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", int(&p["port"])),
                        None => format!("{}/{proto}", int(&p["port"])),
                    }
                })
                .collect();
            vec![
                name,
                json!(str_or(&spec["type"], "ClusterIP")),
                json!(str_or(&spec["clusterIP"], "<none>")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(age(obj, now)),
                json!(selector_string(&spec["selector"])),
            ]
        }
        ("", "Namespace") => vec![
            name,
            json!(str_or(&status["phase"], "Active")),
            json!(age(obj, now)),
        ],
        ("", "Secret") => vec![
            name,
            json!(str_or(&obj["type"], "Opaque")),
            json!(obj["data"].as_object().map_or(0, |m| m.len())),
            json!(age(obj, now)),
        ],
        ("", "ConfigMap") => vec![
            name,
            json!(
                obj["data"].as_object().map_or(0, |m| m.len())
                    + obj["binaryData"].as_object().map_or(0, |m| m.len())
            ),
            json!(age(obj, now)),
        ],
        ("", "ServiceAccount") => vec![
            name,
            json!(obj["secrets"].as_array().map_or(0, Vec::len)),
            json!(age(obj, now)),
        ],
        _ => vec![name, json!(age(obj, now))],
    }
}

/// How much of each object goes into `rows[].object` (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_param(p: Option<&str>) -> Include {
        match p {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// A Table of `objects` (already in the served version).
pub(crate) fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: Option<&str>,
    include: Include,
    with_columns: bool,
) -> Value {
    let now = SystemTime::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(rt, o, now)});
            match include {
                Include::None => {}
                Include::Object => row["object"] = o.clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(columns(rt));
    }
    if let Some(rv) = resource_version {
        t["metadata"]["resourceVersion"] = json!(rv);
    }
    t
}
