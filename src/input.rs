//! Limits on untrusted text — manifest files, API request bodies — checked before a parser sees it.
//!
//! serde_yaml (libyaml) spends time in proportion to tokens × open flow collections: measured
//! (release build), a 320 KB `{a: {a: …}}` took 15 s and an 80 KB one 0.7 s, while 3 MiB of
//! ordinary or depth-127 input takes about 1 s. Deep block (indentation) nesting costs nothing
//! extra, and serde_yaml and serde_json both give up past 128 levels — but only after the whole
//! document was tokenized. So every caller first checks the size and the nesting depth, with one
//! linear pass ([`check`]) that follows libyaml's tokenizer closely enough to count what it would
//! nest: flow collections (`[`, `{`, and the single-pair mappings `[a: b]`), block sequences and
//! mappings by their indentation (an "indentless" sequence under a mapping key counts too), while
//! quoted, plain and block scalars and comments count nothing. JSON is YAML, so the same pass
//! serves both.
//!
//! The depth limit, [`MAX_DEPTH`], sits below the parsers' own 128 so that the error names the
//! limit; real manifests nest far less (a CRD's schema: about 30 levels). The size limits are
//! kube-apiserver's request body limit ([`MAX_REQUEST_BYTES`], 3 MiB) and, for a manifest file that
//! may hold many objects, [`MAX_FILE_BYTES`].
use std::io::Read;
use std::path::Path;

/// Deepest nesting accepted: collections inside collections (`[[1]]` is 2, `a: b` is 1).
pub const MAX_DEPTH: usize = 100;
/// Largest request body, as kube-apiserver's `MaxRequestBodyBytes` (3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Largest manifest file (`cdkube validate -f`, `cdkube dev -f`): several objects of an API request each.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// A size and a depth limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub max_bytes: usize,
    /// Nesting levels.
    pub max_depth: usize,
}

impl Limits {
    /// For one API request body.
    pub const REQUEST: Limits = Limits {
        max_bytes: MAX_REQUEST_BYTES,
        max_depth: MAX_DEPTH,
    };
    /// For one manifest file.
    pub const FILE: Limits = Limits {
        max_bytes: MAX_FILE_BYTES,
        max_depth: MAX_DEPTH,
    };
}

/// Input refused before parsing; the message names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More bytes than the limit.
    #[error("larger than the limit of {}", human_bytes(*.limit))]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Deeper nesting than the limit.
    #[error("nested deeper than the limit of {limit} levels (line {line})")]
    TooDeep {
        /// The limit in levels.
        limit: usize,
        /// 1-based line where the nesting passed the limit.
        line: usize,
    },
}

/// Why text could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Refused before parsing.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Not JSON, or not of the expected shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Not YAML.
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
}

/// Why a manifest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A FIFO, device, directory or socket: reading it could block or never end.
    #[error("is {kind}, not a regular file")]
    NotRegular {
        /// What it is, with its article ("a FIFO").
        kind: &'static str,
    },
    /// Over the size limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Not UTF-8.
    #[error("is not UTF-8 text")]
    NotUtf8,
}

/// Checks `text` (YAML or JSON) against `limits` in one linear pass, without parsing it.
pub fn check(text: &[u8], limits: Limits) -> Result<(), LimitError> {
    if text.len() > limits.max_bytes {
        return Err(LimitError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let mut scanner = Scanner::new(text, limits.max_depth);
    match scanner.run() {
        Some(line) => Err(LimitError::TooDeep {
            limit: limits.max_depth,
            line,
        }),
        None => Ok(()),
    }
}

/// The nesting depth of YAML or JSON as [`check`] counts it (0 for a scalar).
pub fn depth(text: &[u8]) -> usize {
    let mut scanner = Scanner::new(text, usize::MAX);
    scanner.run();
    scanner.deepest
}

/// The nesting depth of a decoded value (0 for a scalar), without recursion.
pub fn value_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, above)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(above + 1);
        stack.extend(children.map(|child| (child, above + 1)));
    }
    deepest
}

