//! What one call attempt's result does to its contact: another attempt later, or a final
//! status; plus the admin's manual retry and a campaign restart.
//!
//! Pure functions returning a [`ContactUpdate`] for the store to write; `now` comes in.
//!
//! - An attempt is counted when its result comes in (`attempts + 1`; every attempt after
//!   the first is a retry), so the driver does not bump counters when it dials.
//! - Retry only when `retry_on` allows the result's class (busy/603, no answer/480,
//!   machine, failed) and fewer than `max_retries` retries were made: status `retry`,
//!   `next_attempt_at` = now + `retry_interval` (calendar time; business hours and the
//!   contact window apply when it comes due). A person answering, an invalid number and a
//!   DNC hit are never retried.
//! - Final statuses: person → `answered`, or `called` while a completion timeout runs
//!   (then `next_attempt_at` holds when it becomes `completed`, see [`complete_due`]);
//!   machine → `no_conversation` (with `machine_action = connect` it counts as a person);
//!   busy/603 → `rejected`; no answer/480 → `not_answered`; invalid number, DNC and other
//!   failures → `failed`.

use super::model::{
    CampaignSettings, Contact, ContactStatus, MachineAction, Millis, ModelError, RetryOn,
};
use crate::sip::outcome::Outcome;

/// How one attempt ended, as campaigns see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// A person answered (or AMD was off, or undecided).
    Human,
    /// An answering machine, fax or silence answered.
    Machine,
    /// 486/600.
    Busy,
    /// 603 Decline.
    Rejected,
    /// Rang out (ring timeout, 408).
    NoAnswer,
    /// 480 Temporarily Unavailable.
    Unavailable,
    /// 404/410/484/604.
    InvalidNumber,
    /// Any other failure (carrier, auth, no response).
    Failed,
    /// On a do-not-call list: not dialed.
    Dnc,
    /// The node placing the call died (or the store lost it) mid-call: retried while
    /// retries remain, whatever `retry_on` says (the callee did nothing), else `failed`.
    Interrupted,
}

impl AttemptResult {
    /// From the SIP outcome and whether AMD judged the answer a machine (any
    /// `machine_*` AnsweredBy, or `fax`).
    pub fn from_call(outcome: Outcome, machine: bool) -> AttemptResult {
        match outcome {
            Outcome::Answered if machine => AttemptResult::Machine,
            Outcome::Answered => AttemptResult::Human,
            Outcome::Busy => AttemptResult::Busy,
            Outcome::Rejected => AttemptResult::Rejected,
            Outcome::NoAnswer => AttemptResult::NoAnswer,
            Outcome::Unavailable => AttemptResult::Unavailable,
            Outcome::InvalidNumber => AttemptResult::InvalidNumber,
            Outcome::Failed => AttemptResult::Failed,
        }
    }

    /// The word stored in `last_outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Human => "answered",
            AttemptResult::Machine => "machine",
            AttemptResult::Busy => "busy",
            AttemptResult::Rejected => "rejected",
            AttemptResult::NoAnswer => "no_answer",
            AttemptResult::Unavailable => "unavailable",
            AttemptResult::InvalidNumber => "invalid_number",
            AttemptResult::Failed => "failed",
            AttemptResult::Dnc => "dnc",
            AttemptResult::Interrupted => "interrupted",
        }
    }

    /// Whether `retry_on` lets this result earn another attempt.
    fn retryable(self, on: &RetryOn) -> bool {
        match self {
            AttemptResult::Busy | AttemptResult::Rejected => on.busy,
            AttemptResult::NoAnswer | AttemptResult::Unavailable => on.no_answer,
            AttemptResult::Machine => on.machine,
            AttemptResult::Failed => on.failed,
            AttemptResult::Interrupted => true,
            AttemptResult::Human | AttemptResult::InvalidNumber | AttemptResult::Dnc => false,
        }
    }
}

/// An answered call without AMD's verdict reads as a person.
impl From<Outcome> for AttemptResult {
    fn from(outcome: Outcome) -> AttemptResult {
        AttemptResult::from_call(outcome, false)
    }
}

impl std::fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contact fields an attempt (or an admin action) changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpdate {
    pub status: ContactStatus,
    pub attempts: i64,
    pub retries: i64,
    /// `retry`/`pending`: not before this time; `called`: when it becomes `completed`.
    pub next_attempt_at: Option<Millis>,
    pub last_outcome: Option<String>,
}

