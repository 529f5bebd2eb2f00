//! `cdkube dev` as a user runs it: a subprocess, the real kubectl against the kubeconfig it prints,
//! Ctrl-C (SIGINT) / SIGTERM to stop it.
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::fixtures::fixture;
use support::kubectl::{self, Kubectl};
use support::process::{WAIT, alive, children_of, wait_dead, wait_pid};

/// A running `cdkube dev`; killed on drop if a test fails before stopping it.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    state: std::sync::Arc<tempfile::TempDir>,
    state_dir: PathBuf,
}

impl Dev {
    fn start(extra: &[&str]) -> Dev {
        Dev::start_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), extra)
    }

    /// Starts `cdkube dev` with its state under `state` (shared with an earlier run).
    fn start_in(state: std::sync::Arc<tempfile::TempDir>, extra: &[&str]) -> Dev {
        let state_dir = state.path().join("state");
        let mut child = support::cdkube_command(&["dev", "--port", "0", "--state-dir"])
            .arg(&state_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Dev {
            child,
            lines,
            state,
            state_dir,
        }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("cdkube dev printed nothing in time")
    }

    /// The next line that contains `text` (earlier lines are skipped); fails after a minute.
    fn line_containing(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200))
                && line.contains(text)
            {
                return line;
            }
        }
        panic!("cdkube dev printed no line containing {text:?} within 60s");
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "cdkube dev did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dev {
    /// After a failed assertion: SIGTERM first, so the plane stops its Pod processes too.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kubectl against a plane's kubeconfig (cache and HOME in its temporary directory), or `None`
/// when kubectl is absent and the test may skip its kubectl part.
fn kubectl_for(dev: &Dev, kubeconfig: &Path) -> Option<Kubectl> {
    kubectl::present("the kubectl part of this test").then(|| Kubectl::new(kubeconfig, dev.state.path()))
}

