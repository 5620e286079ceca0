//! The pacer's rules, and a 30-day simulation of a campaign with an agent pool: random
//! answer rates, machine rates and talk times each day (seeded), predictive against
//! progressive on the same days.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

const SEC: Millis = 1000;

fn input(free: u32, busy: u32, in_flight: u32, people: u64, attempts: u64) -> PacingInput {
    PacingInput {
        agents: AgentCounts {
            free,
            wrap_up: 0,
            busy,
            away: 0,
        },
        in_flight,
        waiting: 0,
        rates: MeasuredRates {
            attempts,
            people,
            average_answer_ms: 8_000.0,
            average_handle_ms: 120_000.0,
        },
        window: AbandonWindow::default(),
        cap_pct: 3.0,
    }
}

#[test]
fn the_expected_abandon_ratio_matches_a_hand_computed_case() {
    // n = 2, p = 0.5, k = 1: X = 2 with probability 1/4, one abandoned; E[X] = 1.
    assert!((expected_abandon_ratio(2, 0.5, 1) - 0.25).abs() < 1e-12);
    assert_eq!(expected_abandon_ratio(3, 0.5, 3), 0.0);
    assert_eq!(expected_abandon_ratio(5, 0.0, 1), 0.0);
    // It grows with the calls in flight.
    let mut last = 0.0;
    for n in 1..60 {
        let r = expected_abandon_ratio(n, 0.2, 4);
        assert!(r >= last - 1e-12, "n={n}: {r} < {last}");
        last = r;
    }
}

#[test]
fn too_few_samples_dial_progressively() {
    let decision = predictive(&input(4, 2, 1, 3, 10));
    assert!(!decision.predictive);
    assert_eq!(decision.dials, 3);
    assert_eq!(progressive_dials(&input(4, 2, 1, 3, 10)), 3);
    assert_eq!(progressive_dials(&input(1, 2, 5, 3, 10)), 0);
}

#[test]
fn a_low_answer_rate_dials_several_calls_per_free_agent() {
    let decision = predictive(&input(4, 0, 0, 20, 100)); // p = 0.2
    assert!(decision.predictive);
    assert!(decision.dials > 8, "{decision:?}");
    assert!(expected_abandon_ratio(decision.target_in_flight, 0.2, 4) <= decision.target_ratio);
    assert!(expected_abandon_ratio(decision.target_in_flight + 1, 0.2, 4) > decision.target_ratio);
    // Calls already in flight count.
    let later = predictive(&input(4, 0, decision.target_in_flight, 20, 100));
    assert_eq!(later.dials, 0);
}

#[test]
fn no_free_agent_and_none_about_to_free_dials_nothing() {
    let mut i = input(0, 3, 0, 20, 100);
    i.rates.average_answer_ms = 0.0;
    assert_eq!(predictive(&i).dials, 0);
}

#[test]
fn the_guard_stops_dialing_ahead_as_the_rolling_rate_nears_the_cap() {
    let cap = 3.0;
    let window = |abandoned| AbandonWindow {
        people_answered: 1000,
        abandoned,
    };
    assert!((target_ratio(&window(0), cap) - 0.015).abs() < 1e-12);
    assert!(target_ratio(&window(20), cap) < 0.015);
    assert_eq!(target_ratio(&window(26), cap), 0.0);
    assert_eq!(target_ratio(&window(40), cap), 0.0);
    assert_eq!(target_ratio(&window(0), 0.0), 0.0);
    // At the cap it dials exactly one call per free agent: nobody can be abandoned.
    let mut i = input(4, 0, 0, 20, 100);
    i.window = window(30);
    i.rates.average_answer_ms = 0.0;
    let d = predictive(&i);
    assert_eq!(d.target_in_flight, 4);
    assert_eq!(d.dials, 4);
}

// ---------------------------------------------------------------------------------------
// The 30-day simulation.

const AGENTS: usize = 10;
const WRAP_UP_MS: Millis = 5 * SEC;
const STEP_MS: Millis = 250;
const DAY_MS: Millis = 4 * 3600 * SEC;
const DAYS: usize = 30;
const RING_TIMEOUT_MS: Millis = 20 * SEC;
const QUEUE_TIMEOUT_MS: Millis = 2 * SEC;
/// Attempts the measured rates are taken over (the engine uses the last hour).
const HISTORY: usize = 300;

