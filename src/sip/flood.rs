//! Flood protection for the SIP UDP socket: a per-source rate limit on the datagrams that make
//! the stack create state or answer, decided before anything is parsed or reaches rsipstack
//! (the socket [`guard`](super::guard) asks [`FloodGuard::admit`] first), and [`Tally`], which
//! turns a stream of log-worthy events into one line per interval.
//!
//! An outbound dialer expects little out-of-dialog traffic: a carrier's OPTIONS pings, the odd
//! inbound INVITE from a carrier (and 403 for one from anywhere else). So:
//!
//! * **Counted** ([`Kind::OutOfDialog`], [`Kind::Unknown`]): requests without a To tag
//!   (INVITE, OPTIONS, REGISTER, CANCEL, …) and anything that does not look like SIP at all.
//! * **Never counted**: responses and requests with a To tag ([`Kind::Dialog`]: the answers to
//!   our INVITEs, the far end's BYE, INFO, re-INVITE), and CRLF keep-alives — how trunks and
//!   live calls talk to us. (A request with a made-up To tag passes too; rsipstack answers it
//!   481.)
//!
//! Each source IP has a token bucket ([`Limits::rate`] per second, [`Limits::burst`] deep) and
//! all sources together one more ([`Limits::global_rate`], [`Limits::global_burst`]): a counted
//! datagram passes only with a token from both. Above that, a request is answered
//! `503 Service Unavailable` with `Retry-After` ([`RETRY_AFTER_SECS`]) while the source's (and
//! the global) answer budget lasts ([`Limits::reject_rate`], [`Limits::reject_burst`]: we must
//! not become a reflector), and dropped silently beyond it; garbage over the limit is always
//! dropped. The per-source table holds at most [`Limits::max_sources`] entries: when it is
//! full, sources whose buckets have filled up again are forgotten (an entry with full buckets
//! carries nothing), at most once a second; if it is still full, new sources share one overflow
//! bucket. Memory therefore stays bounded whatever the number of (spoofed) sources.
//!
//! Sans-IO: time is an argument. It must not parse past the first line and the To header,
//! allocate per datagram, block, or log (the guard logs, through a [`Tally`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The `Retry-After` of a `503` for a request over the limit, in seconds.
pub const RETRY_AFTER_SECS: u32 = 10;
/// How often a full source table may be swept for idle entries.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The limits of a [`FloodGuard`]; [`Limits::default`] is what `serve` and `call` use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Counted datagrams per second one source IP may send, sustained...
    pub rate: f64,
    /// ...and in a burst.
    pub burst: f64,
    /// Counted datagrams per second from all sources together, sustained...
    pub global_rate: f64,
    /// ...and in a burst.
    pub global_burst: f64,
    /// `503` answers per second to one source over its limit, sustained and in a burst; the
    /// global budget for them is ten times as large.
    pub reject_rate: f64,
    pub reject_burst: f64,
    /// Sources tracked one by one.
    pub max_sources: usize,
}

impl Default for Limits {
    /// 20/s (bursts of 40) per source, 200/s (bursts of 400) in all; 2 answers a second (bursts
    /// of 5) to a source over its limit; 4096 sources.
    fn default() -> Self {
        Limits {
            rate: 20.0,
            burst: 40.0,
            global_rate: 200.0,
            global_burst: 400.0,
            reject_rate: 2.0,
            reject_burst: 5.0,
            max_sources: 4096,
        }
    }
}

/// What a datagram is, as far as the limit cares; read from its first line and To header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only whitespace (CRLF keep-alives).
    KeepAlive,
    /// A response, or a request with a To tag.
    Dialog,
    /// A request without a To tag; `ack` for an ACK (never answered).
    OutOfDialog { ack: bool },
    /// Not recognisably SIP.
    Unknown,
}

impl Kind {
    /// Whether the flood limit applies.
    pub fn counted(self) -> bool {
        matches!(self, Kind::OutOfDialog { .. } | Kind::Unknown)
    }
}

