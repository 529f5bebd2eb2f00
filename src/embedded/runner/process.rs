//! One container as one host process group: spawn (optionally inside a private mount namespace),
//! signal the whole group, wait for the exit status.
//!
//! Every container gets its own process group so that a shell and the children it forks are stopped
//! together, as a container runtime stops everything in the container's cgroup.
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

/// What could not be started.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// The log file or a workspace directory could not be prepared.
    #[error("preparing {path}: {source}")]
    Prepare {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A path held a NUL byte and cannot be passed to the kernel.
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    /// A mountPath or workingDir whose directory would have to be created on the host itself.
    #[error("{0} does not exist on the host; the runner does not create directories in host filesystems")]
    HostPath(PathBuf),
    /// `exec` (or the namespace setup just before it) failed.
    #[error("starting {program:?}: {source}")]
    Spawn {
        /// The program that was to run.
        program: String,
        /// The underlying error, as the kernel reported it.
        source: std::io::Error,
    },
}

/// A bind mount made inside the container's private mount namespace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct BindMount {
    /// Host directory (the volume's directory).
    pub source: PathBuf,
    /// Absolute path as the container sees it (the volumeMount's `mountPath`).
    pub target: PathBuf,
    /// Remount read-only (`readOnly: true`).
    pub read_only: bool,
}

/// A private root: a tmpfs holding the host's top-level directories, bind-mounted read-only (but
/// `/dev`, `/proc` and `/tmp`), the hidden host directories, and the volumes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Isolation {
    /// Host directory on which the tmpfs root is mounted (inside the namespace only).
    pub root: PathBuf,
    /// Volume mounts, applied in order (parents before children).
    pub mounts: Vec<BindMount>,
    /// Absolute host directories covered by an empty tmpfs (the runner's state directory: the
    /// admin kubeconfig and every other Pod's files).
    pub hidden: Vec<PathBuf>,
}

/// Top-level host directories bound writable: device nodes, the proc filesystem, and `/tmp`, which
/// builds expect to write and where the runner's own binary may live (a checkout under /tmp).
const WRITABLE_TOP_LEVEL: [&str; 3] = ["dev", "proc", "tmp"];

/// A fully resolved container process.
#[derive(Clone, Debug)]
pub(super) struct ProcessSpec {
    /// Program to exec (searched in `PATH` when it has no `/`).
    pub program: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// The complete environment; nothing is inherited from the runner.
    pub env: Vec<(String, String)>,
    /// Working directory: a container path under [`Isolation`], a host path otherwise.
    pub cwd: PathBuf,
    /// `Some` to run in a private mount namespace.
    pub isolation: Option<Isolation>,
    /// File that receives stdout and stderr, appended, interleaved in write order.
    pub log: PathBuf,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Exit {
    /// Normal exit with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The exit code Kubernetes reports: the status, or 128 + signal number.
    pub(super) fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// A started process group.
pub(super) struct Running {
    /// Process id of the leader, which is also the process group id.
    pub pid: i32,
    child: Child,
}

impl Running {
    /// Waits for the leader to exit, then kills what is left of its group (a container's processes
    /// do not outlive its main process).
    pub(super) async fn wait(mut self) -> Exit {
        let status = self.child.wait().await;
        signal_group(self.pid, libc::SIGKILL);
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::Code(-1),
            },
            // Only possible if the child was already reaped, which nothing else here does.
            Err(_) => Exit::Code(-1),
        }
    }
}

/// Sends `signal` to every process of the group led by `pgid`. A group that is already gone is fine.
pub(super) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal; pgid > 1 never addresses "every process".
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Stops a group the way kubelet stops a container: SIGTERM, then SIGKILL after `grace`.
/// Returns at once; the caller learns about the exit through [`Running::wait`].
pub(super) fn terminate_group(pgid: i32, grace: Duration) -> tokio::task::JoinHandle<()> {
    signal_group(pgid, libc::SIGTERM);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        signal_group(pgid, libc::SIGKILL);
    })
}

/// Starts the process. Its stdout and stderr both append to `spec.log`.
pub(super) fn spawn(spec: &ProcessSpec) -> Result<Running, Error> {
    let log = open_log(&spec.log)?;
    let err_log = log.try_clone().map_err(|source| Error::Prepare {
        path: spec.log.clone(),
        source,
    })?;
    let mut cmd = command(spec)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log));
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    Ok(Running { pid, child })
}

