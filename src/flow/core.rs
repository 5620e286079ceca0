//! The sans-IO core of an answered call's plan: what the callee's leg, the detector, the
//! playback and the bridge report, and what to do next.
//!
//! The plan, in order: digits to send at the answer; answering-machine detection (when asked)
//! whose verdict picks the branch — a person (or no verdict in time) gets the person's branch,
//! a machine gets `machine_action` (hang up, leave the voicemail message once its greeting has
//! ended, or the person's branch), a fax or silence is hung up on. The person's branch
//! connects to the bridge target when there is one — within `queue_timeout` of the verdict,
//! or the person hears the abandon message and is hung up on (counted as abandoned) — and
//! otherwise plays the message. Once nothing is left to do the callee is hung up on (or left
//! alone when the plan says so, as `outdial call` without a file does).
//!
//! It must not do I/O, sleep or read a clock: time is an argument; the runner
//! ([`super::runner`]) carries the outputs out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::amd::AmdEvent;
use crate::campaign::model::MachineAction;

/// Which prepared audio to play to the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// The person's message.
    Message,
    /// The message left on a machine after its greeting.
    Voicemail,
    /// What a person hears when no agent could take the call (seller's name, callback number).
    Abandon,
}

/// What the plan holds, as far as deciding goes (the audio itself stays with the runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSettings {
    pub send_dtmf: bool,
    pub detect: bool,
    pub message: bool,
    pub voicemail: bool,
    pub abandon_message: bool,
    pub machine_action: MachineAction,
    /// A bridge target is set: a person is connected, not played the message.
    pub connect: bool,
    /// From the person's verdict (or the answer without detection) to a connected bridge,
    /// at most; then the person is abandoned.
    pub queue_timeout: Duration,
    /// Hang up once there is nothing left to do; otherwise wait for the callee to hang up.
    pub hang_up_when_idle: bool,
}

/// What the bridge reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeInput {
    /// The far side answered and the media is joined.
    Connected,
    /// The far side could not be reached (busy, no answer, rejected, no free agent).
    Failed,
    /// The far side hung up after being connected.
    Ended,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The callee answered.
    Answered,
    Amd(AmdEvent),
    /// Everything queued for the callee has been played.
    PlaybackFinished,
    Bridge(BridgeInput),
    /// The callee's leg ended (the callee hung up, or our BYE went out).
    CalleeEnded,
    /// Stop now (campaign stopped, server shutting down, Ctrl-C).
    Stop,
    /// The time passed [`FlowCore::poll_timeout`].
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    SendDtmf,
    StartDetection,
    Play(Prompt),
    /// Dial the bridge target (or lease an agent) and join it when it answers.
    StartBridge,
    /// Give up on the bridge (before or after it connected).
    StopBridge,
    HangUpCallee,
}

/// Where the plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Detecting,
    /// A machine: waiting for its greeting to end before the voicemail message.
    AwaitingGreetingEnd,
    Playing(Prompt),
    Connecting,
    Bridged,
    /// Waiting for the callee to hang up (nothing left to do, `hang_up_when_idle` off).
    Idle,
    Done,
}

/// What the attempt record keeps of the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// A person was not connected within the queue timeout and heard the abandon message
    /// (or was hung up on).
    pub abandoned: bool,
    /// Person's verdict (or answer) → bridge connected.
    pub queue_wait_ms: Option<u64>,
    pub voicemail_left: bool,
    pub message_played: bool,
}

#[derive(Debug)]
pub struct FlowCore {
    settings: FlowSettings,
    phase: Phase,
    person_at: Option<Instant>,
    record: FlowRecord,
    out: VecDeque<Output>,
}

