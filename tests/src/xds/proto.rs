//! The ADS wire messages, declared by hand with only the fields the server uses (tags checked
//! against the descriptor set in the tests below). `node` stays raw bytes and is decoded with
//! the descriptor pool, so its whole content (metadata included) can be shown as JSON.

/// `envoy.service.discovery.v3.DiscoveryRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoveryRequest {
    #[prost(string, tag = "1")]
    pub version_info: String,
    /// `envoy.config.core.v3.Node`, encoded.
    #[prost(bytes = "vec", tag = "2")]
    pub node: Vec<u8>,
    #[prost(string, repeated, tag = "3")]
    pub resource_names: Vec<String>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<RpcStatus>,
}

/// `google.rpc.Status` (a NACK's `error_detail`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.discovery.v3.DiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<prost_types::Any>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(message, optional, tag = "6")]
    pub control_plane: Option<ControlPlane>,
}

/// `envoy.config.core.v3.ControlPlane`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlPlane {
    #[prost(string, tag = "1")]
    pub identifier: String,
}

/// `envoy.service.status.v3.ClientConfig`, the resource of istiod's `istio.io/debug/syncz`
/// answer (tags from envoy-types' `envoy.service.status.v3`; that package is not in the
/// descriptor set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientConfig {
    #[prost(message, optional, tag = "1")]
    pub node: Option<StatusNode>,
    #[prost(message, repeated, tag = "3")]
    pub generic_xds_configs: Vec<GenericXdsConfig>,
}

/// The part of `envoy.config.core.v3.Node` istiod fills in a `ClientConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusNode {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<prost_types::Struct>,
}

/// `envoy.service.status.v3.ClientConfig.GenericXdsConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GenericXdsConfig {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(message, optional, tag = "5")]
    pub last_updated: Option<prost_types::Timestamp>,
    /// `envoy.service.status.v3.ConfigStatus`: 1 SYNCED, 2 NOT_SENT, 3 STALE, 4 ERROR.
    #[prost(int32, tag = "6")]
    pub config_status: i32,
    #[prost(message, optional, tag = "8")]
    pub error_state: Option<UpdateFailureState>,
}

/// `envoy.admin.v3.UpdateFailureState`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateFailureState {
    #[prost(message, optional, tag = "2")]
    pub last_update_attempt: Option<prost_types::Timestamp>,
    #[prost(string, tag = "3")]
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::super::descriptor::pool;

    fn tag(message: &str, field: &str) -> u32 {
        let m = pool().get_message_by_name(message).unwrap();
        m.get_field_by_name(field)
            .unwrap_or_else(|| panic!("{message}.{field}"))
            .number()
    }

    #[test]
    fn tags_match_the_envoy_api() {
        let req = "envoy.service.discovery.v3.DiscoveryRequest";
        for (f, t) in [
            ("version_info", 1),
            ("node", 2),
            ("resource_names", 3),
            ("type_url", 4),
            ("response_nonce", 5),
            ("error_detail", 6),
        ] {
            assert_eq!(tag(req, f), t, "{req}.{f}");
        }
        let resp = "envoy.service.discovery.v3.DiscoveryResponse";
        for (f, t) in [
            ("version_info", 1),
            ("resources", 2),
            ("type_url", 4),
            ("nonce", 5),
            ("control_plane", 6),
        ] {
            assert_eq!(tag(resp, f), t, "{resp}.{f}");
        }
        assert_eq!(tag("google.rpc.Status", "code"), 1);
        assert_eq!(tag("google.rpc.Status", "message"), 2);
        assert_eq!(tag("envoy.config.core.v3.ControlPlane", "identifier"), 1);
        assert_eq!(tag("envoy.config.core.v3.Node", "id"), 1);
        assert_eq!(tag("envoy.config.core.v3.Node", "metadata"), 3);
    }
}
