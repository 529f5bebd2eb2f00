//! Bringing a branch's head commit into the repository's bare cache.
//!
//! First fetch of a branch: shallow (depth 1), single branch, no tags. Later fetches: only the objects the
//! cache lacks (the server negotiates against what we have). The refspec is forced (`+`), so a force-push
//! simply moves the cached branch. A branch deleted on the remote is an error and leaves the cached branch
//! (the last good state) untouched.
use std::num::NonZeroU32;

use gix::remote::fetch::{Shallow, Status, refs::update::Mode};
use gix::remote::ref_map;

use super::bounds::{self, Cap};
use super::cache::{self, Caches};
use super::connect;
use super::error::{Error, ErrorKind, Result};
use super::probe::{self, Head};
use super::remote::RemoteSpec;
use super::transport::{self, Settings};

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The head now in the cache.
    pub head: Head,
    /// The commit the cache had for this branch before, if any.
    pub previous: Option<String>,
    /// Whether the branch moved to a commit that does not descend from `previous` (a force-push). Not
    /// known, so `false`, when the cache was rebuilt.
    pub forced: bool,
    /// Objects received (0 when the cache was already up to date).
    pub objects_received: u64,
    /// Whether the cache was rebuilt from scratch (it had grown past its limits, or was unreadable).
    pub recloned: bool,
}

/// What a fetch is, in error messages.
pub(crate) const ACTION: &str = "fetch from";

/// The local ref that tracks `branch` in the cache.
pub(crate) fn local_ref(branch: Option<&str>) -> String {
    match branch {
        Some(b) => format!("refs/heads/{b}"),
        None => "refs/cdkube/remote-head".to_owned(),
    }
}

/// Fetch `spec`'s head into its cache.
pub(crate) fn fetch(spec: &RemoteSpec, caches: &Caches, settings: &Settings<'_>) -> Result<FetchOutcome> {
    let branch = spec.checked_branch()?;
    let dir = caches.dir(&spec.url);
    let lock = caches.lock(&dir);
    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    // Rebuild aside a cache that grew too big, whose last incremental fetch timed out, or that cannot be
    // opened (e.g. a crash while creating it).
    let recloned =
        dir.exists() && (caches.over_limits(&dir) || cache::reclone_requested(&dir) || cache::open(&dir).is_err());
    let target = if !dir.exists() || recloned {
        caches.scratch_dir(&dir)
    } else {
        dir.clone()
    };
    // What the old cache had, to report it even when the cache is rebuilt.
    let previous = recloned
        .then(|| {
            cache::open(&dir)
                .ok()
                .and_then(|repo| tracked_commit(&repo, &local_ref(branch.as_deref())))
        })
        .flatten();
    let result = fetch_into(spec, branch.as_deref(), &target, settings);
    if target == dir && result.as_ref().is_err_and(|e| e.kind() == ErrorKind::Timeout) {
        cache::request_reclone(&dir);
    }
    if target != dir {
        match &result {
            Ok(_) => cache::swap_in(&target, &dir)?,
            Err(_) => {
                let _ = std::fs::remove_dir_all(&target);
            }
        }
    }
    result.map(|outcome| match recloned {
        true => FetchOutcome {
            recloned,
            previous: previous.map(|id| id.to_string()),
            ..outcome
        },
        false => outcome,
    })
}

/// The commit the cache's `local` ref points to.
fn tracked_commit(repo: &gix::Repository, local: &str) -> Option<gix::ObjectId> {
    let mut reference = repo.try_find_reference(local).ok().flatten()?;
    reference.peel_to_id().ok().map(|id| id.detach())
}

fn fetch_into(
    spec: &RemoteSpec,
    branch: Option<&str>,
    dir: &std::path::Path,
    settings: &Settings<'_>,
) -> Result<FetchOutcome> {
    let repo = cache::open_for_fetch(dir, settings.max_pack_bytes)?;
    let local = local_ref(branch);
    let previous = tracked_commit(&repo, &local);
    let remote = connect::remote(&repo, spec, &format!("+{}:{local}", probe::remote_ref(branch)))?;
    let opened = transport::open(spec, settings)?;
    let mut process = opened.process;
    let prepared = connect::connection(&remote, opened.transport, spec)
        .prepare_fetch(gix::progress::Discard, ref_map::Options::default())
        .map_err(|e| connect::failed(&e, spec, ACTION, settings, process.as_mut()))?;
    // A missing branch fails here, before anything is written: the cached branch stays as it was.
    let head = probe::head_from_refs(spec, branch, &prepared.ref_map().remote_refs).map_err(|e| match &previous {
        Some(id) if e.kind() == ErrorKind::BranchNotFound => Error::new(
            e.kind(),
            format!("{}; the cache keeps the last fetched commit {id}", e.message()),
        ),
        _ => e,
    })?;
    let shallow = match previous {
        None => Shallow::DepthAtRemote(NonZeroU32::MIN),
        Some(_) => Shallow::NoChange,
    };
    // From here on the server sends the pack, under its own cap; its error messages come in the sideband.
    settings.bounds.enter(Cap {
        what: bounds::PACK,
        limit: settings.max_pack_bytes,
        option: "--max-pack-size",
    });
    let outcome = prepared
        .with_shallow(shallow)
        .receive(gix::progress::Discard, settings.bounds.flag())
        .map_err(|e| connect::failed(&e, spec, ACTION, settings, process.as_mut()))?;
    let (objects_received, updates) = match &outcome.status {
        Status::Change {
            write_pack_bundle,
            update_refs,
            ..
        } => (write_pack_bundle.index.num_objects as u64, &update_refs.updates),
        Status::NoPackReceived { update_refs, .. } => (0, &update_refs.updates),
    };
    let forced = previous.is_some() && updates.iter().any(|u| matches!(u.mode, Mode::Forced));
    Ok(FetchOutcome {
        head,
        previous: previous.map(|id| id.to_string()),
        forced,
        objects_received,
        recloned: false,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use crate::git::{Credentials, Engine, EngineOptions, RemoteSpec};

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    #[tokio::test]
    async fn a_cache_marked_after_a_timeout_is_rebuilt_at_the_next_fetch() {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = tmp.path().join("upstream");
        std::fs::create_dir(&upstream).unwrap();
        git(&upstream, &["init", "-q", "-b", "main"]);
        git(&upstream, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let engine = Engine::new(EngineOptions::new(tmp.path().join("storage"))).unwrap();
        let url = format!("file://{}", upstream.display());
        let spec = RemoteSpec::new(&url, Some("main"), Credentials::none(), true).unwrap();

        let first = engine.fetch(&spec).await.unwrap();
        assert!(
            !engine.fetch(&spec).await.unwrap().recloned,
            "an unmarked cache is fetched incrementally"
        );
        let caches = tmp.path().join("storage/repos");
        let dir = std::fs::read_dir(&caches).unwrap().next().unwrap().unwrap().path();
        super::cache::request_reclone(&dir);

        let again = engine.fetch(&spec).await.unwrap();
        assert!(again.recloned);
        assert_eq!(again.previous.as_deref(), Some(first.head.sha.as_str()));
        assert!(
            !super::cache::reclone_requested(&dir),
            "the rebuilt cache carries no marker"
        );
    }
}