/// Starts the process (an `exec` into a container) with piped stdin, stdout and stderr, as the
/// leader of its own process group; `stdin` false gives it /dev/null.
pub(super) fn spawn_piped(spec: &ProcessSpec, stdin: bool) -> Result<Child, Error> {
    let mut cmd = command(spec)?;
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().map_err(|source| Error::Spawn {
        program: spec.program.clone(),
        source,
    })
}

/// The command of `spec`, stdio not set: its own process group, the spec's environment only, in
/// its working directory (inside its private mount namespace when isolated).
fn command(spec: &ProcessSpec) -> Result<tokio::process::Command, Error> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    match &spec.isolation {
        None => {
            cmd.current_dir(&spec.cwd);
        }
        Some(iso) => {
            let plan = NamespacePlan::new(iso, &spec.cwd)?;
            // SAFETY: the closure only makes raw syscalls on memory prepared before fork; it
            // allocates nothing and takes no locks.
            unsafe {
                cmd.pre_exec(move || plan.enter());
            }
        }
    }
    Ok(cmd)
}

fn open_log(path: &Path) -> Result<File, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Prepare {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    crate::embedded::state_dir::open_append(path).map_err(|source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

/// Returns true when this process may create private mount namespaces (root, or CAP_SYS_ADMIN, and
/// no seccomp profile forbidding it). Probed by actually doing it once, with `true` as the program.
pub fn namespaces_permitted(scratch: &Path) -> bool {
    let root = scratch.join("namespace-probe");
    if std::fs::create_dir_all(&root).is_err() {
        return false;
    }
    let Ok(plan) = NamespacePlan::new(
        &Isolation {
            root: root.clone(),
            mounts: Vec::new(),
            hidden: Vec::new(),
        },
        Path::new("/"),
    ) else {
        return false;
    };
    let mut cmd = std::process::Command::new("true");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: see `spawn`.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || plan.enter());
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    let _ = std::fs::remove_dir(&root);
    ok
}

/// Everything the forked child needs, as C strings allocated before fork.
struct NamespacePlan {
    root: CString,
    /// Top-level host entries recreated in the tmpfs root.
    entries: Vec<RootEntry>,
    /// Directory creations and volume binds inside the new root, in order.
    steps: Vec<Step>,
    cwd: CString,
}

enum RootEntry {
    /// A host directory bound at `target`.
    Dir {
        source: CString,
        target: CString,
        read_only: bool,
    },
    /// A symlink recreated at `target`.
    Symlink { link: CString, target: CString },
    /// A directory of the tmpfs standing for a host directory whose entries are carried over one
    /// by one, so that missing mount points can be created in it without touching the host.
    Shadow { target: CString },
    /// A non-directory host entry (file, socket…) of a shadowed directory, bound at `target`.
    File {
        source: CString,
        target: CString,
        read_only: bool,
    },
}

enum Step {
    Mkdir(CString),
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
    /// An empty tmpfs over a directory (hides what is there).
    Hide(CString),
}

fn cstr(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Nul(p.display().to_string()))
}

impl NamespacePlan {
    fn new(iso: &Isolation, cwd: &Path) -> Result<Self, Error> {
        let mut mounts = iso.mounts.clone();
        mounts.sort_by_key(|m| m.target.components().count());
        // Mount points are resolved through the host's symlinks (`/var/run` → `/run`): the binds
        // are made before the chroot, where an absolute link would lead out of the new root.
        for i in 0..mounts.len() {
            let (earlier, rest) = mounts.split_at_mut(i);
            rest[0].target = resolve(&rest[0].target, earlier);
        }
        let mut shadow = BTreeSet::new();
        for (i, m) in mounts.iter().enumerate() {
            shadow.extend(shadowed_for(&m.target, &mounts[..i]));
        }
        let mut entries = Vec::new();
        carry(Path::new("/"), &iso.root, &shadow, false, &mut entries)?;
        let mut steps = Vec::new();
        for hidden in iso.hidden.iter().filter(|h| h.is_absolute() && h.is_dir()) {
            steps.push(Step::Hide(cstr(&inside(&iso.root, hidden))?));
        }
        for (i, m) in mounts.iter().enumerate() {
            for dir in missing_dirs(&m.target, &mounts[..i], &shadow)? {
                steps.push(Step::Mkdir(cstr(&inside(&iso.root, &dir))?));
            }
            steps.push(Step::Bind {
                source: cstr(&m.source)?,
                target: cstr(&inside(&iso.root, &m.target))?,
                read_only: m.read_only,
            });
        }
        for dir in missing_dirs(cwd, &mounts, &BTreeSet::new())? {
            steps.push(Step::Mkdir(cstr(&inside(&iso.root, &dir))?));
        }
        Ok(NamespacePlan {
            root: cstr(&iso.root)?,
            entries,
            steps,
            cwd: cstr(cwd)?,
        })
    }

