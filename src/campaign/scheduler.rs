//! The campaign scheduler core: a campaign's state plus `now` in, dial decisions out.
//!
//! Sans-IO: [`Scheduler::tick`] reads a [`CampaignView`] (the campaign and its settings,
//! business hours, live calls, trunk room, the contacts due now) and returns a [`Tick`]:
//! which contacts to dial, a status change to store, and when to call again. It never
//! sleeps, spawns, reads a clock or touches the store; the driver does.
//!
//! What it keeps between ticks, per campaign, is only pacing state (a token bucket and the
//! last call start) and whether it watched a scheduled campaign before its start. Settings
//! are read from the view on every tick, so an edit applies on the next one.
//!
//! Rules:
//! - dial only while `processing` and inside business hours; a contact whose own calling
//!   window is closed is skipped (the others are still dialed);
//! - pace: a smooth token bucket (pace/60 tokens a second) holding one call, or what the
//!   pace allows in [`PACE_QUANTUM_MS`] when that is more (above 6,000 a minute), so starts
//!   are spread evenly — one at a time up to 100 a second, in groups at most 10 ms apart
//!   beyond (a driver that ticks later than asked while the pace alone held contacts back
//!   gets the tokens of its delay, up to [`MAX_CATCH_UP_MS`], so a slow tick does not lower
//!   the pace); `call_interval_secs` is the least time between two starts (one per tick then);
//!   both hold, so the stricter wins. A pace change keeps the tokens (capped at the new
//!   capacity) and applies from this tick on;
//! - never more live calls than `max_concurrent`, nor more starts than the trunk's free
//!   channels or its calls-per-second allowance;
//! - with an agent pool (`connect_to` names one), never more starts than the campaign's
//!   `pacing` allows ([`pacing`](super::pacing)): `progressive` one call per free agent
//!   not already covered by a call in flight, `predictive` as many as the measured rates
//!   allow under the abandon cap; pace stays the ceiling of both;
//! - `scheduled` becomes `processing` at `schedule_start`, or `overdue` when the start
//!   passed more than [`OVERDUE_GRACE_MS`] before this scheduler first saw the campaign
//!   (the server was down, so the campaign did not start on time); once it watched the
//!   campaign wait for its start, a late tick still starts it;
//! - `processing` with no unfinished contact and no live call becomes `finished`.
//!
//! The driver's part: dial (and mark `dialing`) what a tick returns before the next tick;
//! call `tick` again at `wake_at`, and also when something the core cannot foresee changes
//! (a call ends, contacts are added or edited, settings or status change, trunk room frees).
//! Pass a bounded page of candidates (a few times what can be dialed): each is looked at.

use std::collections::HashMap;

use chrono_tz::Tz;

use super::contact_tz::CompiledWindow;
use super::hours::CompiledHours;
use super::model::{Campaign, CampaignStatus, ContactWindow, Millis, Pacing};
use super::pacing::{self, PacingInput};

/// A contact's id.
pub type ContactId = i64;

/// How late past its start a scheduled campaign may first be seen and still start
/// (`processing`) rather than become `overdue`: 15 minutes, enough for a restart or an
/// upgrade, short enough that a campaign does not start at a surprising hour unasked.
pub const OVERDUE_GRACE_MS: Millis = 15 * 60 * 1000;

/// A contact that may be dialed now (status `pending` or `retry`, `next_attempt_at` passed
/// or unset), with its candidate zones for the contact window.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: ContactId,
    /// From [`zones_for_contact`](super::contact_tz::zones_for_contact); empty: unknown.
    pub zones: Vec<Tz>,
}

/// What the core needs to know about one campaign at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CampaignView<'a> {
    pub campaign: &'a Campaign,
    /// Its business hours; `None`: open 24/7.
    pub hours: Option<&'a CompiledHours>,
    /// Calls of this campaign now live (dialing, ringing, talking).
    pub live_calls: u32,
    /// Channels the campaign's trunk has free now; `None`: no limit.
    pub trunk_free_channels: Option<u32>,
    /// Call starts the trunk accepts now (its calls-per-second allowance); `None`: no limit.
    pub trunk_cps_allowance: Option<u32>,
    /// Contacts due now, in dial order.
    pub candidates: &'a [Candidate],
    /// When the next contact becomes due (a retry's `next_attempt_at`, a `called`
    /// contact's completion), if any lies ahead.
    pub next_due_at: Option<Millis>,
    /// Some contact is not final yet (pending, retry, dialing, on hold, called).
    pub has_unfinished: bool,
    /// The agent pool `connect_to` names, when it names one: its agents, the calls in
    /// flight, the measured rates and the 30-day abandon counts. `None`: no pool, only
    /// pace and the limits above apply.
    pub pool: Option<PacingInput>,
}

/// One tick's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Contacts to dial now, in order.
    pub dials: Vec<ContactId>,
    /// The campaign's new status, to store.
    pub status_change: Option<CampaignStatus>,
    /// The earliest time something can change without an outside event; `None`: only an
    /// outside event (call end, edit, action) can.
    pub wake_at: Option<Millis>,
}

