#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kubectl-jwks-trust: CLI contract tests and the fetch classification against the in-process
//! JWKS server of the test world (meshsim::jwks_server).

mod fetch {
    use std::time::Duration;

    use meshdebug::jwks::fetch::{
        FetchOptions, Outcome, Trust, anchors_of, capture_chain, fetch_jwks, fetch_jwks_for_issuer,
    };
    use meshsim::jwks_server::{CA_NAME, JwksServer, JwksServerOptions, Mode};

    fn server() -> JwksServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        JwksServer::start(JwksServerOptions::default()).unwrap()
    }

    fn with_ca(s: &JwksServer) -> Trust {
        let mut t = Trust::empty();
        t.add_pem(s.ca_pem().as_bytes(), "test CA").unwrap();
        t
    }

    fn opts() -> FetchOptions {
        FetchOptions {
            timeout: Duration::from_secs(5),
            ..FetchOptions::default()
        }
    }

    #[tokio::test]
    async fn ok_with_the_ca() {
        let s = server();
        let r = fetch_jwks(&s.jwks_uri(), &with_ca(&s), opts())
            .await
            .unwrap();
        assert_eq!(r.outcome.status(), "OK", "{:?}", r.outcome);
        assert_eq!(r.jwks().unwrap().kids(), vec!["olaf-key-1"]);
        assert_eq!(r.chain.len(), 2);
        assert_eq!(r.chain[1].subject_cn, CA_NAME);
        assert!(r.inline_jwks().unwrap().starts_with(r#"{"keys":[{"#));
    }

    #[tokio::test]
    async fn untrusted_without_the_ca_names_the_issuer() {
        let s = server();
        // The machine's roots do not have the private CA.
        let r = fetch_jwks(&s.jwks_uri(), &Trust::system(), opts())
            .await
            .unwrap();
        assert_eq!(r.outcome.status(), "UNTRUSTED CA");
        assert!(
            r.outcome.detail().contains("Olaf Private Root CA"),
            "{}",
            r.outcome.detail()
        );
        // Nothing trusted at all: same answer.
        let r = fetch_jwks(&s.jwks_uri(), &Trust::empty(), opts())
            .await
            .unwrap();
        assert_eq!(
            r.outcome,
            Outcome::UntrustedCa {
                issuer: CA_NAME.into()
            }
        );
        // ... and the chain was captured, so add-ca can offer the CA.
        let anchors = anchors_of(&r.chain_der);
        assert_eq!(anchors.len(), 1);
        assert_eq!(anchors[0], r.chain_der[1]);
    }

    #[tokio::test]
    async fn hostname_mismatch_and_expired() {
        let s = server();
        s.set_mode(Mode::WrongHostCert);
        let r = fetch_jwks(&s.jwks_uri(), &with_ca(&s), opts())
            .await
            .unwrap();
        assert_eq!(r.outcome.status(), "HOSTNAME MISMATCH", "{:?}", r.outcome);
        assert!(r.outcome.detail().contains("sso.other.example.org"));
        s.set_mode(Mode::ExpiredCert);
        let r = fetch_jwks(&s.jwks_uri(), &with_ca(&s), opts())
            .await
            .unwrap();
        assert_eq!(r.outcome.status(), "EXPIRED", "{:?}", r.outcome);
        assert!(
            r.outcome.detail().contains("2021-01-01"),
            "{}",
            r.outcome.detail()
        );
    }

    #[tokio::test]
    async fn timeout() {
        let s = server();
        s.set_mode(Mode::Slow(Duration::from_secs(3)));
        let o = FetchOptions {
            timeout: Duration::from_millis(300),
            ..opts()
        };
        let r = fetch_jwks(&s.jwks_uri(), &with_ca(&s), o).await.unwrap();
        assert_eq!(r.outcome.status(), "TIMEOUT");
        assert_eq!(r.outcome.detail(), "no answer within 300ms");
    }

    #[tokio::test]
    async fn huge_redirect_loop_not_json_404() {
        let s = server();
        let t = with_ca(&s);
        s.set_mode(Mode::Huge);
        let r = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        assert_eq!(r.outcome, Outcome::TooLarge { limit: 1024 * 1024 });
        s.set_mode(Mode::RedirectLoop);
        let r = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        assert_eq!(r.outcome.status(), "TOO MANY REDIRECTS");
        assert!(r.outcome.detail().contains("redirect loop"));
        s.set_mode(Mode::NotJson);
        let r = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        assert_eq!(r.outcome.status(), "NOT A JWKS");
        assert!(
            r.outcome.detail().contains("<html>"),
            "{}",
            r.outcome.detail()
        );
        s.set_mode(Mode::NotFound);
        let r = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        assert_eq!(r.outcome, Outcome::Http { code: 404 });
    }

    #[tokio::test]
    async fn unreachable_and_bad_uri() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let r = fetch_jwks(
            &format!("https://127.0.0.1:{port}/certs"),
            &Trust::empty(),
            opts(),
        )
        .await
        .unwrap();
        assert_eq!(r.outcome.status(), "UNREACHABLE", "{:?}", r.outcome);
        let r = fetch_jwks("ftp://x/y", &Trust::empty(), opts())
            .await
            .unwrap();
        assert_eq!(r.outcome.status(), "BAD URI");
    }

    #[tokio::test]
    async fn oidc_discovery() {
        let s = server();
        let r = fetch_jwks_for_issuer(&s.issuer(), &with_ca(&s), opts())
            .await
            .unwrap();
        assert_eq!(r.uri, s.jwks_uri());
        assert!(r.outcome.is_ok());
    }

    #[tokio::test]
    async fn capture_shows_the_chain_without_trusting_it() {
        let s = server();
        let r = capture_chain(s.base_url(), &Trust::empty(), opts())
            .await
            .unwrap();
        assert!(r.outcome.is_untrusted());
        let subjects: Vec<&str> = r.chain.iter().map(|c| c.subject_cn.as_str()).collect();
        assert_eq!(subjects, vec!["*.apps.example.com", CA_NAME]);
        let r = capture_chain(s.base_url(), &with_ca(&s), opts())
            .await
            .unwrap();
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    }

    #[tokio::test]
    async fn rotation_changes_the_kid_and_tokens_verify() {
        use base64::Engine as _;
        let s = server();
        let t = with_ca(&s);
        let token = s.token("alice", "web", 1_700_000_000, Duration::from_secs(60));
        let before = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        let jwk = serde_json::to_value(&before.jwks().unwrap().keys[0]).unwrap();
        // The ES256 signature verifies with the served public key.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut point = vec![4u8];
        point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &b64.decode(parts[2]).unwrap(),
            )
            .unwrap();
        let decoded = meshdebug::jwks::Jwt::decode(&token).unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("olaf-key-1"));
        assert_eq!(decoded.claims.iss.as_deref(), Some(s.issuer().as_str()));

        assert_eq!(s.rotate(), "olaf-key-2");
        let after = fetch_jwks(&s.jwks_uri(), &t, opts()).await.unwrap();
        let cmp =
            meshdebug::jwks::trust::compare_keys(before.jwks().unwrap(), after.jwks().unwrap());
        assert_eq!(cmp.missing, vec!["olaf-key-2"]);
    }
}

