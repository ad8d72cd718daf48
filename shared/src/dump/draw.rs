//! Drawing the rows of one or many sources: one table (a `POD` column for several pods) or a
//! json/yaml list; `all` draws every table; `jwt` warns about placeholder keys.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::command::{Parts, View};
use super::jwt::{JwtRow, placeholder_warning};
use super::secrets::{SecretRow, SpiffeSecretRow};
use super::view::{AllData, ViewData};
use crate::render::{
    API_VERSION, Envelope, OutputFormat, PodRow, RenderOptions, Tabular, write_json, write_rows,
    write_yaml,
};

pub(super) fn rows_of<T>(
    parts: Vec<(Option<String>, ViewData)>,
    mut take: impl FnMut(ViewData) -> Option<Vec<T>>,
) -> Vec<(Option<String>, Vec<T>)> {
    parts
        .into_iter()
        .filter_map(|(pod, data)| take(data).map(|rows| (pod, rows)))
        .collect()
}

/// Draw one table (or json/yaml list) over all sources; `POD` column when `multi`.
pub(super) fn emit<T: Tabular + Serialize + Clone>(
    parts: Vec<(Option<String>, Vec<T>)>,
    multi: bool,
    opts: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    none_found: &str,
) -> Result<(), crate::Error> {
    let empty = parts.iter().all(|(_, rows)| rows.is_empty());
    if multi {
        let rows: Vec<PodRow<T>> = parts
            .into_iter()
            .flat_map(|(pod, rows)| {
                let pod = pod.unwrap_or_default();
                rows.into_iter().map(move |row| PodRow {
                    pod: pod.clone(),
                    row,
                })
            })
            .collect();
        write_rows(&rows, opts, out)?;
    } else {
        let rows: Vec<T> = parts.into_iter().flat_map(|(_, rows)| rows).collect();
        write_rows(&rows, opts, out)?;
    }
    if empty && opts.format.is_table() {
        let _ = writeln!(err, "{none_found}");
    }
    Ok(())
}

