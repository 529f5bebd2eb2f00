//! The delivery controller end to end, as a user sees it: `cdkube run` (a separate process) against a
//! control plane — the embedded API server and pod runner, and a real kube-apiserver with cdkube's node
//! agent — real git repositories, and kubectl for the user's commands.
//! Push a commit → a builder Pod for exactly that commit → status, history, conditions and Events.
mod support;

use std::time::Duration;

use cdkube::api::{RunPhase, Trigger};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::operator::{Plane, gated_build, pipeline_yaml};
use support::{GitDaemon, HttpGit, Repos};

/// Generous: a build here is a poll (10s interval), a fetch and two local processes on a busy machine.
const BUILD: Duration = Duration::from_secs(90);

/// Each scenario runs twice: on the embedded plane (`embedded::…`) and on a real kube-apiserver with
/// the operator bound by deploy/'s RBAC (`real_kube::…`; see tests/support/realkube.rs).
macro_rules! on_both_planes {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Plane::start().await).await
                }
            )*
        }
        mod real_kube {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Plane::start_real().await).await
                }
            )*
        }
    };
}

on_both_planes!(
    seed_pipeline_builds_each_commit_and_describe_is_the_audit_trail,
    allow_builds_every_commit_in_parallel,
    forbid_skips_the_middle_commit_and_builds_the_newest,
    replace_cancels_the_running_build_for_the_newest_commit,
    a_failing_build_is_reported_and_a_fixed_spec_builds_again,
    a_build_past_its_timeout_and_a_deleted_pod_fail_their_runs,
    repository_problems_are_conditions_and_recover_when_fixed,
    force_push_is_built_and_a_deleted_branch_is_reported,
    suspend_holds_builds_and_requested_at_builds_at_once,
    a_killed_operator_adopts_its_running_build_and_builds_nothing_twice,
    a_run_recorded_before_a_crash_gets_its_pod_once,
    pipelines_on_one_repository_share_one_probe_and_a_quiet_poll_writes_nothing,
    an_invalid_pipeline_stalls_without_disturbing_others,
);

fn short(sha: &str) -> &str {
    &sha[..7]
}

fn file_url(up: &support::Upstream) -> String {
    format!("file://{}", up.bare_path())
}

async fn seed_pipeline_builds_each_commit_and_describe_is_the_audit_trail(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("seed");
    let first = up.head();
    // The seed manifest, unchanged but for the repository (a local one) and a 10s poll.
    let seed = std::fs::read_to_string(support::fixtures::fixture("doing-nothing.yaml")).unwrap();
    let manifest = seed
        .replace("http://github.com/inge4pres/just-a-test", &file_url(&up))
        .replace("spec:\n", "spec:\n  interval: 10s\n");
    let file = plane.dir().join("doing-nothing.yaml");
    std::fs::write(&file, manifest).unwrap();
    if !support::kubectl::present("the seed story") {
        return;
    }
    let kubectl = plane.kubectl();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]).await;

    let status = plane
        .wait_status("doing-nothing", "first commit built", BUILD, |s| {
            s.built_commit.as_deref() == Some(&first)
        })
        .await;
    assert_eq!(status.target_version.as_deref(), Some("0.1"));
    assert_eq!(status.built_short_commit.as_deref(), Some(short(&first)));
    let pod = status.history[0].pod.clone().expect("pod name");
    plane.wait_event("doing-nothing", "BuildSucceeded", short(&first)).await;
    let logs = kubectl.ok(&["logs", &pod, "-c", "build"]).await;
    assert_eq!(logs.trim(), "building something... now I'm done");
    let described = kubectl.ok(&["describe", "pipeline", "doing-nothing"]).await;
    for expected in [short(&first), "0.1", "Succeeded", "BuildStarted", "BuildSucceeded"] {
        assert!(
            described.contains(expected),
            "describe lacks {expected:?}:\n{described}"
        );
    }
    let table = kubectl.ok(&["get", "pipelines"]).await;
    assert!(table.contains(short(&first)) && table.contains("Succeeded"), "{table}");

    let second = up.commit(&[("app.txt", "v2")], "second");
    let status = plane
        .wait_status("doing-nothing", "second commit built", BUILD, |s| {
            s.built_commit.as_deref() == Some(&second)
        })
        .await;
    let commits: Vec<&str> = status.history.iter().map(|r| r.commit.as_str()).collect();
    assert_eq!(commits, vec![second.as_str(), first.as_str()], "each commit built once");
    assert_eq!(status.history[0].subject.as_deref(), Some("second"));
    assert_eq!(
        status.history[0].author.as_deref(),
        Some("Ada Lovelace <ada@example.com>")
    );
    assert!(
        status
            .history
            .iter()
            .all(|r| r.phase == RunPhase::Succeeded && r.trigger == Trigger::Poll)
    );
    // Each run has Events of its own (not folded into the first run's series).
    plane
        .wait_event("doing-nothing", "BuildSucceeded", short(&second))
        .await;
    let described = kubectl.ok(&["describe", "pipeline", "doing-nothing"]).await;
    for run in [&first, &second] {
        let line = format!("commit {}, version 0.1) succeeded", short(run));
        assert!(described.contains(&line), "describe lacks {line:?}:\n{described}");
    }

    kubectl.ok(&["delete", "pipeline", "doing-nothing"]).await;
    support::operator::wait_until("the Pipeline's Pods are deleted", BUILD, || async {
        plane.pods("doing-nothing").await.is_empty()
    })
    .await;
    plane.shutdown().await;
}