/// Running the binary hermetically.
mod run {
    use std::path::Path;
    use std::process::{Command, Output};

    pub fn cmd(home: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-jwks-trust"));
        c.env_remove("KUBECONFIG")
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .env("HOME", home);
        c
    }

    pub struct Ran {
        pub code: i32,
        pub stdout: String,
        pub stderr: String,
    }

    pub fn ran(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn jwks_trust(args: &[&str]) -> Ran {
        let home = tempfile::tempdir().unwrap();
        ran(cmd(home.path()).args(args).output().unwrap())
    }
}

mod help {
    use super::run::jwks_trust;

    #[test]
    fn top_level_help_lists_subcommands_and_exit_codes() {
        let r = jwks_trust(&["--help"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        for s in [
            "check",
            "inline",
            "refresh",
            "add-ca",
            "remove-ca",
            "token",
            "Exit codes:",
        ] {
            assert!(r.stdout.contains(s), "{s} missing:\n{}", r.stdout);
        }
        assert!(
            r.stdout
                .starts_with("Diagnose and fix istiod failing to fetch")
        );
        assert!(r.stdout.contains("Usage: kubectl jwks-trust"));
    }

    #[test]
    fn each_subcommand_has_help_with_exit_codes() {
        for (sub, code1) in [
            ("check", true),
            ("inline", false),
            ("refresh", false),
            ("add-ca", false),
            ("remove-ca", false),
            ("token", true),
        ] {
            let r = jwks_trust(&[sub, "--help"]);
            assert_eq!(r.code, 0, "{sub}: {}", r.stderr);
            assert!(
                r.stdout
                    .contains(&format!("Usage: kubectl jwks-trust {sub}")),
                "{sub}"
            );
            assert!(
                r.stdout.contains("Exit codes:\n  0 "),
                "{sub}:\n{}",
                r.stdout
            );
            assert!(r.stdout.contains("  2    error"), "{sub}");
            assert_eq!(
                r.stdout.contains("  1    "),
                code1,
                "{sub}: exit 1 only where negative answers exist"
            );
            assert!(r.stderr.is_empty());
        }
        let r = jwks_trust(&["add-ca", "-h"]);
        assert!(r.stdout.contains("--from-url <URL>"));
        assert!(r.stdout.contains("pilot.jwksResolverExtraRootCA"));
    }

    #[test]
    fn version() {
        let r = jwks_trust(&["--version"]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.starts_with("kubectl-jwks-trust "));
    }
}

mod usage {
    use super::run::jwks_trust;

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &[][..],
            &["nope"],
            &["add-ca"],
            &["add-ca", "--cert", "a.pem", "--from-url", "https://h"],
            &["inline"],
            &["inline", "p", "--jwks-file", "k.json", "--ca-file", "c.pem"],
            &["token"],
            &["token", "t", "--pod", "p", "-f", "d.json"],
            &["check", "-n", "a", "-A"],
            &["check", "--log-lines", "0"],
            &["check", "-o", "xml"],
            &["check", "--fetch-timeout", "5x"],
        ] {
            let r = jwks_trust(args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(r.stdout.is_empty(), "{args:?}");
            assert!(
                r.stderr.contains("Usage:") || r.stderr.contains("error:"),
                "{args:?}: {}",
                r.stderr
            );
        }
    }

    #[test]
    fn no_cluster_is_an_error_with_a_hint() {
        let home = tempfile::tempdir().unwrap();
        let kc = home.path().join("missing-kubeconfig");
        let r = super::run::ran(
            super::run::cmd(home.path())
                .args(["check", "--kubeconfig", kc.to_str().unwrap()])
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.starts_with("error: cannot load the kubeconfig"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("hint: "), "{}", r.stderr);
    }
}

/// Tokens and config_dumps made by hand.
mod tokens {
    use base64::Engine as _;

    pub const ISSUER: &str = "https://keycloak-olaf-sso.apps.example.com/auth/realms/olaf";
    /// The public part of istiod's FakeJwks (Istio 1.21–1.29.0), as a sidecar receives it.
    pub const FAKE_JWKS: &str = r#"{"keys":[{"e":"AQAB","kty":"RSA","n":"vqS7RN4b34i3_5YyhygtBe33gI6GK_0ldW8WMZaunS28T-WAzJOAoZ7E9Y0mHS8vcDES0eZIUpp6Ft9sRPhOlzQfo_7l-3DnaD9LxJVKdXjE1jugxfI9YX1qJpD9S9wRZxQIhPky9UzZDkpFh_KpL6pZUt4cbPtW0VCctjqvpI11yHNk4CEbzw-RRFLMJkLFJqgPa2JPzGZ-TqJdkSDQ7UtRiKzjRcWGnAdLsTq6WabDA1Fn1JVI9TWu-YDbLufDUDco46qyPgpxAqcRQG39cWZAQzMwNEZ-Yec_WiqDYqGTU6K8BBWeEIuMhiWfxGmtqX35rb9Qk_qeYDsqqT95Pw"}]}"#;

    pub fn token(kid: &str, iss: &str, aud: &str, exp: i64) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let p = serde_json::json!({"iss": iss, "sub": "alice", "aud": aud, "exp": exp, "iat": exp - 300});
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b.encode(h.to_string()),
            b.encode(p.to_string())
        )
    }

