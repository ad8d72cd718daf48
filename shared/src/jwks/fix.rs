//! The two fixes, as pure functions on JSON objects plus their read–modify–write:
//! 1. `inline`: replace a rule's `jwksUri` by `jwks`, recording where and when the keys came from;
//! 2. `add-ca`: append CAs to the bundle istiod reads at `/cacerts/extra.pem`, mounting the
//!    Secret `jwks-extra-cacerts` in the `discovery` container when nothing is mounted there.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use super::Error;
use super::policy::PolicyKind;
use crate::cluster::Cluster;

/// Annotation: the URI the inlined keys were fetched from (a JSON object issuer → URI when a
/// policy has several inlined rules).
pub const SOURCE_ANNOTATION: &str = "meshdebug.io/jwks-source";
/// Annotation: when the inlined keys were fetched (RFC 3339).
pub const FETCHED_AT_ANNOTATION: &str = "meshdebug.io/jwks-fetched-at";
/// The Secret add-ca creates.
pub const SECRET_NAME: &str = "jwks-extra-cacerts";
/// The key istiod reads.
pub const BUNDLE_KEY: &str = "extra.pem";
/// Where istiod reads it.
pub const MOUNT_PATH: &str = "/cacerts";
/// istiod's container.
pub const CONTAINER: &str = "discovery";
/// Our volume's name (Helm's is `extracacerts`).
pub const VOLUME_NAME: &str = "jwks-extra-cacerts";
/// Pod-template annotation carrying the bundle hash: a change rolls istiod, which reads the
/// bundle only at start.
pub const HASH_ANNOTATION: &str = "meshdebug.io/extra-cacerts-sha256";

/// The sources recorded in [`SOURCE_ANNOTATION`], by issuer (`*` = the policy's one inlined rule).
pub fn parse_sources(value: &str) -> BTreeMap<String, String> {
    let v = value.trim();
    if v.starts_with('{') {
        serde_json::from_str(v).unwrap_or_default()
    } else if v.is_empty() {
        BTreeMap::new()
    } else {
        [("*".to_string(), v.to_string())].into()
    }
}

fn format_sources(m: &BTreeMap<String, String>) -> String {
    match m.len() {
        1 => m.values().next().cloned().unwrap_or_default(),
        _ => serde_json::to_string(m).unwrap_or_default(),
    }
}

