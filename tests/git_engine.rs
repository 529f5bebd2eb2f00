//! The git engine against real servers on 127.0.0.1: every transport, authentication, host keys,
//! force-pushes, deleted branches, timeouts, cancellation, deterministic exports and the `cdkube probe` CLI.
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cdkube::git::{Credentials, Engine, EngineOptions, Error, ErrorKind, RemoteSpec};
use support::http::{PASSWORD, TOKEN, USER};
use support::{Blackhole, GitDaemon, HttpGit, Repos, SshServer, eventually};

fn engine(storage: &Path) -> Engine {
    Engine::new(EngineOptions::new(storage)).expect("engine")
}

fn engine_with(storage: &Path, tweak: impl FnOnce(&mut EngineOptions)) -> Engine {
    let mut options = EngineOptions::new(storage);
    tweak(&mut options);
    Engine::new(options).expect("engine")
}

fn spec(url: &str, branch: Option<&str>, credentials: Credentials) -> RemoteSpec {
    RemoteSpec::new(url, branch, credentials, true).expect("valid spec")
}

fn secret(pairs: &[(&str, &str)]) -> Credentials {
    let data: BTreeMap<String, Vec<u8>> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Credentials::from_secret_data(&data).expect("valid secret")
}

fn storage() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cdkube-storage-").tempdir().unwrap()
}

/// Probe and expect `kind`; also checks the message never leaks `secrets`.
async fn probe_fails(engine: &Engine, spec: &RemoteSpec, kind: ErrorKind, secrets: &[&str]) -> Error {
    let err = engine.probe(spec).await.expect_err("probe should fail");
    assert_eq!(err.kind(), kind, "unexpected kind for {}: {err}", spec.url);
    for secret in secrets {
        assert!(!err.to_string().contains(secret), "message leaks a secret: {err}");
    }
    err
}

#[tokio::test]
async fn probes_local_paths_and_file_urls() {
    let repos = Repos::new();
    let up = repos.create("local");
    let dir = storage();
    let engine = engine(dir.path());
    for url in [up.bare_path().to_owned(), format!("file://{}", up.bare_path())] {
        let head = engine.probe(&spec(&url, None, Credentials::none())).await.unwrap();
        assert_eq!(head.revision(), format!("main@sha1:{}", up.head()));
    }
    let missing = spec(
        &format!("{}/missing.git", repos.root().display()),
        None,
        Credentials::none(),
    );
    probe_fails(&engine, &missing, ErrorKind::RepositoryNotFound, &[]).await;
}

#[tokio::test]
async fn probes_over_git_daemon() {
    let repos = Repos::new();
    let up = repos.create("daemon");
    up.branch("feature");
    let feature = up.commit(&[("f.txt", "f")], "on feature");
    let daemon = GitDaemon::start(&repos.root());
    let dir = storage();
    let engine = engine(dir.path());

    let head = engine
        .probe(&spec(&daemon.url("daemon"), None, Credentials::none()))
        .await
        .unwrap();
    assert_eq!(head.branch, "main", "remote HEAD names main");
    let head = engine
        .probe(&spec(&daemon.url("daemon"), Some("feature"), Credentials::none()))
        .await
        .unwrap();
    assert_eq!(head.revision(), format!("feature@sha1:{feature}"));

    let missing = spec(&daemon.url("nope"), None, Credentials::none());
    let err = probe_fails(&engine, &missing, ErrorKind::RepositoryNotFound, &[]).await;
    assert!(err.message().contains("git://127.0.0.1"), "names the URL: {err}");
    let no_branch = spec(&daemon.url("daemon"), Some("gone"), Credentials::none());
    let err = probe_fails(&engine, &no_branch, ErrorKind::BranchNotFound, &[]).await;
    assert!(err.message().contains("`gone`"), "{err}");
}

