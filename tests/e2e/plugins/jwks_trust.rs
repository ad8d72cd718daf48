//! kubectl jwks-trust against the seed world, the article replayed: istiod cannot fetch the
//! Keycloak's keys (private CA), the customer sidecar gets a placeholder and rejects a valid
//! token; both fixes (inline the keys, give istiod the CA) make the real Envoy accept it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use meshsim::apiserver::RequestRecord;
use meshsim::world::World;
use serde_json::{Value, json};

use crate::support::{PluginPath, run, show, stdout};

const NS: &str = "olaf-customer";
const WAIT: Duration = Duration::from_secs(30);
const RA: (&str, &str) = ("security.istio.io/v1", "RequestAuthentication");
const POLICY: (&str, &str) = ("authentication.istio.io/v1alpha1", "Policy");

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A valid token of the world's Keycloak for user `sub`, signed with its current key.
fn token(world: &World, sub: &str) -> String {
    world
        .jwks()
        .unwrap()
        .token(sub, "customer", now(), Duration::from_secs(3600))
}

/// GET / through the customer sidecar (its JWT filter applies): the status.
fn status(world: &World, token: Option<&str>) -> u16 {
    world
        .handle()
        .block_on(world.request(NS, "customer", "/", token))
        .unwrap()
        .0
}

/// Polls the customer sidecar until it answers `want` for `token`. A policy or Deployment
/// write reaches the Envoy asynchronously (apiserver watch → istiod regeneration, or restart
/// and fetch → ADS push → listener update), and the request is the only end-to-end signal
/// of it, so this polls with a deadline.
fn wait_for_status(world: &World, token: Option<&str>, want: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = status(world, token);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the customer sidecar still answers {got}, not {want}, after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The world's Keycloak CA ("Olaf Private Root CA"), written to a file for --ca-file.
fn ca_file(world: &World) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, world.jwks().unwrap().ca_pem()).unwrap();
    (dir, path)
}

fn object(world: &World, (api_version, kind): (&str, &str)) -> Value {
    world
        .apiserver()
        .store()
        .get(api_version, kind, Some(NS), "customerjwt")
        .unwrap()
}

/// The JWT rule of the RequestAuthentication or the legacy Policy `customerjwt`.
fn rule(world: &World, which: (&str, &str)) -> Value {
    let o = object(world, which);
    if which == RA {
        o["spec"]["jwtRules"][0].clone()
    } else {
        o["spec"]["origins"][0]["jwt"].clone()
    }
}

