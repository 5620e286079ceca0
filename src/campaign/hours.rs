//! Business hours: whether a campaign's schedule is open at an instant, and when it next
//! opens or closes, in the schedule's own IANA zone.
//!
//! [`CompiledHours`] checks and parses a [`BusinessHoursSpec`] once (zone, intervals,
//! closed dates); its queries then cost a few time-zone lookups. No I/O, no clock: the
//! caller passes `now` (ms since the epoch, UTC).
//!
//! How wall-clock intervals become instants:
//! - each interval is `[start, end)` of one local date; "24:00" ends at the next midnight;
//!   intervals that touch (Mon 22:00–24:00 then Tue 00:00–06:00) chain into one opening;
//! - a closed date drops that date's own intervals (the day before still runs to 24:00);
//! - spring-forward gap: an edge the clock skips (02:30 on a night that jumps 02:00→03:00)
//!   becomes the first instant after the gap, i.e. the jump itself; an interval lying
//!   wholly inside the gap is empty that day;
//! - fall-back overlap: an edge the clock shows twice opens at its first showing and
//!   closes at its last, so an interval honours both passes of the repeated hour as one
//!   opening (01:00–02:00 on a 02:00→01:00 night is open two real hours; an interval
//!   ending at 01:30 closes at the second 01:30).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;

use super::model::{parse_hhmm, BusinessHoursSpec, Millis, ModelError};

const DAY_MINUTES: u32 = 24 * 60;
/// Days a search walks past today (plus one per closed date ahead) before it concludes the
/// schedule never opens (or never closes). A week with any opening opens within 8 days;
/// the margin covers a DST day that empties an interval.
const SEARCH_DAYS: u64 = 16;

/// A business-hours schedule, parsed once, evaluated cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledHours {
    tz: Tz,
    /// Sorted, merged `[start, end)` spans in minutes after midnight; index 0 = Monday.
    week: [Vec<(u32, u32)>; 7],
    closed: BTreeSet<NaiveDate>,
}

