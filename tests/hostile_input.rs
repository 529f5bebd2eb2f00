//! Hostile input, refused early and cheaply: the embedded API server holds kube-apiserver's limits
//! (3 MiB bodies → 413, oversized headers → 431, header-read, idle and body timeouts, JSON patch
//! operation and copy limits) and the nesting-depth limit checked before any parser runs, while
//! `/healthz` keeps answering; `cdkube validate -f` and `cdkube dev -f` refuse devices, FIFOs,
//! oversized and deeply nested manifests at once, in one line. Property tests hold the depth
//! estimate to serde's own parsers and the manifest checker to "never panics, round-trips".
mod support;

use std::process::Stdio;
use std::time::Duration;

use cdkube::embedded::ServeLimits;
use cdkube::input;
use kube::Client;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::bounded::run_within;
use support::cluster::Cluster;
use support::wire::{self, Wire};

/// `/healthz` answers within a second; this is the generous bound the tests assert.
const HEALTHZ: Duration = Duration::from_secs(3);
/// The connection timeouts of [`short_timeouts`]; a drop is expected within 3× this.
const SHORT: Duration = Duration::from_secs(1);
/// How long a refused CLI run may take before it counts as hanging.
const CLI_DEADLINE: Duration = Duration::from_secs(10);

/// A cluster whose header-read, idle and body timeouts are [`SHORT`].
async fn short_timeouts() -> Cluster {
    Cluster::start_with(|c| {
        c.limits = ServeLimits {
            header_read_timeout: SHORT,
            idle_timeout: SHORT,
            request_body_timeout: SHORT,
            ..ServeLimits::default()
        }
    })
    .await
}

/// `{a: {a: … 1 …}}`, `levels` deep: quadratic for serde_yaml (300 KB took it > 10 s).
fn deep_flow_mapping(levels: usize) -> String {
    format!("{}1{}", "{a: ".repeat(levels), "}".repeat(levels))
}

/// Sends a request with the cluster's credentials; the status code and the Status message.
async fn send(client: &Client, method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("Content-Type", content_type)
        .body(body)
        .expect("request");
    match client.request_text(req).await {
        Ok(_) => (200, String::new()),
        Err(kube::Error::Api(status)) => (status.code, format!("{}: {}", status.reason, status.message)),
        Err(other) => panic!("{method} {uri}: not an API answer: {other}"),
    }
}

