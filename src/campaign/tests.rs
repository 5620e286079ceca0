//! Scheduler tests with a fake clock: a small simulated driver runs the core the way the
//! tokio driver will (tick at `wake_at` and when a call ends) and checks pace,
//! concurrency, trunk limits, business hours, contact windows, retries and lifecycles.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::TimeZone;
use chrono_tz::Tz;

use super::contact_tz::zones_for_contact;
use super::hours::CompiledHours;
use super::model::*;
use super::retry::{after_attempt, complete_due, AttemptResult};
use super::scheduler::{CampaignView, Candidate, Scheduler, Tick, OVERDUE_GRACE_MS};

const SEC: Millis = 1000;
const MIN: Millis = 60 * SEC;
const HOUR: Millis = 60 * MIN;
/// 2026-06-10 00:00 UTC, a Wednesday.
const T0: Millis = 1_781_049_600_000;

fn campaign(status: CampaignStatus, settings: CampaignSettings) -> Campaign {
    Campaign {
        id: 1,
        status,
        settings,
        created_at: 0,
        updated_at: 0,
        started_at: None,
        finished_at: None,
    }
}

fn settings(pace: f64, max_concurrent: i64) -> CampaignSettings {
    CampaignSettings {
        name: "sim".into(),
        pace,
        max_concurrent,
        ..CampaignSettings::default()
    }
}

/// Trunk limits of the simulated driver.
#[derive(Clone, Copy, Default)]
struct Trunk {
    channels: Option<u32>,
    cps: Option<u32>,
}

/// Endless contacts, calls of a fixed length: what a pace run saw.
struct PaceRun {
    starts: Vec<Millis>,
    max_live: usize,
}

/// An edit of the campaign at a given time (the driver then ticks at once).
type Edit = Option<(Millis, fn(&mut Campaign))>;

/// Runs `campaign` from `from` to `until` with an endless supply of due contacts.
fn pace_run(
    campaign: &mut Campaign,
    from: Millis,
    until: Millis,
    call_ms: Millis,
    trunk: Trunk,
    edit: Edit,
) -> PaceRun {
    let mut scheduler = Scheduler::new();
    let mut live: BinaryHeap<Reverse<Millis>> = BinaryHeap::new();
    let mut run = PaceRun {
        starts: Vec::new(),
        max_live: 0,
    };
    let mut next_id = 0;
    let mut now = from;
    let mut edit_at = edit.map(|(at, _)| at);
    while now < until {
        while live.peek().is_some_and(|Reverse(end)| *end <= now) {
            live.pop();
        }
        if let Some((at, edit)) = edit {
            if edit_at.is_some() && at <= now {
                edit(campaign);
                edit_at = None;
            }
        }
        let candidates: Vec<Candidate> = (next_id..next_id + 3)
            .map(|id| Candidate { id, zones: vec![] })
            .collect();
        let channels = trunk.channels.map(|c| c.saturating_sub(live.len() as u32));
        let view = CampaignView {
            campaign,
            hours: None,
            live_calls: live.len() as u32,
            trunk_free_channels: channels,
            trunk_cps_allowance: trunk.cps,
            candidates: &candidates,
            next_due_at: None,
            has_unfinished: true,
            pool: None,
        };
        let tick = scheduler.tick(now, &view);
        for id in &tick.dials {
            assert_eq!(*id, next_id, "dials in order");
            next_id += 1;
            run.starts.push(now);
            if call_ms > 0 {
                live.push(Reverse(now + call_ms));
            }
        }
        run.max_live = run.max_live.max(live.len());
        if let Some(channels) = trunk.channels {
            assert!(
                live.len() <= channels as usize,
                "trunk over capacity at {now}"
            );
        }
        let next = [tick.wake_at, live.peek().map(|Reverse(end)| *end), edit_at]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(next) => {
                assert!(next > now, "wake_at {next} is not after {now}");
                now = next;
            }
            None => break,
        }
    }
    run
}

fn simple_run(pace: f64, max_concurrent: i64, call_ms: Millis, trunk: Trunk) -> PaceRun {
    let mut c = campaign(CampaignStatus::Processing, settings(pace, max_concurrent));
    pace_run(&mut c, T0, T0 + HOUR, call_ms, trunk, None)
}