/// Decodes JSON after checking it against `limits`.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &[u8], limits: Limits) -> Result<T, DecodeError> {
    check(text, limits)?;
    Ok(serde_json::from_slice(text)?)
}

/// Decodes one YAML document after checking it against `limits`.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &[u8], limits: Limits) -> Result<T, DecodeError> {
    check(text, limits)?;
    Ok(serde_yaml::from_slice(text)?)
}

/// Reads a manifest file (`-` is standard input) of at most `max_bytes`. Only regular files and
/// standard input are read: a FIFO could block forever, and `/dev/zero` never ends.
pub fn read_text(path: &Path, max_bytes: usize) -> Result<String, ReadError> {
    let limit = (max_bytes as u64).saturating_add(1);
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)?;
    } else {
        let file = open_regular(path)?;
        if file.metadata()?.len() > max_bytes as u64 {
            return Err(LimitError::TooLarge { limit: max_bytes }.into());
        }
        file.take(limit).read_to_end(&mut bytes)?;
    }
    if bytes.len() > max_bytes {
        return Err(LimitError::TooLarge { limit: max_bytes }.into());
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// Opens `path` without blocking (a FIFO without a writer blocks `open`) and refuses anything but
/// a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "a socket"
    };
    Err(ReadError::NotRegular { kind: what })
}

/// `3 MiB`, `64 KiB`, `100 bytes`.
pub fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// A block collection libyaml's scanner would have open, by the column of its first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Mapping,
    Sequence,
    /// A sequence at its parent mapping's own column (`key:` then `- item` below it).
    IndentlessSequence,
}

/// An open flow collection; a sequence entry with `:` is a single-pair mapping, one level more.
#[derive(Debug, Clone, Copy)]
struct Flow {
    sequence: bool,
    pair: bool,
}

