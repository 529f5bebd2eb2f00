//! Scripted hostile git servers on 127.0.0.1: smart HTTP or git:// servers that speak just enough of the
//! protocol to lead a client on, then drip, flood, send a pack that never ends, garbage or an error of
//! their own. Each connection runs on its own thread and ends when the client hangs up, or after
//! [`MAX_LIFETIME`] / [`MAX_BYTES`] whatever the client does, so a test leaves nothing running.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest a connection is served.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// The most a connection is sent.
pub const MAX_BYTES: u64 = 4 << 30;
/// The commit every scripted server advertises.
pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// How the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Smart HTTP (`/info/refs`, `/git-upload-pack`), one request per connection.
    Http,
    /// The git daemon protocol, `git://`.
    Git,
}

/// What the server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request and never answers.
    Hang,
    /// Answers the first request one byte every 100ms, forever.
    Drip,
    /// Answers the first request with a ref advertisement that never ends, as fast as the client reads.
    EndlessRefs,
    /// Lists one branch, then answers the fetch with a pack whose objects never end.
    HugePack,
    /// Lists one branch, then answers the fetch with sideband packets on a band that does not exist.
    GarbageSideband,
    /// Lists one branch, then fails the fetch the way a corrupt repository does: `error:`/`fatal:` lines in
    /// the sideband, then hangs up.
    SidebandFatal,
    /// Answers the first request with an `ERR` packet.
    ErrPacket,
}

/// The message of [`Behaviour::ErrPacket`].
pub const ERR_TEXT: &str = "unable to read 0123456789abcdef: repository corruption on the remote side";
/// The last sideband line of [`Behaviour::SidebandFatal`].
pub const FATAL_TEXT: &str =
    "fatal: git upload-pack: aborting due to possible repository corruption on the remote side.";

