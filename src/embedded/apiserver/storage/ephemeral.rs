//! Writes through `pods/NAME/ephemeralcontainers`, as kube-apiserver's ephemeral-containers
//! strategy makes them: only `spec.ephemeralContainers` is taken from the request (everything else
//! stays the stored Pod's), existing ephemeral containers may be neither removed nor changed, and
//! new ones are validated (`ValidatePodEphemeralContainersUpdate`).
use std::collections::HashSet;

use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names::dns1123_label;
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};

const PATH: &str = "spec.ephemeralContainers";

/// The stored Pod with the request's ephemeral containers, or 422 with kube-apiserver's causes.
pub(crate) fn scoped(current: &Value, obj: &Value) -> ApiResult<Value> {
    let mut next = current.clone();
    next["spec"]["ephemeralContainers"] = obj["spec"]["ephemeralContainers"].clone();
    if next["spec"]["ephemeralContainers"].is_null()
        && let Some(spec) = next["spec"].as_object_mut()
    {
        spec.remove("ephemeralContainers");
    }
    let errs = errors(&current["spec"], &next["spec"]);
    if errs.is_empty() {
        Ok(next)
    } else {
        let name = current["metadata"]["name"].as_str().unwrap_or_default();
        Err(ApiError::invalid("", "Pod", name, &errs))
    }
}

fn list(spec: &Value, key: &str) -> Vec<Value> {
    spec[key].as_array().cloned().unwrap_or_default()
}

fn name_of(c: &Value) -> &str {
    c["name"].as_str().unwrap_or_default()
}

fn errors(old: &Value, new: &Value) -> Vec<StatusCause> {
    let (was, now) = (list(old, "ephemeralContainers"), list(new, "ephemeralContainers"));
    let mut errs = Vec::new();
    for o in &was {
        match now.iter().find(|n| name_of(n) == name_of(o)) {
            None => errs.push(StatusCause::forbidden(
                PATH,
                &format!("existing ephemeral containers {:?} may not be removed\n", name_of(o)),
            )),
            Some(n) if n != o => errs.push(StatusCause::forbidden(
                PATH,
                &format!("existing ephemeral containers {:?} may not be changed\n", name_of(o)),
            )),
            Some(_) => {}
        }
    }
    let mut taken: HashSet<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| list(old, k))
        .map(|c| name_of(&c).to_string())
        .collect();
    let targets: HashSet<String> = list(old, "containers").iter().map(|c| name_of(c).to_string()).collect();
    for (i, c) in now.iter().enumerate() {
        let at = format!("{PATH}[{i}]");
        let name = name_of(c);
        if name.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.name"), ""));
        } else if let Some(detail) = dns1123_label(name).into_iter().next() {
            errs.push(StatusCause::invalid(&format!("{at}.name"), &json!(name), &detail));
        } else if !taken.insert(name.to_string()) {
            errs.push(StatusCause::duplicate(&format!("{at}.name"), &json!(name)));
        }
        if c["image"].as_str().unwrap_or_default().is_empty() {
            errs.push(StatusCause::required(&format!("{at}.image"), ""));
        }
        if let Some(target) = c["targetContainerName"].as_str()
            && !targets.contains(target)
        {
            errs.push(StatusCause::not_found(
                &format!("{at}.targetContainerName"),
                &json!(target),
            ));
        }
        for field in ["ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle"] {
            if !c[field].is_null() {
                errs.push(StatusCause::forbidden(
                    &format!("{at}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
    errs
}
