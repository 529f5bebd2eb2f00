//! The commands for people — `cdkube get`, `history`, `trigger`, `logs`, `suspend`, `resume` — through
//! the real binary, against the embedded plane with the operator running.
mod support;

use std::process::Output;
use std::time::Duration;

use cdkube::api::RunPhase;
use support::Repos;
use support::operator::{Plane, pipeline_yaml};

const BUILD: Duration = Duration::from_secs(90);

/// Runs `cdkube ARGS --kubeconfig K` (with a deadline) and returns what it printed.
async fn cdkube(plane: &Plane, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cdkube"));
    command
        .args(args)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .kill_on_drop(true);
    tokio::time::timeout(BUILD, command.output())
        .await
        .unwrap_or_else(|_| panic!("cdkube {args:?} did not finish"))
        .expect("run cdkube")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_lists_triggers_follows_and_reads_builds_from_the_terminal() {
    let plane = Plane::start().await;
    let _operator = plane.operator();
    let repos = Repos::new();
    let up = repos.create("app");
    let file_url = format!("file://{}", up.bare_path());
    plane
        .apply(&pipeline_yaml(
            "app",
            &file_url,
            "Forbid",
            "echo compiling $CDKUBE_COMMIT; echo done",
        ))
        .await;
    plane
        .apply(&pipeline_yaml("broken", &file_url, "Forbid", "echo oops; exit 3"))
        .await;
    plane.wait_run("app", 1, RunPhase::Succeeded, BUILD).await;
    plane.wait_run("broken", 1, RunPhase::Failed, BUILD).await;
    let head = up.head();

    let out = cdkube(&plane, &["get"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME ") && lines[0].contains("COMMIT") && lines[0].ends_with("POLL"),
        "{table}"
    );
    let app = lines.iter().find(|l| l.starts_with("app ")).expect("a row for app");
    for cell in [&head[..7], "1.0", "Succeeded", "every 10s"] {
        assert!(app.contains(cell), "{cell:?} missing from {app:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&cdkube(&plane, &["get", "app", "-o", "json"]).await.stdout).unwrap();
    assert_eq!(json["status"]["builtCommit"], head.as_str());

    // trigger: a manual run of the same commit, followed to its end; the exit code is the build's.
    let out = cdkube(&plane, &["trigger", "app"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("build requested at"), "{printed}");
    assert!(
        printed.contains(&format!(
            "run 2 (commit {}, version 1.0, trigger manual): Succeeded",
            &head[..7]
        )),
        "{printed}"
    );
    let out = cdkube(&plane, &["trigger", "broken"]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("run 2 (") && stdout(&out).contains("Failed"),
        "{}",
        stdout(&out)
    );

    // history: every run once, newest first.
    let out = cdkube(&plane, &["history", "app"]).await;
    let history = stdout(&out);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        rows[0].starts_with("2 ") && rows[0].contains("manual") && rows[0].contains("Succeeded"),
        "{history}"
    );
    assert!(
        rows[1].starts_with("1 ") && rows[1].contains("poll") && rows[1].contains("Ada Lovelace"),
        "{history}"
    );

    // logs: the newest run's build output, or a given run's.
    let out = cdkube(&plane, &["logs", "app"]).await;
    assert_eq!(stdout(&out), format!("compiling {head}\ndone\n"), "{}", stderr(&out));
    let out = cdkube(&plane, &["logs", "broken", "--run", "1"]).await;
    assert_eq!(stdout(&out), "oops\n");

    // suspend / resume set spec.suspend; a suspended Pipeline refuses a trigger, saying what to do.
    let out = cdkube(&plane, &["suspend", "app"]).await;
    assert_eq!(stdout(&out), "pipeline.delivery.inge.4pr.es/app suspended\n");
    assert_eq!(plane.pipelines().get("app").await.unwrap().spec.suspend, Some(true));
    let out = cdkube(&plane, &["trigger", "app"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "cdkube trigger: Pipeline app is suspended; `cdkube resume app` first\n"
    );
    let out = cdkube(&plane, &["resume", "app"]).await;
    assert!(out.status.success());
    assert_eq!(plane.pipelines().get("app").await.unwrap().spec.suspend, Some(false));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_one_line_that_says_what_to_do() {
    let plane = Plane::start().await;
    struct Case {
        args: &'static [&'static str],
        error: &'static str,
    }
    let cases = [
        Case {
            args: &["history", "missing"],
            error: "cdkube history: Pipeline \"missing\" not found in namespace \"default\"; list them with `cdkube get`\n",
        },
        Case {
            args: &["logs", "missing"],
            error: "cdkube logs: Pipeline \"missing\" not found in namespace \"default\"; list them with `cdkube get`\n",
        },
        Case {
            args: &["get", "missing", "-A"],
            error: "cdkube get: a NAME cannot be combined with --all-namespaces\n",
        },
    ];
    for case in cases {
        let out = cdkube(&plane, case.args).await;
        assert_eq!(out.status.code(), Some(1), "{:?}", case.args);
        assert_eq!(stderr(&out), case.error, "{:?}", case.args);
    }
    let out = support::cdkube_command(&["get", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("cdkube get: reading kubeconfig /nonexistent/kubeconfig: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    plane.shutdown().await;
}
