//! Beyond istioctl: the admin port read from the pod (istio#43063), and a jwksUri served inside
//! the mesh behind STRICT mTLS (istio#40553).

use meshsim::world::World;
use serde_json::json;

use crate::support::{PluginPath, run, show, stdout};

#[test]
fn admin_port_comes_from_the_pod_annotation() {
    let world = World::start_blocking(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/admin-port.yaml"
    ))
    .unwrap();
    let pp = PluginPath::install();
    let web = world.pod("demo", "web").unwrap();
    assert_eq!(web.admin_port, 19000, "the scenario moves the admin port");
    // without --admin-port the plugins find 19000 themselves
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "clusters", &web.name, "-n", "demo"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("SERVICE FQDN"), "{}", show(&out));
    let out = run(&pp, &world, &["envoy-log", &web.name, "-n", "demo"]);
    assert!(out.status.success(), "{}", show(&out));
    // the flag still wins, and a wrong port fails with the kubelet's words
    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "clusters",
            &web.name,
            "-n",
            "demo",
            "--admin-port",
            "15000",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("15000"),
        "{}",
        show(&out)
    );
}

#[test]
fn jwks_uri_inside_the_mesh_behind_strict_mtls_is_recognised() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let store = world.apiserver().store();
    store
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sso"}}))
        .unwrap();
    store
        .apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "keycloak", "namespace": "sso"},
            "spec": {"selector": {"app": "keycloak"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .unwrap();
    store
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "keycloak-0", "namespace": "sso", "labels": {"app": "keycloak", "version": "v1"}},
            "spec": {"containers": [{"name": "keycloak", "image": "quay.io/keycloak/keycloak"},
                                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.4.8"}]},
            "status": {"phase": "Running"}}))
        .unwrap();
    store
        .apply(json!({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "sso"}, "spec": {"mtls": {"mode": "STRICT"}}}))
        .unwrap();
    store
        .apply(json!({"apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
            "metadata": {"name": "inmesh", "namespace": "olaf-customer"},
            "spec": {"selector": {"matchLabels": {"app": "preference"}},
                     "jwtRules": [{"issuer": "http://keycloak.sso/realms/olaf",
                                   "jwksUri": "http://keycloak.sso.svc.cluster.local/realms/olaf/protocol/openid-connect/certs"}]}}))
        .unwrap();

    let out = run(&pp, &world, &["jwks-trust", "check", "-n", "olaf-customer"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let row = stdout(&out)
        .lines()
        .find(|l| l.contains("inmesh"))
        .map(str::to_string)
        .unwrap();
    assert!(
        row.contains("MTLS STRICT") && row.contains("sso/keycloak"),
        "{row}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"8080\":{\"mode\":\"PERMISSIVE\"}"),
        "port-level exception offered: {err}"
    );
    assert!(err.contains("PILOT_JWT_ENABLE_REMOTE_JWKS"), "{err}");

    // the offered exception makes it acceptable for istiod's plain fetch
    store
        .apply(
            json!({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": "keycloak-jwks-permissive", "namespace": "sso"},
            "spec": {"selector": {"matchLabels": {"app": "keycloak"}}, "mtls": {"mode": "STRICT"},
                     "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}}),
        )
        .unwrap();
    let out = run(&pp, &world, &["jwks-trust", "check", "-n", "olaf-customer"]);
    let row = stdout(&out)
        .lines()
        .find(|l| l.contains("inmesh"))
        .map(str::to_string)
        .unwrap();
    assert!(!row.contains("MTLS STRICT"), "{row}");
    assert!(
        row.contains("served inside the mesh by service sso/keycloak"),
        "{row}"
    );
}
