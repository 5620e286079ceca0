//! The sans-IO core of one leg — an outbound call we place, or an inbound one we answer: what
//! the INVITE's responses, the dialog's in-dialog requests, the owner's commands and the clock
//! mean for the call, and what to do about them.
//!
//! One input door, one output door (as str0m does it): the driver feeds [`Input`]s with the
//! current time to [`CallCore::handle`], drains [`CallCore::poll_output`] until it returns
//! `None` and executes each [`Output`] (send CANCEL or BYE, answer a re-INVITE, re-point the
//! media, tell the owner), then sleeps until [`CallCore::poll_timeout`]. The core keeps the
//! record of the leg (outcome, codes, times, who hung up, digits, tones) and builds the
//! [`CallSummary`] at the end.
//!
//! States and the allowed transitions (RFC 3261 §13, UAC side; our CANCEL per §9):
//!
//! ```text
//!             1xx                     2xx
//!  Calling ─────────▶ Proceeding ───────────────▶ Answered ──BYE sent/received, max──▶ Ended
//!     │  ╲               │   ╲                        ▲
//!     │   ╲ 2xx ─────────┼────╲───────────────────────┘
//!     │ ring timeout,    │ ring timeout, hang-up
//!     │ hang-up          ▼
//!     └──────────▶ Cancelling ──487 / any final / 2xx (ACK+BYE by the stack) / give-up──▶ Ended
//!  Calling, Proceeding ──3xx-6xx, timer B, transport error──▶ Ended
//!
//!  Calling, Proceeding ──a failure that fails over (trunks::fails_over), no 180-182 yet,
//!                        another trunk left──▶ Redialing
//!  Calling, Proceeding ──3xx with a Contact, fewer than MAX_REDIRECTS so far──▶ Redialing
//!  Redialing ──the driver sent the INVITE on the next trunk (or the redirect target)──▶ Calling
//!  Redialing ──no trunk could take it, hang-up, ring timeout──▶ Ended
//!
//!  (inbound) Accepting ──ACK──▶ Answered        Accepting ──CANCEL, BYE, no ACK──▶ Ended
//! ```
//!
//! An inbound leg ([`CallCore::incoming`]) starts in `Accepting`: the caller's offer is
//! answered in our 200 at once; the call is up when the ACK comes (RFC 3261 §13.3.1.4). A
//! hang-up asked before the ACK is sent as BYE once it arrives (we may not BYE earlier).
//!
//! Early media (a 18x with SDP) turns tone detection on: a Special Information Tone heard
//! before any answer decides the attempt's outcome — vacant code or intercept:
//! `invalid_number`; reorder, no circuit, other: `unavailable` — whatever final error follows;
//! without a final response within [`SIT_GRACE`] we CANCEL.
//!
//! Session timers (RFC 4028): when the answer sets `Session-Expires`, we refresh with a
//! re-INVITE at half the interval when we are the refresher, else we send BYE when the far
//! end's refresh (its re-INVITE or UPDATE) has not come by the expiry less min(32 s, a third).
//!
//! Failover stops once the far end said the callee's phone rings (180, 181 forwarded, 182
//! queued): another trunk would ring it again. A 183 (session progress) alone does not stop
//! it. Each trunk left behind is on record with why ([`TrunkTry`]).
//!
//! It must not do I/O: no sockets, no sleeping, no spawning, no reading a clock (time is
//! always an argument), no SIP parsing beyond the SDP it is handed as bytes. Nothing a peer
//! sends may make it panic: bad SDP is logged by the driver and answered 488.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::dtmf::DtmfDigit;
use crate::media::g711::Codec;
use crate::media::session::RtpStats;
use crate::media::srtp::SrtpKeys;
use crate::media::tones::{SitCause, ToneEvent};
use crate::sip::sdp::{self, Direction, Format, LocalMedia, RemoteMedia};
use crate::sip::trunks::TrunkTry;
use crate::sip::Outcome;

use super::{CallEvent, CallSummary, EarlyMedia, Hangup, RtpCounts};

/// How long past the ring timeout we wait for the INVITE to end after our CANCEL (487 or a
/// late 200) before giving up on the peer (Timer B's 32 s plus a margin).
pub const CANCEL_GRACE: Duration = Duration::from_secs(34);

/// Redirects (3xx) a call follows at most; the next one ends it with its code.
pub const MAX_REDIRECTS: usize = 3;

/// How long after a SIT in early media we wait for the network's final response before our
/// CANCEL.
pub const SIT_GRACE: Duration = Duration::from_secs(2);

/// How long an inbound leg waits for the ACK of its 200 (64 × T1, RFC 3261 timer H).
pub const ACK_WAIT: Duration = Duration::from_secs(32);

/// How long after the NOTIFY that reports a transfer's success our BYE waits, so the answer
/// to that NOTIFY leaves first (peers that expect it before the BYE abort otherwise).
pub const TRANSFER_RELEASE_DELAY: Duration = Duration::from_millis(100);

/// Where the leg is; see the diagram in the module header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE sent, no provisional response yet (a 100 Trying may have come).
    Calling,
    /// 180/183 received.
    Proceeding,
    /// We sent CANCEL; waiting for the INVITE's final response.
    Cancelling,
    /// 200 received and acknowledged: the call is up.
    Answered,
    /// The INVITE failed on one trunk in a way that fails over; the driver is sending it on
    /// the next.
    Redialing,
    /// Inbound: our 200 is out; waiting for its ACK.
    Accepting,
    /// Over; the summary can be taken.
    Ended,
}

impl State {
    /// The transition table: whether `self → next` is allowed.
    fn allows(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Calling, Proceeding)
                | (Calling | Proceeding, Answered)
                | (Calling | Proceeding, Cancelling)
                | (Calling | Proceeding, Redialing)
                | (Redialing, Calling)
                | (Accepting, Answered)
                | (
                    Calling | Proceeding | Cancelling | Answered | Redialing | Accepting,
                    Ended
                )
        )
    }
}

/// Something that happened to the leg.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// 100 Trying: the peer heard the INVITE.
    Trying,
    /// A 180/183, with its SDP (empty when none).
    Provisional { code: u16, sdp: &'a [u8] },
    /// The dialog is confirmed by a 2xx (ACK sent by the stack).
    Confirmed {
        code: u16,
        reason: &'a str,
        sdp: &'a [u8],
    },
    /// The INVITE transaction ended with this final response.
    InviteFinal {
        code: u16,
        reason: &'a str,
        sdp: &'a [u8],
    },
    /// The INVITE transaction ended without a final response (`error` says why, when known).
    InviteGone { error: Option<String> },
    /// A re-INVITE or UPDATE from the peer, with its SDP (empty: the peer asks for our offer).
    Reoffer { sdp: &'a [u8] },
    /// The peer pressed a key (RFC 4733, SIP INFO or in-band).
    Dtmf(DtmfDigit),
    /// A beep, SIT or fax tone was heard.
    Tone(ToneEvent),
    /// The dialog is gone: `by_remote` when the peer's BYE ended it.
    Terminated { by_remote: bool },
    /// The owner asks to end the call (CANCEL before the answer, BYE after).
    Hangup,
    /// The owner asks to put the peer on hold (`true`) or take it off (`false`) with a
    /// re-INVITE of ours.
    Hold(bool),
    /// The owner asks to transfer the peer to `target` (a URI) with REFER (RFC 3515).
    Refer { target: &'a str },
    /// Our REFER was answered with this code (202 accepted; ≥ 300 refused).
    ReferAnswered { code: u16 },
    /// A NOTIFY of the transfer's progress, with its `message/sipfrag` body.
    TransferNotify { sipfrag: &'a [u8] },
    /// The time passed [`CallCore::poll_timeout`].
    Timeout,
    /// After [`Output::NextTrunk`]: the INVITE went out on `trunk`, which gives up on an
    /// INVITE without any response after `invite_timeout`; `more`: other trunks are left.
    Redialed {
        trunk: &'a str,
        invite_timeout: Option<Duration>,
        more: bool,
    },
    /// After [`Output::NextTrunk`]: no other trunk could take the call.
    NoTrunkLeft,
    /// The 2xx set a session timer (RFC 4028 `Session-Expires`): `we_refresh` when the
    /// refresher is us (`refresher=uac`).
    SessionTimer { expires: Duration, we_refresh: bool },
    /// The INVITE ended with a redirect (3xx) to `contact` (its first Contact URI).
    Redirected {
        code: u16,
        reason: &'a str,
        contact: &'a str,
    },
}

/// A session timer in force (RFC 4028).
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    expires: Duration,
    we_refresh: bool,
    /// The last refresh (ours or the far end's), or the answer.
    refreshed_at: Instant,
}

/// What a session timer asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionDue {
    Refresh,
    Expire,
}

/// Where the media should go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUpdate {
    /// SRTP keys (`None`: plain RTP). Applied before the address, so nothing leaves unprotected.
    pub srtp: Option<SrtpKeys>,
    pub codec: Codec,
    /// The peer's telephone-event payload type, when both sides take DTMF events.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP; `None` stops sending (the peer holds or does not receive).
    pub remote: Option<SocketAddr>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send CANCEL for the INVITE.
    Cancel,
    /// Send BYE (media sending stops first).
    Bye,
    /// Answer the peer's re-INVITE/UPDATE with this code and SDP.
    AnswerReoffer { code: u16, sdp: Option<String> },
    /// Send a re-INVITE of ours with this SDP offer.
    Reinvite { sdp: String },
    /// Send REFER with this Refer-To URI.
    Refer { target: String },
    /// Re-point the media session.
    Media(MediaUpdate),
    /// Start listening for beeps, SIT and fax tones (after the answer: ringback is a tone too).
    ToneDetection,
    /// Give up the INVITE in flight without waiting for it (it had no response at all): stop
    /// its retransmissions; a late answer is not ours any more.
    AbandonInvite,
    /// Send the INVITE on the next trunk, then feed [`Input::Redialed`] or
    /// [`Input::NoTrunkLeft`].
    NextTrunk,
    /// Send the INVITE to this URI (a redirect's Contact), then feed [`Input::Redialed`] or
    /// [`Input::NoTrunkLeft`].
    Redirect { target: String },
    /// Tell the owner.
    Event(CallEvent),
}

