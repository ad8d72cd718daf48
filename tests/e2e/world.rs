#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The test world itself: scenarios start, real Envoys answer as Istio sidecars would, kubectl
//! sees the pods, and nothing is left running afterwards.

use std::time::{Duration, Instant};

use meshsim::envoy::{http_get, http_request, pid_alive};
use meshsim::scenario::{Down, Scenario};
use meshsim::sidecar::FAKE_JWKS;
use meshsim::xds::{CLUSTER, LISTENER, ROUTE, TYPES};
use meshsim::{World, WorldOptions};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn kubectl(world: &World, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", world.kubeconfig())
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .output()
        .expect("kubectl on PATH");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first dynamic or static resource of a config_dump section with this name.
fn find_in_dump<'a>(dump: &'a Value, section: &str, key: &str, name: &str) -> Option<&'a Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(section)))?
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|entry| {
            entry
                .get(key)
                .or_else(|| entry.pointer(&format!("/active_state/{key}")))
        })
        .find(|r| r["name"] == name)
}

fn jwt_provider(dump: &Value) -> Value {
    let inbound = find_in_dump(dump, "ListenersConfigDump", "listener", "virtualInbound")
        .expect("virtualInbound");
    let filters = inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let jwt = filters
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.jwt_authn")
        .expect("jwt_authn filter");
    jwt["typed_config"]["providers"]["origins-0"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_world_serves_envoy_apps_and_kubectl() {
    let t0 = Instant::now();
    let world = World::start("minimal").await.unwrap();
    let started = t0.elapsed();
    let pod = world.pod("demo", "web-").expect("web pod");
    assert!(pod.name.starts_with("web-"), "{}", pod.name);

    // Envoy admin: node id and Istio metadata
    let (status, body) = http_get(pod.admin.unwrap(), "/server_info").await.unwrap();
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    let node = &info["command_line_options"];
    assert_eq!(
        node["service_node"],
        format!(
            "sidecar~{}~{}.demo~demo.svc.cluster.local",
            pod.ip, pod.name
        )
    );
    assert_eq!(node["service_cluster"], "web.demo");
    let (_, dump) = http_get(pod.admin.unwrap(), "/config_dump").await.unwrap();
    let dump: Value = serde_json::from_str(&dump).unwrap();
    let md = &dump["configs"][0]["bootstrap"]["node"]["metadata"];
    assert_eq!(md["ISTIO_VERSION"], "1.24.2");
    assert_eq!(md["CLUSTER_ID"], "Kubernetes");
    assert_eq!(md["NAMESPACE"], "demo");
    assert_eq!(md["POD_NAME"], pod.name.as_str());
    assert_eq!(md["LABELS"]["app"], "web");
    assert_eq!(md["SERVICE_ACCOUNT"], "default");
    assert!(find_in_dump(&dump, "ClustersConfigDump", "cluster", "inbound|8080||").is_some());
    assert!(
        find_in_dump(
            &dump,
            "ClustersConfigDump",
            "cluster",
            "outbound|8080||web.demo.svc.cluster.local"
        )
        .is_some()
    );

    // a request to the inbound listener reaches the app
    let (status, body) = http_get(pod.inbound.unwrap(), "/").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, format!("web v1 from '{}': 1\n", pod.name).as_str())
    );
    // ... and so does one through the outbound listener, by service name
    let out = pod.listeners["0.0.0.0_8080"];
    let (status, body) = http_request(
        out,
        "GET",
        "/",
        &[("host", "web.demo.svc.cluster.local:8080")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, format!("web v1 from '{}': 2\n", pod.name).as_str())
    );

    // the apiserver knows the pod as an injected one
    let store = world.apiserver().store();
    let obj = store.get("v1", "Pod", Some("demo"), &pod.name).unwrap();
    assert_eq!(obj["spec"]["initContainers"][0]["name"], "istio-init");
    assert_eq!(obj["spec"]["containers"][1]["name"], "istio-proxy");
    assert_eq!(obj["status"]["podIP"], pod.ip.as_str());

    // real kubectl against the fake apiserver (blocking is fine: the world has its own runtime)
    let (ok, out, err) = kubectl(&world, &["get", "pods"]);
    assert!(ok, "kubectl get pods failed: {err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&pod.name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("2/2") && line.contains("Running"), "{out}");
    let (ok, out, err) = kubectl(&world, &["logs", &pod.name, "-c", "web"]);
    assert!(ok && out.contains("GET / from"), "{out}{err}");

    let pids = world.pids();
    assert_eq!(world.envoy_pids().len(), 1);
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let dir = world.temp_dir().to_path_buf();
    drop(world);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the world");
    }
    assert!(!dir.exists(), "temp dir removed");
    eprintln!("minimal world started in {started:?}");
    assert!(started < Duration::from_secs(10), "{started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_world_has_the_article_setup() {
    let world = World::start("seed").await.unwrap();
    let names: Vec<String> = world
        .pods()
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    for prefix in [
        "olaf-customer/customer-",
        "olaf-customer/preference-",
        "olaf-customer/recommendation-v1-",
        "olaf-customer/recommendation-v2-",
        "olaf/istio-pilot-",
        "olaf/istio-ingressgateway-",
        "olaf/istio-egressgateway-",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "{prefix} in {names:?}"
        );
    }
    // 4 sidecars + 2 gateways
    assert_eq!(world.envoy_pids().len(), 6);

    let customer = world.pod("olaf-customer", "customer").unwrap();
    assert_eq!(customer.name, "customer-6f8c9d7b5-x2x7k");
    let (_, dump) = http_get(customer.admin.unwrap(), "/config_dump")
        .await
        .unwrap();
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(
        dump["configs"][0]["bootstrap"]["node"]["metadata"]["ISTIO_VERSION"],
        "1.4.8"
    );
    let p = jwt_provider(&dump);
    let jwks = world.jwks().expect("the seed has a JWKS server");
    assert_eq!(p["issuer"], jwks.issuer().as_str());
    // Istio ≤1.7 (Maistra 1.1 = Istio 1.4): istiod inlines the empty fetch result
    assert_eq!(p["local_jwks"]["inline_string"], "");
    let dr = find_in_dump(
        &dump,
        "ClustersConfigDump",
        "cluster",
        "outbound|8080|version-v1|recommendation.olaf-customer.svc.cluster.local",
    )
    .expect("subset cluster");
    assert_eq!(
        dr["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking/v1alpha3/namespaces/olaf-customer/destination-rule/recommendation"
    );

    // the legacy Policy makes a token mandatory at customer's sidecar
    let (status, body) = http_get(customer.inbound.unwrap(), "/").await.unwrap();
    assert_eq!(status, 401, "{body}");
    // preference -> (its sidecar, VirtualService to v1) -> recommendation v1
    let preference = world.pod("olaf-customer", "preference").unwrap();
    let (status, body) = http_get(preference.inbound.unwrap(), "/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "preference => recommendation v1 from 'recommendation-v1-7c9d8b6f5-k2h4m': 1\n"
    );
    // customer's app itself calls through its sidecar's outbound listener
    let (status, body) = http_get(customer.app.unwrap(), "/").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "customer => preference => recommendation v1 from 'recommendation-v1-7c9d8b6f5-k2h4m': 2\n"
        )
    );

    // the Istio objects and the pilot pod are in the apiserver; pilot logged the fetch failure
    let store = world.apiserver().store();
    assert!(
        store
            .get(
                "security.istio.io/v1beta1",
                "RequestAuthentication",
                Some("olaf-customer"),
                "customerjwt"
            )
            .is_some()
    );
    assert!(
        store
            .get(
                "authentication.istio.io/v1alpha1",
                "Policy",
                Some("olaf-customer"),
                "customerjwt"
            )
            .is_some()
    );
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let pilot_obj = store.get("v1", "Pod", Some("olaf"), &pilot.name).unwrap();
    assert_eq!(pilot_obj["metadata"]["labels"]["istio"], "pilot");
    let log = std::fs::read_to_string(&pilot.logs["discovery"]).unwrap();
    let uri = jwks.jwks_uri();
    let line = format!(
        "error\tmodel\tFailed to fetch public key from \"{uri}\": Get {uri}: x509: certificate signed by unknown authority"
    );
    assert!(log.contains(&line), "{log}");
    // the sidecar log has Envoy's logger names and the access log of the 401
    let envoy_log = std::fs::read_to_string(customer.log_path.as_ref().unwrap()).unwrap();
    assert!(
        envoy_log.contains("[Envoy (Epoch 0)] [") && envoy_log.contains("][main] "),
        "{envoy_log}"
    );

    let pids = world.pids();
    drop(world);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the world");
    }
}

