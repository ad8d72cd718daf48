//! Istio-like Envoy configuration for one pod, and the sidecar process that runs it.
//!
//! [`resources`] is the one place the xDS resources of a pod are generated (listeners, clusters,
//! route configurations, cluster load assignments), each a v3 resource with its `@type`, in the
//! form an ADS server would push them: RDS and EDS reference `{"ads": {}}`. How they reach
//! Envoy ([`XdsMode`]):
//! * [`XdsMode::Ads`] (default in a world): the world's istiod stand-in
//!   ([`crate::control_plane`]) serves them over ADS; the bootstrap ([`render_ads`]) has only
//!   admin, the Prometheus listener and the `xds-grpc` cluster, as a real sidecar's;
//! * [`XdsMode::Static`]: [`render`] puts everything under `static_resources` (EDS clusters become
//!   STATIC with a `load_assignment`, RDS becomes an inline `route_config`);
//! * [`XdsMode::Files`]: `dynamic_resources` with `path_config_source` (LDS, CDS, and per-name
//!   RDS/EDS files), so `/config_dump` shows them as *dynamic* (`dynamic_listeners`,
//!   `dynamic_active_clusters`, `dynamic_route_configs`, EDS `dynamic_endpoint_configs`) with a
//!   `version_info`, as a real sidecar's do. Costly: Envoy opens one inotify instance per file
//!   subscription (about 20 per sidecar) and the per-user limit
//!   (`fs.inotify.max_user_instances`, often 128) is shared by every process of the user; past
//!   it Envoy aborts with `assert failure: inotify_fd_ >= 0`. Use it for one world at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::envoy::{EnvoyCommand, EnvoyProcess, reserve_port};
use crate::scenario::{JwksPlaceholder, PodPlan, ProxyKind, Role, Scenario, ServicePlan, Topology};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// istiod's `FakeJwks` (Istio 1.21–1.29.0), verbatim: a throw-away RSA key, private part included.
pub const FAKE_JWKS: &str = r#"{
  "keys": [
    {
      "d": "T6cYL1_1mWHQLtOcbOgWV6HjhS0HVh3Apt4xEar5beaMBX3IYLFITz684DOHNy5dzaxTRqvGj-zHEgNrgy2T-Izoo2Z-xJ2Zse6wQ4R0xbwd0by8IbhiePcjgNWXXzildMHkBVrxNZhUICpb_r8efTHZfEwc6FPjJDVgJKtEc6WGCOiWnRYcGTTlsB5-QrQQlDFLmrU2Z6QDmqJU33aDJFr_qzmRiVNXeHuhlNca2JnKNPpxjRVsy7Kbc8PorxiPijnLzV8_pccsMyLvA8pWUl5FRtAJNSss7x_81HEcInlj7yA896zMiELSPps1rW68yVvpuKEuYulzGi4z74gz0Q",
      "dp": "YkH_MFMlgnGZntOCXLhib1LLW1JJCYmTzebn-JSluFJbG_qQgzuZkUu5s2cYBHmiZkDGmnTDOAYXrOaQSgVIBQMPxMqdUf8WjRIlEb88zvKpM_Curp59wuy6MhI7Ej3xKiixHX3bIq5Qujk3ZdsDbHUi3HH56-V7cdFKccqlg6E",
      "dq": "CXCwRpRgbtqzLcsfuy-5IUZosrvEDHCrFh0C-A6OYvKpHzn8PDwb62YGddhiHzSrgr1EUgykQxiIF2xG8dBaq8xXg9Bh4G1kkgIsqJmL5DG1lwyh_-Jt4nPyiLHZ--ERc48cjj515uRpGd-CWXdIf2EWYaJNsEkiNaYEClJQIA8",
      "e": "AQAB",
      "kty": "RSA",
      "n": "vqS7RN4b34i3_5YyhygtBe33gI6GK_0ldW8WMZaunS28T-WAzJOAoZ7E9Y0mHS8vcDES0eZIUpp6Ft9sRPhOlzQfo_7l-3DnaD9LxJVKdXjE1jugxfI9YX1qJpD9S9wRZxQIhPky9UzZDkpFh_KpL6pZUt4cbPtW0VCctjqvpI11yHNk4CEbzw-RRFLMJkLFJqgPa2JPzGZ-TqJdkSDQ7UtRiKzjRcWGnAdLsTq6WabDA1Fn1JVI9TWu-YDbLufDUDco46qyPgpxAqcRQG39cWZAQzMwNEZ-Yec_WiqDYqGTU6K8BBWeEIuMhiWfxGmtqX35rb9Qk_qeYDsqqT95Pw",
      "p": "7EK8xaN7qCdWCeQ1ptXWvuc6qotZc6oD-j1ecgel9FqmfkmaioVEbEAfP_N73QAjw-sU60sK3XK8LV4fkGUoJV-MDvmiCzy3wUPe-adSaTCxFykgOm6SPA9NKCqAh8lUm6GUm9RZkjwkv4xzZ8pJjng3d74WXx7zhTEH6yi4E00",
      "q": "zpJPbhAn79s_jPm4OhOvvPKT-ISN6EyLu_g6joh1Dzf-HCF149KKQfuLDtwDCsCNf1cE_BCb4qoHAVBLDjbqusQF019zNIFTHeUL8oMpbv-5of7km0K8oo-DQp5b8u05PKaEQu3OXmRZFwuO6dSTPvXO094X-8vm791FLcJ-4Ls",
      "qi": "SXz-JeBcTYMcO5lDBlrI9qd2eMQAYfVFDyq523L-RFhdravaxaYutT7dWk5f4Smzbh5KtvKifcFUMnV88On4HCiTrdBjLJJhIYqZQwzP8hYbXZlw4SvCtXKUrvLwLEUQaYg6bopp4VJ5c3XCZD5z3paHlZ45oCDsMeSEWxAD6lo"
    }
  ]
}"#;

/// istiod's `PublicOnlyJwks` (Istio 1.29.1+), verbatim.
pub const PUBLIC_ONLY_JWKS: &str = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"0xObjM0UvS_oaazjpEYlAbwctEJ4L8pH3OuTb7qth7gUwqet-EzQB4dgFdvSdMgrLnSncQGRjpEYz3F3viIbH-3EN3TxSlPNviHxeOdyiBVfumN8dMxbLvVJUpfNOnvmMxJcl-8NNjAwcOjk4otSALaYgYYyOPyvKtgVdrQr-FoubWX4yrjxW-MJ2-7OBeepUUNOsVwGV23YX03sVkkyvY3otRflkBcY3_HKpBxJl9wk2GyOShN4_PNUF9-vwfnvOXMbCDX-w4PTef4geeb_GiT40YCKHTKMSPVanGRn5GExIWmki-mmqh94-mPTJyBR74ShspL3BxPZitDL574T1w"}]}"#;

