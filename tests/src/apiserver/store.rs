//! The object store: generic JSON objects keyed by group/resource, namespace and name, one
//! global resourceVersion counter, and a broadcast of every write.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::clock;
use super::registry::{ResourceType, builtin_types};
use super::status::ApiError;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Added,
    Modified,
    Deleted,
}

impl StoreOp {
    /// The watch event type: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn watch_type(self) -> &'static str {
        match self {
            StoreOp::Added => "ADDED",
            StoreOp::Modified => "MODIFIED",
            StoreOp::Deleted => "DELETED",
        }
    }
}

/// One write to the store.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub op: StoreOp,
    /// API group of the object (`""` for core).
    pub group: String,
    /// The `apiVersion` the object was last written with.
    pub api_version: String,
    pub kind: String,
    /// Plural resource name.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: String,
    /// The object after the write (for deletes: as it was, with the delete's resourceVersion).
    pub object: Value,
}

type Key = (String, String, String, String);

struct State {
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid_counter: u64,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
    hasher: RandomState,
}

/// Cloneable handle to the fake apiserver's objects.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
    (
        rt.group.clone(),
        rt.plural.clone(),
        if rt.namespaced {
            ns.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match &mut obj["metadata"] {
        Value::Object(m) => m,
        _ => unreachable!("metadata was made an object above"),
    }
}

/// Everything but metadata and status: what a generation bump is about.
fn spec_part(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What the apiserver does to objects of some kinds on every write.
fn normalize(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty() && rt.kind == "Secret" {
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            if !obj["data"].is_object() {
                obj["data"] = json!({});
            }
            if let Value::Object(d) = &mut obj["data"] {
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    d.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
            }
        }
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
    }
    if rt.group.is_empty() && rt.kind == "Namespace" && obj["status"]["phase"].is_null() {
        obj["status"] = json!({"phase": "Active"});
    }
}

fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(a) == strip(b)
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn find_resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural && t.serves(version))
            .cloned()
    }

    fn find_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&(
            String::new(),
            "namespaces".into(),
            String::new(),
            ns.to_string(),
        ))
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteScope {
    /// The main resource: keeps the old status when the type has a status subresource.
    Main,
    /// The `/status` subresource: changes only `status`.
    Status,
}