impl ContactUpdate {
    /// Writes the update into `contact` (its `updated_at` is the store's business).
    pub fn apply_to(&self, contact: &mut Contact) {
        contact.status = self.status;
        contact.attempts = self.attempts;
        contact.retries = self.retries;
        contact.next_attempt_at = self.next_attempt_at;
        contact.last_outcome.clone_from(&self.last_outcome);
    }
}

/// The contact after an attempt ended with `result` at `now`.
pub fn after_attempt(
    settings: &CampaignSettings,
    contact: &Contact,
    result: AttemptResult,
    now: Millis,
) -> ContactUpdate {
    let attempts = contact.attempts.max(0).saturating_add(1);
    let retries = attempts - 1;
    let person = result == AttemptResult::Human
        || (result == AttemptResult::Machine && settings.machine_action == MachineAction::Connect);
    let mut update = ContactUpdate {
        status: ContactStatus::Failed,
        attempts,
        retries,
        next_attempt_at: None,
        last_outcome: Some(result.as_str().to_string()),
    };
    if person {
        let timeout = settings.completion_timeout.as_millis();
        if timeout > 0 {
            update.status = ContactStatus::Called;
            update.next_attempt_at = Some(now.saturating_add(timeout));
        } else {
            update.status = ContactStatus::Answered;
        }
        return update;
    }
    if result.retryable(&settings.retry_on) && retries < settings.max_retries {
        update.status = ContactStatus::Retry;
        update.next_attempt_at =
            Some(now.saturating_add(settings.retry_interval.as_millis().max(0)));
        return update;
    }
    update.status = match result {
        AttemptResult::Machine => ContactStatus::NoConversation,
        AttemptResult::Busy | AttemptResult::Rejected => ContactStatus::Rejected,
        AttemptResult::NoAnswer | AttemptResult::Unavailable => ContactStatus::NotAnswered,
        _ => ContactStatus::Failed,
    };
    update
}

/// A ringing call cancelled because this node shut down: the attempt does not count (the
/// callee did nothing), so the contact is queued again, due `now`, with the counters it had
/// before it was claimed (`contact` as it was then).
pub fn after_shutdown(contact: &Contact, now: Millis) -> ContactUpdate {
    ContactUpdate {
        status: if contact.attempts > 0 {
            ContactStatus::Retry
        } else {
            ContactStatus::Pending
        },
        attempts: contact.attempts,
        retries: contact.retries,
        next_attempt_at: Some(now),
        last_outcome: Some(AttemptResult::Interrupted.as_str().to_string()),
    }
}

/// A `called` contact whose completion time has come becomes `completed`; `None` when the
/// contact is not `called` or its time has not come. Without a stored completion time
/// (called by an inbound callback), it counts from `updated_at` with the campaign's
/// completion timeout.
pub fn complete_due(
    settings: &CampaignSettings,
    contact: &Contact,
    now: Millis,
) -> Option<ContactUpdate> {
    if contact.status != ContactStatus::Called {
        return None;
    }
    let due = contact.next_attempt_at.unwrap_or_else(|| {
        contact
            .updated_at
            .saturating_add(settings.completion_timeout.as_millis().max(0))
    });
    (now >= due).then(|| ContactUpdate {
        status: ContactStatus::Completed,
        attempts: contact.attempts,
        retries: contact.retries,
        next_attempt_at: None,
        last_outcome: contact.last_outcome.clone(),
    })
}

/// The admin's "retry": due now, from any status but a live call; `retry` once dialed,
/// `pending` if never. Counters are kept (the next attempt counts as a retry).
pub fn manual_retry(contact: &Contact, now: Millis) -> Result<ContactUpdate, ModelError> {
    if contact.status.is_in_call() {
        return Err(ModelError::Invalid {
            field: "status",
            reason: format!(
                "contact {} is {}: retry it after the call ends",
                contact.id, contact.status
            ),
        });
    }
    Ok(ContactUpdate {
        status: if contact.attempts > 0 {
            ContactStatus::Retry
        } else {
            ContactStatus::Pending
        },
        attempts: contact.attempts,
        retries: contact.retries,
        next_attempt_at: Some(now),
        last_outcome: contact.last_outcome.clone(),
    })
}

