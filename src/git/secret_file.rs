//! Reading credentials from a file, for `cdkube probe --secret-file`: either a Kubernetes Secret manifest
//! (`data` base64-encoded and/or `stringData`, as `kubectl create secret … -o yaml` writes it) or a
//! `key=value` file (as `kubectl create secret --from-env-file` reads it).
//!
//! The file must be a regular file of at most [`MAX_BYTES`] (a Kubernetes Secret holds at most 1 MiB): a
//! FIFO would block the reader forever, a device such as `/dev/zero` never ends. Its YAML is checked for
//! nesting before it is parsed (deeply nested flow collections take the YAML parser quadratic time).
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;

use super::credentials::Credentials;
use super::error::{Error, Result};

/// The largest secret file read, the size limit of a Kubernetes Secret.
pub const MAX_BYTES: u64 = 1 << 20;

/// The deepest nesting of YAML flow collections (`[`, `{`) parsed; a Secret needs 2.
const MAX_DEPTH: usize = 32;

/// Load and validate the credentials in `path`.
pub fn load(path: &Path) -> Result<Credentials> {
    let text = read(path).map_err(|e| Error::invalid(format!("cannot read secret file {}: {e}", path.display())))?;
    let data = parse(&text).map_err(|e| Error::invalid(format!("secret file {}: {}", path.display(), e.message())))?;
    Credentials::from_secret_data(&data)
}

/// The text of `path`, if it is a regular file of at most [`MAX_BYTES`] bytes of UTF-8. The file is opened
/// without blocking (a FIFO with no writer would wait forever) and checked through the open descriptor.
fn read(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse(
            "it is not a regular file (a FIFO, a device or a directory)".to_owned(),
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(refuse(format!("it is larger than {} KiB", MAX_BYTES >> 10)));
    }
    let mut bytes = Vec::new();
    // The size can grow after the check: read one byte past the limit to notice.
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse(format!("it is larger than {} KiB", MAX_BYTES >> 10)));
    }
    String::from_utf8(bytes).map_err(|_| refuse("it is not UTF-8 text".to_owned()))
}

/// The secret's data map, decoded.
pub fn parse(text: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    if text.len() as u64 > MAX_BYTES {
        return Err(Error::invalid(format!(
            "the secret is larger than {} KiB",
            MAX_BYTES >> 10
        )));
    }
    if flow_depth(text) > MAX_DEPTH {
        return Err(Error::invalid(format!(
            "the secret nests more than {MAX_DEPTH} levels of `[` or `{{`"
        )));
    }
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(doc)) if is_manifest(&doc) => from_manifest(&doc),
        _ => from_key_values(text),
    }
}

/// The deepest nesting of `[`/`{` outside quotes and comments (an upper bound of YAML's flow nesting).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for line in text.lines() {
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    deepest
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
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("data: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let err = parse(&deep).unwrap_err();
        assert!(err.message().contains("nests more than"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(flow_depth("a: '[[[[' # [[[\nb: {c: [1]}"), 2);
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_BYTES as usize + 1]).unwrap();
        for (path, needle) in [
            (fifo.as_path(), "not a regular file"),
            (Path::new("/dev/zero"), "not a regular file"),
            (dir.path(), "not a regular file"),
            (big.as_path(), "larger than 1024 KiB"),
        ] {
            let err = load(path).unwrap_err();
            assert!(err.message().contains(needle), "{}: {err}", path.display());
        }
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
