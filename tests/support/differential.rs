//! Differential requests: one raw request sent through kube-rs to two API servers, and its answer
//! reduced to what a comparison needs — the HTTP status, the Status reason, the causes of a 422 and
//! chosen fields of the body.
//!
//! Requests name their namespace `{ns}` and earlier answers' resourceVersions `{rv0}`, `{rv1}`, …
//! (the answer to the n-th request of a case); [`Vars`] fills them in, in the path and the body.
//! A watch is a GET with `watch=true` and `timeoutSeconds`: the server ends the stream itself and the
//! answer's body is `{"events": [...]}` (bookmarks dropped).
use std::time::Duration;

use http::{Method, Request};
use kube::Client;
use serde_json::{Value, json};

/// One HTTP request of a case.
#[derive(Debug, Clone)]
pub struct Step {
    /// The verb.
    pub method: Method,
    /// Path and query, with `{ns}`/`{rvN}` placeholders.
    pub path: String,
    /// The body's media type.
    pub content_type: &'static str,
    /// The body, with placeholders in its strings.
    pub body: Option<Value>,
    /// The Accept header (JSON unless a case asks for another form, e.g. metadata only).
    pub accept: &'static str,
}

const JSON: &str = "application/json";
/// JSON merge patch.
pub const MERGE: &str = "application/merge-patch+json";
/// JSON patch.
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Strategic merge patch.
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
/// Server-side apply.
pub const APPLY: &str = "application/apply-patch+yaml";

impl Step {
    fn new(method: Method, path: &str, content_type: &'static str, body: Option<Value>) -> Self {
        Self {
            method,
            path: path.to_string(),
            content_type,
            body,
            accept: JSON,
        }
    }

    /// The same request with another Accept header.
    pub fn accepting(self, accept: &'static str) -> Self {
        Self { accept, ..self }
    }
}

/// GET `path`.
pub fn get(path: &str) -> Step {
    Step::new(Method::GET, path, JSON, None)
}

/// POST `body` to `path`.
pub fn post(path: &str, body: Value) -> Step {
    Step::new(Method::POST, path, JSON, Some(body))
}

/// PUT `body` to `path`.
pub fn put(path: &str, body: Value) -> Step {
    Step::new(Method::PUT, path, JSON, Some(body))
}

/// PATCH `path` with a patch of `content_type`.
pub fn patch(path: &str, content_type: &'static str, body: Value) -> Step {
    Step::new(Method::PATCH, path, content_type, Some(body))
}

/// DELETE `path`.
pub fn delete(path: &str) -> Step {
    Step::new(Method::DELETE, path, JSON, None)
}

/// Placeholder values of one case on one server.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// The case's namespace.
    pub ns: String,
    /// resourceVersions of the earlier answers, in order.
    pub rvs: Vec<String>,
}

impl Vars {
    fn fill(&self, text: &str) -> String {
        let mut out = text.replace("{ns}", &self.ns);
        for (i, rv) in self.rvs.iter().enumerate() {
            out = out.replace(&format!("{{rv{i}}}"), rv);
        }
        out
    }

    fn fill_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.fill(s)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.fill_value(i)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (self.fill(k), self.fill_value(v))).collect()),
            other => other.clone(),
        }
    }
}

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub code: u16,
    /// The JSON body (`null` when it was not JSON); `{"events": [...]}` for a watch.
    pub body: Value,
}

