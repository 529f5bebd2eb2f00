//! `x-kubernetes-validations`: CEL rules of a CRD schema, evaluated with `self` (and `oldSelf`
//! for transition rules) bound to the value at the rule's node, reported like kube-apiserver.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::schema;
use crate::embedded::apiserver::error::StatusCause;

/// Whether the schema has any `x-kubernetes-validations` rule.
pub(crate) fn has_rules(schema: &Value) -> bool {
    let mut found = false;
    schema::visit(schema, "", &mut |node, _| {
        found |= node["x-kubernetes-validations"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    });
    found
}

/// Evaluates every rule in the schema against the object (and the old object, on update).
pub(crate) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    if schema.is_null() {
        return errs;
    }
    // Rules on the root see the object; metadata is visible as name/generateName only.
    walk(schema, obj, old, "", &mut errs);
    errs
}

fn walk(schema: &Value, value: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<StatusCause>) {
    if value.is_null() {
        return;
    }
    for rule in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
        if let Some(e) = check_rule(schema, rule, value, old, path) {
            errs.push(e);
        }
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, sub) in props {
                    if path.is_empty() && key == "metadata" {
                        continue;
                    }
                    if let Some(v) = map.get(key) {
                        let old_v = old.and_then(|o| o.get(key));
                        walk(sub, v, old_v, &child(path, key), errs);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for (key, v) in map {
                    let old_v = old.and_then(|o| o.get(key));
                    walk(&schema["additionalProperties"], v, old_v, &child(path, key), errs);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            // Old elements correlate only for map-type lists (by key); otherwise none.
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                let old_item = if schema["x-kubernetes-list-type"] == json!("map") && !keys.is_empty() {
                    old.and_then(Value::as_array)
                        .and_then(|o| o.iter().find(|x| keys.iter().all(|k| x[*k] == item[*k])))
                } else {
                    None
                };
                walk(&schema["items"], item, old_item, &format!("{path}[{i}]"), errs);
            }
        }
        _ => {}
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_rule(schema: &Value, rule: &Value, value: &Value, old: Option<&Value>, path: &str) -> Option<StatusCause> {
    let expr = rule["rule"].as_str()?;
    let program = match cel::Program::compile(expr) {
        Ok(p) => p,
        Err(e) => {
            return Some(StatusCause::invalid(
                path,
                &json!(expr),
                &format!("compilation failed: {e}"),
            ));
        }
    };
    let uses_old = program.references().has_variable("oldSelf");
    let optional_old = rule["optionalOldSelf"] == json!(true);
    if uses_old && old.is_none() && !optional_old {
        // Transition rules only run on updates where the old value exists.
        return None;
    }
    let mut ctx = cel::Context::default();
    ctx.add_variable("self", to_cel(value)).ok()?;
    if uses_old {
        ctx.add_variable("oldSelf", old.map(to_cel).unwrap_or(cel::Value::Null))
            .ok()?;
    }
    // kube-apiserver (1.37) reports a scalar's own value, and the type name of an object or list.
    let shown = if value.is_object() || value.is_array() {
        json!(schema["type"].as_str().unwrap_or("object"))
    } else {
        value.clone()
    };
    let field = match rule["fieldPath"].as_str() {
        Some(fp) if !fp.is_empty() => format!(
            "{path}{}",
            if path.is_empty() {
                fp.trim_start_matches('.').to_string()
            } else {
                fp.to_string()
            }
        ),
        _ => path.to_string(),
    };
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => {
            let message = rule_message(rule, &ctx).unwrap_or_else(|| format!("failed rule: {expr}"));
            let reason = rule["reason"].as_str().unwrap_or("FieldValueInvalid");
            Some(StatusCause::with_reason(reason, &field, &shown, &message))
        }
        Ok(other) => Some(StatusCause::invalid(
            &field,
            &shown,
            &format!("rule did not evaluate to a boolean: {other:?}"),
        )),
        Err(e) => Some(StatusCause::invalid(
            &field,
            &shown,
            &format!("rule evaluation error: {e}"),
        )),
    }
}

fn rule_message(rule: &Value, ctx: &cel::Context<'_, '_>) -> Option<String> {
    if let Some(expr) = rule["messageExpression"].as_str()
        && let Ok(program) = cel::Program::compile(expr)
        && let Ok(cel::Value::String(s)) = program.execute(ctx)
    {
        return Some(s.to_string());
    }
    rule["message"].as_str().filter(|m| !m.is_empty()).map(str::to_string)
}

/// Converts JSON into a CEL value (integers stay integers).
fn to_cel(v: &Value) -> cel::Value {
    cel::to_value(v).unwrap_or(cel::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_report_message_and_path() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "!(has(self.interval) && has(self.schedule))", "message": "interval and schedule are mutually exclusive"},
                {"rule": "self.historyLimit <= 100", "fieldPath": ".historyLimit"}
            ],
            "properties": {"interval": {"type": "string"}, "schedule": {"type": "string"}, "historyLimit": {"type": "integer"}}}}});
        let ok = json!({"spec": {"interval": "1m", "historyLimit": 5}});
        assert!(validate(&schema, &ok, None).is_empty());
        let bad = json!({"spec": {"interval": "1m", "schedule": "* * * * *", "historyLimit": 500}});
        let lines: Vec<String> = validate(&schema, &bad, None).iter().map(StatusCause::line).collect();
        assert_eq!(
            lines[0],
            "spec: Invalid value: \"object\": interval and schedule are mutually exclusive"
        );
        assert_eq!(
            lines[1],
            "spec.historyLimit: Invalid value: \"object\": failed rule: self.historyLimit <= 100"
        );
    }

    #[test]
    fn transition_rules_need_an_old_value() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"repo": {
            "type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "repo is immutable"}]}}}}});
        let new = json!({"spec": {"repo": "b"}});
        assert!(validate(&schema, &new, None).is_empty());
        let old = json!({"spec": {"repo": "a"}});
        assert_eq!(
            validate(&schema, &new, Some(&old))[0].line(),
            "spec.repo: Invalid value: \"b\": repo is immutable"
        );
    }
}