impl CompiledHours {
    /// Checks the spec (zone, intervals, dates; see [`BusinessHoursSpec::validate`]) and
    /// compiles it.
    pub fn compile(spec: &BusinessHoursSpec) -> Result<CompiledHours, ModelError> {
        spec.validate()?;
        let tz: Tz = spec
            .timezone
            .trim()
            .parse()
            .map_err(|_| ModelError::Invalid {
                field: "timezone",
                reason: format!("{:?} is not an IANA time zone", spec.timezone),
            })?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, intervals) in spec.week.iter().enumerate() {
            let mut spans = Vec::with_capacity(intervals.len());
            for hours in intervals {
                // validate() has checked both; this keeps a bad value from panicking anyway.
                let (Some(start), Some(end)) = (parse_hhmm(&hours.start), parse_hhmm(&hours.end))
                else {
                    return Err(ModelError::Invalid {
                        field: "week",
                        reason: format!(
                            "day {day}: {:?}-{:?} is not HH:MM-HH:MM",
                            hours.start, hours.end
                        ),
                    });
                };
                spans.push((start, end));
            }
            week[day] = merge(spans);
        }
        let mut closed = BTreeSet::new();
        for date in &spec.closed_dates {
            let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| {
                ModelError::Invalid {
                    field: "closed_dates",
                    reason: format!("{date:?} is not YYYY-MM-DD"),
                }
            })?;
            closed.insert(date);
        }
        Ok(CompiledHours { tz, week, closed })
    }

    /// Open all the time (a campaign without business hours).
    pub fn always_open() -> CompiledHours {
        CompiledHours::daily(Tz::UTC, 0, DAY_MINUTES)
    }

    /// The same `[start, end)` minutes every day in `tz` (the contact window's shape).
    /// Empty (never open) unless `start < end <= 1440`.
    pub fn daily(tz: Tz, start: u32, end: u32) -> CompiledHours {
        let spans = if start < end && end <= DAY_MINUTES {
            vec![(start, end)]
        } else {
            Vec::new()
        };
        CompiledHours {
            tz,
            week: std::array::from_fn(|_| spans.clone()),
            closed: BTreeSet::new(),
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Open at `now`.
    pub fn is_open(&self, now: Millis) -> bool {
        self.is_open_in(self.tz, now)
    }

    /// The first instant `>= now` at which the schedule is open (`now` itself when open);
    /// `None` if it never opens (empty week, or only closed dates ahead).
    pub fn next_open(&self, now: Millis) -> Option<Millis> {
        self.next_open_in(self.tz, now)
    }

    /// The first instant `>= now` at which the schedule is closed (`now` itself when
    /// closed); `None` if it never closes (open 24/7 with no closed date ahead).
    pub fn next_close(&self, now: Millis) -> Option<Millis> {
        self.next_close_in(self.tz, now)
    }

    /// [`is_open`](Self::is_open) with the week read in `tz` instead of the schedule's zone.
    pub(crate) fn is_open_in(&self, tz: Tz, now: Millis) -> bool {
        let Some(today) = local_date(tz, now) else {
            return false;
        };
        // An interval of yesterday may run past midnight ("24:00", or a fall-back
        // overlap); one of tomorrow may start before it when the clock falls back across
        // midnight.
        [today.pred_opt(), Some(today), today.succ_opt()]
            .into_iter()
            .flatten()
            .any(|date| self.spans_at(tz, date).any(|(a, b)| a <= now && now < b))
    }

    pub(crate) fn next_open_in(&self, tz: Tz, now: Millis) -> Option<Millis> {
        if self.week.iter().all(Vec::is_empty) {
            return None;
        }
        let first = local_date(tz, now)?.pred_opt()?;
        let horizon = SEARCH_DAYS + self.closed.range(first..).count() as u64;
        for date in first.iter_days().take(horizon as usize) {
            for (a, b) in self.spans_at(tz, date) {
                if a <= now && now < b {
                    return Some(now);
                }
                if a > now {
                    // Spans come in start order (dates ascending, merged within a day).
                    return Some(a);
                }
            }
        }
        None
    }

    pub(crate) fn next_close_in(&self, tz: Tz, now: Millis) -> Option<Millis> {
        let first = local_date(tz, now)?.pred_opt()?;
        if self.is_full_week() {
            if !self.is_open_in(tz, now) {
                return Some(now);
            }
            // Only a closed date closes it: the first one whose midnight is still ahead.
            return self
                .closed
                .range(first..)
                .filter_map(|&date| instant(tz, date, 0, false))
                .find(|&at| at > now);
        }
        let mut end = now;
        for date in first.iter_days().take(SEARCH_DAYS as usize) {
            for (a, b) in self.spans_at(tz, date) {
                if b <= end {
                    continue;
                }
                if a > end {
                    return Some(end);
                }
                end = b;
            }
        }
        // Closed now and nothing ahead (end == now), or, for a pathological schedule still
        // chained after the whole search, the end of what was seen rather than "never".
        Some(end)
    }

    fn is_full_week(&self) -> bool {
        self.week.iter().all(|spans| spans == &[(0, DAY_MINUTES)])
    }

    /// The non-empty openings of one local date as `[open, close)` instants, in order.
    fn spans_at(&self, tz: Tz, date: NaiveDate) -> impl Iterator<Item = (Millis, Millis)> + '_ {
        let spans: &[(u32, u32)] = if self.closed.contains(&date) {
            &[]
        } else {
            &self.week[date.weekday().num_days_from_monday() as usize]
        };
        spans.iter().filter_map(move |&(start, end)| {
            let a = instant(tz, date, start, false)?;
            let b = instant(tz, date, end, true)?;
            (a < b).then_some((a, b))
        })
    }
}

