//! The channel.k8s.io WebSocket protocol of `pods/exec` and `pods/attach`, as kube-apiserver
//! speaks it to kubectl 1.30+ and kube-rs: subprotocols `v5.channel.k8s.io` and
//! `v4.channel.k8s.io`; each binary message is one channel byte and its data — 0 stdin, 1 stdout,
//! 2 stderr, 3 status (a `metav1.Status` once the command has ended), 4 terminal resize (ignored:
//! no terminal is allocated), and in v5 255 "close": `[255, 0]` ends stdin.
//!
//! Limits: a message from the client is at most [`MAX_MESSAGE`] bytes; output is sent in chunks of
//! at most [`CHUNK`] bytes; a session ends when the command has ended and its output is sent, when
//! the client goes away (the command is killed), or when the server shuts down.
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake};

use crate::embedded::runner::exec::ExecProcess;

/// The subprotocols served, preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// Largest message accepted from the client (kubectl sends stdin in 32 KiB pieces).
const MAX_MESSAGE: usize = 1 << 20;
/// Largest piece of output read at once.
const CHUNK: usize = 32 * 1024;
/// How often a session checks that the container still runs.
const CONTAINER_CHECK: Duration = Duration::from_millis(500);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// What kind of streaming upgrade a request asks for.
pub(crate) enum Upgrade {
    /// A WebSocket with one of the served subprotocols.
    WebSocket {
        /// `Sec-WebSocket-Key`.
        key: String,
        /// The subprotocol chosen.
        protocol: &'static str,
    },
    /// A WebSocket offering none of the served subprotocols (the offer, for the message).
    UnknownProtocol(String),
    /// SPDY/3.1 (kubectl's fallback), not served.
    Spdy,
    /// No upgrade at all.
    None,
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Reads the upgrade a request asks for.
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Upgrade {
    let upgrade = header_str(headers, header::UPGRADE).to_ascii_lowercase();
    if upgrade.contains("spdy") {
        return Upgrade::Spdy;
    }
    let key = header_str(headers, header::SEC_WEBSOCKET_KEY);
    if !upgrade.contains("websocket") || key.is_empty() {
        return Upgrade::None;
    }
    let offered = header_str(headers, header::SEC_WEBSOCKET_PROTOCOL);
    let offer: Vec<&str> = offered.split(',').map(str::trim).collect();
    match PROTOCOLS.iter().find(|p| offer.contains(p)) {
        Some(protocol) => Upgrade::WebSocket {
            key: key.to_string(),
            protocol,
        },
        None => Upgrade::UnknownProtocol(offered.to_string()),
    }
}

/// The `101 Switching Protocols` answer to a WebSocket request.
pub(crate) fn switching_protocols(key: &str, protocol: &str) -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            handshake::derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Which streams the client asked for (`stdin`, `stdout`, `stderr`, `tty` of PodExecOptions).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    /// The channel stderr goes to: stdout's with a terminal (kubelet merges them), none if unwanted.
    fn stderr_channel(self) -> Option<u8> {
        if self.tty {
            self.stdout.then_some(STDOUT)
        } else {
            self.stderr.then_some(STDERR)
        }
    }

