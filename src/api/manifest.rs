//! Offline checking of manifest files, the work behind `cdkube validate`: every Pipeline document is
//! decoded strictly (unknown and mistyped fields are errors, as with `kubectl apply --validate=strict`)
//! and then validated; Secrets in the same input are checked against the Pipelines that reference them.
//! Only regular files and standard input are read, each within [`crate::input`]'s size and depth
//! limits, checked before the YAML parser sees the text.
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;

use super::validation::{self, FieldError, Options};
use super::{API_VERSION, Pipeline};
use crate::input;

/// The verdict on one YAML document.
#[derive(Debug)]
pub struct Entry {
    /// File the document came from (`-` for standard input).
    pub file: String,
    /// 1-based position of the document in its file.
    pub document: usize,
    /// What was found.
    pub outcome: Outcome,
}

/// What `cdkube validate` found in one document.
#[derive(Debug)]
pub enum Outcome {
    /// A Pipeline that passed every check.
    Valid {
        /// `metadata.name` of the Pipeline.
        name: String,
    },
    /// A document with errors.
    Invalid {
        /// Every error found, each naming its field.
        errors: Vec<FieldError>,
    },
    /// A document of another kind, kept only to check the Secrets Pipelines refer to.
    Skipped {
        /// `kind` of the document.
        kind: String,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Document 0 stands for the file as a whole (it could not be read).
        let at = if self.document == 0 {
            self.file.clone()
        } else {
            format!("{}: document {}", self.file, self.document)
        };
        match &self.outcome {
            Outcome::Valid { name } => write!(f, "{at}: Pipeline {name:?} is valid"),
            Outcome::Skipped { kind } => write!(f, "{at}: skipped {kind} (not a Pipeline)"),
            Outcome::Invalid { errors } => {
                let line = |e: &FieldError| {
                    if e.path.is_empty() {
                        format!("{at}: {}", e.message)
                    } else {
                        format!("{at}: {e}")
                    }
                };
                let lines: Vec<String> = errors.iter().map(line).collect();
                write!(f, "{}", lines.join("\n"))
            }
        }
    }
}

impl Entry {
    /// Whether this document is free of errors.
    pub fn is_ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Invalid { .. })
    }
}

/// One decoded document awaiting its verdict.
struct Document {
    file: String,
    index: usize,
    value: serde_json::Value,
}

/// Checks the named files (`-` reads standard input) and returns a verdict per document.
pub fn check_files(paths: &[String], options: Options) -> Vec<Entry> {
    let texts: Vec<(&str, Result<String, String>)> = paths.iter().map(|path| (path.as_str(), read(path))).collect();
    check_texts(&texts, options)
}

/// Checks YAML `text` as if it were read from a file named `file`.
pub fn check_text(file: &str, text: &str, options: Options) -> Vec<Entry> {
    check_texts(&[(file, Ok(text.to_string()))], options)
}

fn check_texts(texts: &[(&str, Result<String, String>)], options: Options) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut documents = Vec::new();
    for (path, text) in texts {
        match text {
            Ok(text) => split_documents(path, text, &mut documents, &mut entries),
            Err(e) => entries.push(invalid(
                path,
                0,
                FieldError {
                    path: String::new(),
                    message: e.clone(),
                },
            )),
        }
    }
    let secrets = collect_secrets(&documents);
    let pipelines = documents.iter().filter(|d| d.value["kind"] == "Pipeline").count();
    if pipelines == 0 && entries.is_empty() {
        let files: Vec<&str> = texts.iter().map(|(path, _)| *path).collect();
        let files = files.join(", ");
        entries.push(invalid(
            &files,
            0,
            FieldError {
                path: String::new(),
                message: "no Pipeline found in the input".into(),
            },
        ));
    }
    entries.extend(documents.into_iter().map(|doc| check_document(doc, &secrets, options)));
    entries.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    entries
}

/// The file's text, or why it was refused: not a regular file, over the size limit, not UTF-8.
fn read(path: &str) -> Result<String, String> {
    input::read_text(Path::new(path), input::MAX_FILE_BYTES).map_err(|e| format!("cannot read: {e}"))
}

fn invalid(file: &str, document: usize, error: FieldError) -> Entry {
    Entry {
        file: file.to_string(),
        document,
        outcome: Outcome::Invalid { errors: vec![error] },
    }
}

fn split_documents(file: &str, text: &str, documents: &mut Vec<Document>, entries: &mut Vec<Entry>) {
    use serde::Deserialize;
    // Before the parser: serde_yaml is quadratic on deep flow nesting (see `crate::input`).
    if let Err(e) = input::check(text.as_bytes(), input::Limits::FILE) {
        let error = FieldError {
            path: String::new(),
            message: e.to_string(),
        };
        entries.push(invalid(file, 0, error));
        return;
    }
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = match serde_yaml::Value::deserialize(de) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                // The YAML stream is broken from here on; later documents cannot be located reliably.
                entries.push(invalid(
                    file,
                    index,
                    FieldError {
                        path: "yaml".into(),
                        message: e.to_string(),
                    },
                ));
                return;
            }
        };
        match serde_json::to_value(&value) {
            Ok(value) => documents.push(Document {
                file: file.to_string(),
                index,
                value,
            }),
            Err(e) => entries.push(invalid(
                file,
                index,
                FieldError {
                    path: "yaml".into(),
                    message: e.to_string(),
                },
            )),
        }
    }
}

