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
        let d = meshdebug::dump::ConfigDump::from_bytes(
            bytes.into(),
            Some(meshdebug::dump::SectionKind::Clusters),
        )
        .unwrap();
        lap("parse (clusters only)", &mut t0);
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
