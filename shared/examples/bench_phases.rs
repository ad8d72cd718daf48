//! TEMPORARY (meshsim-bench profiling): time the phases of envoy-dump clusters -f and mesh-sync -f.
#![allow(clippy::unwrap_used, clippy::print_stderr)]
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    let lap = |what: &str, t: &mut Instant| {
        eprintln!("{what:<28} {:>8.1} ms", t.elapsed().as_secs_f64() * 1000.0);
        *t = Instant::now();
    };
    let mut t0 = t;
    let ro = meshdebug::render::RenderOptions::default();
    if args[1] == "dump" {
        let bytes = std::fs::read(&args[2]).unwrap();
        lap("read", &mut t0);
        for _ in 0..3 {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).unwrap();
        lap("floor parse", &mut t0);
        let b = bytes::Bytes::from(bytes.clone());
        lap("copy", &mut t0);
        meshdebug::dump::ConfigDump::from_bytes(b, Some(meshdebug::dump::SectionKind::Secrets)).unwrap();
        lap("wire scan (secrets only)", &mut t0);
        }
        let d = meshdebug::dump::ConfigDump::from_bytes(
            bytes.into(),
            Some(meshdebug::dump::SectionKind::Clusters),
        )
        .unwrap();
        lap("parse (clusters only)", &mut t0);
        let sec = d.sections.iter().find(|s| s.type_url.ends_with("ClustersConfigDump")).unwrap().raw_bytes().to_vec();
        lap("copy section", &mut t0);
        for _ in 0..3 {
            serde_json::from_slice::<serde::de::IgnoredAny>(&sec).unwrap();
            lap("section ignored", &mut t0);
            serde_json::from_slice::<meshdebug::dump::clusters::ClustersDump>(&sec).unwrap();
            lap("section typed", &mut t0);
            #[derive(serde::Deserialize)]
            struct E { #[allow(dead_code)] cluster: Option<C> }
            #[derive(serde::Deserialize)]
            struct C { #[allow(dead_code)] name: String }
            #[derive(serde::Deserialize)]
            struct D { #[allow(dead_code)] dynamic_active_clusters: Vec<E> }
            serde_json::from_slice::<D>(&sec).unwrap();
            lap("section names only", &mut t0);
        }
        let rows =
            meshdebug::dump::clusters::cluster_rows(d.clusters().unwrap(), &Default::default());
        lap("rows", &mut t0);
        let mut out = Vec::new();
        meshdebug::render::write_rows(&rows, &ro, &mut out).unwrap();
        lap("render", &mut t0);
        eprintln!("{} rows, {} bytes", rows.len(), out.len());
    } else {
        let mut answers = Vec::new();
        for f in &args[2..] {
            let bytes = std::fs::read(f).unwrap();
            lap("read", &mut t0);
            let p = std::path::Path::new(f);
            answers.extend(
                meshdebug::sync::model::parse_syncz(
                    p,
                    &meshdebug::sync::model::istiod_from_file_name(p),
                    &bytes,
                )
                .unwrap(),
            );
            lap("parse", &mut t0);
        }
        let rows =
            meshdebug::sync::view::merge(&answers, None, k8s_openapi::jiff::Timestamp::now());
        lap("merge", &mut t0);
        let mut out = Vec::new();
        meshdebug::render::write_rows(&rows, &ro, &mut out).unwrap();
        lap("render", &mut t0);
        eprintln!("{} rows, {} bytes", rows.len(), out.len());
    }
    eprintln!("total {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
}
