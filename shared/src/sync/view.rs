//! Syncz answers of every replica → one sorted list of proxies → table rows.

use k8s_openapi::jiff::{self, Timestamp};

use super::model::Syncz;
use super::status::{ProxyStatus, human_duration, parse_time};
use crate::render::{Cell, Tabular, Tone};

/// The proxies of one syncz answer, borrowing its strings.
pub fn proxies_of<'a>(s: &'a Syncz<'_>) -> Box<dyn Iterator<Item = ProxyStatus<'a>> + 'a> {
    match s {
        Syncz::Http { istiod, proxies } => Box::new(
            proxies
                .iter()
                .map(move |p| ProxyStatus::from_http(p, istiod)),
        ),
        Syncz::Xds { istiod, response } => Box::new(
            response
                .resources
                .iter()
                .map(move |c| ProxyStatus::from_xds(c, istiod)),
        ),
    }
}

/// Merge the answers of all replicas (a proxy is connected to one; should it show up at two,
/// both rows stay), keep only `namespace` if given, sort by name then istiod, and fill in the
/// age of the newest push relative to `now`. The rows borrow from `answers`.
pub fn merge<'a>(
    answers: &'a [Syncz<'_>],
    namespace: Option<&str>,
    now: Timestamp,
) -> Vec<ProxyStatus<'a>> {
    let total = answers.iter().map(Syncz::len).sum();
    let mut rows: Vec<ProxyStatus<'a>> = Vec::with_capacity(total);
    for a in answers {
        rows.extend(proxies_of(a).filter(|p| namespace.is_none_or(|ns| p.namespace == ns)));
    }
    // The types of a proxy are often pushed at once: parse each distinct time once.
    let mut last: Option<(&str, Option<Timestamp>)> = None;
    let ages: Vec<Option<jiff::SignedDuration>> = rows
        .iter()
        .map(|p| {
            let mut newest: Option<Timestamp> = None;
            for (_, t) in p.types() {
                let Some(s) = t.last_sent.as_deref() else {
                    continue;
                };
                let parsed = match last {
                    Some((text, t)) if text == s => t,
                    _ => {
                        let t = parse_time(s);
                        last = Some((s, t));
                        t
                    }
                };
                newest = newest.max(parsed);
            }
            newest.map(|t| now.duration_since(t))
        })
        .collect();
    for (p, age) in rows.iter_mut().zip(ages) {
        p.last_sent_age = age;
    }
    // Sort positions, then move each row at most once: a row is ~400 bytes, too big to be
    // swapped around by the sort itself.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&rows[a], &rows[b]);
        (&a.name, &a.istiod).cmp(&(&b.name, &b.istiod))
    });
    permute(&mut rows, order);
    rows
}

/// Reorder `items` in place so that `items[k]` becomes the old `items[order[k]]` (`order` is a
/// permutation of the positions): each cycle of the permutation is walked once, n swaps at most.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        let mut cur = start;
        while order[cur] != cur {
            let next = order[cur];
            order[cur] = cur;
            if next == start {
                break;
            }
            items.swap(cur, next);
            cur = next;
        }
    }
}

/// The proxies that are not in sync (some type STALE or ERROR).
pub fn laggards<'r, 'a>(rows: &'r [ProxyStatus<'a>]) -> Vec<&'r ProxyStatus<'a>> {
    rows.iter().filter(|p| p.has_drift()).collect()
}

/// One line per laggard for stderr: `name: CDS STALE, LDS ERROR (nack text)`.
pub fn describe_laggard(p: &ProxyStatus<'_>) -> String {
    let parts: Vec<String> = p
        .types()
        .iter()
        .filter(|(_, t)| t.state.is_drift())
        .map(|(n, t)| match &t.error {
            Some(e) => format!("{n} {} ({e})", t.state),
            None => format!("{n} {}", t.state),
        })
        .collect();
    format!("{} (istiod {}): {}", p.name, p.istiod, parts.join(", "))
}

/// The last 8 characters of a nonce: enough to tell two apart.
fn short(nonce: &str) -> &str {
    match nonce.char_indices().rev().nth(7) {
        Some((i, _)) => &nonce[i..],
        None => nonce,
    }
}