/// The JWKS istiod inlines for a jwksUri it could not fetch.
pub fn placeholder_jwks(kind: JwksPlaceholder, jwks_uri: &str) -> String {
    const PREFIX: &str = "Error-IstiodFailedToFetchJwksUri-";
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes());
    let fake =
        |n: String| format!(r#"{{"keys":[ {{"e":"AQAB","kid":"abc","kty":"RSA","n":"{n}"}}]}}"#);
    match kind {
        JwksPlaceholder::Empty => String::new(),
        JwksPlaceholder::ErrorUriPrefix => fake(format!("{PREFIX}{}", b64(jwks_uri))),
        JwksPlaceholder::ErrorUriEncoded => fake(b64(&format!("{PREFIX}{jwks_uri}"))),
        JwksPlaceholder::FakeJwks => FAKE_JWKS.to_owned(),
        JwksPlaceholder::PublicOnlyJwks => PUBLIC_ONLY_JWKS.to_owned(),
    }
}

/// The xDS resources of one proxy, each a JSON v3 resource with `@type`.
#[derive(Debug, Clone, Default)]
pub struct EnvoyResources {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    pub routes: Vec<Value>,
    pub endpoints: Vec<Value>,
}

impl EnvoyResources {
    pub fn by_type(&self, type_url: &str) -> &[Value] {
        match type_url {
            LISTENER => &self.listeners,
            CLUSTER => &self.clusters,
            ROUTE => &self.routes,
            ENDPOINT => &self.endpoints,
            _ => &[],
        }
    }
}

/// One JWT rule that applies to a workload (from a RequestAuthentication or a legacy Policy).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    /// Inline `jwks` of the rule, if given.
    pub jwks: Option<String>,
    /// A legacy Policy origin that is not optional: requests without a token are rejected.
    pub required: bool,
    /// `kind/namespace/name` of the object it comes from.
    pub source: String,
}

/// Everything [`resources`] needs besides the scenario.
pub struct ConfigInputs<'a> {
    pub scenario: &'a Scenario,
    pub topology: &'a Topology,
    pub pod: &'a PodPlan,
    /// Real address of a pod's application server (used for endpoints); None if it has none.
    pub app_addr: &'a (dyn Fn(&PodPlan) -> Option<SocketAddr> + Sync),
    /// istiod's JWKS resolver: `Ok(jwks)` when the uri could be fetched, `Err(reason)` otherwise.
    pub resolve_jwks: &'a (dyn Fn(&str) -> Result<String, String> + Sync),
}

/// The default resolver until a JWKS server and sim-istiod exist: every fetch fails.
pub fn unreachable_jwks(uri: &str) -> Result<String, String> {
    Err(format!("Get {uri}: dial tcp: lookup failed"))
}

/// The Envoy node of a pod: id, cluster and Istio metadata.
pub fn node(scenario: &Scenario, pod: &PodPlan) -> Value {
    let legacy = scenario.legacy_config_paths();
    let mut md = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        md.insert(k.to_owned(), v);
    };
    put("ISTIO_VERSION", json!(scenario.istio.version));
    put("CLUSTER_ID", json!(scenario.istio.cluster_id));
    put("NAMESPACE", json!(pod.namespace));
    put("CONFIG_NAMESPACE", json!(pod.namespace));
    put("POD_NAME", json!(pod.name));
    put("NAME", json!(pod.name));
    put("LABELS", json!(pod.labels));
    put("SERVICE_ACCOUNT", json!(pod.service_account));
    put("WORKLOAD_NAME", json!(pod.deployment));
    let api = if legacy { "api" } else { "apis" };
    put(
        "OWNER",
        json!(format!(
            "kubernetes://{api}/apps/v1/namespaces/{}/deployments/{}",
            pod.namespace, pod.deployment
        )),
    );
    put("INSTANCE_IPS", json!(pod.ip));
    put("INTERCEPTION_MODE", json!("REDIRECT"));
    put("MESH_ID", json!("cluster.local"));
    put("ISTIO_PROXY_SHA", json!("istio-proxy:meshsim"));
    put(
        "EXCHANGE_KEYS",
        json!(
            "NAME,NAMESPACE,INSTANCE_IPS,LABELS,OWNER,PLATFORM_METADATA,WORKLOAD_NAME,MESH_ID,SERVICE_ACCOUNT,CLUSTER_ID"
        ),
    );
    if pod.role == Role::App {
        put(
            "POD_PORTS",
            json!(
                json!([{"name": "http", "containerPort": pod.port, "protocol": "TCP"}]).to_string()
            ),
        );
        put("INCLUDE_INBOUND_PORTS", json!(pod.port.to_string()));
    }
    if pod.proxy == Some(ProxyKind::Router) {
        put("ROUTER_MODE", json!("sni-dnat"));
    }
    if legacy {
        // Istio 1.4 also copied the pod labels to top-level metadata keys.
        for (k, v) in &pod.labels {
            md.entry(k.clone()).or_insert_with(|| json!(v));
        }
    }
    json!({
        "id": pod.node_id().unwrap_or_else(|| pod.proxy_id()),
        "cluster": pod.service_cluster(),
        "metadata": md,
    })
}

/// Services whose selector picks this pod.
pub fn services_of<'a>(
    topology: &'a Topology,
    pod: &'a PodPlan,
) -> impl Iterator<Item = &'a ServicePlan> + 'a {
    topology
        .services
        .iter()
        .filter(move |s| s.namespace == pod.namespace && pod.matches(&s.selector))
}

fn config_path(scenario: &Scenario, kind: &str, ns: &str, name: &str) -> String {
    let group = if scenario.legacy_config_paths() {
        "networking"
    } else {
        "networking.istio.io"
    };
    format!("/apis/{group}/v1alpha3/namespaces/{ns}/{kind}/{name}")
}