/// The core of one leg; see the module documentation.
#[derive(Debug)]
pub struct CallCore {
    state: State,
    started: Instant,
    ring_timeout: Duration,
    max_duration: Duration,
    formats: Vec<Format>,
    local: LocalMedia,
    codec: Option<Codec>,
    /// We hold the peer (our last re-INVITE offered sendonly).
    holding: bool,
    /// Our REFER is out and its final NOTIFY has not come.
    transferring: bool,
    /// The transfer target answered: our BYE goes [`TRANSFER_RELEASE_DELAY`] after this.
    transferred_at: Option<Instant>,
    /// Any response (100 included) arrived for our INVITE.
    heard_from_peer: bool,
    ring_ms: Option<u64>,
    answered_at: Option<Instant>,
    /// Our CANCEL went out: the INVITE is given up [`CANCEL_GRACE`] after this if nothing
    /// ends it.
    cancelled_at: Option<Instant>,
    ended_at: Option<Instant>,
    final_code: Option<u16>,
    reason: String,
    outcome: Option<Outcome>,
    hangup: Option<Hangup>,
    dtmf_received: String,
    tones: Vec<ToneEvent>,
    out: VecDeque<Output>,
    /// The trunk the INVITE in flight went to (`None`: a SIP URI, no trunk).
    trunk: Option<String>,
    /// When the INVITE in flight went out.
    sent_at: Instant,
    /// The trunk's time without any response before moving on; `None`: timer B only.
    invite_timeout: Option<Duration>,
    /// Other trunks are left to try.
    more_trunks: bool,
    /// A 180, 181 or 182 came: the callee's phone rings, no failover any more.
    rang: bool,
    /// Tone detection was turned on for early media.
    early_tones: bool,
    /// Redirects followed so far.
    redirects: usize,
    /// The session timer the answer set, if any.
    session: Option<SessionTimer>,
    /// A SIT heard in early media (and when): the attempt's outcome whatever follows.
    sit: Option<(SitCause, Instant)>,
    /// The trunks left behind, in order.
    tries: Vec<TrunkTry>,
    /// Which of `tries` is the INVITE that failed over last (the call ends as it did when
    /// no trunk is left).
    last_failed: Option<usize>,
    /// Inbound: the owner hung up before the ACK; BYE goes out when it comes.
    bye_on_ack: bool,
}

impl CallCore {
    /// A leg whose INVITE (offering `formats` from `local`) leaves at `now`.
    pub fn new(
        now: Instant,
        ring_timeout: Duration,
        max_duration: Duration,
        formats: Vec<Format>,
        local: LocalMedia,
    ) -> CallCore {
        CallCore {
            state: State::Calling,
            started: now,
            ring_timeout,
            max_duration,
            formats,
            local,
            codec: None,
            holding: false,
            transferring: false,
            transferred_at: None,
            heard_from_peer: false,
            ring_ms: None,
            answered_at: None,
            cancelled_at: None,
            ended_at: None,
            final_code: None,
            reason: String::new(),
            outcome: None,
            hangup: None,
            dtmf_received: String::new(),
            tones: Vec::new(),
            out: VecDeque::new(),
            trunk: None,
            sent_at: now,
            invite_timeout: None,
            more_trunks: false,
            rang: false,
            early_tones: false,
            redirects: 0,
            session: None,
            sit: None,
            tries: Vec::new(),
            last_failed: None,
            bye_on_ack: false,
        }
    }

    /// An inbound leg whose INVITE offered `offer`, answered at `now` from `local` with one
    /// of `formats`: the core, and the SDP answer our 200 carries. An offer we cannot take
    /// (no common codec, unreadable) is the caller's error, answered 488 by the driver.
    pub fn incoming(
        now: Instant,
        max_duration: Duration,
        formats: Vec<Format>,
        local: LocalMedia,
        offer: &[u8],
    ) -> Result<(CallCore, String), sdp::SdpError> {
        let remote = sdp::parse_remote(offer, &formats)?;
        let mut core = CallCore::new(now, ACK_WAIT, max_duration, formats, local);
        let keys = core.local.srtp_keys(&remote, true)?;
        core.state = State::Accepting;
        core.heard_from_peer = true;
        let answer = core.local.answer(&remote, &core.formats, keys.as_ref());
        core.use_remote(&remote, keys);
        Ok((core, answer))
    }

    /// Records trunks the call could not use (full, not resolving) before or between its
    /// INVITEs.
    pub fn left_behind(&mut self, tries: Vec<TrunkTry>) {
        self.tries.extend(tries);
    }

    /// The first INVITE goes to `trunk` (see [`Input::Redialed`] for the rest).
    pub fn on_trunk(
        mut self,
        trunk: &str,
        invite_timeout: Option<Duration>,
        more: bool,
    ) -> CallCore {
        self.trunk = Some(trunk.to_string());
        self.invite_timeout = invite_timeout;
        self.more_trunks = more;
        self
    }

