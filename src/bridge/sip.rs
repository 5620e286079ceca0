//! The SIP bridge (B2BUA): a second outbound leg to the target, its media joined to the
//! callee's once it answers.
//!
//! The second leg is an ordinary [`Call`] (same plan, core and driver as the callee's), sent
//! with the callee's number in From and P-Asserted-Identity (so the agent sees who is on the
//! line) and `X-Outdial-Campaign` / `X-Outdial-Contact`. When it answers, the two legs' media
//! sessions are linked: each RTP packet received on one leg leaves the other at once. Hold and
//! unhold on either side are passed on as re-INVITEs, digits the callee sends by SIP INFO are
//! sent on to the agent (RTP and in-band digits cross inside the media link).
//!
//! It must not end the callee's leg (the runner owns it) and must not wait on anything but the
//! second leg.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{info, warn};

use super::{leg_ended_by, Bridge, BridgeContext, BridgeError, BridgeEvent, BridgeReport, EndedBy};
use crate::call::{is_phone_number, Call, CallEvent, CallRequest, CallSummary};
use crate::config::Profile;
use crate::media::dtmf::DtmfSource;
use crate::media::session::MediaSession;
use crate::sip::sdp::Direction;

/// A SIP bridge in progress.
pub struct SipBridge {
    target: String,
    agent: Call,
    callee_media: Weak<MediaSession>,
    started: Instant,
    started_at_ms: i64,
    ring_at: Option<Instant>,
    answered_at: Option<Instant>,
    ended_at: Option<Instant>,
    ended_by: Option<EndedBy>,
    link: Option<crate::media::session::MediaLink>,
    /// Deliver the callee's frames while linked (recording).
    tap_callee: bool,
    /// The agent holds the callee (its last re-INVITE was not sendrecv).
    agent_holds: bool,
    summary: Option<CallSummary>,
}

impl SipBridge {
    /// Dials the target; the media is joined when it answers ([`Bridge::next_event`]).
    pub async fn start(
        destination: &str,
        profile: Option<Profile>,
        callee: &Call,
        ctx: BridgeContext,
    ) -> Result<SipBridge, BridgeError> {
        let media = callee
            .media()
            .as_ref()
            .map_or_else(Weak::new, Arc::downgrade);
        SipBridge::start_with_media(destination, profile, media, ctx).await
    }

    /// [`SipBridge::start`] with the callee's media session given directly.
    pub async fn start_with_media(
        destination: &str,
        profile: Option<Profile>,
        callee_media: Weak<MediaSession>,
        ctx: BridgeContext,
    ) -> Result<SipBridge, BridgeError> {
        // The callee's leg keeps the time limit: this leg's own runs a minute past it, so it is
        // never the one that ends the call.
        let mut request = CallRequest::new(
            destination,
            ctx.ring_timeout,
            ctx.max_duration + Duration::from_secs(60),
        );
        request.profile = profile;
        if let Some(number) = callee_number(&ctx.callee) {
            request.caller_id = Some(number.clone());
            request.asserted_identity = Some(number);
        }
        if let Some(id) = ctx.campaign_id {
            request
                .headers
                .push(("X-Outdial-Campaign".into(), id.to_string()));
        }
        if let Some(id) = ctx.contact_id {
            request
                .headers
                .push(("X-Outdial-Contact".into(), id.to_string()));
        }
        let agent = Call::dial(ctx.ua.clone(), request)
            .await
            .map_err(|e| BridgeError::Target {
                target: destination.to_string(),
                reason: e.to_string(),
            })?;
        info!(
            target = destination,
            agent_call_id = agent.call_id(),
            "bridge dialing"
        );
        Ok(SipBridge {
            target: destination.to_string(),
            agent,
            callee_media,
            started: Instant::now(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            ring_at: None,
            answered_at: None,
            ended_at: None,
            ended_by: None,
            link: None,
            agent_holds: false,
            tap_callee: ctx.tap_callee,
            summary: None,
        })
    }

    /// The agent leg's media session while that leg runs (`None` before it started or once
    /// it ended); `outdial bench bridge` sets where its stream starts. Do not keep it.
    pub fn agent_media(&self) -> Option<Arc<MediaSession>> {
        self.agent.media()
    }

    fn join_media(&mut self) {
        let (Some(callee), Some(agent)) = (self.callee_media.upgrade(), self.agent.media()) else {
            warn!("bridge: a leg's media is gone before the join");
            return;
        };
        if self.tap_callee {
            callee.set_frames_while_linked(true);
        }
        // The person is connected: no beep, SIT or fax to listen for on either leg any more, and
        // a linked leg that listens decodes every packet it relays.
        callee.set_tone_detection(false);
        agent.set_tone_detection(false);
        match callee.link(&agent) {
            Ok(link) => self.link = Some(link),
            Err(e) => warn!(error = %e, "bridge: media not joined"),
        }
    }
}

#[async_trait]
impl Bridge for SipBridge {
    async fn next_event(&mut self) -> Option<BridgeEvent> {
        loop {
            match self.agent.next_event().await? {
                CallEvent::Ringing { .. } => {
                    self.ring_at.get_or_insert_with(Instant::now);
                }
                CallEvent::Answered { .. } => {
                    self.answered_at = Some(Instant::now());
                    self.join_media();
                    return Some(BridgeEvent::Connected);
                }
                CallEvent::Reoffered { direction, .. } => {
                    let holds = matches!(direction, Direction::SendOnly | Direction::Inactive);
                    if holds != self.agent_holds {
                        self.agent_holds = holds;
                        return Some(BridgeEvent::HoldCallee(holds));
                    }
                }
                CallEvent::Ended(summary) => {
                    self.ended_at = Some(Instant::now());
                    self.link = None;
                    // The agent's BYE, or ours (a limit, a stop) when nobody else ended it.
                    let by = summary
                        .hangup
                        .map_or(EndedBy::System, |h| leg_ended_by(h, EndedBy::Agent));
                    self.summary = Some(*summary);
                    return Some(if self.answered_at.is_some() {
                        self.ended_by.get_or_insert(by);
                        BridgeEvent::Ended
                    } else {
                        BridgeEvent::Failed
                    });
                }
                CallEvent::PlaybackFinished
                | CallEvent::Dtmf(_)
                | CallEvent::Tone(_)
                | CallEvent::Transfer { .. } => {}
            }
        }
    }

