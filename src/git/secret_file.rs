//! Reading credentials from a file, for `cdkube probe --secret-file`: either a Kubernetes Secret manifest
//! (`data` base64-encoded and/or `stringData`, as `kubectl create secret … -o yaml` writes it) or a
//! `key=value` file (as `kubectl create secret --from-env-file` reads it).
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use super::credentials::Credentials;
use super::error::{Error, Result};

/// Load and validate the credentials in `path`.
pub fn load(path: &Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read secret file {}: {e}", path.display())))?;
    let data = parse(&text).map_err(|e| Error::invalid(format!("secret file {}: {}", path.display(), e.message())))?;
    Credentials::from_secret_data(&data)
}

/// The secret's data map, decoded.
pub fn parse(text: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(doc)) if is_manifest(&doc) => from_manifest(&doc),
        _ => from_key_values(text),
    }
}

fn is_manifest(doc: &serde_yaml::Mapping) -> bool {
    ["data", "stringData", "kind"].iter().any(|k| doc.contains_key(*k))
}

fn from_manifest(doc: &serde_yaml::Mapping) -> Result<BTreeMap<String, Vec<u8>>> {
    if let Some(kind) = doc.get("kind").and_then(|k| k.as_str())
        && kind != "Secret"
    {
        return Err(Error::invalid(format!("the manifest is a {kind}, not a Secret")));
    }
    let mut out = BTreeMap::new();
    for (field, base64) in [("data", true), ("stringData", false)] {
        let Some(value) = doc.get(field) else {
            continue;
        };
        let Some(map) = value.as_mapping() else {
            return Err(Error::invalid(format!("`{field}` is not a map of key: value")));
        };
        for (key, value) in map {
            let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
                return Err(Error::invalid(format!("`{field}` must map text keys to text values")));
            };
            let bytes = if base64 {
                let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| Error::invalid(format!("`data.{key}` is not valid base64")))?
            } else {
                value.as_bytes().to_vec()
            };
            out.insert(key.to_owned(), bytes);
        }
    }
    Ok(out)
}

fn from_key_values(text: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(Error::invalid(format!(
                "line {} is neither `key=value` nor part of a Secret manifest",
                index + 1
            )));
        };
        out.insert(key.trim().to_owned(), value.as_bytes().to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_with_data_and_string_data() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: git}\ndata:\n  username: YWxpY2U=\nstringData:\n  password: s3cret\n";
        let data = parse(text).unwrap();
        assert_eq!(data["username"], b"alice");
        assert_eq!(data["password"], b"s3cret");
    }

    #[test]
    fn key_value_file() {
        let data = parse("# creds\nusername=alice\npassword=a=b\n").unwrap();
        assert_eq!(data["password"], b"a=b");
    }

    #[test]
    fn garbage_is_explained() {
        assert!(parse("just words").unwrap_err().message().contains("line 1"));
        assert!(
            parse("kind: ConfigMap\ndata: {}\n")
                .unwrap_err()
                .message()
                .contains("not a Secret")
        );
        assert!(
            parse("data:\n  username: '!!!'\n")
                .unwrap_err()
                .message()
                .contains("base64")
        );
    }
}
