//! Hostile repository servers, as a Pipeline author could point cdkube at: scripted smart-HTTP and git://
//! servers on 127.0.0.1 that drip, stream refs forever, send a pack that never ends, garbage or errors of
//! their own, hang after connecting, and an ssh endpoint that never answers. Each case asserts the bound a
//! user relies on: `cdkube probe` ends with the right error kind within 3x its deadline, its peak RSS
//! (VmHWM, sampled) stays under [`RSS_CAP_KIB`], it leaves nothing in its temporary directory, the server sees the connection
//! closed, and the engine answers the next probe. Plus signals, bad deadlines and secret files, and
//! property tests of the parsers that take untrusted text (repository URLs, secret files).
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cdkube::git::{Credentials, Engine, EngineOptions, ErrorKind, RemoteSpec, secret_file};
use proptest::prelude::*;
use support::hostile::{Behaviour, ERR_TEXT, FATAL_TEXT, HostileServer, Wire};
use support::process::{self, Measured};
use support::{Blackhole, GitDaemon, HttpGit, Repos, eventually};

/// The deadline every hostile probe gets.
const DEADLINE: Duration = Duration::from_secs(3);
/// The peak resident memory a probe may reach, in KiB (the benchmark's goal: 64 MiB).
const RSS_CAP_KIB: u64 = 64 * 1024;
/// The pack size limit of the huge-pack cases.
const PACK_CAP: &str = "8MiB";

/// Run `cdkube args` with `tmp` as its temporary directory; kill it if it outlives `limit`.
fn cdkube_in(args: &[&str], tmp: &Path, limit: Duration) -> Measured {
    let mut command = support::cdkube_command(args);
    command.env("TMPDIR", tmp);
    process::run_measured(command, limit)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cdkube-hostile-")
        .tempdir()
        .expect("temp dir")
}

