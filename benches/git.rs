//! Speed of the git engine against `git` itself, on loopback servers, measured in the same run.
//! `cargo bench --bench git` prints one line per figure:
//! - P1: one no-op probe vs `git ls-remote <url> refs/heads/main`, over git:// and smart HTTP (medians).
//! - P2: one sweep of 1,000 subscriptions over 100 repositories (HTTP) where nothing changed: wall time
//!   and probes sent (must be 100, confirmed by the server's request log).
//! - P5: export of a ~5,000-file tree vs `git archive --format=tar.gz`.
//! - Incremental fetch of one new commit vs `git fetch` into a clone.
//! - Hostile servers: peak RSS of `cdkube probe` while a server streams endless refs (goal < 64 MiB), and
//!   the time it takes to give up on a server that drips one byte per 100ms (goal <= deadline + 1s), each
//!   beside `git ls-remote` against the same server for the same deadline (killed there if it goes on).
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cdkube::git::{Credentials, Engine, EngineOptions, RemoteSpec};
use cdkube::schedule::{Poller, PollerOptions, Schedule};
use support::hostile::{Behaviour, HostileServer, Wire};
use support::process::{Measured, run_measured};
use support::{GitDaemon, HttpGit, Repos, Upstream};

const RUNS: usize = 25;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let storage = tempfile::tempdir().expect("storage");
    // `cargo bench --bench git -- hostile` runs the figures whose name contains `hostile`.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if wanted("p1_probe") {
        p1_probe(&runtime, storage.path());
    }
    if wanted("p2_sweep") {
        p2_sweep(&runtime, storage.path());
    }
    if wanted("p5_export") {
        p5_export(&runtime, storage.path());
    }
    if wanted("incremental_fetch") {
        incremental_fetch(&runtime, storage.path());
    }
    if wanted("hostile_servers") {
        hostile_servers(storage.path());
    }
}

fn engine(storage: &Path, name: &str) -> Engine {
    Engine::new(EngineOptions::new(storage.join(name))).expect("engine")
}

fn spec(url: &str) -> RemoteSpec {
    RemoteSpec::new(url, Some("main"), Credentials::none(), true).expect("spec")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}

/// Time one run of `git args` (in `dir`), which must succeed.
fn time_git(args: &[&str], dir: &Path) -> Duration {
    let started = Instant::now();
    let status = support::command("git", args, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git");
    let elapsed = started.elapsed();
    assert!(status.success(), "git {args:?} failed");
    elapsed
}

fn p1_probe(runtime: &tokio::runtime::Runtime, storage: &Path) {
    let repos = Repos::new();
    let up = repos.create("p1");
    for i in 0..10 {
        up.branch(&format!("topic-{i}"));
        up.checkout("main");
    }
    let daemon = GitDaemon::start(&repos.root());
    let http = HttpGit::start(&repos.root());
    let engine = engine(storage, "p1");
    for (label, url) in [("git://", daemon.url("p1")), ("smart HTTP", http.url("git", "p1"))] {
        let spec = spec(&url);
        let probe = || {
            let started = Instant::now();
            let head = runtime.block_on(engine.probe(&spec)).expect("probe");
            assert_eq!(head.sha, up.head());
            started.elapsed()
        };
        probe(); // warm: the HTTP connection is opened once, as in the poller
        // Interleaved, so both sides see the same machine load.
        let (ours, git): (Vec<_>, Vec<_>) = (0..RUNS)
            .map(|_| (probe(), time_git(&["ls-remote", &url, "refs/heads/main"], storage)))
            .unzip();
        let (ours, git) = (median(ours), median(git));
        println!(
            "P1 probe over {label}: cdkube {} vs git ls-remote {} (median of {RUNS}), ratio {:.2} (goal <= 0.5)",
            ms(ours),
            ms(git),
            ratio(ours, git)
        );
    }
}

fn p2_sweep(runtime: &tokio::runtime::Runtime, storage: &Path) {
    let repos = Repos::new();
    for i in 0..100 {
        repos.create(&format!("r{i:03}"));
    }
    let http = HttpGit::start(&repos.root());
    let (poller, _events) = Poller::new(engine(storage, "p2"), PollerOptions::default());
    for i in 0..1000 {
        let url = http.url("git", &format!("r{:03}", i % 100));
        poller.subscribe(
            format!("ns/pipeline-{i}"),
            spec(&url),
            Schedule::parse_interval("1m").expect("interval"),
        );
    }
    let first = runtime.block_on(poller.sweep());
    assert_eq!((first.probes, first.failed), (100, 0), "first sweep learns every head");
    poller.trigger_all();
    let posts = || http.requests().iter().filter(|r| r.method == "POST").count();
    let (before, sent_before) = (posts(), poller.probes_sent());
    let started = Instant::now();
    let sweep = runtime.block_on(poller.sweep());
    let elapsed = started.elapsed();
    assert_eq!((sweep.changed, sweep.failed), (0, 0), "nothing changed");
    println!(
        "P2 sweep of 1000 subscriptions over 100 repos (HTTP, nothing changed): {:.3} s, {} probes sent \
         ({} ls-refs seen by the server) (goal <= 1 s, 100 probes)",
        elapsed.as_secs_f64(),
        poller.probes_sent() - sent_before,
        posts() - before
    );
}

fn p5_export(runtime: &tokio::runtime::Runtime, storage: &Path) {
    let repos = Repos::new();
    let up = repos.create_empty("big");
    write_tree(&up, 50, 100);
    let sha = up.commit(&[], "5000 files");
    let engine = engine(storage, "p5");
    let source = spec(up.bare_path());
    runtime.block_on(engine.fetch(&source)).expect("fetch");
    let out = storage.join("p5-out");
    std::fs::create_dir_all(&out).expect("out dir");
    let runs = RUNS;
    let (ours, git): (Vec<_>, Vec<_>) = (0..runs)
        .map(|i| {
            let started = Instant::now();
            runtime
                .block_on(engine.export(&source, &sha, &out.join(format!("ours-{i}.tar.gz"))))
                .expect("export");
            let ours = started.elapsed();
            let target = out.join(format!("git-{i}.tar.gz"));
            (
                ours,
                time_git(
                    &["archive", "--format=tar.gz", "-o", target.to_str().unwrap(), &sha],
                    &up.bare,
                ),
            )
        })
        .unzip();
    let (ours, git) = (median(ours), median(git));
    println!(
        "P5 export of a 5000-file tree: cdkube {} vs git archive --format=tar.gz {} (median of {runs}), ratio {:.2} (goal <= 1.0)",
        ms(ours),
        ms(git),
        ratio(ours, git)
    );
}

/// `dirs × files` small files with distinct content, one executable per directory.
fn write_tree(up: &Upstream, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = up.work.join(format!("pkg{d:02}"));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in 0..files {
            let body = format!(
                "// package {d} file {f}\n{}\n",
                "let x = 1;\n".repeat(1 + (d * files + f) % 20)
            );
            std::fs::write(dir.join(format!("f{f:03}.rs")), body).expect("file");
        }
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").expect("script");
        support::run("chmod", &["755", "run.sh"], &dir);
    }
}