impl Tabular for ProxyStatus<'_> {
    const KIND: &'static str = "ProxyStatus";

    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION",
        ];
        if wide {
            h.extend(["TYPE", "LAST SENT", "NONCES", "ERROR"]);
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let mut r = vec![
            Cell::plain(self.name.as_ref()),
            Cell::or_none(self.cluster.as_ref()),
        ];
        for (_, t) in self.types() {
            r.push(Cell::toned(t.state.label(), t.state.tone()));
        }
        r.push(Cell::or_none(self.istiod.as_ref()));
        r.push(Cell::or_none(self.version.as_ref()));
        if wide {
            r.push(Cell::or_none(self.proxy_type.as_ref()));
            r.push(Cell::or_none(
                self.last_sent_age.map(human_duration).unwrap_or_default(),
            ));
            let nonces: Vec<String> = self
                .types()
                .iter()
                .filter_map(|(n, t)| {
                    let sent = t.sent.as_deref()?;
                    Some(format!(
                        "{n}={}/{}",
                        short(sent),
                        t.acked.as_deref().map(short).unwrap_or("-")
                    ))
                })
                .collect();
            r.push(Cell::or_none(nonces.join(",")));
            let errors: Vec<String> = self
                .types()
                .iter()
                .filter_map(|(n, t)| Some(format!("{n}: {}", t.error.as_deref()?)))
                .collect();
            r.push(if errors.is_empty() {
                Cell::plain("<none>")
            } else {
                Cell::toned(errors.join("; "), Tone::Bad)
            });
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{OutputFormat, RenderOptions, write_rows};
    use crate::sync::model::{istiod_from_file_name, parse_syncz};
    use std::path::{Path, PathBuf};

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/istio")
            .join(rel)
    }

    fn load(rel: &str, istiod: &str) -> Vec<Syncz<'static>> {
        let p = fixture(rel);
        let bytes = std::fs::read(&p).unwrap();
        parse_syncz(&p, istiod, &bytes)
            .unwrap()
            .into_iter()
            .map(Syncz::into_owned)
            .collect()
    }

    fn now() -> Timestamp {
        "2024-06-20T10:05:00Z".parse().unwrap()
    }

    fn table(rows: &[ProxyStatus], format: OutputFormat) -> String {
        let mut out = Vec::new();
        let opts = RenderOptions {
            format,
            color: false,
        };
        write_rows(rows, &opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Cells of a table, split on runs of 2+ spaces (our gap is 3, istioctl's 5).
    fn cells(text: &str) -> Vec<Vec<String>> {
        let re = regex::Regex::new(r" {2,}").unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| re.split(l.trim_end()).map(str::to_string).collect())
            .collect()
    }

    fn golden(rel: &str) -> Vec<Vec<String>> {
        cells(&std::fs::read_to_string(fixture(rel)).unwrap())
    }

    #[test]
    fn permutations_in_place() {
        for order in [
            vec![],
            vec![0],
            vec![2, 0, 1],
            vec![1, 0, 3, 2],
            vec![4, 3, 2, 1, 0],
            vec![3, 0, 4, 1, 2],
        ] {
            let old: Vec<usize> = (0..order.len()).map(|i| i * 10).collect();
            let want: Vec<usize> = order.iter().map(|&i| old[i]).collect();
            let mut items = old.clone();
            permute(&mut items, order);
            assert_eq!(items, want);
        }
    }

    #[test]
    fn http_multi_replica_matches_istioctl_1_21() {
        let mut answers = Vec::new();
        for i in 1..=4 {
            answers.extend(load(
                &format!("v1.21/ps/derived-inputs/istiod{i}.syncz.json"),
                &format!("istiod{i}"),
            ));
        }
        let rows = merge(&answers, None, now());
        assert_eq!(
            cells(&table(&rows, OutputFormat::Table)),
            golden("v1.21/ps/multiStatusMultiPilot.txt")
        );
    }

    #[test]
    fn http_single_replica_and_fallback_version() {
        let answers = load(
            "v1.21/ps/derived-inputs/istiod1-single.syncz.json",
            "istiod1",
        );
        let rows = merge(&answers, None, now());
        assert_eq!(
            cells(&table(&rows, OutputFormat::Table)),
            golden("v1.21/ps/multiStatusSinglePilot.txt")
        );
        let answers = load(
            "v1.21/ps/derived-inputs/istiod2-fallback.syncz.json",
            "istiod2",
        );
        let rows = merge(&answers, None, now());
        assert_eq!(
            cells(&table(&rows, OutputFormat::Table)),
            golden("v1.21/ps/singleStatusFallback.txt")
        );
    }

    #[test]
    fn legacy_pilot_columns_match_the_2020_golden() {
        // istioctl ≤1.6: NAME CDS LDS EDS RDS PILOT VERSION — same cells, fewer columns.
        let mut answers = Vec::new();
        for (i, name) in [(1, "pilot1"), (2, "pilot2"), (3, "pilot3")] {
            answers.extend(load(
                &format!("v1.21/ps/derived-inputs/istiod{i}.syncz.json"),
                name,
            ));
        }
        let ours = cells(&table(&merge(&answers, None, now()), OutputFormat::Table));
        let keep = [0usize, 2, 3, 4, 5, 7, 8];
        let ours: Vec<Vec<String>> = ours
            .iter()
            .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
            .collect();
        let mut want = golden("legacy-2020/ps/multiStatusMultiPilot.txt");
        want[0][5] = "ISTIOD".into();
        assert_eq!(ours, want);
    }

    #[test]
    fn xds_rows() {
        let answers = load("current/ps-xds/multiXdsStatusSinglePilot.json", "x");
        let rows = merge(&answers, None, now());
        insta::assert_snapshot!(table(&rows, OutputFormat::Table), @r"
        NAME     CLUSTER    CDS     LDS      EDS      RDS        ECDS     ISTIOD    VERSION
        proxy1   cluster1   STALE   SYNCED   SYNCED   NOT SENT   SYNCED   istiod1   1.20
        ");
    }

    #[test]
    fn namespace_filter_and_sort() {
        let mut answers = load("current/ps-xds/multiXdsStatusSingleNamespace.yaml", "x");
        answers.extend(load(
            "derived/http-debug-syncz.modern.example.json",
            "istiod-b",
        ));
        let all = merge(&answers, None, now());
        assert_eq!(
            all.iter().map(|p| p.name.as_ref()).collect::<Vec<_>>(),
            ["productpage-v1-6987489c74-wchxv.default", "proxy1"]
        );
        let foo = merge(&answers, Some("foo"), now());
        assert_eq!(foo.len(), 1);
        assert_eq!(foo[0].name, "proxy1");
    }

    #[test]
    fn wide_adds_type_age_nonces_and_errors() {
        let answers = load("derived/http-debug-syncz.modern.example.json", "istiod-b");
        let rows = merge(&answers, None, now());
        insta::assert_snapshot!(table(&rows, OutputFormat::Wide), @r"
        NAME                                      CLUSTER      CDS      LDS      EDS      RDS     ECDS       ISTIOD     VERSION   TYPE      LAST SENT   NONCES                                                                                    ERROR
        productpage-v1-6987489c74-wchxv.default   Kubernetes   SYNCED   SYNCED   SYNCED   STALE   NOT SENT   istiod-b   1.24.0    sidecar   4m59s       CDS=00000001/00000001,LDS=00000002/00000002,EDS=00000004/00000004,RDS=00000003/00000099   <none>
        ");
        assert_eq!(laggards(&rows).len(), 1);
        assert_eq!(
            describe_laggard(laggards(&rows)[0]),
            "productpage-v1-6987489c74-wchxv.default (istiod istiod-b): RDS STALE"
        );
    }

    #[test]
    fn json_is_the_typed_list() {
        let answers = load("v1.21/ps/derived-inputs/istiod3.syncz.json", "istiod3");
        let rows = merge(&answers, None, now());
        let v: serde_json::Value = serde_json::from_str(&table(&rows, OutputFormat::Json)).unwrap();
        assert_eq!(v["kind"], "ProxyStatusList");
        assert_eq!(v["apiVersion"], "meshdebug.io/v1");
        let item = &v["items"][0];
        assert_eq!(item["name"], "proxy3");
        assert_eq!(item["cds"]["state"], "STALE_NEVER_ACKNOWLEDGED");
        assert_eq!(item["lds"]["state"], "NOT_SENT");
        assert_eq!(item["lds"]["acked"], "5f0c3a1e-0000-4000-8000-000000000001");
        assert_eq!(item["rds"]["state"], "SYNCED");
    }

    #[test]
    fn file_names_name_the_istiod() {
        assert_eq!(
            istiod_from_file_name(&fixture("v1.21/ps/derived-inputs/istiod2.syncz.json")),
            "istiod2"
        );
    }
}
