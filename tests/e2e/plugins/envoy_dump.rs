//! kubectl envoy-dump against real sidecar Envoys in the `seed` world.

use meshsim::world::World;

use crate::support::{PluginPath, run, show};

const NS: &str = "olaf-customer";

#[test]
fn scratch_explore() {
    let t = std::time::Instant::now();
    let world = World::start_blocking("seed").unwrap();
    eprintln!("world in {:?}", t.elapsed());
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    for view in ["clusters", "listeners", "routes", "endpoints", "secrets", "bootstrap", "jwt", "rbac"] {
        let t = std::time::Instant::now();
        let out = run(&pp, &world, &["envoy-dump", view, &customer.name, "-n", NS]);
        eprintln!("===== {view} ({:?})\n{}", t.elapsed(), show(&out));
    }
    let out = run(&pp, &world, &["envoy-dump", "stats", &customer.name, "-n", NS, "--filter", "jwt"]);
    eprintln!("===== stats\n{}", show(&out));
    let out = run(&pp, &world, &["envoy-dump", "clusters", "-l", "app=recommendation", "-n", NS]);
    eprintln!("===== -l\n{}", show(&out));
    let v1 = world.pod(NS, "recommendation-v1").unwrap();
    let v2 = world.pod(NS, "recommendation-v2").unwrap();
    let out = run(&pp, &world, &["envoy-dump", "diff", &v1.name, &v2.name, "-n", NS]);
    eprintln!("===== diff\n{}", show(&out));
    eprintln!("issuer {:?}", world.jwks().map(|j| j.issuer()));
    panic!("scratch");
}