    /// The lowest channel the server writes on: it opens the session with an empty message there.
    fn first_channel(self) -> u8 {
        if self.stdout {
            STDOUT
        } else if self.stderr {
            STDERR
        } else {
            STATUS
        }
    }
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Completes the upgrade; `None` if the client went away first.
async fn open(upgrade: OnUpgrade) -> Option<Ws> {
    let io = upgrade.await.ok()?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// The status kubelet reports for a command's exit code.
pub(crate) fn exit_status(argv: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            argv.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The status of a command that could not be run.
fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// Sends the final status and closes the WebSocket.
async fn finish(ws: &mut (impl SinkExt<Message> + Unpin), status: &Value) {
    let _ = ws.send(frame(STATUS, status.to_string().as_bytes())).await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = ws.send(Message::Close(Some(close))).await;
}

/// Copies `from` to `tx` on `channel` in chunks until its end (or the receiver is gone).
fn pump(mut from: impl AsyncRead + Unpin + Send + 'static, channel: Option<u8>, tx: mpsc::Sender<(u8, Bytes)>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Unwanted output is read and dropped, so the command never blocks on it.
                    if let Some(ch) = channel
                        && tx.send((ch, Bytes::copy_from_slice(&buf[..n]))).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

/// Reads the client's messages: stdin into the command, `[255, 0]` closes it. Returns when the
/// client closes the WebSocket or goes away.
async fn client_input(
    mut rx: impl StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin,
    mut stdin: Option<ChildStdin>,
    v5: bool,
) {
    while let Some(Ok(msg)) = rx.next().await {
        let data = match msg {
            Message::Binary(data) => data,
            Message::Close(_) => return,
            _ => continue,
        };
        match data.first().copied() {
            Some(STDIN) => {
                if let Some(pipe) = stdin.as_mut()
                    && pipe.write_all(&data[1..]).await.is_err()
                {
                    stdin = None;
                }
            }
            Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin = None,
            _ => {}
        }
    }
}

/// Serves an exec session: the command's output to the client, the client's stdin to the
/// command, then its exit status. `started` is the command, or why it could not start.
pub(crate) async fn serve_exec(
    upgrade: OnUpgrade,
    protocol: &'static str,
    wanted: Wanted,
    argv: Vec<String>,
    started: Result<ExecProcess, String>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut ws) = open(upgrade).await else { return };
    let mut exec = match started {
        Ok(p) => p,
        Err(message) => return finish(&mut ws, &internal_error(&message)).await,
    };
    let _ = ws.send(frame(wanted.first_channel(), &[])).await;
    let (tx, mut outputs) = mpsc::channel(16);
    if let Some(out) = exec.child.stdout.take() {
        pump(out, wanted.stdout.then_some(STDOUT), tx.clone());
    }
    if let Some(err) = exec.child.stderr.take() {
        pump(err, wanted.stderr_channel(), tx.clone());
    }
    drop(tx);
    let (mut sink, stream) = ws.split();
    let stdin = exec.child.stdin.take();
    let mut input = tokio::spawn(client_input(stream, stdin, protocol.starts_with("v5")));
    let mut check = tokio::time::interval(CONTAINER_CHECK);
    let (mut code, mut open_outputs) = (None, true);
    while code.is_none() || open_outputs {
        tokio::select! {
            chunk = outputs.recv(), if open_outputs => match chunk {
                Some((ch, data)) => {
                    if sink.send(frame(ch, &data)).await.is_err() {
                        break;
                    }
                }
                None => open_outputs = false,
            },
            status = exec.child.wait(), if code.is_none() => {
                code = Some(status.map(exit_code).unwrap_or(-1));
                // What the command left running would hold its pipes open.
                exec.kill_group();
            }
            _ = &mut input => {
                exec.kill_group();
                return;
            }
            _ = check.tick() => {
                if !exec.container_alive() {
                    exec.kill_group();
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
    exec.kill_group();
    input.abort();
    if let Some(code) = code {
        finish(&mut sink, &exit_status(&argv, code)).await;
    }
}

/// Resolves once the server shuts down.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// Serves an attach session: what the container writes from now on (its log) until it ends, then
/// Success. stdin is read and dropped: the runner gives containers no stdin.
pub(crate) async fn serve_attach(
    upgrade: OnUpgrade,
    wanted: Wanted,
    mut output: mpsc::Receiver<Bytes>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut ws) = open(upgrade).await else { return };
    let _ = ws.send(frame(wanted.first_channel(), &[])).await;
    let (mut sink, stream) = ws.split();
    let mut input = tokio::spawn(client_input(stream, None, false));
    loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(data) if wanted.stdout => {
                    if sink.send(frame(STDOUT, &data)).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut input => return,
            _ = stopped(&mut stop) => return,
        }
    }
    input.abort();
    finish(&mut sink, &json!({"metadata": {}, "status": "Success"})).await;
}