#[tokio::test]
async fn probes_over_smart_http_with_basic_auth_and_bearer_tokens() {
    let repos = Repos::new();
    let up = repos.create("web");
    let http = HttpGit::start(&repos.root());
    let dir = storage();
    let engine = engine(dir.path());
    let expected = format!("main@sha1:{}", up.head());

    let open = engine
        .probe(&spec(&http.url("git", "web"), None, Credentials::none()))
        .await
        .unwrap();
    assert_eq!(open.revision(), expected);

    let alice = secret(&[("username", USER), ("password", PASSWORD)]);
    let head = engine
        .probe(&spec(&http.url("basic", "web"), None, alice))
        .await
        .unwrap();
    assert_eq!(head.revision(), expected);
    let in_url = http
        .url("basic", "web")
        .replace("://", &format!("://{USER}:{PASSWORD}@"));
    assert_eq!(
        engine
            .probe(&spec(&in_url, None, Credentials::none()))
            .await
            .unwrap()
            .revision(),
        expected
    );

    let wrong = secret(&[("username", USER), ("password", "wrong-password")]);
    let err = probe_fails(
        &engine,
        &spec(&http.url("basic", "web"), None, wrong),
        ErrorKind::AuthenticationFailed,
        &["wrong-password"],
    )
    .await;
    assert!(err.message().contains("rejected the credentials"), "{err}");
    let err = probe_fails(
        &engine,
        &spec(&http.url("basic", "web"), None, Credentials::none()),
        ErrorKind::AuthenticationFailed,
        &[],
    )
    .await;
    assert!(err.message().contains("requires authentication"), "{err}");

    let token = secret(&[("bearerToken", TOKEN)]);
    assert_eq!(
        engine
            .probe(&spec(&http.url("bearer", "web"), None, token))
            .await
            .unwrap()
            .revision(),
        expected
    );
    let bad_token = secret(&[("bearerToken", "tok-wrong-wrong")]);
    probe_fails(
        &engine,
        &spec(&http.url("bearer", "web"), None, bad_token),
        ErrorKind::AuthenticationFailed,
        &["tok-wrong-wrong"],
    )
    .await;

    probe_fails(
        &engine,
        &spec(&http.url("git", "missing"), None, Credentials::none()),
        ErrorKind::RepositoryNotFound,
        &[],
    )
    .await;
}

#[tokio::test]
async fn probes_over_https_with_a_private_ca_from_the_secret() {
    let repos = Repos::new();
    let up = repos.create("tls");
    let https = HttpGit::start_tls(&repos.root());
    let dir = storage();
    let engine = engine(dir.path());
    let ca = https.ca_pem();

    let head = engine
        .probe(&spec(&https.url("git", "tls"), None, secret(&[("ca.crt", &ca)])))
        .await
        .unwrap();
    assert_eq!(head.sha, up.head());
    let alice = secret(&[("username", USER), ("password", PASSWORD), ("ca.crt", &ca)]);
    assert_eq!(
        engine
            .probe(&spec(&https.url("basic", "tls"), None, alice))
            .await
            .unwrap()
            .sha,
        up.head()
    );
    let wrong = secret(&[("username", USER), ("password", "nope-nope"), ("ca.crt", &ca)]);
    probe_fails(
        &engine,
        &spec(&https.url("basic", "tls"), None, wrong),
        ErrorKind::AuthenticationFailed,
        &["nope-nope"],
    )
    .await;

    // Without the CA the certificate is not trusted: a network error that says so.
    let err = probe_fails(
        &engine,
        &spec(&https.url("git", "tls"), None, Credentials::none()),
        ErrorKind::Network,
        &[],
    )
    .await;
    assert!(
        err.message().to_lowercase().contains("certificate"),
        "explains the TLS failure: {err}"
    );
}