/// Pacing state of every campaign a driver runs.
#[derive(Debug, Default)]
pub struct Scheduler {
    campaigns: HashMap<i64, Pacer>,
}

#[derive(Debug)]
struct Pacer {
    /// Calls that may start now (0..=capacity).
    tokens: f64,
    refilled_at: Millis,
    /// Tokens per ms in force since `refilled_at`.
    rate: f64,
    last_start: Option<Millis>,
    /// The last tick left due contacts undialed for want of tokens only (room was left):
    /// the time until the next tick is the driver's, so its tokens are all owed.
    pace_bound: bool,
    /// It ticked this campaign while scheduled with its start still ahead.
    watched_before_start: bool,
    window: Option<(ContactWindow, Option<CompiledWindow>)>,
}

/// Float slack on the token count, so a tick at the computed wake time finds its token.
const EPSILON: f64 = 1e-9;

/// The pacer's time grain: a bucket holds the calls its pace allows in this long (one at
/// least), so at high paces a tick starts a group instead of waking once per call.
pub const PACE_QUANTUM_MS: Millis = 10;

/// The most of a late driver's delay a pace-bound campaign makes up at its next tick.
pub const MAX_CATCH_UP_MS: Millis = 1_000;

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Drops a campaign's state (deleted, or final and not coming back).
    pub fn forget(&mut self, campaign_id: i64) {
        self.campaigns.remove(&campaign_id);
    }

    /// The most calls the pace would let `campaign` start if it ticked at `now` (before
    /// room, candidates or windows are counted), so a driver reads no more due contacts than
    /// it can use; `None` for a campaign not ticked yet. A tick at `now` allows no more.
    pub fn starts_allowed(&self, now: Millis, campaign: &Campaign) -> Option<u64> {
        let pacer = self.campaigns.get(&campaign.id)?;
        let settings = &campaign.settings;
        let (tokens, _) = pacer.refilled(now, pace_rate(settings.pace));
        let interval_ms = settings.call_interval_secs.max(0).saturating_mul(1000);
        let ready = pacer
            .last_start
            .is_none_or(|last| now >= last.saturating_add(interval_ms));
        Some(match (tokens + EPSILON >= 1.0 && ready, interval_ms) {
            (false, _) => 0,
            (true, 0) => (tokens + EPSILON).floor() as u64,
            (true, _) => 1,
        })
    }

    /// Decides what `view`'s campaign does at `now`.
    pub fn tick(&mut self, now: Millis, view: &CampaignView<'_>) -> Tick {
        let campaign = view.campaign;
        let settings = &campaign.settings;
        let rate = pace_rate(settings.pace);
        let pacer = self.campaigns.entry(campaign.id).or_insert(Pacer {
            tokens: 1.0,
            refilled_at: now,
            rate,
            last_start: None,
            pace_bound: false,
            watched_before_start: false,
            window: None,
        });
        pacer.refill(now, rate);
        // Owed tokens last one tick: only a tick that ends held back by the pace renews them.
        pacer.pace_bound = false;

        let mut tick = Tick::default();
        let mut status = campaign.status;
        if status == CampaignStatus::Scheduled {
            match settings.schedule_start {
                Some(start) if start > now => {
                    pacer.watched_before_start = true;
                    tick.wake_at = Some(start);
                    return tick;
                }
                Some(start)
                    if !pacer.watched_before_start
                        && now.saturating_sub(start) > OVERDUE_GRACE_MS =>
                {
                    tick.status_change = Some(CampaignStatus::Overdue);
                    return tick;
                }
                _ => {
                    status = CampaignStatus::Processing;
                    tick.status_change = Some(status);
                }
            }
        }
        if !status.is_dialing() {
            return tick;
        }
        if !view.has_unfinished && view.live_calls == 0 {
            tick.status_change = Some(CampaignStatus::Finished);
            return tick;
        }
        let due = view.next_due_at.filter(|&at| at > now);
        if let Some(hours) = view.hours {
            if !hours.is_open(now) {
                tick.wake_at = earliest(hours.next_open(now), due);
                return tick;
            }
        }

        let max_concurrent = u64::try_from(settings.max_concurrent).unwrap_or(0);
        let mut room = max_concurrent.saturating_sub(u64::from(view.live_calls));
        let agent_room = view.pool.as_ref().map(|input| match settings.pacing {
            Pacing::Progressive => pacing::progressive_dials(input),
            Pacing::Predictive => pacing::predictive(input).dials,
        });
        for limit in [
            view.trunk_free_channels,
            view.trunk_cps_allowance,
            agent_room,
        ]
        .into_iter()
        .flatten()
        {
            room = room.min(u64::from(limit));
        }
        let interval_ms = settings.call_interval_secs.max(0).saturating_mul(1000);
        let ready_at = pacer.ready_at(now, interval_ms, 1.0);
        let paced = ready_at == Some(now);
        // As many starts as whole tokens (one with a call interval).
        let allowed = match (paced, interval_ms) {
            (false, _) => 0,
            (true, 0) => room.min((pacer.tokens + EPSILON).floor().max(1.0) as u64),
            (true, _) => room.min(1),
        };

        let window = pacer.window(settings.contact_window.as_ref());
        let mut window_wake = None;
        let mut waiting = false; // a dialable contact is left for a later tick
        for candidate in view.candidates {
            match window {
                Some(Ok(window)) if !window.is_open(&candidate.zones, now) => {
                    window_wake = earliest(window_wake, window.next_open(&candidate.zones, now));
                    continue;
                }
                // A window the settings check should have refused: hold every call
                // rather than call outside it.
                Some(Err(())) => break,
                _ => {}
            }
            if (tick.dials.len() as u64) < allowed {
                tick.dials.push(candidate.id);
            } else {
                waiting = true;
                break;
            }
        }
        if !tick.dials.is_empty() {
            pacer.tokens = (pacer.tokens - tick.dials.len() as f64).max(0.0);
            pacer.last_start = Some(now);
        }
        // Pace is the only limit the core can foresee lifting; room frees on call ends.
        pacer.pace_bound = waiting && room > tick.dials.len() as u64;
        let pace_wake = if pacer.pace_bound {
            // Back when the bucket is full again: one token, or a group at high paces.
            pacer
                .ready_at(now, interval_ms, capacity(pacer.rate))
                .filter(|&at| at > now)
        } else {
            None
        };
        tick.wake_at = earliest(earliest(pace_wake, window_wake), due);
        tick
    }
}