    fn callee_event(&mut self, event: &CallEvent) {
        match event {
            CallEvent::Reoffered { direction, .. } => self.agent.hold(matches!(
                direction,
                Direction::SendOnly | Direction::Inactive
            )),
            CallEvent::Dtmf(d) if d.source == DtmfSource::SipInfo => {
                let _ = self
                    .agent
                    .send_dtmf(&d.digit.to_string(), d.duration_ms.max(100));
            }
            _ => {}
        }
    }

    fn stop(&mut self, by: EndedBy) {
        if self.answered_at.is_some() {
            self.ended_by.get_or_insert(by);
        }
        self.link = None;
        self.agent.hangup();
    }

    async fn finish(mut self: Box<Self>) -> BridgeReport {
        self.link = None;
        if self.summary.is_none() {
            self.agent.hangup();
            while let Some(ev) = self.agent.next_event().await {
                if let CallEvent::Ended(summary) = ev {
                    self.ended_at = Some(Instant::now());
                    self.summary = Some(*summary);
                    break;
                }
            }
        }
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_millis() as u64;
        let summary = self.summary.as_ref();
        BridgeReport {
            target: self.target.clone(),
            kind: "sip",
            answered: self.answered_at.is_some(),
            sip_code: summary.and_then(|s| s.sip_code),
            call_id: Some(self.agent.call_id().to_string()),
            ring_ms: self.ring_at.map(|r| ms(self.started, r)),
            bridge_ms: self.answered_at.map(|a| ms(self.started, a)),
            talk_ms: match (self.answered_at, self.ended_at) {
                (Some(a), Some(e)) => ms(a, e),
                _ => 0,
            },
            ended_by: self.answered_at.and(self.ended_by),
            started_at_ms: self.started_at_ms,
            agent: None,
            agents_skipped: Vec::new(),
            stream: None,
        }
    }
}

/// The callee's number as the agent should see it: the number dialed, or the user part of a
/// `sip:` URI when that is a number.
fn callee_number(dialed: &str) -> Option<String> {
    let dialed = dialed.trim();
    if is_phone_number(dialed) {
        return Some(dialed.to_string());
    }
    let rest = dialed
        .strip_prefix("sip:")
        .or_else(|| dialed.strip_prefix("sips:"))?;
    let user = rest.split_once('@')?.0;
    is_phone_number(user).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::callee_number;

    #[test]
    fn the_agent_sees_the_callee_number_from_a_number_or_a_uri() {
        assert_eq!(
            callee_number("+12025550101").as_deref(),
            Some("+12025550101")
        );
        assert_eq!(
            callee_number("sip:12025550101@10.0.0.1:5060").as_deref(),
            Some("12025550101")
        );
        assert_eq!(callee_number("sip:alice@example.com"), None);
        assert_eq!(callee_number("sip:nouser.example.com"), None);
    }
}
