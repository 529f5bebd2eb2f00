//! Files of the repository the tests read: the generated CRD and the Pipeline fixtures.
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/crd.yaml`.
pub fn crd_path() -> PathBuf {
    repo_root().join("deploy/crd.yaml")
}

/// A fixture under `fixtures/pipelines/` (`doing-nothing.yaml`, `invalid/missing-repo.yaml`, …).
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/pipelines").join(name)
}

/// The `.yaml` files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Reads a YAML file into JSON.
pub fn yaml_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read yaml");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse yaml");
    serde_json::to_value(v).expect("yaml to json")
}

/// One invalid fixture the API server refuses at `kubectl apply`, by the CRD's schema and rules alone.
pub struct Refused {
    /// File under `fixtures/pipelines/invalid/`.
    pub file: &'static str,
    /// Part of kubectl's error, the same from the embedded and the real API server.
    pub error: &'static str,
}

/// The invalid fixtures the CRD refuses (the others are refused by `cdkube validate` and, in a cluster,
/// by the controller as InvalidSpec: what a CRD cannot express).
pub const REFUSED_BY_THE_CRD: &[Refused] = &[
    Refused {
        file: "bad-branch-name.yaml",
        error: "spec.branch: Invalid value: \"release..2\": is not a valid git branch name",
    },
    Refused {
        file: "bad-secret-name.yaml",
        error: "spec.secretRef.name: Invalid value: \"My_Secret\": spec.secretRef.name in body should match",
    },
    Refused {
        file: "cron-too-few-fields.yaml",
        error: "spec.schedule: Invalid value: \"*/5 * *\": must be a cron expression of 5 fields",
    },
    Refused {
        file: "empty-build-commands.yaml",
        error: "spec.buildCommands in body should have at least 1 items",
    },
    Refused {
        file: "history-limit-too-high.yaml",
        error: "spec.historyLimit: Invalid value: 500: spec.historyLimit in body should be less than or equal to 100",
    },
    Refused {
        file: "history-limit-not-a-number.yaml",
        error: "spec.historyLimit in body must be of type integer: \"string\"",
    },
    Refused {
        file: "interval-and-schedule.yaml",
        error: "interval and schedule are mutually exclusive",
    },
    Refused {
        file: "interval-below-floor.yaml",
        error: "spec.interval: Invalid value: \"5s\": must be at least 10s",
    },
    Refused {
        file: "interval-not-a-duration.yaml",
        error: "spec.interval in body should match",
    },
    Refused {
        file: "missing-repo.yaml",
        error: "spec.repo: Required value",
    },
    Refused {
        file: "misspelled-field.yaml",
        error: "unknown field \"spec.buildImgae\"",
    },
    Refused {
        file: "password-in-url.yaml",
        error: "spec.repo: Forbidden: must not embed a password",
    },
    Refused {
        file: "reserved-env.yaml",
        error: "spec.env: Forbidden: names starting with CDKUBE_ are set by cdkube",
    },
    Refused {
        file: "timeout-fractional.yaml",
        error: "spec.timeout in body should match",
    },
    Refused {
        file: "unknown-concurrency-policy.yaml",
        error: "spec.concurrencyPolicy: Unsupported value",
    },
    Refused {
        file: "unsupported-scheme.yaml",
        error: "spec.repo: Invalid value: \"ftp://files.example.com/app.git\": unsupported URL scheme",
    },
];
