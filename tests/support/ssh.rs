//! OpenSSH `sshd` on 127.0.0.1 with a generated host key, a generated client key in `authorized_keys`,
//! and the matching `known_hosts` line — plus a wrong `known_hosts` for host-key tests.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{ChildGuard, run, start_on_free_port};

/// A running sshd that lets the current user in with [`SshServer::identity`].
pub struct SshServer {
    _child: ChildGuard,
    /// The port it listens on.
    pub port: u16,
    /// The login user (the user running the tests: sshd can only log in as that user).
    pub user: String,
    /// The client private key (OpenSSH format, unencrypted).
    pub identity: String,
    /// `known_hosts` line pinning this server's host key.
    pub known_hosts: String,
    /// A `known_hosts` line with the right host but another key.
    pub wrong_known_hosts: String,
    dir: tempfile::TempDir,
}

impl SshServer {
    /// Generate keys and start sshd.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cdkube-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for (name, comment) in [
            ("host_key", "host"),
            ("client_key", "client"),
            ("other_host_key", "other"),
        ] {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", name],
                d,
            );
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd (as root) insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = run("id", &["-un"], d).trim().to_owned();
        let sshd = find_sshd();
        let (child, port) = start_on_free_port("sshd", &d.join("sshd.log"), |port| {
            let conf = d.join("sshd_config");
            std::fs::write(&conf, config(d, port)).unwrap();
            let log = std::fs::File::create(d.join("sshd.log")).unwrap();
            std::process::Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn sshd (apt-get install openssh-server)")
        });
        let pinned = |key: &str| {
            let public = std::fs::read_to_string(d.join(key)).unwrap();
            let fields: Vec<&str> = public.split_whitespace().take(2).collect();
            format!("[127.0.0.1]:{port} {}\n", fields.join(" "))
        };
        SshServer {
            _child: child,
            port,
            identity: std::fs::read_to_string(d.join("client_key")).unwrap(),
            known_hosts: pinned("host_key.pub"),
            wrong_known_hosts: pinned("other_host_key.pub"),
            user,
            dir,
        }
    }

    /// `ssh://user@127.0.0.1:port/<absolute path>`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, repo.display())
    }

    /// A scp-like `user@cdkube-fixture:<absolute path>` URL; scp syntax has no port, so it needs
    /// [`SshServer::ssh_config`] which maps the `cdkube-fixture` alias to this server.
    pub fn scp_url(&self, repo: &Path) -> String {
        format!("{}@cdkube-fixture:{}", self.user, repo.display())
    }

    /// An ssh client config mapping host `cdkube-fixture` to this server.
    pub fn ssh_config(&self) -> PathBuf {
        let path = self.dir.path().join("client_config");
        std::fs::write(
            &path,
            format!("Host cdkube-fixture\n  HostName 127.0.0.1\n  Port {}\n", self.port),
        )
        .unwrap();
        path
    }

    /// A Secret data map with this server's identity and `known_hosts`.
    pub fn secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("identity".to_owned(), self.identity.clone().into_bytes()),
            ("known_hosts".to_owned(), self.known_hosts.clone().into_bytes()),
        ])
    }
}

fn find_sshd() -> PathBuf {
    ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("sshd not found (apt-get install openssh-server)")
}

fn config(d: &Path, port: u16) -> String {
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\nUsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nAcceptEnv GIT_PROTOCOL\nLogLevel VERBOSE\n",
        d = d.display()
    )
}
