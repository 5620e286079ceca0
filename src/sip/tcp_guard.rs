//! Guard on SIP over TCP: our own listener frames each message a connection carries (headers up
//! to the blank line, then `Content-Length` bytes) and puts it to the same [`check`] as a UDP
//! datagram. A request that fails it is answered on that connection (`400 Bad Request`, `501
//! Not Implemented` for an unknown method) and never reaches rsipstack, whose own TCP reader
//! would close the connection without a word; the connection stays open for what follows. A
//! frame that cannot be delimited (a `Content-Length` that is no number, headers or a body over
//! [`MAX_MESSAGE`]) is answered 400 when it can be and ends the connection, since nothing after
//! it can be found.
//!
//! rsipstack's TCP connection reads from a `TcpStream` of its own, so each accepted connection
//! is handed to it with the peer's real addresses and the real stream's write half (responses
//! and requests go straight to the peer), and with the read side of a loopback socket pair that
//! this guard writes every message that passed into. The peer closing ends the pair, and so
//! rsipstack's side of the connection.
//!
//! Must not: buffer more than one message per connection, keep anything once a connection
//! closes, or panic on what arrives.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::stream::{StreamConnection, StreamConnectionInner};
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::guard::{check, error_response, Verdict};

/// The largest message a connection may carry (headers and body): rsipstack's own limit.
pub const MAX_MESSAGE: usize = 65_535;

/// Accepts SIP over TCP on `listener` until `cancel`, for the endpoint's transport layer.
/// `local` is the address our Via and Contact name for TCP.
pub fn serve(
    listener: TcpListener,
    local: SocketAddr,
    endpoint: EndpointInnerRef,
    server_name: String,
    cancel: CancellationToken,
) {
    let local = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Tcp),
        addr: local.into(),
    };
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: go on.
                    debug!(error = %e, "SIP TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let endpoint = endpoint.clone();
            let local = local.clone();
            let server_name = server_name.clone();
            let cancel = cancel.child_token();
            tokio::spawn(async move {
                if let Err(e) =
                    connection(stream, peer, local, endpoint, &server_name, cancel).await
                {
                    debug!(%peer, error = %e, "SIP TCP connection ended");
                }
            });
        }
    });
}

/// A loopback socket pair: what is written into the first is read from the second.
async fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (writer, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let writer = writer?;
    let (reader, from) = accepted?;
    // Only our own connect may be the other end.
    if from != writer.local_addr()? {
        return Err(std::io::Error::other("loopback pair: unexpected peer"));
    }
    writer.set_nodelay(true)?;
    Ok((writer, reader))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SipAddr,
    endpoint: EndpointInnerRef,
    server_name: &str,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let (mut feed, inner_side) = loopback_pair().await?;
    let (mut from_peer, to_peer) = tokio::io::split(stream);
    let (inner_read, _unused_write) = tokio::io::split(inner_side);
    let conn = TcpConnection {
        inner: Arc::new(StreamConnectionInner::new(
            local,
            SipAddr {
                r#type: Some(rsipstack::sip::Transport::Tcp),
                addr: peer.into(),
            },
            inner_read,
            to_peer,
        )),
        cancel_token: Some(cancel.clone()),
    };
    endpoint
        .transport_layer
        .add_connection(SipConnection::Tcp(conn.clone()));

    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let result = loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            n = from_peer.read(&mut chunk) => n,
        };
        let n = match n {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        buffer.extend_from_slice(&chunk[..n]);
        match pass_on(&mut buffer, &mut feed, &conn, peer, server_name).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // rsipstack's reader sees the end, retires the connection and closes its write side.
    let _ = feed.shutdown().await;
    result
}