/// One pass over the bytes in the manner of libyaml's tokenizer, tracking only what nests.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// Characters since the start of the line (UTF-8 continuation bytes do not count).
    col: usize,
    line: usize,
    blocks: Vec<(usize, Block)>,
    flows: Vec<Flow>,
    /// Levels in `flows` (pairs included).
    flow_depth: usize,
    /// Column where a possible block mapping key starts on this line.
    key_col: Option<usize>,
    limit: usize,
    deepest: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8], limit: usize) -> Self {
        Scanner {
            text,
            pos: 0,
            col: 0,
            line: 1,
            blocks: Vec::new(),
            flows: Vec::new(),
            flow_depth: 0,
            key_col: None,
            limit,
            deepest: 0,
        }
    }

    /// Scans to the end; returns the line where the depth passed the limit, if it did.
    fn run(&mut self) -> Option<usize> {
        loop {
            self.skip_to_token();
            if self.pos >= self.text.len() {
                return None;
            }
            if self.col == 0 && self.document_marker() {
                self.blocks.clear();
                self.flows.clear();
                self.flow_depth = 0;
                self.key_col = None;
                self.advance_n(3);
                continue;
            }
            if self.col == 0 && self.flows.is_empty() && self.peek(0) == b'%' {
                self.skip_line();
                continue;
            }
            if self.token() {
                return Some(self.line);
            }
        }
    }

    /// Consumes one token; true when the depth passed the limit.
    fn token(&mut self) -> bool {
        let c = self.peek(0);
        let in_flow = !self.flows.is_empty();
        if !in_flow {
            self.unroll(self.col, c == b'-' && self.blankz_at(1));
        }
        match c {
            b'[' | b'{' => {
                self.note_key_start();
                self.advance();
                self.flows.push(Flow {
                    sequence: c == b'[',
                    pair: false,
                });
                self.flow_depth += 1;
                return self.measure();
            }
            b']' | b'}' => {
                self.advance();
                if let Some(flow) = self.flows.pop() {
                    self.flow_depth -= 1 + usize::from(flow.pair);
                }
            }
            b',' => {
                self.advance();
                if let Some(flow) = self.flows.last_mut().filter(|f| f.pair) {
                    flow.pair = false;
                    self.flow_depth -= 1;
                }
            }
            b'-' if self.blankz_at(1) => {
                self.advance();
                self.key_col = None;
                return !in_flow && self.roll(self.col - 1, Block::Sequence);
            }
            b'?' | b':' if in_flow => {
                self.advance();
                return self.flow_pair();
            }
            b'?' if self.blankz_at(1) => {
                self.key_col = None;
                let col = self.col;
                self.advance();
                return self.roll(col, Block::Mapping);
            }
            b':' if self.blankz_at(1) => {
                let col = self.key_col.take().unwrap_or(self.col);
                self.advance();
                return self.roll(col, Block::Mapping);
            }
            b'*' | b'&' => {
                self.note_key_start();
                self.advance();
                self.skip_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            }
            b'!' => {
                self.note_key_start();
                self.advance();
                self.skip_while(is_tag_char);
            }
            b'|' | b'>' if !in_flow => self.block_scalar(),
            b'\'' | b'"' => {
                self.note_key_start();
                self.quoted(c);
            }
            _ => {
                self.note_key_start();
                let start = self.pos;
                self.plain();
                if self.pos == start {
                    // A character no token starts with (libyaml stops there with an error).
                    self.advance();
                }
            }
        }
        false
    }

    fn peek(&self, offset: usize) -> u8 {
        self.text.get(self.pos + offset).copied().unwrap_or(0)
    }

    /// Length of the line break at `pos + offset` (libyaml's: CR, LF, CRLF, NEL, LS, PS), or 0.
    fn break_at(&self, offset: usize) -> usize {
        let rest = self.text.get(self.pos + offset..).unwrap_or_default();
        match rest {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            [0xC2, 0x85, ..] => 2,
            [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
            _ => 0,
        }
    }

    fn blank_at(&self, offset: usize) -> bool {
        matches!(self.peek(offset), b' ' | b'\t')
    }

    /// Blank, line break or end of input.
    fn blankz_at(&self, offset: usize) -> bool {
        self.pos + offset >= self.text.len() || self.blank_at(offset) || self.break_at(offset) > 0
    }

    fn advance(&mut self) {
        let n = self.break_at(0);
        if n > 0 {
            self.pos += n;
            self.line += 1;
            self.col = 0;
            return;
        }
        if let Some(&b) = self.text.get(self.pos) {
            self.pos += 1;
            if b & 0xC0 != 0x80 {
                self.col += 1;
            }
        }
    }

    fn advance_n(&mut self, n: usize) {
        for _ in 0..n {
            self.advance();
        }
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        while self.pos < self.text.len() && self.break_at(0) == 0 && keep(self.peek(0)) {
            self.advance();
        }
    }

    /// To the end of the line, not past its break.
    fn skip_line(&mut self) {
        self.skip_while(|_| true);
    }

    /// Blanks, comments, line breaks (a line break ends any possible simple key) and, as libyaml
    /// does, a byte order mark at the start of any line.
    fn skip_to_token(&mut self) {
        loop {
            match self.peek(0) {
                b' ' | b'\t' => self.advance(),
                0xEF if self.col == 0 && self.text[self.pos..].starts_with("\u{feff}".as_bytes()) => self.advance_n(3),
                b'#' => self.skip_line(),
                _ if self.break_at(0) > 0 => {
                    self.advance();
                    self.key_col = None;
                }
                _ => return,
            }
        }
    }

    /// `---` or `...` at the start of a line, followed by a blank or the end.
    fn document_marker(&self) -> bool {
        let three = self.text.get(self.pos..self.pos + 3);
        matches!(three, Some(b"---" | b"...")) && self.blankz_at(3)
    }

    fn note_key_start(&mut self) {
        if self.flows.is_empty() && self.key_col.is_none() {
            self.key_col = Some(self.col);
        }
    }

    fn level(&self) -> usize {
        self.blocks.len() + self.flow_depth
    }

    /// Records the current depth; true when past the limit.
    fn measure(&mut self) -> bool {
        let level = self.level();
        self.deepest = self.deepest.max(level);
        level > self.limit
    }

    /// Closes the block collections a token at `col` ends (libyaml's `unroll_indent`).
    fn unroll(&mut self, col: usize, dash: bool) {
        while let Some(&(top, kind)) = self.blocks.last() {
            let ends_indentless = top == col && kind == Block::IndentlessSequence && !dash;
            if top > col || ends_indentless {
                self.blocks.pop();
            } else {
                return;
            }
        }
    }

    /// Opens a block collection at `col` unless one is open there (libyaml's `roll_indent`).
    fn roll(&mut self, col: usize, kind: Block) -> bool {
        let open = match self.blocks.last() {
            None => Some(kind),
            Some(&(top, _)) if top < col => Some(kind),
            Some(&(top, Block::Mapping)) if top == col && kind == Block::Sequence => Some(Block::IndentlessSequence),
            _ => None,
        };
        match open {
            Some(kind) => {
                self.blocks.push((col, kind));
                self.measure()
            }
            None => false,
        }
    }

    /// `?` or `:` in a flow sequence makes its entry a single-pair mapping.
    fn flow_pair(&mut self) -> bool {
        match self.flows.last_mut() {
            Some(flow) if flow.sequence && !flow.pair => {
                flow.pair = true;
                self.flow_depth += 1;
                self.measure()
            }
            _ => false,
        }
    }

    /// A single- or double-quoted scalar, over lines; a document marker ends it (as an error).
    fn quoted(&mut self, quote: u8) {
        self.advance();
        while self.pos < self.text.len() {
            if self.col == 0 && self.document_marker() {
                return;
            }
            match self.peek(0) {
                b'\'' if quote == b'\'' && self.peek(1) == b'\'' => self.advance_n(2),
                b'\\' if quote == b'"' => self.advance_n(2),
                c if c == quote => {
                    self.advance();
                    return;
                }
                _ => self.advance(),
            }
        }
    }

    /// A plain scalar, continued on more-indented lines in block context (libyaml's
    /// `scan_plain_scalar`); stops before `: `, ` #`, and in flow context `,[]{}`.
    fn plain(&mut self) {
        let indent = self.blocks.last().map_or(0, |&(col, _)| col + 1);
        let in_flow = !self.flows.is_empty();
        loop {
            if (self.col == 0 && self.document_marker()) || self.peek(0) == b'#' {
                return;
            }
            while !self.blankz_at(0) {
                let c = self.peek(0);
                let colon_ends = c == b':' && (self.blankz_at(1) || (in_flow && is_flow_indicator(self.peek(1))));
                if colon_ends || (in_flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}')) {
                    return;
                }
                self.advance();
            }
            if self.pos >= self.text.len() {
                return;
            }
            while self.pos < self.text.len() && (self.blank_at(0) || self.break_at(0) > 0) {
                if self.break_at(0) > 0 {
                    self.key_col = None;
                }
                self.advance();
            }
            if !in_flow && self.col < indent {
                return;
            }
        }
    }

    /// `|` or `>`: the header line, then every line indented at least as the content (libyaml's
    /// `scan_block_scalar`), blank lines included.
    fn block_scalar(&mut self) {
        let parent = self.blocks.last().map(|&(col, _)| col);
        self.advance();
        let mut explicit = None;
        while let c @ (b'+' | b'-' | b'1'..=b'9') = self.peek(0) {
            if c.is_ascii_digit() {
                explicit = Some(usize::from(c - b'0'));
            }
            self.advance();
        }
        self.skip_line();
        self.key_col = None;
        let floor = parent.map_or(1, |p| p + 1);
        let mut indent = explicit.map(|d| parent.map_or(d, |p| p + d));
        let mut widest_blank = 0;
        while self.break_at(0) > 0 {
            let line_start = (self.pos, self.line, self.col);
            self.advance();
            let spaces = self.text[self.pos..].iter().take_while(|&&b| b == b' ').count();
            let after = self.pos + spaces;
            let blank_line = after >= self.text.len() || self.break_at(spaces) > 0;
            if blank_line {
                widest_blank = widest_blank.max(spaces);
                self.advance_n(spaces);
                continue;
            }
            let need = *indent.get_or_insert(spaces.max(widest_blank).max(floor));
            if spaces < need {
                (self.pos, self.line, self.col) = line_start;
                return;
            }
            self.skip_line();
        }
    }
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'?' | b'[' | b']' | b'{' | b'}')
}