#[tokio::test]
async fn probes_over_ssh_with_strict_host_keys() {
    let repos = Repos::new();
    let up = repos.create("secure");
    let sshd = SshServer::start();
    let dir = storage();
    let config = sshd.ssh_config();
    let engine = engine_with(dir.path(), |o| o.ssh_config = Some(config.clone()));
    let creds = Credentials::from_secret_data(&sshd.secret_data()).unwrap();

    let head = engine
        .probe(&spec(&sshd.url(&up.bare), None, creds.clone()))
        .await
        .unwrap();
    assert_eq!(head.revision(), format!("main@sha1:{}", up.head()));
    let scp = spec(&sshd.scp_url(&up.bare), Some("main"), creds.clone());
    assert_eq!(engine.probe(&scp).await.unwrap().sha, up.head());

    let wrong_host = secret(&[("identity", &sshd.identity), ("known_hosts", &sshd.wrong_known_hosts)]);
    let err = probe_fails(
        &engine,
        &spec(&sshd.url(&up.bare), None, wrong_host),
        ErrorKind::HostKeyVerificationFailed,
        &[],
    )
    .await;
    assert!(err.message().contains("known_hosts"), "{err}");

    let no_known_hosts = secret(&[("identity", &sshd.identity)]);
    let err = probe_fails(
        &engine,
        &spec(&sshd.url(&up.bare), None, no_known_hosts),
        ErrorKind::InvalidInput,
        &[],
    )
    .await;
    assert!(
        err.message().contains("known_hosts") && err.message().contains("ssh-keyscan"),
        "{err}"
    );

    let stranger = support::run(
        "sh",
        &["-c", "ssh-keygen -q -t ed25519 -N '' -f k && cat k"],
        dir.path(),
    );
    let unauthorized = secret(&[("identity", &stranger), ("known_hosts", &sshd.known_hosts)]);
    probe_fails(
        &engine,
        &spec(&sshd.url(&up.bare), None, unauthorized),
        ErrorKind::AuthenticationFailed,
        &[],
    )
    .await;

    let missing = repos.root().join("missing.git");
    probe_fails(
        &engine,
        &spec(&sshd.url(&missing), None, creds),
        ErrorKind::RepositoryNotFound,
        &[],
    )
    .await;
}

#[tokio::test]
async fn fetches_incrementally_and_survives_force_push_and_branch_deletion() {
    let repos = Repos::new();
    let up = repos.create("moving");
    for i in 0..20 {
        up.commit(
            &[(&format!("history/{i}.txt"), &"x".repeat(100 + i))],
            &format!("history {i}"),
        );
    }
    up.branch("release");
    let first = up.commit(&[("app.txt", "v1")], "release v1");
    let daemon = GitDaemon::start(&repos.root());
    let dir = storage();
    let engine = engine(dir.path());
    let release = spec(&daemon.url("moving"), Some("release"), Credentials::none());

    let fetched = engine.fetch(&release).await.unwrap();
    assert_eq!(
        (fetched.head.sha.as_str(), fetched.previous.as_deref()),
        (first.as_str(), None)
    );
    // Shallow: one commit, its tree and blobs (22 files), not 23 commits of history.
    assert!(fetched.objects_received < 40, "first fetch is shallow: {fetched:?}");
    let info = engine.commit_info(&release, &first).await.unwrap();
    assert_eq!(
        (info.subject.as_str(), info.author_name.as_str()),
        ("release v1", "Ada Lovelace")
    );
    assert_eq!(info.author(), "Ada Lovelace <ada@example.com>");

    let unchanged = engine.fetch(&release).await.unwrap();
    assert_eq!((unchanged.objects_received, unchanged.forced), (0, false));

    let second = up.commit(&[("app.txt", "v2")], "release v2");
    let incremental = engine.fetch(&release).await.unwrap();
    assert_eq!(incremental.head.sha, second);
    assert_eq!(incremental.previous.as_deref(), Some(first.as_str()));
    assert!(!incremental.forced);
    assert!(
        incremental.objects_received <= 4,
        "only the new commit, tree and blob: {incremental:?}"
    );

    let rewritten = up.force_push_rewrite("release v2, rewritten");
    let forced = engine.fetch(&release).await.unwrap();
    assert_eq!((forced.head.sha.as_str(), forced.forced), (rewritten.as_str(), true));
    assert_eq!(
        engine.commit_info(&release, &rewritten).await.unwrap().subject,
        "release v2, rewritten"
    );

    up.checkout("main");
    up.delete_remote_branch("release");
    let err = engine.fetch(&release).await.expect_err("the branch is gone");
    assert_eq!(err.kind(), ErrorKind::BranchNotFound, "{err}");
    assert!(err.message().contains(&rewritten), "names the commit kept: {err}");
    let probe = engine.probe(&release).await.expect_err("probe agrees");
    assert_eq!(probe.kind(), ErrorKind::BranchNotFound);
    // The last good state is still there to build from.
    let out = dir.path().join("kept.tar.gz");
    engine
        .export(&release, &rewritten, &out)
        .await
        .expect("export of the kept commit");
}

