//! Putting the previous levels back on every proxy that was changed (`--for`, Ctrl-C, SIGTERM).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::Error;
use super::apply;
use super::follow::chain;
use super::model::{Level, Loggers};
use super::plan;
use crate::admin::{self, Endpoint};
use crate::cluster::{Cluster, DEFAULT_ADMIN_PORT, DEFAULT_CONTAINER};
use crate::fanout;

/// What one proxy had before the change.
#[derive(Debug, Clone)]
pub struct Saved<'a> {
    /// Where it is.
    pub endpoint: &'a Endpoint,
    /// `namespace/name` or the URL.
    pub label: &'a str,
    /// Every logger's level before the change.
    pub before: &'a Loggers,
    /// The loggers the change set (for the by-hand command).
    pub touched: Vec<String>,
}

/// Put back each proxy's previous levels over a fresh connection (the first one may have idled
/// out). Reports each proxy on stderr; the first failure is the error, with the command that
/// sets the levels back by hand.
pub async fn restore_all(
    cluster: Option<&Cluster>,
    saved: Vec<Saved<'_>>,
    concurrency: usize,
    timeout: Option<Duration>,
    err: &mut dyn Write,
) -> crate::Result<()> {
    let bar = fanout::progress(saved.len(), "restoring");
    let results = fanout::run(saved, concurrency, &bar, |s| async move {
        let mut c = admin::open(cluster, s.endpoint, timeout).await?;
        apply::restore(&mut c, s.before).await
    })
    .await;
    let mut failed = Vec::new();
    for (s, r) in results {
        match r {
            Ok(set) => {
                let _ = writeln!(err, "restored {} on {}", restored_text(&set), s.label);
            }
            Err(e) => {
                let command = format!(
                    "kubectl envoy-log {} {}",
                    target_args(s.endpoint),
                    plan::restore_args(s.before, &s.touched).join(" ")
                );
                failed.push(Error::Restore {
                    target: s.label.to_string(),
                    command,
                    source: Box::new(e),
                });
            }
        }
    }
    let mut failed = failed.into_iter();
    let Some(first) = failed.next() else {
        return Ok(());
    };
    for e in failed {
        let _ = writeln!(err, "error: {}", chain(&e));
        if let Some(h) = crate::Hint::hint(&e) {
            let _ = writeln!(err, "hint: {h}");
        }
    }
    Err(first.into())
}

/// `rbac=warning`, or `the previous levels of 72 loggers`.
fn restored_text(set: &BTreeMap<String, Level>) -> String {
    match set.len() {
        0 => "the previous levels (nothing had changed)".to_string(),
        1..=4 => set
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        n => format!("the previous levels of {n} loggers"),
    }
}

/// How to name a proxy on the command line again.
fn target_args(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Url(u) => format!("--admin-url {u}"),
        Endpoint::Pod(p) => {
            let mut s = format!("-n {} {}", p.namespace, p.name);
            if p.container != DEFAULT_CONTAINER {
                s.push_str(&format!(" -c {}", p.container));
            }
            if p.admin_port != DEFAULT_ADMIN_PORT {
                s.push_str(&format!(" --admin-port {}", p.admin_port));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_texts() {
        assert_eq!(
            restored_text(&BTreeMap::from([("rbac".into(), Level::Warning)])),
            "rbac=warning"
        );
        let many: BTreeMap<String, Level> =
            (0..10).map(|i| (format!("l{i}"), Level::Info)).collect();
        assert_eq!(restored_text(&many), "the previous levels of 10 loggers");
    }

    #[test]
    fn target_args_name_the_proxy_again() {
        assert_eq!(
            target_args(&Endpoint::Url("http://127.0.0.1:1".into())),
            "--admin-url http://127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn failed_restore_says_how_to_do_it_by_hand() {
        let ep = Endpoint::Url("http://127.0.0.1:1".into());
        let before =
            Loggers::parse("active loggers:\n  rbac: info\n  http: warning\n", "x").unwrap();
        let saved = vec![Saved {
            endpoint: &ep,
            label: "http://127.0.0.1:1",
            before: &before,
            touched: vec!["rbac".into()],
        }];
        let mut err = Vec::new();
        let e = restore_all(None, saved, 1, Some(Duration::from_secs(2)), &mut err)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "restoring the previous log levels on http://127.0.0.1:1 failed"
        );
        assert_eq!(
            crate::Hint::hint(&e).unwrap(),
            "set them back by hand: kubectl envoy-log --admin-url http://127.0.0.1:1 rbac=info"
        );
    }
}