impl FlowCore {
    pub fn new(settings: FlowSettings) -> FlowCore {
        FlowCore {
            settings,
            phase: Phase::Ringing,
            person_at: None,
            record: FlowRecord::default(),
            out: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn record(&self) -> FlowRecord {
        self.record
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] is due: the queue timeout while connecting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.phase, self.person_at) {
            (Phase::Connecting, Some(at)) => Some(at + self.settings.queue_timeout),
            _ => None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.phase == Phase::Done {
            return;
        }
        match input {
            Input::Answered if self.phase == Phase::Ringing => {
                if self.settings.send_dtmf {
                    self.out.push_back(Output::SendDtmf);
                }
                if self.settings.detect {
                    self.phase = Phase::Detecting;
                    self.out.push_back(Output::StartDetection);
                } else {
                    self.person(now);
                }
            }
            Input::Answered => {}
            Input::Amd(event) => self.on_amd(now, event),
            Input::PlaybackFinished => match self.phase {
                Phase::Playing(Prompt::Abandon) => self.finish(),
                Phase::Playing(_) => self.idle(),
                _ => {}
            },
            Input::Bridge(b) => self.on_bridge(now, b),
            Input::CalleeEnded => {
                if matches!(self.phase, Phase::Connecting | Phase::Bridged) {
                    self.out.push_back(Output::StopBridge);
                }
                self.phase = Phase::Done;
            }
            Input::Stop => {
                if matches!(self.phase, Phase::Connecting | Phase::Bridged) {
                    self.out.push_back(Output::StopBridge);
                }
                self.finish();
            }
            Input::Timeout => {
                if let Some(due) = self.poll_timeout() {
                    if now >= due {
                        self.out.push_back(Output::StopBridge);
                        self.abandon();
                    }
                }
            }
        }
    }

    fn on_amd(&mut self, now: Instant, event: AmdEvent) {
        match (self.phase, event) {
            (Phase::Detecting, AmdEvent::HumanDetected { .. } | AmdEvent::Timeout { .. }) => {
                self.person(now)
            }
            (Phase::Detecting, AmdEvent::NoSpeech { .. } | AmdEvent::Fax { .. }) => self.finish(),
            (Phase::Detecting, AmdEvent::MachineDetected { .. }) => {
                match self.settings.machine_action {
                    MachineAction::Hangup => self.finish(),
                    MachineAction::Connect => self.person(now),
                    MachineAction::LeaveMessage => self.phase = Phase::AwaitingGreetingEnd,
                }
            }
            (Phase::AwaitingGreetingEnd, AmdEvent::MachineGreetingEnded { .. }) => {
                if self.settings.voicemail {
                    self.record.voicemail_left = true;
                    self.play(Prompt::Voicemail);
                } else {
                    self.idle();
                }
            }
            _ => {}
        }
    }

    fn on_bridge(&mut self, now: Instant, input: BridgeInput) {
        match (self.phase, input) {
            (Phase::Connecting, BridgeInput::Connected) => {
                self.phase = Phase::Bridged;
                self.record.queue_wait_ms = self
                    .person_at
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64);
            }
            (Phase::Connecting, BridgeInput::Failed) => self.abandon(),
            (Phase::Bridged, BridgeInput::Ended | BridgeInput::Failed) => self.finish(),
            _ => {}
        }
    }

    /// The person's branch.
    fn person(&mut self, now: Instant) {
        self.person_at = Some(now);
        if self.settings.connect {
            self.phase = Phase::Connecting;
            self.out.push_back(Output::StartBridge);
        } else if self.settings.message {
            self.record.message_played = true;
            self.play(Prompt::Message);
        } else {
            self.idle();
        }
    }

    fn abandon(&mut self) {
        self.record.abandoned = true;
        if self.settings.abandon_message {
            self.play(Prompt::Abandon);
        } else {
            self.finish();
        }
    }

    fn play(&mut self, prompt: Prompt) {
        self.phase = Phase::Playing(prompt);
        self.out.push_back(Output::Play(prompt));
    }

