//! The kubeconfig that points kubectl and kube-rs at the fake apiserver.

use base64::Engine;

/// Name of the cluster, user-less context and context in the generated kubeconfig.
pub const CONTEXT: &str = "meshsim";

/// JSON string literals are valid YAML scalars, and quote anything safely.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub(crate) fn render(
    server: &str,
    ca_pem: &str,
    token: &str,
    user: &str,
    namespace: &str,
) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {user}
    namespace: {namespace}
current-context: {CONTEXT}
preferences: {{}}
",
        server = q(server),
        token = q(token),
        user = q(user),
        namespace = q(namespace),
    )
}