/// Replace `jwksUri` by `jwks` in rule `index` of a policy object, and record the source URI and
/// the fetch time in annotations. Fails if the rule is not there.
pub fn inline_rule(
    object: &Value,
    kind: PolicyKind,
    index: usize,
    jwks: &str,
    source_uri: &str,
    fetched_at: &str,
) -> Result<Value, Error> {
    let mut out = object.clone();
    let pointer = kind.rule_pointer(index);
    let issuer = out
        .pointer(&format!("{pointer}/issuer"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    // Rules already inline (before this change), to name a plain-form source when the map grows.
    let other_inline: Vec<String> = rule_objects(&out, kind)
        .into_iter()
        .filter(|(i, r)| *i != index && r.get("jwks").is_some())
        .map(|(_, r)| {
            r.get("issuer")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let Some(rule) = out.pointer_mut(&pointer).and_then(|r| r.as_object_mut()) else {
        return Err(Error::NothingToInline {
            policy: object_id(object, kind),
            issuer: None,
        });
    };
    rule.remove("jwksUri");
    rule.remove("jwks_uri");
    rule.insert("jwks".into(), Value::String(jwks.to_string()));

    let meta = out
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    let Some(meta) = meta.and_then(|m| m.as_object_mut()) else {
        return Ok(out);
    };
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    if let Some(ann) = ann.as_object_mut() {
        let mut sources = ann
            .get(SOURCE_ANNOTATION)
            .and_then(|v| v.as_str())
            .map(parse_sources)
            .unwrap_or_default();
        if let Some(plain) = sources.remove("*") {
            let key = match other_inline.as_slice() {
                [one] if *one != issuer => one.clone(),
                _ => "*".to_string(),
            };
            if key != issuer {
                sources.insert(key, plain);
            }
        }
        sources.insert(issuer, source_uri.to_string());
        ann.insert(
            SOURCE_ANNOTATION.into(),
            Value::String(format_sources(&sources)),
        );
        ann.insert(
            FETCHED_AT_ANNOTATION.into(),
            Value::String(fetched_at.to_string()),
        );
    }
    Ok(out)
}

fn rule_objects(object: &Value, kind: PolicyKind) -> Vec<(usize, &serde_json::Map<String, Value>)> {
    let list = match kind {
        PolicyKind::RequestAuthentication => object.pointer("/spec/jwtRules"),
        PolicyKind::Policy | PolicyKind::MeshPolicy => object.pointer("/spec/origins"),
    };
    list.and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let r = match kind {
                        PolicyKind::RequestAuthentication => r,
                        _ => r.get("jwt")?,
                    };
                    r.as_object().map(|o| (i, o))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn object_id(object: &Value, kind: PolicyKind) -> String {
    let s = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    format!("{} {}/{}", kind.as_str(), s("namespace"), s("name"))
}

/// A unified diff of two objects as YAML (for `--dry-run`), empty when equal.
pub fn yaml_diff(before: &Value, after: &Value, label: &str) -> String {
    let a = serde_saphyr::to_string(&strip_noise(before)).unwrap_or_default();
    let b = serde_saphyr::to_string(&strip_noise(after)).unwrap_or_default();
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{label} (cluster)"), &format!("{label} (after)"))
        .to_string()
}

fn strip_noise(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
        m.remove("managedFields");
    }
    v
}

/// Where the bundle at `/cacerts` of the discovery container comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BundleSource {
    /// A Secret key.
    Secret {
        /// Secret name.
        name: String,
        /// Key that lands at `/cacerts/extra.pem`.
        key: String,
    },
    /// A ConfigMap key (Helm's `pilot-jwks-extra-cacerts`, Istio 1.4's `istio-jwks-extra-cacerts`).
    ConfigMap {
        /// ConfigMap name.
        name: String,
        /// Key.
        key: String,
    },
    /// Something else (projected, hostPath, CSI …).
    Other {
        /// What it is.
        description: String,
    },
}

impl BundleSource {
    /// `secret/x key extra.pem`.
    pub fn describe(&self) -> String {
        match self {
            BundleSource::Secret { name, key } => format!("secret/{name} (key {key})"),
            BundleSource::ConfigMap { name, key } => format!("configmap/{name} (key {key})"),
            BundleSource::Other { description } => description.clone(),
        }
    }
}

fn containers_mut(d: &mut Value) -> Option<&mut Vec<Value>> {
    d.pointer_mut("/spec/template/spec/containers")?
        .as_array_mut()
}

fn discovery(d: &Value) -> Option<&Value> {
    d.pointer("/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(CONTAINER))
}

/// The volume mounted at `/cacerts` in the discovery container, and what it holds.
pub fn mounted_bundle(d: &Value) -> Option<(String, BundleSource)> {
    let mount = discovery(d)?
        .get("volumeMounts")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("mountPath")
                .and_then(|p| p.as_str())
                .map(|p| p.trim_end_matches('/'))
                == Some(MOUNT_PATH)
        })?;
    let vol_name = mount.get("name")?.as_str()?.to_string();
    let vol = d
        .pointer("/spec/template/spec/volumes")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(|n| n.as_str()) == Some(vol_name.as_str()))?;
    let key_of = |src: &Value| -> String {
        src.get("items")
            .and_then(|i| i.as_array())
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get("path").and_then(|p| p.as_str()) == Some(BUNDLE_KEY))
            })
            .and_then(|i| i.get("key").and_then(|k| k.as_str()))
            .unwrap_or(BUNDLE_KEY)
            .to_string()
    };
    let source = if let Some(s) = vol.get("secret") {
        BundleSource::Secret {
            name: s
                .get("secretName")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string(),
            key: key_of(s),
        }
    } else if let Some(c) = vol.get("configMap") {
        BundleSource::ConfigMap {
            name: c
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string(),
            key: key_of(c),
        }
    } else {
        let kind = vol
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name").cloned())
            .unwrap_or_else(|| "unknown".into());
        BundleSource::Other {
            description: format!("volume {vol_name} ({kind})"),
        }
    };
    Some((vol_name, source))
}