    pub fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// An HTTP connection manager filter with jwt_authn, as istiod sends it.
    pub fn jwt_filter(providers: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": providers,
                "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                    {"provider_name": "origins-0"}, {"allow_missing": {}}]}}}]
            }
        })
    }

    pub fn provider(inline_jwks: &str, audiences: &[&str]) -> serde_json::Value {
        serde_json::json!({"origins-0": {
            "issuer": ISSUER,
            "audiences": audiences,
            "local_jwks": {"inline_string": inline_jwks},
            "forward": true,
            "payload_in_metadata": ISSUER
        }})
    }

    /// A config_dump with one inbound listener carrying the filter.
    pub fn config_dump(providers: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "virtualInbound", "active_state": {"listener": {
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": "virtualInbound",
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "http_filters": [jwt_filter(providers), {"name": "envoy.filters.http.router"}]
                    }
                }]}]
            }}}]
        }]})
    }
}

mod token {
    use super::run::{cmd, jwks_trust, ran};
    use super::tokens::*;

    fn dump_file(dir: &std::path::Path, providers: serde_json::Value) -> std::path::PathBuf {
        let p = dir.join("dump.json");
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&config_dump(providers)).unwrap(),
        )
        .unwrap();
        p
    }

    #[test]
    fn placeholder_key_is_named_from_a_saved_dump() {
        let dir = tempfile::tempdir().unwrap();
        let f = dump_file(dir.path(), provider(FAKE_JWKS, &[]));
        let t = token("olaf-key-1", ISSUER, "web", now() + 3600);
        let r = jwks_trust(&["token", &t, "-f", f.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let header = r.stdout.lines().next().unwrap();
        assert!(header.starts_with("ISSUER"), "{}", r.stdout);
        for col in ["SUBJECT", "KID", "EXPIRES", "VERDICT", "REASON"] {
            assert!(header.contains(col));
        }
        assert!(r.stdout.contains("REJECTED"));
        assert!(
            r.stdout.contains("FakeJwks placeholder key"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("Istio 1.21–1.29.0"));
        assert!(!r.stdout.contains(&t), "the token is never printed");
        assert!(!r.stderr.contains(&t));
    }

    #[test]
    fn every_output_format() {
        let dir = tempfile::tempdir().unwrap();
        let f = dump_file(dir.path(), provider(FAKE_JWKS, &["web"]));
        let t = token("olaf-key-1", ISSUER, "mobile", now() + 3600);
        let r = jwks_trust(&["token", &t, "-f", f.to_str().unwrap(), "-o", "json"]);
        assert_eq!(r.code, 1);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["apiVersion"], "meshdebug.io/v1");
        assert_eq!(v["kind"], "TokenDiagnosisList");
        let item = &v["items"][0];
        assert_eq!(item["verdict"], "REJECTED");
        assert_eq!(item["header"]["kid"], "olaf-key-1");
        let reasons: Vec<&str> = item["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, vec!["placeholderKeys", "audienceMismatch"]);
        assert_eq!(
            item["providers"][0]["keys"]["placeholder"]["kind"],
            "fakeJwks"
        );
        let r = jwks_trust(&["token", &t, "-f", f.to_str().unwrap(), "-o", "yaml"]);
        assert_eq!(r.code, 1);
        assert!(
            r.stdout
                .starts_with("apiVersion: meshdebug.io/v1\nkind: TokenDiagnosisList\n"),
            "{}",
            r.stdout
        );
        let r = jwks_trust(&["token", &t, "-f", f.to_str().unwrap(), "-o", "wide"]);
        let header: Vec<&str> = r
            .stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(
            header.ends_with(&["ALG", "AUDIENCE", "SIDECAR"]),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("mobile"));
    }

    #[test]
    fn stale_kid_expired_and_unknown_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let keys = r#"{"keys":[{"kty":"EC","kid":"olaf-key-1","crv":"P-256","x":"eA","y":"eQ"}]}"#;
        let f = dump_file(dir.path(), provider(keys, &[]));
        let f = f.to_str().unwrap();
        // current kid: accepted (signature not checked)
        let r = jwks_trust(&[
            "token",
            &token("olaf-key-1", ISSUER, "web", now() + 60),
            "-f",
            f,
        ]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("ACCEPTED"));
        assert!(r.stderr.contains("signature itself was not checked"));
        // rotated kid
        let r = jwks_trust(&[
            "token",
            &token("olaf-key-2", ISSUER, "web", now() + 60),
            "-f",
            f,
        ]);
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.contains("no key for kid olaf-key-2"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("it holds: olaf-key-1"));
        // expired
        let r = jwks_trust(&[
            "token",
            &token("olaf-key-1", ISSUER, "web", now() - 3600),
            "-f",
            f,
        ]);
        assert_eq!(r.code, 1);
        assert!(r.stdout.contains("the token expired"), "{}", r.stdout);
        // issuer
        let r = jwks_trust(&[
            "token",
            &token("olaf-key-1", "https://evil", "web", now() + 60),
            "-f",
            f,
        ]);
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.contains("is not configured on this sidecar"),
            "{}",
            r.stdout
        );
    }

    #[test]
    fn decode_only_and_stdin() {
        let t = token("k", ISSUER, "web", now() + 60);
        let r = jwks_trust(&["token", &t]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("DECODED"));
        assert!(
            r.stderr
                .contains("pass --pod POD, --admin-url URL or -f DUMP")
        );
        let home = tempfile::tempdir().unwrap();
        let mut child = cmd(home.path())
            .args(["token", "-", "-o", "json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Bearer {t}\n").as_bytes())
            .unwrap();
        let r = ran(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("\"verdict\": \"DECODED\""),
            "{}",
            r.stdout
        );
    }

    #[test]
    fn bad_input_exits_2() {
        let r = jwks_trust(&["token", "not-a-token"]);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr
                .starts_with("error: not a JWT: expected 3 dot-separated parts, found 1"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("hint: "));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("broken.json");
        std::fs::write(&f, "{\"configs\": [").unwrap();
        let t = token("k", ISSUER, "web", now() + 60);
        let r = jwks_trust(&["token", &t, "-f", f.to_str().unwrap()]);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("is not valid Envoy config_dump JSON"),
            "{}",
            r.stderr
        );
        let r = jwks_trust(&[
            "token",
            &t,
            "-f",
            dir.path().join("missing").to_str().unwrap(),
        ]);
        assert_eq!(r.code, 2);
        assert!(r.stderr.starts_with("error: cannot read "), "{}", r.stderr);
    }
}