/// Runs kubectl (with `stdin`), asserting it succeeds; returns stdout.
fn kubectl_ok(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> String {
    let out = k.run_blocking(args, stdin);
    assert!(out.success(), "kubectl {args:?}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// Retries a kubectl command until `ok` accepts its stdout.
fn kubectl_until(k: &Kubectl, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = k.run_blocking(args, None);
        if ok(&out.stdout) {
            return out.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen; last stdout {:?}, stderr {:?}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SLEEPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  restartPolicy: Never
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: sleep
    image: busybox
    workingDir: /data
    command: [sh, -c, "echo $$$$ > pid; exec sleep 1000"]
    volumeMounts: [{name: data, mountPath: /data}]
"#;

const ECHO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  restartPolicy: Never
  containers:
  - name: build
    image: busybox
    command: [echo]
    args: ["building something...", "now I'm done"]
"#;

#[test]
fn dev_serves_kubectl_applies_manifests_and_stops_cleanly_on_sigint() {
    // The seed manifest follows a public repository: no operator, so nothing leaves 127.0.0.1.
    let mut dev = Dev::start(&[
        "-f",
        fixture("doing-nothing.yaml").to_str().unwrap(),
        "--print-kubeconfig-path",
        "--no-operator",
    ]);
    let kubeconfig = PathBuf::from(dev.line());
    assert!(
        kubeconfig.starts_with(dev.state_dir.canonicalize().unwrap()),
        "{kubeconfig:?}"
    );
    assert!(kubeconfig.is_file());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dev.state_dir).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o700,
        "the state dir holds the kubeconfig, workspaces and logs: user only"
    );
    let Some(k) = kubectl_for(&dev, &kubeconfig) else {
        return;
    };
    let out = kubectl_until(&k, &["get", "pipelines"], "the applied Pipeline", |o| {
        o.contains("doing-nothing")
    });
    assert!(out.contains("doing-nothing"));
    kubectl_ok(&k, &["apply", "-f", "-"], Some(ECHO));
    kubectl_until(
        &k,
        &["get", "pod", "echo", "-o", "jsonpath={.status.phase}"],
        "echo Succeeded",
        |o| o == "Succeeded",
    );
    let logs = kubectl_ok(&k, &["logs", "echo"], None);
    assert_eq!(logs, "building something... now I'm done\n");

    kubectl_ok(&k, &["apply", "-f", "-"], Some(SLEEPER));
    kubectl_until(
        &k,
        &["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"],
        "sleeper Running",
        |o| o == "Running",
    );
    let pid_file = cdkube::embedded::runner::PodDir::new(&dev.state_dir, "default", "sleeper")
        .volume("data")
        .join("pid");
    let pid = wait_pid(&pid_file);
    assert!(alive(pid));
    let children = children_of(dev.child.id());
    assert!(
        children.contains(&pid),
        "the sleeper {pid} is not a child of cdkube dev: {children:?}"
    );

    // kubectl delete waits until the runner has stopped the process and removed the Pod.
    kubectl_ok(
        &k,
        &["apply", "-f", "-"],
        Some(&SLEEPER.replace("name: sleeper", "name: doomed")),
    );
    let doomed_pid_file = cdkube::embedded::runner::PodDir::new(&dev.state_dir, "default", "doomed")
        .volume("data")
        .join("pid");
    let doomed = wait_pid(&doomed_pid_file);
    let out = kubectl_ok(&k, &["delete", "pod", "doomed"], None);
    assert!(out.contains("deleted"), "{out}");
    wait_dead(doomed, WAIT);

    dev.signal(libc::SIGINT);
    assert_eq!(dev.wait_exit(), Some(0));
    for child in children {
        assert!(!alive(child), "process {child} outlived cdkube dev");
    }
}

#[test]
fn dev_prints_the_kubectl_commands_to_try_and_stops_on_sigterm() {
    let mut dev = Dev::start(&["-f", fixture("doing-nothing.yaml").to_str().unwrap(), "--no-operator"]);
    let mut banner = Vec::new();
    loop {
        let line = dev.line();
        let done = line.contains("Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    let kc_line = banner
        .lines()
        .find_map(|l| l.strip_prefix("kubeconfig: "))
        .expect("no kubeconfig line");
    assert!(Path::new(kc_line).is_file(), "{banner}");
    assert!(banner.contains(&format!("export KUBECONFIG={kc_line}")), "{banner}");
    assert!(banner.contains("kubectl get pipelines"), "{banner}");
    assert!(
        banner.contains("applied: pipeline.delivery.inge.4pr.es/doing-nothing created"),
        "{banner}"
    );
    assert!(banner.contains("operator: not started (--no-operator)"), "{banner}");
    dev.signal(libc::SIGTERM);
    assert_eq!(dev.wait_exit(), Some(0));
}

#[test]
fn bare_dev_builds_the_demo_repository_and_each_new_commit() {
    let mut dev = Dev::start(&[]);
    let mut banner = Vec::new();
    while !banner.last().is_some_and(|l: &String| l.contains("Ctrl-C")) {
        banner.push(dev.line());
    }
    let banner = banner.join("\n");
    assert!(banner.contains("operator: running"), "{banner}");
    assert!(
        banner.contains("applied: pipeline.delivery.inge.4pr.es/demo created"),
        "{banner}"
    );
    let repo = dev.state_dir.canonicalize().unwrap().join("demo");
    let hint = format!("git -C {} commit --allow-empty", repo.display());
    assert!(banner.contains(&hint), "{banner}");
    // One line per run Event, each naming the Pipeline, run, short commit and version.
    let first = dev.line_containing("run 1 (commit");
    assert!(
        first.starts_with("default/demo: run 1") && first.contains("version 0.1) started"),
        "{first}"
    );
    let succeeded = dev.line_containing("succeeded");
    assert!(succeeded.starts_with("default/demo: run 1"), "{succeeded}");

    // A user's commit in the demo repository is built at the next poll.
    support::run(
        "git",
        &["commit", "-q", "--allow-empty", "-m", "my first change"],
        &repo,
    );
    let sha = support::run("git", &["rev-parse", "--short=7", "HEAD"], &repo);
    let started = dev.line_containing("run 2 (commit");
    assert!(started.contains(sha.trim()), "{started} should name {sha}");
    let done = dev.line_containing("succeeded");
    assert!(done.starts_with("default/demo: run 2"), "{done}");
    dev.signal(libc::SIGTERM);
    assert_eq!(dev.wait_exit(), Some(0));
}

#[test]
fn dev_refuses_an_invalid_manifest_with_the_field_named() {
    let state = tempfile::tempdir().unwrap();
    let out = support::cdkube_command(&["dev", "--port", "0", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(fixture("invalid/missing-repo.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("missing-repo.yaml: document 1:") && last.contains("spec.repo"),
        "{stderr}"
    );
}

#[test]
fn dev_refuses_malformed_manifests_with_one_line() {
    // (manifest text, words of the one error line)
    let cases = [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: x\n", "expected ObjectMeta"),
        ("a: &a [*a]\n", "recursion limit exceeded"),
        ("- 1\n- 2\n", "invalid type: sequence"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../x}\n",
            "invalid resource name",
        ),
    ];
    for (text, words) in cases {
        let state = tempfile::tempdir().unwrap();
        let manifest = state.path().join("bad.yaml");
        std::fs::write(&manifest, text).unwrap();
        let out = support::cdkube_command(&["dev", "--port", "0", "--state-dir"])
            .arg(state.path().join("state"))
            .arg("-f")
            .arg(&manifest)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("bad.yaml: document 1:") && last.contains(words),
            "{text:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{text:?}: {stderr}");
    }
}

#[test]
fn dev_with_a_missing_file_exits_with_one_line() {
    let state = tempfile::tempdir().unwrap();
    let out = support::cdkube_command(&["dev", "--port", "0", "--state-dir"])
        .arg(state.path())
        .args(["-f", "/nonexistent/cdkube-manifest.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cdkube dev: /nonexistent/cdkube-manifest.yaml"),
        "{stderr}"
    );
}

#[test]
fn a_new_dev_stops_the_pod_processes_a_killed_one_left_behind() {
    let mut first = Dev::start(&["--print-kubeconfig-path"]);
    let kubeconfig = PathBuf::from(first.line());
    let Some(k) = kubectl_for(&first, &kubeconfig) else {
        return;
    };
    kubectl_ok(&k, &["apply", "-f", "-"], Some(SLEEPER));
    let pid_file = cdkube::embedded::runner::PodDir::new(&first.state_dir, "default", "sleeper")
        .volume("data")
        .join("pid");
    let pid = wait_pid(&pid_file);
    // The premise: a plane killed after it recorded its Pod process (it records it right after
    // starting it, the sleeper may write its own pid first).
    let recorded = cdkube::embedded::runner::PodDir::new(&first.state_dir, "default", "sleeper").pid_file("sleep");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&recorded).is_ok_and(|t| t.starts_with(&format!("{pid} "))) {
        assert!(Instant::now() < deadline, "the runner never recorded {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: the plane cannot clean up, its Pod process survives.
    first.signal(libc::SIGKILL);
    first.wait_exit();
    assert!(alive(pid), "the sleeper died with its plane; nothing left to test");
    let mut second = Dev::start_in(first.state.clone(), &["--print-kubeconfig-path"]);
    second.line();
    wait_dead(pid, WAIT);
    assert!(!pid_file.exists(), "the killed plane's Pod directories were kept");
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(), Some(0));
}
