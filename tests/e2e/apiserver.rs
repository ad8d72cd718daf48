#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fake kube-apiserver against its two real clients: the `kubectl` on this machine and
//! kube-rs 5 (the client the plugins use).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{
    Api, AttachParams, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use meshsim::apiserver::{ApiServer, ApiServerOptions, PodBackend, StoreOp};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NS: &str = "demo";
const POD: &str = "productpage-v1-abc";

struct Fixture {
    api: ApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn pod(name: &str, ns: &str, app: &str, containers: &[&str]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "version": "v1"}},
        "spec": {
            "nodeName": "meshsim-node",
            "containers": containers.iter().map(|c| json!({"name": c, "image": format!("{c}:1")})).collect::<Vec<_>>(),
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "containerStatuses": containers.iter().map(|c| json!({"name": c, "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})).collect::<Vec<_>>(),
        },
    })
}

async fn fixture() -> Fixture {
    let api = ApiServer::start(ApiServerOptions::default()).await.unwrap();
    let store = api.store();
    store
        .apply(pod(POD, NS, "productpage", &["productpage", "istio-proxy"]))
        .unwrap();
    store
        .apply(pod("ratings-v1-xyz", NS, "ratings", &["ratings"]))
        .unwrap();
    store
        .apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "productpage-v1", "namespace": NS, "labels": {"app": "productpage"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "productpage"}},
                "template": {"metadata": {"labels": {"app": "productpage"}}, "spec": {"containers": [
                    {"name": "productpage", "image": "productpage:1"},
                    {"name": "istio-proxy", "image": "proxyv2:1", "volumeMounts": [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}]}],
                    "volumes": [{"name": "istio-envoy", "emptyDir": {}}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
        }))
        .unwrap();
    for (ns, name) in [(NS, "productpage-jwt"), ("istio-system", "mesh-jwt")] {
        store
            .apply(json!({
                "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"jwtRules": [{"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks"}]},
            }))
            .unwrap();
    }
    store
        .apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bookinfo", "namespace": NS}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, NS).unwrap();
    Fixture {
        api,
        dir,
        kubeconfig,
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn kubectl(f: &Fixture, args: &[&str]) -> Out {
    let out = tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &f.kubeconfig)
        .env("HOME", f.dir.path())
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .kill_on_drop(true)
        .output()
        .await
        .expect("kubectl runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn client_with_token(api: &ApiServer, token: &str) -> kube::Client {
    let yaml = api.kubeconfig_yaml(NS).replace(&api.token(), token);
    let kc = Kubeconfig::from_yaml(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn client(api: &ApiServer) -> kube::Client {
    client_with_token(api, &api.token()).await
}

fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A stand-in Envoy admin: `/server_info` → small JSON, `/big` → 200000 bytes, else 404.
async fn admin_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (code, body) = match path.as_str() {
                    "/server_info" => ("200 OK", br#"{"state":"LIVE"}"#.to_vec()),
                    "/big" => ("200 OK", vec![b'x'; 200_000]),
                    _ => (
                        "404 Not Found",
                        b"invalid path. admin commands are:".to_vec(),
                    ),
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    addr
}

async fn wire_admin(f: &Fixture) -> SocketAddr {
    let addr = admin_server().await;
    f.api.set_pod_backend(
        NS,
        POD,
        PodBackend {
            ports: HashMap::from([(15000, addr)]),
            logs: HashMap::new(),
        },
    );
    addr
}

async fn forward_get(
    pods: &Api<Pod>,
    path: &str,
) -> Result<(Vec<u8>, kube::api::Portforwarder), kube::Error> {
    let mut pf = pods.portforward(POD, &[15000]).await?;
    let mut stream = pf.take_stream(15000).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("port-forward read finishes")
        .ok();
    Ok((got, pf))
}

// ---------------------------------------------------------------------------------------------
// kubectl

#[tokio::test]
async fn kubectl_get_pods_and_selectors() {
    let f = fixture().await;
    let out = kubectl(&f, &["get", "pods"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        out.stdout.contains(POD) && out.stdout.contains("2/2") && out.stdout.contains("Running")
    );
    assert!(out.stdout.contains("ratings-v1-xyz"));

    let out = kubectl(&f, &["get", "pods", "-l", "app=productpage"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(POD) && !out.stdout.contains("ratings"),
        "{}",
        out.stdout
    );

    let out = kubectl(
        &f,
        &[
            "get",
            "pods",
            "-l",
            "app in (ratings,reviews),version!=v2",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(out.stdout.trim(), "pod/ratings-v1-xyz", "{}", out.stderr);

    let out = kubectl(
        &f,
        &[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=ratings-v1-xyz",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(out.stdout.trim(), "pod/ratings-v1-xyz", "{}", out.stderr);

    let out = kubectl(&f, &["get", "pod", POD, "-o", "yaml"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("apiVersion: v1") && out.stdout.contains("kind: Pod"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("uid: ") && out.stdout.contains("resourceVersion: "));

    let out = kubectl(&f, &["get", "pods", "-A", "-o", "wide"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("NAMESPACE") && out.stdout.contains("10.0.0.7"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn kubectl_get_deploy_and_istio_crds() {
    let f = fixture().await;
    let out = kubectl(&f, &["get", "deploy"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(out.stdout.contains("productpage-v1") && out.stdout.contains("1/1"));

    let out = kubectl(&f, &["get", "requestauthentications", "-A"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("NAMESPACE"), "{}", out.stdout);
    assert!(out.stdout.contains("productpage-jwt") && out.stdout.contains("mesh-jwt"));

    let out = kubectl(
        &f,
        &[
            "get",
            "requestauthentications.v1beta1.security.istio.io",
            "mesh-jwt",
            "-n",
            "istio-system",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "security.istio.io/v1beta1");

    let out = kubectl(&f, &["get", "ns"]).await;
    assert!(
        out.stdout.contains("istio-system") && out.stdout.contains("Active"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn kubectl_not_found_and_unauthorized() {
    let f = fixture().await;
    let out = kubectl(&f, &["get", "pod", "nope"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("NotFound") && out.stderr.contains("pods \"nope\" not found"),
        "{}",
        out.stderr
    );

    let bad = f.dir.path().join("bad-kubeconfig");
    std::fs::write(
        &bad,
        f.api.kubeconfig_yaml(NS).replace(&f.api.token(), "wrong"),
    )
    .unwrap();
    let out = kubectl(&f, &["get", "pods", "--kubeconfig", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Unauthorized") || out.stderr.contains("provide credentials"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn kubectl_logs_and_exec() {
    let f = fixture().await;
    let log = f.dir.path().join("proxy.log");
    std::fs::write(
        &log,
        "[2026-01-01 00:00:00.000][1][info][main] starting\nline two\nline three\n",
    )
    .unwrap();
    let admin = admin_server().await;
    f.api.set_pod_backend(
        NS,
        POD,
        PodBackend {
            ports: HashMap::from([(15000, admin)]),
            logs: HashMap::from([("istio-proxy".to_string(), log.clone())]),
        },
    );
    let out = kubectl(&f, &["logs", POD, "-c", "istio-proxy"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, std::fs::read_to_string(&log).unwrap());

    let out = kubectl(&f, &["logs", POD, "-c", "istio-proxy", "--tail=1"]).await;
    assert_eq!(out.stdout, "line three\n");

    let out = kubectl(&f, &["logs", POD, "-c", "nope"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("container nope is not valid for pod productpage-v1-abc"),
        "{}",
        out.stderr
    );

    let out = kubectl(
        &f,
        &[
            "exec",
            POD,
            "-c",
            "istio-proxy",
            "--",
            "pilot-agent",
            "request",
            "GET",
            "server_info",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "{\"state\":\"LIVE\"}\n");
}

#[tokio::test]
async fn kubectl_apply_create_token_and_can_i() {
    let f = fixture().await;
    let m = f.dir.path().join("m.yaml");
    let ra = "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata:\n  name: applied\n\
              spec:\n  jwtRules:\n  - issuer: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\ndata:\n  a: b\n";
    std::fs::write(&m, ra).unwrap();
    let m = m.to_str().unwrap();
    let out = kubectl(&f, &["apply", "-f", m]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("requestauthentication.security.istio.io/applied created"),
        "{}",
        out.stdout
    );
    let out = kubectl(&f, &["apply", "-f", m]).await;
    assert!(
        out.stdout.contains("configmap/cm1 unchanged"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    std::fs::write(f.dir.path().join("m.yaml"), ra.replace("a: b", "a: c")).unwrap();
    let out = kubectl(&f, &["apply", "-f", m]).await;
    assert!(
        out.stdout.contains("configmap/cm1 configured"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = kubectl(&f, &["apply", "--server-side", "-f", m]).await;
    assert!(
        out.stdout.contains("configmap/cm1 serverside-applied"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let cm = f
        .api
        .store()
        .get("v1", "ConfigMap", Some(NS), "cm1")
        .unwrap();
    assert_eq!(cm["data"]["a"], "c");

    let out = kubectl(
        &f,
        &["create", "token", "bookinfo", "--audience", "istio-ca"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim().split('.').count(), 3);

    f.api.faults().deny("create", "pods/portforward");
    let out = kubectl(
        &f,
        &[
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=portforward",
        ],
    )
    .await;
    assert_eq!((out.code, out.stdout.trim()), (1, "no"));
    let out = kubectl(&f, &["auth", "can-i", "get", "pods"]).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "yes"));
}

// ---------------------------------------------------------------------------------------------
// kube-rs

#[tokio::test]
async fn kube_get_list_and_wrong_token() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let p = pods.get(POD).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    let l = pods
        .list(&ListParams::default().labels("app in (productpage,ratings),version=v1"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 2);
    let all: Api<Pod> = Api::all(client(&f.api).await);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let s = api_status(pods.get("nope").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));

    let bad: Api<Pod> = Api::namespaced(client_with_token(&f.api, "wrong").await, NS);
    let s = api_status(bad.get(POD).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    assert!(f.api.requests().iter().any(|r| r.status == 401));
}

#[tokio::test]
async fn kube_writes_conflict_patch_and_generation() {
    let f = fixture().await;
    let deploys: Api<Deployment> = Api::namespaced(client(&f.api).await, NS);
    let d = deploys.get("productpage-v1").await.unwrap();
    let rv0 = d.metadata.resource_version.clone().unwrap();
    let gen0 = d.metadata.generation.unwrap();

    // strategic merge patch of volumes/volumeMounts: merged by key, generation bumped.
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "istio-proxy", "volumeMounts": [{"name": "jwks", "mountPath": "/var/run/jwks"}]}],
        "volumes": [{"name": "jwks", "secret": {"secretName": "jwks"}}]}}}});
    let d1 = deploys
        .patch(
            "productpage-v1",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let spec = d1.spec.clone().template.spec.unwrap();
    assert_eq!(spec.volumes.unwrap().len(), 2);
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.containers[1].volume_mounts.as_ref().unwrap().len(), 2);
    assert_eq!(d1.metadata.generation, Some(gen0 + 1));
    assert_ne!(d1.metadata.resource_version.as_deref(), Some(rv0.as_str()));

    // PUT with the stale resourceVersion: 409 Conflict with the real wording.
    let mut stale = d.clone();
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    let s = api_status(
        deploys
            .replace("productpage-v1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Operation cannot be fulfilled on deployments.apps \"productpage-v1\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );

    // merge patch: labels only, no generation bump; dry run changes nothing.
    let mp = json!({"metadata": {"labels": {"patched": "yes"}}});
    let d2 = deploys
        .patch(
            "productpage-v1",
            &PatchParams::default(),
            &Patch::Merge(&mp),
        )
        .await
        .unwrap();
    assert_eq!(d2.metadata.generation, d1.metadata.generation);
    let dry = json!({"metadata": {"labels": {"dry": "run"}}});
    deploys
        .patch(
            "productpage-v1",
            &PatchParams::default().dry_run(),
            &Patch::Merge(&dry),
        )
        .await
        .unwrap();
    let now = f
        .api
        .store()
        .get("apps/v1", "Deployment", Some(NS), "productpage-v1")
        .unwrap();
    assert_eq!(now["metadata"]["labels"]["patched"], "yes");
    assert!(now["metadata"]["labels"].get("dry").is_none());
    let writes: Vec<_> = f
        .api
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");

    // create: AlreadyExists, then generateName, then delete.
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let mut p: Pod = serde_json::from_value(pod(POD, NS, "x", &["c"])).unwrap();
    p.metadata.resource_version = None;
    p.metadata.uid = None;
    let s = api_status(pods.create(&PostParams::default(), &p).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    p.metadata.name = None;
    let s = api_status(pods.create(&PostParams::default(), &p).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    p.metadata.generate_name = Some("gen-".into());
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9);
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt(&name).await.unwrap().is_none());

    // TokenRequest.
    let sas: Api<ServiceAccount> = Api::namespaced(client(&f.api).await, NS);
    let tr = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: Some(vec!["istio-ca".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tr = sas
        .create_subresource::<_, k8s_openapi::api::authentication::v1::TokenRequest>(
            "token",
            "bookinfo",
            &PostParams::default(),
            &tr,
        )
        .await
        .unwrap();
    assert_eq!(tr.status.unwrap().token.unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn kube_watch_sees_store_writes() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let mut events = f.api.store().subscribe();
    let mut stream = pods
        .watch(&WatchParams::default().labels("app=ratings"), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("ratings-v1-xyz"))
    );
    let mut p = pod("ratings-v1-xyz", NS, "ratings", &["ratings"]);
    p["status"]["phase"] = json!("Failed");
    f.api.store().apply(p).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match next {
        WatchEvent::Modified(p) => assert_eq!(p.status.unwrap().phase.as_deref(), Some("Failed")),
        other => panic!("unexpected {other:?}"),
    }
    let ev = events.recv().await.unwrap();
    assert_eq!(
        (ev.op, ev.kind.as_str(), ev.name.as_str()),
        (StoreOp::Modified, "Pod", "ratings-v1-xyz")
    );
}

#[tokio::test]
async fn kube_portforward_and_exec() {
    let f = fixture().await;
    wire_admin(&f).await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let (got, _pf) = forward_get(&pods, "/server_info").await.unwrap();
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("{\"state\":\"LIVE\"}"),
        "{text}"
    );

    // Two ports on one websocket: 15090 has no backend → kubelet-worded error on its channel.
    let mut pf = pods.portforward(POD, &[15000, 15090]).await.unwrap();
    let err = pf.take_error(15090).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(2), err)
        .await
        .unwrap()
        .unwrap();
    assert!(
        msg.starts_with("error forwarding port 15090 to pod productpage-v1-abc, uid ")
            && msg.contains("connection refused"),
        "{msg}"
    );
    let mut s = pf.take_stream(15000).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.len() > 200_000);

    // exec: pilot-agent request emulation.
    let ap = AttachParams::default()
        .container("istio-proxy")
        .stdin(false)
        .max_stdout_buf_size(1 << 20);
    let mut proc = pods
        .exec(POD, ["pilot-agent", "request", "GET", "server_info"], &ap)
        .await
        .unwrap();
    let mut stdout = proc.stdout().unwrap();
    let status = proc.take_status().unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), stdout.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, "{\"state\":\"LIVE\"}\n");
    let st = tokio::time::timeout(Duration::from_secs(2), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_deref(), Some("Success"));

    let mut proc = pods
        .exec(POD, ["pilot-agent", "request", "GET", "nope"], &ap)
        .await
        .unwrap();
    let mut stderr = proc.stderr().unwrap();
    let status = proc.take_status().unwrap();
    let mut err = String::new();
    tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err))
        .await
        .unwrap()
        .unwrap();
    assert!(
        err.starts_with("Error: received unsuccessful status code 404"),
        "{err}"
    );
    let st = tokio::time::timeout(Duration::from_secs(2), status)
        .await
        .unwrap()
        .unwrap();
    let code = st.details.unwrap().causes.unwrap()[0].message.clone();
    assert_eq!(code.as_deref(), Some("255"));

    // Wrong container → 400 before the upgrade.
    let bad = AttachParams::default().container("nope").stdin(false);
    let s = api_status(pods.exec(POD, ["true"], &bad).await.err().unwrap());
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "container nope is not valid for pod productpage-v1-abc"
    );

    // Logs through kube.
    let s = api_status(pods.logs(POD, &LogParams::default()).await.unwrap_err());
    assert_eq!(
        s.message,
        "a container name must be specified for pod productpage-v1-abc, choose one of: [productpage istio-proxy]"
    );
}

// ---------------------------------------------------------------------------------------------
// Fault knobs, each observed by a client.

#[tokio::test]
async fn fault_deny_gives_rbac_403() {
    let f = fixture().await;
    wire_admin(&f).await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    f.api.faults().deny("create", "pods/portforward");
    let s = api_status(pods.portforward(POD, &[15000]).await.err().unwrap());
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "pods \"productpage-v1-abc\" is forbidden: User \"meshsim-user\" cannot create resource \
         \"pods/portforward\" in API group \"\" in the namespace \"demo\""
    );
    pods.get(POD).await.unwrap();
    f.api.faults().deny("patch", "deployments.apps");
    let deploys: Api<Deployment> = Api::namespaced(client(&f.api).await, NS);
    let s = api_status(
        deploys
            .patch(
                "productpage-v1",
                &PatchParams::default(),
                &Patch::Merge(json!({})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "deployments.apps \"productpage-v1\" is forbidden: User \"meshsim-user\" cannot patch resource \
         \"deployments\" in API group \"apps\" in the namespace \"demo\""
    );
    f.api.faults().clear();
    pods.portforward(POD, &[15000]).await.unwrap();
}

#[tokio::test]
async fn fault_status_codes_n_times() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    f.api.faults().fail("/pods/productpage", 500, Some(2));
    for _ in 0..2 {
        let s = api_status(pods.get(POD).await.unwrap_err());
        assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    }
    pods.get(POD).await.unwrap();
    // kube-rs retries 429 itself, after the Retry-After: 1 the server sends.
    f.api.faults().fail("/pods", 429, Some(1));
    let t = Instant::now();
    pods.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    let statuses: Vec<u16> = f.api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200, 429, 200]);
}

#[tokio::test]
async fn fault_latency() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    pods.get(POD).await.unwrap(); // connection set up
    f.api
        .faults()
        .latency("/pods/ratings", Duration::from_millis(300));
    let t = Instant::now();
    pods.get(POD).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(300));
    let t = Instant::now();
    pods.get("ratings-v1-xyz").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_drop_port_forward_after_bytes() {
    let f = fixture().await;
    wire_admin(&f).await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    f.api.faults().drop_port_forward_after(1000, Some(1));
    let (got, _) = forward_get(&pods, "/big").await.unwrap();
    assert_eq!(got.len(), 1000);
    let (got, _) = forward_get(&pods, "/big").await.unwrap();
    assert!(got.len() > 200_000);
}

#[tokio::test]
async fn fault_kill_pod_port() {
    let f = fixture().await;
    wire_admin(&f).await;
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    f.api.faults().kill_pod_port(NS, POD, 15000);
    let (got, mut pf) = forward_get(&pods, "/server_info").await.unwrap();
    assert!(got.is_empty());
    let msg = tokio::time::timeout(Duration::from_secs(2), pf.take_error(15000).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        msg.starts_with("error forwarding port 15000 to pod productpage-v1-abc"),
        "{msg}"
    );
}

#[tokio::test]
async fn kube_follow_logs_until_server_stops() {
    let f = fixture().await;
    let log = f.dir.path().join("proxy.log");
    std::fs::write(&log, "first\n").unwrap();
    f.api.set_pod_backend(
        NS,
        POD,
        PodBackend {
            ports: HashMap::new(),
            logs: HashMap::from([("istio-proxy".to_string(), log.clone())]),
        },
    );
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let lp = LogParams {
        container: Some("istio-proxy".into()),
        follow: true,
        ..LogParams::default()
    };
    let mut lines = futures::AsyncBufReadExt::lines(pods.log_stream(POD, &lp).await.unwrap());
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), lines.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        "first"
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, b"second\n").unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), lines.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        "second"
    );
    drop(f.api);
    let end = tokio::time::timeout(Duration::from_secs(2), lines.next())
        .await
        .expect("stream ends when the server stops");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

#[tokio::test]
async fn streaming_needs_a_running_pod() {
    let f = fixture().await;
    wire_admin(&f).await;
    let mut p = pod(POD, NS, "productpage", &["productpage", "istio-proxy"]);
    p["status"]["phase"] = json!("Pending");
    f.api.store().apply(p).unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&f.api).await, NS);
    let s = api_status(pods.portforward(POD, &[15000]).await.err().unwrap());
    assert_eq!(s.code, 400);
    assert!(s.message.contains("is not running"), "{}", s.message);
    let s = api_status(pods.portforward("nope", &[15000]).await.err().unwrap());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
}
