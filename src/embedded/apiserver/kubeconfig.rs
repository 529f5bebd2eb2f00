//! The kubeconfig the embedded API server writes for kubectl and kube-rs (mode 0600).
use std::path::Path;

/// Context, cluster and user name in the kubeconfig.
pub(super) const CONTEXT: &str = "cdkube-dev";

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A bearer token, inline.
    Token(&'a str),
    /// A bearer token read from a file (and re-read by clients, so it can be renewed).
    TokenFile(&'a Path),
}

/// The kubeconfig text for a server URL, the CA that signed its certificate and a credential.
pub(super) fn render(server_url: &str, ca_pem: &str, credential: Credential<'_>) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match credential {
        Credential::Token(token) => format!("token: {token}"),
        // JSON strings are YAML strings: any path is quoted safely.
        Credential::TokenFile(path) => format!(
            "tokenFile: {}",
            serde_json::to_string(&path.display().to_string()).unwrap_or_default()
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {CONTEXT}\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {CONTEXT}\n  context:\n    cluster: {CONTEXT}\n    user: {CONTEXT}\n    namespace: default\ncurrent-context: {CONTEXT}\nusers:\n- name: {CONTEXT}\n  user:\n    {user}\npreferences: {{}}\n"
    )
}

/// Writes the kubeconfig with mode 0600 (replacing any previous file, whose mode may differ).
pub(super) fn write(path: &Path, server_url: &str, ca_pem: &str, credential: Credential<'_>) -> std::io::Result<()> {
    crate::embedded::state_dir::replace_file(path, render(server_url, ca_pem, credential).as_bytes())
}
