//! Broken meshes: each fault an operator meets, injected into the `seed` world, and what the
//! plugins must do about it — fail clearly (message, exit code), leave nothing worse.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::process::Stdio;

use meshsim::WorldOptions;
use meshsim::apiserver::PodBackend;
use meshsim::jwks_server::Mode;
use meshsim::scenario::{Down, Scenario};
use meshsim::world::World;
use serde_json::Value;

use crate::support::{PluginPath, envoy_levels, run, show, stdout};

const NS: &str = "olaf-customer";

fn seed() -> (World, PluginPath) {
    (
        World::start_blocking("seed").unwrap(),
        PluginPath::install(),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    assert!(
        !stderr(out).contains("panicked"),
        "never a panic: {}",
        show(out)
    );
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// How a stand-in admin port behaves.
#[derive(Clone, Copy)]
enum Admin {
    /// Answer every request with this status.
    Status(u16),
    /// Accept, read the request, never answer.
    Stall,
}

/// A tiny HTTP server on 127.0.0.1 standing in for a pod's Envoy admin port.
struct FakeAdmin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeAdmin {
    fn start(mode: Admin) -> FakeAdmin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let stop3 = stop2.clone();
                std::thread::spawn(move || serve(conn, mode, &stop3));
            }
        });
        FakeAdmin { addr, stop }
    }

    /// Wire the pod's admin port to this server (the pod's logs stay).
    fn wire(&self, world: &World, ns: &str, pod: &str) {
        let info = world.pod(ns, pod).unwrap();
        world.apiserver().set_pod_backend(
            ns,
            &info.name,
            PodBackend {
                ports: [(info.admin_port, self.addr)].into_iter().collect(),
                logs: info.logs.clone().into_iter().collect(),
            },
        );
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut conn: TcpStream, mode: Admin, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            match mode {
                Admin::Status(code) => {
                    let body = match code {
                        404 => "invalid path. admin commands are:\n".to_string(),
                        _ => "envoy admin: unavailable\n".to_string(),
                    };
                    let resp = format!(
                        "HTTP/1.1 {code} Meshsim\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
                Admin::Stall => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// port-forward dropped mid raw dump

/// `N` in "... lost after N bytes".
fn lost_bytes(err: &str) -> u64 {
    let after = err
        .split(" lost after ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'lost after': {err}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn port_forward_dropped_mid_raw_dump_to_stdout() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    world
        .apiserver()
        .faults()
        .drop_port_forward_after(16 * 1024, None);
    let out = run(&pp, &world, &["envoy-dump", &pod.name, "-n", NS]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("connection to pod {NS}/{} lost after ", pod.name)),
        "{}",
        show(&out)
    );
    let n = lost_bytes(&err);
    assert!(n > 0 && n < 16 * 1024, "{n}: {err}");
    assert!(
        serde_json::from_slice::<Value>(&out.stdout).is_err(),
        "what reached stdout must not look complete: {}",
        show(&out)
    );
}

#[test]
fn port_forward_dropped_mid_raw_dump_leaves_no_file() {
    let (world, pp) = seed();
    world
        .apiserver()
        .faults()
        .drop_port_forward_after(16 * 1024, None);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // one pod, then several
    let pod = world.pod(NS, "customer").unwrap();
    let out = run(
        &pp,
        &world,
        &["envoy-dump", &pod.name, "-n", NS, "--output-dir", d],
    );
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(" lost after "), "{}", show(&out));
    assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new());

    let out = run(
        &pp,
        &world,
        &[
            "envoy-dump",
            "-l",
            "app=recommendation",
            "-n",
            NS,
            "--output-dir",
            d,
        ],
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    for p in ["recommendation-v1", "recommendation-v2"] {
        let name = world.pod(NS, p).unwrap().name;
        assert!(
            err.lines()
                .any(|l| l.contains(&name) && l.contains(" lost after ")),
            "each pod's loss reported: {err}"
        );
    }
    assert_eq!(
        files_under(dir.path()),
        Vec::<PathBuf>::new(),
        "no file, no temp left"
    );
}

// ---------------------------------------------------------------------------------------------
// admin errors, dead sidecar, pod state

#[test]
fn admin_503_and_404_name_the_endpoint_and_pod() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let fake = FakeAdmin::start(Admin::Status(503));
    fake.wire(&world, NS, &pod.name);
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "clusters", &pod.name, "-n", NS],
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("/config_dump") && err.contains(&pod.name) && err.contains("503"),
        "{}",
        show(&out)
    );

    let old = FakeAdmin::start(Admin::Status(404));
    old.wire(&world, NS, &pod.name);
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "endpoints", &pod.name, "-n", NS],
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("/clusters") && err.contains(&pod.name) && err.contains("404"),
        "{}",
        show(&out)
    );
    assert!(err.contains("hint:"), "{err}");
    let out = run(&pp, &world, &["envoy-log", &pod.name, "-n", NS]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("/logging") && err.contains(&pod.name) && err.contains("404"),
        "{}",
        show(&out)
    );
}

