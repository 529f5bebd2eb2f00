//! The bounds of one git operation: a deadline, caps on what the server may send, and a stop switch that
//! another thread can pull.
//!
//! A repository server is untrusted: it may drip one byte a second, stream refs forever, send a pack of any
//! size or never answer. Every byte received goes through a [`Metered`] reader (or the HTTP backend's
//! equivalent), which refuses to go on past the deadline or past the current cap; and [`Bounds::stop`]
//! fires hooks that unblock a read waiting on a silent server (the socket is shut, the ssh or
//! `git upload-pack` process killed, the HTTP request dropped). So the blocking thread that runs the
//! operation ends at the deadline too, and with it the memory, socket and process it held.
//!
//! Why the operation stopped is recorded once ([`Stop`]), so the error says "timeout", "cancelled" or
//! "over the cap" however gix wrapped the failed read.
use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::sideband::{Said, Sniffer};

/// Why an operation was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    Deadline,
    /// The caller dropped the operation (or the process is shutting down).
    Cancelled,
    /// The server sent more than `limit` bytes of `what`.
    Cap(Cap),
}

/// A limit on the bytes a server may send in one phase of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    /// What is limited, for the message: [`REFS`] or [`PACK`].
    pub what: &'static str,
    /// Bytes allowed in this phase.
    pub limit: u64,
    /// The option that sets the limit, for the message.
    pub option: &'static str,
}

/// The phase of listing refs (capabilities and the ref advertisement).
pub(crate) const REFS: &str = "ref advertisement";
/// The phase of receiving a pack.
pub(crate) const PACK: &str = "pack";

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} larger than the limit of {}, set by {}",
            self.what,
            bytes(self.limit),
            self.option
        )
    }
}

/// `n` bytes in the largest binary unit that divides it, e.g. `8 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

/// Parse a size such as `1048576`, `512KiB`, `64MiB`, `1GiB` (`K`, `M`, `G` and `KB`… mean the same binary
/// units); more than zero.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit `{other}`; use B, KiB, MiB, GiB or TiB")),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 512MiB"))?;
    let size = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if size == 0 {
        return Err("a size limit must be more than 0 bytes".to_owned());
    }
    Ok(size)
}

/// Something to undo on stop so that a blocked read returns.
pub(crate) enum Hook {
    /// Shut the socket down both ways.
    Socket(TcpStream),
    /// Kill the process (and its process group).
    Process(Arc<Mutex<Child>>),
    /// Anything else, e.g. cancel an HTTP request.
    Call(Box<dyn Fn() + Send + Sync>),
}

impl Hook {
    fn fire(&self) {
        match self {
            Hook::Socket(socket) => {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
            Hook::Process(child) => {
                if let Ok(mut child) = child.lock() {
                    kill_group(&mut child);
                }
            }
            Hook::Call(call) => call(),
        }
    }
}

/// Kill `child` and every process of its group (ssh may have started a ProxyCommand).
pub(crate) fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // The child leads its own group (see `transport::spawn`); a reaped child's group is gone.
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) with a negative pid signals the group; no memory is involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
}

/// The deadline, caps and stop switch of one operation. Shared (`Arc`) by the caller, the blocking thread
/// and the HTTP backend's tasks.
pub(crate) struct Bounds {
    deadline: Option<Instant>,
    interrupted: AtomicBool,
    why: OnceLock<Stop>,
    hooks: Mutex<Vec<Hook>>,
    received: AtomicU64,
    /// The cap of the current phase, and the bytes received before it began.
    phase: Mutex<(Cap, u64)>,
    /// The server's own error messages, from every reader of the operation.
    said: Said,
}

impl Bounds {
    /// Bounds ending at `deadline` (none: only a stop ends the operation), starting in the refs phase.
    pub(crate) fn new(deadline: Option<Instant>, refs: Cap) -> Self {
        Bounds {
            deadline,
            interrupted: AtomicBool::new(false),
            why: OnceLock::new(),
            hooks: Mutex::default(),
            received: AtomicU64::new(0),
            phase: Mutex::new((refs, 0)),
            said: Said::default(),
        }
    }

    /// Bounds without a deadline or caps, for local work (export, commit reading).
    pub(crate) fn local() -> Self {
        let none = Cap {
            what: "data",
            limit: u64::MAX,
            option: "none",
        };
        Bounds::new(None, none)
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The error messages the server sent so far (`ERR` lines, sideband errors).
    pub(crate) fn said(&self) -> &Said {
        &self.said
    }

    /// Time left before the deadline (`None`: no deadline).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Stop the operation now for `why` (the first reason given wins) and unblock its reads.
    pub(crate) fn stop(&self, why: Stop) {
        let _ = self.why.set(why);
        self.interrupted.store(true, Ordering::SeqCst);
        let hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        hooks.iter().for_each(Hook::fire);
    }

    /// Why the operation was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.why.get().copied()
    }

