//! The `scale` subresource of custom resources whose CRD declares `subresources.scale`: an
//! autoscaling/v1 Scale built from `specReplicasPath`, `statusReplicasPath` and
//! `labelSelectorPath`, as apiextensions-apiserver builds it; a PUT or a merge/JSON patch of the
//! Scale writes `spec.replicas` back into the object at `specReplicasPath`.
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::embedded::apiserver::decode;
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::params::Query;
use crate::embedded::apiserver::http::response::json_response;
use crate::embedded::apiserver::http::router::{ns_key, parse_body, write_opts};
use crate::embedded::apiserver::http::target::Target;
use crate::embedded::apiserver::resources::{ResourceType, ScalePaths};
use crate::embedded::apiserver::storage::ops;
use crate::embedded::apiserver::storage::patch::{PatchType, apply_patch};

/// GET, PUT or PATCH of `<resource>/<name>/scale`.
pub(super) fn serve(
    server: &Server,
    method: &Method,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let paths =
        t.rt.custom
            .as_ref()
            .and_then(|c| c.scale.clone())
            .ok_or_else(ApiError::path_not_found)?;
    let name = t.name.as_deref().unwrap_or_default();
    let not_found = || ApiError::not_found(&t.rt.group, &t.rt.plural, name);
    match *method {
        Method::GET => {
            let st = server.store.lock();
            let obj = st.get(t.rt.key(), &ns_key(t), name).ok_or_else(not_found)?;
            Ok(json_response(StatusCode::OK, &scale_of(obj, &paths), &[]))
        }
        Method::PUT => {
            let wanted = parse_body(&t.rt, headers, body)?;
            write(server, t, query, headers, &paths, |_| Ok(wanted.clone()))
        }
        Method::PATCH => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = PatchType::from_content_type(ct, &t.rt)?;
            if kind == PatchType::Apply {
                return Err(ApiError::unsupported_media_type(
                    "apply patches are not supported on the scale subresource of this server",
                ));
            }
            let doc = decode::json(body, "error decoding patch")?;
            write(server, t, query, headers, &paths, |current| {
                apply_patch(kind, &t.rt, current, &doc)
            })
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The Scale of a custom resource.
fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let meta = &obj["metadata"];
    let mut status = json!({"replicas": lookup(obj, &paths.status_replicas).as_i64().unwrap_or(0)});
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(|p| lookup(obj, p).as_str().map(str::to_string))
    {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": lookup(obj, &paths.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// The value at a `.a.b` path (null when absent).
fn lookup<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.trim_start_matches('.')
        .split('.')
        .fold(obj, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// Sets the value at a `.a.b` path, creating the objects on the way.
fn set(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    for key in path.trim_start_matches('.').split('.') {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[key];
    }
    *cur = value;
}

/// Reads the wanted Scale (`desired` maps the current Scale to it), checks it and writes its
/// replicas into the object.
fn write(
    server: &Server,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    paths: &ScalePaths,
    desired: impl Fn(&Value) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let opts = write_opts(query, headers, "UpdateOptions")?;
    let name = t.name.as_deref().unwrap_or_default();
    let mut st = server.store.lock();
    let current = st
        .get(t.rt.key(), &ns_key(t), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    let wanted = desired(&scale_of(&current, paths))?;
    let replicas = check_scale(&t.rt, name, &wanted, paths)?;
    let rv = wanted["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    if !rv.is_empty() && rv != current["metadata"]["resourceVersion"].as_str().unwrap_or_default() {
        return Err(ApiError::stale(&t.rt.group, &t.rt.plural, name));
    }
    let mut next = current.clone();
    set(&mut next, &paths.spec_replicas, json!(replicas));
    let out = ops::replace(&mut st, &t.rt, current, next, None, &opts)?;
    drop(st);
    server.store.changed.notify_one();
    Ok(json_response(
        StatusCode::OK,
        &scale_of(&out.object, paths),
        &out.warnings,
    ))
}

/// `spec.replicas` of a Scale body: 400 for a body that is not an autoscaling/v1 Scale, 422 for a
/// negative count (named by `specReplicasPath`, as apiextensions-apiserver does).
fn check_scale(rt: &ResourceType, name: &str, scale: &Value, paths: &ScalePaths) -> ApiResult<i64> {
    let kind = scale["kind"].as_str().unwrap_or("Scale");
    let api_version = scale["apiVersion"].as_str().unwrap_or("autoscaling/v1");
    if kind != "Scale" || api_version != "autoscaling/v1" {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (autoscaling/v1)"
        )));
    }
    let replicas = &scale["spec"]["replicas"];
    let n = match replicas {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {v} into Go struct field ScaleSpec.spec.replicas of type int32"
            ))
        })?,
    };
    if n < 0 {
        let errs = [StatusCause::invalid(
            &paths.spec_replicas,
            &json!(n),
            "should be a non-negative integer",
        )];
        return Err(ApiError::invalid(&rt.group, &rt.kind, name, &errs));
    }
    Ok(n)
}
