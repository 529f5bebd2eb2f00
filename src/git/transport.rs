//! Opening a connection to a remote, for every scheme, in a way that can be stopped from another thread.
//!
//! We build gix transports ourselves instead of letting gix spawn them, for three reasons: the HTTP client
//! comes from the shared [`HttpPool`]; the git daemon socket gets read/write timeouts and a handle to shut it
//! down; ssh and local `git upload-pack` run as child processes we own (in their own process group, killed
//! if the thread that started them dies), so they can be killed on timeout or cancellation and their stderr
//! explains failures (host key, permission denied, no such repository). Every reader is [`Metered`] against
//! the operation's [`Bounds`].
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gix::protocol::transport::Protocol;
use gix::protocol::transport::client::TransportWithoutIO;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::transport::client::blocking_io::http::Transport as HttpTransport;
use gix::protocol::transport::client::git::{ConnectMode, blocking_io::Connection};

use super::bounds::{self, Bounds, Hook, Metered};
use super::error::{Error, ErrorKind, Result};
use super::http_pool::{ClientSettings, HttpPool, PoolKey};
use super::remote::{RemoteSpec, Scheme};
use super::scratch;

/// Stderr kept from a child process, enough for any error message.
const MAX_STDERR: usize = 16 * 1024;

/// Engine-wide settings a connection needs, and the bounds of the operation it serves.
pub(crate) struct Settings<'a> {
    /// The shared HTTP clients.
    pub http: &'a Arc<HttpPool>,
    /// Deadline of one network operation; also the socket and connect timeouts.
    pub timeout: Duration,
    /// The user's OpenSSH client config, if any.
    pub ssh_config: Option<&'a Path>,
    /// Where ssh key files go: a private directory under the storage directory.
    pub scratch: &'a Path,
    /// Bytes a fetch may receive for its pack.
    pub max_pack_bytes: u64,
    /// The operation's deadline, caps and stop switch.
    pub bounds: &'a Arc<Bounds>,
}

/// The transport every connection runs over.
pub(crate) type BoxedTransport = Box<dyn Transport + Send>;

/// An open connection plus what must live as long as it: the child process and the key files.
pub(crate) struct Opened {
    /// The connection gix talks over.
    pub transport: BoxedTransport,
    /// The ssh or `git upload-pack` process behind it, if any.
    pub process: Option<ProcessGuard>,
    /// ssh key and known_hosts files (0600), removed when dropped.
    _secret_files: Option<tempfile::TempDir>,
}

/// Open a connection to `spec`'s repository for fetching (upload-pack).
pub(crate) fn open(spec: &RemoteSpec, settings: &Settings<'_>) -> Result<Opened> {
    let plain = |transport: BoxedTransport| Opened {
        transport,
        process: None,
        _secret_files: None,
    };
    match spec.url.scheme() {
        Scheme::Http | Scheme::Https => open_http(spec, settings).map(plain),
        Scheme::Git => open_daemon(spec, settings).map(plain),
        Scheme::Ssh => open_ssh(spec, settings),
        Scheme::File => open_local(spec, settings),
    }
}

/// Smart HTTP over a client from the pool.
fn open_http(spec: &RemoteSpec, settings: &Settings<'_>) -> Result<BoxedTransport> {
    let (url, creds) = (&spec.url, &spec.credentials);
    let key = PoolKey {
        scheme: if url.scheme() == Scheme::Https { "https" } else { "http" },
        host: url.host().unwrap_or_default().to_owned(),
        port: url.port(),
        ca: creds.ca_cert().map(|_| creds.identity()),
    };
    let client_settings = ClientSettings {
        key,
        ca_pem: creds.ca_cert(),
        timeout: settings.timeout,
    };
    let client = settings.http.checkout(client_settings, settings.bounds);
    let mut transport = HttpTransport::new_http(client, url.gix().clone(), Protocol::V2, false);
    // Over https, gix sends the identity with the first request (no 401 round trip per probe) and drops it
    // on cross-host redirects. Over plain http gix refuses to; there the Authorization header goes in the
    // transport options instead (see `connect::transport_options`), as git itself does.
    if let Some((username, password)) = creds.basic_auth().filter(|_| url.scheme() == Scheme::Https) {
        let account = gix::sec::identity::Account {
            username: username.to_owned(),
            password: password.to_owned(),
            oauth_refresh_token: None,
        };
        transport
            .set_identity(account)
            .map_err(|e| Error::invalid(format!("cannot use the credentials: {e}")))?;
    }
    Ok(Box::new(transport))
}