#[test]
fn killed_sidecar_gives_the_kubelet_error() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pod.envoy_pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(pod.admin.unwrap()).is_ok() {
        assert!(Instant::now() < deadline, "Envoy did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
    for args in [
        vec!["envoy-dump", "clusters", &pod.name, "-n", NS],
        vec!["envoy-log", &pod.name, "-n", NS, "rbac=debug"],
    ] {
        let out = run(&pp, &world, &args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("error forwarding port 15000 to pod")
                && err.to_lowercase().contains("connection refused"),
            "the kubelet's words: {}",
            show(&out)
        );
        assert!(err.contains("istio-proxy container running"), "{err}");
    }
}

fn pod_object(world: &World, name: &str) -> Value {
    world
        .apiserver()
        .store()
        .get("v1", "Pod", Some(NS), name)
        .unwrap()
}

#[test]
fn pod_not_running_or_not_injected() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let store = world.apiserver().store();
    let mut obj = pod_object(&world, &pod.name);
    obj["status"]["phase"] = "Pending".into();
    store.apply(obj).unwrap();
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "clusters", &pod.name, "-n", NS],
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&pod.name) && err.contains("Pending, not Running"),
        "{}",
        show(&out)
    );
    assert!(err.contains("hint: "), "{err}");

    // a pod without a sidecar (injection was off when it started)
    let other = world.pod(NS, "preference").unwrap();
    let mut obj = pod_object(&world, &other.name);
    obj["metadata"]["name"] = "legacy-7f9d8c6b5-abcde".into();
    obj["metadata"].as_object_mut().unwrap().remove("uid");
    for key in ["containers", "initContainers"] {
        if let Some(cs) = obj["spec"][key].as_array_mut() {
            cs.retain(|c| c["name"] != "istio-proxy" && c["name"] != "istio-init");
        }
    }
    if let Some(cs) = obj["status"]["containerStatuses"].as_array_mut() {
        cs.retain(|c| c["name"] != "istio-proxy");
    }
    store.apply(obj).unwrap();
    for args in [
        vec!["envoy-dump", "clusters", "legacy-7f9d8c6b5-abcde", "-n", NS],
        vec!["envoy-log", "legacy-7f9d8c6b5-abcde", "-n", NS],
    ] {
        let out = run(&pp, &world, &args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("has no istio-proxy container") && err.contains("injection"),
            "{}",
            show(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// apiserver errors

#[test]
fn apiserver_401_asks_to_log_in_again() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let token = world.apiserver().token();
    let text = std::fs::read_to_string(world.kubeconfig()).unwrap();
    assert!(text.contains(&token));
    let kc = world.temp_dir().join("expired-kubeconfig");
    std::fs::write(&kc, text.replace(&token, "expired-token")).unwrap();
    let out = pp
        .kubectl(Some(&kc), &["envoy-dump", "clusters", &pod.name, "-n", NS])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("Unauthorized") || err.contains("401"), "{err}");
    assert!(err.contains("log in again"), "{err}");
    assert!(
        !err.contains("expired-token"),
        "no token in messages: {err}"
    );
}

#[test]
fn apiserver_403_names_verb_and_resource() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let faults = world.apiserver().faults();
    faults.deny("get", "pods");
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "clusters", &pod.name, "-n", NS],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("'get' on pods in namespace {NS}")),
        "{}",
        show(&out)
    );
    faults.clear();
    faults.deny("create", "pods/portforward");
    let out = run(
        &pp,
        &world,
        &["envoy-dump", "clusters", &pod.name, "-n", NS],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("'create' on pods/portforward in namespace {NS}")),
        "{}",
        show(&out)
    );
}

