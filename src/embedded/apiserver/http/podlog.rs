//! `GET /api/v1/namespaces/NS/pods/NAME/log`: reads the container log the local pod runner
//! writes at [`container_log_path`](super::logs::container_log_path) (`container`, `tailLines`,
//! `limitBytes`, `follow`, `previous`), with the kubelet's error wording.
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::params::{self, Query};
use crate::embedded::apiserver::http::response::stream_response;
use crate::embedded::apiserver::http::target::Target;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::logs::{LogWindow, container_log_path, follow_log, read_log};

/// Where Pods are stored.
pub(super) fn pods_key() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "pods".into(),
    }
}

/// Names of the containers in `spec.<list>`.
pub(super) fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn status_of<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|l| pod["status"][*l].as_array())
    .flatten()
    .find(|s| s["name"].as_str() == Some(container))
}

fn terminated(pod: Option<&Value>, container: &str) -> bool {
    match pod {
        None => true,
        Some(p) => status_of(p, container).is_some_and(|s| s["state"]["terminated"].is_object()),
    }
}

fn pick_container(pod: &Value, name: &str, query: &Query) -> ApiResult<String> {
    let main = container_names(pod, "containers");
    let mut all = container_names(pod, "initContainers");
    all.extend(main.iter().cloned());
    all.extend(container_names(pod, "ephemeralContainers"));
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if all.contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            if let Some(d) = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
                && all.iter().any(|c| c == d)
            {
                return Ok(d.to_string());
            }
            match main.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// Serves a pod's log, streaming when `follow=true`.
pub(super) async fn serve(server: Arc<Server>, t: &Target, query: &Query) -> ApiResult<Response> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let tail: Option<i64> = params::int(query, "tailLines")?;
    let limit: Option<i64> = params::int(query, "limitBytes")?;
    check_options(&name, tail, limit)?;
    let pod = server
        .store
        .lock()
        .get(&pods_key(), &ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let container = pick_container(&pod, &name, query)?;
    if query.get("previous").map(String::as_str) == Some("true") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container {container:?} in pod {name:?} not found"
        )));
    }
    let path = container_log_path(&server.state_dir, &ns, &name, &container);
    let started =
        status_of(&pod, &container).is_some_and(|s| !s["state"]["waiting"].is_object() && !s["state"].is_null());
    if !path.exists() && !started {
        let reason = status_of(&pod, &container)
            .and_then(|s| s["state"]["waiting"]["reason"].as_str().map(str::to_string))
            .unwrap_or_else(|| "ContainerCreating".to_string());
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start: {reason}"
        )));
    }
    let window = LogWindow {
        tail: tail.and_then(|n| usize::try_from(n).ok()),
        limit: limit.and_then(|l| u64::try_from(l).ok()),
    };
    let start = read_log(&path, window).await;
    if query.get("follow").map(String::as_str) != Some("true") {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], start.first).into_response());
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stop = server.shutdown.clone();
    let ended = move || {
        let server = server.clone();
        let (ns, name, container) = (ns.clone(), name.clone(), container.clone());
        async move { terminated(server.store.lock().get(&pods_key(), &ns, &name), &container) }
    };
    tokio::spawn(follow_log(path, start, ended, tx, stop));
    Ok(stream_response(rx, "text/plain"))
}

/// PodLogOptions validation: 422 for a negative `tailLines` or a `limitBytes` below 1.
fn check_options(pod: &str, tail: Option<i64>, limit: Option<i64>) -> ApiResult<()> {
    let mut errs = Vec::new();
    if let Some(n) = tail.filter(|n| *n < 0) {
        errs.push(StatusCause::invalid(
            "tailLines",
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = limit.filter(|n| *n < 1) {
        errs.push(StatusCause::invalid("limitBytes", &json!(n), "must be greater than 0"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("", "PodLogOptions", pod, &errs))
    }
}
