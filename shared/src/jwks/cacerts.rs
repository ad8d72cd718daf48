//! Fix 2 as pure functions on JSON: where istiod's `/cacerts/extra.pem` comes from, mounting
//! the Secret `jwks-extra-cacerts` in the `discovery` container (idempotent), undoing it, and who
//! manages the Deployment (and may revert the change).

use serde::Serialize;
use serde_json::{Value, json};

use super::Error;

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

#[cfg(test)]
mod tests {
    use super::*;

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