    /// Whether the operation was stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// The flag gix polls while receiving a pack or writing an archive.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.interrupted
    }

    /// Fire `hook` on stop, or now if the stop already happened. The flag is read under the lock that
    /// [`Bounds::stop`] takes after setting it, so a concurrent stop cannot slip between check and push.
    pub(crate) fn on_stop(&self, hook: Hook) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_stopped() {
            hook.fire();
        }
        hooks.push(hook);
    }

    /// Enter a new phase limited by `cap` (counted from now).
    pub(crate) fn enter(&self, cap: Cap) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        *phase = (cap, self.received.load(Ordering::SeqCst));
    }

    /// Fail if the operation was stopped or its deadline passed (which stops it).
    pub(crate) fn check(&self) -> io::Result<()> {
        if !self.is_stopped() && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop(Stop::Deadline);
        }
        match self.stopped() {
            None => Ok(()),
            Some(why) => Err(stop_error(why)),
        }
    }

    /// Count `n` bytes received; past the phase's cap the operation stops.
    pub(crate) fn count(&self, n: usize) -> io::Result<()> {
        let total = self.received.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let (cap, start) = *self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if total.saturating_sub(start) > cap.limit {
            self.stop(Stop::Cap(cap));
        }
        self.check()
    }

    /// A read error seen after a stop is the stop's doing (a shut socket, a killed process): say so.
    pub(crate) fn explain(&self, err: io::Error) -> io::Error {
        match self.check() {
            Ok(()) => err,
            Err(stopped) => stopped,
        }
    }
}

/// The I/O error a stopped read returns; the engine reports the recorded [`Stop`] rather than this text.
fn stop_error(why: Stop) -> io::Error {
    match why {
        Stop::Deadline => io::Error::new(io::ErrorKind::TimedOut, "the operation's deadline passed"),
        // Not `Interrupted`: readers retry on that kind.
        Stop::Cancelled => io::Error::other("the operation was cancelled"),
        Stop::Cap(cap) => io::Error::other(cap.to_string()),
    }
}

/// A reader that counts what it reads against the operation's [`Bounds`] and refuses to go on once they
/// are exceeded.
/// What it reads is also looked at for the server's error messages (see [`super::sideband`]).
pub(crate) struct Metered<R> {
    inner: R,
    bounds: Arc<Bounds>,
    sniffer: Sniffer,
}

impl<R> Metered<R> {
    /// Meter `inner` with `bounds`.
    pub(crate) fn new(inner: R, bounds: Arc<Bounds>) -> Self {
        Metered {
            inner,
            bounds,
            sniffer: Sniffer::default(),
        }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bounds.check()?;
        let n = self.inner.read(buf).map_err(|e| self.bounds.explain(e))?;
        if n == 0 {
            // A socket shut by a stop reads as the end of the stream: report the stop instead.
            self.bounds.check()?;
        }
        self.sniffer.feed(&buf[..n], self.bounds.said());
        self.bounds.count(n)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(limit: u64) -> Cap {
        Cap {
            what: REFS,
            limit,
            option: "max_refs_bytes",
        }
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1PB").unwrap_err().contains("unit"));
        assert!(parse_size("99999999999TiB").unwrap_err().contains("too large"));
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn sizes_read_as_units() {
        assert_eq!(bytes(8 << 20), "8 MiB");
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }

    #[test]
    fn a_cap_stops_the_reader_and_names_itself() {
        let bounds = Arc::new(Bounds::new(None, refs(10)));
        let mut reader = Metered::new(io::repeat(b'x').take(100), Arc::clone(&bounds));
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("larger than the limit of 10 bytes"), "{err}");
        assert_eq!(bounds.stopped(), Some(Stop::Cap(refs(10))));
    }

    #[test]
    fn a_new_phase_counts_from_where_it_starts() {
        let bounds = Bounds::new(None, refs(10));
        bounds.count(8).unwrap();
        bounds.enter(Cap {
            what: PACK,
            limit: 10,
            option: "max_pack_bytes",
        });
        bounds.count(8).unwrap();
        assert!(bounds.count(8).is_err());
    }

    #[test]
    fn a_passed_deadline_stops_at_the_next_read() {
        let bounds = Arc::new(Bounds::new(Some(Instant::now()), refs(10)));
        let mut reader = Metered::new(io::empty(), Arc::clone(&bounds));
        assert_eq!(reader.read(&mut [0; 4]).unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(bounds.stopped(), Some(Stop::Deadline));
    }

    #[test]
    fn the_first_reason_wins() {
        let bounds = Bounds::local();
        bounds.stop(Stop::Cancelled);
        bounds.stop(Stop::Deadline);
        assert_eq!(bounds.stopped(), Some(Stop::Cancelled));
        assert_eq!(bounds.check().unwrap_err().to_string(), "the operation was cancelled");
    }
}
