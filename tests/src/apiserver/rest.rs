//! Resource URLs and verbs: get, list, watch, create, update, patch, delete, deletecollection,
//! `/status`, `serviceaccounts/<sa>/token`, and dispatch to the pod streaming subresources.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::clock;
use super::patch;
use super::protobuf;
use super::registry::ResourceType;
use super::selector::{self, FieldReq, Requirement};
use super::status::{ApiError, json_response};
use super::store::{StoreOp, WriteScope, as_version};
use super::table::{self, Include};
use super::{exec, logs, portforward};

/// Query parameters, parsed as form-urlencoded (kube-rs sends a leading `&`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: &str) -> Query {
        Query(
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | "True"))
    }
}

struct Target {
    rt: ResourceType,
    version: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(
    sh: &Shared,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let namespace_sub = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    let (ns, rest) = if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_sub {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::path_not_found()),
    };
    let rt = sh
        .store
        .find_resource(group, version, plural)
        .ok_or_else(ApiError::path_not_found)?;
    if !rt.namespaced && ns.is_some() {
        return Err(ApiError::path_not_found());
    }
    if rt.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub
        && !rt.subresources.iter().any(|(n, _, _)| n == s)
    {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        rt,
        version: version.to_string(),
        ns,
        name,
        sub,
    })
}

fn rbac_verb(method: &Method, t: &Target, q: &Query) -> Result<&'static str, ApiError> {
    let streaming = matches!(t.sub.as_deref(), Some("exec" | "portforward" | "attach"));
    Ok(match *method {
        Method::GET if streaming => "create",
        Method::POST if streaming => "create",
        Method::GET if t.name.is_none() => {
            if q.flag("watch") {
                "watch"
            } else {
                "list"
            }
        }
        Method::GET => "get",
        Method::POST if t.name.is_none() || t.sub.is_some() => "create",
        Method::PUT if t.name.is_some() => "update",
        Method::PATCH if t.name.is_some() => "patch",
        Method::DELETE if t.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    })
}