/// A campaign restart: the contact is pending again, its counters reset (the last
/// outcome stays as history).
pub fn restart(contact: &Contact) -> ContactUpdate {
    ContactUpdate {
        status: ContactStatus::Pending,
        attempts: 0,
        retries: 0,
        next_attempt_at: None,
        last_outcome: contact.last_outcome.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::model::{Interval, IntervalUnit};

    const MIN: Millis = 60_000;

    fn contact() -> Contact {
        Contact {
            id: 7,
            campaign_id: 1,
            phone: "+12127365000".into(),
            name: "Jane".into(),
            comments: String::new(),
            tags: vec![],
            timezone: None,
            status: ContactStatus::Pending,
            attempts: 0,
            retries: 0,
            next_attempt_at: None,
            last_attempt_at: None,
            last_outcome: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn settings(max_retries: i64) -> CampaignSettings {
        CampaignSettings {
            name: "t".into(),
            max_retries,
            retry_interval: Interval::new(30, IntervalUnit::Minutes),
            ..CampaignSettings::default()
        }
    }

    /// Runs the results in order (each attempt at its own time), returns the updates.
    fn run(s: &CampaignSettings, results: &[(AttemptResult, Millis)]) -> Vec<ContactUpdate> {
        let mut c = contact();
        results
            .iter()
            .map(|&(result, at)| {
                let update = after_attempt(s, &c, result, at);
                update.apply_to(&mut c);
                update
            })
            .collect()
    }

    #[test]
    fn busy_then_no_answer_then_answer_uses_both_retries() {
        let t = 1_000_000;
        let updates = run(
            &settings(2),
            &[
                (AttemptResult::Busy, t),
                (AttemptResult::NoAnswer, t + 30 * MIN),
                (AttemptResult::Human, t + 60 * MIN),
            ],
        );
        assert_eq!(updates[0].status, ContactStatus::Retry);
        assert_eq!(updates[0].next_attempt_at, Some(t + 30 * MIN));
        assert_eq!((updates[0].attempts, updates[0].retries), (1, 0));
        assert_eq!(updates[1].status, ContactStatus::Retry);
        assert_eq!(updates[1].next_attempt_at, Some(t + 60 * MIN));
        assert_eq!(updates[1].last_outcome.as_deref(), Some("no_answer"));
        assert_eq!(updates[2].status, ContactStatus::Answered);
        assert_eq!((updates[2].attempts, updates[2].retries), (3, 2));
        assert_eq!(updates[2].next_attempt_at, None);
    }

    #[test]
    fn retries_run_out_into_the_result_class() {
        let s = settings(2);
        let busy = run(&s, &[(AttemptResult::Busy, 0); 3]);
        assert_eq!(busy[2].status, ContactStatus::Rejected);
        let unanswered = run(&s, &[(AttemptResult::Unavailable, 0); 3]);
        assert_eq!(unanswered[2].status, ContactStatus::NotAnswered);
        let machine = run(&s, &[(AttemptResult::Machine, 0); 3]);
        assert_eq!(machine[2].status, ContactStatus::NoConversation);
        let failed = run(&s, &[(AttemptResult::Failed, 0); 3]);
        assert_eq!(failed[2].status, ContactStatus::Failed);
        let none = run(&settings(0), &[(AttemptResult::NoAnswer, 0)]);
        assert_eq!(none[0].status, ContactStatus::NotAnswered);
    }

    #[test]
    fn retry_on_switches_classes_off() {
        let mut s = settings(2);
        s.retry_on.busy = false;
        assert_eq!(
            run(&s, &[(AttemptResult::Busy, 0)])[0].status,
            ContactStatus::Rejected
        );
        assert_eq!(
            run(&s, &[(AttemptResult::Rejected, 0)])[0].status,
            ContactStatus::Rejected
        );
        assert_eq!(
            run(&s, &[(AttemptResult::NoAnswer, 0)])[0].status,
            ContactStatus::Retry
        );
        s.retry_on.machine = false;
        assert_eq!(
            run(&s, &[(AttemptResult::Machine, 0)])[0].status,
            ContactStatus::NoConversation
        );
    }

    #[test]
    fn invalid_numbers_and_dnc_are_never_retried() {
        let s = settings(10);
        for result in [AttemptResult::InvalidNumber, AttemptResult::Dnc] {
            let update = &run(&s, &[(result, 0)])[0];
            assert_eq!(update.status, ContactStatus::Failed, "{result}");
            assert_eq!(update.next_attempt_at, None);
        }
    }

    #[test]
    fn completion_timeout_goes_through_called() {
        let mut s = settings(2);
        s.completion_timeout = Interval::new(2, IntervalUnit::Hours);
        let mut c = contact();
        let t = 5_000_000;
        let update = after_attempt(&s, &c, AttemptResult::Human, t);
        assert_eq!(update.status, ContactStatus::Called);
        assert_eq!(update.next_attempt_at, Some(t + 120 * MIN));
        update.apply_to(&mut c);
        assert_eq!(complete_due(&s, &c, t + 120 * MIN - 1), None);
        let done = complete_due(&s, &c, t + 120 * MIN).expect("due");
        assert_eq!(done.status, ContactStatus::Completed);
        assert!(done.status.is_final());
        // A machine with machine_action = connect counts as a person.
        s.machine_action = MachineAction::Connect;
        let update = after_attempt(&s, &contact(), AttemptResult::Machine, t);
        assert_eq!(update.status, ContactStatus::Called);
        assert_eq!(update.last_outcome.as_deref(), Some("machine"));
        assert_eq!(complete_due(&s, &contact(), t), None);
    }

    #[test]
    fn sip_outcomes_and_amd_map_to_results() {
        assert_eq!(
            AttemptResult::from_call(Outcome::Answered, true),
            AttemptResult::Machine
        );
        assert_eq!(AttemptResult::from(Outcome::Answered), AttemptResult::Human);
        assert_eq!(
            AttemptResult::from(Outcome::from_final_code(603)),
            AttemptResult::Rejected
        );
        assert_eq!(
            AttemptResult::from(Outcome::from_final_code(404)),
            AttemptResult::InvalidNumber
        );
        assert_eq!(
            AttemptResult::from(Outcome::from_final_code(480)),
            AttemptResult::Unavailable
        );
    }

    #[test]
    fn manual_retry_and_restart() {
        let mut c = contact();
        c.status = ContactStatus::NotAnswered;
        c.attempts = 3;
        c.retries = 2;
        let update = manual_retry(&c, 42).expect("allowed");
        assert_eq!(update.status, ContactStatus::Retry);
        assert_eq!(update.next_attempt_at, Some(42));
        c.attempts = 0;
        assert_eq!(
            manual_retry(&c, 42).expect("allowed").status,
            ContactStatus::Pending
        );
        c.status = ContactStatus::Dialing;
        assert!(manual_retry(&c, 42).is_err());
        c.status = ContactStatus::Rejected;
        c.attempts = 3;
        let update = restart(&c);
        assert_eq!(
            (
                update.status,
                update.attempts,
                update.retries,
                update.next_attempt_at
            ),
            (ContactStatus::Pending, 0, 0, None)
        );
    }

    #[test]
    fn an_interrupted_call_is_retried_while_retries_remain_whatever_retry_on_says() {
        let mut s = settings(1);
        s.retry_on.failed = false;
        s.retry_on.busy = false;
        s.retry_on.no_answer = false;
        s.retry_on.machine = false;
        let updates = run(
            &s,
            &[
                (AttemptResult::Interrupted, 0),
                (AttemptResult::Interrupted, 1),
            ],
        );
        assert_eq!(updates[0].status, ContactStatus::Retry);
        assert_eq!(updates[0].last_outcome.as_deref(), Some("interrupted"));
        assert_eq!(updates[1].status, ContactStatus::Failed);
        assert_eq!(
            run(&settings(0), &[(AttemptResult::Interrupted, 0)])[0].status,
            ContactStatus::Failed
        );
    }

    #[test]
    fn a_call_cancelled_by_a_shutdown_keeps_its_retry() {
        let mut c = contact();
        let update = after_shutdown(&c, 42);
        assert_eq!(
            (update.status, update.attempts, update.next_attempt_at),
            (ContactStatus::Pending, 0, Some(42))
        );
        c.attempts = 2;
        c.retries = 1;
        let update = after_shutdown(&c, 42);
        assert_eq!(
            (update.status, update.attempts, update.retries),
            (ContactStatus::Retry, 2, 1)
        );
        assert_eq!(update.last_outcome.as_deref(), Some("interrupted"));
    }
}
