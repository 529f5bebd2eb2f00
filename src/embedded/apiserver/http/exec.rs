//! `GET/POST /api/v1/namespaces/NS/pods/NAME/exec` and `/attach` over WebSocket
//! ([`streams`](crate::embedded::streams)): checked as kube-apiserver checks them (the Pod, its
//! container, its phase), then served here from the runner's records in the shared state
//! directory ([`runner::exec`](crate::embedded::runner::exec)) instead of through a kubelet.
//!
//! Deviations: SPDY upgrades (kubectl's fallback) get a 400 after the checks; no terminal is
//! allocated for `tty=true` (stderr is merged into stdout, resize messages are ignored); attach
//! streams what the container writes from then on and gives it no stdin.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::http::auth::User;
use crate::embedded::apiserver::http::authz::{self, Attributes};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::params::Query;
use crate::embedded::apiserver::http::podlog::{container_names, pods_key};
use crate::embedded::apiserver::http::response::error_response;
use crate::embedded::logs::{LogStart, container_log_path, follow_log};
use crate::embedded::runner::exec as runner_exec;
use crate::embedded::streams::{self, Upgrade, Wanted};

/// A streaming request: the Pod and which subresource.
pub(super) struct StreamTarget {
    namespace: String,
    pod: String,
    attach: bool,
}

/// The streaming subresource a path names, if any.
pub(super) fn stream_target(path: &str) -> Option<StreamTarget> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, sub @ ("exec" | "attach")] => Some(StreamTarget {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            attach: *sub == "attach",
        }),
        _ => None,
    }
}

/// Serves an admitted exec or attach request.
pub(super) async fn serve(
    server: Arc<Server>,
    user: &User,
    mut req: Request,
    query: &Query,
    t: StreamTarget,
) -> Response {
    let checked = check(&server, user, &req, query, &t);
    let (wanted, argv, container) = match checked {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let (key, protocol) = match streams::upgrade_of(req.headers()) {
        Upgrade::WebSocket { key, protocol } => (key, protocol),
        Upgrade::Spdy => {
            return error_response(&ApiError::bad_request(
                "SPDY streaming is not served by the cdkube embedded API server; use a client that speaks \
                 WebSocket (v5.channel.k8s.io or v4.channel.k8s.io), such as kubectl 1.30+ or kube-rs",
            ));
        }
        Upgrade::UnknownProtocol(offer) => {
            return error_response(&ApiError::bad_request(format!(
                "none of the offered WebSocket subprotocols [{offer}] is served; use v5.channel.k8s.io or v4.channel.k8s.io"
            )));
        }
        Upgrade::None => return error_response(&ApiError::bad_request("Upgrade request required")),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let stop = server.shutdown.clone();
    if t.attach {
        let output = attach_output(&server, &t, &container);
        tokio::spawn(streams::serve_attach(upgrade, wanted, output, stop));
    } else {
        let started = runner_exec::start(&server.state_dir, &t.namespace, &t.pod, &container, &argv, wanted.stdin)
            .map_err(|e| format!("error executing command in container: {e}"));
        tokio::spawn(streams::serve_exec(upgrade, protocol, wanted, argv, started, stop));
    }
    streams::switching_protocols(&key, protocol)
}

/// The checks before any upgrade; the streams asked for, the command and the container.
fn check(
    server: &Server,
    user: &User,
    req: &Request,
    query: &Query,
    t: &StreamTarget,
) -> ApiResult<(Wanted, Vec<String>, String)> {
    match *req.method() {
        Method::GET => authorize_create(server, user, req, query)?,
        Method::POST => {}
        _ => return Err(ApiError::method_not_allowed()),
    }
    let raw = req.uri().query().unwrap_or_default();
    let flag = |k: &str| matches!(query.get(k).map(String::as_str), Some("true" | "1"));
    let wanted = Wanted {
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        tty: flag("tty"),
    };
    let argv: Vec<String> = form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.into_owned())
        .collect();
    if !t.attach && argv.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if !(wanted.stdin || wanted.stdout || wanted.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    let pod = server
        .store
        .lock()
        .get(&pods_key(), &t.namespace, &t.pod)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", &t.pod))?;
    let container = pick_container(&pod, &t.pod, query.get("container").map(String::as_str))?;
    if pod["spec"]["nodeName"].as_str().unwrap_or_default().is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            t.pod
        )));
    }
    if let Some(phase @ ("Succeeded" | "Failed")) = pod["status"]["phase"].as_str() {
        let verb = if t.attach { "attach" } else { "exec" };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} into a container in a completed pod; current phase is {phase}"
        )));
    }
    Ok((wanted, argv, container))
}

/// A WebSocket exec or attach is a GET, authorized as `get`; kube-apiserver (the
/// AuthorizePodWebsocketUpgradeCreatePermission gate, on since 1.35) also requires `create`, the
/// verb of the POST that SPDY clients send.
fn authorize_create(server: &Server, user: &User, req: &Request, query: &Query) -> ApiResult<()> {
    let mut attrs = Attributes::from_request("POST", req.uri().path(), query);
    attrs.verb = "create".into();
    let decision = authz::authorize(&server.store.lock(), user, &attrs);
    if decision.allowed {
        Ok(())
    } else {
        Err(authz::forbidden(user, &attrs, &decision.reason))
    }
}

/// kube-apiserver's `streamLocation` choice of container: the named one (a container, init or
/// ephemeral container of the Pod), else the only one.
fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let main = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            let known = main
                .iter()
                .chain(&init)
                .chain(&container_names(pod, "ephemeralContainers"))
                .any(|n| n == c);
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None => match main.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(ApiError::bad_request(msg))
            }
        },
    }
}

/// What the container writes from now on, until it has terminated (or the Pod is gone).
fn attach_output(server: &Arc<Server>, t: &StreamTarget, container: &str) -> mpsc::Receiver<Bytes> {
    let path = container_log_path(&server.state_dir, &t.namespace, &t.pod, container);
    let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let start = LogStart {
        first: Vec::new(),
        offset,
        budget: u64::MAX,
    };
    let (tx, rx) = mpsc::channel(64);
    let ended = {
        let server = server.clone();
        let (ns, pod, container) = (t.namespace.clone(), t.pod.clone(), container.to_string());
        move || {
            let server = server.clone();
            let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
            async move { terminated(server.store.lock().get(&pods_key(), &ns, &pod), &container) }
        }
    };
    tokio::spawn(follow_log(path, start, ended, tx, server.shutdown.clone()));
    rx
}

fn terminated(pod: Option<&Value>, container: &str) -> bool {
    let Some(pod) = pod else { return true };
    [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|l| pod["status"][*l].as_array())
    .flatten()
    .find(|s| s["name"].as_str() == Some(container))
    .is_some_and(|s| s["state"]["terminated"].is_object())
}