pub(crate) async fn serve(
    sh: &Arc<Shared>,
    req: Request,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &str,
) -> Response {
    match serve_inner(sh, req, group, version, rest, query).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve_inner(
    sh: &Arc<Shared>,
    req: Request,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &str,
) -> Result<Response, ApiError> {
    let t = parse_target(sh, group, version, rest)?;
    let q = Query::parse(query);
    let (parts, body) = req.into_parts();
    let verb = rbac_verb(&parts.method, &t, &q)?;
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.rt.plural),
        None => t.rt.plural.clone(),
    };
    if sh.faults.is_denied(verb, &resource, t.ns.as_deref()) {
        return Err(ApiError::forbidden(
            &t.rt.group,
            &t.rt.plural,
            t.sub.as_deref(),
            verb,
            t.ns.as_deref(),
            t.name.as_deref(),
        ));
    }
    let dry_run = q.all("dryRun").contains(&"All");
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let as_table = table::wants_table(&accept);
    let include = Include::from_param(q.get("includeObject"));
    let ns = t.ns.as_deref();
    let rt = &t.rt;
    let store = &sh.store;
    match (t.sub.as_deref(), t.name.as_deref(), &parts.method) {
        (None, None, &Method::GET) => {
            let labels = match q.get("labelSelector") {
                Some(s) => selector::parse_labels(s).map_err(ApiError::bad_request)?,
                None => Vec::new(),
            };
            let fields = match q.get("fieldSelector") {
                Some(s) => selector::parse_fields(s).map_err(ApiError::bad_request)?,
                None => Vec::new(),
            };
            if q.flag("watch") {
                return Ok(watch(
                    sh,
                    &t,
                    &q,
                    labels,
                    fields,
                    as_table.then_some(include),
                ));
            }
            let (items, rv) = store.list_raw(rt, ns);
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| {
                    selector::matches_labels(&labels, o) && selector::matches_fields(&fields, o)
                })
                .map(|o| as_version(o, rt, &t.version))
                .collect();
            if as_table {
                return Ok(json_response(
                    200,
                    &table::table(rt, &items, Some(&rv), include, true),
                ));
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(&t.version),
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }),
            ))
        }
        (None | Some("status"), Some(name), &Method::GET) => {
            let obj = store
                .get_raw(rt, ns, name)
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            let obj = as_version(obj, rt, &t.version);
            if as_table {
                return Ok(json_response(
                    200,
                    &table::table(rt, &[obj], None, include, true),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (None, None, &Method::POST) if rt.group == "authorization.k8s.io" => {
            let ct = content_type(&parts);
            let body = read_bytes(body).await?;
            let review = if ct == protobuf::CONTENT_TYPE {
                protobuf::self_subject_access_review(&body).ok_or_else(|| {
                    ApiError::bad_request("unable to decode protobuf SelfSubjectAccessReview")
                })?
            } else {
                parse_object(&body)?
            };
            Ok(json_response(201, &access_review(sh, review)))
        }
        (None, None, &Method::POST) => {
            let obj = read_object(&parts, body).await?;
            let created = store.create(rt, &t.version, ns, obj, dry_run)?;
            Ok(json_response(201, &created))
        }
        (None | Some("status"), Some(name), &Method::PUT) => {
            let obj = read_object(&parts, body).await?;
            let scope = scope_of(&t);
            let updated = store.modify(rt, &t.version, ns, name, scope, dry_run, |_| Ok(obj))?;
            Ok(json_response(200, &updated))
        }
        (None | Some("status"), Some(name), &Method::PATCH) => {
            let ct = content_type(&parts);
            let bytes = read_bytes(body).await?;
            patch_object(sh, &t, name, &ct, &bytes, &q, dry_run)
                .map(|(code, v)| json_response(code, &v))
        }
        (None, Some(name), &Method::DELETE) => {
            let obj = store.remove(rt, ns, name, dry_run)?;
            Ok(json_response(200, &as_version(obj, rt, &t.version)))
        }
        (None, None, &Method::DELETE) => {
            let labels = match q.get("labelSelector") {
                Some(s) => selector::parse_labels(s).map_err(ApiError::bad_request)?,
                None => Vec::new(),
            };
            let fields = match q.get("fieldSelector") {
                Some(s) => selector::parse_fields(s).map_err(ApiError::bad_request)?,
                None => Vec::new(),
            };
            let (items, _) = store.list_raw(rt, ns);
            let mut deleted = Vec::new();
            for o in items.iter().filter(|o| {
                selector::matches_labels(&labels, o) && selector::matches_fields(&fields, o)
            }) {
                let oname = o["metadata"]["name"].as_str().unwrap_or_default();
                let ons = o["metadata"]["namespace"].as_str();
                if let Ok(d) = store.remove(rt, ons, oname, dry_run) {
                    deleted.push(as_version(d, rt, &t.version));
                }
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(&t.version),
                    "metadata": {"resourceVersion": store.resource_version()},
                    "items": deleted,
                }),
            ))
        }
        (Some("token"), Some(name), &Method::POST) => {
            let ct = content_type(&parts);
            let body = read_bytes(body).await?;
            let req = if body.is_empty() {
                json!({})
            } else if ct == protobuf::CONTENT_TYPE {
                protobuf::token_request(&body).ok_or_else(|| {
                    ApiError::bad_request("unable to decode protobuf TokenRequest")
                })?
            } else {
                parse_object(&body)?
            };
            token_request(sh, rt, ns.unwrap_or_default(), name, &req)
        }
        (Some(sub @ ("log" | "exec" | "portforward")), Some(name), m) => {
            if sub == "log" && m != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            if m != Method::GET && m != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let ns = ns.unwrap_or_default().to_string();
            let pod = store
                .get_raw(rt, Some(&ns), name)
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            match sub {
                "log" => logs::serve(sh, &ns, &pod, &q).await,
                "exec" => exec::serve(sh, &ns, &pod, &q, parts).await,
                _ => portforward::serve(sh, &ns, &pod, &q, parts).await,
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn scope_of(t: &Target) -> WriteScope {
    if t.sub.as_deref() == Some("status") {
        WriteScope::Status
    } else {
        WriteScope::Main
    }
}

fn content_type(parts: &Parts) -> String {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn read_bytes(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, 64 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))
}

fn parse_object(bytes: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request(format!("invalid JSON body: {json_err}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|_| ApiError::bad_request(format!("invalid JSON body: {json_err}")))
        }
    }
}

/// A JSON or YAML request body; protobuf (which kubectl uses for some typed calls) is refused
/// with 415 like a server that doesn't speak it.
async fn read_object(parts: &Parts, body: Body) -> Result<Value, ApiError> {
    if content_type(parts) == protobuf::CONTENT_TYPE {
        return Err(ApiError::unsupported_media_type(
            "application/json, application/yaml",
        ));
    }
    let bytes = read_bytes(body).await?;
    parse_object(&bytes)
}

const PATCH_TYPES_BUILTIN: &str = "application/json-patch+json, application/merge-patch+json, \
                                   application/apply-patch+yaml, application/strategic-merge-patch+json";
const PATCH_TYPES_CUSTOM: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

fn patch_object(
    sh: &Shared,
    t: &Target,
    name: &str,
    ct: &str,
    bytes: &[u8],
    q: &Query,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let rt = &t.rt;
    let ns = t.ns.as_deref();
    let scope = scope_of(t);
    let accepted = if rt.custom {
        PATCH_TYPES_CUSTOM
    } else {
        PATCH_TYPES_BUILTIN
    };
    let store = &sh.store;
    match ct {
        "application/merge-patch+json" => {
            let p = parse_object(bytes)?;
            let v = store.modify(rt, &t.version, ns, name, scope, dry_run, |cur| {
                let mut n = cur.clone();
                patch::merge(&mut n, &p);
                Ok(n)
            })?;
            Ok((200, v))
        }
        "application/strategic-merge-patch+json" if !rt.custom => {
            let p = parse_object(bytes)?;
            let v = store.modify(rt, &t.version, ns, name, scope, dry_run, |cur| {
                let mut n = cur.clone();
                patch::strategic(&mut n, &p);
                Ok(n)
            })?;
            Ok((200, v))
        }
        "application/json-patch+json" => {
            let ops = parse_object(bytes)?;
            let v = store.modify(rt, &t.version, ns, name, scope, dry_run, |cur| {
                let mut n = cur.clone();
                patch::json_patch(&mut n, &ops).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
                Ok(n)
            })?;
            Ok((200, v))
        }
        "application/apply-patch+yaml" => {
            if q.get("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    "fieldManager",
                    "FieldValueRequired",
                    "Required value: is required for apply patch",
                ));
            }
            let p = parse_object(bytes)?;
            if store.get_raw(rt, ns, name).is_some() {
                let custom = rt.custom;
                let v = store.modify(rt, &t.version, ns, name, scope, dry_run, |cur| {
                    let mut n = cur.clone();
                    if custom {
                        patch::merge(&mut n, &p);
                    } else {
                        patch::strategic(&mut n, &p);
                    }
                    Ok(n)
                })?;
                Ok((200, v))
            } else {
                let mut obj = p;
                if obj["metadata"]["name"].is_null() {
                    obj["metadata"]["name"] = json!(name);
                }
                let v = store.create(rt, &t.version, ns, obj, dry_run)?;
                Ok((201, v))
            }
        }
        _ => Err(ApiError::unsupported_media_type(accepted)),
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A JWT-shaped service-account token (not signed by anything real).
pub(crate) fn fake_jwt(
    ns: &str,
    sa: &str,
    uid: &str,
    audiences: &[Value],
    exp: u64,
    iat: u64,
) -> String {
    let header = json!({"alg": "RS256", "kid": "meshsim"});
    let payload = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": uid}},
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    });
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes()),
        b64url(b"meshsim-fake-signature")
    )
}