#[derive(Clone, Copy)]
struct DayParams {
    answer_rate: f64,
    machine_share: f64,
    mean_talk_ms: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Person { talk_ms: Millis },
    Machine,
    NoAnswer,
}

struct Flight {
    /// Answer time, or the ring timeout for a no-answer.
    at: Millis,
    answer_ms: Millis,
    kind: Kind,
}

struct Finished {
    person: bool,
    answered: bool,
    answer_ms: Millis,
}

#[derive(Default, Clone, Copy)]
struct DayResult {
    people: u64,
    abandoned: u64,
    agent_idle_ms: Millis,
    talk_ms: Millis,
    attempts: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Progressive,
    Predictive,
}

fn simulate(strategy: Strategy, days: &[DayParams], seed: u64) -> Vec<DayResult> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut free_at = [0 as Millis; AGENTS];
    let mut busy_until = [0 as Millis; AGENTS];
    let mut flights: Vec<Flight> = Vec::new();
    let mut waiting: VecDeque<(Millis, Millis)> = VecDeque::new(); // (answered at, talk)
    let mut history: VecDeque<Finished> = VecDeque::new();
    let mut talk_history: VecDeque<Millis> = VecDeque::new();
    let mut results = vec![DayResult::default(); days.len()];
    for (d, day) in days.iter().enumerate() {
        let start = d as Millis * DAY_MS;
        let mut t = start;
        while t < start + DAY_MS {
            let today = &mut results[d];
            // Calls that answered or ran out of ring time.
            let mut i = 0;
            while i < flights.len() {
                if flights[i].at > t {
                    i += 1;
                    continue;
                }
                let f = flights.swap_remove(i);
                today.attempts += 1;
                let answered = f.kind != Kind::NoAnswer;
                if let Kind::Person { talk_ms } = f.kind {
                    waiting.push_back((f.at, talk_ms));
                    today.people += 1;
                }
                history.push_back(Finished {
                    person: matches!(f.kind, Kind::Person { .. }),
                    answered,
                    answer_ms: f.answer_ms,
                });
                if history.len() > HISTORY {
                    history.pop_front();
                }
            }
            // People waiting: the longest-idle free agent takes the first; after 2 s they
            // are abandoned.
            while let Some(&(since, talk_ms)) = waiting.front() {
                if t - since > QUEUE_TIMEOUT_MS {
                    waiting.pop_front();
                    today.abandoned += 1;
                    continue;
                }
                let agent = (0..AGENTS)
                    .filter(|&a| free_at[a] <= t)
                    .min_by_key(|&a| free_at[a]);
                let Some(a) = agent else { break };
                waiting.pop_front();
                busy_until[a] = t + talk_ms;
                free_at[a] = t + talk_ms + WRAP_UP_MS;
                today.talk_ms += talk_ms;
                talk_history.push_back(talk_ms);
                if talk_history.len() > HISTORY {
                    talk_history.pop_front();
                }
            }
            // The pacer runs once a second (the engine ticks at least that often).
            if t % SEC == 0 {
                let mut counts = AgentCounts::default();
                for a in 0..AGENTS {
                    if free_at[a] <= t {
                        counts.free += 1;
                    } else if busy_until[a] <= t {
                        counts.wrap_up += 1;
                    } else {
                        counts.busy += 1;
                    }
                }
                let people = history.iter().filter(|h| h.person).count() as u64;
                let answered: Vec<&Finished> = history.iter().filter(|h| h.answered).collect();
                let average_answer_ms = if answered.is_empty() {
                    0.0
                } else {
                    answered.iter().map(|h| h.answer_ms as f64).sum::<f64>() / answered.len() as f64
                };
                let average_talk_ms = if talk_history.is_empty() {
                    0.0
                } else {
                    talk_history.iter().sum::<Millis>() as f64 / talk_history.len() as f64
                };
                let mut window = AbandonWindow::default();
                for r in &results[d.saturating_sub(29)..=d] {
                    window.people_answered += r.people;
                    window.abandoned += r.abandoned;
                }
                let input = PacingInput {
                    agents: counts,
                    in_flight: flights.len() as u32,
                    waiting: waiting.len() as u32,
                    rates: MeasuredRates {
                        attempts: history.len() as u64,
                        people,
                        average_answer_ms,
                        average_handle_ms: handle_ms(average_talk_ms, WRAP_UP_MS),
                    },
                    window,
                    cap_pct: 3.0,
                };
                let dials = match strategy {
                    Strategy::Progressive => progressive_dials(&input),
                    Strategy::Predictive => predictive(&input).dials,
                };
                for _ in 0..dials.min(100) {
                    let answer_ms = rng.random_range(3_000..15_000);
                    let (kind, at) = if rng.random::<f64>() < day.answer_rate {
                        if rng.random::<f64>() < day.machine_share {
                            (Kind::Machine, t + answer_ms)
                        } else {
                            let u: f64 = rng.random::<f64>().max(1e-9);
                            let talk_ms = (-u.ln() * day.mean_talk_ms) as Millis + SEC;
                            (Kind::Person { talk_ms }, t + answer_ms)
                        }
                    } else {
                        (Kind::NoAnswer, t + RING_TIMEOUT_MS)
                    };
                    flights.push(Flight {
                        at,
                        answer_ms,
                        kind,
                    });
                }
            }
            let idle = free_at.iter().filter(|&&f| f <= t).count() as Millis;
            results[d].agent_idle_ms += idle * STEP_MS;
            t += STEP_MS;
        }
    }
    results
}