async fn allow_builds_every_commit_in_parallel(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("allow");
    let gate = plane.gate();
    plane
        .apply(&pipeline_yaml("allow", &file_url(&up), "Allow", &gated_build(&gate)))
        .await;
    plane.wait_run("allow", 1, RunPhase::Building, BUILD).await;
    let second = up.commit(&[("a", "2")], "second");
    plane.wait_run("allow", 2, RunPhase::Building, BUILD).await;
    let third = up.commit(&[("a", "3")], "third");
    plane.wait_run("allow", 3, RunPhase::Building, BUILD).await;
    std::fs::write(&gate, "").unwrap();
    let status = plane
        .wait_status("allow", "three builds succeeded", BUILD, |s| {
            s.history.len() == 3 && s.history.iter().all(|r| r.phase == RunPhase::Succeeded)
        })
        .await;
    assert_eq!(status.history[0].commit, third);
    assert_eq!(status.history[1].commit, second);
    assert_eq!(status.built_commit.as_deref(), Some(third.as_str()));
    plane.shutdown().await;
}

async fn forbid_skips_the_middle_commit_and_builds_the_newest(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("forbid");
    let first = up.head();
    let gate = plane.gate();
    plane
        .apply(&pipeline_yaml("forbid", &file_url(&up), "Forbid", &gated_build(&gate)))
        .await;
    plane.wait_run("forbid", 1, RunPhase::Building, BUILD).await;
    let second = up.commit(&[("a", "2")], "second");
    let revision = format!("main@sha1:{second}");
    plane
        .wait_status("forbid", "second commit seen", BUILD, |s| {
            s.latest_revision.as_deref() == Some(&revision)
        })
        .await;
    let third = up.commit(&[("a", "3")], "third");
    let skipped = plane.wait_run("forbid", 2, RunPhase::Skipped, BUILD).await;
    assert_eq!(skipped.commit, second);
    assert!(skipped.pod.is_none(), "a skipped commit never gets a Pod");
    std::fs::write(&gate, "").unwrap();
    let newest = plane.wait_run("forbid", 3, RunPhase::Succeeded, BUILD).await;
    assert_eq!(newest.commit, third);
    let status = plane.status("forbid").await;
    let runs: Vec<(i64, &str, RunPhase)> = status
        .history
        .iter()
        .map(|r| (r.run, r.commit.as_str(), r.phase))
        .collect();
    assert_eq!(
        runs,
        vec![
            (3, third.as_str(), RunPhase::Succeeded),
            (2, second.as_str(), RunPhase::Skipped),
            (1, first.as_str(), RunPhase::Succeeded)
        ]
    );
    plane.wait_event("forbid", "BuildSkipped", short(&second)).await;
    plane.shutdown().await;
}