/// Two worlds at once do not collide; a modern flavour gets istiod's FakeJwks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_worlds_and_a_modern_jwt_placeholder() {
    let mut modern = Scenario::load("minimal").unwrap();
    modern.objects.push(json!({
        "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": "web-jwt", "namespace": "demo"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "jwtRules": [{"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks", "audiences": ["web"]}]},
    }));
    let (a, b) = tokio::join!(
        World::start("minimal"),
        World::start_with(modern, WorldOptions::default())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (pa, pb) = (a.pod("demo", "web").unwrap(), b.pod("demo", "web").unwrap());
    assert_ne!(pa.admin, pb.admin);
    assert_ne!(a.apiserver().url(), b.apiserver().url());
    assert_ne!(a.temp_dir(), b.temp_dir());
    for p in [&pa, &pb] {
        let (status, _) = http_get(p.inbound.unwrap(), "/").await.unwrap();
        assert_eq!(
            status, 200,
            "a RequestAuthentication alone lets requests without a token through"
        );
    }
    let (_, dump) = http_get(pb.admin.unwrap(), "/config_dump").await.unwrap();
    let provider = jwt_provider(&serde_json::from_str(&dump).unwrap());
    assert_eq!(provider["local_jwks"]["inline_string"], FAKE_JWKS);
    assert_eq!(provider["audiences"], json!(["web"]));
    // a token that cannot match the fake key is rejected
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlLmNvbSIsImF1ZCI6IndlYiIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln";
    let auth = format!("Bearer {token}");
    let (status, body) = http_request(
        pb.inbound.unwrap(),
        "GET",
        "/",
        &[("authorization", auth.as_str())],
        None,
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (401, "Jwt verification fails"));
    let pids: Vec<u32> = a.pids().into_iter().chain(b.pids()).collect();
    a.stop().await;
    b.stop().await;
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

/// `meshsim up`: prints the kubeconfig export, writes the ready file, stops its Envoys on
/// SIGTERM — and even when it is SIGKILLed, its Envoys die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshsim_up_runs_and_cleans_up() {
    let exe = env!("CARGO_BIN_EXE_meshsim");
    let scratch = tempfile::tempdir().unwrap();
    for signal in ["-TERM", "-KILL"] {
        let ready = scratch.path().join(format!("ready{signal}"));
        let mut child = tokio::process::Command::new(exe)
            .args(["up", "--scenario", "minimal", "--ready-file"])
            .arg(&ready)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "meshsim up did not get ready");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("meshsim up exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kubeconfig = std::fs::read_to_string(&ready).unwrap().trim().to_owned();
        let out = tokio::process::Command::new("kubectl")
            .args(["get", "pods", "-o", "name"])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("pod/web-"),
            "{out:?}"
        );
        let temp_dir = std::path::Path::new(&kubeconfig)
            .parent()
            .unwrap()
            .to_path_buf();
        let envoys = processes_mentioning(&temp_dir.to_string_lossy());
        assert!(
            !envoys.is_empty(),
            "an Envoy runs with its config in {}",
            temp_dir.display()
        );
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("export KUBECONFIG="), "{stdout}");
        if signal == "-TERM" {
            assert!(output.status.success(), "{output:?}");
            assert!(!temp_dir.exists(), "temp dir removed on SIGTERM");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while envoys.iter().any(|p| pid_alive(*p)) {
            assert!(
                Instant::now() < deadline,
                "Envoys outlived meshsim after {signal}: {envoys:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&temp_dir);
    }
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
            && pid_alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

/// A synchronous test can own a world too (the world runs on its own runtime).
#[test]
fn blocking_start_from_a_plain_test() {
    let world = World::start_blocking("minimal").unwrap();
    let (ok, out, err) = kubectl(
        &world,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1");
    let pids = world.pids();
    drop(world);
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

// ---------------------------------------------------------------------------------------------
// The control plane: ADS, istiod's debug endpoints, JWKS resolution

/// The config_dump section whose `@type` ends with `section`.
fn section<'a>(dump: &'a Value, section: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"].as_str().unwrap().ends_with(section))
        .unwrap_or_else(|| panic!("no {section}"))
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path).await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The inline JWKS istiod wants a proxy's first JWT provider to have.
fn desired_inline_jwks(world: &World, ns: &str, pod: &str) -> String {
    let res = world.envoy_resources(ns, pod).unwrap();
    let inbound = res
        .listeners
        .iter()
        .find(|l| l["name"] == "virtualInbound")
        .unwrap();
    inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        ["providers"]["origins-0"]["local_jwks"]["inline_string"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until istiod wants `pod` to have `jwks` inline and the proxy acked that LDS push.
async fn wait_for_pushed_jwks(world: &World, ns: &str, pod: &str, jwks: &str) {
    let name = world.pod(ns, pod).unwrap().name;
    let node = world.node_id(ns, &name).unwrap();
    let xds = world.xds_for(ns, &name).unwrap();
    xds.wait_for(WAIT, |all| {
        let p = all.iter().find(|p| p.node_id == node)?;
        let view = xds.resources(&node)?;
        let inline = view.listeners.iter().find(|l| l["name"] == "virtualInbound")?["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["providers"]["origins-0"]["local_jwks"]["inline_string"]
            .as_str()?
            .to_owned();
        (inline == jwks && p.synced(&[LISTENER])).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Every sidecar and gateway of the seed syncs over ADS with istio-pilot; pilot's syncz (1.4
/// shape, on 15014 and 8080) and config_dump mirror the ADS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_proxies_sync_over_ads_and_pilot_reports_them() {
    let world = World::start("seed").await.unwrap();
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let xds = world.xds_for("olaf", &pilot.name).unwrap();
    let proxies: Vec<_> = world
        .pods()
        .into_iter()
        .filter(|p| p.admin.is_some())
        .collect();
    assert_eq!(proxies.len(), 6);
    for p in &proxies {
        assert_eq!(p.istiod.as_deref(), Some(pilot.name.as_str()), "{}", p.name);
        let node = p.node_id.clone().unwrap();
        let types: &[&str] = if node.starts_with("router~") {
            &[CLUSTER, LISTENER, meshsim::xds::ENDPOINT]
        } else {
            TYPES
        };
        let st = xds.wait_synced(&node, types, WAIT).await.unwrap();
        assert_eq!(st.metadata("ISTIO_VERSION"), Some("1.4.8"));
    }

    // a real sidecar's config_dump: dynamic resources with istiod's versions, a tiny bootstrap
    let customer = world.pod("olaf-customer", "customer").unwrap();
    let (_, dump) = http_get(customer.admin.unwrap(), "/config_dump")
        .await
        .unwrap();
    let dump: Value = serde_json::from_str(&dump).unwrap();
    let statics: Vec<&str> = dump["configs"][0]["bootstrap"]["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(statics, ["prometheus_stats", "xds-grpc"]);
    let clusters = section(&dump, "ClustersConfigDump");
    let dynamic = clusters["dynamic_active_clusters"].as_array().unwrap();
    assert!(dynamic.iter().any(|c| c["cluster"]["name"]
        == "outbound|8080|version-v1|recommendation.olaf-customer.svc.cluster.local"));
    let st = xds
        .wait_synced(customer.node_id.as_deref().unwrap(), TYPES, WAIT)
        .await
        .unwrap();
    assert_eq!(
        dynamic[0]["version_info"].as_str(),
        st.type_status(CLUSTER).unwrap().acked_version.as_deref()
    );
    assert!(
        section(&dump, "ListenersConfigDump")["dynamic_listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "virtualInbound")
    );
    assert!(
        section(&dump, ".RoutesConfigDump")["dynamic_route_configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route_config"]["name"] == "8080")
    );

    // pilot's syncz lists every proxy, each type acked == sent; 1.4 shape on 15014 and 8080
    world.wait_synced(WAIT).await.unwrap();
    let istiod = world.istiod_for("olaf", &pilot.name).unwrap();
    for port in [15014, 8080] {
        let (status, syncz) = get_json(istiod.addr(port).unwrap(), "/debug/syncz").await;
        assert_eq!(status, 200);
        let items = syncz.as_array().unwrap();
        let mut ids: Vec<&str> = items.iter().map(|i| i["proxy"].as_str().unwrap()).collect();
        ids.sort();
        let mut want: Vec<String> = proxies.iter().map(|p| p.proxy_id.clone()).collect();
        want.sort();
        assert_eq!(ids, want);
        for i in items {
            assert!(i.get("cluster_id").is_none(), "1.4 shape: {i}");
            assert_eq!(i["istio_version"], "1.4.8");
            for t in ["cluster", "listener", "endpoint"] {
                let sent = i[format!("{t}_sent")].as_str().unwrap();
                assert_eq!(i[format!("{t}_acked")].as_str(), Some(sent), "{i}");
            }
        }
    }
    // istiod's config_dump of the proxy matches what Envoy has (names), camelCase
    let (status, idump) = get_json(
        istiod.addr(15014).unwrap(),
        &format!("/debug/config_dump?proxyID={}", customer.proxy_id),
    )
    .await;
    assert_eq!(status, 200, "{idump}");
    let names = |list: &Value, ptr: &str| -> Vec<String> {
        let mut v: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.pointer(ptr).unwrap().as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(
            &section(&idump, "ClustersConfigDump")["dynamicActiveClusters"],
            "/cluster/name"
        ),
        names(&clusters["dynamic_active_clusters"], "/cluster/name")
    );
    assert!(
        section(&idump, "ListenersConfigDump")["dynamicListeners"][0]["activeState"]["listener"]
            .get("filterChains")
            .is_some()
    );
    // the pilot pod's ports go to the stand-in
    let (status, _) = get_json(istiod.addr(9876).unwrap(), "/scopej/").await;
    assert_eq!(status, 200);
}

/// The article's story: istiod cannot fetch the Keycloak's JWKS (private CA) → a real token is
/// rejected; inlining the JWKS into the policies → istiod pushes the real keys → accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_token_is_rejected_until_the_jwks_is_inlined() {
    let world = World::start("seed").await.unwrap();
    let jwks = world.jwks().unwrap();
    let token = jwks.token("alice", "customer", now(), Duration::from_secs(3600));
    let (status, body) = world
        .request("olaf-customer", "customer", "/", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(desired_inline_jwks(&world, "olaf-customer", "customer"), "");
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let log = std::fs::read_to_string(&pilot.logs["discovery"]).unwrap();
    assert!(
        log.contains("x509: certificate signed by unknown authority"),
        "{log}"
    );
    // kubectl logs shows the same
    let (ok, out, err) = kubectl(
        &world,
        &["logs", "-n", "olaf", &pilot.name, "-c", "discovery"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "Failed to fetch public key from \"{}\"",
            jwks.jwks_uri()
        )),
        "{out}"
    );

    // the fix: replace jwksUri by the JWKS itself in both objects (as `jwks-trust inline` does)
    let store = world.apiserver().store();
    let keys = jwks.jwks_json();
    let mut ra = store
        .get(
            "security.istio.io/v1beta1",
            "RequestAuthentication",
            Some("olaf-customer"),
            "customerjwt",
        )
        .unwrap();
    let rule = ra["spec"]["jwtRules"][0].as_object_mut().unwrap();
    rule.remove("jwksUri");
    rule.insert("jwks".into(), json!(keys));
    store.apply(ra).unwrap();
    let mut policy = store
        .get(
            "authentication.istio.io/v1alpha1",
            "Policy",
            Some("olaf-customer"),
            "customerjwt",
        )
        .unwrap();
    let jwt = policy["spec"]["origins"][0]["jwt"].as_object_mut().unwrap();
    jwt.remove("jwksUri");
    jwt.insert("jwks".into(), json!(keys));
    store.apply(policy).unwrap();
    wait_for_pushed_jwks(&world, "olaf-customer", "customer", &keys).await;

    let (status, body) = world
        .request("olaf-customer", "customer", "/", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("customer => preference => recommendation v1"),
        "{body}"
    );
    // still required: no token, no entry
    let (status, _) = world
        .request("olaf-customer", "customer", "/", None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    // the sidecar's config_dump has the real keys, Envoy acked them
    let customer = world.pod("olaf-customer", "customer").unwrap();
    let (_, dump) = http_get(customer.admin.unwrap(), "/config_dump")
        .await
        .unwrap();
    let p = jwt_provider(&serde_json::from_str(&dump).unwrap());
    assert_eq!(p["local_jwks"]["inline_string"], keys.as_str());

    // deleting the legacy Policy leaves the RequestAuthentication: a token is optional
    assert!(store.delete(
        "authentication.istio.io/v1alpha1",
        "Policy",
        Some("olaf-customer"),
        "customerjwt"
    ));
    let node = customer.node_id.clone().unwrap();
    let xds = world.xds_for("olaf-customer", "customer").unwrap();
    xds.wait_for(WAIT, |all| {
        let p = all.iter().find(|p| p.node_id == node)?;
        let view = xds.resources(&node)?;
        let optional = view
            .listeners
            .iter()
            .any(|l| l["name"] == "virtualInbound" && l.to_string().contains("allow_missing"));
        (optional && p.synced(&[LISTENER])).then_some(())
    })
    .await
    .unwrap();
    let (status, body) = world
        .request("olaf-customer", "customer", "/", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// `jwks-trust add-ca`'s fix: the CA in a Secret mounted at /cacerts of the discovery
/// container → istiod restarts, fetches the JWKS, pushes it → the token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_the_ca_to_istiod_restarts_it_and_the_fetch_succeeds() {
    let world = World::start("seed").await.unwrap();
    let jwks = world.jwks().unwrap();
    let token = jwks.token("alice", "customer", now(), Duration::from_secs(3600));
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let replica = world.replica_for("olaf", &pilot.name).unwrap();
    assert_eq!(replica.restarts(), 0);
    let store = world.apiserver().store();
    store
        .apply(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "jwks-extra-cacerts", "namespace": "olaf"},
            "stringData": {"extra.pem": jwks.ca_pem()},
        }))
        .unwrap();
    // a Secret alone changes nothing: istiod reads the bundle at start
    world.regenerate().await.unwrap();
    assert_eq!(desired_inline_jwks(&world, "olaf-customer", "customer"), "");
    let mut dep = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    let spec = &mut dep["spec"]["template"]["spec"];
    spec["volumes"] = json!([{"name": "jwks-extra-cacerts", "secret": {"secretName": "jwks-extra-cacerts", "optional": true}}]);
    spec["containers"][0]["volumeMounts"] =
        json!([{"name": "jwks-extra-cacerts", "mountPath": "/cacerts", "readOnly": true}]);
    assert_eq!(spec["containers"][0]["name"], "discovery");
    store.apply(dep).unwrap();

    replica.wait_restarts(1, WAIT).await.unwrap();
    assert_eq!(replica.restarts(), 1);
    wait_for_pushed_jwks(&world, "olaf-customer", "customer", &jwks.jwks_json()).await;
    let (status, body) = world
        .request("olaf-customer", "customer", "/", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // the pod shows the restart, the Deployment rolled out, the new log has no fetch failure
    let pod = store.get("v1", "Pod", Some("olaf"), &pilot.name).unwrap();
    let discovery = pod["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "discovery")
        .unwrap();
    assert_eq!(discovery["restartCount"], 1);
    let dep = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    assert_eq!(
        dep["status"]["observedGeneration"],
        dep["metadata"]["generation"]
    );
    let log = std::fs::read_to_string(&pilot.logs["discovery"]).unwrap();
    assert!(!log.contains("x509"), "{log}");
    assert!(log.contains("Starting ADS server"), "{log}");
    // a key rotation reaches the sidecar once istiod refreshes its cache
    jwks.rotate();
    let token2 = jwks.token("bob", "customer", now(), Duration::from_secs(3600));
    let (status, _) = world
        .request("olaf-customer", "customer", "/", Some(&token2))
        .await
        .unwrap();
    assert_eq!(status, 401, "istiod still has the old key");
    world.refresh_jwks().await.unwrap();
    wait_for_pushed_jwks(&world, "olaf-customer", "customer", &jwks.jwks_json()).await;
    let (status, body) = world
        .request("olaf-customer", "customer", "/", Some(&token2))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // every proxy reconnected and is in sync again; syncz lists them all
    world.wait_synced(WAIT).await.unwrap();
    let (_, syncz) = get_json(
        world
            .istiod_for("olaf", &pilot.name)
            .unwrap()
            .addr(15014)
            .unwrap(),
        "/debug/syncz",
    )
    .await;
    assert_eq!(syncz.as_array().unwrap().len(), 6, "{syncz}");
}

/// Two replicas, a down one, a canary revision, a NACKing proxy, a held type, and istiod's
/// view made to differ from the Envoy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_revisions_and_proxy_knobs() {
    let mut s = Scenario::load("minimal").unwrap();
    let web = s
        .workloads
        .iter()
        .find(|w| w.name == "web")
        .unwrap()
        .clone();
    let istiod = s.workloads.iter_mut().find(|w| w.name == "istiod").unwrap();
    istiod.replicas = 3;
    istiod.down = Down::Replicas(vec![2]);
    let mut canary = istiod.clone();
    canary.name = "istiod-canary".into();
    canary.replicas = 1;
    canary.down = Down::default();
    canary.revision = Some("canary".into());
    s.workloads.push(canary);
    s.workloads
        .iter_mut()
        .find(|w| w.name == "web")
        .unwrap()
        .replicas = 2;
    let app = |name: &str| {
        let mut w = web.clone();
        w.name = name.into();
        w.replicas = 1;
        w
    };
    let mut nacked = app("nacked");
    nacked.nack = vec!["LDS".into()];
    let mut held = app("held");
    held.hold = vec!["RDS".into()];
    let mut canary_app = app("canary-app");
    canary_app
        .labels
        .insert("istio.io/rev".into(), "canary".into());
    s.workloads.extend([nacked, held, canary_app]);
    let world = World::start_with(s, WorldOptions::default()).await.unwrap();

    let by_app = |app: &str| -> Vec<meshsim::PodInfo> {
        let mut v: Vec<_> = world
            .pods()
            .into_iter()
            .filter(|p| p.app_label == app)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    let istiods = by_app("istiod");
    assert_eq!(istiods.len(), 3);
    let downs: Vec<_> = istiods
        .iter()
        .filter(|p| {
            world
                .replica_for("istio-system", &p.name)
                .unwrap()
                .is_down()
        })
        .collect();
    assert_eq!(downs.len(), 1);
    let down = downs[0];
    let r = world.replica_for("istio-system", &down.name).unwrap();
    assert!(r.ports().is_empty() && world.xds_for("istio-system", &down.name).is_none());
    let canary = &by_app("istiod-canary")[0];
    assert_eq!(canary.labels["istio.io/rev"], "canary");

    // the two web pods went round-robin to the two running default replicas
    let webs = by_app("web");
    let mut assigned: Vec<&str> = webs.iter().map(|p| p.istiod.as_deref().unwrap()).collect();
    assigned.sort();
    assigned.dedup();
    assert_eq!(assigned.len(), 2, "{assigned:?}");
    assert!(!assigned.contains(&down.name.as_str()));
    assert_eq!(
        by_app("canary-app")[0].istiod.as_deref(),
        Some(canary.name.as_str())
    );

    // each istiod knows only its own proxies
    for i in istiods.iter().filter(|p| p.name != down.name) {
        let st = world.istiod_for("istio-system", &i.name).unwrap();
        let (_, syncz) = get_json(st.addr(15014).unwrap(), "/debug/syncz").await;
        let listed: Vec<&str> = syncz
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["proxy"].as_str().unwrap())
            .collect();
        let mine: Vec<String> = world
            .pods()
            .into_iter()
            .filter(|p| p.istiod.as_deref() == Some(i.name.as_str()))
            .map(|p| p.proxy_id)
            .collect();
        let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
        listed_sorted.sort();
        let mut mine_sorted = mine.clone();
        mine_sorted.sort();
        assert_eq!(listed_sorted, mine_sorted, "{}", i.name);
        for other in world
            .pods()
            .iter()
            .filter(|p| p.istiod.is_some() && !mine.contains(&p.proxy_id))
        {
            let (status, body) = http_get(
                st.addr(15014).unwrap(),
                &format!("/debug/config_dump?proxyID={}", other.proxy_id),
            )
            .await
            .unwrap();
            assert_eq!(status, 404, "{body}");
            assert!(
                body.contains("Proxy not connected to this Pilot instance"),
                "{body}"
            );
        }
    }
    let syncz_of = |pod: &meshsim::PodInfo| {
        let st = world.istiod_for("demo", &pod.name).unwrap();
        let addr = st.addr(15014).unwrap();
        let id = pod.proxy_id.clone();
        async move {
            let (_, syncz) = get_json(addr, "/debug/syncz").await;
            syncz
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["proxy"] == id.as_str())
                .unwrap()
                .clone()
        }
    };

    // the NACKing proxy: LDS rejected with Envoy's error, the rest of the world in sync
    let nacked = &by_app("nacked")[0];
    let n = syncz_of(nacked).await;
    assert_ne!(n["listener_sent"], n["listener_acked"], "{n}");
    let err = n["resources"][LISTENER]["lastError"].as_str().unwrap();
    assert!(err.contains("meshsim.invalid"), "{err}");
    assert_eq!(n["cluster_sent"], n["cluster_acked"]);
    let w = syncz_of(&webs[0]).await;
    assert_eq!(w["listener_sent"], w["listener_acked"], "{w}");
    assert!(w["resources"][LISTENER].get("lastError").is_none());
    // the NACKing proxy still serves with its previous listeners
    let (status, _) = http_get(nacked.inbound.unwrap(), "/").await.unwrap();
    assert_eq!(status, 200);

    // the held type is never sent
    let held = &by_app("held")[0];
    let h = syncz_of(held).await;
    assert!(h.get("route_sent").is_none(), "{h}");
    assert_eq!(h["listener_sent"], h["listener_acked"]);

    // the canary proxy is listed by the canary istiod
    let c = syncz_of(&by_app("canary-app")[0]).await;
    assert_eq!(c["cluster_sent"], c["cluster_acked"]);

    // runtime knobs: push_invalid / clear_invalid on a web proxy
    let web0 = &webs[0];
    let xds = world.xds_for("demo", &web0.name).unwrap();
    let node = web0.node_id.clone().unwrap();
    xds.push_invalid(&node, CLUSTER);
    xds.wait_for(WAIT, |all| {
        all.iter()
            .find(|p| p.node_id == node)?
            .type_status(CLUSTER)?
            .last_error
            .clone()
    })
    .await
    .unwrap();
    xds.clear_invalid(&node, CLUSTER);
    xds.wait_synced(&node, TYPES, WAIT).await.unwrap();

    // istiod's view differs from the Envoy's without any push
    let mut view: meshsim::xds::ProxyResources =
        world.envoy_resources("demo", &web0.name).unwrap().into();
    view.clusters.retain(|c| c["name"] != "BlackHoleCluster");
    world.set_istiod_view("demo", &web0.name, view).unwrap();
    let st = world.istiod_for("demo", &web0.name).unwrap();
    let (_, idump) = get_json(
        st.addr(15014).unwrap(),
        &format!("/debug/config_dump?proxyID={}", web0.proxy_id),
    )
    .await;
    let names: Vec<&str> = section(&idump, "ClustersConfigDump")["dynamicActiveClusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"BlackHoleCluster"), "{names:?}");
    let (_, dump) = http_get(web0.admin.unwrap(), "/config_dump").await.unwrap();
    assert!(dump.contains("\"BlackHoleCluster\""));
    world.clear_istiod_view("demo", &web0.name).unwrap();
    let (_, idump) = get_json(
        st.addr(15014).unwrap(),
        &format!("/debug/config_dump?proxyID={}", web0.proxy_id),
    )
    .await;
    assert!(idump.to_string().contains("BlackHoleCluster"));
    // the routes of every synced proxy were pushed (RDS watched, acked)
    let st = xds.wait_synced(&node, &[ROUTE], WAIT).await.unwrap();
    assert!(st.type_status(ROUTE).unwrap().acked_nonce.is_some());
}

/// Static mode still works (no control plane pushes; Envoy has everything in its bootstrap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_puts_everything_in_the_bootstrap() {
    let opts = WorldOptions {
        xds_mode: meshsim::sidecar::XdsMode::Static,
        ..WorldOptions::default()
    };
    let world = World::start_with(Scenario::load("minimal").unwrap(), opts)
        .await
        .unwrap();
    let web = world.pod("demo", "web").unwrap();
    assert_eq!(web.istiod, None);
    let (_, dump) = http_get(web.admin.unwrap(), "/config_dump").await.unwrap();
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert!(
        section(&dump, "ClustersConfigDump")
            .get("dynamic_active_clusters")
            .is_none()
    );
    let (status, _) = http_get(web.inbound.unwrap(), "/").await.unwrap();
    assert_eq!(status, 200);
    // istiod still runs, with no proxy connected
    let istiod = world.pod("istio-system", "istiod").unwrap();
    let (_, syncz) = get_json(
        world
            .istiod_for("istio-system", &istiod.name)
            .unwrap()
            .addr(15014)
            .unwrap(),
        "/debug/syncz",
    )
    .await;
    assert_eq!(syncz, json!([]));
}
