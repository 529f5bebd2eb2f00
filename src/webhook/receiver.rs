//! The webhook receiver's routes: `POST /hooks/github`, `/hooks/gitlab` and `/hooks/generic`.
//!
//! A valid push goes straight to the poller, which probes the repository's key at once (see
//! [`Poller::push`]): no API write per webhook, one probe per key however many Pipelines follow it or
//! however many pushes arrive together. Answers: 202 for a push (probing, or nothing follows it) and for
//! events that are not pushes; 200 `pong` to GitHub's ping; 401 for a missing or wrong signature (a
//! missing one before the body is read); 400 for a body that is not a push payload; 408 for a body slower
//! than 10 s; 413 for a body over [`MAX_BODY`]; 503 while the secret cannot be read, or after 5 s waiting
//! behind [`MAX_CONCURRENT`] requests.
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::payload::{self, Push, Request};
use super::repo_match::{matches, repo_identity};
use super::secrets::{SecretSource, SecretStore};
use super::signature::{check_hmac, check_token};
use crate::schedule::Poller;
use crate::telemetry::Metrics;

/// The largest body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long a client may take to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The header carrying the generic receiver's signature (`sha256=<hex>` of the body).
pub const GENERIC_SIGNATURE_HEADER: &str = "x-cdkube-signature-256";

/// Requests handled at once (each may hold a 1 MiB body); more wait up to [`SLOT_WAIT`], then get 503.
pub const MAX_CONCURRENT: usize = 32;
/// How long a request waits for one of the [`MAX_CONCURRENT`] slots.
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// The receivers' shared state.
struct Receiver {
    poller: Poller,
    secrets: SecretStore,
    metrics: Arc<Metrics>,
    slots: tokio::sync::Semaphore,
}

/// The webhook router: pushes go to `poller`; signatures are checked with the secrets of `source`.
pub fn router(poller: Poller, source: SecretSource, metrics: Arc<Metrics>) -> Router {
    let receiver = Arc::new(Receiver {
        poller,
        secrets: SecretStore::new(source),
        metrics,
        slots: tokio::sync::Semaphore::new(MAX_CONCURRENT),
    });
    Router::new()
        .route("/hooks/{provider}", post(receive))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: POST to /hooks/github, /hooks/gitlab or /hooks/generic\n",
            )
        })
        .with_state(receiver)
}

/// An answer and the result label it is counted under.
struct Answer {
    status: StatusCode,
    result: &'static str,
    message: String,
}

impl Answer {
    fn new(status: StatusCode, result: &'static str, message: impl Into<String>) -> Self {
        Answer {
            status,
            result,
            message: message.into(),
        }
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let provider = match provider.as_str() {
        "github" | "gitlab" | "generic" => provider,
        _ => {
            let message = "no such receiver: use /hooks/github, /hooks/gitlab or /hooks/generic\n";
            return (StatusCode::NOT_FOUND, message).into_response();
        }
    };
    let answer = handle(&receiver, &provider, &headers, body).await;
    receiver.metrics.webhook(&provider, answer.result);
    if answer.status.is_client_error() || answer.status.is_server_error() {
        tracing::info!(
            provider,
            status = answer.status.as_u16(),
            "webhook refused: {}",
            answer.message
        );
    }
    (answer.status, format!("{}\n", answer.message)).into_response()
}

async fn handle(receiver: &Receiver, provider: &str, headers: &HeaderMap, body: Body) -> Answer {
    // A burst waits its turn (its bodies unread); only one that waits too long is turned away.
    let Ok(Ok(_slot)) = tokio::time::timeout(SLOT_WAIT, receiver.slots.acquire()).await else {
        let message = format!(
            "over {MAX_CONCURRENT} webhook requests at once for {}s; retry",
            SLOT_WAIT.as_secs()
        );
        return Answer::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    };
    // A request without its credential header is refused before its body is read.
    if header(headers, credential_header(provider)).is_none() {
        let message = format!("the {} header is missing", credential_header(provider));
        return Answer::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let secret = match receiver.secrets.secret(provider).await {
        Ok(secret) => secret,
        Err(message) => return Answer::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
    };
    if let Err(why) = authenticate(provider, &secret, headers, &body) {
        return Answer::new(StatusCode::UNAUTHORIZED, "unauthorized", why);
    }
    let request = match parse(provider, headers, &body) {
        Ok(request) => request,
        Err(message) => return Answer::new(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    match request {
        Request::Ping => Answer::new(StatusCode::OK, "ignored", "pong"),
        Request::Ignored(what) => Answer::new(StatusCode::ACCEPTED, "ignored", format!("{what}: nothing to do")),
        Request::Push(push) => deliver(receiver, &push),
    }
}

async fn read_body(body: Body) -> Result<Bytes, Answer> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_BODY} bytes, or was cut off"),
        )),
        Err(_) => Err(Answer::new(
            StatusCode::REQUEST_TIMEOUT,
            "bad_request",
            format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
        )),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The header that authenticates a provider's requests.
fn credential_header(provider: &str) -> &'static str {
    match provider {
        "github" => "x-hub-signature-256",
        "gitlab" => "x-gitlab-token",
        _ => GENERIC_SIGNATURE_HEADER,
    }
}

fn authenticate(provider: &str, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let given = header(headers, credential_header(provider));
    match provider {
        "gitlab" => check_token(secret, given),
        _ => check_hmac(secret, body, given),
    }
}

fn parse(provider: &str, headers: &HeaderMap, body: &[u8]) -> Result<Request, String> {
    match provider {
        "github" => payload::github(header(headers, "x-github-event").unwrap_or_default(), body),
        "gitlab" => payload::gitlab(header(headers, "x-gitlab-event").unwrap_or_default(), body),
        _ => payload::generic(body),
    }
}

/// Hands a push to the poller.
fn deliver(receiver: &Receiver, push: &Push) -> Answer {
    let identities: Vec<String> = push.urls.iter().filter_map(|u| repo_identity(u)).collect();
    if identities.is_empty() {
        return Answer::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the push names no repository URL",
        );
    }
    let pushed = receiver.poller.push(
        |key, head| matches(&identities, &push.branch, key, head),
        push.after.as_deref(),
    );
    let what = format!("{} {}", identities[0], push.branch);
    if pushed.matched == 0 {
        return Answer::new(StatusCode::ACCEPTED, "ignored", format!("no Pipeline follows {what}"));
    }
    tracing::info!(matched = pushed.matched, due = pushed.due, "push for {what}: probing");
    Answer::new(
        StatusCode::ACCEPTED,
        "accepted",
        format!("push for {what}: {} repository key(s) to probe", pushed.matched),
    )
}
