//! The sans-IO core of an answered call's plan: what the callee's leg, the detector, the
//! playback and the bridge report, and what to do next.
//!
//! The plan, in order: digits to send at the answer; answering-machine detection (when asked)
//! whose verdict picks the branch — a person (or no verdict in time) gets the person's branch,
//! a machine gets `machine_action` (hang up, leave the voicemail message once its greeting has
//! ended, or the person's branch), a fax or silence is hung up on. The person's branch
//! runs the message plan ([`steps`](super::steps): play, collect digits, record the reply,
//! connect, hang up, or put the number on the DNC list), or, with no plan, connects to the
//! bridge target when there is one. A connection must be made within `queue_timeout` of the
//! verdict, or the person hears the abandon message and is hung up on (counted as abandoned).
//! Once nothing is left to do the callee is hung up on (or left alone when the plan says so,
//! as `outdial call` without a file does).
//!
//! It must not do I/O, sleep or read a clock: time is an argument; the runner
//! ([`super::runner`]) carries the outputs out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::steps::{Action, PlanCursor, Step};
use crate::amd::AmdEvent;
use crate::campaign::model::MachineAction;

/// Which prepared audio to play to the callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A media file the message plan names.
    File(String),
    /// The message left on a machine after its greeting.
    Voicemail,
    /// What a person hears when no agent could take the call (seller's name, callback number).
    Abandon,
}

/// What the plan holds, as far as deciding goes (the audio itself stays with the runner).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSettings {
    pub send_dtmf: bool,
    pub detect: bool,
    /// The person's message plan; empty: connect (when there is a target) or nothing.
    pub steps: Vec<Step>,
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
    /// The callee pressed a key.
    Dtmf(char),
    /// The reply recording asked for by [`Output::StartRecording`] ended.
    Recorded,
    /// The time passed [`FlowCore::poll_timeout`].
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    SendDtmf,
    StartDetection,
    Play(Prompt),
    /// Drop what is still queued for the callee (a key pressed during a prompt).
    StopPlayback,
    /// Record the callee's reply (after a beep when asked) until `max` or `silence_end` of
    /// silence; report [`Input::Recorded`].
    StartRecording {
        max: Duration,
        silence_end: Duration,
        beep: bool,
    },
    /// Put the callee's number on the DNC list (the plan's `dnc` digit action).
    AddDnc,
    /// Dial the bridge target (or lease an agent) and join it when it answers.
    StartBridge,
    /// Give up on the bridge (before or after it connected).
    StopBridge,
    HangUpCallee,
}

/// Where the plan is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Detecting,
    /// A machine: waiting for its greeting to end before the voicemail message.
    AwaitingGreetingEnd,
    Playing(Prompt),
    /// Running the message plan.
    Plan(PlanPhase),
    Connecting,
    Bridged,
    /// Waiting for the callee to hang up (nothing left to do, `hang_up_when_idle` off).
    Idle,
    Done,
}

/// Where the message plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanPhase {
    Playing,
    /// A collect's prompt is playing (keys already count).
    Prompting,
    Collecting,
    Recording,
}

/// What the attempt record keeps of the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// A person was not connected within the queue timeout and heard the abandon message
    /// (or was hung up on).
    pub abandoned: bool,
    /// Person's verdict (or answer) → bridge connected, or → abandoned.
    pub queue_wait_ms: Option<u64>,
    pub voicemail_left: bool,
    pub message_played: bool,
    /// The callee chose the plan's `dnc` action.
    pub dnc_requested: bool,
}

#[derive(Debug)]
pub struct FlowCore {
    settings: FlowSettings,
    cursor: PlanCursor,
    phase: Phase,
    person_at: Option<Instant>,
    record: FlowRecord,
    out: VecDeque<Output>,
}