    /// Runs in the forked child: private namespace, tmpfs root, binds, chroot, chdir.
    fn enter(&self) -> std::io::Result<()> {
        let null = std::ptr::null();
        // SAFETY: plain syscalls on NUL-terminated strings owned by `self`.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                null as _,
            ))?;
            check(libc::mount(
                c"tmpfs".as_ptr(),
                self.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr() as _,
            ))?;
            for entry in &self.entries {
                match entry {
                    RootEntry::Dir {
                        source,
                        target,
                        read_only,
                    } => {
                        check(libc::mkdir(target.as_ptr(), 0o755))?;
                        // Best effort: a top-level directory that cannot be bound (e.g. an
                        // automount point) stays empty rather than failing every container.
                        let flags = libc::MS_BIND | libc::MS_REC;
                        if libc::mount(source.as_ptr(), target.as_ptr(), null, flags, null as _) == 0 && *read_only {
                            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                            check(libc::mount(null, target.as_ptr(), null, flags, null as _))?;
                        }
                    }
                    RootEntry::Symlink { link, target } => check(libc::symlink(link.as_ptr(), target.as_ptr()))?,
                    RootEntry::Shadow { target } => check(libc::mkdir(target.as_ptr(), 0o755))?,
                    RootEntry::File {
                        source,
                        target,
                        read_only,
                    } => {
                        // Best effort too: an entry that cannot be carried over stays an empty file.
                        let fd = libc::open(target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                        if fd >= 0 {
                            libc::close(fd);
                            if libc::mount(source.as_ptr(), target.as_ptr(), null, libc::MS_BIND, null as _) == 0
                                && *read_only
                            {
                                let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                                check(libc::mount(null, target.as_ptr(), null, flags, null as _))?;
                            }
                        }
                    }
                }
            }
            for step in &self.steps {
                match step {
                    Step::Mkdir(dir) => {
                        if libc::mkdir(dir.as_ptr(), 0o755) != 0 {
                            let err = std::io::Error::last_os_error();
                            if err.raw_os_error() != Some(libc::EEXIST) {
                                return Err(err);
                            }
                        }
                    }
                    Step::Bind {
                        source,
                        target,
                        read_only,
                    } => {
                        let flags = libc::MS_BIND | libc::MS_REC;
                        check(libc::mount(source.as_ptr(), target.as_ptr(), null, flags, null as _))?;
                        if *read_only {
                            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                            check(libc::mount(null, target.as_ptr(), null, flags, null as _))?;
                        }
                    }
                    Step::Hide(dir) => {
                        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
                        check(libc::mount(
                            c"tmpfs".as_ptr(),
                            dir.as_ptr(),
                            c"tmpfs".as_ptr(),
                            flags,
                            null as _,
                        ))?;
                    }
                }
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(self.cwd.as_ptr()))?;
        }
        Ok(())
    }
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `root` + absolute container path `p`.
fn inside(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// The directories, shallowest first, to create in the new root so that `path` exists there:
/// components inside an already-mounted volume, in the tmpfs root (their top-level directory
/// does not exist on the host), or in a `shadow`ed directory. A missing directory under any other
/// existing host directory would have to be created on the host itself; that is refused.
fn missing_dirs(path: &Path, mounted: &[BindMount], shadow: &BTreeSet<PathBuf>) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut acc = PathBuf::from("/");
    let mut on_host = false;
    let mut in_tmpfs = false;
    for comp in path.components().skip(1) {
        let parent_shadowed = shadow.contains(&acc);
        acc.push(comp);
        let in_volume = mounted.iter().any(|m| acc.starts_with(&m.target) && acc != m.target);
        if in_volume {
            out.push(acc.clone());
        } else if mounted.iter().any(|m| acc == m.target) {
            continue;
        } else if in_tmpfs || !acc.exists() {
            if on_host && !parent_shadowed && !in_tmpfs {
                return Err(Error::HostPath(acc));
            }
            in_tmpfs = true;
            out.push(acc.clone());
        } else {
            on_host = true;
        }
    }
    Ok(out)
}

