#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kubectl-mesh-sync: CLI contract tests (help, usage errors, -f in both syncz forms, every -o
//! format, --check, the offline comparison, malformed input) and the comparison against a REAL
//! Envoy through --admin-url.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/istio")
        .join(rel)
}

fn derived(n: &str) -> PathBuf {
    fixture(&format!("v1.21/ps/derived-inputs/{n}.syncz.json"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh-sync"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env("HOME", home.path())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("Usage: kubectl mesh-sync [OPTIONS] [POD]"),
        "{}",
        r.stdout
    );
    for flag in [
        "--istio-namespace",
        "--revision",
        "--check",
        "--wait",
        "--istiod-file",
        "--proxy-file",
        "--file",
    ] {
        assert!(r.stdout.contains(flag), "{flag} missing:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("Exit codes:"), "{}", r.stdout);
    assert_eq!(r.stderr, "");
}

#[test]
fn usage_errors_exit_2() {
    let r = run(&["--timeout", "1m"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--wait"), "{}", r.stderr);
    let r = run(&["pod-1", "-f", "x.json"]);
    assert_eq!(r.code, 2);
    let r = run(&["-o", "xml"]);
    assert_eq!(r.code, 2);
}

#[test]
fn single_http_file() {
    // ISTIOD is the file name up to its first '.'
    let f = derived("istiod1-single");
    let r = run(&["-f", s(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "\
NAME     CLUSTER    CDS     LDS      EDS      RDS        ECDS       ISTIOD           VERSION
proxy1   cluster1   STALE   SYNCED   SYNCED   NOT SENT   NOT SENT   istiod1-single   1.1
proxy2   cluster2   STALE   SYNCED   STALE    SYNCED     NOT SENT   istiod1-single   1.1
"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn several_replicas_merge() {
    let files: Vec<PathBuf> = (1..=4).map(|i| derived(&format!("istiod{i}"))).collect();
    let mut args = Vec::new();
    for f in &files {
        args.extend(["-f", s(f)]);
    }
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "\
NAME     CLUSTER    CDS                          LDS        EDS                          RDS        ECDS       ISTIOD    VERSION
proxy1   cluster1   STALE                        SYNCED     SYNCED                       NOT SENT   NOT SENT   istiod1   1.1
proxy2   cluster2   STALE                        SYNCED     STALE                        SYNCED     NOT SENT   istiod2   1.1
proxy3   cluster3   STALE (Never Acknowledged)   NOT SENT   STALE (Never Acknowledged)   SYNCED     NOT SENT   istiod3   1.1
proxy4   cluster4   IGNORED                      IGNORED    IGNORED                      IGNORED    IGNORED    istiod4   1.1
"
    );
}

#[test]
fn xds_response_file_and_namespace_filter() {
    let f = fixture("current/ps-xds/multiXdsStatusSinglePilot.json");
    let r = run(&["-f", s(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "proxy1   cluster1   STALE   SYNCED   SYNCED   NOT SENT   SYNCED   istiod1   1.20"
        ),
        "{}",
        r.stdout
    );
    let f = fixture("current/ps-xds/multiXdsStatusSingleNamespace.yaml");
    let r = run(&["-f", s(&f), "-n", "foo"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("proxy1"), "{}", r.stdout);
    let r = run(&["-f", s(&f), "-n", "bar"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(r.stderr, "No resources found in bar namespace.\n");
}

#[test]
fn json_and_yaml_envelope() {
    let f = derived("istiod2");
    let r = run(&["-f", s(&f), "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["apiVersion"], "meshdebug.io/v1");
    assert_eq!(v["kind"], "ProxyStatusList");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["istiod"], "istiod2");
    assert_eq!(v["items"][0]["cds"]["state"], "STALE");
    let r = run(&["-f", s(&f), "-o", "yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("apiVersion: meshdebug.io/v1\nkind: ProxyStatusList\nitems:\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("state: STALE"), "{}", r.stdout);
}

#[test]
fn wide_adds_columns() {
    let f = fixture("derived/http-debug-syncz.modern.example.json");
    let r = run(&["-f", s(&f), "-o", "wide"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap();
    assert!(
        header.contains("   VERSION   TYPE      LAST SENT   NONCES   ")
            && header.ends_with("ERROR"),
        "{header}"
    );
    assert!(r.stdout.contains("RDS=00000003/00000099"), "{}", r.stdout);
}

#[test]
fn check_exits_1_on_stale() {
    let f = derived("istiod2");
    let r = run(&["-f", s(&f), "--check"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with("NAME"), "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "1 of 1 proxies not in sync:\n  proxy2 (istiod istiod2): CDS STALE, EDS STALE\n"
    );
    // a ztunnel with nothing watched is not drift
    let f = derived("istiod4");
    let r = run(&["-f", s(&f), "--check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn offline_comparison() {
    let a = fixture("current/ps-diff/configdump.json");
    let b = fixture("current/ps-diff/configdump_diff.json");
    let r = run(&["--istiod-file", s(&a), "--proxy-file", s(&a)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Clusters Match\nListeners Match\nRoutes Match (RDS last loaded at Mon, 04 Mar 2024 08:37:44 UTC)\n"
    );
    let r = run(&["--istiod-file", s(&a), "--proxy-file", s(&b)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("Clusters Don't Match\n--- Istiod Clusters\n+++ Envoy Clusters\n@@ "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\nListeners Don't Match\n--- Istiod Listeners\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\nRoutes Don't Match (RDS last loaded at "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\n-                \"name\": \"inbound-vip|9080|http|ratings.default.svc.cluster.local\",\n"),
        "{}",
        r.stdout
    );
    let r = run(&["--istiod-file", s(&a), "--proxy-file", s(&b), "-o", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "ProxyConfigComparisonList");
    assert_eq!(v["items"][0]["clusters"]["match"], false);
}

#[test]
fn comparison_needs_a_proxy_side() {
    let a = fixture("current/ps-diff/configdump.json");
    let r = run(&["--istiod-file", s(&a)]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: nothing to compare istiod's config with\nhint: "),
        "{}",
        r.stderr
    );
}

#[test]
fn malformed_files_exit_2_with_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("istiod-x.json");
    std::fs::write(&bad, "[{\"proxy\": \"a.b\",\n \"cluster_sent\": }]").unwrap();
    let r = run(&["-f", s(&bad)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("(at line 2, column 18, byte 35)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
    let r = run(&["--istiod-file", s(&bad), "--proxy-file", s(&bad)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("byte"), "{}", r.stderr);
    let r = run(&["-f", "/nonexistent/istiod.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read /nonexistent/istiod.json"),
        "{}",
        r.stderr
    );
}

mod real_envoy {
    use super::*;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    fn envoy_binary() -> Option<PathBuf> {
        let p = match std::env::var_os("MESHSIM_ENVOY") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/envoy/envoy"),
        };
        p.is_file().then_some(p)
    }

    pub(crate) struct Envoy {
        child: Child,
        pub(crate) admin: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Envoy {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) fn start() -> Envoy {
        let bin = envoy_binary().expect("Envoy binary: run `make envoy` or set MESHSIM_ENVOY");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(
            &cfg,
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n\
             static_resources:\n  clusters:\n  - name: local\n    connect_timeout: 1s\n    \
             load_assignment: {cluster_name: local, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]}\n",
        )
        .unwrap();
        let addr_file = dir.path().join("admin.addr");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&addr_file)
            .args(["--use-dynamic-base-id", "-l", "error", "--concurrency", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file)
                && !a.trim().is_empty()
            {
                break a.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not write its admin address"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Envoy {
            child,
            admin: format!("http://{admin}"),
            _dir: dir,
        }
    }

    #[test]
    fn compare_with_a_live_envoy() {
        let envoy = start();
        let dir = tempfile::tempdir().unwrap();
        // istiod's side: no dynamic resources, as for a static-only proxy → all match.
        let empty = dir.path().join("istiod.json");
        std::fs::write(
            &empty,
            r#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump"}]}"#,
        )
        .unwrap();
        let r = run(&["--istiod-file", s(&empty), "--admin-url", &envoy.admin]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "Clusters Match\nListeners Match\nRoutes Match\n");
        // istiod knows a cluster the proxy never got → Don't Match, exit 1.
        let one = dir.path().join("istiod-one.json");
        std::fs::write(
            &one,
            r#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
               "dynamicActiveClusters":[{"cluster":{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"outbound|9080||reviews.shop.svc.cluster.local"}}]}]}"#,
        )
        .unwrap();
        let r = run(&["--istiod-file", s(&one), "--admin-url", &envoy.admin]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stdout
                .starts_with("Clusters Don't Match\n--- Istiod Clusters\n+++ Envoy Clusters\n"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains(
                "-                \"name\": \"outbound|9080||reviews.shop.svc.cluster.local\""
            ),
            "{}",
            r.stdout
        );
        // an admin URL where nothing listens → exit 2 with the target named
        let r = run(&[
            "--istiod-file",
            s(&one),
            "--admin-url",
            "http://127.0.0.1:9",
        ]);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr
                .contains("cannot get the config_dump of http://127.0.0.1:9"),
            "{}",
            r.stderr
        );
    }
}

/// The cluster path: the fake apiserver of the test world, sim-istiod replicas behind pod
/// ports 15014/8080 (port-forward), a real Envoy behind a sidecar's admin port.
mod cluster {
    use super::*;
    use std::collections::HashMap;

    use meshsim::apiserver::{ApiServer, ApiServerOptions, PodBackend};
    use meshsim::istiod::{Flavour, Istiod, IstiodOptions, ProxyStatus, types};
    use serde_json::json;

    struct World {
        api: ApiServer,
        kubeconfig: PathBuf,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let api = ApiServer::start(ApiServerOptions::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, "shop").unwrap();
        World {
            api,
            kubeconfig,
            _dir: dir,
        }
    }

    impl World {
        fn pod(&self, ns: &str, name: &str, labels: serde_json::Value, containers: &[&str]) {
            let containers: Vec<_> = containers
                .iter()
                .map(|c| json!({"name": c, "image": format!("docker.io/istio/{c}:1.24.2")}))
                .collect();
            self.api
                .store()
                .apply(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"containers": containers},
                    "status": {"phase": "Running"}}))
                .unwrap();
        }

        fn istiod(&self, name: &str, labels: serde_json::Value, flavour: Flavour) -> Istiod {
            let i = Istiod::start(IstiodOptions {
                pod_name: name.into(),
                flavour,
                ..Default::default()
            })
            .unwrap();
            self.pod("istio-system", name, labels, &["discovery"]);
            self.api.set_pod_backend(
                "istio-system",
                name,
                PodBackend {
                    ports: i.addrs(),
                    logs: HashMap::from([("discovery".to_string(), i.log_path())]),
                },
            );
            i
        }

        async fn run(&self, args: &[&str]) -> Run {
            let home = tempfile::tempdir().unwrap();
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-mesh-sync"))
                .args(args)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["--request-timeout", "10s"])
                .env_remove("KUBECONFIG")
                .env_remove("NO_COLOR")
                .env_remove("RUST_LOG")
                .env("HOME", home.path())
                .output()
                .await
                .unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8(out.stdout).unwrap(),
                stderr: String::from_utf8(out.stderr).unwrap(),
            }
        }
    }

    fn istiod_labels() -> serde_json::Value {
        json!({"app": "istiod", "istio.io/rev": "default"})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_are_merged_and_a_failing_one_is_reported() {
        let w = world().await;
        let a = w.istiod("istiod-5d7c9b8f6-aaaaa", istiod_labels(), Flavour::Modern);
        let b = w.istiod("istiod-5d7c9b8f6-bbbbb", istiod_labels(), Flavour::Modern);
        a.set_proxy_status(
            "productpage-v1-1.shop",
            ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1"),
        );
        b.set_proxy_status(
            "reviews-v2-1.shop",
            ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1").with_type(
                types::ROUTE,
                "n-2",
                "n-1",
                None,
            ),
        );
        b.set_proxy_status(
            "istio-ingressgateway-1.istio-system",
            ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1"),
        );

        let r = w.run(&[]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.stdout,
            "\
NAME                                  CLUSTER      CDS      LDS      EDS      RDS      ECDS       ISTIOD                   VERSION
istio-ingressgateway-1.istio-system   Kubernetes   SYNCED   SYNCED   SYNCED   SYNCED   NOT SENT   istiod-5d7c9b8f6-bbbbb   1.24.2
productpage-v1-1.shop                 Kubernetes   SYNCED   SYNCED   SYNCED   SYNCED   NOT SENT   istiod-5d7c9b8f6-aaaaa   1.24.2
reviews-v2-1.shop                     Kubernetes   SYNCED   SYNCED   SYNCED   STALE    NOT SENT   istiod-5d7c9b8f6-bbbbb   1.24.2
"
        );

        let r = w.run(&["-n", "shop", "--check"]).await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
        assert!(
            r.stderr
                .contains("reviews-v2-1.shop (istiod istiod-5d7c9b8f6-bbbbb): RDS STALE"),
            "{}",
            r.stderr
        );

        let r = w.run(&["-n", "nosuch"]).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
        assert_eq!(r.stderr, "No resources found in nosuch namespace.\n");

        // --wait: already in sync in istio-system → 0 at once; shop stays STALE → 1 after the timeout
        let r = w
            .run(&["-n", "istio-system", "--wait", "--timeout", "10s"])
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = w.run(&["-n", "shop", "--wait", "--timeout", "1s"]).await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("timed out after 1s"), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("reviews-v2-1.shop (istiod istiod-5d7c9b8f6-bbbbb): RDS STALE"),
            "{}",
            r.stderr
        );

        // one replica down: the other's proxies are still shown, the failure on stderr, exit 2
        w.api
            .faults()
            .kill_pod_port("istio-system", "istiod-5d7c9b8f6-bbbbb", 15014);
        let r = w.run(&["-o", "json"]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 1);
        assert_eq!(v["items"][0]["name"], "productpage-v1-1.shop");
        assert!(
            r.stderr.starts_with("error: GET debug/syncz on istiod istio-system/istiod-5d7c9b8f6-bbbbb failed (tried port 15014, 8080)\n"),
            "{}",
            r.stderr
        );
        drop((a, b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn maistra_pilot_is_found_by_label_and_asked_on_8080() {
        let w = world().await;
        let p = w.istiod(
            "istio-pilot-7f9c6b5d4-ppppp",
            json!({"istio": "pilot", "app": "pilot"}),
            Flavour::Maistra14,
        );
        p.set_proxy_status(
            "productpage-v1-1.bookinfo",
            ProxyStatus {
                proxy_version: "1.4.8".into(),
                istio_version: String::new(),
                ..ProxyStatus::synced("", "", &types::SIDECAR, "n-1")
            },
        );
        // the monitoring port does not answer: 8080 does
        w.api
            .faults()
            .kill_pod_port("istio-system", "istio-pilot-7f9c6b5d4-ppppp", 15014);
        let r = w.run(&["-i", "istio-system"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.stdout,
            "\
NAME                        CLUSTER   CDS      LDS      EDS      RDS      ECDS       ISTIOD                        VERSION
productpage-v1-1.bookinfo   <none>    SYNCED   SYNCED   SYNCED   SYNCED   NOT SENT   istio-pilot-7f9c6b5d4-ppppp   1.4.8*
"
        );
        // no control plane at all in another namespace
        let r = w.run(&["-i", "nosuch"]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.starts_with("error: no running istiod found in namespace nosuch (labels app=istiod or istio=pilot)\nhint: "), "{}", r.stderr);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pod_comparison_asks_the_replica_that_holds_the_proxy() {
        let w = world().await;
        let envoy = super::real_envoy::start();
        let admin: std::net::SocketAddr =
            envoy.admin.trim_start_matches("http://").parse().unwrap();
        w.pod(
            "shop",
            "productpage-v1-1",
            json!({"app": "productpage"}),
            &["productpage", "istio-proxy"],
        );
        w.api.set_pod_backend(
            "shop",
            "productpage-v1-1",
            PodBackend {
                ports: HashMap::from([(15000, admin)]),
                logs: HashMap::new(),
            },
        );
        let a = w.istiod("istiod-5d7c9b8f6-aaaaa", istiod_labels(), Flavour::Modern);
        let b = w.istiod("istiod-5d7c9b8f6-bbbbb", istiod_labels(), Flavour::Modern);
        // b holds the proxy and would send no dynamic resources, as the Envoy has none
        b.set_proxy_status(
            "productpage-v1-1.shop",
            ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1"),
        );
        let r = w.run(&["productpage-v1-1"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "Clusters Match\nListeners Match\nRoutes Match\n");
        assert!(
            r.stderr
                .contains("comparing with istiod istio-system/istiod-5d7c9b8f6-bbbbb"),
            "{}",
            r.stderr
        );

        // istiod would send a cluster the proxy does not have
        b.set_proxy_config_dump(
            "productpage-v1-1.shop",
            json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": [{"version_info": "v1", "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "outbound|9080||reviews.shop.svc.cluster.local"}}]}]}),
        );
        let r = w.run(&["pod/productpage-v1-1", "-n", "shop"]).await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stdout
                .starts_with("Clusters Don't Match\n--- Istiod Clusters\n+++ Envoy Clusters\n"),
            "{}",
            r.stdout
        );

        // nobody holds it
        b.remove_proxy("productpage-v1-1.shop");
        let r = w.run(&["productpage-v1-1"]).await;
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.starts_with("error: proxy productpage-v1-1.shop is not connected to any of the 2 istiod replica(s) asked\n"),
            "{}",
            r.stderr
        );
        drop((a, b, envoy));
    }
}
