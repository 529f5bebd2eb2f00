//! HTTP request handling: authentication and authorization, then routing of the Kubernetes REST paths to discovery, OpenAPI and the
//! resource verbs (get, list, watch, create, update, patch, delete, deletecollection) and
//! subresources (status, log, binding, token, eviction, scale), in the form the Accept header asks for.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::FutureExt;
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::events;
use crate::embedded::apiserver::admission::rules::FieldValidation;
use crate::embedded::apiserver::decode;
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::http::auth::{self, User};
use crate::embedded::apiserver::http::authz::{self, Attributes};
use crate::embedded::apiserver::http::body;
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::discovery;
use crate::embedded::apiserver::http::escalation;
use crate::embedded::apiserver::http::eviction;
use crate::embedded::apiserver::http::exec;
use crate::embedded::apiserver::http::openapi;
use crate::embedded::apiserver::http::params::{self, Query};
use crate::embedded::apiserver::http::podlog;
use crate::embedded::apiserver::http::protobuf;
use crate::embedded::apiserver::http::represent::{self, Form};
use crate::embedded::apiserver::http::response::{error_response, json_response};
use crate::embedded::apiserver::http::reviews;
use crate::embedded::apiserver::http::scale;
use crate::embedded::apiserver::http::table::{Include, table};
use crate::embedded::apiserver::http::target::{Filter, Target};
use crate::embedded::apiserver::http::watch;
use crate::embedded::apiserver::resources::ResourceType;
use crate::embedded::apiserver::storage::binding;
use crate::embedded::apiserver::storage::fields;
use crate::embedded::apiserver::storage::ops::{self, DeleteOpts, Deleted, WriteOpts};
use crate::embedded::apiserver::storage::patch::{PatchType, apply_patch};
use crate::embedded::apiserver::storage::store::State as StoreState;

/// The info endpoints anonymous requests may reach: like kube-apiserver with anonymous access
/// limited to them (the kubectl dispatcher asks `/version` anonymously). Anywhere else a request
/// without a bearer token is 401.
fn public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && matches!(
            path.trim_end_matches('/'),
            "/version" | "/healthz" | "/livez" | "/readyz"
        )
}

/// Authentication, then authorization (RBAC): who sent the request and whether they may.
fn admit(server: &Server, req: &Request, query: &Query) -> ApiResult<User> {
    let user = auth::authenticate(server, req.headers())?;
    let path = req.uri().path();
    if user.is_anonymous() && !public(req.method(), path) {
        return Err(ApiError::unauthorized());
    }
    // Health and version are every user's (kube-apiserver's `system:public-info-viewer`); deciding
    // that without the store lock keeps them answering while a huge write holds it. (Deviation:
    // editing that ClusterRole cannot take them away.)
    if public(req.method(), path) {
        return Ok(user);
    }
    let attrs = Attributes::from_request(req.method().as_str(), path, query);
    let decision = authz::authorize(&server.store.lock(), &user, &attrs);
    if !decision.allowed {
        return Err(authz::forbidden(&user, &attrs, &decision.reason));
    }
    Ok(user)
}

