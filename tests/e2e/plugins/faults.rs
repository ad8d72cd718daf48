//! Broken meshes: each fault an operator meets, injected into the `seed` world, and what the
//! plugins must do about it — fail clearly (message, exit code), leave nothing worse.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshsim::apiserver::PodBackend;
use meshsim::world::World;
use serde_json::Value;

use crate::support::{PluginPath, run, show, stdout};

const NS: &str = "olaf-customer";

fn seed() -> (World, PluginPath) {
    (World::start_blocking("seed").unwrap(), PluginPath::install())
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
        &["envoy-dump", "-l", "app=recommendation", "-n", NS, "--output-dir", d],
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
    let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("/config_dump") && err.contains(&pod.name) && err.contains("503"),
        "{}",
        show(&out)
    );

    let old = FakeAdmin::start(Admin::Status(404));
    old.wire(&world, NS, &pod.name);
    let out = run(&pp, &world, &["envoy-dump", "endpoints", &pod.name, "-n", NS]);
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
                && err.contains("connection refused"),
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
    let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}", pod.name)) && err.contains("Pending, not Running"),
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
    assert!(!err.contains("expired-token"), "no token in messages: {err}");
}

#[test]
fn apiserver_403_names_verb_and_resource() {
    let (world, pp) = seed();
    let pod = world.pod(NS, "customer").unwrap();
    let faults = world.apiserver().faults();
    faults.deny("get", "pods");
    let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("'get' on pods in namespace {NS}")),
        "{}",
        show(&out)
    );
    faults.clear();
    faults.deny("create", "pods/portforward");
    let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
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
        let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("SERVICE FQDN"), "{}", show(&out));
    }
    // always failing: three retries (250 ms, 500 ms, 1 s), then a clear error
    for code in [429, 500] {
        faults.clear();
        world.apiserver().clear_requests();
        faults.fail(&path, code, None);
        let started = Instant::now();
        let out = run(&pp, &world, &["envoy-dump", "clusters", &pod.name, "-n", NS]);
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
    let mut garbled = dump.clone();
    let at = dump.len() / 3;
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
