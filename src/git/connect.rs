//! What probe and fetch share: a gix remote that asks for one ref and no tags, a connection over our own
//! transport that takes credentials from the Secret only, and the classification of a failed exchange.
use gix::remote::{Connection, Direction, fetch::Tags};

use super::classify::{self, Context};
use super::error::{Error, Result};
use super::http_pool;
use super::remote::{RemoteSpec, Scheme};
use super::transport::{BoxedTransport, ProcessGuard, Settings};

/// A remote at `spec`'s URL (no URL rewriting from any config) fetching `refspec` only, without tags.
pub(crate) fn remote<'repo>(
    repo: &'repo gix::Repository,
    spec: &RemoteSpec,
    refspec: &str,
) -> Result<gix::Remote<'repo>> {
    repo.remote_at_without_url_rewrite(spec.url.gix().clone())
        .and_then(|r| r.with_fetch_tags(Tags::None).with_refspecs([refspec], Direction::Fetch))
        .map_err(|e| Error::invalid(format!("cannot use {} with ref `{refspec}`: {e}", spec.url)))
}

/// A connection of `remote` over `transport`, with `spec`'s HTTP options.
pub(crate) fn connection<'a, 'repo>(
    remote: &'a gix::Remote<'repo>,
    transport: BoxedTransport,
    spec: &RemoteSpec,
) -> Connection<'a, 'static, 'repo, BoxedTransport> {
    let connection = remote
        .to_connection_with_transport(transport)
        .with_credentials(no_credential_helpers);
    match transport_options(spec) {
        Some(options) => connection.with_transport_options(options),
        None => connection,
    }
}

/// Classify `err` from talking to `spec`'s remote while doing `action`, with the child process's stderr and
/// the error messages the server sent (`ERR` lines, sideband errors).
pub(crate) fn failed(
    err: &gix::Error,
    spec: &RemoteSpec,
    action: &str,
    settings: &Settings<'_>,
    process: Option<&mut ProcessGuard>,
) -> Error {
    // The server may have changed: ask it for its capabilities again next time.
    settings.http.forget_adverts(&spec.url.to_string());
    let stderr = process.map(ProcessGuard::finish);
    classify::classify(
        err,
        &Context {
            spec,
            action,
            stderr,
            remote: settings.bounds.said().lines(),
        },
    )
}

/// Never ask a credential helper or a terminal: credentials come from the Secret only.
fn no_credential_helpers(
    _: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    Ok(None)
}

/// The transport options gix should apply before the handshake (HTTP only).
fn transport_options(spec: &RemoteSpec) -> Option<Box<dyn std::any::Any>> {
    matches!(spec.url.scheme(), Scheme::Http | Scheme::Https).then(|| {
        let creds = &spec.credentials;
        let authorization = match (creds.bearer_token(), creds.basic_auth()) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            // Over https the identity goes through gix (see `transport::open_http`); over http gix will not send
            // it, so the header is set here, as git itself does.
            (None, Some((user, password))) if spec.url.scheme() == Scheme::Http => {
                use base64::Engine as _;
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {pair}"))
            }
            _ => None,
        };
        Box::new(http_pool::options(authorization.as_deref())) as Box<dyn std::any::Any>
    })
}
