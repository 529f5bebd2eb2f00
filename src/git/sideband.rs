//! What a server says beside the data: its error messages, kept so a failed operation can show them.
//!
//! Everything a git server sends is framed as packet lines, and its own errors are packet lines too: an
//! `ERR <text>` line, sideband band 3 (fatal), and the `error:`/`fatal:` lines of a dying
//! `git pack-objects` relayed on band 2 (progress). gix keeps none of that text when the exchange fails (it
//! reports "early EOF", which read as a network error), so every reader of a connection feeds what it
//! receives through a [`Sniffer`] that follows the framing and keeps those lines, few and short, in the
//! operation's [`Said`]. Pack data is only counted, never copied. The text is the server's: it is cleaned of
//! control characters before anyone prints it.
use std::sync::Mutex;

/// Messages kept per operation.
const MAX_LINES: usize = 8;
/// Characters kept of one message.
pub(crate) const MAX_CHARS: usize = 400;
/// Bytes of one packet line looked at.
const MAX_SNIFF: usize = 1024;

/// The error messages a server sent during one operation.
#[derive(Default)]
pub(crate) struct Said {
    lines: Mutex<Vec<String>>,
}

impl Said {
    /// The messages so far, oldest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn record(&self, text: &[u8]) {
        let text = clean(&String::from_utf8_lossy(text));
        if text.is_empty() {
            return;
        }
        if let Ok(mut lines) = self.lines.lock()
            && lines.len() < MAX_LINES
            && !lines.contains(&text)
        {
            lines.push(text);
        }
    }
}

/// Follows the packet-line framing of one response stream and records the server's error lines.
#[derive(Default)]
pub(crate) struct Sniffer {
    /// Bytes of the 4-hex-digit length read so far.
    header: Vec<u8>,
    /// Payload bytes of the current line still to come.
    left: usize,
    /// The start of the current line's payload.
    start: Vec<u8>,
    /// The stream is not (or no longer) packet lines: stop looking.
    lost: bool,
}

impl Sniffer {
    /// Look at `bytes`, the next bytes of the stream.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], said: &Said) {
        while !bytes.is_empty() && !self.lost {
            if self.left == 0 {
                let take = (4 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.header.len() == 4 {
                    self.begin_line();
                }
                continue;
            }
            let take = self.left.min(bytes.len());
            let room = MAX_SNIFF.saturating_sub(self.start.len()).min(take);
            self.start.extend_from_slice(&bytes[..room]);
            self.left -= take;
            bytes = &bytes[take..];
            if self.left == 0 {
                self.end_line(said);
            }
        }
    }

    fn begin_line(&mut self) {
        let length = std::str::from_utf8(&self.header)
            .ok()
            .and_then(|hex| usize::from_str_radix(hex, 16).ok());
        self.header.clear();
        self.start.clear();
        match length {
            // Flush, delimiter and response-end packets carry no payload.
            Some(0..=3) => {}
            Some(n) => self.left = n - 4,
            None => self.lost = true,
        }
    }

    fn end_line(&mut self, said: &Said) {
        let line = std::mem::take(&mut self.start);
        match line.split_first() {
            Some((3, text)) => said.record(text),
            Some((2, text)) => text
                .split(|b| *b == b'\n' || *b == b'\r')
                .filter(|l| looks_like_error(l))
                .for_each(|l| said.record(l)),
            _ if line.starts_with(b"ERR ") => said.record(&line[4..]),
            _ => {}
        }
    }
}

/// Whether a progress line is an error rather than progress.
fn looks_like_error(line: &[u8]) -> bool {
    let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
    ["fatal:", "error:"].iter().any(|w| lower.contains(w))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &[u8]) -> Vec<u8> {
        let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn keeps_errors_not_progress_or_data_across_reads() {
        let mut stream = pkt(b"packfile\n");
        stream.extend(pkt(b"\x02Enumerating objects: 3, done.\n"));
        stream.extend(pkt(b"\x01PACK\x00\x00\x00\x02 fatal: in the data"));
        stream.extend(pkt(b"\x02fatal: unable to read 0123\n"));
        stream.extend(b"0000");
        stream.extend(pkt(b"\x03aborting due to possible repository corruption\n"));
        let (said, mut sniffer) = (Said::default(), Sniffer::default());
        // Byte by byte: the framing survives any split of the reads.
        stream.iter().for_each(|b| sniffer.feed(&[*b], &said));
        assert_eq!(
            said.lines(),
            [
                "fatal: unable to read 0123",
                "aborting due to possible repository corruption"
            ]
        );
    }

    #[test]
    fn err_lines_are_kept_and_garbage_stops_the_sniffing() {
        let (said, mut sniffer) = (Said::default(), Sniffer::default());
        sniffer.feed(&pkt(b"ERR access denied\n"), &said);
        sniffer.feed(b"HTTP/1.1 200 OK\r\n", &said);
        sniffer.feed(&pkt(b"ERR not seen\n"), &said);
        assert_eq!(said.lines(), ["access denied"]);
    }

    #[test]
    fn cleans_escapes_and_length() {
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m\nline"), "[31mred[0m line");
        assert!(clean(&"x".repeat(1000)).chars().count() <= MAX_CHARS + 1);
    }
}
