//! `cdkube probe`: can cdkube see this repository with these credentials?
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cdkube::git::{
    Credentials, DEFAULT_MAX_PACK_BYTES, Engine, EngineOptions, Error, ErrorKind, RemoteSpec, check_timeout,
    parse_size, scratch, secret_file,
};
use tokio::signal::unix::{SignalKind, signal};

/// The prefix of the probe's temporary storage directory (`cdkube-probe-<pid>-…` in the temporary directory).
const STORAGE_PREFIX: &str = "cdkube-probe-";

/// How long a cancelled probe waits for its connection, ssh process and key files to be gone.
const RELEASE: Duration = Duration::from_secs(5);

/// Arguments of `cdkube probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// Repository URL: https://, http://, ssh://, git@host:path, git://, file:// or a local path.
    repo: String,
    /// Branch to resolve; by default the branch the remote HEAD names.
    #[arg(long)]
    branch: Option<String>,
    /// Credentials: a Secret manifest (data/stringData) or a key=value file
    /// (username, password, bearerToken, identity, known_hosts, ca.crt); a regular file of at most 1 MiB.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Deadline of each network operation, from connecting to the last byte (more than 0s, at most 24h).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Largest pack the server may send (e.g. `512MiB`); a larger one fails with TooLarge.
    #[arg(long, default_value_t = DEFAULT_MAX_PACK_BYTES, value_parser = parse_size)]
    max_pack_size: u64,
}

/// Prints `<branch>@sha1:<sha>` and the commit subject, or the classified error (exit 1; 130 or 143 when
/// interrupted by SIGINT or SIGTERM, after the connection, ssh process and key files are gone).
pub(super) fn run(args: ProbeArgs) -> ExitCode {
    match probe(args) {
        Ok((revision, subject)) => {
            println!("{revision}");
            println!("{subject}");
            ExitCode::SUCCESS
        }
        Err(Failure { error, signal }) => {
            eprintln!("error: {}: {}", error.kind(), error.message());
            match signal {
                Some(number) => ExitCode::from(128 + number),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// A failed probe, and the signal that cancelled it, if one did.
struct Failure {
    error: Error,
    signal: Option<u8>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, signal: None }
    }
}

fn probe(args: ProbeArgs) -> Result<(String, String), Failure> {
    let timeout = check_timeout(args.timeout)?;
    let credentials = match &args.secret_file {
        Some(path) => secret_file::load(path)?,
        None => Credentials::none(),
    };
    // The CLI runs on the user's own machine, where reading local repositories is harmless.
    let spec = RemoteSpec::new(&args.repo, args.branch.as_deref(), credentials, true)?;
    let storage = storage_dir()?;
    let mut options = EngineOptions::new(storage.path());
    options.timeout = timeout;
    options.max_pack_bytes = args.max_pack_size;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Storage, format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let engine = Engine::new(options)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let work = fetch_head(&engine, &spec);
        let cancelled = tokio::select! {
            result = work => return result.map_err(Failure::from),
            _ = terminate.recv() => libc::SIGTERM,
            _ = interrupt.recv() => libc::SIGINT,
        };
        // The dropped probe is stopping: its ssh process is killed and its key files removed; wait for that.
        engine.wait_idle(RELEASE).await;
        Err(Failure {
            error: Error::new(
                ErrorKind::Cancelled,
                format!("the probe of {} was cancelled by a signal", spec.url),
            ),
            signal: u8::try_from(cancelled).ok(),
        })
    });
    // Nothing runs any more (or it is stuck past every bound): do not wait for it at exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// A depth-1 fetch answers both questions: the head (from ls-refs) and its subject (from the commit).
async fn fetch_head(engine: &Engine, spec: &RemoteSpec) -> Result<(String, String), Error> {
    let fetched = engine.fetch(spec).await?;
    let info = engine.commit_info(spec, &fetched.head.sha).await?;
    Ok((fetched.head.revision(), info.subject))
}

fn signal_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Storage, format!("cannot handle signals: {e}"))
}

/// A private storage directory in the temporary directory, removed at exit; leftovers of probes that were
/// killed (SIGKILL) are removed first.
fn storage_dir() -> Result<tempfile::TempDir, Error> {
    let parent = std::env::temp_dir();
    scratch::remove_stale(&parent, STORAGE_PREFIX);
    scratch::private_dir(&parent, STORAGE_PREFIX)
        .map_err(|e| Error::storage(format!("temporary directory in {}", Path::new(&parent).display()), e))
}