impl Answer {
    /// `metadata.resourceVersion` of the answered object, if any.
    pub fn resource_version(&self) -> String {
        self.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// How long one request may take; a watch ends earlier by its own `timeoutSeconds`.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Sends `step` with `vars` filled in; an error is a transport failure, not an HTTP status.
pub async fn send(client: &Client, step: &Step, vars: &Vars) -> Result<Answer, String> {
    let path = vars.fill(&step.path);
    let body = match &step.body {
        Some(v) => serde_json::to_vec(&vars.fill_value(v)).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let request = Request::builder()
        .method(step.method.clone())
        .uri(&path)
        .header(http::header::CONTENT_TYPE, step.content_type)
        .header(http::header::ACCEPT, step.accept)
        .body(kube::client::Body::from(body))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client
            .send(request)
            .await
            .map_err(|e| format!("{} {path}: {e}", step.method))?;
        let code = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| format!("reading the answer to {path}: {e}"))?;
        Ok::<_, String>((code, bytes))
    };
    let (code, bytes) = tokio::time::timeout(REQUEST_DEADLINE, exchange)
        .await
        .map_err(|_| format!("{} {path}: no answer within {REQUEST_DEADLINE:?}", step.method))??;
    let body = if is_watch(&path) && code == 200 {
        watch_events(&bytes)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Ok(Answer { code, body })
}

fn is_watch(path: &str) -> bool {
    path.split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// The events of a finished watch stream, bookmarks dropped.
fn watch_events(bytes: &[u8]) -> Value {
    let events: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| serde_json::from_slice(line).unwrap_or_else(|_| json!({"type": "UNPARSABLE"})))
        .filter(|e: &Value| e["type"] != "BOOKMARK")
        .collect();
    json!({ "events": events })
}

/// The value at a dotted path (`spec.containers.0.name`); `*` maps over an array's elements, a
/// `len:` prefix gives a string's length, `has:` whether the value is there and `shape:` the
/// string with each run of digits as `N` (resourceVersions differ between servers). Missing parts
/// are `null`.
pub fn pick(body: &Value, path: &str) -> Value {
    if let Some(rest) = path.strip_prefix("shape:") {
        return match pick(body, rest) {
            Value::String(s) => {
                let mut out = String::new();
                for c in s.chars() {
                    if !c.is_ascii_digit() {
                        out.push(c);
                    } else if !out.ends_with('N') {
                        out.push('N');
                    }
                }
                json!(out)
            }
            other => other,
        };
    }
    if let Some(rest) = path.strip_prefix("has:") {
        return json!(!pick(body, rest).is_null());
    }
    if let Some(rest) = path.strip_prefix("len:") {
        return match pick(body, rest) {
            Value::String(s) => json!(s.len()),
            _ => Value::Null,
        };
    }
    pick_parts(body, &path.split('.').collect::<Vec<_>>())
}

fn pick_parts(v: &Value, parts: &[&str]) -> Value {
    let Some((first, rest)) = parts.split_first() else {
        return v.clone();
    };
    match (*first, v) {
        ("*", Value::Array(items)) => Value::Array(items.iter().map(|i| pick_parts(i, rest)).collect()),
        (key, Value::Array(items)) => match key.parse::<usize>() {
            Ok(i) => items.get(i).map(|i| pick_parts(i, rest)).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        },
        (key, Value::Object(map)) => map.get(key).map(|x| pick_parts(x, rest)).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The comparable summary of an answer: status, the Status reason, the causes of a failure as
/// sorted `reason field: message` lines (a message's first line only: kube-apiserver appends Go
/// diffs to some), and the `fields` asked for.
pub fn summary(answer: &Answer, fields: &[&str]) -> Value {
    let body = &answer.body;
    let mut out = json!({ "code": answer.code });
    if body["kind"] == "Status" {
        out["reason"] = body["reason"].clone();
        // A generated name differs between servers; causes name it as `<name>`.
        let name = body["details"]["name"].as_str().filter(|n| !n.is_empty());
        let mut causes: Vec<String> = body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let message = c["message"].as_str().unwrap_or_default();
                let message = match name {
                    Some(n) => message.replace(&format!("{n:?}"), "\"<name>\""),
                    None => message.to_string(),
                };
                let first = message.lines().next().unwrap_or_default();
                format!(
                    "{} {}: {first}",
                    c["reason"].as_str().unwrap_or_default(),
                    c["field"].as_str().unwrap_or_default()
                )
            })
            .collect();
        causes.sort();
        if !causes.is_empty() {
            out["causes"] = json!(causes);
        }
    }
    for f in fields {
        out[*f] = pick(body, f);
    }
    out
}

/// Lines of `a` and `b` that differ, for a report (`-` one side, `+` the other).
pub fn diff_lines(a: &Value, b: &Value) -> Vec<String> {
    let (Some(ma), Some(mb)) = (a.as_object(), b.as_object()) else {
        return vec![format!("- {a}"), format!("+ {b}")];
    };
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (va, vb) = (ma.get(k).unwrap_or(&Value::Null), mb.get(k).unwrap_or(&Value::Null));
        if va == vb {
            continue;
        }
        match (va, vb) {
            (Value::Array(xa), Value::Array(xb)) if k == "causes" => {
                // Causes are a multiset: a line repeated on one side only is a difference too.
                let count = |list: &[Value], x: &Value| list.iter().filter(|y| *y == x).count();
                let mut seen = Vec::new();
                for x in xa.iter().chain(xb) {
                    if seen.contains(&x) {
                        continue;
                    }
                    seen.push(x);
                    let (ca, cb) = (count(xa, x), count(xb, x));
                    let line = x.as_str().unwrap_or_default();
                    for _ in cb..ca {
                        out.push(format!("  {k} - {line}"));
                    }
                    for _ in ca..cb {
                        out.push(format!("  {k} + {line}"));
                    }
                }
            }
            _ => {
                out.push(format!("  {k} - {va}"));
                out.push(format!("  {k} + {vb}"));
            }
        }
    }
    out
}