pub(super) fn render(
    view: &View,
    ro: &RenderOptions,
    parts: Parts,
    multi: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    match view {
        View::Clusters(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Clusters(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No clusters found.",
        ),
        View::Listeners(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Listeners(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No listeners found.",
        ),
        View::Routes(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Routes(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No routes found.",
        ),
        View::Endpoints(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Endpoints(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No endpoints found.",
        ),
        View::Secrets => {
            let parts = rows_of(parts, |d| match d {
                ViewData::Secrets(r) => Some(r),
                _ => None,
            });
            emit_secrets(parts, multi, ro, out, err)
        }
        View::Jwt => {
            let parts = rows_of(parts, |d| match d {
                ViewData::Jwt(r) => Some(r),
                _ => None,
            });
            warn_placeholders(&parts, err);
            emit(parts, multi, ro, out, err, "No JWT providers found.")
        }
        View::Rbac => emit(
            rows_of(parts, |d| match d {
                ViewData::Rbac(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No RBAC policies found.",
        ),
        View::Stats { .. } => emit(
            rows_of(parts, |d| match d {
                ViewData::Stats(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No stats found.",
        ),
        View::Bootstrap => render_bootstrap(parts, multi, ro, out, err),
        View::All => render_all(parts, multi, ro, out, err),
        View::Raw(_) | View::Dashboard(_) => Ok(()),
    }
}

pub(super) fn emit_secrets(
    parts: Vec<(Option<String>, Vec<SecretRow>)>,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    const NONE: &str = "No active or warming secrets found.";
    let all_have_domain = parts.iter().any(|(_, r)| !r.is_empty())
        && parts
            .iter()
            .flat_map(|(_, r)| r)
            .all(|r| r.trust_domain.is_some());
    if all_have_domain && ro.format == OutputFormat::Table {
        let parts = parts
            .into_iter()
            .map(|(p, rows)| (p, rows.into_iter().map(SpiffeSecretRow).collect()))
            .collect();
        emit::<SpiffeSecretRow>(parts, multi, ro, out, err, NONE)
    } else {
        emit(parts, multi, ro, out, err, NONE)
    }
}

pub(super) fn warn_placeholders(parts: &[(Option<String>, Vec<JwtRow>)], err: &mut dyn Write) {
    let mut seen = std::collections::BTreeSet::new();
    for (pod, rows) in parts {
        let origin = pod
            .as_ref()
            .map(|p| format!("pod {p}: "))
            .unwrap_or_default();
        for row in rows {
            let key = (
                pod.clone(),
                row.issuer.clone(),
                row.jwks.clone(),
                row.provider.clone(),
            );
            if let Some(w) = placeholder_warning(&origin, row)
                && seen.insert(key)
            {
                let _ = writeln!(err, "warning: {w}");
            }
        }
    }
}

pub(super) fn render_bootstrap(
    parts: Parts,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    let mut fields = Vec::new();
    let mut sections = Vec::new();
    for (pod, data) in parts {
        if let ViewData::Bootstrap { fields: f, section } = data {
            fields.push((pod.clone(), f));
            sections.push((pod, section));
        }
    }
    if ro.format.is_table() {
        return emit(fields, multi, ro, out, err, "No bootstrap found.");
    }
    let to_value =
        |raw: &RawValue| -> Value { serde_json::from_str(raw.get()).unwrap_or(Value::Null) };
    // The same shape whatever the count: a list of {pod, bootstrap}, the full
    // BootstrapConfigDump section in `bootstrap` (pod omitted for -f and --admin-url).
    #[derive(Serialize)]
    struct Item {
        #[serde(skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
        bootstrap: Value,
    }
    let items: Vec<Item> = sections
        .iter()
        .map(|(pod, s)| Item {
            pod: pod.clone(),
            bootstrap: to_value(s),
        })
        .collect();
    structured(&Envelope::list("BootstrapConfigDump", &items), ro, out)
}

pub(super) fn structured<T: Serialize>(
    value: &T,
    ro: &RenderOptions,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    if ro.format == OutputFormat::Yaml {
        write_yaml(value, out)?;
    } else {
        write_json(value, out)?;
    }
    Ok(())
}

pub(super) fn render_all(
    parts: Parts,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    let alls: Vec<(Option<String>, AllData)> = parts
        .into_iter()
        .filter_map(|(p, d)| match d {
            ViewData::All(a) => Some((p, *a)),
            _ => None,
        })
        .collect();
    if !ro.format.is_table() {
        #[derive(Serialize)]
        struct Single<'a> {
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            kind: &'static str,
            #[serde(flatten)]
            data: &'a AllData,
        }
        #[derive(Serialize)]
        struct Item<'a> {
            pod: String,
            #[serde(flatten)]
            data: &'a AllData,
        }
        if multi {
            let items: Vec<Item<'_>> = alls
                .iter()
                .map(|(p, d)| Item {
                    pod: p.clone().unwrap_or_default(),
                    data: d,
                })
                .collect();
            return structured(&Envelope::list("ProxyConfig", &items), ro, out);
        }
        return match alls.first() {
            Some((_, d)) => structured(
                &Single {
                    api_version: API_VERSION,
                    kind: "ProxyConfig",
                    data: d,
                },
                ro,
                out,
            ),
            None => Ok(()),
        };
    }
    fn collect<T>(
        alls: &[(Option<String>, AllData)],
        f: impl Fn(&AllData) -> Vec<T>,
    ) -> Vec<(Option<String>, Vec<T>)> {
        alls.iter().map(|(p, a)| (p.clone(), f(a))).collect()
    }
    // Each table into its own buffer; notes about empty tables are dropped.
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new(); 6];
    let mut sink = Vec::new();
    emit(
        collect(&alls, |a| a.bootstrap.clone()),
        multi,
        ro,
        &mut chunks[0],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.clusters.clone()),
        multi,
        ro,
        &mut chunks[1],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.listeners.clone()),
        multi,
        ro,
        &mut chunks[2],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.routes.clone()),
        multi,
        ro,
        &mut chunks[3],
        &mut sink,
        "",
    )?;
    emit_secrets(
        collect(&alls, |a| a.secrets.clone()),
        multi,
        ro,
        &mut chunks[4],
        &mut sink,
    )?;
    if alls.iter().all(|(_, a)| a.endpoints.is_none()) {
        let _ = writeln!(
            err,
            "note: a config_dump file has no endpoint health; for it run: kubectl envoy-dump endpoints -f CLUSTERS.json"
        );
    } else {
        emit(
            collect(&alls, |a| a.endpoints.clone().unwrap_or_default()),
            multi,
            ro,
            &mut chunks[5],
            &mut sink,
            "",
        )?;
    }
    let text: Vec<Vec<u8>> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    out.write_all(&text.join(&b"\n"[..]))
        .map_err(crate::render::Error::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::clusters::ClusterFilter;
    use crate::dump::endpoints::EndpointFilter;
    use crate::dump::listeners::ListenerFilter;
    use crate::dump::routes::RouteFilter;
    use crate::dump::view::{Fetched, build};
    use bytes::Bytes;

    /// Every view, built and drawn from our captures of the real Envoy (README beside them).
    fn captured(view: View, format: OutputFormat) -> (String, String) {
        use crate::dump::fixture::capture;
        let fetched = Fetched {
            dump: Some(Bytes::from(capture("config_dump.json"))),
            clusters: Some(Bytes::from(capture("clusters.json"))),
            stats: Some(Bytes::from(capture("stats.txt"))),
        };
        // 2026-01-01: certificates are judged against a fixed clock.
        let data = build(&view, fetched, "capture", 1_767_225_600).unwrap();
        let ro = RenderOptions {
            format,
            color: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        render(&view, &ro, vec![(None, data)], false, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn every_view_on_the_captured_envoy() {
        let mut text = String::new();
        for view in [
            View::Bootstrap,
            View::Clusters(ClusterFilter::default()),
            View::Listeners(ListenerFilter::default()),
            View::Routes(RouteFilter::default()),
            View::Endpoints(EndpointFilter::default()),
            View::Secrets,
            View::Jwt,
            View::Rbac,
            View::Stats {
                filter: Some("denied".into()),
            },
        ] {
            let (out, err) = captured(view.clone(), OutputFormat::Table);
            text.push_str(&format!("== {}\n{out}", view.name()));
            if !err.is_empty() {
                text.push_str(&format!("-- stderr\n{err}"));
            }
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn all_view_on_the_captured_envoy() {
        let (out, _) = captured(View::All, OutputFormat::Table);
        insta::assert_snapshot!(out);
        let (json, _) = captured(View::All, OutputFormat::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], "ProxyConfig");
        assert_eq!(v["clusters"].as_array().unwrap().len(), 5);
        assert!(v["endpoints"].as_array().is_some());
    }

    #[test]
    fn structured_output_is_a_typed_list() {
        let (json, _) = captured(View::Clusters(ClusterFilter::default()), OutputFormat::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kind"], "ClusterList");
        let reviews = &v["items"].as_array().unwrap()[4];
        assert_eq!(reviews["serviceFqdn"], "reviews.default.svc.cluster.local");
        assert_eq!(reviews["port"], 9080);
        assert_eq!(reviews["destinationRule"], "reviews.default");
        let (yaml, _) = captured(View::Rbac, OutputFormat::Yaml);
        assert!(yaml.contains("kind: RbacPolicyList"), "{yaml}");
        let (bootstrap, _) = captured(View::Bootstrap, OutputFormat::Json);
        let v: Value = serde_json::from_str(&bootstrap).unwrap();
        assert_eq!(v["kind"], "BootstrapConfigDumpList");
        assert_eq!(
            v["items"][0]["bootstrap"]["@type"],
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "bootstrap -o json carries the whole section"
        );
    }
}
