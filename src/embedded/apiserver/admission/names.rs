//! Name rules shared by every type, as apimachinery states them: RFC 1123 labels and subdomains
//! (object and namespace names), qualified names (label and annotation keys, finalizers), label
//! values, config keys, environment variable and port names. Each check returns apimachinery's
//! messages (empty when the value is valid), so field errors read as kube-apiserver's do.

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (the API types' own check).
pub(crate) use crate::api::validation::is_dns_subdomain;

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub(crate) fn valid_label_value(v: &str) -> bool {
    label_value(v).is_empty()
}

/// A qualified name (label and annotation keys): an optional `prefix/` and a name part that is
/// a non-empty label value.
pub(crate) fn valid_label_key(k: &str) -> bool {
    qualified_name(k).is_empty()
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// apimachinery's `RegexError`: the message, examples and the regex.
pub(crate) fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// util/validation's length error (names, config keys).
fn max_len_chars(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// validate/content's length error (label keys and values).
fn max_len_bytes(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

fn label_matches(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn subdomain_matches(s: &str) -> bool {
    s.split('.').all(label_matches)
}

/// `IsDNS1123Label`.
pub(crate) fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_chars(63));
    }
    if !label_matches(value) {
        if subdomain_matches(value) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `IsDNS1035Label`: a DNS label that starts with a letter (CRD names, categories).
pub(crate) fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_chars(63));
    }
    if !(label_matches(value) && value.starts_with(|c: char| c.is_ascii_lowercase())) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `IsDNS1123Subdomain`; `bytes` picks validate/content's wording of the length error.
fn subdomain_errors(value: &str, bytes: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(if bytes { max_len_bytes(253) } else { max_len_chars(253) });
    }
    if !subdomain_matches(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub(crate) fn dns1123_subdomain(value: &str) -> Vec<String> {
    subdomain_errors(value, false)
}

/// A generateName is validated as a name whose trailing `-` is replaced (`maskTrailingDash`).
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_string()
    }
}

/// `NameIsDNSSubdomain` (most object names); `prefix` for a generateName.
pub(crate) fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        dns1123_subdomain(&mask_trailing_dash(name))
    } else {
        dns1123_subdomain(name)
    }
}

/// `NameIsDNSLabel` (namespace names); `prefix` for a generateName.
pub(crate) fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        dns1123_label(&mask_trailing_dash(name))
    } else {
        dns1123_label(name)
    }
}

/// `NameIsDNS1035Label` (service names); `prefix` for a generateName.
pub(crate) fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        dns1035_label(&mask_trailing_dash(name))
    } else {
        dns1035_label(name)
    }
}

/// `ValidatePathSegmentName`: what any name must be to sit in a URL path (core/v1 Events have
/// no other rule).
pub(crate) fn path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errs.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn label_key_name_matches(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `IsQualifiedName`: label and annotation keys, finalizers, resource names.
pub(crate) fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(
                    subdomain_errors(prefix, true)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            let re = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
            errs.push(format!(
                "a valid label key {re} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_bytes(63)));
    }
    if !label_key_name_matches(name) {
        let re = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
        errs.push(format!("name part {re}"));
    }
    errs
}

/// `IsLabelValue`.
pub(crate) fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_bytes(63));
    }
    if !(value.is_empty() || label_key_name_matches(value)) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `hasChDirPrefix`: config keys and file names may not step out of their directory.
fn chdir_prefix(value: &str) -> Option<&'static str> {
    if value == "." {
        Some("must not be '.'")
    } else if value == ".." {
        Some("must not be '..'")
    } else if value.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    }
}

/// `IsConfigMapKey`: keys of ConfigMap and Secret data.
pub(crate) fn config_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_chars(253));
    }
    let ok = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if !ok {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix(value).map(str::to_string));
    errs
}

/// `IsRelaxedEnvVarName`: any printable ASCII but `=`.
pub(crate) fn relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='".into(),
        );
    }
    errs
}

/// `IsValidPortName`: 1-15 of `[-a-z0-9]` with a letter, no `--`, no `-` at either end.
pub(crate) fn port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_chars(15));
    }
    if port.is_empty()
        || !port
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_report_each_part() {
        assert!(qualified_name("example.com/key").is_empty());
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert!(qualified_name("UPPER.com/x")[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert_eq!(qualified_name("example.com/").len(), 2);
        assert!(qualified_name("a/b/c")[0].starts_with("a valid label key must consist"));
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 bytes"]
        );
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(name_is_dns_subdomain("ok-", true), Vec::<String>::new());
        assert_eq!(config_key(".."), vec!["must not be '..'"]);
        assert_eq!(config_key("..x"), vec!["must not start with '..'"]);
        assert_eq!(relaxed_env_var_name("1A"), Vec::<String>::new());
        assert_eq!(relaxed_env_var_name("A=B").len(), 1);
        assert_eq!(port_name("HTTP").len(), 2);
    }
}