#[tokio::test]
async fn caches_stay_bounded_and_heal() {
    let repos = Repos::new();
    let up = repos.create("growing");
    let dir = storage();
    let engine = engine_with(dir.path(), |o| o.cache_limits.max_packs = 2);
    let source = spec(up.bare_path(), Some("main"), Credentials::none());
    let packs = || -> usize {
        let cache = std::fs::read_dir(dir.path().join("repos"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::read_dir(cache.join("objects/pack"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "pack"))
            .count()
    };
    let mut previous = engine.fetch(&source).await.unwrap().head.sha;
    for round in 1..=3 {
        let sha = up.commit(&[("n.txt", &round.to_string())], &format!("round {round}"));
        let fetched = engine.fetch(&source).await.unwrap();
        assert_eq!(
            (fetched.head.sha.as_str(), fetched.previous.as_deref()),
            (sha.as_str(), Some(previous.as_str()))
        );
        // gix never repacks: every fetch adds a pack, until the third pack makes the next fetch re-clone.
        assert_eq!(fetched.recloned, round == 3, "round {round}: {fetched:?}");
        assert!(packs() <= 3, "round {round}: {} packs", packs());
        previous = sha;
    }
    assert_eq!(packs(), 1, "the re-cloned cache starts over with one pack");

    // A cache that cannot be opened any more is rebuilt rather than failing forever.
    let cache = std::fs::read_dir(dir.path().join("repos"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_dir_all(cache.join("objects")).unwrap();
    let healed = engine.fetch(&source).await.unwrap();
    assert!(healed.recloned && healed.head.sha == previous, "{healed:?}");
    assert_eq!(engine.commit_info(&source, &previous).await.unwrap().subject, "round 3");
}

#[tokio::test]
async fn fetch_without_branch_follows_the_remote_head() {
    let repos = Repos::new();
    let up = repos.create("headless");
    let dir = storage();
    let engine = engine(dir.path());
    let fetched = engine
        .fetch(&spec(up.bare_path(), None, Credentials::none()))
        .await
        .unwrap();
    assert_eq!(fetched.head.revision(), format!("main@sha1:{}", up.head()));

    let empty = repos.create_empty("empty");
    let err = engine
        .probe(&spec(empty.bare_path(), None, Credentials::none()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BranchNotFound);
    assert!(err.message().contains("empty"), "{err}");
}

#[tokio::test]
async fn exports_are_deterministic_and_keep_modes_and_symlinks() {
    let repos = Repos::new();
    let up = repos.create("tree");
    std::fs::create_dir_all(up.work.join("bin")).unwrap();
    std::fs::write(up.work.join("bin/build.sh"), "#!/bin/sh\necho built\n").unwrap();
    support::run("chmod", &["755", "bin/build.sh"], &up.work);
    std::os::unix::fs::symlink("bin/build.sh", up.work.join("build")).unwrap();
    let sha = up.commit(&[("src/lib.rs", "pub fn f() {}\n")], "tree with modes");
    let source = spec(up.bare_path(), Some("main"), Credentials::none());

    let (a, b) = (storage(), storage());
    let (one, two) = (engine(a.path()), engine(b.path()));
    one.fetch(&source).await.unwrap();
    two.fetch(&source).await.unwrap();
    let first = one
        .export(&source, &sha, &a.path().join("out/first.tar.gz"))
        .await
        .unwrap();
    let again = one
        .export(&source, &sha, &a.path().join("out/again.tar.gz"))
        .await
        .unwrap();
    let other = two.export(&source, &sha, &b.path().join("other.tar.gz")).await.unwrap();
    assert!(
        first.digest.starts_with("sha256:") && first.digest.len() == 71,
        "{first:?}"
    );
    assert_eq!(first.digest, again.digest, "same cache, same bytes");
    assert_eq!(first.digest, other.digest, "another cache, same bytes");
    assert_eq!(std::fs::read(&first.path).unwrap(), std::fs::read(&other.path).unwrap());
    assert_eq!(first.size, std::fs::metadata(&first.path).unwrap().len());
    let sha256 = support::run("sha256sum", &[first.path.to_str().unwrap()], a.path());
    assert_eq!(
        format!("sha256:{}", &sha256[..64]),
        first.digest,
        "digest is the file's sha256"
    );

    let x = a.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    support::run(
        "tar",
        &["-xzf", first.path.to_str().unwrap(), "-C", x.to_str().unwrap()],
        a.path(),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(x.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/build.sh") & 0o111, 0o111, "executable bit kept");
    assert_eq!(mode("src/lib.rs") & 0o111, 0, "plain file not executable");
    assert_eq!(
        std::fs::read_link(x.join("build")).unwrap(),
        Path::new("bin/build.sh"),
        "symlink kept"
    );
    let commit_time = up
        .git(&["show", "-s", "--format=%ct", &sha])
        .trim()
        .parse::<u64>()
        .unwrap();
    let mtime = std::fs::metadata(x.join("src/lib.rs")).unwrap().modified().unwrap();
    assert_eq!(
        mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        commit_time,
        "mtime = commit time"
    );

    let err = one
        .export(
            &source,
            "0123456789012345678901234567890123456789",
            &a.path().join("n.tgz"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let err = one
        .export(&source, "not-a-sha", &a.path().join("n.tgz"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// A known_hosts line for the silent server. Any well-formed host key will do: the silent server
/// never gets as far as showing its own.
fn silent_known_hosts(hole: &Blackhole) -> String {
    format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        hole.port
    )
}

#[tokio::test]
async fn unreachable_hosts_time_out_on_every_network_transport() {
    let hole = Blackhole::start();
    let dir = storage();
    let engine = engine_with(dir.path(), |o| o.timeout = Duration::from_millis(800));
    let ssh_creds = secret(&[("known_hosts", &silent_known_hosts(&hole))]);
    for (url, creds) in [
        (format!("git://127.0.0.1:{}/r.git", hole.port), Credentials::none()),
        (format!("http://127.0.0.1:{}/r.git", hole.port), Credentials::none()),
        (format!("ssh://git@127.0.0.1:{}/r.git", hole.port), ssh_creds),
    ] {
        let outcome = tokio::time::timeout(Duration::from_secs(20), engine.probe(&spec(&url, None, creds)))
            .await
            .expect("the engine's own deadline ends the probe");
        let err = outcome.expect_err("nothing answers");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{url}: {err}");
        assert!(err.retryable());
    }
    let refused = spec(
        &format!("http://127.0.0.1:{}/r.git", support::free_port()),
        None,
        Credentials::none(),
    );
    let err = engine.probe(&refused).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
}

#[tokio::test]
async fn dropping_the_future_cancels_the_network_operation() {
    let hole = Blackhole::start();
    let dir = storage();
    let engine = engine_with(dir.path(), |o| o.timeout = Duration::from_secs(120));
    let known_hosts = silent_known_hosts(&hole);
    let hung = [
        (format!("git://127.0.0.1:{}/r.git", hole.port), Credentials::none()),
        (
            format!("ssh://git@127.0.0.1:{}/r.git", hole.port),
            secret(&[("known_hosts", &known_hosts)]),
        ),
    ];
    for (n, (url, creds)) in (1..).zip(hung) {
        let hung = spec(&url, None, creds);
        let mut probe = Box::pin(engine.probe(&hung));
        // Drive the probe until the silent server has its connection, then drop it.
        let connected = async {
            while hole.accepted() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            result = &mut probe => panic!("{url}: the silent server cannot answer: {result:?}"),
            _ = tokio::time::timeout(Duration::from_secs(20), connected) => {}
        }
        assert_eq!(hole.accepted(), n, "{url}: connected");
        drop(probe);
        assert!(
            eventually(Duration::from_secs(10), || hole.closed() == n),
            "{url}: the cancelled probe closed its connection"
        );
    }
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let hole = Blackhole::start();
    let dir = storage();
    let engine = engine_with(dir.path(), |o| {
        o.timeout = Duration::from_millis(700);
        o.max_concurrency = 1;
    });
    let hung = spec(
        &format!("git://127.0.0.1:{}/r.git", hole.port),
        None,
        Credentials::none(),
    );
    let started = Instant::now();
    let (a, b) = tokio::join!(engine.probe(&hung), engine.probe(&hung));
    assert_eq!(
        (a.unwrap_err().kind(), b.unwrap_err().kind()),
        (ErrorKind::Timeout, ErrorKind::Timeout)
    );
    // With one permit the second probe can only start once the first gave up.
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "probes ran one after the other"
    );
    // The silent server counts a connection once its accept thread runs, which may lag the client.
    assert!(eventually(Duration::from_secs(10), || hole.accepted() == 2));
}

#[tokio::test]
async fn http_probes_to_one_host_share_a_connection_and_one_request() {
    let repos = Repos::new();
    for i in 0..5 {
        repos.create(&format!("r{i}"));
    }
    let http = HttpGit::start(&repos.root());
    let dir = storage();
    let engine = engine(dir.path());
    let probe_all = || async {
        for i in 0..5 {
            engine
                .probe(&spec(&http.url("git", &format!("r{i}")), None, Credentials::none()))
                .await
                .unwrap();
        }
    };
    probe_all().await;
    let requests = http.requests();
    assert_eq!(
        requests.len(),
        10,
        "first probes: capabilities (GET) and ls-refs (POST): {requests:?}"
    );
    // The protocol-v2 capabilities are replayed from memory: one POST per probe from now on.
    probe_all().await;
    let requests = http.requests();
    assert_eq!(requests.len(), 15, "{requests:?}");
    assert!(requests[10..].iter().all(|r| r.method == "POST"), "{requests:?}");
    let ports: std::collections::BTreeSet<u16> = requests.iter().map(|r| r.client_port).collect();
    assert_eq!(
        ports.len(),
        1,
        "all requests over one kept-alive connection: {requests:?}"
    );

    // The repository vanishes: the failure is reported and the kept capabilities are dropped …
    let r0 = spec(&http.url("git", "r0"), None, Credentials::none());
    let hidden = repos.root().join("r0.hidden");
    std::fs::rename(repos.root().join("r0.git"), &hidden).unwrap();
    assert_eq!(
        engine.probe(&r0).await.unwrap_err().kind(),
        ErrorKind::RepositoryNotFound
    );
    // … so the next probe asks the server for them again.
    std::fs::rename(&hidden, repos.root().join("r0.git")).unwrap();
    engine.probe(&r0).await.unwrap();
    let methods: Vec<String> = http.requests()[15..].iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "GET", "POST"]);
}

/// `cdkube probe …` with the system temporary directory: exit code, stdout, stderr.
fn probe_cli(args: &[&str]) -> (i32, String, String) {
    probe_cli_with_tmp(args, &std::env::temp_dir())
}

/// `cdkube probe …` with `tmp` as its temporary directory: exit code, stdout, stderr.
fn probe_cli_with_tmp(args: &[&str], tmp: &Path) -> (i32, String, String) {
    let out = support::cdkube_command(args)
        .env("TMPDIR", tmp)
        .output()
        .expect("run cdkube");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_probe_prints_revision_and_subject() {
    let repos = Repos::new();
    let up = repos.create("cli");
    let sha = up.commit(&[("a.txt", "a")], "Add a\n\nwith a body");
    let http = HttpGit::start(&repos.root());
    let (code, out, err) = probe_cli(&["probe", &http.url("git", "cli")]);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("main@sha1:{sha}\nAdd a\n").as_str()),
        "stderr: {err}"
    );

    let dir = storage();
    let kv = dir.path().join("creds.env");
    std::fs::write(&kv, format!("username={USER}\npassword={PASSWORD}\n")).unwrap();
    let (code, out, _) = probe_cli(&[
        "probe",
        &http.url("basic", "cli"),
        "--branch",
        "main",
        "--secret-file",
        kv.to_str().unwrap(),
    ]);
    assert_eq!(
        (code, out.lines().next()),
        (0, Some(format!("main@sha1:{sha}").as_str()))
    );

    std::fs::write(&kv, format!("username={USER}\npassword=bad-bad-bad\n")).unwrap();
    let (code, out, err) = probe_cli(&[
        "probe",
        &http.url("basic", "cli"),
        "--secret-file",
        kv.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.starts_with("error: AuthenticationFailed: "), "{err}");
    assert!(!err.contains("bad-bad-bad"), "{err}");
}

#[test]
fn cli_probe_reads_a_secret_manifest_for_ssh() {
    let repos = Repos::new();
    let up = repos.create("viassh");
    let sshd = SshServer::start();
    let dir = storage();
    let manifest = dir.path().join("secret.yaml");
    let indent = |text: &str| text.lines().map(|l| format!("    {l}\n")).collect::<String>();
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-ssh\nstringData:\n  identity: |\n{}  known_hosts: |\n{}",
            indent(&sshd.identity),
            indent(&sshd.known_hosts)
        ),
    )
    .unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (code, out, err) = probe_cli_with_tmp(
        &[
            "probe",
            &sshd.url(&up.bare),
            "--secret-file",
            manifest.to_str().unwrap(),
        ],
        &tmp,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, format!("main@sha1:{}\nfirst\n", up.head()).as_str()),
        "stderr: {err}"
    );
    // The key and known_hosts files (and the probe's cache) went to the temporary directory: all removed.
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn cli_probe_explains_bad_input() {
    let dir = storage();
    let garbage = dir.path().join("garbage.env");
    std::fs::write(&garbage, "identity=-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let bad_hosts = dir.path().join("hosts.yaml");
    std::fs::write(
        &bad_hosts,
        "stringData:\n  known_hosts: \"this is not a host key line\"\n",
    )
    .unwrap();
    let option_user = dir.path().join("option-user.env");
    std::fs::write(&option_user, "username=-oProxyCommand=touch /tmp/cdkube-pwned\n").unwrap();
    let missing = dir.path().join("missing.env");
    /// A call refused before any connection: these URLs name 127.0.0.1, so a check that stopped
    /// working could not reach out to a real host.
    struct Refused<'a> {
        args: Vec<&'a str>,
        /// Words of the one-line InvalidInput error.
        error: &'a str,
    }
    let cases = vec![
        Refused {
            args: vec!["probe", "https://"],
            error: "malformed repository URL",
        },
        Refused {
            args: vec!["probe", "ftp://127.0.0.1:9/r.git"],
            error: "unsupported URL scheme `ftp`",
        },
        Refused {
            args: vec!["probe", "https://127.0.0.1:9/r.git", "--branch", ""],
            error: "branch name is empty",
        },
        Refused {
            args: vec![
                "probe",
                "git@127.0.0.1:r.git",
                "--secret-file",
                garbage.to_str().unwrap(),
            ],
            error: "not a readable ssh private key",
        },
        Refused {
            args: vec![
                "probe",
                "git@127.0.0.1:r.git",
                "--secret-file",
                bad_hosts.to_str().unwrap(),
            ],
            error: "known_hosts` line 1",
        },
        Refused {
            args: vec![
                "probe",
                "ssh://127.0.0.1:9/r.git",
                "--secret-file",
                option_user.to_str().unwrap(),
            ],
            error: "`username` starts with `-`",
        },
        Refused {
            args: vec![
                "probe",
                "https://127.0.0.1:9/r.git",
                "--secret-file",
                missing.to_str().unwrap(),
            ],
            error: "cannot read secret file",
        },
    ];
    for Refused { args, error: needle } in cases {
        let (code, out, err) = probe_cli(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with("error: InvalidInput: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}