/// What the directory still holds.
fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A `known_hosts` line for a server that never shows its key.
fn silent_known_hosts(port: u16) -> String {
    format!("[127.0.0.1]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
}

/// One row of the closing note's table, printed by the tests (`--nocapture` shows it).
fn report(case: &str, bound: &str, ended: &Measured, result: &str) {
    println!(
        "| {case} | {bound} | {:.2} s | {:.1} MiB | {result} |",
        ended.elapsed.as_secs_f64(),
        ended.peak_rss_kib as f64 / 1024.0
    );
}

/// A hostile server case: how it misbehaves and what the probe must say.
struct Case {
    name: &'static str,
    wire: Wire,
    behaviour: Behaviour,
    /// The error kind `cdkube probe` reports.
    kind: ErrorKind,
    /// Words of the message.
    says: &'static str,
}

#[test]
fn probes_of_hostile_servers_end_within_their_bounds() {
    let cases = [
        Case {
            name: "HTTP drips one byte per 100ms",
            wire: Wire::Http,
            behaviour: Behaviour::Drip,
            kind: ErrorKind::Timeout,
            says: "no complete answer within 3s",
        },
        Case {
            name: "git:// drips one byte per 100ms",
            wire: Wire::Git,
            behaviour: Behaviour::Drip,
            kind: ErrorKind::Timeout,
            says: "no complete answer within 3s",
        },
        Case {
            name: "HTTP streams endless refs",
            wire: Wire::Http,
            behaviour: Behaviour::EndlessRefs,
            kind: ErrorKind::TooLarge,
            says: "ref advertisement larger than the limit of 8 MiB, set by max_refs_bytes",
        },
        Case {
            name: "git:// streams endless refs",
            wire: Wire::Git,
            behaviour: Behaviour::EndlessRefs,
            kind: ErrorKind::TooLarge,
            says: "ref advertisement larger than the limit of 8 MiB, set by max_refs_bytes",
        },
        Case {
            name: "HTTP sends a 6 GB pack",
            wire: Wire::Http,
            behaviour: Behaviour::HugePack,
            kind: ErrorKind::TooLarge,
            says: "pack larger than the limit of 8 MiB, set by --max-pack-size",
        },
        Case {
            name: "git:// sends a 6 GB pack",
            wire: Wire::Git,
            behaviour: Behaviour::HugePack,
            kind: ErrorKind::TooLarge,
            says: "pack larger than the limit of 8 MiB, set by --max-pack-size",
        },
        Case {
            name: "HTTP sends garbage sideband",
            wire: Wire::Http,
            behaviour: Behaviour::GarbageSideband,
            kind: ErrorKind::Protocol,
            says: "not understood",
        },
        Case {
            name: "git:// sends garbage sideband",
            wire: Wire::Git,
            behaviour: Behaviour::GarbageSideband,
            kind: ErrorKind::Protocol,
            says: "not understood",
        },
        Case {
            name: "HTTP hangs after connect",
            wire: Wire::Http,
            behaviour: Behaviour::Hang,
            kind: ErrorKind::Timeout,
            says: "did not answer in time",
        },
        Case {
            name: "git:// hangs after connect",
            wire: Wire::Git,
            behaviour: Behaviour::Hang,
            kind: ErrorKind::Timeout,
            says: "did not answer in time",
        },
    ];
    for case in cases {
        let server = HostileServer::start(case.wire, case.behaviour);
        let tmp = temp_dir();
        let url = server.url();
        let args = ["probe", &url, "--timeout", "3s", "--max-pack-size", PACK_CAP];
        let ended = cdkube_in(&args, tmp.path(), DEADLINE * 10);
        let name = case.name;
        let expected = format!("error: {}: ", case.kind);
        assert!(
            ended.stderr.starts_with(&expected) && ended.stderr.contains(case.says),
            "{name}: {}",
            ended.stderr
        );
        assert_eq!(ended.status.code(), Some(1), "{name}: {}", ended.stderr);
        assert!(ended.elapsed < DEADLINE * 3, "{name}: took {:?}", ended.elapsed);
        assert!(
            ended.peak_rss_kib < RSS_CAP_KIB,
            "{name}: peak RSS {} KiB",
            ended.peak_rss_kib
        );
        assert!(left_in(tmp.path()).is_empty(), "{name}: left {:?}", left_in(tmp.path()));
        assert!(
            eventually(Duration::from_secs(10), || server.closed() == server.accepted()),
            "{name}: every connection was closed"
        );
        report(name, "3s, 64 MiB", &ended, case.kind.as_str());
    }
}

#[test]
fn an_ssh_server_that_never_answers_times_out() {
    let hole = Blackhole::start();
    let tmp = temp_dir();
    let secret = tmp.path().join("secret.env");
    std::fs::write(&secret, format!("known_hosts={}", silent_known_hosts(hole.port))).unwrap();
    let url = format!("ssh://git@127.0.0.1:{}/r.git", hole.port);
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let ended = cdkube_in(
        &[
            "probe",
            &url,
            "--timeout",
            "3s",
            "--secret-file",
            secret.to_str().unwrap(),
        ],
        &work,
        DEADLINE * 10,
    );
    assert!(ended.stderr.starts_with("error: Timeout: "), "{}", ended.stderr);
    assert!(ended.elapsed < DEADLINE * 3, "took {:?}", ended.elapsed);
    assert!(ended.peak_rss_kib < RSS_CAP_KIB, "peak RSS {} KiB", ended.peak_rss_kib);
    assert!(left_in(&work).is_empty(), "left {:?}", left_in(&work));
    assert!(eventually(Duration::from_secs(10), || hole.closed() == hole.accepted()));
    report("ssh never answers", "3s, 64 MiB", &ended, "Timeout");
}

#[test]
fn a_remotes_own_error_is_shown_and_classified() {
    let cases = [
        (Wire::Http, Behaviour::ErrPacket, ERR_TEXT),
        (Wire::Git, Behaviour::ErrPacket, ERR_TEXT),
        (Wire::Http, Behaviour::SidebandFatal, FATAL_TEXT),
        (Wire::Git, Behaviour::SidebandFatal, FATAL_TEXT),
    ];
    for (wire, behaviour, text) in cases {
        let server = HostileServer::start(wire, behaviour);
        let tmp = temp_dir();
        let ended = cdkube_in(&["probe", &server.url(), "--timeout", "10s"], tmp.path(), DEADLINE * 10);
        let name = format!("{wire:?} {behaviour:?}");
        assert!(ended.stderr.starts_with("error: Remote: "), "{name}: {}", ended.stderr);
        assert!(
            ended.stderr.contains("the server reported an error"),
            "{name}: {}",
            ended.stderr
        );
        assert!(
            ended.stderr.contains(text.trim_start_matches("fatal: ")),
            "{name}: {}",
            ended.stderr
        );
        assert!(
            !ended.stderr.contains("could not be reached"),
            "{name}: {}",
            ended.stderr
        );
        report(&name, "10s", &ended, "Remote");
    }
}

#[test]
fn a_corrupt_repository_behind_git_daemon_is_a_remote_error() {
    let repos = Repos::new();
    let up = repos.create("corrupt");
    let blob = up.git(&["rev-parse", "HEAD:README.md"]).trim().to_owned();
    let object = up.bare.join("objects").join(&blob[..2]).join(&blob[2..]);
    std::fs::remove_file(&object).expect("the blob is a loose object");
    let daemon = GitDaemon::start(&repos.root());
    let tmp = temp_dir();
    let ended = cdkube_in(
        &["probe", &daemon.url("corrupt"), "--timeout", "20s"],
        tmp.path(),
        DEADLINE * 20,
    );
    assert!(ended.stderr.starts_with("error: Remote: "), "{}", ended.stderr);
    assert!(
        ended.stderr.contains(&blob[..8]),
        "names the missing object: {}",
        ended.stderr
    );
    assert!(!ended.stderr.contains("could not be reached"), "{}", ended.stderr);
    report("git daemon, corrupt repository", "20s", &ended, "Remote");
}

/// An engine whose single slot a stopped operation must give back.
fn one_slot_engine(storage: &Path, timeout: Duration) -> Engine {
    let mut options = EngineOptions::new(storage);
    options.timeout = timeout;
    options.max_concurrency = 1;
    Engine::new(options).expect("engine")
}

fn spec(url: &str) -> RemoteSpec {
    RemoteSpec::new(url, None, Credentials::none(), true).expect("valid spec")
}

#[tokio::test]
async fn a_timed_out_operation_releases_its_connection_and_slot() {
    let repos = Repos::new();
    let good = repos.create("good");
    let http = HttpGit::start(&repos.root());
    let storage = temp_dir();
    let engine = one_slot_engine(storage.path(), Duration::from_secs(2));
    for wire in [Wire::Http, Wire::Git] {
        let drip = HostileServer::start(wire, Behaviour::Drip);
        let started = Instant::now();
        let err = engine
            .probe(&spec(&drip.url()))
            .await
            .expect_err("a drip never completes");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{wire:?}: {err}");
        assert!(
            eventually(Duration::from_secs(5), || drip.closed() == drip.accepted()),
            "{wire:?}: the dripping connection is closed"
        );
        // With one slot, the next probe runs only once the timed-out one really ended.
        let head = tokio::time::timeout(
            Duration::from_secs(6) * 3,
            engine.probe(&spec(&http.url("git", "good"))),
        )
        .await
        .expect("the engine answers again")
        .expect("the good repository answers");
        assert_eq!(head.sha, good.head());
        assert!(
            started.elapsed() < Duration::from_secs(6) * 3,
            "{wire:?}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn cancelling_a_probe_closes_its_connection_on_every_transport() {
    let storage = temp_dir();
    let engine = one_slot_engine(storage.path(), Duration::from_secs(120));
    for (wire, behaviour) in [
        (Wire::Http, Behaviour::Hang),
        (Wire::Http, Behaviour::Drip),
        (Wire::Git, Behaviour::Drip),
    ] {
        let server = HostileServer::start(wire, behaviour);
        let target = spec(&server.url());
        let mut probe = Box::pin(engine.probe(&target));
        let connected = async {
            while server.accepted() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            result = &mut probe => panic!("{wire:?} {behaviour:?}: cannot answer: {result:?}"),
            _ = tokio::time::timeout(Duration::from_secs(20), connected) => {}
        }
        drop(probe);
        assert!(
            eventually(Duration::from_secs(10), || server.closed() == server.accepted()),
            "{wire:?} {behaviour:?}: the cancelled probe closed its connection (deadline 120s)"
        );
        assert!(
            engine.wait_idle(Duration::from_secs(10)).await,
            "the slot is free again"
        );
    }
}

/// Start `cdkube probe` of an ssh server that never answers, with the Secret in `dir`, and return it once
/// its ssh process is connected.
fn probe_stuck_in_ssh(hole: &Blackhole, dir: &Path, tmp: &Path) -> (support::ChildGuard, i32) {
    let secret = dir.join("secret.env");
    std::fs::write(&secret, format!("known_hosts={}", silent_known_hosts(hole.port))).unwrap();
    let url = format!("ssh://git@127.0.0.1:{}/r.git", hole.port);
    let before = hole.accepted();
    let child = support::cdkube_command(&[
        "probe",
        &url,
        "--timeout",
        "120s",
        "--secret-file",
        secret.to_str().unwrap(),
    ])
    .env("TMPDIR", tmp)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run cdkube");
    let guard = support::ChildGuard(child);
    assert!(
        eventually(Duration::from_secs(20), || hole.accepted() > before),
        "ssh connected"
    );
    let ssh = process::children_of(guard.0.id())
        .into_iter()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ssh"))
        .expect("the probe runs ssh");
    (guard, ssh)
}

#[test]
fn sigterm_and_sigint_during_ssh_leave_no_key_files_and_no_ssh() {
    let hole = Blackhole::start();
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let dir = temp_dir();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let (mut guard, ssh) = probe_stuck_in_ssh(&hole, dir.path(), &tmp);
        assert!(!left_in(&tmp).is_empty(), "the probe keeps its files under TMPDIR");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(guard.0.id() as libc::pid_t, signal) };
        let status = guard.0.wait().expect("the probe exits");
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut stderr);
        assert_eq!(status.code(), Some(code), "signal {signal}: {stderr}");
        assert!(stderr.starts_with("error: Cancelled: "), "signal {signal}: {stderr}");
        assert!(left_in(&tmp).is_empty(), "signal {signal}: left {:?}", left_in(&tmp));
        process::wait_dead(ssh, Duration::from_secs(10));
    }
}

