//! The part of kubelet's HTTPS API that kube-apiserver calls for `kubectl logs`:
//! `GET /containerLogs/{namespace}/{pod}/{container}` with `tailLines`, `limitBytes` and `follow`,
//! read from the runner's log files; and `GET /healthz`.
//!
//! # Deviations from kubelet
//! - The API server's client certificate is not checked (kubelet authenticates it and asks the
//!   API server to authorise): anyone who reaches the port can read logs, so the agent binds
//!   127.0.0.1 unless told otherwise.
//! - The serving certificate is self-signed per start; kube-apiserver accepts it unless it was
//!   started with `--kubelet-certificate-authority`.
//! - `previous`, `timestamps` and `sinceSeconds`/`sinceTime` are not served: `previous=true` gets a
//!   400, the others are ignored. exec, attach, port-forward, metrics and `/pods` are not served (404).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use crate::embedded::logs::{LogWindow, container_log_path, follow_log, read_log};

/// What the handlers share.
pub(super) struct KubeletApi {
    pub(super) client: Client,
    pub(super) state_dir: PathBuf,
    pub(super) stop: watch::Receiver<bool>,
}

/// The router of the served endpoints.
pub(super) fn router(api: Arc<KubeletApi>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .with_state(api)
}

async fn container_logs(
    State(api): State<Arc<KubeletApi>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str| query.get(k).map(String::as_str) == Some("true");
    if flag("previous") {
        let msg = format!("previous terminated container {container:?} in pod {pod:?} not found");
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<u64>().ok());
    let window = LogWindow {
        tail: number("tailLines").and_then(|n| usize::try_from(n).ok()),
        limit: number("limitBytes"),
    };
    let path = container_log_path(&api.state_dir, &namespace, &pod, &container);
    let start = read_log(&path, window).await;
    if !flag("follow") {
        return ([(header::CONTENT_TYPE, "text/plain")], start.first).into_response();
    }
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &namespace);
    let ended = move || {
        let (pods, pod, container) = (pods.clone(), pod.clone(), container.clone());
        async move { terminated(&pods, &pod, &container).await }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(follow_log(path, start, ended, tx, api.stop.clone()));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let body = Body::from_stream(stream);
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Whether `container` of the Pod has terminated, or the Pod is gone (nothing more will be written).
async fn terminated(pods: &Api<Pod>, pod: &str, container: &str) -> bool {
    let Ok(found) = pods.get_opt(pod).await else {
        return false;
    };
    let Some(pod) = found else { return true };
    let status = pod.status.unwrap_or_default();
    status
        .init_container_statuses
        .into_iter()
        .flatten()
        .chain(status.container_statuses.into_iter().flatten())
        .chain(status.ephemeral_container_statuses.into_iter().flatten())
        .find(|s| s.name == container)
        .and_then(|s| s.state)
        .is_some_and(|s| s.terminated.is_some())
}