/// The kids of the keys inlined in a rule.
fn inline_kids(rule: &Value) -> Vec<String> {
    let jwks: Value = serde_json::from_str(rule["jwks"].as_str().unwrap()).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn writes(world: &World) -> Vec<RequestRecord> {
    world
        .apiserver()
        .requests()
        .into_iter()
        .filter(RequestRecord::is_write)
        .collect()
}

/// A table's rows as their cells split on runs of 2+ spaces (a cell has single spaces at most).
fn cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn check_finds_the_untrusted_ca_and_the_placeholder() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let customer = world.pod(NS, "customer").unwrap();
    assert_eq!(status(&world, Some(&token(&world, "alice"))), 401);

    let out = run(&pp, &world, &["jwks-trust", "check", "-A"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = cells(&stdout(&out));
    assert_eq!(
        rows[0],
        ["NAMESPACE", "POLICY", "ISSUER", "JWKS", "STATUS", "DETAIL"]
    );
    let policies: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        policies,
        ["requestauthentication/customerjwt", "policy/customerjwt"]
    );
    let jwks_uri = world.jwks().unwrap().jwks_uri();
    for r in &rows[1..] {
        assert_eq!(r[0], NS);
        assert_eq!(r[3], jwks_uri);
        assert_eq!(r[4], "UNTRUSTED CA", "{r:?}");
        assert!(r[5].contains("\"Olaf Private Root CA\""), "{r:?}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // istiod's own words from its log, the sidecar holding the placeholder, the fixes
    assert!(
        err.lines().any(|l| l.trim_start().starts_with("istiod:")
            && l.contains(&jwks_uri)
            && l.contains("x509: certificate signed by unknown authority")),
        "{err}"
    );
    assert!(
        err.contains(&format!("sidecar {NS}/{}: holds", customer.name)),
        "{err}"
    );
    assert!(
        err.contains("kubectl jwks-trust add-ca --from-url"),
        "{err}"
    );
    assert!(
        err.contains("kubectl jwks-trust inline customerjwt -n olaf-customer --ca-file"),
        "{err}"
    );
}

/// Fix 1: `inline customerjwt` puts the keys in both policies of that name (the
/// RequestAuthentication and the legacy Policy); istiod pushes them; the token passes.
#[test]
fn inline_puts_the_keys_in_both_policies_and_the_token_passes() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let (_dir, ca) = ca_file(&world);
    let ca = ca.to_str().unwrap();
    let alice = token(&world, "alice");
    assert_eq!(status(&world, Some(&alice)), 401);
    let jwks_uri = world.jwks().unwrap().jwks_uri();

    // without the CA the fetch is refused (TLS verified; no insecure switch): nothing written
    world.apiserver().clear_requests();
    let out = run(
        &pp,
        &world,
        &["jwks-trust", "inline", "customerjwt", "-n", NS],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNTRUSTED CA"), "{err}");
    assert!(err.contains("--ca-file"), "hint: {err}");
    assert_eq!(writes(&world), []);

    // --dry-run: a diff per policy, no write
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "inline",
            "customerjwt",
            "-n",
            NS,
            "--ca-file",
            ca,
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let diff = stdout(&out);
    for header in [
        "--- requestauthentications.security.istio.io olaf-customer/customerjwt",
        "--- policies.authentication.istio.io olaf-customer/customerjwt",
    ] {
        assert!(diff.contains(header), "{header}: {diff}");
    }
    assert_eq!(
        diff.lines()
            .filter(|l| l.starts_with('-') && l.contains("jwksUri:"))
            .count(),
        2,
        "{diff}"
    );
    assert_eq!(
        diff.lines()
            .filter(|l| l.starts_with('+') && l.contains("jwks:") && l.contains("olaf-key-1"))
            .count(),
        2,
        "{diff}"
    );
    assert_eq!(writes(&world), [], "--dry-run writes nothing");
    assert_eq!(rule(&world, RA)["jwksUri"], jwks_uri.as_str());
    assert_eq!(rule(&world, POLICY)["jwksUri"], jwks_uri.as_str());

    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "inline",
            "customerjwt",
            "-n",
            NS,
            "--ca-file",
            ca,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requestauthentications.security.istio.io olaf-customer/customerjwt: rule 0: jwksUri replaced by 1 key(s) (kid olaf-key-1)"),
        "{err}"
    );
    assert!(
        err.contains(
            "policies.authentication.istio.io olaf-customer/customerjwt: rule 0: jwksUri replaced"
        ),
        "{err}"
    );
    for which in [RA, POLICY] {
        let r = rule(&world, which);
        assert!(r.get("jwksUri").is_none(), "{r}");
        assert_eq!(inline_kids(&r), ["olaf-key-1"]);
        let o = object(&world, which);
        assert_eq!(
            o["metadata"]["annotations"]["meshdebug.io/jwks-source"],
            jwks_uri.as_str()
        );
    }
    wait_for_status(&world, Some(&alice), 200);
    assert_eq!(
        status(&world, None),
        401,
        "the legacy Policy still requires a token"
    );

    // check: both inline now, exit 0
    let out = run(&pp, &world, &["jwks-trust", "check", "-A"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = cells(&stdout(&out));
    assert!(rows[1..].iter().all(|r| r[4] == "INLINE"), "{}", show(&out));

    // nothing left to inline: an error, and no write
    world.apiserver().clear_requests();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "inline",
            "customerjwt",
            "-n",
            NS,
            "--ca-file",
            ca,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no JWT rule with a jwksUri"),
        "{}",
        show(&out)
    );
    assert_eq!(writes(&world), []);
    // a kind that is not a JWT policy, a name that does not exist
    let out = run(
        &pp,
        &world,
        &["jwks-trust", "inline", "deployment/customer", "-n", NS],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requestauthentication/NAME"),
        "{}",
        show(&out)
    );
    let out = run(
        &pp,
        &world,
        &["jwks-trust", "inline", "policy/nope", "-n", NS],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no Policy named nope in namespace olaf-customer"),
        "{}",
        show(&out)
    );
}

/// After the issuer rotates its key, `refresh` re-fetches the inlined keys of both policies.
#[test]
fn refresh_after_a_rotation_updates_the_inlined_keys() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let (_dir, ca) = ca_file(&world);
    let ca = ca.to_str().unwrap();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "inline",
            "customerjwt",
            "-n",
            NS,
            "--ca-file",
            ca,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let alice = token(&world, "alice");
    wait_for_status(&world, Some(&alice), 200);

    // nothing changed yet
    world.apiserver().clear_requests();
    let out = run(
        &pp,
        &world,
        &["jwks-trust", "refresh", "-A", "--ca-file", ca],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = cells(&stdout(&out));
    assert_eq!(rows.len(), 3, "{}", show(&out));
    assert!(
        rows[1..].iter().all(|r| r[4] == "UNCHANGED"),
        "{}",
        show(&out)
    );
    assert_eq!(writes(&world), []);

    let kid = world.jwks().unwrap().rotate();
    assert_eq!(kid, "olaf-key-2");
    let bob = token(&world, "bob");
    // the inlined keys are the old ones: istiod fetches nothing
    assert_eq!(status(&world, Some(&bob)), 401);

    let out = run(
        &pp,
        &world,
        &["jwks-trust", "refresh", "-A", "--ca-file", ca, "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains("olaf-key-2"),
        "a diff: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("WOULD UPDATE kid olaf-key-1 → kid olaf-key-2"),
        "{}",
        show(&out)
    );
    assert_eq!(writes(&world), []);

    let out = run(
        &pp,
        &world,
        &["jwks-trust", "refresh", "-A", "--ca-file", ca],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = cells(&stdout(&out));
    assert_eq!(
        rows[0],
        [
            "NAMESPACE",
            "POLICY",
            "ISSUER",
            "SOURCE",
            "RESULT",
            "DETAIL"
        ]
    );
    let mut policies: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    policies.sort();
    assert_eq!(
        policies,
        ["policy/customerjwt", "requestauthentication/customerjwt"]
    );
    for r in &rows[1..] {
        assert_eq!(r[4], "UPDATED", "{r:?}");
        assert_eq!(r[5], "kid olaf-key-1 → kid olaf-key-2", "{r:?}");
    }
    for which in [RA, POLICY] {
        assert_eq!(inline_kids(&rule(&world, which)), ["olaf-key-2"]);
    }
    wait_for_status(&world, Some(&bob), 200);
    assert_eq!(status(&world, Some(&alice)), 401, "the retired key");

    // -o json: the kind tells the two policies apart
    let out = run(
        &pp,
        &world,
        &["jwks-trust", "refresh", "-A", "--ca-file", ca, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "JwksRefreshList");
    let mut kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["Policy", "RequestAuthentication"]);
}

/// Fix 2: `add-ca` captures the Keycloak's chain, stores its CA in a Secret, mounts it at
/// /cacerts of istio-pilot's discovery container (the istio namespace found by itself);
/// istiod restarts, fetches, pushes; the token passes. Again: nothing to do. `remove-ca`
/// undoes it.
#[test]
fn add_ca_gives_istiod_the_ca_and_remove_ca_takes_it_back() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let jwks = world.jwks().unwrap();
    let pilot = world.pod("olaf", "istio-pilot").unwrap();
    let replica = world.replica_for("olaf", &pilot.name).unwrap();
    assert_eq!(replica.restarts(), 0);
    let alice = token(&world, "alice");
    assert_eq!(status(&world, Some(&alice)), 401);
    let store = world.apiserver().store();

    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "add-ca",
            "--from-url",
            jwks.base_url(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // what it captured and what it changes, on stderr
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret/jwks-extra-cacerts (key extra.pem) in olaf: 1 certificate(s) added"),
        "{err}"
    );
    assert!(
        err.contains(
            "to add to secret/jwks-extra-cacerts (key extra.pem): CN=Olaf Private Root CA"
        ),
        "{err}"
    );
    assert!(
        err.contains("deployment.apps/istio-pilot -n olaf patched"),
        "{err}"
    );
    let secret = store
        .get("v1", "Secret", Some("olaf"), "jwks-extra-cacerts")
        .expect("the Secret in istiod's namespace");
    let pem = match secret["data"]["extra.pem"].as_str() {
        Some(b64) => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
        None => secret["stringData"]["extra.pem"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    assert!(pem.contains(jwks.ca_pem().trim()), "{pem}");
    let dep = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    let pod_spec = &dep["spec"]["template"]["spec"];
    let volume = pod_spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "jwks-extra-cacerts")
        .expect("a volume of the Secret");
    let discovery = pod_spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "discovery")
        .unwrap();
    assert!(
        discovery["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/cacerts" && m["name"] == volume["name"]),
        "{discovery}"
    );
    world
        .handle()
        .block_on(replica.wait_restarts(1, WAIT))
        .unwrap();
    wait_for_status(&world, Some(&alice), 200);
    let out = run(&pp, &world, &["jwks-trust", "check", "-A"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // again: idempotent, no write
    world.apiserver().clear_requests();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "add-ca",
            "--from-url",
            jwks.base_url(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
        "{}",
        show(&out)
    );
    assert_eq!(writes(&world), []);
    assert_eq!(replica.restarts(), 1);

    // remove-ca: mount and Secret gone, istiod restarts without the CA, the token fails again
    let out = run(&pp, &world, &["jwks-trust", "remove-ca", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        store
            .get("v1", "Secret", Some("olaf"), "jwks-extra-cacerts")
            .is_none()
    );
    let dep = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    assert!(
        !dep["spec"]["template"].to_string().contains("/cacerts"),
        "{dep}"
    );
    world
        .handle()
        .block_on(replica.wait_restarts(2, WAIT))
        .unwrap();
    wait_for_status(&world, Some(&alice), 401);
    let out = run(&pp, &world, &["jwks-trust", "check", "-A"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// Nothing half-applied: the Secret is written, then every update of istio-pilot's Deployment
/// conflicts (someone keeps changing it). add-ca gives up after one re-read, takes back the
/// Secret it created, and exits 2; the Deployment and istiod are untouched.
#[test]
fn add_ca_rolls_the_secret_back_when_the_deployment_cannot_be_updated() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let jwks = world.jwks().unwrap();
    let store = world.apiserver().store();
    let before = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    let api = world.apiserver();
    api.faults()
        .fail_method("PUT", "/namespaces/olaf/deployments/istio-pilot", 409, None);
    api.clear_requests();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "add-ca",
            "--from-url",
            jwks.base_url(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    // the Secret was really written, then emptied (a resourceVersion-checked update) and
    // deleted again
    let on_secret: Vec<(String, u16)> = writes(&world)
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        on_secret,
        [
            ("POST".to_string(), 201),
            ("PUT".to_string(), 200),
            ("DELETE".to_string(), 200)
        ],
        "created, then taken back"
    );
    assert!(
        store
            .get("v1", "Secret", Some("olaf"), "jwks-extra-cacerts")
            .is_none()
    );
    let after = store
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"], before["spec"]);
}

/// The base64 bodies of the PEM certificates in `pem`, without line breaks (comparable
/// whatever the line length the writer used).
fn pem_bodies(pem: &str) -> Vec<String> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|c| c.split("-----END CERTIFICATE-----").next())
        .map(|b| b.split_whitespace().collect())
        .collect()
}

/// The bundle of one Secret in istiod's namespace, decoded.
fn bundle(world: &World, name: &str) -> String {
    let secret = world
        .apiserver()
        .store()
        .get("v1", "Secret", Some("olaf"), name)
        .expect("the Secret");
    let b64 = secret["data"]["extra.pem"].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// `remove-ca --cert` of one of two CAs: the certificate is taken out of the Secret, then the
/// Deployment update (the restart istiod needs to drop it) keeps conflicting: the certificate
/// is put back, exit 2.
#[test]
fn remove_ca_puts_the_certificate_back_when_istiod_cannot_be_restarted() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let dir = tempfile::tempdir().unwrap();
    let olaf = world.jwks().unwrap().ca_pem().to_string();
    let other = rcgen::generate_simple_self_signed(vec!["other-ca.example".to_string()])
        .unwrap()
        .cert
        .pem();
    let both = dir.path().join("both.pem");
    std::fs::write(&both, format!("{olaf}{other}")).unwrap();
    let one = dir.path().join("other.pem");
    std::fs::write(&one, &other).unwrap();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "add-ca",
            "--cert",
            both.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let both_bodies = pem_bodies(&format!("{olaf}{other}"));
    assert_eq!(
        pem_bodies(&bundle(&world, "jwks-extra-cacerts")),
        both_bodies
    );

    let api = world.apiserver();
    api.faults()
        .fail_method("PUT", "/namespaces/olaf/deployments/istio-pilot", 409, None);
    api.clear_requests();
    let out = run(
        &pp,
        &world,
        &[
            "jwks-trust",
            "remove-ca",
            "--cert",
            one.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back"), "{err}");
    let on_secret: Vec<(String, u16)> = writes(&world)
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        on_secret,
        [("PUT".to_string(), 200), ("PUT".to_string(), 200)],
        "removed, then put back"
    );
    // both certificates again (the restored one appended last)
    assert_eq!(
        pem_bodies(&bundle(&world, "jwks-extra-cacerts")),
        both_bodies
    );
}

/// Someone else changes the policy between the plugin's read and its write: the update
/// conflicts (409), the plugin reads it again and re-applies its change once; both edits
/// survive.
#[test]
fn a_concurrent_edit_is_kept() {
    let world = World::start_blocking("seed").unwrap();
    let pp = PluginPath::install();
    let (_dir, ca) = ca_file(&world);
    let api = world.apiserver();
    let path_part = "/namespaces/olaf-customer/requestauthentications/customerjwt";
    // The plugin's GET and PUT of the policy each wait 3 s before the apiserver handles them:
    // the other edit below lands while its PUT (with the resourceVersion it read) waits.
    api.faults().latency(path_part, Duration::from_secs(3));
    api.clear_requests();
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "jwks-trust",
                "inline",
                "requestauthentication/customerjwt",
                "-n",
                NS,
                "--ca-file",
                ca.to_str().unwrap(),
                "-v",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the plugin's read to have been answered. The request log has no notification,
    // so this polls it (with a deadline).
    let deadline = Instant::now() + WAIT;
    let read = |r: &RequestRecord| r.method == "GET" && r.path.ends_with(path_part);
    while !api.requests().iter().any(|r| read(r) && r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "the plugin never read the policy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The other edit: a label and an audience.
    let mut theirs = object(&world, RA);
    theirs["metadata"]["labels"] = json!({"owner": "team-customer"});
    theirs["spec"]["jwtRules"][0]["audiences"] = json!(["customer"]);
    api.store().apply(theirs).unwrap();
    api.faults().clear();

    let stderr = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect::<Vec<_>>()
        .join("\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{stderr}", stdout(&out));
    assert!(stderr.contains("conflict"), "{stderr}");

    let on_policy: Vec<(String, u16)> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(path_part))
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        on_policy,
        [
            ("GET".to_string(), 200),
            ("PUT".to_string(), 409),
            ("GET".to_string(), 200),
            ("PUT".to_string(), 200)
        ],
        "read, conflict, read again, write"
    );
    let o = object(&world, RA);
    assert_eq!(o["metadata"]["labels"]["owner"], "team-customer", "{o}");
    let r = &o["spec"]["jwtRules"][0];
    assert_eq!(r["audiences"], json!(["customer"]), "{o}");
    assert!(r.get("jwksUri").is_none(), "{o}");
    assert_eq!(inline_kids(r), ["olaf-key-1"]);
    // requestauthentication/NAME: the legacy Policy of the same name is left alone
    assert_eq!(
        rule(&world, POLICY)["jwksUri"],
        world.jwks().unwrap().jwks_uri().as_str()
    );
}
