//! What the git servers send, reduced to what cdkube needs: which repository (in every spelling the
//! payload gives), which branch, and the commit pushed.
use serde::Deserialize;

/// A push, as cdkube understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The repository's URLs as the payload spells them (clone, ssh, web).
    pub urls: Vec<String>,
    /// The branch pushed (without `refs/heads/`).
    pub branch: String,
    /// The commit the branch now points at; `None` when unknown or the branch was deleted.
    pub after: Option<String>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A push to a branch.
    Push(Push),
    /// GitHub's `ping` when a webhook is created.
    Ping,
    /// Anything else (tags, issues, …): accepted, nothing done; the text says what it was.
    Ignored(String),
}

#[derive(Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref")]
    reference: String,
    after: Option<String>,
    repository: GitHubRepository,
}

#[derive(Deserialize)]
struct GitHubRepository {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
    html_url: Option<String>,
}

/// A GitHub delivery of event `event` (`X-GitHub-Event`) with body `body`.
pub(super) fn github(event: &str, body: &[u8]) -> Result<Request, String> {
    match event {
        "ping" => Ok(Request::Ping),
        "push" => {
            let push: GitHubPush = parse(body)?;
            let r = push.repository;
            let urls = [r.clone_url, r.ssh_url, r.git_url, r.html_url];
            Ok(to_push(
                &push.reference,
                push.after,
                urls.into_iter().flatten().collect(),
            ))
        }
        other => Ok(Request::Ignored(format!("GitHub event {other:?} is not a push"))),
    }
}

#[derive(Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    reference: String,
    after: Option<String>,
    project: Option<GitLabProject>,
    repository: Option<GitLabProject>,
}

#[derive(Deserialize)]
struct GitLabProject {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
    homepage: Option<String>,
}

/// A GitLab delivery of event `event` (`X-Gitlab-Event`) with body `body`.
pub(super) fn gitlab(event: &str, body: &[u8]) -> Result<Request, String> {
    if event != "Push Hook" {
        return Ok(Request::Ignored(format!("GitLab event {event:?} is not a Push Hook")));
    }
    let push: GitLabPush = parse(body)?;
    let urls = [push.project, push.repository]
        .into_iter()
        .flatten()
        .flat_map(|p| [p.git_http_url, p.git_ssh_url, p.web_url, p.homepage])
        .flatten()
        .collect();
    Ok(to_push(&push.reference, push.after, urls))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericPush {
    repo: String,
    branch: String,
    commit: Option<String>,
}

/// A generic push: `{"repo": URL, "branch": NAME, "commit": SHA (optional)}`.
pub(super) fn generic(body: &[u8]) -> Result<Request, String> {
    let push: GenericPush = parse(body)?;
    if push.repo.trim().is_empty() || push.branch.trim().is_empty() {
        return Err("`repo` and `branch` must not be empty".into());
    }
    let reference = match push.branch.starts_with("refs/") {
        true => push.branch,
        false => format!("refs/heads/{}", push.branch),
    };
    Ok(to_push(&reference, push.commit, vec![push.repo]))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not a push payload: {e}"))
}

/// A push of `reference`; tags and other refs are ignored.
fn to_push(reference: &str, after: Option<String>, urls: Vec<String>) -> Request {
    let Some(branch) = reference.strip_prefix("refs/heads/").filter(|b| !b.is_empty()) else {
        return Request::Ignored(format!("{reference:?} is not a branch"));
    };
    // 40 or 64 hex digits; all zeros is a deleted branch, which the probe finds out by itself.
    let after = after
        .map(|a| a.to_ascii_lowercase())
        .filter(|a| matches!(a.len(), 40 | 64) && a.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|a| a.bytes().any(|b| b != b'0'));
    Request::Push(Push {
        urls,
        branch: branch.to_owned(),
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn github_push_ping_and_other_events() {
        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{SHA}","repository":{{"clone_url":"https://github.com/o/r.git","ssh_url":"git@github.com:o/r.git"}}}}"#
        );
        let Request::Push(push) = github("push", body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(push.branch, "main");
        assert_eq!(push.after.as_deref(), Some(SHA));
        assert_eq!(push.urls, ["https://github.com/o/r.git", "git@github.com:o/r.git"]);
        assert_eq!(github("ping", b"{}").unwrap(), Request::Ping);
        assert!(matches!(github("issues", b"{}").unwrap(), Request::Ignored(_)));
        assert!(github("push", b"{not json").unwrap_err().contains("not a push payload"));
        let tag = br#"{"ref":"refs/tags/v1","repository":{}}"#;
        assert!(matches!(github("push", tag).unwrap(), Request::Ignored(_)));
    }

    #[test]
    fn gitlab_push_hook() {
        let body = br#"{"ref":"refs/heads/dev","after":"0000000000000000000000000000000000000000","project":{"git_http_url":"https://gitlab.com/g/p.git"}}"#;
        let Request::Push(push) = gitlab("Push Hook", body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (push.branch.as_str(), push.after),
            ("dev", None),
            "a deleted branch names no commit"
        );
        assert!(matches!(
            gitlab("Merge Request Hook", b"{}").unwrap(),
            Request::Ignored(_)
        ));
    }

    #[test]
    fn generic_push() {
        let Request::Push(push) = generic(br#"{"repo":"https://git.example/r","branch":"main"}"#).unwrap() else {
            panic!()
        };
        assert_eq!((push.branch.as_str(), push.after), ("main", None));
        assert!(generic(br#"{"repo":"","branch":"main"}"#).is_err());
        assert!(generic(br#"{"repo":"x","branch":"main","extra":1}"#).is_err());
    }
}