#[test]
fn apiserver_429_and_5xx_are_retried_with_backoff() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let faults = world.apiserver().faults();
    let path = format!("/namespaces/{NS}/pods/{}", pod.name);
    for code in [429, 500, 503] {
        faults.clear();
        faults.fail(&path, code, Some(2));
        let out = run(
            &pp,
            &world,
            &["envoy-dump", "clusters", &pod.name, "-n", NS],
        );
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("SERVICE FQDN"), "{}", show(&out));
    }
    // always failing: three retries (250 ms, 500 ms, 1 s), then a clear error
    for code in [429, 500] {
        faults.clear();
        world.apiserver().clear_requests();
        faults.fail(&path, code, None);
        let started = Instant::now();
        let out = run(
            &pp,
            &world,
            &["envoy-dump", "clusters", &pod.name, "-n", NS],
        );
        let took = started.elapsed();
        assert_exit(&out, 2);
        assert!(took >= Duration::from_millis(1700), "backoff: {took:?}");
        assert!(took < Duration::from_secs(15), "bounded: {took:?}");
        let tries = world
            .apiserver()
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&path) && r.method == "GET")
            .count();
        assert_eq!(tries, 4, "1 try + 3 retries");
        let err = stderr(&out);
        assert!(err.contains(&format!("get pod {NS}/{}", pod.name)), "{err}");
        assert!(err.contains("retry in a moment"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// timeouts and bad files

#[test]
fn request_timeout_on_a_stalled_admin() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let fake = FakeAdmin::start(Admin::Stall);
    fake.wire(&world, NS, &pod.name);
    for args in [
        vec![
            "envoy-dump",
            "clusters",
            &pod.name,
            "-n",
            NS,
            "--request-timeout",
            "1s",
        ],
        vec!["envoy-dump", &pod.name, "-n", NS, "--request-timeout", "1s"],
        vec!["envoy-log", &pod.name, "-n", NS, "--request-timeout", "1s"],
    ] {
        let started = Instant::now();
        let out = run(&pp, &world, &args);
        let took = started.elapsed();
        assert_exit(&out, 2);
        assert!(took < Duration::from_secs(5), "{took:?}: {}", show(&out));
        let err = stderr(&out);
        assert!(err.contains("timed out after 1s"), "{}", show(&out));
        assert!(err.contains(&pod.name), "{err}");
    }
}

#[test]
fn malformed_or_truncated_files_give_the_byte_offset() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let out = run(&pp, &world, &["envoy-dump", &pod.name, "-n", NS]);
    assert_exit(&out, 0);
    let dump = out.stdout;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let half = write("half.json", &dump[..dump.len() / 2]);
    let cut = write("cut.json", &dump[..dump.len() - 3]);
    // a key's ':' a third of the way in becomes '}' (a byte inside a string would stay valid)
    let mut garbled = dump.clone();
    let at = dump.len() / 3
        + dump[dump.len() / 3..]
            .windows(2)
            .position(|w| w == b"\":")
            .expect("a key after the first third")
        + 1;
    garbled[at] = b'}';
    let garbled = write("garbled.json", &garbled);
    let empty = write("empty.json", b"");
    let binary = write("binary.json", &[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00]);
    for f in [&half, &cut, &garbled, &empty, &binary] {
        for view in [None, Some("clusters"), Some("listeners"), Some("all")] {
            let mut args = vec!["envoy-dump"];
            args.extend(view);
            args.extend(["-f", f.as_str()]);
            let out = run(&pp, &world, &args);
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(
                err.contains(f.as_str()) && err.contains(", byte "),
                "names the file and the byte offset: {}",
                show(&out)
            );
        }
    }
    // wrong shape, right syntax: an error, not a panic
    let shape = write("shape.json", br#"{"configs": 5}"#);
    let out = run(&pp, &world, &["envoy-dump", "clusters", "-f", &shape]);
    assert_exit(&out, 2);

    // syncz
    let syncz = br#"[{"cluster_id":"Kubernetes","proxy":"customer-6f8c9d7b5-x2x7k.olaf-customer","istio_version":"1.4.8","cluster_sent":"a","cluster_acked":"a"}]"#;
    let good = write("istiod-a.json", syncz);
    let out = run(&pp, &world, &["mesh-sync", "-f", &good]);
    assert_exit(&out, 0);
    let bad = write("istiod-b.json", &syncz[..syncz.len() - 10]);
    let out = run(&pp, &world, &["mesh-sync", "-f", &bad]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(bad.as_str()) && err.contains(", byte "),
        "{}",
        show(&out)
    );
    let bin = write("istiod-c.json", &[0xff, 0x00, 0x12]);
    let out = run(&pp, &world, &["mesh-sync", "-f", &bin]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(", byte "), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// the control plane

/// The seed world with two istiod (istio-pilot) replicas, the second down.
fn seed_with_a_down_istiod() -> (World, PluginPath, String) {
    let mut s = Scenario::load("seed").unwrap();
    let pilot = s
        .workloads
        .iter_mut()
        .find(|w| w.name == "istio-pilot")
        .unwrap();
    pilot.replicas = 2;
    let down = "istio-pilot-7d8f6b9c5d-zz8qm".to_string();
    pilot.pods = vec!["istio-pilot-7d8f6b9c5d-9xk2p".into(), down.clone()];
    pilot.down = Down::Replicas(vec![1]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let world = rt
        .block_on(World::start_with(s, WorldOptions::default()))
        .unwrap();
    (world, PluginPath::install(), down)
}

#[test]
fn one_istiod_replica_down() {
    let (world, pp, down) = seed_with_a_down_istiod();
    let out = run(&pp, &world, &["mesh-sync"]);
    assert_exit(&out, 2);
    let text = stdout(&out);
    for p in [
        "customer",
        "preference",
        "recommendation-v1",
        "recommendation-v2",
    ] {
        let name = world.pod(NS, p).unwrap().name;
        assert!(text.contains(&name), "{name} shown: {}", show(&out));
    }
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains(&down)),
        "the down replica is named: {}",
        show(&out)
    );

    let out = run(&pp, &world, &["envoy-log", "--istiod"]);
    assert_exit(&out, 2);
    assert!(
        stdout(&out).contains("istio-pilot-7d8f6b9c5d-9xk2p"),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains(&down), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// 409 conflicts on writes

const RA: (&str, &str) = ("security.istio.io/v1beta1", "RequestAuthentication");

fn policy(world: &World) -> Value {
    world
        .apiserver()
        .store()
        .get(RA.0, RA.1, Some(NS), "customerjwt")
        .unwrap()
}

/// Someone else changes the object (a label), so a write carrying the old resourceVersion
/// conflicts.
fn bump(world: &World, api_version: &str, kind: &str, ns: &str, name: &str, n: usize) {
    let store = world.apiserver().store();
    let mut obj = store.get(api_version, kind, Some(ns), name).unwrap();
    obj["metadata"]["labels"]["meshsim/bumped"] = n.to_string().into();
    store.apply(obj).unwrap();
}

fn ca_file(world: &World) -> PathBuf {
    let p = world.temp_dir().join("olaf-root-ca.pem");
    std::fs::write(&p, world.jwks().unwrap().ca_pem()).unwrap();
    p
}

/// Runs `args` while a thread changes the object under the plugin: after each of its reads
/// until one real write has conflicted (`always: false`: so the re-read and re-applied write
/// goes through), or all the time (`always: true`). Every request to the object is delayed, so
/// that each write arrives after the change.
fn run_with_concurrent_writer(
    world: &World,
    pp: &PluginPath,
    args: &[&str],
    what: (&str, &str, &str, &str, &str),
    always: bool,
) -> Output {
    let (api_version, kind, ns, name, path) = (what.0, what.1, what.2, what.3, what.4);
    world.apiserver().clear_requests();
    world
        .apiserver()
        .faults()
        .latency(path, Duration::from_millis(600));
    let done = Arc::new(AtomicBool::new(false));
    let out = std::thread::scope(|sc| {
        let d = done.clone();
        sc.spawn(move || {
            let (mut bumps, mut reads_seen) = (0, 0);
            while !d.load(Ordering::SeqCst) {
                let log: Vec<_> = world
                    .apiserver()
                    .requests()
                    .into_iter()
                    .filter(|r| r.path.ends_with(path))
                    .collect();
                let reads = log
                    .iter()
                    .filter(|r| r.method == "GET" && r.status == 200)
                    .count();
                let conflicted = log
                    .iter()
                    .any(|r| r.method == "PUT" && !r.is_dry_run() && r.status == 409);
                if (always && reads > 0) || (!conflicted && reads > reads_seen) {
                    bumps += 1;
                    bump(world, api_version, kind, ns, name, bumps);
                }
                reads_seen = reads;
                std::thread::sleep(Duration::from_millis(if always { 100 } else { 10 }));
            }
        });
        let out = run(pp, world, args);
        done.store(true, Ordering::SeqCst);
        out
    });
    world.apiserver().faults().clear();
    out
}

/// Real (not dry-run) updates of the object at `path`.
fn puts(world: &World, path: &str) -> usize {
    world
        .apiserver()
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && !r.is_dry_run() && r.path.ends_with(path))
        .count()
}

#[test]
fn conflict_on_a_policy_write_is_reread_and_reapplied_once() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let path = format!("/namespaces/{NS}/requestauthentications/customerjwt");
    let what = (RA.0, RA.1, NS, "customerjwt", path.as_str());
    let args = [
        "jwks-trust",
        "inline",
        "customerjwt",
        "-n",
        NS,
        "--ca-file",
        ca.to_str().unwrap(),
    ];

    // changed once under us: re-read, re-applied, both changes kept
    let out = run_with_concurrent_writer(&world, &pp, &args, what, false);
    assert_exit(&out, 0);
    assert_eq!(puts(&world, &path), 2, "{}", show(&out));
    let p = policy(&world);
    assert!(p["metadata"]["labels"]["meshsim/bumped"].is_string(), "{p}");
    let rule = &p["spec"]["jwtRules"][0];
    assert!(rule["jwks"].is_string(), "inlined: {p}");
    assert!(rule.get("jwksUri").is_none(), "{p}");
}

#[test]
fn persistent_conflict_on_a_policy_write_is_a_clear_error_and_no_write() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let before = policy(&world);
    let path = format!("/namespaces/{NS}/requestauthentications/customerjwt");
    let what = (RA.0, RA.1, NS, "customerjwt", path.as_str());
    let args = [
        "jwks-trust",
        "inline",
        "customerjwt",
        "-n",
        NS,
        "--ca-file",
        ca.to_str().unwrap(),
    ];
    let out = run_with_concurrent_writer(&world, &pp, &args, what, true);
    assert_exit(&out, 2);
    assert_eq!(puts(&world, &path), 2, "one re-apply only: {}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("customerjwt") && err.to_lowercase().contains("conflict"),
        "{}",
        show(&out)
    );
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(
        policy(&world)["spec"],
        before["spec"],
        "never a partial write"
    );
}

#[test]
fn conflict_on_a_deployment_write_is_reread_and_reapplied_once() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let path = "/namespaces/olaf/deployments/istio-pilot";
    let what = ("apps/v1", "Deployment", "olaf", "istio-pilot", path);
    let args = [
        "jwks-trust",
        "add-ca",
        "--cert",
        ca.to_str().unwrap(),
        "-y",
        "-n",
        NS,
    ];
    let out = run_with_concurrent_writer(&world, &pp, &args, what, false);
    assert_exit(&out, 0);
    assert_eq!(puts(&world, path), 2, "{}", show(&out));
    let d = world
        .apiserver()
        .store()
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    assert!(d["metadata"]["labels"]["meshsim/bumped"].is_string(), "{d}");
    assert!(
        d["spec"]["template"]["spec"]["volumes"]
            .to_string()
            .contains("jwks-extra-cacerts"),
        "{d}"
    );
}

