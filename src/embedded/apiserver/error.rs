//! API errors rendered as `metav1.Status` bodies, with the reasons, codes, details and message
//! wording kube-apiserver uses (clients such as kubectl and kube-rs match on them).
use serde_json::{Value, json};

/// One cause of a 422 Invalid response (`metav1.StatusCause`, built from apimachinery's
/// `field.Error`): the reason, the field path and the message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// Dotted path such as `spec.interval`.
    pub field: String,
    /// The error body without the field, e.g. `Invalid value: "x": must be ...`.
    pub message: String,
}

impl StatusCause {
    /// `Invalid value: <value>: <detail>`.
    pub(crate) fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self::with_value("FieldValueInvalid", "Invalid value", field, value, detail)
    }

    /// `Invalid value: <rendered>: <detail>`, for a value already rendered the way Go prints it
    /// (a Go struct, see [`go_struct`]).
    pub(crate) fn invalid_rendered(field: &str, rendered: &str, detail: &str) -> Self {
        let mut message = format!("Invalid value: {rendered}");
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Self {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message,
        }
    }

    /// `Not found: <value>`.
    pub(crate) fn not_found(field: &str, value: &Value) -> Self {
        Self::with_value("FieldValueNotFound", "Not found", field, value, "")
    }

    /// `Required value` (with an optional detail).
    pub(crate) fn required(field: &str, detail: &str) -> Self {
        Self::plain("FieldValueRequired", "Required value", field, detail)
    }

    /// `Forbidden: <detail>`.
    pub(crate) fn forbidden(field: &str, detail: &str) -> Self {
        Self::plain("FieldValueForbidden", "Forbidden", field, detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub(crate) fn not_supported(field: &str, value: &Value, supported: &[String]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = format!("supported values: {}", list.join(", "));
        Self::with_value("FieldValueNotSupported", "Unsupported value", field, value, &detail)
    }

    /// `Too long: may not be more than N bytes`.
    pub(crate) fn too_long(field: &str, max: u64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::plain(
            "FieldValueTooLong",
            "Too long",
            field,
            &format!("may not be more than {max} {unit}"),
        )
    }

    /// `Too many: <n>: must have at most N items`.
    pub(crate) fn too_many(field: &str, actual: usize, max: u64) -> Self {
        let detail = format!("must have at most {max} items");
        Self::with_value("FieldValueTooMany", "Too many", field, &json!(actual), &detail)
    }

    /// `Duplicate value: <value>`.
    pub(crate) fn duplicate(field: &str, value: &Value) -> Self {
        Self::with_value("FieldValueDuplicate", "Duplicate value", field, value, "")
    }

    /// A field error with a caller-chosen reason (CEL rules may pick one).
    pub(crate) fn with_reason(reason: &str, field: &str, value: &Value, detail: &str) -> Self {
        match reason {
            "FieldValueRequired" => Self::required(field, detail),
            "FieldValueForbidden" => Self::forbidden(field, detail),
            "FieldValueDuplicate" => {
                let mut e = Self::duplicate(field, value);
                if !detail.is_empty() {
                    e.message = format!("{}: {detail}", e.message);
                }
                e
            }
            _ => Self::invalid(field, value, detail),
        }
    }

    fn plain(reason: &'static str, kind: &str, field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}: {detail}")
        };
        Self {
            reason,
            field: field.to_string(),
            message,
        }
    }

    fn with_value(reason: &'static str, kind: &str, field: &str, value: &Value, detail: &str) -> Self {
        let mut message = format!("{kind}: {}", render_value(value));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Self {
            reason,
            field: field.to_string(),
            message,
        }
    }

    /// `field: body`, as in the aggregated message.
    pub(crate) fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// How apimachinery prints a bad value in a field error: strings quoted (`%q`), numbers and
/// booleans plain, anything else as Go's `json.Marshal` would (see [`go_json`]).
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => go_json(other),
    }
}

/// JSON as Go's `encoding/json` writes it: compact, map keys sorted, and `<`, `>`, `&`, U+2028
/// and U+2029 escaped.
pub(crate) fn go_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A Go struct as `json.Marshal` writes it: its fields in declaration order (internal API types
/// have no JSON tags, so their names are the Go field names).
pub(crate) fn go_struct(fields: &[(&str, &Value)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{}", go_json(&json!(name)), go_json(value)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// An error response of the API server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} ({reason}): {message}")]
pub(crate) struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the server gives them.
    pub details: Option<Value>,
}