fn configmap_json(name: &str, padding: usize) -> Vec<u8> {
    let mut body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        .to_string()
        .into_bytes();
    body.extend(std::iter::repeat_n(b' ', padding));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_3_mib_is_413_as_kube_apiserver_answers() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let uri = "/api/v1/namespaces/default/configmaps";
    let limit = 3 * 1024 * 1024;
    let over = configmap_json("over", limit);
    let (code, message) = send(&client, "POST", uri, "application/json", over).await;
    assert_eq!(
        (code, message.as_str()),
        (413, "RequestEntityTooLarge: Request entity too large: limit is 3145728")
    );
    // Just under the limit (JSON padded with blanks) is served.
    let base = configmap_json("under", 0).len();
    let under = configmap_json("under", limit - base);
    assert_eq!(send(&client, "POST", uri, "application/json", under).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_over_3_mib_is_refused_before_it_is_sent() {
    let cluster = Cluster::start().await;
    let mut wire = Wire::connect(cluster.server.addr(), cluster.server.ca_pem()).await;
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n",
        cluster.server.token()
    );
    wire.send(head.as_bytes()).await;
    let reply = wire.reply(HEALTHZ).await.expect("an answer without the body");
    assert_eq!(reply.status, 413);
    assert!(
        reply.body.contains("\"reason\":\"RequestEntityTooLarge\""),
        "{}",
        reply.body
    );
}

/// A body the server must refuse for its nesting, by where it arrives.
struct DeepBody {
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    content_type: &'static str,
    body: String,
}

fn deep_bodies() -> Vec<DeepBody> {
    let cms = "/api/v1/namespaces/default/configmaps";
    let one = "/api/v1/namespaces/default/configmaps/one";
    let yaml = deep_flow_mapping(60_000);
    let json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    vec![
        DeepBody {
            name: "create, YAML",
            method: "POST",
            uri: cms,
            content_type: "application/yaml",
            body: yaml.clone(),
        },
        DeepBody {
            name: "server-side apply",
            method: "PATCH",
            uri: "/api/v1/namespaces/default/configmaps/one?fieldManager=t",
            content_type: "application/apply-patch+yaml",
            body: yaml,
        },
        DeepBody {
            name: "create, JSON",
            method: "POST",
            uri: cms,
            content_type: "application/json",
            body: json.clone(),
        },
        DeepBody {
            name: "merge patch",
            method: "PATCH",
            uri: one,
            content_type: "application/merge-patch+json",
            body: json.clone(),
        },
        DeepBody {
            name: "DeleteOptions",
            method: "DELETE",
            uri: one,
            content_type: "application/json",
            body: json,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_bodies_are_refused_before_parsing_while_healthz_answers() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cm = configmap_json("one", 0);
    assert_eq!(
        send(
            &client,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            cm
        )
        .await
        .0,
        200
    );
    let mut senders = tokio::task::JoinSet::new();
    // Two of each at once: as many as this machine has cores.
    for case in deep_bodies().into_iter().chain(deep_bodies()) {
        let client = client.clone();
        senders.spawn(async move {
            let answer = send(
                &client,
                case.method,
                case.uri,
                case.content_type,
                case.body.into_bytes(),
            )
            .await;
            (case.name, answer)
        });
    }
    let (slowest, answers) = wire::slowest_healthz_while(
        cluster.server.addr(),
        cluster.server.ca_pem(),
        HEALTHZ,
        senders.join_all(),
    )
    .await;
    let slowest = slowest.expect("/healthz answered");
    assert!(
        slowest < HEALTHZ,
        "/healthz took {slowest:?} while deep bodies were sent"
    );
    for (name, (code, message)) in answers {
        assert_eq!(code, 400, "{name}: {message}");
        assert!(
            message.contains("nested deeper than the limit of 100 levels"),
            "{name}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patches_cannot_nest_copy_or_operate_past_the_limits() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let created = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patched"},
        "data": {"a": "x".repeat(100_000)}});
    assert_eq!(
        send(
            &client,
            "POST",
            cms,
            "application/json",
            created.to_string().into_bytes()
        )
        .await
        .0,
        200
    );

    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!({"a": inner}));
    let deep_path = format!("/x{}", "/a".repeat(59));
    let deeper = json!([{"op": "add", "path": "/x", "value": nested(60)},
        {"op": "add", "path": deep_path, "value": nested(60)}]);
    let mut copies = vec![json!({"op": "copy", "from": "/data", "path": "/d"})];
    copies.extend((0..8).map(|i| json!({"op": "copy", "from": "/d", "path": format!("/d/n{i}")})));
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"}))
        .collect();

    struct Case {
        name: &'static str,
        patch: Value,
        code: u16,
        message: &'static str,
    }
    let cases = [
        Case {
            name: "nests past 100 levels",
            patch: deeper,
            code: 422,
            message: "nested deeper than the limit of 100 levels",
        },
        Case {
            name: "copies a subtree into itself",
            patch: Value::Array(copies),
            code: 422,
            message: "exceeding the limit 3145728",
        },
        Case {
            name: "10 001 operations",
            patch: Value::Array(many),
            code: 413,
            message: "The allowed maximum operations in a JSON patch is 10000, got 10001",
        },
    ];
    let uri = format!("{cms}/patched");
    for case in cases {
        let body = case.patch.to_string().into_bytes();
        let (code, message) = send(&client, "PATCH", &uri, "application/json-patch+json", body).await;
        assert_eq!(code, case.code, "{}: {message}", case.name);
        assert!(message.contains(case.message), "{}: {message}", case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_dropped_while_healthz_answers() {
    let cluster = short_timeouts().await;
    let (addr, ca) = (cluster.server.addr(), cluster.server.ca_pem().to_string());
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let wire = Wire::connect(addr, &ca).await;
        clients.spawn(wire::trickle(
            wire,
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            b"X-Drip: 1\r\n",
            Duration::from_millis(200),
            SHORT * 10,
        ));
    }
    let (slowest, dropped) = wire::slowest_healthz_while(addr, &ca, HEALTHZ, clients.join_all()).await;
    let slowest = slowest.expect("/healthz answered");
    assert!(slowest < HEALTHZ, "/healthz took {slowest:?} among trickling clients");
    for after in dropped {
        let after = after.expect("a trickling client was dropped");
        assert!(after < SHORT * 3, "dropped after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let cluster = short_timeouts().await;
    let (addr, ca) = (cluster.server.addr(), cluster.server.ca_pem());
    // Connected, never a byte.
    let mut silent = Wire::connect(addr, ca).await;
    let closed = silent
        .closed_within(SHORT * 10)
        .await
        .expect("a silent connection is closed");
    assert!(closed < SHORT * 3, "closed after {closed:?}");
    // One request, then silence.
    let mut kept = Wire::connect(addr, ca).await;
    kept.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(kept.reply(HEALTHZ).await.expect("answer").status, 200);
    let closed = kept
        .closed_within(SHORT * 10)
        .await
        .expect("an idle connection is closed");
    assert!(closed < SHORT * 3, "closed after {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_times_out() {
    let cluster = short_timeouts().await;
    let mut wire = Wire::connect(cluster.server.addr(), cluster.server.ca_pem()).await;
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"apiVersion\"",
        cluster.server.token()
    );
    wire.send(head.as_bytes()).await;
    let reply = wire
        .reply(SHORT * 10)
        .await
        .expect("an answer once the body deadline passed");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.body.contains("\"reason\":\"Timeout\""), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_served_up_to_1_mib_and_answered_431_beyond() {
    let cluster = Cluster::start().await;
    let (addr, ca) = (cluster.server.addr(), cluster.server.ca_pem());
    struct Case {
        header_bytes: usize,
        status: u16,
    }
    for case in [
        Case {
            header_bytes: 600 * 1024,
            status: 200,
        },
        Case {
            header_bytes: 1024 * 1024 + 1024,
            status: 431,
        },
    ] {
        let mut wire = Wire::connect(addr, ca).await;
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(case.header_bytes)
        );
        wire.send(head.as_bytes()).await;
        let reply = wire.reply(HEALTHZ).await.expect("an answer");
        assert_eq!(reply.status, case.status, "a {} byte header", case.header_bytes);
    }
}

/// A manifest the CLI must refuse at once, and the words that say why.
struct BadManifest {
    name: &'static str,
    /// The `-f` argument; `-` reads `stdin`.
    file: String,
    stdin: Option<&'static str>,
    says: &'static str,
}

fn bad_manifests(dir: &std::path::Path) -> Vec<BadManifest> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let fifo = dir.join("fifo.yaml");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).expect("path");
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    vec![
        BadManifest {
            name: "/dev/zero",
            file: "/dev/zero".into(),
            stdin: None,
            says: "is a character device, not a regular file",
        },
        BadManifest {
            name: "a FIFO",
            file: fifo.display().to_string(),
            stdin: None,
            says: "is a FIFO, not a regular file",
        },
        BadManifest {
            name: "9 MiB",
            file: write("big.yaml", format!("a: {}\n", "x".repeat(9 << 20))),
            stdin: None,
            says: "larger than the limit of 8 MiB",
        },
        BadManifest {
            name: "500 KB of [[[…]]]",
            file: write("flow.yaml", format!("{}{}", "[".repeat(250_000), "]".repeat(250_000))),
            stdin: None,
            says: "nested deeper than the limit of 100 levels (line 1)",
        },
        BadManifest {
            name: "300 KB of {a: {a: …}}",
            file: write("map.yaml", deep_flow_mapping(60_000)),
            stdin: None,
            says: "nested deeper than the limit of 100 levels (line 1)",
        },
        BadManifest {
            name: "300 block levels",
            file: write("block.yaml", format!("{}x\n", "- ".repeat(300))),
            stdin: None,
            says: "nested deeper than the limit of 100 levels (line 1)",
        },
        BadManifest {
            name: "stdin from /dev/zero",
            file: "-".into(),
            stdin: Some("/dev/zero"),
            says: "larger than the limit of 8 MiB",
        },
    ]
}

/// Exit 1 within the deadline, one line on stderr that names the file and says why.
fn assert_refused(case: &BadManifest, run: &support::bounded::Bounded) {
    assert_eq!(run.code, Some(1), "{}: {run:?}", case.name);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}: one line, got {:?}", case.name, run.stderr);
    assert!(
        lines[0].contains(&case.file) && lines[0].contains(case.says),
        "{}: {}",
        case.name,
        lines[0]
    );
}

#[test]
fn validate_refuses_devices_fifos_huge_and_deep_manifests_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for case in bad_manifests(dir.path()) {
        let mut cmd = support::cdkube_command(&["validate", "-f", &case.file]);
        cmd.stdin(match case.stdin {
            Some(path) => Stdio::from(std::fs::File::open(path).expect("stdin")),
            None => Stdio::null(),
        });
        assert_refused(&case, &run_within(cmd, CLI_DEADLINE));
    }
}

#[test]
fn dev_refuses_bad_manifests_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for case in bad_manifests(dir.path()).into_iter().filter(|c| c.stdin.is_none()) {
        let state = dir.path().join("state");
        let args = [
            "dev",
            "--no-operator",
            "--state-dir",
            &state.display().to_string(),
            "-f",
            &case.file,
        ];
        let mut cmd = support::cdkube_command(&args);
        cmd.stdin(Stdio::null());
        assert_refused(&case, &run_within(cmd, CLI_DEADLINE));
        assert!(!state.join("kubeconfig").exists(), "{}: the plane started", case.name);
    }
}

