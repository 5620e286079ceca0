//! One leg, outbound or inbound: the only place that joins SIP signalling and media.
//!
//! [`Call::dial`] works out the [`plan`] (destination, identity, codecs, the profile's trunks
//! in their order), takes an RTP port, sends the INVITE and hands the leg to its own task
//! ([`driver`]) — the single owner of the dialog and the media session, which also sends the
//! INVITE again to the next target or trunk when the first fails over, or to a redirect's
//! Contact — whose decisions all come from the sans-IO [`core`]. The
//! owner drives the leg with commands (play, send a frame or digits, hold, hang up) and reads
//! [`CallEvent`]s (ringing, answered, re-offered, ended with a [`CallSummary`]) and received
//! audio frames. [`Call::answer`] makes the same handle for an inbound call we answer (no
//! trunks, no redial). No state is shared with the task behind locks. What happens once a leg is
//! answered (detection, messages, bridges) is the [`flow`](crate::flow)'s business, not this
//! module's: it must not know about campaigns, AMD or other legs.

pub mod core;
mod driver;
mod plan;

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Profile;
use crate::media::dtmf::{DtmfDigit, DtmfError};
use crate::media::g711::Codec;
use crate::media::session::{AudioFrame, MediaSession};
use crate::media::tones::ToneEvent;
use crate::media::MediaError;
use crate::sip::sdp::Direction;
use crate::sip::{Outcome, SipError, UserAgent};

pub use crate::sip::trunks::TrunkTry;
pub use plan::is_phone_number;

/// What to dial and how.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// A phone number (sent through `profile`'s trunk) or a `sip:`/`sips:` URI
    /// (dialed directly; a profile then only lends its identity and credentials).
    pub destination: String,
    pub profile: Option<Profile>,
    /// Caller ID for the From header; overrides the profile's.
    pub caller_id: Option<String>,
    /// How long to let it ring before CANCEL.
    pub ring_timeout: Duration,
    /// Longest answered call; then we hang up.
    pub max_duration: Duration,
    /// Deliver the audio we send too ([`Call::take_sent_audio`]), e.g. for stereo recording.
    pub tap_sent: bool,
    /// P-Asserted-Identity (a number or a URI); overrides the profile's `pai`. A bridge sets
    /// it to the number of the person it connects, so the agent sees who is on the line.
    pub asserted_identity: Option<String>,
    /// Extra headers sent with the INVITE (name, value), e.g. `X-Outdial-Campaign`.
    pub headers: Vec<(String, String)>,
    /// Told the dialog's facts once the leg is answered (a campaign keeps them in the store,
    /// so another process can still end the call if this one dies).
    pub on_answer: Option<mpsc::UnboundedSender<crate::sip::orphan::DialogFacts>>,
}

impl CallRequest {
    /// A request for `destination` with no profile, caller ID or extra headers.
    pub fn new(
        destination: impl Into<String>,
        ring_timeout: Duration,
        max_duration: Duration,
    ) -> Self {
        CallRequest {
            destination: destination.into(),
            profile: None,
            caller_id: None,
            ring_timeout,
            max_duration,
            tap_sent: false,
            asserted_identity: None,
            headers: Vec::new(),
            on_answer: None,
        }
    }
}

/// How to answer an inbound call.
#[derive(Debug, Clone)]
pub struct AnswerRequest {
    /// The carrier's profile: codecs we take, RTP latching, our Contact's user.
    pub profile: Option<Profile>,
    /// Longest answered call; then we hang up.
    pub max_duration: Duration,
    /// Deliver the audio we send too ([`Call::take_sent_audio`]).
    pub tap_sent: bool,
}