/// Mount Secret `secret` at `/cacerts` in the discovery container (unless something is mounted
/// there already) and set the bundle hash on the pod template. Returns the new object and
/// whether anything changed: applying it twice changes nothing the second time.
pub fn add_cacerts(d: &Value, secret: &str, bundle_hash: &str) -> Result<(Value, bool), Error> {
    let mut out = d.clone();
    if discovery(&out).is_none() {
        return Err(Error::NoIstiod {
            namespace: d
                .pointer("/metadata/namespace")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
        });
    }
    if mounted_bundle(&out).is_none() {
        let spec = out
            .pointer_mut("/spec/template/spec")
            .and_then(|s| s.as_object_mut());
        if let Some(spec) = spec {
            let vols = spec.entry("volumes").or_insert_with(|| json!([]));
            if let Some(vols) = vols.as_array_mut() {
                vols.retain(|v| v.get("name").and_then(|n| n.as_str()) != Some(VOLUME_NAME));
                vols.push(json!({"name": VOLUME_NAME, "secret": {"secretName": secret, "optional": true}}));
            }
        }
        if let Some(cs) = containers_mut(&mut out) {
            for c in cs.iter_mut() {
                if c.get("name").and_then(|n| n.as_str()) != Some(CONTAINER) {
                    continue;
                }
                if let Some(c) = c.as_object_mut() {
                    let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                    if let Some(m) = mounts.as_array_mut() {
                        m.retain(|m| m.get("name").and_then(|n| n.as_str()) != Some(VOLUME_NAME));
                        m.push(
                            json!({"name": VOLUME_NAME, "mountPath": MOUNT_PATH, "readOnly": true}),
                        );
                    }
                }
            }
        }
    }
    set_template_annotation(&mut out, HASH_ANNOTATION, Some(bundle_hash));
    let changed = out != *d;
    Ok((out, changed))
}

/// Undo [`add_cacerts`]: remove our volume and mount and the hash annotation. A bundle mounted
/// by someone else (Helm's ConfigMap) is left alone.
pub fn remove_cacerts(d: &Value) -> (Value, bool) {
    let mut out = d.clone();
    if let Some(vols) = out
        .pointer_mut("/spec/template/spec/volumes")
        .and_then(|v| v.as_array_mut())
    {
        vols.retain(|v| v.get("name").and_then(|n| n.as_str()) != Some(VOLUME_NAME));
    }
    if let Some(cs) = containers_mut(&mut out) {
        for c in cs.iter_mut() {
            if let Some(m) = c.get_mut("volumeMounts").and_then(|m| m.as_array_mut()) {
                m.retain(|m| m.get("name").and_then(|n| n.as_str()) != Some(VOLUME_NAME));
            }
        }
    }
    set_template_annotation(&mut out, HASH_ANNOTATION, None);
    let changed = out != *d;
    (out, changed)
}

/// Set (or with `None` remove) a pod-template annotation, bumping only on change.
pub fn set_template_annotation(d: &mut Value, key: &str, value: Option<&str>) {
    let Some(tmpl) = d
        .pointer_mut("/spec/template")
        .and_then(|t| t.as_object_mut())
    else {
        return;
    };
    let meta = tmpl.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    match value {
        Some(v) => {
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(key.into(), Value::String(v.to_string()));
            }
        }
        None => {
            if let Some(a) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                a.remove(key);
            }
        }
    }
}