fn meta_name(o: &Value) -> (&str, &str) {
    (
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default"),
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A host as written in an Istio object, made a FQDN relative to the object's namespace.
fn fqdn(host: &str, ns: &str) -> String {
    if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{ns}.svc.cluster.local")
    }
}

/// The JWT rules of RequestAuthentications and legacy Policies that select this pod, in order.
pub fn jwt_rules(scenario: &Scenario, topology: &Topology, pod: &PodPlan) -> Vec<JwtRule> {
    let mut out: Vec<JwtRule> = Vec::new();
    let mut push = |r: JwtRule| {
        if let Some(existing) = out
            .iter_mut()
            .find(|e| e.issuer == r.issuer && e.jwks_uri == r.jwks_uri)
        {
            existing.required |= r.required;
        } else {
            out.push(r);
        }
    };
    for ra in scenario.objects_of("RequestAuthentication") {
        let (ns, name) = meta_name(ra);
        let selector = str_map(ra.pointer("/spec/selector/matchLabels"));
        let applies = (ns == pod.namespace && pod.matches(&selector))
            || (ns == scenario.istio.namespace && selector.is_empty());
        if !applies {
            continue;
        }
        for rule in ra
            .pointer("/spec/jwtRules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push(JwtRule {
                issuer: rule
                    .get("issuer")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                audiences: strings(rule.get("audiences")),
                jwks_uri: rule
                    .get("jwksUri")
                    .or(rule.get("jwks_uri"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                jwks: rule.get("jwks").and_then(Value::as_str).map(str::to_owned),
                required: false,
                source: format!("RequestAuthentication/{ns}/{name}"),
            });
        }
    }
    let my_services: BTreeSet<String> =
        services_of(topology, pod).map(|s| s.name.clone()).collect();
    for policy in scenario.objects_of("Policy") {
        let (ns, name) = meta_name(policy);
        if ns != pod.namespace {
            continue;
        }
        let targets: Vec<&str> = policy
            .pointer("/spec/targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect();
        if !targets.is_empty() && !targets.iter().any(|t| my_services.contains(*t)) {
            continue;
        }
        let optional = policy
            .pointer("/spec/originIsOptional")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for origin in policy
            .pointer("/spec/origins")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(jwt) = origin.get("jwt") else {
                continue;
            };
            push(JwtRule {
                issuer: jwt
                    .get("issuer")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                audiences: strings(jwt.get("audiences")),
                jwks_uri: jwt
                    .get("jwksUri")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                jwks: jwt.get("jwks").and_then(Value::as_str).map(str::to_owned),
                required: !optional,
                source: format!("Policy/{ns}/{name}"),
            });
        }
    }
    out
}

/// What istiod inlines for a rule, and the fetch error if it had to use a placeholder.
pub fn inline_jwks(
    scenario: &Scenario,
    rule: &JwtRule,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> (String, Option<String>) {
    if let Some(j) = &rule.jwks {
        return (j.clone(), None);
    }
    let uri = rule.jwks_uri.clone().unwrap_or_else(|| {
        format!(
            "{}/.well-known/openid-configuration",
            rule.issuer.trim_end_matches('/')
        )
    });
    match resolve(&uri) {
        Ok(j) => (j, None),
        Err(e) => (placeholder_jwks(scenario.jwks_placeholder(), &uri), Some(e)),
    }
}

fn jwt_filter(rules: &[JwtRule], inline: &[String]) -> Value {
    let mut providers = serde_json::Map::new();
    let mut requirements = Vec::new();
    for (i, (r, jwks)) in rules.iter().zip(inline).enumerate() {
        let name = format!("origins-{i}");
        let mut p = json!({
            "issuer": r.issuer,
            "local_jwks": {"inline_string": jwks},
            "forward": true,
            "payload_in_metadata": r.issuer,
        });
        if !r.audiences.is_empty() {
            p["audiences"] = json!(r.audiences);
        }
        providers.insert(name.clone(), p);
        requirements.push(json!({"provider_name": name}));
    }
    let required = rules.iter().any(|r| r.required);
    let requires = if required && requirements.len() == 1 {
        requirements[0].clone()
    } else {
        if !required {
            requirements.push(json!({"allow_missing": {}}));
        }
        json!({"requires_any": {"requirements": requirements}})
    };
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": requires}],
            "bypass_cors_preflight": true,
        }
    })
}

const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \"%RESPONSE_CODE_DETAILS%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

fn access_log() -> Value {
    json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
        }
    }])
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn ads() -> Value {
    json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"})
}

