//! Campaigns: the vocabulary of both product guides (`model`, `agents`) and the sans-IO
//! scheduler core that turns campaign state plus `now` into dial decisions: business hours
//! (`hours`), the contact's own calling window (`contact_tz`), pacing and lifecycle
//! (`scheduler`), what an attempt's result does to its contact (`retry`), AI agents as records
//! (`ai`), goals and analyses (`goals`).
//!
//! Nothing here does I/O or reads the store: the store keeps these types, and the driver
//! that runs campaigns against the store and the SIP user agent is [`crate::dialer`].

pub mod agents;
pub mod ai;
pub mod contact_tz;
pub mod goals;
pub mod hours;
pub mod model;
pub mod pacing;
pub mod retry;
pub mod scheduler;
#[cfg(test)]
mod tests;

pub use contact_tz::{zones_for_contact, zones_for_number, CompiledWindow};
pub use hours::CompiledHours;
pub use model::*;
pub use retry::{after_attempt, complete_due, manual_retry, restart, AttemptResult, ContactUpdate};
pub use scheduler::{CampaignView, Candidate, ContactId, Scheduler, Tick, OVERDUE_GRACE_MS};