async fn replace_cancels_the_running_build_for_the_newest_commit(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("replace");
    let gate = plane.gate();
    plane
        .apply(&pipeline_yaml(
            "replace",
            &file_url(&up),
            "Replace",
            &gated_build(&gate),
        ))
        .await;
    let first = plane.wait_run("replace", 1, RunPhase::Building, BUILD).await;
    up.commit(&[("a", "2")], "second");
    let third = up.commit(&[("a", "3")], "third");
    let status = plane
        .wait_status("replace", "newest commit building", BUILD, |s| {
            s.history
                .first()
                .is_some_and(|r| r.commit == third && r.phase == RunPhase::Building)
        })
        .await;
    assert!(
        status.history[1..].iter().all(|r| r.phase == RunPhase::Cancelled),
        "{:#?}",
        status.history
    );
    let first_pod = first.pod.clone().unwrap();
    support::operator::wait_until("the cancelled build's Pod is deleted", BUILD, || async {
        plane.pods("replace").await.iter().all(|p| p.name_any() != first_pod)
    })
    .await;
    std::fs::write(&gate, "").unwrap();
    let newest = status.history[0].run;
    plane.wait_run("replace", newest, RunPhase::Succeeded, BUILD).await;
    plane
        .wait_event("replace", "BuildCancelled", short(&first.commit))
        .await;
    plane.shutdown().await;
}