/// `token --admin-url` against a real Envoy holding keys from the JWKS server.
mod envoy {
    use std::time::Duration;

    use meshsim::envoy::{EnvoyCommand, EnvoyProcess};
    use meshsim::jwks_server::{JwksServer, JwksServerOptions};

    use super::run::jwks_trust;
    use super::tokens::{FAKE_JWKS, jwt_filter, now};

    async fn envoy(dir: &std::path::Path, providers: serde_json::Value) -> EnvoyProcess {
        let bootstrap = serde_json::json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [{
                "name": "inbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                        "http_filters": [jwt_filter(providers), {"name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                    }
                }]}]
            }]}
        });
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("bootstrap.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
        let cmd = EnvoyCommand {
            config_path: config,
            run_dir: dir.join("run"),
            log_path: dir.join("envoy.log"),
            log_level: "warning".into(),
            component_log_level: String::new(),
            log_format: None,
            service_node: "customer-1.olaf".into(),
            service_cluster: "customer.olaf".into(),
            concurrency: 1,
        };
        EnvoyProcess::start(&cmd, Duration::from_secs(30))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn real_envoy_with_placeholder_then_rotated_keys() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s = JwksServer::start(JwksServerOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = s.token("alice", "web", now(), Duration::from_secs(3600));

        // 1. istiod failed to fetch: the sidecar holds the FakeJwks placeholder.
        let providers = serde_json::json!({"origins-0": {"issuer": s.issuer(), "local_jwks": {"inline_string": FAKE_JWKS}}});
        let e = envoy(&dir.path().join("a"), providers).await;
        let url = format!("http://{}", e.admin());
        let t = token.clone();
        let r =
            tokio::task::spawn_blocking(move || jwks_trust(&["token", &t, "--admin-url", &url]))
                .await
                .unwrap();
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("FakeJwks placeholder key"),
            "{}",
            r.stdout
        );
        drop(e);

        // 2. The real keys: accepted; after a rotation a new token's kid is missing (stale).
        let providers = serde_json::json!({"origins-0": {"issuer": s.issuer(), "audiences": ["web"], "local_jwks": {"inline_string": s.jwks_json()}}});
        let e = envoy(&dir.path().join("b"), providers).await;
        let url = format!("http://{}", e.admin());
        let (t, u) = (token.clone(), url.clone());
        let r = tokio::task::spawn_blocking(move || jwks_trust(&["token", &t, "--admin-url", &u]))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("ACCEPTED"));
        s.rotate();
        let rotated = s.token("alice", "web", now(), Duration::from_secs(3600));
        let r = tokio::task::spawn_blocking(move || {
            jwks_trust(&["token", &rotated, "--admin-url", &url])
        })
        .await
        .unwrap();
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.contains("no key for kid olaf-key-2"),
            "{}",
            r.stdout
        );
    }
}