/// The entry of every request: authenticates it, reads its body and routes it.
pub(crate) async fn entry(State(server): State<Arc<Server>>, req: Request) -> Response {
    let query = params::parse(req.uri().query());
    let user = match admit(&server, &req, &query) {
        Ok(user) => user,
        Err(e) => return error_response(&e),
    };
    // exec and attach take over the connection (a WebSocket), so they get the request whole.
    if let Some(target) = exec::stream_target(req.uri().path()) {
        return exec::serve(server, &user, req, &query, target).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match body::read(&parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let body_len = bytes.len();
    tracing::debug!(method = %parts.method, uri = %parts.uri, user = %user.name, "api request");
    let request = Incoming {
        user,
        method: parts.method,
        query,
        headers: parts.headers,
        body: bytes,
    };
    let handled = handle(server, parts.uri.path(), request);
    // Like kube-apiserver's panic recovery: a bug answers 500 instead of dropping the connection.
    // Request data must never get here; the store lock survives it (see `Store::lock`).
    let handled = std::panic::AssertUnwindSafe(handled).catch_unwind();
    match body::handle_sized(body_len, handled).await {
        Ok(response) => response,
        Err(_) => error_response(&ApiError::internal("the server panicked handling this request")),
    }
}

/// An admitted request: who sent it, and what they sent.
struct Incoming {
    user: User,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
}

/// Handles one admitted request.
async fn handle(server: Arc<Server>, path: &str, r: Incoming) -> Response {
    match route(&server, &r.user, &r.method, path, &r.query, &r.headers, r.body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

fn accept(headers: &HeaderMap) -> String {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// 406 when the Accept header names only formats this server does not write (protobuf, CBOR):
/// it answers JSON (which YAML readers read too) and the real server would answer in one of them.
fn check_accept(headers: &HeaderMap) -> ApiResult<()> {
    let a = accept(headers);
    let served = |part: &str| {
        let media = part.split(';').next().unwrap_or_default().trim();
        media.is_empty()
            || [
                "*/*",
                "application/*",
                "application/json",
                "application/yaml",
                "text/plain",
            ]
            .contains(&media)
    };
    if a.split(',').any(served) {
        Ok(())
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml (asked for {a})"
        )))
    }
}

fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let a = accept(headers);
    for part in a.split(',') {
        if part.contains("as=APIGroupDiscoveryList") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

fn discovery_response(headers: &HeaderMap, types: &[ResourceType], core: bool, legacy: Value) -> Response {
    match aggregated_version(headers) {
        Some(v) => {
            let doc = discovery::aggregated(types, core, &format!("apidiscovery.k8s.io/{v}"));
            let ct = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
            (StatusCode::OK, [(header::CONTENT_TYPE, ct)], doc.to_string()).into_response()
        }
        None => json_response(StatusCode::OK, &legacy, &[]),
    }
}

async fn route(
    server: &Arc<Server>,
    user: &User,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    if matches!(segs.first(), Some(&("api" | "apis"))) {
        check_accept(headers)?;
    }
    let get_only = |r: Response| {
        if method == Method::GET {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    // Answered without the store: a long write holding its lock must not make the server look dead.
    match segs.as_slice() {
        ["version"] => return get_only(json_response(StatusCode::OK, &discovery::version_info(), &[])),
        ["healthz"] | ["livez"] | ["readyz"] => return get_only((StatusCode::OK, "ok").into_response()),
        _ => {}
    }
    let types = server.store.lock().types().to_vec();
    match segs.as_slice() {
        ["api"] => get_only(discovery_response(
            headers,
            &types,
            true,
            discovery::api_versions(&server.addr.to_string()),
        )),
        ["apis"] => get_only(discovery_response(
            headers,
            &types,
            false,
            discovery::api_group_list(&types),
        )),
        ["api", "v1"] => discovery::resource_list(&types, "", "v1")
            .map(|d| json_response(StatusCode::OK, &d, &[]))
            .ok_or_else(ApiError::path_not_found),
        ["apis", g] => discovery::api_group(&types, g)
            .map(|d| json_response(StatusCode::OK, &d, &[]))
            .ok_or_else(ApiError::path_not_found),
        ["apis", g, v] => discovery::resource_list(&types, g, v)
            .map(|d| json_response(StatusCode::OK, &d, &[]))
            .ok_or_else(ApiError::path_not_found),
        ["openapi", "v3"] => get_only(json_response(StatusCode::OK, &openapi::index(&types), &[])),
        ["openapi", "v3", "api", v] => {
            served_gv(&types, "", v).map(|_| json_response(StatusCode::OK, &openapi::document(&types, "", v), &[]))
        }
        ["openapi", "v3", "apis", g, v] => {
            served_gv(&types, g, v).map(|_| json_response(StatusCode::OK, &openapi::document(&types, g, v), &[]))
        }
        ["api", "v1", rest @ ..] => {
            let t = parse_target(&types, "", "v1", rest)?;
            resource(server, user, method, query, headers, body, t).await
        }
        ["apis", g, v, rest @ ..] => {
            let t = parse_target(&types, g, v, rest)?;
            resource(server, user, method, query, headers, body, t).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn served_gv(types: &[ResourceType], g: &str, v: &str) -> ApiResult<()> {
    if types.iter().any(|t| t.group == g && t.version == v) {
        Ok(())
    } else {
        Err(ApiError::path_not_found())
    }
}

fn parse_target(types: &[ResourceType], group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let find = |plural: &str| {
        types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    };
    let namespaced_path = rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    let (namespace, plural, name, sub) = if namespaced_path {
        (Some(rest[1]), rest[2], rest.get(3).copied(), rest.get(4).copied())
    } else {
        (None, rest[0], rest.get(1).copied(), rest.get(2).copied())
    };
    let extra = if namespaced_path {
        rest.len() > 5
    } else {
        rest.len() > 3
    };
    let rt = find(plural).ok_or_else(ApiError::path_not_found)?;
    if extra || (rt.namespaced && namespace.is_none() && name.is_some()) || (!rt.namespaced && namespace.is_some()) {
        return Err(ApiError::path_not_found());
    }
    let sub_ok = match sub {
        None => true,
        Some("status") => rt.status_subresource,
        Some("log") => rt.log_subresource,
        Some("binding" | "ephemeralcontainers") => rt.plural == "pods" && rt.group.is_empty(),
        Some("token") => rt.plural == "serviceaccounts" && rt.group.is_empty(),
        Some("eviction") => rt.plural == "pods" && rt.group.is_empty(),
        Some("scale") => rt.custom.as_ref().is_some_and(|c| c.scale.is_some()),
        Some(_) => false,
    };
    if !sub_ok {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

async fn resource(
    server: &Arc<Server>,
    user: &User,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
    t: Target,
) -> ApiResult<Response> {
    let is_watch = params::flag(query, "watch");
    if t.rt.create_only {
        return match (method, t.name.is_some()) {
            (&Method::POST, false) if t.rt.plural == "selfsubjectaccessreviews" => {
                reviews::self_subject_access_review(server, user, parse_body(&t.rt, headers, &body)?)
            }
            (&Method::POST, false) if t.rt.plural == "selfsubjectrulesreviews" => {
                reviews::self_subject_rules_review(server, user, parse_body(&t.rt, headers, &body)?)
            }
            (&Method::POST, false) => Ok(reviews::self_subject_review(user)),
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    match (method.clone(), t.name.is_some(), t.sub.as_deref()) {
        (Method::GET, _, Some("log")) => podlog::serve(server.clone(), &t, query).await,
        (Method::POST, true, Some("binding")) => bind(server, &t, &body),
        (Method::POST, true, Some("token")) => reviews::token_request(server, &t, parse_body(&t.rt, headers, &body)?),
        (Method::POST, true, Some("eviction")) => eviction::evict(server, &t, parse_body(&t.rt, headers, &body)?),
        (_, true, Some("scale")) => scale::serve(server, method, &t, query, headers, &body),
        // pods/log is read-only, pods/binding, pods/eviction and serviceaccounts/token create-only,
        // as in kube-apiserver.
        (_, _, Some("log" | "binding" | "token" | "eviction")) => Err(ApiError::method_not_allowed()),
        (Method::GET, false, _) if is_watch => watch::serve(server.clone(), &t, query, represent::form(headers)?),
        (Method::GET, false, _) => list(server, &t, query, headers),
        (Method::GET, true, _) => get(server, &t, query, headers),
        (Method::POST, false, None) => create(server, user, &t, query, headers, &body),
        (Method::PUT, true, _) => update(server, user, &t, query, headers, &body),
        (Method::PATCH, true, _) => patch(server, user, &t, query, headers, &body),
        (Method::DELETE, true, None) => delete(server, &t, query, &body),
        (Method::DELETE, false, None) => delete_collection(server, &t, query, &body),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn bind(server: &Server, t: &Target, body: &[u8]) -> ApiResult<Response> {
    let (ns, name) = (
        t.namespace.as_deref().unwrap_or_default(),
        t.name.as_deref().unwrap_or_default(),
    );
    let status = binding::bind(&mut server.store.lock(), &t.rt, ns, name, body)?;
    Ok(json_response(StatusCode::CREATED, &status, &[]))
}

pub(super) fn ns_key(t: &Target) -> String {
    if t.rt.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    }
}

fn get(server: &Server, t: &Target, query: &Query, headers: &HeaderMap) -> ApiResult<Response> {
    let form = represent::form(headers)?;
    represent::check_single(form, &t.rt)?;
    let name = t.name.as_deref().unwrap_or_default();
    let st = server.store.lock();
    let obj = st
        .get(t.rt.key(), &ns_key(t), name)
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    let view = events::to_view(&t.rt, obj);
    drop(st);
    if form == Form::Table {
        let include = Include::parse(query.get("includeObject").map(String::as_str));
        let rv = view["metadata"]["resourceVersion"].clone();
        return Ok(json_response(
            StatusCode::OK,
            &table(&t.rt, &[view], include, json!({"resourceVersion": rv})),
            &[],
        ));
    }
    Ok(json_response(StatusCode::OK, &represent::single(form, view), &[]))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

/// A list's resourceVersion, the key to continue after, and the objects.
type Snapshot = (u64, Option<String>, Vec<Value>);

/// The objects a list starts from: at the continue token's version, at an exact version, or now.
fn snapshot(server: &Server, t: &Target, query: &Query, filter: &Filter) -> ApiResult<Snapshot> {
    let rv_param = params::resource_version(query)?;
    let exact = query.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    let st = server.store.lock();
    let ns = t.namespace.as_deref();
    if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
        if rv_param.is_some_and(|rv| rv > 0) {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let tok = decode_continue(token)?;
        return Ok((tok.rv, Some(tok.start), st.list_at(t.rt.key(), ns, tok.rv)?));
    }
    match rv_param {
        Some(rv) if rv > st.rv() => Err(ApiError::timeout(format!(
            "Too large resource version: {rv}, current: {}",
            st.rv()
        ))
        .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))),
        Some(rv) if exact && rv > 0 => Ok((rv, None, st.list_at(t.rt.key(), ns, rv)?)),
        _ => Ok((st.rv(), None, st.list_matching(t.rt.key(), ns, |o| filter.matches(o)))),
    }
}

fn list(server: &Server, t: &Target, query: &Query, headers: &HeaderMap) -> ApiResult<Response> {
    let form = represent::form(headers)?;
    represent::check_list(form, &t.rt)?;
    let filter = Filter::parse(t, query)?;
    params::list_options(query, false)?;
    let limit: usize = params::int(query, "limit")?.unwrap_or(0);
    let (rv, start, all) = snapshot(server, t, query, &filter)?;
    let mut items: Vec<Value> = all
        .into_iter()
        .filter(|o| start.as_deref().is_none_or(|s| object_pos(o).as_str() > s))
        .filter(|o| filter.matches(o))
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let token = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv,
            start: items.last().map(object_pos).unwrap_or_default(),
        };
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&token).unwrap_or_default());
        meta["continue"] = json!(encoded);
        if filter.is_trivial() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let views: Vec<Value> = items.iter().map(|o| events::to_view(&t.rt, o)).collect();
    match form {
        Form::Table => {
            let include = Include::parse(query.get("includeObject").map(String::as_str));
            Ok(json_response(StatusCode::OK, &table(&t.rt, &views, include, meta), &[]))
        }
        Form::MetadataList(version) => Ok(json_response(
            StatusCode::OK,
            &represent::partial_list(&views, version, meta),
            &[],
        )),
        _ => Ok(json_response(StatusCode::OK, &list_body(&t.rt, views, meta), &[])),
    }
}

/// A `<Kind>List`; items of built-in types carry no apiVersion/kind, as kube-apiserver sends them.
fn list_body(rt: &ResourceType, views: Vec<Value>, meta: Value) -> Value {
    let builtin = rt.custom.is_none();
    let items: Vec<Value> = views
        .into_iter()
        .map(|mut v| {
            if builtin && let Some(m) = v.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            v
        })
        .collect();
    json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": items})
}

/// `namespace/name`, the etcd key order of lists.
fn object_pos(o: &Value) -> String {
    format!(
        "{}/{}",
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    crate::input::from_json(&raw, crate::input::Limits::REQUEST).map_err(|_| bad())
}

/// The body of a POST or PUT, by its Content-Type (JSON when there is none); 415 for a type the
/// endpoint does not read, listing the ones kube-apiserver would.
pub(super) fn parse_body(rt: &ResourceType, headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    let known = [
        "",
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ];
    if media.contains("cbor") || !known.contains(&media) || (rt.custom.is_some() && media.contains("protobuf")) {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ));
    }
    if media == "application/vnd.kubernetes.protobuf" {
        return protobuf::decode(body);
    }
    if media == "application/yaml" {
        return decode::yaml(body, "error converting YAML to JSON");
    }
    decode::json(body, "error decoding request body")
}

/// The options of a write (`options`: `CreateOptions`, `UpdateOptions` or `PatchOptions`, which
/// name its errors).
pub(super) fn write_opts(query: &Query, headers: &HeaderMap, options: &str) -> ApiResult<WriteOpts> {
    let dry_run = params::dry_run(query, options)?;
    let validation = match query.get("fieldValidation").map(String::as_str) {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some("Warn") | Some("") | None => FieldValidation::Warn,
        Some(other) => {
            let supported = [String::new(), "Ignore".into(), "Strict".into(), "Warn".into()];
            let errs = [StatusCause::not_supported("fieldValidation", &json!(other), &supported)];
            return Err(ApiError::invalid("meta.k8s.io", options, "", &errs));
        }
    };
    let manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => {
            if m.len() > 128 {
                return Err(ApiError::bad_request(
                    "fieldManager: Too long: may not be more than 128 bytes",
                ));
            }
            m.clone()
        }
        None => {
            let ua = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown");
            ua.split('/').next().unwrap_or("unknown").to_string()
        }
    };
    Ok(WriteOpts {
        dry_run,
        manager,
        validation,
        keep_managed: false,
    })
}

/// The object a write stored, in the form the client asked for (`patch_metadata` asks for
/// PartialObjectMetadata).
fn outcome_response(t: &Target, headers: &HeaderMap, out: ops::Outcome) -> Response {
    let code = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let form = represent::form(headers).unwrap_or(Form::Object);
    let view = represent::single(form, events::to_view(&t.rt, &out.object));
    json_response(code, &view, &out.warnings)
}

/// Runs a write under the store lock. A write of an RBAC object by a user outside
/// `system:masters` runs first as a dry run, whose result is checked for privilege escalation.
fn guarded(
    st: &mut StoreState,
    user: &User,
    t: &Target,
    opts: &WriteOpts,
    write: impl Fn(&mut StoreState, &WriteOpts) -> ApiResult<ops::Outcome>,
) -> ApiResult<ops::Outcome> {
    if escalation::applies(user, &t.rt) {
        let current = t
            .name
            .as_deref()
            .and_then(|name| st.get(t.rt.key(), &ns_key(t), name).cloned());
        let dry = WriteOpts {
            dry_run: true,
            ..opts.clone()
        };
        let preview = write(st, &dry)?;
        let ns = t.namespace.as_deref().unwrap_or_default();
        escalation::check(st, user, &t.rt, ns, &preview.object, current.as_ref())?;
    }
    write(st, opts)
}

fn create(
    server: &Server,
    user: &User,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let opts = write_opts(query, headers, "CreateOptions")?;
    let obj = parse_body(&t.rt, headers, body)?;
    let mut st = server.store.lock();
    let out = guarded(&mut st, user, t, &opts, |st, opts| {
        ops::create(st, &t.rt, t.namespace.as_deref(), obj.clone(), opts)
    })?;
    drop(st);
    server.store.changed.notify_one();
    Ok(outcome_response(t, headers, out))
}

fn update(
    server: &Server,
    user: &User,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let opts = write_opts(query, headers, "UpdateOptions")?;
    let obj = parse_body(&t.rt, headers, body)?;
    let name = t.name.as_deref().unwrap_or_default();
    let mut st = server.store.lock();
    let out = guarded(&mut st, user, t, &opts, |st, opts| {
        let ns = t.namespace.as_deref();
        ops::update(st, &t.rt, ns, name, obj.clone(), t.sub.as_deref(), opts)
    })?;
    drop(st);
    server.store.changed.notify_one();
    Ok(outcome_response(t, headers, out))
}

fn patch(
    server: &Server,
    user: &User,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchType::from_content_type(ct, &t.rt)?;
    let opts = write_opts(query, headers, "PatchOptions")?;
    if kind == PatchType::Apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        let errs = [StatusCause::required("fieldManager", "is required for apply patch")];
        return Err(ApiError::invalid("meta.k8s.io", "PatchOptions", "", &errs));
    }
    // Decoded before the store is locked: other requests wait for the lock.
    let patch_doc = match kind {
        PatchType::Apply => decode::yaml(body, "error decoding YAML")?,
        _ => decode::json(body, "error decoding patch")?,
    };
    let mut st = server.store.lock();
    let out = guarded(&mut st, user, t, &opts, |st, opts| {
        patch_locked(st, t, query, kind, &patch_doc, opts.clone())
    })?;
    drop(st);
    server.store.changed.notify_one();
    Ok(outcome_response(t, headers, out))
}

/// A PATCH (any of the four kinds) under the store lock.
fn patch_locked(
    st: &mut StoreState,
    t: &Target,
    query: &Query,
    kind: PatchType,
    patch_doc: &Value,
    mut opts: WriteOpts,
) -> ApiResult<ops::Outcome> {
    let name = t.name.as_deref().unwrap_or_default();
    let ns = ns_key(t);
    let current = st.get(t.rt.key(), &ns, name).cloned();
    let out = if kind == PatchType::Apply {
        let mut applied = patch_doc.clone();
        check_applied(t, &mut applied, name)?;
        // An applied resourceVersion is a precondition, as on any write.
        let applied_rv = applied["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if let Some(c) = &current
            && !applied_rv.is_empty()
            && applied_rv != c["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return Err(ApiError::stale(&t.rt.group, &t.rt.plural, name));
        }
        let force = query.get("force").map(String::as_str) == Some("true");
        let live = current.as_ref().map(|c| events::to_view(&t.rt, c));
        let merged = fields::apply(&t.rt, live.as_ref(), &applied, &opts.manager, force, t.sub.as_deref())?;
        opts.keep_managed = true;
        match current {
            None if t.sub.is_some() => return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, name)),
            None => ops::create(st, &t.rt, t.namespace.as_deref(), merged, &opts)?,
            Some(current) => {
                let obj = events::to_storage(&t.rt, merged);
                ops::replace(st, &t.rt, current, obj, t.sub.as_deref(), &opts)?
            }
        }
    } else {
        let current = current.ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
        let patched = apply_patch(kind, &t.rt, &events::to_view(&t.rt, &current), patch_doc)?;
        let patched_rv = patched["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if !patched_rv.is_empty() && patched_rv != current["metadata"]["resourceVersion"].as_str().unwrap_or_default() {
            return Err(ApiError::stale(&t.rt.group, &t.rt.plural, name));
        }
        if patched["metadata"]["uid"] != current["metadata"]["uid"] && !patched["metadata"]["uid"].is_null() {
            let why = format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                patched["metadata"]["uid"].as_str().unwrap_or_default(),
                current["metadata"]["uid"].as_str().unwrap_or_default()
            );
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name, &why));
        }
        let obj = events::to_storage(&t.rt, patched);
        ops::replace(st, &t.rt, current, obj, t.sub.as_deref(), &opts)?
    };
    Ok(out)
}

fn check_applied(t: &Target, applied: &mut Value, name: &str) -> ApiResult<()> {
    if !applied.is_object() {
        return Err(ApiError::bad_request("the apply configuration must be an object"));
    }
    if !applied["metadata"].is_object() && !applied["metadata"].is_null() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    let av = applied["apiVersion"].as_str().unwrap_or_default();
    let kind = applied["kind"].as_str().unwrap_or_default();
    if av != t.rt.api_version() || kind != t.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            t.rt.api_version()
        )));
    }
    match applied["metadata"]["name"].as_str() {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => applied["metadata"]["name"] = json!(name),
    }
    Ok(())
}