#[test]
fn persistent_conflict_on_a_deployment_write_is_a_clear_error() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let path = "/namespaces/olaf/deployments/istio-pilot";
    let what = ("apps/v1", "Deployment", "olaf", "istio-pilot", path);
    let before = world
        .apiserver()
        .store()
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    let args = [
        "jwks-trust",
        "add-ca",
        "--cert",
        ca.to_str().unwrap(),
        "-y",
        "-n",
        NS,
    ];
    let out = run_with_concurrent_writer(&world, &pp, &args, what, true);
    assert_exit(&out, 2);
    assert_eq!(puts(&world, path), 2, "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("istio-pilot") && err.to_lowercase().contains("conflict"),
        "{}",
        show(&out)
    );
    assert!(err.contains("hint:"), "{err}");
    let after = world
        .apiserver()
        .store()
        .get("apps/v1", "Deployment", Some("olaf"), "istio-pilot")
        .unwrap();
    assert_eq!(after["spec"], before["spec"], "never a partial write");
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C

/// Direct children of a pid (from /proc).
fn child_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Ctrl-C as a terminal sends it: to kubectl and the plugin it runs.
fn interrupt(child: &std::process::Child) {
    for pid in child_pids(child.id()).into_iter().chain([child.id()]) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
}

/// Reads a child's stderr on a thread; `wait_for` blocks until a line containing the text.
struct Lines {
    seen: Arc<std::sync::Mutex<String>>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(r);
            loop {
                let mut line = String::new();
                match std::io::BufRead::read_line(&mut r, &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => s.lock().unwrap().push_str(&line),
                }
            }
        });
        Lines { seen }
    }

    fn text(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} within {timeout:?}: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn ctrl_c_during_for_restores_every_changed_logger() {
    let (world, pp) = seed();
    let pods: Vec<_> = [
        "customer",
        "preference",
        "recommendation-v1",
        "recommendation-v2",
    ]
    .iter()
    .map(|p| world.pod(NS, p).unwrap())
    .collect();
    let before: Vec<_> = pods
        .iter()
        .map(|p| envoy_levels(p.admin.unwrap()))
        .collect();
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "envoy-log",
                "-n",
                NS,
                "-l",
                "app in (customer,preference,recommendation)",
                "rbac=debug",
                "jwt=trace",
                "http=debug",
                "--for",
                "5m",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Lines::new(child.stderr.take().unwrap());
    err.wait_for("restoring in", Duration::from_secs(30));
    for p in &pods {
        let l = envoy_levels(p.admin.unwrap());
        assert_eq!(
            (l["rbac"].as_str(), l["jwt"].as_str()),
            ("debug", "trace"),
            "{}",
            p.name
        );
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for (p, b) in pods.iter().zip(&before) {
        assert_eq!(
            &envoy_levels(p.admin.unwrap()),
            b,
            "{} restored; stderr: {}",
            p.name,
            err.text()
        );
        assert!(
            err.text().contains(&format!("on {NS}/{}", p.name)),
            "{}",
            err.text()
        );
    }
    assert_eq!(status.code(), Some(130), "{}", err.text());
}

/// A TCP proxy to a real Envoy admin port that holds each `POST /logging?...` (a change) for
/// `delay` before passing it on, and says when one arrived.
struct SlowChanges {
    addr: SocketAddr,
    seen: Arc<AtomicBool>,
}

impl SlowChanges {
    fn start(upstream: SocketAddr, delay: Duration) -> SlowChanges {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(AtomicBool::new(false));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut client) = conn else { return };
                let Ok(mut up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let seen = seen2.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = up.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            Ok(n) => n,
                        };
                        if buf[..n].windows(14).any(|w| w == b"POST /logging?") {
                            seen.store(true, Ordering::SeqCst);
                            std::thread::sleep(delay);
                        }
                        if up.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowChanges { addr, seen }
    }
}