fn incremental_fetch(runtime: &tokio::runtime::Runtime, storage: &Path) {
    let repos = Repos::new();
    let up = repos.create("inc");
    write_tree(&up, 10, 50);
    up.commit(&[], "a tree of 500 files");
    let http = HttpGit::start(&repos.root());
    let url = http.url("git", "inc");
    let engine = engine(storage, "inc");
    let source = spec(&url);
    runtime.block_on(engine.fetch(&source)).expect("first fetch");
    let clone = storage.join("inc-clone");
    support::run(
        "git",
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--single-branch",
            "--branch",
            "main",
            &url,
            clone.to_str().unwrap(),
        ],
        storage,
    );
    let rounds = 10;
    let (mut ours, mut git) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let sha = up.commit(
            &[(&format!("pkg00/new-{round}.rs"), &format!("// round {round}\n"))],
            "one more",
        );
        let started = Instant::now();
        let fetched = runtime.block_on(engine.fetch(&source)).expect("incremental fetch");
        ours.push(started.elapsed());
        assert_eq!(fetched.head.sha, sha);
        git.push(time_git(&["fetch", "-q", "origin", "main"], &clone));
    }
    let (ours, git) = (median(ours), median(git));
    println!(
        "Incremental fetch of one new commit (HTTP, 500-file tree): cdkube {} vs git fetch {} (median of {rounds}), ratio {:.2}",
        ms(ours),
        ms(git),
        ratio(ours, git)
    );
}

/// The deadline of the hostile-server figures.
const HOSTILE_DEADLINE: Duration = Duration::from_secs(5);

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `cdkube probe` and `git ls-remote` against one hostile server, with the same deadline.
fn against(url: &str, storage: &Path) -> (Measured, Measured) {
    let secs = HOSTILE_DEADLINE.as_secs().to_string();
    let mut ours = support::cdkube_command(&["probe", url, "--timeout", &format!("{secs}s")]);
    ours.env("TMPDIR", storage);
    let ours = run_measured(ours, HOSTILE_DEADLINE * 4);
    // git has no overall deadline; it is killed at ours.
    let git = run_measured(support::command("git", &["ls-remote", url], storage), HOSTILE_DEADLINE);
    (ours, git)
}

fn git_outcome(git: &Measured) -> &'static str {
    if git.killed {
        "still going, killed at the deadline"
    } else {
        "gave up"
    }
}

fn hostile_servers(storage: &Path) {
    for wire in [Wire::Http, Wire::Git] {
        let server = HostileServer::start(wire, Behaviour::EndlessRefs);
        let (ours, git) = against(&server.url(), storage);
        println!(
            "Endless refs over {wire:?}: cdkube probe peak RSS {} (gave up after {:.2} s: {}) vs git ls-remote {} ({}; \
             the git process, not its remote helper), ratio {:.2} (goal < 64 MiB)",
            mib(ours.peak_rss_kib),
            ours.elapsed.as_secs_f64(),
            ours.stderr
                .lines()
                .next()
                .unwrap_or_default()
                .split(": ")
                .take(2)
                .collect::<Vec<_>>()
                .join(": "),
            mib(git.peak_rss_kib),
            git_outcome(&git),
            ours.peak_rss_kib as f64 / git.peak_rss_kib.max(1) as f64
        );
    }
    for wire in [Wire::Http, Wire::Git] {
        let server = HostileServer::start(wire, Behaviour::Drip);
        let (ours, git) = against(&server.url(), storage);
        println!(
            "Drip over {wire:?} (deadline {}s): cdkube probe gave up after {:.2} s ({:+.2} s past the deadline, \
             ratio {:.2}; goal <= deadline + 1s), peak RSS {}; git ls-remote {} after {:.2} s",
            HOSTILE_DEADLINE.as_secs(),
            ours.elapsed.as_secs_f64(),
            ours.elapsed.as_secs_f64() - HOSTILE_DEADLINE.as_secs_f64(),
            ours.elapsed.as_secs_f64() / HOSTILE_DEADLINE.as_secs_f64(),
            mib(ours.peak_rss_kib),
            git_outcome(&git),
            git.elapsed.as_secs_f64()
        );
    }
}