impl FlowCore {
    pub fn new(settings: FlowSettings) -> FlowCore {
        FlowCore {
            cursor: PlanCursor::new(settings.steps.clone()),
            settings,
            phase: Phase::Ringing,
            person_at: None,
            record: FlowRecord::default(),
            out: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.clone()
    }

    /// Digits the callee entered in the plan's collects, in order.
    pub fn digits(&self) -> &str {
        self.cursor.digits()
    }

    pub fn record(&self) -> FlowRecord {
        self.record
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] is due: the queue timeout while connecting, a collect's.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.phase, self.person_at) {
            (Phase::Connecting, Some(at)) => Some(at + self.settings.queue_timeout),
            (Phase::Plan(PlanPhase::Collecting), _) => self.cursor.next_deadline(),
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
                Phase::Plan(PlanPhase::Playing) => {
                    let next = self.cursor.on_played();
                    self.act(now, next);
                }
                Phase::Plan(PlanPhase::Prompting) => {
                    self.phase = Phase::Plan(PlanPhase::Collecting);
                    let next = self.cursor.on_prompt_done(now);
                    self.act(now, next);
                }
                _ => {}
            },
            Input::Dtmf(key) => {
                if let Phase::Plan(PlanPhase::Prompting | PlanPhase::Collecting) = self.phase {
                    if self.phase == Phase::Plan(PlanPhase::Prompting) {
                        self.out.push_back(Output::StopPlayback);
                        self.phase = Phase::Plan(PlanPhase::Collecting);
                        self.cursor.on_prompt_done(now);
                    }
                    let next = self.cursor.on_key(key, now);
                    self.act(now, next);
                }
            }
            Input::Recorded => {
                if self.phase == Phase::Plan(PlanPhase::Recording) {
                    let next = self.cursor.on_recorded();
                    self.act(now, next);
                }
            }
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
            Input::Timeout => match self.poll_timeout() {
                Some(due) if now >= due => {
                    if self.phase == Phase::Connecting {
                        self.out.push_back(Output::StopBridge);
                        self.abandon(now);
                    } else {
                        let next = self.cursor.poll(now);
                        self.act(now, next);
                    }
                }
                _ => {}
            },
        }
    }

    fn on_amd(&mut self, now: Instant, event: AmdEvent) {
        match (&self.phase, event) {
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
        match (&self.phase, input) {
            (Phase::Connecting, BridgeInput::Connected) => {
                self.phase = Phase::Bridged;
                self.record.queue_wait_ms = self
                    .person_at
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64);
            }
            (Phase::Connecting, BridgeInput::Failed) => self.abandon(now),
            (Phase::Bridged, BridgeInput::Ended | BridgeInput::Failed) => self.finish(),
            _ => {}
        }
    }

    /// The person's branch.
    fn person(&mut self, now: Instant) {
        self.person_at = Some(now);
        if !self.settings.steps.is_empty() {
            let first = self.cursor.start();
            self.act(now, first);
        } else if self.settings.connect {
            self.connect();
        } else {
            self.idle();
        }
    }

    fn connect(&mut self) {
        if self.settings.connect {
            self.phase = Phase::Connecting;
            self.out.push_back(Output::StartBridge);
        } else {
            // Validation refuses a plan that connects without a target; hang up if one slips by.
            self.finish();
        }
    }

    /// Carries out the message plan's next action.
    fn act(&mut self, now: Instant, action: Action) {
        match action {
            Action::Play(file) => {
                self.record.message_played = true;
                self.phase = Phase::Plan(PlanPhase::Playing);
                self.out.push_back(Output::Play(Prompt::File(file)));
            }
            Action::Collect { prompt, .. } => match prompt {
                Some(file) => {
                    self.phase = Phase::Plan(PlanPhase::Prompting);
                    self.out.push_back(Output::Play(Prompt::File(file)));
                }
                None => {
                    self.phase = Phase::Plan(PlanPhase::Collecting);
                    let next = self.cursor.on_prompt_done(now);
                    self.act(now, next);
                }
            },
            Action::Record {
                max,
                silence_end,
                beep,
            } => {
                self.phase = Phase::Plan(PlanPhase::Recording);
                self.out.push_back(Output::StartRecording {
                    max,
                    silence_end,
                    beep,
                });
            }
            Action::Connect => self.connect(),
            Action::AddDncThenHangup => {
                self.record.dnc_requested = true;
                self.out.push_back(Output::AddDnc);
                self.finish();
            }
            Action::Hangup => self.finish(),
            Action::Wait => {}
        }
    }

    fn abandon(&mut self, now: Instant) {
        self.record.abandoned = true;
        self.record.queue_wait_ms = self
            .person_at
            .map(|at| now.saturating_duration_since(at).as_millis() as u64);
        if self.settings.abandon_message {
            self.play(Prompt::Abandon);
        } else {
            self.finish();
        }
    }

    fn play(&mut self, prompt: Prompt) {
        self.phase = Phase::Playing(prompt.clone());
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
    use crate::flow::steps::{Collect, DigitAction, Play, Record};

    fn settings() -> FlowSettings {
        FlowSettings {
            send_dtmf: false,
            detect: true,
            steps: vec![Step::Play(Play {
                file: "hello.wav".into(),
            })],
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
        assert_eq!(
            drain(&mut f),
            [Output::Play(Prompt::File("hello.wav".into()))]
        );
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
            steps: vec![],
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
            steps: vec![],
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
        assert_eq!(f.record().queue_wait_ms, Some(2000));
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
            steps: vec![],
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
            steps: vec![],
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
            steps: vec![],
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

    fn menu() -> Vec<Step> {
        vec![
            Step::Collect(Collect {
                prompt: Some("menu.wav".into()),
                max_digits: 1,
                timeout_secs: 5.0,
                finish_on: None,
                on: [
                    ("1".to_string(), DigitAction::Connect),
                    ("9".to_string(), DigitAction::Dnc),
                ]
                .into_iter()
                .collect(),
                otherwise: DigitAction::Next,
            }),
            Step::Record(Record {
                max_secs: 10.0,
                silence_end_secs: 2.0,
                beep: true,
            }),
            Step::Hangup,
        ]
    }

    #[test]
    fn pressing_9_during_the_menu_prompt_stops_it_and_puts_the_number_on_dnc() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            detect: false,
            steps: menu(),
            connect: true,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        assert_eq!(
            drain(&mut f),
            [Output::Play(Prompt::File("menu.wav".into()))]
        );
        f.handle(t0 + Duration::from_secs(1), Input::Dtmf('9'));
        assert_eq!(
            drain(&mut f),
            [Output::StopPlayback, Output::AddDnc, Output::HangUpCallee]
        );
        assert!(f.record().dnc_requested);
        assert_eq!(f.digits(), "9");
    }

    #[test]
    fn pressing_1_connects_to_the_target() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            detect: false,
            steps: menu(),
            connect: true,
            ..settings()
        });
        f.handle(t0, Input::Answered);
        f.handle(t0, Input::PlaybackFinished);
        drain(&mut f);
        f.handle(t0 + Duration::from_secs(2), Input::Dtmf('1'));
        assert_eq!(drain(&mut f), [Output::StartBridge]);
        assert_eq!(f.phase(), Phase::Connecting);
    }

    #[test]
    fn no_key_before_the_timeout_records_the_reply_then_hangs_up() {
        let t0 = Instant::now();
        let mut f = FlowCore::new(FlowSettings {
            detect: false,
            steps: menu(),
            ..settings()
        });
        f.handle(t0, Input::Answered);
        f.handle(t0 + Duration::from_secs(3), Input::PlaybackFinished);
        drain(&mut f);
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_secs(8)));
        f.handle(t0 + Duration::from_secs(8), Input::Timeout);
        assert_eq!(
            drain(&mut f),
            [Output::StartRecording {
                max: Duration::from_secs(10),
                silence_end: Duration::from_secs(2),
                beep: true
            }]
        );
        // Keys during the recording are not menu choices.
        f.handle(t0 + Duration::from_secs(9), Input::Dtmf('9'));
        assert!(drain(&mut f).is_empty());
        f.handle(t0 + Duration::from_secs(12), Input::Recorded);
        assert_eq!(drain(&mut f), [Output::HangUpCallee]);
        assert!(!f.record().dnc_requested);
    }
}