/// The seed's story against the fake apiserver: a RequestAuthentication whose jwksUri is served
/// with a private CA, istiod failing with x509, a sidecar (real Envoy) holding the placeholder;
/// then check, inline, add-ca, refresh, remove-ca as a user runs them.
mod cluster {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use meshsim::apiserver::{ApiServer, ApiServerOptions, PodBackend};
    use meshsim::envoy::{EnvoyCommand, EnvoyProcess};
    use meshsim::jwks_server::{JwksServer, JwksServerOptions};
    use serde_json::json;

    use super::run::{Ran, cmd, ran};
    use super::tokens::{FAKE_JWKS, jwt_filter};

    struct Olaf {
        jwks: JwksServer,
        api: ApiServer,
        _envoy: EnvoyProcess,
        dir: tempfile::TempDir,
        kubeconfig: PathBuf,
        ca: PathBuf,
    }

    impl Olaf {
        async fn run(&self, args: &[&str]) -> Ran {
            let mut c = cmd(self.dir.path());
            c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
            tokio::task::spawn_blocking(move || ran(c.output().unwrap()))
                .await
                .unwrap()
        }
        fn writes(&self) -> Vec<String> {
            self.api
                .requests()
                .into_iter()
                .filter(|r| r.is_write())
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        }
        fn ra(&self) -> serde_json::Value {
            self.api
                .store()
                .get(
                    "security.istio.io/v1beta1",
                    "RequestAuthentication",
                    Some("olaf"),
                    "jwt-olaf",
                )
                .unwrap()
        }
        fn istiod(&self) -> serde_json::Value {
            self.api
                .store()
                .get("apps/v1", "Deployment", Some("istio-system"), "istiod")
                .unwrap()
        }
    }

