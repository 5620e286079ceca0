//! Message plans: the ordered steps an answered call runs (play a WAV, collect digits,
//! record the reply, connect, hang up), their validation, and [`PlanCursor`], the pure
//! interpreter a call-flow runner drives step by step.
//!
//! A plan is JSON, each step tagged by `"type"`:
//!
//! ```json
//! [{"type": "play", "file": "welcome.wav"},
//!  {"type": "collect", "prompt": "menu.wav", "max_digits": 1, "timeout_secs": 5.0,
//!   "on": {"1": "connect", "9": "dnc", "2": "next", "*": "hangup"}, "otherwise": "next"},
//!  {"type": "record", "max_secs": 30, "silence_end_secs": 3.0, "beep": true},
//!  {"type": "hangup"}]
//! ```
//!
//! [`validate`] returns every problem at once, each naming the step and the field
//! (`steps[2].max_digits: must be 1-32, got 0`). Whether a `connect` step or action has a
//! target is the campaign's business (it knows `connect_to`): see [`first_connect`].
//!
//! The cursor works like this: the runner calls [`PlanCursor::start`], performs the
//! [`Action`] it gets, and reports how that ended (`on_played`, `on_digits`, `on_timeout`,
//! `on_recorded`); each report returns the next action, until a final one (`Connect`,
//! `AddDncThenHangup`, `Hangup`). A collect is reported either whole (`on_digits` with the
//! entry, `on_timeout`: the runner keeps the keys and the clock) or key by key with the time
//! as an argument (`on_prompt_done(now)`, `on_key(k, now)`, `poll(now)` at
//! `next_deadline()`: the cursor ends the entry at `max_digits`, at `finish_on`, or when the
//! timeout passes after the prompt or the last key).
//!
//! What this module must NOT do: any I/O — no files (names are checked as text; whether a
//! file exists is `config::media`'s job), no clock, no sockets, no store. It never panics on
//! a plan, however it was written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The most steps a plan may hold.
pub const MAX_STEPS: usize = 50;
/// The most digits one `collect` step gathers.
pub const MAX_DIGITS: i64 = 32;
/// Longest wait for digits, and longest silence that ends a recording, in seconds.
pub const MAX_COLLECT_TIMEOUT_SECS: f64 = 120.0;
/// Longest recording, in seconds.
pub const MAX_RECORD_SECS: f64 = 600.0;
pub const MAX_SILENCE_END_SECS: f64 = 60.0;
/// Longest media file name, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 200;

/// What a collected digit (or digit string) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigitAction {
    /// Bridge the callee to the campaign's `connect_to`.
    Connect,
    /// Put the number on the DNC list, then hang up.
    Dnc,
    /// Go on with the next step (the plan ends with a hang-up after the last one).
    Next,
    Hangup,
}

fn default_max_digits() -> i64 {
    1
}
fn default_timeout_secs() -> f64 {
    5.0
}
fn default_otherwise() -> DigitAction {
    DigitAction::Next
}
fn default_record_secs() -> f64 {
    30.0
}
fn default_silence_end_secs() -> f64 {
    3.0
}
fn default_true() -> bool {
    true
}

/// Play a WAV from the media directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Play {
    pub file: String,
}

/// Gather DTMF digits (optionally while a prompt plays) and act on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Collect {
    /// Played while waiting; a digit pressed during it is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Digits to gather, 1–32 (default 1): collection ends when this many arrived.
    #[serde(default = "default_max_digits")]
    pub max_digits: i64,
    /// How long to wait (after the prompt) before `otherwise` applies (default 5 s).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// A key that ends the entry early (`#` usually); it is not part of the digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_on: Option<String>,
    /// Digit (or digit string when `max_digits` > 1) → action.
    #[serde(default)]
    pub on: BTreeMap<String, DigitAction>,
    /// What a timeout or an entry not in `on` does (default `next`).
    #[serde(default = "default_otherwise")]
    pub otherwise: DigitAction,
}

impl Default for Collect {
    fn default() -> Self {
        Collect {
            prompt: None,
            max_digits: default_max_digits(),
            timeout_secs: default_timeout_secs(),
            finish_on: None,
            on: BTreeMap::new(),
            otherwise: default_otherwise(),
        }
    }
}

/// Record the callee's reply to a WAV file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Longest recording, seconds (default 30).
    #[serde(default = "default_record_secs")]
    pub max_secs: f64,
    /// Silence that ends the recording, seconds (default 3).
    #[serde(default = "default_silence_end_secs")]
    pub silence_end_secs: f64,
    /// Play a beep before recording (default true).
    #[serde(default = "default_true")]
    pub beep: bool,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            max_secs: default_record_secs(),
            silence_end_secs: default_silence_end_secs(),
            beep: true,
        }
    }
}

/// One step of a message plan (JSON: the step's fields beside `"type"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Play(Play),
    Collect(Collect),
    Record(Record),
    /// Bridge to the campaign's `connect_to`; the plan ends here.
    Connect,
    /// Hang up; the plan ends here.
    Hangup,
}