/// The first 16 hex digits of the SHA-256 of a bundle.
pub fn bundle_hash(bundle: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bundle.as_bytes());
    d.as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who manages the istiod Deployment (and may revert a hand-made change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Manager {
    /// istio-operator (`install.operator.istio.io/owning-resource`).
    IstioOperator {
        /// The IstioOperator resource.
        owner: String,
    },
    /// Maistra / OpenShift Service Mesh (`maistra.io/owner`, ServiceMeshControlPlane).
    Maistra {
        /// The SMCP (namespace/name or name).
        owner: String,
    },
    /// The Sail operator (owner `IstioRevision`).
    Sail {
        /// The owner.
        owner: String,
    },
    /// Helm (`app.kubernetes.io/managed-by: Helm`).
    Helm {
        /// The release, if annotated.
        release: String,
    },
}

impl Manager {
    /// What to set so the CA survives the next update.
    pub fn permanent_setting(&self) -> String {
        match self {
            Manager::IstioOperator { owner } => format!(
                "set spec.values.pilot.jwksResolverExtraRootCA (the PEM) in IstioOperator {owner}"
            ),
            Manager::Maistra { owner } => format!(
                "set spec.security.jwksResolverCA (the PEM) in ServiceMeshControlPlane {owner}"
            ),
            Manager::Sail { owner } => format!(
                "set spec.values.pilot.jwksResolverExtraRootCA (the PEM) in the Istio resource owning {owner}"
            ),
            Manager::Helm { release } => format!(
                "helm upgrade {} istio/istiod --reuse-values --set-file pilot.jwksResolverExtraRootCA=ca.pem",
                if release.is_empty() {
                    "<release>"
                } else {
                    release
                }
            ),
        }
    }

    /// `istio-operator`, `Maistra`, …
    pub fn name(&self) -> &'static str {
        match self {
            Manager::IstioOperator { .. } => "istio-operator",
            Manager::Maistra { .. } => "the Maistra / OpenShift Service Mesh operator",
            Manager::Sail { .. } => "the Sail operator",
            Manager::Helm { .. } => "Helm",
        }
    }
}

/// Detect the manager from labels, annotations and ownerReferences.
pub fn manager_of(d: &Value) -> Option<Manager> {
    let s = |p: &str| d.pointer(p).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(o) = s("/metadata/labels/install.operator.istio.io~1owning-resource") {
        return Some(Manager::IstioOperator { owner: o });
    }
    let owners: Vec<(String, String)> = d
        .pointer("/metadata/ownerReferences")
        .and_then(|o| o.as_array())
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o.get("kind")
                            .and_then(|k| k.as_str())
                            .unwrap_or("")
                            .to_string(),
                        o.get("name")
                            .and_then(|k| k.as_str())
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = s("/metadata/labels/maistra.io~1owner") {
        return Some(Manager::Maistra { owner: o });
    }
    if let Some((_, n)) = owners.iter().find(|(k, _)| k == "ServiceMeshControlPlane") {
        return Some(Manager::Maistra { owner: n.clone() });
    }
    if let Some((k, n)) = owners
        .iter()
        .find(|(k, _)| k == "IstioRevision" || k == "Istio")
    {
        return Some(Manager::Sail {
            owner: format!("{k} {n}"),
        });
    }
    if s("/metadata/labels/app.kubernetes.io~1managed-by").as_deref() == Some("Helm")
        || s("/metadata/annotations/meta.helm.sh~1release-name").is_some()
    {
        return Some(Manager::Helm {
            release: s("/metadata/annotations/meta.helm.sh~1release-name").unwrap_or_default(),
        });
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Cluster side.

/// The istiod/istio-pilot Deployment of a namespace (`name` picks one of several).
pub async fn find_istiod(
    cluster: &Cluster,
    ns: &str,
    name: Option<&str>,
) -> Result<Vec<Deployment>, crate::Error> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    if let Some(n) = name {
        let d = cluster
            .call(format!("get deployment {ns}/{n}"), api.get(n))
            .await?;
        return Ok(vec![d]);
    }
    let list = cluster
        .call(
            format!("list deployments in {ns}"),
            api.list(&ListParams::default()),
        )
        .await?;
    let mut found: Vec<Deployment> = list
        .items
        .into_iter()
        .filter(|d| {
            d.spec
                .template
                .spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.name == CONTAINER))
        })
        .collect();
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if found.is_empty() {
        return Err(Error::NoIstiod {
            namespace: ns.to_string(),
        }
        .into());
    }
    Ok(found)
}

/// Exactly one istiod.
pub async fn one_istiod(
    cluster: &Cluster,
    ns: &str,
    name: Option<&str>,
) -> Result<Deployment, crate::Error> {
    let mut all = find_istiod(cluster, ns, name).await?;
    if all.len() > 1 {
        return Err(Error::ManyIstiod {
            namespace: ns.to_string(),
            names: all.iter().filter_map(|d| d.metadata.name.clone()).collect(),
        }
        .into());
    }
    all.pop().ok_or_else(|| {
        Error::NoIstiod {
            namespace: ns.to_string(),
        }
        .into()
    })
}