impl Store {
    /// An empty store serving the built-in types.
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(4096);
        Store {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    types: builtin_types(),
                    objects: BTreeMap::new(),
                    rv: 1000,
                    uid_counter: 0,
                }),
                events,
                hasher: RandomState::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn new_uid(&self, st: &mut State) -> String {
        st.uid_counter += 1;
        let mut h = self.inner.hasher.build_hasher();
        h.write_u64(st.uid_counter);
        let a = h.finish();
        h.write_u64(a ^ 0x9e37_79b9_7f4a_7c15);
        let b = h.finish();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn random_suffix(&self, st: &mut State) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        st.uid_counter += 1;
        let mut h = self.inner.hasher.build_hasher();
        h.write_u64(st.uid_counter);
        let mut x = h.finish();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
                x /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn emit(&self, op: StoreOp, rt: &ResourceType, obj: &Value) {
        let _ = self.inner.events.send(StoreEvent {
            op,
            group: rt.group.clone(),
            api_version: obj["apiVersion"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| rt.api_version(rt.preferred_version())),
            kind: rt.kind.clone(),
            resource: rt.plural.clone(),
            namespace: meta_str(obj, "namespace").map(str::to_string),
            name: meta_str(obj, "name").unwrap_or_default().to_string(),
            resource_version: meta_str(obj, "resourceVersion")
                .unwrap_or_default()
                .to_string(),
            object: obj.clone(),
        });
    }

    /// Serve another resource type (e.g. a CRD the world needs). Replaces a type with the same
    /// group and plural.
    pub fn register(&self, rt: ResourceType) {
        let mut st = self.lock();
        st.types
            .retain(|t| !(t.group == rt.group && t.plural == rt.plural));
        st.types.push(rt);
    }

    /// All served resource types.
    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> String {
        self.lock().rv.to_string()
    }

    pub(crate) fn find_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceType> {
        self.lock().find_resource(group, version, plural)
    }

    fn resolve(&self, api_version: &str, kind: &str) -> anyhow::Result<(ResourceType, String)> {
        let (group, version) = split_api_version(api_version);
        let rt = self.lock().find_kind(group, kind).ok_or_else(|| {
            anyhow!("meshsim apiserver does not serve kind {kind} in group {group:?}")
        })?;
        if !rt.serves(version) {
            bail!("meshsim apiserver does not serve {kind} in version {api_version}");
        }
        Ok((rt, version.to_string()))
    }

    /// Insert or replace an object (the world's back door: no preconditions, no RBAC).
    /// Fills in uid, resourceVersion, creationTimestamp and generation (bumped when anything
    /// outside metadata/status changed). The object must have apiVersion, kind, metadata.name,
    /// and metadata.namespace for namespaced kinds; a missing Namespace object is created.
    pub fn apply(&self, mut obj: Value) -> anyhow::Result<Value> {
        let api_version = obj["apiVersion"]
            .as_str()
            .context("object has no apiVersion")?
            .to_string();
        let kind = obj["kind"]
            .as_str()
            .context("object has no kind")?
            .to_string();
        let (rt, _) = self.resolve(&api_version, &kind)?;
        let name = meta_str(&obj, "name")
            .filter(|n| !n.is_empty())
            .context("object has no metadata.name")?
            .to_string();
        let ns = if rt.namespaced {
            Some(
                meta_str(&obj, "namespace")
                    .filter(|n| !n.is_empty())
                    .with_context(|| format!("{kind} {name} has no metadata.namespace"))?
                    .to_string(),
            )
        } else {
            meta_mut(&mut obj).remove("namespace");
            None
        };
        let mut st = self.lock();
        if let Some(ns) = &ns
            && !st.namespace_exists(ns)
        {
            let ns_rt = st
                .find_kind("", "Namespace")
                .context("Namespace type not registered")?;
            let mut nso =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            normalize(&ns_rt, &mut nso);
            let uid = self.new_uid(&mut st);
            let rv = st.next_rv();
            let m = meta_mut(&mut nso);
            m.insert("uid".into(), json!(uid));
            m.insert("resourceVersion".into(), json!(rv));
            m.insert("creationTimestamp".into(), json!(clock::now_rfc3339()));
            st.objects.insert(key(&ns_rt, None, ns), nso.clone());
            self.emit(StoreOp::Added, &ns_rt, &nso);
        }
        let k = key(&rt, ns.as_deref(), &name);
        let existing = st.objects.get(&k).cloned();
        normalize(&rt, &mut obj);
        let rv = st.next_rv();
        let uid = match existing.as_ref().and_then(|e| meta_str(e, "uid")) {
            Some(u) => u.to_string(),
            None => match meta_str(&obj, "uid") {
                Some(u) => u.to_string(),
                None => self.new_uid(&mut st),
            },
        };
        let created = existing
            .as_ref()
            .and_then(|e| meta_str(e, "creationTimestamp"))
            .or_else(|| meta_str(&obj, "creationTimestamp"))
            .map(str::to_string)
            .unwrap_or_else(clock::now_rfc3339);
        let generation = match &existing {
            Some(e) => {
                let g = e["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_part(e) != spec_part(&obj) {
                    g + 1
                } else {
                    g
                }
            }
            None => obj["metadata"]["generation"].as_i64().unwrap_or(1),
        };
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uid));
        m.insert("resourceVersion".into(), json!(rv));
        m.insert("creationTimestamp".into(), json!(created));
        m.insert("generation".into(), json!(generation));
        st.objects.insert(k, obj.clone());
        let op = if existing.is_some() {
            StoreOp::Modified
        } else {
            StoreOp::Added
        };
        self.emit(op, &rt, &obj);
        Ok(obj)
    }

    /// The object as served in `api_version` (any served version of its group).
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (rt, version) = self.resolve(api_version, kind).ok()?;
        self.get_raw(&rt, namespace, name)
            .map(|o| as_version(o, &rt, &version))
    }

    /// All objects of a kind, in one namespace or (None) in all, sorted by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok((rt, version)) = self.resolve(api_version, kind) else {
            return Vec::new();
        };
        self.list_raw(&rt, namespace)
            .0
            .into_iter()
            .map(|o| as_version(o, &rt, &version))
            .collect()
    }

    /// Delete an object; true when it existed.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let Ok((rt, _)) = self.resolve(api_version, kind) else {
            return false;
        };
        self.remove(&rt, namespace, name, false).is_ok()
    }

    /// Every write from now on: apply, create, update, patch, delete.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn get_raw(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        self.lock().objects.get(&key(rt, ns, name)).cloned()
    }

    /// Objects and the list's resourceVersion.
    pub(crate) fn list_raw(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Value>, String) {
        let st = self.lock();
        let items = st
            .objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == rt.group
                    && *p == rt.plural
                    && (!rt.namespaced || ns.is_none_or(|want| want == n))
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv.to_string())
    }

    /// POST: create with the apiserver's checks.
    pub(crate) fn create(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        if let Some(k) = obj["kind"].as_str()
            && k != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj["apiVersion"].as_str().unwrap_or_default(),
                rt.api_version(version)
            )));
        }
        if rt.namespaced {
            let url_ns = ns.unwrap_or_default();
            match meta_str(&obj, "namespace") {
                Some(b) if !b.is_empty() && b != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta_mut(&mut obj).insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        let mut st = self.lock();
        if rt.namespaced {
            let ns = ns.unwrap_or_default();
            if !st.namespace_exists(ns) {
                return Err(ApiError::not_found("", "namespaces", ns));
            }
        }
        let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => {
                    let prefix = prefix.to_string();
                    loop {
                        let candidate = format!("{prefix}{}", self.random_suffix(&mut st));
                        if !st.objects.contains_key(&key(rt, ns, &candidate)) {
                            break candidate;
                        }
                    }
                }
                None => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        let k = key(rt, ns, &name);
        if st.objects.contains_key(&k) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        normalize(rt, &mut obj);
        if rt.group.is_empty() && rt.kind == "Pod" && obj["status"]["phase"].is_null() {
            obj["status"]["phase"] = json!("Pending");
        }
        let uid = self.new_uid(&mut st);
        let rv = st.next_rv();
        obj["apiVersion"] = json!(rt.api_version(version));
        obj["kind"] = json!(rt.kind);
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        m.insert("uid".into(), json!(uid));
        m.insert("resourceVersion".into(), json!(rv));
        m.insert("creationTimestamp".into(), json!(clock::now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        if !dry_run {
            st.objects.insert(k, obj.clone());
            self.emit(StoreOp::Added, rt, &obj);
        }
        Ok(obj)
    }

    /// PUT or PATCH: `f` computes the new object from the current one. Checks the
    /// resourceVersion precondition, keeps identity fields, bumps generation and resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn modify(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        scope: WriteScope,
        dry_run: bool,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let k = key(rt, ns, name);
        let Some(cur) = st.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let mut new = f(&cur)?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        if let Some(n) = meta_str(&new, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced
            && let Some(n) = meta_str(&new, "namespace")
            && !n.is_empty()
            && Some(n) != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let cur_rv = meta_str(&cur, "resourceVersion").unwrap_or_default();
        if let Some(want) = meta_str(&new, "resourceVersion")
            && !want.is_empty()
            && want != cur_rv
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        match scope {
            WriteScope::Status => {
                let status = new.get("status").cloned();
                new = cur.clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            WriteScope::Main => {
                if rt.status_subresource {
                    match cur.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(o) = new.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
            }
        }
        normalize(rt, &mut new);
        new["apiVersion"] = json!(rt.api_version(version));
        new["kind"] = json!(rt.kind);
        let generation = cur["metadata"]["generation"].as_i64().unwrap_or(1);
        let generation = if spec_part(&cur) != spec_part(&new) {
            generation + 1
        } else {
            generation
        };
        {
            let cm = cur["metadata"].as_object().cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "deletionTimestamp",
            ] {
                match cm.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.insert("generation".into(), json!(generation));
            m.insert("resourceVersion".into(), json!(cur_rv));
        }
        if same_ignoring_rv(&new, &cur) {
            return Ok(new);
        }
        let rv = st.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        if !dry_run {
            st.objects.insert(k, new.clone());
            self.emit(StoreOp::Modified, rt, &new);
        }
        Ok(new)
    }

    /// DELETE. Deleting a namespace deletes everything in it.
    pub(crate) fn remove(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let k = key(rt, ns, name);
        let Some(mut obj) = st.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        if dry_run {
            return Ok(obj);
        }
        st.objects.remove(&k);
        let rv = st.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
        self.emit(StoreOp::Deleted, rt, &obj);
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let inside: Vec<Key> = st
                .objects
                .keys()
                .filter(|(_, _, n, _)| n == name)
                .cloned()
                .collect();
            for k in inside {
                if let Some(mut o) = st.objects.remove(&k) {
                    let rv = st.next_rv();
                    meta_mut(&mut o).insert("resourceVersion".into(), json!(rv));
                    if let Some(t) = st
                        .types
                        .iter()
                        .find(|t| t.group == k.0 && t.plural == k.1)
                        .cloned()
                    {
                        self.emit(StoreOp::Deleted, &t, &o);
                    }
                }
            }
        }
        Ok(obj)
    }
}

/// The stored object as served in `version`.
pub(crate) fn as_version(mut obj: Value, rt: &ResourceType, version: &str) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(rt.api_version(version)));
        o.insert("kind".into(), json!(rt.kind));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_fills_metadata_and_bumps_generation() {
        let s = Store::new();
        let mut rx = s.subscribe();
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"d","namespace":"demo"},"spec":{"replicas":1}});
        let a = s.apply(d.clone()).unwrap();
        assert_eq!(a["metadata"]["generation"], 1);
        assert!(a["metadata"]["uid"].as_str().unwrap().len() == 36);
        let mut d2 = d.clone();
        d2["spec"]["replicas"] = json!(2);
        let b = s.apply(d2).unwrap();
        assert_eq!(b["metadata"]["generation"], 2);
        assert_eq!(b["metadata"]["uid"], a["metadata"]["uid"]);
        assert!(s.get("v1", "Namespace", None, "demo").is_some());
        let ev = rx.try_recv().unwrap();
        assert_eq!((ev.kind.as_str(), ev.op), ("Namespace", StoreOp::Added));
        let ra = json!({"apiVersion":"security.istio.io/v1beta1","kind":"RequestAuthentication",
            "metadata":{"name":"r","namespace":"demo"},"spec":{}});
        s.apply(ra).unwrap();
        let got = s
            .get(
                "security.istio.io/v1",
                "RequestAuthentication",
                Some("demo"),
                "r",
            )
            .unwrap();
        assert_eq!(got["apiVersion"], "security.istio.io/v1");
        assert_eq!(s.list("apps/v1", "Deployment", None).len(), 1);
        assert!(s.delete("apps/v1", "Deployment", Some("demo"), "d"));
        assert!(
            s.apply(json!({"apiVersion":"v9","kind":"Pod","metadata":{"name":"x"}}))
                .is_err()
        );
    }
}
