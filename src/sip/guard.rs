//! Guard on the SIP UDP socket: floods are limited and malformed datagrams are answered,
//! before rsipstack sees anything. Its [`check`] and [`error_response`] also judge and answer
//! each message of a TCP connection ([`super::tcp_guard`]).
//!
//! Every datagram is first classified and, if it is out-of-dialog or not SIP at all, put to
//! the per-source [`FloodGuard`](super::flood::FloodGuard) — before any parsing, so a flood
//! costs a few byte comparisons per datagram: over the limit a request is answered
//! `503 Service Unavailable` with `Retry-After` (within a small budget) or dropped. What
//! passes is checked: rsipstack drops datagrams it cannot parse without a word, so a request
//! that does not parse, or lacks a header every transaction needs, gets `400 Bad Request` (an
//! unknown method gets `501 Not Implemented`) built from whatever headers can be read, and is
//! never passed on. Malformed responses are dropped. Both are logged through a
//! [`Tally`](super::flood::Tally): the first at once, then one summary line per
//! [`LOG_INTERVAL`] however many arrive. Its only state is the flood table and the tallies
//! (bounded); it never panics on what arrives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::SipMessage;
use tracing::warn;

use super::flood::{classify, Admit, FloodGuard, Kind, Limits, Tally, RETRY_AFTER_SECS};

/// At most one log line this often about malformed datagrams, and one about rate-limited ones.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A socket rsipstack reads from, with floods limited and malformed SIP filtered out.
pub struct GuardedUdpSocket {
    inner: tokio::net::UdpSocket,
    server_name: String,
    /// Only the receiving task takes it, once per datagram: never contended.
    state: parking_lot::Mutex<GuardState>,
}

/// What the guard remembers between datagrams.
struct GuardState {
    flood: FloodGuard,
    /// Malformed datagrams, for the log.
    malformed: Tally,
    /// Datagrams over the flood limit (answered 503 or dropped), for the log.
    limited: Tally,
    limited_answered: u64,
}

/// What to do with one datagram, once the state has been consulted.
enum Step {
    Check,
    Busy,
    Drop,
}

impl GuardState {
    fn step(&mut self, kind: Kind, from: SocketAddr, now: Instant) -> Step {
        if let Some(n) = self.malformed.flush(now) {
            warn!(
                count = n,
                "{n} more malformed SIP datagrams in the last {} s",
                LOG_INTERVAL.as_secs()
            );
        }
        if let Some(n) = self.limited.flush(now) {
            let answered = std::mem::take(&mut self.limited_answered);
            warn!(
                count = n,
                answered,
                "{n} more SIP datagrams over the flood limit in the last {} s ({answered} answered 503)",
                LOG_INTERVAL.as_secs()
            );
        }
        if !kind.counted() {
            return Step::Check;
        }
        let admit = self.flood.admit(from.ip(), now);
        let step = match (admit, kind) {
            (Admit::Pass, _) => return Step::Check,
            (Admit::Reject, Kind::OutOfDialog { ack: false }) => Step::Busy,
            _ => Step::Drop,
        };
        if matches!(step, Step::Busy) {
            self.limited_answered += 1;
        }
        if let Some(n) = self.limited.note(now) {
            let answered = std::mem::take(&mut self.limited_answered);
            warn!(
                %from,
                count = n,
                answered,
                "SIP datagrams over the flood limit from {} (per source {}/s, bursts of {}): \
                 answered 503 with Retry-After within a small budget, else dropped; further \
                 ones are summed up every {} s",
                from.ip(),
                self.flood.limits().rate,
                self.flood.limits().burst,
                LOG_INTERVAL.as_secs()
            );
        }
        step
    }

    fn malformed(
        &mut self,
        from: SocketAddr,
        len: usize,
        why: &str,
        answered: Option<u16>,
        now: Instant,
    ) {
        if let Some(n) = self.malformed.note(now) {
            warn!(
                %from,
                len,
                code = answered,
                reason = %why,
                count = n,
                "malformed SIP datagram {}; further ones are summed up every {} s",
                if answered.is_some() { "answered" } else { "dropped" },
                LOG_INTERVAL.as_secs()
            );
        }
    }
}

impl GuardedUdpSocket {
    /// A guard with the default flood [`Limits`].
    pub fn new(inner: tokio::net::UdpSocket, server_name: String) -> Self {
        Self::with_limits(inner, server_name, Limits::default())
    }

    pub fn with_limits(inner: tokio::net::UdpSocket, server_name: String, limits: Limits) -> Self {
        let now = Instant::now();
        GuardedUdpSocket {
            inner,
            server_name,
            state: parking_lot::Mutex::new(GuardState {
                flood: FloodGuard::new(limits, now),
                malformed: Tally::new(LOG_INTERVAL),
                limited: Tally::new(LOG_INTERVAL),
                limited_answered: 0,
            }),
        }
    }

