//! Resolving a remote branch's head commit without downloading objects.
//!
//! One protocol-v2 `ls-refs` limited by `ref-prefix` to the one branch (or to `HEAD`, whose symref names the
//! default branch), no tags, no peeling of anything else: the cheapest question a git server can answer.
use std::fmt;

use gix::remote::ref_map;

use super::connect;
use super::error::{Error, ErrorKind, Result};
use super::remote::RemoteSpec;
use super::transport::{self, Settings};

/// A branch head on the remote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Head {
    /// The branch name (without `refs/heads/`), as asked for or as named by the remote HEAD.
    pub branch: String,
    /// The full hex commit id.
    pub sha: String,
}

impl Head {
    /// Flux's revision format: `<branch>@sha1:<sha>`.
    pub fn revision(&self) -> String {
        format!("{}@sha1:{}", self.branch, self.sha)
    }

    /// The first 7 hex digits of the commit.
    pub fn short_sha(&self) -> &str {
        self.sha.get(..7).unwrap_or(&self.sha)
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.revision())
    }
}

/// What a probe is, in error messages.
pub(crate) const ACTION: &str = "list the branches of";

/// The refspec to ask the remote about: the branch, or `HEAD`.
pub(crate) fn remote_ref(branch: Option<&str>) -> String {
    match branch {
        Some(b) => format!("refs/heads/{b}"),
        None => "HEAD".to_owned(),
    }
}

/// Ask the remote for `spec`'s head. `repo` is any repository (it only lends its configuration).
pub(crate) fn probe(spec: &RemoteSpec, repo: &gix::Repository, settings: &Settings<'_>) -> Result<Head> {
    let branch = spec.checked_branch()?;
    let remote = connect::remote(repo, spec, &remote_ref(branch.as_deref()))?;
    let opened = transport::open(spec, settings)?;
    let mut process = opened.process;
    let (map, _handshake) = connect::connection(&remote, opened.transport, spec)
        .ref_map(gix::progress::Discard, ref_map::Options::default())
        .map_err(|e| connect::failed(&e, spec, ACTION, settings, process.as_mut()))?;
    head_from_refs(spec, branch.as_deref(), &map.remote_refs)
}

/// Pick the head out of the advertised refs.
pub(crate) fn head_from_refs(
    spec: &RemoteSpec,
    branch: Option<&str>,
    refs: &[gix::protocol::handshake::Ref],
) -> Result<Head> {
    use gix::protocol::handshake::Ref;
    let wanted = remote_ref(branch);
    let found = refs.iter().find(|r| r.unpack().0 == wanted.as_str());
    let missing = |what: String| Error::new(ErrorKind::BranchNotFound, format!("{what} on {}", spec.url));
    match (found, branch) {
        (None, Some(b)) => Err(missing(format!("branch `{b}` does not exist"))),
        (None, None) => Err(missing(
            "the remote HEAD is not advertised (empty repository?)".to_owned(),
        )),
        (Some(Ref::Unborn { target, .. }), _) => Err(missing(format!(
            "the repository is empty (HEAD points to the unborn branch `{}`)",
            short_branch(&target.to_string())
        ))),
        (Some(Ref::Symbolic { target, object, .. }), None) => {
            let target = target.to_string();
            match target.strip_prefix("refs/heads/") {
                Some(name) => Ok(Head {
                    branch: name.to_owned(),
                    sha: object.to_string(),
                }),
                None => Err(missing(format!(
                    "the remote HEAD points to `{target}`, not a branch; set a branch"
                ))),
            }
        }
        (Some(Ref::Direct { .. } | Ref::Peeled { .. }), None) => Err(missing(
            "the remote HEAD is detached (it names no branch); set a branch".to_owned(),
        )),
        (Some(r), Some(b)) => {
            let (_, target, peeled) = r.unpack();
            let sha = peeled.or(target).map(|id| id.to_hex().to_string());
            sha.map(|sha| Head {
                branch: b.to_owned(),
                sha,
            })
            .ok_or_else(|| missing(format!("branch `{b}` is unborn")))
        }
    }
}

fn short_branch(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_format() {
        let head = Head {
            branch: "main".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        assert_eq!(head.revision(), "main@sha1:0123456789abcdef0123456789abcdef01234567");
        assert_eq!(head.short_sha(), "0123456");
    }
}
