//! Upstream repositories: bare repos under one root (served by the daemons) and a working clone per repo
//! to commit, force-push and delete branches with the real `git`.
use std::path::{Path, PathBuf};

use super::run;

/// A directory of bare repositories (`<root>/<name>.git`) that servers export.
pub struct Repos {
    dir: tempfile::TempDir,
}

impl Default for Repos {
    fn default() -> Self {
        Repos::new()
    }
}

impl Repos {
    /// An empty root.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cdkube-upstream-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        std::fs::create_dir_all(dir.path().join("repos")).expect("repos dir");
        Repos { dir }
    }

    /// The directory holding the bare repositories (the servers' base path).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// A new repository `name` whose `main` holds one commit "first" with a README.
    pub fn create(&self, name: &str) -> Upstream {
        let upstream = self.create_empty(name);
        upstream.commit(&[("README.md", &format!("hello from {name}\n"))], "first");
        upstream
    }

    /// A new repository with no commits (its HEAD is the unborn `main`).
    pub fn create_empty(&self, name: &str) -> Upstream {
        let bare = self.root().join(format!("{name}.git"));
        let work = self.dir.path().join("work").join(name);
        let root = self.dir.path();
        run(
            "git",
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            root,
        );
        run("git", &["init", "-q", "-b", "main", work.to_str().unwrap()], root);
        run("git", &["remote", "add", "origin", bare.to_str().unwrap()], &work);
        Upstream {
            name: name.to_owned(),
            bare,
            work,
        }
    }
}

/// One upstream repository and its working clone.
pub struct Upstream {
    /// The repository name (`<name>.git` on the servers).
    pub name: String,
    /// The bare repository the servers export.
    pub bare: PathBuf,
    /// The working clone used to make commits.
    pub work: PathBuf,
}

impl Upstream {
    /// Write `files` (path, content), commit with `message` on the current branch, push; returns the sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let file = self.work.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, content).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.push();
        self.head()
    }

    /// Run `git args` in the working clone.
    pub fn git(&self, args: &[&str]) -> String {
        run("git", args, &self.work)
    }

    /// Push the current branch (forced).
    pub fn push(&self) {
        let branch = self.git(&["rev-parse", "--abbrev-ref", "HEAD"]);
        self.git(&[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("HEAD:refs/heads/{}", branch.trim()),
        ]);
    }

    /// The working clone's current commit.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Rewrite history: reset the branch one commit back, commit something else and force-push.
    pub fn force_push_rewrite(&self, message: &str) -> String {
        self.git(&["reset", "-q", "--hard", "HEAD~1"]);
        self.commit(&[("rewritten.txt", message)], message)
    }

    /// Create and push branch `name` at the current commit, and switch the clone to it.
    pub fn branch(&self, name: &str) {
        self.git(&["checkout", "-q", "-b", name]);
        self.push();
    }

    /// Switch the working clone to an existing branch.
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// Delete branch `name` on the upstream.
    pub fn delete_remote_branch(&self, name: &str) {
        self.git(&["push", "-q", "origin", &format!(":refs/heads/{name}")]);
    }

    /// The bare repository path as a string.
    pub fn bare_path(&self) -> &str {
        self.bare.to_str().unwrap()
    }

    /// The working clone path.
    pub fn work_path(&self) -> &Path {
        &self.work
    }
}
