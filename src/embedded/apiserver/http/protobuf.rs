//! Request bodies in Kubernetes protobuf (`application/vnd.kubernetes.protobuf`), which kubectl's
//! typed clients send for `kubectl create secret|configmap|namespace|serviceaccount|service|token` and
//! `kubectl auth can-i|whoami`. Decoded into JSON for the types those commands send; responses
//! stay JSON (kubectl accepts both).
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::ids;

/// One protobuf field: number and payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// Splits a message into its fields (fixed-width fields are skipped: these types have none).
fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

fn map_entry(b: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = text(k)?,
            (2, Field::Bytes(v)) if bytes_value => value = json!(base64::engine::general_purpose::STANDARD.encode(v)),
            (2, Field::Bytes(v)) => value = json!(text(v)?),
            _ => {}
        }
    }
    Some((key, value))
}

fn insert_entry(obj: &mut Map<String, Value>, field: &str, b: &[u8], bytes_value: bool) -> Option<()> {
    let (k, v) = map_entry(b, bytes_value)?;
    obj.entry(field).or_insert_with(|| json!({}))[k] = v;
    Some(())
}

fn time(b: &[u8]) -> Option<Value> {
    let mut secs = 0i64;
    for (n, f) in fields(b)? {
        if let (1, Field::Varint(v)) = (n, f) {
            secs = v as i64;
        }
    }
    let t = jiff::Timestamp::from_second(secs).ok()?;
    Some(json!(ids::time(t)))
}

fn owner_ref(b: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => o.insert("kind".into(), json!(text(v)?)),
            (3, Field::Bytes(v)) => o.insert("name".into(), json!(text(v)?)),
            (4, Field::Bytes(v)) => o.insert("uid".into(), json!(text(v)?)),
            (5, Field::Bytes(v)) => o.insert("apiVersion".into(), json!(text(v)?)),
            (6, Field::Varint(v)) => o.insert("controller".into(), json!(v != 0)),
            (7, Field::Varint(v)) => o.insert("blockOwnerDeletion".into(), json!(v != 0)),
            _ => None,
        };
    }
    Some(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    let string_fields = [
        "",
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
    ];
    for (n, f) in fields(b)? {
        match (n, f) {
            (1..=6, Field::Bytes(v)) => {
                m.insert(string_fields[n as usize].into(), json!(text(v)?));
            }
            (7, Field::Varint(v)) => {
                m.insert("generation".into(), json!(v as i64));
            }
            (8, Field::Bytes(v)) => {
                m.insert("creationTimestamp".into(), time(v)?);
            }
            (11, Field::Bytes(v)) => insert_entry(&mut m, "labels", v, false)?,
            (12, Field::Bytes(v)) => insert_entry(&mut m, "annotations", v, false)?,
            (13, Field::Bytes(v)) => {
                let r = owner_ref(v)?;
                m.entry("ownerReferences")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()?
                    .push(r);
            }
            (14, Field::Bytes(v)) => {
                m.entry("finalizers")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()?
                    .push(json!(text(v)?));
            }
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn string_list(obj: &mut Map<String, Value>, field: &str, v: &[u8]) -> Option<()> {
    obj.entry(field)
        .or_insert_with(|| json!([]))
        .as_array_mut()?
        .push(json!(text(v)?));
    Some(())
}

fn name_ref(v: &[u8], name_field: u64) -> Option<Value> {
    let mut o = Map::new();
    for (n, f) in fields(v)? {
        if let (n, Field::Bytes(b)) = (n, f)
            && n == name_field
        {
            o.insert("name".into(), json!(text(b)?));
        }
    }
    Some(Value::Object(o))
}

/// A message whose fields are strings, named by number (`(1, "namespace")`), plus int64 fields.
fn flat_message(b: &[u8], strings: &[(u64, &str)], ints: &[(u64, &str)]) -> Option<Value> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match f {
            Field::Bytes(v) => {
                if let Some((_, name)) = strings.iter().find(|(num, _)| *num == n) {
                    o.insert((*name).into(), json!(text(v)?));
                }
            }
            Field::Varint(v) => {
                if let Some((_, name)) = ints.iter().find(|(num, _)| *num == n) {
                    o.insert((*name).into(), json!(v as i64));
                }
            }
        }
    }
    Some(Value::Object(o))
}

/// `TokenRequestSpec`: audiences (1), boundObjectRef (3), expirationSeconds (4).
fn token_request_spec(b: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => string_list(&mut spec, "audiences", v)?,
            (3, Field::Bytes(v)) => {
                let r = flat_message(v, &[(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")], &[])?;
                spec.insert("boundObjectRef".into(), r);
            }
            (4, Field::Varint(v)) => {
                spec.insert("expirationSeconds".into(), json!(v as i64));
            }
            _ => {}
        }
    }
    Some(Value::Object(spec))
}

/// `SelfSubjectAccessReviewSpec`: resourceAttributes (1), nonResourceAttributes (2).
fn access_review_spec(b: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                let names = [
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ];
                spec.insert("resourceAttributes".into(), flat_message(v, &names, &[])?);
            }
            (2, Field::Bytes(v)) => {
                let names = [(1, "path"), (2, "verb")];
                spec.insert("nonResourceAttributes".into(), flat_message(v, &names, &[])?);
            }
            _ => {}
        }
    }
    Some(Value::Object(spec))
}

