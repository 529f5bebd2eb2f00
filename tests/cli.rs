//! Behaviour of the `cdkube` command line that needs no cluster: `crd`, `validate`, `version`, and
//! the manifests in deploy/ rendering with the real kubectl.
mod support;

use std::process::Command;

use support::cdkube;
use support::fixtures::{repo_root as root, yaml_files};
use support::kubectl::{self, KUBECTL};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn crd_output_is_the_committed_deploy_crd() {
    let out = cdkube(&["crd"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(root().join("deploy/crd.yaml")).unwrap();
    assert!(
        text(&out.stdout) == committed,
        "deploy/crd.yaml drifted from the API types: run `cargo run -- crd > deploy/crd.yaml`"
    );
}

#[test]
fn crd_carries_names_columns_status_cel_and_descriptions() {
    let crd: serde_yaml::Value = serde_yaml::from_slice(&cdkube(&["crd"]).stdout).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["names"]["shortNames"][0], "pl");
    assert_eq!(spec["names"]["categories"][0], "cdkube");
    assert_eq!(spec["scope"], "Namespaced");
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_mapping());

    let columns: Vec<(&str, &str, i64)> = version["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["jsonPath"].as_str().unwrap(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Commit", ".status.builtShortCommit", 0),
            ("Version", ".status.targetVersion", 0),
            ("Phase", ".status.phase", 0),
            ("Age", ".metadata.creationTimestamp", 0),
            ("Repo", ".spec.repo", 1),
            ("Branch", ".spec.branch", 1),
        ]
    );

    let schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rule = &schema["x-kubernetes-validations"][0];
    assert_eq!(rule["rule"], "!(has(self.interval) && has(self.schedule))");
    let required: Vec<&str> = schema["required"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        ["buildCommands", "buildImage", "repo", "targetName", "targetVersion"]
    );
    for (field, property) in schema["properties"].as_mapping().unwrap() {
        let description = property["description"].as_str().unwrap_or_default();
        assert!(
            description.len() > 20,
            "spec.{} has no real description",
            field.as_str().unwrap()
        );
    }
    assert!(
        schema["properties"]["concurrencyPolicy"]["description"]
            .as_str()
            .unwrap()
            .contains("Replace")
    );
    assert_eq!(schema["properties"]["historyLimit"]["maximum"].as_f64(), Some(100.0));
}