/// Read the bundle of a source: `None` when the object or key does not exist.
pub async fn read_bundle(
    cluster: &Cluster,
    ns: &str,
    source: &BundleSource,
) -> Result<Option<String>, crate::Error> {
    match source {
        BundleSource::Secret { name, key } => {
            let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
            let s = cluster
                .call(format!("get secret {ns}/{name}"), api.get_opt(name))
                .await?;
            Ok(s.and_then(|s| s.data)
                .and_then(|d| d.get(key).cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned()))
        }
        BundleSource::ConfigMap { name, key } => {
            let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
            let c = cluster
                .call(format!("get configmap {ns}/{name}"), api.get_opt(name))
                .await?;
            Ok(c.and_then(|c| c.data).and_then(|d| d.get(key).cloned()))
        }
        BundleSource::Other { .. } => Ok(None),
    }
}

/// Write a bundle (create the object if absent; read–modify–write with resourceVersion,
/// re-reading once on a conflict). `change` maps the current bundle to the new one.
pub async fn write_bundle<F>(
    cluster: &Cluster,
    ns: &str,
    source: &BundleSource,
    change: F,
) -> Result<bool, crate::Error>
where
    F: Fn(&str) -> Result<Option<String>, Error>,
{
    for _attempt in 0..2 {
        let done = match source {
            BundleSource::Secret { name, key } => {
                let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
                let cur = cluster
                    .call(format!("get secret {ns}/{name}"), api.get_opt(name))
                    .await?;
                let text = cur
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default();
                let Some(new) = change(&text)? else {
                    return Ok(false);
                };
                match cur {
                    Some(mut s) => {
                        s.data
                            .get_or_insert_with(Default::default)
                            .insert(key.clone(), ByteString(new.into_bytes()));
                        let r = cluster
                            .call(
                                format!("update secret {ns}/{name}"),
                                api.replace(name, &PostParams::default(), &s),
                            )
                            .await;
                        conflict_or(r)?
                    }
                    None => {
                        let s = Secret {
                            metadata: kube::api::ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(ns.to_string()),
                                labels: Some(
                                    [(
                                        "app.kubernetes.io/managed-by".to_string(),
                                        "kubectl-jwks-trust".to_string(),
                                    )]
                                    .into(),
                                ),
                                ..Default::default()
                            },
                            data: Some([(key.clone(), ByteString(new.into_bytes()))].into()),
                            ..Default::default()
                        };
                        let r = cluster
                            .call(
                                format!("create secret {ns}/{name}"),
                                api.create(&PostParams::default(), &s),
                            )
                            .await;
                        conflict_or(r)?
                    }
                }
            }
            BundleSource::ConfigMap { name, key } => {
                let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
                let cur = cluster
                    .call(format!("get configmap {ns}/{name}"), api.get_opt(name))
                    .await?;
                let Some(mut cm) = cur else {
                    return Err(Error::ForeignMount {
                        deployment: ns.to_string(),
                        source_desc: format!("configmap/{name}, which does not exist"),
                    }
                    .into());
                };
                let text = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .cloned()
                    .unwrap_or_default();
                let Some(new) = change(&text)? else {
                    return Ok(false);
                };
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert(key.clone(), new);
                let r = cluster
                    .call(
                        format!("update configmap {ns}/{name}"),
                        api.replace(name, &PostParams::default(), &cm),
                    )
                    .await;
                conflict_or(r)?
            }
            BundleSource::Other { description } => {
                return Err(Error::ForeignMount {
                    deployment: ns.to_string(),
                    source_desc: description.clone(),
                }
                .into());
            }
        };
        if done {
            return Ok(true);
        }
    }
    Err(Error::Conflict {
        what: format!("{} in {ns}", source.describe()),
    }
    .into())
}

