//! The operator end to end: `cdkube run` (a child process, so its memory can be read from /proc) against
//! the embedded API server, with local `file://` repositories driven by the real `git`.
//! `cargo bench --bench operator [-- p3|p6|p7]` prints one line per figure:
//! - P3: commit → builder Pod latency with `interval: 10s` (push returning → the Pod for that commit
//!   exists, polled every 50 ms), p50/p99/max over CDKUBE_BENCH_PUSHES pushes (default 20).
//! - P6: CDKUBE_BENCH_PIPELINES Pipelines (default 1000) over CDKUBE_BENCH_REPOS repositories (default 100)
//!   created at once → every Pipeline has `status.latestRevision` and a builder Pod object. The pod runner
//!   is left out of P6 (1,000 Pods as host processes would measure the runner, not the operator).
//! - P4: the operator's VmHWM and VmRSS with those Pipelines.
//! - P7: webhook → builder Pod latency with `interval: 1h` (a signed GitHub push delivery sent → the Pod
//!   for that commit exists, polled every 50 ms), p50/p99/max over CDKUBE_BENCH_WEBHOOK_PUSHES pushes
//!   (default 50); goal p99 <= 1 s; the ratio to P3's poll-driven latency is printed.
//! - Baseline: `git ls-remote` of the same repositories, one after another, against which the operator's
//!   P6 time is set as a ratio.
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdkube::api::Pipeline;
use cdkube::controller::pod::{COMMIT_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, PIPELINE_LABEL};
use cdkube::embedded::{ApiServer, ApiServerConfig, Runner, RunnerConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use support::{Repos, Upstream};

/// How often the API is polled for a builder Pod in P3.
const POLL: Duration = Duration::from_millis(50);
/// The P3 Pipeline's interval, and its goal (interval + 1 s).
const P3_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait for one P3 Pod before the push counts as missed.
const P3_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for all P6 Pipelines.
const P6_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the operator to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long P4 lets the operator settle before its second memory reading.
const SETTLE: Duration = Duration::from_secs(20);

struct Sizes {
    pipelines: usize,
    repos: usize,
    pushes: usize,
    webhook_pushes: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let get = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        Sizes {
            pipelines: get("CDKUBE_BENCH_PIPELINES", 1000),
            repos: get("CDKUBE_BENCH_REPOS", 100),
            pushes: get("CDKUBE_BENCH_PUSHES", 20),
            webhook_pushes: get("CDKUBE_BENCH_WEBHOOK_PUSHES", 50),
        }
    }
}

