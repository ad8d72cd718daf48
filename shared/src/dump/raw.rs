//! The raw `/config_dump`: streamed in constant memory from a proxy, one file per pod with
//! `--output-dir`, or re-emitted (redacted, json or yaml) from a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::Error;
use super::command::{Options, RawOptions, Source, report_pod_error, resolve};
use super::secrets::redact;
use crate::admin::{self, AdminClient, ConfigDumpQuery, Endpoint};
use crate::cluster::{self, Cluster, ProxyPod};
use crate::render::{OutputFormat, write_json, write_yaml};
use crate::{ExitStatus, fanout};

// ---------------------------------------------------------------------------------------------
// Raw dump

pub(super) async fn raw(
    opts: &Options,
    r: &RawOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let yaml = opts.render.format == OutputFormat::Yaml;
    let query = ConfigDumpQuery {
        resource: r.resource.clone(),
        mask: None,
        name_regex: r.name_regex.clone(),
        include_eds: r.include_eds,
    };
    match &opts.source {
        Source::File(path) => {
            if r.output_dir.is_some() {
                return Err(Error::OutputDirNeedsPods.into());
            }
            let bytes = crate::input::read(path)?;
            let value = parse_value(&path.display().to_string(), &bytes)?;
            write_value(value, yaml, out)?;
            Ok(ExitStatus::Success)
        }
        Source::AdminUrl(url) => {
            if r.output_dir.is_some() {
                return Err(Error::OutputDirNeedsPods.into());
            }
            let mut client = admin::open(None, &Endpoint::Url(url.clone()), opts.timeout).await?;
            dump_to(&mut client, &query, yaml, url, out).await?;
            Ok(ExitStatus::Success)
        }
        Source::Pods { cluster, target } => {
            let cluster = cluster::connect(cluster).await?;
            let (pods, mut status) = resolve(&cluster, target, err).await?;
            if pods.is_empty() {
                return Ok(status);
            }
            let Some(dir) = &r.output_dir else {
                if pods.len() > 1 {
                    return Err(Error::NeedsOutputDir { count: pods.len() }.into());
                }
                for pod in &pods {
                    let mut client =
                        admin::open(Some(&cluster), &Endpoint::Pod(pod.clone()), opts.timeout)
                            .await?;
                    dump_to(&mut client, &query, yaml, &format!("pod {}", pod.id()), out).await?;
                }
                return Ok(status);
            };
            let bar = fanout::progress(pods.len(), "saving");
            let results = fanout::run(pods, fanout::DEFAULT_CONCURRENCY, &bar, |pod| {
                let (cluster, query) = (&cluster, &query);
                async move { save(cluster, &pod, query, dir, yaml, opts.timeout).await }
            })
            .await;
            for (pod, r) in results {
                match r {
                    Ok((path, bytes)) => {
                        let _ = writeln!(err, "wrote {} ({bytes} bytes)", path.display());
                    }
                    Err(e) => {
                        report_pod_error(err, &pod.id(), &e);
                        status = status.merge(ExitStatus::Error);
                    }
                }
            }
            Ok(status)
        }
    }
}

pub(super) fn parse_value(origin: &str, bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        let (line, column) = (source.line(), source.column());
        Error::Decode {
            origin: origin.to_string(),
            what: "Envoy config_dump".into(),
            line,
            column,
            offset: crate::input::byte_offset(bytes, line, column),
            source,
        }
    })
}

pub(super) fn write_value(
    mut value: Value,
    yaml: bool,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    redact(&mut value);
    if yaml {
        write_yaml(&value, out)?;
    } else {
        write_json(&value, out)?;
    }
    Ok(())
}

/// JSON: stream Envoy's (already pretty) answer in constant memory; YAML: convert.
pub(super) async fn dump_to(
    client: &mut AdminClient,
    query: &ConfigDumpQuery,
    yaml: bool,
    origin: &str,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    if yaml {
        let bytes = client.config_dump(query).await?;
        return write_value(parse_value(origin, &bytes)?, true, out);
    }
    let mut last = b'\n';
    client
        .get_streaming(&query.path(), &mut |chunk| {
            if let Some(b) = chunk.last() {
                last = *b;
            }
            out.write_all(chunk)
        })
        .await?;
    if last != b'\n' {
        out.write_all(b"\n").map_err(crate::render::Error::Io)?;
    }
    out.flush().map_err(crate::render::Error::Io)?;
    Ok(())
}

/// Save one pod's dump to `DIR/<namespace>/<pod>.json` (written to a temporary name, renamed
/// when complete).
pub(super) async fn save(
    cluster: &Cluster,
    pod: &ProxyPod,
    query: &ConfigDumpQuery,
    dir: &Path,
    yaml: bool,
    timeout: Option<Duration>,
) -> Result<(PathBuf, u64), crate::Error> {
    let ext = if yaml { "yaml" } else { "json" };
    let dir = dir.join(&pod.namespace);
    let path = dir.join(format!("{}.{ext}", pod.name));
    let tmp = dir.join(format!(".{}.{ext}.partial", pod.name));
    let write_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::WriteFile { path: p, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let result = async {
        let mut client = admin::open(Some(cluster), &Endpoint::Pod(pod.clone()), timeout).await?;
        let file = std::fs::File::create(&tmp).map_err(write_err(&tmp))?;
        let mut w = std::io::BufWriter::new(file);
        let origin = format!("pod {}", pod.id());
        if yaml {
            let bytes = client.config_dump(query).await?;
            let mut value = parse_value(&origin, &bytes)?;
            redact(&mut value);
            write_yaml(&value, &mut w)?;
        } else {
            client
                .get_streaming(&query.path(), &mut |chunk| w.write_all(chunk))
                .await?;
        }
        w.flush().map_err(write_err(&tmp))?;
        let file = w.into_inner().map_err(|e| Error::WriteFile {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(write_err(&tmp))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok::<u64, crate::Error>(len)
    }
    .await;
    match result {
        Ok(len) => {
            std::fs::rename(&tmp, &path).map_err(write_err(&path))?;
            Ok((path, len))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