/// Classifies a datagram without parsing it: the first line, then the header lines up to the
/// blank line, looking for the To header (`To` or `t`) and a `tag` parameter in it.
pub fn classify(packet: &[u8]) -> Kind {
    if packet.iter().all(|b| b.is_ascii_whitespace()) {
        return Kind::KeepAlive;
    }
    let mut lines = packet.split(|&b| b == b'\n');
    let first = trim(lines.next().unwrap_or_default());
    if first.starts_with(b"SIP/2.0 ") {
        return Kind::Dialog;
    }
    // METHOD SP Request-URI SP SIP/2.0
    let method_len = first.iter().position(|&b| b == b' ').unwrap_or(first.len());
    let method = &first[..method_len];
    let is_token = !method.is_empty()
        && method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b));
    if !is_token || !first.ends_with(b" SIP/2.0") {
        return Kind::Unknown;
    }
    let ack = method == b"ACK";
    for line in lines {
        let line = trim(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            if has_tag(&line[colon + 1..]) {
                return Kind::Dialog;
            }
            return Kind::OutOfDialog { ack };
        }
    }
    Kind::OutOfDialog { ack }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// A `;tag=` parameter (any case, spaces allowed around `;` and `=`) outside the `<…>` of the
/// address.
fn has_tag(value: &[u8]) -> bool {
    let params = match value.iter().rposition(|&b| b == b'>') {
        Some(end) => &value[end + 1..],
        None => value,
    };
    params.split(|&b| b == b';').skip(1).any(|param| {
        let name = param.split(|&b| b == b'=').next().unwrap_or_default();
        trim(name).eq_ignore_ascii_case(b"tag")
    })
}

/// What to do with a counted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admit {
    /// Within the limits: on to the guard's checks and the stack.
    Pass,
    /// Over the limit: answer `503` with `Retry-After` (requests other than ACK only).
    Reject,
    /// Over the limit and over the answer budget: drop without a word.
    Drop,
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, burst, now);
        b.tokens >= burst
    }
}

/// One source's buckets: what it may send, and how many of its excess requests get an answer.
#[derive(Debug, Clone, Copy)]
struct Source {
    pass: Bucket,
    reject: Bucket,
}

impl Source {
    fn new(limits: &Limits, now: Instant) -> Self {
        Source {
            pass: Bucket::full(limits.burst, now),
            reject: Bucket::full(limits.reject_burst, now),
        }
    }

    fn is_idle(&self, limits: &Limits, now: Instant) -> bool {
        self.pass.is_full(limits.rate, limits.burst, now)
            && self
                .reject
                .is_full(limits.reject_rate, limits.reject_burst, now)
    }
}

/// The per-source and global limits; see the module documentation.
#[derive(Debug)]
pub struct FloodGuard {
    limits: Limits,
    sources: HashMap<IpAddr, Source>,
    /// Shared by the sources that find the table full.
    overflow: Source,
    /// All sources together.
    global: Source,
    last_sweep: Option<Instant>,
}

impl FloodGuard {
    pub fn new(limits: Limits, now: Instant) -> Self {
        let global = Limits {
            burst: limits.global_burst,
            reject_burst: limits.reject_burst * 10.0,
            ..limits
        };
        FloodGuard {
            limits,
            sources: HashMap::new(),
            overflow: Source::new(&limits, now),
            global: Source::new(&global, now),
            last_sweep: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sources tracked one by one right now (never more than [`Limits::max_sources`]).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Decides on one counted datagram from `ip` at `now`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admit {
        let l = self.limits;
        if !self.sources.contains_key(&ip) && self.sources.len() >= l.max_sources {
            self.sweep(now);
        }
        let source = if self.sources.contains_key(&ip) || self.sources.len() < l.max_sources {
            self.sources
                .entry(ip)
                .or_insert_with(|| Source::new(&l, now))
        } else {
            &mut self.overflow
        };
        if source.pass.take(l.rate, l.burst, now)
            && self.global.pass.take(l.global_rate, l.global_burst, now)
        {
            return Admit::Pass;
        }
        // Re-borrow: the source entry may be the overflow one.
        let source = match self.sources.get_mut(&ip) {
            Some(s) => s,
            None => &mut self.overflow,
        };
        if source.reject.take(l.reject_rate, l.reject_burst, now)
            && self
                .global
                .reject
                .take(l.reject_rate * 10.0, l.reject_burst * 10.0, now)
        {
            Admit::Reject
        } else {
            Admit::Drop
        }
    }

    /// Forgets sources whose buckets are full again, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let l = self.limits;
        self.sources.retain(|_, s| !s.is_idle(&l, now));
    }
}

/// Counts events and says when to write a line about them: the first at once, then at most
/// one per interval with how many came since the last line. Sans-IO.
#[derive(Debug)]
pub struct Tally {
    interval: Duration,
    /// When the next line may be written (`None`: now).
    next: Option<Instant>,
    /// Events since the last line.
    pending: u64,
}

impl Tally {
    pub fn new(interval: Duration) -> Self {
        Tally {
            interval,
            next: None,
            pending: 0,
        }
    }

