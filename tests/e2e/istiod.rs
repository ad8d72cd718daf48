#![allow(clippy::unwrap_used, clippy::expect_used)]
//! sim-istiod's HTTP side: `/debug/syncz`, `/debug/config_dump?proxyID=` (404 for a proxy held
//! by another replica), the 1.4 pilot flavour, ControlZ list/get/set and the discovery log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use meshsim::istiod::{
    CTRLZ_PORT, Flavour, HTTP_PORT, Istiod, IstiodOptions, MONITORING_PORT, ProxyStatus, types,
};
use serde_json::{Value, json};

/// One HTTP/1.1 request with `Connection: close`: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn start(flavour: Flavour) -> Istiod {
    Istiod::start(IstiodOptions {
        pod_name: "istiod-7d4f9c8b6-abcde".into(),
        flavour,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn syncz_lists_proxies_with_nonces_and_filters_by_namespace() {
    let istiod = start(Flavour::Modern);
    let addr = istiod.addr(MONITORING_PORT).unwrap();
    assert_eq!(http(addr, "GET", "/debug/syncz", None), (200, "[]".into()));

    istiod.set_proxy_status(
        "productpage-v1-6987489c74-wchxv.shop",
        ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1"),
    );
    istiod.set_proxy_status(
        "reviews-v2-5b667bcbf8-8hnz7.shop",
        ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-1")
            .with_type(types::ROUTE, "n-2", "n-1", None)
            .with_type(types::LISTENER, "n-3", "n-3", Some("duplicate listener")),
    );
    istiod.set_proxy_status(
        "istio-ingressgateway-6f9d8c7b5-q2w3e.istio-system",
        ProxyStatus {
            proxy_type: "router".into(),
            ..ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n-9")
        },
    );

    let (code, body) = http(addr, "GET", "/debug/syncz", None);
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    let reviews = items
        .iter()
        .find(|p| p["proxy"] == "reviews-v2-5b667bcbf8-8hnz7.shop")
        .unwrap();
    assert_eq!(reviews["cluster_id"], "Kubernetes");
    assert_eq!(reviews["proxy_type"], "sidecar");
    assert_eq!(reviews["istio_version"], "1.24.2");
    assert_eq!(reviews["cluster_sent"], "n-1");
    assert_eq!(reviews["cluster_acked"], "n-1");
    assert_eq!(reviews["route_sent"], "n-2");
    assert_eq!(reviews["route_acked"], "n-1");
    assert!(reviews.get("extensionconfig_sent").is_none(), "omitempty");
    let lds = &reviews["resources"][types::LISTENER];
    assert_eq!(lds["lastError"], "duplicate listener");
    assert!(lds["sentTime"].as_str().unwrap().ends_with('Z'));

    let (_, body) = http(addr, "GET", "/debug/syncz?namespace=istio-system", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["proxy_type"], "router");

    istiod.remove_proxy("reviews-v2-5b667bcbf8-8hnz7.shop");
    let (_, body) = http(addr, "GET", "/debug/syncz?namespace=shop", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    // no 8080 in the modern flavour (its debug server is the monitoring port here)
    assert_eq!(istiod.addr(HTTP_PORT), None);
}

#[test]
fn config_dump_is_404_for_a_proxy_held_elsewhere() {
    let istiod = start(Flavour::Modern);
    let addr = istiod.addr(MONITORING_PORT).unwrap();
    let (code, body) = http(
        addr,
        "GET",
        "/debug/config_dump?proxyID=ratings-v1-1.shop",
        None,
    );
    assert_eq!(code, 404);
    assert_eq!(
        body.trim_end(),
        "Proxy not connected to this Pilot instance. It may be connected to another instance."
    );
    let (code, _) = http(addr, "GET", "/debug/config_dump", None);
    assert_eq!(code, 400);

    let dump = json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "dynamic_active_clusters": [{"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "outbound|9080||ratings.shop.svc.cluster.local"}}]}]});
    istiod.set_proxy_config_dump("ratings-v1-1.shop", dump.clone());
    let (code, body) = http(
        addr,
        "GET",
        "/debug/config_dump?proxyID=ratings-v1-1.shop",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), dump);

    // connected but nothing generated: an empty dump, not a 404
    istiod.set_proxy_status(
        "details-v1-2.shop",
        ProxyStatus::synced("Kubernetes", "1.24.2", &types::SIDECAR, "n"),
    );
    let (code, body) = http(
        addr,
        "GET",
        "/debug/config_dump?proxyID=details-v1-2.shop",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["configs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let (code, _) = http(addr, "GET", "/debug/nosuch", None);
    assert_eq!(code, 404);
}

#[test]
fn maistra_pilot_serves_the_1_4_shape_on_15014_and_8080() {
    let istiod = start(Flavour::Maistra14);
    istiod.set_proxy_status(
        "productpage-v1-1.bookinfo",
        ProxyStatus {
            proxy_version: "1.4.8".into(),
            istio_version: "1.4.8".into(),
            ..ProxyStatus::synced("Kubernetes", "1.4.8", &types::SIDECAR, "n-1")
        },
    );
    for port in [MONITORING_PORT, HTTP_PORT] {
        let (code, body) = http(istiod.addr(port).unwrap(), "GET", "/debug/syncz", None);
        assert_eq!(code, 200, "port {port}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let p = &v[0];
        assert_eq!(p["proxy"], "productpage-v1-1.bookinfo");
        assert_eq!(p["proxy_version"], "1.4.8");
        assert_eq!(p["endpoint_acked"], "n-1");
        for absent in [
            "cluster_id",
            "proxy_type",
            "resources",
            "extensionconfig_sent",
        ] {
            assert!(p.get(absent).is_none(), "{absent} on port {port}: {p}");
        }
    }
}

#[test]
fn controlz_lists_gets_and_sets_scopes() {
    let istiod = start(Flavour::Modern);
    let addr = istiod.addr(CTRLZ_PORT).unwrap();
    let (code, body) = http(addr, "GET", "/scopej/", None);
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for n in [
        "ads",
        "authn",
        "default",
        "grpcAdapter",
        "jwt",
        "model",
        "validation",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(
        v[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "description",
            "log_callers",
            "name",
            "output_level",
            "stack_trace_level"
        ]
    );

    let (code, body) = http(addr, "GET", "/scopej/ads", None);
    assert_eq!(code, 200);
    let ads: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ads["output_level"], "info");
    assert_eq!(ads["stack_trace_level"], "none");

    let log = istiod.log_path();
    istiod.log_line(
        "debug",
        "ads",
        "Push debounce stable[1] 1 for config ServiceEntry/shop/x",
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("Push debounce")
    );

    let (code, _) = http(
        addr,
        "PUT",
        "/scopej/ads",
        Some(
            r#"{"name":"ads","output_level":"debug","stack_trace_level":"error","log_callers":true}"#,
        ),
    );
    assert_eq!(code, 202);
    let ads = istiod
        .scopes()
        .into_iter()
        .find(|s| s.name == "ads")
        .unwrap();
    assert_eq!(
        (
            ads.output_level.as_str(),
            ads.stack_trace_level.as_str(),
            ads.log_callers
        ),
        ("debug", "error", true)
    );
    // an unknown level is ignored; omitting log_callers resets it to false
    let (code, _) = http(
        addr,
        "PUT",
        "/scopej/ads",
        Some(r#"{"name":"ads","output_level":"verbose"}"#),
    );
    assert_eq!(code, 202);
    let (_, body) = http(addr, "GET", "/scopej/ads", None);
    let ads: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (ads["output_level"].as_str(), ads["log_callers"].as_bool()),
        (Some("debug"), Some(false))
    );

    let (code, body) = http(
        addr,
        "PUT",
        "/scopej/nope",
        Some(r#"{"name":"nope","output_level":"debug"}"#),
    );
    assert_eq!((code, body.trim_end()), (400, "unknown scope name: nope"));
    let (code, body) = http(addr, "GET", "/scopej/nope", None);
    assert_eq!((code, body.trim_end()), (400, "unknown scope name: nope"));

    istiod.log_line(
        "debug",
        "ads",
        "Push debounce stable[2] 1 for config ServiceEntry/shop/x",
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\tdebug\tads\tPush debounce stable[2]"),
        "{text}"
    );
    assert!(
        text.contains("\tinfo\tads\tStarting ADS server\n"),
        "{text}"
    );
}
