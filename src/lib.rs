//! outdial: a telephony-native outbound dialer and SIP/RTP media server.
//!
//! The library holds every part; `src/main.rs` is only the command line.
//! `call` is the one place that joins SIP signalling (`sip`) with media (`media`); `flow` runs
//! an answered call's plan over it and `bridge` joins it with a second party. `campaign` holds
//! the campaign vocabulary and its pure scheduler, `store` keeps it, and `dialer` drives
//! campaigns against the store and the SIP user agent (imports go that one way).

pub mod amd;
pub mod api;
pub mod asr;
pub mod bench;
pub mod bridge;
pub mod call;
pub mod campaign;
pub mod config;
pub mod contacts;
pub mod dialer;
pub mod flow;
pub mod media;
pub mod observe;
pub mod onnx;
pub mod sip;
pub mod store;
pub mod web;