fn loopback(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// A listener address: the pod's own loopback address and the listener's real port, or
/// 127.0.0.1 and an ephemeral port when the pod has none.
fn listen(ip: Option<std::net::Ipv4Addr>, port: u16) -> Value {
    match ip {
        Some(ip) => json!({"socket_address": {"address": ip.to_string(), "port_value": port}}),
        None => loopback(0),
    }
}

fn lb_endpoints(addrs: &[SocketAddr]) -> Value {
    json!(
        addrs
            .iter()
            .map(|a| json!({"endpoint": {"address": {"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}}}}))
            .collect::<Vec<_>>()
    )
}

fn is_http_port(name: &str) -> bool {
    ["http", "http2", "grpc", "grpc-web"]
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}-")))
}

/// The xDS resources of one pod. The pod must have a proxy.
pub fn resources(inp: &ConfigInputs<'_>) -> Result<EnvoyResources> {
    let sc = inp.scenario;
    let pod = inp.pod;
    let Some(kind) = pod.proxy else {
        bail!("pod {} has no proxy", pod.name)
    };
    let mut res = EnvoyResources::default();

    // --- well-known clusters
    res.clusters.push(json!({"@type": CLUSTER, "name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"}));
    res.clusters.push(json!({
        "@type": CLUSTER, "name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "10s", "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u32, "max_pending_requests": 4294967295u32, "max_requests": 4294967295u32, "max_retries": 4294967295u32}]},
    }));

    // --- outbound clusters (every service of the mesh) and their endpoints
    let destination_rules: Vec<&Value> = sc.objects_of("DestinationRule").collect();
    for svc in &inp.topology.services {
        let fqdn_ = svc.fqdn();
        let dr = destination_rules.iter().find(|d| {
            let (ns, _) = meta_name(d);
            d.pointer("/spec/host")
                .and_then(Value::as_str)
                .map(|h| fqdn(h, ns))
                == Some(fqdn_.clone())
        });
        let members: Vec<&PodPlan> = inp
            .topology
            .pods
            .iter()
            .filter(|p| p.namespace == svc.namespace && p.matches(&svc.selector))
            .collect();
        for port in &svc.ports {
            let mut subsets: Vec<(String, BTreeMap<String, String>)> =
                vec![(String::new(), BTreeMap::new())];
            if let Some(dr) = dr {
                for s in dr
                    .pointer("/spec/subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = s
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    subsets.push((name, str_map(s.get("labels"))));
                }
            }
            for (subset, labels) in subsets {
                let name = format!("outbound|{}|{subset}|{fqdn_}", port.port);
                let mut cluster = json!({
                    "@type": CLUSTER,
                    "name": name,
                    "type": "EDS",
                    "eds_cluster_config": {"eds_config": ads(), "service_name": name},
                    "connect_timeout": "10s",
                    "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u32, "max_pending_requests": 4294967295u32, "max_requests": 4294967295u32, "max_retries": 4294967295u32}]},
                });
                let mut istio_md = serde_json::Map::new();
                if let Some(dr) = dr {
                    let (ns, n) = meta_name(dr);
                    istio_md.insert(
                        "config".into(),
                        json!(config_path(sc, "destination-rule", ns, n)),
                    );
                }
                if !sc.legacy_config_paths() {
                    istio_md.insert(
                        "services".into(),
                        json!([{"host": fqdn_, "name": svc.name, "namespace": svc.namespace}]),
                    );
                }
                if !istio_md.is_empty() {
                    cluster["metadata"] = json!({"filter_metadata": {"istio": istio_md}});
                }
                res.clusters.push(cluster);
                let addrs: Vec<SocketAddr> = members
                    .iter()
                    .filter(|p| p.matches(&labels) && p.port == port.target())
                    .filter_map(|p| (inp.app_addr)(p))
                    .collect();
                res.endpoints.push(json!({
                    "@type": ENDPOINT,
                    "cluster_name": name,
                    "endpoints": [{"locality": {}, "lb_endpoints": lb_endpoints(&addrs)}],
                }));
            }
        }
    }

    if kind == ProxyKind::Sidecar {
        // --- inbound
        let my_service = services_of(inp.topology, pod).find_map(|s| {
            s.ports
                .iter()
                .find(|p| p.target() == pod.port)
                .map(|p| (s, p))
        });
        let inbound_name = match my_service {
            Some((s, p)) if sc.legacy_inbound_names() => {
                format!("inbound|{}|{}|{}", p.port, p.name(), s.fqdn())
            }
            _ => format!("inbound|{}||", pod.port),
        };
        let app =
            (inp.app_addr)(pod).with_context(|| format!("pod {} has no app address", pod.name))?;
        res.clusters.push(json!({
            "@type": CLUSTER,
            "name": inbound_name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {"cluster_name": inbound_name, "endpoints": [{"lb_endpoints": lb_endpoints(&[app])}]},
        }));
        let rules = jwt_rules(sc, inp.topology, pod);
        let inline: Vec<String> = rules
            .iter()
            .map(|r| inline_jwks(sc, r, inp.resolve_jwks).0)
            .collect();
        let mut http_filters = Vec::new();
        if !rules.is_empty() {
            http_filters.push(jwt_filter(&rules, &inline));
        }
        http_filters.push(json!({"name": "envoy.filters.http.rbac", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}));
        http_filters.push(router());
        res.listeners.push(json!({
            "@type": LISTENER,
            "name": "virtualInbound",
            "address": listen(pod.listen_ip, 15006),
            "traffic_direction": "INBOUND",
            "filter_chains": [{
                "name": inbound_name,
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": format!("inbound_0.0.0.0_{}", pod.port),
                        "route_config": {
                            "name": inbound_name,
                            "virtual_hosts": [{
                                "name": format!("inbound|http|{}", pod.port),
                                "domains": ["*"],
                                "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": inbound_name, "timeout": "0s"}, "decorator": {"operation": format!("{}:{}/*", pod.app, pod.port)}}],
                            }],
                            "validate_clusters": false,
                        },
                        "http_filters": http_filters,
                        "access_log": access_log(),
                        "use_remote_address": false,
                    },
                }],
            }],
        }));

        // --- outbound
        res.listeners.push(json!({
            "@type": LISTENER,
            "name": "virtualOutbound",
            "address": listen(pod.listen_ip, 15001),
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": TCP_PROXY, "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}}]}],
        }));
        let mut http_ports: BTreeMap<u16, Vec<&ServicePlan>> = BTreeMap::new();
        for svc in &inp.topology.services {
            for port in &svc.ports {
                if is_http_port(&port.name()) {
                    http_ports.entry(port.port).or_default().push(svc);
                }
            }
        }
        // TCP services: as Istio writes them, `<cluster IP>:<port>` and not bound
        // (`virtualOutbound` takes that traffic); bound on 127.0.0.1 when the pod has no
        // address of its own.
        for svc in &inp.topology.services {
            for port in &svc.ports {
                if !is_http_port(&port.name()) {
                    let mut l = json!({
                        "@type": LISTENER,
                        "name": format!("{}_{}", svc.cluster_ip, port.port),
                        "address": loopback(0),
                        "traffic_direction": "OUTBOUND",
                        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                            "@type": TCP_PROXY,
                            "stat_prefix": format!("outbound|{}||{}", port.port, svc.fqdn()),
                            "cluster": format!("outbound|{}||{}", port.port, svc.fqdn()),
                        }}]}],
                    });
                    if pod.listen_ip.is_some() {
                        l["address"] = json!({"socket_address": {"address": svc.cluster_ip, "port_value": port.port}});
                        l["bind_to_port"] = json!(false);
                    }
                    res.listeners.push(l);
                }
            }
        }
        for (port, svcs) in http_ports {
            res.listeners.push(json!({
                "@type": LISTENER,
                "name": format!("0.0.0.0_{port}"),
                "address": listen(pod.listen_ip, port),
                "traffic_direction": "OUTBOUND",
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": format!("outbound_0.0.0.0_{port}"),
                        "rds": {"config_source": ads(), "route_config_name": port.to_string()},
                        "http_filters": [router()],
                        "access_log": access_log(),
                    },
                }]}],
            }));
            res.routes.push(route_config(sc, pod, port, &svcs));
        }
    }
    Ok(res)
}

/// Route configuration `<port>`: one virtual host per service on that port (VirtualService
/// routes where one applies), plus `allow_any` to PassthroughCluster.
fn route_config(sc: &Scenario, pod: &PodPlan, port: u16, svcs: &[&ServicePlan]) -> Value {
    let mut used = BTreeSet::new();
    let mut vhosts = Vec::new();
    for svc in svcs {
        let f = svc.fqdn();
        let mut domains = vec![f.clone(), format!("{f}:{port}")];
        if svc.namespace == pod.namespace {
            domains.extend([svc.name.clone(), format!("{}:{port}", svc.name)]);
        }
        let short = format!("{}.{}", svc.name, svc.namespace);
        domains.extend([
            short.clone(),
            format!("{short}:{port}"),
            format!("{short}.svc"),
            format!("{short}.svc:{port}"),
        ]);
        domains.extend([svc.cluster_ip.clone(), format!("{}:{port}", svc.cluster_ip)]);
        domains.retain(|d| used.insert(d.clone()));
        let vs = sc.objects_of("VirtualService").find(|vs| {
            let (ns, _) = meta_name(vs);
            strings(vs.pointer("/spec/hosts"))
                .iter()
                .any(|h| fqdn(h, ns) == f)
        });
        let routes = match vs {
            Some(vs) => vs_routes(sc, vs, port, &f),
            None => vec![json!({
                "name": "default",
                "match": {"prefix": "/"},
                "route": {"cluster": format!("outbound|{port}||{f}"), "timeout": "0s"},
                "decorator": {"operation": format!("{f}:{port}/*")},
            })],
        };
        vhosts.push(json!({"name": format!("{f}:{port}"), "domains": domains, "routes": routes}));
    }
    vhosts.push(json!({
        "name": "allow_any",
        "domains": ["*"],
        "routes": [{"name": "allow_any", "match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster", "timeout": "0s"}}],
    }));
    json!({"@type": ROUTE, "name": port.to_string(), "virtual_hosts": vhosts, "validate_clusters": false})
}

