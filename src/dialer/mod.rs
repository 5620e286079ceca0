//! The dialer: runs campaigns. `engine` is the tokio driver that reads campaigns from the
//! store, asks the sans-IO [`Scheduler`](crate::campaign::Scheduler) what to do and spawns
//! one task per attempt; `attempt` places one campaign call through the call-flow runner;
//! `recovery` (with `journal`) keeps every attempt recorded through crashes, store outages and
//! other nodes' deaths; `inbound` routes callbacks to their campaign and contact.
//!
//! It depends on [`crate::campaign`] and [`crate::store`]; neither depends on it. It must
//! not decide pacing, hours, retries or lifecycle (the campaign core does).

pub mod attempt;
pub mod engine;
pub mod inbound;
pub mod journal;
pub mod recovery;
