//! What a server says beside the pack: its error messages, kept so a failed fetch can show them.
//!
//! gix hands sideband band 3 (fatal errors) to the progress as failures, and band 2 (progress, and the
//! `error:`/`fatal:` lines of a dying `git pack-objects`) as progress names. [`RemoteLog`] is a progress
//! that keeps the error-looking ones, few and short, and ignores everything else. The text is the server's:
//! it is cleaned of control characters before anyone prints it.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gix::progress::{Count, Id, MessageLevel, NestedProgress, Progress, Step, StepShared, UNKNOWN, Unit};

/// Messages kept per operation.
const MAX_LINES: usize = 8;
/// Characters kept of one message.
pub(crate) const MAX_CHARS: usize = 400;

/// A progress that records the server's error messages. Clones (and children) share one log.
#[derive(Clone, Default)]
pub(crate) struct RemoteLog {
    lines: Arc<Mutex<Vec<String>>>,
    counter: StepShared,
    name: Option<String>,
}

impl RemoteLog {
    /// The error messages seen so far, oldest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn record(&self, text: &str) {
        let text = clean(text);
        let text = text.trim_start_matches("remote:").trim();
        if text.is_empty() {
            return;
        }
        if let Ok(mut lines) = self.lines.lock()
            && lines.len() < MAX_LINES
            && !lines.iter().any(|l| l == text)
        {
            lines.push(text.to_owned());
        }
    }
}

/// Whether a band-2 line is an error rather than progress.
fn looks_like_error(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["fatal:", "error:", "aborting"].iter().any(|w| lower.contains(w))
}

/// `text` without control characters (terminal escapes included), on one line, at most [`MAX_CHARS`].
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.chars().count() >= MAX_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

impl Count for RemoteLog {
    fn set(&self, step: Step) {
        self.counter.store(step, Ordering::Relaxed);
    }

    fn step(&self) -> Step {
        self.counter.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        self.counter.fetch_add(step, Ordering::Relaxed);
    }

    fn counter(&self) -> StepShared {
        Arc::clone(&self.counter)
    }
}

impl Progress for RemoteLog {
    fn init(&mut self, _max: Option<Step>, _unit: Option<Unit>) {}

    fn set_name(&mut self, name: String) {
        if looks_like_error(&name) {
            self.record(&name);
        }
        self.name = Some(name);
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn id(&self) -> Id {
        UNKNOWN
    }

    fn message(&self, level: MessageLevel, message: String) {
        if level == MessageLevel::Failure {
            self.record(&message);
        }
    }
}

impl NestedProgress for RemoteLog {
    type SubProgress = RemoteLog;

    fn add_child(&mut self, _name: impl Into<String>) -> Self::SubProgress {
        RemoteLog {
            lines: Arc::clone(&self.lines),
            counter: Arc::new(AtomicUsize::new(0)),
            name: None,
        }
    }

    fn add_child_with_id(&mut self, name: impl Into<String>, _id: Id) -> Self::SubProgress {
        self.add_child(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_errors_not_progress() {
        let mut log = RemoteLog::default();
        let mut remote = log.add_child("remote");
        remote.set_name("remote: Counting objects".into());
        remote.set_name("remote: fatal: unable to read 0123".into());
        remote.fail("upload-pack: aborting due to possible repository corruption".into());
        remote.info("just info".into());
        assert_eq!(
            log.lines(),
            [
                "fatal: unable to read 0123",
                "upload-pack: aborting due to possible repository corruption"
            ]
        );
    }

    #[test]
    fn cleans_escapes_and_length() {
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m\nline"), "[31mred[0m line");
        assert!(clean(&"x".repeat(1000)).chars().count() <= MAX_CHARS + 1);
    }
}