/// The `type` words, for error messages.
pub const STEP_TYPES: &str = "play, collect, record, connect, hangup";

/// Reads a plan from JSON, naming the step and field of every problem
/// (`steps[1].max_digits: invalid type: string "two", expected i64`), where plain serde
/// would stop at the first and lose the field inside a tagged step.
pub fn parse_steps(value: &serde_json::Value) -> Result<Vec<Step>, Vec<StepError>> {
    let Some(items) = value.as_array() else {
        return Err(vec![StepError {
            index: None,
            field: String::new(),
            reason: "must be a list of steps".into(),
        }]);
    };
    let mut steps = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            errors.push(StepError::new(i, "", "must be an object with a \"type\""));
            continue;
        };
        let mut fields = object.clone();
        let kind = match fields.remove("type") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(other) => {
                errors.push(StepError::new(
                    i,
                    "type",
                    format!("{other} is not a step type ({STEP_TYPES})"),
                ));
                continue;
            }
            None => {
                errors.push(StepError::new(i, "type", format!("missing ({STEP_TYPES})")));
                continue;
            }
        };
        let fields = serde_json::Value::Object(fields);
        let parsed = match kind.as_str() {
            "play" => field_errors(i, &fields).map(Step::Play),
            "collect" => field_errors(i, &fields).map(Step::Collect),
            "record" => field_errors(i, &fields).map(Step::Record),
            "connect" => field_errors::<Empty>(i, &fields).map(|_| Step::Connect),
            "hangup" => field_errors::<Empty>(i, &fields).map(|_| Step::Hangup),
            other => Err(StepError::new(
                i,
                "type",
                format!("{other:?} is not a step type ({STEP_TYPES})"),
            )),
        };
        match parsed {
            Ok(step) => steps.push(step),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

/// A step with no fields of its own (`connect`, `hangup`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn field_errors<T: serde::de::DeserializeOwned>(
    index: usize,
    fields: &serde_json::Value,
) -> Result<T, StepError> {
    serde_path_to_error::deserialize(fields).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        // An unknown or missing field is named in the message, not the path.
        let named = reason
            .split('`')
            .nth(1)
            .filter(|_| reason.starts_with("unknown field") || reason.starts_with("missing field"));
        let field = match named {
            Some(name) if path == "." || path.is_empty() => name.to_string(),
            _ if path == "." => String::new(),
            _ => path,
        };
        StepError::new(index, field, reason)
    })
}

impl Step {
    /// The step's `type` word.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Play(_) => "play",
            Step::Collect(_) => "collect",
            Step::Record(_) => "record",
            Step::Connect => "connect",
            Step::Hangup => "hangup",
        }
    }

    /// The media files this step plays (for checking that they exist).
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        match self {
            Step::Play(Play { file }) => vec![("file", file.as_str())],
            Step::Collect(Collect {
                prompt: Some(p), ..
            }) => vec![("prompt", p.as_str())],
            _ => Vec::new(),
        }
    }
}

/// The plan a campaign without `steps` runs: its `play_message` (if any), then hang up.
pub fn default_steps(play_message: Option<&str>) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(file) = play_message.filter(|f| !f.is_empty()) {
        steps.push(Step::Play(Play { file: file.into() }));
    }
    steps.push(Step::Hangup);
    steps
}