fn assert_within(got: usize, want: f64, what: &str) {
    let ratio = got as f64 / want;
    assert!(
        (0.98..=1.02).contains(&ratio),
        "{what}: {got} calls, wanted {want:.0} ±2 %"
    );
}

#[test]
fn pace_holds_within_two_percent_over_an_hour() {
    for pace in [1.0, 7.5, 60.0, 600.0] {
        let want = pace * 60.0;
        let instant = simple_run(pace, 10_000, 0, Trunk::default());
        assert_within(
            instant.starts.len(),
            want,
            &format!("pace {pace}, instant calls"),
        );
        // 45 s calls with room enough: pace still rules.
        let needed = (pace * 45.0 / 60.0).ceil() as i64 + 1;
        let long = simple_run(pace, needed, 45 * SEC, Trunk::default());
        assert_within(long.starts.len(), want, &format!("pace {pace}, 45 s calls"));
        assert!(long.max_live as i64 <= needed);
        // Starts are spread evenly: no two closer than the pace allows (1 ms rounding).
        let spacing = (60_000.0 / pace) as Millis - 1;
        assert!(
            instant.starts.windows(2).all(|w| w[1] - w[0] >= spacing),
            "pace {pace}: a burst"
        );
    }
}

#[test]
fn max_concurrent_caps_live_calls_and_the_rate() {
    // 600/min of 45 s calls would need 450 live calls; 100 allowed → 100 per 45 s.
    let run = simple_run(600.0, 100, 45 * SEC, Trunk::default());
    assert!(run.max_live <= 100, "{} live", run.max_live);
    assert_eq!(run.max_live, 100);
    assert_within(
        run.starts.len(),
        100.0 * 3600.0 / 45.0,
        "max_concurrent 100",
    );
}

#[test]
fn trunk_channels_and_cps_cap_the_campaign() {
    let run = simple_run(
        600.0,
        1000,
        45 * SEC,
        Trunk {
            channels: Some(20),
            cps: None,
        },
    );
    assert_eq!(run.max_live, 20);
    assert_within(run.starts.len(), 20.0 * 3600.0 / 45.0, "20 trunk channels");
    let blocked = simple_run(
        600.0,
        1000,
        45 * SEC,
        Trunk {
            channels: None,
            cps: Some(0),
        },
    );
    assert!(blocked.starts.is_empty());
}

#[test]
fn call_interval_spaces_starts_and_the_stricter_rule_wins() {
    for (pace, interval, spacing) in [(60.0, 5, 5 * SEC), (6.0, 5, 10 * SEC), (60.0, 0, SEC)] {
        let mut s = settings(pace, 100);
        s.call_interval_secs = interval;
        let mut c = campaign(CampaignStatus::Processing, s);
        let run = pace_run(&mut c, T0, T0 + HOUR, 0, Trunk::default(), None);
        assert!(run.starts.windows(2).all(|w| w[1] - w[0] >= spacing));
        assert_within(
            run.starts.len(),
            (HOUR / spacing) as f64,
            &format!("pace {pace}, interval {interval}"),
        );
    }
}

#[test]
fn a_pace_change_applies_from_the_next_tick() {
    let mut c = campaign(CampaignStatus::Processing, settings(6.0, 100));
    let change = T0 + 10 * MIN + 3 * SEC; // 3 s after a start, 7 s before the next
    let raise: fn(&mut Campaign) = |c| c.settings.pace = 600.0;
    let until = T0 + 20 * MIN;
    let run = pace_run(
        &mut c,
        T0,
        until,
        0,
        Trunk::default(),
        Some((change, raise)),
    );
    let before = run.starts.iter().filter(|&&t| t < change).count();
    assert_eq!(before, 61); // T0, every 10 s, T0 + 10 min
                            // The tokens are kept (about 0.3 of a call) and the new rate fills the rest in about
                            // 70 ms: the next start comes long before the old pace's 10 s.
    let first_after = run.starts.iter().find(|&&t| t >= change).copied();
    assert!(
        first_after.is_some_and(|t| t - change <= 100),
        "{first_after:?}"
    );
    let after = run.starts.len() - before;
    let want = 600.0 * (until - change) as f64 / MIN as f64;
    assert_within(after, want, "after raising the pace");
}

