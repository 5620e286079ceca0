//! What a running outdial uses and carries: its process's memory, open files and threads
//! ([`process`]), read the same way by `GET /v1/node` about itself and by `outdial bench soak`
//! about the `serve` it drives.
//!
//! Must not: change what it observes, or fail a caller when a figure cannot be read (every
//! figure is optional: other systems than Linux have no `/proc`).

pub mod events;
pub mod live;
pub mod metrics;
pub mod process;
pub mod webhooks;