/// `target` with its longest prefix that exists on the host (and is not inside a volume mounted
/// before it) resolved through symlinks.
fn resolve(target: &Path, mounted: &[BindMount]) -> PathBuf {
    if mounted.iter().any(|m| target.starts_with(&m.target)) {
        return target.to_path_buf();
    }
    let mut resolved = PathBuf::from("/");
    let mut components = target.components().skip(1).peekable();
    while let Some(comp) = components.peek() {
        let next = resolved.join(comp);
        match std::fs::canonicalize(&next) {
            Ok(real) if !mounted.iter().any(|m| real.starts_with(&m.target)) => {
                resolved = real;
                components.next();
            }
            _ => break,
        }
    }
    resolved.extend(components);
    resolved
}

/// The host directories to shadow so that mount point `target` can be created: the deepest
/// existing host directory above its first missing component, and that directory's ancestors
/// (the root itself is a tmpfs already). Empty when nothing is missing, or the missing part is
/// inside a volume or at the top level.
fn shadowed_for(target: &Path, mounted: &[BindMount]) -> Vec<PathBuf> {
    if mounted.iter().any(|m| target.starts_with(&m.target)) {
        return Vec::new();
    }
    let mut acc = PathBuf::from("/");
    for comp in target.components().skip(1) {
        let next = acc.join(comp);
        if !next.exists() {
            return acc
                .ancestors()
                .filter(|a| *a != Path::new("/"))
                .map(Path::to_path_buf)
                .collect();
        }
        acc = next;
    }
    Vec::new()
}

/// The entries of host directory `host` recreated under `inside`: directories bound (or shadowed
/// and carried over entry by entry), symlinks copied, and, below the top level, other files bound.
/// Top-level directories are read-only but `/dev` and `/proc`; what is carried over below one keeps
/// its mode (`read_only`).
fn carry(
    host: &Path,
    inside: &Path,
    shadow: &BTreeSet<PathBuf>,
    read_only: bool,
    out: &mut Vec<RootEntry>,
) -> Result<(), Error> {
    let prepare = |path: &Path, source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    };
    let top_level = host == Path::new("/");
    for entry in std::fs::read_dir(host).map_err(|e| prepare(host, e))? {
        let entry = entry.map_err(|e| prepare(host, e))?;
        let source = entry.path();
        let target = inside.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| prepare(&source, e))?;
        let read_only = if top_level {
            let name = entry.file_name();
            !WRITABLE_TOP_LEVEL.iter().any(|w| name.as_bytes() == w.as_bytes())
        } else {
            read_only
        };
        if kind.is_symlink() {
            let link = std::fs::read_link(&source).map_err(|e| prepare(&source, e))?;
            out.push(RootEntry::Symlink {
                link: cstr(&link)?,
                target: cstr(&target)?,
            });
        } else if kind.is_dir() && shadow.contains(&source) {
            out.push(RootEntry::Shadow { target: cstr(&target)? });
            carry(&source, &target, shadow, read_only, out)?;
        } else if kind.is_dir() {
            out.push(RootEntry::Dir {
                source: cstr(&source)?,
                target: cstr(&target)?,
                read_only,
            });
        } else if !top_level {
            out.push(RootEntry::File {
                source: cstr(&source)?,
                target: cstr(&target)?,
                read_only,
            });
        }
        // Top-level regular files (e.g. /.dockerenv) are not carried over.
    }
    Ok(())
}