fn vs_routes(sc: &Scenario, vs: &Value, port: u16, host: &str) -> Vec<Value> {
    let (ns, name) = meta_name(vs);
    let meta = json!({"filter_metadata": {"istio": {"config": config_path(sc, "virtual-service", ns, name)}}});
    let mut out = Vec::new();
    for (i, http) in vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let dests: Vec<(String, u64)> = http
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| {
                let h = r
                    .pointer("/destination/host")
                    .and_then(Value::as_str)
                    .map(|h| fqdn(h, ns))
                    .unwrap_or(host.to_owned());
                let subset = r
                    .pointer("/destination/subset")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let p = r
                    .pointer("/destination/port/number")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::from(port));
                (
                    format!("outbound|{p}|{subset}|{h}"),
                    r.get("weight").and_then(Value::as_u64).unwrap_or(100),
                )
            })
            .collect();
        let action = match dests.as_slice() {
            [] => continue,
            [(c, _)] => json!({"cluster": c, "timeout": "0s"}),
            many => {
                json!({"weighted_clusters": {"clusters": many.iter().map(|(c, w)| json!({"name": c, "weight": w})).collect::<Vec<_>>()}, "timeout": "0s"})
            }
        };
        let route_name = http
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}-{i}"));
        out.push(json!({
            "name": route_name,
            "match": {"prefix": "/"},
            "route": action,
            "metadata": meta,
            "decorator": {"operation": format!("{host}:{port}/*")},
        }));
    }
    out
}

/// How the generated resources reach Envoy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdsMode {
    /// Over ADS from the pod's istiod (the world's [`crate::control_plane`]): the bootstrap has
    /// only admin, the Prometheus listener and `xds-grpc`; config_dump shows dynamic resources
    /// with the versions istiod pushed, exactly like a real sidecar.
    #[default]
    Ads,
    /// Everything under `static_resources` (fast; istiod runs but no proxy connects, and
    /// changes of Istio objects in the apiserver do not reach the Envoys).
    Static,
    /// Dynamic resources from files (`path_config_source`); shows as dynamic in config_dump,
    /// but needs about 20 inotify instances per Envoy (see the module docs).
    Files,
}

/// What a sidecar's bootstrap carries.
#[derive(Debug, Clone)]
pub enum Bootstrap<'a> {
    /// The resources themselves, rendered by [`render`] ([`XdsMode::Static`] or
    /// [`XdsMode::Files`]).
    Resources(&'a EnvoyResources, XdsMode),
    /// Everything over ADS from the server at `addr` (see [`render_ads`]).
    Ads {
        addr: SocketAddr,
        /// `initial_fetch_timeout` of the CDS and LDS config sources (default: Envoy's 15 s);
        /// give a short one when a type is held back.
        initial_fetch_timeout: Option<String>,
    },
}

/// Sets `initial_fetch_timeout` of every ADS config source in the resources (RDS of the
/// listeners, EDS of the clusters); used for proxies whose RDS/EDS istiod holds back, which
/// would otherwise keep Envoy from ever becoming ready.
pub fn set_initial_fetch_timeout(res: &mut EnvoyResources, timeout: &str) {
    fn walk(v: &mut Value, timeout: &str) {
        match v {
            Value::Object(o) => {
                if o.contains_key("ads") && o.contains_key("initial_fetch_timeout") {
                    o.insert("initial_fetch_timeout".into(), json!(timeout));
                }
                for x in o.values_mut() {
                    walk(x, timeout);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, timeout)),
            _ => {}
        }
    }
    for r in res
        .listeners
        .iter_mut()
        .chain(&mut res.clusters)
        .chain(&mut res.routes)
        .chain(&mut res.endpoints)
    {
        walk(r, timeout);
    }
}

/// The static part every sidecar bootstrap has: admin, the `0.0.0.0_15090` Prometheus listener
/// and its `prometheus_stats` cluster (as Istio's bootstrap template).
fn base_bootstrap(node: Value, admin_port: u16, listen_ip: Option<std::net::Ipv4Addr>) -> Value {
    let prom_cluster = json!({
        "name": "prometheus_stats", "type": "STATIC", "connect_timeout": "0.250s",
        "load_assignment": {"cluster_name": "prometheus_stats", "endpoints": [{"lb_endpoints": lb_endpoints(&[SocketAddr::from(([127, 0, 0, 1], admin_port))])}]},
    });
    let prom_listener = json!({
        "name": "0.0.0.0_15090",
        "address": listen(listen_ip, 15090),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": "stats",
                "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]},
                "http_filters": [router()],
            },
        }]}],
    });
    json!({
        "node": node,
        "admin": {"address": loopback(admin_port)},
        "static_resources": {"listeners": [prom_listener], "clusters": [prom_cluster]},
    })
}