    async fn bootstrap_and_start(dir: &Path, bootstrap: serde_json::Value) -> EnvoyProcess {
        let config = dir.join("bootstrap.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
        EnvoyProcess::start(
            &EnvoyCommand {
                config_path: config,
                run_dir: dir.join("run"),
                log_path: dir.join("envoy.log"),
                log_level: "warning".into(),
                component_log_level: String::new(),
                log_format: None,
                service_node: "customer-1.olaf".into(),
                service_cluster: "customer.olaf".into(),
                concurrency: 1,
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap()
    }

    fn pod(
        ns: &str,
        name: &str,
        labels: serde_json::Value,
        containers: &[&str],
    ) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c, "image": c})).collect::<Vec<_>>()},
            "status": {"phase": "Running"}
        })
    }

    async fn olaf() -> Olaf {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let jwks = JwksServer::start(JwksServerOptions::default()).unwrap();
        let api = ApiServer::start(ApiServerOptions::default()).await.unwrap();
        let store = api.store();
        let (issuer, uri) = (jwks.issuer(), jwks.jwks_uri());
        store
            .apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "istiod", "namespace": "istio-system",
                             "labels": {"app": "istiod", "install.operator.istio.io/owning-resource": "installed-state"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod"}},
                         "template": {"metadata": {"labels": {"app": "istiod"}},
                                      "spec": {"containers": [{"name": "discovery", "image": "pilot"}]}}}
            }))
            .unwrap();
        store
            .apply(pod(
                "istio-system",
                "istiod-5d8c7f9b4-abcde",
                json!({"app": "istiod"}),
                &["discovery"],
            ))
            .unwrap();
        let log = dir.path().join("istiod.log");
        std::fs::write(
            &log,
            format!(
                "2026-11-24T10:00:00.000000Z\tinfo\tads\tPush debounce stable\n\
                 2026-11-24T10:00:01.000000Z\terror\tmodel\tFailed to fetch public key from jwks URI \"{uri}\": Get \"{uri}\": tls: failed to verify certificate: x509: certificate signed by unknown authority\n\
                 2026-11-24T10:00:01.000100Z\twarn\tJWKS fetch failed for issuer {issuer} ({uri}), using public-only JWKS with discarded private key - JWT requests will be rejected\n"
            ),
        )
        .unwrap();
        api.set_pod_backend(
            "istio-system",
            "istiod-5d8c7f9b4-abcde",
            PodBackend {
                ports: HashMap::new(),
                logs: [("discovery".to_string(), log)].into(),
            },
        );
        store
            .apply(json!({
                "apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
                "metadata": {"name": "jwt-olaf", "namespace": "olaf"},
                "spec": {"selector": {"matchLabels": {"app": "customer"}},
                         "jwtRules": [{"issuer": issuer, "jwksUri": uri, "forwardOriginalToken": true}]}
            }))
            .unwrap();
        store
            .apply(pod(
                "olaf",
                "customer-1",
                json!({"app": "customer"}),
                &["customer", "istio-proxy"],
            ))
            .unwrap();
        store
            .apply(pod(
                "olaf",
                "other-1",
                json!({"app": "other"}),
                &["other", "istio-proxy"],
            ))
            .unwrap();
        // The sidecar holds istiod's FakeJwks placeholder for the issuer.
        let envoy = sidecar_with_issuer(&dir.path().join("envoy"), &issuer).await;
        api.set_pod_backend(
            "olaf",
            "customer-1",
            PodBackend {
                ports: [(15000u16, envoy.admin())].into(),
                logs: HashMap::new(),
            },
        );
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, "olaf").unwrap();
        let ca = dir.path().join("olaf-root-ca.pem");
        std::fs::write(&ca, jwks.ca_pem()).unwrap();
        Olaf {
            jwks,
            api,
            _envoy: envoy,
            dir,
            kubeconfig,
            ca,
        }
    }

    async fn sidecar_with_issuer(dir: &Path, issuer: &str) -> EnvoyProcess {
        std::fs::create_dir_all(dir).unwrap();
        let providers =
            json!({"origins-0": {"issuer": issuer, "local_jwks": {"inline_string": FAKE_JWKS}}});
        let bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [{
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                        "http_filters": [jwt_filter(providers), {"name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                    }
                }]}]
            }]}
        });
        bootstrap_and_start(dir, bootstrap).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn check_names_the_ca_the_log_the_sidecars_and_the_fixes() {
        let w = olaf().await;
        let r = w.run(&["check", "-n", "olaf"]).await;
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", r.stdout);
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["NAMESPACE", "POLICY", "ISSUER", "JWKS", "STATUS", "DETAIL"]
        );
        assert!(lines[1].starts_with("olaf "), "{}", lines[1]);
        assert!(lines[1].contains("jwt-olaf"));
        assert!(lines[1].contains("UNTRUSTED CA"));
        assert!(lines[1].contains("\"Olaf Private Root CA\""));
        assert!(
            lines[1].contains("1/1 sidecars hold the FakeJwks placeholder key"),
            "{}",
            lines[1]
        );
        // stderr: istiod's own words, the sidecar, the fixes
        assert!(
            r.stderr
                .contains("istiod: 2026-11-24T10:00:01.000000Z\terror")
                || r.stderr
                    .contains("istiod: 2026-11-24T10:00:01.000000Z error"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("x509: certificate signed by unknown authority")
        );
        assert!(r.stderr.contains("using public-only JWKS"));
        assert!(
            r.stderr
                .contains("sidecar olaf/customer-1: holds the FakeJwks placeholder key"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("other-1"), "not selected by the policy");
        let origin = w.jwks.base_url().to_string();
        assert!(
            r.stderr.contains(&format!(
                "kubectl jwks-trust add-ca --from-url {origin} -i istio-system"
            )),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("kubectl jwks-trust inline jwt-olaf -n olaf --ca-file CA.pem")
        );
        assert!(
            w.writes().is_empty(),
            "check never writes: {:?}",
            w.writes()
        );

        let r = w
            .run(&["check", "-n", "olaf", "-o", "json", "--no-logs"])
            .await;
        assert_eq!(r.code, 1);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["kind"], "JwtRuleCheckList");
        let item = &v["items"][0];
        assert_eq!(item["status"], "UNTRUSTED CA");
        assert_eq!(item["kind"], "RequestAuthentication");
        assert_eq!(item["chain"][1]["subjectCn"], "Olaf Private Root CA");
        assert_eq!(item["sidecars"][0]["pod"], "olaf/customer-1");
        assert_eq!(item["sidecars"][0]["state"], "placeholder");
        assert!(item.get("istiodLog").is_none());

        // With the CA the keys fetch fine; the sidecar still holds the placeholder: still a problem.
        let ca = w.ca.to_str().unwrap().to_string();
        let r = w
            .run(&["check", "-n", "olaf", "--ca-file", &ca, "-o", "wide"])
            .await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stdout.contains(" OK "), "{}", r.stdout);
        assert!(r.stdout.contains("1 placeholder"), "{}", r.stdout);
        assert!(
            r.stderr
                .contains("kubectl rollout restart deployment/istiod -n istio-system"),
            "{}",
            r.stderr
        );

        // The user's token, judged by that sidecar through the port-forward.
        let token = w.jwks.token(
            "alice",
            "web",
            super::tokens::now(),
            Duration::from_secs(300),
        );
        let r = w
            .run(&["token", &token, "--pod", "customer-1", "-n", "olaf"])
            .await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stdout.contains("REJECTED"), "{}", r.stdout);
        assert!(
            r.stdout
                .contains("provider origins-0 holds the FakeJwks placeholder key")
        );
        let r = w
            .run(&["token", &token, "--pod", "other-1", "-n", "olaf"])
            .await;
        assert_eq!(r.code, 2, "no port-forward backend: an error: {}", r.stderr);

        // An empty namespace.
        let r = w.run(&["check", "-n", "nothing-here"]).await;
        assert_eq!(r.code, 0);
        assert!(r.stdout.is_empty());
        assert_eq!(
            r.stderr,
            "No JWT policies found in nothing-here namespace.\n"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn inline_then_refresh_after_rotation() {
        let w = olaf().await;
        let ca = w.ca.to_str().unwrap().to_string();
        // TLS is verified: without the CA, no keys.
        let r = w
            .run(&["inline", "jwt-olaf", "-n", "olaf", "--dry-run"])
            .await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("UNTRUSTED CA"), "{}", r.stderr);
        assert!(
            r.stderr.contains("hint: pass the CA with --ca-file"),
            "{}",
            r.stderr
        );
        // dry run: a diff, no write
        let r = w
            .run(&[
                "inline",
                "jwt-olaf",
                "-n",
                "olaf",
                "--dry-run",
                "--ca-file",
                &ca,
            ])
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout
                .contains(&format!("-    jwksUri: {}", w.jwks.jwks_uri())),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("+    jwks: "), "{}", r.stdout);
        assert!(
            r.stdout.contains("+    meshdebug.io/jwks-source: "),
            "{}",
            r.stdout
        );
        assert!(w.writes().is_empty());
        // for real
        let before_rv = w.ra()["metadata"]["resourceVersion"].clone();
        let r = w
            .run(&["inline", "jwt-olaf", "-n", "olaf", "--ca-file", &ca])
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(
            r.stderr
                .contains("rule 0: jwksUri replaced by 1 key(s) (kid olaf-key-1)"),
            "{}",
            r.stderr
        );
        let ra = w.ra();
        assert_ne!(ra["metadata"]["resourceVersion"], before_rv);
        let rule = &ra["spec"]["jwtRules"][0];
        assert!(rule.get("jwksUri").is_none());
        assert_eq!(rule["forwardOriginalToken"], true);
        let inline: serde_json::Value =
            serde_json::from_str(rule["jwks"].as_str().unwrap()).unwrap();
        assert_eq!(inline["keys"][0]["kid"], "olaf-key-1");
        assert_eq!(
            ra["metadata"]["annotations"]["meshdebug.io/jwks-source"],
            w.jwks.jwks_uri()
        );
        assert!(
            ra["metadata"]["annotations"]["meshdebug.io/jwks-fetched-at"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        // check now says INLINE, same as the source
        let r = w
            .run(&["check", "-n", "olaf", "--ca-file", &ca, "--no-proxies"])
            .await;
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("INLINE"), "{}", r.stdout);
        // nothing left to inline
        let r = w
            .run(&["inline", "jwt-olaf", "-n", "olaf", "--ca-file", &ca])
            .await;
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("has no JWT rule with a jwksUri"),
            "{}",
            r.stderr
        );

        // refresh: unchanged, then the issuer rotates its key
        let r = w.run(&["refresh", "-n", "olaf", "--ca-file", &ca]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("UNCHANGED"), "{}", r.stdout);
        w.jwks.rotate();
        let r = w
            .run(&["check", "-n", "olaf", "--ca-file", &ca, "--no-proxies"])
            .await;
        assert_eq!(r.code, 1);
        assert!(r.stdout.contains("INLINE (STALE)"), "{}", r.stdout);
        assert!(
            r.stderr.contains("kubectl jwks-trust refresh -n olaf"),
            "{}",
            r.stderr
        );
        let r = w
            .run(&["refresh", "-n", "olaf", "--ca-file", &ca, "--dry-run"])
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("olaf-key-2"), "{}", r.stdout);
        assert!(
            r.stderr
                .contains("WOULD UPDATE kid olaf-key-1 → kid olaf-key-2"),
            "{}",
            r.stderr
        );
        let r = w.run(&["refresh", "-n", "olaf", "--ca-file", &ca]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("UPDATED"), "{}", r.stdout);
        let inline: serde_json::Value =
            serde_json::from_str(w.ra()["spec"]["jwtRules"][0]["jwks"].as_str().unwrap()).unwrap();
        assert_eq!(inline["keys"][0]["kid"], "olaf-key-2");
        assert_eq!(
            w.ra()["metadata"]["annotations"]["meshdebug.io/jwks-source"],
            w.jwks.jwks_uri()
        );
        let r = w.run(&["refresh", "-n", "olaf", "--ca-file", &ca]).await;
        assert!(r.stdout.contains("UNCHANGED"), "{}", r.stdout);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn add_ca_and_remove_ca() {
        let w = olaf().await;
        let ca = w.ca.to_str().unwrap().to_string();
        // Not a terminal and no --yes: refuse.
        let r = w.run(&["add-ca", "--cert", &ca]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("stdin is not a terminal"), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("hint: review with --dry-run, then pass --yes")
        );
        assert!(
            r.stderr.contains(" 0 s:CN=Olaf Private Root CA"),
            "{}",
            r.stderr
        );
        // dry run: the Deployment diff, the operator warning, no write
        let r = w.run(&["add-ca", "--cert", &ca, "--dry-run"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("+        - mountPath: /cacerts"),
            "{}",
            r.stdout
        );
        assert!(
            r.stderr.contains("managed by istio-operator"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("spec.values.pilot.jwksResolverExtraRootCA")
        );
        assert!(!r.stdout.contains("BEGIN CERTIFICATE") && !r.stderr.contains("BEGIN CERTIFICATE"));
        assert!(w.writes().is_empty());
        // for real, from the server's chain
        let url = w.jwks.base_url().to_string();
        let r = w.run(&["add-ca", "--from-url", &url, "--yes"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains(" 1 s:CN=Olaf Private Root CA"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("verification here: UNTRUSTED CA"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("istiod is restarting"), "{}", r.stderr);
        let secret = w
            .api
            .store()
            .get("v1", "Secret", Some("istio-system"), "jwks-extra-cacerts")
            .unwrap();
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["extra.pem"].as_str().unwrap())
            .unwrap();
        let pem = String::from_utf8(pem).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1);
        assert!(pem.starts_with("# CN=Olaf Private Root CA"), "{pem}");
        let d = w.istiod();
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/cacerts");
        assert_eq!(
            d["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
            "jwks-extra-cacerts"
        );
        let hash =
            d["spec"]["template"]["metadata"]["annotations"]["meshdebug.io/extra-cacerts-sha256"]
                .clone();
        assert!(hash.is_string());
        // idempotent: the same CA from the file is already there
        w.api.clear_requests();
        let r = w.run(&["add-ca", "--cert", &ca, "--yes"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
        assert!(w.writes().is_empty(), "{:?}", w.writes());
        // check now uses istiod's bundle: the fetch is OK, istiod must restart to use it
        let r = w.run(&["check", "-n", "olaf"]).await;
        assert!(r.stdout.contains(" OK "), "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains("it reads /cacerts/extra.pem only at start"),
            "{}",
            r.stderr
        );
        // remove-ca undoes it
        let r = w.run(&["remove-ca", "--yes"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            w.api
                .store()
                .get("v1", "Secret", Some("istio-system"), "jwks-extra-cacerts")
                .is_none()
        );
        let d = w.istiod();
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]
                .get("volumeMounts")
                .is_none_or(|m| m.as_array().unwrap().is_empty())
        );
        let r = w.run(&["remove-ca", "--yes"]).await;
        assert_eq!(r.code, 0);
        assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stale_resource_version_is_a_conflict() {
        let w = olaf().await;
        let cluster = meshdebug::cluster::connect(&meshdebug::cluster::ClusterOptions {
            kubeconfig: Some(w.kubeconfig.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        let p = meshdebug::jwks::policy::get(&cluster, "olaf", "jwt-olaf", "istio-system")
            .await
            .unwrap();
        // Someone else changes the policy after we read it.
        let mut theirs = w.ra();
        theirs["metadata"]["labels"] = json!({"changed": "yes"});
        w.api.store().apply(theirs).unwrap();
        let ours =
            meshdebug::jwks::fix::inline_rule(&p.object, p.kind, 0, "{\"keys\":[]}", "u", "t")
                .unwrap();
        let written = meshdebug::jwks::policy::replace(&cluster, &p, &ours)
            .await
            .unwrap();
        assert!(!written, "a stale resourceVersion must conflict");
        assert_eq!(w.ra()["metadata"]["labels"]["changed"], "yes");
    }
}
