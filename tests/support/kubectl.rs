//! The real `/usr/bin/kubectl`, run against a kubeconfig with its own cache and HOME, a request
//! timeout and an overall deadline, so a hung request fails the test instead of hanging it.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The kubectl the tests use (on our machines, a dispatcher that runs the version matching the
/// server's).
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// Whether kubectl is installed. Without it the calling test skips, saying so loudly — except under
/// CI (`CI=true`), where a missing kubectl fails the test: CI must run the kubectl tests.
pub fn present(what: &str) -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{KUBECTL} is not installed, and CI=true: {what} must run in CI");
    }
    eprintln!("\n*** SKIPPED: {KUBECTL} is not installed; {what} did not run ***\n");
    false
}

/// What a kubectl run printed and how it exited.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// kubectl for one kubeconfig; its cache and HOME live under a scratch directory.
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    /// kubectl against `kubeconfig`, keeping its cache and HOME under `scratch`.
    pub fn new(kubeconfig: &Path, scratch: &Path) -> Self {
        let home = scratch.join("kubectl-home");
        std::fs::create_dir_all(&home).expect("kubectl home");
        Self {
            kubeconfig: kubeconfig.to_path_buf(),
            cache: scratch.join("kubectl-cache"),
            home,
        }
    }

    /// The kubeconfig this kubectl uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig K --cache-dir C --request-timeout=60s ARGS`, with HOME set and no
    /// KUBECONFIG from the environment; the caller adds stdio and runs it.
    pub fn command(&self, kubeconfig: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=60s")
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", &self.home)
            .kill_on_drop(true);
        cmd
    }

    /// Runs `kubectl ARGS`.
    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with(&self.kubeconfig, args).await
    }

    /// Runs `kubectl ARGS` with another kubeconfig.
    pub async fn run_with(&self, kubeconfig: &Path, args: &[&str]) -> Out {
        self.run_full(kubeconfig, args, None).await
    }

    /// Runs `kubectl ARGS` with `stdin` as its standard input (`apply -f -`).
    pub async fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        self.run_full(&self.kubeconfig, args, Some(stdin)).await
    }

    async fn run_full(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.command(kubeconfig, args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = async {
            let mut child = cmd.spawn().expect("run kubectl");
            if let Some(text) = stdin {
                let mut pipe = child.stdin.take().expect("stdin");
                pipe.write_all(text.as_bytes()).await.expect("write kubectl stdin");
            }
            child.wait_with_output().await.expect("wait for kubectl")
        };
        let out = tokio::time::timeout(Duration::from_secs(90), run)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 90s"));
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Blocking form of [`Kubectl::run_stdin`]/[`Kubectl::run`], for tests without a runtime.
    pub fn run_blocking(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(self.run_full(&self.kubeconfig, args, stdin))
    }

    /// Runs `kubectl ARGS`, asserts it succeeded, returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(
            out.code, 0,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs `kubectl ARGS`, asserts it failed, returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_ne!(out.code, 0, "kubectl {args:?} unexpectedly succeeded:\n{}", out.stdout);
        out.stderr
    }
}
