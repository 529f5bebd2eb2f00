//! Runs the cdkube binary with a deadline: a run that outlives it is killed, and the test sees
//! that it did instead of hanging (or being killed for memory) with it.
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a bounded run did.
#[derive(Debug)]
pub struct Bounded {
    /// The exit code; `None` when the deadline killed it (or a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `cmd` (its stdin as the caller set it, else empty) until it exits or `deadline` passes.
pub fn run_within(mut cmd: Command, deadline: Duration) -> Bounded {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cdkube");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let readers = (
        std::thread::spawn(move || read_all(&mut out)),
        std::thread::spawn(move || read_all(&mut err)),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    Bounded {
        code: status.and_then(|s| s.code()),
        stdout: readers.0.join().unwrap_or_default(),
        stderr: readers.1.join().unwrap_or_default(),
        took,
    }
}

fn read_all(pipe: &mut impl Read) -> String {
    let mut text = String::new();
    let _ = pipe.read_to_string(&mut text);
    text
}