/// Reads the start time (clock ticks since boot, field 22 of `/proc/PID/stat`) of a process, so a
/// pid recorded earlier can be told apart from a reused one.
pub(super) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its closing paren are plain.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, program: &str, args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: dir.to_path_buf(),
            isolation: None,
            log: dir.join("c.log"),
        }
    }

    #[tokio::test]
    async fn stdout_and_stderr_share_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "sh", &["-c", "echo out; echo err >&2; echo out2; exit 3"]);
        let exit = spawn(&s).unwrap().wait().await;
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("c.log")).unwrap(),
            "out\nerr\nout2\n"
        );
    }

    #[tokio::test]
    async fn terminate_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "sh", &["-c", "sleep 1000 & echo $! > child.pid; wait"]);
        let run = spawn(&s).unwrap();
        let pid_file = dir.path().join("child.pid");
        let child_pid = wait_for(|| std::fs::read_to_string(&pid_file).ok().filter(|s| s.ends_with('\n'))).await;
        let child_pid: i32 = child_pid.trim().parse().unwrap();
        let killer = terminate_group(run.pid, Duration::from_secs(30));
        assert_eq!(run.wait().await, Exit::Signal(libc::SIGTERM));
        killer.abort();
        wait_for(|| process_start_time(child_pid).is_none().then_some(())).await;
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn(&spec(dir.path(), "no-such-program-cdkube", &[])).err().unwrap();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }

    #[test]
    fn directories_are_created_only_outside_host_filesystems() {
        let ws = BindMount {
            source: "/x".into(),
            target: "/workspace".into(),
            read_only: false,
        };
        let none = BTreeSet::new();
        let dirs = missing_dirs(Path::new("/workspace/a"), std::slice::from_ref(&ws), &none).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/workspace/a")]);
        let dirs = missing_dirs(Path::new("/cdkube-no-such-top/a"), &[], &none).unwrap();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/cdkube-no-such-top"),
                PathBuf::from("/cdkube-no-such-top/a")
            ]
        );
        assert!(missing_dirs(Path::new("/tmp"), &[], &none).unwrap().is_empty());
        let err = missing_dirs(Path::new("/usr/cdkube-no-such/x"), &[], &none)
            .err()
            .unwrap();
        assert!(matches!(err, Error::HostPath(p) if p == Path::new("/usr/cdkube-no-such")));
        // Under a shadowed directory, the missing ones are made in the tmpfs instead.
        let shadow: BTreeSet<PathBuf> = [PathBuf::from("/usr")].into();
        assert_eq!(
            missing_dirs(Path::new("/usr/cdkube-no-such/x"), &[], &shadow).unwrap(),
            vec![
                PathBuf::from("/usr/cdkube-no-such"),
                PathBuf::from("/usr/cdkube-no-such/x")
            ]
        );
        assert_eq!(
            shadowed_for(Path::new("/usr/share/cdkube-no-such/x"), &[]),
            vec![PathBuf::from("/usr/share"), PathBuf::from("/usr")]
        );
    }

    #[tokio::test]
    async fn a_mount_point_missing_on_the_host_is_made_in_a_shadow_of_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        if !namespaces_permitted(dir.path()) {
            eprintln!("NOTICE: mount namespaces are not permitted here; shadowing not tested");
            return;
        }
        let volume = dir.path().join("vol");
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(volume.join("f"), "in the volume\n").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // /usr exists on the host, /usr/cdkube-shadow-test does not: /usr is carried over entry by
        // entry into the private root, where the mount point is made.
        let target = "/usr/cdkube-shadow-test/vol";
        let script = format!("cat {target}/f; test -x /usr/bin/env && echo usr carried over");
        let mut s = spec(dir.path(), "sh", &["-c", &script]);
        s.cwd = PathBuf::from("/");
        s.isolation = Some(Isolation {
            root,
            mounts: vec![BindMount {
                source: volume,
                target: target.into(),
                read_only: true,
            }],
            hidden: Vec::new(),
        });
        assert_eq!(spawn(&s).unwrap().wait().await, Exit::Code(0));
        let log = std::fs::read_to_string(dir.path().join("c.log")).unwrap();
        assert_eq!(log, "in the volume\nusr carried over\n");
        assert!(!Path::new("/usr/cdkube-shadow-test").exists(), "the host was modified");
    }

    #[tokio::test]
    async fn private_namespace_puts_volumes_at_their_mount_paths() {
        let dir = tempfile::tempdir().unwrap();
        if !namespaces_permitted(dir.path()) {
            eprintln!("NOTICE: mount namespaces are not permitted here; namespace isolation not tested");
            return;
        }
        let volume = dir.path().join("vol");
        std::fs::create_dir_all(&volume).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mut s = spec(
            dir.path(),
            "sh",
            &["-c", "pwd; echo made > here; cat /cdkube-test-ws/here"],
        );
        s.cwd = PathBuf::from("/cdkube-test-ws/sub");
        let mount = BindMount {
            source: volume.clone(),
            target: "/cdkube-test-ws".into(),
            read_only: false,
        };
        s.isolation = Some(Isolation {
            root,
            mounts: vec![mount],
            hidden: Vec::new(),
        });
        s.args[1] = "pwd; echo made > /cdkube-test-ws/here; cat /cdkube-test-ws/here".into();
        assert_eq!(spawn(&s).unwrap().wait().await, Exit::Code(0));
        let log = std::fs::read_to_string(dir.path().join("c.log")).unwrap();
        assert_eq!(log, "/cdkube-test-ws/sub\nmade\n");
        assert_eq!(std::fs::read_to_string(volume.join("here")).unwrap(), "made\n");
        assert!(volume.join("sub").is_dir());
        assert!(!Path::new("/cdkube-test-ws").exists(), "the host root was modified");
    }

    async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "condition not met in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