#[test]
fn predictive_holds_the_abandon_cap_every_day_over_30_days_and_idles_agents_less() {
    let mut rng = StdRng::seed_from_u64(0x0D1A1);
    let days: Vec<DayParams> = (0..DAYS)
        .map(|_| DayParams {
            answer_rate: rng.random_range(0.15..0.6),
            machine_share: rng.random_range(0.1..0.5),
            mean_talk_ms: rng.random_range(60_000.0..300_000.0),
        })
        .collect();
    let predictive_run = simulate(Strategy::Predictive, &days, 7);
    let progressive_run = simulate(Strategy::Progressive, &days, 7);
    let cap = 3.0;
    let mut idle = [0 as Millis; 2];
    let mut talk = [0 as Millis; 2];
    let mut window = AbandonWindow::default();
    println!("day answer machine talk_s | predictive: people abandoned rate% idle% | progressive: people idle%");
    for (d, (p, g)) in predictive_run.iter().zip(&progressive_run).enumerate() {
        let rate = 100.0 * p.abandoned as f64 / p.people.max(1) as f64;
        let agent_day = (AGENTS as Millis * DAY_MS) as f64;
        println!(
            "{d:>3} {:.2} {:.2} {:>4.0} | {:>5} {:>3} {:>5.2} {:>5.1} | {:>5} {:>5.1}",
            days[d].answer_rate,
            days[d].machine_share,
            days[d].mean_talk_ms / 1000.0,
            p.people,
            p.abandoned,
            rate,
            100.0 * p.agent_idle_ms as f64 / agent_day,
            g.people,
            100.0 * g.agent_idle_ms as f64 / agent_day,
        );
        assert!(
            p.people > 100,
            "day {d}: too few people to judge ({})",
            p.people
        );
        assert!(
            rate <= cap,
            "day {d}: abandon rate {rate:.2} % over the {cap} % cap"
        );
        assert_eq!(g.abandoned, 0, "day {d}: progressive abandoned someone");
        window.people_answered += p.people;
        window.abandoned += p.abandoned;
        assert!(window.rate_pct() <= cap);
        idle[0] += p.agent_idle_ms;
        idle[1] += g.agent_idle_ms;
        talk[0] += p.talk_ms;
        talk[1] += g.talk_ms;
    }
    let whole = (AGENTS as Millis * DAY_MS * DAYS as Millis) as f64;
    println!(
        "30 days: abandon rate {:.2} % (cap {cap} %); agent idle time predictive {:.1} h ({:.1} %), \
         progressive {:.1} h ({:.1} %); occupancy talk/(talk+idle) predictive {:.1} %, progressive {:.1} %",
        window.rate_pct(),
        idle[0] as f64 / 3.6e6,
        100.0 * idle[0] as f64 / whole,
        idle[1] as f64 / 3.6e6,
        100.0 * idle[1] as f64 / whole,
        100.0 * talk[0] as f64 / (talk[0] + idle[0]) as f64,
        100.0 * talk[1] as f64 / (talk[1] + idle[1]) as f64,
    );
    assert!(
        idle[0] < idle[1],
        "predictive idle {} ms is not lower than progressive {} ms",
        idle[0],
        idle[1]
    );
    assert!(window.abandoned > 0, "predictive never dialed ahead");
}