    /// The trunk the INVITE in flight (or the answered call) went to.
    pub fn trunk(&self) -> Option<&str> {
        self.trunk.as_deref()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The call has been answered (whatever happened since).
    pub fn is_answered(&self) -> bool {
        self.answered_at.is_some()
    }

    /// The codec the peer's SDP chose, once there was one.
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// The call is over: no more inputs matter; take the summary.
    pub fn is_over(&self) -> bool {
        self.state == State::Ended
    }

    /// When [`Input::Timeout`] is next due; `None` when the call is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ring_deadline = self.started + self.ring_timeout;
        match self.state {
            State::Calling => Some(match self.invite_timeout {
                Some(t) if !self.heard_from_peer => ring_deadline.min(self.sent_at + t),
                _ => ring_deadline,
            }),
            State::Proceeding => Some(match self.sit {
                Some((_, at)) => ring_deadline.min(at + SIT_GRACE),
                None => ring_deadline,
            }),
            State::Redialing => Some(ring_deadline),
            State::Accepting => Some(self.started + ACK_WAIT),
            State::Cancelling => Some(self.cancelled_at.unwrap_or(ring_deadline) + CANCEL_GRACE),
            State::Answered => {
                let session = self.session_due().map(|(at, _)| at);
                match (self.end_due(), session) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::Ended => None,
        }
    }

    /// When an answered call ends on its own: the maximum duration, or the BYE after a
    /// transfer.
    fn end_due(&self) -> Option<Instant> {
        let max = self.answered_at.map(|at| at + self.max_duration);
        match (self.transferred_at, max) {
            (Some(t), Some(m)) => Some((t + TRANSFER_RELEASE_DELAY).min(m)),
            (Some(t), None) => Some(t + TRANSFER_RELEASE_DELAY),
            (None, m) => m,
        }
    }

    /// The session timer's next deadline (RFC 4028): our refresh at half the interval, or,
    /// when the far end refreshes, its expiry less min(32 s, a third of the interval) (§10).
    fn session_due(&self) -> Option<(Instant, SessionDue)> {
        let timer = self.session?;
        Some(if timer.we_refresh {
            (timer.refreshed_at + timer.expires / 2, SessionDue::Refresh)
        } else {
            let margin = Duration::from_secs(32).min(timer.expires / 3);
            (
                timer.refreshed_at + timer.expires - margin,
                SessionDue::Expire,
            )
        })
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        if self.state == State::Ended {
            return;
        }
        match input {
            Input::Trying => self.heard_from_peer = true,
            Input::Provisional { code, sdp } => self.on_provisional(now, code, sdp),
            Input::Confirmed { code, reason, sdp } => match self.state {
                State::Calling | State::Proceeding => self.on_answer(now, code, reason, sdp),
                State::Accepting => self.on_ack(now),
                _ => {}
            },
            Input::InviteFinal { code, reason, sdp } => self.on_final(now, code, reason, sdp),
            Input::InviteGone { error } => {
                let reason = match &error {
                    Some(e) if e.to_ascii_lowercase().contains("timeout") => {
                        "no response (timeout)".to_string()
                    }
                    Some(e) => e.clone(),
                    None => "no final response".to_string(),
                };
                if self.fail_over(now, None, &reason) {
                    return;
                }
                if !matches!(self.state, State::Answered | State::Redialing) {
                    self.outcome.get_or_insert(Outcome::Failed);
                    if self.reason.is_empty() {
                        self.reason = match error {
                            Some(e) if e.to_ascii_lowercase().contains("timeout") => {
                                "no response (timeout)".into()
                            }
                            Some(e) => e,
                            None => "no final response".into(),
                        };
                    }
                    self.end(now);
                }
            }
            Input::Reoffer { sdp } => {
                // The far end's re-INVITE or UPDATE refreshes the session (RFC 4028).
                if let Some(timer) = self.session.as_mut() {
                    timer.refreshed_at = now;
                }
                self.on_reoffer(sdp)
            }
            Input::SessionTimer {
                expires,
                we_refresh,
            } => {
                if self.state == State::Answered && !expires.is_zero() {
                    self.session = Some(SessionTimer {
                        expires,
                        we_refresh,
                        refreshed_at: now,
                    });
                }
            }
            Input::Dtmf(digit) => {
                self.dtmf_received.push(digit.digit);
                self.out.push_back(Output::Event(CallEvent::Dtmf(digit)));
            }
            Input::Tone(tone) => {
                self.tones.push(tone);
                self.out.push_back(Output::Event(CallEvent::Tone(tone)));
                if let ToneEvent::Sit { cause, .. } = tone {
                    if matches!(self.state, State::Calling | State::Proceeding)
                        && self.sit.is_none()
                    {
                        // The network's announcement, not a phone.
                        self.sit = Some((cause, now));
                    }
                }
            }
            Input::Terminated { by_remote } => {
                if self.state == State::Accepting {
                    // The caller cancelled, or hung up, before acknowledging our answer.
                    self.outcome = Some(Outcome::Failed);
                    self.reason = "the caller left before the ACK".into();
                    self.end(now);
                    return;
                }
                // Unanswered: the INVITE's final response says why; keep waiting for it.
                if self.state == State::Answered {
                    self.hangup.get_or_insert(if by_remote {
                        Hangup::Remote
                    } else {
                        Hangup::Local
                    });
                    self.end(now);
                }
            }
            Input::Hangup => match self.state {
                State::Redialing => {
                    self.outcome = Some(Outcome::Failed);
                    self.reason = "cancelled by caller".into();
                    self.end(now);
                }
                State::Answered => {
                    self.hangup.get_or_insert(Hangup::Local);
                    self.out.push_back(Output::Bye);
                    self.end(now);
                }
                State::Calling | State::Proceeding => {
                    self.outcome.get_or_insert(Outcome::Failed);
                    if self.reason.is_empty() {
                        self.reason = "cancelled by caller".into();
                    }
                    self.cancel(now);
                }
                State::Accepting => self.bye_on_ack = true,
                State::Cancelling | State::Ended => {}
            },
            Input::Hold(hold) => {
                if self.state == State::Answered && hold != self.holding {
                    self.holding = hold;
                    let direction = if hold {
                        Direction::SendOnly
                    } else {
                        Direction::SendRecv
                    };
                    let sdp = self.offer(direction);
                    self.out.push_back(Output::Reinvite { sdp });
                }
            }
            Input::Refer { target } => {
                if self.state == State::Answered && !self.transferring {
                    self.transferring = true;
                    self.out.push_back(Output::Refer {
                        target: target.to_string(),
                    });
                }
            }
            Input::ReferAnswered { code } => {
                if self.transferring && code >= 300 {
                    self.transferring = false;
                    self.out
                        .push_back(Output::Event(CallEvent::Transfer { code }));
                }
            }
            Input::TransferNotify { sipfrag } => {
                let Some(code) = sipfrag_code(sipfrag) else {
                    return;
                };
                if !self.transferring || code < 200 {
                    if self.transferring {
                        self.out
                            .push_back(Output::Event(CallEvent::Transfer { code }));
                    }
                    return;
                }
                self.transferring = false;
                self.out
                    .push_back(Output::Event(CallEvent::Transfer { code }));
                if (200..300).contains(&code) && self.state == State::Answered {
                    // The peer is with the target now: our part is over (RFC 5589 §6.1),
                    // once the answer to this NOTIFY has left.
                    self.transferred_at = Some(now);
                }
            }
            Input::Timeout => self.on_timeout(now),
            Input::Redialed {
                trunk,
                invite_timeout,
                more,
            } => {
                if self.state == State::Redialing {
                    self.go(State::Calling);
                    self.rang = false;
                    self.trunk = Some(trunk.to_string());
                    self.invite_timeout = invite_timeout;
                    self.more_trunks = more;
                    self.sent_at = now;
                    self.heard_from_peer = false;
                    self.final_code = None;
                    self.reason.clear();
                    self.outcome = None;
                }
            }
            Input::Redirected {
                code,
                reason,
                contact,
            } => {
                let follow = matches!(self.state, State::Calling | State::Proceeding)
                    && self.redirects < MAX_REDIRECTS
                    && now < self.started + self.ring_timeout;
                if !follow {
                    self.on_final(now, code, reason, b"");
                    return;
                }
                self.redirects += 1;
                self.last_failed = Some(self.tries.len());
                self.tries.push(TrunkTry {
                    trunk: self.trunk.clone().unwrap_or_default(),
                    code: Some(code),
                    reason: format!("{reason}: redirected to {contact}"),
                });
                self.go(State::Redialing);
                self.out.push_back(Output::Redirect {
                    target: contact.to_string(),
                });
            }
            Input::NoTrunkLeft => {
                if self.state == State::Redialing {
                    // The call ends as the last INVITE that failed over left it.
                    let last = self.last_failed.take().map(|i| self.tries.remove(i));
                    if let Some(t) = &last {
                        self.final_code = t.code;
                        self.reason = t.reason.clone();
                        self.trunk = Some(t.trunk.clone());
                    }
                    self.outcome = Some(match last.and_then(|t| t.code) {
                        Some(code) => Outcome::from_final_code(code),
                        None => Outcome::Failed,
                    });
                    self.end(now);
                }
            }
        }
    }

    /// Moves the call to the next trunk when `code` (the INVITE's end; `None`: no response,
    /// transport failure) fails over, no 180-182 came, another trunk is left and the ring
    /// timeout has not passed. Returns whether it did.
    fn fail_over(&mut self, now: Instant, code: Option<u16>, reason: &str) -> bool {
        let ring_deadline = self.started + self.ring_timeout;
        if !matches!(self.state, State::Calling | State::Proceeding)
            || self.rang
            || self.sit.is_some()
            || !self.more_trunks
            || now >= ring_deadline
            || !crate::sip::trunks::fails_over(code)
        {
            return false;
        }
        self.last_failed = Some(self.tries.len());
        self.tries.push(TrunkTry {
            trunk: self.trunk.clone().unwrap_or_default(),
            code,
            reason: reason.to_string(),
        });
        self.go(State::Redialing);
        self.out.push_back(Output::NextTrunk);
        true
    }

    /// Our offer (the INVITE's, or a re-INVITE's) in the given direction.
    pub fn offer(&mut self, direction: Direction) -> String {
        self.local.offer(&self.formats, direction)
    }

    /// The attempt's record, once over; `rtp` is the media session's final statistics and
    /// `early_received` the packets it had received when the call was answered.
    pub fn summary(&self, call_id: &str, rtp: &RtpStats, early_received: u64) -> CallSummary {
        let duration_ms = match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) => ms(e.saturating_duration_since(a)),
            _ => 0,
        };
        CallSummary {
            outcome: self.outcome.unwrap_or(Outcome::Failed),
            sip_code: self.final_code,
            reason: self.reason.clone(),
            call_id: call_id.to_string(),
            ring_ms: self.ring_ms,
            answer_ms: self.answered_at.map(|a| ms(a - self.started)),
            duration_ms,
            hangup: self.hangup,
            early_media: EarlyMedia {
                received: if self.answered_at.is_some() {
                    early_received
                } else {
                    rtp.received
                },
            },
            rtp: RtpCounts {
                sent: rtp.sent,
                received: rtp.received,
                lost: rtp.lost,
                jitter_ms: (rtp.jitter_ms * 100.0).round() / 100.0,
                rtt_ms: rtp.rtt_ms.map(|r| (r * 100.0).round() / 100.0),
                concealed: rtp.jitter_buffer.concealed,
                dropped_frames: rtp.dropped_frames,
                rejected_source: rtp.rejected_source,
                latched_to: rtp.latched_to,
                srtp: rtp.srtp,
                srtp_rejected: rtp.srtp_rejected,
            },
            codec: self.codec.map(Codec::name),
            dtmf_received: self.dtmf_received.clone(),
            tones: self.tones.clone(),
            trunk: self.trunk.clone(),
            failover: self.tries.clone(),
            sit: self.sit.map(|(cause, _)| cause.code()),
        }
    }

    fn go(&mut self, next: State) {
        debug_assert!(
            self.state.allows(next),
            "call state {:?} → {next:?} is not in the table",
            self.state
        );
        if self.state.allows(next) {
            self.state = next;
        }
    }

    fn end(&mut self, now: Instant) {
        self.go(State::Ended);
        self.ended_at = Some(now);
    }

    fn cancel(&mut self, now: Instant) {
        self.go(State::Cancelling);
        self.cancelled_at = Some(now);
        self.out.push_back(Output::Cancel);
    }

    fn on_provisional(&mut self, now: Instant, code: u16, body: &[u8]) {
        self.heard_from_peer = true;
        if !matches!(self.state, State::Calling | State::Proceeding) {
            return;
        }
        if self.state == State::Calling {
            self.go(State::Proceeding);
        }
        self.rang |= (180..=182).contains(&code);
        self.ring_ms.get_or_insert(ms(now - self.started));
        let early_media = !body.is_empty() && self.apply_remote(body).is_ok();
        if early_media && !self.early_tones {
            self.early_tones = true;
            self.out.push_back(Output::ToneDetection);
        }
        self.out
            .push_back(Output::Event(CallEvent::Ringing { code, early_media }));
    }

    fn on_final(&mut self, now: Instant, code: u16, reason: &str, body: &[u8]) {
        self.heard_from_peer |= code != 408;
        if (200..300).contains(&code) {
            match self.state {
                State::Calling | State::Proceeding => self.on_answer(now, code, reason, body),
                State::Cancelling => {
                    // The stack ACKs and BYEs a 200 that crossed our CANCEL: the attempt
                    // stays what made us cancel, with the 200 on record.
                    self.final_code = Some(code);
                    self.reason = "answered after CANCEL; ended with BYE".into();
                    self.end(now);
                }
                State::Answered | State::Redialing | State::Accepting | State::Ended => {}
            }
            return;
        }
        if matches!(self.state, State::Answered | State::Redialing) {
            return;
        }
        let no_response = code == 408 && !self.heard_from_peer;
        let why = if no_response {
            "no response (timeout)"
        } else {
            reason
        };
        if self.fail_over(now, (!no_response).then_some(code), why) {
            return;
        }
        if no_response {
            // The stack's own 408 on Timer B: nobody answered at all.
            self.outcome = Some(Outcome::Failed);
            self.reason = "no response (timeout)".into();
            self.end(now);
            return;
        }
        self.final_code = Some(code);
        if let Some((cause, _)) = self.sit {
            self.outcome = Some(sit_outcome(cause));
            self.reason = format!("SIT {} in early media", cause.code());
        } else if !(self.state == State::Cancelling && code == 487) {
            self.reason = reason.to_string();
            self.outcome = Some(Outcome::from_final_code(code));
        }
        self.end(now);
    }

    fn on_answer(&mut self, now: Instant, code: u16, reason: &str, body: &[u8]) {
        self.go(State::Answered);
        self.answered_at = Some(now);
        self.final_code = Some(code);
        self.reason = reason.to_string();
        self.outcome = Some(Outcome::Answered);
        // An unusable answer leaves the media where it was (no audio will flow), except one
        // without the SRTP the profile requires: that call ends at once, nothing sent in clear.
        if let Err(sdp::SdpError::SrtpRequired) = self.apply_remote(body) {
            self.outcome = Some(Outcome::Failed);
            self.reason = sdp::SdpError::SrtpRequired.to_string();
            self.hangup = Some(Hangup::Local);
            self.out.push_back(Output::Bye);
            self.end(now);
            return;
        }
        self.out.push_back(Output::ToneDetection);
        let codec = self.codec.unwrap_or(Codec::Pcmu);
        self.out
            .push_back(Output::Event(CallEvent::Answered { codec }));
    }

    /// Inbound: the ACK of our 200 came; the call is up.
    fn on_ack(&mut self, now: Instant) {
        self.go(State::Answered);
        self.answered_at = Some(now);
        self.final_code = Some(200);
        self.reason = "OK".into();
        self.outcome = Some(Outcome::Answered);
        self.out.push_back(Output::ToneDetection);
        let codec = self.codec.unwrap_or(Codec::Pcmu);
        self.out
            .push_back(Output::Event(CallEvent::Answered { codec }));
        if self.bye_on_ack {
            self.hangup = Some(Hangup::Local);
            self.out.push_back(Output::Bye);
            self.end(now);
        }
    }

    fn on_reoffer(&mut self, body: &[u8]) {
        if body.is_empty() {
            let sdp = self.offer(Direction::SendRecv);
            self.out.push_back(Output::AnswerReoffer {
                code: 200,
                sdp: Some(sdp),
            });
            return;
        }
        let parsed = sdp::parse_remote(body, &self.formats).and_then(|remote| {
            let keys = self.local.srtp_keys(&remote, true)?;
            Ok((remote, keys))
        });
        match parsed {
            Ok((remote, keys)) => {
                let sdp = self.local.answer(&remote, &self.formats, keys.as_ref());
                self.use_remote(&remote, keys);
                self.out.push_back(Output::AnswerReoffer {
                    code: 200,
                    sdp: Some(sdp),
                });
                self.out.push_back(Output::Event(CallEvent::Reoffered {
                    direction: remote.direction,
                    remote: remote.addr,
                }));
            }
            Err(_) => self.out.push_back(Output::AnswerReoffer {
                code: 488,
                sdp: None,
            }),
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        let Some(due) = self.poll_timeout() else {
            return;
        };
        if now < due {
            return;
        }
        let ring_deadline = self.started + self.ring_timeout;
        match self.state {
            State::Proceeding if self.sit.is_some() => {
                if let Some((cause, _)) = self.sit {
                    self.outcome = Some(sit_outcome(cause));
                    self.reason = format!("SIT {} in early media", cause.code());
                }
                self.cancel(now);
            }
            State::Calling if now < ring_deadline => {
                // The trunk's invite_timeout: not even a 100 Trying.
                let secs = self.invite_timeout.unwrap_or_default().as_secs_f64();
                let reason = format!("no response within {secs} s");
                self.out.push_back(Output::AbandonInvite);
                if !self.fail_over(now, None, &reason) {
                    self.outcome = Some(Outcome::Failed);
                    self.reason = reason;
                    self.end(now);
                }
            }
            State::Redialing => {
                self.outcome = Some(Outcome::NoAnswer);
                self.reason = "ring timeout".into();
                self.end(now);
            }
            State::Calling | State::Proceeding => {
                self.outcome = Some(Outcome::NoAnswer);
                self.reason = "ring timeout".into();
                self.cancel(now);
            }
            State::Cancelling => {
                self.outcome.get_or_insert(Outcome::Failed);
                self.end(now);
            }
            State::Accepting => {
                self.outcome = Some(Outcome::Failed);
                self.reason = "no ACK for our 200".into();
                self.end(now);
            }
            State::Answered => {
                if let Some((at, what)) = self.session_due() {
                    if now >= at {
                        self.on_session_due(now, what);
                        return;
                    }
                }
                if self.end_due().is_none_or(|d| now < d) {
                    return;
                }
                self.hangup = Some(if self.transferred_at.is_some() {
                    Hangup::Transferred
                } else {
                    Hangup::MaxDuration
                });
                self.out.push_back(Output::Bye);
                self.end(now);
            }
            State::Ended => {}
        }
    }

    fn on_session_due(&mut self, now: Instant, what: SessionDue) {
        let Some(timer) = self.session.as_mut() else {
            return;
        };
        match what {
            SessionDue::Refresh => {
                timer.refreshed_at = now;
                let direction = if self.holding {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
                let sdp = self.offer(direction);
                self.out.push_back(Output::Reinvite { sdp });
            }
            SessionDue::Expire => {
                self.reason = format!(
                    "session timer expired: no refresh within {} s",
                    timer.expires.as_secs()
                );
                self.hangup = Some(Hangup::Local);
                self.out.push_back(Output::Bye);
                self.end(now);
            }
        }
    }

    /// The peer's answer to our offer (in a 18x or the 200).
    fn apply_remote(&mut self, body: &[u8]) -> Result<(), sdp::SdpError> {
        let remote = sdp::parse_remote(body, &self.formats)?;
        let keys = self.local.srtp_keys(&remote, false)?;
        self.use_remote(&remote, keys);
        Ok(())
    }

    fn use_remote(&mut self, remote: &RemoteMedia, srtp: Option<SrtpKeys>) {
        self.codec = Some(remote.codec);
        let we_take_dtmf = self
            .formats
            .iter()
            .any(|f| matches!(f, Format::TelephoneEvent(_)));
        self.out.push_back(Output::Media(MediaUpdate {
            srtp,
            codec: remote.codec,
            dtmf_pt: remote.dtmf_pt.filter(|_| we_take_dtmf),
            remote: remote.addr.filter(|_| remote.peer_receives()),
        }));
    }
}

/// What a SIT in early media means for the attempt.
fn sit_outcome(cause: SitCause) -> Outcome {
    match cause {
        SitCause::VacantCode | SitCause::Intercept => Outcome::InvalidNumber,
        SitCause::NoCircuit
        | SitCause::Reorder
        | SitCause::IneffectiveOther
        | SitCause::Unknown => Outcome::Unavailable,
    }
}

/// The status code of a `message/sipfrag` status line ("SIP/2.0 200 OK").
fn sipfrag_code(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0")?.trim_start();
    let code: u16 = rest.get(..3)?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::sdp::TELEPHONE_EVENT_PT;

    const RING: Duration = Duration::from_secs(30);
    const MAX: Duration = Duration::from_secs(3600);

    fn core(t0: Instant) -> CallCore {
        CallCore::new(
            t0,
            RING,
            MAX,
            vec![
                Format::Audio(Codec::Pcmu),
                Format::Audio(Codec::Pcma),
                Format::TelephoneEvent(TELEPHONE_EVENT_PT),
            ],
            LocalMedia::new("127.0.0.1".parse().unwrap(), 40000),
        )
    }

    fn sdp(port: u16, pt: u8, direction: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
        )
        .into_bytes()
    }

    fn drain(c: &mut CallCore) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn events(outs: &[Output]) -> Vec<&CallEvent> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn summary(c: &CallCore) -> CallSummary {
        c.summary("x@outdial", &RtpStats::default(), 0)
    }

    #[test]
    fn ringing_180_then_busy_486() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(t0 + Duration::from_millis(50), Input::Trying);
        c.handle(
            t0 + Duration::from_millis(300),
            Input::Provisional {
                code: 180,
                sdp: b"",
            },
        );
        assert_eq!(c.state(), State::Proceeding);
        let outs = drain(&mut c);
        assert!(matches!(
            events(&outs)[..],
            [CallEvent::Ringing {
                code: 180,
                early_media: false
            }]
        ));
        c.handle(
            t0 + Duration::from_secs(2),
            Input::InviteFinal {
                code: 486,
                reason: "Busy Here",
                sdp: b"",
            },
        );
        assert!(c.is_over());
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Busy);
        assert_eq!(s.sip_code, Some(486));
        assert_eq!(s.reason, "Busy Here");
        assert_eq!(s.ring_ms, Some(300));
        assert_eq!(s.answer_ms, None);
        assert_eq!(s.duration_ms, 0);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn early_media_183_then_200_with_other_sdp_moves_the_media() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0 + Duration::from_millis(100),
            Input::Provisional {
                code: 183,
                sdp: &sdp(7000, 8, "sendrecv"),
            },
        );
        let outs = drain(&mut c);
        assert!(outs.contains(&Output::Media(MediaUpdate {
            srtp: None,
            codec: Codec::Pcma,
            dtmf_pt: Some(101),
            remote: Some("127.0.0.2:7000".parse().unwrap()),
        })));
        assert!(events(&outs).contains(&&CallEvent::Ringing {
            code: 183,
            early_media: true
        }));
        c.handle(
            t0 + Duration::from_secs(1),
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7100, 0, "sendrecv"),
            },
        );
        let outs = drain(&mut c);
        assert_eq!(
            outs[0],
            Output::Media(MediaUpdate {
                srtp: None,
                codec: Codec::Pcmu,
                dtmf_pt: Some(101),
                remote: Some("127.0.0.2:7100".parse().unwrap()),
            })
        );
        assert!(outs.contains(&Output::ToneDetection));
        assert!(events(&outs).contains(&&CallEvent::Answered { codec: Codec::Pcmu }));
        // The INVITE's own 200 after the dialog's: nothing new.
        c.handle(
            t0 + Duration::from_secs(1),
            Input::InviteFinal {
                code: 200,
                reason: "OK",
                sdp: &sdp(7100, 0, "sendrecv"),
            },
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.state(), State::Answered);
        assert_eq!(summary(&c).answer_ms, Some(1000));
        assert_eq!(summary(&c).codec, Some("PCMU"));
    }

    #[test]
    fn ok_200_crossing_our_cancel_is_recorded_not_answered() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 180,
                sdp: b"",
            },
        );
        drain(&mut c);
        c.handle(t0 + RING, Input::Timeout);
        assert_eq!(drain(&mut c), [Output::Cancel]);
        assert_eq!(c.state(), State::Cancelling);
        c.handle(
            t0 + RING + Duration::from_millis(5),
            Input::InviteFinal {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        assert!(c.is_over());
        let outs = drain(&mut c);
        assert!(events(&outs).is_empty(), "no Answered after our CANCEL");
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::NoAnswer);
        assert_eq!(s.sip_code, Some(200));
        assert_eq!(s.reason, "answered after CANCEL; ended with BYE");
    }

    #[test]
    fn timer_b_408_with_no_response_at_all_is_a_failure() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0 + Duration::from_secs(32),
            Input::InviteFinal {
                code: 408,
                reason: "Request Timeout",
                sdp: b"",
            },
        );
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(s.sip_code, None);
        assert_eq!(s.reason, "no response (timeout)");
    }

    #[test]
    fn a_408_from_a_peer_that_answered_trying_keeps_its_code() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(t0, Input::Trying);
        c.handle(
            t0 + Duration::from_secs(5),
            Input::InviteFinal {
                code: 408,
                reason: "Request Timeout",
                sdp: b"",
            },
        );
        assert_eq!(summary(&c).sip_code, Some(408));
    }

    #[test]
    fn hang_up_during_ringing_cancels_then_487_ends_it() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 180,
                sdp: b"",
            },
        );
        drain(&mut c);
        c.handle(t0 + Duration::from_secs(3), Input::Hangup);
        assert_eq!(
            drain(&mut c),
            [Output::Cancel],
            "CANCEL, never BYE, before the answer"
        );
        // A second hang-up sends nothing more.
        c.handle(t0 + Duration::from_secs(3), Input::Hangup);
        assert!(drain(&mut c).is_empty());
        // The dialog's early termination does not end the call: the 487 does.
        c.handle(
            t0 + Duration::from_secs(3),
            Input::Terminated { by_remote: false },
        );
        assert!(!c.is_over());
        c.handle(
            t0 + Duration::from_secs(3),
            Input::InviteFinal {
                code: 487,
                reason: "Request Terminated",
                sdp: b"",
            },
        );
        let s = summary(&c);
        assert!(c.is_over());
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(s.sip_code, Some(487));
        assert_eq!(s.reason, "cancelled by caller");
    }

    #[test]
    fn ring_timeout_cancels_and_gives_up_when_nothing_ends_the_invite() {
        let t0 = Instant::now();
        let mut c = core(t0);
        assert_eq!(c.poll_timeout(), Some(t0 + RING));
        c.handle(t0 + RING - Duration::from_millis(1), Input::Timeout);
        assert!(drain(&mut c).is_empty(), "not due yet");
        c.handle(t0 + RING, Input::Timeout);
        assert_eq!(drain(&mut c), [Output::Cancel]);
        assert_eq!(c.poll_timeout(), Some(t0 + RING + CANCEL_GRACE));
        c.handle(t0 + RING + CANCEL_GRACE, Input::Timeout);
        assert!(c.is_over());
        assert_eq!(summary(&c).outcome, Outcome::NoAnswer);
    }

    /// A far end that never answers our INVITE nor our early CANCEL (sipp aborts a call on
    /// a CANCEL its scenario does not expect) must not hold the call until the ring timeout:
    /// it is given up CANCEL_GRACE after the CANCEL.
    #[test]
    fn an_early_cancel_gives_up_its_grace_after_the_cancel_not_after_the_ring_timeout() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let at = t0 + Duration::from_millis(3);
        c.handle(at, Input::Hangup);
        assert_eq!(drain(&mut c), [Output::Cancel]);
        assert_eq!(c.poll_timeout(), Some(at + CANCEL_GRACE));
        assert!(at + CANCEL_GRACE < t0 + RING + CANCEL_GRACE);
        c.handle(at + CANCEL_GRACE, Input::Timeout);
        assert!(c.is_over());
        assert_eq!(summary(&c).outcome, Outcome::Failed);
    }

    #[test]
    fn remote_bye_after_answer_ends_with_duration() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0 + Duration::from_secs(1),
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(1) + MAX));
        c.handle(
            t0 + Duration::from_secs(6),
            Input::Terminated { by_remote: true },
        );
        let s = summary(&c);
        assert_eq!(s.hangup, Some(Hangup::Remote));
        assert_eq!(s.duration_ms, 5000);
        assert_eq!(s.outcome, Outcome::Answered);
    }

    #[test]
    fn max_duration_sends_bye() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c.handle(t0 + MAX, Input::Timeout);
        assert_eq!(drain(&mut c), [Output::Bye]);
        assert_eq!(summary(&c).hangup, Some(Hangup::MaxDuration));
    }

    #[test]
    fn peer_hold_reinvite_is_answered_recvonly_and_stops_sending() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c.handle(
            t0,
            Input::Reoffer {
                sdp: &sdp(7000, 0, "sendonly"),
            },
        );
        let outs = drain(&mut c);
        assert!(matches!(
            outs[0],
            Output::Media(MediaUpdate { remote: None, .. })
        ));
        match &outs[1] {
            Output::AnswerReoffer {
                code: 200,
                sdp: Some(s),
            } => assert!(s.contains("a=recvonly"), "{s}"),
            other => panic!("{other:?}"),
        }
        assert!(events(&outs).contains(&&CallEvent::Reoffered {
            direction: Direction::SendOnly,
            remote: Some("127.0.0.2:7000".parse().unwrap()),
        }));
        c.handle(t0, Input::Reoffer { sdp: b"garbage" });
        assert_eq!(
            drain(&mut c),
            [Output::AnswerReoffer {
                code: 488,
                sdp: None
            }]
        );
    }

    #[test]
    fn our_hold_and_unhold_send_reinvites_once_each() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(t0, Input::Hold(true));
        assert!(drain(&mut c).is_empty(), "no re-INVITE before the answer");
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c.handle(t0, Input::Hold(true));
        c.handle(t0, Input::Hold(true));
        let outs = drain(&mut c);
        assert_eq!(outs.len(), 1);
        assert!(matches!(&outs[0], Output::Reinvite { sdp } if sdp.contains("a=sendonly")));
        c.handle(t0, Input::Hold(false));
        assert!(
            matches!(&drain(&mut c)[..], [Output::Reinvite { sdp }] if sdp.contains("a=sendrecv"))
        );
    }

    #[test]
    fn refer_accepted_then_notify_200_releases_our_leg() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Refer {
                target: "sip:agent@pbx",
            },
        );
        assert!(drain(&mut c).is_empty(), "no REFER before the answer");
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c.handle(
            t0,
            Input::Refer {
                target: "sip:agent@pbx",
            },
        );
        assert_eq!(
            drain(&mut c),
            [Output::Refer {
                target: "sip:agent@pbx".into()
            }]
        );
        c.handle(t0, Input::ReferAnswered { code: 202 });
        assert!(drain(&mut c).is_empty());
        c.handle(
            t0,
            Input::TransferNotify {
                sipfrag: b"SIP/2.0 100 Trying\r\n",
            },
        );
        assert_eq!(
            drain(&mut c),
            [Output::Event(CallEvent::Transfer { code: 100 })]
        );
        c.handle(
            t0 + Duration::from_secs(3),
            Input::TransferNotify {
                sipfrag: b"SIP/2.0 200 OK\r\n",
            },
        );
        assert_eq!(
            drain(&mut c),
            [Output::Event(CallEvent::Transfer { code: 200 })]
        );
        // Our BYE waits a moment, so the answer to the NOTIFY leaves first.
        let release = t0 + Duration::from_secs(3) + TRANSFER_RELEASE_DELAY;
        assert_eq!(c.poll_timeout(), Some(release));
        c.handle(release, Input::Timeout);
        assert_eq!(drain(&mut c), [Output::Bye]);
        assert!(c.is_over());
        assert_eq!(summary(&c).hangup, Some(Hangup::Transferred));
    }

    #[test]
    fn refused_refer_and_failed_transfer_keep_the_call() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c.handle(t0, Input::Refer { target: "sip:a@b" });
        drain(&mut c);
        c.handle(t0, Input::ReferAnswered { code: 603 });
        assert_eq!(
            drain(&mut c),
            [Output::Event(CallEvent::Transfer { code: 603 })]
        );
        c.handle(t0, Input::Refer { target: "sip:a@b" });
        drain(&mut c);
        c.handle(
            t0,
            Input::TransferNotify {
                sipfrag: b"SIP/2.0 486 Busy Here",
            },
        );
        assert_eq!(
            drain(&mut c),
            [Output::Event(CallEvent::Transfer { code: 486 })]
        );
        assert_eq!(c.state(), State::Answered);
        // Garbage in a NOTIFY changes nothing.
        c.handle(
            t0,
            Input::TransferNotify {
                sipfrag: b"\xff\xfe",
            },
        );
        c.handle(
            t0,
            Input::TransferNotify {
                sipfrag: b"SIP/2.0 2",
            },
        );
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn transitions_outside_the_table_are_refused() {
        assert!(!State::Answered.allows(State::Cancelling));
        assert!(!State::Ended.allows(State::Answered));
        assert!(!State::Cancelling.allows(State::Answered));
        assert!(State::Calling.allows(State::Answered));
    }

    fn two_trunks(t0: Instant) -> CallCore {
        core(t0).on_trunk("east", Some(Duration::from_secs(2)), true)
    }

    #[test]
    fn a_503_moves_the_call_to_the_next_trunk_which_answers() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        c.handle(t0, Input::Trying);
        c.handle(
            t0 + Duration::from_millis(50),
            Input::InviteFinal {
                code: 503,
                reason: "Service Unavailable",
                sdp: b"",
            },
        );
        assert_eq!(drain(&mut c), vec![Output::NextTrunk]);
        assert_eq!(c.state(), State::Redialing);
        c.handle(
            t0 + Duration::from_millis(60),
            Input::Redialed {
                trunk: "west",
                invite_timeout: Some(Duration::from_secs(2)),
                more: false,
            },
        );
        assert_eq!(c.state(), State::Calling);
        c.handle(
            t0 + Duration::from_millis(900),
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(30000, 0, "sendrecv"),
            },
        );
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Answered);
        assert_eq!(s.trunk.as_deref(), Some("west"));
        assert_eq!(
            s.failover,
            vec![TrunkTry {
                trunk: "east".into(),
                code: Some(503),
                reason: "Service Unavailable".into()
            }]
        );
    }

    #[test]
    fn busy_declined_and_not_found_never_fail_over() {
        for code in [486u16, 600, 603, 604, 404, 484] {
            let t0 = Instant::now();
            let mut c = two_trunks(t0);
            c.handle(
                t0,
                Input::InviteFinal {
                    code,
                    reason: "x",
                    sdp: b"",
                },
            );
            assert!(!drain(&mut c).contains(&Output::NextTrunk), "{code}");
            assert!(c.is_over(), "{code}");
            let s = summary(&c);
            assert_eq!(s.sip_code, Some(code));
            assert_eq!(s.trunk.as_deref(), Some("east"));
            assert!(s.failover.is_empty());
        }
    }

    #[test]
    fn silence_past_the_invite_timeout_abandons_the_invite_and_fails_over() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        c.handle(t0 + Duration::from_secs(2), Input::Timeout);
        assert_eq!(
            drain(&mut c),
            vec![Output::AbandonInvite, Output::NextTrunk]
        );
        // Nobody takes it: the call ends as the silent trunk left it.
        c.handle(t0 + Duration::from_secs(2), Input::NoTrunkLeft);
        assert!(c.is_over());
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(s.reason, "no response within 2 s");
        assert_eq!(s.sip_code, None);
        assert!(
            s.failover.is_empty(),
            "the last trunk is the call's own end"
        );
    }

    #[test]
    fn a_100_trying_stops_the_invite_timeout_but_not_the_ring_timeout() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        c.handle(t0 + Duration::from_millis(10), Input::Trying);
        assert_eq!(c.poll_timeout(), Some(t0 + RING));
    }

    #[test]
    fn no_failover_once_the_phone_rang_but_after_a_183_alone() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 183,
                sdp: b"",
            },
        );
        c.handle(
            t0,
            Input::InviteFinal {
                code: 502,
                reason: "Bad Gateway",
                sdp: b"",
            },
        );
        assert!(drain(&mut c).contains(&Output::NextTrunk));

        let mut c = two_trunks(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 180,
                sdp: b"",
            },
        );
        c.handle(
            t0,
            Input::InviteFinal {
                code: 503,
                reason: "Service Unavailable",
                sdp: b"",
            },
        );
        assert!(!drain(&mut c).contains(&Output::NextTrunk));
        assert_eq!(summary(&c).outcome, Outcome::from_final_code(503));
    }

    #[test]
    fn a_transport_failure_fails_over_and_a_hang_up_while_redialing_ends_it() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        c.handle(
            t0,
            Input::InviteGone {
                error: Some("connection refused".into()),
            },
        );
        assert_eq!(drain(&mut c), vec![Output::NextTrunk]);
        c.handle(t0, Input::Hangup);
        assert!(c.is_over());
        assert_eq!(summary(&c).reason, "cancelled by caller");
    }

    fn sit(cause: SitCause) -> Input<'static> {
        Input::Tone(ToneEvent::Sit {
            cause,
            onset_ms: 100,
        })
    }

    #[test]
    fn a_vacant_code_sit_in_early_media_makes_the_404_an_invalid_number() {
        let t0 = Instant::now();
        let mut c = two_trunks(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 183,
                sdp: &sdp(30000, 0, "sendrecv"),
            },
        );
        assert!(
            drain(&mut c).contains(&Output::ToneDetection),
            "early media turns tone detection on"
        );
        c.handle(t0 + Duration::from_secs(1), sit(SitCause::VacantCode));
        c.handle(
            t0 + Duration::from_millis(1200),
            Input::InviteFinal {
                code: 404,
                reason: "Not Found",
                sdp: b"",
            },
        );
        assert!(
            !drain(&mut c).contains(&Output::NextTrunk),
            "a SIT never fails over"
        );
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::InvalidNumber);
        assert_eq!(s.sip_code, Some(404));
        assert_eq!(s.sit, Some("VC"));
        assert_eq!(s.reason, "SIT VC in early media");
    }

    #[test]
    fn a_reorder_sit_without_a_final_response_is_cancelled_as_unavailable() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Provisional {
                code: 183,
                sdp: &sdp(30000, 0, "sendrecv"),
            },
        );
        let at = t0 + Duration::from_secs(1);
        c.handle(at, sit(SitCause::Reorder));
        assert_eq!(c.poll_timeout(), Some(at + SIT_GRACE));
        c.handle(at + SIT_GRACE, Input::Timeout);
        assert!(drain(&mut c).contains(&Output::Cancel));
        c.handle(
            at + SIT_GRACE,
            Input::InviteFinal {
                code: 487,
                reason: "Request Terminated",
                sdp: b"",
            },
        );
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Unavailable);
        assert_eq!(s.sit, Some("RO"));
    }

    #[test]
    fn redirects_are_followed_a_bounded_number_of_times() {
        let t0 = Instant::now();
        let mut c = core(t0);
        for i in 0..MAX_REDIRECTS {
            c.handle(
                t0,
                Input::Redirected {
                    code: 302,
                    reason: "Moved Temporarily",
                    contact: "sip:loop@127.0.0.1:5099",
                },
            );
            assert_eq!(
                drain(&mut c),
                vec![Output::Redirect {
                    target: "sip:loop@127.0.0.1:5099".into()
                }],
                "redirect {i}"
            );
            c.handle(
                t0,
                Input::Redialed {
                    trunk: "",
                    invite_timeout: None,
                    more: false,
                },
            );
        }
        c.handle(
            t0,
            Input::Redirected {
                code: 302,
                reason: "Moved Temporarily",
                contact: "sip:loop@127.0.0.1:5099",
            },
        );
        assert!(c.is_over(), "the fourth redirect ends the call");
        let s = summary(&c);
        assert_eq!(s.sip_code, Some(302));
        assert_eq!(s.failover.len(), MAX_REDIRECTS);
    }

    fn answered(t0: Instant) -> CallCore {
        let mut c = core(t0);
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(30000, 0, "sendrecv"),
            },
        );
        drain(&mut c);
        c
    }

    #[test]
    fn we_refresh_a_session_timer_at_half_its_interval() {
        let t0 = Instant::now();
        let mut c = answered(t0);
        c.handle(
            t0,
            Input::SessionTimer {
                expires: Duration::from_secs(90),
                we_refresh: true,
            },
        );
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(45)));
        c.handle(t0 + Duration::from_secs(45), Input::Timeout);
        let outs = drain(&mut c);
        assert!(
            matches!(outs.as_slice(), [Output::Reinvite { .. }]),
            "{outs:?}"
        );
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        assert_eq!(c.state(), State::Answered);
    }

    #[test]
    fn a_session_the_far_end_does_not_refresh_ends_before_it_expires() {
        let t0 = Instant::now();
        let mut c = answered(t0);
        c.handle(
            t0,
            Input::SessionTimer {
                expires: Duration::from_secs(1800),
                we_refresh: false,
            },
        );
        // 1800 s less min(32 s, 600 s).
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(1768)));
        // Its UPDATE at 1000 s refreshes it.
        c.handle(t0 + Duration::from_secs(1000), Input::Reoffer { sdp: b"" });
        drain(&mut c);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(2768)));
        c.handle(t0 + Duration::from_secs(2768), Input::Timeout);
        assert_eq!(drain(&mut c), vec![Output::Bye]);
        assert!(c.is_over());
        let s = summary(&c);
        assert_eq!(s.reason, "session timer expired: no refresh within 1800 s");
        assert_eq!(s.hangup, Some(Hangup::Local));
    }

    fn incoming(t0: Instant, offer: &[u8]) -> (CallCore, String) {
        let formats = vec![
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Pcma),
            Format::TelephoneEvent(TELEPHONE_EVENT_PT),
        ];
        let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
        CallCore::incoming(t0, MAX, formats, local, offer).unwrap()
    }

    #[test]
    fn an_inbound_leg_answers_the_offer_and_is_up_at_the_ack() {
        let t0 = Instant::now();
        let (mut c, answer) = incoming(t0, &sdp(30000, 8, "sendrecv"));
        assert!(answer.contains("m=audio 40000 RTP/AVP 8 101"), "{answer}");
        assert_eq!(c.state(), State::Accepting);
        // The media goes to the caller's address before the ACK (it may send at once).
        let outs = drain(&mut c);
        assert!(matches!(
            outs.as_slice(),
            [Output::Media(MediaUpdate {
                codec: Codec::Pcma,
                remote: Some(_),
                ..
            })]
        ));
        assert_eq!(c.poll_timeout(), Some(t0 + ACK_WAIT));
        let ack = t0 + Duration::from_millis(40);
        c.handle(
            ack,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: b"",
            },
        );
        let outs = drain(&mut c);
        assert_eq!(
            events(&outs),
            vec![&CallEvent::Answered { codec: Codec::Pcma }]
        );
        assert_eq!(c.state(), State::Answered);
        c.handle(
            ack + Duration::from_secs(5),
            Input::Terminated { by_remote: true },
        );
        let s = summary(&c);
        assert_eq!(s.outcome, Outcome::Answered);
        assert_eq!(s.answer_ms, Some(40));
        assert_eq!(s.duration_ms, 5000);
        assert_eq!(s.hangup, Some(Hangup::Remote));
    }

    #[test]
    fn an_inbound_offer_without_a_common_codec_is_refused() {
        let t0 = Instant::now();
        let formats = vec![Format::Audio(Codec::Pcmu)];
        let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
        assert!(CallCore::incoming(
            t0,
            MAX,
            formats.clone(),
            local.clone(),
            &sdp(30000, 9, "sendrecv")
        )
        .is_err());
        assert!(CallCore::incoming(t0, MAX, formats, local, b"not sdp").is_err());
    }

    #[test]
    fn an_inbound_hang_up_before_the_ack_waits_for_it_then_byes() {
        let t0 = Instant::now();
        let (mut c, _) = incoming(t0, &sdp(30000, 0, "sendrecv"));
        drain(&mut c);
        c.handle(t0, Input::Hangup);
        assert!(drain(&mut c).is_empty(), "no BYE before the ACK");
        c.handle(
            t0 + Duration::from_millis(10),
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: b"",
            },
        );
        assert_eq!(drain(&mut c).last(), Some(&Output::Bye));
        assert!(c.is_over());
        assert_eq!(summary(&c).hangup, Some(Hangup::Local));
    }

    #[test]
    fn an_inbound_leg_without_an_ack_or_cancelled_ends_failed() {
        let t0 = Instant::now();
        let (mut c, _) = incoming(t0, &sdp(30000, 0, "sendrecv"));
        c.handle(t0 + ACK_WAIT, Input::Timeout);
        assert!(c.is_over());
        assert_eq!(summary(&c).reason, "no ACK for our 200");
        let (mut c, _) = incoming(t0, &sdp(30000, 0, "sendrecv"));
        c.handle(t0, Input::Terminated { by_remote: true });
        assert!(c.is_over());
        let s = summary(&c);
        assert_eq!((s.outcome, s.answer_ms), (Outcome::Failed, None));
    }

    fn srtp_core(t0: Instant, policy: crate::media::srtp::SrtpPolicy) -> CallCore {
        let mut c = core(t0);
        c.local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000).with_srtp(policy);
        c
    }

    fn keyed_sdp(port: u16, proto: &str) -> Vec<u8> {
        let key = crate::media::srtp::MasterKey::generate().to_base64();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio {port} {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn required_srtp_answered_in_clear_is_hung_up_at_once_and_never_sends() {
        use crate::media::srtp::SrtpPolicy;
        let t0 = Instant::now();
        let mut c = srtp_core(t0, SrtpPolicy::Required);
        assert!(c.offer(Direction::SendRecv).contains("RTP/SAVP"));
        // Early media without a key: not taken (no address for the media).
        c.handle(
            t0,
            Input::Provisional {
                code: 183,
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        let outs = drain(&mut c);
        assert!(
            !outs.iter().any(|o| matches!(o, Output::Media(_))),
            "{outs:?}"
        );
        c.handle(
            t0 + Duration::from_secs(1),
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &sdp(7000, 0, "sendrecv"),
            },
        );
        let outs = drain(&mut c);
        assert!(outs.contains(&Output::Bye), "{outs:?}");
        assert!(
            !outs.iter().any(|o| matches!(o, Output::Media(_))),
            "{outs:?}"
        );
        assert!(c.is_over());
        let s = summary(&c);
        assert_eq!((s.outcome, s.sip_code), (Outcome::Failed, Some(200)));
        assert!(s.reason.contains("srtp = \"required\""), "{}", s.reason);

        // With the far end's key, the media update carries both keys.
        let mut c = srtp_core(t0, SrtpPolicy::Required);
        c.offer(Direction::SendRecv);
        c.handle(
            t0,
            Input::Confirmed {
                code: 200,
                reason: "OK",
                sdp: &keyed_sdp(7000, "RTP/SAVP"),
            },
        );
        let outs = drain(&mut c);
        assert!(
            outs.iter().any(|o| matches!(
                o,
                Output::Media(MediaUpdate {
                    srtp: Some(_),
                    remote: Some(_),
                    ..
                })
            )),
            "{outs:?}"
        );
        assert!(!c.is_over());
    }

    #[test]
    fn inbound_srtp_offers_are_answered_with_our_key_or_refused() {
        use crate::media::srtp::SrtpPolicy;
        let t0 = Instant::now();
        let formats = vec![Format::Audio(Codec::Pcmu), Format::TelephoneEvent(101)];
        let local = |p| LocalMedia::new("127.0.0.1".parse().unwrap(), 40000).with_srtp(p);
        let (mut c, answer) = CallCore::incoming(
            t0,
            MAX,
            formats.clone(),
            local(SrtpPolicy::Off),
            &keyed_sdp(30000, "RTP/SAVP"),
        )
        .unwrap();
        assert!(answer.contains("m=audio 40000 RTP/SAVP 0 101"), "{answer}");
        assert!(
            answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{answer}"
        );
        assert!(drain(&mut c)
            .iter()
            .any(|o| matches!(o, Output::Media(MediaUpdate { srtp: Some(_), .. }))));
        let refused = CallCore::incoming(
            t0,
            MAX,
            formats,
            local(SrtpPolicy::Required),
            &sdp(30000, 0, "sendrecv"),
        );
        assert!(matches!(refused, Err(sdp::SdpError::SrtpRequired)));
    }
}
