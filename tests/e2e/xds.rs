#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ADS server against real Envoys: subscription, ACK, config_dump, updates, NACKs of
//! invalid pushes, held types, reconnects, and the world's generated sidecar config.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use meshsim::envoy::{EnvoyCommand, EnvoyProcess, http_get, tail};
use meshsim::scenario::{PodPlan, Scenario};
use meshsim::sidecar::{self, FAKE_JWKS};
use meshsim::xds::{
    self, CLUSTER, ConfigStatus, ENDPOINT, LISTENER, ProxyResources, ROUTE, TYPES, XdsServer,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const SVC: &str = "outbound|8080||reviews.bookinfo.svc.cluster.local";

/// A real Envoy bootstrapped to take everything from `xds`.
struct Proxy {
    dir: TempDir,
    envoy: EnvoyProcess,
}

impl Proxy {
    async fn start(xds: &XdsServer, node: Value) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let mut bootstrap = xds::ads_bootstrap_fragment(xds.addr());
        bootstrap["node"] = node.clone();
        bootstrap["admin"] =
            json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}});
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
        let cmd = EnvoyCommand {
            config_path,
            run_dir: dir.path().to_path_buf(),
            log_path: dir.path().join("envoy.log"),
            log_level: "info".into(),
            component_log_level: String::new(),
            log_format: None,
            service_node: node["id"].as_str().unwrap().to_owned(),
            service_cluster: node["cluster"].as_str().unwrap_or("meshsim").to_owned(),
            concurrency: 1,
        };
        let envoy = EnvoyProcess::start(&cmd, WAIT).await.unwrap();
        Proxy { dir, envoy }
    }

    async fn config_dump(&self) -> Value {
        let (status, body) = http_get(self.envoy.admin(), "/config_dump?include_eds")
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn log(&self) -> String {
        tail(&self.dir.path().join("envoy.log"), 40)
    }
}

fn node(id: &str) -> Value {
    json!({
        "id": id,
        "cluster": "reviews.bookinfo",
        "metadata": {"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.24.2", "NAMESPACE": "bookinfo"},
    })
}

/// An ADS config source; RDS/EDS give up waiting after 1 s so a held type cannot keep Envoy
/// from becoming ready.
fn ads() -> Value {
    json!({"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "1s"})
}

fn static_cluster(name: &str) -> Value {
    json!({
        "@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]},
    })
}

/// Two clusters (one EDS), its assignment, an outbound listener with RDS, its route
/// configuration, and an inbound listener with a JWT filter (inline JWKS), RBAC and router.
fn base() -> ProxyResources {
    let hcm = |extra: Value| {
        let mut h = json!({"@type": HCM, "stat_prefix": "s", "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": h})
    };
    let loopback = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
    let jwt = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"origins-0": {"issuer": "https://issuer.example.com", "local_jwks": {"inline_string": FAKE_JWKS}, "forward": true, "payload_in_metadata": "https://issuer.example.com"}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
            "bypass_cors_preflight": true,
        },
    });
    let rbac = json!({"name": "envoy.filters.http.rbac", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}});
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    ProxyResources {
        clusters: vec![
            static_cluster("inbound|9080||"),
            json!({"@type": CLUSTER, "name": SVC, "type": "EDS", "connect_timeout": "1s", "eds_cluster_config": {"eds_config": ads(), "service_name": SVC}}),
        ],
        endpoints: vec![json!({
            "@type": ENDPOINT, "cluster_name": SVC,
            "endpoints": [{"locality": {}, "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}],
        })],
        listeners: vec![
            json!({"@type": LISTENER, "name": "0.0.0.0_8080", "address": loopback, "traffic_direction": "OUTBOUND",
                   "filter_chains": [{"filters": [hcm(json!({"rds": {"config_source": ads(), "route_config_name": "8080"}}))]}]}),
            json!({"@type": LISTENER, "name": "virtualInbound", "address": loopback, "traffic_direction": "INBOUND",
            "filter_chains": [{"filters": [hcm(json!({
                "route_config": {"name": "inbound|9080||", "virtual_hosts": [{"name": "inbound|http|9080", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|9080||"}}]}]},
                "http_filters": [jwt, rbac, router],
            }))]}]}),
        ],
        routes: vec![json!({
            "@type": ROUTE, "name": "8080", "validate_clusters": false,
            "virtual_hosts": [{"name": "reviews.bookinfo.svc.cluster.local:8080", "domains": ["reviews.bookinfo.svc.cluster.local", "reviews"],
                               "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": SVC, "timeout": "0s"}}]}],
        })],
    }
}

/// The config_dump section whose `@type` ends with `section`.
fn section<'a>(dump: &'a Value, section: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .unwrap()
                .ends_with(&format!(".{section}"))
        })
        .unwrap_or(&Value::Null)
}

