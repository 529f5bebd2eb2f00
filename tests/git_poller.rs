//! The shared poller against real git servers on 127.0.0.1: one probe per key however many subscribers,
//! events only on change, exponential backoff and recovery.
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cdkube::git::{Credentials, Engine, EngineOptions, ErrorKind, Head, RemoteSpec};
use cdkube::schedule::{Backoff, Event, Poller, PollerOptions, Schedule};
use support::{Blackhole, GitDaemon, HttpGit, Repos, eventually};
use tokio::sync::mpsc::UnboundedReceiver;

fn spec(url: &str, branch: Option<&str>) -> RemoteSpec {
    RemoteSpec::new(url, branch, Credentials::none(), false).expect("valid spec")
}

fn new_poller(storage: &std::path::Path) -> (Poller, UnboundedReceiver<Event>) {
    let engine = Engine::new(EngineOptions::new(storage)).expect("engine");
    Poller::new(engine, PollerOptions::default())
}

async fn next_event(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("an event within 30s")
        .expect("poller alive")
}

/// Subscribe `ns/<name>-0` … `ns/<name>-9` to repository `name`'s main, on three different schedules;
/// returns what each subscription call said the head was.
fn subscribe_ten(poller: &Poller, http: &HttpGit, name: &str) -> Vec<Option<Head>> {
    (0..10)
        .map(|n| {
            let schedule = match n % 3 {
                0 => Schedule::parse_interval("1m").unwrap(),
                1 => Schedule::parse_interval("5m").unwrap(),
                _ => Schedule::cron("*/5 * * * *").unwrap(),
            };
            poller.subscribe(
                format!("ns/{name}-{n}"),
                spec(&http.url("git", name), Some("main")),
                schedule,
            )
        })
        .collect()
}