    /// One more event at `now`. Returns how many events a line written now should report
    /// (this one included), or `None` when it waits for the interval to pass.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        self.due(now)
    }

    /// Events held back, when the interval since the last line has passed (call it as time
    /// goes by, e.g. on every datagram).
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        self.due(now)
    }

    fn due(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|t| now < t) {
            return None;
        }
        self.next = Some(now + self.interval);
        Some(std::mem::take(&mut self.pending))
    }

    /// The interval, for log lines that name it.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n))
    }

    const INVITE: &str = "INVITE sip:x@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n\
        From: <sip:a@127.0.0.1>;tag=a1\r\n\
        To: <sip:x@127.0.0.1>\r\n\
        Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn classify_reads_the_first_line_and_the_to_tag() {
        assert_eq!(classify(b"\r\n\r\n"), Kind::KeepAlive);
        assert_eq!(
            classify(INVITE.as_bytes()),
            Kind::OutOfDialog { ack: false }
        );
        let tagged = INVITE.replace("To: <sip:x@127.0.0.1>", "To: <sip:x@127.0.0.1>;tag=b2");
        assert_eq!(classify(tagged.as_bytes()), Kind::Dialog);
        // Compact form, odd spacing and case.
        let compact = INVITE.replace("To: <sip:x@127.0.0.1>", "t : sip:x@127.0.0.1 ; TAG = b2");
        assert_eq!(classify(compact.as_bytes()), Kind::Dialog);
        // A "tag" inside the URI is not the To tag.
        let in_uri = INVITE.replace("To: <sip:x@127.0.0.1>", "To: <sip:x@127.0.0.1;tag=no>");
        assert_eq!(
            classify(in_uri.as_bytes()),
            Kind::OutOfDialog { ack: false }
        );
        let ack = INVITE.replace("INVITE sip", "ACK sip");
        assert_eq!(classify(ack.as_bytes()), Kind::OutOfDialog { ack: true });
        assert_eq!(classify(b"SIP/2.0 200 OK\r\n\r\n"), Kind::Dialog);
        // The To header of the body does not count.
        let in_body = INVITE.replace("To: <sip:x@127.0.0.1>\r\n", "") + "To: <a>;tag=1\r\n";
        assert_eq!(
            classify(in_body.as_bytes()),
            Kind::OutOfDialog { ack: false }
        );
        for junk in [
            &b"\x00\x01\x02 not sip"[..],
            b"INVITE\r\n\r\n",
            b"INVITE sip:x SIP/3.0\r\n",
            &[0xff; 1400][..],
        ] {
            assert_eq!(classify(junk), Kind::Unknown, "{junk:?}");
        }
        let ack = Kind::OutOfDialog { ack: true };
        assert!(Kind::Unknown.counted() && ack.counted());
        assert!(!Kind::Dialog.counted() && !Kind::KeepAlive.counted());
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate_then_a_few_503s_then_silence() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(Limits::default(), t0);
        let flood = ip(1);
        let mut seen = HashMap::new();
        for _ in 0..1000 {
            *seen.entry(g.admit(flood, t0)).or_insert(0) += 1;
        }
        assert_eq!(seen.get(&Admit::Pass), Some(&40));
        assert_eq!(seen.get(&Admit::Reject), Some(&5));
        assert_eq!(seen.get(&Admit::Drop), Some(&955));
        // Another source is not hurt.
        assert_eq!(g.admit(ip(2), t0), Admit::Pass);
        // A second later the flood has earned 20 more, and two more answers.
        let t1 = t0 + Duration::from_secs(1);
        let mut seen = HashMap::new();
        for _ in 0..1000 {
            *seen.entry(g.admit(flood, t1)).or_insert(0) += 1;
        }
        assert_eq!(seen.get(&Admit::Pass), Some(&20));
        assert_eq!(seen.get(&Admit::Reject), Some(&2));
        // At the sustained rate it never hears "no".
        let mut t = t1 + Duration::from_secs(10);
        for _ in 0..200 {
            assert_eq!(g.admit(flood, t), Admit::Pass);
            t += Duration::from_millis(50);
        }
    }

    #[test]
    fn all_sources_together_are_limited_too() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(Limits::default(), t0);
        let mut passed = 0;
        let mut rejected = 0;
        for n in 0..1000 {
            for _ in 0..2 {
                match g.admit(ip(n), t0) {
                    Admit::Pass => passed += 1,
                    Admit::Reject => rejected += 1,
                    Admit::Drop => {}
                }
            }
        }
        assert_eq!(passed, 400, "the global burst");
        assert_eq!(rejected, 50, "the global answer budget");
    }

    #[test]
    fn the_source_table_stays_bounded_under_spoofed_sources() {
        let t0 = Instant::now();
        let limits = Limits {
            max_sources: 100,
            global_rate: 1e9,
            global_burst: 1e9,
            ..Limits::default()
        };
        let mut g = FloodGuard::new(limits, t0);
        let mut t = t0;
        for n in 0..200_000u32 {
            t += Duration::from_micros(50);
            g.admit(ip(n), t);
            assert!(g.tracked() <= 100);
        }
    }

    #[test]
    fn sources_beyond_a_full_table_share_one_bucket() {
        let t0 = Instant::now();
        let limits = Limits {
            max_sources: 100,
            global_rate: 1e9,
            global_burst: 1e9,
            ..Limits::default()
        };
        let mut g = FloodGuard::new(limits, t0);
        // A hundred busy sources fill the table; none is idle, so none is forgotten.
        for n in 0..100 {
            for _ in 0..40 {
                assert_eq!(g.admit(ip(n), t0), Admit::Pass);
            }
        }
        assert_eq!(
            g.admit(ip(0), t0),
            Admit::Reject,
            "still tracked, still limited"
        );
        let passed = (1000..2000u32)
            .filter(|&n| g.admit(ip(n), t0) == Admit::Pass)
            .count();
        assert_eq!(passed, 40, "newcomers share the overflow bucket");
        assert_eq!(g.tracked(), 100);
    }

    #[test]
    fn idle_sources_are_forgotten_when_the_table_is_full() {
        let t0 = Instant::now();
        let limits = Limits {
            max_sources: 10,
            ..Limits::default()
        };
        let mut g = FloodGuard::new(limits, t0);
        for n in 0..10 {
            g.admit(ip(n), t0);
        }
        assert_eq!(g.tracked(), 10);
        // Their buckets refill within a second: the next newcomer finds room.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(g.admit(ip(99), later), Admit::Pass);
        assert_eq!(g.tracked(), 1);
    }

    #[test]
    fn tally_writes_one_line_per_interval() {
        let t0 = Instant::now();
        let mut t = Tally::new(Duration::from_secs(10));
        assert_eq!(t.flush(t0), None);
        assert_eq!(t.note(t0), Some(1), "the first at once");
        for k in 1..=999 {
            assert_eq!(t.note(t0 + Duration::from_millis(k)), None);
        }
        assert_eq!(t.flush(t0 + Duration::from_secs(5)), None);
        assert_eq!(t.flush(t0 + Duration::from_secs(10)), Some(999));
        assert_eq!(t.flush(t0 + Duration::from_secs(30)), None);
        assert_eq!(t.note(t0 + Duration::from_secs(31)), Some(1));
    }
}