/// Names in a config_dump section list, e.g. (`ClustersConfigDump`, `dynamic_active_clusters`, `/cluster/name`).
fn dump_names(dump: &Value, sec: &str, list: &str, pointer: &str) -> BTreeSet<String> {
    section(dump, sec)[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

fn names(list: &[Value], key: &str) -> BTreeSet<String> {
    list.iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that Envoy's dynamic config has exactly the names of `res`.
fn assert_dump_has(dump: &Value, res: &ProxyResources) {
    let clusters = dump_names(
        dump,
        "ClustersConfigDump",
        "dynamic_active_clusters",
        "/cluster/name",
    );
    assert_eq!(clusters, names(&res.clusters, "name"));
    let listeners = dump_names(
        dump,
        "ListenersConfigDump",
        "dynamic_listeners",
        "/active_state/listener/name",
    );
    assert_eq!(listeners, names(&res.listeners, "name"));
    let routes = dump_names(
        dump,
        "RoutesConfigDump",
        "dynamic_route_configs",
        "/route_config/name",
    );
    assert_eq!(routes, names(&res.routes, "name"));
    // the EDS section lists the load assignments of every dynamic cluster, EDS or not, unversioned
    let cla = dump_names(
        dump,
        "EndpointsConfigDump",
        "dynamic_endpoint_configs",
        "/endpoint_config/cluster_name",
    );
    let want = names(&res.endpoints, "cluster_name");
    assert!(want.is_subset(&cla), "{want:?} not in {cla:?}");
}

async fn synced_proxy(id: &str) -> (XdsServer, Proxy) {
    let xds = XdsServer::start().await.unwrap();
    xds.set_resources(id, base()).unwrap();
    let proxy = Proxy::start(&xds, node(id)).await;
    if let Err(e) = xds.wait_synced(id, TYPES, WAIT).await {
        panic!("{e:#}\nenvoy log:\n{}", proxy.log());
    }
    (xds, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_syncs_all_four_types_and_config_dump_shows_them() {
    let (xds, proxy) = synced_proxy("reviews-v1-7d8f9c.bookinfo").await;
    let st = xds
        .status()
        .into_iter()
        .find(|p| p.node_id == "reviews-v1-7d8f9c.bookinfo")
        .unwrap();
    assert_eq!(st.metadata("ISTIO_VERSION"), Some("1.24.2"));
    assert_eq!(st.metadata("CLUSTER_ID"), Some("Kubernetes"));
    assert_eq!(st.metadata("NAMESPACE"), Some("bookinfo"));
    assert_eq!(st.node["user_agent_name"], "envoy", "{}", st.node);
    // Envoy 1.x: the build version is there with proto field names (istiod reads it)
    let version = &st.node["user_agent_build_version"]["version"];
    assert_eq!(version["major_number"], 1, "{}", st.node);
    assert!(version["minor_number"].as_u64().is_some(), "{}", st.node);
    let mut urls: Vec<&str> = st.types.iter().map(|t| t.type_url.as_str()).collect();
    urls.sort();
    assert_eq!(urls, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    for t in &st.types {
        assert_eq!(t.config_status(), ConfigStatus::Synced, "{t:?}");
        assert_eq!(t.acked_version, t.sent_version, "{t:?}");
        assert!(t.sent_at.is_some() && t.last_error.is_none());
        assert_eq!(t.sent_nonce.as_ref().unwrap().len(), 36);
    }
    assert_eq!(st.type_status(ROUTE).unwrap().resource_names, ["8080"]);
    assert_eq!(st.type_status(ENDPOINT).unwrap().resource_names, [SVC]);
    assert_eq!(st.type_status(CLUSTER).unwrap().sent_names.len(), 2);

    let dump = proxy.config_dump().await;
    assert_dump_has(&dump, &base());
    let cds_version = section(&dump, "ClustersConfigDump")["version_info"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Some(cds_version),
        st.type_status(CLUSTER).unwrap().sent_version
    );
    // the JWT filter with an inline JWKS was accepted as pushed
    let inbound = section(&dump, "ListenersConfigDump")["dynamic_listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "virtualInbound")
        .unwrap();
    let filters = &inbound["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    assert_eq!(filters[0]["name"], "envoy.filters.http.jwt_authn");
    let provider = &filters[0]["typed_config"]["providers"]["origins-0"];
    assert_eq!(provider["local_jwks"]["inline_string"], FAKE_JWKS);
    assert_eq!(provider["issuer"], "https://issuer.example.com");
    // istiod's view is what was set
    assert_eq!(xds.resources("reviews-v1-7d8f9c.bookinfo"), Some(base()));
    assert_eq!(xds.resources("nobody.nowhere"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_cluster_set_is_pushed_with_a_new_version() {
    let id = "productpage-v1-1.bookinfo";
    let (xds, proxy) = synced_proxy(id).await;
    let before = xds.status().into_iter().find(|p| p.node_id == id).unwrap();
    // the same resources again: nothing is pushed
    xds.set_resources(id, base()).unwrap();
    assert_eq!(
        xds.status()
            .into_iter()
            .find(|p| p.node_id == id)
            .unwrap()
            .types,
        before.types
    );

    let mut changed = base();
    changed.clusters.push(static_cluster(
        "outbound|9090||extra.bookinfo.svc.cluster.local",
    ));
    xds.set_resources(id, changed.clone()).unwrap();
    let old_cds = before.type_status(CLUSTER).unwrap().clone();
    let after = xds
        .wait_for(WAIT, |s| {
            let p = s.iter().find(|p| p.node_id == id)?;
            (p.synced(TYPES) && p.type_status(CLUSTER)?.sent_nonce != old_cds.sent_nonce)
                .then(|| p.clone())
        })
        .await
        .unwrap();
    let new_cds = after.type_status(CLUSTER).unwrap();
    assert_ne!(new_cds.sent_version, old_cds.sent_version);
    assert_eq!(new_cds.sent_names.len(), 3);
    // only CDS changed
    for t in [LISTENER, ROUTE, ENDPOINT] {
        assert_eq!(
            after.type_status(t).unwrap().sent_nonce,
            before.type_status(t).unwrap().sent_nonce,
            "{t}"
        );
    }
    let dump = proxy.config_dump().await;
    assert_dump_has(&dump, &changed);
    assert_eq!(
        section(&dump, "ClustersConfigDump")["version_info"].as_str(),
        new_cds.sent_version.as_deref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pushes_are_nacked_and_envoy_keeps_its_config() {
    let id = "details-v1-2.bookinfo";
    let (xds, proxy) = synced_proxy(id).await;
    let before = xds.status().into_iter().find(|p| p.node_id == id).unwrap();
    for t in TYPES {
        xds.push_invalid(id, t);
    }
    let nacked = xds
        .wait_for(WAIT, |s| {
            let p = s.iter().find(|p| p.node_id == id)?;
            TYPES
                .iter()
                .all(|t| p.type_status(t).is_some_and(|s| s.last_error.is_some()))
                .then(|| p.clone())
        })
        .await
        .unwrap();
    let expect = [
        (CLUSTER, "meshsim-invalid"),
        (LISTENER, "meshsim.invalid"),
        (ROUTE, "meshsim.invalid"),
        (ENDPOINT, "meshsim.invalid"),
    ];
    for (t, text) in expect {
        let s = nacked.type_status(t).unwrap();
        let err = s.last_error.as_deref().unwrap();
        assert!(err.contains(text), "{t}: {err}");
        assert_eq!(s.config_status(), ConfigStatus::Error);
        assert!(s.invalid);
        assert_ne!(s.sent_nonce, s.acked_nonce, "{t}");
        assert_eq!(
            s.acked_nonce,
            before.type_status(t).unwrap().acked_nonce,
            "{t}"
        );
        eprintln!("{t}: NACK: {err}");
    }
    // Envoy kept the accepted config
    let dump = proxy.config_dump().await;
    assert_dump_has(&dump, &base());
    assert_eq!(
        section(&dump, "ClustersConfigDump")["version_info"].as_str(),
        before
            .type_status(CLUSTER)
            .unwrap()
            .acked_version
            .as_deref()
    );
    let routes = &section(&dump, "RoutesConfigDump")["dynamic_route_configs"][0]["route_config"]["virtual_hosts"];
    assert_eq!(routes.as_array().unwrap().len(), 1);
    // istiod's view has the rejected config
    let view = xds.resources(id).unwrap();
    assert!(view.clusters.iter().any(|c| c["name"] == "meshsim-invalid"));
    assert!(
        view.listeners
            .iter()
            .any(|c| c["name"] == "meshsim-invalid")
    );
    assert_eq!(view.routes[0]["virtual_hosts"].as_array().unwrap().len(), 3);

    for t in TYPES {
        xds.clear_invalid(id, t);
    }
    let healed = xds.wait_synced(id, TYPES, WAIT).await.unwrap();
    assert!(
        healed
            .types
            .iter()
            .all(|t| t.last_error.is_none() && !t.invalid)
    );
    assert_eq!(xds.resources(id), Some(base()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_type_is_never_sent() {
    let id = "ratings-v1-3.bookinfo";
    let xds = XdsServer::start().await.unwrap();
    xds.hold_type(id, ROUTE);
    xds.set_resources(id, base()).unwrap();
    // Envoy becomes ready once the RDS initial fetch times out (1 s)
    let proxy = Proxy::start(&xds, node(id)).await;
    let st = xds
        .wait_for(WAIT, |s| {
            let p = s.iter().find(|p| p.node_id == id)?;
            (p.synced(&[CLUSTER, LISTENER, ENDPOINT]) && p.type_status(ROUTE).is_some())
                .then(|| p.clone())
        })
        .await
        .unwrap();
    let rds = st.type_status(ROUTE).unwrap();
    assert_eq!(rds.config_status(), ConfigStatus::NotSent, "{rds:?}");
    assert!(rds.held && rds.sent_nonce.is_none() && rds.sent_at.is_none());
    assert_eq!(rds.resource_names, ["8080"]);
    let dump = proxy.config_dump().await;
    assert!(
        dump_names(
            &dump,
            "RoutesConfigDump",
            "dynamic_route_configs",
            "/route_config/name"
        )
        .is_empty()
    );

    // another proxy of the same server is not affected
    let other = "ratings-v1-5.bookinfo";
    xds.set_resources(other, base()).unwrap();
    let _other_proxy = Proxy::start(&xds, node(other)).await;
    xds.wait_synced(other, TYPES, WAIT).await.unwrap();
    let all = xds.status();
    assert_eq!(
        all.iter().map(|p| p.node_id.as_str()).collect::<Vec<_>>(),
        [id, other]
    );
    assert_eq!(
        all[0].type_status(ROUTE).unwrap().config_status(),
        ConfigStatus::NotSent
    );

    xds.release_type(id, ROUTE);
    xds.wait_synced(id, TYPES, WAIT).await.unwrap();
    assert_dump_has(&proxy.config_dump().await, &base());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_proxy_reconnects_and_resyncs() {
    let id = "reviews-v2-4.bookinfo";
    let (xds, proxy) = synced_proxy(id).await;
    let before = xds.status().into_iter().find(|p| p.node_id == id).unwrap();
    xds.disconnect(id);
    let after = xds
        .wait_for(WAIT, |s| {
            s.iter()
                .find(|p| p.node_id == id && p.stream != before.stream && p.synced(TYPES))
                .cloned()
        })
        .await
        .unwrap();
    for t in TYPES {
        assert_ne!(
            after.type_status(t).unwrap().sent_nonce,
            before.type_status(t).unwrap().sent_nonce,
            "{t}"
        );
    }
    assert_dump_has(&proxy.config_dump().await, &base());
    // Envoy opened a second ADS stream and is connected again
    let (_, stats) = http_get(
        proxy.envoy.admin(),
        "/stats?filter=^(cluster.xds-grpc.upstream_rq_total|control_plane.connected_state)$",
    )
    .await
    .unwrap();
    assert!(
        stats.contains("cluster.xds-grpc.upstream_rq_total: 2"),
        "{stats}"
    );
    assert!(
        stats.contains("control_plane.connected_state: 1"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_validated_before_anything_changes() {
    let xds = XdsServer::start().await.unwrap();
    let mut bad = base();
    bad.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        ["providers"]["origins-0"]["no_such_field"] = json!(1);
    let err = format!("{:#}", xds.set_resources("x.y", bad).unwrap_err());
    assert!(err.contains("listener \"virtualInbound\""), "{err}");
    assert!(err.contains("filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.providers.origins-0"), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
    let mut dup = base();
    dup.clusters.push(static_cluster("inbound|9080||"));
    let err = format!("{:#}", xds.set_resources("x.y", dup).unwrap_err());
    assert!(
        err.contains("two clusters named \"inbound|9080||\""),
        "{err}"
    );
    assert_eq!(xds.resources("x.y"), None);
}

/// The config the world generates for a seed sidecar goes through the ADS server into Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_sidecar_config_is_accepted_by_envoy() {
    let scenario = Scenario::load("seed").unwrap();
    let topology = scenario.topology().unwrap();
    let app = |_: &PodPlan| Some(SocketAddr::from(([127, 0, 0, 1], 9)));
    let xds = XdsServer::start().await.unwrap();
    let pod = topology
        .pods
        .iter()
        .find(|p| p.app == "customer" && p.proxy.is_some())
        .unwrap();
    let inputs = sidecar::ConfigInputs {
        scenario: &scenario,
        topology: &topology,
        pod,
        app_addr: &app,
        resolve_jwks: &sidecar::unreachable_jwks,
    };
    let res: ProxyResources = sidecar::resources(&inputs).unwrap().into();
    let node = sidecar::node(&scenario, pod);
    let id = node["id"].as_str().unwrap().to_owned();
    xds.set_resources(&id, res.clone()).unwrap();
    let proxy = Proxy::start(&xds, node).await;
    let st = match xds.wait_synced(&id, TYPES, WAIT).await {
        Ok(s) => s,
        Err(e) => panic!("{e:#}\n{}", proxy.log()),
    };
    assert_eq!(
        st.metadata("ISTIO_VERSION"),
        Some(scenario.istio.version.as_str())
    );
    assert_dump_has(&proxy.config_dump().await, &res);
}