/// How an answered leg ended, seen from the leg: our BYE or the far end's. The leg does not
/// know who the far end is (callee or agent); its owner turns this into the
/// [`EndedBy`](crate::campaign::EndedBy) the user reads ([`crate::bridge::leg_ended_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hangup {
    /// Our BYE (the plan was done, a stop, the other leg ended).
    Local,
    /// The far end's BYE.
    Remote,
    /// Our BYE at the call's maximum duration.
    MaxDuration,
    /// Our BYE after the far end reached the transfer target (REFER).
    Transferred,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct EarlyMedia {
    /// RTP packets received before the answer.
    pub received: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RtpCounts {
    pub sent: u64,
    pub received: u64,
    /// Packets the far end sent that never arrived (RFC 3550 expected − received).
    pub lost: i64,
    /// Interarrival jitter of the far end's stream, ms (RFC 3550).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP reports, ms; `None` when no report came back.
    pub rtt_ms: Option<f64>,
    /// Frames the jitter buffer had to make up (loss, late packets).
    pub concealed: u64,
    /// Frames the call's own consumer (detection, a recorder, an agent's stream) was too slow
    /// to take: dropped rather than holding up the media engine.
    pub dropped_frames: u64,
    /// RTP and RTCP packets dropped for their source (before the far end's address was known,
    /// from an address the trunk's `rtp_latching` does not take, or before a latch).
    pub rejected_source: u64,
    /// Where our RTP went instead of the SDP address (symmetric RTP), if it moved.
    pub latched_to: Option<std::net::SocketAddr>,
    /// The SRTP suite the media was protected with (`None`: plain RTP).
    pub srtp: Option<&'static str>,
    /// Packets dropped because SRTP authentication, replay or decryption failed.
    pub srtp_rejected: u64,
}

/// The record of one attempt, as the CLI prints it and a campaign stores it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallSummary {
    pub outcome: Outcome,
    /// The final SIP code; `None` when no final response came (timeout).
    pub sip_code: Option<u16>,
    pub reason: String,
    pub call_id: String,
    /// INVITE → first 180/183.
    pub ring_ms: Option<u64>,
    /// INVITE → 200 OK.
    pub answer_ms: Option<u64>,
    /// Answer → end; 0 when not answered.
    pub duration_ms: u64,
    /// How the leg ended (`None`: never answered); not printed: the flow reports it as
    /// `ended_by`.
    #[serde(skip)]
    pub hangup: Option<Hangup>,
    pub early_media: EarlyMedia,
    pub rtp: RtpCounts,
    pub codec: Option<&'static str>,
    /// Digits the far end pressed, in order (RFC 4733, SIP INFO or in-band).
    pub dtmf_received: String,
    /// Beeps, SIT and fax tones heard after the answer (times: ms of received audio).
    pub tones: Vec<ToneEvent>,
    /// The trunk the call ended on (`None`: a SIP URI dialed without a trunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// The trunks the call left behind before it, in order, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<TrunkTry>,
    /// The Special Information Tone heard in early media that ended the attempt (`VC`, `IC`,
    /// `RO`, `NC`, `IO`, `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sit: Option<&'static str>,
}

/// What the call tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// 180/183; `early_media` when the response carried SDP.
    Ringing {
        code: u16,
        early_media: bool,
    },
    Answered {
        codec: Codec,
    },
    /// Everything queued with [`Call::play`] has been sent.
    PlaybackFinished,
    /// The far end changed the media with a re-INVITE or UPDATE (hold, unhold, a new
    /// address); already answered and applied.
    Reoffered {
        direction: Direction,
        remote: Option<std::net::SocketAddr>,
    },
    /// Progress of a transfer we asked for ([`Call::transfer`]): the code the target answered
    /// (from the NOTIFY's sipfrag), or the code that refused our REFER. A 2xx ends the call.
    Transfer {
        code: u16,
    },
    /// The far end pressed a key.
    Dtmf(DtmfDigit),
    /// A beep, SIT or fax tone in the answered call's audio.
    Tone(ToneEvent),
    /// The call is over; the last event.
    Ended(Box<CallSummary>),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("destination {0:?} is neither a phone number nor a sip: URI")]
    BadDestination(String),
    #[error("destination {0:?} is a number: name the trunk to send it through (--profile)")]
    NoProfile(String),
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    TrunkFull(#[from] crate::sip::limits::TrunkFull),
    #[error("cannot send INVITE: {0}")]
    Invite(String),
}

