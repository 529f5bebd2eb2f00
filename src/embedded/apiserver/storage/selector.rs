//! Label selectors (equality- and set-based) and field selectors, parsed like apimachinery does.
use std::collections::BTreeMap;

use serde_json::Value;

use crate::embedded::apiserver::admission::names::{valid_label_key, valid_label_value};
use crate::embedded::apiserver::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    pub(crate) fn parse(text: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if text.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for term in split_terms(text) {
            let term = term.trim();
            // apimachinery wants an identifier after every comma: `a,,b` and `a,` are errors.
            if term.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: found ',', expected: identifier after ',' in {text:?}"
                )));
            }
            reqs.push(parse_term(term).ok_or_else(|| {
                ApiError::bad_request(format!("unable to parse requirement: invalid label selector: {term:?}"))
            })?);
        }
        for (key, _) in &reqs {
            if !valid_label_key(key) {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                )));
            }
        }
        Ok(Self { reqs })
    }

    /// Whether the labels satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|(key, op)| {
            let value = labels.get(key);
            match op {
                Op::Eq(v) => value == Some(v),
                Op::NotEq(v) => value != Some(v),
                Op::In(vs) => value.is_some_and(|x| vs.contains(x)),
                Op::NotIn(vs) => value.is_none_or(|x| !vs.contains(x)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }

    /// Whether there are no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = terms.last_mut() {
            last.push(c);
        }
    }
    terms
}

fn parse_term(term: &str) -> Option<(String, Op)> {
    if let Some(key) = term.strip_prefix('!') {
        return Some((key.trim().to_string(), Op::DoesNotExist));
    }
    for (sep, ctor) in [("!=", 1), ("==", 0), ("=", 0)] {
        if let Some((k, v)) = term.split_once(sep) {
            let v = v.trim().to_string();
            if !valid_label_value(&v) {
                return None;
            }
            let op = if ctor == 1 { Op::NotEq(v) } else { Op::Eq(v) };
            return Some((k.trim().to_string(), op));
        }
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        let (neg, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return None;
        };
        let inner = list.trim().strip_prefix('(')?.strip_suffix(')')?;
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() || values.iter().any(|v| !valid_label_value(v)) {
            // "for 'in', 'notin' operators, values set can't be empty"
            return None;
        }
        let op = if neg { Op::NotIn(values) } else { Op::In(values) };
        return Some((words[0].to_string(), op));
    }
    Some((term.to_string(), Op::Exists))
}

/// A parsed field selector: `a=b,c!=d`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses and checks every field against the resource's supported fields.
    pub(crate) fn parse(text: &str, supported: &dyn Fn(&str) -> bool) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// Whether the object satisfies every requirement; `field` reads a field's value as a string.
    pub(crate) fn matches(&self, field: &dyn Fn(&str) -> String) -> bool {
        self.reqs.iter().all(|(f, eq, v)| (field(f) == *v) == *eq)
    }

    /// Whether there are no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// Reads a dotted path of an object as the string field selectors compare against.
pub(crate) fn field_string(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The labels of an object as a map.
pub(crate) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn set_based_requirements() {
        let s = LabelSelector::parse("app in (a, b),tier notin (x),!gone,env,v!=2").unwrap();
        assert!(s.matches(&labels(&[("app", "a"), ("env", "p"), ("v", "1")])));
        assert!(!s.matches(&labels(&[("app", "c"), ("env", "p")])));
        assert!(!s.matches(&labels(&[("app", "a"), ("env", "p"), ("gone", "")])));
        assert!(!s.matches(&labels(&[("app", "a"), ("env", "p"), ("tier", "x")])));
        assert!(!s.matches(&labels(&[("app", "b")])));
        assert!(LabelSelector::parse("a in (").is_err());
        assert!(LabelSelector::parse("a in ()").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse(" ").unwrap().is_empty());
    }

    #[test]
    fn field_selector_rejects_unknown_fields() {
        let ok = |f: &str| f == "metadata.name";
        assert!(FieldSelector::parse("metadata.name=x", &ok).is_ok());
        let err = FieldSelector::parse("spec.x=y", &ok).unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.x");
    }
}