/// Inserts a string field unless it is empty (Go's zero value, which JSON leaves out).
fn non_empty(obj: &mut Map<String, Value>, field: &str, v: &[u8]) -> Option<()> {
    let t = text(v)?;
    if !t.is_empty() {
        obj.insert(field.into(), json!(t));
    }
    Some(())
}

/// `IntOrString`: type (1: 0 int, 1 string), intVal (2), strVal (3).
fn int_or_string(b: &[u8]) -> Option<Value> {
    let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Varint(v)) => is_string = v == 1,
            (2, Field::Varint(v)) => int = v as i64,
            (3, Field::Bytes(v)) => string = text(v)?,
            _ => {}
        }
    }
    Some(if is_string { json!(string) } else { json!(int) })
}

/// `ServicePort`: name (1), protocol (2), port (3), targetPort (4), nodePort (5).
fn service_port(b: &[u8]) -> Option<Value> {
    let mut p = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => non_empty(&mut p, "name", v)?,
            (2, Field::Bytes(v)) => non_empty(&mut p, "protocol", v)?,
            (3, Field::Varint(v)) => {
                p.insert("port".into(), json!(v as i64));
            }
            (4, Field::Bytes(v)) => {
                p.insert("targetPort".into(), int_or_string(v)?);
            }
            (5, Field::Varint(v)) if v != 0 => {
                p.insert("nodePort".into(), json!(v as i64));
            }
            _ => {}
        }
    }
    Some(Value::Object(p))
}

/// The `ServiceSpec` fields `kubectl create service` sets: ports (1), selector (2), clusterIP (3),
/// type (4), externalIPs (5), sessionAffinity (7), externalName (10).
fn service_spec(b: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => spec
                .entry("ports")
                .or_insert_with(|| json!([]))
                .as_array_mut()?
                .push(service_port(v)?),
            (2, Field::Bytes(v)) => insert_entry(&mut spec, "selector", v, false)?,
            (3, Field::Bytes(v)) => non_empty(&mut spec, "clusterIP", v)?,
            (4, Field::Bytes(v)) => non_empty(&mut spec, "type", v)?,
            (5, Field::Bytes(v)) => string_list(&mut spec, "externalIPs", v)?,
            (7, Field::Bytes(v)) => non_empty(&mut spec, "sessionAffinity", v)?,
            (10, Field::Bytes(v)) => non_empty(&mut spec, "externalName", v)?,
            _ => {}
        }
    }
    Some(Value::Object(spec))
}