    async fn answer(&self, packet: &[u8], code: u16, reason: &str, extra: &str, from: SocketAddr) {
        if let Some(resp) = response_with(packet, code, reason, from, &self.server_name, extra) {
            if let Err(e) = self.inner.send_to(resp.as_bytes(), from).await {
                tracing::debug!(%from, error = %e, "could not send error response");
            }
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.inner.recv_from(buf).await?;
            let packet = &buf[..len];
            let now = Instant::now();
            let step = self.state.lock().step(classify(packet), from, now);
            match step {
                Step::Check => {}
                Step::Drop => continue,
                Step::Busy => {
                    let retry_after = format!("Retry-After: {RETRY_AFTER_SECS}\r\n");
                    self.answer(packet, 503, "Service Unavailable", &retry_after, from)
                        .await;
                    continue;
                }
            }
            match check(packet) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Drop(why) => {
                    self.state.lock().malformed(from, len, &why, None, now);
                }
                Verdict::Answer { code, reason, why } => {
                    self.state
                        .lock()
                        .malformed(from, len, &why, Some(code), now);
                    self.answer(packet, code, reason, "", from).await;
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.inner.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop(String),
    Answer {
        code: u16,
        reason: &'static str,
        why: String,
    },
}

/// Methods rsipstack parses; any other token in a request line is answered 501.
const KNOWN_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Decides what to do with one datagram.
pub fn check(packet: &[u8]) -> Verdict {
    // Keep-alives (CRLF) are rsipstack's business.
    if packet.iter().all(|b| b.is_ascii_whitespace()) {
        return Verdict::Pass;
    }
    let first_line = first_line(packet);
    let is_response = first_line.starts_with("SIP/");
    let method = if is_response {
        None
    } else {
        first_line.split(' ').next()
    };
    if let Some(m) = method {
        let is_token = !m.is_empty()
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        if is_token && !KNOWN_METHODS.contains(&m) && first_line.ends_with("SIP/2.0") {
            return Verdict::Answer {
                code: 501,
                reason: "Not Implemented",
                why: format!("unknown method {m}"),
            };
        }
        if m == "ACK" {
            // Never answer an ACK, even a broken one.
            if SipMessage::try_from(packet).is_err() {
                return Verdict::Drop("malformed ACK".into());
            }
        }
    }
    let bad = |why: String| {
        if is_response {
            Verdict::Drop(why)
        } else {
            Verdict::Answer {
                code: 400,
                reason: "Bad Request",
                why,
            }
        }
    };
    let msg = match SipMessage::try_from(packet) {
        Ok(m) => m,
        Err(e) => return bad(format!("unparsable: {e}")),
    };
    if msg.via_header().is_err() {
        return bad("missing Via".into());
    }
    if msg.call_id_header().is_err() {
        return bad("missing Call-ID".into());
    }
    if msg.from_header().and_then(|h| h.tag()).is_err() {
        return bad("missing or malformed From".into());
    }
    if msg.to_header().and_then(|h| h.tag()).is_err() {
        return bad("missing or malformed To".into());
    }
    match msg
        .cseq_header()
        .and_then(|c| c.seq().and_then(|_| c.method()))
    {
        Ok(_) => {}
        Err(_) => return bad("missing or malformed CSeq".into()),
    }
    if let SipMessage::Request(req) = &msg {
        if let Ok(Ok(m)) = req.cseq_header().map(|c| c.method()) {
            if m != req.method && !(req.method == rsipstack::sip::Method::Ack) {
                return bad("CSeq method does not match the request".into());
            }
        }
    }
    Verdict::Pass
}

fn first_line(packet: &[u8]) -> String {
    let end = packet
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(packet.len());
    String::from_utf8_lossy(&packet[..end.min(512)])
        .trim()
        .to_string()
}

/// Builds an error response from the raw headers of a request rsipstack
/// rejected. Needs at least one Via to know where the answer goes.
pub fn error_response(
    packet: &[u8],
    code: u16,
    reason: &str,
    from: SocketAddr,
    server: &str,
) -> Option<String> {
    response_with(packet, code, reason, from, server, "")
}

/// [`error_response`] with `extra` header lines (each ending in CRLF) before `Server`.
fn response_with(
    packet: &[u8],
    code: u16,
    reason: &str,
    from: SocketAddr,
    server: &str,
    extra: &str,
) -> Option<String> {
    let text = String::from_utf8_lossy(packet);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut vias = Vec::new();
    let (mut from_h, mut to_h, mut call_id, mut cseq) = (None, None, None, None);
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.contains(['\r', '\n']) || value.len() > 1024 {
            continue;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => vias.extend(value.split(',').map(|v| v.trim().to_string())),
            "from" | "f" => from_h = Some(value.to_string()),
            "to" | "t" => to_h = Some(value.to_string()),
            "call-id" | "i" => call_id = Some(value.to_string()),
            "cseq" => cseq = Some(value.to_string()),
            _ => {}
        }
    }
    let top = vias.first_mut()?;
    // RFC 3581: answer to where the request came from.
    if top.contains(";rport") && !top.contains(";rport=") {
        *top = top.replacen(";rport", &format!(";rport={}", from.port()), 1);
    }
    if !top.contains(";received=") {
        top.push_str(&format!(";received={}", from.ip()));
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in &vias {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    if let Some(f) = from_h {
        out.push_str(&format!("From: {f}\r\n"));
    }
    if let Some(t) = to_h {
        if t.contains(";tag=") {
            out.push_str(&format!("To: {t}\r\n"));
        } else {
            out.push_str(&format!("To: {t};tag={:08x}\r\n", rand::random::<u32>()));
        }
    }
    if let Some(c) = call_id {
        out.push_str(&format!("Call-ID: {c}\r\n"));
    }
    if let Some(c) = cseq {
        out.push_str(&format!("CSeq: {c}\r\n"));
    }
    out.push_str(extra);
    out.push_str(&format!("Server: {server}\r\nContent-Length: 0\r\n\r\n"));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "OPTIONS sip:outdial@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1;rport\r\n\
        From: <sip:probe@127.0.0.1>;tag=a1\r\n\
        To: <sip:outdial@127.0.0.1>\r\n\
        Call-ID: c1@127.0.0.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn good_request_passes() {
        assert_eq!(check(GOOD.as_bytes()), Verdict::Pass);
        assert_eq!(check(b"\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn missing_headers_are_400() {
        for header in [
            "Call-ID: c1@127.0.0.1\r\n",
            "CSeq: 1 OPTIONS\r\n",
            "From: <sip:probe@127.0.0.1>;tag=a1\r\n",
        ] {
            let broken = GOOD.replace(header, "");
            match check(broken.as_bytes()) {
                Verdict::Answer { code: 400, .. } => {}
                other => panic!("{header:?} removed gave {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_method_is_501() {
        let foo = GOOD
            .replace("OPTIONS sip", "FOO sip")
            .replace("1 OPTIONS", "1 FOO");
        assert!(matches!(
            check(foo.as_bytes()),
            Verdict::Answer { code: 501, .. }
        ));
    }

    #[test]
    fn error_response_routes_back_with_rport() {
        let broken = GOOD.replace("CSeq: 1 OPTIONS\r\n", "CSeq: banana\r\n");
        let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let resp = error_response(broken.as_bytes(), 400, "Bad Request", from, "outdial").unwrap();
        assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(resp.contains("Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1;rport=5099;received=127.0.0.1\r\n"), "{resp}");
        assert!(resp.contains("Call-ID: c1@127.0.0.1\r\n"));
        assert!(resp.contains("CSeq: banana\r\n"));
        assert!(resp.contains("To: <sip:outdial@127.0.0.1>;tag="));
        // The answer itself parses as SIP.
        assert!(SipMessage::try_from(resp.as_str()).is_ok());
    }

    #[test]
    fn busy_answer_says_when_to_retry() {
        let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let retry = format!("Retry-After: {RETRY_AFTER_SECS}\r\n");
        let resp = response_with(
            GOOD.as_bytes(),
            503,
            "Service Unavailable",
            from,
            "outdial",
            &retry,
        )
        .unwrap();
        assert!(
            resp.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
            "{resp}"
        );
        assert!(
            resp.contains("\r\nRetry-After: 10\r\nServer: outdial\r\n"),
            "{resp}"
        );
        let msg = SipMessage::try_from(resp.as_str()).expect("parses");
        assert!(msg.call_id_header().is_ok());
    }

    #[test]
    fn dialog_traffic_passes_a_flooding_source_and_garbage_is_never_answered() {
        let now = Instant::now();
        let mut state = GuardState {
            flood: FloodGuard::new(Limits::default(), now),
            malformed: Tally::new(LOG_INTERVAL),
            limited: Tally::new(LOG_INTERVAL),
            limited_answered: 0,
        };
        let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let invite = Kind::OutOfDialog { ack: false };
        let (mut checked, mut busy, mut dropped) = (0, 0, 0);
        for _ in 0..100 {
            match state.step(invite, from, now) {
                Step::Check => checked += 1,
                Step::Busy => busy += 1,
                Step::Drop => dropped += 1,
            }
        }
        assert_eq!((checked, busy, dropped), (40, 5, 55));
        // The same source's responses and in-dialog requests, and its keep-alives, still pass.
        for kind in [Kind::Dialog, Kind::KeepAlive] {
            assert!(matches!(state.step(kind, from, now), Step::Check));
        }
        // Over the limit, an ACK or garbage is never answered.
        let other: SocketAddr = "127.0.0.2:5099".parse().unwrap();
        for _ in 0..40 {
            state.step(Kind::Unknown, other, now);
        }
        for kind in [Kind::Unknown, Kind::OutOfDialog { ack: true }] {
            assert!(matches!(state.step(kind, other, now), Step::Drop));
        }
    }

    #[test]
    fn no_via_no_answer() {
        let no_via = GOOD.replace(
            "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1;rport\r\n",
            "",
        );
        let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        assert!(error_response(no_via.as_bytes(), 400, "Bad Request", from, "x").is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let base = GOOD.as_bytes();
        for i in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.to_vec();
            let cut = (seed as usize) % p.len();
            if i % 3 == 0 {
                p.truncate(cut);
            } else {
                p[cut] = (seed >> 24) as u8;
            }
            let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
            let _ = check(&p);
            let _ = error_response(&p, 400, "Bad Request", from, "x");
        }
    }
}
