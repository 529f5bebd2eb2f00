//! `git daemon` serving a directory of bare repositories over git://.
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{ChildGuard, command, run, start_on_free_port};

/// A running `git daemon` on 127.0.0.1.
pub struct GitDaemon {
    _child: ChildGuard,
    /// The port it listens on.
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitDaemon {
    /// Export every repository under `base` (read-only).
    pub fn start(base: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cdkube-daemon-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("daemon.log");
        // Run git-daemon itself: `git daemon` would fork it as a child that outlives a killed `git`.
        let exec_path = run("git", &["--exec-path"], base);
        let program = format!("{}/git-daemon", exec_path.trim());
        let (child, port) = start_on_free_port("git daemon", &log, |port| {
            let log_file = std::fs::File::create(&log).expect("daemon log");
            command(
                &program,
                &[
                    "--reuseaddr",
                    "--verbose",
                    "--export-all",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={}", base.display()),
                    base.to_str().unwrap(),
                ],
                base,
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn git daemon")
        });
        GitDaemon {
            _child: child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The git:// URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// How many upload-pack requests (one per probe or fetch) the daemon has served so far.
    pub fn upload_pack_requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request upload-pack"))
            .count()
    }
}
