//! The form a response takes, as the client's Accept header asks (`as=`, `g=`, `v=`): the object
//! itself, a server-side Table, or only its metadata (`PartialObjectMetadata`, and
//! `PartialObjectMetadataList` for lists), as kube-apiserver's content negotiation gives them.
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::kinds;
use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::resources::ResourceType;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// The object (or list) itself.
    Object,
    /// `meta.k8s.io` Table (server-side printing).
    Table,
    /// `PartialObjectMetadata` of `meta.k8s.io/<version>`.
    Metadata(&'static str),
    /// `PartialObjectMetadataList` of `meta.k8s.io/<version>`.
    MetadataList(&'static str),
}

const ACCEPTED: &str = "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The first form of the Accept header this server gives; 406 when none is (an unknown `as=`,
/// group or version). Media types other than JSON and YAML are left to `check_accept`.
pub(super) fn form(headers: &HeaderMap) -> ApiResult<Form> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.trim().is_empty() {
        return Ok(Form::Object);
    }
    accept
        .split(',')
        .find_map(part_form)
        .ok_or_else(|| ApiError::not_acceptable(ACCEPTED))
}

/// The form one `media;params` part asks for, if this server gives it.
fn part_form(part: &str) -> Option<Form> {
    let mut pieces = part.split(';').map(str::trim);
    let media = pieces.next().unwrap_or_default();
    if media.contains("protobuf") || media.contains("cbor") {
        return None;
    }
    let (mut as_, mut g, mut v) = ("", "", "");
    for p in pieces {
        match p.split_once('=') {
            Some(("as", x)) => as_ = x,
            Some(("g", x)) => g = x,
            Some(("v", x)) => v = x,
            _ => {}
        }
    }
    if as_.is_empty() {
        return Some(Form::Object);
    }
    let version = match (g, v) {
        ("meta.k8s.io", "v1") => "v1",
        ("meta.k8s.io", "v1beta1") => "v1beta1",
        _ => return None,
    };
    match as_ {
        "Table" => Some(Form::Table),
        "PartialObjectMetadata" => Some(Form::Metadata(version)),
        "PartialObjectMetadataList" => Some(Form::MetadataList(version)),
        _ => None,
    }
}

/// The Go type kube-apiserver names in its NotAcceptable messages (`*core.ConfigMap`).
fn go_type(rt: &ResourceType, list: bool) -> String {
    let suffix = if list { "List" } else { "" };
    if rt.custom.is_some() {
        format!("*unstructured.Unstructured{suffix}")
    } else {
        format!("*{}.{}{suffix}", kinds::internal_package(&rt.group), rt.kind)
    }
}

/// 406 unless the form suits a single object.
pub(super) fn check_single(form: Form, rt: &ResourceType) -> ApiResult<()> {
    match form {
        Form::MetadataList(_) => Err(ApiError::not_acceptable(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
            go_type(rt, false)
        ))),
        _ => Ok(()),
    }
}

/// 406 unless the form suits a list.
pub(super) fn check_list(form: Form, rt: &ResourceType) -> ApiResult<()> {
    match form {
        Form::Metadata(_) => Err(ApiError::not_acceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            go_type(rt, true)
        ))),
        _ => Ok(()),
    }
}

/// An object (in its served view) as `PartialObjectMetadata`.
pub(super) fn partial(view: &Value, version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": view["metadata"]})
}

/// Objects (in their served view) as a `PartialObjectMetadataList`.
pub(super) fn partial_list(views: &[Value], version: &str, meta: Value) -> Value {
    let items: Vec<Value> = views.iter().map(|v| partial(v, version)).collect();
    json!({"kind": "PartialObjectMetadataList", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": meta, "items": items})
}

/// A single object in the asked form (Tables are built by the caller).
pub(super) fn single(form: Form, view: Value) -> Value {
    match form {
        Form::Metadata(version) => partial(&view, version),
        _ => view,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_first_served_form() {
        struct Case {
            accept: &'static str,
            want: Option<Form>,
        }
        let cases = [
            Case {
                accept: "",
                want: Some(Form::Object),
            },
            Case {
                accept: "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                want: Some(Form::Metadata("v1")),
            },
            Case {
                accept: "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1, application/json",
                want: Some(Form::MetadataList("v1beta1")),
            },
            Case {
                accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                want: Some(Form::Table),
            },
            Case {
                accept: "application/json;as=Foo;g=meta.k8s.io;v=v1, application/json",
                want: Some(Form::Object),
            },
            Case {
                accept: "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
                want: None,
            },
        ];
        for c in cases {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, c.accept.parse().expect("header"));
            assert_eq!(form(&h).ok(), c.want, "{}", c.accept);
        }
    }
}
