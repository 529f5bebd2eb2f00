//! `git http-backend` behind lighttpd, on plain HTTP or HTTPS with a private CA.
//!
//! One server exposes every repository under three prefixes: `/git/` (open), `/basic/` (HTTP basic auth,
//! user [`USER`] / [`PASSWORD`]) and `/bearer/` (`Authorization: Bearer` [`TOKEN`]). A tiny CGI wrapper
//! logs each request (method, client port, URI) before git answers it, so a test can count requests and
//! see whether they shared a connection — the log is complete as soon as the client has its response.
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{ChildGuard, run, start_on_free_port};

/// The user accepted under `/basic/`.
pub const USER: &str = "alice";
/// Alice's password.
pub const PASSWORD: &str = "s3cret-pa55";
/// The token accepted under `/bearer/`.
pub const TOKEN: &str = "tok-0123456789abcdef";

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The client's TCP port: equal ports mean one kept-alive connection.
    pub client_port: u16,
    /// The request URI.
    pub uri: String,
}

/// A running lighttpd serving git repositories.
pub struct HttpGit {
    _child: ChildGuard,
    /// The port it listens on.
    pub port: u16,
    tls: bool,
    dir: tempfile::TempDir,
}

impl HttpGit {
    /// Serve the repositories under `base` over plain HTTP.
    pub fn start(base: &Path) -> Self {
        Self::start_with(base, false)
    }

    /// Serve the repositories under `base` over HTTPS, with a certificate for 127.0.0.1 signed by a fresh CA.
    pub fn start_tls(base: &Path) -> Self {
        Self::start_with(base, true)
    }

    fn start_with(base: &Path, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cdkube-http-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let backend = format!("{}/git-http-backend", run("git", &["--exec-path"], d).trim());
        let wrapper = d.join("git-http-backend.cgi");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s %s %s\\n' \"$REQUEST_METHOD\" \"$REMOTE_PORT\" \"$REQUEST_URI\" >> '{}'\nexec '{backend}'\n",
                d.join("requests.log").display()
            ),
        )
        .unwrap();
        make_executable(&wrapper);
        std::fs::write(d.join("users"), format!("{USER}:{PASSWORD}\n")).unwrap();
        if tls {
            make_certificates(d);
        }
        let (child, port) = start_on_free_port("lighttpd", &d.join("stderr.log"), |port| {
            let conf = d.join("lighttpd.conf");
            std::fs::write(&conf, config(d, base, &wrapper, port, tls)).unwrap();
            let log = std::fs::File::create(d.join("stderr.log")).unwrap();
            std::process::Command::new("lighttpd")
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn lighttpd (apt-get install lighttpd)")
        });
        HttpGit {
            _child: child,
            port,
            tls,
            dir,
        }
    }

    /// The URL of repository `name` under `prefix` (`"git"`, `"basic"` or `"bearer"`).
    pub fn url(&self, prefix: &str, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{prefix}/{name}.git", self.port)
    }

    /// The PEM of the CA that signed the HTTPS certificate (TLS servers only).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.crt")).expect("a TLS server has a CA")
    }

    /// Every request that reached git so far, in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ' ');
                Some(HttpRequest {
                    method: fields.next()?.to_owned(),
                    client_port: fields.next()?.parse().ok()?,
                    uri: fields.next()?.to_owned(),
                })
            })
            .collect()
    }

    /// The server's directory (logs, certificates).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn config(d: &Path, base: &Path, wrapper: &Path, port: u16, tls: bool) -> String {
    let mut modules = vec!["mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi"];
    if tls {
        modules.push("mod_openssl");
    }
    let modules = modules
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let wrapper = wrapper.display();
    let mut conf = format!(
        r#"server.modules = ({modules})
server.document-root = "{base}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/error.log"
server.max-keep-alive-requests = 1000
server.max-keep-alive-idle = 30
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
setenv.add-environment = ("GIT_PROJECT_ROOT" => "{base}", "GIT_HTTP_EXPORT_ALL" => "1")
alias.url = ("/git" => "{wrapper}", "/basic" => "{wrapper}", "/bearer" => "{wrapper}")
cgi.assign = (".cgi" => "")
$HTTP["url"] =~ "^/basic/" {{
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
$HTTP["url"] =~ "^/bearer/" {{
  $REQUEST_HEADER["Authorization"] != "Bearer {TOKEN}" {{
    auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "user=token-required"))
  }}
}}
"#,
        base = base.display(),
        d = d.display(),
    );
    if tls {
        conf.push_str(&format!(
            "ssl.engine = \"enable\"\nssl.pemfile = \"{d}/server.crt\"\nssl.privkey = \"{d}/server.key\"\n",
            d = d.display()
        ));
    }
    conf
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, with `openssl`.
fn make_certificates(d: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cdkube test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run("openssl", &ca, d);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    run("openssl", &csr, d);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        d,
    );
}
