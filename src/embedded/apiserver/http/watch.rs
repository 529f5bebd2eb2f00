//! Watch streams: initial state or replay from a resourceVersion, live changes filtered by
//! namespace and selectors (objects leaving the selection arrive as DELETED), bookmarks,
//! `sendInitialEvents`, `timeoutSeconds`, and 410 Expired as an ERROR event.
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::embedded::apiserver::admission::events;
use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::params::{self, Query};
use crate::embedded::apiserver::http::represent::{self, Form};
use crate::embedded::apiserver::http::response::stream_response;
use crate::embedded::apiserver::http::table::{Include, table};
use crate::embedded::apiserver::http::target::{Filter, Target};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::storage::store::{Change, ChangeKind};

struct Watch {
    t: Target,
    filter: Filter,
    form: Form,
    include: Include,
    bookmarks: bool,
}

impl Watch {
    fn render(&self, obj: &Value) -> Value {
        let view = events::to_view(&self.t.rt, obj);
        if self.form == Form::Table {
            let rv = view["metadata"]["resourceVersion"].clone();
            table(&self.t.rt, &[view], self.include, json!({"resourceVersion": rv}))
        } else {
            represent::single(self.form, view)
        }
    }

    fn event(&self, kind: &str, obj: &Value) -> Bytes {
        let mut line = json!({"type": kind, "object": self.render(obj)}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    /// The event a change means for this watcher, if any.
    fn translate(&self, change: &Change) -> Option<Bytes> {
        let now = self.filter.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|o| self.filter.matches(o));
        let kind = match change.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Modified if now && before => "MODIFIED",
            ChangeKind::Modified if now => "ADDED",
            ChangeKind::Modified if before => {
                // Leaving the selection: the object as the watcher last saw it, at this version.
                let mut previous = change.old.as_deref().cloned().unwrap_or_default();
                previous["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                return Some(self.event("DELETED", &previous));
            }
            ChangeKind::Deleted if before || now => "DELETED",
            _ => return None,
        };
        Some(self.event(kind, &change.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.form {
            Form::Metadata(v) => represent::partial(&json!({"metadata": meta}), v),
            _ => json!({"kind": self.t.rt.kind, "apiVersion": self.t.rt.api_version(), "metadata": meta}),
        };
        let mut line = json!({"type": "BOOKMARK", "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

fn error_event(e: &ApiError) -> Bytes {
    let mut line = json!({"type": "ERROR", "object": e.to_status()}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// Starts a watch; the response streams newline-delimited watch events.
pub(super) fn serve(server: Arc<Server>, t: &Target, query: &Query, form: Form) -> ApiResult<Response> {
    let filter = Filter::parse(t, query)?;
    if let Form::MetadataList(_) = form {
        // kube-apiserver cannot encode a watch event's object as a list: the stream ends empty.
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::empty(),
        )
            .into_response());
    }
    params::list_options(query, true)?;
    let send_initial = query.get("sendInitialEvents").map(String::as_str);
    let explicit = params::resource_version(query)?.filter(|rv| *rv > 0);
    // 0 or absent: kube-apiserver's default, a random 30-60 minutes so watches do not expire together.
    let timeout = params::int::<u64>(query, "timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs(1800 + u64::from(ids::random_bytes(1)[0]) * 7));
    let w = Watch {
        t: t.clone(),
        filter,
        form,
        include: Include::parse(query.get("includeObject").map(String::as_str)),
        bookmarks: params::flag(query, "allowWatchBookmarks"),
    };
    let initial = match send_initial {
        Some(v) => v == "true",
        None => explicit.is_none(),
    };
    let (first, changes) = match subscribe(&server, &w, explicit.filter(|_| !initial), send_initial == Some("true")) {
        Ok(s) => s,
        // The real server reports a watch it cannot start from that version as an ERROR event
        // in a 200 stream.
        Err(e) => {
            let body = Body::from(error_event(&e));
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let shutdown = server.shutdown.clone();
    let interval = server.bookmark_interval;
    tokio::spawn(pump(server, w, first, changes, tx, timeout, interval, shutdown));
    Ok(stream_response(rx, "application/json"))
}

/// Subscribes to the store: from `from` (replaying what came after it), or from now after an
/// ADDED event per current object (with the initial-events-end bookmark when asked). Returns the
/// first events and the receiver of later changes.
fn subscribe(
    server: &Server,
    w: &Watch,
    from: Option<u64>,
    initial_end_bookmark: bool,
) -> ApiResult<(Vec<Bytes>, mpsc::UnboundedReceiver<Arc<Change>>)> {
    let mut st = server.store.lock();
    let current = st.rv();
    let key = w.t.rt.key();
    let mut first = Vec::new();
    let (replay, changes) = match from {
        Some(rv) if rv > current => {
            return Err(ApiError::timeout(format!("Too large resource version: {rv}, current: {current}"))
                .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
        }
        Some(rv) => st.subscribe(key, rv)?,
        None => {
            for obj in st.list(key, w.t.namespace.as_deref()) {
                if w.filter.matches(&obj) {
                    first.push(w.event("ADDED", &obj));
                }
            }
            if initial_end_bookmark && w.bookmarks {
                first.push(w.bookmark(current, true));
            }
            st.subscribe(key, current)?
        }
    };
    drop(st);
    first.extend(replay.iter().filter_map(|c| w.translate(c)));
    Ok((first, changes))
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    server: Arc<Server>,
    w: Watch,
    first: Vec<Bytes>,
    mut changes: mpsc::UnboundedReceiver<Arc<Change>>,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    for b in first {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                if let Some(b) = w.translate(&change)
                    && tx.send(b).await.is_err()
                {
                    return;
                }
            }
            _ = ticker.tick(), if w.bookmarks => {
                // Everything up to `rv` is already queued (changes are queued under the lock).
                let mut rv = server.store.lock().rv();
                while let Ok(change) = changes.try_recv() {
                    rv = rv.max(change.rv);
                    if let Some(b) = w.translate(&change)
                        && tx.send(b).await.is_err()
                    {
                        return;
                    }
                }
                if tx.send(w.bookmark(rv, false)).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
