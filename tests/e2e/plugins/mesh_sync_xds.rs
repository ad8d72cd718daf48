//! kubectl mesh-sync against an istiod with HTTP debug off (`ENABLE_DEBUG_ON_HTTP=false`): the
//! plugin falls back to the xDS debug request `istio.io/debug/syncz` on port 15012 (TLS, a
//! TokenRequest bearer token), as istioctl ≥ 1.22 does.

use std::time::Duration;

use meshsim::scenario::Scenario;
use meshsim::world::{World, WorldOptions};
use meshsim::xds::TYPES;
use serde_json::Value;

use crate::support::{PluginPath, run, show, stdout};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn http_debug_off_is_answered_over_xds() {
    let s = Scenario::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/xds-debug.yaml"
    ))
    .unwrap();
    let world = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(World::start_with(s, WorldOptions::default()))
        .unwrap();
    let pp = PluginPath::install();
    let web = world.pod("demo", "web").unwrap();
    let istiod = world.pod("istio-system", "istiod").unwrap();
    let node = web.node_id.clone().unwrap();
    let xds = world.xds_for("demo", "web").unwrap();
    world
        .handle()
        .block_on(xds.wait_synced(&node, &TYPES[..2], WAIT))
        .unwrap();
    world.apiserver().clear_requests();

    let out = run(&pp, &world, &["mesh-sync", "-A", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("trying the xDS debug request"),
        "the plugin says it used xDS:\n{}",
        show(&out)
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with(&web.proxy_id))
        .unwrap_or_else(|| panic!("no row for {}\n{}", web.proxy_id, show(&out)));
    assert!(line.contains("SYNCED"), "{line}\n{}", show(&out));
    assert!(line.contains(&istiod.name), "{line}\n{}", show(&out));

    let token = world.apiserver().requests().into_iter().any(|r| {
        r.method == "POST" && r.path.ends_with("/serviceaccounts/default/token") && r.status < 300
    });
    assert!(
        token,
        "a TokenRequest for istio-system/default: {:#?}",
        world.apiserver().requests()
    );

    // -o json: the same proxy, LDS and CDS in sync
    let out = run(&pp, &world, &["mesh-sync", "-A", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v:#}");
    assert_eq!(items[0]["istiod"], istiod.name.as_str(), "{v:#}");
    assert_eq!(items[0]["lds"]["state"], "SYNCED", "{v:#}");
    assert_eq!(items[0]["cds"]["state"], "SYNCED", "{v:#}");
}