/// Characters of a tag (`!`, `!!str`, `!<tag:x,y>`): libyaml's URI characters.
fn is_tag_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-;/?:@&=+$,.!~*'()[]%_<>#".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        text: &'static str,
        depth: usize,
    }

    #[test]
    fn depth_counts_collections_not_scalars() {
        let cases = [
            Case {
                name: "scalar",
                text: "hello",
                depth: 0,
            },
            Case {
                name: "empty",
                text: "",
                depth: 0,
            },
            Case {
                name: "flat map",
                text: "a: b\nc: d\n",
                depth: 1,
            },
            Case {
                name: "json",
                text: r#"{"a": [1, {"b": "[[["}]}"#,
                depth: 3,
            },
            Case {
                name: "nested block maps",
                text: "a:\n  b:\n    c: 1\n  d: 2\ne: 3\n",
                depth: 3,
            },
            Case {
                name: "indentless sequence",
                text: "a:\n- b: 1\n  c: 2\nd: 3\n",
                depth: 3,
            },
            Case {
                name: "compact sequences",
                text: "- - - x\n  - y\n",
                depth: 3,
            },
            Case {
                name: "flow in block",
                text: "a: [1, {b: c}]\n",
                depth: 3,
            },
            Case {
                name: "single-pair mapping",
                text: "[a: [b: c]]",
                depth: 4,
            },
            Case {
                name: "brackets in a plain scalar",
                text: "a: b[[[c\n",
                depth: 1,
            },
            Case {
                name: "brackets in quotes",
                text: "a: '[[[' \nb: \"{{\\\"{\"\n",
                depth: 1,
            },
            Case {
                name: "brackets in a comment",
                text: "a: 1 # [[[[\n",
                depth: 1,
            },
            Case {
                name: "brackets in a block scalar",
                text: "a: |\n  [[[[\n    {{{{\n\n  x\nb: 2\n",
                depth: 1,
            },
            Case {
                name: "folded continuation lines",
                text: "a: one\n  two\n    three\nb: 1\n",
                depth: 1,
            },
            Case {
                name: "documents",
                text: "a:\n  b: 1\n---\n[[[]]]\n",
                depth: 3,
            },
            Case {
                name: "comment ended by a line separator",
                text: "# x\u{2028}[[[]]]",
                depth: 3,
            },
            Case {
                name: "complex key",
                text: "? [a, b]\n: c\n",
                depth: 2,
            },
            Case {
                name: "byte order mark on a later line",
                text: "a: b\n\u{feff}[[[]]]\n",
                depth: 4,
            },
        ];
        for case in cases {
            assert_eq!(depth(case.text.as_bytes()), case.depth, "{}", case.name);
        }
    }

    #[test]
    fn check_names_the_limit() {
        let deep = "[".repeat(101);
        let err = check(deep.as_bytes(), Limits::REQUEST).unwrap_err();
        assert_eq!(err.to_string(), "nested deeper than the limit of 100 levels (line 1)");
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        let err = check(&big, Limits::REQUEST).unwrap_err();
        assert_eq!(err.to_string(), "larger than the limit of 3 MiB");
        assert!(check("[".repeat(100).as_bytes(), Limits::REQUEST).is_ok());
    }

    #[test]
    fn value_depth_matches_text_depth() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a": [1, {"b": []}], "c": {}}"#).unwrap();
        assert_eq!(value_depth(&v), 4);
        assert_eq!(value_depth(&serde_json::json!(1)), 0);
    }
}