/// Delete our Secret; `false` when it was not there.
pub async fn delete_secret(cluster: &Cluster, ns: &str, name: &str) -> Result<bool, crate::Error> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let r = cluster
        .call(
            format!("delete secret {ns}/{name}"),
            api.delete(name, &Default::default()),
        )
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn conflict_or<T>(r: Result<T, crate::cluster::Error>) -> Result<bool, crate::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(409) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Read–modify–write a Deployment: `change` gets the current object and returns the new one
/// (or `None` for no change). On a 409 the Deployment is re-read and `change` applied once more.
pub async fn update_deployment<F>(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    change: F,
) -> Result<bool, crate::Error>
where
    F: Fn(&Value) -> Result<Option<Value>, Error>,
{
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    for _attempt in 0..2 {
        let cur = cluster
            .call(format!("get deployment {ns}/{name}"), api.get(name))
            .await?;
        let v = serde_json::to_value(&cur).map_err(|source| Error::Encode {
            what: format!("deployment {ns}/{name}"),
            source,
        })?;
        let Some(new) = change(&v)? else {
            return Ok(false);
        };
        let d: Deployment = serde_json::from_value(new).map_err(|source| Error::Encode {
            what: format!("deployment {ns}/{name}"),
            source,
        })?;
        let r = cluster
            .call(
                format!("update deployment {ns}/{name}"),
                api.replace(name, &PostParams::default(), &d),
            )
            .await;
        if conflict_or(r)? {
            return Ok(true);
        }
    }
    Err(Error::Conflict {
        what: format!("deployment {ns}/{name}"),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra() -> Value {
        json!({
            "apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt-olaf", "namespace": "olaf", "resourceVersion": "41"},
            "spec": {"selector": {"matchLabels": {"app": "customer"}},
                     "jwtRules": [
                        {"issuer": "https://sso/realms/olaf", "jwksUri": "https://sso/certs", "forwardOriginalToken": true},
                        {"issuer": "https://other", "jwksUri": "https://other/certs"}
                     ]}
        })
    }

    #[test]
    fn inline_request_authentication_rule() {
        let keys = r#"{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"a","y":"b"}]}"#;
        let out = inline_rule(
            &ra(),
            PolicyKind::RequestAuthentication,
            0,
            keys,
            "https://sso/certs",
            "2026-01-02T03:04:05Z",
        )
        .unwrap();
        let rule = &out["spec"]["jwtRules"][0];
        assert!(rule.get("jwksUri").is_none());
        assert_eq!(rule["jwks"], keys);
        assert_eq!(rule["forwardOriginalToken"], true);
        assert_eq!(out["spec"]["jwtRules"][1]["jwksUri"], "https://other/certs");
        assert_eq!(
            out["metadata"]["annotations"][SOURCE_ANNOTATION],
            "https://sso/certs"
        );
        assert_eq!(
            out["metadata"]["annotations"][FETCHED_AT_ANNOTATION],
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            out["metadata"]["resourceVersion"], "41",
            "kept for the replace"
        );
        // Inlining the second rule too turns the source into a map by issuer.
        let both = inline_rule(
            &out,
            PolicyKind::RequestAuthentication,
            1,
            keys,
            "https://other/certs",
            "t2",
        )
        .unwrap();
        let src = parse_sources(
            both["metadata"]["annotations"][SOURCE_ANNOTATION]
                .as_str()
                .unwrap(),
        );
        assert_eq!(src["https://sso/realms/olaf"], "https://sso/certs");
        assert_eq!(src["https://other"], "https://other/certs");
        // The diff shows the change.
        let d = yaml_diff(&ra(), &out, "requestauthentication olaf/jwt-olaf");
        assert!(d.contains("-    jwksUri: https://sso/certs"), "{d}");
        assert!(d.contains("+    jwks: "), "{d}");
        assert!(yaml_diff(&out, &out, "x").is_empty());
        assert!(inline_rule(&ra(), PolicyKind::RequestAuthentication, 5, keys, "u", "t").is_err());
    }

    #[test]
    fn inline_legacy_policy_rule() {
        let p = json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
            "metadata": {"name": "default", "namespace": "olaf", "annotations": {"keep": "me"}},
            "spec": {"origins": [{"jwt": {"issuer": "i", "jwksUri": "https://u", "jwtHeaders": ["x-jwt"]}}],
                     "principalBinding": "USE_ORIGIN"}
        });
        let out =
            inline_rule(&p, PolicyKind::Policy, 0, "{\"keys\":[]}", "https://u", "t").unwrap();
        let jwt = &out["spec"]["origins"][0]["jwt"];
        assert!(jwt.get("jwksUri").is_none());
        assert_eq!(jwt["jwks"], "{\"keys\":[]}");
        assert_eq!(jwt["jwtHeaders"][0], "x-jwt");
        assert_eq!(out["metadata"]["annotations"]["keep"], "me");
        assert_eq!(
            out["metadata"]["annotations"][SOURCE_ANNOTATION],
            "https://u"
        );
    }

    fn istiod() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": "istio-system",
                         "labels": {"app": "istiod", "install.operator.istio.io/owning-resource": "installed-state"}},
            "spec": {"template": {"metadata": {"labels": {"app": "istiod"}},
                "spec": {"containers": [
                    {"name": "discovery", "image": "pilot", "volumeMounts": [{"name": "local-certs", "mountPath": "/var/run/secrets/istio-dns"}]},
                    {"name": "other"}
                ], "volumes": [{"name": "local-certs", "emptyDir": {"medium": "Memory"}}]}}}
        })
    }

    #[test]
    fn add_cacerts_is_idempotent() {
        let (once, changed) = add_cacerts(&istiod(), SECRET_NAME, "abc").unwrap();
        assert!(changed);
        let mounts = once
            .pointer("/spec/template/spec/containers/0/volumeMounts")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1]["mountPath"], "/cacerts");
        assert!(
            once.pointer("/spec/template/spec/containers/1/volumeMounts")
                .is_none()
        );
        assert_eq!(
            once.pointer("/spec/template/metadata/annotations").unwrap()[HASH_ANNOTATION],
            "abc"
        );
        assert_eq!(
            mounted_bundle(&once).unwrap().1,
            BundleSource::Secret {
                name: SECRET_NAME.into(),
                key: BUNDLE_KEY.into()
            }
        );
        let (twice, changed) = add_cacerts(&once, SECRET_NAME, "abc").unwrap();
        assert!(!changed);
        assert_eq!(twice, once);
        // A new bundle only bumps the hash (which rolls istiod).
        let (bumped, changed) = add_cacerts(&once, SECRET_NAME, "def").unwrap();
        assert!(changed);
        assert_eq!(
            bumped.pointer("/spec/template/spec/volumes").unwrap(),
            once.pointer("/spec/template/spec/volumes").unwrap()
        );
        // remove undoes it.
        let (removed, changed) = remove_cacerts(&once);
        assert!(changed);
        assert!(mounted_bundle(&removed).is_none());
        assert!(!remove_cacerts(&removed).1);
        // No discovery container: not istiod.
        let mut other = istiod();
        other["spec"]["template"]["spec"]["containers"][0]["name"] = json!("x");
        assert!(add_cacerts(&other, SECRET_NAME, "a").is_err());
    }

    #[test]
    fn helm_configmap_mount_is_reused() {
        let mut d = istiod();
        d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "extracacerts", "mountPath": "/cacerts"}));
        d["spec"]["template"]["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"name": "extracacerts", "configMap": {"name": "pilot-jwks-extra-cacerts"}}),
            );
        assert_eq!(
            mounted_bundle(&d).unwrap(),
            (
                "extracacerts".to_string(),
                BundleSource::ConfigMap {
                    name: "pilot-jwks-extra-cacerts".into(),
                    key: "extra.pem".into()
                }
            )
        );
        let (out, _) = add_cacerts(&d, SECRET_NAME, "h").unwrap();
        let vols = out
            .pointer("/spec/template/spec/volumes")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(vols.len(), 2, "no second volume at /cacerts");
    }

    #[test]
    fn managers() {
        assert_eq!(
            manager_of(&istiod()),
            Some(Manager::IstioOperator {
                owner: "installed-state".into()
            })
        );
        let helm = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"},
                                       "annotations": {"meta.helm.sh/release-name": "istiod"}}});
        let m = manager_of(&helm).unwrap();
        assert!(
            m.permanent_setting()
                .contains("pilot.jwksResolverExtraRootCA")
        );
        let smcp = json!({"metadata": {"labels": {"maistra.io/owner": "istio-system"}}});
        assert!(
            manager_of(&smcp)
                .unwrap()
                .permanent_setting()
                .contains("spec.security.jwksResolverCA")
        );
        let owned = json!({"metadata": {"ownerReferences": [{"kind": "ServiceMeshControlPlane", "name": "basic"}]}});
        assert!(matches!(manager_of(&owned), Some(Manager::Maistra { .. })));
        assert_eq!(manager_of(&json!({"metadata": {}})), None);
    }
}