/// Secrets in the input by (namespace, name), with `data` and `stringData` merged as the API server does.
fn collect_secrets(documents: &[Document]) -> BTreeMap<(String, String), BTreeMap<String, Vec<u8>>> {
    let mut secrets = BTreeMap::new();
    for doc in documents
        .iter()
        .filter(|d| d.value["kind"] == "Secret" && d.value["apiVersion"] == "v1")
    {
        let Ok(secret) = serde_json::from_value::<Secret>(doc.value.clone()) else {
            continue;
        };
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        data.extend(
            secret
                .string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
        let key = (namespace_of(&doc.value), secret.metadata.name.unwrap_or_default());
        secrets.insert(key, data);
    }
    secrets
}

fn namespace_of(value: &serde_json::Value) -> String {
    value["metadata"]["namespace"].as_str().unwrap_or("default").to_string()
}

fn check_document(
    doc: Document,
    secrets: &BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    options: Options,
) -> Entry {
    let kind = doc.value["kind"].as_str().unwrap_or("").to_string();
    let namespace = namespace_of(&doc.value);
    let ours = doc.value["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with(&format!("{}/", super::GROUP)));
    let outcome = match check_namespace(&doc.value) {
        Err(error) => Outcome::Invalid { errors: vec![error] },
        Ok(()) if kind == "Pipeline" => match check_pipeline(doc.value, secrets, &namespace, options) {
            Ok(name) => Outcome::Valid { name },
            Err(errors) => Outcome::Invalid { errors },
        },
        Ok(()) if ours => Outcome::Invalid {
            errors: vec![FieldError {
                path: "kind".into(),
                message: format!("{} serves no kind {kind:?}; did you mean Pipeline?", super::GROUP),
            }],
        },
        Ok(()) if kind == "Secret" && doc.value["apiVersion"] == "v1" => match decode_strict::<Secret>(doc.value) {
            Ok(_) => Outcome::Skipped { kind },
            Err(errors) => Outcome::Invalid { errors },
        },
        Ok(()) => Outcome::Skipped {
            kind: if kind.is_empty() {
                "a document without kind".into()
            } else {
                kind
            },
        },
    };
    Entry {
        file: doc.file,
        document: doc.index,
        outcome,
    }
}

fn check_pipeline(
    value: serde_json::Value,
    secrets: &BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    namespace: &str,
    options: Options,
) -> Result<String, Vec<FieldError>> {
    if value["apiVersion"] != API_VERSION {
        let message = format!("must be {API_VERSION}, got {}", value["apiVersion"]);
        return Err(vec![FieldError {
            path: "apiVersion".into(),
            message,
        }]);
    }
    let pipeline: Pipeline = decode_strict(value)?;
    let mut errors = check_name(&pipeline);
    if let Err(found) = validation::validate_with(&pipeline.spec, options) {
        errors.extend(found);
    }
    if let Some(secret_ref) = &pipeline.spec.secret_ref
        && let Some(data) = secrets.get(&(namespace.to_string(), secret_ref.name.clone()))
        && let Err(found) = validation::validate_secret_data(&pipeline.spec, &secret_ref.name, data, options)
    {
        errors.extend(found);
    }
    if errors.is_empty() {
        Ok(pipeline.metadata.name.unwrap_or_default())
    } else {
        Err(errors)
    }
}

/// `metadata.namespace`, when given, is a DNS-1123 label (what kube-apiserver requires of namespaces).
fn check_namespace(value: &serde_json::Value) -> Result<(), FieldError> {
    let Some(ns) = value["metadata"]["namespace"].as_str() else {
        return Ok(());
    };
    let label = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if label {
        Ok(())
    } else {
        Err(FieldError {
            path: "metadata.namespace".into(),
            message: format!(
                "{ns:?} is not a namespace name: lowercase letters, digits and '-', at most 63 characters"
            ),
        })
    }
}

fn check_name(pipeline: &Pipeline) -> Vec<FieldError> {
    let meta = &pipeline.metadata;
    let error = |path: &str, message: &str| {
        vec![FieldError {
            path: path.into(),
            message: message.into(),
        }]
    };
    match (&meta.name, &meta.generate_name) {
        (None, None) => error("metadata.name", "is required"),
        (Some(name), _) if !validation::is_dns_subdomain(name) => error(
            "metadata.name",
            "must be lowercase letters, digits, '-' and '.', at most 253 characters",
        ),
        _ => Vec::new(),
    }
}

/// Decodes `value`, reporting unknown fields and type errors with their paths.
fn decode_strict<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let decoded: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    let mut errors: Vec<FieldError> = unknown
        .into_iter()
        // apiVersion and kind were checked already; status is the controller's and ignored on apply.
        .filter(|path| !matches!(path.as_str(), "apiVersion" | "kind") && !path.starts_with("status"))
        .map(|path| FieldError {
            path,
            message: "unknown field".into(),
        })
        .collect();
    match decoded {
        Ok(decoded) if errors.is_empty() => Ok(decoded),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(type_error(e));
            Err(errors)
        }
    }
}

/// Turns serde's "missing field `x`" at `spec` into `spec.x: is required`.
fn type_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let path = if path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return FieldError {
            path,
            message: "is required".into(),
        };
    }
    FieldError { path, message }
}