#[test]
fn a_killed_probe_takes_ssh_with_it_and_the_next_start_removes_its_files() {
    let hole = Blackhole::start();
    let dir = temp_dir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (mut guard, ssh) = probe_stuck_in_ssh(&hole, dir.path(), &tmp);
    guard.0.kill().expect("SIGKILL");
    guard.0.wait().expect("reaped");
    process::wait_dead(ssh, Duration::from_secs(10));
    assert!(!left_in(&tmp).is_empty(), "SIGKILL leaves the key files behind");
    let repos = Repos::new();
    let up = repos.create("local");
    let ended = cdkube_in(&["probe", up.bare_path()], &tmp, Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(left_in(&tmp).is_empty(), "left {:?}", left_in(&tmp));
}

#[test]
fn the_engine_removes_stale_key_directories_at_start() {
    let storage = temp_dir();
    let stale = storage.path().join("tmp").join("ssh-4194305-x");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("identity"), "a key of a killed process").unwrap();
    Engine::new(EngineOptions::new(storage.path())).expect("engine");
    assert!(!stale.exists(), "pid 4194305 cannot exist (above the kernel's pid_max)");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(storage.path().join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn bad_deadlines_and_secret_files_are_refused() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let big = dir.path().join("big.env");
    std::fs::write(&big, format!("password={}\n", "x".repeat(2 << 20))).unwrap();
    let url = "git://127.0.0.1:9/r.git";
    struct Refused<'a> {
        args: Vec<&'a str>,
        says: &'a str,
    }
    let cases = [
        Refused {
            args: vec!["probe", url, "--timeout", "0s"],
            says: "the timeout must be more than 0s",
        },
        Refused {
            args: vec!["probe", url, "--timeout", "100000000000s"],
            says: "longer than the longest allowed",
        },
        Refused {
            args: vec!["probe", url, "--secret-file", fifo.to_str().unwrap()],
            says: "not a regular file",
        },
        Refused {
            args: vec!["probe", url, "--secret-file", "/dev/zero"],
            says: "not a regular file",
        },
        Refused {
            args: vec!["probe", url, "--secret-file", big.to_str().unwrap()],
            says: "larger than 1024 KiB",
        },
    ];
    for Refused { args, says } in cases {
        let ended = cdkube_in(&args, dir.path(), Duration::from_secs(20));
        assert_eq!(ended.status.code(), Some(1), "{args:?}: {}", ended.stderr);
        assert!(
            ended.stderr.starts_with("error: InvalidInput: ") && ended.stderr.contains(says),
            "{args:?}: {}",
            ended.stderr
        );
    }
    // A deadline humantime cannot represent never reaches the engine.
    let ended = cdkube_in(
        &["probe", url, "--timeout", "99999999999999999999999s"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(ended.status.code(), Some(2), "{}", ended.stderr);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever text a Pipeline author writes as a repository, parsing never panics, and an accepted URL
    /// prints without a password and parses back to itself.
    #[test]
    fn repository_urls_never_panic_and_round_trip(input in url_text()) {
        for allow_local in [false, true] {
            if let Ok(parsed) = RemoteSpec::new(&input, None, Credentials::none(), allow_local) {
                let shown = parsed.url.to_string();
                let again = RemoteSpec::new(&shown, None, Credentials::none(), allow_local)
                    .map_err(|e| TestCaseError::fail(format!("{shown} does not parse back: {e}")))?;
                prop_assert_eq!(again.url.to_string(), shown.clone());
                prop_assert_eq!(
                    (again.url.scheme(), again.url.host(), again.url.port(), again.url.path()),
                    (parsed.url.scheme(), parsed.url.host(), parsed.url.port(), parsed.url.path())
                );
                if let Some((_, password)) = input.split_once("://").and_then(|(_, rest)| rest.split_once('@')).and_then(|(info, _)| info.split_once(':')) && password.len() >= 3 {
                    prop_assert!(!shown.contains(&format!(":{password}@")), "password shown in {}", shown);
                }
            }
        }
    }

    /// Whatever a secret file holds, parsing never panics; key=value files round-trip.
    #[test]
    fn secret_files_never_panic(text in secret_text()) {
        let _ = secret_file::parse(&text);
    }

    #[test]
    fn key_value_secrets_round_trip(map in prop::collection::btree_map("[a-zA-Z][a-zA-Z0-9_.]{0,12}", "[ -~]{0,40}", 0..6)) {
        let text: String = map.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let parsed = secret_file::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: BTreeMap<String, Vec<u8>> = map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        prop_assert_eq!(parsed, expected);
    }
}

/// Text shaped like repository URLs (schemes, user info, hosts, ports, paths, scp syntax), with noise.
fn url_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "https://", "http://", "ssh://", "git://", "file://", "ftp://", "", "HTTPS://",
    ]);
    let userinfo = prop::sample::select(vec!["", "git@", "alice:s3cret@", "-oProxyCommand=x@", "a:@", ":pw@"]);
    let host = "[a-z0-9.\\-_\\[\\]:%]{0,20}";
    let port = prop::option::of(0u32..70000);
    let path = "[a-zA-Z0-9/._~\\-?#%:@ ]{0,30}";
    let noise = "\\PC{0,8}";
    (scheme, userinfo, host, port, path, noise).prop_map(|(scheme, user, host, port, path, noise)| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}{user}{host}{port}{path}{noise}")
    })
}

/// Text shaped like secret files: manifests with data/stringData, key=value lines, YAML noise.
fn secret_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        prop::collection::vec(
            prop::sample::select(vec![
                "kind: Secret\n",
                "kind: ConfigMap\n",
                "data:\n",
                "stringData:\n",
                "  username: YWxpY2U=\n",
                "  password: '!!!'\n",
                "  identity: |\n    line\n",
                "data: [1, {a: [b]}]\n",
                "user=alice\n",
                "# comment\n",
                "[[[[[[\n",
                "{{{{\n",
                "? complex\n: key\n",
                "&a [*a]\n",
                "\"unterminated\n",
            ]),
            0..12
        )
        .prop_map(|lines| lines.concat()),
    ]
}