enum Command {
    Hangup,
    ClearPlayback,
    Transfer(String),
    Hold(bool),
    Play(Arc<Vec<i16>>),
    Frame(Vec<i16>),
    Dtmf(String, u32),
    /// From now on the answered call's tones come from a detector beside the call
    /// ([`ToneInput`]): the media session's own detectors stop at the answer, and stay off
    /// once that detector is done (it heard what a call acts on: the beep, a SIT, a fax tone).
    TonesHeardBeside,
    /// A tone that detector heard, taken as the media session's own would be.
    Tone(ToneEvent),
}

/// Where a detector listening to the call's received audio beside it (the AMD, which runs the
/// same beep/SIT/fax detectors) reports the tones it hears, so the media session does not run a
/// second copy of them on the same audio after the answer. Holds the call only weakly:
/// dropping the [`Call`] still hangs it up.
#[derive(Debug, Clone)]
pub struct ToneInput(mpsc::WeakUnboundedSender<Command>);

impl ToneInput {
    /// A tone heard; its times in the call's received-audio time (ms since the first
    /// received frame), like the media session's.
    pub fn heard(&self, tone: ToneEvent) {
        if let Some(tx) = self.0.upgrade() {
            let _ = tx.send(Command::Tone(tone));
        }
    }
}

/// Turns the delivery of a call's received frames on and off
/// ([`MediaSession::deliver_frames`]); remembers what it last set, so setting the same again
/// costs nothing. On at first.
#[derive(Debug, Clone)]
pub struct FrameGate {
    media: Weak<MediaSession>,
    on: bool,
}

impl FrameGate {
    pub fn set(&mut self, on: bool) {
        if on != self.on {
            self.on = on;
            if let Some(media) = self.media.upgrade() {
                media.deliver_frames(on);
            }
        }
    }
}

/// A handle on a call in progress. Dropping it hangs the call up.
pub struct Call {
    call_id: String,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    audio: mpsc::Receiver<AudioFrame>,
    /// A sender into `audio` (weak: it must not keep the channel open once the call's task
    /// ends), handed to the media session when a consumer takes the frames.
    frames_tx: Option<mpsc::WeakSender<AudioFrame>>,
    sent_audio: mpsc::Receiver<Vec<i16>>,
    /// The leg's media session, owned by the call's task; reachable here only to link two
    /// legs' media for a bridge.
    media: Weak<MediaSession>,
}

impl Call {
    /// Sends the INVITE and starts the call's task. Errors here are the
    /// caller's (bad destination, no free RTP port): no INVITE went out.
    pub async fn dial(ua: Arc<UserAgent>, req: CallRequest) -> Result<Call, CallError> {
        driver::dial(ua, req).await
    }