    fn idle(&mut self) {
        if self.settings.hang_up_when_idle {
            self.finish();
        } else {
            self.phase = Phase::Idle;
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.out.push_back(Output::HangUpCallee);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amd::{Cause, GreetingEnd};

    fn settings() -> FlowSettings {
        FlowSettings {
            send_dtmf: false,
            detect: true,
            message: true,
            voicemail: true,
            abandon_message: true,
            machine_action: MachineAction::LeaveMessage,
            connect: false,
            queue_timeout: Duration::from_secs(2),
            hang_up_when_idle: true,
        }
    }

    fn drain(c: &mut FlowCore) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn human(at_ms: u64) -> Input {
        Input::Amd(AmdEvent::HumanDetected {
            cause: Cause::Human,
            confidence: 0.9,
            at_ms,
        })
    }

    fn machine() -> Input {
        Input::Amd(AmdEvent::MachineDetected {
            cause: Cause::Longgreeting,
            confidence: 0.9,
            at_ms: 2000,
        })
    }

    #[test]
    fn person_without_target_hears_the_message_then_is_hung_up_on() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(settings());
        f.handle(t0, Input::Answered);
        assert_eq!(drain(&mut f), [Output::StartDetection]);
        f.handle(t0, human(900));
        assert_eq!(drain(&mut f), [Output::Play(Prompt::Message)]);
        f.handle(t0, Input::PlaybackFinished);
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
        assert!(f.record().message_played);
    }

    #[test]
    fn machine_gets_the_voicemail_only_after_its_greeting_ends() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(settings());
        f.handle(t0, Input::Answered);
        drain(&mut f);
        f.handle(t0, machine());
        assert!(drain(&mut f).is_empty(), "nothing played over the greeting");
        f.handle(
            t0,
            Input::Amd(AmdEvent::Beep {
                onset_ms: 4000,
                frequency_hz: 1000.0,
                confidence: 0.9,
                at_ms: 4000,
            }),
        );
        assert!(drain(&mut f).is_empty());
        f.handle(
            t0,
            Input::Amd(AmdEvent::MachineGreetingEnded {
                how: GreetingEnd::Beep,
                confidence: 0.9,
                at_ms: 4300,
            }),
        );
        assert_eq!(drain(&mut f), [Output::Play(Prompt::Voicemail)]);
        assert!(f.record().voicemail_left);
    }

    #[test]
    fn machine_with_hangup_action_and_fax_are_hung_up_on() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            machine_action: MachineAction::Hangup,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        drain(&mut f);
        f.handle(t0, machine());
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);

        let mut f = FlowCore::new(settings());
        f.handle(t0, Input::Answered);
        drain(&mut f);
        f.handle(
            t0,
            Input::Amd(AmdEvent::Fax {
                confidence: 0.9,
                at_ms: 500,
            }),
        );
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
    }

    #[test]
    fn person_is_connected_within_the_queue_timeout() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            connect: true,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        drain(&mut f);
        let verdict = t0 + Duration::from_millis(1200);
        f.handle(verdict, human(1200));
        assert_eq!(drain(&mut f), [Output::StartBridge]);
        assert_eq!(f.poll_timeout(), Some(verdict + Duration::from_secs(2)));
        f.handle(
            verdict + Duration::from_millis(700),
            Input::Bridge(BridgeInput::Connected),
        );
        assert_eq!(f.phase(), Phase::Bridged);
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(f.record().queue_wait_ms, Some(700));
        assert!(!f.record().abandoned);
        // The agent hangs up: the callee is hung up on.
        f.handle(verdict, Input::Bridge(BridgeInput::Ended));
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
    }

    #[test]
    fn no_agent_within_the_queue_timeout_abandons_with_the_message() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            connect: true,
            detect: false,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        assert_eq!(drain(&mut f), [Output::StartBridge]);
        f.handle(t0 + Duration::from_millis(1999), Input::Timeout);
        assert!(drain(&mut f).is_empty());
        f.handle(t0 + Duration::from_secs(2), Input::Timeout);
        assert_eq!(
            drain(&mut f),
            [Output::StopBridge, Output::Play(Prompt::Abandon)]
        );
        assert!(f.record().abandoned);
        // A late answer from the agent changes nothing.
        f.handle(
            t0 + Duration::from_secs(3),
            Input::Bridge(BridgeInput::Connected),
        );
        assert_eq!(f.phase(), Phase::Playing(Prompt::Abandon));
        f.handle(t0, Input::PlaybackFinished);
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
    }

    #[test]
    fn busy_target_abandons_at_once() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            connect: true,
            detect: false,
            abandon_message: false,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        drain(&mut f);
        f.handle(t0, Input::Bridge(BridgeInput::Failed));
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
        assert!(f.record().abandoned);
    }

    #[test]
    fn callee_hanging_up_while_bridged_stops_the_bridge() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            connect: true,
            detect: false,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        f.handle(t0, Input::Bridge(BridgeInput::Connected));
        drain(&mut f);
        f.handle(t0, Input::CalleeEnded);
        assert_eq!(drain(&mut f), [Output::StopBridge]);
        assert_eq!(f.phase(), Phase::Done);
    }

    #[test]
    fn nothing_to_do_without_hang_up_when_idle_waits_for_the_callee() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            detect: false,
            message: false,
            hang_up_when_idle: false,
            send_dtmf: true,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        assert_eq!(drain(&mut f), [Output::SendDtmf]);
        assert_eq!(f.phase(), Phase::Idle);
        f.handle(t0, Input::Stop);
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
    }
}
