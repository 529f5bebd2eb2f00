//! `cdkube dev` as a user runs it: a subprocess, the real kubectl against the kubeconfig it prints,
//! Ctrl-C (SIGINT) / SIGTERM to stop it.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_cdkube"))
            .args(["dev", "--port", "0", "--state-dir"])
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

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Option<(bool, String, String)> {
    if !Path::new("/usr/bin/kubectl").exists() {
        eprintln!("SKIPPED: /usr/bin/kubectl is absent; kubectl part of this test not run");
        return None;
    }
    let mut child = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        // A hung request fails the test instead of hanging it.
        .arg("--request-timeout=60s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Retries a kubectl command until `ok` accepts its stdout.
fn kubectl_until(kubeconfig: &Path, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, out, err) = kubectl(kubeconfig, args, None)?;
        if ok(&out) {
            return Some(out);
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen; last stdout {out:?}, stderr {err:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the pid written (with its newline) to `file` can be read.
fn wait_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.ends_with('\n')
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never written", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(") ")
            .next()
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
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
    let mut dev = Dev::start(&[
        "-f",
        fixture("fixtures/pipelines/doing-nothing.yaml").to_str().unwrap(),
        "--print-kubeconfig-path",
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
    let Some(out) = kubectl_until(&kubeconfig, &["get", "pipelines"], "the applied Pipeline", |o| {
        o.contains("doing-nothing")
    }) else {
        return;
    };
    assert!(out.contains("doing-nothing"));
    let (ok, out, err) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(ECHO)).unwrap();
    assert!(ok, "{out}{err}");
    kubectl_until(
        &kubeconfig,
        &["get", "pod", "echo", "-o", "jsonpath={.status.phase}"],
        "echo Succeeded",
        |o| o == "Succeeded",
    );
    let (ok, logs, _) = kubectl(&kubeconfig, &["logs", "echo"], None).unwrap();
    assert!(ok);
    assert_eq!(logs, "building something... now I'm done\n");

    let (ok, out, err) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(SLEEPER)).unwrap();
    assert!(ok, "{out}{err}");
    kubectl_until(
        &kubeconfig,
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
    let (ok, out, err) = kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(&SLEEPER.replace("name: sleeper", "name: doomed")),
    )
    .unwrap();
    assert!(ok, "{out}{err}");
    let doomed_pid_file = cdkube::embedded::runner::PodDir::new(&dev.state_dir, "default", "doomed")
        .volume("data")
        .join("pid");
    let doomed = wait_pid(&doomed_pid_file);
    let (ok, out, err) = kubectl(&kubeconfig, &["delete", "pod", "doomed"], None).unwrap();
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let deadline = Instant::now() + WAIT;
    while alive(doomed) {
        assert!(Instant::now() < deadline, "deleted Pod's process {doomed} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }

    dev.signal(libc::SIGINT);
    assert_eq!(dev.wait_exit(), Some(0));
    for child in children {
        assert!(!alive(child), "process {child} outlived cdkube dev");
    }
}

#[test]
fn dev_prints_the_kubectl_commands_to_try_and_stops_on_sigterm() {
    let mut dev = Dev::start(&["-f", fixture("fixtures/pipelines/doing-nothing.yaml").to_str().unwrap()]);
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
    assert!(banner.contains("operator: not started"), "{banner}");
    dev.signal(libc::SIGTERM);
    assert_eq!(dev.wait_exit(), Some(0));
}

#[test]
fn dev_refuses_an_invalid_manifest_with_the_field_named() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cdkube"))
        .args(["dev", "--port", "0", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(fixture("fixtures/pipelines/invalid/missing-repo.yaml"))
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
        let out = Command::new(env!("CARGO_BIN_EXE_cdkube"))
            .args(["dev", "--port", "0", "--state-dir"])
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
    let out = Command::new(env!("CARGO_BIN_EXE_cdkube"))
        .args(["dev", "--port", "0", "--state-dir"])
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
    let Some((ok, out, err)) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(SLEEPER)) else {
        return;
    };
    assert!(ok, "{out}{err}");
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
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "orphaned Pod process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "the killed plane's Pod directories were kept");
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(), Some(0));
}
