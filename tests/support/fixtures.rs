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