/// The git daemon protocol over a metered socket with read/write timeouts that a stop shuts down.
fn open_daemon(spec: &RemoteSpec, settings: &Settings<'_>) -> Result<BoxedTransport> {
    let url = &spec.url;
    let host = url.host().unwrap_or_default();
    let connect_timeout = settings
        .bounds
        .remaining()
        .unwrap_or(settings.timeout)
        .max(Duration::from_millis(1));
    let socket = connect_tcp(host, url.port().unwrap_or(9418), connect_timeout)?;
    let io = |e: std::io::Error| Error::new(ErrorKind::Network, format!("cannot use the connection: {e}"));
    socket.set_read_timeout(Some(settings.timeout)).map_err(io)?;
    socket.set_write_timeout(Some(settings.timeout)).map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    settings.bounds.on_stop(Hook::Socket(socket.try_clone().map_err(io)?));
    let write = socket.try_clone().map_err(io)?;
    Ok(Box::new(Connection::new(
        Metered::new(socket, Arc::clone(settings.bounds)),
        write,
        Protocol::V2,
        url.path().to_owned(),
        Some((host.to_owned(), url.port())),
        ConnectMode::Daemon,
        false,
    )))
}

/// The OpenSSH client running `git-upload-pack` on the server, its key files in a private directory.
fn open_ssh(spec: &RemoteSpec, settings: &Settings<'_>) -> Result<Opened> {
    let files = scratch::private_dir(settings.scratch, scratch::SSH)
        .map_err(|e| Error::storage("temporary directory for ssh keys", e))?;
    let command = ssh_command(spec, settings, files.path())?;
    let (connection, process) = spawn(command, spec.url.path(), settings.bounds)?;
    Ok(Opened {
        transport: Box::new(connection),
        process: Some(process),
        _secret_files: Some(files),
    })
}

/// `git upload-pack` on a repository of the local file system.
fn open_local(spec: &RemoteSpec, settings: &Settings<'_>) -> Result<Opened> {
    let path = PathBuf::from(spec.url.path());
    if !super::remote::is_local_repository(&path) {
        return Err(Error::new(
            ErrorKind::RepositoryNotFound,
            format!("{} is not a git repository", path.display()),
        ));
    }
    let mut command = Command::new("git");
    command.arg("upload-pack").arg(&path).env("GIT_PROTOCOL", "version=2");
    let (connection, process) = spawn(command, spec.url.path(), settings.bounds)?;
    Ok(Opened {
        transport: Box::new(connection),
        process: Some(process),
        _secret_files: None,
    })
}

/// Connect to the first address of `host:port` that answers within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::new(ErrorKind::Network, format!("cannot resolve host `{host}`: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            Error::new(ErrorKind::Timeout, format!("connecting to {host}:{port} timed out"))
        }
        Some(e) => Error::new(ErrorKind::Network, format!("cannot connect to {host}:{port}: {e}")),
        None => Error::new(ErrorKind::Network, format!("host `{host}` has no address")),
    })
}

/// The OpenSSH client invocation: strict host key checking against the Secret's `known_hosts`, only the
/// Secret's key, no prompts, no agent, keep-alives so a dead server is noticed.
fn ssh_command(spec: &RemoteSpec, settings: &Settings<'_>, dir: &Path) -> Result<Command> {
    let creds = &spec.credentials;
    let url = &spec.url;
    let Some(known_hosts) = creds.known_hosts() else {
        // No host or port in the hint: the URL is the Pipeline author's text, never a command to paste.
        return Err(Error::invalid(
            "ssh needs the server's host key: add `known_hosts` to the Secret (the lines ssh-keyscan prints for this \
             server, checked against a fingerprint you trust); cdkube never trusts an unknown host",
        ));
    };
    let known_hosts_file = write_private(dir, "known_hosts", known_hosts)?;
    let mut command = Command::new("ssh");
    let config = settings
        .ssh_config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/dev/null"));
    command.arg("-F").arg(config);
    let timeout = settings.timeout.as_secs().max(1);
    let alive = (timeout / 4).clamp(1, 15);
    let mut options = vec![
        "BatchMode=yes".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={}", known_hosts_file.display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "UpdateHostKeys=no".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        "IdentityAgent=none".to_owned(),
        "PasswordAuthentication=no".to_owned(),
        "KbdInteractiveAuthentication=no".to_owned(),
        // A shared connection from the user's config would bypass the host key and identity set here.
        "ControlMaster=no".to_owned(),
        "ControlPath=none".to_owned(),
        format!("ConnectTimeout={timeout}"),
        format!("ServerAliveInterval={alive}"),
        "ServerAliveCountMax=3".to_owned(),
        "SendEnv=GIT_PROTOCOL".to_owned(),
        "LogLevel=ERROR".to_owned(),
    ];
    match creds.ssh_identity() {
        Some(key) => {
            let key_file = write_private(dir, "identity", &ensure_trailing_newline(key))?;
            options.push(format!("IdentityFile={}", key_file.display()));
        }
        None => options.push("IdentityFile=none".to_owned()),
    }
    for option in options {
        command.arg("-o").arg(option);
    }
    if let Some(port) = url.port() {
        command.arg("-p").arg(port.to_string());
    }
    // Whatever the destination looks like, it is not an option.
    command.arg("--");
    let host = url.host().unwrap_or_default();
    match url.user().or(creds.username()) {
        Some(user) => command.arg(format!("{user}@{host}")),
        None => command.arg(host),
    };
    command.arg(format!("git-upload-pack {}", shell_quote(url.path())));
    command.env("GIT_PROTOCOL", "version=2").env("LC_ALL", "C");
    Ok(command)
}

