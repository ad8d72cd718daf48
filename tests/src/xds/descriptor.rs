//! The protobuf schema of the Envoy v3 API that the ADS server converts JSON resources with.
//!
//! `envoy-api.binpb` (beside this file) is a `google.protobuf.FileDescriptorSet` holding the
//! files that define [`ROOTS`] and everything they import, without comments, custom options
//! (PGV/udpa annotations; prost-types drops them on decoding) or the annotation files themselves. It is cut from the complete Envoy
//! API descriptor set that the `envoy-types` crate ships (`src/generated/types.bin`, Envoy
//! API as of envoy-types 0.7.7) by the ignored test `tests::regenerate`:
//!
//! ```text
//! MESHSIM_ENVOY_DESCRIPTORS=$HOME/.cargo/registry/src/*/envoy-types-0.7.7/src/generated/types.bin \
//!   cargo test -p meshsim --lib xds::descriptor::tests::regenerate -- --ignored
//! ```
//!
//! Add a message to [`ROOTS`] and regenerate when the config generator starts using a new
//! `typed_config` type; until then a resource using it is rejected with "message ... not found".

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// Messages the pool must be able to decode: the four xDS resource types, the types embedded
/// in them as `Any` (filters, access loggers, transport sockets, protocol options), and the
/// ADS request/response.
pub const ROOTS: &[&str] = &[
    "envoy.config.cluster.v3.Cluster",
    "envoy.config.listener.v3.Listener",
    "envoy.config.route.v3.RouteConfiguration",
    "envoy.config.endpoint.v3.ClusterLoadAssignment",
    "envoy.config.core.v3.Node",
    "envoy.service.discovery.v3.DiscoveryRequest",
    "envoy.service.discovery.v3.DiscoveryResponse",
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.filters.network.rbac.v3.RBAC",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
    "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
];

const BYTES: &[u8] = include_bytes!("envoy-api.binpb");

/// The descriptor pool, decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    // The file is checked by the unit test `every_root_is_there`; a broken file must fail loudly.
    #[allow(clippy::expect_used)]
    POOL.get_or_init(|| {
        DescriptorPool::decode(BYTES)
            .expect("tests/src/xds/envoy-api.binpb is a valid FileDescriptorSet")
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use prost::Message as _;
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    use super::*;

    /// Imports that only carry custom options; dropped with the options themselves.
    fn annotation_only(file: &str) -> bool {
        file == "validate/validate.proto"
            || file.starts_with("udpa/annotations/")
            || file.starts_with("xds/annotations/")
            || file.starts_with("envoy/annotations/")
    }

    #[test]
    fn every_root_is_there() {
        for root in ROOTS {
            assert!(
                pool().get_message_by_name(root).is_some(),
                "{root} missing: regenerate envoy-api.binpb"
            );
        }
    }

    #[test]
    #[ignore = "regenerates envoy-api.binpb from MESHSIM_ENVOY_DESCRIPTORS"]
    fn regenerate() {
        let src =
            std::env::var("MESHSIM_ENVOY_DESCRIPTORS").expect("set MESHSIM_ENVOY_DESCRIPTORS");
        let full = DescriptorPool::decode(std::fs::read(&src).unwrap().as_slice()).unwrap();
        let by_name: HashMap<String, FileDescriptorProto> = full
            .files()
            .map(|f| (f.name().to_owned(), f.file_descriptor_proto().clone()))
            .collect();
        // depth-first, dependencies before dependents
        fn visit(
            name: &str,
            by_name: &HashMap<String, FileDescriptorProto>,
            seen: &mut BTreeSet<String>,
            out: &mut Vec<FileDescriptorProto>,
        ) {
            if annotation_only(name) || !seen.insert(name.to_owned()) {
                return;
            }
            let mut f = by_name
                .get(name)
                .unwrap_or_else(|| panic!("{name} not in the source set"))
                .clone();
            for dep in &f.dependency {
                visit(dep, by_name, seen, out);
            }
            assert!(
                f.public_dependency.is_empty() && f.weak_dependency.is_empty(),
                "{name}: public/weak imports unsupported"
            );
            f.dependency.retain(|d| !annotation_only(d));
            f.source_code_info = None;
            out.push(f);
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for root in ROOTS {
            let msg = full
                .get_message_by_name(root)
                .unwrap_or_else(|| panic!("{root} not in {src}"));
            visit(msg.parent_file().name(), &by_name, &mut seen, &mut out);
        }
        let set = FileDescriptorSet { file: out };
        let bytes = set.encode_to_vec();
        DescriptorPool::decode(bytes.as_slice()).expect("the subset is self-contained");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/xds/envoy-api.binpb");
        std::fs::write(&path, &bytes).unwrap();
        eprintln!(
            "wrote {} files, {} bytes to {}",
            set.file.len(),
            bytes.len(),
            path.display()
        );
    }
}
