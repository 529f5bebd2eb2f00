//! Structural-schema handling of custom resources: pruning unknown fields, applying defaults and
//! validating against `openAPIV3Schema`, with kube-openapi's error wording.
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use regex::Regex;
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names::is_dns_subdomain;
use crate::embedded::apiserver::error::StatusCause;

fn child_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Calls `f` on every node of a schema (properties, items, additionalProperties) with its path
/// in the form CRD validation errors use (`<path>.properties[spec].items`).
pub(crate) fn visit(schema: &Value, path: &str, f: &mut dyn FnMut(&Value, &str)) {
    f(schema, path);
    for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
        visit(sub, &format!("{path}.properties[{key}]"), f);
    }
    if schema["items"].is_object() {
        visit(&schema["items"], &format!("{path}.items"), f);
    }
    if schema["additionalProperties"].is_object() {
        visit(
            &schema["additionalProperties"],
            &format!("{path}.additionalProperties"),
            f,
        );
    }
}

/// An error for each `pattern` that is not a regular expression: kube-apiserver refuses such a
/// CRD, and validating against a pattern that cannot be compiled would silently pass.
pub(crate) fn pattern_errors(schema: &Value, path: &str) -> Vec<StatusCause> {
    let mut out = Vec::new();
    visit(schema, path, &mut |node, at| {
        if let Some(p) = node["pattern"].as_str()
            && let Err(e) = Regex::new(p)
        {
            let why = e.to_string().lines().last().unwrap_or_default().to_string();
            let detail = format!("must be a valid regular expression, but isn't: {why}");
            out.push(StatusCause::invalid(&format!("{at}.pattern"), &json!(p), &detail));
        }
    });
    out
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == json!(true)
}

/// Removes fields the schema does not declare; returns their paths. The root keeps
/// `apiVersion`, `kind` and `metadata`.
pub(crate) fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if schema.is_null() {
        return unknown;
    }
    if let Some(map) = obj.as_object_mut() {
        let props = &schema["properties"];
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                continue;
            }
            match props.get(&key) {
                Some(sub) => {
                    if let Some(v) = map.get_mut(&key) {
                        prune_value(sub, v, &key, &mut unknown);
                    }
                }
                None if preserves(schema) => {}
                None => {
                    map.remove(&key);
                    unknown.push(key);
                }
            }
        }
    }
    unknown
}