#[test]
fn good_fixtures_validate() {
    let mut args = vec!["validate".to_string()];
    for file in yaml_files(&root().join("fixtures/pipelines")) {
        args.push("-f".into());
        args.push(file.to_string_lossy().into_owned());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cdkube")).args(&args).output().unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(r#"Pipeline "doing-nothing" is valid"#), "{stdout}");
    assert!(stdout.contains(r#"Pipeline "shop-backend" is valid"#), "{stdout}");
}

#[test]
fn seed_manifest_is_byte_for_byte_the_design() {
    let seed = std::fs::read_to_string(root().join("fixtures/pipelines/doing-nothing.yaml")).unwrap();
    let design = "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {name: doing-nothing}\nspec:\n  \
                  repo: http://github.com/inge4pres/just-a-test\n  buildImage: busybox\n  buildCommands: [echo]\n  \
                  buildArguments: [\"building something...\", \"now I'm done\"]\n  targetName: tesApp\n  targetVersion: \"0.1\"\n";
    assert_eq!(seed, design);
}

/// Every invalid fixture states the field at fault in a `# field:` comment; validate must exit 1 and name it.
#[test]
fn each_invalid_fixture_fails_naming_its_field() {
    let files = yaml_files(&root().join("fixtures/pipelines/invalid"));
    assert!(
        files.len() >= 15,
        "want at least 15 invalid fixtures, have {}",
        files.len()
    );
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let field = source
            .lines()
            .find_map(|l| l.strip_prefix("# field: "))
            .unwrap_or_else(|| panic!("{} lacks a `# field:` comment", file.display()));
        assert!(
            source.starts_with("# Invalid: "),
            "{} lacks a comment saying what is wrong",
            file.display()
        );
        let out = cdkube(&["validate", "-f", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert!(
            stderr.contains(&format!(": {field}: ")),
            "{} should name {field}; got: {stderr}",
            file.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn validate_reports_every_error_of_a_document_with_file_and_index() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n---\n\
                    apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {name: two-errors}\n\
                    spec:\n  repo: ftp://127.0.0.1/x.git\n  interval: 1s\n  buildImage: busybox\n  \
                    buildCommands: [echo]\n  targetName: a\n  targetVersion: '1'\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.yaml");
    std::fs::write(&path, manifest).unwrap();
    let out = cdkube(&["validate", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let prefix = format!("{}: document 2: ", path.display());
    assert!(
        stderr.contains(&format!("{prefix}spec.repo: unsupported URL scheme `ftp`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{prefix}spec.interval: \"1s\" is below the 10s floor")),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("document 1: skipped ConfigMap"));
}

#[test]
fn validate_allow_local_accepts_file_repositories() {
    let local = root().join("fixtures/pipelines/invalid/local-repo-in-cluster.yaml");
    let out = cdkube(&["validate", "--allow-local", "-f", local.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn validate_bad_calls_fail_with_one_line() {
    let out = cdkube(&["validate", "-f", "/nonexistent/pipeline.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("/nonexistent/pipeline.yaml: cannot read: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);

    let out = cdkube(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(text(&out.stderr).contains("--filename"));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Pipeline\n  spec: [unclosed\n").unwrap();
    let out = cdkube(&["validate", "-f", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("document 1: yaml: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_refuses_what_the_api_server_would() {
    struct Case {
        what: &'static str,
        manifest: &'static str,
        beside_a_pipeline: bool,
        error: &'static str,
    }
    const PIPELINE: &str = "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n\
                            spec: {repo: 'https://example.com/r.git', buildImage: busybox, buildCommands: [echo], \
                            targetName: a, targetVersion: '1', secretRef: {name: creds}}\n";
    let cases = [
        Case {
            what: "a kind our group does not serve",
            manifest: "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipline\nmetadata: {name: p}\n",
            beside_a_pipeline: false,
            error: "document 1: kind: delivery.inge.4pr.es serves no kind \"Pipline\"; did you mean Pipeline?",
        },
        Case {
            what: "no Pipeline at all",
            manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            beside_a_pipeline: false,
            error: "no Pipeline found in the input",
        },
        Case {
            what: "empty input",
            manifest: "",
            beside_a_pipeline: false,
            error: "no Pipeline found in the input",
        },
        Case {
            what: "Secret data that is not base64",
            manifest: "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: '!!not base64!!'}\n",
            beside_a_pipeline: true,
            error: "document 1: data.password: ",
        },
        Case {
            what: "a namespace that cannot exist",
            manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: Team_A}\n",
            beside_a_pipeline: true,
            error: "document 1: metadata.namespace: \"Team_A\" is not a namespace name",
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for case in cases {
        let path = dir.path().join("case.yaml");
        // A valid Pipeline beside the case, so that only the case can fail the run.
        let manifest = if case.beside_a_pipeline {
            format!("{}---\n{PIPELINE}", case.manifest)
        } else {
            case.manifest.to_string()
        };
        std::fs::write(&path, manifest).unwrap();
        let out = cdkube(&["validate", "-f", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.what);
        assert!(
            stderr.contains(case.error),
            "{}: expected {:?} in:\n{stderr}",
            case.what,
            case.error
        );
    }
}

#[test]
fn version_and_help() {
    let out = cdkube(&["version"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("cdkube {}\n", env!("CARGO_PKG_VERSION")));
    let help = text(&cdkube(&["--help"]).stdout);
    for command in ["crd", "validate", "version"] {
        assert!(help.contains(command), "{help}");
    }
    assert!(cdkube(&["validate", "--help"]).status.success());
}

#[test]
fn deploy_renders_with_kubectl_kustomize() {
    if !kubectl::present("rendering deploy/") {
        return;
    }
    let out = Command::new(KUBECTL)
        .args(["kustomize", "deploy/"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(container["resources"]["requests"]["memory"], "64Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "50m");
    for doc in docs
        .iter()
        .filter(|d| d["kind"] != "Namespace" && d["kind"] != "CustomResourceDefinition")
    {
        let cluster_scoped = matches!(doc["kind"].as_str(), Some("ClusterRole" | "ClusterRoleBinding"));
        assert_eq!(
            doc["metadata"]["namespace"].as_str().is_some(),
            !cluster_scoped,
            "{:?}",
            doc["kind"]
        );
    }
}