/// Takes every whole message out of `buffer`: passed on to rsipstack, or answered. Returns
/// `false` when the stream cannot go on (a frame that cannot be delimited).
async fn pass_on(
    buffer: &mut Vec<u8>,
    feed: &mut TcpStream,
    conn: &TcpConnection,
    peer: SocketAddr,
    server_name: &str,
) -> std::io::Result<bool> {
    loop {
        match frame(buffer) {
            Frame::Incomplete => return Ok(true),
            Frame::KeepAlive(len) => {
                feed.write_all(&buffer[..len]).await?;
                buffer.drain(..len);
            }
            Frame::Message(len) => {
                let message = &buffer[..len];
                match check(message) {
                    Verdict::Pass => feed.write_all(message).await?,
                    Verdict::Drop(why) => {
                        warn!(%peer, reason = %why, "malformed SIP message over TCP dropped");
                    }
                    Verdict::Answer { code, reason, why } => {
                        warn!(%peer, code, reason = %why, "malformed SIP message over TCP answered");
                        answer(conn, message, code, reason, peer, server_name).await;
                    }
                }
                buffer.drain(..len);
            }
            Frame::Broken(why) => {
                warn!(%peer, reason = %why, "SIP over TCP cannot be framed: connection closed");
                answer(conn, buffer, 400, "Bad Request", peer, server_name).await;
                buffer.clear();
                return Ok(false);
            }
        }
    }
}

async fn answer(
    conn: &TcpConnection,
    message: &[u8],
    code: u16,
    reason: &str,
    peer: SocketAddr,
    server_name: &str,
) {
    if let Some(resp) = error_response(message, code, reason, peer, server_name) {
        if let Err(e) = conn.send_raw(resp.as_bytes()).await {
            debug!(%peer, error = %e, "could not send an error response over TCP");
        }
    }
}

/// What the start of a stream's buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole message yet.
    Incomplete,
    /// A keep-alive (RFC 5626 CRLFCRLF ping, or its CRLF pong) of this many bytes.
    KeepAlive(usize),
    /// One message of this many bytes (headers, blank line, body).
    Message(usize),
    /// Cannot be delimited.
    Broken(String),
}

/// Delimits the first message (or keep-alive) of a TCP stream's `buffer`.
pub fn frame(buffer: &[u8]) -> Frame {
    if buffer.starts_with(b"\r\n\r\n") {
        return Frame::KeepAlive(4);
    }
    if buffer.starts_with(b"\r\n") {
        return Frame::KeepAlive(2);
    }
    if buffer == b"\r" {
        return Frame::Incomplete;
    }
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buffer.len() > MAX_MESSAGE {
            return Frame::Broken(format!("no end of headers in {MAX_MESSAGE} bytes"));
        }
        return Frame::Incomplete;
    };
    let headers = &buffer[..end];
    let mut body = 0usize;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            match value.trim().parse::<usize>() {
                Ok(n) => body = n,
                Err(_) => {
                    return Frame::Broken(format!("Content-Length {:?} is no number", value.trim()))
                }
            }
            break;
        }
    }
    let total = end + 4 + body;
    if total > MAX_MESSAGE {
        return Frame::Broken(format!("message of {total} bytes (over {MAX_MESSAGE})"));
    }
    if buffer.len() < total {
        return Frame::Incomplete;
    }
    Frame::Message(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_keepalives_and_refuses_what_cannot_be_delimited() {
        let msg = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcNEXT";
        assert_eq!(frame(msg), Frame::Message(msg.len() - 4));
        assert_eq!(frame(&msg[..20]), Frame::Incomplete);
        assert_eq!(
            frame(&msg[..msg.len() - 6]),
            Frame::Incomplete,
            "body not all there"
        );
        let compact = b"BYE sip:a SIP/2.0\r\nl:0\r\n\r\n";
        assert_eq!(frame(compact), Frame::Message(compact.len()));
        let none = b"BYE sip:a SIP/2.0\r\nVia: x\r\n\r\n";
        assert_eq!(
            frame(none),
            Frame::Message(none.len()),
            "no Content-Length: no body"
        );
        assert_eq!(frame(b"\r\n\r\nINVITE"), Frame::KeepAlive(4));
        assert_eq!(frame(b"\r\nSIP/2.0"), Frame::KeepAlive(2));
        assert_eq!(frame(b"\r"), Frame::Incomplete);
        assert!(matches!(
            frame(b"INVITE x SIP/2.0\r\nContent-Length: lots\r\n\r\n"),
            Frame::Broken(_)
        ));
        assert!(matches!(
            frame(b"INVITE x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Frame::Broken(_)
        ));
        assert!(matches!(
            frame(b"INVITE x SIP/2.0\r\nContent-Length: 70000\r\n\r\n"),
            Frame::Broken(_)
        ));
        assert!(matches!(
            frame(&vec![b'a'; MAX_MESSAGE + 1]),
            Frame::Broken(_)
        ));
        assert_eq!(frame(&vec![b'a'; 1000]), Frame::Incomplete);
    }
}