fn prune_value(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == json!(true) && !schema["properties"].is_object() {
        return;
    }
    match value {
        Value::Object(map) => {
            let embedded = schema["x-kubernetes-embedded-resource"] == json!(true);
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub_path = child_path(path, &key);
                if embedded && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(&key)) {
                    if let Some(v) = map.get_mut(&key) {
                        prune_value(sub, v, &sub_path, unknown);
                    }
                } else if additional.is_object() {
                    if let Some(v) = map.get_mut(&key) {
                        prune_value(additional, v, &sub_path, unknown);
                    }
                } else if !(preserves(schema) || additional == &json!(true)) {
                    map.remove(&key);
                    unknown.push(sub_path);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_value(&schema["items"], item, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Fills in `default`s for absent fields (and for nulls where the field is not nullable).
pub(crate) fn apply_defaults(schema: &Value, obj: &mut Value) {
    if schema.is_null() {
        return;
    }
    default_value(schema, obj);
}

fn default_value(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, sub) in props {
                    let absent = match map.get(key) {
                        None => true,
                        Some(Value::Null) => sub["nullable"] != json!(true),
                        Some(_) => false,
                    };
                    if absent && let Some(d) = sub.get("default") {
                        map.insert(key.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(key) {
                        default_value(sub, v);
                    }
                }
            }
            if schema["additionalProperties"].is_object() {
                for v in map.values_mut() {
                    default_value(&schema["additionalProperties"], v);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                default_value(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// Validates an object against the schema. Root `apiVersion`, `kind` and `metadata` are
/// checked elsewhere (only `metadata.name`/`generateName` constraints apply from the schema).
pub(crate) fn validate(schema: &Value, obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    if schema.is_null() {
        return errs;
    }
    let mut root = obj.clone();
    if let Some(m) = root.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("metadata");
    }
    let mut schema = schema.clone();
    if let Some(props) = schema["properties"].as_object_mut() {
        props.remove("apiVersion");
        props.remove("kind");
        props.remove("metadata");
    }
    if let Some(req) = schema["required"].as_array_mut() {
        req.retain(|r| !["apiVersion", "kind", "metadata"].contains(&r.as_str().unwrap_or_default()));
    }
    check(&schema, &root, "", &mut errs);
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn name_of(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn check(schema: &Value, value: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    if value.is_null() {
        if schema["nullable"] != json!(true) && !schema["type"].is_null() {
            let want = schema["type"].as_str().unwrap_or_default();
            let mut e = StatusCause::invalid(
                path,
                &json!("null"),
                &format!("{} in body must be of type {want}: \"null\"", name_of(path)),
            );
            e.reason = "FieldValueTypeInvalid";
            errs.push(e);
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == json!(true);
    if let Some(want) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == want
            || (want == "number" && actual == "integer")
            || int_or_string && (actual == "integer" || actual == "string");
        if !ok {
            let mut e = StatusCause::invalid(
                path,
                &json!(actual),
                &format!("{} in body must be of type {want}: {actual:?}", name_of(path)),
            );
            e.reason = "FieldValueTypeInvalid";
            errs.push(e);
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map(str::to_string).unwrap_or_else(|| o.to_string()))
            .collect();
        errs.push(StatusCause::not_supported(path, value, &supported));
    }
    match value {
        Value::String(s) => check_string(schema, s, value, path, errs),
        Value::Number(_) => check_number(schema, value, path, errs),
        Value::Array(items) => check_array(schema, items, path, errs),
        Value::Object(map) => check_object(schema, map, path, errs),
        _ => {}
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        check(sub, value, path, errs);
    }
    if let Some(any) = schema["anyOf"].as_array()
        && !any.iter().any(|s| passes(s, value, path))
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!("{} in body must be of type {}", name_of(path), "anyOf"),
        ));
    }
    if let Some(one) = schema["oneOf"].as_array()
        && one.iter().filter(|s| passes(s, value, path)).count() != 1
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!(
                "{} in body must validate one and only one schema (oneOf)",
                name_of(path)
            ),
        ));
    }
    if schema["not"].is_object() && passes(&schema["not"], value, path) {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!("{} in body must not validate the schema (not)", name_of(path)),
        ));
    }
}

fn passes(schema: &Value, value: &Value, path: &str) -> bool {
    let mut e = Vec::new();
    check(schema, value, path, &mut e);
    e.is_empty()
}

fn check_string(schema: &Value, s: &str, value: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        errs.push(StatusCause::too_long(path, max));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!("{} in body should be at least {min} chars long", name_of(path)),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && compiled(pattern).is_some_and(|re| !re.is_match(s))
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!("{} in body should match '{pattern}'", name_of(path)),
        ));
    }
    if let Some(format) = schema["format"].as_str()
        && !format_ok(format, s)
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!("{} in body must be of type {format}: {s:?}", name_of(path)),
        ));
    }
}

