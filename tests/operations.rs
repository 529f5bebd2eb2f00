//! Running cdkube in production, as an operator of it sees it: push webhooks that build at once,
//! `/metrics` that count what happened, `/healthz` and `/readyz`, two replicas under leader election,
//! and shards that split the Pipelines by label. Each test runs `cdkube run` processes against the
//! embedded plane, under deploy/'s RBAC.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cdkube::api::{RunPhase, Trigger};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use support::operator::{Operator, Plane, gated_build, pipeline_yaml, wait_until};
use support::ops::{Delivery, WEBHOOK_SECRET, get, scrape};
use support::{GitDaemon, Repos, Upstream};

/// Generous: a build here is a probe, a fetch and two local processes on a busy machine.
const BUILD: Duration = Duration::from_secs(90);

/// The flags of an operator with a webhook receiver on a free port.
const WEBHOOK_FLAGS: &[&str] = &["--webhook-secret", "cdkube-webhook", "--webhook-listen", "127.0.0.1:0"];

/// Creates `cdkube-system/cdkube-webhook` with [`WEBHOOK_SECRET`] under every provider's key.
async fn webhook_secret(plane: &Plane) {
    let data: BTreeMap<String, ByteString> = ["github", "gitlab", "generic"]
        .into_iter()
        .map(|k| (k.to_owned(), ByteString(WEBHOOK_SECRET.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("cdkube-webhook".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(plane.client.clone(), "cdkube-system")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the webhook Secret");
}

/// A plane with the webhook Secret, an operator receiving webhooks, and repository `app` on `git daemon`.
struct Bed {
    plane: Plane,
    operator: Operator,
    /// The webhook receiver's base URL.
    hooks: String,
    /// The ops endpoints' base URL.
    ops: String,
    up: Upstream,
    daemon: GitDaemon,
    repos: Repos,
}

impl Bed {
    async fn start() -> Bed {
        let plane = Plane::start().await;
        webhook_secret(&plane).await;
        let operator = plane.operator_with("operator", WEBHOOK_FLAGS);
        let hooks = operator.endpoint("webhook receiver").await;
        let ops = operator.endpoint("ops endpoints").await;
        let repos = Repos::new();
        let up = repos.create("app");
        let daemon = GitDaemon::start(&repos.root());
        Bed {
            plane,
            operator,
            hooks,
            ops,
            up,
            daemon,
            repos,
        }
    }
}

/// A Pipeline following `repo`'s main that polls only hourly: a build sooner than that is a webhook's.
fn hourly(name: &str, repo: &str, build: &str) -> String {
    pipeline_yaml(name, repo, "Forbid", build).replace("interval: 10s", "interval: 1h")
}

/// A delivery of a push of the commit it is given.
type MakeDelivery = fn(&str) -> Delivery;

/// Waits for run `n` of `name` to exist, and returns it.
async fn wait_started(plane: &Plane, name: &str, n: i64) -> cdkube::api::Run {
    let status = plane
        .wait_status(name, &format!("run {n} recorded"), BUILD, |s| {
            s.history.iter().any(|r| r.run == n)
        })
        .await;
    status.history.into_iter().find(|r| r.run == n).expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_pushes_from_github_gitlab_and_generic_senders_build_at_once() {
    let Bed {
        plane,
        operator,
        hooks,
        up,
        daemon,
        repos: _repos,
        ..
    } = Bed::start().await;
    plane.apply(&hourly("app", &daemon.url("app"), "true")).await;
    plane.wait_run("app", 1, RunPhase::Succeeded, BUILD).await;

    // Each sender spells the repository its own way; each names the git:// repository the Pipeline follows.
    let senders: [(&str, MakeDelivery); 3] = [
        ("github", |sha| {
            Delivery::github_push("https://127.0.0.1/app.git", "main", sha)
        }),
        ("gitlab", |sha| {
            Delivery::gitlab_push("http://127.0.0.1:8080/APP", "main", sha)
        }),
        ("generic", |_| Delivery::generic_push("git@127.0.0.1:app.git", "main")),
    ];
    for (run, (provider, delivery)) in (2..).zip(senders) {
        let sha = up.commit(&[("f", provider)], provider);
        let (status, body) = delivery(&sha).send(&hooks).await;
        assert_eq!(status, 202, "{provider}: {body}");
        let started = wait_started(&plane, "app", run).await;
        assert_eq!(
            (started.commit.as_str(), started.trigger),
            (sha.as_str(), Trigger::Webhook),
            "{provider}"
        );
        let pod = started.pod.expect("the run names its Pod");
        wait_until(&format!("Pod {pod}"), BUILD, || async {
            plane.pods("app").await.iter().any(|p| p.name_any() == pod)
        })
        .await;
        plane.wait_run("app", run, RunPhase::Succeeded, BUILD).await;
    }

    // Counters follow the status write, and the phase gauge the operator's cache: wait for both.
    let ops = operator.endpoint("ops endpoints").await;
    wait_until("the metrics to catch up", BUILD, || async {
        let metrics = scrape(&ops).await;
        metrics.value("cdkube_builds_finished_total", &[("result", "Succeeded")]) == 4.0
            && metrics.value("cdkube_pipelines", &[("phase", "Succeeded")]) == 1.0
    })
    .await;
    let metrics = scrape(&ops).await;
    for provider in ["github", "gitlab", "generic"] {
        let accepted = [("provider", provider), ("result", "accepted")];
        assert_eq!(
            metrics.value("cdkube_webhook_requests_total", &accepted),
            1.0,
            "{provider}"
        );
    }
    assert_eq!(
        metrics.value("cdkube_builds_started_total", &[("trigger", "webhook")]),
        3.0
    );
    assert_eq!(
        metrics.value("cdkube_builds_started_total", &[("trigger", "poll")]),
        1.0
    );
    assert!(metrics.value("cdkube_probes_total", &[("transport", "git"), ("result", "ok")]) >= 4.0);
    assert!(metrics.value("cdkube_build_duration_seconds_count", &[("result", "Succeeded")]) == 4.0);
    assert!(metrics.has("cdkube_reconcile_duration_seconds_count"));
    assert!(
        metrics.value("cdkube_artifact_bytes", &[]) > 0.0,
        "artifacts are stored"
    );
    assert_eq!(metrics.value("cdkube_leader", &[]), 1.0);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_requests_get_their_status_and_build_nothing() {
    let Bed {
        plane,
        operator: _operator,
        hooks,
        ops,
        up,
        daemon,
        repos: _repos,
    } = Bed::start().await;
    plane.apply(&hourly("app", &daemon.url("app"), "true")).await;
    plane.wait_run("app", 1, RunPhase::Succeeded, BUILD).await;
    // A commit only a (valid) push would reveal before the next hourly poll.
    let sha = up.commit(&[("f", "2")], "second");
    let push = Delivery::github_push("https://127.0.0.1/app.git", "main", &sha);

    struct Case {
        name: &'static str,
        delivery: Delivery,
        status: u16,
        result: &'static str,
    }
    let unsigned = Delivery {
        headers: vec![("X-GitHub-Event".into(), "push".into())],
        ..Delivery::github_push("https://127.0.0.1/app.git", "main", &sha)
    };
    let mut forged = Delivery::github_push("https://127.0.0.1/app.git", "main", &sha);
    forged.headers[1].1 = cdkube::webhook::sign(b"not-the-secret", &forged.body);
    let mut tampered = Delivery::github_push("https://127.0.0.1/app.git", "main", &sha);
    tampered.body.extend_from_slice(b" ");
    let mut bad_generic = Delivery::generic_push("https://127.0.0.1/app.git", "main");
    bad_generic.headers[0].1 = cdkube::webhook::sign(b"not-the-secret", &bad_generic.body);
    let mut wrong_token = Delivery::gitlab_push("https://127.0.0.1/app.git", "main", &sha);
    wrong_token.headers[1].1 = "guess".into();
    let cases = [
        Case {
            name: "no signature",
            delivery: unsigned,
            status: 401,
            result: "unauthorized",
        },
        Case {
            name: "signed with another secret",
            delivery: forged,
            status: 401,
            result: "unauthorized",
        },
        Case {
            name: "body changed after signing",
            delivery: tampered,
            status: 401,
            result: "unauthorized",
        },
        Case {
            name: "wrong GitLab token",
            delivery: wrong_token,
            status: 401,
            result: "unauthorized",
        },
        Case {
            name: "a generic push signed with another secret",
            delivery: bad_generic,
            status: 401,
            result: "unauthorized",
        },
        Case {
            name: "GitHub's ping",
            delivery: Delivery::github("ping", br#"{"zen":"Design for failure."}"#.to_vec()),
            status: 200,
            result: "ignored",
        },
        Case {
            name: "an event that is not a push",
            delivery: Delivery::github("issues", br#"{"action":"opened"}"#.to_vec()),
            status: 202,
            result: "ignored",
        },
        Case {
            name: "malformed JSON, correctly signed",
            delivery: Delivery::github("push", b"{\"ref\": ".to_vec()),
            status: 400,
            result: "bad_request",
        },
        Case {
            name: "a body over 1 MiB",
            delivery: Delivery::github("push", vec![b' '; 1024 * 1024 + 1]),
            status: 413,
            result: "too_large",
        },
        Case {
            name: "a repository no Pipeline follows",
            delivery: Delivery::github_push("https://127.0.0.1/other.git", "main", &sha),
            status: 202,
            result: "ignored",
        },
        Case {
            name: "another branch",
            delivery: Delivery::github_push("https://127.0.0.1/app.git", "dev", &sha),
            status: 202,
            result: "ignored",
        },
    ];
    let probes_before = scrape(&ops).await.value("cdkube_probes_total", &[]);
    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    for case in &cases {
        let (status, body) = case.delivery.send(&hooks).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(
            body.ends_with('\n') && body.len() > 1,
            "{}: a reason is given",
            case.name
        );
        *expected.entry(case.result).or_default() += 1.0;
    }
    let metrics = scrape(&ops).await;
    assert_eq!(
        metrics.value("cdkube_probes_total", &[]),
        probes_before,
        "no bad request probed"
    );
    assert_eq!(plane.status("app").await.history.len(), 1, "no bad request built");
    for (result, count) in expected {
        assert_eq!(
            metrics.value("cdkube_webhook_requests_total", &[("result", result)]),
            count,
            "{result}"
        );
    }

    // The same push, properly signed, builds the commit: only the bad requests were refused.
    let (status, _) = push.send(&hooks).await;
    assert_eq!(status, 202);
    let run = wait_started(&plane, "app", 2).await;
    assert_eq!((run.commit, run.trigger), (sha, Trigger::Webhook));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pushes_costs_one_probe_per_repository() {
    let Bed {
        plane,
        operator: _operator,
        hooks,
        ops,
        up,
        daemon,
        repos: _repos,
    } = Bed::start().await;
    // Three Pipelines follow the repository: still one key, one probe.
    for name in ["one", "two", "three"] {
        plane.apply(&hourly(name, &daemon.url("app"), "true")).await;
    }
    for name in ["one", "two", "three"] {
        plane.wait_run(name, 1, RunPhase::Succeeded, BUILD).await;
    }
    let sha = up.commit(&[("f", "2")], "second");
    let probes_before = scrape(&ops).await.value("cdkube_probes_total", &[]);
    let push = Delivery::github_push("https://127.0.0.1/app.git", "main", &sha);
    let answers = futures::future::join_all((0..50).map(|_| push.send(&hooks))).await;
    assert!(answers.iter().all(|(status, _)| *status == 202), "{answers:?}");
    for name in ["one", "two", "three"] {
        let run = plane.wait_run(name, 2, RunPhase::Succeeded, BUILD).await;
        assert_eq!((run.commit.as_str(), run.trigger), (sha.as_str(), Trigger::Webhook));
    }
    // The probe is counted before the runs it caused are recorded; webhooks before their answer.
    let metrics = scrape(&ops).await;
    assert_eq!(
        metrics.value("cdkube_probes_total", &[]) - probes_before,
        1.0,
        "one probe for 50 pushes"
    );
    assert_eq!(
        metrics.value("cdkube_webhook_requests_total", &[("result", "accepted")]),
        50.0
    );
    assert!(daemon.upload_pack_requests() > 0, "the git server served the probes");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_stuck_pipeline_watch_and_readiness_its_caches() {
    let plane = Plane::start().await;
    let operator = plane.operator_with("operator", &["--watch-stall-timeout", "2s"]);
    let ops = operator.endpoint("ops endpoints").await;
    wait_until("/readyz 200", BUILD, || async { get(&ops, "/readyz").await.0 == 200 }).await;
    assert_eq!(get(&ops, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(&ops, "/nothing").await.0, 404);

    // Without the CRD the Pipeline watch fails over and over: the process is no longer healthy.
    let crds: Api<CustomResourceDefinition> = Api::all(plane.client.clone());
    crds.delete("pipelines.delivery.inge.4pr.es", &Default::default())
        .await
        .expect("delete the CRD");
    wait_until("/healthz 503", BUILD, || async { get(&ops, "/healthz").await.0 == 503 }).await;
    let (_, reason) = get(&ops, "/healthz").await;
    assert!(reason.contains("Pipeline watch"), "{reason}");

    // With the CRD back (once the old one is gone) the watch recovers — it says so with the first
    // Pipeline it delivers — and so does the health.
    wait_until("the CRD is gone", BUILD, || {
        support::cluster::gone(&crds, "pipelines.delivery.inge.4pr.es")
    })
    .await;
    cdkube::embedded::dev::install_crd(&plane.client)
        .await
        .expect("install CRD");
    let repos = Repos::new();
    let up = repos.create("app");
    plane
        .apply(&hourly("app", &format!("file://{}", up.bare_path()), "true"))
        .await;
    wait_until("/healthz 200 again", BUILD, || async {
        get(&ops, "/healthz").await.0 == 200
    })
    .await;
    plane.shutdown().await;
}

/// The scrape of `operator`'s `cdkube_leader` gauge.
async fn leads(operator: &Operator) -> bool {
    scrape(&operator.endpoint("ops endpoints").await)
        .await
        .value("cdkube_leader", &[])
        == 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_a_killed_leader_hands_over_without_losing_a_run() {
    let plane = Plane::start().await;
    let election = ["--lease-duration", "4s"];
    let mut first = plane.operator_with("first", &election);
    wait_until("the first replica leads", BUILD, || leads(&first)).await;
    let second = plane.operator_with("second", &election);
    let second_ops = second.endpoint("ops endpoints").await;
    wait_until("the standby is ready", BUILD, || async {
        get(&second_ops, "/readyz").await.0 == 200
    })
    .await;
    assert!(!leads(&second).await, "one leader at a time");

    let repos = Repos::new();
    let up = repos.create("app");
    let gate = plane.gate();
    plane
        .apply(&pipeline_yaml(
            "app",
            &format!("file://{}", up.bare_path()),
            "Forbid",
            &gated_build(&gate),
        ))
        .await;
    let run = wait_started(&plane, "app", 1).await;
    plane
        .wait_status("app", "run 1 building", BUILD, |s| {
            s.history.iter().any(|r| r.phase == RunPhase::Building)
        })
        .await;
    first.kill();
    wait_until("the standby takes over", BUILD, || leads(&second)).await;
    std::fs::write(&gate, "").unwrap();
    plane.wait_run("app", 1, RunPhase::Succeeded, BUILD).await;
    let next = up.commit(&[("f", "2")], "after the takeover");
    let run2 = plane.wait_run("app", 2, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run2.commit, next);

    let status = plane.status("app").await;
    let runs: Vec<i64> = status.history.iter().map(|r| r.run).collect();
    assert_eq!(runs, [2, 1], "every run once, none lost");
    let pods: Vec<String> = plane.pods("app").await.iter().map(|p| p.name_any()).collect();
    assert_eq!(pods.len(), 2, "one Pod per run, no duplicate: {pods:?}");
    assert!(pods.contains(&run.pod.unwrap()));
    let lease = Api::<Lease>::namespaced(plane.client.clone(), "cdkube-system")
        .get(cdkube::controller::LEASE_NAME)
        .await
        .expect("the Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("second"));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_pipelines_by_label_and_never_both_build_one() {
    let plane = Plane::start().await;
    let shard_a = plane.operator_with("shard-a", &["--label-selector", "shard=a"]);
    let shard_b = plane.operator_with("shard-b", &["--label-selector", "shard=b"]);
    let repos = Repos::new();
    let up = repos.create("app");
    let url = format!("file://{}", up.bare_path());
    for (name, shard) in [("alpha", "a"), ("beta", "b")] {
        let yaml = pipeline_yaml(name, &url, "Forbid", "true").replace(
            &format!("metadata: {{name: {name}}}"),
            &format!("metadata: {{name: {name}, labels: {{shard: {shard}}}}}"),
        );
        plane.apply(&yaml).await;
    }
    for name in ["alpha", "beta"] {
        plane.wait_run(name, 1, RunPhase::Succeeded, BUILD).await;
    }
    let sha = up.commit(&[("f", "2")], "second");
    for name in ["alpha", "beta"] {
        let run = plane.wait_run(name, 2, RunPhase::Succeeded, BUILD).await;
        assert_eq!(run.commit, sha);
        assert_eq!(plane.status(name).await.history.len(), 2, "{name}: each run once");
        assert_eq!(plane.pods(name).await.len(), 2, "{name}: one Pod per run");
    }
    for operator in [&shard_a, &shard_b] {
        let metrics = scrape(&operator.endpoint("ops endpoints").await).await;
        assert_eq!(
            metrics.value("cdkube_builds_started_total", &[]),
            2.0,
            "each shard builds its own Pipeline"
        );
        assert_eq!(metrics.value("cdkube_leader", &[]), 1.0, "shards do not contend");
    }
    let leases = Api::<Lease>::namespaced(plane.client.clone(), "cdkube-system")
        .list(&ListParams::default())
        .await
        .expect("Leases");
    let names: Vec<String> = leases
        .items
        .iter()
        .map(|l| l.name_any())
        .filter(|n| n.starts_with("cdkube-leader-"))
        .collect();
    assert_eq!(names.len(), 2, "one Lease per shard: {names:?}");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_its_secret_answers_503_and_names_it() {
    let plane = Plane::start().await;
    let operator = plane.operator_with("operator", WEBHOOK_FLAGS);
    let hooks = operator.endpoint("webhook receiver").await;
    let push = Delivery::github_push("https://127.0.0.1/app.git", "main", &"a".repeat(40));
    let (status, body) = push.send(&hooks).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cdkube-system/cdkube-webhook"), "{body}");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_exits_at_once() {
    let plane = Plane::start().await;
    let mut operator = plane.operator_with("operator", &["--lease-duration", "4s"]);
    wait_until("it leads", BUILD, || leads(&operator)).await;
    // Another holder takes the Lease (as after a partition): the next renewal finds it gone.
    let leases = Api::<Lease>::namespaced(plane.client.clone(), "cdkube-system");
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now}});
    leases
        .patch(
            cdkube::controller::LEASE_NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("take the Lease");
    let status = operator.wait_exit(BUILD).expect("the operator exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        operator.log().contains("lost the Lease cdkube-system/cdkube-leader"),
        "{}",
        operator.log()
    );
    plane.shutdown().await;
}
