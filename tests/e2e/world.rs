#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The test world itself: scenarios start, real Envoys answer as Istio sidecars would, kubectl
//! sees the pods, and nothing is left running afterwards.

use std::time::{Duration, Instant};

use meshsim::envoy::{http_get, http_request, pid_alive};
use meshsim::scenario::Scenario;
use meshsim::sidecar::FAKE_JWKS;
use meshsim::{World, WorldOptions};
use serde_json::{Value, json};

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
    assert_eq!(
        p["issuer"],
        "https://keycloak-olaf-sso.apps.example.com/auth/realms/olaf"
    );
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
    assert!(log.contains("Failed to fetch public key from \"https://keycloak-olaf-sso.apps.example.com/auth/realms/olaf/protocol/openid-connect/certs\": Get https://"), "{log}");
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
