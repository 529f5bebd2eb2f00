//! `GET /api/v1/namespaces/NS/pods/NAME/log`: reads the container log the local pod runner
//! writes at [`container_log_path`](super::logs::container_log_path) (`container`, `tailLines`,
//! `limitBytes`, `follow`, `previous`), with the kubelet's error wording.
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::apiserver::Server;
use super::handlers::{Query, Target};
use super::logs::container_log_path;
use super::resources::StorageKey;
use super::status::{ApiError, ApiResult};

fn pods_key() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "pods".into(),
    }
}

fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().cloned().unwrap_or_default())
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
    let all = container_names(pod);
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if all.contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<String> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
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
pub async fn serve(server: Arc<Server>, t: &Target, query: &Query) -> ApiResult<Response> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
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
    let tail = query.get("tailLines").and_then(|n| n.parse::<i64>().ok());
    let limit = query.get("limitBytes").and_then(|n| n.parse::<usize>().ok());
    let mut first = match tail {
        Some(n) if n >= 0 => tail_lines(&content, n as usize),
        _ => content.clone(),
    };
    if let Some(l) = limit {
        first.truncate(l);
    }
    let follow = query.get("follow").map(String::as_str) == Some("true");
    if !follow {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], first).into_response());
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let offset = content.len() as u64;
    tokio::spawn(follow_log(server, ns, name, container, path, first, offset, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response())
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

#[allow(clippy::too_many_arguments)]
async fn follow_log(
    server: Arc<Server>,
    ns: String,
    name: String,
    container: String,
    path: std::path::PathBuf,
    first: Vec<u8>,
    mut offset: u64,
    tx: mpsc::Sender<Bytes>,
) {
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    let mut shutdown = server.shutdown.clone();
    loop {
        // Check termination before reading so the final read catches everything written.
        let done = {
            let st = server.store.lock();
            terminated(st.get(&pods_key(), &ns, &name), &container)
        };
        if let Ok(mut f) = tokio::fs::File::open(&path).await
            && f.seek(SeekFrom::Start(offset)).await.is_ok()
        {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).await.is_ok() && !buf.is_empty() {
                offset += buf.len() as u64;
                if tx.send(Bytes::from(buf)).await.is_err() {
                    return;
                }
            }
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
