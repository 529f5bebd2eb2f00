//! Which poller keys a push is about. A push names its repository in the git server's spellings
//! (`https://github.com/o/r.git`, `git@github.com:o/r.git`, `ssh://git@github.com/o/r`), and a Pipeline
//! may use any other; both are reduced to one identity — host (lowercase, without user or port) and path
//! (without a trailing `/` or `.git`), compared case-insensitively. A false match costs one extra probe,
//! never a build: the probe decides.
use crate::git::Head;
use crate::schedule::Key;

/// The identity of a repository URL: `host/path`, lowercase; `None` when `url` has no path.
pub fn repo_identity(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p)),
        None if url.starts_with('/') => ("", url),
        // scp-like `user@host:path` (a colon before any slash).
        None => match url.split_once(':') {
            Some((h, p)) if !h.contains('/') => (h, p),
            _ => ("", url),
        },
    };
    let host = bare_host(host);
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host, path).to_ascii_lowercase())
}

/// `host` without user and port (`git@[::1]:22` → `::1`).
fn bare_host(host: &str) -> &str {
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A push for one of `identities` on `branch`: which keys it is about. A key following the remote HEAD
/// (no branch) matches when its last head was on `branch`, or when no head is known yet.
pub(super) fn matches(identities: &[String], branch: &str, key: &Key, head: Option<&Head>) -> bool {
    let branch_matches = match (&key.branch, head) {
        (Some(b), _) => b == branch,
        (None, Some(h)) => h.branch == branch,
        (None, None) => true,
    };
    branch_matches && repo_identity(&key.url).is_some_and(|id| identities.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_repository_share_an_identity() {
        struct Case {
            url: &'static str,
            identity: Option<&'static str>,
        }
        let cases = [
            Case {
                url: "https://github.com/Org/Repo.git",
                identity: Some("github.com/org/repo"),
            },
            Case {
                url: "http://GitHub.com/org/repo",
                identity: Some("github.com/org/repo"),
            },
            Case {
                url: "git@github.com:org/repo.git",
                identity: Some("github.com/org/repo"),
            },
            Case {
                url: "ssh://git@github.com:22/org/repo.git/",
                identity: Some("github.com/org/repo"),
            },
            Case {
                url: "git://github.com/org/repo",
                identity: Some("github.com/org/repo"),
            },
            Case {
                url: "https://user@gitlab.example.com:8443/group/sub/proj.git",
                identity: Some("gitlab.example.com/group/sub/proj"),
            },
            Case {
                url: "http://127.0.0.1:39001/repo.git",
                identity: Some("127.0.0.1/repo"),
            },
            Case {
                url: "http://[::1]:8080/repo.git",
                identity: Some("::1/repo"),
            },
            Case {
                url: "file:///srv/git/app.git",
                identity: Some("/srv/git/app"),
            },
            Case {
                url: "/srv/git/app",
                identity: Some("/srv/git/app"),
            },
            Case {
                url: "https://github.com/",
                identity: None,
            },
            Case {
                url: "",
                identity: None,
            },
        ];
        for case in cases {
            assert_eq!(repo_identity(case.url).as_deref(), case.identity, "{}", case.url);
        }
    }

    #[test]
    fn a_push_matches_keys_by_identity_and_branch() {
        let key = |url: &str, branch: Option<&str>| Key {
            url: url.into(),
            branch: branch.map(Into::into),
            credentials: "none".into(),
        };
        let ids = vec!["github.com/org/repo".to_owned()];
        let head = Head {
            branch: "main".into(),
            sha: "a".repeat(40),
        };
        assert!(matches(
            &ids,
            "main",
            &key("git@github.com:org/repo.git", Some("main")),
            None
        ));
        assert!(!matches(
            &ids,
            "dev",
            &key("https://github.com/org/repo", Some("main")),
            None
        ));
        assert!(matches(
            &ids,
            "main",
            &key("https://github.com/org/repo", None),
            Some(&head)
        ));
        assert!(!matches(
            &ids,
            "dev",
            &key("https://github.com/org/repo", None),
            Some(&head)
        ));
        assert!(!matches(
            &ids,
            "main",
            &key("https://github.com/org/other", Some("main")),
            None
        ));
    }
}