impl Pacer {
    /// Accrues tokens for the time since the last refill at the rate then in force, then
    /// switches to `rate`. The bucket holds [`capacity`], except that a campaign held back
    /// by its pace alone keeps what accrued while the driver came late (up to
    /// [`MAX_CATCH_UP_MS`] of it): a tick that takes longer than the pacer's grain must not
    /// lower the pace, while an idle or full campaign still gains no burst.
    fn refill(&mut self, now: Millis, rate: f64) {
        let (tokens, refilled_at) = self.refilled(now, rate);
        self.tokens = tokens;
        self.refilled_at = refilled_at;
        self.rate = rate;
    }

    /// What [`Pacer::refill`] would make of the bucket at `now`: its tokens and refill time.
    fn refilled(&self, now: Millis, rate: f64) -> (f64, Millis) {
        let (mut tokens, mut refilled_at) = (self.tokens, self.refilled_at);
        if now > refilled_at {
            let elapsed = (now - refilled_at) as f64;
            let owed = if self.pace_bound {
                elapsed.min(MAX_CATCH_UP_MS as f64) * self.rate
            } else {
                0.0
            };
            tokens = (tokens + elapsed * self.rate).min(capacity(self.rate) + owed);
            refilled_at = now;
        }
        if rate != self.rate {
            tokens = tokens.min(capacity(rate));
        }
        (tokens, refilled_at)
    }

    /// When the bucket holds `want` tokens and the call interval has passed (`now` if it
    /// does now); `None`: never (no pace).
    fn ready_at(&self, now: Millis, interval_ms: Millis, want: f64) -> Option<Millis> {
        let token_at = if self.tokens >= want - EPSILON {
            now
        } else if self.rate > 0.0 {
            let wait = ((want - self.tokens) / self.rate).ceil();
            if !wait.is_finite() || wait > 1e15 {
                return None;
            }
            now.saturating_add(wait as Millis)
        } else {
            return None;
        };
        let interval_at = self
            .last_start
            .map_or(now, |last| last.saturating_add(interval_ms));
        Some(token_at.max(interval_at).max(now))
    }

    /// The compiled contact window for `window`, recompiled when the setting changes.
    /// `Some(Err(()))`: the setting is invalid.
    fn window(&mut self, window: Option<&ContactWindow>) -> Option<Result<&CompiledWindow, ()>> {
        let Some(window) = window else {
            self.window = None;
            return None;
        };
        if self.window.as_ref().map(|(seen, _)| seen) != Some(window) {
            self.window = Some((window.clone(), CompiledWindow::compile(window).ok()));
        }
        self.window
            .as_ref()
            .map(|(_, compiled)| compiled.as_ref().ok_or(()))
    }
}

/// A campaign's pace (calls per minute) as tokens per ms; 0 when it has none.
fn pace_rate(pace: f64) -> f64 {
    if pace.is_finite() && pace > 0.0 {
        pace / 60_000.0
    } else {
        0.0
    }
}

/// The bucket's size at `rate` tokens per ms: one call, or [`PACE_QUANTUM_MS`]'s worth.
fn capacity(rate: f64) -> f64 {
    (rate * PACE_QUANTUM_MS as f64).max(1.0)
}

fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