#[test]
fn ctrl_c_during_a_multi_pod_apply_lists_what_changed() {
    let (world, pp) = seed();
    let pods: Vec<_> = [
        "customer",
        "preference",
        "recommendation-v1",
        "recommendation-v2",
    ]
    .iter()
    .map(|p| world.pod(NS, p).unwrap())
    .collect();
    let before: Vec<_> = pods
        .iter()
        .map(|p| envoy_levels(p.admin.unwrap()))
        .collect();
    // the second pod (by name) takes its time to apply
    let slow = SlowChanges::start(pods[1].admin.unwrap(), Duration::from_secs(3));
    world.apiserver().set_pod_backend(
        NS,
        &pods[1].name,
        PodBackend {
            ports: [(15000, slow.addr)].into_iter().collect(),
            logs: pods[1].logs.clone().into_iter().collect(),
        },
    );
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "envoy-log",
                "-n",
                NS,
                "-l",
                "app in (customer,preference,recommendation)",
                "rbac=debug",
                "--max-concurrency",
                "1",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let err = Lines::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slow.seen.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{}", err.text());
        std::thread::sleep(Duration::from_millis(10));
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (out, err) = (out.text(), err.text());
    let all = format!("--- stdout\n{out}\n--- stderr\n{err}");
    assert_eq!(status.code(), Some(130), "{all}");
    // the first pod was changed, the one in flight finished, the rest were not started
    let changed: Vec<bool> = pods
        .iter()
        .zip(&before)
        .map(|(p, b)| {
            let now = envoy_levels(p.admin.unwrap());
            if &now == b {
                false
            } else {
                let mut want = b.clone();
                want.insert("rbac".into(), "debug".into());
                assert_eq!(now, want, "{} changed exactly as asked: {all}", p.name);
                true
            }
        })
        .collect();
    assert_eq!(changed, [true, true, false, false], "{all}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("interrupted: changed:"))
        .unwrap_or_else(|| panic!("a summary line: {all}"));
    let (yes, no) = summary
        .split_once("not changed")
        .unwrap_or_else(|| panic!("{summary}"));
    for (p, c) in pods.iter().zip(&changed) {
        let part = if *c { yes } else { no };
        assert!(part.contains(&p.name), "{}: {summary}", p.name);
    }
    for p in &pods {
        assert!(
            out.lines().any(|l| l.contains(&p.name)),
            "every pod in the result table: {all}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JWKS server faults

#[test]
fn jwks_server_faults_are_named() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let ca = ca.to_str().unwrap();
    let jwks = world.jwks().unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "jwks-trust",
            "check",
            "-n",
            NS,
            "--no-proxies",
            "--ca-file",
            ca,
        ];
        args.extend(extra);
        run(&pp, &world, &args)
    };
    // istiod itself cannot fetch (its trust lacks the CA): exit 1, but the keys are OK for us
    let out = check(&[]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("OK "), "{}", show(&out));
    for (mode, status) in [
        (Mode::Slow(Duration::from_secs(20)), "TIMEOUT"),
        (Mode::Huge, "TOO LARGE"),
        (Mode::RedirectLoop, "TOO MANY REDIRECTS"),
        (Mode::NotJson, "NOT A JWKS"),
    ] {
        jwks.set_mode(mode);
        let started = Instant::now();
        let out = check(&["--fetch-timeout", "1s"]);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{}",
            show(&out)
        );
        assert_exit(&out, 1);
        let text = stdout(&out);
        assert!(
            text.lines()
                .filter(|l| l.contains("customerjwt"))
                .all(|l| l.contains(status)),
            "{status}: {}",
            show(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// secrets, tokens, terminal escapes

#[test]
fn no_secret_data_private_key_or_token_even_at_vvv() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let token = world.apiserver().token();
    // an existing bundle Secret that also holds a private key
    let key_pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmeshsimsecretkey\n-----END PRIVATE KEY-----\n";
    let old_ca = world.apiserver().ca_pem();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    world
        .apiserver()
        .store()
        .apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "jwks-extra-cacerts", "namespace": "olaf"},
            "type": "Opaque",
            "data": {"extra.pem": b64(&old_ca), "tls.key": b64(key_pem)},
        }))
        .unwrap();
    let pod = world.pod(NS, "customer").unwrap();
    let runs = [
        vec![
            "jwks-trust",
            "add-ca",
            "--cert",
            ca.to_str().unwrap(),
            "-y",
            "-n",
            NS,
            "-vvv",
        ],
        vec!["jwks-trust", "check", "-n", NS, "-vvv"],
        vec!["envoy-dump", "secrets", &pod.name, "-n", NS, "-vvv"],
        vec!["envoy-log", &pod.name, "-n", NS, "-vvv"],
        vec!["mesh-sync", "-vvv"],
    ];
    for args in runs {
        let out = run(&pp, &world, &args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            show(&out)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stderr(&out).contains("TRACE") || stderr(&out).contains("DEBUG"),
            "-vvv logs: {args:?}: {}",
            show(&out)
        );
        for (what, needle) in [
            ("the bearer token", token.as_str()),
            ("a private key", "PRIVATE KEY"),
            ("the key's Secret data", &b64(key_pem)),
            ("the bundle's Secret data", &b64(&old_ca)[..40]),
            ("the key's base64", "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS"),
        ] {
            assert!(!all.contains(needle), "{args:?} printed {what}:\n{all}");
        }
    }
}

