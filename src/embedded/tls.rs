//! HTTPS for the embedded servers (the API server, the node agent's kubelet endpoint): a fresh CA and
//! a serving certificate per start, and the accept loop. kubectl (client-go) only sends credentials
//! over TLS; the API server's kubeconfig carries its CA, and `ca.crt` is written to the state
//! directory for other clients (curl --cacert).
use std::sync::Arc;

use axum::Router;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

use super::conn::{self, ServeLimits};

/// Why the serving certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Generating a key or signing a certificate failed.
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the certificates or the protocol versions.
    #[error(transparent)]
    Config(#[from] rustls::Error),
}

/// The CA clients trust and the acceptor presenting a server certificate signed by it.
pub(crate) struct ServingCerts {
    /// PEM of the CA certificate.
    pub ca_pem: String,
    /// TLS acceptor for 127.0.0.1/localhost.
    pub acceptor: TlsAcceptor,
}

/// Generates a CA and a server certificate for `127.0.0.1` and `localhost`, named `name`.
pub(crate) fn generate(name: &str) -> Result<ServingCerts, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name}-ca"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::from(key),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServingCerts {
        ca_pem: ca_cert.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// Accepts TLS connections on `listener` until `stop` fires; each connection is served by `app`
/// under `limits` (see [`conn`](super::conn)).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ServeLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        let delay = conn::accept_backoff(backoff);
                        backoff = Some(delay);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                };
                backoff = None;
                conns.spawn(conn::serve_connection(tcp, acceptor.clone(), app.clone(), limits.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
}