#[tokio::test]
async fn subscriptions_on_the_same_key_share_one_probe() {
    let repos = Repos::new();
    let names = ["alpha", "beta", "gamma", "delta"];
    let heads: Vec<String> = names.iter().map(|n| repos.create(n).head()).collect();
    let http = HttpGit::start(&repos.root());
    let storage = tempfile::tempdir().unwrap();
    let (poller, mut events) = new_poller(storage.path());

    // 40 Pipelines on 4 repositories, with different schedules.
    for (i, name) in names.iter().enumerate() {
        let known = subscribe_ten(&poller, &http, name);
        assert!(known.iter().all(Option::is_none), "nothing probed yet");
        assert_eq!(poller.len(), (10 * (i + 1), i + 1));
    }

    let sweep = poller.sweep().await;
    assert_eq!((sweep.probes, sweep.changed, sweep.failed), (4, 4, 0));
    assert_eq!(poller.probes_sent(), 4);
    let posts = http.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(
        posts,
        4,
        "the server saw one ls-refs per repository: {:?}",
        http.requests()
    );
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        match next_event(&mut events).await {
            Event::HeadChanged {
                key,
                old: None,
                new,
                subscribers,
            } => {
                assert_eq!(subscribers.len(), 10, "{key}");
                assert!(heads.contains(&new.sha));
                seen.insert(new.sha);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(seen.len(), 4);

    // Nothing is due again until the schedules say so, even when every Pipeline subscribes again (as
    // each reconcile does).
    for (i, name) in names.iter().enumerate() {
        for known in subscribe_ten(&poller, &http, name) {
            assert_eq!(known.map(|h| h.sha), Some(heads[i].clone()));
        }
    }
    assert_eq!(poller.sweep().await.probes, 0);
    assert!(events.try_recv().is_err(), "subscribing again emits nothing");
    // Due again, nothing changed: 4 probes, no events.
    poller.trigger_all();
    assert_eq!(
        poller.sweep().await,
        cdkube::schedule::Sweep {
            probes: 4,
            changed: 0,
            failed: 0
        }
    );
    assert!(events.try_recv().is_err(), "an unchanged head emits nothing");
    assert_eq!(http.requests().iter().filter(|r| r.method == "POST").count(), 8);
    // Both sweeps together used no more connections than probes ran at once in one sweep.
    let ports: BTreeSet<u16> = http.requests().iter().map(|r| r.client_port).collect();
    assert!(ports.len() <= 4, "connections were reused across sweeps: {ports:?}");

    // A key with a single subscription survives that subscription being made again.
    let solo = || spec(&http.url("git", "beta"), None);
    let every_minute = || Schedule::parse_interval("1m").unwrap();
    assert!(poller.subscribe("ns/solo", solo(), every_minute()).is_none());
    assert_eq!(poller.sweep().await.probes, 1);
    assert!(matches!(
        next_event(&mut events).await,
        Event::HeadChanged { old: None, .. }
    ));
    assert_eq!(
        poller.subscribe("ns/solo", solo(), every_minute()).map(|h| h.sha),
        Some(heads[1].clone())
    );
    assert_eq!(poller.sweep().await.probes, 0);
    assert!(events.try_recv().is_err(), "no second first-sighting");
    poller.unsubscribe("ns/solo");

    // A newcomer on a known key gets the head at once; the last one out removes the key.
    let known = poller.subscribe(
        "ns/late",
        spec(&http.url("git", "alpha"), Some("main")),
        Schedule::parse_interval("1m").unwrap(),
    );
    assert_eq!(known.map(|h| h.sha), Some(heads[0].clone()));
    assert_eq!(poller.head("ns/late").map(|h| h.sha), Some(heads[0].clone()));
    for name in names {
        for n in 0..10 {
            poller.unsubscribe(&format!("ns/{name}-{n}"));
        }
    }
    poller.unsubscribe("ns/late");
    assert_eq!(poller.len(), (0, 0));
    poller.trigger_all();
    assert_eq!(poller.sweep().await.probes, 0);
}

#[tokio::test]
async fn the_running_poller_reports_new_commits() {
    let repos = Repos::new();
    let up = repos.create("app");
    let daemon = GitDaemon::start(&repos.root());
    let storage = tempfile::tempdir().unwrap();
    let (poller, mut events) = new_poller(storage.path());
    poller.subscribe(
        "default/app",
        spec(&daemon.url("app"), None),
        Schedule::parse_interval("1h").unwrap(),
    );
    poller.subscribe(
        "default/app-copy",
        spec(&daemon.url("app"), None),
        Schedule::parse_interval("10m").unwrap(),
    );
    let runner = tokio::spawn(poller.clone().run());

    let first = match next_event(&mut events).await {
        Event::HeadChanged {
            old: None,
            new,
            subscribers,
            ..
        } => {
            assert_eq!(
                subscribers,
                vec!["default/app".to_owned(), "default/app-copy".to_owned()]
            );
            new
        }
        other => panic!("unexpected {other}"),
    };
    assert_eq!(first.revision(), format!("main@sha1:{}", up.head()));
    let second = up.commit(&[("v2", "2")], "second");
    assert!(poller.trigger("default/app"), "an explicit request polls now");
    let event = next_event(&mut events).await;
    assert_eq!(
        event.to_string(),
        format!(
            "head changed for key {}: main@sha1:{} → main@sha1:{second}",
            cdkube::schedule::Key::of(&spec(&daemon.url("app"), None)),
            first.sha
        )
    );
    assert_eq!(
        daemon.upload_pack_requests(),
        2,
        "one probe per due time for both subscriptions"
    );
    assert!(!poller.trigger("default/nobody"));
    runner.abort();
}

#[tokio::test]
async fn failing_keys_back_off_and_recover() {
    let repos = Repos::new();
    let daemon = GitDaemon::start(&repos.root());
    let storage = tempfile::tempdir().unwrap();
    let (poller, mut events) = new_poller(storage.path());
    poller.subscribe(
        "default/late",
        spec(&daemon.url("late"), Some("main")),
        Schedule::parse_interval("1h").unwrap(),
    );
    let started = Instant::now();
    let runner = tokio::spawn(poller.clone().run());

    // The repository does not exist yet: failures come 750ms, then 1.5s apart.
    let mut failed_at = Vec::new();
    for expected in [750u64, 1500] {
        match next_event(&mut events).await {
            Event::ProbeFailed {
                error,
                failures,
                retry_in,
                subscribers,
                ..
            } => {
                assert_eq!(error.kind(), ErrorKind::RepositoryNotFound);
                assert_eq!(retry_in, Duration::from_millis(expected), "failure {failures}");
                assert_eq!(subscribers, vec!["default/late".to_owned()]);
                failed_at.push(Instant::now());
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Measured from before the first probe, not between receipts: a test thread that is slow to see the
    // first event must not make the backoff look short. Without a backoff both failures come at once.
    assert!(
        failed_at[1] - started >= Duration::from_millis(750),
        "waited out the first backoff"
    );

    // It appears: a later retry finds it without anyone asking (on a slow machine the retries 1.5s, 3s, …
    // after the second failure may still race the repository's creation and fail, backing off further).
    let up = repos.create("late");
    loop {
        match next_event(&mut events).await {
            Event::HeadChanged { old: None, new, .. } => {
                assert_eq!(new.sha, up.head());
                break;
            }
            Event::ProbeFailed { failures, retry_in, .. } if failures >= 3 => {
                assert_eq!(retry_in, Backoff::default().delay(failures))
            }
            other => panic!("unexpected {other}"),
        }
    }

    // It disappears and comes back unchanged: one failure, then "recovered", no head change.
    let hidden = repos.root().join("late.hidden");
    std::fs::rename(&up.bare, &hidden).unwrap();
    poller.trigger("default/late");
    match next_event(&mut events).await {
        Event::ProbeFailed { failures: 1, .. } => {}
        other => panic!("unexpected {other}"),
    }
    std::fs::rename(&hidden, &up.bare).unwrap();
    match next_event(&mut events).await {
        Event::Recovered { head, .. } => assert_eq!(head.sha, up.head()),
        other => panic!("unexpected {other}"),
    }
    runner.abort();
}

// Multi-threaded: the test thread blocks in `eventually` while the poller runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_during_a_probe_polls_again_after_it() {
    let hole = Blackhole::start();
    let storage = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(storage.path());
    // Long enough that the trigger below lands while the first probe waits, even on a loaded machine.
    options.timeout = Duration::from_secs(2);
    // Backoff so long that only the trigger can cause a second probe.
    let backoff = Backoff {
        initial: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
    let (poller, mut events) = Poller::new(
        Engine::new(options).unwrap(),
        PollerOptions {
            backoff,
            ..PollerOptions::default()
        },
    );
    let url = format!("git://127.0.0.1:{}/r.git", hole.port);
    poller.subscribe(
        "default/slow",
        spec(&url, None),
        Schedule::parse_interval("1h").unwrap(),
    );
    let runner = tokio::spawn(poller.clone().run());
    assert!(
        eventually(Duration::from_secs(10), || hole.accepted() == 1),
        "first probe under way"
    );
    assert!(poller.trigger("default/slow"));
    match next_event(&mut events).await {
        Event::ProbeFailed { error, .. } => assert_eq!(error.kind(), ErrorKind::Timeout),
        other => panic!("unexpected {other}"),
    }
    assert!(
        eventually(Duration::from_secs(10), || hole.accepted() == 2),
        "the trigger was not lost in the in-flight probe"
    );
    runner.abort();
}

#[tokio::test]
async fn a_push_probes_its_key_once_and_is_the_trigger_only_for_subscribers_it_reached() {
    let repos = Repos::new();
    let up = repos.create("app");
    let http = HttpGit::start(&repos.root());
    let storage = tempfile::tempdir().unwrap();
    let (poller, mut events) = new_poller(storage.path());
    let hourly = || Schedule::parse_interval("1h").unwrap();
    let url = http.url("git", "app");
    poller.subscribe("ns/early", spec(&url, Some("main")), hourly());
    assert_eq!(poller.sweep().await.probes, 1, "the first probe of a new key");
    next_event(&mut events).await;

    // Pushes of a commit the key already shows, or of another repository or branch, probe nothing.
    let ours = |key: &cdkube::schedule::Key, _: Option<&Head>| key.url == url && key.branch.as_deref() == Some("main");
    assert_eq!(poller.push(ours, Some(&up.head())).due, 0);
    assert_eq!(poller.push(|_, _| false, None).matched, 0);
    assert_eq!(poller.sweep().await.probes, 0);

    // A new commit: three pushes of it before the poller runs make one probe, and the head it finds
    // counts as pushed for the subscription that was there.
    let sha = up.commit(&[("f", "2")], "second");
    for _ in 0..3 {
        assert_eq!(poller.push(ours, Some(&sha)).matched, 1);
    }
    let sweep = poller.sweep().await;
    assert_eq!((sweep.probes, sweep.changed), (1, 1));
    assert!(matches!(next_event(&mut events).await, Event::HeadChanged { .. }));
    assert!(poller.status("ns/early").unwrap().pushed);

    // A Pipeline that subscribes afterwards was not reached by that push.
    poller.subscribe("ns/late", spec(&url, Some("main")), hourly());
    let late = poller.status("ns/late").unwrap();
    assert_eq!(late.head.map(|h| h.sha), Some(sha));
    assert!(!late.pushed);
}
