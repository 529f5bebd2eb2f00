//! `cdkube probe`: can cdkube see this repository with these credentials?
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cdkube::git::{Credentials, DEFAULT_TIMEOUT, Engine, EngineOptions, Error, ErrorKind, RemoteSpec, secret_file};

/// Arguments of `cdkube probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// Repository URL: https://, http://, ssh://, git@host:path, git://, file:// or a local path.
    repo: String,
    /// Branch to resolve; by default the branch the remote HEAD names.
    #[arg(long)]
    branch: Option<String>,
    /// Credentials: a Secret manifest (data/stringData) or a key=value file
    /// (username, password, bearerToken, identity, known_hosts, ca.crt).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Deadline of each network operation.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Prints `<branch>@sha1:<sha>` and the commit subject, or the classified error (exit 1).
pub(super) fn run(args: ProbeArgs) -> ExitCode {
    match probe(args) {
        Ok((revision, subject)) => {
            println!("{revision}");
            println!("{subject}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}: {}", err.kind(), err.message());
            ExitCode::FAILURE
        }
    }
}

fn probe(args: ProbeArgs) -> Result<(String, String), Error> {
    let credentials = match &args.secret_file {
        Some(path) => secret_file::load(path)?,
        None => Credentials::none(),
    };
    // The CLI runs on the user's own machine, where reading local repositories is harmless.
    let spec = RemoteSpec::new(&args.repo, args.branch.as_deref(), credentials, true)?;
    let storage = tempfile::Builder::new()
        .prefix("cdkube-probe-")
        .tempdir()
        .map_err(|e| Error::storage("temporary directory", e))?;
    let mut options = EngineOptions::new(storage.path());
    options.timeout = if args.timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        args.timeout
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Storage, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let engine = Engine::new(options)?;
        // A depth-1 fetch answers both questions: the head (from ls-refs) and its subject (from the commit).
        let fetched = engine.fetch(&spec).await?;
        let info = engine.commit_info(&spec, &fetched.head.sha).await?;
        Ok((fetched.head.revision(), info.subject))
    })
}
