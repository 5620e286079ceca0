//! A profile's trunks: which one a call tries first, when a failed INVITE moves on to the next,
//! and whether a trunk is up (its OPTIONS pings).
//!
//! - [`order`]: the trunks by priority (lower first), by weight within a priority (RFC 2782's
//!   weighted random draw, the one SRV records use, so traffic splits by weight over many
//!   calls), trunks that are down after all that are up (a call still tries them when nothing
//!   else is left).
//! - [`fails_over`]: the rule of which ends of an INVITE move the call to the next trunk.
//! - [`Health`]: up or down from the pings, with hysteresis (down after N failures in a row,
//!   up after M successes in a row).
//!
//! Pure: no sockets, no clock, no randomness of its own (the caller passes the random draw), no
//! knowledge of calls or campaigns.

use serde::{Deserialize, Serialize};

use super::dns::core::weighted_order;
use crate::config::Trunk;

/// One trunk a call left behind, and why (kept on the attempt's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrunkTry {
    pub trunk: String,
    /// The final response it gave; `None` when none came (timeout, transport failure) or the
    /// trunk could not take the call (full, not resolving).
    pub code: Option<u16>,
    pub reason: String,
}

/// Whether an INVITE that ended this way should be tried on the next trunk: no response at all
/// (timer B or the trunk's `invite_timeout`, `code` = `None`), a transport failure (`None`),
/// 408, any 5xx, any 6xx but 600/603/604. Never a callee's answer: busy (486), declined (603),
/// does not exist (600, 604, 404), address incomplete (484), our own CANCEL (487) or any
/// other 4xx; never a 3xx (redirects are followed, not failed over).
pub fn fails_over(code: Option<u16>) -> bool {
    match code {
        None => true,
        Some(408) => true,
        Some(c) if (500..600).contains(&c) => true,
        Some(600 | 603 | 604) => false,
        Some(c) if (600..700).contains(&c) => true,
        Some(_) => false,
    }
}

/// The order a call tries `trunks` in (indexes into `trunks`): RFC 2782's selection by
/// priority and weight ([`weighted_order`], as for SRV records), then every trunk that is
/// down after every one that is up. `is_up` says which are up; `draw(total)` returns a number
/// in `0..=total` (uniform in production), the selection's only source of chance.
pub fn order(
    trunks: &[Trunk],
    is_up: impl Fn(&Trunk) -> bool,
    mut draw: impl FnMut(u32) -> u32,
) -> Vec<usize> {
    let ordered = weighted_order(
        (0..trunks.len()).collect(),
        |&i| trunks[i].priority,
        |&i| trunks[i].weight,
        &mut draw,
    );
    let (mut up, down): (Vec<usize>, Vec<usize>) =
        ordered.into_iter().partition(|&i| is_up(&trunks[i]));
    up.extend(down);
    up
}

/// One trunk's health as the pings tell it; see [`Health::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// No ping yet (or pings are off): treated as up.
    Unknown,
    Up,
    Down,
}

/// The hysteresis of one trunk's pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    /// Unanswered pings in a row.
    pub failures: u32,
    /// Answered pings in a row.
    pub successes: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: HealthState::Unknown,
            failures: 0,
            successes: 0,
        }
    }
}

impl Health {
    /// Whether calls should prefer this trunk.
    pub fn is_up(&self) -> bool {
        self.state != HealthState::Down
    }

    /// Counts one ping (`answered`: any response came); returns the new state when it
    /// changed. Down after `down_after` failures in a row; up after `up_after` successes in a
    /// row (a trunk never pinged before is up at its first answer).
    pub fn record(
        &mut self,
        answered: bool,
        down_after: u32,
        up_after: u32,
    ) -> Option<HealthState> {
        let before = self.state;
        if answered {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == HealthState::Unknown
                || (self.state == HealthState::Down && self.successes >= up_after)
            {
                self.state = HealthState::Up;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state != HealthState::Down && self.failures >= down_after {
                self.state = HealthState::Down;
            }
        }
        (self.state != before).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPort;

    fn trunk(name: &str, priority: u32, weight: u32) -> Trunk {
        let mut t = Trunk::new(name, HostPort::new("127.0.0.1", 5060));
        t.priority = priority;
        t.weight = weight;
        t
    }

    #[test]
    fn carrier_answers_that_fail_over_and_those_that_do_not() {
        for code in [
            None,
            Some(408),
            Some(500),
            Some(502),
            Some(503),
            Some(504),
            Some(606),
        ] {
            assert!(fails_over(code), "{code:?} should fail over");
        }
        for code in [
            Some(486),
            Some(600),
            Some(603),
            Some(604),
            Some(404),
            Some(484),
            Some(487),
            Some(480),
            Some(403),
            Some(302),
        ] {
            assert!(!fails_over(code), "{code:?} must not fail over");
        }
    }

    #[test]
    fn priority_first_then_weight_and_down_trunks_last() {
        let trunks = [trunk("b", 2, 1), trunk("a1", 1, 1), trunk("a2", 1, 1)];
        // A draw of 0 takes the first by running sum within each priority.
        let got = order(&trunks, |_| true, |_| 0);
        assert_eq!(got, vec![1, 2, 0]);
        let got = order(&trunks, |t| t.name != "a1", |_| 0);
        assert_eq!(got, vec![2, 0, 1], "a down trunk goes after every up one");
    }

    #[test]
    fn weights_split_the_first_choice() {
        let trunks = [trunk("heavy", 1, 3), trunk("light", 1, 1)];
        // Draws 1..=4 over weights 3:1: the first place goes 3 times to heavy, once to light.
        let mut firsts = [0u32; 2];
        for r in 1..=4u32 {
            let mut once = Some(r);
            let got = order(&trunks, |_| true, |_| once.take().unwrap_or(0));
            firsts[got[0]] += 1;
        }
        assert_eq!(firsts, [3, 1]);
    }

    #[test]
    fn pings_go_down_after_n_failures_and_up_after_m_answers() {
        let mut h = Health::default();
        assert!(h.is_up());
        assert_eq!(h.record(true, 3, 2), Some(HealthState::Up));
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None, "an answer resets the failures");
        for _ in 0..2 {
            assert_eq!(h.record(false, 3, 2), None);
        }
        assert_eq!(h.record(false, 3, 2), Some(HealthState::Down));
        assert!(!h.is_up());
        assert_eq!(h.record(true, 3, 2), None, "one answer is not enough");
        assert_eq!(h.record(true, 3, 2), Some(HealthState::Up));
    }
}
