//! What to talk to: a validated repository URL, an optional branch, and the credentials to use.
use std::fmt;
use std::path::Path;

use gix::bstr::ByteSlice;

use super::credentials::Credentials;
use super::error::{Error, Result};

/// How a repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Smart HTTP over TLS.
    Https,
    /// Smart HTTP in clear text.
    Http,
    /// `ssh://` or scp-like `user@host:path`, through the OpenSSH client.
    Ssh,
    /// The git daemon protocol, `git://`.
    Git,
    /// A repository on the local file system (`file://` or a plain path).
    File,
}

/// A parsed, validated repository URL. It never holds a password: user info given in an HTTP URL is moved
/// into the [`RemoteSpec`]'s credentials, so `Display` is always safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    url: gix::Url,
    scheme: Scheme,
}

impl RepoUrl {
    /// How the repository is reached.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host, for network schemes.
    pub fn host(&self) -> Option<&str> {
        self.url.host()
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.url.port
    }

    /// The user named in the URL (ssh login), if any.
    pub fn user(&self) -> Option<&str> {
        self.url.user()
    }

    /// The repository path as the server sees it (`/srv/repo.git`, or `org/repo.git` for scp-like URLs).
    pub fn path(&self) -> &str {
        self.url.path.to_str().unwrap_or_default()
    }

    /// The gix form of the URL, for building transports.
    pub(crate) fn gix(&self) -> &gix::Url {
        &self.url
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url.to_bstring())
    }
}

/// One remote branch to follow: the unit the engine probes, fetches and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Where the repository is.
    pub url: RepoUrl,
    /// The branch to follow; `None` follows whatever branch the remote HEAD names.
    pub branch: Option<String>,
    /// How to authenticate.
    pub credentials: Credentials,
}

impl RemoteSpec {
    /// Parse and validate a repository URL and branch. `allow_local` admits `file://` URLs and plain paths
    /// (only the embedded mode and the CLI allow them: on a cluster they would read the operator's disk).
    pub fn new(url: &str, branch: Option<&str>, credentials: Credentials, allow_local: bool) -> Result<Self> {
        let (url, url_credentials) = parse_url(url, allow_local)?;
        let credentials = match url_credentials {
            Some(_) if !credentials.is_empty() => {
                return Err(Error::invalid(
                    "the repository URL contains a user name and password and a Secret is given too; keep only one",
                ));
            }
            Some(from_url) => from_url,
            None => credentials,
        };
        // The Secret's user name becomes the ssh login when the URL names none, so it must not pass for an
        // option either (see `parse_url`).
        if url.scheme() == Scheme::Ssh && credentials.username().is_some_and(|u| u.starts_with('-')) {
            return Err(Error::invalid(
                "the Secret's `username` starts with `-`, which ssh would take for an option",
            ));
        }
        let branch = branch.map(normalize_branch).transpose()?;
        Ok(RemoteSpec {
            url,
            branch,
            credentials,
        })
    }

    /// The branch, checked again (the fields are public, so the engine re-checks before using it).
    pub(crate) fn checked_branch(&self) -> Result<Option<String>> {
        self.branch.as_deref().map(normalize_branch).transpose()
    }

    /// The (URL, branch, credentials identity) triple that identifies this spec for sharing probes.
    pub fn key(&self) -> (String, Option<String>, String) {
        (self.url.to_string(), self.branch.clone(), self.credentials.identity())
    }
}

/// Strip `refs/heads/` and check the rest is a valid branch name.
pub fn normalize_branch(branch: &str) -> Result<String> {
    let name = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    if name.trim().is_empty() {
        return Err(Error::invalid(
            "branch name is empty; omit the branch to follow the remote HEAD",
        ));
    }
    let full = format!("refs/heads/{name}");
    gix::validate::reference::branch_name(full.as_bytes().as_bstr())
        .map_err(|_| Error::invalid(format!("`{name}` is not a valid branch name")))?;
    Ok(name.to_owned())
}

const SUPPORTED: &str = "use https://, http://, ssh://, scp-like git@host:path or git://";