/// A campaign of a few real contacts, driven as the tokio driver will.
struct Sim {
    scheduler: Scheduler,
    campaign: Campaign,
    hours: Option<CompiledHours>,
    contacts: Vec<Contact>,
    /// Live calls: (end, contact index).
    live: Vec<(Millis, usize)>,
    call_ms: Millis,
    /// Each attempt's result, per contact, in order (Human once they run out).
    script: Vec<Vec<AttemptResult>>,
    /// Dial times, per contact.
    dials: Vec<Vec<Millis>>,
    statuses: Vec<(Millis, CampaignStatus)>,
}

fn contact(id: i64, phone: &str) -> Contact {
    Contact {
        id,
        campaign_id: 1,
        phone: phone.into(),
        name: String::new(),
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

impl Sim {
    fn new(status: CampaignStatus, settings: CampaignSettings, phones: &[&str]) -> Sim {
        Sim {
            scheduler: Scheduler::new(),
            campaign: campaign(status, settings),
            hours: None,
            contacts: phones
                .iter()
                .enumerate()
                .map(|(i, phone)| contact(i as i64 + 1, phone))
                .collect(),
            live: Vec::new(),
            call_ms: 0,
            script: vec![Vec::new(); phones.len()],
            dials: vec![Vec::new(); phones.len()],
            statuses: Vec::new(),
        }
    }

    /// One tick at `now`, with the driver's bookkeeping before and after.
    fn tick(&mut self, now: Millis) -> Tick {
        let settings = self.campaign.settings.clone();
        // Calls that ended.
        let (ended, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.live)
            .into_iter()
            .partition(|(end, _)| *end <= now);
        self.live = live;
        for (end, i) in ended {
            let result = self.script[i]
                .get(self.contacts[i].attempts as usize)
                .copied()
                .unwrap_or(AttemptResult::Human);
            after_attempt(&settings, &self.contacts[i], result, end)
                .apply_to(&mut self.contacts[i]);
        }
        for c in &mut self.contacts {
            if let Some(done) = complete_due(&settings, c, now) {
                done.apply_to(c);
            }
        }
        let due = |c: &Contact| {
            matches!(c.status, ContactStatus::Pending | ContactStatus::Retry)
                && c.next_attempt_at.is_none_or(|at| at <= now)
        };
        let candidates: Vec<Candidate> = self
            .contacts
            .iter()
            .filter(|c| due(c))
            .map(|c| Candidate {
                id: c.id,
                zones: zones_for_contact(c, &settings.default_country),
            })
            .collect();
        let next_due_at = self
            .contacts
            .iter()
            .filter(|c| matches!(c.status, ContactStatus::Retry | ContactStatus::Called))
            .filter_map(|c| c.next_attempt_at)
            .filter(|&at| at > now)
            .min();
        let view = CampaignView {
            campaign: &self.campaign,
            hours: self.hours.as_ref(),
            live_calls: self.live.len() as u32,
            trunk_free_channels: None,
            trunk_cps_allowance: None,
            candidates: &candidates,
            next_due_at,
            has_unfinished: self.contacts.iter().any(|c| !c.status.is_final()),
            pool: None,
        };
        let tick = self.scheduler.tick(now, &view);
        for &id in &tick.dials {
            let i = self
                .contacts
                .iter()
                .position(|c| c.id == id)
                .expect("a known contact");
            self.contacts[i].status = ContactStatus::Dialing;
            self.contacts[i].last_attempt_at = Some(now);
            self.dials[i].push(now);
            self.live.push((now + self.call_ms, i));
        }
        assert!(self.live.len() as i64 <= settings.max_concurrent);
        if let Some(status) = tick.status_change {
            self.campaign.status = status;
            self.statuses.push((now, status));
        }
        tick
    }

    /// Ticks from `from` as the driver would until `until` or nothing is left to wait for.
    fn run(&mut self, from: Millis, until: Millis) {
        let mut now = from;
        for _ in 0..100_000 {
            let tick = self.tick(now);
            // A dialed call of length 0 ends at once: the driver ticks again now.
            let call_end = self.live.iter().map(|(end, _)| *end).min();
            let next = [tick.wake_at, call_end].into_iter().flatten().min();
            match next {
                Some(next) if next <= until => now = next.max(now),
                _ => return,
            }
        }
        panic!("the simulation did not settle");
    }
}

#[test]
fn retries_come_at_the_retry_interval_and_stop_on_an_answer() {
    let mut s = settings(60.0, 5);
    s.max_retries = 2;
    s.retry_interval = Interval::new(30, IntervalUnit::Minutes);
    let mut sim = Sim::new(CampaignStatus::Processing, s, &["+12127365000"]);
    sim.script[0] = vec![
        AttemptResult::Busy,
        AttemptResult::NoAnswer,
        AttemptResult::Human,
    ];
    sim.run(T0, T0 + 4 * HOUR);
    assert_eq!(sim.dials[0], vec![T0, T0 + 30 * MIN, T0 + 60 * MIN]);
    assert_eq!(sim.contacts[0].status, ContactStatus::Answered);
    assert_eq!(
        sim.statuses,
        vec![(T0 + 60 * MIN, CampaignStatus::Finished)]
    );
}

#[test]
fn no_retry_without_retries_or_for_busy_when_switched_off() {
    let mut s = settings(60.0, 5);
    s.max_retries = 0;
    let mut sim = Sim::new(CampaignStatus::Processing, s.clone(), &["+12127365000"]);
    sim.script[0] = vec![AttemptResult::NoAnswer];
    sim.run(T0, T0 + 4 * HOUR);
    assert_eq!(sim.dials[0], vec![T0]);
    assert_eq!(sim.contacts[0].status, ContactStatus::NotAnswered);

    s.max_retries = 2;
    s.retry_on.busy = false;
    let mut sim = Sim::new(
        CampaignStatus::Processing,
        s,
        &["+12127365000", "+12127365001"],
    );
    sim.script[0] = vec![AttemptResult::Busy];
    sim.script[1] = vec![AttemptResult::InvalidNumber];
    sim.run(T0, T0 + 4 * HOUR);
    assert_eq!(sim.dials[0].len(), 1);
    assert_eq!(sim.contacts[0].status, ContactStatus::Rejected);
    assert_eq!(sim.dials[1].len(), 1);
    assert_eq!(sim.contacts[1].status, ContactStatus::Failed);
}

#[test]
fn scheduled_starts_at_exactly_its_start() {
    let start = T0 + 2 * HOUR;
    let mut s = settings(60.0, 5);
    s.schedule_start = Some(start);
    let mut sim = Sim::new(CampaignStatus::Scheduled, s, &["+12127365000"]);
    let tick = sim.tick(T0);
    assert_eq!(tick.dials, Vec::<i64>::new());
    assert_eq!(tick.wake_at, Some(start));
    assert_eq!(tick.status_change, None);
    let tick = sim.tick(start - 1);
    assert!(tick.dials.is_empty());
    let tick = sim.tick(start);
    assert_eq!(tick.status_change, Some(CampaignStatus::Processing));
    assert_eq!(tick.dials, vec![1]);
}

#[test]
fn a_start_missed_by_more_than_the_grace_is_overdue() {
    let start = T0;
    let mut s = settings(60.0, 5);
    s.schedule_start = Some(start);
    // First seen (server just up) within the grace: it starts.
    let mut sim = Sim::new(CampaignStatus::Scheduled, s.clone(), &["+12127365000"]);
    let tick = sim.tick(start + OVERDUE_GRACE_MS);
    assert_eq!(tick.status_change, Some(CampaignStatus::Processing));
    // First seen past the grace: overdue, nothing dialed.
    let mut sim = Sim::new(CampaignStatus::Scheduled, s.clone(), &["+12127365000"]);
    let tick = sim.tick(start + OVERDUE_GRACE_MS + 1);
    assert_eq!(tick.status_change, Some(CampaignStatus::Overdue));
    assert!(tick.dials.is_empty());
    // Overdue stays put until an admin starts it again.
    let tick = sim.tick(start + OVERDUE_GRACE_MS + 2);
    assert_eq!(tick, Tick::default());
    // Watched while it waited, a late tick still starts it.
    let mut sim = Sim::new(CampaignStatus::Scheduled, s, &["+12127365000"]);
    sim.tick(start - MIN);
    let tick = sim.tick(start + HOUR);
    assert_eq!(tick.status_change, Some(CampaignStatus::Processing));
}

#[test]
fn finishes_when_every_contact_is_final_and_no_call_is_live() {
    let mut sim = Sim::new(
        CampaignStatus::Processing,
        settings(60.0, 5),
        &["+12127365000", "+12127365001"],
    );
    sim.call_ms = 40 * SEC;
    let tick = sim.tick(T0);
    assert_eq!(tick.dials, vec![1]);
    let tick = sim.tick(T0 + SEC);
    assert_eq!(tick.dials, vec![2]);
    assert_eq!(sim.tick(T0 + 30 * SEC).status_change, None);
    // Contact 1's call ended, contact 2's is live.
    assert_eq!(sim.tick(T0 + 40 * SEC).status_change, None);
    let tick = sim.tick(T0 + 41 * SEC);
    assert_eq!(tick.status_change, Some(CampaignStatus::Finished));
    assert_eq!(tick.wake_at, None);
}

#[test]
fn called_contacts_keep_the_campaign_open_until_completed() {
    let mut s = settings(60.0, 5);
    s.completion_timeout = Interval::new(10, IntervalUnit::Minutes);
    let mut sim = Sim::new(CampaignStatus::Processing, s, &["+12127365000"]);
    sim.run(T0, T0 + HOUR);
    assert_eq!(sim.contacts[0].status, ContactStatus::Completed);
    assert_eq!(
        sim.statuses,
        vec![(T0 + 10 * MIN, CampaignStatus::Finished)]
    );
}

#[test]
fn a_paused_campaign_dials_nothing_from_the_next_tick() {
    let mut sim = Sim::new(
        CampaignStatus::Processing,
        settings(60.0, 5),
        &["+12127365000", "+12127365001", "+12127365002"],
    );
    sim.call_ms = 10 * SEC;
    assert_eq!(sim.tick(T0).dials, vec![1]);
    sim.campaign.status = CampaignStatus::Paused;
    let tick = sim.tick(T0 + SEC);
    assert_eq!(tick, Tick::default());
    sim.run(T0 + SEC, T0 + HOUR);
    assert_eq!(sim.dials.iter().map(Vec::len).sum::<usize>(), 1);
    // Resumed: dials again at once (the bucket filled while paused).
    sim.campaign.status = CampaignStatus::Processing;
    assert_eq!(sim.tick(T0 + HOUR).dials, vec![2]);
}

#[test]
fn business_hours_hold_calls_until_they_open() {
    let ny = Tz::America__New_York;
    let at = |d: u32, h: u32, m: u32| {
        ny.with_ymd_and_hms(2026, 3, d, h, m, 0)
            .earliest()
            .expect("exists")
            .timestamp_millis()
    };
    let spec = BusinessHoursSpec {
        name: "weekdays".into(),
        timezone: "America/New_York".into(),
        week: std::array::from_fn(|d| {
            if d < 5 {
                vec![OpenHours {
                    start: "09:00".into(),
                    end: "17:00".into(),
                }]
            } else {
                vec![]
            }
        }),
        closed_dates: vec![],
    };
    let mut sim = Sim::new(
        CampaignStatus::Processing,
        settings(60.0, 5),
        &["+12127365000"],
    );
    sim.hours = Some(CompiledHours::compile(&spec).expect("valid"));
    // Friday 2026-03-06 at 18:00: closed until Monday 09:00 (now EDT, after the change).
    let tick = sim.tick(at(6, 18, 0));
    assert!(tick.dials.is_empty());
    assert_eq!(tick.wake_at, Some(at(9, 9, 0)));
    assert_eq!(sim.tick(at(9, 9, 0)).dials, vec![1]);
}

#[test]
fn each_contact_waits_for_its_own_window() {
    let ny = Tz::America__New_York;
    let at = |h: u32, m: u32| {
        ny.with_ymd_and_hms(2026, 6, 10, h, m, 0)
            .earliest()
            .expect("exists")
            .timestamp_millis()
    };
    let mut s = settings(600.0, 5);
    s.contact_window = Some(ContactWindow {
        start: "09:00".into(),
        end: "21:00".into(),
    });
    let mut sim = Sim::new(
        CampaignStatus::Processing,
        s,
        &["+13105550123", "+12127365000", "+18505550123"],
    );
    sim.call_ms = 5 * SEC;
    // 08:00 in New York: nobody.
    let tick = sim.tick(at(8, 0));
    assert!(tick.dials.is_empty());
    assert_eq!(tick.wake_at, Some(at(9, 0)));
    // 09:00 in New York: the New York number, not Los Angeles (06:00) nor the Florida
    // panhandle (08:00 in its Central part).
    let tick = sim.tick(at(9, 0));
    assert_eq!(tick.dials, vec![2]);
    assert_eq!(tick.wake_at, Some(at(10, 0)));
    let tick = sim.tick(at(10, 0));
    assert_eq!(tick.dials, vec![3]);
    assert_eq!(tick.wake_at, Some(at(12, 0)));
    // Los Angeles at 08:59, then 09:00 local.
    assert!(sim.tick(at(11, 59)).dials.is_empty());
    assert_eq!(sim.tick(at(12, 0)).dials, vec![1]);
}

#[test]
fn an_agent_pool_caps_progressive_at_free_agents_and_lets_predictive_dial_ahead() {
    use super::agents::AgentCounts;
    use super::pacing::{predictive, AbandonWindow, MeasuredRates, PacingInput};
    let pool = |in_flight: u32| PacingInput {
        agents: AgentCounts {
            free: 3,
            wrap_up: 0,
            busy: 2,
            away: 1,
        },
        in_flight,
        waiting: 0,
        rates: MeasuredRates {
            attempts: 100,
            people: 20,
            average_answer_ms: 8_000.0,
            average_handle_ms: 120_000.0,
        },
        window: AbandonWindow::default(),
        cap_pct: 3.0,
    };
    let ahead = predictive(&pool(0)).target_in_flight;
    assert!(ahead > 3, "predictive wants {ahead} calls in flight");
    for (pacing, want) in [(Pacing::Progressive, 3), (Pacing::Predictive, ahead)] {
        let c = campaign(
            CampaignStatus::Processing,
            CampaignSettings {
                pacing,
                connect_to: "sales".into(),
                abandon_message: Some("sorry.wav".into()),
                ..settings(6_000.0, 100)
            },
        );
        let mut scheduler = Scheduler::new();
        let mut now = T0;
        let mut dialed = 0u32;
        // Ten seconds of ticks at a pace of 100 calls a second: the pool is the limit.
        while now < T0 + 10 * SEC {
            let candidates: Vec<Candidate> = (0..5)
                .map(|i| Candidate {
                    id: i64::from(dialed) + i,
                    zones: vec![],
                })
                .collect();
            let view = CampaignView {
                campaign: &c,
                hours: None,
                live_calls: dialed,
                trunk_free_channels: None,
                trunk_cps_allowance: None,
                candidates: &candidates,
                next_due_at: None,
                has_unfinished: true,
                pool: Some(pool(dialed)),
            };
            let tick = scheduler.tick(now, &view);
            dialed += tick.dials.len() as u32;
            now = tick.wake_at.filter(|&at| at > now).unwrap_or(now + 100);
        }
        assert_eq!(dialed, want, "{pacing}");
    }
}

/// One tick of `c` with `live` calls up and 500 contacts due from `next_id` on, no other limit.
fn tick_endless(
    scheduler: &mut Scheduler,
    c: &Campaign,
    now: Millis,
    next_id: i64,
    live: u32,
) -> Tick {
    let candidates: Vec<Candidate> = (next_id..next_id + 500)
        .map(|id| Candidate { id, zones: vec![] })
        .collect();
    let view = CampaignView {
        campaign: c,
        hours: None,
        live_calls: live,
        trunk_free_channels: None,
        trunk_cps_allowance: None,
        candidates: &candidates,
        next_due_at: None,
        has_unfinished: true,
        pool: None,
    };
    scheduler.tick(now, &view)
}

#[test]
fn high_paces_start_groups_at_most_a_quantum_apart_and_hold_the_rate() {
    use super::scheduler::PACE_QUANTUM_MS;
    // 600,000 a minute = 10 a ms: the bucket holds 100 (10 ms' worth).
    let c = campaign(CampaignStatus::Processing, settings(600_000.0, 1_000_000));
    let mut scheduler = Scheduler::new();
    let mut now = T0;
    let (mut started, mut next_id, mut ticks) = (0u64, 0i64, 0u32);
    while now < T0 + 10 * SEC {
        let tick = tick_endless(&mut scheduler, &c, now, next_id, 0);
        assert!(
            tick.dials.len() <= 100,
            "{} starts in one tick",
            tick.dials.len()
        );
        started += tick.dials.len() as u64;
        next_id += tick.dials.len() as i64;
        ticks += 1;
        let at = tick.wake_at.expect("more contacts wait: a wake time");
        assert!(
            at > now && at - now <= PACE_QUANTUM_MS,
            "woke {} ms later",
            at - now
        );
        now = at;
    }
    // 10 s at 10 a ms, within 2 %, in about a thousand ticks rather than 100,000.
    assert!((98_000..=102_000).contains(&started), "{started} starts");
    assert!((900..=1100).contains(&ticks), "{ticks} ticks");
}

#[test]
fn a_late_driver_still_gets_the_pace_and_a_full_campaign_gains_no_burst() {
    // 60,000 a minute = 1 a ms; the bucket holds 10. The driver ticks 7 ms after each wake
    // time (its own work takes that long), so every tick comes 17 ms after the last.
    let mut c = campaign(CampaignStatus::Processing, settings(60_000.0, 1_000_000));
    let mut scheduler = Scheduler::new();
    let mut now = T0;
    let mut next_id = 0i64;
    let mut started = 0usize;
    while now < T0 + 10 * SEC {
        let tick = tick_endless(&mut scheduler, &c, now, next_id, 0);
        assert!(
            tick.dials.len() <= 17,
            "{} starts in one tick",
            tick.dials.len()
        );
        started += tick.dials.len();
        next_id += tick.dials.len() as i64;
        now = tick.wake_at.expect("contacts wait") + 7;
    }
    assert_within(started, 10_000.0, "a driver 7 ms late");

    // Full (max_concurrent reached) for 5 s: no tokens owed, so when room frees the first
    // tick starts a bucket's worth at most, not 5 s of pace.
    c.settings.max_concurrent = 100;
    let until = now + 5 * SEC;
    while now < until {
        let tick = tick_endless(&mut scheduler, &c, now, next_id, 100);
        assert!(tick.dials.is_empty());
        now += 17;
    }
    let tick = tick_endless(&mut scheduler, &c, now, next_id, 0);
    assert!(
        (1..=10).contains(&tick.dials.len()),
        "{} starts after the campaign was full",
        tick.dials.len()
    );
}

#[test]
fn the_starts_a_pace_allows_are_known_before_the_candidates_are_read() {
    // 60,000 a minute = 1 a ms; the bucket holds 10. Each preview is what the tick at the
    // same instant then starts (room and candidates plentiful), late ticks included.
    let c = campaign(CampaignStatus::Processing, settings(60_000.0, 1_000_000));
    let mut scheduler = Scheduler::new();
    assert_eq!(scheduler.starts_allowed(T0, &c), None, "not ticked yet");
    let mut now = T0;
    let mut next_id = 0i64;
    for late in [0, 3, 7, 40, 0, 1] {
        let preview = scheduler.starts_allowed(now, &c);
        let tick = tick_endless(&mut scheduler, &c, now, next_id, 0);
        if now > T0 {
            assert_eq!(preview, Some(tick.dials.len() as u64), "{late} ms late");
        }
        next_id += tick.dials.len() as i64;
        now = tick.wake_at.expect("contacts wait") + late;
    }
    // With a call interval, one start at most, and none before the interval has passed.
    let mut slow = settings(60.0, 100);
    slow.call_interval_secs = 30;
    let c = campaign(CampaignStatus::Processing, slow);
    let mut scheduler = Scheduler::new();
    let first = tick_endless(&mut scheduler, &c, T0, 0, 0);
    assert_eq!(first.dials.len(), 1);
    assert_eq!(scheduler.starts_allowed(T0 + 10 * SEC, &c), Some(0));
    assert_eq!(scheduler.starts_allowed(T0 + 31 * SEC, &c), Some(1));
}
