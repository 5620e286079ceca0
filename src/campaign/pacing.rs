//! How many calls a campaign with an agent pool places now: `progressive` (never more
//! calls waiting to be answered than free agents: nobody is abandoned for want of an
//! agent) or `predictive` (dials ahead of free agents so they wait as little as possible,
//! holding the abandon rate at or under the campaign's cap).
//!
//! Sans-IO and stateless: [`PacingInput`] (agents, calls in flight, people waiting, the
//! measured rates, the rolling 30-day abandon counts, the cap) in, a number of calls to
//! start out. It never reads a clock, the store or a socket; the scheduler calls it and
//! the engine fills the input from the store.
//!
//! ## The predictive rule
//!
//! Each call in flight turns into a person with the measured probability
//! `p = people answered ÷ attempts` (machines and no-answers do not need an agent). With
//! `n` calls in flight and `k` agents to take the people they bring, the people `X` are
//! binomial (n, p) and the expected abandons are `E[(X − k)⁺]`. The pacer keeps the
//! largest `n` whose expected abandon ratio `E[(X − k)⁺] ÷ E[X]` stays under a target
//! ratio, and dials `n − in flight`.
//!
//! - `k` = free agents − people already waiting + the busy agents expected to be free by
//!   the time the new calls are answered (handle time exponential with the measured mean
//!   talk + wrap-up; counted at [`FREEING_TRUST`] of their expectation).
//! - The target ratio is [`TARGET_SHARE`] of the cap while the rolling 30-day rate is at
//!   most half the cap, falls linearly to zero as it nears [`STOP_SHARE`] of the cap, and
//!   is zero above it: then the pacer dials no more people than agents (progressive), so
//!   the rate can only fall.
//! - Fewer than [`MIN_SAMPLES`] attempts measured, or no person yet: progressive.

use serde::{Deserialize, Serialize};

use super::agents::AgentCounts;
use super::model::Millis;

/// Attempts measured before the pacer trusts the rates.
pub const MIN_SAMPLES: u64 = 20;
/// The share of the cap aimed at while the rolling rate is comfortably under it.
pub const TARGET_SHARE: f64 = 0.5;
/// The share of the cap at which the pacer stops dialing ahead.
pub const STOP_SHARE: f64 = 0.85;
/// How much of the busy agents' expected freeing is counted on.
pub const FREEING_TRUST: f64 = 0.5;
/// The most calls in flight per agent the pacer ever asks for.
pub const MAX_RATIO: f64 = 20.0;

/// Rates measured over the campaign's recent attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasuredRates {
    pub attempts: u64,
    /// Answered by a person (not a machine).
    pub people: u64,
    /// Mean INVITE → answer of answered calls, ms.
    pub average_answer_ms: f64,
    /// Mean time an agent spends on a call, talk plus wrap-up, ms.
    pub average_handle_ms: f64,
}

/// The FTC TSR's counts over the rolling 30 days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonWindow {
    pub people_answered: u64,
    pub abandoned: u64,
}

impl AbandonWindow {
    /// Percent (0 when nobody answered).
    pub fn rate_pct(&self) -> f64 {
        if self.people_answered == 0 {
            0.0
        } else {
            100.0 * self.abandoned as f64 / self.people_answered as f64
        }
    }
}

/// What the pacer looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PacingInput {
    pub agents: AgentCounts,
    /// Calls placed and not answered yet (dialing, ringing).
    pub in_flight: u32,
    /// People who answered and wait for an agent now.
    pub waiting: u32,
    pub rates: MeasuredRates,
    pub window: AbandonWindow,
    /// The campaign's `abandon_cap_pct`.
    pub cap_pct: f64,
}

/// Progressive: one call per free agent not already covered by a call in flight or a
/// waiting person.
pub fn progressive_dials(input: &PacingInput) -> u32 {
    input
        .agents
        .free
        .saturating_sub(input.waiting)
        .saturating_sub(input.in_flight)
}

