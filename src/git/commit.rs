//! Commit metadata for the audit trail: subject, author, time.
use gix::ObjectId;

use super::error::{Error, ErrorKind, Result};

/// What a Pipeline's history records about a built commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full hex commit id.
    pub sha: String,
    /// The first paragraph of the message, folded onto one line.
    pub subject: String,
    /// The author's name.
    pub author_name: String,
    /// The author's email.
    pub author_email: String,
    /// The committer time, seconds since the Unix epoch (also the export's mtime).
    pub time: i64,
    /// The committer's UTC offset in seconds.
    pub time_offset: i32,
}

impl CommitInfo {
    /// `Name <email>`, as git prints it.
    pub fn author(&self) -> String {
        format!("{} <{}>", self.author_name, self.author_email)
    }
}

/// Parse `sha` as a full or abbreviated-free object id.
pub(crate) fn parse_id(sha: &str) -> Result<ObjectId> {
    ObjectId::from_hex(sha.as_bytes())
        .map_err(|_| Error::invalid(format!("`{sha}` is not a full hexadecimal commit id")))
}

/// The commit `id` in `repo`, which a fetch must have brought in.
pub(crate) fn find(repo: &gix::Repository, id: ObjectId) -> Result<gix::Commit<'_>> {
    repo.find_commit(id).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("commit {id} is not in the local cache (fetch it first): {e}"),
        )
    })
}

/// Read the commit `id` from `repo`.
pub(crate) fn read(repo: &gix::Repository, id: ObjectId) -> Result<CommitInfo> {
    let commit = find(repo, id)?;
    let corrupt = |e: gix::Error| Error::new(ErrorKind::Storage, format!("commit {id} cannot be decoded: {e}"));
    let author = commit.author().map_err(corrupt)?;
    let committer_time = commit.time().map_err(corrupt)?;
    let message = commit.message().map_err(corrupt)?;
    Ok(CommitInfo {
        sha: id.to_string(),
        subject: message.summary().to_string(),
        author_name: author.name.to_string(),
        author_email: author.email.to_string(),
        time: committer_time.seconds,
        time_offset: committer_time.offset,
    })
}
