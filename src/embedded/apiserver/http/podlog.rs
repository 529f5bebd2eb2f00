//! `GET /api/v1/namespaces/NS/pods/NAME/log`: reads the container log the local pod runner
//! writes at [`container_log_path`](super::logs::container_log_path) (`container`, `tailLines`,
//! `limitBytes`, `follow`, `previous`), with the kubelet's error wording.
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::params::{self, Query};
use crate::embedded::apiserver::http::response::stream_response;
use crate::embedded::apiserver::http::target::Target;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::logs::container_log_path;

fn pods_key() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "pods".into(),
    }
}

/// Names of the containers in `spec.<list>`.
fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn status_of<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["initContainerStatuses", "containerStatuses"]
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
    let content = tokio::fs::read(&path).await.unwrap_or_default();
    let mut first = match tail.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => tail_lines(&content, n),
        None => content.clone(),
    };
    let mut budget = limit.and_then(|l| u64::try_from(l).ok()).unwrap_or(u64::MAX);
    first.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
    budget -= first.len() as u64;
    if query.get("follow").map(String::as_str) != Some("true") {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], first).into_response());
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let followed = Followed {
        ns,
        name,
        container,
        path,
        offset: content.len() as u64,
        budget,
    };
    tokio::spawn(follow_log(server, followed, first, tx));
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

/// The last `n` lines of a log (a trailing newline does not start a line).
fn tail_lines(content: &[u8], n: usize) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return content[i + 1..].to_vec();
            }
        }
    }
    content.to_vec()
}

/// The log a `follow=true` request keeps reading.
struct Followed {
    ns: String,
    name: String,
    container: String,
    path: std::path::PathBuf,
    /// Bytes of the file already handled.
    offset: u64,
    /// Bytes `limitBytes` still allows.
    budget: u64,
}

async fn follow_log(server: Arc<Server>, mut f: Followed, first: Vec<u8>, tx: mpsc::Sender<Bytes>) {
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    let mut shutdown = server.shutdown.clone();
    while f.budget > 0 {
        // Check termination before reading so the final read catches everything written.
        let done = {
            let st = server.store.lock();
            terminated(st.get(&pods_key(), &f.ns, &f.name), &f.container)
        };
        let mut buf = read_from(&f.path, f.offset).await;
        f.offset += buf.len() as u64;
        buf.truncate(usize::try_from(f.budget).unwrap_or(usize::MAX));
        f.budget -= buf.len() as u64;
        if !buf.is_empty() && tx.send(Bytes::from(buf)).await.is_err() {
            return;
        }
        if done {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// What the file holds from `offset` on (nothing if it cannot be read yet).
async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut file) = tokio::fs::File::open(path).await
        && file.seek(SeekFrom::Start(offset)).await.is_ok()
        && file.read_to_end(&mut buf).await.is_err()
    {
        buf.clear();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n".to_vec());
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c".to_vec());
        assert_eq!(tail_lines(b"a\n", 5), b"a\n".to_vec());
    }
}