/// The target expected abandon ratio (0–1) for the rolling rate and the cap.
pub fn target_ratio(window: &AbandonWindow, cap_pct: f64) -> f64 {
    if !cap_pct.is_finite() || cap_pct <= 0.0 {
        return 0.0;
    }
    let cap = cap_pct / 100.0;
    let rate = window.rate_pct() / 100.0;
    let share = if rate <= cap * 0.5 {
        1.0
    } else if rate >= cap * STOP_SHARE {
        0.0
    } else {
        (cap * STOP_SHARE - rate) / (cap * (STOP_SHARE - 0.5))
    };
    cap * TARGET_SHARE * share
}

/// `E[(X − k)⁺] ÷ E[X]` for X ~ Binomial(n, p): the expected share of people abandoned.
pub fn expected_abandon_ratio(n: u32, p: f64, k: u32) -> f64 {
    if n == 0 || p <= 0.0 || n <= k {
        return 0.0;
    }
    let p = p.min(1.0);
    let mean = f64::from(n) * p;
    if p >= 1.0 {
        return (f64::from(n - k)) / mean;
    }
    // E[min(X, k)] = Σ_{x<k} x·P(x) + k·P(X ≥ k), with P(x) by recurrence (logs for P(0)).
    let q = 1.0 - p;
    let mut pmf = (f64::from(n) * q.ln()).exp();
    let mut below = 0.0; // P(X < k)
    let mut min_sum = 0.0;
    for x in 0..k {
        below += pmf;
        min_sum += f64::from(x) * pmf;
        pmf *= f64::from(n - x) / f64::from(x + 1) * p / q;
    }
    let expected_min = min_sum + f64::from(k) * (1.0 - below).max(0.0);
    ((mean - expected_min) / mean).max(0.0)
}

/// What the predictive pacer decided, with its reasons (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Calls to start now.
    pub dials: u32,
    /// Calls it wants in flight.
    pub target_in_flight: u32,
    /// Agents counted on for the people those calls bring.
    pub agents_counted: u32,
    /// The expected abandon ratio it aimed under.
    pub target_ratio: f64,
    /// False: it fell back to progressive (too few samples, or no person answered yet).
    pub predictive: bool,
}

/// Predictive pacing (see the module header).
pub fn predictive(input: &PacingInput) -> Decision {
    let progressive = Decision {
        dials: progressive_dials(input),
        target_in_flight: input.agents.free.saturating_sub(input.waiting),
        agents_counted: input.agents.free.saturating_sub(input.waiting),
        target_ratio: 0.0,
        predictive: false,
    };
    let rates = &input.rates;
    if rates.attempts < MIN_SAMPLES || rates.people == 0 {
        return progressive;
    }
    let p = (rates.people as f64 / rates.attempts as f64).clamp(0.0, 1.0);
    // No handle time measured yet: count on no busy agent freeing.
    let horizon = rates.average_answer_ms.max(0.0);
    let freeing = if rates.average_handle_ms > 0.0 {
        f64::from(input.agents.busy + input.agents.wrap_up)
            * (1.0 - (-horizon / rates.average_handle_ms).exp())
            * FREEING_TRUST
    } else {
        0.0
    };
    let k = (f64::from(input.agents.free) + freeing.floor()).max(0.0) as u32;
    let k = k.saturating_sub(input.waiting);
    let target = target_ratio(&input.window, input.cap_pct);
    if k == 0 {
        return Decision {
            dials: 0,
            target_in_flight: 0,
            agents_counted: 0,
            target_ratio: target,
            predictive: true,
        };
    }
    // The largest n with the expected ratio under the target (it grows with n).
    let most = ((f64::from(input.agents.logged_in().max(1)) * MAX_RATIO) as u32).max(k);
    let (mut lo, mut hi) = (k, most);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if expected_abandon_ratio(mid, p, k) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Decision {
        dials: lo.saturating_sub(input.in_flight),
        target_in_flight: lo,
        agents_counted: k,
        target_ratio: target,
        predictive: true,
    }
}

/// A mean handle time from a mean talk time and the pool's wrap-up.
pub fn handle_ms(average_talk_ms: f64, wrap_up_ms: Millis) -> f64 {
    average_talk_ms.max(0.0) + wrap_up_ms.max(0) as f64
}

#[cfg(test)]
mod tests;
