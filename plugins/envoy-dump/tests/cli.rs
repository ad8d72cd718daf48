//! CLI contract of `kubectl envoy-dump`: help, usage errors and exit codes, every view on saved
//! files (istioctl's fixtures beside the repository and our captures of the real Envoy), the
//! json/yaml envelope, and `--admin-url` against a real Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// istioctl's fixtures: the folder `shared` beside the repository.
fn istio(rel: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/istio");
    assert!(
        base.is_dir(),
        "istioctl fixtures not found at {}: the folder `shared` must sit beside the repository",
        base.display()
    );
    base.join(rel)
}

/// Our captures from the real Envoy (see their README).
fn capture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/tests/fixtures/envoy-dump")
        .join(rel)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run the plugin hermetically: no KUBECONFIG, NO_COLOR or RUST_LOG from the caller, HOME in a
/// temporary directory.
fn run(args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_kubectl-envoy-dump"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run_ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    r
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

mod help {
    use super::*;

    #[test]
    fn help_lists_views_and_exit_codes() {
        let r = run_ok(&["--help"]);
        for view in [
            "clusters",
            "listeners",
            "routes",
            "endpoints",
            "secrets",
            "bootstrap",
            "all",
            "jwt",
            "rbac",
            "stats",
            "dashboard",
            "diff",
        ] {
            assert!(r.stdout.contains(&format!("\n  {view} ")), "{view}: {r:?}");
        }
        assert!(r.stdout.contains("Exit codes:"), "{r:?}");
        assert!(r.stdout.contains("130  interrupted"), "{r:?}");
        assert!(r.stdout.contains("Usage: kubectl envoy-dump"), "{r:?}");
        assert!(r.stderr.is_empty());
    }

    #[test]
    fn view_help_lists_its_filters() {
        let r = run_ok(&["endpoints", "--help"]);
        for flag in [
            "--cluster",
            "--address",
            "--port",
            "--status",
            "--admin-url",
            "-f, --file",
        ] {
            assert!(r.stdout.contains(flag), "{flag}: {r:?}");
        }
    }

    #[test]
    fn version() {
        let r = run_ok(&["--version"]);
        assert!(r.stdout.starts_with("kubectl-envoy-dump "), "{r:?}");
    }
}

mod usage {
    use super::*;

    fn usage_error(args: &[&str], needle: &str) {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
        assert!(
            r.stderr.contains(needle),
            "{args:?}: want {needle:?}: {r:?}"
        );
    }

    #[test]
    fn bad_flags_and_values_exit_2() {
        usage_error(&["clusters", "--bogus"], "unexpected argument '--bogus'");
        usage_error(&["clusters", "-o", "xml"], "invalid value 'xml'");
        usage_error(&["clusters", "--port", "x"], "invalid value 'x'");
        usage_error(&["dashboard", "--port", "70000"], "invalid value '70000'");
        usage_error(&["-n", "a", "-A", "p"], "cannot be used with");
        usage_error(&["clusters", "p", "--include-eds"], "unexpected argument");
    }

    #[test]
    fn sources_exit_2() {
        usage_error(&["routes"], "error: no pod given");
        let f = istio("current/pc-routes/empty-gateway/configdump.json");
        let f = f.to_str().unwrap();
        usage_error(&["routes", "pod-1", "-f", f], "give one source");
        usage_error(
            &["routes", "-f", f, "--admin-url", "http://127.0.0.1:1"],
            "give one source",
        );
        usage_error(&["dashboard", "-f", f], "dashboard needs a running proxy");
        usage_error(
            &["-f", f, "--output-dir", "x"],
            "--output-dir writes one file per pod",
        );
        usage_error(
            &["stats", "-f", f, "--filter", "("],
            "invalid regular expression",
        );
    }

    #[test]
    fn unreachable_admin_url_exits_2_with_a_hint() {
        let r = run(&["clusters", "--admin-url", "http://127.0.0.1:1"]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stderr
                .contains("cannot connect to Envoy admin at http://127.0.0.1:1"),
            "{r:?}"
        );
        assert!(r.stderr.contains("hint:"), "{r:?}");
        let r = run(&["clusters", "--admin-url", "https://x"]);
        assert_eq!(r.code, 2, "{r:?}");
    }
}

mod files {
    use super::*;

    #[test]
    fn truncated_file_exits_2_with_the_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::read(capture("config_dump.json")).unwrap();
        let cut = dir.path().join("cut.json");
        std::fs::write(&cut, &full[..5000]).unwrap();
        for view in ["clusters", "listeners", "jwt", "all"] {
            let r = run(&[view, "-f", cut.to_str().unwrap()]);
            assert_eq!(r.code, 2, "{r:?}");
            assert!(r.stderr.contains("byte 4999"), "{view}: {r:?}");
            assert!(!r.stderr.contains("panicked"), "{r:?}");
        }
        let r = run(&["-f", cut.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("byte 4999"), "{r:?}");
    }

    #[test]
    fn malformed_sections_exit_2_with_the_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        let text = r#"{"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": {"a": 1}}]}"#;
        std::fs::write(&bad, text).unwrap();
        let r = run(&["clusters", "-f", bad.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{r:?}");
        // serde stops at the value of the wrong type: the byte offset points there.
        let value = text.find("{\"a\": 1}").unwrap();
        assert!(
            r.stderr
                .contains("type.googleapis.com/envoy.admin.v3.ClustersConfigDump is not valid"),
            "{r:?}"
        );
        let at: usize = r
            .stderr
            .split("byte ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (value - 1..value + 8).contains(&at),
            "byte {at} is not at the value ({value}): {r:?}"
        );
        std::fs::write(&bad, b"\xff\xfe").unwrap();
        let r = run(&["routes", "-f", bad.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("byte 0"), "{r:?}");
        std::fs::write(&bad, b"[]").unwrap();
        let r = run(&["endpoints", "-f", bad.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{r:?}");
    }

    #[test]
    fn stdin_is_a_file() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-envoy-dump"))
            .args(["routes", "-f", "-"])
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let text = std::fs::read(istio("current/pc-routes/empty-gateway/configdump.json")).unwrap();
        child.stdin.take().unwrap().write_all(&text).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("/healthz/ready*"));
    }

    #[test]
    fn clusters_routes_secrets_endpoints_like_istioctl() {
        let f = istio("legacy-2020/pc-configdump/configdump.json");
        let r = run_ok(&[
            "clusters",
            "-f",
            f.to_str().unwrap(),
            "--fqdn",
            "istio-policy",
        ]);
        insta::assert_snapshot!(r.stdout, @r"
        SERVICE FQDN                                  PORT    SUBSET   DIRECTION   TYPE   DESTINATION RULE
        istio-policy.istio-system.svc.cluster.local   15004   -        outbound    EDS
        ");
        let f = istio("current/pc-routes/k8s-gateway-http-route-path-prefix/configdump.json");
        let r = run_ok(&["routes", "-f", f.to_str().unwrap(), "--name", "http.80"]);
        insta::assert_snapshot!(r.stdout, @r"
        NAME      VHOST NAME               DOMAINS               MATCH             VIRTUAL SERVICE
        http.80   httpbin.example.com:80   httpbin.example.com   PathPrefix:/get   http-0-istio-autogenerated-k8s-gateway.default
        ");
        let f = istio("current/pc-secret/istio/config_dump.json");
        let r = run_ok(&["secrets", "-f", f.to_str().unwrap()]);
        assert!(r.stdout.starts_with("RESOURCE NAME"), "{r:?}");
        assert!(
            r.stdout.contains("0193a543fe2b0d9cd4847675394dfc54"),
            "{r:?}"
        );
        let f = istio("legacy-2020/pc-endpoint-clusters/clusters.json");
        let r = run_ok(&[
            "endpoints",
            "-f",
            f.to_str().unwrap(),
            "--status",
            "unhealthy",
        ]);
        insta::assert_snapshot!(r.stdout, @r"
        ENDPOINT            STATUS      OUTLIER CHECK   CLUSTER
        172.17.0.14:15014   UNHEALTHY   OK              outbound|15014||istio-policy.istio-system.svc.cluster.local
        ");
    }

    #[test]
    fn legacy_v2alpha_dump_every_view() {
        let f = istio(
            "legacy-istio1.3-1.4-real-dumps/productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
        );
        let f = f.to_str().unwrap();
        let r = run_ok(&[
            "listeners",
            "-f",
            f,
            "--port",
            "9080",
            "--address",
            "172.30.144.174",
        ]);
        insta::assert_snapshot!(r.stdout, @r"
        ADDRESSES        PORT   MATCH   DESTINATION
        172.30.144.174   9080   ALL     Cluster: inbound|9080|http|productpage.default.svc.cluster.local
        ");
        let r = run_ok(&["bootstrap", "-f", f]);
        assert!(
            r.stdout.contains(
                "Istio Version         1.4-alpha.945b2e081e817e63fab6c1112c55d585073b0b7a"
            ),
            "{r:?}"
        );
        assert!(
            r.stdout
                .contains("Envoy Version         1.12.0-dev/Clean/RELEASE/BoringSSL"),
            "{r:?}"
        );
        let r = run_ok(&["secrets", "-f", f]);
        assert_eq!(r.stdout, "");
        assert_eq!(r.stderr, "No active or warming secrets found.\n");
        let r = run_ok(&["jwt", "-f", f]);
        assert!(
            r.stdout.is_empty() && r.stderr.contains("No JWT providers found."),
            "{r:?}"
        );
        let r = run_ok(&["rbac", "-f", f]);
        assert!(r.stderr.contains("No RBAC policies found."), "{r:?}");
        let r = run_ok(&["all", "-f", f]);
        assert!(r.stdout.contains("\n\nSERVICE FQDN"), "{r:?}");
        assert!(r.stdout.contains("\n\nADDRESSES"), "{r:?}");
        assert!(r.stdout.contains("\n\nNAME "), "{r:?}");
        assert!(
            r.stderr
                .contains("note: a config_dump file has no endpoint health"),
            "{r:?}"
        );
    }

    #[test]
    fn jwt_rbac_stats_from_the_captured_envoy() {
        let d = capture("config_dump.json");
        let d = d.to_str().unwrap();
        let r = run_ok(&["jwt", "-f", d]);
        assert!(r.stdout.contains("k1 (RS256, RSA, 2048)"), "{r:?}");
        assert!(
            r.stderr
                .contains("warning: virtualInbound/0.0.0.0_9080 provider origins-1")
                && r.stderr.contains(
                    "https://keycloak.example.com/realms/olaf/protocol/openid-connect/certs"
                )
                && r.stderr.contains("kubectl jwks-trust check"),
            "{r:?}"
        );
        let r = run_ok(&["rbac", "-f", d, "-o", "wide"]);
        assert!(
            r.stdout.contains("ns[default]-policy[deny-ssh]-rule[0]"),
            "{r:?}"
        );
        assert!(
            r.stdout
                .lines()
                .next()
                .unwrap()
                .ends_with("SHADOW   FILTER"),
            "{r:?}"
        );
        let s = capture("stats.txt");
        let r = run_ok(&[
            "stats",
            "-f",
            s.to_str().unwrap(),
            "--filter",
            "rbac.*denied",
        ]);
        insta::assert_snapshot!(r.stdout, @r"
        NAME                                           VALUE
        http.inbound_0.0.0.0_9080.rbac.denied          0
        http.inbound_0.0.0.0_9080.rbac.shadow_denied   0
        tcp.rbac.denied                                0
        tcp.rbac.shadow_denied                         0
        ");
        let c = capture("clusters.json");
        let r = run_ok(&["endpoints", "-f", c.to_str().unwrap(), "--port", "19081"]);
        assert!(
            r.stdout
                .contains("outbound|9080|v1|reviews.default.svc.cluster.local"),
            "{r:?}"
        );
    }
}

mod formats {
    use super::*;

    #[test]
    fn json_and_yaml_are_typed_lists_in_an_envelope() {
        let f = istio("current/pc-routes/istio-gateway-http-route-prefix/configdump.json");
        let f = f.to_str().unwrap();
        let v = json(&run_ok(&["routes", "-f", f, "-o", "json"]));
        assert_eq!(v["apiVersion"], "meshdebug.io/v1");
        assert_eq!(v["kind"], "RouteList");
        assert_eq!(v["items"][0]["virtualService"], "httpbin.default");
        assert_eq!(v["items"][0]["domains"][0], "httpbin.example.com");
        let y = run_ok(&["routes", "-f", f, "-o", "yaml"]).stdout;
        assert!(
            y.starts_with("apiVersion: meshdebug.io/v1\nkind: RouteList\nitems:\n"),
            "{y}"
        );
        let w = run_ok(&["routes", "-f", f, "-o", "wide"]).stdout;
        assert!(w.starts_with("NAME "), "{w}");
        let empty = json(&run_ok(&[
            "routes", "-f", f, "--name", "nothing", "-o", "JSON",
        ]));
        assert_eq!(empty["items"], serde_json::json!([]));
    }

    #[test]
    fn every_view_has_its_kind() {
        let d = capture("config_dump.json");
        let d = d.to_str().unwrap();
        for (view, kind) in [
            ("clusters", "ClusterList"),
            ("listeners", "ListenerList"),
            ("routes", "RouteList"),
            ("secrets", "SecretList"),
            ("jwt", "JwtProviderList"),
            ("rbac", "RbacPolicyList"),
            ("all", "ProxyConfig"),
        ] {
            let v = json(&run_ok(&[view, "-f", d, "-o", "json"]));
            assert_eq!(v["kind"], kind, "{view}");
            assert_eq!(v["apiVersion"], "meshdebug.io/v1", "{view}");
        }
        let v = json(&run_ok(&["bootstrap", "-f", d, "-o", "json"]));
        assert_eq!(v["kind"], "BootstrapConfigDumpList");
        assert_eq!(
            v["items"][0]["bootstrap"]["@type"],
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"
        );
        let v = json(&run_ok(&[
            "stats",
            "-f",
            capture("stats.txt").to_str().unwrap(),
            "-o",
            "json",
        ]));
        assert_eq!(v["kind"], "StatList");
        assert_eq!(v["items"][0]["value"], 5);
        let v = json(&run_ok(&[
            "endpoints",
            "-f",
            capture("clusters.json").to_str().unwrap(),
            "-o",
            "json",
        ]));
        assert_eq!(v["kind"], "EndpointList");
    }

    #[test]
    fn secrets_json_never_carries_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(istio("current/pc-secret/istio/config_dump.json")).unwrap(),
        )
        .unwrap();
        // A dump that still holds a private key (hand-made or from a tool that did not redact).
        v["configs"][0]["dynamic_active_secrets"][0]["secret"]["tls_certificate"]["private_key"] = serde_json::json!({"inline_string": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"});
        let f = dir.path().join("leaky.json");
        std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
        let f = f.to_str().unwrap();
        for args in [
            vec!["secrets", "-f", f, "-o", "json"],
            vec!["secrets", "-f", f, "-o", "yaml"],
            vec!["all", "-f", f, "-o", "json"],
            vec!["-f", f],
            vec!["-f", f, "-o", "yaml"],
        ] {
            let r = run_ok(&args);
            assert!(!r.stdout.contains("MIIEvQIBADANBg"), "{args:?}: {r:?}");
            assert!(r.stdout.contains("[redacted]"), "{args:?}: {r:?}");
        }
    }
}

mod diff {
    use super::*;

    /// The capture with one real change (a cluster's connect_timeout) plus noise that is not a
    /// difference: reversed order, new last_updated, `"type": "STATIC"` spelled out.
    fn changed(dir: &Path, real_change: bool) -> PathBuf {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(capture("config_dump.json")).unwrap()).unwrap();
        for s in v["configs"].as_array_mut().unwrap() {
            if s["@type"].as_str().unwrap().ends_with("ClustersConfigDump") {
                let list = s["static_clusters"].as_array_mut().unwrap();
                if real_change {
                    list[0]["cluster"]["connect_timeout"] = "9s".into();
                }
                for c in list.iter_mut() {
                    c["last_updated"] = "2031-01-01T00:00:00.000Z".into();
                    if c["cluster"].get("type").is_none() {
                        c["cluster"]["type"] = "STATIC".into();
                    }
                }
                list.reverse();
            }
        }
        let p = dir.join(if real_change {
            "after.json"
        } else {
            "noise.json"
        });
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        p
    }

    #[test]
    fn same_config_matches_with_exit_0() {
        let dir = tempfile::tempdir().unwrap();
        let before = capture("config_dump.json");
        let noise = changed(dir.path(), false);
        let r = run_ok(&[
            "diff",
            "-f",
            before.to_str().unwrap(),
            "-f",
            noise.to_str().unwrap(),
        ]);
        assert_eq!(
            r.stdout, "Clusters Match\nListeners Match\nRoutes Match\nSecrets Match\n",
            "{r:?}"
        );
        assert!(r.stderr.is_empty(), "{r:?}");
        let r = run_ok(&[
            "diff",
            "-f",
            before.to_str().unwrap(),
            "-f",
            before.to_str().unwrap(),
            "--section",
            "routes,secrets,routes",
        ]);
        assert_eq!(r.stdout, "Routes Match\nSecrets Match\n", "{r:?}");
    }

    #[test]
    fn a_real_change_exits_1_with_a_labelled_diff() {
        let dir = tempfile::tempdir().unwrap();
        let before = capture("config_dump.json");
        let (before, after) = (before.to_str().unwrap(), changed(dir.path(), true));
        let after = after.to_str().unwrap();
        let r = run(&["diff", "-f", before, "-f", after]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout.starts_with(&format!(
                "Clusters Don't Match\n--- {before}\n+++ {after}\n@@ "
            )),
            "{r:?}"
        );
        assert!(
            r.stdout.contains(
                "\n-                \"connectTimeout\": \"1s\",\n+                \"connectTimeout\": \"9s\",\n"
            ),
            "{r:?}"
        );
        assert!(
            !r.stdout.contains("STATIC"),
            "enum defaults are no difference: {r:?}"
        );
        assert!(
            r.stdout
                .ends_with("Listeners Match\nRoutes Match\nSecrets Match\n"),
            "{r:?}"
        );
        // reversed sides, reversed signs
        let r = run(&["diff", "-f", after, "-f", before, "--section", "clusters"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout
                .contains("\n-                \"connectTimeout\": \"9s\","),
            "{r:?}"
        );

        let r = run(&["diff", "-f", before, "-f", after, "-o", "json"]);
        assert_eq!(r.code, 1, "{r:?}");
        let v = json(&r);
        assert_eq!(v["apiVersion"], "meshdebug.io/v1");
        assert_eq!(v["kind"], "ConfigDiff");
        assert_eq!(v["from"], before);
        assert_eq!(v["to"], after);
        assert_eq!(v["match"], false);
        let sections: Vec<_> = v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["section"].as_str().unwrap(),
                    s["match"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sections,
            [
                ("clusters", false),
                ("listeners", true),
                ("routes", true),
                ("secrets", true)
            ]
        );
        assert!(v["sections"][0]["diff"].as_str().unwrap().contains("+++ "));
        let r = run(&["diff", "-f", before, "-f", after, "-o", "yaml"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout
                .starts_with("apiVersion: meshdebug.io/v1\nkind: ConfigDiff\n"),
            "{r:?}"
        );
    }

    #[test]
    fn secrets_never_show_key_material() {
        let f = istio("current/pc-secret/istio/config_dump.json");
        let empty = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(empty.path(), r#"{"configs": []}"#).unwrap();
        let r = run(&[
            "diff",
            "-f",
            empty.path().to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
            "--section",
            "secrets",
        ]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout.contains("+            \"name\": \"ROOTCA\","),
            "{r:?}"
        );
        for secret in ["BEGIN", "inline_bytes", "inlineBytes", "privateKey", "LS0t"] {
            assert!(!r.stdout.contains(secret), "{secret}: {r:?}");
        }
        assert!(
            r.stderr
                .contains("has no SecretsConfigDump section; compared as empty"),
            "{r:?}"
        );
    }

    #[test]
    fn usage_and_input_errors_exit_2() {
        let f = capture("config_dump.json");
        let f = f.to_str().unwrap();
        for (args, needle) in [
            (&["diff", "pod-a"][..], "diff compares two sources, 1 given"),
            (&["diff", "-f", f][..], "diff compares two sources, 1 given"),
            (
                &["diff", "a", "b", "c"][..],
                "diff compares two sources, 3 given",
            ),
            (&["diff", "a", "b", "-l", "app=x"][..], "not -l or -A"),
            (
                &["diff", "a", "b", "--section", "x"][..],
                "invalid value 'x'",
            ),
            (
                &["clusters", "-f", f, "-f", f][..],
                "more than once only with diff",
            ),
        ] {
            let r = run(args);
            assert_eq!(r.code, 2, "{args:?}: {r:?}");
            assert!(
                r.stderr.contains(needle),
                "{args:?}: want {needle:?}: {r:?}"
            );
            assert!(r.stdout.is_empty(), "{r:?}");
        }
        let r = run(&["diff", "-f", f, "-f", "/nonexistent/x.json"]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("/nonexistent/x.json"), "{r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.json");
        std::fs::write(&cut, &std::fs::read(f).unwrap()[..5000]).unwrap();
        let r = run(&["diff", "-f", f, "-f", cut.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("byte 4999"), "{r:?}");
        // pods need a cluster: a hermetic HOME has no kubeconfig
        let r = run(&["diff", "pod-a", "-f", f]);
        assert_eq!(r.code, 2, "{r:?}");
    }
}

/// A real Envoy with a minimal bootstrap; killed on drop.
struct Envoy {
    child: Child,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Envoy {
    fn start(bootstrap: &str) -> Self {
        let bin = match std::env::var_os("MESHSIM_ENVOY") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/envoy/envoy"),
        };
        assert!(
            bin.is_file(),
            "Envoy not found at {}: run `make envoy` (or set MESHSIM_ENVOY)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, bootstrap).unwrap();
        let address_file = dir.path().join("admin");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&address_file)
            .args(["--use-dynamic-base-id", "-l", "error", "--concurrency", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut envoy = Envoy {
            child,
            admin: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&address_file)
                && !a.trim().is_empty()
            {
                envoy.admin = format!("http://{}", a.trim());
                break;
            }
            if let Some(status) = envoy.child.try_wait().unwrap() {
                panic!("Envoy exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not write its admin address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        envoy
    }

    /// `GET path` straight from Envoy (HTTP/1.1, chunked or not).
    fn get(&self, path: &str) -> Vec<u8> {
        let host = self.admin.trim_start_matches("http://");
        let mut s = TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let mut body = &raw[split + 4..];
        if !head.contains("transfer-encoding: chunked") {
            return body.to_vec();
        }
        let mut out = Vec::new();
        loop {
            let eol = body.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&body[..eol])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
            body = &body[eol + 2 + size + 2..];
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod live {
    use super::*;

    const BOOTSTRAP: &str = r#"
node: {id: "sidecar~127.0.0.1~live-0.default~default.svc.cluster.local", cluster: live.default, metadata: {ISTIO_VERSION: "1.99.0"}}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  clusters:
  - name: "outbound|8080|v2|static.example.svc.cluster.local"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "outbound|8080|v2|static.example.svc.cluster.local"
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18080}}}}]}]
  listeners:
  - name: live_listener
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: live
          cluster: "outbound|8080|v2|static.example.svc.cluster.local"
"#;

    #[test]
    fn raw_dump_is_envoys_config_dump() {
        let envoy = Envoy::start(BOOTSTRAP);
        let r = run_ok(&["--admin-url", &envoy.admin]);
        let ours: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(&envoy.get("config_dump")).unwrap();
        assert_eq!(ours, theirs);
        let r = run_ok(&["--admin-url", &envoy.admin, "--resource", "static_clusters"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            v["configs"][0]["cluster"]["name"], "outbound|8080|v2|static.example.svc.cluster.local",
            "{r:?}"
        );
        let r = run_ok(&["--admin-url", &envoy.admin, "-o", "yaml"]);
        assert!(r.stdout.starts_with("configs:"), "{r:?}");
    }

    #[test]
    fn views_against_a_live_envoy() {
        let envoy = Envoy::start(BOOTSTRAP);
        let admin = envoy.admin.as_str();
        let r = run_ok(&["clusters", "--admin-url", admin]);
        insta::assert_snapshot!(r.stdout, @r"
        SERVICE FQDN                       PORT   SUBSET   DIRECTION   TYPE     DESTINATION RULE
        static.example.svc.cluster.local   8080   v2       outbound    STATIC
        ");
        let r = run_ok(&["listeners", "--admin-url", admin, "-o", "json"]);
        let v = json(&r);
        assert_eq!(v["items"][0]["name"], "live_listener");
        assert_eq!(
            v["items"][0]["destination"],
            "Cluster: outbound|8080|v2|static.example.svc.cluster.local"
        );
        let r = run_ok(&["endpoints", "--admin-url", admin]);
        assert!(r.stdout.contains("127.0.0.1:18080"), "{r:?}");
        let r = run_ok(&["bootstrap", "--admin-url", admin]);
        assert!(r.stdout.contains("Istio Version         1.99.0"), "{r:?}");
        assert!(
            r.stdout
                .contains("Envoy Version         1.40.0/Clean/RELEASE/BoringSSL"),
            "{r:?}"
        );
        let r = run_ok(&[
            "stats",
            "--admin-url",
            admin,
            "--filter",
            r"^cluster_manager\.cluster_added$",
        ]);
        insta::assert_snapshot!(r.stdout, @r"
        NAME                            VALUE
        cluster_manager.cluster_added   1
        ");
        let r = run_ok(&["dashboard", "--admin-url", admin]);
        assert_eq!(r.stdout.trim(), admin);
    }

    #[test]
    fn diff_two_live_envoys_and_a_saved_dump() {
        // Two "replicas" of the same config, and one whose cluster differs.
        let (a, b) = (Envoy::start(BOOTSTRAP), Envoy::start(BOOTSTRAP));
        let c = Envoy::start(&BOOTSTRAP.replace("connect_timeout: 1s", "connect_timeout: 2s"));
        let dir = tempfile::tempdir().unwrap();
        let saved = |e: &Envoy, name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, e.get("config_dump")).unwrap();
            p.to_str().unwrap().to_string()
        };
        let (b_json, c_json) = (saved(&b, "b.json"), saved(&c, "c.json"));

        let r = run_ok(&["diff", "--admin-url", &a.admin, "-f", &b_json]);
        assert_eq!(
            r.stdout, "Clusters Match\nListeners Match\nRoutes Match\nSecrets Match\n",
            "{r:?}"
        );
        let r = run_ok(&["diff", "-f", &b_json, "--admin-url", &b.admin, "-o", "json"]);
        assert_eq!(json(&r)["match"], true, "{r:?}");

        let r = run(&["diff", "--admin-url", &a.admin, "-f", &c_json]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout.starts_with(&format!(
                "Clusters Don't Match\n--- {}\n+++ {c_json}\n",
                a.admin
            )),
            "{r:?}"
        );
        assert!(
            r.stdout.contains(
                "\n-                \"connectTimeout\": \"1s\",\n+                \"connectTimeout\": \"2s\",\n"
            ),
            "{r:?}"
        );
        assert!(r.stdout.contains("\nListeners Match\n"), "{r:?}");
    }

    #[test]
    fn jwt_placeholder_warning_from_a_live_envoy() {
        // The captured bootstrap, on ephemeral ports.
        let text = std::fs::read_to_string(capture("bootstrap.yaml"))
            .unwrap()
            .replace("port_value: 39080", "port_value: 0")
            .replace("port_value: 39443", "port_value: 0")
            .replace("port_value: 39081", "port_value: 0");
        let envoy = Envoy::start(&text);
        let r = run_ok(&["jwt", "--admin-url", &envoy.admin]);
        assert!(r.stdout.contains("origins-1"), "{r:?}");
        assert!(
            r.stderr
                .contains("pushed its placeholder key (Istio 1.15–1.20)"),
            "{r:?}"
        );
        let r = run_ok(&["rbac", "--admin-url", &envoy.admin, "-o", "json"]);
        assert_eq!(json(&r)["items"].as_array().unwrap().len(), 3, "{r:?}");
    }
}