fn token_request(
    sh: &Shared,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    req: &Value,
) -> Result<Response, ApiError> {
    let sa = sh
        .store
        .get_raw(rt, Some(ns), name)
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let audiences = match req["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!("https://kubernetes.default.svc.cluster.local")],
    };
    let expiration = req["spec"]["expirationSeconds"].as_u64().unwrap_or(3600);
    let now = SystemTime::now();
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
    let token = fake_jwt(ns, name, uid, &audiences, iat + expiration, iat);
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": req["spec"]["boundObjectRef"]},
            "status": {
                "token": token,
                "expirationTimestamp": clock::rfc3339(now + Duration::from_secs(expiration)),
            },
        }),
    ))
}

/// Answers a SelfSubjectAccessReview from the deny rules of the fault knobs.
fn access_review(sh: &Shared, mut review: Value) -> Value {
    let ra = &review["spec"]["resourceAttributes"];
    let allowed = if ra.is_object() {
        let s = |k: &str| ra[k].as_str().unwrap_or_default();
        let resource = match s("subresource") {
            "" => s("resource").to_string(),
            sub => format!("{}/{sub}", s("resource")),
        };
        let ns = Some(s("namespace")).filter(|n| !n.is_empty());
        !sh.faults.is_denied(s("verb"), &resource, ns)
    } else {
        true
    };
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "meshsim: no deny rule matches"})
    } else {
        json!({"allowed": false})
    };
    review
}