/// One problem with a plan: `steps[2].max_digits: must be 1-32, got 0`. `index` is `None`
/// for a problem with the list itself (too many steps).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", self.path())]
pub struct StepError {
    pub index: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl StepError {
    fn new(index: usize, field: impl Into<String>, reason: impl Into<String>) -> StepError {
        StepError {
            index: Some(index),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// `steps[2].max_digits`, `steps[1]` or `steps`.
    pub fn path(&self) -> String {
        match (self.index, self.field.is_empty()) {
            (Some(i), false) => format!("steps[{i}].{}", self.field),
            (Some(i), true) => format!("steps[{i}]"),
            (None, _) => "steps".to_string(),
        }
    }
}

/// Why a name is not a media file name, or `None` when it is one: a plain `.wav` file
/// name (no directory part, no `..`, no control characters, not hidden).
pub fn media_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("must name a WAV file, got an empty name".into());
    }
    if name.starts_with('/') || name.starts_with('\\') || name.get(1..2) == Some(":") {
        return Some(format!(
            "{name:?} is an absolute path; give a file name in the media directory"
        ));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some(format!("{name:?} leaves the media directory (..)"));
    }
    if name.contains(['/', '\\']) {
        return Some(format!(
            "{name:?} is a path; give a file name in the media directory"
        ));
    }
    if name.chars().any(char::is_control) {
        return Some(format!("{name:?} contains control characters"));
    }
    if name.starts_with('.') {
        return Some(format!("{name:?} is a hidden file name"));
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Some(format!(
            "file name is {} bytes, longer than {MAX_FILE_NAME_LEN}",
            name.len()
        ));
    }
    let lower = name.to_ascii_lowercase();
    if !lower.ends_with(".wav") || lower.len() == 4 {
        return Some(format!("{name:?} is not a .wav file name"));
    }
    None
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn check_secs(
    errors: &mut Vec<StepError>,
    index: usize,
    field: &str,
    value: f64,
    min: f64,
    max: f64,
) {
    if !value.is_finite() || value < min || value > max {
        errors.push(StepError::new(
            index,
            field,
            format!("must be {min}-{max} seconds, got {value}"),
        ));
    }
}

/// Checks a whole plan; every problem found, each naming its step and field.
pub fn validate(steps: &[Step]) -> Result<(), Vec<StepError>> {
    let mut errors = Vec::new();
    if steps.is_empty() {
        errors.push(StepError {
            index: None,
            field: String::new(),
            reason: "must hold at least one step (leave steps out for the default plan)".into(),
        });
    }
    if steps.len() > MAX_STEPS {
        errors.push(StepError {
            index: None,
            field: String::new(),
            reason: format!("at most {MAX_STEPS} steps, got {}", steps.len()),
        });
    }
    for (i, step) in steps.iter().enumerate().take(MAX_STEPS) {
        for (field, file) in step.files() {
            if let Some(problem) = media_name_problem(file) {
                errors.push(StepError::new(i, field, problem));
            }
        }
        match step {
            Step::Collect(Collect {
                max_digits,
                timeout_secs,
                finish_on,
                on,
                ..
            }) => {
                let max_digits = *max_digits;
                if !(1..=MAX_DIGITS).contains(&max_digits) {
                    errors.push(StepError::new(
                        i,
                        "max_digits",
                        format!("must be 1-{MAX_DIGITS}, got {max_digits}"),
                    ));
                }
                check_secs(
                    &mut errors,
                    i,
                    "timeout_secs",
                    *timeout_secs,
                    0.5,
                    MAX_COLLECT_TIMEOUT_SECS,
                );
                let finish = match finish_on.as_deref() {
                    None => None,
                    Some(f) => {
                        let mut chars = f.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) if is_dtmf(c) => Some(c),
                            _ => {
                                errors.push(StepError::new(
                                    i,
                                    "finish_on",
                                    format!("{f:?} is not one DTMF key (0-9 * # A-D)"),
                                ));
                                None
                            }
                        }
                    }
                };
                for key in on.keys() {
                    let field = format!("on.{key}");
                    let len = key.chars().count() as i64;
                    if key.is_empty() || !key.chars().all(is_dtmf) {
                        errors.push(StepError::new(
                            i,
                            field,
                            format!("{key:?} is not DTMF keys (0-9 * # A-D)"),
                        ));
                    } else if len > max_digits.max(1) {
                        errors.push(StepError::new(
                            i,
                            field,
                            format!("{key:?} has {len} digits, more than max_digits {max_digits}"),
                        ));
                    } else if finish.is_some_and(|f| key.contains(f)) {
                        errors.push(StepError::new(
                            i,
                            field,
                            format!("{key:?} contains the finish_on key"),
                        ));
                    }
                }
            }
            Step::Record(Record {
                max_secs,
                silence_end_secs,
                ..
            }) => {
                check_secs(&mut errors, i, "max_secs", *max_secs, 1.0, MAX_RECORD_SECS);
                check_secs(
                    &mut errors,
                    i,
                    "silence_end_secs",
                    *silence_end_secs,
                    0.5,
                    MAX_SILENCE_END_SECS,
                );
            }
            Step::Play(_) | Step::Connect | Step::Hangup => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The first place that connects (a `connect` step, or a digit action `connect`), as the
/// error path to report when the campaign has no `connect_to`: `steps[3]` or
/// `steps[1].on.1`.
pub fn first_connect(steps: &[Step]) -> Option<StepError> {
    steps.iter().enumerate().find_map(|(i, step)| match step {
        Step::Connect => Some(StepError::new(
            i,
            "",
            "a connect step needs the campaign's connect_to",
        )),
        Step::Collect(Collect { on, otherwise, .. }) => on
            .iter()
            .find(|(_, a)| **a == DigitAction::Connect)
            .map(|(key, _)| {
                StepError::new(
                    i,
                    format!("on.{key}"),
                    "connect needs the campaign's connect_to",
                )
            })
            .or_else(|| {
                (*otherwise == DigitAction::Connect).then(|| {
                    StepError::new(i, "otherwise", "connect needs the campaign's connect_to")
                })
            }),
        _ => None,
    })
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Play this media file, then call [`PlanCursor::on_played`].
    Play(String),
    /// Play the prompt (if any) and gather digits: stop at `max_digits` digits or at
    /// `finish_on`, then call [`PlanCursor::on_digits`]; with no entry `timeout` after the
    /// prompt ended, call [`PlanCursor::on_timeout`].
    Collect {
        prompt: Option<String>,
        max_digits: usize,
        timeout: Duration,
        finish_on: Option<char>,
    },
    /// Beep (if asked), record the callee up to `max` or until `silence_end` of silence,
    /// then call [`PlanCursor::on_recorded`].
    Record {
        max: Duration,
        silence_end: Duration,
        beep: bool,
    },
    /// Bridge to the campaign's `connect_to`. Final.
    Connect,
    /// Add the callee's number to the DNC list, then hang up. Final.
    AddDncThenHangup,
    /// Hang up. Final.
    Hangup,
    /// The report did not fit the step in progress (or the plan is over): keep doing
    /// what is being done.
    Wait,
}

impl Action {
    /// After this action the plan is over.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Action::Connect | Action::AddDncThenHangup | Action::Hangup
        )
    }
}

/// Where the cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// `start` not called yet.
    NotStarted,
    /// Running step `i` (a play, collect or record).
    Step(usize),
    /// A final action was returned.
    Done,
}