/// A schema `pattern`, compiled once: every write of a custom resource is validated, and the
/// patterns are those of the few installed CRDs. `None` for a pattern that does not compile
/// (such a CRD is refused when it is written, see [`pattern_errors`]).
fn compiled(pattern: &str) -> Option<Arc<Regex>> {
    static CACHE: LazyLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> = LazyLock::new(Mutex::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "duration" => humantime::parse_duration(s).is_ok() || go_duration(s),
        "uri" => url::Url::parse(s).is_ok(),
        "uuid" => {
            s.len() == 36
                && s.chars().enumerate().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "int32" | "int64" | "float" | "double" | "password" | "" => true,
        "hostname" => is_dns_subdomain(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

/// Go's `time.ParseDuration` syntax (`1h30m`, `10s`, `1.5h`).
fn go_duration(s: &str) -> bool {
    s == "0" || compiled(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$").is_some_and(|r| r.is_match(s))
}

fn check_number(schema: &Value, value: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let Some(n) = value.as_f64() else { return };
    // (bound, its exclusive flag, words, the side of the bound that is out of range)
    let bounds = [
        ("maximum", "exclusiveMaximum", "less than", Ordering::Greater),
        ("minimum", "exclusiveMinimum", "greater than", Ordering::Less),
    ];
    for (key, exclusive_key, words, outside) in bounds {
        let Some(bound) = schema[key].as_f64() else { continue };
        let exclusive = schema[exclusive_key] == json!(true);
        let out_of_range = match n.partial_cmp(&bound) {
            Some(Ordering::Equal) => exclusive,
            side => side == Some(outside),
        };
        if out_of_range {
            let rel = if exclusive {
                words.to_string()
            } else {
                format!("{words} or equal to")
            };
            let detail = format!("{} in body should be {rel} {}", name_of(path), go_number(&schema[key]));
            errs.push(StatusCause::invalid(path, value, &detail));
        }
    }
    if let Some(m) = schema["multipleOf"].as_f64()
        && m > 0.0
        && (n / m).fract() != 0.0
    {
        errs.push(StatusCause::invalid(
            path,
            value,
            &format!(
                "{} in body should be a multiple of {}",
                name_of(path),
                go_number(&schema["multipleOf"])
            ),
        ));
    }
}

/// A schema number as Go's `%v` prints a float64 (`100`, not `100.0`).
fn go_number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => v.to_string(),
    }
}

/// `maxItems`/`minItems` or `maxProperties`/`minProperties` (`noun`: items or properties).
fn check_count(
    schema: &Value,
    (max_key, min_key, noun): (&str, &str, &str),
    n: usize,
    path: &str,
    errs: &mut Vec<StatusCause>,
) {
    if let Some(max) = schema[max_key].as_u64()
        && n as u64 > max
    {
        errs.push(StatusCause::too_many(path, n, max));
    }
    if let Some(min) = schema[min_key].as_u64()
        && (n as u64) < min
    {
        errs.push(StatusCause::invalid(
            path,
            &json!(n),
            &format!("{} in body should have at least {min} {noun}", name_of(path)),
        ));
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, errs: &mut Vec<StatusCause>) {
    check_count(schema, ("maxItems", "minItems", "items"), items.len(), path, errs);
    let list_type = schema["x-kubernetes-list-type"].as_str().unwrap_or_default();
    if schema["uniqueItems"] == json!(true) || list_type == "set" {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errs.push(StatusCause::duplicate(&format!("{path}[{i}]"), item));
            }
        }
    }
    if list_type == "map" {
        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let id: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
            if items[..i]
                .iter()
                .any(|o| keys.iter().map(|k| &o[*k]).collect::<Vec<_>>() == id)
            {
                let shown: serde_json::Map<String, Value> =
                    keys.iter().map(|k| (k.to_string(), item[*k].clone())).collect();
                errs.push(StatusCause::duplicate(&format!("{path}[{i}]"), &Value::Object(shown)));
            }
        }
    }
    if schema["items"].is_object() {
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), errs);
        }
    }
}

fn check_object(schema: &Value, map: &serde_json::Map<String, Value>, path: &str, errs: &mut Vec<StatusCause>) {
    for req in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(req) {
            errs.push(StatusCause::required(&child_path(path, req), ""));
        }
    }
    check_count(
        schema,
        ("maxProperties", "minProperties", "properties"),
        map.len(),
        path,
        errs,
    );
    let props = schema["properties"].as_object();
    for (key, v) in map {
        let sub_path = child_path(path, key);
        if let Some(sub) = props.and_then(|p| p.get(key)) {
            check(sub, v, &sub_path, errs);
        } else if schema["additionalProperties"].is_object() {
            check(&schema["additionalProperties"], v, &sub_path, errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["repo"], "properties": {
            "repo": {"type": "string", "minLength": 1},
            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$", "default": "1m"},
            "historyLimit": {"type": "integer", "minimum": 1, "maximum": 100},
            "policy": {"type": "string", "enum": ["Forbid", "Allow"]},
            "args": {"type": "array", "items": {"type": "string"}}
        }}}})
    }

    #[test]
    fn prunes_defaults_and_validates_with_apiserver_wording() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"repo": "r", "bogus": 1, "args": ["a"]}, "extra": true});
        let unknown = prune(&schema(), &mut obj);
        assert_eq!(unknown, vec!["extra".to_string(), "spec.bogus".to_string()]);
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["interval"], "1m");
        assert!(validate(&schema(), &obj).is_empty());

        let bad = json!({"spec": {"interval": "soon", "historyLimit": 1000, "policy": "Bogus", "args": "x"}});
        let lines: Vec<String> = validate(&schema(), &bad).iter().map(StatusCause::line).collect();
        assert!(lines.contains(&"spec.repo: Required value".to_string()), "{lines:?}");
        assert!(lines.contains(
            &"spec.interval: Invalid value: \"soon\": spec.interval in body should match '^[0-9]+[smh]$'".to_string()
        ));
        assert!(lines.contains(&"spec.historyLimit: Invalid value: 1000: spec.historyLimit in body should be less than or equal to 100".to_string()));
        assert!(lines.contains(
            &"spec.policy: Unsupported value: \"Bogus\": supported values: \"Forbid\", \"Allow\"".to_string()
        ));
        assert!(lines.contains(
            &"spec.args: Invalid value: \"string\": spec.args in body must be of type array: \"string\"".to_string()
        ));
    }
}
