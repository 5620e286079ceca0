//! The call flow: one runner of an answered call's plan — answering-machine detection,
//! recording, digits, messages, voicemail drop, the bridge to a person, hang-up — used by
//! `outdial call` and the campaign engine alike.
//!
//! [`core`] decides (sans-IO), [`runner`] carries it out around a [`Call`](crate::call::Call);
//! [`tap`] runs the detector beside the call and [`record`] writes the recording; [`steps`] is
//! the message-plan model (play, collect, record, connect, hang up) and its pure interpreter;
//! [`control`] is the registry of live calls that outside requests (hang-up, transfer) reach
//! the runner through.
//! Nothing here knows about the store or campaigns' lifecycles, nor holds SIP or RTP state of
//! its own: the caller records the [`FlowReport`], the call owns its leg.

pub mod control;
pub mod core;
pub mod record;
pub mod runner;
pub mod steps;
pub mod tap;

pub use record::record_call;
pub use runner::{run, run_answered, Connect, FlowError, FlowPlan, FlowReport, Person};
pub use tap::AmdTap;