/// Writes an ADS bootstrap into `dir` (admin, Prometheus listener, `xds-grpc` to `xds`,
/// `dynamic_resources` over ADS); returns its path.
pub fn render_ads(
    dir: &Path,
    node: Value,
    admin_port: u16,
    listen_ip: Option<std::net::Ipv4Addr>,
    xds: SocketAddr,
    initial_fetch_timeout: Option<&str>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut bootstrap = base_bootstrap(node, admin_port, listen_ip);
    let mut fragment = crate::xds::ads_bootstrap_fragment(xds);
    if let Some(t) = initial_fetch_timeout {
        for k in ["cds_config", "lds_config"] {
            fragment["dynamic_resources"][k]["initial_fetch_timeout"] = json!(t);
        }
    }
    if let (Some(dst), Some(src)) = (
        bootstrap["static_resources"]["clusters"].as_array_mut(),
        fragment["static_resources"]["clusters"].as_array(),
    ) {
        dst.extend(src.iter().cloned());
    }
    bootstrap["dynamic_resources"] = fragment["dynamic_resources"].take();
    let path = dir.join("envoy-rev0.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap)?)?;
    Ok(path)
}

/// Writes the bootstrap (and in [`XdsMode::Files`] the xDS files) into `dir`; returns the
/// bootstrap path. Not for [`XdsMode::Ads`] (see [`render_ads`]).
pub fn render(
    dir: &Path,
    node: Value,
    admin_port: u16,
    listen_ip: Option<std::net::Ipv4Addr>,
    res: &EnvoyResources,
    mode: XdsMode,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut bootstrap = base_bootstrap(node, admin_port, listen_ip);
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("@type");
        }
        v
    };
    match mode {
        XdsMode::Ads => bail!("XdsMode::Ads has no resource files: use render_ads"),
        XdsMode::Static => {
            let routes: BTreeMap<&str, &Value> = res
                .routes
                .iter()
                .filter_map(|r| r.get("name").and_then(Value::as_str).map(|n| (n, r)))
                .collect();
            let cla: BTreeMap<&str, &Value> = res
                .endpoints
                .iter()
                .filter_map(|e| {
                    e.get("cluster_name")
                        .and_then(Value::as_str)
                        .map(|n| (n, e))
                })
                .collect();
            let static_res = &mut bootstrap["static_resources"];
            for l in &res.listeners {
                let mut l = strip(l);
                for_each_hcm(&mut l, |hcm| {
                    if let Some(name) = hcm
                        .pointer("/rds/route_config_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                    {
                        let o = hcm.as_object_mut().expect("hcm is an object");
                        o.remove("rds");
                        o.insert(
                            "route_config".into(),
                            routes
                                .get(name.as_str())
                                .map(|r| strip(r))
                                .unwrap_or(json!({"name": name})),
                        );
                    }
                });
                static_res["listeners"]
                    .as_array_mut()
                    .expect("array")
                    .push(l);
            }
            for c in &res.clusters {
                let mut c = strip(c);
                if c.get("type").and_then(Value::as_str) == Some("EDS") {
                    let name = c["name"].as_str().unwrap_or_default().to_owned();
                    let o = c.as_object_mut().expect("cluster is an object");
                    o.remove("eds_cluster_config");
                    o.insert("type".into(), json!("STATIC"));
                    o.insert(
                        "load_assignment".into(),
                        cla.get(name.as_str())
                            .map(|e| strip(e))
                            .unwrap_or(json!({"cluster_name": name})),
                    );
                }
                static_res["clusters"]
                    .as_array_mut()
                    .expect("array")
                    .push(c);
            }
        }
        XdsMode::Files => {
            let xds = dir.join("xds");
            std::fs::create_dir_all(xds.join("rds"))?;
            std::fs::create_dir_all(xds.join("eds"))?;
            let source = |p: PathBuf| json!({"path_config_source": {"path": p.display().to_string()}, "resource_api_version": "V3"});
            let mut route_files = BTreeMap::new();
            for (i, r) in res.routes.iter().enumerate() {
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let p = xds.join("rds").join(format!("{i}.json"));
                write_discovery(&p, ROUTE, std::slice::from_ref(r))?;
                route_files.insert(name, p);
            }
            let mut eds_files = BTreeMap::new();
            for (i, e) in res.endpoints.iter().enumerate() {
                let name = e
                    .get("cluster_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let p = xds.join("eds").join(format!("{i}.json"));
                write_discovery(&p, ENDPOINT, std::slice::from_ref(e))?;
                eds_files.insert(name, p);
            }
            let mut listeners = Vec::new();
            for l in &res.listeners {
                let mut l = l.clone();
                for_each_hcm(&mut l, |hcm| {
                    if let Some(name) = hcm
                        .pointer("/rds/route_config_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        && let Some(p) = route_files.get(&name)
                    {
                        hcm["rds"]["config_source"] = source(p.clone());
                    }
                });
                listeners.push(l);
            }
            let mut clusters = Vec::new();
            for c in &res.clusters {
                let mut c = c.clone();
                if c.get("type").and_then(Value::as_str) == Some("EDS") {
                    let name = c["name"].as_str().unwrap_or_default().to_owned();
                    if let Some(p) = eds_files.get(&name) {
                        c["eds_cluster_config"]["eds_config"] = source(p.clone());
                    }
                }
                clusters.push(c);
            }
            write_discovery(&xds.join("lds.json"), LISTENER, &listeners)?;
            write_discovery(&xds.join("cds.json"), CLUSTER, &clusters)?;
            bootstrap["dynamic_resources"] = json!({
                "lds_config": source(xds.join("lds.json")),
                "cds_config": source(xds.join("cds.json")),
            });
        }
    }
    let path = dir.join("envoy-rev0.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap)?)?;
    Ok(path)
}

fn for_each_hcm(listener: &mut Value, mut f: impl FnMut(&mut Value)) {
    for fc in listener
        .get_mut("filter_chains")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for filter in fc
            .get_mut("filters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if filter.get("name").and_then(Value::as_str)
                == Some("envoy.filters.network.http_connection_manager")
                && let Some(tc) = filter.get_mut("typed_config")
            {
                f(tc);
            }
        }
    }
}

/// A DiscoveryResponse file for Envoy's filesystem subscriptions, written atomically.
fn write_discovery(path: &Path, type_url: &str, resources: &[Value]) -> Result<()> {
    let body = json!({"version_info": "2026-01-01T00:00:00Z/1", "type_url": type_url, "resources": resources});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&body)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Envoy's `--log-format`: pilot-agent's `[Envoy (Epoch 0)] ` prefix for old Istio, else
/// Envoy's default; both contain `[%n]`, the logger name.
pub fn log_format(scenario: &Scenario) -> Option<String> {
    scenario
        .legacy_log_format()
        .then(|| "[Envoy (Epoch 0)] [%Y-%m-%d %T.%e][%t][%l][%n] %v".to_owned())
}

/// A running sidecar (or gateway) Envoy and the addresses it bound.
#[derive(Debug)]
pub struct Sidecar {
    pub process: EnvoyProcess,
    pub admin: SocketAddr,
    /// Bound address of every listener, by listener name (`virtualInbound`, `0.0.0.0_8080`, ...).
    pub listeners: BTreeMap<String, SocketAddr>,
    pub log_path: PathBuf,
    pub bootstrap_path: PathBuf,
}

impl Sidecar {
    /// Generates the config of `inp.pod` into `dir` ([`XdsMode::Static`] or
    /// [`XdsMode::Files`]), starts Envoy and waits until it is ready.
    pub async fn start(
        dir: &Path,
        inp: &ConfigInputs<'_>,
        mode: XdsMode,
        log_path: &Path,
        timeout: Duration,
    ) -> Result<Sidecar> {
        let res = resources(inp)?;
        Sidecar::start_with(
            dir,
            inp.scenario,
            inp.pod,
            &Bootstrap::Resources(&res, mode),
            log_path,
            timeout,
        )
        .await
    }

    /// Writes the bootstrap of `pod` into `dir`, starts Envoy and waits until it is ready
    /// (with [`Bootstrap::Ads`]: until its initial CDS/LDS fetch is done and the listeners
    /// warmed). Retries (with a new admin port) if the reserved admin port was taken meanwhile.
    pub async fn start_with(
        dir: &Path,
        scenario: &Scenario,
        pod: &PodPlan,
        config: &Bootstrap<'_>,
        log_path: &Path,
        timeout: Duration,
    ) -> Result<Sidecar> {
        let node = node(scenario, pod);
        let mut last_err = None;
        for _attempt in 0..4 {
            let admin_port = reserve_port()?;
            let bootstrap_path = match config {
                Bootstrap::Resources(res, mode) => {
                    render(dir, node.clone(), admin_port, pod.listen_ip, res, *mode)?
                }
                Bootstrap::Ads {
                    addr,
                    initial_fetch_timeout,
                } => render_ads(
                    dir,
                    node.clone(),
                    admin_port,
                    pod.listen_ip,
                    *addr,
                    initial_fetch_timeout.as_deref(),
                )?,
            };
            let cmd = EnvoyCommand {
                config_path: bootstrap_path.clone(),
                run_dir: dir.to_path_buf(),
                log_path: log_path.to_path_buf(),
                log_level: pod.log_level.clone(),
                component_log_level: pod.component_log_level.clone(),
                log_format: log_format(scenario),
                service_node: node["id"].as_str().unwrap_or_default().to_owned(),
                service_cluster: pod.service_cluster(),
                concurrency: 1,
            };
            match EnvoyProcess::start(&cmd, timeout).await {
                Ok(process) => {
                    let listeners = process.listener_addresses().await?.into_iter().collect();
                    return Ok(Sidecar {
                        admin: process.admin(),
                        process,
                        listeners,
                        log_path: log_path.to_path_buf(),
                        bootstrap_path,
                    });
                }
                Err(e) if format!("{e:#}").contains("ddress already in use") => last_err = Some(e),
                Err(e) => {
                    let hint = if format!("{e:#}").contains("inotify_fd_ >= 0") {
                        " (out of inotify instances: use XdsMode::Static or raise fs.inotify.max_user_instances)"
                    } else {
                        ""
                    };
                    return Err(e.context(format!(
                        "starting Envoy for pod {}/{}{hint}",
                        pod.namespace, pod.name
                    )));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    /// The inbound listener's address (requests sent there go through the inbound filters to
    /// the app).
    pub fn inbound(&self) -> Option<SocketAddr> {
        self.listeners.get("virtualInbound").copied()
    }

    /// The outbound HTTP listener for a service port (`0.0.0.0_<port>`).
    pub fn outbound(&self, port: u16) -> Option<SocketAddr> {
        self.listeners.get(&format!("0.0.0.0_{port}")).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs_for<'a>(
        s: &'a Scenario,
        t: &'a Topology,
        pod: &'a PodPlan,
        app: &'a (dyn Fn(&PodPlan) -> Option<SocketAddr> + Sync),
    ) -> ConfigInputs<'a> {
        ConfigInputs {
            scenario: s,
            topology: t,
            pod,
            app_addr: app,
            resolve_jwks: &unreachable_jwks,
        }
    }

    #[test]
    fn placeholders_have_the_istio_shapes() {
        let uri = "https://x/certs";
        assert_eq!(placeholder_jwks(JwksPlaceholder::Empty, uri), "");
        let p = placeholder_jwks(JwksPlaceholder::ErrorUriEncoded, uri);
        let v: Value = serde_json::from_str(&p).unwrap();
        let n = v["keys"][0]["n"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(n)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "Error-IstiodFailedToFetchJwksUri-https://x/certs"
        );
        assert!(
            placeholder_jwks(JwksPlaceholder::ErrorUriPrefix, uri)
                .contains("\"n\":\"Error-IstiodFailedToFetchJwksUri-")
        );
        let v: Value = serde_json::from_str(FAKE_JWKS).unwrap();
        assert!(
            v["keys"][0]["n"]
                .as_str()
                .unwrap()
                .starts_with("vqS7RN4b34i3_5Yy")
        );
        let v: Value = serde_json::from_str(PUBLIC_ONLY_JWKS).unwrap();
        assert!(
            v["keys"][0]["n"]
                .as_str()
                .unwrap()
                .starts_with("0xObjM0UvS_oaazjpEYl")
        );
    }

    #[test]
    fn seed_customer_config() {
        let s = Scenario::load("seed").unwrap();
        let t = s.topology().unwrap();
        let pod = t.pods.iter().find(|p| p.app == "customer").unwrap();
        let app = |_: &PodPlan| Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        let r = resources(&inputs_for(&s, &t, pod, &app)).unwrap();
        let names: Vec<&str> = r
            .clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"inbound|8080|http|customer.olaf-customer.svc.cluster.local"),
            "{names:?}"
        );
        assert!(
            names.contains(
                &"outbound|8080|version-v1|recommendation.olaf-customer.svc.cluster.local"
            ),
            "{names:?}"
        );
        let rec = r
            .clusters
            .iter()
            .find(|c| c["name"] == "outbound|8080||recommendation.olaf-customer.svc.cluster.local")
            .unwrap();
        assert_eq!(
            rec["metadata"]["filter_metadata"]["istio"]["config"],
            "/apis/networking/v1alpha3/namespaces/olaf-customer/destination-rule/recommendation"
        );
        let inbound = r
            .listeners
            .iter()
            .find(|l| l["name"] == "virtualInbound")
            .unwrap();
        let hcm = &inbound["filter_chains"][0]["filters"][0]["typed_config"];
        let jwt = &hcm["http_filters"][0];
        assert_eq!(jwt["name"], "envoy.filters.http.jwt_authn");
        let p = &jwt["typed_config"]["providers"]["origins-0"];
        assert_eq!(
            p["issuer"],
            "https://keycloak-olaf-sso.apps.example.com/auth/realms/olaf"
        );
        assert_eq!(p["local_jwks"]["inline_string"], "");
        // the legacy Policy makes the token required
        assert_eq!(
            jwt["typed_config"]["rules"][0]["requires"],
            json!({"provider_name": "origins-0"})
        );
        for resource in r
            .listeners
            .iter()
            .chain(&r.clusters)
            .chain(&r.routes)
            .chain(&r.endpoints)
        {
            assert!(
                resource["@type"]
                    .as_str()
                    .unwrap()
                    .starts_with("type.googleapis.com/envoy.config.")
            );
        }
        // preference has no JWT filter
        let pref = t.pods.iter().find(|p| p.app == "preference").unwrap();
        let r = resources(&inputs_for(&s, &t, pref, &app)).unwrap();
        let inbound = r
            .listeners
            .iter()
            .find(|l| l["name"] == "virtualInbound")
            .unwrap();
        assert_eq!(
            inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["name"],
            "envoy.filters.http.rbac"
        );
    }

    #[test]
    fn modern_flavour_uses_fake_jwks_and_short_inbound_names() {
        let mut s = Scenario::load("seed").unwrap();
        s.istio.version = "1.24.2".into();
        let t = s.topology().unwrap();
        let pod = t.pods.iter().find(|p| p.app == "customer").unwrap();
        let app = |_: &PodPlan| Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        let r = resources(&inputs_for(&s, &t, pod, &app)).unwrap();
        assert!(r.clusters.iter().any(|c| c["name"] == "inbound|8080||"));
        let inbound = r
            .listeners
            .iter()
            .find(|l| l["name"] == "virtualInbound")
            .unwrap();
        let p = &inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
            ["providers"]["origins-0"];
        assert_eq!(p["local_jwks"]["inline_string"], FAKE_JWKS);
    }
}

#[cfg(test)]
mod envoy_tests {
    use super::*;
    use crate::app::{AppServer, Upstream};
    use crate::envoy::http_get;
    use std::sync::{Arc, Mutex};

    struct Apps {
        addrs: BTreeMap<String, SocketAddr>,
        vias: BTreeMap<String, Arc<Mutex<Option<SocketAddr>>>>,
        _servers: Vec<AppServer>,
    }

    async fn start_apps(s: &Scenario, t: &Topology, dir: &Path) -> Apps {
        let mut apps = Apps {
            addrs: BTreeMap::new(),
            vias: BTreeMap::new(),
            _servers: Vec::new(),
        };
        for p in t.pods.iter().filter(|p| p.role == Role::App) {
            let via = Arc::new(Mutex::new(None));
            let up = s.workloads[p.workload].calls.clone().map(|host| Upstream {
                host,
                via: via.clone(),
            });
            let log = dir.join(format!("{}.log", p.name));
            let a = AppServer::start(&p.app, p.version.as_deref(), &p.name, up, &log)
                .await
                .unwrap();
            apps.addrs.insert(p.name.clone(), a.addr());
            apps.vias.insert(p.name.clone(), via);
            apps._servers.push(a);
        }
        apps
    }

    async fn start(
        s: &Scenario,
        t: &Topology,
        apps: &Apps,
        dir: &Path,
        app: &str,
        mode: XdsMode,
    ) -> Sidecar {
        let app_addr = |p: &PodPlan| apps.addrs.get(&p.name).copied();
        let pod = t.pods.iter().find(|p| p.app == app).unwrap();
        let inp = ConfigInputs {
            scenario: s,
            topology: t,
            pod,
            app_addr: &app_addr,
            resolve_jwks: &unreachable_jwks,
        };
        let log = dir.join(format!("{app}-envoy.log"));
        let sc = Sidecar::start(&dir.join(app), &inp, mode, &log, Duration::from_secs(30))
            .await
            .unwrap();
        *apps.vias[&pod.name].lock().unwrap() = sc.outbound(8080);
        sc
    }

    /// Real Envoys for the seed's customer and preference pods.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envoy_accepts_the_seed_config() {
        let s = Scenario::load("seed").unwrap();
        let t = s.topology().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let apps = start_apps(&s, &t, dir.path()).await;
        let customer = start(&s, &t, &apps, dir.path(), "customer", XdsMode::Static).await;
        let preference = start(&s, &t, &apps, dir.path(), "preference", XdsMode::Static).await;
        let (status, body) = http_get(customer.inbound().unwrap(), "/").await.unwrap();
        assert_eq!(status, 401, "{body}");
        let (status, body) = http_get(preference.inbound().unwrap(), "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with(
                "preference => recommendation v1 from 'recommendation-v1-7c9d8b6f5-k2h4m': "
            ),
            "{body}"
        );
        let (_, dump) = http_get(customer.admin, "/config_dump").await.unwrap();
        assert!(dump.contains("static_clusters") && dump.contains("\"origins-0\""));
        let pids: Vec<u32> = [&customer, &preference]
            .iter()
            .flat_map(|s| s.process.pids())
            .collect();
        drop((customer, preference));
        for pid in pids {
            assert!(!crate::envoy::pid_alive(pid), "{pid} still alive");
        }
    }

    /// Files mode: LDS/CDS/RDS/EDS from files, shown as dynamic resources, and routing works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_mode_shows_dynamic_resources() {
        let s = Scenario::load("minimal").unwrap();
        let t = s.topology().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let apps = start_apps(&s, &t, dir.path()).await;
        let web = start(&s, &t, &apps, dir.path(), "web", XdsMode::Files).await;
        let (_, dump) = http_get(web.admin, "/config_dump?include_eds")
            .await
            .unwrap();
        let dump: Value = serde_json::from_str(&dump).unwrap();
        let section = |t: &str| {
            dump["configs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["@type"].as_str().unwrap().ends_with(t))
                .unwrap()
                .clone()
        };
        let clusters = section("ClustersConfigDump");
        let names: Vec<&str> = clusters["dynamic_active_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cluster"]["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"outbound|8080||web.demo.svc.cluster.local"),
            "{names:?}"
        );
        assert_eq!(
            clusters["dynamic_active_clusters"][0]["version_info"],
            "2026-01-01T00:00:00Z/1"
        );
        let routes = section(".RoutesConfigDump");
        assert!(
            routes["dynamic_route_configs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["route_config"]["name"] == "8080")
        );
        let eps = section("EndpointsConfigDump");
        let web_cla = eps["dynamic_endpoint_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["endpoint_config"]["cluster_name"] == "outbound|8080||web.demo.svc.cluster.local"
            })
            .unwrap();
        assert_eq!(
            web_cla["endpoint_config"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let out = web.outbound(8080).unwrap();
        let (status, body) =
            crate::envoy::http_request(out, "GET", "/", &[("host", "web:8080")], None)
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}");
    }
}
