//! Request bodies: read within kube-apiserver's 3 MiB limit (413 beyond it, worded as its
//! `limitedReadBody`), and requests with large bodies handled off the async workers, so that
//! decoding them (serde_yaml takes about a second for 3 MiB) never stalls other requests such as
//! `/healthz`.
use std::future::Future;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

use crate::embedded::apiserver::decode;
use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::conn::BodyTimeout;
use crate::input::MAX_REQUEST_BYTES;

/// Bodies up to this size are decoded where the request runs; larger ones on a blocking thread.
const INLINE_BYTES: usize = 64 * 1024;

/// Reads a request body: 413 when its Content-Length or its bytes pass the limit, 504 when it
/// does not arrive in time (the connection's body deadline).
///
/// A body a little over the limit is read to its end and dropped before the 413 goes out:
/// answering while the client still writes makes many clients (hyper's among them) report a
/// broken pipe instead of the answer. Up to [`DRAIN_BYTES`] more are read that way; a body
/// announced larger is answered at once.
pub(super) async fn read(headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let too_large = || decode::entity_too_large(&format!("limit is {MAX_REQUEST_BYTES}"));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > (MAX_REQUEST_BYTES + DRAIN_BYTES) as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    let mut seen = 0;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(read_error)?;
        seen += chunk.len();
        if seen > MAX_REQUEST_BYTES + DRAIN_BYTES {
            return Err(too_large());
        }
        if seen <= MAX_REQUEST_BYTES {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(bytes))
}

/// How far past the limit a body is still read (and dropped) so that its 413 reaches the client.
const DRAIN_BYTES: usize = MAX_REQUEST_BYTES;

fn read_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if cause.downcast_ref::<BodyTimeout>().is_some() {
            return ApiError::timeout("Timeout: request did not complete within the allotted timeout");
        }
        source = cause.source();
    }
    ApiError::bad_request(format!("cannot read request body: {e}"))
}

/// Runs the handling of a request whose body has `body_len` bytes: inline when small, else on
/// this thread turned blocking (`block_in_place`: the runtime moves its other tasks to another
/// worker), at most one such request per core at a time.
pub(super) async fn handle_sized<F: Future>(body_len: usize, handling: F) -> F::Output {
    let multi_thread = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    if body_len <= INLINE_BYTES || !multi_thread {
        return handling.await;
    }
    let _turn = heavy().acquire().await;
    tokio::task::block_in_place(|| Handle::current().block_on(handling))
}

fn heavy() -> &'static Semaphore {
    static HEAVY: OnceLock<Semaphore> = OnceLock::new();
    HEAVY.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)))
}