/// The pod's containers, and the one a log/exec request means.
pub(crate) fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Streaming subresources need a pod that runs somewhere.
pub(crate) fn ensure_running(pod: &Value) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    match pod["status"]["phase"].as_str().unwrap_or("Pending") {
        "Running" => Ok(()),
        phase => Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {phase})"
        ))),
    }
}

fn watch(
    sh: &Arc<Shared>,
    t: &Target,
    q: &Query,
    labels: Vec<Requirement>,
    fields: Vec<FieldReq>,
    table_include: Option<Include>,
) -> Response {
    let mut events = sh.store.subscribe();
    let rt = t.rt.clone();
    let version = t.version.clone();
    let ns = t.ns.clone();
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let initial: Vec<Value> = if since == 0 || q.flag("sendInitialEvents") {
        sh.store
            .list_raw(&rt, ns.as_deref())
            .0
            .into_iter()
            .filter(|o| {
                selector::matches_labels(&labels, o) && selector::matches_fields(&fields, o)
            })
            .collect()
    } else {
        Vec::new()
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(3600));
    let mut shutdown = sh.shutdown.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut first = true;
        let mut encode = |op: StoreOp, obj: Value| -> Bytes {
            let obj = as_version(obj, &rt, &version);
            let obj = match table_include {
                Some(inc) => {
                    let t = table::table(&rt, &[obj], None, inc, first);
                    first = false;
                    t
                }
                None => obj,
            };
            let mut line = json!({"type": op.watch_type(), "object": obj}).to_string();
            line.push('\n');
            Bytes::from(line)
        };
        for o in initial {
            if tx.send(encode(StoreOp::Added, o)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let rv: u64 = ev.resource_version.parse().unwrap_or(0);
                        if ev.group != rt.group || ev.resource != rt.plural || rv <= since {
                            continue;
                        }
                        if rt.namespaced && ns.is_some() && ev.namespace != ns {
                            continue;
                        }
                        if !(selector::matches_labels(&labels, &ev.object) && selector::matches_fields(&fields, &ev.object)) {
                            continue;
                        }
                        if tx.send(encode(ev.op, ev.object)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
                _ = &mut deadline => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