/// Sorts spans and merges those that overlap or touch.
fn merge(mut spans: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    spans.retain(|(start, end)| start < end);
    spans.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The local calendar date in `tz` at `now`; `None` outside chrono's range.
pub(crate) fn local_date(tz: Tz, now: Millis) -> Option<NaiveDate> {
    Some(
        DateTime::from_timestamp_millis(now)?
            .with_timezone(&tz)
            .date_naive(),
    )
}

/// The instant the wall clock of `tz` shows `minute` (0..=1440) on `date`: its first
/// showing, or its last when `last` (fall-back overlap); the end of the gap when the clock
/// skips it (spring forward).
fn instant(tz: Tz, date: NaiveDate, minute: u32, last: bool) -> Option<Millis> {
    let (date, minute) = if minute >= DAY_MINUTES {
        (date.succ_opt()?, minute - DAY_MINUTES)
    } else {
        (date, minute)
    };
    let naive = date.and_hms_opt(minute / 60, minute % 60, 0)?;
    resolve(tz, naive, last)
}

fn resolve(tz: Tz, naive: NaiveDateTime, last: bool) -> Option<Millis> {
    let local = tz.from_local_datetime(&naive);
    let at = if last {
        local.latest()
    } else {
        local.earliest()
    };
    match at {
        Some(at) => Some(at.timestamp_millis()),
        None => end_of_gap(tz, naive),
    }
}

/// `naive` falls in a gap of `tz`'s clock: the first instant after it, found by widening
/// then halving the search (gaps last minutes to a day; seconds precision).
fn end_of_gap(tz: Tz, naive: NaiveDateTime) -> Option<Millis> {
    let exists = |at: NaiveDateTime| tz.from_local_datetime(&at).earliest().is_some();
    let mut lo = naive; // skipped by the clock
    let mut step = TimeDelta::try_minutes(1)?;
    let mut hi = naive.checked_add_signed(step)?;
    while !exists(hi) {
        lo = hi;
        step = step.checked_mul(2)?;
        if step > TimeDelta::try_days(3)? {
            return None;
        }
        hi = naive.checked_add_signed(step)?;
    }
    let second = TimeDelta::try_seconds(1)?;
    while hi - lo > second {
        let mid = lo + (hi - lo) / 2;
        if exists(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(tz.from_local_datetime(&hi).earliest()?.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::model::OpenHours;

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .expect("local time exists")
            .timestamp_millis()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        ms(Tz::UTC, y, mo, d, h, mi)
    }

    fn hours(start: &str, end: &str) -> Vec<OpenHours> {
        vec![OpenHours {
            start: start.into(),
            end: end.into(),
        }]
    }

    /// Every day the same interval, optionally with closed dates.
    fn spec(tz: &str, week: [Vec<OpenHours>; 7], closed: &[&str]) -> CompiledHours {
        CompiledHours::compile(&BusinessHoursSpec {
            name: "test".into(),
            timezone: tz.into(),
            week,
            closed_dates: closed.iter().map(|s| s.to_string()).collect(),
        })
        .expect("valid spec")
    }

    fn every_day(tz: &str, start: &str, end: &str) -> CompiledHours {
        spec(tz, std::array::from_fn(|_| hours(start, end)), &[])
    }

    const MINUTE: Millis = 60_000;

    /// Open from exactly `open` (closed a minute before) to exactly `close` (open a
    /// minute before).
    fn assert_edges(h: &CompiledHours, open: Millis, close: Millis) {
        assert!(!h.is_open(open - 1), "open before {open}");
        assert!(h.is_open(open), "closed at {open}");
        assert!(h.is_open(close - 1), "closed before {close}");
        assert!(!h.is_open(close), "open at {close}");
        assert_eq!(h.next_open(open - MINUTE), Some(open));
        assert_eq!(h.next_close(open), Some(close));
        assert_eq!(h.next_close(close - MINUTE), Some(close));
    }

    #[test]
    fn new_york_edges_hold_on_wall_clock_around_both_changes() {
        let ny = Tz::America__New_York;
        let h = every_day("America/New_York", "09:00", "17:00");
        // Spring forward 2026-03-08 (02:00 → 03:00): 09:00 is 14:00Z before, 13:00Z after.
        for day in 7..=9 {
            assert_edges(&h, ms(ny, 2026, 3, day, 9, 0), ms(ny, 2026, 3, day, 17, 0));
        }
        assert_eq!(ms(ny, 2026, 3, 7, 9, 0), utc(2026, 3, 7, 14, 0));
        assert_eq!(ms(ny, 2026, 3, 8, 9, 0), utc(2026, 3, 8, 13, 0));
        // Fall back 2026-11-01 (02:00 → 01:00).
        assert_edges(&h, ms(ny, 2026, 10, 31, 9, 0), ms(ny, 2026, 10, 31, 17, 0));
        for day in 1..=2 {
            assert_edges(
                &h,
                ms(ny, 2026, 11, day, 9, 0),
                ms(ny, 2026, 11, day, 17, 0),
            );
        }
        assert_eq!(ms(ny, 2026, 11, 1, 9, 0), utc(2026, 11, 1, 14, 0));
        // From Saturday evening the next opening is Sunday 09:00 EDT... after the change.
        assert_eq!(
            h.next_open(ms(ny, 2026, 3, 7, 18, 0)),
            Some(utc(2026, 3, 8, 13, 0))
        );
    }

    #[test]
    fn berlin_edges_hold_on_wall_clock_around_both_changes() {
        let berlin = Tz::Europe__Berlin;
        let h = every_day("Europe/Berlin", "08:30", "20:00");
        for (mo, days) in [(3, 28..=30), (10, 24..=26)] {
            for day in days {
                assert_edges(
                    &h,
                    ms(berlin, 2026, mo, day, 8, 30),
                    ms(berlin, 2026, mo, day, 20, 0),
                );
            }
        }
        assert_eq!(ms(berlin, 2026, 3, 28, 8, 30), utc(2026, 3, 28, 7, 30));
        assert_eq!(ms(berlin, 2026, 3, 29, 8, 30), utc(2026, 3, 29, 6, 30));
        assert_eq!(ms(berlin, 2026, 10, 25, 8, 30), utc(2026, 10, 25, 7, 30));
    }

    #[test]
    fn spring_gap_edges_resolve_to_the_jump() {
        // Berlin 2026-03-29: 02:00 CET → 03:00 CEST at 01:00Z.
        let jump = utc(2026, 3, 29, 1, 0);
        let h = every_day("Europe/Berlin", "02:30", "04:00");
        assert!(!h.is_open(jump - 1));
        assert!(h.is_open(jump));
        assert_eq!(h.next_open(jump - 3_600_000), Some(jump));
        assert_eq!(h.next_close(jump), Some(utc(2026, 3, 29, 2, 0)));
        // Wholly inside the gap: empty that day, normal the next.
        let h = every_day("Europe/Berlin", "02:10", "02:50");
        assert_eq!(
            h.next_open(utc(2026, 3, 28, 23, 0)),
            Some(utc(2026, 3, 30, 0, 10))
        );
        // New York: an interval ending in the gap ends at the jump (07:00Z).
        let h = every_day("America/New_York", "01:00", "02:30");
        assert_eq!(
            h.next_close(utc(2026, 3, 8, 6, 30)),
            Some(utc(2026, 3, 8, 7, 0))
        );
    }

    #[test]
    fn fall_back_overlap_covers_both_passes() {
        // New York 2026-11-01: 01:00–02:00 happens twice (05:00Z–06:00Z EDT, 06:00Z–07:00Z EST).
        let h = every_day("America/New_York", "01:00", "02:00");
        assert_eq!(
            h.next_open(utc(2026, 11, 1, 4, 0)),
            Some(utc(2026, 11, 1, 5, 0))
        );
        assert!(h.is_open(utc(2026, 11, 1, 6, 30)));
        assert_eq!(
            h.next_close(utc(2026, 11, 1, 5, 0)),
            Some(utc(2026, 11, 1, 7, 0))
        );
        // An interval ending inside the overlap closes at its second showing.
        let h = every_day("America/New_York", "00:00", "01:30");
        assert_eq!(
            h.next_close(utc(2026, 11, 1, 4, 0)),
            Some(utc(2026, 11, 1, 6, 30))
        );
        // One starting inside it opens at its first showing.
        let h = every_day("America/New_York", "01:30", "03:00");
        assert_eq!(
            h.next_open(utc(2026, 11, 1, 0, 0)),
            Some(utc(2026, 11, 1, 5, 30))
        );
    }

    #[test]
    fn next_open_skips_the_weekend_and_a_closed_date() {
        let ny = Tz::America__New_York;
        let weekdays = || -> [Vec<OpenHours>; 7] {
            std::array::from_fn(|d| {
                if d < 5 {
                    hours("09:00", "17:00")
                } else {
                    vec![]
                }
            })
        };
        let h = spec("America/New_York", weekdays(), &[]);
        // Friday 2026-11-20 17:00 → Monday 11-23 09:00.
        let friday_close = ms(ny, 2026, 11, 20, 17, 0);
        assert_eq!(
            h.next_close(ms(ny, 2026, 11, 20, 12, 0)),
            Some(friday_close)
        );
        assert_eq!(h.next_open(friday_close), Some(ms(ny, 2026, 11, 23, 9, 0)));
        assert!(!h.is_open(ms(ny, 2026, 11, 21, 12, 0)));
        // With Monday closed (and Tuesday too), Wednesday.
        let h = spec(
            "America/New_York",
            weekdays(),
            &["2026-11-23", "2026-11-24"],
        );
        assert_eq!(h.next_open(friday_close), Some(ms(ny, 2026, 11, 25, 9, 0)));
        assert!(!h.is_open(ms(ny, 2026, 11, 23, 12, 0)));
        assert_eq!(
            h.next_close(ms(ny, 2026, 11, 23, 12, 0)),
            Some(ms(ny, 2026, 11, 23, 12, 0))
        );
    }

    #[test]
    fn never_open_schedules_say_so() {
        let h = spec("Europe/Berlin", Default::default(), &[]);
        let now = utc(2026, 6, 1, 12, 0);
        assert!(!h.is_open(now));
        assert_eq!(h.next_open(now), None);
        assert_eq!(h.next_close(now), Some(now));
        assert_eq!(CompiledHours::daily(Tz::UTC, 600, 600).next_open(now), None);
    }

    #[test]
    fn midnight_chains_and_24_00_means_midnight() {
        let berlin = Tz::Europe__Berlin;
        let mut week: [Vec<OpenHours>; 7] = Default::default();
        week[0] = hours("22:00", "24:00"); // Monday
        week[1] = hours("00:00", "06:00"); // Tuesday
        let h = spec("Europe/Berlin", week, &[]);
        let monday_22 = ms(berlin, 2026, 6, 1, 22, 0);
        assert!(h.is_open(ms(berlin, 2026, 6, 1, 23, 59)));
        assert!(h.is_open(ms(berlin, 2026, 6, 2, 0, 0)));
        assert_eq!(h.next_close(monday_22), Some(ms(berlin, 2026, 6, 2, 6, 0)));
        // Without Tuesday, 24:00 closes at midnight.
        let mut week: [Vec<OpenHours>; 7] = Default::default();
        week[0] = hours("22:00", "24:00");
        let h = spec("Europe/Berlin", week, &[]);
        assert_eq!(h.next_close(monday_22), Some(ms(berlin, 2026, 6, 2, 0, 0)));
        assert!(!h.is_open(ms(berlin, 2026, 6, 2, 0, 0)));
    }

    #[test]
    fn always_open_never_closes_but_a_full_week_closes_on_its_holiday() {
        let now = utc(2026, 6, 1, 12, 0);
        let always = CompiledHours::always_open();
        assert!(always.is_open(now));
        assert_eq!(always.next_close(now), None);
        assert_eq!(always.next_open(now), Some(now));
        let h = spec(
            "UTC",
            std::array::from_fn(|_| hours("00:00", "24:00")),
            &["2026-06-03"],
        );
        assert_eq!(h.next_close(now), Some(utc(2026, 6, 3, 0, 0)));
        assert_eq!(
            h.next_open(utc(2026, 6, 3, 5, 0)),
            Some(utc(2026, 6, 4, 0, 0))
        );
    }

    #[test]
    fn overlapping_intervals_merge_and_bad_specs_are_refused() {
        let mut week: [Vec<OpenHours>; 7] = Default::default();
        week[0] = vec![
            OpenHours {
                start: "13:00".into(),
                end: "17:00".into(),
            },
            OpenHours {
                start: "09:00".into(),
                end: "12:00".into(),
            },
            OpenHours {
                start: "11:00".into(),
                end: "13:00".into(),
            },
        ];
        let h = spec("UTC", week.clone(), &[]);
        assert_eq!(h.week[0], vec![(540, 1020)]);
        let bad = |tz: &str, week: [Vec<OpenHours>; 7], closed: &[&str]| {
            CompiledHours::compile(&BusinessHoursSpec {
                name: "x".into(),
                timezone: tz.into(),
                week,
                closed_dates: closed.iter().map(|s| s.to_string()).collect(),
            })
            .unwrap_err()
        };
        assert!(bad("Mars/Olympus", week.clone(), &[])
            .to_string()
            .starts_with("timezone"));
        assert!(bad("UTC", week.clone(), &["2026-13-01"])
            .to_string()
            .starts_with("closed_dates"));
        week[2] = hours("17:00", "09:00");
        assert!(bad("UTC", week, &[]).to_string().starts_with("week"));
    }

    #[test]
    fn out_of_range_instants_do_not_panic() {
        let h = every_day("Europe/Berlin", "09:00", "17:00");
        for now in [i64::MIN, i64::MAX, -1] {
            let _ = (h.is_open(now), h.next_open(now), h.next_close(now));
        }
    }
}