/// Values up to 5 levels deep with short keys and scalars of every kind.
fn values() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~\n]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z:#\\[ -]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Nesting of what serde_yaml decoded (0 for a scalar).
fn yaml_depth(value: &serde_yaml::Value) -> usize {
    use serde_yaml::Value as Y;
    match value {
        Y::Sequence(items) => 1 + items.iter().map(yaml_depth).max().unwrap_or(0),
        Y::Mapping(map) => {
            1 + map
                .iter()
                .map(|(k, v)| yaml_depth(k).max(yaml_depth(v)))
                .max()
                .unwrap_or(0)
        }
        Y::Tagged(tagged) => yaml_depth(&tagged.value),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The estimate is exact for what serde writes: JSON, pretty JSON, block YAML.
    #[test]
    fn depth_estimate_is_exact_for_serialised_values(value in values()) {
        let want = input::value_depth(&value);
        let texts = [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
            serde_yaml::to_string(&value).unwrap(),
        ];
        for text in texts {
            prop_assert_eq!(input::depth(text.as_bytes()), want, "{}", text);
        }
    }

    /// On any YAML-ish text the check never panics, and never counts less nesting than serde_yaml
    /// builds (undercounting would let quadratic input through).
    #[test]
    fn depth_estimate_never_undercounts_what_serde_yaml_accepts(text in "([\\[\\]{}:,?&*!|>'\"#%\t -]|[a-c1]|\n|\n  |\r|---|\u{2028}|\u{85}|\u{feff}){0,40}") {
        let estimate = input::depth(text.as_bytes());
        let _ = input::check(text.as_bytes(), input::Limits::REQUEST);
        if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
            prop_assert!(estimate >= yaml_depth(&value), "estimate {} for {:?}", estimate, text);
        }
    }

    /// The manifest checker answers every input with verdicts, never a panic.
    #[test]
    fn manifest_check_never_panics(text in "(apiVersion|kind|Pipeline|spec|repo|metadata|name|[a-z:\\[\\]{}\"' \n-]){0,60}") {
        let _ = cdkube::api::manifest::check_text("fuzz.yaml", &text, Default::default());
    }

    /// A valid Pipeline written as YAML is read back as valid, under its name.
    #[test]
    fn valid_pipelines_round_trip(
        name in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        repo in "https://[a-z]{1,10}\\.example/[a-z]{1,10}\\.git",
        commands in prop::collection::vec("[a-z][a-z ]{0,9}", 1..4),
    ) {
        let doc = json!({
            "apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"repo": repo, "buildImage": "busybox", "buildCommands": commands,
                "targetName": "app", "targetVersion": "1.0"}
        });
        let text = serde_yaml::to_string(&doc).unwrap();
        let entries = cdkube::api::manifest::check_text("p.yaml", &text, Default::default());
        prop_assert_eq!(entries.len(), 1);
        prop_assert!(entries[0].is_ok(), "{}", entries[0]);
        let valid = matches!(&entries[0].outcome, cdkube::api::manifest::Outcome::Valid { name: n } if *n == name);
        prop_assert!(valid, "{}", entries[0]);
    }
}

/// A ConfigMap of `bytes` of YAML in dense flow style: legal, shallow, about a second of serde_yaml.
fn dense_yaml_configmap(name: &str, bytes: usize) -> String {
    let mut text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{");
    let mut i = 0;
    while text.len() < bytes - 16 {
        text.push_str(&format!("k{i}: v, "));
        i += 1;
    }
    text.push_str("z: v}\n");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_decoded_off_the_async_workers() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let mut senders = tokio::task::JoinSet::new();
    // As many at once as this machine has cores.
    for i in 0..2 {
        let client = client.clone();
        let body = dense_yaml_configmap(&format!("dense-{i}"), 3 * 1024 * 1024 - 1024).into_bytes();
        senders.spawn(async move {
            send(
                &client,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/yaml",
                body,
            )
            .await
        });
    }
    let (slowest, answers) = wire::slowest_healthz_while(
        cluster.server.addr(),
        cluster.server.ca_pem(),
        HEALTHZ,
        senders.join_all(),
    )
    .await;
    let slowest = slowest.expect("/healthz answered");
    assert!(
        slowest < HEALTHZ,
        "/healthz took {slowest:?} while large bodies were decoded"
    );
    for (code, message) in answers {
        assert_eq!(code, 200, "{message}");
    }
}