fn no_control_chars(out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| (*b < 0x20 && *b != b'\n' && *b != b'\t') || *b == 0x7f)
            .collect();
        assert!(
            bad.is_empty(),
            "{name} has control bytes {bad:?}: {}",
            show(out)
        );
    }
}

#[test]
fn control_characters_from_the_cluster_never_reach_the_terminal() {
    let (world, pp) = seed();
    let ca = ca_file(&world);
    let jwks = world.jwks().unwrap();
    let evil = "https://evil\u{1b}[31m.example/\u{7}realm\u{1b}]0;pwned\u{7}";
    world
        .apiserver()
        .store()
        .apply(serde_json::json!({
            "apiVersion": RA.0, "kind": RA.1,
            "metadata": {"name": "evil\u{1b}[2J", "namespace": NS,
                         "annotations": {"note": "\u{1b}[31mred"}},
            "spec": {
                "selector": {"matchLabels": {"app": "preference"}},
                "jwtRules": [{"issuer": evil, "jwksUri": jwks.jwks_uri()}],
            },
        }))
        .unwrap();
    for extra in [&[][..], &["-o", "wide"][..], &["-o", "json"][..]] {
        let mut args = vec![
            "jwks-trust",
            "check",
            "-n",
            NS,
            "--ca-file",
            ca.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = run(&pp, &world, &args);
        assert!(matches!(out.status.code(), Some(0..=2)), "{}", show(&out));
        assert!(stdout(&out).contains("evil"), "{}", show(&out));
        no_control_chars(&out);
    }
    // a sidecar log line
    let pod = world.pod(NS, "customer").unwrap();
    let mut child = pp
        .kubectl(
            Some(world.kubeconfig()),
            &[
                "envoy-log",
                &pod.name,
                "-n",
                NS,
                "rbac=debug",
                "--follow",
                "--for",
                "30s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let err = Lines::new(child.stderr.take().unwrap());
    err.wait_for("following", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.text().contains("meshsim-marker") {
        assert!(Instant::now() < deadline, "{}", err.text());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pod.log_path.as_ref().unwrap())
            .unwrap();
        writeln!(
            f,
            "2026-01-01T00:00:00.000000Z\tinfo\tenvoy misc\tmeshsim-marker \u{1b}[31mred\u{1b}[0m \u{7}bell\u{1b}]0;title\u{7}"
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let o = Output {
        status,
        stdout: out.text().into_bytes(),
        stderr: err.text().into_bytes(),
    };
    no_control_chars(&o);
}

#[test]
fn ctrl_c_while_reading_changes_nothing_and_during_a_timed_apply_restores() {
    let (world, pp) = seed();
    let pods: Vec<_> = [
        "customer",
        "preference",
        "recommendation-v1",
        "recommendation-v2",
    ]
    .iter()
    .map(|p| world.pod(NS, p).unwrap())
    .collect();
    let before: Vec<_> = pods
        .iter()
        .map(|p| envoy_levels(p.admin.unwrap()))
        .collect();
    let args = [
        "envoy-log",
        "-n",
        NS,
        "-l",
        "app in (customer,preference,recommendation)",
        "rbac=debug",
        "--max-concurrency",
        "1",
        "--for",
        "5m",
    ];
    let spawn = || {
        pp.kubectl(Some(world.kubeconfig()), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // 1. while the loggers are being read (a slow port-forward): nothing is changed
    world
        .apiserver()
        .faults()
        .latency("/portforward", Duration::from_secs(2));
    let mut child = spawn();
    let err = Lines::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !world
        .apiserver()
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/portforward"))
    {
        assert!(Instant::now() < deadline, "{}", err.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(status.code(), Some(130), "{}", err.text());
    assert!(err.text().contains("nothing was changed"), "{}", err.text());
    for (p, b) in pods.iter().zip(&before) {
        assert_eq!(&envoy_levels(p.admin.unwrap()), b, "{}", p.name);
    }
    world.apiserver().faults().clear();

    // 2. during the change, with --for: what was changed is restored at once
    let slow = SlowChanges::start(pods[1].admin.unwrap(), Duration::from_secs(2));
    world.apiserver().set_pod_backend(
        NS,
        &pods[1].name,
        PodBackend {
            ports: [(15000, slow.addr)].into_iter().collect(),
            logs: pods[1].logs.clone().into_iter().collect(),
        },
    );
    let mut child = spawn();
    let err = Lines::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slow.seen.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{}", err.text());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(envoy_levels(pods[0].admin.unwrap())["rbac"], "debug");
    interrupt(&child);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let text = err.text();
    assert_eq!(status.code(), Some(130), "{text}");
    for (p, b) in pods.iter().zip(&before) {
        assert_eq!(&envoy_levels(p.admin.unwrap()), b, "{}: {text}", p.name);
    }
    for p in &pods[..2] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("restored rbac=") && l.contains(&p.name)),
            "{}: {text}",
            p.name
        );
    }
    assert!(!text.contains("restoring in"), "no wait: {text}");
}