/// OpenSSH wants Unix line endings and a final newline in key files.
fn ensure_trailing_newline(text: &str) -> String {
    let mut text = text.replace("\r\n", "\n").trim_end().to_owned();
    text.push('\n');
    text
}

/// Write `content` to `dir/name` readable by the owner only.
fn write_private(dir: &Path, name: &str, content: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::storage(format!("writing {}", path.display()), e))?;
    file.write_all(content.as_bytes())
        .map_err(|e| Error::storage(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Quote `path` for the remote shell the way git does (`'…'`, with `'` and `!` escaped).
fn shell_quote(path: &str) -> String {
    let mut out = String::from("'");
    for c in path.chars() {
        match c {
            '\'' | '!' => {
                out.push_str("'\\");
                out.push(c);
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A child process speaking the git protocol on stdin/stdout; killed and reaped when dropped.
pub(crate) struct ProcessGuard {
    child: Arc<Mutex<Child>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl ProcessGuard {
    /// Stop the process and return what it wrote to stderr (for classifying a failure).
    pub(super) fn finish(&mut self) -> String {
        self.stop();
        self.stderr
            .lock()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            bounds::kill_group(&mut child);
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

type ProcessConnection = Connection<Metered<ChildStdout>, ChildStdin>;

/// Start `command` in a process group of its own (so a stop kills ssh and anything it started) that dies
/// with the thread that started it, even if cdkube itself is killed.
fn spawn(mut command: Command, path: &str, bounds: &Arc<Bounds>) -> Result<(ProcessConnection, ProcessGuard)> {
    let program = command.get_program().to_string_lossy().into_owned();
    command.process_group(0);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(ErrorKind::Network, format!("cannot run `{program}`: {e}")))?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(Error::new(ErrorKind::Network, format!("cannot talk to `{program}`")));
    };
    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&collected);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut out) = sink.lock()
                && out.len() < MAX_STDERR
            {
                out.extend_from_slice(&buf[..n]);
            }
        }
    });
    let child = Arc::new(Mutex::new(child));
    bounds.on_stop(Hook::Process(Arc::clone(&child)));
    let connection = Connection::new(
        Metered::new(stdout, Arc::clone(bounds)),
        stdin,
        Protocol::V2,
        path.to_owned(),
        None::<(String, Option<u16>)>,
        ConnectMode::Process,
        false,
    );
    Ok((
        connection,
        ProcessGuard {
            child,
            stderr: collected,
            reader: Some(reader),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_git() {
        assert_eq!(shell_quote("/srv/r.git"), "'/srv/r.git'");
        assert_eq!(shell_quote("it's!"), "'it'\\''s'\\!''");
    }

    #[test]
    fn the_known_hosts_hint_names_no_command_with_the_authors_host() {
        let spec = RemoteSpec::new(
            "ssh://git@attacker-chosen.example:2222/r.git",
            None,
            super::super::Credentials::none(),
            false,
        )
        .unwrap();
        let bounds = Arc::new(Bounds::local());
        let http = Arc::default();
        let settings = Settings {
            http: &http,
            timeout: Duration::from_secs(1),
            ssh_config: None,
            scratch: Path::new("/nonexistent"),
            max_pack_bytes: 1,
            bounds: &bounds,
        };
        let err = ssh_command(&spec, &settings, Path::new("/nonexistent")).unwrap_err();
        assert!(err.message().contains("known_hosts"), "{err}");
        assert!(
            !err.message().contains("attacker-chosen") && !err.message().contains("2222"),
            "{err}"
        );
    }
}
