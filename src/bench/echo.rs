//! The echo agent of `outdial bench agent`: a child process (`outdial bench agent-echo`) that
//! speaks Twilio Media Streams as an AI agent's server does and sends every `media` payload
//! it receives straight back, so that a call's audio goes callee → agent → callee. Its CPU is
//! its own process's, not outdial's.
//!
//! One current-thread tokio runtime serves every socket (`accept_async`, one task per
//! connection, Nagle off, the small read buffer outdial's agent sockets use). It counts what it saw: connections, `start`s, `media` frames in
//! (and how many carried a generator tag, [`super::gen::read_tag`]), `media` frames echoed.
//!
//! Control is line-delimited JSON like the generator's: we write [`EchoEvent::Ready`] with our
//! port on stdout, then answer each [`EchoCommand`] read from stdin; nothing else may be
//! written on stdout. It is a measuring tool: nothing here runs in the server.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::gen::read_tag;

/// From the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum EchoCommand {
    /// Answer with [`EchoEvent::Counts`].
    Counts,
    Exit,
}

/// To the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EchoEvent {
    /// Listening on 127.0.0.1:`port` (ws://).
    Ready {
        port: u16,
    },
    Counts(EchoCounts),
    Error {
        message: String,
    },
}

/// What the echo agent saw so far.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EchoCounts {
    pub connections: u64,
    pub starts: u64,
    pub media_in: u64,
    /// Of `media_in`: payloads carrying a generator tag (the generator's own audio).
    pub tagged_in: u64,
    pub media_out: u64,
    /// Frames that were not understood.
    pub bad_frames: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    starts: AtomicU64,
    media_in: AtomicU64,
    tagged_in: AtomicU64,
    media_out: AtomicU64,
    bad_frames: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EchoCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EchoCounts {
            connections: get(&self.connections),
            starts: get(&self.starts),
            media_in: get(&self.media_in),
            tagged_in: get(&self.tagged_in),
            media_out: get(&self.media_out),
            bad_frames: get(&self.bad_frames),
        }
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, rename = "streamSid")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media: Option<Media<'a>>,
}

#[derive(Deserialize)]
struct Media<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

/// The reply to one of outdial's text frames: `media` comes back with the same payload.
fn echo(text: &str, counters: &Counters) -> Option<String> {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    match frame.event.as_ref() {
        "start" => {
            counters.starts.fetch_add(1, Ordering::Relaxed);
            None
        }
        "media" => {
            let media = frame.media?;
            counters.media_in.fetch_add(1, Ordering::Relaxed);
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&*media.payload) {
                if read_tag(&bytes).is_some() {
                    counters.tagged_in.fetch_add(1, Ordering::Relaxed);
                }
            }
            let sid = frame.stream_sid.unwrap_or_default();
            Some(
                serde_json::json!({
                    "event": "media",
                    "streamSid": sid,
                    "media": {"payload": media.payload},
                })
                .to_string(),
            )
        }
        _ => None,
    }
}

async fn serve_one(stream: TcpStream, counters: Arc<Counters>) {
    let _ = stream.set_nodelay(true);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(crate::bridge::agent::READ_BUFFER);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        return;
    };
    counters.connections.fetch_add(1, Ordering::Relaxed);
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                if let Some(reply) = echo(text.as_str(), &counters) {
                    if ws.send(Message::text(reply)).await.is_err() {
                        break;
                    }
                    counters.media_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn emit(out: &mut impl Write, ev: &EchoEvent) -> io::Result<()> {
    let line = serde_json::to_string(ev).map_err(io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

/// `outdial bench agent-echo`: listens, says `ready`, serves until `exit` or end of input.
pub fn main() -> io::Result<()> {
    let _ = super::sys::raise_nofile(8192);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = match runtime.block_on(TcpListener::bind("127.0.0.1:0")) {
        Ok(l) => l,
        Err(e) => {
            emit(
                &mut out,
                &EchoEvent::Error {
                    message: format!("echo agent cannot listen: {e}"),
                },
            )?;
            return Err(e);
        }
    };
    let port = listener.local_addr()?.port();
    let counters = Arc::new(Counters::default());
    let served = Arc::clone(&counters);
    // The runtime serves on its own thread; this one reads the parent's commands.
    std::thread::Builder::new()
        .name("echo-agent".into())
        .spawn(move || {
            runtime.block_on(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_one(stream, Arc::clone(&served)));
                }
            })
        })?;
    emit(&mut out, &EchoEvent::Ready { port })?;
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<EchoCommand>(&line) {
            Ok(EchoCommand::Counts) => emit(&mut out, &EchoEvent::Counts(counters.snapshot()))?,
            Ok(EchoCommand::Exit) => break,
            Err(e) => emit(
                &mut out,
                &EchoEvent::Error {
                    message: format!("bad command {line:?}: {e}"),
                },
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_comes_back_with_its_payload_and_is_counted() {
        let c = Counters::default();
        let tagged = super::super::gen::tag_payload(&super::super::gen::tone_payload(), 3, 4);
        let b64 = base64::engine::general_purpose::STANDARD.encode(tagged);
        let frame = format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{{"track":"inbound","chunk":"1","timestamp":"20","payload":"{b64}"}}}}"#
        );
        let reply: serde_json::Value =
            serde_json::from_str(&echo(&frame, &c).expect("a reply")).expect("json");
        assert_eq!(reply["event"], "media");
        assert_eq!(reply["streamSid"], "MZ1");
        assert_eq!(reply["media"]["payload"], b64.as_str());
        assert_eq!(echo(r#"{"event":"start","start":{}}"#, &c), None);
        assert_eq!(echo(r#"{"event":"connected"}"#, &c), None);
        assert_eq!(echo("not json", &c), None);
        let n = c.snapshot();
        assert_eq!(
            (n.starts, n.media_in, n.tagged_in, n.bad_frames),
            (1, 1, 1, 1)
        );
    }
}
