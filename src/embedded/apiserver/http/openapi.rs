//! OpenAPI v3 documents per group-version (`/openapi/v3`, `/openapi/v3/apis/<g>/<v>`): the paths
//! with their PATCH parameters (kubectl checks `fieldValidation` support there) and the schemas
//! (a CRD's `openAPIV3Schema`, which `kubectl explain` renders).
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::embedded::apiserver::http::discovery::KUBE_GIT_VERSION;
use crate::embedded::apiserver::resources::ResourceType;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// `api/v1` or `apis/<g>/<v>`.
pub(super) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index.
pub(super) fn index(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = types.iter().map(|t| (t.group.clone(), t.version.clone())).collect();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        let doc = document(types, &g, &v);
        let hash = hex::encode(Sha256::digest(doc.to_string().as_bytes())).to_uppercase();
        let path = gv_path(&g, &v);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", &hash[..32])}),
        );
    }
    json!({"paths": paths})
}

/// The schema name of a type: reversed group, version, kind (`es.4pr.inge.delivery.v1alpha1.Pipeline`).
pub(super) fn schema_name(t: &ResourceType) -> String {
    if t.custom.is_none() {
        let pkg = match t.group.as_str() {
            "" => "io.k8s.api.core".to_string(),
            "events.k8s.io" => "io.k8s.api.events".to_string(),
            "coordination.k8s.io" => "io.k8s.api.coordination".to_string(),
            "rbac.authorization.k8s.io" => "io.k8s.api.rbac".to_string(),
            "authorization.k8s.io" => "io.k8s.api.authorization".to_string(),
            "authentication.k8s.io" => "io.k8s.api.authentication".to_string(),
            "apiextensions.k8s.io" => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string(),
            g => g.to_string(),
        };
        return format!("{pkg}.{}.{}", t.version, t.kind);
    }
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn body_ref(name: &str) -> Value {
    json!({"schema": {"$ref": format!("#/components/schemas/{name}")}})
}

fn operation(t: &ResourceType, action: &str, id: &str, params: Vec<Value>, body: Option<Value>, schema: &str) -> Value {
    let mut op = json!({
        "operationId": id,
        "description": format!("{action} {}", t.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": body_ref(schema)}},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(t),
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

fn write_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
            "string",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
            "string",
        ),
    ]
}

fn paths_for(t: &ResourceType, paths: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(&t.group, &t.version));
    let collection = if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", t.plural)
    } else {
        format!("{base}/{}", t.plural)
    };
    let item = format!("{collection}/{{name}}");
    let name = schema_name(t);
    let list = format!("{name}List");
    let id = format!("{}{}", t.kind, t.version);
    let json_body = json!({"content": {"application/json": body_ref(&name), "application/yaml": body_ref(&name)}});
    let patch_content = json!({
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    });
    // Strategic merge patch is accepted for built-in types, but it is not advertised here: our
    // built-in schemas carry no patch merge keys, so kubectl computes such patches from its
    // compiled-in types instead (its fallback when the document does not offer the type).
    let mut patch_params = write_params();
    patch_params.push(query("force", "Force is going to \"force\" Apply requests.", "boolean"));
    paths.insert(
        collection,
        json!({
            "get": operation(t, "list", &format!("list{id}"), vec![query("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"), query("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"), query("watch", "Watch for changes.", "boolean")], None, &list),
            "post": operation(t, "post", &format!("create{id}"), write_params(), Some(json_body.clone()), &name),
            "delete": operation(t, "deletecollection", &format!("deletecollection{id}"), vec![], None, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
        }),
    );
    paths.insert(
        item.clone(),
        json!({
            "get": operation(t, "get", &format!("read{id}"), vec![], None, &name),
            "put": operation(t, "put", &format!("replace{id}"), write_params(), Some(json_body.clone()), &name),
            "patch": operation(t, "patch", &format!("patch{id}"), patch_params.clone(), Some(json!({"content": patch_content.clone()})), &name),
            "delete": operation(t, "delete", &format!("delete{id}"), vec![], None, &name),
        }),
    );
    if t.status_subresource {
        paths.insert(
            format!("{item}/status"),
            json!({
                "get": operation(t, "get", &format!("read{id}Status"), vec![], None, &name),
                "put": operation(t, "put", &format!("replace{id}Status"), write_params(), Some(json_body), &name),
                "patch": operation(t, "patch", &format!("patch{id}Status"), patch_params, Some(json!({"content": patch_content})), &name),
            }),
        );
    }
}

fn type_schema(t: &ResourceType) -> Value {
    let mut schema = match &t.custom {
        Some(c) if c.schema.is_object() => c.schema.clone(),
        Some(_) => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        None => {
            json!({"type": "object", "description": format!("{} is a built-in Kubernetes {} object.", t.kind, t.kind),
            "x-kubernetes-preserve-unknown-fields": true})
        }
    };
    if schema["type"].is_null() {
        schema["type"] = json!("object");
    }
    schema["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
    schema["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
    schema["properties"]["metadata"] = json!({"description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        "allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}]});
    schema["x-kubernetes-group-version-kind"] = json!([gvk(t)]);
    schema
}

fn list_schema(t: &ResourceType) -> Value {
    json!({
        "type": "object",
        "description": format!("{}List is a list of {}", t.kind, t.kind),
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", schema_name(t))}},
            "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}]},
        },
        "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": format!("{}List", t.kind)}],
    })
}

fn meta_schemas(schemas: &mut Map<String, Value>) {
    let s = |d: &str| json!({"type": "string", "description": d});
    schemas.insert(
        OBJECT_META.into(),
        json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
            "properties": {
                "name": s("Name must be unique within a namespace."),
                "generateName": s("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
                "namespace": s("Namespace defines the space within which each name must be unique."),
                "uid": s("UID is the unique in time and space value for this object."),
                "resourceVersion": s("An opaque value that represents the internal version of this object."),
                "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
                "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
                "deletionTimestamp": {"type": "string", "format": "date-time", "description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."},
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects."},
                "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": "Annotations is an unstructured key value map stored with a resource."},
                "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
                "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
                "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }}),
    );
    schemas.insert(
        LIST_META.into(),
        json!({"type": "object", "properties": {"continue": s("continue token"), "remainingItemCount": {"type": "integer", "format": "int64"}, "resourceVersion": s("resource version")}}),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "description": "Status is a return value for calls that don't return other objects.", "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]}),
    );
}

/// The OpenAPI v3 document of one group-version.
pub(super) fn document(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    meta_schemas(&mut schemas);
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        paths_for(t, &mut paths);
        schemas.insert(schema_name(t), type_schema(t));
        schemas.insert(format!("{}List", schema_name(t)), list_schema(t));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