/// Shorthand for results of API operations.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The group/resource pair errors name (`pipelines.delivery.inge.4pr.es`, `pods`).
pub(crate) fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// Details naming the object; empty fields are left out, as Go's `omitempty` does.
    fn named(mut self, group: &str, resource: &str, name: &str) -> Self {
        let mut details = serde_json::Map::new();
        for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
            if !v.is_empty() {
                details.insert(k.into(), json!(v));
            }
        }
        self.details = Some(Value::Object(details));
        self
    }

    /// 404 `pods "x" not found`.
    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} {name:?} not found", qualified(group, resource));
        Self::new(404, "NotFound", message).named(group, resource, name)
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }

    /// 409 `pods "x" already exists`.
    pub(crate) fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} {name:?} already exists", qualified(group, resource));
        Self::new(409, "AlreadyExists", message).named(group, resource, name)
    }

    /// 409 on a stale resourceVersion (optimistic concurrency).
    pub(crate) fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            qualified(group, resource)
        );
        Self::new(409, "Conflict", message).named(group, resource, name)
    }

    /// The standard "object has been modified" conflict.
    pub(crate) fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 `Kind.group "name" is invalid: ...` with one cause per field error.
    pub(crate) fn invalid(group: &str, kind: &str, name: &str, errors: &[StatusCause]) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let lines: Vec<String> = errors.iter().map(StatusCause::line).collect();
        let body = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let mut err = Self::new(422, "Invalid", format!("{qualified_kind} {name:?} is invalid: {body}"));
        err.details = Some(json!({"name": name, "group": group, "kind": kind, "causes": causes}));
        err
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 for a missing or wrong bearer token.
    pub(crate) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden with the apiserver's `<resource> "<name>" is forbidden: <why>` wording.
    pub(crate) fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = format!("{} {name:?} is forbidden: {why}", qualified(group, resource));
        Self::new(403, "Forbidden", message).named(group, resource, name)
    }

    /// 403 as apimachinery's `NewForbidden`: `<resource> "<name>" is forbidden: <why>`, without
    /// the name when there is none, and `forbidden: <why>` without a resource (non-resource URLs).
    /// Details carry only the fields that are set.
    pub(crate) fn forbidden_request(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{} is forbidden: {why}", qualified(group, resource)),
            (false, false) => format!("{} {name:?} is forbidden: {why}", qualified(group, resource)),
        };
        let mut details = serde_json::Map::new();
        for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
            if !v.is_empty() {
                details.insert(k.into(), json!(v));
            }
        }
        Self::new(403, "Forbidden", message).with_details(Value::Object(details))
    }

    /// 405 for a verb the resource does not support.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 406 for an Accept header the server cannot honour.
    pub(crate) fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 410 Expired: a resourceVersion or continue token older than the retained history.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 for a body format the endpoint does not accept.
    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 500 without a reason: what kube-apiserver answers to a request its storage layer refuses
    /// before validation (a resourceVersion on create).
    pub(crate) fn storage_refused(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    /// 500 InternalError.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 504 Timeout.
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// Replaces the details.
    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The `metav1.Status` JSON body.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(m) = status.as_object_mut()
        {
            m.remove("reason");
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_apiserver_wording() {
        let errs = [StatusCause::invalid(
            "spec.interval",
            &json!("abc"),
            "must be a duration",
        )];
        let e = ApiError::invalid("delivery.inge.4pr.es", "Pipeline", "p", &errs);
        assert_eq!(
            e.message,
            "Pipeline.delivery.inge.4pr.es \"p\" is invalid: spec.interval: Invalid value: \"abc\": must be a duration"
        );
        let two = [StatusCause::required("spec.repo", ""), errs[0].clone()];
        let e = ApiError::invalid("", "Pod", "p", &two);
        assert!(
            e.message
                .starts_with("Pod \"p\" is invalid: [spec.repo: Required value, ")
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["field"], "spec.repo");
    }
}
