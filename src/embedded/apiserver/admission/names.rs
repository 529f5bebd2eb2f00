//! Name rules shared by every type: RFC 1123 labels and subdomains (object and namespace names),
//! label keys and values, with apimachinery's limits.

/// RFC 1123 label: lower-case alphanumerics and `-`, at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (the API types' own check).
pub(crate) use crate::api::validation::is_dns_subdomain;

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub(crate) fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric()) && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

/// A qualified name (label and annotation keys): an optional `prefix/` and a name part that is
/// a non-empty label value.
pub(crate) fn valid_label_key(k: &str) -> bool {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return false;
            }
            name
        }
        None => k,
    };
    !name.is_empty() && valid_label_value(name)
}