/// Parse `input`, returning the URL without user info and, for HTTP, the credentials taken out of it.
fn parse_url(input: &str, allow_local: bool) -> Result<(RepoUrl, Option<Credentials>)> {
    let input = input.trim();
    if input.is_empty() {
        return Err(Error::invalid(format!("repository URL is empty; {SUPPORTED}")));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "repository URL contains whitespace or control characters",
        ));
    }
    if let Some((scheme, _)) = input.split_once("://") {
        let known = ["https", "http", "ssh", "git", "file"];
        if !known.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid(format!(
                "unsupported URL scheme `{scheme}`; {SUPPORTED}"
            )));
        }
    } else if input.contains("::") {
        return Err(Error::invalid(format!(
            "remote helpers (`helper::address`) are not supported; {SUPPORTED}"
        )));
    }
    let malformed = |why: &str| Error::invalid(format!("malformed repository URL: {why}"));
    let mut url = gix::url::parse(input.as_bytes().as_bstr()).map_err(|_| malformed("cannot parse it"))?;
    let scheme = match url.scheme {
        gix::url::Scheme::Https => Scheme::Https,
        gix::url::Scheme::Http => Scheme::Http,
        gix::url::Scheme::Ssh => Scheme::Ssh,
        gix::url::Scheme::Git => Scheme::Git,
        gix::url::Scheme::File => Scheme::File,
        _ => {
            return Err(Error::invalid(format!("unsupported URL `{input}`; {SUPPORTED}")));
        }
    };
    if scheme == Scheme::File {
        if !allow_local {
            return Err(Error::invalid(format!(
                "local repositories (file:// URLs and paths) are not allowed here; {SUPPORTED}"
            )));
        }
        if url.host().is_some() {
            return Err(malformed("file:// URLs cannot name a host"));
        }
        let path = gix::path::from_bstr(url.path.as_bstr())
            .map_err(|_| malformed("the path is not valid"))?
            .into_owned();
        let absolute = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| Error::storage("current directory", e))?
                .join(path)
        };
        url.path = gix::path::into_bstr(absolute.as_path())
            .map_err(|_| malformed("the path is not valid"))?
            .into_owned();
        url.serialize_alternative_form = false;
        return Ok((RepoUrl { url, scheme }, None));
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(malformed("it names no host"));
    }
    if url.path.is_empty() || url.path == "/" {
        return Err(malformed("it names no repository path"));
    }
    // Host, user and path end up as ssh arguments: none may pass for an option.
    if url.path.starts_with(b"-")
        || url.host().is_some_and(|h| h.starts_with('-'))
        || url.user().is_some_and(|u| u.starts_with('-'))
    {
        return Err(malformed("user, host or path starts with `-`"));
    }
    // Smart HTTP appends `/info/refs?…` to the URL, which a query or fragment would break; a token put in
    // a query would also show wherever the URL is shown.
    if matches!(scheme, Scheme::Http | Scheme::Https) && url.path.iter().any(|b| matches!(b, b'?' | b'#')) {
        return Err(malformed(
            "HTTP URLs cannot have a query (`?…`) or fragment (`#…`); put tokens in a Secret",
        ));
    }
    let credentials = match scheme {
        Scheme::Http | Scheme::Https => match (url.user.take(), url.password.take()) {
            (Some(user), Some(password)) => Some(Credentials::basic(user, password)),
            (Some(_), None) => {
                return Err(malformed(
                    "HTTP URL has a user but no password; put both in a Secret instead",
                ));
            }
            _ => None,
        },
        Scheme::Ssh if url.password.is_some() => {
            return Err(malformed(
                "ssh URLs cannot carry a password; use an `identity` key in a Secret",
            ));
        }
        Scheme::Git if url.user.is_some() => {
            return Err(malformed("git:// URLs cannot carry a user"));
        }
        _ => None,
    };
    Ok((RepoUrl { url, scheme }, credentials))
}

/// Whether `path` looks like a git repository directory (bare or with a `.git`).
pub(crate) fn is_local_repository(path: &Path) -> bool {
    path.join("HEAD").is_file() || path.join(".git").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> Result<RemoteSpec> {
        RemoteSpec::new(url, None, Credentials::none(), false)
    }

    #[test]
    fn accepts_every_network_form() {
        assert_eq!(spec("https://github.com/org/repo").unwrap().url.scheme(), Scheme::Https);
        assert_eq!(spec("http://host:8080/git/r.git").unwrap().url.port(), Some(8080));
        let ssh = spec("ssh://git@host:2222/srv/r.git").unwrap();
        assert_eq!(
            (ssh.url.scheme(), ssh.url.user(), ssh.url.path()),
            (Scheme::Ssh, Some("git"), "/srv/r.git")
        );
        let scp = spec("git@github.com:org/repo.git").unwrap();
        assert_eq!(
            (scp.url.scheme(), scp.url.host(), scp.url.path()),
            (Scheme::Ssh, Some("github.com"), "org/repo.git")
        );
        assert_eq!(spec("git://host/r.git").unwrap().url.scheme(), Scheme::Git);
    }

    #[test]
    fn http_user_info_moves_into_credentials() {
        let s = spec("https://alice:s3cret@host/r.git").unwrap();
        assert!(!s.url.to_string().contains("s3cret"), "{}", s.url);
        assert_eq!(s.credentials.basic_auth(), Some(("alice", "s3cret")));
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, needle) in [
            ("", "empty"),
            ("ftp://host/r.git", "unsupported URL scheme `ftp`"),
            ("https://", "malformed"),
            ("https://host", "no repository path"),
            ("https://host/a b", "whitespace"),
            ("/srv/repo.git", "not allowed"),
            ("file:///srv/repo.git", "not allowed"),
            ("ssh://u:pw@host/r.git", "password"),
            ("ssh://-oProxyCommand=x@host/r.git", "starts with `-`"),
            ("git@host:-r.git", "malformed"),
            ("https://host/r.git?private_token=abc", "query"),
            ("https://host/r.git#main", "fragment"),
        ] {
            let err = spec(url).unwrap_err();
            assert_eq!(err.kind(), super::super::ErrorKind::InvalidInput);
            assert!(err.message().contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn ssh_logins_from_the_secret_cannot_pass_for_options() {
        let creds = Credentials::basic("-oProxyCommand=touch /tmp/x", "");
        let err = RemoteSpec::new("ssh://host/r.git", None, creds.clone(), false).unwrap_err();
        assert!(err.message().contains("starts with `-`"), "{err}");
        assert!(RemoteSpec::new("https://host/r.git", None, creds, false).is_ok());
    }

    #[test]
    fn local_paths_only_when_allowed() {
        let s = RemoteSpec::new("/srv/repo.git", None, Credentials::none(), true).unwrap();
        assert_eq!((s.url.scheme(), s.url.path()), (Scheme::File, "/srv/repo.git"));
    }

    #[test]
    fn branches_are_validated() {
        let ok = RemoteSpec::new("https://h/r", Some("refs/heads/main"), Credentials::none(), false).unwrap();
        assert_eq!(ok.branch.as_deref(), Some("main"));
        let empty = RemoteSpec::new("https://h/r", Some(""), Credentials::none(), false).unwrap_err();
        assert!(empty.message().contains("empty"), "{empty}");
        let bad = RemoteSpec::new("https://h/r", Some("a..b"), Credentials::none(), false).unwrap_err();
        assert!(bad.message().contains("not a valid branch"), "{bad}");
    }
}