/// A running scripted server.
pub struct HostileServer {
    /// The port it listens on.
    pub port: u16,
    wire: Wire,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl HostileServer {
    /// Listen on a free port of 127.0.0.1 and serve every connection with `behaviour`.
    pub fn start(wire: Wire, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (Arc::clone(&accepted), Arc::clone(&closed));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let _ = serve(stream, wire, behaviour);
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        HostileServer {
            port,
            wire,
            accepted,
            closed,
        }
    }

    /// The repository URL to give a client.
    pub fn url(&self) -> String {
        match self.wire {
            Wire::Http => format!("http://127.0.0.1:{}/r.git", self.port),
            Wire::Git => format!("git://127.0.0.1:{}/r.git", self.port),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose client went away (or that the server ended) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// What the client asked for.
enum Ask {
    /// The first request: the capability (or ref) advertisement.
    Advert,
    /// A protocol-v2 `ls-refs` command.
    LsRefs,
    /// A protocol-v2 `fetch` command.
    Fetch,
}

fn serve(stream: TcpStream, wire: Wire, behaviour: Behaviour) -> std::io::Result<()> {
    stream.set_read_timeout(Some(MAX_LIFETIME))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = Budget::new(stream);
    loop {
        let ask = match wire {
            Wire::Http => read_http(&mut reader)?,
            Wire::Git => read_git(&mut reader, out.requests)?,
        };
        out.requests += 1;
        if wire == Wire::Http {
            let kind = if matches!(ask, Ask::Advert) {
                "advertisement"
            } else {
                "result"
            };
            out.send(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-{kind}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )?;
        }
        answer(&mut out, &mut reader, wire, behaviour, &ask)?;
        // One request per HTTP connection; a git server hangs up after the fetch (as upload-pack exits).
        if wire == Wire::Http || matches!(ask, Ask::Fetch) {
            return Ok(());
        }
    }
}

fn answer(
    out: &mut Budget,
    reader: &mut BufReader<TcpStream>,
    wire: Wire,
    behaviour: Behaviour,
    ask: &Ask,
) -> std::io::Result<()> {
    match (behaviour, ask) {
        (Behaviour::Hang, _) => hang(reader),
        (Behaviour::Drip, _) => drip(out),
        (Behaviour::EndlessRefs, _) => endless_refs(out, wire),
        (Behaviour::ErrPacket, _) => {
            out.send(&pkt(&format!("ERR {ERR_TEXT}\n")))?;
            Ok(())
        }
        (_, Ask::Advert) => {
            if wire == Wire::Http {
                out.send(&pkt("# service=git-upload-pack\n"))?;
                out.send(b"0000")?;
            }
            for line in [
                "version 2\n",
                "agent=git/hostile\n",
                "ls-refs=unborn\n",
                "fetch=shallow\n",
                "object-format=sha1\n",
            ] {
                out.send(&pkt(line))?;
            }
            out.send(b"0000")
        }
        (_, Ask::LsRefs) => {
            out.send(&pkt(&format!("{SHA} HEAD symref-target:refs/heads/main\n")))?;
            out.send(&pkt(&format!("{SHA} refs/heads/main\n")))?;
            out.send(b"0000")
        }
        (Behaviour::HugePack, Ask::Fetch) => huge_pack(out),
        (Behaviour::GarbageSideband, Ask::Fetch) => {
            start_packfile(out)?;
            for i in 0..1000u32 {
                let mut data = vec![7u8];
                data.extend(i.to_be_bytes().repeat(64));
                out.send(&pkt_bytes(&data))?;
            }
            out.send(b"0000")
        }
        (Behaviour::SidebandFatal, Ask::Fetch) => {
            start_packfile(out)?;
            out.send(&band(2, b"Enumerating objects: 3, done.\n"))?;
            out.send(&band(2, format!("error: {ERR_TEXT}\n").as_bytes()))?;
            out.send(&band(2, b"fatal: bad object 0123456789abcdef\n"))?;
            out.send(&band(3, FATAL_TEXT.as_bytes()))?;
            Ok(())
        }
    }
}

/// Read nothing more and say nothing until the client hangs up (or [`MAX_LIFETIME`]).
fn hang(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    while reader.read(&mut buf)? > 0 {}
    Ok(())
}

fn drip(out: &mut Budget) -> std::io::Result<()> {
    let advert = endless_ref_lines(Wire::Git);
    for byte in advert.flat_map(String::into_bytes) {
        out.send(&[byte])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn endless_refs(out: &mut Budget, wire: Wire) -> std::io::Result<()> {
    let mut batch = Vec::with_capacity(64 * 1024);
    for line in endless_ref_lines(wire) {
        batch.extend_from_slice(line.as_bytes());
        if batch.len() >= 60 * 1024 {
            out.send(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// A protocol-v0 ref advertisement (what a server that ignores the requested version sends) whose refs
/// never end.
fn endless_ref_lines(wire: Wire) -> impl Iterator<Item = String> {
    let service = match wire {
        Wire::Http => vec![pkt_text("# service=git-upload-pack\n"), "0000".to_owned()],
        Wire::Git => Vec::new(),
    };
    let head = pkt_text(&format!("{SHA} HEAD\0multi_ack side-band-64k ofs-delta\n"));
    service
        .into_iter()
        .chain(std::iter::once(head))
        .chain((0u64..).map(|n| pkt_text(&format!("{SHA} refs/heads/branch-{n:012}\n"))))
}

fn start_packfile(out: &mut Budget) -> std::io::Result<()> {
    out.send(&pkt("packfile\n"))
}

/// A pack of 100,000 incompressible 64 KiB blobs (6.4 GB), sent as fast as the client takes it.
fn huge_pack(out: &mut Budget) -> std::io::Result<()> {
    start_packfile(out)?;
    let objects: u32 = 100_000;
    let mut header = b"PACK".to_vec();
    header.extend(2u32.to_be_bytes());
    header.extend(objects.to_be_bytes());
    out.send(&band(1, &header))?;
    let entry = blob_entry(64 * 1024);
    for _ in 0..objects {
        for chunk in entry.chunks(65_000) {
            out.send(&band(1, chunk))?;
        }
    }
    Ok(())
}

/// One pack entry: a blob of `size` pseudo-random bytes, deflated without compression.
fn blob_entry(size: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let content: Vec<u8> = (0..size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    // Type 3 (blob) and the size as git's variable-length entry header.
    let mut entry = Vec::new();
    let mut rest = size >> 4;
    let mut first = (3u8 << 4) | (size & 0x0f) as u8;
    if rest > 0 {
        first |= 0x80;
    }
    entry.push(first);
    while rest > 0 {
        let mut byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        entry.push(byte);
    }
    let mut zlib = flate2::write::ZlibEncoder::new(entry, flate2::Compression::none());
    zlib.write_all(&content).expect("deflate in memory");
    zlib.finish().expect("deflate in memory")
}

/// Read one HTTP request (head and Content-Length body) and say what it asks.
fn read_http(reader: &mut BufReader<TcpStream>) -> std::io::Result<Ask> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" || head.len() > 64 * 1024 {
            break;
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    Ok(ask_of(head.starts_with("GET"), &body))
}

/// Read one git:// request: the daemon request line first, then v2 commands up to their flush packet.
fn read_git(reader: &mut BufReader<TcpStream>, served: usize) -> std::io::Result<Ask> {
    if served == 0 {
        read_pkt(reader)?;
        return Ok(Ask::Advert);
    }
    let mut body = Vec::new();
    while let Some(line) = read_pkt(reader)? {
        body.extend(line);
    }
    Ok(ask_of(false, &body))
}

fn ask_of(get: bool, body: &[u8]) -> Ask {
    let text = String::from_utf8_lossy(body);
    if get {
        Ask::Advert
    } else if text.contains("command=fetch") {
        Ask::Fetch
    } else {
        Ask::LsRefs
    }
}

/// One packet line's payload; `None` for a flush packet.
fn read_pkt(reader: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len)?;
    let len = usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("zz"), 16)
        .map_err(|_| std::io::Error::other("not a packet line"))?;
    if len < 4 {
        return Ok((len == 1).then(Vec::new));
    }
    let mut payload = vec![0u8; len - 4];
    reader.read_exact(&mut payload)?;
    Ok(Some(payload))
}

fn pkt_text(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

fn pkt(payload: &str) -> Vec<u8> {
    pkt_text(payload).into_bytes()
}

fn pkt_bytes(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn band(number: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![number];
    payload.extend_from_slice(data);
    pkt_bytes(&payload)
}

/// The connection's writing side, which gives up after [`MAX_LIFETIME`] or [`MAX_BYTES`].
struct Budget {
    stream: TcpStream,
    started: Instant,
    sent: u64,
    requests: usize,
}

impl Budget {
    fn new(stream: TcpStream) -> Self {
        // A client that stops reading without hanging up must not hold the server's thread forever.
        let _ = stream.set_write_timeout(Some(MAX_LIFETIME));
        Budget {
            stream,
            started: Instant::now(),
            sent: 0,
            requests: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.started.elapsed() > MAX_LIFETIME || self.sent > MAX_BYTES {
            return Err(std::io::Error::other("the scripted server's own limit"));
        }
        self.sent += bytes.len() as u64;
        self.stream.write_all(bytes)
    }
}