async fn a_failing_build_is_reported_and_a_fixed_spec_builds_again(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("fails");
    plane
        .apply(&pipeline_yaml(
            "fails",
            &file_url(&up),
            "Forbid",
            "echo failing; exit 3",
        ))
        .await;
    let run = plane.wait_run("fails", 1, RunPhase::Failed, BUILD).await;
    assert_eq!(run.reason.as_deref(), Some("BuildFailed"));
    assert_eq!(run.message.as_deref(), Some("exit code 3 in container build"));
    let status = plane.status("fails").await;
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "BuildFailed")
        .expect("BuildFailed condition");
    assert_eq!(failed.status, "True");
    assert!(failed.message.contains("exit code 3"), "{}", failed.message);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(status.phase, Some(cdkube::api::PipelinePhase::Failed));
    plane.wait_event("fails", "BuildFailed", short(&up.head())).await;

    // The fix is a spec change: the same commit is built again (trigger spec-change).
    let patch = json!({"spec": {"buildArguments": ["echo fixed"]}});
    plane
        .pipelines()
        .patch("fails", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let run = plane.wait_run("fails", 2, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run.trigger, Trigger::SpecChange);
    let status = plane.status("fails").await;
    assert!(
        status.conditions.iter().all(|c| c.type_ != "BuildFailed"),
        "{:#?}",
        status.conditions
    );
    // A new interval alone is not a build trigger.
    let patch = json!({"spec": {"interval": "20s"}});
    plane
        .pipelines()
        .patch("fails", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    plane
        .wait_status("fails", "the new generation observed", BUILD, |s| {
            s.observed_generation == Some(3)
        })
        .await;
    assert_eq!(plane.status("fails").await.history.len(), 2);
    plane.shutdown().await;
}

async fn a_build_past_its_timeout_and_a_deleted_pod_fail_their_runs(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("slow");
    let yaml = pipeline_yaml("slow", &file_url(&up), "Allow", "sleep 30").replace("interval: 10s", "timeout: 2s");
    plane.apply(&yaml).await;
    let run = plane.wait_run("slow", 1, RunPhase::Failed, BUILD).await;
    assert_eq!(run.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(run.message.as_deref(), Some("DeadlineExceeded after 2s"));

    let gate = plane.gate();
    let up2 = repos.create("deleted");
    plane
        .apply(&pipeline_yaml(
            "deleted",
            &file_url(&up2),
            "Forbid",
            &gated_build(&gate),
        ))
        .await;
    let run = plane.wait_run("deleted", 1, RunPhase::Building, BUILD).await;
    let pods: Api<Pod> = plane.api();
    pods.delete(run.pod.as_deref().unwrap(), &DeleteParams::default())
        .await
        .unwrap();
    let run = plane.wait_run("deleted", 1, RunPhase::Failed, BUILD).await;
    assert_eq!(run.reason.as_deref(), Some("PodDeleted"));
    assert_eq!(run.message.as_deref(), Some("Pod deleted"));
    std::fs::write(&gate, "").unwrap();
    plane.shutdown().await;
}

async fn repository_problems_are_conditions_and_recover_when_fixed(plane: Plane) {
    let operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("private");
    let http = HttpGit::start(&repos.root());

    // Nothing listens there.
    let closed = format!("git://127.0.0.1:{}/nothing.git", support::free_port());
    plane
        .apply(&pipeline_yaml("unreachable", &closed, "Forbid", "true"))
        .await;
    let status = plane
        .wait_status("unreachable", "FetchFailed", BUILD, |s| fetch_failed(s).is_some())
        .await;
    assert_eq!(status.phase, Some(cdkube::api::PipelinePhase::Error));
    assert_eq!(fetch_failed(&status).unwrap().0, "Network");

    // A Secret that does not exist yet, then a wrong password, then the right one.
    let yaml = pipeline_yaml("private", &http.url("basic", "private"), "Forbid", "true")
        .replace("  branch: main\n", "  branch: main\n  secretRef: {name: git-auth}\n");
    plane.apply(&yaml).await;
    let status = plane
        .wait_status("private", "InvalidSecret", BUILD, |s| {
            fetch_failed(s).is_some_and(|(r, _)| r == "InvalidSecret")
        })
        .await;
    assert!(fetch_failed(&status).unwrap().1.contains("not found"), "{status:#?}");
    let secrets: Api<Secret> = plane.api();
    let secret = |password: &str| {
        serde_json::from_value::<Secret>(json!({
            "metadata": {"name": "git-auth"},
            "stringData": {"username": support::http::USER, "password": password}
        }))
        .unwrap()
    };
    const WRONG: &str = "s3cr3t-but-wrong";
    secrets.create(&PostParams::default(), &secret(WRONG)).await.unwrap();
    plane
        .wait_status("private", "AuthenticationFailed", BUILD, |s| {
            fetch_failed(s).is_some_and(|(r, _)| r == "AuthenticationFailed")
        })
        .await;
    plane.wait_event("private", "FetchFailed", "AuthenticationFailed").await;
    let events = plane.events("private").await;
    assert!(
        events.iter().all(|(_, n)| !n.contains(WRONG)),
        "a credential in an Event: {events:?}"
    );
    let conditions = serde_json::to_string(&plane.status("private").await.conditions).unwrap();
    assert!(!conditions.contains(WRONG), "a credential in a condition: {conditions}");
    assert!(!operator.log().contains(WRONG), "a credential in the operator's log");
    let mut fixed = secret(support::http::PASSWORD);
    fixed.metadata.resource_version = secrets.get("git-auth").await.unwrap().metadata.resource_version;
    secrets
        .replace("git-auth", &PostParams::default(), &fixed)
        .await
        .unwrap();
    let status = plane
        .wait_status("private", "built after the fix", BUILD, |s| {
            s.built_commit.as_deref() == Some(&up.head())
        })
        .await;
    assert!(fetch_failed(&status).is_none());
    plane.shutdown().await;
}

async fn force_push_is_built_and_a_deleted_branch_is_reported(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("history");
    up.commit(&[("a", "1")], "to be rewritten");
    plane
        .apply(&pipeline_yaml("history", &file_url(&up), "Forbid", "true"))
        .await;
    plane.wait_run("history", 1, RunPhase::Succeeded, BUILD).await;
    let rewritten = up.force_push_rewrite("rewritten");
    let run = plane.wait_run("history", 2, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run.commit, rewritten);

    up.branch("feature");
    let yaml = pipeline_yaml("feature", &file_url(&up), "Forbid", "true").replace("branch: main", "branch: feature");
    plane.apply(&yaml).await;
    plane.wait_run("feature", 1, RunPhase::Succeeded, BUILD).await;
    up.checkout("main");
    up.delete_remote_branch("feature");
    let status = plane
        .wait_status("feature", "branch deleted", BUILD, |s| fetch_failed(s).is_some())
        .await;
    assert_eq!(fetch_failed(&status).unwrap().0, "BranchNotFound");
    plane.shutdown().await;
}

async fn suspend_holds_builds_and_requested_at_builds_at_once(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("held");
    plane
        .apply(&pipeline_yaml("held", &file_url(&up), "Forbid", "true"))
        .await;
    plane.wait_run("held", 1, RunPhase::Succeeded, BUILD).await;

    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    let api = plane.pipelines();
    api.patch("held", &PatchParams::default(), &Patch::Merge(&suspend(true)))
        .await
        .unwrap();
    plane
        .wait_status("held", "Suspended", BUILD, |s| {
            s.phase == Some(cdkube::api::PipelinePhase::Suspended)
        })
        .await;
    let pushed = up.commit(&[("b", "1")], "while suspended");
    // Two poll intervals pass without a build: the operator probes nothing for a suspended Pipeline.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let status = plane.status("held").await;
    assert_eq!(status.history.len(), 1, "built while suspended: {:#?}", status.history);
    assert_ne!(
        status.latest_revision.as_deref(),
        Some(format!("main@sha1:{pushed}").as_str())
    );
    api.patch("held", &PatchParams::default(), &Patch::Merge(&suspend(false)))
        .await
        .unwrap();
    let run = plane.wait_run("held", 2, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run.commit, pushed);

    // kubectl annotate …requested-at=…: an immediate probe, and the unchanged head is built again.
    let annotate = json!({"metadata": {"annotations": {"delivery.inge.4pr.es/requested-at": "2026-11-29T12:00:00Z"}}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    let run = plane.wait_run("held", 3, RunPhase::Succeeded, BUILD).await;
    assert_eq!((run.commit.as_str(), run.trigger), (pushed.as_str(), Trigger::Manual));
    let status = plane.status("held").await;
    assert_eq!(status.last_handled_trigger_at.as_deref(), Some("2026-11-29T12:00:00Z"));
    plane.shutdown().await;
}

async fn a_killed_operator_adopts_its_running_build_and_builds_nothing_twice(plane: Plane) {
    let mut operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("crash");
    let gate = plane.gate();
    plane
        .apply(&pipeline_yaml("crash", &file_url(&up), "Forbid", &gated_build(&gate)))
        .await;
    plane.wait_run("crash", 1, RunPhase::Building, BUILD).await;
    let started = plane.pods("crash").await;
    operator.kill();
    std::fs::write(&gate, "").unwrap();
    operator.restart();
    let run = plane.wait_run("crash", 1, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run.commit, up.head());
    let status = plane.status("crash").await;
    assert_eq!(status.history.len(), 1, "{:#?}", status.history);
    let pods = plane.pods("crash").await;
    assert_eq!(pods.len(), 1, "no second Pod");
    assert_eq!(
        pods[0].uid(),
        started[0].uid(),
        "the Pod started before the crash was adopted"
    );
    assert_eq!(
        operator.terminate().map(|s| s.code()),
        Some(Some(0)),
        "{}",
        operator.log()
    );
    plane.shutdown().await;
}

async fn a_run_recorded_before_a_crash_gets_its_pod_once(plane: Plane) {
    let repos = Repos::new();
    let up = repos.create("recorded");
    let sha = up.head();
    let created = plane
        .apply(&pipeline_yaml("recorded", &file_url(&up), "Forbid", "echo recorded"))
        .await;
    // What the operator leaves when it dies between the status write and the Pod create: run 1 recorded
    // Pending, no Pod, and no artifact in its (fresh) store.
    let digest = support::operator::export_digest(&up, &sha).await;
    let pod_name = format!("recorded-1-{}", short(&sha));
    let status = json!({
        "latestRevision": format!("main@sha1:{sha}"),
        "currentRun": 1,
        "history": [{
            "run": 1, "commit": sha, "shortCommit": short(&sha), "revision": format!("main@sha1:{sha}"),
            "targetVersion": "1.0", "pod": pod_name, "phase": "Pending", "trigger": "poll",
            "specDigest": cdkube::controller::history::spec_digest(&created.spec), "sourceDigest": digest
        }]
    });
    plane
        .pipelines()
        .patch_status(
            "recorded",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
    let _operator = plane.operator();
    let run = plane.wait_run("recorded", 1, RunPhase::Succeeded, BUILD).await;
    assert_eq!(run.pod.as_deref(), Some(pod_name.as_str()));
    assert_eq!(plane.status("recorded").await.history.len(), 1);
    let pods = plane.pods("recorded").await;
    assert_eq!(pods.iter().map(|p| p.name_any()).collect::<Vec<_>>(), vec![pod_name]);
    plane.shutdown().await;
}

async fn pipelines_on_one_repository_share_one_probe_and_a_quiet_poll_writes_nothing(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("shared");
    let daemon = GitDaemon::start(&repos.root());
    for name in ["one", "two"] {
        plane
            .apply(&pipeline_yaml(name, &daemon.url("shared"), "Forbid", "true"))
            .await;
    }
    for name in ["one", "two"] {
        plane.wait_run(name, 1, RunPhase::Succeeded, BUILD).await;
        plane.wait_event(name, "BuildSucceeded", short(&up.head())).await;
    }
    let api = plane.pipelines();
    let before: Vec<_> = futures::future::join_all(["one", "two"].map(|n| api.get(n))).await;
    let events_before = plane.events("one").await.len() + plane.events("two").await.len();
    let requests_before = daemon.upload_pack_requests();
    // A measurement window of three 10s intervals with nothing pushed.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let probes = daemon.upload_pack_requests() - requests_before;
    assert!(
        (2..=4).contains(&probes),
        "{probes} probes in 3 intervals for 2 Pipelines on one repository"
    );
    for (name, old) in ["one", "two"].into_iter().zip(before) {
        let now = plane.pipelines().get(name).await.unwrap();
        assert_eq!(
            now.resource_version(),
            old.unwrap().resource_version(),
            "{name} was written by a quiet poll"
        );
    }
    let events_after = plane.events("one").await.len() + plane.events("two").await.len();
    assert_eq!(events_after, events_before);
    assert_eq!(up.head(), plane.status("one").await.built_commit.unwrap());
    plane.shutdown().await;
}

async fn an_invalid_pipeline_stalls_without_disturbing_others(plane: Plane) {
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("good");
    // The CRD schema cannot see that this is not a valid cron expression; the controller does.
    let bad =
        pipeline_yaml("bad", &file_url(&up), "Forbid", "true").replace("interval: 10s", "schedule: \"61 * * * *\"");
    plane.apply(&bad).await;
    plane
        .apply(&pipeline_yaml("good", &file_url(&up), "Forbid", "true"))
        .await;
    let status = plane
        .wait_status("bad", "Stalled", BUILD, |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled")
        })
        .await;
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(stalled.message.contains("spec.schedule"), "{}", stalled.message);
    plane.wait_event("bad", "InvalidSpec", "spec.schedule").await;
    plane.wait_run("good", 1, RunPhase::Succeeded, BUILD).await;
    assert!(plane.status("bad").await.history.is_empty());
    plane.shutdown().await;
}

/// (reason, message) of a True FetchFailed condition.
fn fetch_failed(status: &cdkube::api::PipelineStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "FetchFailed" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Every request the operator makes, and the RBAC in deploy/ that must allow it (a real kube-apiserver
/// answers 403 otherwise; the embedded one does not authorise).
#[test]
fn deploy_rbac_allows_every_request_the_operator_makes() {
    struct Request {
        group: &'static str,
        resource: &'static str,
        verb: &'static str,
        /// `ClusterRole` for requests in any namespace, `Role` for the operator's own namespace.
        role: &'static str,
    }
    let request = |group, resource, verb, role| Request {
        group,
        resource,
        verb,
        role,
    };
    let requests = [
        // The Controller's watch of Pipelines, and the status write (PUT with resourceVersion).
        request("delivery.inge.4pr.es", "pipelines", "list", "ClusterRole"),
        request("delivery.inge.4pr.es", "pipelines", "watch", "ClusterRole"),
        request("delivery.inge.4pr.es", "pipelines/status", "update", "ClusterRole"),
        // Builder Pods: owned with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
        request("delivery.inge.4pr.es", "pipelines/finalizers", "update", "ClusterRole"),
        request("", "pods", "create", "ClusterRole"),
        request("", "pods", "list", "ClusterRole"),
        request("", "pods", "watch", "ClusterRole"),
        request("", "pods", "delete", "ClusterRole"),
        // kube-runtime's Recorder creates events.k8s.io Events and patches a repeated one.
        request("events.k8s.io", "events", "create", "ClusterRole"),
        request("events.k8s.io", "events", "patch", "ClusterRole"),
        // Credentials Secrets named by Pipelines.
        request("", "secrets", "get", "ClusterRole"),
        // The artifact signing key in the operator's namespace (the webhook Secret is read with `get`).
        request("", "secrets", "create", "Role"),
        // Leader election (kube-lease-manager: get, create, then server-side apply and strategic patches).
        request("coordination.k8s.io", "leases", "get", "Role"),
        request("coordination.k8s.io", "leases", "create", "Role"),
        request("coordination.k8s.io", "leases", "patch", "Role"),
        // The leader label on the replicas' own Pods.
        request("", "pods", "list", "Role"),
        request("", "pods", "patch", "Role"),
    ];
    let text = std::fs::read_to_string(support::fixtures::repo_root().join("deploy/rbac.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    for r in requests {
        let allowed = docs.iter().filter(|d| d["kind"].as_str() == Some(r.role)).any(|role| {
            role["rules"].as_sequence().into_iter().flatten().any(|rule| {
                let has = |key: &str, want: &str| {
                    rule[key]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|v| v.as_str() == Some(want))
                };
                has("apiGroups", r.group) && has("resources", r.resource) && has("verbs", r.verb)
            })
        });
        assert!(
            allowed,
            "deploy/rbac.yaml: no {} rule allows {} {}/{}",
            r.role, r.verb, r.group, r.resource
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_wildcard_artifact_address_without_a_url() {
    let plane = Plane::start().await;
    let storage = plane.dir().join("refused");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cdkube"))
            .args([
                "run",
                "--artifact-listen",
                "0.0.0.0:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--signing-key-file",
            ])
            .arg(storage.join("key"))
            .arg("--storage-dir")
            .arg(&storage)
            .env("KUBECONFIG", plane.kubeconfig())
            .output(),
    )
    .await
    .expect("cdkube run exits by itself")
    .expect("run cdkube");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("cdkube run: --artifact-url is required"), "{stderr}");
    plane.shutdown().await;
}