/// The interpreter of one plan for one call: pure, driven by the runner's reports.
///
/// | at | report | next |
/// |---|---|---|
/// | not started | `start` | step 0 |
/// | play | `on_played` | next step |
/// | collect | `on_digits(d)` | `on[d]`, else `otherwise` |
/// | collect | `on_timeout` | `otherwise` |
/// | collect | `on_prompt_done(now)`, `on_key(k, now)`, `poll(now)` | the same, key by key |
/// | record | `on_recorded` | next step |
/// | any other pair | | `Wait`, nothing changes |
///
/// Entering `connect` or `hangup`, or running past the last step, is final.
#[derive(Debug, Clone)]
pub struct PlanCursor {
    steps: Vec<Step>,
    at: At,
    /// Every entry acted on so far, in order.
    digits: String,
    /// Keys of the collect in progress (the key-by-key door, [`PlanCursor::on_key`]).
    entry: String,
    /// When the collect in progress times out; `None` until its prompt has played.
    deadline: Option<Instant>,
}

impl PlanCursor {
    pub fn new(steps: Vec<Step>) -> PlanCursor {
        PlanCursor {
            steps,
            at: At::NotStarted,
            digits: String::new(),
            entry: String::new(),
            deadline: None,
        }
    }

    /// Every digit collected so far, in order, entries one after the other (what the
    /// attempt's `digits` records).
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The index of the step in progress, if any.
    pub fn step_index(&self) -> Option<usize> {
        match self.at {
            At::Step(i) => Some(i),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.at == At::Done
    }

    /// Begins the plan: the first step's action.
    pub fn start(&mut self) -> Action {
        if self.at != At::NotStarted {
            return Action::Wait;
        }
        self.enter(0)
    }

    /// The play in progress ended.
    pub fn on_played(&mut self) -> Action {
        match self.current() {
            Some((i, Step::Play(_))) => self.enter(i + 1),
            _ => Action::Wait,
        }
    }

    /// The callee entered `digits` during a collect (a trailing `finish_on` key is dropped).
    /// An empty entry counts as a timeout.
    pub fn on_digits(&mut self, digits: String) -> Action {
        let Some((
            i,
            Step::Collect(Collect {
                finish_on,
                on,
                otherwise,
                ..
            }),
        )) = self.current()
        else {
            return Action::Wait;
        };
        let mut entry = digits.as_str();
        if let Some(f) = finish_on.as_deref() {
            entry = entry.strip_suffix(f).unwrap_or(entry);
        }
        let action = if entry.is_empty() {
            *otherwise
        } else {
            on.get(entry).copied().unwrap_or(*otherwise)
        };
        self.digits.push_str(entry);
        self.apply(i, action)
    }

    /// No entry came before the collect's timeout.
    pub fn on_timeout(&mut self) -> Action {
        match self.current() {
            Some((i, Step::Collect(Collect { otherwise, .. }))) => {
                let action = *otherwise;
                self.apply(i, action)
            }
            _ => Action::Wait,
        }
    }

    /// The recording in progress ended (time limit, silence, or the callee stopped).
    pub fn on_recorded(&mut self) -> Action {
        match self.current() {
            Some((i, Step::Record(_))) => self.enter(i + 1),
            _ => Action::Wait,
        }
    }

    /// The collect's prompt has played (or it has none): its timeout runs from `now`.
    /// Key-by-key runners call this, then [`PlanCursor::on_key`] and [`PlanCursor::poll`].
    pub fn on_prompt_done(&mut self, now: Instant) -> Action {
        if let Some((_, Step::Collect(c))) = self.current() {
            let wait = secs(c.timeout_secs, MAX_COLLECT_TIMEOUT_SECS);
            if self.deadline.is_none() {
                self.deadline = Some(now + wait);
            }
        }
        Action::Wait
    }

    /// One DTMF key as it arrives (a key during the prompt counts; the runner stops the
    /// prompt then). The entry is complete at `max_digits` keys or at the `finish_on` key,
    /// and is then acted on as by [`PlanCursor::on_digits`]; otherwise each key gives the
    /// callee the step's timeout again.
    pub fn on_key(&mut self, key: char, now: Instant) -> Action {
        let Some((_, Step::Collect(c))) = self.current() else {
            return Action::Wait;
        };
        let finish = c.finish_on.as_deref().and_then(|f| f.chars().next());
        let max = c.max_digits.clamp(1, MAX_DIGITS) as usize;
        let wait = secs(c.timeout_secs, MAX_COLLECT_TIMEOUT_SECS);
        if Some(key) != finish {
            self.entry.push(key);
        }
        if Some(key) == finish || self.entry.chars().count() >= max {
            let entry = std::mem::take(&mut self.entry);
            return self.on_digits(entry);
        }
        self.deadline = Some(now + wait);
        Action::Wait
    }

    /// When [`PlanCursor::poll`] has something to do: the collect's deadline, if running.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time passed: at or after the collect's deadline, the keys so far are the entry (no
    /// key at all: the timeout, `otherwise`).
    pub fn poll(&mut self, now: Instant) -> Action {
        match self.deadline {
            Some(deadline) if now >= deadline => {
                let entry = std::mem::take(&mut self.entry);
                if entry.is_empty() {
                    self.on_timeout()
                } else {
                    self.on_digits(entry)
                }
            }
            _ => Action::Wait,
        }
    }

    fn current(&self) -> Option<(usize, &Step)> {
        match self.at {
            At::Step(i) => self.steps.get(i).map(|s| (i, s)),
            _ => None,
        }
    }

    fn apply(&mut self, at: usize, action: DigitAction) -> Action {
        match action {
            DigitAction::Next => self.enter(at + 1),
            DigitAction::Connect => self.finish(Action::Connect),
            DigitAction::Dnc => self.finish(Action::AddDncThenHangup),
            DigitAction::Hangup => self.finish(Action::Hangup),
        }
    }

    fn finish(&mut self, action: Action) -> Action {
        self.at = At::Done;
        self.entry.clear();
        self.deadline = None;
        action
    }

    fn enter(&mut self, i: usize) -> Action {
        self.entry.clear();
        self.deadline = None;
        let Some(step) = self.steps.get(i) else {
            return self.finish(Action::Hangup);
        };
        let action = match step {
            Step::Play(Play { file }) => Action::Play(file.clone()),
            Step::Collect(Collect {
                prompt,
                max_digits,
                timeout_secs,
                finish_on,
                ..
            }) => Action::Collect {
                prompt: prompt.clone(),
                max_digits: (*max_digits).clamp(1, MAX_DIGITS) as usize,
                timeout: secs(*timeout_secs, MAX_COLLECT_TIMEOUT_SECS),
                finish_on: finish_on.as_deref().and_then(|f| f.chars().next()),
            },
            Step::Record(Record {
                max_secs,
                silence_end_secs,
                beep,
            }) => Action::Record {
                max: secs(*max_secs, MAX_RECORD_SECS),
                silence_end: secs(*silence_end_secs, MAX_SILENCE_END_SECS),
                beep: *beep,
            },
            Step::Connect => return self.finish(Action::Connect),
            Step::Hangup => return self.finish(Action::Hangup),
        };
        self.at = At::Step(i);
        action
    }
}

/// Seconds as a duration, clamped to `0..=max` (NaN → 0): never panics on an unvalidated plan.
fn secs(value: f64, max: f64) -> Duration {
    let v = if value.is_finite() {
        value.clamp(0.0, max)
    } else {
        0.0
    };
    Duration::from_secs_f64(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Vec<Step> {
        serde_json::from_str(json).expect("test plan parses")
    }

    fn menu() -> Vec<Step> {
        plan(
            r#"[{"type":"play","file":"welcome.wav"},
                {"type":"collect","prompt":"menu.wav","max_digits":1,"timeout_secs":5.0,
                 "on":{"1":"connect","9":"dnc","2":"next","*":"hangup"},"otherwise":"next"},
                {"type":"record","max_secs":30,"silence_end_secs":3.0,"beep":true},
                {"type":"play","file":"thanks.wav"}]"#,
        )
    }

    /// Runs the menu up to its collect step.
    fn at_menu() -> PlanCursor {
        let mut cursor = PlanCursor::new(menu());
        assert_eq!(cursor.start(), Action::Play("welcome.wav".into()));
        let collect = cursor.on_played();
        assert_eq!(
            collect,
            Action::Collect {
                prompt: Some("menu.wav".into()),
                max_digits: 1,
                timeout: Duration::from_secs(5),
                finish_on: None,
            }
        );
        cursor
    }

    #[test]
    fn caller_presses_9_gets_dnc_then_hangup() {
        let mut cursor = at_menu();
        assert_eq!(cursor.on_digits("9".into()), Action::AddDncThenHangup);
        assert!(cursor.is_done());
        assert_eq!(cursor.digits(), "9");
        // Nothing more happens once the plan is over.
        assert_eq!(cursor.on_timeout(), Action::Wait);
        assert_eq!(cursor.on_digits("1".into()), Action::Wait);
    }

    #[test]
    fn caller_presses_1_is_connected() {
        let mut cursor = at_menu();
        assert_eq!(cursor.on_digits("1".into()), Action::Connect);
        assert!(Action::Connect.is_final());
    }

    #[test]
    fn caller_presses_star_is_hung_up_on() {
        let mut cursor = at_menu();
        assert_eq!(cursor.on_digits("*".into()), Action::Hangup);
    }

    #[test]
    fn caller_presses_9_during_the_prompt_gets_dnc_then_hangup_key_by_key() {
        let t0 = Instant::now();
        let mut cursor = at_menu();
        assert_eq!(
            cursor.next_deadline(),
            None,
            "no clock before the prompt ends"
        );
        assert_eq!(cursor.on_key('9', t0), Action::AddDncThenHangup);
        assert_eq!(cursor.digits(), "9");
        assert_eq!(cursor.next_deadline(), None);
    }

    #[test]
    fn silence_after_the_prompt_follows_otherwise_exactly_at_the_deadline() {
        let t0 = Instant::now();
        let mut cursor = at_menu();
        assert_eq!(cursor.poll(t0 + Duration::from_secs(60)), Action::Wait);
        cursor.on_prompt_done(t0);
        assert_eq!(cursor.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(cursor.poll(t0 + Duration::from_millis(4999)), Action::Wait);
        assert!(matches!(
            cursor.poll(t0 + Duration::from_secs(5)),
            Action::Record { .. }
        ));
        assert_eq!(cursor.next_deadline(), None);
        assert_eq!(cursor.digits(), "");
    }

    #[test]
    fn a_slow_caller_gets_the_timeout_again_after_each_key() {
        let t0 = Instant::now();
        let steps = plan(
            r##"[{"type":"collect","max_digits":4,"finish_on":"#","timeout_secs":5,
                 "on":{"12":"dnc","1234":"connect"},"otherwise":"hangup"}]"##,
        );
        let mut cursor = PlanCursor::new(steps.clone());
        cursor.start();
        cursor.on_prompt_done(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(cursor.on_key('1', at(3000)), Action::Wait);
        assert_eq!(cursor.next_deadline(), Some(at(8000)));
        assert_eq!(
            cursor.poll(at(6000)),
            Action::Wait,
            "past the first deadline"
        );
        assert_eq!(cursor.on_key('2', at(7000)), Action::Wait);
        assert_eq!(cursor.poll(at(11_999)), Action::Wait);
        assert_eq!(cursor.poll(at(12_000)), Action::AddDncThenHangup);
        assert_eq!(cursor.digits(), "12");

        // The same keys ended by # act at once; four keys end the entry by themselves.
        let mut cursor = PlanCursor::new(steps.clone());
        cursor.start();
        cursor.on_key('1', at(0));
        cursor.on_key('2', at(100));
        assert_eq!(cursor.on_key('#', at(200)), Action::AddDncThenHangup);
        let mut cursor = PlanCursor::new(steps);
        cursor.start();
        for (i, key) in "123".chars().enumerate() {
            assert_eq!(cursor.on_key(key, at(i as u64 * 100)), Action::Wait);
        }
        assert_eq!(cursor.on_key('4', at(300)), Action::Connect);
        assert_eq!(cursor.digits(), "1234");
    }

    #[test]
    fn keys_outside_a_collect_are_ignored() {
        let t0 = Instant::now();
        let mut cursor = PlanCursor::new(menu());
        cursor.start();
        assert_eq!(cursor.on_key('9', t0), Action::Wait, "during the welcome");
        assert_eq!(cursor.on_prompt_done(t0), Action::Wait);
        assert_eq!(cursor.next_deadline(), None);
        assert!(matches!(cursor.on_played(), Action::Collect { .. }));
        assert_eq!(cursor.digits(), "", "the early key was not kept");
    }

    #[test]
    fn no_digit_before_timeout_follows_otherwise() {
        let mut cursor = at_menu();
        assert_eq!(
            cursor.on_timeout(),
            Action::Record {
                max: Duration::from_secs(30),
                silence_end: Duration::from_secs(3),
                beep: true,
            }
        );
        assert_eq!(cursor.digits(), "");
    }

    #[test]
    fn a_key_not_in_the_menu_follows_otherwise() {
        let mut plan = menu();
        if let Step::Collect(Collect { otherwise, .. }) = &mut plan[1] {
            *otherwise = DigitAction::Hangup;
        }
        let mut cursor = PlanCursor::new(plan);
        cursor.start();
        cursor.on_played();
        assert_eq!(cursor.on_digits("5".into()), Action::Hangup);
        assert_eq!(cursor.digits(), "5");
    }

    #[test]
    fn caller_presses_2_then_records_a_reply_and_hears_thanks_then_hangup() {
        let mut cursor = at_menu();
        assert!(matches!(
            cursor.on_digits("2".into()),
            Action::Record { .. }
        ));
        // A stray report for another step changes nothing.
        assert_eq!(cursor.on_played(), Action::Wait);
        assert_eq!(cursor.step_index(), Some(2));
        assert_eq!(cursor.on_recorded(), Action::Play("thanks.wav".into()));
        assert_eq!(cursor.on_played(), Action::Hangup);
        assert!(cursor.is_done());
    }

    #[test]
    fn an_account_number_ended_by_hash_matches_without_the_hash() {
        let steps = plan(
            r##"[{"type":"collect","max_digits":4,"finish_on":"#",
                 "on":{"1234":"connect","12":"dnc"},"otherwise":"hangup"}]"##,
        );
        assert_eq!(validate(&steps), Ok(()));
        let mut cursor = PlanCursor::new(steps.clone());
        assert_eq!(
            cursor.start(),
            Action::Collect {
                prompt: None,
                max_digits: 4,
                timeout: Duration::from_secs(5),
                finish_on: Some('#'),
            }
        );
        assert_eq!(cursor.on_digits("12#".into()), Action::AddDncThenHangup);
        assert_eq!(cursor.digits(), "12");
        let mut cursor = PlanCursor::new(steps);
        cursor.start();
        assert_eq!(cursor.on_digits("1234".into()), Action::Connect);
    }

    #[test]
    fn only_a_finish_key_counts_as_no_entry() {
        let steps = plan(
            r##"[{"type":"collect","finish_on":"#","on":{"1":"connect"},"otherwise":"dnc"}]"##,
        );
        let mut cursor = PlanCursor::new(steps);
        cursor.start();
        assert_eq!(cursor.on_digits("#".into()), Action::AddDncThenHangup);
        assert_eq!(cursor.digits(), "");
    }

    #[test]
    fn digits_of_two_menus_are_kept_in_order() {
        let steps = plan(
            r#"[{"type":"collect","on":{"1":"next"}},
                {"type":"collect","on":{"3":"hangup"}}]"#,
        );
        let mut cursor = PlanCursor::new(steps);
        cursor.start();
        assert!(matches!(
            cursor.on_digits("1".into()),
            Action::Collect { .. }
        ));
        assert_eq!(cursor.on_digits("3".into()), Action::Hangup);
        assert_eq!(cursor.digits(), "13");
    }

    #[test]
    fn running_past_the_last_step_hangs_up() {
        let mut cursor = PlanCursor::new(plan(r#"[{"type":"play","file":"a.wav"}]"#));
        assert_eq!(cursor.start(), Action::Play("a.wav".into()));
        assert_eq!(cursor.on_played(), Action::Hangup);
        assert_eq!(cursor.start(), Action::Wait, "a cursor starts once");
    }

    #[test]
    fn an_empty_plan_hangs_up_at_once() {
        let mut cursor = PlanCursor::new(Vec::new());
        assert_eq!(cursor.start(), Action::Hangup);
    }

    #[test]
    fn a_connect_step_ends_the_plan_before_later_steps() {
        let mut cursor = PlanCursor::new(plan(
            r#"[{"type":"connect"},{"type":"play","file":"never.wav"}]"#,
        ));
        assert_eq!(cursor.start(), Action::Connect);
        assert_eq!(cursor.on_played(), Action::Wait);
    }

    #[test]
    fn no_steps_means_play_message_then_hangup() {
        assert_eq!(
            default_steps(Some("hello.wav")),
            vec![
                Step::Play(Play {
                    file: "hello.wav".into()
                }),
                Step::Hangup
            ]
        );
        assert_eq!(default_steps(None), vec![Step::Hangup]);
        assert_eq!(default_steps(Some("")), vec![Step::Hangup]);
    }

    #[test]
    fn defaults_fill_a_bare_collect_and_record() {
        let steps = plan(r#"[{"type":"collect"},{"type":"record"}]"#);
        assert_eq!(
            steps[0],
            Step::Collect(Collect {
                prompt: None,
                max_digits: 1,
                timeout_secs: 5.0,
                finish_on: None,
                on: BTreeMap::new(),
                otherwise: DigitAction::Next,
            })
        );
        assert_eq!(steps[0], Step::Collect(Collect::default()));
        assert_eq!(
            steps[1],
            Step::Record(Record {
                max_secs: 30.0,
                silence_end_secs: 3.0,
                beep: true,
            })
        );
        assert_eq!(steps[1], Step::Record(Record::default()));
        // And they round-trip.
        let json = serde_json::to_string(&steps).unwrap();
        assert_eq!(plan(&json), steps);
    }

    #[test]
    fn parse_steps_names_the_step_and_field_of_every_problem() {
        let value: serde_json::Value = serde_json::from_str(
            r#"[{"type":"play","file":"a.wav"},
                {"type":"collect","max_digits":"two"},
                {"type":"dance"},
                {"type":"record","loop":true},
                {"type":"hangup","after":1},
                {"file":"b.wav"},
                {"type":"play"},
                {"type":"collect","on":{"1":"transfer"}},
                7]"#,
        )
        .unwrap();
        let errors: Vec<String> = parse_steps(&value)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let expect = [
            "steps[1].max_digits: invalid type: string \"two\", expected i64",
            "steps[2].type: \"dance\" is not a step type (play, collect, record, connect, hangup)",
            "steps[3].loop: unknown field `loop`",
            "steps[4].after: unknown field `after`",
            "steps[5].type: missing (play, collect, record, connect, hangup)",
            "steps[6].file: missing field `file`",
            "steps[7].on.1: unknown variant `transfer`",
            "steps[8]: must be an object with a \"type\"",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let good: serde_json::Value = serde_json::to_value(menu()).expect("a plan serialises");
        assert_eq!(parse_steps(&good), Ok(menu()));
        assert_eq!(
            parse_steps(&serde_json::json!({"type": "play"})).unwrap_err()[0].to_string(),
            "steps: must be a list of steps"
        );
    }

    #[test]
    fn unknown_types_and_fields_are_refused_when_parsing() {
        let err = serde_json::from_str::<Vec<Step>>(r#"[{"type":"dance"}]"#).unwrap_err();
        assert!(err.to_string().contains("dance"), "{err}");
        let err = serde_json::from_str::<Vec<Step>>(r#"[{"type":"play","file":"a.wav","loop":2}]"#)
            .unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        let err =
            serde_json::from_str::<Vec<Step>>(r#"[{"type":"collect","on":{"1":"transfer"}}]"#)
                .unwrap_err();
        assert!(err.to_string().contains("transfer"), "{err}");
    }

    #[test]
    fn every_problem_is_named_by_step_and_field() {
        let steps = plan(
            r###"[{"type":"play","file":"/etc/passwd"},
                {"type":"play","file":"ok.wav"},
                {"type":"collect","prompt":"../x.wav","max_digits":0,"timeout_secs":0,
                 "finish_on":"##","on":{"12":"next","x":"hangup"}},
                {"type":"record","max_secs":100000,"silence_end_secs":-1}]"###,
        );
        let errors: Vec<String> = validate(&steps)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        let expect = [
            "steps[0].file: \"/etc/passwd\" is an absolute path",
            "steps[2].prompt: \"../x.wav\" leaves the media directory",
            "steps[2].max_digits: must be 1-32, got 0",
            "steps[2].timeout_secs: must be 0.5-120 seconds, got 0",
            "steps[2].finish_on: \"##\" is not one DTMF key",
            "steps[2].on.12: \"12\" has 2 digits, more than max_digits 0",
            "steps[2].on.x: \"x\" is not DTMF keys",
            "steps[3].max_secs: must be 1-600 seconds, got 100000",
            "steps[3].silence_end_secs: must be 0.5-60 seconds, got -1",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn too_many_or_no_steps_are_refused() {
        let many = vec![Step::Hangup; MAX_STEPS + 1];
        let errors = validate(&many).unwrap_err();
        assert_eq!(errors[0].to_string(), "steps: at most 50 steps, got 51");
        assert!(validate(&vec![Step::Hangup; MAX_STEPS]).is_ok());
        assert_eq!(validate(&[]).unwrap_err()[0].path(), "steps");
    }

    #[test]
    fn media_names_are_plain_wav_file_names() {
        assert_eq!(media_name_problem("welcome.wav"), None);
        assert_eq!(media_name_problem("Menu 2.WAV"), None);
        for bad in [
            "",
            "/tmp/a.wav",
            "C:\\a.wav",
            "../a.wav",
            "sub/a.wav",
            "a.mp3",
            ".wav",
            ".hidden.wav",
            "a\n.wav",
        ] {
            assert!(media_name_problem(bad).is_some(), "{bad:?} accepted");
        }
        assert!(media_name_problem(&format!("{}.wav", "a".repeat(300))).is_some());
    }

    #[test]
    fn connect_anywhere_in_the_plan_is_found() {
        assert_eq!(first_connect(&menu()).unwrap().path(), "steps[1].on.1");
        let steps = plan(r#"[{"type":"play","file":"a.wav"},{"type":"connect"}]"#);
        assert_eq!(first_connect(&steps).unwrap().path(), "steps[1]");
        let steps = plan(r#"[{"type":"collect","otherwise":"connect"}]"#);
        assert_eq!(first_connect(&steps).unwrap().path(), "steps[0].otherwise");
        assert_eq!(first_connect(&default_steps(Some("a.wav"))), None);
    }

    #[test]
    fn an_unvalidated_plan_never_panics() {
        let steps = plan(
            r#"[{"type":"collect","max_digits":-5,"timeout_secs":1e300},
                {"type":"record","max_secs":-1,"silence_end_secs":1e308}]"#,
        );
        let mut cursor = PlanCursor::new(steps);
        assert_eq!(
            cursor.start(),
            Action::Collect {
                prompt: None,
                max_digits: 1,
                timeout: Duration::from_secs(120),
                finish_on: None,
            }
        );
        assert_eq!(
            cursor.on_timeout(),
            Action::Record {
                max: Duration::ZERO,
                silence_end: Duration::from_secs(60),
                beep: true,
            }
        );
    }
}