/// DeleteOptions from the body (a typed decode: a wrong type is a 400) and the query string.
fn delete_opts(query: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
    let doc: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        decode::json(body, "error decoding DeleteOptions")?
    };
    let orphan = match doc.orphan_dependents {
        Some(o) => Some(o),
        None => query.get("orphanDependents").map(|v| v == "true"),
    };
    let propagation = doc
        .propagation_policy
        .or_else(|| query.get("propagationPolicy").cloned())
        .or_else(|| orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
    let grace = match doc.grace_period_seconds {
        Some(g) => Some(g),
        None => params::int(query, "gracePeriodSeconds")?,
    };
    let dry_run = doc.dry_run.is_some_and(|d| d.iter().any(|v| v == "All")) || params::dry_run(query, "DeleteOptions")?;
    let preconditions = doc.preconditions.unwrap_or_default();
    Ok(DeleteOpts {
        propagation,
        grace,
        uid: preconditions.uid,
        resource_version: preconditions.resource_version,
        dry_run,
    })
}

fn success_status(t: &Target, obj: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": obj["metadata"]["name"], "group": t.rt.group, "kind": t.rt.plural, "uid": obj["metadata"]["uid"]}})
}

fn delete(server: &Server, t: &Target, query: &Query, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(query, body)?;
    let name = t.name.as_deref().unwrap_or_default();
    let mut st = server.store.lock();
    let res = ops::delete(&mut st, &t.rt, &ns_key(t), name, &opts)?;
    drop(st);
    server.store.changed.notify_one();
    let returns_object = t.rt.plural == "pods" && t.rt.group.is_empty();
    Ok(match res {
        Deleted::Gone(obj) if !returns_object => json_response(StatusCode::OK, &success_status(t, &obj), &[]),
        Deleted::Gone(obj) | Deleted::Pending(obj) => json_response(StatusCode::OK, &events::to_view(&t.rt, &obj), &[]),
    })
}

fn delete_collection(server: &Server, t: &Target, query: &Query, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(query, body)?;
    let filter = Filter::parse(t, query)?;
    let mut st = server.store.lock();
    let targets: Vec<Value> = st
        .list(t.rt.key(), t.namespace.as_deref())
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let mut deleted = Vec::new();
    for o in targets {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match ops::delete(&mut st, &t.rt, &ns, &name, &opts) {
            Ok(Deleted::Gone(obj) | Deleted::Pending(obj)) => deleted.push(events::to_view(&t.rt, &obj)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = st.rv();
    drop(st);
    server.store.changed.notify_one();
    let body = json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted});
    Ok(json_response(StatusCode::OK, &body, &[]))
}