fn decode_object(kind: &str, raw: &[u8]) -> Option<Value> {
    let mut obj = Map::new();
    for (n, f) in fields(raw)? {
        match (kind, n, f) {
            (_, 1, Field::Bytes(v)) => {
                obj.insert("metadata".into(), object_meta(v)?);
            }
            ("Secret", 2, Field::Bytes(v)) => insert_entry(&mut obj, "data", v, true)?,
            ("Secret", 3, Field::Bytes(v)) => {
                obj.insert("type".into(), json!(text(v)?));
            }
            ("Secret", 4, Field::Bytes(v)) => insert_entry(&mut obj, "stringData", v, false)?,
            ("Secret" | "ConfigMap", 5, Field::Varint(v)) | ("ConfigMap", 4, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("ConfigMap", 2, Field::Bytes(v)) => insert_entry(&mut obj, "data", v, false)?,
            ("ConfigMap", 3, Field::Bytes(v)) => insert_entry(&mut obj, "binaryData", v, true)?,
            ("Namespace", 2, Field::Bytes(v)) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(v)? {
                    if let (1, Field::Bytes(b)) = (sn, sf) {
                        string_list(&mut spec, "finalizers", b)?;
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            ("ServiceAccount", 2, Field::Bytes(v)) => {
                obj.entry("secrets")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()?
                    .push(name_ref(v, 3)?);
            }
            ("ServiceAccount", 3, Field::Bytes(v)) => {
                obj.entry("imagePullSecrets")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()?
                    .push(name_ref(v, 1)?);
            }
            ("ServiceAccount", 4, Field::Varint(v)) => {
                obj.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            ("TokenRequest", 2, Field::Bytes(v)) => {
                obj.insert("spec".into(), token_request_spec(v)?);
            }
            ("SelfSubjectAccessReview", 2, Field::Bytes(v)) => {
                obj.insert("spec".into(), access_review_spec(v)?);
            }
            ("Service", 2, Field::Bytes(v)) => {
                obj.insert("spec".into(), service_spec(v)?);
            }
            ("SelfSubjectRulesReview", 2, Field::Bytes(v)) => {
                obj.insert("spec".into(), flat_message(v, &[(1, "namespace")], &[])?);
            }
            _ => {}
        }
    }
    Some(Value::Object(obj))
}

/// Decodes a `k8s\0`-prefixed protobuf body of a supported kind into JSON.
pub(super) fn decode(body: &[u8]) -> ApiResult<Value> {
    let unsupported = |what: &str| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({what} cannot be decoded from protobuf here)"
        ))
    };
    let envelope = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| ApiError::bad_request("protobuf body lacks the k8s envelope"))?;
    let bad = || ApiError::bad_request("malformed protobuf body");
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(envelope).ok_or_else(bad)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm).ok_or_else(bad)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = text(v).ok_or_else(bad)?,
                        (2, Field::Bytes(v)) => kind = text(v).ok_or_else(bad)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let known = match api_version.as_str() {
        "v1" => ["Secret", "ConfigMap", "Namespace", "ServiceAccount", "Service"].contains(&kind.as_str()),
        "authentication.k8s.io/v1" => kind == "TokenRequest" || kind == "SelfSubjectReview",
        "authorization.k8s.io/v1" => kind == "SelfSubjectAccessReview" || kind == "SelfSubjectRulesReview",
        _ => false,
    };
    if !known {
        return Err(unsupported(&format!("{api_version}/{kind}")));
    }
    let mut obj = decode_object(&kind, raw).ok_or_else(bad)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(num << 3) | 2, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let entry = [field(1, b"password"), field(2, b"s3cr3t")].concat();
        let meta = [field(1, b"creds"), field(3, b"default")].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\x00".to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "creds");
        assert_eq!(
            v["data"]["password"],
            base64::engine::general_purpose::STANDARD.encode("s3cr3t")
        );
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["kind"], "Secret");
    }
}
