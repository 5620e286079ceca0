//! The runner of an answered call's plan and what it executes. Today it holds the
//! message-plan model and its pure interpreter ([`steps`]).
//!
//! What this module must NOT do: hold SIP or RTP state of its own (a call owns that).

pub mod steps;