fn main() {
    let Some(bin) = cdkube_bin() else {
        eprintln!(
            "operator bench: no cdkube binary found (looked next to this bench's directory and in target/release); \
             build it with `cargo build --release` or run through `cargo bench --bench operator`"
        );
        std::process::exit(2);
    };
    let sizes = Sizes::from_env();
    println!(
        "operator bench: cdkube at {}; {} pushes, {} Pipelines over {} repositories",
        bin.display(),
        sizes.pushes,
        sizes.pipelines,
        sizes.repos
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo bench --bench operator -- p7` runs one figure (p3, p6, p7); P6 also prints P4.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    runtime.block_on(async {
        let polled = match wanted("p3") {
            true => p3_latency(&bin, sizes.pushes).await,
            false => None,
        };
        if wanted("p7") {
            p7_webhook(&bin, sizes.webhook_pushes, polled).await;
        }
        if wanted("p6") {
            p6_scale(&bin, &sizes).await;
        }
    });
}

/// The cdkube binary: the one cargo built for this bench, else `<target>/<profile>/cdkube` next to this
/// bench executable (`<target>/<profile>/deps/operator-…`), else `target/release/cdkube`.
fn cdkube_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = option_env!("CARGO_BIN_EXE_cdkube") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("cdkube"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cdkube"));
    candidates.into_iter().find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------------------
// The plane and the operator process

/// The embedded API server in a temporary directory, with the Pipeline CRD; optionally the pod runner.
struct Plane {
    server: Option<ApiServer>,
    runner: Option<Runner>,
    client: Client,
    dir: tempfile::TempDir,
}

impl Plane {
    async fn start(bin: &Path, with_runner: bool) -> Plane {
        let dir = tempfile::Builder::new()
            .prefix("cdkube-bench-")
            .tempdir()
            .expect("tempdir");
        let server = ApiServer::start(ApiServerConfig::new(dir.path().join("state")))
            .await
            .expect("start the embedded API server");
        let client = server.client().await.expect("client");
        cdkube::embedded::dev::install_crd(&client)
            .await
            .expect("install the CRD");
        let runner = with_runner.then(|| {
            Runner::start(client.clone(), RunnerConfig::new(dir.path().join("state"), bin))
                .expect("start the pod runner")
        });
        Plane {
            server: Some(server),
            runner,
            client,
            dir,
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.server.as_ref().expect("server").kubeconfig_path().to_path_buf()
    }

    async fn shutdown(mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

impl Drop for Plane {
    /// After a panic: Pod processes left by the runner are stopped.
    fn drop(&mut self) {
        let state = self.dir.path().join("state");
        if self.runner.take().is_some() || state.join("pods").exists() {
            cdkube::embedded::runner::sweep(&state);
        }
    }
}

/// `cdkube run` as a child process; SIGKILLed when dropped.
struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// Starts it (one replica: no leader election) and waits until it created its signing key (just
    /// before it starts watching).
    async fn start(bin: &Path, kubeconfig: &Path, storage: &Path) -> Operator {
        Operator::start_with(bin, kubeconfig, storage, &[]).await
    }

    /// Like [`Operator::start`], with more flags.
    async fn start_with(bin: &Path, kubeconfig: &Path, storage: &Path, args: &[&str]) -> Operator {
        std::fs::create_dir_all(storage).expect("operator storage");
        let log = storage.join("operator.log");
        let key = storage.join("key");
        let child = Command::new(bin)
            .args([
                "run",
                "--allow-local-repos",
                "--artifact-listen",
                "127.0.0.1:0",
                "--storage-dir",
            ])
            .arg(storage)
            .arg("--signing-key-file")
            .arg(&key)
            .args(["--metrics-listen", "127.0.0.1:0", "--leader-elect=false"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("operator log"))
            .spawn()
            .expect("spawn cdkube run");
        let mut operator = Operator {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !key.exists() {
            if let Some(Ok(Some(status))) = operator.child.as_mut().map(Child::try_wait) {
                panic!("cdkube run exited at start ({status}); its log:\n{}", operator.log());
            }
            assert!(
                Instant::now() < deadline,
                "cdkube run did not start; its log:\n{}",
                operator.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The controller starts its watches right after the key is loaded.
        tokio::time::sleep(Duration::from_millis(500)).await;
        operator
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// User + system CPU time it has used.
    fn cpu(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }

    /// Lines of its log at WARN or ERROR: how many, and the first few.
    fn warnings(&self) -> (usize, Vec<String>) {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let first = lines.iter().take(3).map(|l| l.chars().take(240).collect()).collect();
        (lines.len(), first)
    }

    /// (VmHWM, VmRSS) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 25 s.
    async fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pipeline_yaml(name: &str, repo: &str, interval: &str, policy: &str) -> String {
    format!(
        "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
         repo: {repo}\n  branch: main\n  interval: {interval}\n  concurrencyPolicy: {policy}\n  buildImage: busybox\n  \
         buildCommands: [\"true\"]\n  targetName: app\n  targetVersion: \"1.0\"\n",
        repo = serde_json::to_string(repo).unwrap(),
    )
}

fn file_url(up: &Upstream) -> String {
    format!("file://{}", up.bare_path())
}

async fn create(api: &Api<Pipeline>, yaml: &str) {
    let pipeline: Pipeline = serde_yaml::from_str(yaml).expect("Pipeline YAML");
    api.create(&PostParams::default(), &pipeline)
        .await
        .expect("create Pipeline");
}

// ---------------------------------------------------------------------------------------------------------
// Figures

/// utime + stime of the process whose `stat` file is `path`.
fn cpu_time(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based), i.e. indexes 11 and 12 here.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Nearest-rank percentile of sorted `samples`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------------------
// P3

/// The builder Pod of commit `sha` of Pipeline `name`, polled every [`POLL`]; `None` after `timeout`.
async fn wait_pod_for(pods: &Api<Pod>, name: &str, sha: &str, timeout: Duration) -> Option<Instant> {
    let selector = format!("{PIPELINE_LABEL}={name}");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await
            && list
                .items
                .iter()
                .any(|p| p.annotations().get(COMMIT_ANNOTATION).map(String::as_str) == Some(sha))
        {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Returns P3's p50, for P7's ratio.
async fn p3_latency(bin: &Path, pushes: usize) -> Option<Duration> {
    let plane = Plane::start(bin, true).await;
    let operator = Operator::start(bin, &plane.kubeconfig(), &plane.dir.path().join("operator")).await;
    let repos = Repos::new();
    let up = repos.create("p3");
    let pipelines: Api<Pipeline> = Api::namespaced(plane.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(plane.client.clone(), "default");
    let interval = format!("{}s", P3_INTERVAL.as_secs());
    // Allow: a Pod per commit whatever the previous build is doing, so only detection is measured.
    let created = Instant::now();
    create(&pipelines, &pipeline_yaml("p3", &file_url(&up), &interval, "Allow")).await;
    let first = wait_pod_for(&pods, "p3", &up.head(), P3_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no Pod for the first commit; operator log:\n{}", operator.log()));
    println!(
        "P3 setup: Pipeline created → Pod of the existing commit in {}",
        secs(first - created)
    );
    let mut samples = Vec::with_capacity(pushes);
    let mut missed = 0;
    for i in 0..pushes {
        // Pushes land at spread phases of the 10 s poll cycle: wait 0, 3.7, 7.4, 1.1 … s (i × 3.7 s mod 10 s) after
        // the previous Pod appeared (just after a poll).
        let phase = Duration::from_millis(((i as u64 * 3_700) % (P3_INTERVAL.as_millis() as u64)).max(1));
        tokio::time::sleep(phase).await;
        std::fs::write(up.work.join("counter.txt"), format!("{i}\n")).expect("write");
        up.git(&["add", "-A"]);
        up.git(&["commit", "-q", "-m", &format!("push {i}")]);
        let sha = up.head();
        up.push();
        let pushed = Instant::now();
        match wait_pod_for(&pods, "p3", &sha, P3_TIMEOUT).await {
            Some(seen) => samples.push(seen - pushed),
            None => {
                missed += 1;
                eprintln!("P3: no Pod for push {i} ({sha}) within {P3_TIMEOUT:?}");
            }
        }
    }
    let (hwm, rss) = operator.memory();
    samples.sort();
    if samples.is_empty() {
        println!("P3 commit → builder Pod: no Pod seen for any of {pushes} pushes");
    } else {
        let max = *samples.last().unwrap();
        let goal = P3_INTERVAL + Duration::from_secs(1);
        println!(
            "P3 commit → builder Pod (interval 10s, file://, {} pushes, API polled every {} ms, runner on): \
             p50 {}, p99 {}, max {}, min {}; {} missed (goal <= {} = interval + 1 s: {})",
            samples.len(),
            POLL.as_millis(),
            secs(percentile(&samples, 50.0)),
            secs(percentile(&samples, 99.0)),
            secs(max),
            secs(samples[0]),
            missed,
            secs(goal),
            if max <= goal && missed == 0 { "met" } else { "NOT met" }
        );
    }
    println!(
        "P3 operator memory with 1 Pipeline: VmHWM {}, VmRSS {}",
        mib(hwm),
        mib(rss)
    );
    operator.stop().await;
    plane.shutdown().await;
    (!samples.is_empty()).then(|| percentile(&samples, 50.0))
}

// ---------------------------------------------------------------------------------------------------------
// P7

/// The webhook receiver's address, from the operator's log.
async fn webhook_base(operator: &Operator) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let log = operator.log();
        if let Some((_, rest)) = log.rsplit_once("webhook receiver on http://") {
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return format!("http://{addr}");
        }
        assert!(Instant::now() < deadline, "no webhook receiver; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn p7_webhook(bin: &Path, pushes: usize, polled_p50: Option<Duration>) {
    use support::ops::{Delivery, WEBHOOK_SECRET};
    let plane = Plane::start(bin, true).await;
    webhook_secret(&plane.client, WEBHOOK_SECRET).await;
    let flags = ["--webhook-secret", "cdkube-webhook", "--webhook-listen", "127.0.0.1:0"];
    let operator = Operator::start_with(bin, &plane.kubeconfig(), &plane.dir.path().join("operator"), &flags).await;
    let hooks = webhook_base(&operator).await;
    let repos = Repos::new();
    let up = repos.create("p7");
    let pipelines: Api<Pipeline> = Api::namespaced(plane.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(plane.client.clone(), "default");
    create(&pipelines, &pipeline_yaml("p7", &file_url(&up), "1h", "Allow")).await;
    wait_pod_for(&pods, "p7", &up.head(), P3_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no Pod for the first commit; operator log:\n{}", operator.log()));
    let mut samples = Vec::with_capacity(pushes);
    let mut missed = 0;
    for i in 0..pushes {
        std::fs::write(up.work.join("counter.txt"), format!("{i}\n")).expect("write");
        up.git(&["add", "-A"]);
        up.git(&["commit", "-q", "-m", &format!("push {i}")]);
        let sha = up.head();
        up.push();
        let sent = Instant::now();
        let (status, body) = Delivery::github_push(&file_url(&up), "main", &sha).send(&hooks).await;
        assert_eq!(status, 202, "{body}");
        match wait_pod_for(&pods, "p7", &sha, P3_TIMEOUT).await {
            Some(seen) => samples.push(seen - sent),
            None => missed += 1,
        }
    }
    samples.sort();
    if let Some(max) = samples.last().copied() {
        let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
        let ratio = polled_p50.map_or_else(
            || "no P3 figure".to_owned(),
            |p| {
                format!(
                    "{:.3}x P3's poll-driven p50 {}",
                    p50.as_secs_f64() / p.as_secs_f64(),
                    secs(p)
                )
            },
        );
        println!(
            "P7 webhook → builder Pod (interval 1h, file://, {} pushes, API polled every {} ms, runner on): \
             p50 {}, p99 {}, max {}; {} missed; {ratio} (goal p99 <= 1 s: {})",
            samples.len(),
            POLL.as_millis(),
            secs(p50),
            secs(p99),
            secs(max),
            missed,
            if p99 <= Duration::from_secs(1) && missed == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
    } else {
        println!("P7 webhook → builder Pod: no Pod seen for any of {pushes} pushes");
    }
    operator.stop().await;
    plane.shutdown().await;
}

/// Creates namespace cdkube-system and the webhook Secret `cdkube-webhook` in it, with `secret` as `token`.
async fn webhook_secret(client: &Client, secret: &str) {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "cdkube-system"}})).expect("Namespace");
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await;
    let object: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cdkube-webhook"}, "stringData": {"token": secret},
    }))
    .expect("Secret");
    Api::<Secret>::namespaced(client.clone(), "cdkube-system")
        .create(&PostParams::default(), &object)
        .await
        .expect("create the webhook Secret");
}

// ---------------------------------------------------------------------------------------------------------
// P6 and P4

/// What the bench's watches have seen of the P6 Pipelines and Pods, and when each became complete.
#[derive(Default)]
struct Seen {
    with_revision: HashSet<String>,
    with_pod: HashSet<String>,
    all_revisions_at: Option<Instant>,
    all_pods_at: Option<Instant>,
}

async fn p6_scale(bin: &Path, sizes: &Sizes) {
    let n = sizes.pipelines;
    let plane = Plane::start(bin, false).await;
    let repos = Repos::new();
    let setup = Instant::now();
    let ups: Vec<Upstream> = (0..sizes.repos).map(|i| repos.create(&format!("r{i:03}"))).collect();
    println!(
        "P6 setup: {} repositories created with git in {}",
        ups.len(),
        secs(setup.elapsed())
    );

    // The baseline: `git ls-remote` of every repository, one after another (before the operator runs).
    let ls_remote = ls_remote_all(&ups);

    let operator = Operator::start(bin, &plane.kubeconfig(), &plane.dir.path().join("operator")).await;
    let (hwm0, rss0) = operator.memory();
    println!(
        "P4 operator memory idle (0 Pipelines): VmHWM {}, VmRSS {}",
        mib(hwm0),
        mib(rss0)
    );

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watches = start_watches(&plane.client, Arc::clone(&seen), n);
    tokio::time::sleep(Duration::from_secs(1)).await; // the bench's watches are established
    let api: Api<Pipeline> = Api::namespaced(plane.client.clone(), "default");
    let manifests: Vec<String> = (0..n)
        .map(|i| pipeline_yaml(&format!("p6-{i:04}"), &file_url(&ups[i % ups.len()]), "1m", "Forbid"))
        .collect();

    let (op_cpu0, bench_cpu0) = (operator.cpu(), cpu_time("/proc/self/stat"));
    let started = Instant::now();
    futures::stream::iter(manifests.iter())
        .for_each_concurrent(16, |yaml| create(&api, yaml))
        .await;
    let applied = started.elapsed();
    let deadline = started + P6_TIMEOUT;
    let marks = [1u64, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 240];
    let mut progress: Vec<String> = Vec::new();
    let (revisions_at, pods_at) = loop {
        {
            let s = seen.lock().unwrap();
            let elapsed = started.elapsed();
            if let Some(&mark) = marks.get(progress.len())
                && elapsed >= Duration::from_secs(mark)
            {
                progress.push(format!("{mark} s {}/{}", s.with_revision.len(), s.with_pod.len()));
            }
            if let (Some(r), Some(p)) = (s.all_revisions_at, s.all_pods_at) {
                break (Some(r), Some(p));
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "P6: timed out after {P6_TIMEOUT:?}: {} of {n} Pipelines with latestRevision, {} with a Pod",
                    s.with_revision.len(),
                    s.with_pod.len()
                );
                break (s.all_revisions_at, s.all_pods_at);
            }
        }
        tokio::time::sleep(POLL).await;
    };
    let (hwm1, rss1) = operator.memory();
    let (op_cpu, bench_cpu) = (
        operator.cpu().saturating_sub(op_cpu0),
        cpu_time("/proc/self/stat").saturating_sub(bench_cpu0),
    );
    let wall = started.elapsed();
    let total = revisions_at.zip(pods_at).map(|(r, p)| r.max(p) - started);
    let fmt = |at: Option<Instant>| at.map_or_else(|| "not reached".to_owned(), |t| secs(t - started));
    match total {
        Some(total) => println!(
            "P6 {n} Pipelines over {} repos created at once (interval 1m, build `true`, pod runner left out: \
             \"builder Pod\" = Pod object created): all created in {}, all latestRevision at {}, all Pods at {}; \
             total {} ({:.2} ms per Pipeline) (goal <= 10 s: {})",
            ups.len(),
            secs(applied),
            fmt(revisions_at),
            fmt(pods_at),
            secs(total),
            total.as_secs_f64() * 1000.0 / n as f64,
            if total <= Duration::from_secs(10) {
                "met"
            } else {
                "NOT met"
            }
        ),
        None => println!(
            "P6 {n} Pipelines over {} repos: NOT complete within {} (latestRevision: {}, Pods: {})",
            ups.len(),
            secs(P6_TIMEOUT),
            fmt(revisions_at),
            fmt(pods_at)
        ),
    }
    if let Some(total) = total {
        println!(
            "P6 vs baseline: git ls-remote of the {} repos one after another {} ({:.2} ms each); \
             ratio operator-time / ls-remote-time {:.2} ({:.2} ms per Pipeline vs {:.2} ms per ls-remote)",
            ups.len(),
            secs(ls_remote),
            ls_remote.as_secs_f64() * 1000.0 / ups.len() as f64,
            total.as_secs_f64() / ls_remote.as_secs_f64(),
            total.as_secs_f64() * 1000.0 / n as f64,
            ls_remote.as_secs_f64() * 1000.0 / ups.len() as f64,
        );
    }
    println!(
        "P6 progress (Pipelines with latestRevision / with a Pod, since the first create): {}",
        if progress.is_empty() {
            "done within 1 s".to_owned()
        } else {
            progress.join(", ")
        }
    );
    println!(
        "P6 CPU over those {}: operator {} ({:.0}% of one core), bench process (API server, watches) {} \
         ({:.0}% of one core); 2 cores",
        secs(wall),
        secs(op_cpu),
        100.0 * op_cpu.as_secs_f64() / wall.as_secs_f64(),
        secs(bench_cpu),
        100.0 * bench_cpu.as_secs_f64() / wall.as_secs_f64(),
    );
    let (warnings, first) = operator.warnings();
    println!("P6 operator log: {warnings} WARN/ERROR lines");
    for line in first {
        println!("  {line}");
    }
    let goal = 64 * 1024;
    println!(
        "P4 operator memory with {n} Pipelines, when P6 completed: VmHWM {}, VmRSS {} (goal < 64 MiB: {})",
        mib(hwm1),
        mib(rss1),
        if hwm1 < goal { "met" } else { "NOT met" }
    );
    tokio::time::sleep(SETTLE).await;
    let (hwm2, rss2) = operator.memory();
    println!(
        "P4 operator memory with {n} Pipelines, {} s later: VmHWM {}, VmRSS {} (goal < 64 MiB: {})",
        SETTLE.as_secs(),
        mib(hwm2),
        mib(rss2),
        if hwm2 < goal { "met" } else { "NOT met" }
    );
    for w in watches {
        w.abort();
    }
    operator.stop().await;
    plane.shutdown().await;
}

/// Total time of `git ls-remote file://… refs/heads/main` over `ups`, one after another (median of 3 rounds).
fn ls_remote_all(ups: &[Upstream]) -> Duration {
    let dir = std::env::temp_dir();
    let mut rounds: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            for up in ups {
                let url = file_url(up);
                let status = support::command("git", &["ls-remote", &url, "refs/heads/main"], &dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("run git ls-remote");
                assert!(status.success(), "git ls-remote {url} failed");
            }
            started.elapsed()
        })
        .collect();
    rounds.sort();
    rounds[1]
}

/// Watches of Pipelines (with `status.latestRevision`) and builder Pods (by Pipeline label) that fill `seen`.
fn start_watches(client: &Client, seen: Arc<Mutex<Seen>>, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen_p = Arc::clone(&seen);
    let watch_pipelines = tokio::spawn(async move {
        let mut stream = watcher::watcher(pipelines, watcher::Config::default()).boxed();
        loop {
            match stream.try_next().await {
                Ok(Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                    let has = p.status.as_ref().is_some_and(|s| s.latest_revision.is_some());
                    if has {
                        let mut s = seen_p.lock().unwrap();
                        s.with_revision.insert(p.name_any());
                        if s.with_revision.len() >= n && s.all_revisions_at.is_none() {
                            s.all_revisions_at = Some(Instant::now());
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    eprintln!("P6 Pipeline watch: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
    let watch_pods = tokio::spawn(async move {
        let mut stream = watcher::watcher(pods, watcher::Config::default().labels(&selector)).boxed();
        loop {
            match stream.try_next().await {
                Ok(Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                    if let Some(name) = p.labels().get(PIPELINE_LABEL) {
                        let mut s = seen.lock().unwrap();
                        s.with_pod.insert(name.clone());
                        if s.with_pod.len() >= n && s.all_pods_at.is_none() {
                            s.all_pods_at = Some(Instant::now());
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    eprintln!("P6 Pod watch: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    vec![watch_pipelines, watch_pods]
}