    /// Answers an admitted inbound INVITE (our 200 with the SDP answer) and starts the
    /// call's task; [`CallEvent::Answered`] follows at the caller's ACK. On an error the
    /// caller was refused already (488, 503) and no dialog is left.
    pub async fn answer(
        ua: Arc<UserAgent>,
        incoming: crate::sip::inbound::IncomingCall,
        req: AnswerRequest,
    ) -> Result<Call, CallError> {
        driver::answer(ua, incoming, req).await
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Queues 8 kHz PCM to send after what is already queued (shared, not copied).
    pub fn play(&self, samples: Arc<Vec<i16>>) {
        let _ = self.commands.send(Command::Play(samples));
    }

    /// Queues one 20 ms frame (160 samples).
    pub fn send_frame(&self, samples: Vec<i16>) {
        let _ = self.commands.send(Command::Frame(samples));
    }

    /// Sends digits (RFC 4733 when negotiated, else in-band), each `duration_ms` long.
    /// Invalid digits are refused here, before anything is sent.
    pub fn send_dtmf(&self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        if let Some(bad) = digits
            .chars()
            .find(|c| crate::media::dtmf::event_code(*c).is_none())
        {
            return Err(DtmfError::InvalidDigit(bad));
        }
        let _ = self
            .commands
            .send(Command::Dtmf(digits.to_string(), duration_ms));
        Ok(())
    }

    /// Drops everything queued with [`Call::play`] that has not been sent (barge-in).
    pub fn clear_playback(&self) {
        let _ = self.commands.send(Command::ClearPlayback);
    }

    /// The answered call's tones will come from a detector beside it, through the returned
    /// [`ToneInput`], and from nothing once it is done.
    pub fn hear_tones_beside(&self) -> ToneInput {
        let _ = self.commands.send(Command::TonesHeardBeside);
        ToneInput(self.commands.downgrade())
    }

    /// CANCEL before the answer, BYE after it.
    pub fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup);
    }

    /// Puts the far end on hold (a re-INVITE with `a=sendonly`) or takes it off hold
    /// (`a=sendrecv`); nothing before the answer.
    pub fn hold(&self, on: bool) {
        let _ = self.commands.send(Command::Hold(on));
    }

    /// Blind transfer (RFC 3515): asks the far end to call `target` (a URI) itself; progress
    /// comes as [`CallEvent::Transfer`], and our leg ends once the target answered.
    pub fn transfer(&self, target: &str) {
        let _ = self.commands.send(Command::Transfer(target.to_string()));
    }

    /// The leg's media session while the call runs (`None` once it ended), for linking two
    /// legs' media; do not keep it.
    pub fn media(&self) -> Option<Arc<MediaSession>> {
        self.media.upgrade()
    }

    /// The next event; `None` after [`CallEvent::Ended`].
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// The next received audio frame (early media included).
    pub async fn next_audio(&mut self) -> Option<AudioFrame> {
        self.audio.recv().await
    }

    /// The audio we send, 20 ms frames, when the request asked for it (`tap_sent`).
    pub fn take_sent_audio(&mut self) -> mpsc::Receiver<Vec<i16>> {
        let (_tx, rx) = mpsc::channel(1);
        std::mem::replace(&mut self.sent_audio, rx)
    }

    /// A switch for the delivery of received frames, for the consumer that took them
    /// ([`take_audio`](Self::take_audio)): off while nobody needs them.
    pub fn frame_gate(&self) -> FrameGate {
        FrameGate {
            media: self.media.clone(),
            on: true,
        }
    }

    /// Splits the audio receiver off, for a consumer in another task. From then on the media
    /// session sends received frames straight into it (not through the call's task).
    pub fn take_audio(&mut self) -> mpsc::Receiver<AudioFrame> {
        let tx = self.frames_tx.take().and_then(|tx| tx.upgrade());
        if let (Some(tx), Some(media)) = (tx, self.media.upgrade()) {
            media.send_frames_to(Some(tx));
        }
        let (_tx, rx) = mpsc::channel(1);
        std::mem::replace(&mut self.audio, rx)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Hangup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_has_the_documented_shape() {
        let s = CallSummary {
            outcome: Outcome::Answered,
            sip_code: Some(200),
            reason: "OK".into(),
            call_id: "abc@outdial".into(),
            ring_ms: Some(120),
            answer_ms: Some(900),
            duration_ms: 4000,
            hangup: Some(Hangup::Remote),
            early_media: EarlyMedia { received: 0 },
            rtp: RtpCounts {
                sent: 200,
                received: 190,
                lost: 3,
                jitter_ms: 1.25,
                rtt_ms: None,
                concealed: 4,
                dropped_frames: 1,
                rejected_source: 2,
                latched_to: None,
                srtp: None,
                srtp_rejected: 0,
            },
            codec: Some("PCMU"),
            dtmf_received: "12#".into(),
            tones: vec![],
            trunk: None,
            failover: vec![],
            sit: None,
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["outcome"], "answered");
        assert_eq!(v["sip_code"], 200);
        assert!(
            v.get("hangup").is_none(),
            "the flow prints ended_by instead: {v}"
        );
        assert_eq!(v["rtp"]["sent"], 200);
        assert_eq!(v["rtp"]["received"], 190);
        assert_eq!(v["rtp"]["dropped_frames"], 1);
        assert_eq!(v["rtp"]["rejected_source"], 2);
        assert_eq!(v["rtp"]["latched_to"], serde_json::Value::Null);
        assert_eq!(v["codec"], "PCMU");
        assert_eq!(v["early_media"]["received"], 0);
        assert_eq!(v["dtmf_received"], "12#");
        assert_eq!(v["tones"], serde_json::json!([]));
    }
}
